//! vLLM's `return_token_ids` and `return_tokens_as_token_ids`: the prompt's ids and each
//! answer's (its end token included) beside the text, whole or streamed, on chat and text
//! completions; logprobs naming tokens `token_id:N`. vLLM's `allowed_token_ids` and
//! `bad_words`: tokens an answer may not draw. vLLM's `continuous_usage_stats`: the usage so
//! far in every chunk. vLLM's `prompt_logprobs`: each prompt token's logprob, rank and
//! likeliest alternatives.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use serde_json::{json, Value};

const TEMPLATE: &str = "{% for m in messages %}{{ m.content }} {% endfor %}";

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// The `data:` objects of an SSE answer, `[DONE]` left out.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The tiny llama served as `tiny`, chatting through `TEMPLATE` (kept alive by the dir).
async fn tiny_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let server = Server::start_path(&model, "tiny", &["--chat-template", TEMPLATE]).await;
    (dir, server)
}

#[tokio::test]
async fn token_ids_come_beside_the_text_whole_and_streamed() {
    let (_dir, server) = tiny_server().await;

    // Text completions: two prompts, two choices each; the vocabulary is `tN` for id N.
    let body = json!({
        "model": "tiny", "prompt": ["t5 t6 t7", "t9 t10"], "n": 2, "max_tokens": 4,
        "temperature": 0, "logprobs": 1, "return_token_ids": true,
        "return_tokens_as_token_ids": true, "ignore_eos": true
    });
    let (status, whole) = server.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{whole}");
    let choices = whole["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (k, choice) in choices.iter().enumerate() {
        let prompt = if k < 2 { vec![5, 6, 7] } else { vec![9, 10] };
        assert_eq!(ids(&choice["prompt_token_ids"]), prompt, "{choice}");
        let answer = ids(&choice["token_ids"]);
        assert_eq!(answer.len(), 4);
        let named: Vec<String> = answer.iter().map(|id| format!("token_id:{id}")).collect();
        assert_eq!(choice["logprobs"]["tokens"], json!(named), "{choice}");
        // The offsets still count the text's bytes.
        let offsets = ids(&choice["logprobs"]["text_offset"]);
        assert_eq!(offsets[0], 0);
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    }

    // Streamed: the prompt's ids in each choice's first chunk, the answer's across chunks.
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let (status, text) = server.post_for_text("/v1/completions", &streamed).await;
    assert_eq!(status, 200, "{text}");
    let mut told = vec![Vec::new(); 4];
    let mut prompts = vec![None; 4];
    for event in events(&text) {
        for choice in event["choices"].as_array().unwrap() {
            let k = choice["index"].as_u64().unwrap() as usize;
            told[k].extend(ids(&choice["token_ids"]));
            if let Some(p) = choice.get("prompt_token_ids") {
                assert!(prompts[k].is_none(), "told twice: {event}");
                prompts[k] = Some(ids(p));
            }
        }
    }
    for (k, choice) in choices.iter().enumerate() {
        assert_eq!(told[k], ids(&choice["token_ids"]), "choice {k}");
        assert_eq!(
            prompts[k].as_deref(),
            Some(&ids(&choice["prompt_token_ids"])[..])
        );
    }

    // The end token that stopped an answer is its last id (it has no text).
    let first = ids(&choices[0]["token_ids"])[0];
    let stopped = json!({
        "model": "tiny", "prompt": "t5 t6 t7", "max_tokens": 4, "temperature": 0,
        "stop_token_ids": [first], "return_token_ids": true
    });
    let (_, answer) = server.post("/v1/completions", &stopped).await;
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{answer}");
    assert_eq!(ids(&choice["token_ids"]), [first]);
    assert_eq!(choice["text"], "");

    // Chat: the prompt's ids once, at the top (the first chunk of a stream); then the
    // answer's in every choice.
    let chat = json!({
        "model": "tiny", "messages": [{"role": "user", "content": "t20 t21 t22"}],
        "max_tokens": 5, "temperature": 0, "return_token_ids": true, "ignore_eos": true
    });
    let (status, whole) = server.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{whole}");
    let prompt = ids(&whole["prompt_token_ids"]);
    assert_eq!(
        prompt.len() as u64,
        whole["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(&prompt[..3], [20, 21, 22]);
    let answer = ids(&whole["choices"][0]["token_ids"]);
    assert_eq!(answer.len(), 5);
    let mut streamed = chat.clone();
    streamed["stream"] = true.into();
    let (_, text) = server
        .post_for_text("/v1/chat/completions", &streamed)
        .await;
    let events = events(&text);
    assert_eq!(ids(&events[0]["prompt_token_ids"]), prompt);
    assert!(events[1..]
        .iter()
        .all(|e| e.get("prompt_token_ids").is_none()));
    let told: Vec<u64> = events
        .iter()
        .flat_map(|e| e["choices"].as_array().unwrap().clone())
        .filter_map(|c| c.get("token_ids").map(ids))
        .flatten()
        .collect();
    assert_eq!(told, answer);

    // Not asked, not there.
    let (_, plain) = server
        .post(
            "/v1/completions",
            &json!({"model": "tiny", "prompt": "t5", "max_tokens": 2}),
        )
        .await;
    assert!(plain["choices"][0].get("token_ids").is_none(), "{plain}");
    assert!(
        plain["choices"][0].get("prompt_token_ids").is_none(),
        "{plain}"
    );
}

#[tokio::test]
async fn answers_keep_to_allowed_tokens_and_never_write_a_bad_word() {
    let (_dir, server) = tiny_server().await;
    let answer = |extra: Value| {
        let mut body = json!({
            "model": "tiny", "prompt": "t5 t6 t7", "max_tokens": 12, "temperature": 0,
            "ignore_eos": true, "return_token_ids": true
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let server = &server;
        async move {
            let (status, answer) = server.post("/v1/completions", &body).await;
            (status, answer)
        }
    };
    let (_, free) = answer(json!({})).await;
    let free = ids(&free["choices"][0]["token_ids"]);

    let (status, kept) = answer(json!({"allowed_token_ids": [7, 300, 8]})).await;
    assert_eq!(status, 200, "{kept}");
    let kept = ids(&kept["choices"][0]["token_ids"]);
    assert_eq!(kept.len(), 12);
    assert!(kept.iter().all(|id| [7, 300, 8].contains(id)), "{kept:?}");

    // The greedy answer's first two tokens as one bad word: that pair never comes again; its
    // first token as a word of its own: never at all.
    let pair = format!("t{} t{}", free[0], free[1]);
    let (_, no_pair) = answer(json!({"bad_words": [pair]})).await;
    let no_pair = ids(&no_pair["choices"][0]["token_ids"]);
    assert_ne!(no_pair, free);
    assert!(
        !no_pair.windows(2).any(|w| w == [free[0], free[1]]),
        "{no_pair:?}"
    );
    let single = format!("t{}", free[0]);
    let (_, none) = answer(json!({"bad_words": [single]})).await;
    let none = ids(&none["choices"][0]["token_ids"]);
    assert!(!none.contains(&free[0]), "{none:?}");

    for (field, bad) in [
        ("allowed_token_ids", json!([])),
        ("allowed_token_ids", json!([100000])),
        ("bad_words", json!([" "])),
    ] {
        let (status, refused) = answer(json!({ field: bad })).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["param"], field, "{refused}");
    }
}

#[tokio::test]
async fn every_chunk_tells_the_usage_so_far_when_asked() {
    let (_dir, server) = tiny_server().await;
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "tiny", "prompt": "t5 t6 t7", "max_tokens": 5}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "tiny", "messages": [{"role": "user", "content": "t5"}], "max_tokens": 5}),
        ),
    ] {
        let mut body = body;
        body["stream"] = true.into();
        body["ignore_eos"] = true.into();
        body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
        let (status, text) = server.post_for_text(path, &body).await;
        assert_eq!(status, 200, "{text}");
        let told = events(&text);
        let (last, chunks) = told.split_last().unwrap();
        assert!(last["choices"].as_array().unwrap().is_empty(), "{last}");
        assert_eq!(last["usage"]["completion_tokens"], 5, "{last}");
        let prompt = last["usage"]["prompt_tokens"].as_u64().unwrap();
        let mut before = 0;
        for chunk in chunks {
            let usage = &chunk["usage"];
            let completion = usage["completion_tokens"].as_u64().unwrap();
            assert!(completion >= before, "{path}: {chunk}");
            assert_eq!(usage["prompt_tokens"].as_u64(), Some(prompt), "{chunk}");
            assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
            before = completion;
        }
        assert_eq!(before, 5, "{path}");
        // Without it, the chunks' usage stays null.
        body["stream_options"] = json!({"include_usage": true});
        let (_, text) = server.post_for_text(path, &body).await;
        let events = events(&text);
        assert!(events[..events.len() - 1]
            .iter()
            .all(|e| e["usage"].is_null()));
    }
}

