//! Checkouts as the Hub's original OPT uploads keep theirs (tests/fixtures/tiny/opt_pytorch,
//! from make_pytorch_checkout.py): PyTorch checkpoints only, in two shards under OPTModel's
//! names with the head saved on the embeddings' storage and the last norm in f64, and a slow
//! GPT-2 tokenizer (`vocab.json`, `merges.txt`). The weights are rewritten once as safetensors and give the
//! safetensors fixture's logits; the tokenizer gives transformers' slow tokenizer's ids.
mod common;

use candor_models::loader::open_model;
use common::*;
use std::path::{Path, PathBuf};

fn logits(dir: &Path) -> Vec<f32> {
    cpu_logits(dir, &[2, 5, 17, 300, 42, 7])
}

/// A copy of the PyTorch checkout (the load writes beside its files).
fn pytorch_checkout() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny/opt_pytorch");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

#[test]
fn pytorch_shards_load_as_the_safetensors_they_are_rewritten_to() {
    let (_tmp, dir) = pytorch_checkout();
    let want = logits(&fixtures().join("tiny/opt"));
    assert_eq!(logits(&dir), want);
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(
        map["decoder.embed_tokens.weight"],
        "model-00001-of-00002.safetensors"
    );
    // The head shared the embeddings' storage: written once, under the embeddings' name.
    assert!(!map.contains_key("lm_head.weight"), "{map:?}");
    // A second load reads the safetensors written by the first, rewriting nothing.
    let shard = dir.join("model-00002-of-00002.safetensors");
    let written = std::fs::metadata(&shard).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(logits(&dir), want);
    assert_eq!(
        std::fs::metadata(&shard).unwrap().modified().unwrap(),
        written
    );
}

/// An interrupted conversion (one shard written, no index) is finished by the next load.
#[test]
fn an_interrupted_conversion_is_finished() {
    let (_tmp, dir) = pytorch_checkout();
    let _ = logits(&dir);
    std::fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert_eq!(logits(&dir), logits(&fixtures().join("tiny/opt")));
}

#[test]
fn a_checkpoint_that_is_no_pickle_is_refused_by_name() {
    let (_tmp, dir) = pytorch_checkout();
    std::fs::write(dir.join("pytorch_model-00002-of-00002.bin"), b"not a zip").unwrap();
    let Err(e) = open_model(&dir, false) else {
        panic!("a broken checkpoint loaded");
    };
    let e = e.to_string();
    assert!(e.contains("pytorch_model-00002-of-00002.bin"), "{e}");
    assert!(!dir.join("model.safetensors.index.json").exists());
}

#[test]
fn the_slow_tokenizer_gives_transformers_ids() {
    assert_checkout_tokenizer_golden(&fixtures().join("tiny/opt_pytorch"));
}

/// An encoder checkout of one PyTorch checkpoint (`pytorch_model.bin`, a product stored
/// column-major, a norm in f64) is rewritten as `model.safetensors` and encodes as the
/// safetensors one does; so is the same checkpoint in PyTorch's legacy (pre-zip) format
/// (`legacy.bin`, from make_legacy_pth.py).
#[test]
fn an_encoder_of_one_pytorch_checkpoint_encodes_as_its_safetensors() {
    for checkpoint in ["pytorch_model.bin", "legacy.bin"] {
        encoder_checkpoint_encodes_as_its_safetensors(checkpoint);
    }
}

fn encoder_checkpoint_encodes_as_its_safetensors(checkpoint: &str) {
    use candle_core::Device;
    use candor_models::encoder::{BertEncoder, EncoderConfig, EncoderInput};
    let original = fixtures().join("tiny/bert_embed");
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(original.join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::copy(
        fixtures().join("tiny/bert_embed_pytorch").join(checkpoint),
        tmp.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let encode = |dir: &Path| {
        let config = EncoderConfig::from_dir(dir).unwrap().unwrap();
        let (encoder, _) = BertEncoder::load(&config, dir, &Device::Cpu).unwrap();
        let ids = [2u32, 7, 42, 90, 3];
        let types = [0u32; 5];
        let input = EncoderInput {
            ids: &ids,
            type_ids: &types,
        };
        encoder.forward(&[input]).unwrap().to_vec2::<f32>().unwrap()
    };
    assert_eq!(encode(tmp.path()), encode(&original));
    assert!(tmp.path().join("model.safetensors").is_file());
    assert!(!tmp.path().join("model.safetensors.index.json").exists());
}

/// The PyTorch checkout served over HTTP as OPT is in vLLM's quickstart: a completion of a
/// prompt tokenized by the slow tokenizer (BOS `</s>` first: three tokens for "Hello world");
/// a chat, which the checkout has no template for, refused by name.
#[tokio::test]
async fn a_pytorch_checkout_serves_completions() {
    let (_tmp, dir) = pytorch_checkout();
    let server = common::server::Server::start_path(&dir, "opt", &[]).await;
    let (status, body) = server
        .post(
            "/v1/completions",
            &serde_json::json!({"model": "opt", "prompt": "Hello world", "max_tokens": 4,
                                "temperature": 0, "ignore_eos": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 3, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 4, "{body}");
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &serde_json::json!({"model": "opt", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("template"), "{body}");
}

/// A checkpoint whose pickle reads but one of whose tensors does not (its data cut short) is
/// refused naming that tensor, and leaves no safetensors file behind (each tensor is read as
/// it is written, so the failure comes mid-write).
#[test]
fn a_tensor_that_cannot_be_read_leaves_no_file() {
    let bytes = std::fs::read(fixtures().join("tiny/bert_embed_pytorch/truncated.bin")).unwrap();
    let (tmp, e) = refused_checkpoint(&bytes);
    // The tensor whose data the fixture cut short.
    assert!(
        e.contains("pytorch_model.bin") && e.contains("embeddings.LayerNorm.bias"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "config.json" && n != "pytorch_model.bin")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A legacy-format checkpoint cut short is refused naming the storage that runs past its end,
/// and leaves no safetensors file behind.
#[test]
fn a_cut_legacy_checkpoint_is_refused_by_name() {
    let bytes = std::fs::read(fixtures().join("tiny/bert_embed_pytorch/legacy.bin")).unwrap();
    let (tmp, e) = refused_checkpoint(&bytes[..bytes.len() - 100]);
    assert!(
        e.contains("legacy PyTorch checkpoint") && e.contains("runs past the file's end"),
        "{e}"
    );
    assert!(!tmp.path().join("model.safetensors").exists());
}

/// A checkout of the tiny BERT's config and `checkpoint` as its `pytorch_model.bin`, whose
/// conversion is refused: the checkout and the error.
fn refused_checkpoint(checkpoint: &[u8]) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("tiny/bert_embed/config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(tmp.path().join("pytorch_model.bin"), checkpoint).unwrap();
    let e = candor_models::weights::pytorch::convert_checkout(tmp.path())
        .unwrap_err()
        .to_string();
    (tmp, e)
}
