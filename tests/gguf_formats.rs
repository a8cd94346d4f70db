//! GGUF files of every supported tensor type, written from a tiny HF model the way llama.cpp's
//! converter does (llama Q/K rows permuted for interleaved RoPE): F32 must match the safetensors
//! logits exactly, the other types within their rounding.
mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candor::backend::cpu::KvDtype;
use candor::engine::load::cpu_runner;
use candor_models::loader::open_model;
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;
use std::collections::HashMap;
use std::path::Path;

const TOKENS: [u32; 8] = [5, 17, 300, 42, 7, 99, 256, 3];

fn logits(path: &Path) -> Vec<f32> {
    let opened = open_model(path, false).expect("open");
    let mut r = cpu_runner(&opened, 2, 64, KvDtype::F32).expect("runner");
    let batch = Batch {
        seqs: vec![SeqInput {
            tokens: TOKENS.to_vec(),
            start_pos: 0,
            block_table: vec![0],
            logits: LogitsWanted::All,
            adapter: None,
        }],
    };
    r.forward(&batch).expect("forward").data
}

fn gguf_name(hf: &str) -> String {
    let map = [
        ("model.embed_tokens.weight", "token_embd.weight".to_string()),
        ("model.norm.weight", "output_norm.weight".to_string()),
        ("lm_head.weight", "output.weight".to_string()),
    ];
    if let Some((_, g)) = map.iter().find(|(h, _)| *h == hf) {
        return g.clone();
    }
    let rest = hf.strip_prefix("model.layers.").expect("layer tensor");
    let (l, part) = rest.split_once('.').unwrap();
    let g = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        // Phi-3's joined tensors, as llama.cpp's converter names them (gate and up in one
        // double-height `ffn_up`).
        "self_attn.qkv_proj.weight" => "attn_qkv.weight",
        "mlp.gate_up_proj.weight" => "ffn_up.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => panic!("unexpected tensor {other}"),
    };
    format!("blk.{l}.{g}")
}

/// The tiny `arch` model as llama.cpp's converter writes it: llama's Q/K rows permuted for
/// its interleaved RoPE (phi3's are not), weights of rank 2 in `dtype`.
fn write_gguf(arch: &str, path: &Path, dtype: GgmlDType) {
    let src = fixtures().join("tiny").join(arch);
    let permuted = arch == "llama";
    let cfg = read_json(&src.join("config.json"));
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv_heads = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &tensors {
        let mut t = t.clone();
        if permuted && name.ends_with("q_proj.weight") {
            t = permute_rope_rows(&t, heads);
        } else if permuted && name.ends_with("k_proj.weight") {
            t = permute_rope_rows(&t, kv_heads);
        }
        let ty = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
        q.push((gguf_name(name), QTensor::quantize(&t, ty).unwrap()));
    }
    let u = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let md: Vec<(String, Value)> = vec![
        ("embedding_length", u("hidden_size")),
        ("block_count", u("num_hidden_layers")),
        ("feed_forward_length", u("intermediate_size")),
        ("attention.head_count", u("num_attention_heads")),
        ("attention.head_count_kv", u("num_key_value_heads")),
        ("context_length", u("max_position_embeddings")),
        ("vocab_size", u("vocab_size")),
        (
            "rope.freq_base",
            Value::F32(cfg["rope_theta"].as_f64().unwrap() as f32),
        ),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{arch}.{k}"), v))
    .chain([(
        "general.architecture".to_string(),
        Value::String(arch.into()),
    )])
    .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

#[test]
fn every_tensor_type_loads_and_matches_within_its_rounding() {
    let reference = logits(&fixtures().join("tiny/llama"));
    let dir = tempfile::tempdir().unwrap();
    for (dtype, tol) in [
        (GgmlDType::F32, 1e-4),
        (GgmlDType::F16, 0.05),
        (GgmlDType::BF16, 0.3),
        (GgmlDType::Q8_0, 0.3),
        (GgmlDType::Q5_0, 2.0),
        (GgmlDType::Q4_0, 4.0),
    ] {
        let path = dir.path().join(format!("{dtype:?}.gguf"));
        write_gguf("llama", &path, dtype);
        let got = logits(&path);
        let d = max_abs_diff(&got, &reference);
        eprintln!("{dtype:?}: max |logit diff| {d}");
        assert!(d < tol, "{dtype:?}: logits differ by {d} (tolerance {tol})");
    }
}

/// Phi-3's joined q/k/v and gate/up tensors (`attn_qkv`, double-height `ffn_up`) load as the
/// joined products they are: the same logits as the HF checkout.
#[test]
fn phi3_joined_tensors_load_from_gguf() {
    let reference = logits(&fixtures().join("tiny/phi3"));
    let dir = tempfile::tempdir().unwrap();
    for (dtype, tol) in [(GgmlDType::F32, 1e-4), (GgmlDType::Q8_0, 0.3)] {
        let path = dir.path().join(format!("phi3-{dtype:?}.gguf"));
        write_gguf("phi3", &path, dtype);
        let d = max_abs_diff(&logits(&path), &reference);
        assert!(d < tol, "{dtype:?}: logits differ by {d} (tolerance {tol})");
    }
}

#[test]
fn k_quant_weights_run_through_the_cpu_backend() {
    use candor::backend::cpu::CpuBackend;
    use candor_models::backend::Backend;
    use candor_models::weights::HostWeight;
    // K-quants need rows of 256: a 256x256 linear against its f32 original.
    let w: Vec<f32> = (0..256 * 256)
        .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.2)
        .collect();
    let w = Tensor::from_vec(w, (256, 256), &Device::Cpu).unwrap();
    let x: Vec<f32> = (0..3 * 256)
        .map(|i| ((i * 13 % 17) as f32 / 17.0) - 0.5)
        .collect();
    let b = CpuBackend::new(2);
    let xt = b.upload(&x, &[3, 256]).unwrap();
    let exact = b
        .download(
            &b.linear(
                &xt,
                &b.load_weight(HostWeight::Dense {
                    tensor: w.clone(),
                    source: candor_models::backend::WeightDtype::F32,
                })
                .unwrap(),
                None,
            )
            .unwrap(),
        )
        .unwrap();
    for (dtype, tol) in [
        (GgmlDType::Q4K, 0.15),
        (GgmlDType::Q5K, 0.08),
        (GgmlDType::Q6K, 0.04),
    ] {
        let q = HostWeight::Quant(QTensor::quantize(&w, dtype).unwrap());
        assert_eq!(
            q.dtype().map(|d| d.to_string()),
            Some(weight_name(dtype).to_string())
        );
        let y = b
            .download(&b.linear(&xt, &b.load_weight(q).unwrap(), None).unwrap())
            .unwrap();
        let d = max_abs_diff(&y, &exact);
        eprintln!("{dtype:?}: max |diff| {d}");
        assert!(d < tol, "{dtype:?}: {d}");
        // The same table serves as embedding rows without a dense copy.
        let table = b
            .load_weight(HostWeight::Quant(QTensor::quantize(&w, dtype).unwrap()))
            .unwrap();
        let rows = b
            .download(&b.embedding(&table, &[0, 255]).unwrap())
            .unwrap();
        let want: Vec<f32> = [w.get(0).unwrap(), w.get(255).unwrap()]
            .iter()
            .flat_map(|r| r.to_vec1::<f32>().unwrap())
            .collect();
        assert!(max_abs_diff(&rows, &want) < tol, "{dtype:?} embedding rows");
    }
}

fn weight_name(d: GgmlDType) -> &'static str {
    match d {
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        _ => "?",
    }
}
