//! llama-server's samplers over HTTP, under its names, on the OpenAI endpoints and its own
//! `/completion`: DRY turns the real model away from a repeat it would copy greedily (and its
//! sequence breakers let the repeat be), the penalties count the prompt as vLLM or llama.cpp
//! does, top-n-sigma, XTC and mirostat cut the tiny model's near-uniform rows to one token,
//! the temperature stands where each API's chain puts it (`samplers` moves it, between two
//! truncations too), dynamic temperature cools a confident row, bad values are a 400 naming
//! the field.
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
        (json!({"min_keep": -1}), "min_keep"),
    ] {
        let mut body = body;
        body["prompt"] = json!("hi");
        let (status, v) = s.post("/v1/completions", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
    }
}

/// The penalties read as each API's peer reads them: on the OpenAI endpoints vLLM's reading
/// (repetition counts the prompt, presence and frequency the answer alone), on llama-server's
/// `/completion` llama.cpp's (all three over the last `repeat_last_n` tokens of both).
#[tokio::test]
async fn penalties_count_the_prompt_as_each_api_does() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let plain = completion_text(&s, json!({})).await;
    assert!(plain.starts_with(" 5 1"), "{plain:?}");
    let repeated = completion_text(&s, json!({"repetition_penalty": 2})).await;
    assert!(
        !repeated.starts_with(" 5"),
        "the count's tokens are the prompt's, penalized from the first token: {repeated:?}"
    );
    let present = completion_text(&s, json!({"presence_penalty": 2})).await;
    assert!(
        present.starts_with(" 5"),
        "presence counts the answer only: {present:?}"
    );
    let native = |extra: Value| {
        let mut body = json!({"prompt": COUNTING, "n_predict": 6, "temperature": 0});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let s = &s;
        async move {
            let (status, v) = s.post("/completion", &body).await;
            assert_eq!(status, 200, "{v}");
            v["content"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(native(json!({})).await, plain);
    let windowed = native(json!({"repeat_penalty": 2})).await;
    assert!(
        !windowed.starts_with(" 5"),
        "the last 64 tokens hold the prompt: {windowed:?}"
    );
    assert_eq!(
        native(json!({"repeat_penalty": 2, "repeat_last_n": 0})).await,
        plain,
        "a window of 0 counts nothing"
    );
    // On an OpenAI endpoint, `repeat_last_n` asks for llama.cpp's reading.
    let asked = json!({"repetition_penalty": 2, "repeat_last_n": 0});
    assert_eq!(completion_text(&s, asked).await, plain);
    for (body, field) in [
        (json!({"repeat_last_n": -2}), "repeat_last_n"),
        (json!({"mirostat": 3}), "mirostat"),
        (json!({"mirostat": 2, "mirostat_tau": -1}), "mirostat_tau"),
        (json!({"mirostat": 1, "mirostat_eta": 1e9}), "mirostat_eta"),
    ] {
        let mut body = body;
        body["prompt"] = json!("hi");
        let (status, v) = s.post("/completion", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v.to_string().contains(field), "{body}: {v}");
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
        choices_agree(&s, json!({"typ_p": 0.0001})).await,
        "llama.cpp's web UI's name"
    );
    // `min_keep`: the truncations leave at least that many.
    for cut in [
        json!({"typical_p": 0.0001}),
        json!({"min_p": 1}),
        json!({"top_p": 0.0001}),
        json!({"xtc_probability": 1, "xtc_threshold": 0}),
    ] {
        let mut kept = cut.clone();
        kept["min_keep"] = json!(40);
        assert!(!choices_agree(&s, kept.clone()).await, "{cut} keeps 40");
        kept["min_keep"] = json!(1);
        assert!(choices_agree(&s, kept).await, "{cut} keeps 1");
    }
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

/// Mirostat with a target surprise of 0 that never learns (`mu` stays 0) keeps the most likely
/// token alone; each version, on the OpenAI endpoints, `/completion` and Ollama's options.
#[tokio::test]
async fn mirostat_keeps_what_its_target_allows() {
    let dir = tempfile::tempdir().unwrap();
    let model = plugins::servable_tiny("llama", dir.path());
    let s = Server::start_path(&model, "tiny", &["--generation-config", "vllm"]).await;
    let strict = |version: u8| json!({"mirostat": version, "mirostat_tau": 0, "mirostat_eta": 0});
    assert!(
        choices_agree(&s, strict(2)).await,
        "v2: surprise 0 is the top token"
    );
    assert!(choices_agree(&s, strict(1)).await, "v1: k = 1 at mu 0");
    assert!(
        !choices_agree(&s, json!({"mirostat": 0, "mirostat_tau": 0})).await,
        "0 is off"
    );
    assert!(
        !choices_agree(&s, json!({"mirostat": 2})).await,
        "llama.cpp's tau of 5 bits keeps many of a near-uniform row"
    );
    let body = json!({"model": "tiny", "prompt": "t5 t6", "raw": true, "stream": false,
                      "options": {"mirostat": 2, "mirostat_tau": 0, "mirostat_eta": 0,
                                  "temperature": 1.5, "num_predict": 8}});
    let answers: Vec<String> = ollama_answers(&s, &body).await;
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let (status, props) = s.get("/props").await;
    assert_eq!(status, 200);
    let params = &props["default_generation_settings"]["params"];
    assert_eq!(
        (&params["mirostat"], &params["repeat_last_n"]),
        (&json!(0), &json!(64)),
        "{params}"
    );
}

/// The first tokens of four seeded answers to the count, by `path` (`/completion` or
/// `/v1/completions`), with `extra` fields.
async fn seeded_answers(s: &Server, path: &str, extra: Value) -> Vec<String> {
    let mut answers = Vec::new();
    for seed in 0..4 {
        let mut body = json!({"prompt": COUNTING, "max_tokens": 3, "n_predict": 3, "seed": seed});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = s.post(path, &body).await;
        assert_eq!(status, 200, "{v}");
        let text = v["content"].as_str().or(v["choices"][0]["text"].as_str());
        answers.push(text.unwrap().to_string());
    }
    answers
}

fn all_alike(answers: &[String]) -> bool {
    answers.iter().all(|a| *a == answers[0])
}

/// The count's next token is near certain at temperature 1 and far from it at 2, where the
/// vocabulary's long tail takes most of the mass. Top-p 0.5 read before the temperature (as
/// llama-server's chain has it) keeps that token alone; read after it (vLLM's order), many.
/// Dynamic temperature cools the confident row to near greedy.
#[tokio::test]
async fn the_temperature_stands_where_each_api_puts_it() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let hot = json!({"temperature": 2, "top_p": 0.5});
    assert!(all_alike(
        &seeded_answers(&s, "/completion", hot.clone()).await
    ));
    let openai = seeded_answers(&s, "/v1/completions", hot.clone()).await;
    assert!(!all_alike(&openai), "{openai:?}");
    let mut last = hot.clone();
    last["samplers"] = json!(["top_p", "temperature"]);
    assert!(all_alike(
        &seeded_answers(&s, "/v1/completions", last).await
    ));
    let mut first = hot;
    first["samplers"] = json!("tp");
    let native = seeded_answers(&s, "/completion", first).await;
    assert!(!all_alike(&native), "{native:?}");
    // The temperature between two truncations (stage by stage, as llama.cpp runs a chain):
    // top-p read at temperature 1 keeps the near-certain token alone, whatever follows.
    let between = json!({"temperature": 2, "top_p": 0.5, "min_p": 0.01,
                         "samplers": ["top_p", "temperature", "min_p"]});
    assert!(all_alike(&seeded_answers(&s, "/completion", between).await));
    // Left out of `samplers`, top-p is off.
    let off = json!({"temperature": 2, "top_p": 0.5, "samplers": ["top_k", "temperature"]});
    assert!(!all_alike(&seeded_answers(&s, "/completion", off).await));

    let hot = json!({"temperature": 2});
    assert!(!all_alike(&seeded_answers(&s, "/completion", hot).await));
    let cooled = json!({"temperature": 2, "dynatemp_range": 2, "dynatemp_exponent": 10});
    assert!(all_alike(
        &seeded_answers(&s, "/completion", cooled.clone()).await
    ));
    assert!(all_alike(
        &seeded_answers(&s, "/v1/completions", cooled).await
    ));
    for (body, field) in [
        (json!({"dynatemp_range": -1}), "dynatemp_range"),
        (
            json!({"dynatemp_range": 1, "dynatemp_exponent": 1e9}),
            "dynatemp_exponent",
        ),
        (
            json!({"top_p": 0.9, "top_k": 5, "samplers": ["top_p", "top_k", "infill"]}),
            "samplers",
        ),
        (json!({"samplers": ["adaptive_p"]}), "samplers"),
    ] {
        let mut body = body;
        body["prompt"] = json!("hi");
        let (status, v) = s.post("/completion", &body).await;
        assert_eq!(
            (status, &v["error"]["param"]),
            (400, &json!(field)),
            "{body}: {v}"
        );
    }
}
