//! ALiBi checkouts as their publishers saved them: BLOOM's bigscience checkpoints come from
//! `BloomModel`, their tensors without the `transformer.` prefix `BloomForCausalLM` writes
//! (the tiny fixture's); both load to the same logits.
mod common;

use candle_core::{Device, Tensor};
use common::{as_u32s, cpu_logits, fixtures, max_abs_diff, read_json};
use std::collections::HashMap;

#[test]
fn bloom_checkpoints_without_the_transformer_prefix_load() {
    let src = fixtures().join("tiny/bloom");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
        .expect("fixture");
    let bare: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| match name.strip_prefix("transformer.") {
            Some(rest) => (rest.to_string(), t),
            None => (name, t),
        })
        .collect();
    assert!(bare.contains_key("word_embeddings_layernorm.weight"));
    candle_core::safetensors::save(&bare, dir.path().join("model.safetensors")).unwrap();
    let golden = read_json(&src.join("golden.json"));
    // One block of the cache: the first 16 tokens.
    let ids = &as_u32s(&golden["input_ids"])[..16];
    let d = max_abs_diff(&cpu_logits(dir.path(), ids), &cpu_logits(&src, ids));
    assert!(d < 1e-6, "bare names: logits differ by {d}");
}

/// An MPT checkout that keeps llm-foundry's learned position table beside ALiBi
/// (`transformer.wpe`) is refused by name, not served with the table dropped.
#[test]
fn mpt_checkouts_with_learned_positions_are_refused() {
    let src = fixtures().join("tiny/mpt");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
        .expect("fixture");
    let wpe = Tensor::zeros((256, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("transformer.wpe.weight".into(), wpe);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let err = candor_models::loader::open_model(dir.path(), false)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("learned positions"), "{err}");
}
