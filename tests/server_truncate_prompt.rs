//! vLLM's `truncate_prompt_tokens`: a prompt runs as its last k tokens, on completions, chat
//! and embeddings; usage counts what ran; bad values and a fill-in-the-middle prompt are a 400.
mod common;

use common::plugins;
use common::server::Server;
use serde_json::{json, Value};

#[tokio::test]
async fn completions_and_embeddings_run_the_prompt_s_end() {
    let dir = tempfile::tempdir().unwrap();
    let model = plugins::servable_tiny("llama", dir.path());
    let s = Server::start_path(&model, "tiny", &[]).await;
    let greedy = |prompt: &str, k: Option<i64>| {
        let mut body =
            json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "ignore_eos": true});
        if let Some(k) = k {
            body["truncate_prompt_tokens"] = json!(k);
        }
        body
    };
    let (_, a) = s
        .post("/v1/completions", &greedy("t5 t6 t7 t8 t9", Some(2)))
        .await;
    let (_, b) = s
        .post("/v1/completions", &greedy("t40 t41 t42 t8 t9", Some(2)))
        .await;
    assert_eq!(a["usage"]["prompt_tokens"], 2, "{a}");
    assert_eq!(
        a["choices"][0]["text"], b["choices"][0]["text"],
        "the same last two tokens"
    );
    let (_, c) = s
        .post("/v1/completions", &greedy("t5 t6 t7 t8 t9", None))
        .await;
    let (_, d) = s
        .post("/v1/completions", &greedy("t40 t41 t42 t8 t9", None))
        .await;
    assert_ne!(
        c["choices"][0]["text"], d["choices"][0]["text"],
        "whole prompts differ"
    );
    let (_, long) = s
        .post("/v1/completions", &greedy("t5 t6 t7 t8 t9", Some(100)))
        .await;
    assert_eq!(
        long["choices"][0]["text"], c["choices"][0]["text"],
        "nothing to cut"
    );

    let embed = |input: &str| json!({"input": input, "truncate_prompt_tokens": 2});
    let (_, e1) = s.post("/v1/embeddings", &embed("t5 t6 t8 t9")).await;
    let (_, e2) = s.post("/v1/embeddings", &embed("t40 t8 t9")).await;
    assert_eq!(e1["usage"]["prompt_tokens"], 2, "{e1}");
    assert_eq!(e1["data"][0]["embedding"], e2["data"][0]["embedding"]);

    for body in [
        json!({"prompt": "t5", "truncate_prompt_tokens": 0}),
        json!({"prompt": "t5", "truncate_prompt_tokens": -2}),
        json!({"prompt": "t5", "suffix": "t6", "truncate_prompt_tokens": 1}),
    ] {
        let (status, v) = s.post("/v1/completions", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], "truncate_prompt_tokens", "{v}");
    }
}

#[tokio::test]
async fn a_chat_prompt_is_cut_after_its_template() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let body = |k: Value| {
        json!({"messages": [{"role": "user", "content": "Write the numbers from one to ten."}],
               "max_tokens": 4, "temperature": 0, "truncate_prompt_tokens": k})
    };
    let (status, v) = s.post("/v1/chat/completions", &body(json!(6))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 6, "{v}");
    let (_, whole) = s.post("/v1/chat/completions", &body(json!(-1))).await;
    assert!(
        whole["usage"]["prompt_tokens"].as_u64().unwrap() > 20,
        "{whole}"
    );
}