#[tokio::test]
async fn prompt_logprobs_score_each_prompt_token_as_vllm_shapes_them() {
    let (_dir, server) = tiny_server().await;
    let body = json!({
        "model": "tiny", "prompt": "t5 t6 t7 t8", "max_tokens": 1, "temperature": 0,
        "prompt_logprobs": 2
    });
    let (status, answer) = server.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let scores = answer["choices"][0]["prompt_logprobs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(scores.len(), 4);
    assert!(scores[0].is_null());
    // Against the echoed logprobs of the same prompt.
    let echo = json!({
        "model": "tiny", "prompt": "t5 t6 t7 t8", "max_tokens": 0, "echo": true, "logprobs": 1
    });
    let (_, echoed) = server.post("/v1/completions", &echo).await;
    let echoed = &echoed["choices"][0]["logprobs"]["token_logprobs"];
    for (i, (place, token)) in scores.iter().zip([5, 6, 7, 8]).enumerate().skip(1) {
        let place = place.as_object().unwrap();
        let own = &place[&token.to_string()];
        let want = echoed[i].as_f64().unwrap();
        assert!(
            (own["logprob"].as_f64().unwrap() - want).abs() < 1e-4,
            "{own} vs {want}"
        );
        assert_eq!(own["decoded_token"], format!("t{token}"));
        let rank = own["rank"].as_u64().unwrap();
        // The two likeliest, ranked 1 and 2, and the prompt's token (one of them or not).
        let ranks: Vec<u64> = place
            .values()
            .map(|e| e["rank"].as_u64().unwrap())
            .collect();
        assert!(ranks.contains(&1) && ranks.contains(&2), "{place:?}");
        assert_eq!(place.len(), if rank <= 2 { 2 } else { 3 }, "{place:?}");
        let best = place.values().find(|e| e["rank"] == 1).unwrap();
        assert!(best["logprob"].as_f64() >= own["logprob"].as_f64());
    }
    // A chat's scores once, at the top; none in a stream.
    let chat = json!({
        "model": "tiny", "messages": [{"role": "user", "content": "t5 t6"}], "max_tokens": 1,
        "prompt_logprobs": 0
    });
    let (status, answer) = server.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{answer}");
    let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    assert_eq!(answer["prompt_logprobs"].as_array().unwrap().len(), prompt);
    assert_eq!(answer["prompt_logprobs"][1].as_object().unwrap().len(), 1);
    let mut streamed = chat.clone();
    streamed["stream"] = true.into();
    let (status, refused) = server.post("/v1/chat/completions", &streamed).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "prompt_logprobs");
}
