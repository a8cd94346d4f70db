//! AWQ, GPTQ, compressed-tensors and bitsandbytes checkouts (tests/fixtures/tiny/make_packed.py
//! and make_bnb.py: packed by AutoAWQ's, AutoGPTQ's, compressed-tensors' and bitsandbytes' own
//! code, goldens from transformers on the values their own unpacking gives back): exactly
//! those values on the reference path, and, served as ggml blocks, within the block kernels'
//! rounding of them.
mod common;

use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor_models::backend::WeightDtype;
use candor_models::loader::open_model;
use candor_models::weights::HostWeight;
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;

/// The fixtures, with the dtype their packed weights are served in (None: dequantized, as
/// act-order groups are no runs of 32 inputs) and the tolerance of the served logits.
/// bitsandbytes' 4-bit codes (NF4, FP4) are served as Q8_0 blocks of their values: their
/// rounding to 8 bits comes on top of the activations', hence the wider tolerance.
const PACKED: [(&str, Option<WeightDtype>, f32); 9] = [
    ("llama_bnb_nf4", Some(WeightDtype::Q8_0), 0.3),
    ("qwen2_bnb_fp4", Some(WeightDtype::Q8_0), 0.3),
    ("llama_bnb_int8", Some(WeightDtype::Q8_0), 0.2),
    ("llama_w8a8", Some(WeightDtype::Q8_0), 0.2),
    ("qwen2_awq", Some(WeightDtype::Q4_1), 0.2),
    ("llama_gptq", Some(WeightDtype::Q4_0), 0.2),
    ("llama_w4a16", Some(WeightDtype::Q4_0), 0.2),
    ("qwen2_w4a16_asym", Some(WeightDtype::Q4_1), 0.2),
    ("llama_gptq_act_order", None, 1e-4),
];

/// The golden prompt's logits at the golden positions, and the golden's.
fn logits(fixture: &str, dequantize: bool) -> Vec<(usize, Vec<f32>, Vec<f32>)> {
    let dir = fixtures().join("tiny").join(fixture);
    let g = read_json(&dir.join("golden.json"));
    let tokens = as_u32s(&g["input_ids"]);
    let opened = open_model(&dir, dequantize).expect("open");
    let kv = KvCacheDtype::Auto
        .resolve(&opened, false)
        .expect("KV dtype");
    let mut r = cpu_runner(&opened, 2, 256, kv).expect("runner");
    let batch = Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: tokens.clone(),
            start_pos: 0,
            block_table: (0..tokens.len().div_ceil(16) as u32).collect(),
            logits: LogitsWanted::All,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    let out = r.forward(&batch).expect("forward");
    as_u32s(&g["positions"])
        .into_iter()
        .map(|p| p as usize)
        .map(|p| {
            let want = as_f32s(&g["float32"]["logits"][p.to_string()]);
            (p, out.row(p).to_vec(), want)
        })
        .collect()
}

#[test]
fn dequantized_packed_weights_give_the_packers_values() {
    for (fixture, _, _) in PACKED {
        for (p, got, want) in logits(fixture, true) {
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-4, "{fixture}: position {p} logits differ by {d}");
        }
    }
}

#[test]
fn packed_weights_are_served_as_ggml_blocks_where_they_fit() {
    for (fixture, dtype, tol) in PACKED {
        let opened = open_model(&fixtures().join("tiny").join(fixture), false).expect("open");
        let w = opened
            .source
            .get("blk.1.ffn_down.weight")
            .expect("read")
            .expect("present");
        assert_eq!(w.shape(), [64, 128], "{fixture}");
        match dtype {
            Some(d) => assert!(
                matches!(w, HostWeight::Mapped(_) | HostWeight::Quant(_)) && w.dtype() == Some(d),
                "{fixture}: {:?}",
                w.dtype()
            ),
            None => assert!(matches!(w, HostWeight::Dense { .. }), "{fixture}"),
        }
        for (p, got, want) in logits(fixture, false) {
            let d = max_abs_diff(&got, &want);
            assert!(
                d < tol,
                "{fixture}: position {p} logits differ by {d} (tolerance {tol})"
            );
        }
    }
}

/// A bitsandbytes checkout's modules left unquantized (`llm_int8_skip_modules`) are read as
/// they are stored, beside the quantized ones.
#[test]
fn bitsandbytes_skipped_modules_are_read_as_stored() {
    let opened = open_model(&fixtures().join("tiny").join("llama_bnb_nf4"), false).expect("open");
    let head = opened
        .source
        .get("output.weight")
        .expect("read")
        .expect("present");
    assert!(
        matches!(head, HostWeight::Dense { .. }),
        "{:?}",
        head.dtype()
    );
}

/// A checkout whose config names a packing candor does not read is refused at load, naming it.
#[test]
fn unreadable_packings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny").join("qwen2_awq");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg = read_json(&src.join("config.json"));
    cfg["quantization_config"]["version"] = "gemv".into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = open_model(dir.path(), false)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("gemv") && err.contains("GGUF"), "{err}");
}
