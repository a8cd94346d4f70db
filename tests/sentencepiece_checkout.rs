//! Checkouts that keep their tokenizer as SentencePiece's `tokenizer.model` alone, as
//! Llama-2-era fine-tunes do (tests/fixtures/tiny/spm_checkout, from make_sentencepiece.py: a
//! BPE model with byte fallback and a user-defined piece, LlamaTokenizer's config): read into
//! the vocabulary a GGUF would hold, they give the ids of the fast tokenizer transformers
//! converts from them, and serve.
mod common;

use common::plugins::servable_tiny;
use common::*;

#[test]
fn the_sentencepiece_model_gives_transformers_ids() {
    assert_checkout_tokenizer_golden(&fixtures().join("tiny/spm_checkout"));
}

/// A non-legacy config (`"legacy": false`, Llama 2's): no space prefix after a special or
/// added token, as transformers' fast tokenizer then tokenizes.
#[test]
fn a_non_legacy_config_prefixes_the_first_text_only() {
    assert_checkout_tokenizer_golden(&fixtures().join("tiny/spm_checkout_nonlegacy"));
}

/// A Unigram model is refused naming the file and the model type, not read as BPE.
#[test]
fn a_unigram_model_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("tiny/spm_checkout/unigram.model"),
        tmp.path().join("tokenizer.model"),
    )
    .unwrap();
    let e = candor::engine::load::checkout_tokenizer(tmp.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("tokenizer.model") && e.contains("SentencePiece Unigram model"),
        "{e}"
    );
}

/// The tiny llama with the SentencePiece checkout's tokenizer in place of its tokenizer.json:
/// prompts are tokenized as transformers does (BOS, the space prefix) and completed.
#[tokio::test]
async fn a_sentencepiece_checkout_serves_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", tmp.path());
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let spm = fixtures().join("tiny/spm_checkout");
    for f in ["tokenizer.model", "tokenizer_config.json"] {
        std::fs::copy(spm.join(f), model.join(f)).unwrap();
    }
    let server = common::server::Server::start_path(&model, "tiny", &[]).await;
    let (status, body) = server
        .post("/tokenize", &serde_json::json!({"content": "Hello world"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["tokens"],
        serde_json::json!([329, 277, 320, 274, 266, 319]),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/v1/completions",
            &serde_json::json!({"model": "tiny", "prompt": "Hello world", "max_tokens": 4,
                                "temperature": 0, "ignore_eos": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 7, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 4, "{body}");
}
