//! Safetensors checkouts beyond one f32 file: sharded with `model.safetensors.index.json`, and
//! F16/BF16 weights; the logits must match the single-file f32 model's.
mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use std::collections::HashMap;
use std::path::Path;

fn logits(dir: &Path) -> Vec<f32> {
    cpu_logits(dir, &[5, 17, 300, 42, 7])
}

fn copy_configs(from: &Path, to: &Path) {
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

fn tensors(src: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn sharded_checkout_matches_single_file() {
    let src = fixtures().join("tiny/qwen2");
    let dir = tempfile::tempdir().unwrap();
    copy_configs(&src, dir.path());
    let all = tensors(&src);
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (a, b): (Vec<_>, Vec<_>) = names.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let m: HashMap<String, Tensor> = part
            .iter()
            .map(|(_, n)| ((**n).clone(), all[**n].clone()))
            .collect();
        for n in m.keys() {
            weight_map.insert(n.clone(), serde_json::json!(shard));
        }
        candle_core::safetensors::save(&m, dir.path().join(shard)).unwrap();
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let d = max_abs_diff(&logits(dir.path()), &logits(&src));
    assert!(d < 1e-6, "sharded logits differ by {d}");
}

#[test]
fn half_precision_weights_load_and_stay_close() {
    let src = fixtures().join("tiny/gemma3");
    let reference = logits(&src);
    for dtype in [DType::F16, DType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        copy_configs(&src, dir.path());
        let m: HashMap<String, Tensor> = tensors(&src)
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(dtype).unwrap()))
            .collect();
        candle_core::safetensors::save(&m, dir.path().join("model.safetensors")).unwrap();
        let got = logits(dir.path());
        let d = max_abs_diff(&got, &reference);
        // Rounded weights, f32 compute: small but non-zero differences.
        assert!(d > 0.0 && d < 0.5, "{dtype:?}: logits differ by {d}");
    }
}

/// Half matrices run in their 16 bits on the CPU (candor-kernels' half_matmul, and half
/// embedding rows); the same rounded values stored as f32 take candle's f32 path. Only the
/// summation order differs, so the logits agree far more closely than with the f32 original.
#[test]
fn half_weights_in_16_bits_match_the_same_values_in_f32() {
    let src = fixtures().join("tiny/gemma3");
    for dtype in [DType::F16, DType::BF16] {
        let half_dir = tempfile::tempdir().unwrap();
        let f32_dir = tempfile::tempdir().unwrap();
        for (dir, widen) in [(&half_dir, false), (&f32_dir, true)] {
            copy_configs(&src, dir.path());
            let m: HashMap<String, Tensor> = tensors(&src)
                .into_iter()
                .map(|(k, v)| {
                    let v = v.to_dtype(dtype).unwrap();
                    (
                        k,
                        if widen {
                            v.to_dtype(DType::F32).unwrap()
                        } else {
                            v
                        },
                    )
                })
                .collect();
            candle_core::safetensors::save(&m, dir.path().join("model.safetensors")).unwrap();
        }
        let d = max_abs_diff(&logits(half_dir.path()), &logits(f32_dir.path()));
        assert!(
            d < 1e-3,
            "{dtype:?}: 16-bit and f32 copies of one model differ by {d}"
        );
        // The checkout's matrices reach the backend in their 16 bits, not widened on load.
        use candor_models::weights::safetensors::SafetensorsDir;
        use candor_models::weights::{names::HfNormNaming, HostWeight, WeightSource};
        let dir = SafetensorsDir::open(half_dir.path(), HfNormNaming::Gemma, false).unwrap();
        match dir.get("blk.0.attn_q.weight").unwrap() {
            Some(HostWeight::Dense { tensor, .. }) => assert_eq!(tensor.dtype(), dtype),
            other => panic!("{dtype:?}: q weight read as {other:?}"),
        }
    }
}
