//! AWQ, GPTQ, compressed-tensors and bitsandbytes checkouts (tests/fixtures/tiny/make_packed.py
//! and make_bnb.py: packed by AutoAWQ's, AutoGPTQ's, compressed-tensors' and bitsandbytes' own
//! code, goldens from transformers on the values their own unpacking gives back): exactly
//! those values on the reference path, and, served as ggml blocks, within the block kernels'
//! rounding of them. BitNet's ternary checkouts (make_bitnet.py: goldens from transformers'
//! own BitNet quantizer) likewise.
mod common;

use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor_models::backend::WeightDtype;
use candor_models::loader::open_model;
use candor_models::weights::{BlockType, HostWeight};
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
    logits_of(&dir, &dir, dequantize)
}

/// `logits` of the checkout in `dir`, against the golden in `golden_dir`.
fn logits_of(
    dir: &std::path::Path,
    golden_dir: &std::path::Path,
    dequantize: bool,
) -> Vec<(usize, Vec<f32>, Vec<f32>)> {
    prefix_logits_of(dir, golden_dir, dequantize, usize::MAX)
}

/// `logits_of` the golden prompt's first `len` tokens, at the golden positions among them.
fn prefix_logits_of(
    dir: &std::path::Path,
    golden_dir: &std::path::Path,
    dequantize: bool,
    len: usize,
) -> Vec<(usize, Vec<f32>, Vec<f32>)> {
    let g = read_json(&golden_dir.join("golden.json"));
    let mut tokens = as_u32s(&g["input_ids"]);
    tokens.truncate(len);
    let opened = open_model(dir, dequantize).expect("open");
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
        .filter(|&p| p < tokens.len())
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

/// BitNet b1.58 as microsoft/bitnet-b1.58-2B-4T ships (`bitnet_tq2`: ternary products packed
/// four a byte, rows of whole 256-value blocks): served as TQ2_0 blocks (the scale as their
/// f16 `d`), within the ternary kernels' rounding of the activations (per block of 256 on top
/// of BitNet's per-token 8 bits); exactly transformers' logits on the reference path. The
/// head (tied embeddings) stays as stored.
#[test]
fn bitnet_products_are_served_as_tq2_0_blocks() {
    let dir = fixtures().join("tiny").join("bitnet_tq2");
    let opened = open_model(&dir, false).expect("open");
    let tq2_0 = BlockType::Grid(candor_kernels::quant::QuantType::Tq2_0);
    for name in ["blk.1.ffn_down.weight", "blk.0.attn_q.weight"] {
        let w = opened.source.get(name).expect("read").expect("present");
        assert!(
            matches!(&w, HostWeight::Mapped(m) if m.dtype == tq2_0),
            "{name}: {w:?}"
        );
    }
    let embed = opened.source.get("token_embd.weight").unwrap().unwrap();
    assert!(matches!(embed, HostWeight::Dense { .. }));
    // Each product's input is rounded to 8 bits: where a value lies within float noise of a
    // rounding boundary, transformers' and candor's sums (in other orders) round it apart, by a
    // step (position 31 here: 0.044); every other position is exact.
    let diffs: Vec<f32> = logits("bitnet_tq2", true)
        .iter()
        .map(|(_, got, want)| max_abs_diff(got, want))
        .collect();
    let inexact = diffs.iter().filter(|&&d| d >= 1e-4).count();
    assert!(
        inexact <= 1 && diffs.iter().all(|&d| d < 0.1),
        "dequantized: {diffs:?}"
    );
    // Served, a product's 8-bit rows keep their grid in the kernels' quantization (one scale
    // a row): the integer products are exact. 16 rows run on the integer kernels whatever the
    // CPU (the KV cache in f16, as for every quantized model: a rounding may flip).
    let prefix = prefix_logits_of(&dir, &dir, false, 16);
    let diffs: Vec<f32> = prefix.iter().map(|(_, g, w)| max_abs_diff(g, w)).collect();
    let inexact = diffs.iter().filter(|&&d| d >= 1e-3).count();
    assert!(
        prefix.len() == 4 && inexact <= 1,
        "TQ2_0, 16 rows: {diffs:?}"
    );
    assert!(diffs.iter().all(|&d| d < 0.2), "TQ2_0, 16 rows: {diffs:?}");
    // From 32 rows on, AMX CPUs multiply in bf16 (as transformers runs a bf16 checkout:
    // its 8-bit values rounded to bf16's 8 bits), within 0.4 of the f32 golden here.
    for (p, got, want) in logits("bitnet_tq2", false) {
        let d = max_abs_diff(&got, &want);
        assert!(d < 0.5, "TQ2_0: position {p} logits differ by {d}");
    }
}

/// The tiny BitNet checkout's tensors and config, to be rewritten.
fn bitnet_copy() -> (
    tempfile::TempDir,
    std::collections::HashMap<String, candle_core::Tensor>,
    serde_json::Value,
) {
    let src = fixtures().join("tiny").join("bitnet");
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    (
        tempfile::tempdir().unwrap(),
        tensors,
        read_json(&src.join("config.json")),
    )
}

fn write_checkout(
    dir: &std::path::Path,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    cfg: &serde_json::Value,
) {
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

/// BitLinear's layout (`linear_class` `bitlinear`, HF1BitLLM's): `weight_scale` divides the
/// ternary product; the checkout with each scale inverted gives transformers' logits.
#[test]
fn bitlinear_scales_divide() {
    let (dir, mut tensors, mut cfg) = bitnet_copy();
    for (name, t) in tensors.iter_mut() {
        if name.ends_with(".weight_scale") {
            let s = t.to_dtype(candle_core::DType::F32).unwrap();
            *t = s.recip().unwrap();
        }
    }
    cfg["quantization_config"] = serde_json::json!({"quant_method": "bitnet"});
    write_checkout(dir.path(), &tensors, &cfg);
    let golden = fixtures().join("tiny").join("bitnet");
    for (p, got, want) in logits_of(dir.path(), &golden, true) {
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-4, "position {p} logits differ by {d}");
    }
}

/// An `online` checkout (full-precision products, ternarized at load by their mean magnitude
/// as BitNet's `WeightQuant` does): a product is its values rounded in units of their mean
/// magnitude, clamped to -1..1, times that mean. The same values in an `offline` checkout are
/// refused, naming the tensor: they are not packed.
#[test]
fn online_bitnet_weights_are_ternarized_at_load() {
    let (dir, mut tensors, mut cfg) = bitnet_copy();
    let packed = open_model(&fixtures().join("tiny").join("bitnet"), true).expect("open");
    let w = packed.source.get("blk.0.ffn_up.weight").unwrap().unwrap();
    // Twice the checkout's ternary values, plus a little: no longer of one magnitude.
    let w = w.to_f32().unwrap().affine(2.0, 0.001).unwrap();
    let hf = "model.layers.0.mlp.up_proj.weight";
    tensors.insert(hf.to_string(), w.clone());
    cfg["quantization_config"] = serde_json::json!({"quant_method": "bitnet",
        "linear_class": "autobitlinear", "quantization_mode": "online"});
    write_checkout(dir.path(), &tensors, &cfg);
    let online = open_model(dir.path(), true).expect("open online");
    let got = online.source.get("blk.0.ffn_up.weight").unwrap().unwrap();
    let got = got
        .to_f32()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mean = (values.iter().map(|v| v.abs() as f64).sum::<f64>() / values.len() as f64) as f32;
    let want: Vec<f32> = values
        .iter()
        .map(|v| (v / mean).round().clamp(-1.0, 1.0) * mean)
        .collect();
    assert!(max_abs_diff(&got, &want) < 1e-6);
    assert!(got.contains(&0.0) && got.iter().any(|&v| v < 0.0));

    cfg["quantization_config"]["quantization_mode"] = "offline".into();
    write_checkout(dir.path(), &tensors, &cfg);
    let offline = open_model(dir.path(), true).expect("open offline");
    let err = offline
        .source
        .get("blk.0.ffn_up.weight")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not packed") && err.contains(hf), "{err}");
}
