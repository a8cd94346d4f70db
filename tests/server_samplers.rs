//! llama-server's samplers over HTTP, under its names, on the OpenAI endpoints and its own
//! `/completion`: DRY turns the real model away from a repeat it would copy greedily (and its
//! sequence breakers let the repeat be), top-n-sigma and XTC cut the tiny model's near-uniform
//! rows to one token, bad values are a 400 naming the field.
mod common;

use common::plugins;
use common::server::Server;
use serde_json::{json, Value};

const COUNTING: &str = "1 2 3 4 5 1 2 3 4 5 1 2 3 4";

async fn completion_text(s: &Server, extra: Value) -> String {
    let mut body = json!({"prompt": COUNTING, "max_tokens": 6, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, v) = s.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    v["choices"][0]["text"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn dry_breaks_a_repeat_the_model_would_copy() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let plain = completion_text(&s, json!({})).await;
    assert!(
        plain.starts_with(" 5 1"),
        "greedy copies the count: {plain:?}"
    );
    let dry = completion_text(&s, json!({"dry_multiplier": 0.8})).await;
    assert!(!dry.starts_with(" 5"), "DRY leaves the repeat: {dry:?}");
    // Spaces as breakers: no repeat is longer than one token, which DRY allows.
    let broken = json!({"dry_multiplier": 0.8, "dry_sequence_breakers": [" "]});
    assert_eq!(completion_text(&s, broken).await, plain);
    // A window too short to hold the earlier count sees no repeat.
    let short = json!({"dry_multiplier": 0.8, "dry_penalty_last_n": 4});
    assert_eq!(completion_text(&s, short).await, plain);
    // llama-server's own endpoint takes the same fields.
    let body = json!({"prompt": COUNTING, "n_predict": 6, "temperature": 0, "dry_multiplier": 0.8});
    let (status, v) = s.post("/completion", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"].as_str().unwrap(), dry);
    for (body, field) in [
        (json!({"dry_multiplier": 0.8, "dry_base": 0.5}), "dry_base"),
        (
            json!({"dry_multiplier": 0.8, "dry_sequence_breakers": [""]}),
            "dry_sequence_breakers",
        ),
        (json!({"dry_multiplier": -1}), "dry_multiplier"),
        (json!({"xtc_probability": 1.5}), "xtc_probability"),
        (json!({"xtc_threshold": -0.1}), "xtc_threshold"),
        (json!({"typical_p": 1e-300}), "typical_p"),
        (json!({"top_n_sigma": 1e300}), "top_n_sigma"),
        (json!({"dry_multiplier": 1e300}), "dry_multiplier"),
    ] {
        let mut body = body;
        body["prompt"] = json!("hi");
        let (status, v) = s.post("/v1/completions", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
    }
}

/// Three answers of Ollama's `/api/generate` to `body`.
async fn ollama_answers(s: &Server, body: &Value) -> Vec<String> {
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, v) = s.post("/api/generate", body).await;
        assert_eq!(status, 200, "{v}");
        answers.push(v["response"].as_str().unwrap().to_string());
    }
    answers
}

/// Whether the four choices of a sampled completion came out the same.
async fn choices_agree(s: &Server, extra: Value) -> bool {
    let mut body = json!({"prompt": "t5 t6 t7", "max_tokens": 10, "n": 4, "temperature": 1.5, "ignore_eos": true});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let texts = s.completion_texts(&body).await;
    assert_eq!(texts.len(), 4);
    texts.iter().all(|t| *t == texts[0])
}

#[tokio::test]
async fn top_n_sigma_and_xtc_cut_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let model = plugins::servable_tiny("llama", dir.path());
    let s = Server::start_path(&model, "tiny", &["--generation-config", "vllm"]).await;
    assert!(!choices_agree(&s, json!({})).await, "near-uniform rows");
    assert!(
        choices_agree(&s, json!({"top_n_sigma": 0.001})).await,
        "within a thousandth of a sigma of the largest logit: one token"
    );
    assert!(
        !choices_agree(&s, json!({"top_n_sigma": -1})).await,
        "-1 is off"
    );
    // A threshold of 0 puts every token above it: all go but the least likely.
    assert!(
        choices_agree(&s, json!({"xtc_probability": 1, "xtc_threshold": 0})).await,
        "XTC keeps only the least likely"
    );
    assert!(
        !choices_agree(&s, json!({"xtc_probability": 0, "xtc_threshold": 0})).await,
        "XTC that never fires"
    );
    // The single token whose surprise is nearest the entropy.
    assert!(
        choices_agree(&s, json!({"typical_p": 0.0001})).await,
        "typical_p keeps the most typical token"
    );
    assert!(
        !choices_agree(&s, json!({"typical_p": 1})).await,
        "1 is off"
    );
    let (status, v) = s
        .post("/v1/completions", &json!({"prompt": "t5", "typical_p": 0}))
        .await;
    assert_eq!(
        (status, &v["error"]["param"]),
        (400, &json!("typical_p")),
        "{v}"
    );
    // Ollama's option reaches the same sampler.
    let body = json!({"model": "tiny", "prompt": "t5 t6", "raw": true, "stream": false,
                      "options": {"typical_p": 0.0001, "temperature": 1.5, "num_predict": 8}});
    let answers: Vec<String> = ollama_answers(&s, &body).await;
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
}
