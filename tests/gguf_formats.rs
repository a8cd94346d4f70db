//! GGUF files of every supported tensor type, written from a tiny HF model the way llama.cpp's
//! converter does (llama Q/K rows permuted for interleaved RoPE): F32 must match the safetensors
//! logits exactly, the other types within their rounding.
mod common;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candor::backend::cpu::KvDtype;
use candor::engine::load::cpu_runner;
use candor_models::loader::open_model;
use candor_models::weights::gguf::GgufFile;
use candor_models::weights::{mxfp4, BlockType, HostWeight, WeightSource};
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOKENS: [u32; 8] = [5, 17, 300, 42, 7, 99, 256, 3];

fn logits(path: &Path) -> Vec<f32> {
    logits_of(path, false)
}

/// The logits of `TOKENS`, with every weight dequantized to f32 at load when `dequantize`.
fn logits_of(path: &Path, dequantize: bool) -> Vec<f32> {
    logits_of_tokens(path, &TOKENS, dequantize)
}

/// The logits of `tokens` (at most 64), likewise.
fn logits_of_tokens(path: &Path, tokens: &[u32], dequantize: bool) -> Vec<f32> {
    let opened = open_model(path, dequantize).expect("open");
    let mut r = cpu_runner(&opened, 2, 64, KvDtype::F32).expect("runner");
    let batch = Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: tokens.to_vec(),
            start_pos: 0,
            // Blocks of 16 tokens: 4 hold the 64.
            block_table: vec![0, 1, 2, 3],
            logits: LogitsWanted::All,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    r.forward(&batch).expect("forward").data
}

fn gguf_name(hf: &str) -> String {
    let map = [
        ("model.embed_tokens.weight", "token_embd.weight".to_string()),
        ("model.norm.weight", "output_norm.weight".to_string()),
        ("model.norm.bias", "output_norm.bias".to_string()),
        ("lm_head.weight", "output.weight".to_string()),
        // Phi's last norm and its head's bias.
        (
            "model.final_layernorm.weight",
            "output_norm.weight".to_string(),
        ),
        ("model.final_layernorm.bias", "output_norm.bias".to_string()),
        ("lm_head.bias", "output.bias".to_string()),
    ];
    if let Some((_, g)) = map.iter().find(|(h, _)| *h == hf) {
        return g.clone();
    }
    let rest = hf.strip_prefix("model.layers.").expect("layer tensor");
    let (l, part) = rest.split_once('.').unwrap();
    let g = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        // StarCoder2's LayerNorm biases, its o_proj bias and its ungated MLP.
        "input_layernorm.bias" => "attn_norm.bias",
        "post_attention_layernorm.bias" => "ffn_norm.bias",
        "self_attn.o_proj.bias" => "attn_output.bias",
        "mlp.c_fc.weight" => "ffn_up.weight",
        "mlp.c_fc.bias" => "ffn_up.bias",
        "mlp.c_proj.weight" => "ffn_down.weight",
        "mlp.c_proj.bias" => "ffn_down.bias",
        // Phi's output product and ungated MLP.
        "self_attn.dense.weight" => "attn_output.weight",
        "self_attn.dense.bias" => "attn_output.bias",
        "mlp.fc1.weight" => "ffn_up.weight",
        "mlp.fc1.bias" => "ffn_up.bias",
        "mlp.fc2.weight" => "ffn_down.weight",
        "mlp.fc2.bias" => "ffn_down.bias",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        // Phi-3's joined tensors, as llama.cpp's converter names them (gate and up in one
        // double-height `ffn_up`).
        "self_attn.qkv_proj.weight" => "attn_qkv.weight",
        "mlp.gate_up_proj.weight" => "ffn_up.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "shared_mlp.output_linear.weight" => "ffn_down_shexp.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        // Jais 2's MLP biases.
        "mlp.up_proj.bias" => "ffn_up.bias",
        "mlp.down_proj.bias" => "ffn_down.bias",
        // Hunyuan's names of its per-head norms beside Qwen3's.
        "self_attn.q_norm.weight" | "self_attn.query_layernorm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" | "self_attn.key_layernorm.weight" => "attn_k_norm.weight",
        "mlp.gate.weight"
        | "mlp.gate.wg.weight"
        | "block_sparse_moe.gate.weight"
        | "block_sparse_moe.router.layer.weight" => "ffn_gate_inp.weight",
        "mlp.shared_expert_gate.weight" => "ffn_gate_inp_shexp.weight",
        // DeepSeek's name, ERNIE 4.5's.
        "mlp.gate.e_score_correction_bias"
        | "mlp.moe_statics.e_score_correction_bias"
        | "block_sparse_moe.e_score_correction_bias" => "exp_probs_b.bias",
        "mlp.shared_experts.gate_proj.weight" => "ffn_gate_shexp.weight",
        "mlp.shared_experts.up_proj.weight" => "ffn_up_shexp.weight",
        "mlp.shared_experts.down_proj.weight" => "ffn_down_shexp.weight",
        "mlp.shared_expert.gate_proj.weight" | "mlp.shared_mlp.gate_proj.weight" => {
            "ffn_gate_shexp.weight"
        }
        "mlp.shared_expert.up_proj.weight" | "mlp.shared_mlp.up_proj.weight" => {
            "ffn_up_shexp.weight"
        }
        "mlp.shared_expert.down_proj.weight" | "mlp.shared_mlp.down_proj.weight" => {
            "ffn_down_shexp.weight"
        }
        other => panic!("unexpected tensor {other}"),
    };
    format!("blk.{l}.{g}")
}

/// The tiny `arch` model as llama.cpp's converter writes it: llama's Q/K rows permuted for
/// its interleaved RoPE (phi3's are not), weights of rank 2 in `dtype`.
fn write_gguf(arch: &str, path: &Path, dtype: GgmlDType) {
    write_gguf_of(arch, arch, path, dtype, Experts::Stacked);
}

/// How a GGUF holds a layer's experts: stacked in one `[experts, rows, cols]` tensor per
/// projection (llama.cpp's converter since 2024), or one tensor per expert (early Mixtral
/// GGUFs).
#[derive(Clone, Copy, PartialEq)]
enum Experts {
    Stacked,
    Apart,
    /// Stacked, the expert matrices in MXFP4 (gpt-oss GGUFs).
    Mxfp4,
    /// Stacked, the expert matrices holding what MXFP4 rounds them to (in the type asked).
    Mxfp4Rounded,
    /// Stacked, each expert's gate and up joined in one `ffn_gate_up_exps` (llama.cpp's
    /// `--fuse-gate-up-exps`), a shared expert's in one double-height `ffn_up_shexp`.
    FusedGateUp,
}

/// `stacks` with each layer's gate and up stacks joined per expert (gate's rows, then up's)
/// into one `gate_up` stack, as llama.cpp's `--fuse-gate-up-exps` writes them.
fn fuse_gate_up(mut stacks: ExpertStacks) -> ExpertStacks {
    let layers: Vec<String> = stacks
        .keys()
        .filter(|(_, proj)| *proj == "gate")
        .map(|(l, _)| l.clone())
        .collect();
    for l in layers {
        let mut gate = stacks.remove(&(l.clone(), "gate")).unwrap();
        let mut up = stacks.remove(&(l.clone(), "up")).unwrap();
        gate.sort_by_key(|(e, _)| *e);
        up.sort_by_key(|(e, _)| *e);
        let joined = gate
            .into_iter()
            .zip(up)
            .map(|((e, g), (_, u))| (e, Tensor::cat(&[&g, &u], 0).unwrap()))
            .collect();
        stacks.insert((l, "gate_up"), joined);
    }
    stacks
}

/// An MXFP4 tensor to write: its name, shape and ggml blocks.
type Mxfp4Tensor = (String, Vec<usize>, Vec<u8>);

/// The values of `t` rounded as MXFP4 stores them, and its MXFP4 blocks.
fn mxfp4_of(t: &Tensor) -> (Tensor, Vec<u8>) {
    let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let blocks = mxfp4::quantize_ggml(&values);
    let rounded = Tensor::from_vec(mxfp4::dequantize_ggml(&blocks), t.dims(), &Device::Cpu);
    (rounded.unwrap(), blocks)
}

/// Writes a GGUF holding `mxfp4` tensors (`write_file_with_own`).
fn write_file_with_mxfp4(
    path: &Path,
    arch: &str,
    md: Vec<(&str, Value)>,
    tensors: &mut Vec<(String, QTensor)>,
    mxfp4: Vec<Mxfp4Tensor>,
) {
    let own: Vec<OwnTensor> = mxfp4
        .into_iter()
        .map(|(name, shape, blocks)| (name, shape, blocks, 39))
        .collect();
    tensors.extend(own.iter().map(carrier));
    write_file(path, arch, md, tensors);
    patch_own_types(path, &own);
}

/// A tensor of a block type candle's writer lacks: its name, shape, blocks and ggml type id.
type OwnTensor = (String, Vec<usize>, Vec<u8>, u32);

/// An F16 tensor of the same bytes as an own-type tensor (`[.., rows / 2, row bytes]`: two
/// rows of blocks per carrier row, as a row of 17-byte MXFP4 blocks may have an odd length),
/// to be patched to the real type and shape once written (`patch_own_types`).
fn carrier((name, shape, blocks, _): &OwnTensor) -> (String, QTensor) {
    let mut dims = shape.clone();
    let rows = dims[dims.len() - 2];
    assert!(
        rows.is_multiple_of(2),
        "{name}: an odd row count has no F16 carrier"
    );
    let row_bytes = blocks.len() / (shape.iter().product::<usize>() / shape[shape.len() - 1]);
    let n = dims.len();
    dims[n - 2] = rows / 2;
    dims[n - 1] = row_bytes;
    let q = qtensor_from_ggml(GgmlDType::F16, blocks, dims, &Device::Cpu).unwrap();
    (name.clone(), q)
}

/// Give each carrier written for `own` its real type id and two inner dimensions.
fn patch_own_types(path: &Path, own: &[OwnTensor]) {
    let mut bytes = std::fs::read(path).unwrap();
    for (name, shape, _, type_id) in own {
        // The info: name (u64 length + bytes), u32 dims, u64 dims innermost first, u32 type.
        let mut key = (name.len() as u64).to_le_bytes().to_vec();
        key.extend_from_slice(name.as_bytes());
        let at = bytes
            .windows(key.len())
            .position(|w| w == key.as_slice())
            .unwrap()
            + key.len();
        assert_eq!(bytes[at..at + 4], (shape.len() as u32).to_le_bytes());
        let (cols, rows) = (shape[shape.len() - 1] as u64, shape[shape.len() - 2] as u64);
        bytes[at + 4..at + 12].copy_from_slice(&cols.to_le_bytes());
        bytes[at + 12..at + 20].copy_from_slice(&rows.to_le_bytes());
        let ty = at + 4 + 8 * shape.len();
        assert_eq!(bytes[ty..ty + 4], 1u32.to_le_bytes(), "an F16 carrier");
        bytes[ty..ty + 4].copy_from_slice(&type_id.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// IQ4_NL blocks of `values` (32 each): the scale puts the largest value at the codebook's
/// end, each value at its nearest entry (llama.cpp's quantizer searches more; any valid blocks
/// serve here).
fn iq4_nl_blocks(values: &[f32]) -> Vec<u8> {
    use candor_kernels::quant::IQ4NL_VALUES;
    let mut out = Vec::new();
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = half::f16::from_f32(amax / 127.0);
        let step = d.to_f32();
        let index = |v: f32| {
            let miss = |i: usize| (IQ4NL_VALUES[i] as f32 * step - v).abs();
            (0..16)
                .min_by(|&a, &b| miss(a).total_cmp(&miss(b)))
                .unwrap() as u8
        };
        out.extend_from_slice(&d.to_le_bytes());
        out.extend((0..16).map(|i| index(block[i]) | index(block[i + 16]) << 4));
    }
    out
}

/// IQ4_NL weights (GGUF type 20, which candle cannot read) load and run in place on the CPU
/// kernels: the tiny llama with its matrices in IQ4_NL gives the logits of the same model
/// holding their values in F32 (up to the 8-bit activations), and the same with
/// `--dequantize`.
#[test]
fn iq4_nl_weights_give_the_logits_of_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f32.gguf");
    write_gguf("llama", &src, GgmlDType::F32);
    let mut file = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    // The IQ4_NL file's F32 tensors, the rounded file's, and the IQ4_NL matrices.
    let (mut iq_tensors, mut f32_tensors, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut file, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let dims = t.dims().to_vec();
        if dims.len() != 2
            || !dims[1].is_multiple_of(32)
            || !dims[0].is_multiple_of(2)
            || name.contains("norm")
        {
            for tensors in [&mut iq_tensors, &mut f32_tensors] {
                tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
            }
            continue;
        }
        let blocks = iq4_nl_blocks(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let mut values = vec![0f32; t.elem_count()];
        candor_kernels::quant::dequantize(
            candor_kernels::quant::QuantType::Iq4Nl,
            &blocks,
            &mut values,
        );
        let values = Tensor::from_vec(values, dims.clone(), &Device::Cpu).unwrap();
        let rounded = QTensor::quantize(&values, GgmlDType::F32).unwrap();
        f32_tensors.push((name.clone(), rounded));
        own.push((name.clone(), dims, blocks, 20));
    }
    assert!(own.len() >= 7, "the matrices of every layer are IQ4_NL");
    let md: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let write = |path: &Path, tensors: &[(String, QTensor)]| {
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut std::fs::File::create(path).unwrap(), &md, &refs).unwrap();
    };
    let (iq_path, f32_path) = (
        dir.path().join("iq4_nl.gguf"),
        dir.path().join("rounded.gguf"),
    );
    iq_tensors.extend(own.iter().map(carrier));
    write(&iq_path, &iq_tensors);
    patch_own_types(&iq_path, &own);
    write(&f32_path, &f32_tensors);

    let gguf = GgufFile::open(&iq_path, false).unwrap();
    let name = &own[0].0;
    let Ok(Some(HostWeight::Mapped(w))) = gguf.get(name) else {
        panic!("{name} is not read in place");
    };
    assert_eq!(w.dtype, BlockType::Iq4Nl);
    let want = logits(&f32_path);
    for dequantize in [false, true] {
        let d = max_abs_diff(&logits_of(&iq_path, dequantize), &want);
        eprintln!("IQ4_NL (dequantize {dequantize}): max |logit diff| {d}");
        let tol = if dequantize { 1e-4 } else { 0.3 };
        assert!(d < tol, "dequantize {dequantize}: logits differ by {d}");
    }
}

/// Gemma's (and OLMo 2's, EXAONE 4's) HF layer norms as llama.cpp names them: HF's
/// `post_attention_layernorm` is applied to the attention's output there,
/// `pre_feedforward_layernorm` is the FFN's input norm.
const GEMMA_NORMS: [(&str, &str); 3] = [
    (
        "post_attention_layernorm.weight",
        "post_attention_norm.weight",
    ),
    ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
];

/// GLM-4's post-norms as llama.cpp names them (its pre-FFN `post_attention_layernorm` is
/// llama's, `gguf_name`'s).
const GLM4_NORMS: [(&str, &str); 2] = [
    (
        "post_self_attn_layernorm.weight",
        "post_attention_norm.weight",
    ),
    ("post_mlp_layernorm.weight", "post_ffw_norm.weight"),
];

/// Llama 3's RoPE scaling as llama.cpp's converter writes it (`rope_freqs.weight`): a divisor
/// of each frequency, 1 for the short wavelengths, `factor` for the long ones, smoothed
/// between. None without a `llama3` rope_scaling.
fn llama3_rope_factors(cfg: &serde_json::Value) -> Option<Vec<f32>> {
    let rs = &cfg["rope_scaling"];
    if rs["rope_type"] != "llama3" {
        return None;
    }
    let f = |k: &str| rs[k].as_f64().unwrap();
    let (factor, low, high) = (f("factor"), f("low_freq_factor"), f("high_freq_factor"));
    let old = f("original_max_position_embeddings");
    let theta = cfg["rope_theta"].as_f64().unwrap();
    let dim = match cfg["head_dim"].as_u64() {
        Some(d) => d as f64,
        None => cfg["hidden_size"].as_f64().unwrap() / cfg["num_attention_heads"].as_f64().unwrap(),
    };
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    let factors = (0..(dim as usize) / 2).map(|i| {
        let freq = 1.0 / theta.powf(2.0 * i as f64 / dim);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        if wavelen < high_wavelen {
            1.0
        } else if wavelen > low_wavelen {
            factor as f32
        } else {
            let smooth = (old / wavelen - low) / (high - low);
            (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
        }
    });
    Some(factors.collect())
}

/// Apertus's norms as llama.cpp's converter names them.
/// AFMoE's norms, gate product, router and correction bias as llama.cpp's converter names
/// them.
const AFMOE_NAMES: [(&str, &str); 7] = [
    (
        "post_attention_layernorm.weight",
        "post_attention_norm.weight",
    ),
    ("pre_mlp_layernorm.weight", "ffn_norm.weight"),
    ("post_mlp_layernorm.weight", "post_ffw_norm.weight"),
    ("self_attn.gate_proj.weight", "attn_gate.weight"),
    ("mlp.router.gate.weight", "ffn_gate_inp.weight"),
    ("mlp.expert_bias", "exp_probs_b.bias"),
    ("input_layernorm.weight", "attn_norm.weight"),
];

const APERTUS_NORMS: [(&str, &str); 2] = [
    ("attention_layernorm.weight", "attn_norm.weight"),
    ("feedforward_layernorm.weight", "ffn_norm.weight"),
];

/// LFM2's layer tensors as llama.cpp's converter names them (its other names are llama's).
const LFM2_NAMES: [(&str, &str); 19] = [
    ("operator_norm.weight", "attn_norm.weight"),
    ("ffn_norm.weight", "ffn_norm.weight"),
    ("self_attn.q_layernorm.weight", "attn_q_norm.weight"),
    ("self_attn.k_layernorm.weight", "attn_k_norm.weight"),
    ("self_attn.out_proj.weight", "attn_output.weight"),
    ("feed_forward.w1.weight", "ffn_gate.weight"),
    ("feed_forward.w3.weight", "ffn_up.weight"),
    ("feed_forward.w2.weight", "ffn_down.weight"),
    // LFM2-MoE's router and its choice bias.
    ("feed_forward.gate.weight", "ffn_gate_inp.weight"),
    ("feed_forward.expert_bias", "exp_probs_b.bias"),
    ("conv.in_proj.weight", "shortconv.in_proj.weight"),
    ("conv.in_proj.bias", "shortconv.in_proj.bias"),
    ("conv.conv.weight", "shortconv.conv.weight"),
    ("conv.conv.bias", "shortconv.conv.bias"),
    ("conv.out_proj.weight", "shortconv.out_proj.weight"),
    ("conv.out_proj.bias", "shortconv.out_proj.bias"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
];

/// llama.cpp's name of HF layer tensor `hf` where `renames` lists its part.
fn renamed_layer_tensor(hf: &str, renames: &[(&str, &str)]) -> Option<String> {
    let rest = hf.strip_prefix("model.layers.")?;
    let (l, part) = rest.split_once('.')?;
    let (_, g) = renames.iter().find(|(h, _)| *h == part)?;
    Some(format!("blk.{l}.{g}"))
}

/// A Falcon checkout's tensor as llama.cpp's converter writes it: its GGUF name (`ln_mlp` as
/// `attn_norm_2`), `query_key_value`'s rows regrouped from per KV head (its q heads, k, v) to
/// all q, then k, then v.
fn falcon_tensor(name: &str, t: &Tensor, heads: usize, kv_heads: usize) -> (String, Tensor) {
    let name = name.strip_prefix("transformer.").unwrap();
    let top = match name {
        "word_embeddings.weight" => Some("token_embd.weight"),
        // BLOOM's norm of the embeddings.
        "word_embeddings_layernorm.weight" => Some("token_embd_norm.weight"),
        "word_embeddings_layernorm.bias" => Some("token_embd_norm.bias"),
        "ln_f.weight" => Some("output_norm.weight"),
        "ln_f.bias" => Some("output_norm.bias"),
        _ => None,
    };
    if let Some(g) = top {
        return (g.to_string(), t.clone());
    }
    let (l, part) = name.strip_prefix("h.").unwrap().split_once('.').unwrap();
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let g = match module {
        "input_layernorm" | "ln_attn" => "attn_norm",
        "ln_mlp" => "attn_norm_2",
        // A sequential block's (BLOOM's).
        "post_attention_layernorm" => "ffn_norm",
        "self_attention.query_key_value" => "attn_qkv",
        "self_attention.dense" => "attn_output",
        "mlp.dense_h_to_4h" => "ffn_up",
        "mlp.dense_4h_to_h" => "ffn_down",
        other => panic!("unexpected tensor {other}"),
    };
    let t = match module {
        "self_attention.query_key_value" => grouped_qkv_as_q_k_v(t, kv_heads, heads / kv_heads),
        _ => t.clone(),
    };
    (format!("blk.{l}.{g}.{suffix}"), t)
}

/// An MPT checkout's tensor as llama.cpp's converter writes it: its GGUF name (`Wqkv` is
/// already q rows, then k, then v).
fn mpt_tensor(name: &str, t: &Tensor) -> (String, Tensor) {
    let name = name.strip_prefix("transformer.").unwrap();
    let top = match name {
        "wte.weight" => Some("token_embd.weight"),
        "norm_f.weight" => Some("output_norm.weight"),
        _ => None,
    };
    if let Some(g) = top {
        return (g.to_string(), t.clone());
    }
    let (l, part) = name
        .strip_prefix("blocks.")
        .unwrap()
        .split_once('.')
        .unwrap();
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let g = match module {
        "norm_1" => "attn_norm",
        "norm_2" => "ffn_norm",
        "attn.Wqkv" => "attn_qkv",
        "attn.out_proj" => "attn_output",
        "ffn.up_proj" => "ffn_up",
        "ffn.down_proj" => "ffn_down",
        other => panic!("unexpected tensor {other}"),
    };
    (format!("blk.{l}.{g}.{suffix}"), t.clone())
}

/// The rows of a q/k/v tensor stored per group (`groups` groups of `q_per` q heads, then one
/// k and one v head: GPT-NeoX's per head, Falcon's per KV head) as llama.cpp's converters
/// write them: all q rows, then k, then v (weights and biases alike).
fn grouped_qkv_as_q_k_v(t: &Tensor, groups: usize, q_per: usize) -> Tensor {
    let rows = t.dim(0).unwrap();
    let d = rows / (groups * (q_per + 2));
    let rest = &t.dims()[1..];
    let grouped = t.reshape([&[groups, q_per + 2, d], rest].concat()).unwrap();
    let part = |from: usize, n: usize| {
        let p = grouped.narrow(1, from, n).unwrap().contiguous().unwrap();
        p.reshape([&[groups * n * d], rest].concat()).unwrap()
    };
    Tensor::cat(&[part(0, q_per), part(q_per, 1), part(q_per + 1, 1)], 0).unwrap()
}

/// A GPT-2 checkout's tensor as llama.cpp's converter writes it: its GGUF name, the `Conv1D`
/// weights (`[in, out]`) transposed (`conv1d`; GPT-BigCode's, the same names, are `nn.Linear`,
/// `[out, in]` already).
fn gpt2_tensor(name: &str, t: &Tensor, conv1d: bool) -> (String, Tensor) {
    let name = name.strip_prefix("transformer.").unwrap_or(name);
    let top = match name {
        "wte.weight" => Some("token_embd.weight"),
        "wpe.weight" => Some("position_embd.weight"),
        "ln_f.weight" => Some("output_norm.weight"),
        "ln_f.bias" => Some("output_norm.bias"),
        _ => None,
    };
    if let Some(g) = top {
        return (g.to_string(), t.clone());
    }
    let (l, part) = name.strip_prefix("h.").unwrap().split_once('.').unwrap();
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let g = match module {
        "ln_1" => "attn_norm",
        "ln_2" => "ffn_norm",
        "attn.c_attn" => "attn_qkv",
        "attn.c_proj" => "attn_output",
        "mlp.c_fc" => "ffn_up",
        "mlp.c_proj" => "ffn_down",
        other => panic!("unexpected tensor {other}"),
    };
    let t = match t.rank() {
        2 if conv1d => t.t().unwrap().contiguous().unwrap(),
        _ => t.clone(),
    };
    (format!("blk.{l}.{g}.{suffix}"), t)
}

/// A GPT-NeoX checkout's tensor as llama.cpp's converter writes it: its GGUF name, and for
/// `query_key_value` the rows regrouped from per head (q, k, v of each head) to all q, then k,
/// then v.
fn gpt_neox_tensor(name: &str, t: &Tensor, heads: usize) -> (String, Tensor) {
    let top = match name {
        "gpt_neox.embed_in.weight" => Some("token_embd.weight"),
        "embed_out.weight" => Some("output.weight"),
        "gpt_neox.final_layer_norm.weight" => Some("output_norm.weight"),
        "gpt_neox.final_layer_norm.bias" => Some("output_norm.bias"),
        _ => None,
    };
    if let Some(g) = top {
        return (g.to_string(), t.clone());
    }
    let rest = name.strip_prefix("gpt_neox.layers.").expect("layer tensor");
    let (l, part) = rest.split_once('.').unwrap();
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let g = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "attention.query_key_value" => "attn_qkv",
        "attention.dense" => "attn_output",
        "mlp.dense_h_to_4h" => "ffn_up",
        "mlp.dense_4h_to_h" => "ffn_down",
        other => panic!("unexpected tensor {other}"),
    };
    let t = match module {
        "attention.query_key_value" => grouped_qkv_as_q_k_v(t, heads, 1),
        _ => t.clone(),
    };
    (format!("blk.{l}.{g}.{suffix}"), t)
}

/// Layer of a Granite MoE stacked expert tensor, and whether it is `input_linear` (gate and
/// up) rather than `output_linear` (down).
fn granite_moe_stack(name: &str) -> Option<(String, bool)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (l, part) = rest.split_once('.')?;
    let input = match part {
        "block_sparse_moe.input_linear.weight" => true,
        "block_sparse_moe.output_linear.weight" => false,
        _ => return None,
    };
    Some((l.to_string(), input))
}

/// Layer, `q` or `k`, and head of one of StableLM-2-12B's per-head norms
/// (`self_attn.q_layernorm.norms.H.weight`).
fn hf_head_norm(name: &str) -> Option<(String, &'static str, usize)> {
    let (l, part) = name.strip_prefix("model.layers.")?.split_once('.')?;
    let (qk, rest) = match part.strip_prefix("self_attn.q_layernorm.norms.") {
        Some(rest) => ("q", rest),
        None => ("k", part.strip_prefix("self_attn.k_layernorm.norms.")?),
    };
    Some((
        l.to_string(),
        qk,
        rest.strip_suffix(".weight")?.parse().ok()?,
    ))
}

/// Layer, projection (gate/up/down) and expert of an HF expert tensor (Qwen's
/// `mlp.experts.E.gate_proj`, Mixtral's `block_sparse_moe.experts.E.w1`).
fn hf_expert(name: &str) -> Option<(String, &'static str, usize)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (l, part) = rest.split_once('.')?;
    let part = part
        .strip_prefix("mlp.experts.")
        .or_else(|| part.strip_prefix("block_sparse_moe.experts."))
        .or_else(|| part.strip_prefix("feed_forward.experts."))?;
    let (e, proj) = part.split_once('.')?;
    let proj = match proj {
        "gate_proj.weight" | "w1.weight" => "gate",
        "up_proj.weight" | "w3.weight" => "up",
        "down_proj.weight" | "w2.weight" => "down",
        _ => return None,
    };
    Some((l.to_string(), proj, e.parse().ok()?))
}

/// Llama 4's stacked experts (`[experts, in, out]`; gate's columns, then up's), split per
/// expert and transposed as llama.cpp's converter writes them; false for another tensor.
fn llama4_stacked_experts(name: &str, t: &Tensor, stacks: &mut ExpertStacks) -> bool {
    let Some((l, what)) = name
        .strip_prefix("model.layers.")
        .and_then(|r| r.split_once(".feed_forward.experts."))
    else {
        return false;
    };
    for e in 0..t.dim(0).unwrap() {
        let te = t.get(e).unwrap();
        let mut push = |proj, part: Tensor| {
            let part = part.t().unwrap().contiguous().unwrap();
            stacks
                .entry((l.to_string(), proj))
                .or_default()
                .push((e, part));
        };
        if what == "gate_up_proj" {
            let half = te.dim(1).unwrap() / 2;
            push("gate", te.narrow(1, 0, half).unwrap());
            push("up", te.narrow(1, half, half).unwrap());
        } else {
            push("down", te);
        }
    }
    true
}

/// A Llama 4 FFN tensor's name as Qwen2-MoE's checkouts spell it (`mlp.gate`,
/// `mlp.shared_expert.*`, `mlp.*`); other names as they are.
fn llama4_ffn_name(name: &str) -> String {
    name.replace(".feed_forward.router.", ".mlp.gate.")
        .replace(".feed_forward.", ".mlp.")
}

/// gpt-oss's tensors as llama.cpp's converter writes them, for an HF tensor that is one of
/// its own: the sinks and the router (F32), the pre-FFN norm (`post_attention_norm` there),
/// and the stacked experts (`[experts, in, out]`, gate and up interleaved) split and
/// transposed into `ffn_{gate,up,down}_exps` weights and biases. None for the others.
fn gpt_oss_tensors(name: &str, t: &Tensor) -> Option<Vec<(String, Tensor, bool)>> {
    let rest = name.strip_prefix("model.layers.")?;
    let (l, part) = rest.split_once('.')?;
    let one = |g: &str, quantized: bool| Some(vec![(format!("blk.{l}.{g}"), t.clone(), quantized)]);
    // Columns 2i (gate) and 2i + 1 (up) of the last dimension.
    let halves = |t: &Tensor| -> [Tensor; 2] {
        let mut dims = t.dims().to_vec();
        let last = dims.len() - 1;
        dims[last] /= 2;
        dims.push(2);
        let pairs = t.reshape(dims).unwrap();
        [0, 1].map(|k| {
            pairs
                .narrow(last + 1, k, 1)
                .unwrap()
                .squeeze(last + 1)
                .unwrap()
        })
    };
    let exps = |what: &str, t: Tensor, bias: bool| {
        let t = if bias { t } else { t.transpose(1, 2).unwrap() };
        let suffix = if bias { "bias" } else { "weight" };
        (
            format!("blk.{l}.ffn_{what}_exps.{suffix}"),
            t.contiguous().unwrap(),
            !bias,
        )
    };
    match part {
        "self_attn.sinks" => one("attn_sinks.weight", false),
        "self_attn.o_proj.bias" => one("attn_output.bias", false),
        "mlp.router.weight" => one("ffn_gate_inp.weight", false),
        "mlp.router.bias" => one("ffn_gate_inp.bias", false),
        "post_attention_layernorm.weight" => one("post_attention_norm.weight", false),
        "mlp.experts.gate_up_proj" | "mlp.experts.gate_up_proj_bias" => {
            let bias = part.ends_with("_bias");
            let [gate, up] = halves(t);
            Some(vec![exps("gate", gate, bias), exps("up", up, bias)])
        }
        "mlp.experts.down_proj" => Some(vec![exps("down", t.clone(), false)]),
        "mlp.experts.down_proj_bias" => Some(vec![exps("down", t.clone(), true)]),
        _ => None,
    }
}

/// Each layer's experts by projection: (layer, gate/up/down) → (expert, matrix).
type ExpertStacks = HashMap<(String, &'static str), Vec<(usize, Tensor)>>;

/// The `[experts, rows, cols]` tensors of `stacks`, as llama.cpp names them.
fn stacked(stacks: ExpertStacks, quantize: impl Fn(&Tensor) -> QTensor) -> Vec<(String, QTensor)> {
    stacks
        .into_iter()
        .map(|((l, proj), mut parts)| {
            parts.sort_by_key(|(e, _)| *e);
            let t = Tensor::stack(&parts.iter().map(|(_, t)| t).collect::<Vec<_>>(), 0).unwrap();
            (format!("blk.{l}.ffn_{proj}_exps.weight"), quantize(&t))
        })
        .collect()
}

/// A GGUF of `arch` with metadata `md` (keys under `{arch}.`) and `tensors`.
fn write_file(path: &Path, arch: &str, md: Vec<(&str, Value)>, tensors: &[(String, QTensor)]) {
    let md: Vec<(String, Value)> = md
        .into_iter()
        .map(|(k, v)| (format!("{arch}.{k}"), v))
        .chain([(
            "general.architecture".to_string(),
            Value::String(arch.into()),
        )])
        .collect();
    write_gguf_file(path, &md, tensors);
}

/// `write_gguf` of the tiny model in `fixture` as an `arch` GGUF. A Phi-3 with RoPE over
/// part of each head and LongRoPE gets llama.cpp's keys and tensors for them
/// (`rope.dimension_count`, `rope_factors_short`/`_long`, `rope.scaling.*`).
fn write_gguf_of(fixture: &str, arch: &str, path: &Path, dtype: GgmlDType, experts: Experts) {
    let src = fixtures().join("tiny").join(fixture);
    // llama.cpp converts Granite and SmolLM3 as llama models: their Q/K rows permuted too.
    let permuted = matches!(
        arch,
        "llama" | "granite" | "granitemoe" | "smollm3" | "arcee" | "olmo" | "mistral3" | "minicpm"
    );
    let mut cfg = read_json(&src.join("config.json"));
    if matches!(arch, "gpt2" | "starcoder") {
        // GPT-2's own key names, as the other configs name them.
        for (key, gpt2) in [
            ("hidden_size", "n_embd"),
            ("num_attention_heads", "n_head"),
            ("num_hidden_layers", "n_layer"),
            ("max_position_embeddings", "n_positions"),
            ("layer_norm_eps", "layer_norm_epsilon"),
        ] {
            cfg[key] = cfg[gpt2].clone();
        }
        cfg["intermediate_size"] = (4 * cfg["n_embd"].as_u64().unwrap()).into();
        cfg["rope_theta"] = 10000.0.into();
    }
    // BLOOM's and MPT's own key names, as the other configs name them; ALiBi's files have no
    // RoPE base, the writer one anyway (unread).
    let own_keys: &[(&str, &str)] = match arch {
        "bloom" => &[
            ("num_attention_heads", "n_head"),
            ("num_hidden_layers", "n_layer"),
            ("layer_norm_eps", "layer_norm_epsilon"),
        ],
        "mpt" => &[
            ("hidden_size", "d_model"),
            ("num_attention_heads", "n_heads"),
            ("num_hidden_layers", "n_layers"),
            ("max_position_embeddings", "max_seq_len"),
            ("layer_norm_eps", "layer_norm_epsilon"),
        ],
        _ => &[],
    };
    if !own_keys.is_empty() {
        for (key, own) in own_keys {
            cfg[*key] = cfg[*own].clone();
        }
        cfg["intermediate_size"] = (4 * cfg["hidden_size"].as_u64().unwrap()).into();
        if cfg["max_position_embeddings"].is_null() {
            cfg["max_position_embeddings"] = 2048.into();
        }
        cfg["rope_theta"] = 10000.0.into();
    }
    if arch == "falcon" {
        let kv = match cfg["new_decoder_architecture"] == true {
            true => cfg["num_kv_heads"].clone(),
            false => 1.into(),
        };
        cfg["num_key_value_heads"] = kv;
        cfg["intermediate_size"] = (4 * cfg["hidden_size"].as_u64().unwrap()).into();
        cfg["layer_norm_eps"] = cfg["layer_norm_epsilon"].clone();
    }
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    // GPT-NeoX's config names no KV heads: every head has its own.
    let kv_heads = cfg["num_key_value_heads"].as_u64().unwrap_or(heads as u64) as usize;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut stacks = ExpertStacks::default();
    // StableLM-2-12B's per-head norms, stacked as `[heads, head_dim]` by llama.cpp's converter.
    let mut head_norms: HashMap<(String, &str), Vec<(usize, Tensor)>> = HashMap::new();
    // Apertus's xIELU numbers, written as per-layer metadata arrays by llama.cpp's converter.
    let mut xielu: HashMap<String, Vec<(usize, f32)>> = HashMap::new();
    let mut mxfp4_tensors: Vec<Mxfp4Tensor> = Vec::new();
    // Each layer's shared gate and up, to be joined (`Experts::FusedGateUp`).
    let mut shared_halves: HashMap<String, [Option<Tensor>; 2]> = HashMap::new();
    for (name, t) in &tensors {
        if arch == "llama4" && llama4_stacked_experts(name, t, &mut stacks) {
            continue;
        }
        // Llama 4's FFN names, as the other MoE checkouts spell them.
        let llama4_name = (arch == "llama4").then(|| llama4_ffn_name(name));
        let name = llama4_name.as_ref().unwrap_or(name);
        // The families whose checkouts name every tensor their own way.
        let renamed = match arch {
            "falcon" | "bloom" => Some(falcon_tensor(name, t, heads, kv_heads)),
            "mpt" => Some(mpt_tensor(name, t)),
            "gpt2" => Some(gpt2_tensor(name, t, true)),
            "starcoder" => Some(gpt2_tensor(name, t, false)),
            "gptneox" => Some(gpt_neox_tensor(name, t, heads)),
            _ => None,
        };
        if let Some((gguf, t)) = renamed {
            let ty = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
            q.push((gguf, QTensor::quantize(&t, ty).unwrap()));
            continue;
        }
        if let Some(parts) = gpt_oss_tensors(name, t).filter(|_| arch == "gpt-oss") {
            for (gguf, t, quantized) in parts {
                match (quantized, experts) {
                    (true, Experts::Mxfp4) => {
                        mxfp4_tensors.push((gguf, t.dims().to_vec(), mxfp4_of(&t).1));
                    }
                    (true, Experts::Mxfp4Rounded) => {
                        let rounded = mxfp4_of(&t).0;
                        q.push((gguf, QTensor::quantize(&rounded, dtype).unwrap()));
                    }
                    _ => {
                        let ty = if quantized { dtype } else { GgmlDType::F32 };
                        q.push((gguf, QTensor::quantize(&t, ty).unwrap()));
                    }
                }
            }
            continue;
        }
        if let Some((l, input)) = granite_moe_stack(name) {
            // Granite MoE's stacks, split per expert (gate rows, then up rows) and stacked
            // again as llama.cpp's converter writes them.
            for e in 0..t.dim(0).unwrap() {
                let te = t.get(e).unwrap();
                if input {
                    let half = te.dim(0).unwrap() / 2;
                    for (k, proj) in ["gate", "up"].into_iter().enumerate() {
                        let part = te.narrow(0, k * half, half).unwrap();
                        stacks.entry((l.clone(), proj)).or_default().push((e, part));
                    }
                } else {
                    stacks.entry((l.clone(), "down")).or_default().push((e, te));
                }
            }
            continue;
        }
        if let Some(l) = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.strip_suffix(".shared_mlp.input_linear.weight"))
        {
            // granitemoeshared's MLP: gate rows, then up rows, apart as llama.cpp writes them.
            let half = t.dim(0).unwrap() / 2;
            for (k, proj) in ["gate", "up"].into_iter().enumerate() {
                // Its own storage: quantize reads a view's storage from the start.
                let part = t.narrow(0, k * half, half).unwrap();
                let values = part.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let part = Tensor::from_vec(values, part.dims(), &Device::Cpu).unwrap();
                let name = format!("blk.{l}.ffn_{proj}_shexp.weight");
                q.push((name, QTensor::quantize(&part, dtype).unwrap()));
            }
            continue;
        }
        if let Some((l, qk, h)) = hf_head_norm(name) {
            head_norms.entry((l, qk)).or_default().push((h, t.clone()));
            continue;
        }
        let act_fn = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once(".mlp.act_fn."));
        if let Some((l, what)) = act_fn {
            let v = t.to_dtype(candle_core::DType::F32).unwrap();
            let v = v.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
            xielu
                .entry(what.to_string())
                .or_default()
                .push((l.parse().unwrap(), v));
            continue;
        }
        if let Some((l, proj, e)) = hf_expert(name) {
            match experts {
                Experts::Apart => q.push((
                    format!("blk.{l}.ffn_{proj}.{e}.weight"),
                    QTensor::quantize(t, dtype).unwrap(),
                )),
                _ => stacks.entry((l, proj)).or_default().push((e, t.clone())),
            }
            continue;
        }
        let mut t = t.clone();
        if arch.starts_with("lfm2") && name.ends_with("conv.conv.weight") {
            // The converter squeezes the depthwise kernel's middle dimension: `[hidden, kernel]`.
            t = t.squeeze(1).unwrap();
        }
        let gemma = arch.starts_with("gemma");
        if (gemma || arch == "nemotron") && name.ends_with("norm.weight") {
            // HF Gemma and Nemotron store w for a (1 + w) scale; llama.cpp's converters write
            // 1 + w.
            t = t.affine(1.0, 1.0).unwrap();
        }
        if permuted && name.ends_with("q_proj.weight") {
            t = permute_rope_rows(&t, heads);
        } else if permuted && name.ends_with("k_proj.weight") {
            t = permute_rope_rows(&t, kv_heads);
        }
        // llama.cpp keeps experts' routers in F32 whatever the type asked for.
        let router = name.ends_with(".gate.weight")
            || name.ends_with(".gate.wg.weight")
            || name.ends_with(".router.layer.weight");
        // llama.cpp keeps LFM2's convolution kernels in F32 (ggml's conv reads them so).
        let conv_kernel = name.ends_with("conv.conv.weight");
        // Command R+'s per-head norms and ERNIE 4.5's correction bias are 2-D; llama.cpp
        // keeps norms and biases in F32.
        let kept_f32 = name.ends_with("_norm.weight") || name.ends_with("correction_bias");
        let ty = if t.rank() == 2 && !router && !conv_kernel && !kept_f32 {
            dtype
        } else {
            GgmlDType::F32
        };
        let norms: &[(&str, &str)] = match arch {
            "glm4" => &GLM4_NORMS,
            // Gemma (1) has llama's two norms.
            "gemma" => &[],
            _ if gemma || matches!(arch, "olmo2" | "exaone4") => &GEMMA_NORMS,
            "lfm2" | "lfm2moe" => &LFM2_NAMES,
            "apertus" => &APERTUS_NORMS,
            "afmoe" => &AFMOE_NAMES,
            _ => &[],
        };
        let gguf = match name.as_str() {
            "model.embedding_norm.weight" => "token_embd_norm.weight".to_string(),
            _ => renamed_layer_tensor(name, norms).unwrap_or_else(|| gguf_name(name)),
        };
        let shared_half = ["ffn_gate_shexp.weight", "ffn_up_shexp.weight"]
            .into_iter()
            .position(|half| gguf.ends_with(half));
        match shared_half {
            // Joined below, gate's rows first, as the swash MoE converter writes them.
            Some(half) if experts == Experts::FusedGateUp => {
                let l = gguf.split('.').nth(1).unwrap().to_string();
                shared_halves.entry(l).or_default()[half] = Some(t);
            }
            _ => q.push((gguf, QTensor::quantize(&t, ty).unwrap())),
        }
    }
    if experts == Experts::FusedGateUp {
        stacks = fuse_gate_up(stacks);
    }
    for (l, [gate, up]) in shared_halves {
        let joined = Tensor::cat(&[gate.unwrap(), up.unwrap()], 0).unwrap();
        let name = format!("blk.{l}.ffn_up_shexp.weight");
        q.push((name, QTensor::quantize(&joined, dtype).unwrap()));
    }
    q.extend(stacked(stacks, |t| QTensor::quantize(t, dtype).unwrap()));
    if let Some(factors) = llama3_rope_factors(&cfg) {
        let n = factors.len();
        let t = Tensor::from_vec(factors, n, &Device::Cpu).unwrap();
        q.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32).unwrap(),
        ));
    }
    for ((l, qk), mut heads) in head_norms {
        heads.sort_by_key(|(h, _)| *h);
        let heads: Vec<Tensor> = heads.into_iter().map(|(_, t)| t).collect();
        let t = Tensor::stack(&heads, 0).unwrap();
        let name = format!("blk.{l}.attn_{qk}_norm.weight");
        q.push((name, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let u = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let mut extra: Vec<(&str, Value)> = Vec::new();
    for (what, key) in [
        ("alpha_p", "xielu.alpha_p"),
        ("alpha_n", "xielu.alpha_n"),
        ("beta", "xielu.beta"),
        ("eps", "xielu.eps"),
    ] {
        if let Some(mut values) = xielu.remove(what) {
            values.sort_by_key(|(l, _)| *l);
            let values = values.into_iter().map(|(_, v)| Value::F32(v)).collect();
            extra.push((key, Value::Array(values)));
        }
    }
    let experts_key = [
        "num_experts",
        "num_local_experts",
        "n_routed_experts",
        "moe_num_experts",
    ]
    .into_iter()
    .find(|k| cfg[k].is_u64());
    if let Some(key) = experts_key {
        extra.push(("expert_count", u(key)));
        let used = ["num_experts_per_tok", "moe_k", "moe_topk"]
            .into_iter()
            .find(|k| cfg[k].is_u64())
            .unwrap();
        extra.push(("expert_used_count", u(used)));
        if cfg["moe_intermediate_size"].is_u64() {
            extra.push(("expert_feed_forward_length", u("moe_intermediate_size")));
        }
        if matches!(arch, "gpt-oss" | "minimax-m2" | "llama4") {
            extra.push(("expert_feed_forward_length", u("intermediate_size")));
        }
        if arch == "llama4" {
            extra.push(("interleave_moe_layer_step", u("interleave_moe_layer_step")));
        }
        if arch == "hunyuan-moe" {
            // Its experts and its one shared expert are all of `intermediate_size`.
            extra.push(("expert_feed_forward_length", u("intermediate_size")));
            extra.push(("expert_shared_feed_forward_length", u("intermediate_size")));
        }
        if cfg["first_k_dense_replace"].is_u64() {
            // DeepSeek-style routing, as llama.cpp's deepseek2 and glm4moe keys say it.
            let f = |k: &str| Value::F32(cfg[k].as_f64().unwrap() as f32);
            extra.extend([
                ("leading_dense_block_count", u("first_k_dense_replace")),
                ("expert_shared_count", u("n_shared_experts")),
                ("expert_weights_scale", f("routed_scaling_factor")),
                (
                    "expert_weights_norm",
                    Value::Bool(cfg["norm_topk_prob"] == true),
                ),
                ("expert_group_count", u("n_group")),
                ("expert_group_used_count", u("topk_group")),
            ]);
            // dots1's converter writes no gating function (its routers are sigmoid ones).
            if arch != "dots1" {
                extra.push(("expert_gating_func", Value::U32(2)));
            }
        }
        if cfg["moe_num_shared_experts"].is_u64() {
            // ERNIE 4.5's keys, as llama.cpp's converter writes them (the shared experts'
            // width as their count times an expert's: the converter's own arithmetic gives
            // the same for the released models).
            let shared = cfg["moe_num_shared_experts"].as_u64().unwrap();
            let ff = cfg["moe_intermediate_size"].as_u64().unwrap();
            extra.extend([
                ("expert_shared_count", u("moe_num_shared_experts")),
                (
                    "expert_shared_feed_forward_length",
                    Value::U32((shared * ff) as u32),
                ),
                ("leading_dense_block_count", u("moe_layer_start_index")),
                ("interleave_moe_layer_step", u("moe_layer_interval")),
            ]);
        }
        for shared in [
            "shared_expert_intermediate_size",
            "shared_intermediate_size",
        ] {
            if cfg[shared].as_u64().is_some_and(|n| n > 0) {
                extra.push(("expert_shared_feed_forward_length", u(shared)));
            }
        }
    }
    for (key, hf) in [
        ("attn_logit_softcapping", "attn_logit_softcapping"),
        ("final_logit_softcapping", "final_logit_softcapping"),
        ("attention.sliding_window", "sliding_window"),
    ] {
        let windowed = matches!(
            arch,
            "gemma2" | "gpt-oss" | "exaone4" | "cohere2" | "cohere2moe" | "starcoder2" | "afmoe"
        ) || fixture == "olmo3";
        if windowed && !cfg[hf].is_null() {
            let v = cfg[hf].as_f64().unwrap();
            extra.push((
                key,
                if key.contains("window") {
                    Value::U32(v as u32)
                } else {
                    Value::F32(v as f32)
                },
            ));
        }
    }
    // Granite's scalars, as llama.cpp's converter names them.
    for (key, hf) in [
        ("embedding_scale", "embedding_multiplier"),
        ("attention.scale", "attention_multiplier"),
        ("residual_scale", "residual_multiplier"),
        ("logit_scale", "logits_scaling"),
    ] {
        if let Some(v) = cfg[hf].as_f64().filter(|_| arch.starts_with("granite")) {
            extra.push((key, Value::F32(v as f32)));
        }
    }
    // MiniCPM's μP scalings, as llama.cpp's converter computes them from its config.
    if arch == "minicpm" {
        let f = |k: &str| cfg[k].as_f64().unwrap() as f32;
        let layers = f("num_hidden_layers");
        extra.push(("embedding_scale", Value::F32(f("scale_emb"))));
        extra.push((
            "residual_scale",
            Value::F32(f("scale_depth") / layers.sqrt()),
        ));
        extra.push((
            "logit_scale",
            Value::F32(f("hidden_size") / f("dim_model_base")),
        ));
    }
    // Cohere's, as llama.cpp's converter names them (its norms are LayerNorms).
    if matches!(arch, "command-r" | "cohere2" | "cohere2moe") {
        let f = |k: &str| Value::F32(cfg[k].as_f64().unwrap() as f32);
        extra.push(("attention.layer_norm_epsilon", f("layer_norm_eps")));
        extra.push(("logit_scale", f("logit_scale")));
    }
    if arch == "cohere2moe" {
        // Its converter's keys: the window per layer, the dense prefix, the routing.
        let types = |k: &str| cfg[k].as_array().unwrap().iter();
        let sliding = types("layer_types").map(|t| Value::Bool(t == "sliding_attention"));
        let dense = types("mlp_layer_types")
            .take_while(|t| *t == "dense")
            .count();
        let gating = match cfg["expert_selection_fn"].as_str() {
            Some("sigmoid") => 2,
            _ => 1,
        };
        let shared = cfg["num_shared_experts"].as_u64().unwrap();
        let width = cfg["intermediate_size"].as_u64().unwrap();
        extra.extend([
            (
                "attention.sliding_window_pattern",
                Value::Array(sliding.collect()),
            ),
            ("leading_dense_block_count", Value::U32(dense as u32)),
            ("expert_feed_forward_length", u("intermediate_size")),
            (
                "expert_weights_norm",
                Value::Bool(cfg["norm_topk_prob"] == true),
            ),
            ("expert_gating_func", Value::U32(gating)),
            ("expert_shared_count", Value::U32(shared as u32)),
            (
                "expert_shared_feed_forward_length",
                Value::U32((shared * width) as u32),
            ),
        ]);
    }
    if arch == "olmo" {
        // OLMo's fixed LayerNorm epsilon and its clamp, as llama.cpp's converter writes them.
        extra.push(("attention.layer_norm_epsilon", Value::F32(1e-5)));
        if let Some(clip) = cfg["clip_qkv"].as_f64() {
            extra.push(("attention.clamp_kqv", Value::F32(clip as f32)));
        }
    }
    if arch == "mpt" {
        // MPT's ALiBi and clamp, as llama.cpp's converter writes them.
        let attn = &cfg["attn_config"];
        let f = |v: &serde_json::Value| Value::F32(v.as_f64().unwrap() as f32);
        extra.push(("attention.max_alibi_bias", f(&attn["alibi_bias_max"])));
        if !attn["clip_qkv"].is_null() {
            extra.push(("attention.clamp_kqv", f(&attn["clip_qkv"])));
        }
    }
    if arch == "gptneox" {
        let parallel = cfg["use_parallel_residual"].as_bool().unwrap();
        extra.push(("use_parallel_residual", Value::Bool(parallel)));
    }
    if matches!(
        arch,
        "starcoder2"
            | "jais2"
            | "phi2"
            | "gptneox"
            | "stablelm"
            | "nemotron"
            | "gpt2"
            | "starcoder"
            | "falcon"
            | "bloom"
            | "mpt"
    ) {
        let eps = cfg["norm_epsilon"]
            .as_f64()
            .or(cfg["layer_norm_eps"].as_f64())
            .or(cfg["norm_eps"].as_f64())
            .unwrap() as f32;
        extra.push(("attention.layer_norm_epsilon", Value::F32(eps)));
    }
    if cfg["head_dim"].is_u64() {
        extra.push(("attention.key_length", u("head_dim")));
        extra.push(("attention.value_length", u("head_dim")));
    }
    // MiniMax-M2's converter writes its `rotary_dim`.
    if let Some(rotary) = cfg["rotary_dim"].as_u64().filter(|_| arch == "minimax-m2") {
        extra.push(("rope.dimension_count", Value::U32(rotary as u32)));
    } else if let Some(partial) = cfg["partial_rotary_factor"].as_f64().filter(|&p| p < 1.0) {
        let head_dim = cfg["hidden_size"].as_u64().unwrap() as f64 / heads as f64;
        extra.push((
            "rope.dimension_count",
            Value::U32((head_dim * partial) as u32),
        ));
    }
    // transformers 5 keeps the scaling in `rope_parameters`.
    let rope_scaling = cfg["rope_scaling"]
        .as_object()
        .or(cfg["rope_parameters"].as_object());
    if arch == "mistral3" {
        // Ministral 3's, as llama.cpp's converter writes them.
        let rs = rope_scaling.unwrap();
        let f = |k: &str| Value::F32(rs[k].as_f64().unwrap() as f32);
        extra.push(("rope.scaling.yarn_log_multiplier", f("mscale_all_dim")));
        extra.push(("attention.temperature_scale", f("llama_4_scaling_beta")));
    }
    if let Some(rs) = rope_scaling.filter(|rs| rs.get("rope_type").is_some_and(|t| t == "yarn")) {
        let f = |k: &str| Value::F32(rs[k].as_f64().unwrap() as f32);
        extra.extend([
            ("rope.scaling.type", Value::String("yarn".into())),
            ("rope.scaling.factor", f("factor")),
            (
                "rope.scaling.original_context_length",
                Value::U32(rs["original_max_position_embeddings"].as_u64().unwrap() as u32),
            ),
        ]);
        // The betas where the config sets them (else both sides take 32 and 1).
        for (key, hf) in [
            ("rope.scaling.yarn_beta_fast", "beta_fast"),
            ("rope.scaling.yarn_beta_slow", "beta_slow"),
        ] {
            if rs.contains_key(hf) {
                extra.push((key, f(hf)));
            }
        }
    }
    if let Some(rs) = rope_scaling.filter(|rs| rs.contains_key("short_factor")) {
        for (key, name) in [
            ("short_factor", "rope_factors_short.weight"),
            ("long_factor", "rope_factors_long.weight"),
        ] {
            let f: Vec<f32> = as_f32s(&rs[key]);
            let t = Tensor::from_vec(f.clone(), f.len(), &Device::Cpu).unwrap();
            q.push((
                name.to_string(),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            ));
        }
        let original = cfg["original_max_position_embeddings"].as_u64().unwrap() as usize;
        let max = cfg["max_position_embeddings"].as_u64().unwrap() as f32;
        let factor = max / original as f32;
        let attn = (1.0 + factor.ln() / (original as f32).ln()).sqrt();
        extra.push((
            "rope.scaling.original_context_length",
            Value::U32(original as u32),
        ));
        extra.push(("rope.scaling.attn_factor", Value::F32(attn)));
    }
    // Hunyuan's NTK alpha as llama.cpp's converter writes it: into the base.
    // transformers 5 keeps the base in `rope_parameters`.
    let mut freq_base = cfg["rope_theta"]
        .as_f64()
        .or(cfg["rope_parameters"]["rope_theta"].as_f64())
        .unwrap();
    if let Some(alpha) = cfg["rope_scaling"]["alpha"].as_f64() {
        let d = cfg["head_dim"].as_f64().unwrap();
        freq_base *= alpha.powf(d / (d - 2.0));
    }
    // LFM2's as its converter writes them: the FFN's width as made (two thirds of the
    // config's, rounded), KV heads per layer (0 for the convolutions), the kernel's length.
    // LFM2-MoE's converter adds its experts' keys: sigmoid routers past the dense layers.
    // AFMoE's, as its converter writes them (sigmoid routers by the architecture's default).
    if arch == "afmoe" {
        extra.extend([
            ("leading_dense_block_count", u("num_dense_layers")),
            ("expert_shared_count", u("num_shared_experts")),
            ("expert_weights_norm", Value::Bool(true)),
            (
                "expert_weights_scale",
                Value::F32(cfg["route_scale"].as_f64().unwrap() as f32),
            ),
        ]);
    }
    if arch == "lfm2moe" {
        extra.push(("leading_dense_block_count", u("num_dense_layers")));
        extra.push(("expert_gating_func", Value::U32(2)));
    }
    let (ffn, kv_heads_md) = match arch {
        "lfm2" | "lfm2moe" => {
            let ffn = tensors["model.layers.0.feed_forward.w1.weight"]
                .dim(0)
                .unwrap();
            let per_layer = cfg["layer_types"].as_array().unwrap().iter();
            let kv = per_layer
                .map(|t| Value::U32(if t == "conv" { 0 } else { kv_heads as u32 }))
                .collect();
            extra.push(("shortconv.l_cache", u("conv_L_cache")));
            (Value::U32(ffn as u32), Value::Array(kv))
        }
        // Llama 4's dense layers, which its converter writes as the model's FFN width.
        "llama4" => (u("intermediate_size_mlp"), Value::U32(kv_heads as u32)),
        // Cohere2-MoE's dense prefix, likewise.
        "cohere2moe" => (
            u("prefix_dense_intermediate_size"),
            Value::U32(kv_heads as u32),
        ),
        _ => (u("intermediate_size"), Value::U32(kv_heads as u32)),
    };
    let eps = cfg["rms_norm_eps"]
        .as_f64()
        .or(cfg["norm_eps"].as_f64())
        .or(cfg["layer_norm_eps"].as_f64());
    let md: Vec<(&str, Value)> = vec![
        ("embedding_length", u("hidden_size")),
        ("block_count", u("num_hidden_layers")),
        ("feed_forward_length", ffn),
        ("attention.head_count", u("num_attention_heads")),
        ("attention.head_count_kv", kv_heads_md),
        ("context_length", u("max_position_embeddings")),
        ("vocab_size", u("vocab_size")),
        ("rope.freq_base", Value::F32(freq_base as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(eps.unwrap() as f32),
        ),
    ]
    .into_iter()
    .chain(extra)
    .collect();
    write_file_with_mxfp4(path, arch, md, &mut q, mxfp4_tensors);
}

/// The tiny model in `fixture`, written as an `arch` GGUF (experts held as `experts` says),
/// gives the checkout's logits: within 1e-4 in F32, within `q8_tol` in Q8_0.
fn gguf_matches_checkout(fixture: &str, arch: &str, experts: Experts, q8_tol: f32) {
    gguf_matches_checkout_within(fixture, arch, experts, [1e-4, q8_tol]);
}

/// `gguf_matches_checkout` with the F32 file's tolerance too.
fn gguf_matches_checkout_within(fixture: &str, arch: &str, experts: Experts, tol: [f32; 2]) {
    let reference = logits(&fixtures().join("tiny").join(fixture));
    gguf_matches_reference(fixture, arch, experts, tol, &reference);
}

/// The tiny model in `fixture`, written as an `arch` GGUF in F32 and in Q8_0, gives
/// `reference` within `tol` (F32's, Q8_0's).
fn gguf_matches_reference(
    fixture: &str,
    arch: &str,
    experts: Experts,
    tol: [f32; 2],
    reference: &[f32],
) {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, tol) in [(GgmlDType::F32, tol[0]), (GgmlDType::Q8_0, tol[1])] {
        let path = dir.path().join(format!("{fixture}-{dtype:?}.gguf"));
        write_gguf_of(fixture, arch, &path, dtype, experts);
        let d = max_abs_diff(&logits(&path), reference);
        assert!(
            d < tol,
            "{fixture} as {arch} {dtype:?}: logits differ by {d} (tolerance {tol})"
        );
    }
}

/// Phi-3.5-MoE as llama.cpp converts it (`phimoe`: q/k/v apart with biases, the LayerNorms'
/// weights and biases, Mixtral's experts stacked, the head's bias): the checkout's logits with
/// the router's jitter the file does not keep at the model's own 0.01 (the fixture's is 0.2),
/// run as the model runs (LayerNorms, sparsemixer) rather than as llama.cpp's graph does.
#[test]
fn phimoe_loads_from_gguf() {
    let checkout = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny/phimoe");
    for f in ["generation_config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), checkout.path().join(f)).unwrap();
    }
    let mut cfg = read_json(&src.join("config.json"));
    cfg["router_jitter_noise"] = 0.01.into();
    std::fs::write(checkout.path().join("config.json"), cfg.to_string()).unwrap();
    let reference = logits(checkout.path());
    assert!(
        max_abs_diff(&reference, &logits(&src)) > 1e-3,
        "the jitter changes the routing here"
    );
    gguf_matches_reference(
        "phimoe",
        "phimoe",
        Experts::Stacked,
        [1e-4, 0.3],
        &reference,
    );
}

/// Phi-3.5/Phi-4-mini style: RoPE over half of each head and LongRoPE, as llama.cpp's GGUF
/// keeps them, give the HF checkout's logits (the q/k rows laid out at load stay Q8_0 blocks).
#[test]
fn phi3_partial_rope_and_longrope_load_from_gguf() {
    gguf_matches_checkout("phi3_longrope", "phi3", Experts::Stacked, 0.3);
}

/// Qwen3-MoE (`qwen3moe`, a dense layer among them), Qwen2-MoE (`qwen2moe`, a gated shared
/// expert), GLM-4.5 (`glm4moe`: DeepSeek-V3 routing, biases, q/k norms, half-head RoPE),
/// OLMoE (`olmoe`: q/k norms over the whole projections) and
/// Mixtral (converted as `llama`, q/k rows permuted) with their experts stacked per layer, and
/// Mixtral with one tensor per expert as the first GGUFs had it, Qwen3-MoE and Qwen2-MoE with
/// each expert's gate and up joined (`ffn_gate_up_exps`, llama.cpp's `--fuse-gate-up-exps`)
/// and Qwen2-MoE's shared expert's in one double-height `ffn_up_shexp` (as Granite's swash MoE
/// converter writes it): the HF checkouts' logits
/// (exactly in F32; Q8_0 within its rounding, which sigmoid routers over q/k-normed attention
/// carry further, as for DeepSeek).
#[test]
fn mixtures_of_experts_load_from_gguf() {
    for (fixture, arch, experts, q8_tol) in [
        ("qwen3_moe", "qwen3moe", Experts::Stacked, 0.3),
        ("qwen2_moe", "qwen2moe", Experts::Stacked, 0.3),
        ("glm4_moe", "glm4moe", Experts::Stacked, 0.6),
        ("olmoe", "olmoe", Experts::Stacked, 0.3),
        ("mixtral", "llama", Experts::Stacked, 0.3),
        ("mixtral", "llama", Experts::Apart, 0.3),
        ("qwen3_moe", "qwen3moe", Experts::FusedGateUp, 0.3),
        ("qwen2_moe", "qwen2moe", Experts::FusedGateUp, 0.3),
    ] {
        gguf_matches_checkout(fixture, arch, experts, q8_tol);
    }
}

/// Gemma 2 as llama.cpp's GGUF keeps it (norms as 1 + w, post norms by their own names,
/// softcaps and the window in the metadata): the HF checkout's logits, exactly in F32. In
/// Q8_0 the tied embedding, scaled by sqrt(hidden) on the way in and the head on the way out,
/// carries its rounding into every logit: 0.66 with the rounded weights in f32 alone, about
/// twice that with the 8-bit activations.
#[test]
fn gemma2_loads_from_gguf() {
    gguf_matches_checkout("gemma2", "gemma2", Experts::Stacked, 1.5);
}

/// Gemma (1) as llama.cpp's `gemma` GGUF keeps it (norms as 1 + w, llama's two of them,
/// multi-query attention): the HF checkout's logits, exactly in F32; in Q8_0 the tied,
/// scaled embedding carries its rounding as Gemma 2's does.
#[test]
fn gemma_loads_from_gguf() {
    gguf_matches_checkout("gemma", "gemma", Experts::Stacked, 1.5);
}

/// gpt-oss as llama.cpp's `gpt-oss` GGUF keeps it (sinks, biased router and experts split out
/// of their interleaved HF stack, the pre-FFN norm as `post_attention_norm`, YaRN and the
/// window in the metadata): the HF checkout's logits.
#[test]
fn gpt_oss_loads_from_gguf() {
    gguf_matches_checkout("gpt_oss", "gpt-oss", Experts::Stacked, 0.3);
}

/// The tiny gpt-oss as a GGUF at `dir/name`, its experts as `experts` says, the other
/// matrices in `dtype`.
fn gpt_oss_gguf(dir: &Path, name: &str, dtype: GgmlDType, experts: Experts) -> PathBuf {
    let path = dir.join(name);
    write_gguf_of("gpt_oss", "gpt-oss", &path, dtype, experts);
    path
}

/// gpt-oss as its GGUFs are published: the experts in MXFP4 (ggml type 39), multiplied by the
/// CPU kernels as the blocks they are (read in place, 17 bytes a block). Dequantized at load,
/// the logits of a GGUF holding the same rounded values in F32 (1e-4). Through the kernels
/// (8-bit activations) no further from them than a Q8_0 GGUF of those values is: this tiny
/// model's routers sit near ties that the activations' rounding tips, so that distance is
/// large (~3), and the only fair bound.
#[test]
fn gpt_oss_mxfp4_experts_load_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mx = gpt_oss_gguf(dir.path(), "mxfp4.gguf", GgmlDType::F32, Experts::Mxfp4);
    let rounded = gpt_oss_gguf(
        dir.path(),
        "rounded.gguf",
        GgmlDType::F32,
        Experts::Mxfp4Rounded,
    );
    let q8 = gpt_oss_gguf(
        dir.path(),
        "q8.gguf",
        GgmlDType::Q8_0,
        Experts::Mxfp4Rounded,
    );
    // Expert 1's up projection: the file's own MXFP4 blocks, not a converted copy.
    let file = GgufFile::open(&mx, false).unwrap();
    let Ok(Some(HostWeight::Mapped(up))) = file.get("blk.0.ffn_up_exps.1.weight") else {
        panic!("MXFP4 experts are not read in place");
    };
    assert_eq!(up.dtype, BlockType::Mxfp4);
    let elems: usize = up.shape.iter().product();
    assert_eq!(up.bytes().len(), elems / 32 * 17);
    let reference = logits(&rounded);
    let exact = max_abs_diff(&logits_of(&mx, true), &reference);
    assert!(exact < 1e-4, "MXFP4 dequantized: logits differ by {exact}");
    let q8_0 = max_abs_diff(&logits(&q8), &reference);
    let kernels = max_abs_diff(&logits(&mx), &reference);
    assert!(
        kernels <= 1.5 * q8_0 + 0.05,
        "MXFP4 through the kernels: logits differ by {kernels}, a Q8_0 GGUF by {q8_0}"
    );
    // The rounding is real: the checkout's own logits are further off.
    let checkout = logits(&fixtures().join("tiny/gpt_oss"));
    assert!(max_abs_diff(&checkout, &reference) > 10.0 * exact.max(1e-6));
}

/// The logits of `TOKENS` from `path` on the device plugin at `plugin`, and the plugin's
/// placement report (where each weight type went).
#[cfg(unix)]
fn plugin_logits(path: &Path, plugin: &Path) -> (Vec<f32>, String) {
    use candor::backend::cpu::CpuBackend;
    use candor::backend::plugin::PluginBackend;
    use candor::engine::runner::{ModelRunner, Runner};
    let opened = open_model(path, false).expect("open");
    let backend = PluginBackend::load(plugin, CpuBackend::new(2)).expect("plugin");
    let model = candor_models::DecoderModel::load(&backend, opened.spec.clone(), &*opened.source)
        .expect("load on the plugin");
    let report = backend.startup_report();
    let mut runner = ModelRunner::new(backend, model, 4, 16).expect("runner");
    let batch = Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: TOKENS.to_vec(),
            start_pos: 0,
            block_table: vec![0],
            logits: LogitsWanted::All,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    (runner.forward(&batch).expect("forward").data, report)
}

/// gpt-oss's MXFP4 experts on a device plugin: one of ABI 1.1 that keeps MXFP4 gets the
/// blocks as they are (17 bytes a block); one of 1.0 gets them as the Q5_0 blocks they are
/// exactly (22). Both compute in f32 what the CPU computes from the file dequantized.
#[cfg(unix)]
#[test]
fn mxfp4_experts_reach_a_plugin_as_mxfp4_where_it_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let mx = gpt_oss_gguf(dir.path(), "mxfp4.gguf", GgmlDType::F32, Experts::Mxfp4);
    let want = logits_of(&mx, true);
    let on_device = |report: &str| {
        report
            .split("weights on the device: ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or("")
            .to_string()
    };
    let (current, report) = plugin_logits(&mx, &plugins::reference());
    assert!(on_device(&report).contains("MXFP4"), "{report}");
    let (older, report) = plugin_logits(&mx, &plugins::variant("reference_abi_1_0"));
    let placed = on_device(&report);
    assert!(
        placed.contains("Q5_0") && !placed.contains("MXFP4"),
        "{report}"
    );
    for (name, got) in [("1.1", current), ("1.0", older)] {
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-4, "ABI {name} plugin: logits differ by {diff}");
    }
}

/// The tiny gpt-oss as OpenAI's own checkpoints store it: each expert stack transposed to
/// `[experts, out, in]` and kept as MXFP4 codes and scales (`{stack}_blocks`, `{stack}_scales`,
/// u8; byte j of a block holding elements 2j and 2j + 1), the rest as it is.
fn write_mxfp4_checkout(dir: &Path) {
    let src = fixtures().join("tiny/gpt_oss");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut out = HashMap::new();
    for (name, t) in tensors {
        if !(name.ends_with("experts.gate_up_proj") || name.ends_with("experts.down_proj")) {
            out.insert(name, t);
            continue;
        }
        let t = t.transpose(1, 2).unwrap().contiguous().unwrap();
        let (experts, rows, cols) = t.dims3().unwrap();
        let (codes, scales) = mxfp4::ggml_to_openai(&mxfp4_of(&t).1);
        let nb = cols / 32;
        let u8s = |v: Vec<u8>, shape: &[usize]| Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
        out.insert(
            format!("{name}_blocks"),
            u8s(codes, &[experts, rows, nb, 16]),
        );
        out.insert(format!("{name}_scales"), u8s(scales, &[experts, rows, nb]));
    }
    candle_core::safetensors::save(&out, dir.join("model.safetensors")).unwrap();
}

/// OpenAI's MXFP4 checkpoint layout loads as exactly the values llama.cpp's MXFP4 GGUF holds:
/// dequantized, the logits of the rounded values (1e-4); through the kernels, the MXFP4 GGUF's
/// logits (the same MXFP4 blocks, every other weight the same).
#[test]
fn gpt_oss_mxfp4_checkout_loads_like_its_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    write_mxfp4_checkout(&checkout);
    let mx = gpt_oss_gguf(dir.path(), "mxfp4.gguf", GgmlDType::F32, Experts::Mxfp4);
    let rounded = gpt_oss_gguf(
        dir.path(),
        "rounded.gguf",
        GgmlDType::F32,
        Experts::Mxfp4Rounded,
    );
    let exact = max_abs_diff(&logits_of(&checkout, true), &logits(&rounded));
    assert!(
        exact < 1e-4,
        "MXFP4 checkout dequantized: logits differ by {exact}"
    );
    let blocks = max_abs_diff(&logits(&checkout), &logits(&mx));
    assert!(
        blocks < 1e-4,
        "MXFP4 checkout and GGUF: logits differ by {blocks}"
    );
}

/// OLMo 2 (norms after attention and the FFN only, q/k norms over whole projections) as
/// llama.cpp's `olmo2` GGUF keeps it: the HF checkout's logits. OLMo 3 as an `olmo2` GGUF with
/// a sliding window (three sliding layers to one global, their RoPE unscaled beside the
/// global layer's YaRN): its checkout's logits.
#[test]
fn olmo2_loads_from_gguf() {
    gguf_matches_checkout("olmo2", "olmo2", Experts::Stacked, 0.3);
    gguf_matches_checkout("olmo3", "olmo2", Experts::Stacked, 0.3);
    // Past the window of 16: the sliding layers must see only their last 16 keys.
    let long: Vec<u32> = (0..40).map(|i| 3 + (i * 37) % 500).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("olmo3.gguf");
    write_gguf_of("olmo3", "olmo2", &path, GgmlDType::F32, Experts::Stacked);
    let checkout = fixtures().join("tiny/olmo3");
    let d = max_abs_diff(
        &logits_of_tokens(&path, &long, false),
        &logits_of_tokens(&checkout, &long, false),
    );
    assert!(d < 1e-4, "OLMo 3 GGUF over 40 tokens: logits differ by {d}");
}

/// Granite (its four scalars in `granite.*` keys), Granite MoE (the same in `granitemoe.*`,
/// experts stacked as llama.cpp splits Granite's `input_linear`; with a shared MLP, its halves
/// as `ffn_*_shexp`) and SmolLM3 (every fourth layer without
/// RoPE, which its GGUFs leave to the architecture) as llama.cpp converts them, Q/K rows
/// permuted; EXAONE 4 (post-norms, the window in the metadata, global layers without RoPE,
/// rows as they are); MiniCPM (Granite's scalings as its converter computes them in
/// `minicpm.*` keys, llama's permuted rows): their checkouts' logits.
#[test]
fn granite_smollm3_and_exaone4_load_from_gguf() {
    gguf_matches_checkout("granite", "granite", Experts::Stacked, 0.3);
    gguf_matches_checkout("granitemoe", "granitemoe", Experts::Stacked, 0.3);
    gguf_matches_checkout("granitemoeshared", "granitemoe", Experts::Stacked, 0.3);
    gguf_matches_checkout("smollm3", "smollm3", Experts::Stacked, 0.3);
    gguf_matches_checkout("exaone4", "exaone4", Experts::Stacked, 0.3);
    gguf_matches_checkout("minicpm", "minicpm", Experts::Stacked, 0.3);
}

/// AFMoE (Arcee's Trinity) as llama.cpp converts it (`afmoe`): rows as they are, the gate
/// product `attn_gate`, norms before and after attention and FFN, the window in the metadata
/// (RoPE skipped every fourth layer by the architecture), DeepSeek's expert keys without a
/// gating function: the checkout's logits.
#[test]
fn afmoe_loads_from_gguf() {
    gguf_matches_checkout("afmoe", "afmoe", Experts::Stacked, 0.3);
}

/// Session 43's families as llama.cpp converts them, rows as they are: GLM-4 (`glm4`: q/k/v
/// biases, half-head RoPE in interleaved pairs with `rope.dimension_count`, post-norms, gate
/// and up in a double-height `ffn_up`), ERNIE 4.5 (`ernie4_5`: interleaved pairs over the
/// whole head; `ernie4_5-moe`: its experts, the correction bias `[1, experts]` as the converter
/// keeps it), Hunyuan dense (`hunyuan-dense`: q/k norms after RoPE, the NTK alpha folded into
/// `rope.freq_base`, tied head) and its experts (`hunyuan-moe`), dots.llm1 (`dots1`: no gating
/// function written, as llama.cpp's converter writes none), Seed-OSS (`seed_oss`: q/k/v biases): their checkouts' logits.
#[test]
fn glm4_ernie_hunyuan_and_seed_oss_load_from_gguf() {
    for (fixture, arch) in [
        ("glm4", "glm4"),
        ("ernie4_5", "ernie4_5"),
        ("ernie4_5_moe", "ernie4_5-moe"),
        ("hunyuan_dense", "hunyuan-dense"),
        ("hunyuan_moe", "hunyuan-moe"),
        ("dots1", "dots1"),
        ("seed_oss", "seed_oss"),
    ] {
        gguf_matches_checkout(fixture, arch, Experts::Stacked, 0.3);
    }
}

/// Cohere's Command R (`command-r`) and Command R7B (`cohere2`: the window in the metadata, the
/// pattern and the unrotated global layers fixed) as llama.cpp converts them, rows as they are
/// (interleaved RoPE already), LayerNorm epsilon and logit scale by their own keys: their
/// checkouts' logits.
#[test]
fn cohere_families_load_from_gguf() {
    gguf_matches_checkout("cohere", "command-r", Experts::Stacked, 0.3);
    gguf_matches_checkout("cohere_qk_norm", "command-r", Experts::Stacked, 0.3);
    gguf_matches_checkout("cohere2", "cohere2", Experts::Stacked, 0.3);
}

/// Cohere2-MoE as llama.cpp converts it (`cohere2moe`: HF's interleaved q/k rows as they are,
/// the window per layer as a list, the dense prefix's width as the FFN's, the experts stacked,
/// sigmoid routing normalized, averaged with the shared expert): its checkout's logits. (The
/// converter refuses the other strategy, the `cohere2_moe_ln` fixture's sum.)
#[test]
fn cohere2_moe_loads_from_gguf() {
    gguf_matches_checkout("cohere2_moe", "cohere2moe", Experts::Stacked, 0.3);
}

/// StarCoder2 as llama.cpp converts it (`starcoder2`: LayerNorm weights and biases, the MLP's
/// `c_fc` / `c_proj` as `ffn_up` / `ffn_down` with their biases, NeoX rows as they are), the
/// window in the metadata: its checkout's logits.
#[test]
fn starcoder2_loads_from_gguf() {
    gguf_matches_checkout("starcoder2", "starcoder2", Experts::Stacked, 0.3);
}

/// Phi-2 as llama.cpp converts it (`phi2`: parallel blocks of LayerNorms with biases, `dense`
/// as `attn_output`, `fc1` / `fc2` as `ffn_up` / `ffn_down`, the head's bias as `output.bias`,
/// the rotated dimensions as `rope.dimension_count`): its checkout's logits. The files
/// converted from the original checkpoints hold q/k/v as one `attn_qkv` weight and bias, split
/// at load (quantized rows as stored): the logits of the same weights held apart.
#[test]
fn phi2_loads_from_gguf() {
    gguf_matches_checkout("phi", "phi2", Experts::Stacked, 0.3);
    let dir = tempfile::tempdir().unwrap();
    for dtype in [GgmlDType::F32, GgmlDType::Q8_0] {
        let apart = dir.path().join(format!("phi-apart-{dtype:?}.gguf"));
        let joined = dir.path().join(format!("phi-joined-{dtype:?}.gguf"));
        write_gguf_of("phi", "phi2", &apart, dtype, Experts::Stacked);
        with_joined_qkv(&apart, &joined);
        let d = max_abs_diff(&logits(&joined), &logits(&apart));
        assert!(
            d < 1e-5,
            "phi2 {dtype:?} with attn_qkv: logits differ by {d}"
        );
    }
}

/// GLM-4-9B-chat as llama.cpp converts it (`chatglm`: GLM-4's names, the rotated dimensions as
/// `rope.dimension_count`, no norms after): its checkout's logits; the files converted from
/// the original ChatGLM checkpoints hold q/k/v as one `attn_qkv` with its bias: the same.
#[test]
fn chatglm_loads_from_gguf() {
    gguf_matches_checkout("glm", "chatglm", Experts::Stacked, 0.3);
    let dir = tempfile::tempdir().unwrap();
    let apart = dir.path().join("glm-apart.gguf");
    let joined = dir.path().join("glm-joined.gguf");
    write_gguf_of("glm", "chatglm", &apart, GgmlDType::Q8_0, Experts::Stacked);
    with_joined_qkv(&apart, &joined);
    let d = max_abs_diff(&logits(&joined), &logits(&apart));
    assert!(d < 1e-5, "chatglm with attn_qkv: logits differ by {d}");
}

/// `src` with each layer's q, k and v weights and biases stacked into one `attn_qkv` weight and
/// bias (q rows, then k, then v), as llama.cpp's older converters wrote Phi-2's `Wqkv`.
fn with_joined_qkv(src: &Path, dst: &Path) {
    let mut file = std::fs::File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let md = metadata_of(&content);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in content.tensor_infos.keys() {
        let part = ["attn_q.", "attn_k.", "attn_v."]
            .iter()
            .any(|p| name.contains(p));
        if !part {
            let t = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            tensors.push((name.clone(), t));
            continue;
        }
        let Some(stem) = name
            .strip_suffix("attn_q.weight")
            .or(name.strip_suffix("attn_q.bias"))
        else {
            continue;
        };
        let suffix = if name.ends_with("weight") {
            "weight"
        } else {
            "bias"
        };
        let pieces: Vec<Tensor> = ["attn_q", "attn_k", "attn_v"]
            .iter()
            .map(|p| {
                let t = content.tensor(&mut file, &format!("{stem}{p}.{suffix}"), &Device::Cpu);
                t.unwrap().dequantize(&Device::Cpu).unwrap()
            })
            .collect();
        let joined = Tensor::cat(&pieces, 0).unwrap();
        // Weights back in their type (Q8_0 blocks of Q8_0 values come back the same).
        let ty = match suffix {
            "weight" => content.tensor_infos[name].ggml_dtype,
            _ => GgmlDType::F32,
        };
        let q = QTensor::quantize(&joined, ty).unwrap();
        tensors.push((format!("{stem}attn_qkv.{suffix}"), q));
    }
    write_gguf_file(dst, &md, &tensors);
}

/// A GGUF file's metadata, every key as it is.
fn metadata_of(content: &gguf_file::Content) -> Vec<(String, Value)> {
    content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A GGUF at `path` of metadata `md` (whole keys) and `tensors`.
fn write_gguf_file(path: &Path, md: &[(String, Value)], tensors: &[(String, QTensor)]) {
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(path).unwrap(), &md_refs, &t_refs).unwrap();
}

/// GPT-NeoX as llama.cpp converts it (`gptneox`: q/k/v in one `attn_qkv` regrouped from per
/// head to q, k, v, LayerNorms with biases, `use_parallel_residual`), parallel blocks and
/// sequential ones: their checkouts' logits, with the exact GELU the models were trained with
/// (llama.cpp runs the tanh approximation on these files).
#[test]
fn gpt_neox_loads_from_gguf() {
    gguf_matches_checkout("gpt_neox", "gptneox", Experts::Stacked, 0.3);
    gguf_matches_checkout("gpt_neox_sequential", "gptneox", Experts::Stacked, 0.3);
}

/// StableLM as llama.cpp converts it (`stablelm`: llama's names, LayerNorm biases, q/k/v biases
/// where the checkout has them, the rotated dimensions as `rope.dimension_count`), sequential
/// and parallel (no `ffn_norm`) blocks: their checkouts' logits.
#[test]
fn stablelm_loads_from_gguf() {
    gguf_matches_checkout("stablelm", "stablelm", Experts::Stacked, 0.3);
    gguf_matches_checkout("stablelm_parallel", "stablelm", Experts::Stacked, 0.3);
    gguf_matches_checkout("stablelm_qk_norm", "stablelm", Experts::Stacked, 0.3);
}

/// Jais 2 as llama.cpp converts it (`jais2`: LayerNorm weights and biases, biased q/k/v/o,
/// the squared-ReLU MLP's `ffn_up` / `ffn_down` with their biases, NeoX rows as they are): its
/// checkout's logits (Q8_0's tolerance Nemotron's: the squared ReLU doubles the rounding of what
/// it squares).
#[test]
fn jais2_loads_from_gguf() {
    gguf_matches_checkout("jais2", "jais2", Experts::Stacked, 0.8);
}

/// Nemotron as llama.cpp converts it (`nemotron`: its LayerNorm1P weights written as `1 + w`,
/// LayerNorm biases, the rotated half of each head as `rope.dimension_count`, the squared-ReLU
/// MLP's `ffn_up` / `ffn_down`): its checkout's logits, exactly in F32. In Q8_0 the squared ReLU
/// doubles the relative rounding of what it squares: transformers' own bf16 run is 0.24 from its
/// f32 one on this model (llama's 0.11, whose Q8_0 tolerance is 0.3).
#[test]
fn nemotron_loads_from_gguf() {
    gguf_matches_checkout("nemotron", "nemotron", Experts::Stacked, 0.8);
}

/// GPT-2 as llama.cpp converts it (`gpt2`: `token_embd` and `position_embd`, the `Conv1D`
/// products transposed, q/k/v in one `attn_qkv` with its bias, no `output`: tied): its
/// checkout's logits.
#[test]
fn gpt2_loads_from_gguf() {
    gguf_matches_checkout("gpt2", "gpt2", Experts::Stacked, 0.3);
}

/// Apertus as llama.cpp converts it (`apertus`: q/k rows as they are, the xIELU numbers as
/// per-layer `apertus.xielu.*` arrays in f32): its checkout's logits, within what taking the
/// softplus in f32 (as ggml does) rather than in the checkpoint's bf16 (as transformers does)
/// moves them (0.013 here; the checkout itself is read in bf16's way, exactly: `tiny_golden`),
/// Llama 3's RoPE scaling as `rope_freqs.weight`.
#[test]
fn apertus_loads_from_gguf() {
    gguf_matches_checkout_within("apertus", "apertus", Experts::Stacked, [0.03, 0.3]);
}

/// OLMo as llama.cpp converts it (`olmo`: llama's permuted q/k rows, no norm tensors,
/// `attention.clamp_kqv`): its checkout's logits.
#[test]
fn olmo_loads_from_gguf() {
    gguf_matches_checkout("olmo", "olmo", Experts::Stacked, 0.3);
}

/// Arcee's AFM as llama.cpp converts it (`arcee`: llama's permuted q/k rows, `ffn_up` and
/// `ffn_down` without a gate, YaRN in the metadata): its checkout's logits.
#[test]
fn arcee_loads_from_gguf() {
    gguf_matches_checkout("arcee", "arcee", Experts::Stacked, 0.3);
}

/// StarCoder (GPT-BigCode) as llama.cpp converts it (`starcoder`: GPT-2's tensor names, the
/// `nn.Linear` products as they are, one KV head): its checkout's logits.
#[test]
fn starcoder_loads_from_gguf() {
    gguf_matches_checkout("gpt_bigcode", "starcoder", Experts::Stacked, 0.3);
}

/// Falcon as llama.cpp converts it (`falcon`: q/k/v regrouped from per KV head, `ln_mlp` as
/// `attn_norm_2`, tied): the 40B-style checkout (two norms, grouped KV heads) and the 7B-style
/// one (multi-query, one norm) give their logits.
#[test]
fn falcon_loads_from_gguf() {
    gguf_matches_checkout("falcon", "falcon", Experts::Stacked, 0.3);
    gguf_matches_checkout("falcon_7b", "falcon", Experts::Stacked, 0.3);
}

/// The ALiBi models as llama.cpp converts them: BLOOM (`bloom`: q/k/v regrouped from per
/// head, the embeddings' norm as `token_embd_norm`, tied) and MPT (`mpt`: `Wqkv` as it is,
/// weight-only norms, `attention.max_alibi_bias` and `attention.clamp_kqv`): their
/// checkouts' logits.
#[test]
fn bloom_and_mpt_load_from_gguf() {
    gguf_matches_checkout("bloom", "bloom", Experts::Stacked, 0.3);
    gguf_matches_checkout("mpt", "mpt", Experts::Stacked, 0.3);
}

/// LFM2 as llama.cpp's `lfm2` GGUF keeps it (KV heads per layer, 0 marking the short
/// convolutions; their kernels squeezed to `[hidden, kernel]`; the last norm as
/// `token_embd_norm`): the HF checkout's logits, the convolutions' state read back from the
/// cache's K and V halves of two cache layers each: exactly in F32. In Q8_0 the gating
/// (`C · conv(B · x)`, a product of three projections of the same rows) carries the weights'
/// and activations' rounding further than attention does: transformers' own bf16 run is 0.47
/// from its f32 one on this model (Gemma 2's is 0.44, whose Q8_0 tolerance is 1.5).
#[test]
fn lfm2_loads_from_gguf() {
    gguf_matches_checkout("lfm2", "lfm2", Experts::Stacked, 1.2);
}

/// LFM2-MoE as llama.cpp's `lfm2moe` GGUF keeps it: LFM2's layers, the experts stacked, the
/// routers' choice biases as `exp_probs_b`, the gating function sigmoid, no key for the
/// weights' normalization (llama.cpp always normalizes them): within 1e-4 in F32. Any
/// rounding flips one of this fixture's expert choices (transformers' own bf16 run is 2.82
/// from its f32 one), so Q8_0's tolerance is that of a flipped expert.
#[test]
fn lfm2_moe_loads_from_gguf() {
    gguf_matches_checkout("lfm2_moe", "lfm2moe", Experts::Stacked, 3.0);
}

/// Llama 4 as llama.cpp's `llama4` GGUF keeps it (experts split from their stacks, llama3
/// rope factors as `rope_freqs`, chunks of 8,192 and the temperatures' floor of 8,192 fixed by
/// llama.cpp): the logits of the HF checkout with those numbers in its config, exactly in
/// F32; Q8_0 within the rounding sigmoid routers carry.
#[test]
fn llama4_loads_from_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny").join("llama4");
    std::fs::copy(
        src.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg = read_json(&src.join("config.json"));
    cfg["attention_chunk_size"] = 8192.into();
    cfg["floor_scale"] = 8192.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let reference = logits(dir.path());
    assert!(
        max_abs_diff(&reference, &logits(&src)) > 1e-2,
        "the fixture's own chunks and floor matter to these logits"
    );
    gguf_matches_reference(
        "llama4",
        "llama4",
        Experts::Stacked,
        [1e-4, 0.6],
        &reference,
    );
}

/// MiniMax-M2 as llama.cpp's `minimax-m2` GGUF keeps it (the experts stacked, the correction
/// bias as `exp_probs_b`, the rotated width as `rope.dimension_count`, no gating function):
/// the HF checkout's logits, exactly in F32; Q8_0 within the rounding that sigmoid routers
/// over q/k-normed attention carry, as for GLM-4.5.
#[test]
fn minimax_m2_loads_from_gguf() {
    gguf_matches_checkout("minimax_m2", "minimax-m2", Experts::Stacked, 0.6);
}

/// Ministral 3 as llama.cpp's `mistral3` GGUF keeps it (q/k rows permuted as llama's, YaRN
/// with `yarn_log_multiplier` for its temperature of 1, Llama 4's query temperature as
/// `attention.temperature_scale` over the original context): the HF checkout's logits, exactly
/// in F32.
#[test]
fn ministral3_loads_from_gguf() {
    gguf_matches_checkout("ministral3", "mistral3", Experts::Stacked, 0.3);
}

/// `src` with one more block at the end, a copy of block 0, counted as a multi-token-
/// prediction layer (`nextn_predict_layers`), as GLM-4.5's and GLM-OCR's GGUFs keep theirs.
fn with_prediction_layer(src: &Path, dst: &Path) {
    let mut file = std::fs::File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let arch = content.metadata["general.architecture"]
        .to_string()
        .unwrap()
        .clone();
    let blocks = content.metadata[&format!("{arch}.block_count")]
        .to_u32()
        .unwrap();
    let mut md = metadata_of(&content);
    for (k, v) in md.iter_mut() {
        if *k == format!("{arch}.block_count") {
            *v = Value::U32(blocks + 1);
        }
    }
    md.push((format!("{arch}.nextn_predict_layers"), Value::U32(1)));
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in content.tensor_infos.keys() {
        let t = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        if let Some(rest) = name.strip_prefix("blk.0.") {
            let copy = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            tensors.push((format!("blk.{blocks}.{rest}"), copy));
        }
        tensors.push((name.clone(), t));
    }
    write_gguf_file(dst, &md, &tensors);
}

/// GLM GGUFs (`glm4`, `glm4moe`) counting a prediction layer in their blocks run the others
/// only: the checkouts' logits.
#[test]
fn glm_prediction_layers_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, arch) in [("glm4", "glm4"), ("glm4_moe", "glm4moe")] {
        let plain = dir.path().join(format!("{fixture}.gguf"));
        let with_mtp = dir.path().join(format!("{fixture}-mtp.gguf"));
        write_gguf_of(fixture, arch, &plain, GgmlDType::F32, Experts::Stacked);
        with_prediction_layer(&plain, &with_mtp);
        let reference = logits(&fixtures().join("tiny").join(fixture));
        let d = max_abs_diff(&logits(&with_mtp), &reference);
        assert!(
            d < 1e-4,
            "{fixture} with a prediction layer: logits differ by {d}"
        );
    }
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
        (GgmlDType::Q5_1, 2.0),
        (GgmlDType::Q4_1, 4.0),
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
    gguf_matches_checkout("phi3", "phi3", Experts::Stacked, 0.3);
}

/// A deepseek2 tensor's llama.cpp name (the experts and kv_b are handled apart).
fn deepseek_gguf_name(hf: &str) -> String {
    let rest = match hf.strip_prefix("model.layers.") {
        Some(rest) => rest,
        None => return gguf_name(hf),
    };
    let (l, part) = rest.split_once('.').unwrap();
    let g = match part {
        "self_attn.q_a_proj.weight" => "attn_q_a.weight",
        "self_attn.q_a_layernorm.weight" => "attn_q_a_norm.weight",
        "self_attn.q_b_proj.weight" => "attn_q_b.weight",
        "self_attn.kv_a_proj_with_mqa.weight" => "attn_kv_a_mqa.weight",
        "self_attn.kv_a_layernorm.weight" => "attn_kv_a_norm.weight",
        "mlp.gate.weight" => "ffn_gate_inp.weight",
        // DeepSeek's name, ERNIE 4.5's.
        "mlp.gate.e_score_correction_bias" | "mlp.moe_statics.e_score_correction_bias" => {
            "exp_probs_b.bias"
        }
        "mlp.shared_experts.gate_proj.weight" => "ffn_gate_shexp.weight",
        "mlp.shared_experts.up_proj.weight" => "ffn_up_shexp.weight",
        "mlp.shared_experts.down_proj.weight" => "ffn_down_shexp.weight",
        _ => return gguf_name(hf),
    };
    format!("blk.{l}.{g}")
}

/// A latent attention's shapes in a config: (heads, qk_nope_head_dim, v_head_dim, kv_lora_rank).
fn latent_shapes(cfg: &serde_json::Value) -> (usize, usize, usize, usize) {
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    (
        u("num_attention_heads"),
        u("qk_nope_head_dim"),
        u("v_head_dim"),
        u("kv_lora_rank"),
    )
}

/// kv_b (`[heads × (nope + v), rank]`) as llama.cpp's converter splits it for its absorbed
/// latent attention: `attn_k_b` (transposed per head) and `attn_v_b`.
fn absorbed_kv_b(t: &Tensor, cfg: &serde_json::Value) -> [(&'static str, Tensor); 2] {
    let (heads, nope, v, rank) = latent_shapes(cfg);
    let kv_b = t.reshape((heads, nope + v, rank)).unwrap();
    let k_b = kv_b.narrow(1, 0, nope).unwrap().transpose(1, 2).unwrap();
    let v_b = kv_b.narrow(1, nope, v).unwrap();
    [
        ("attn_k_b", k_b.contiguous().unwrap()),
        ("attn_v_b", v_b.contiguous().unwrap()),
    ]
}

/// The latent attention's keys as that converter writes them: one KV head of
/// `kv_lora_rank + rope`, the real head sizes under `*_mla`.
fn absorbed_latent_metadata(cfg: &serde_json::Value) -> Vec<(&'static str, Value)> {
    let n = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let (_, _, _, rank) = latent_shapes(cfg);
    let rope = cfg["qk_rope_head_dim"].as_u64().unwrap() as usize;
    vec![
        ("attention.key_length", Value::U32((rank + rope) as u32)),
        ("attention.value_length", Value::U32(rank as u32)),
        ("attention.key_length_mla", n("qk_head_dim")),
        ("attention.value_length_mla", n("v_head_dim")),
        ("attention.kv_lora_rank", n("kv_lora_rank")),
        ("rope.dimension_count", n("qk_rope_head_dim")),
    ]
}

/// The tiny DeepSeek-V3 as llama.cpp's current converter writes it: one KV head of
/// `kv_lora_rank + rope` with the real head sizes under `*_mla` keys, kv_b split into
/// `attn_k_b` (transposed per head) and `attn_v_b`, each layer's experts stacked in one
/// `[experts, rows, cols]` tensor per projection; weights in `dtype` where their rows are
/// whole blocks.
fn write_deepseek_gguf(path: &Path, dtype: GgmlDType) {
    let src = fixtures().join("tiny/deepseek_v3");
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let quantize = |t: &Tensor| {
        let whole = t.rank() >= 2 && t.dims().last().unwrap().is_multiple_of(dtype.block_size());
        QTensor::quantize(t, if whole { dtype } else { GgmlDType::F32 }).unwrap()
    };
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut experts = ExpertStacks::default();
    for (name, t) in &tensors {
        if let Some((l, proj, e)) = hf_expert(name) {
            experts.entry((l, proj)).or_default().push((e, t.clone()));
        } else if let Some(l) = name
            .strip_suffix(".self_attn.kv_b_proj.weight")
            .and_then(|n| n.strip_prefix("model.layers."))
        {
            for (what, t) in absorbed_kv_b(t, &cfg) {
                q.push((format!("blk.{l}.{what}.weight"), quantize(&t)));
            }
        } else {
            // llama.cpp keeps experts' routers in F32 whatever the type asked for.
            let router = name.ends_with("mlp.gate.weight");
            let t = match router {
                true => QTensor::quantize(t, GgmlDType::F32).unwrap(),
                false => quantize(t),
            };
            q.push((deepseek_gguf_name(name), t));
        }
    }
    q.extend(stacked(experts, quantize));
    let n = |k: &str| Value::U32(u(k) as u32);
    let mut md: Vec<(&str, Value)> = vec![
        ("embedding_length", n("hidden_size")),
        ("block_count", n("num_hidden_layers")),
        ("feed_forward_length", n("intermediate_size")),
        ("attention.head_count", n("num_attention_heads")),
        ("attention.head_count_kv", Value::U32(1)),
        ("context_length", n("max_position_embeddings")),
        ("vocab_size", n("vocab_size")),
        ("rope.freq_base", Value::F32(10000.0)),
        ("attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("attention.q_lora_rank", n("q_lora_rank")),
        ("leading_dense_block_count", n("first_k_dense_replace")),
        ("expert_count", n("n_routed_experts")),
        ("expert_used_count", n("num_experts_per_tok")),
        ("expert_shared_count", n("n_shared_experts")),
        ("expert_feed_forward_length", n("moe_intermediate_size")),
        ("expert_weights_scale", Value::F32(2.5)),
        ("expert_weights_norm", Value::Bool(true)),
        ("expert_gating_func", Value::U32(2)),
        ("expert_group_count", n("n_group")),
        ("expert_group_used_count", n("topk_group")),
    ];
    md.extend(absorbed_latent_metadata(&cfg));
    write_file(path, "deepseek2", md, &q);
}

/// A deepseek2 GGUF (latent attention split for llama.cpp's absorption, experts stacked per
/// layer, served expert by expert from the stack: in place for block types the kernels read
/// so) gives the HF checkout's logits.
#[test]
fn deepseek2_latent_attention_and_stacked_experts_load_from_gguf() {
    let reference = logits(&fixtures().join("tiny/deepseek_v3"));
    let dir = tempfile::tempdir().unwrap();
    // Q8_0: the low-rank steps of latent attention compound the weights' rounding (0.34 with
    // the rounded weights in f32 alone); the 8-bit activations of the in-place kernels add
    // less than half of that again.
    for (dtype, tol) in [(GgmlDType::F32, 1e-4), (GgmlDType::Q8_0, 0.6)] {
        let path = dir.path().join(format!("deepseek2-{dtype:?}.gguf"));
        write_deepseek_gguf(&path, dtype);
        let got = logits(&path);
        let d = max_abs_diff(&got, &reference);
        let in_place = max_abs_diff(&got, &logits_of(&path, true));
        eprintln!("deepseek2 {dtype:?}: max |logit diff| {d}, in place vs dequantized {in_place}");
        assert!(d < tol, "{dtype:?}: logits differ by {d} (tolerance {tol})");
        assert!(
            in_place < tol / 2.0,
            "{dtype:?}: in place vs dequantized {in_place}"
        );
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

/// The IQ tensors (IQ4_XS and IQ4_NL, GGUF types 23 and 20, the lattice types 16-19, 21, 22,
/// 29 and the ternary 34, 35) are found by name, read in place as their blocks, and dequantized exactly (the
/// kernels' values) with `--dequantize`; a row that is not whole blocks is refused, naming the
/// tensor.
#[test]
fn iq_tensors_are_read_as_their_blocks() {
    use candor_kernels::quant::{filler_blocks, QuantType};
    let blocks =
        |ty: QuantType, count: usize| filler_blocks(ty, count, 0x1234_5678_9abc_def1, 0.02);
    let grid = [
        ("iq2_xxs", QuantType::Iq2Xxs, 16),
        ("iq2_xs", QuantType::Iq2Xs, 17),
        ("iq3_xxs", QuantType::Iq3Xxs, 18),
        ("iq1_s", QuantType::Iq1S, 19),
        ("iq3_s", QuantType::Iq3S, 21),
        ("iq2_s", QuantType::Iq2S, 22),
        ("iq1_m", QuantType::Iq1M, 29),
        ("tq1_0", QuantType::Tq1_0, 34),
        ("tq2_0", QuantType::Tq2_0, 35),
    ];
    let mut own: Vec<OwnTensor> = vec![
        ("xs".into(), vec![2, 512], blocks(QuantType::Iq4Xs, 4), 23),
        ("nl".into(), vec![4, 64], blocks(QuantType::Iq4Nl, 8), 20),
    ];
    let mut types = vec![
        (QuantType::Iq4Xs, BlockType::Iq4Xs),
        (QuantType::Iq4Nl, BlockType::Iq4Nl),
    ];
    for (name, ty, id) in grid {
        own.push((name.into(), vec![2, 512], blocks(ty, 4), id));
        types.push((ty, BlockType::Grid(ty)));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq.gguf");
    let tensors: Vec<(String, QTensor)> = own.iter().map(carrier).collect();
    write_file(&path, "llama", vec![], &tensors);
    patch_own_types(&path, &own);
    for dequantized in [false, true] {
        let gguf = GgufFile::open(&path, dequantized).unwrap();
        assert_eq!(gguf.parameter_count(), 10 * 2 * 512 + 4 * 64);
        for ((name, shape, bytes, _), &(ty, block)) in own.iter().zip(&types) {
            let mut want = vec![0f32; shape.iter().product()];
            candor_kernels::quant::dequantize(ty, bytes, &mut want);
            let w = gguf.get(name).unwrap().unwrap();
            assert_eq!(w.shape(), *shape);
            match (&w, dequantized) {
                (HostWeight::Mapped(m), false) => {
                    assert_eq!((m.dtype, m.bytes()), (block, &bytes[..]), "{name}");
                }
                (HostWeight::Dense { .. }, true) => {}
                _ => panic!("{name} (dequantized {dequantized}) read as {w:?}"),
            }
            let got = w
                .to_f32()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(got, want, "{name}");
        }
    }
    // IQ4_XS rows of 128 values: half a block each.
    let bad = dir.path().join("bad.gguf");
    let own: Vec<OwnTensor> = vec![("xs".into(), vec![4, 128], blocks(QuantType::Iq4Xs, 2), 23)];
    let tensors: Vec<(String, QTensor)> = own.iter().map(carrier).collect();
    write_file(&bad, "llama", vec![], &tensors);
    patch_own_types(&bad, &own);
    let err = GgufFile::open(&bad, false)
        .unwrap()
        .get("xs")
        .unwrap_err()
        .to_string();
    assert!(err.contains("xs") && err.contains("whole blocks"), "{err}");
}

/// A model split in files as llama.cpp's `gguf-split` writes them (`NAME-0000i-of-0000N.gguf`,
/// the metadata in the first, `split.*` keys in each) opens from its first file and gives the
/// one-file model's logits; a later part or a missing one is refused, saying which.
#[test]
fn a_split_gguf_opens_from_its_first_part() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.gguf");
    write_gguf("llama", &whole, GgmlDType::F32);
    let mut file = std::fs::File::open(&whole).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let split_keys = |no: u16| {
        vec![
            ("split.no".to_string(), Value::U16(no)),
            ("split.count".to_string(), Value::U16(2)),
            (
                "split.tensors.count".to_string(),
                Value::I32(names.len() as i32),
            ),
        ]
    };
    let part = |i: usize| dir.path().join(format!("tiny-{i:05}-of-00002.gguf"));
    for (no, half) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let mut md = split_keys(no as u16);
        if no == 0 {
            md.extend(content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let tensors: Vec<(String, QTensor)> = half
            .iter()
            .map(|&n| {
                (
                    n.clone(),
                    content.tensor(&mut file, n, &Device::Cpu).unwrap(),
                )
            })
            .collect();
        let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut out = std::fs::File::create(part(no + 1)).unwrap();
        gguf_file::write(&mut out, &md, &refs).unwrap();
    }
    assert_eq!(logits(&part(1)), logits(&whole));
    let first = GgufFile::open(&part(1), false).unwrap();
    assert_eq!(first.tensor_names().count(), names.len());
    let err = GgufFile::open(&part(2), false).err().unwrap().to_string();
    assert!(
        err.contains("part 2 of a split model: open its first part")
            && err.contains("tiny-00001-of-00002.gguf"),
        "{err}"
    );
    std::fs::remove_file(part(2)).unwrap();
    let err = GgufFile::open(&part(1), false).err().unwrap().to_string();
    assert!(err.contains("part 2 of 2 is missing"), "{err}");
}

/// `t` as a GGUF tensor of `ty`, or (`rounded`) the F32 of its `ty` values: what a `ty` file
/// read with `--dequantize` holds. Copied to its own storage first: quantize reads a view's
/// storage from its start.
fn gguf_tensor(t: &Tensor, ty: GgmlDType, rounded: bool) -> QTensor {
    let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let t = Tensor::from_vec(values, t.dims(), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, ty).unwrap();
    match rounded && ty != GgmlDType::F32 {
        true => QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap(),
        false => q,
    }
}

/// The type llama.cpp's converter gives `t` when asked for `dtype`: `dtype` for a matrix meant
/// to be quantized whose rows are whole 32-value blocks, F32 otherwise (norms, kernels,
/// routers; the shared expert's 48-wide down projection).
fn converted_type(t: &Tensor, dtype: GgmlDType, quantized: bool) -> GgmlDType {
    match quantized && t.rank() == 2 && t.dims()[1].is_multiple_of(32) {
        true => dtype,
        false => GgmlDType::F32,
    }
}

/// How a Qwen3-Next-style GGUF holds its DeltaNet's q/k/v/z product.
#[derive(Clone, Copy, PartialEq)]
enum DeltaLayout {
    /// llama.cpp's first qwen3next converter: `in_proj_qkvz` as it is (`ssm_in`).
    Legacy,
    /// Its current one: `attn_qkv` (q of every key head, then k, then v) and `attn_gate` (z).
    Split,
}

/// Rows (`axis` 0) or columns (1) of `t` in value heads of `width`, `[key heads][runs]`
/// as the checkouts lay them out, reordered `[runs][key heads]` as llama.cpp's Qwen3.5
/// converter writes them (value heads tiled over the key heads).
fn tiled_value_heads(t: &Tensor, axis: usize, key_heads: usize, width: usize) -> Tensor {
    let n = t.dim(axis).unwrap();
    let runs = n / (key_heads * width);
    let order: Vec<u32> = (0..runs)
        .flat_map(|r| (0..key_heads).map(move |k| k * runs + r))
        .flat_map(|head| (0..width).map(move |i| (head * width + i) as u32))
        .collect();
    let index = Tensor::from_vec(order, n, &Device::Cpu).unwrap();
    t.index_select(&index, axis).unwrap()
}

/// The tiny Qwen3-Next or Qwen3.5 model in `fixture` as llama.cpp's converter writes it
/// (`qwen3next`, `qwen35`, `qwen35moe`): norms made `1 + w` but the DeltaNet's own, −exp(A_log)
/// as `ssm_a`, `dt_bias` as `ssm_dt.bias`, the kernel squeezed, the pre-FFN norm named
/// `post_attention_norm`, the experts stacked; Qwen3.5's value heads tiled over the key heads.
/// The layers are named by `attention.recurrent_layers` where `flags`, else by the interval.
/// `rounded`: each tensor of `dtype` written as F32 of its `dtype` values instead.
fn write_qwen3_next_gguf(
    fixture: &str,
    arch: &str,
    path: &Path,
    (dtype, rounded): (GgmlDType, bool),
    layout: DeltaLayout,
    flags: bool,
) {
    let src = fixtures().join("tiny").join(fixture);
    let top = read_json(&src.join("config.json"));
    let cfg = match top.get("text_config") {
        Some(text) => text.clone(),
        None => top.clone(),
    };
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (nk, nv, dk, dv) = (
        u("linear_num_key_heads"),
        u("linear_num_value_heads"),
        u("linear_key_head_dim"),
        u("linear_value_head_dim"),
    );
    let tiled = arch != "qwen3next";
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut stacks = ExpertStacks::default();
    let mut put = |name: String, t: Tensor, quantized: bool| {
        let ty = converted_type(&t, dtype, quantized);
        q.push((name, gguf_tensor(&t, ty, rounded)));
    };
    for (name, t) in &tensors {
        if name.starts_with("model.visual.") {
            continue;
        }
        let name = name.replace("model.language_model.", "model.");
        if let Some((l, proj, e)) = hf_expert(&name) {
            stacks.entry((l, proj)).or_default().push((e, t.clone()));
            continue;
        }
        let v_heads = |t: &Tensor, axis: usize, width: usize| match tiled {
            true => tiled_value_heads(t, axis, nk, width),
            false => t.clone(),
        };
        // The V rows of q/k/v's product or channels of the kernel: past q's and k's.
        let v_rows = |t: &Tensor| {
            let qk = 2 * nk * dk;
            let v = t.narrow(0, qk, nv * dv).unwrap();
            Tensor::cat(&[&t.narrow(0, 0, qk).unwrap(), &v_heads(&v, 0, dv)], 0).unwrap()
        };
        let Some((l, part)) = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
        else {
            let t = match name.as_str() {
                "model.norm.weight" => t.affine(1.0, 1.0).unwrap(),
                _ => t.clone(),
            };
            put(gguf_name(&name), t, name != "model.norm.weight");
            continue;
        };
        let blk = |what: &str| format!("blk.{l}.{what}");
        match part {
            "linear_attn.A_log" => put(
                blk("ssm_a"),
                v_heads(&t.exp().unwrap().neg().unwrap(), 0, 1),
                false,
            ),
            "linear_attn.dt_bias" => put(blk("ssm_dt.bias"), v_heads(t, 0, 1), false),
            "linear_attn.conv1d.weight" => put(
                blk("ssm_conv1d.weight"),
                v_rows(&t.squeeze(1).unwrap()),
                false,
            ),
            "linear_attn.norm.weight" => put(blk("ssm_norm.weight"), t.clone(), false),
            "linear_attn.out_proj.weight" => put(blk("ssm_out.weight"), v_heads(t, 1, dv), true),
            "linear_attn.in_proj_ba.weight" => put(blk("ssm_ba.weight"), t.clone(), true),
            "linear_attn.in_proj_qkv.weight" => put(blk("attn_qkv.weight"), v_rows(t), true),
            "linear_attn.in_proj_z.weight" => put(blk("attn_gate.weight"), v_heads(t, 0, dv), true),
            "linear_attn.in_proj_b.weight" => put(blk("ssm_beta.weight"), v_heads(t, 0, 1), true),
            "linear_attn.in_proj_a.weight" => put(blk("ssm_alpha.weight"), v_heads(t, 0, 1), true),
            "linear_attn.in_proj_qkvz.weight" if layout == DeltaLayout::Legacy => {
                put(blk("ssm_in.weight"), t.clone(), true)
            }
            "linear_attn.in_proj_qkvz.weight" => {
                // Per key head [q, k, v, z] regrouped as q of every head, k, v; z apart.
                let per = 2 * dk + 2 * (nv / nk) * dv;
                let hidden = t.dim(1).unwrap();
                let grouped = t.reshape((nk, per, hidden)).unwrap();
                let part = |from: usize, n: usize| {
                    grouped
                        .narrow(1, from, n)
                        .unwrap()
                        .reshape((nk * n, hidden))
                        .unwrap()
                };
                let vw = (nv / nk) * dv;
                let qkv = Tensor::cat(&[part(0, dk), part(dk, dk), part(2 * dk, vw)], 0).unwrap();
                put(blk("attn_qkv.weight"), qkv, true);
                put(blk("attn_gate.weight"), part(2 * dk + vw, vw), true);
            }
            "post_attention_layernorm.weight" => put(
                blk("post_attention_norm.weight"),
                t.affine(1.0, 1.0).unwrap(),
                false,
            ),
            _ if part.ends_with("norm.weight") => {
                put(gguf_name(&name), t.affine(1.0, 1.0).unwrap(), false)
            }
            _ => put(
                gguf_name(&name),
                t.clone(),
                !part.ends_with("mlp.gate.weight"),
            ),
        }
    }
    q.extend(stacked(stacks, |t| gguf_tensor(t, dtype, rounded)));
    let v = |k: &str| Value::U32(u(k) as u32);
    let head_dim = u("head_dim");
    let layers = u("num_hidden_layers");
    let mut md: Vec<(&str, Value)> = vec![
        ("embedding_length", v("hidden_size")),
        ("block_count", Value::U32(layers as u32)),
        ("attention.head_count", v("num_attention_heads")),
        ("attention.head_count_kv", v("num_key_value_heads")),
        ("attention.key_length", v("head_dim")),
        ("attention.value_length", v("head_dim")),
        ("context_length", v("max_position_embeddings")),
        ("vocab_size", v("vocab_size")),
        ("rope.freq_base", Value::F32(10000.0)),
        ("rope.dimension_count", Value::U32(head_dim as u32 / 4)),
        ("attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("ssm.conv_kernel", v("linear_conv_kernel_dim")),
        ("ssm.inner_size", Value::U32((nv * dv) as u32)),
        ("ssm.state_size", Value::U32(dk as u32)),
        ("ssm.group_count", Value::U32(nk as u32)),
        ("ssm.time_step_rank", Value::U32(nv as u32)),
    ];
    // Qwen3.5-MoE's converter writes no dense width.
    if arch != "qwen35moe" {
        md.push(("feed_forward_length", v("intermediate_size")));
    }
    let types = cfg["layer_types"].as_array().unwrap();
    match flags {
        true => md.push((
            "attention.recurrent_layers",
            Value::Array(
                types
                    .iter()
                    .map(|t| Value::Bool(t == "linear_attention"))
                    .collect(),
            ),
        )),
        // The fixtures attend every other layer.
        false => md.push(("full_attention_interval", Value::U32(2))),
    }
    if cfg["num_experts"].is_u64() {
        md.extend([
            ("expert_count", v("num_experts")),
            ("expert_used_count", v("num_experts_per_tok")),
            ("expert_feed_forward_length", v("moe_intermediate_size")),
            (
                "expert_shared_feed_forward_length",
                v("shared_expert_intermediate_size"),
            ),
        ]);
    }
    write_file(path, arch, md, &q);
}

/// Qwen3-Next (`qwen3next`, both layouts of its DeltaNet's product), Qwen3.5 (`qwen35`) and
/// Qwen3.5-MoE (`qwen35moe`, value heads tiled) as llama.cpp's converter writes them: the
/// checkouts' logits, exactly in F32. A Q8_0 file read with `--dequantize` gives exactly the
/// logits of its values written as F32, and runs as Q8_0 blocks. (Its logits are not held to
/// the checkout's within rounding: the tiny random DeltaNets are chaotic, as transformers
/// shows too: noise of Q8_0's size on `in_proj_qkvz` moves its logits by 5, through rows of
/// the gated norm's input ~1e-3 small, which the norm scales to 1.)
#[test]
fn gated_deltanet_hybrids_load_from_gguf() {
    for (fixture, arch, layout, flags) in [
        ("qwen3_next", "qwen3next", DeltaLayout::Legacy, false),
        ("qwen3_next", "qwen3next", DeltaLayout::Split, true),
        ("qwen3_5", "qwen35", DeltaLayout::Split, true),
        ("qwen3_5_moe", "qwen35moe", DeltaLayout::Split, false),
    ] {
        let label = format!("{fixture} as {arch}");
        check_recurrent_gguf(fixture, &label, &|path, dtype| {
            write_qwen3_next_gguf(fixture, arch, path, dtype, layout, flags)
        });
    }
}

/// The `ssm.*` keys llama.cpp's converters write for a Mamba-2 mixer: its convolution's taps,
/// inner channels, state size, B/C groups and heads (`time_step_rank`).
fn mamba2_ssm_metadata(
    conv: u32,
    inner: usize,
    state: u32,
    groups: u32,
    heads: usize,
) -> [(&'static str, Value); 5] {
    [
        ("ssm.conv_kernel", Value::U32(conv)),
        ("ssm.inner_size", Value::U32(inner as u32)),
        ("ssm.state_size", Value::U32(state)),
        ("ssm.group_count", Value::U32(groups)),
        ("ssm.time_step_rank", Value::U32(heads as u32)),
    ]
}

/// A Granite 4.0-H or Bamba config's attention heads, KV heads and Mamba-2 shapes (heads,
/// B/C groups, inner channels).
fn granite_hybrid_shapes(cfg: &serde_json::Value) -> (usize, usize, (usize, usize, usize)) {
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let inner = u("mamba_expand") * u("hidden_size");
    (
        u("num_attention_heads"),
        u("num_key_value_heads"),
        (u("mamba_n_heads"), u("mamba_n_groups"), inner),
    )
}

/// The keys llama.cpp's `granitehybrid` converter writes for any of its models (Granite
/// 4.0-H, Bamba) from `cfg`: shapes, the KV heads per layer (0 for the Mamba-2 layers:
/// `attends` says which attend), RoPE flagged by `rope.scaling.finetuned`, the `ssm.*` shapes
/// (`inner` channels).
fn granite_hybrid_metadata(
    cfg: &serde_json::Value,
    attends: impl Fn(usize) -> bool,
    rope: bool,
    inner: usize,
) -> Vec<(&'static str, Value)> {
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let v = |k: &str| Value::U32(u(k) as u32);
    let kv_heads = u("num_key_value_heads") as i32;
    let per_layer_kv = (0..u("num_hidden_layers"))
        .map(|l| Value::I32(if attends(l) { kv_heads } else { 0 }))
        .collect();
    let mut md = vec![
        ("embedding_length", v("hidden_size")),
        ("block_count", v("num_hidden_layers")),
        ("attention.head_count", v("num_attention_heads")),
        ("attention.head_count_kv", Value::Array(per_layer_kv)),
        ("vocab_size", v("vocab_size")),
        ("rope.freq_base", Value::F32(10000.0)),
        ("rope.scaling.finetuned", Value::Bool(rope)),
        ("attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
    ];
    let n = |k: &str| u(k) as u32;
    md.extend(mamba2_ssm_metadata(
        n("mamba_d_conv"),
        inner,
        n("mamba_d_state"),
        n("mamba_n_groups"),
        u("mamba_n_heads"),
    ));
    md
}

/// The tiny Granite 4.0-H model in `fixture` as llama.cpp's converter writes it
/// (`granitehybrid`): the Mamba-2 layers as `ssm_*` (−exp(A_log) and D as `[heads, 1]`, the
/// norm as `[groups, inner / groups]`, the kernel squeezed), no KV heads for them in the
/// per-layer `attention.head_count_kv`, RoPE flagged by `rope.scaling.finetuned` with llama's
/// q/k rows permuted, the shared MLP's halves as `ffn_*_shexp` (the FFN's own where there are
/// no experts), the experts split from their stacks; Granite's scales. `rounded` as for
/// `write_qwen3_next_gguf`.
fn write_granite_hybrid_gguf(fixture: &str, path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join(fixture);
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (heads, kv_heads, (mamba_heads, groups, inner)) = granite_hybrid_shapes(&cfg);
    let experts = u("num_local_experts");
    let rope = cfg["position_embedding_type"] == "rope";
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut stacks = ExpertStacks::default();
    let mut put = |name: String, t: Tensor, quantized: bool| {
        let ty = converted_type(&t, dtype, quantized);
        q.push((name, gguf_tensor(&t, ty, rounded)));
    };
    let shexp = if experts > 0 { "_shexp" } else { "" };
    for (name, t) in &tensors {
        let Some((l, part)) = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
        else {
            put(gguf_name(name), t.clone(), name != "model.norm.weight");
            continue;
        };
        let blk = |what: &str| format!("blk.{l}.{what}");
        let halves = |t: &Tensor| {
            let f = t.dim(t.rank() - 2).unwrap() / 2;
            let axis = t.rank() - 2;
            (t.narrow(axis, 0, f).unwrap(), t.narrow(axis, f, f).unwrap())
        };
        let mamba = part
            .strip_prefix("mamba.")
            .and_then(|p| mamba2_gguf_tensor(p, t, (mamba_heads, groups, inner)));
        if let Some((what, value, quantized)) = mamba {
            put(blk(what), value, quantized);
            continue;
        }
        match part {
            "mamba.in_proj.bias" => put(blk("ssm_in.bias"), t.clone(), false),
            "mamba.out_proj.bias" => put(blk("ssm_out.bias"), t.clone(), false),
            "self_attn.q_proj.weight" if rope => {
                put(blk("attn_q.weight"), permute_rope_rows(t, heads), true)
            }
            "self_attn.k_proj.weight" if rope => {
                put(blk("attn_k.weight"), permute_rope_rows(t, kv_heads), true)
            }
            "shared_mlp.input_linear.weight" => {
                let (gate, up) = halves(t);
                put(blk(&format!("ffn_gate{shexp}.weight")), gate, true);
                put(blk(&format!("ffn_up{shexp}.weight")), up, true);
            }
            "shared_mlp.output_linear.weight" => {
                put(blk(&format!("ffn_down{shexp}.weight")), t.clone(), true)
            }
            "block_sparse_moe.router.layer.weight" => {
                put(blk("ffn_gate_inp.weight"), t.clone(), false)
            }
            "block_sparse_moe.input_linear.weight" => {
                let (gate, up) = halves(t);
                for (proj, stack) in [("gate", gate), ("up", up)] {
                    for e in 0..experts {
                        let one = stack.get(e).unwrap();
                        stacks
                            .entry((l.to_string(), proj))
                            .or_default()
                            .push((e, one));
                    }
                }
            }
            "block_sparse_moe.output_linear.weight" => {
                for e in 0..experts {
                    let one = t.get(e).unwrap();
                    stacks
                        .entry((l.to_string(), "down"))
                        .or_default()
                        .push((e, one));
                }
            }
            "post_attention_layernorm.weight" => put(blk("ffn_norm.weight"), t.clone(), false),
            _ => put(gguf_name(name), t.clone(), !part.ends_with("norm.weight")),
        }
    }
    q.extend(stacked(stacks, |t| gguf_tensor(t, dtype, rounded)));
    let v = |k: &str| Value::U32(u(k) as u32);
    let f = |k: &str| Value::F32(cfg[k].as_f64().unwrap_or(1.0) as f32);
    let types = cfg["layer_types"].as_array().unwrap();
    let mut md = granite_hybrid_metadata(&cfg, |l| types[l] != "mamba", rope, inner);
    md.extend([
        ("context_length", Value::U32(1 << 20)),
        ("embedding_scale", f("embedding_multiplier")),
        ("attention.scale", f("attention_multiplier")),
        ("residual_scale", f("residual_multiplier")),
        ("logit_scale", f("logits_scaling")),
        ("expert_count", Value::U32(experts as u32)),
    ]);
    match experts {
        0 => md.push(("feed_forward_length", v("shared_intermediate_size"))),
        _ => md.extend([
            ("feed_forward_length", v("intermediate_size")),
            ("expert_used_count", v("num_experts_per_tok")),
            ("expert_feed_forward_length", v("intermediate_size")),
            (
                "expert_shared_feed_forward_length",
                v("shared_intermediate_size"),
            ),
        ]),
    }
    write_file(path, "granitehybrid", md, &q);
}

/// Granite 4.0-H (`granitehybrid`; with experts and NoPE, and -Micro style: no experts, RoPE)
/// as llama.cpp's converter writes it: the checkouts' logits exactly in F32; a Q8_0 file read
/// with `--dequantize` gives exactly the logits of its values written as F32, and runs.
#[test]
fn granite_4_hybrids_load_from_gguf() {
    for fixture in ["granitemoehybrid", "granitemoehybrid_dense"] {
        check_recurrent_gguf(fixture, fixture, &|path, dtype| {
            write_granite_hybrid_gguf(fixture, path, dtype)
        });
    }
}

/// The tiny Bamba model as llama.cpp's converter writes it (`granitehybrid`, as Granite 4.0-H):
/// its Mamba-2 layers as `write_granite_hybrid_gguf` writes them, its attention's q/k rows
/// permuted over whole heads, RoPE flagged, no Granite scalars (Bamba has none), the rotated
/// half of each head under `rope.dimension_count` (the converter writes the checkouts'
/// `attn_rotary_emb` so).
fn write_bamba_gguf(path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join("bamba");
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (heads, kv_heads, (mamba_heads, groups, inner)) = granite_hybrid_shapes(&cfg);
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &tensors {
        let mut put = |name: String, t: Tensor, quantized: bool| {
            let ty = converted_type(&t, dtype, quantized);
            q.push((name, gguf_tensor(&t, ty, rounded)));
        };
        let Some((l, part)) = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
        else {
            put(
                gguf_name(name),
                t.clone(),
                name != "model.final_layernorm.weight",
            );
            continue;
        };
        let blk = |what: &str| format!("blk.{l}.{what}");
        let mamba = part
            .strip_prefix("mamba.")
            .and_then(|p| mamba2_gguf_tensor(p, t, (mamba_heads, groups, inner)));
        match (mamba, part) {
            (Some((what, value, quantized)), _) => put(blk(what), value, quantized),
            (_, "self_attn.q_proj.weight") => {
                put(blk("attn_q.weight"), permute_rope_rows(t, heads), true)
            }
            (_, "self_attn.k_proj.weight") => {
                put(blk("attn_k.weight"), permute_rope_rows(t, kv_heads), true)
            }
            (_, "pre_ff_layernorm.weight") => put(blk("ffn_norm.weight"), t.clone(), false),
            _ => put(
                gguf_name(&name.replace(".feed_forward.", ".mlp.")),
                t.clone(),
                !part.ends_with("norm.weight"),
            ),
        }
    }
    let attends = cfg["attn_layer_indices"].as_array().unwrap();
    let attends = |l: usize| attends.iter().any(|a| a.as_u64() == Some(l as u64));
    let v = |k: &str| Value::U32(u(k) as u32);
    let mut md = granite_hybrid_metadata(&cfg, attends, true, inner);
    md.extend([
        ("context_length", v("max_position_embeddings")),
        ("feed_forward_length", v("intermediate_size")),
    ]);
    let rotated = cfg["hidden_size"].as_u64().unwrap() / heads as u64 / 2;
    md.push(("rope.dimension_count", Value::U32(rotated as u32)));
    write_file(path, "granitehybrid", md, &q);
}

/// Bamba as llama.cpp's converter writes it (`granitehybrid`): its q/k rows, permuted over
/// whole heads for an interleaved RoPE though Bamba rotates half of each head in HF's halves,
/// restored at load, so the checkout's logits come out (llama.cpp rotates other pairs).
#[test]
fn bamba_loads_from_gguf() {
    check_recurrent_gguf("bamba", "bamba", &write_bamba_gguf);
}

/// llama.cpp's name (under `blk.N.`) of the tiny Kimi Linear's tensor `part` (its name under
/// its layer), its value as the converter writes it and whether it is quantized, for all but
/// the experts and the latent attention's kv_b: the delta layers' convolutions as
/// `[1, channels, 1, taps]`, A_log as −exp(A_log), dt_bias as `ssm_dt.bias`.
fn kimi_linear_gguf_tensor(part: &str, t: &Tensor) -> (String, Tensor, bool) {
    let (what, value, quantized) = match part {
        "self_attn.A_log" => ("ssm_a", t.exp().unwrap().neg().unwrap(), false),
        "self_attn.dt_bias" => ("ssm_dt.bias", t.clone(), false),
        "self_attn.b_proj.weight" => ("ssm_beta.weight", t.clone(), true),
        "self_attn.o_norm.weight" => ("ssm_norm.weight", t.clone(), false),
        "self_attn.kv_a_proj_with_mqa.weight" => ("attn_kv_a_mqa.weight", t.clone(), true),
        "self_attn.kv_a_layernorm.weight" => ("attn_kv_a_norm.weight", t.clone(), false),
        "block_sparse_moe.gate.weight" => ("ffn_gate_inp.weight", t.clone(), false),
        "block_sparse_moe.gate.e_score_correction_bias" => ("exp_probs_b.bias", t.clone(), false),
        _ => {
            if let Some(qkv) = part
                .strip_prefix("self_attn.")
                .and_then(|p| p.strip_suffix("_conv1d.weight"))
            {
                let (c, _, k) = t.dims3().unwrap();
                let name = format!("ssm_conv1d_{qkv}.weight");
                return (name, t.reshape((1, c, 1, k)).unwrap(), false);
            }
            if let Some(low_rank) = part
                .strip_prefix("self_attn.")
                .and_then(|p| p.strip_suffix("_proj.weight"))
                .filter(|p| matches!(*p, "f_a" | "f_b" | "g_a" | "g_b"))
            {
                return (format!("ssm_{low_rank}.weight"), t.clone(), true);
            }
            let mlp = part
                .replace("block_sparse_moe.shared_experts.", "mlp.shared_experts.")
                .replace("block_sparse_moe.", "mlp.");
            let named = gguf_name(&format!("model.layers.0.{mlp}"));
            let name = named.strip_prefix("blk.0.").unwrap().to_string();
            return (name, t.clone(), !part.ends_with("norm.weight"));
        }
    };
    (what.to_string(), value, quantized)
}

/// The tiny Kimi Linear as llama.cpp's converter writes it (`kimi-linear`): DeepSeek's latent
/// attention in its absorbed form (one KV head per attention layer in the per-layer
/// `attention.head_count_kv`, none for the delta layers; kv_b split into `attn_k_b` and
/// `attn_v_b`), the delta layers' tensors as `kimi_linear_gguf_tensor` writes them, the
/// experts stacked; no gating function or normalization key (the converter writes neither
/// for it). `rounded` as for `write_qwen3_next_gguf`.
fn write_kimi_linear_gguf(path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join("kimi_linear");
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut experts = ExpertStacks::default();
    let mut put = |name: String, t: &Tensor, quantized: bool| {
        let ty = converted_type(t, dtype, quantized);
        q.push((name, gguf_tensor(&t.contiguous().unwrap(), ty, rounded)));
    };
    for (name, t) in &tensors {
        if let Some((l, proj, e)) = hf_expert(name) {
            experts.entry((l, proj)).or_default().push((e, t.clone()));
            continue;
        }
        let Some((l, part)) = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split_once('.'))
        else {
            put(gguf_name(name), t, name != "model.norm.weight");
            continue;
        };
        if part == "self_attn.kv_b_proj.weight" {
            for (what, t) in absorbed_kv_b(t, &cfg) {
                put(format!("blk.{l}.{what}.weight"), &t, true);
            }
            continue;
        }
        let (what, value, quantized) = kimi_linear_gguf_tensor(part, t);
        put(format!("blk.{l}.{what}"), &value, quantized);
    }
    q.extend(stacked(experts, |t| gguf_tensor(t, dtype, rounded)));
    let n = |k: &str| Value::U32(u(k) as u32);
    let linear = &cfg["linear_attn_config"];
    let per_layer_kv = (cfg["layer_types"].as_array().unwrap().iter())
        .map(|t| Value::I32(i32::from(t == "full_attention")))
        .collect();
    let mut md: Vec<(&str, Value)> = vec![
        ("embedding_length", n("hidden_size")),
        ("block_count", n("num_hidden_layers")),
        ("feed_forward_length", n("intermediate_size")),
        ("attention.head_count", n("num_attention_heads")),
        ("attention.head_count_kv", Value::Array(per_layer_kv)),
        ("context_length", n("model_max_length")),
        ("vocab_size", n("vocab_size")),
        ("attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        (
            "ssm.conv_kernel",
            Value::U32(linear["short_conv_kernel_size"].as_u64().unwrap() as u32),
        ),
        (
            "kda.head_dim",
            Value::U32(linear["head_dim"].as_u64().unwrap() as u32),
        ),
        ("leading_dense_block_count", n("first_k_dense_replace")),
        ("expert_count", n("num_experts")),
        ("expert_used_count", n("num_experts_per_token")),
        ("expert_shared_count", n("num_shared_experts")),
        ("expert_feed_forward_length", n("moe_intermediate_size")),
        (
            "expert_weights_scale",
            Value::F32(cfg["routed_scaling_factor"].as_f64().unwrap() as f32),
        ),
        ("expert_group_used_count", n("topk_group")),
    ];
    md.extend(absorbed_latent_metadata(&cfg));
    write_file(path, "kimi-linear", md, &q);
}

/// Kimi Linear (`kimi-linear`) as llama.cpp's converter writes it: the checkout's logits
/// exactly in F32, a Q8_0 file as its rounded values (`check_recurrent_gguf`).
#[test]
fn kimi_linear_loads_from_gguf() {
    check_recurrent_gguf("kimi_linear", "kimi-linear", &write_kimi_linear_gguf);
}

/// The checks of a recurrent model's GGUFs (`label` in failures) written by `write` (`(dtype,
/// rounded)` as `gguf_tensor` takes them): the checkout `fixture`'s logits exactly in F32; a
/// Q8_0 file read with `--dequantize` gives exactly the logits of its values written as F32 (a
/// tiny random recurrent model is chaotic: Q8_0-sized noise moves its logits too far to compare
/// with the checkout's), and runs.
fn check_recurrent_gguf(fixture: &str, label: &str, write: &dyn Fn(&Path, (GgmlDType, bool))) {
    let dir = tempfile::tempdir().unwrap();
    let file = |dtype: GgmlDType, rounded: bool| {
        let path = dir.path().join(format!("{dtype:?}-{rounded}.gguf"));
        write(&path, (dtype, rounded));
        path
    };
    let reference = logits(&fixtures().join("tiny").join(fixture));
    let d = max_abs_diff(&logits(&file(GgmlDType::F32, false)), &reference);
    assert!(d < 1e-4, "{label} F32: logits differ by {d}");
    let q8 = file(GgmlDType::Q8_0, false);
    let rounded = logits(&file(GgmlDType::Q8_0, true));
    let d = max_abs_diff(&logits_of(&q8, true), &rounded);
    assert!(d < 1e-4, "{label} Q8_0 dequantized: logits differ by {d}");
    assert!(logits(&q8).iter().all(|x| x.is_finite()), "{label} Q8_0");
}

/// llama.cpp's name of a Mamba-2 mixer's tensor `part` (its name under the mixer), its value in
/// the converter's shapes (`heads`, B/C `groups`, `inner` channels) and whether it is
/// quantized; None for another name: `ssm_in`, the convolution, dt's bias, −exp(A_log) and D
/// as `[heads, 1]`, the gated norm per group, `ssm_out`.
fn mamba2_gguf_tensor(
    part: &str,
    t: &Tensor,
    (heads, groups, inner): (usize, usize, usize),
) -> Option<(&'static str, Tensor, bool)> {
    Some(match part {
        "in_proj.weight" => ("ssm_in.weight", t.clone(), true),
        "conv1d.weight" => ("ssm_conv1d.weight", t.squeeze(1).unwrap(), false),
        "conv1d.bias" => ("ssm_conv1d.bias", t.clone(), false),
        "dt_bias" => ("ssm_dt.bias", t.clone(), false),
        "A_log" => {
            let a = t.exp().unwrap().neg().unwrap();
            ("ssm_a", a.reshape((heads, 1)).unwrap(), false)
        }
        "D" => ("ssm_d", t.reshape((heads, 1)).unwrap(), false),
        "norm.weight" => {
            let grouped = t.reshape((groups, inner / groups)).unwrap();
            ("ssm_norm.weight", grouped, false)
        }
        "out_proj.weight" => ("ssm_out.weight", t.clone(), true),
        _ => return None,
    })
}

/// The tiny Nemotron-H checkout `fixture` as llama.cpp's converter writes it (`nemotron_h`, or
/// `nemotron_h_moe` where it has experts): every layer's one norm `attn_norm`, per-layer KV
/// head counts and FFN widths (0 where a layer has none), Mamba-2's tensors in llama.cpp's
/// shapes, the experts stacked. A Mamba-2 checkout (`mamba2`: the same names, Mamba-2 layers
/// alone) as its `mamba2` GGUF.
fn write_nemotron_h_gguf(fixture: &str, path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join(fixture);
    let cfg = read_json(&src.join("config.json"));
    let pure = cfg["model_type"] == "mamba2";
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    // Mamba-2's keys as Nemotron-H names them, or as Mamba2Config does.
    let m = |nemotron: &'static str, mamba2: &'static str| if pure { mamba2 } else { nemotron };
    let (heads, groups) = (u(m("mamba_num_heads", "num_heads")), u("n_groups"));
    let inner = heads * u(m("mamba_head_dim", "head_dim"));
    let plan: Vec<String> = match pure {
        true => vec!["linear_attention".into(); u("num_hidden_layers")],
        false => cfg["layers_block_type"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
    };
    let moe = plan.iter().any(|t| t == "moe");
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut stacks = ExpertStacks::default();
    let mut put = |name: String, t: Tensor, quantized: bool| {
        let ty = converted_type(&t, dtype, quantized);
        q.push((name, gguf_tensor(&t, ty, rounded)));
    };
    for (name, t) in &tensors {
        let top = match name.as_str() {
            "backbone.embeddings.weight" => Some(("token_embd.weight", true)),
            "backbone.norm_f.weight" => Some(("output_norm.weight", false)),
            "lm_head.weight" => Some(("output.weight", true)),
            _ => None,
        };
        if let Some((gguf, quantized)) = top {
            put(gguf.to_string(), t.clone(), quantized);
            continue;
        }
        let rest = name.strip_prefix("backbone.layers.").unwrap();
        let (l, part) = rest.split_once('.').unwrap();
        let blk = |what: &str| format!("blk.{l}.{what}");
        if let Some(expert) = part.strip_prefix("mixer.experts.") {
            let (e, proj) = expert.split_once('.').unwrap();
            let proj = if proj.starts_with("up_proj") {
                "up"
            } else {
                "down"
            };
            let e: usize = e.parse().unwrap();
            stacks
                .entry((l.to_string(), proj))
                .or_default()
                .push((e, t.clone()));
            continue;
        }
        let (gguf, value, quantized) = match part {
            "norm.weight" => (blk("attn_norm.weight"), t.clone(), false),
            "mixer.q_proj.weight" => (blk("attn_q.weight"), t.clone(), true),
            "mixer.k_proj.weight" => (blk("attn_k.weight"), t.clone(), true),
            "mixer.v_proj.weight" => (blk("attn_v.weight"), t.clone(), true),
            "mixer.o_proj.weight" => (blk("attn_output.weight"), t.clone(), true),
            "mixer.up_proj.weight" => (blk("ffn_up.weight"), t.clone(), true),
            "mixer.down_proj.weight" => (blk("ffn_down.weight"), t.clone(), true),
            "mixer.gate.weight" => (blk("ffn_gate_inp.weight"), t.clone(), false),
            "mixer.gate.e_score_correction_bias" => (blk("exp_probs_b.bias"), t.clone(), false),
            "mixer.shared_experts.up_proj.weight" => (blk("ffn_up_shexp.weight"), t.clone(), true),
            "mixer.shared_experts.down_proj.weight" => {
                (blk("ffn_down_shexp.weight"), t.clone(), true)
            }
            other => {
                let mamba = other
                    .strip_prefix("mixer.")
                    .and_then(|p| mamba2_gguf_tensor(p, t, (heads, groups, inner)));
                let (what, value, quantized) =
                    mamba.unwrap_or_else(|| panic!("{fixture}: unexpected tensor {other}"));
                (blk(what), value, quantized)
            }
        };
        put(gguf, value, quantized);
    }
    q.extend(stacked(stacks, |t| gguf_tensor(t, dtype, rounded)));
    let v = |k: &str| Value::U32(u(k) as u32);
    let per_layer = |of: &dyn Fn(&str) -> usize| {
        Value::Array(plan.iter().map(|t| Value::I32(of(t) as i32)).collect())
    };
    let mut md: Vec<(&str, Value)> = vec![
        ("embedding_length", v("hidden_size")),
        ("block_count", Value::U32(plan.len() as u32)),
        ("context_length", Value::U32(1 << 20)),
        ("vocab_size", v("vocab_size")),
    ];
    let n = |k: &str| u(k) as u32;
    let state = n(m("ssm_state_size", "state_size"));
    md.extend(mamba2_ssm_metadata(
        n("conv_kernel"),
        inner,
        state,
        n("n_groups"),
        heads,
    ));
    if pure {
        md.push(("attention.layer_norm_rms_epsilon", Value::F32(1e-5)));
        write_file(path, "mamba2", md, &q);
        return;
    }
    let kv = u("num_key_value_heads");
    let (dense, expert) = (
        u("intermediate_size"),
        cfg["moe_intermediate_size"].as_u64(),
    );
    md.extend([
        ("attention.head_count", v("num_attention_heads")),
        (
            "attention.head_count_kv",
            per_layer(&|t| if t == "full_attention" { kv } else { 0 }),
        ),
        (
            "feed_forward_length",
            per_layer(&|t| match t {
                "mlp" => dense,
                "moe" => expert.unwrap() as usize,
                _ => 0,
            }),
        ),
        ("attention.key_length", v("head_dim")),
        ("attention.value_length", v("head_dim")),
        ("attention.layer_norm_epsilon", Value::F32(1e-5)),
    ]);
    if moe {
        md.extend([
            ("expert_count", v("n_routed_experts")),
            ("expert_used_count", v("num_experts_per_tok")),
            ("expert_feed_forward_length", v("moe_intermediate_size")),
            (
                "expert_shared_feed_forward_length",
                v("moe_shared_expert_intermediate_size"),
            ),
            ("expert_shared_count", v("n_shared_experts")),
            (
                "expert_weights_norm",
                Value::Bool(cfg["norm_topk_prob"] == true),
            ),
            (
                "expert_weights_scale",
                Value::F32(cfg["routed_scaling_factor"].as_f64().unwrap() as f32),
            ),
            ("expert_group_count", v("n_group")),
        ]);
    }
    let arch = if moe { "nemotron_h_moe" } else { "nemotron_h" };
    write_file(path, arch, md, &q);
}

/// Nemotron-H, Nemotron 3 Nano and Mamba-2 alone as llama.cpp's converter writes them: the
/// checkouts' logits exactly in F32; a Q8_0 file read with `--dequantize` gives exactly the
/// logits of its values written as F32, and runs.
#[test]
fn nemotron_h_and_mamba_2_load_from_gguf() {
    for fixture in ["nemotron_h", "nemotron_h_moe", "mamba2"] {
        check_recurrent_gguf(fixture, fixture, &|path, dtype| {
            write_nemotron_h_gguf(fixture, path, dtype)
        });
    }
}

/// llama.cpp's name of a Mamba-1 mixer's tensor `part` (its name under the mixer), its value
/// as the converter writes it and whether it is quantized; None for another name. The
/// products `ssm_in`, `ssm_x`, `ssm_dt` (with its bias), `ssm_out`; −exp(A_log) as `ssm_a`;
/// Jamba's norms of dt, B and C.
fn mamba1_gguf_tensor(part: &str, t: &Tensor) -> Option<(&'static str, Tensor, bool)> {
    Some(match part {
        "in_proj.weight" => ("ssm_in.weight", t.clone(), true),
        "conv1d.weight" => ("ssm_conv1d.weight", t.squeeze(1).unwrap(), false),
        "conv1d.bias" => ("ssm_conv1d.bias", t.clone(), false),
        "x_proj.weight" => ("ssm_x.weight", t.clone(), true),
        "dt_proj.weight" => ("ssm_dt.weight", t.clone(), false),
        "dt_proj.bias" => ("ssm_dt.bias", t.clone(), false),
        "A_log" => ("ssm_a", t.exp().unwrap().neg().unwrap(), false),
        "D" => ("ssm_d", t.clone(), false),
        "out_proj.weight" => ("ssm_out.weight", t.clone(), true),
        "dt_layernorm.weight" => ("ssm_dt_norm.weight", t.clone(), false),
        "b_layernorm.weight" => ("ssm_b_norm.weight", t.clone(), false),
        "c_layernorm.weight" => ("ssm_c_norm.weight", t.clone(), false),
        _ => return None,
    })
}

/// The tiny Mamba or Falcon Mamba checkout `fixture` as llama.cpp's converter writes it
/// (`mamba`; Falcon Mamba's with `ssm.dt_b_c_rms`): every layer's norm `attn_norm`, the
/// mixer's tensors as `mamba1_gguf_tensor` writes them.
fn write_mamba_gguf(fixture: &str, path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join(fixture);
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &tensors {
        let (gguf, value, quantized) = match name.as_str() {
            "backbone.embeddings.weight" => ("token_embd.weight".to_string(), t.clone(), true),
            "backbone.norm_f.weight" => ("output_norm.weight".to_string(), t.clone(), false),
            "lm_head.weight" => ("output.weight".to_string(), t.clone(), true),
            _ => {
                let rest = name.strip_prefix("backbone.layers.").unwrap();
                let (l, part) = rest.split_once('.').unwrap();
                let (what, value, quantized) = match part {
                    "norm.weight" => ("attn_norm.weight", t.clone(), false),
                    _ => part
                        .strip_prefix("mixer.")
                        .and_then(|p| mamba1_gguf_tensor(p, t))
                        .unwrap_or_else(|| panic!("{fixture}: unexpected tensor {part}")),
                };
                (format!("blk.{l}.{what}"), value, quantized)
            }
        };
        let ty = converted_type(&value, dtype, quantized);
        q.push((gguf, gguf_tensor(&value, ty, rounded)));
    }
    let v = |k: &str| Value::U32(u(k) as u32);
    let md: Vec<(&str, Value)> = vec![
        ("embedding_length", v("hidden_size")),
        ("block_count", v("num_hidden_layers")),
        ("context_length", Value::U32(1 << 20)),
        ("vocab_size", v("vocab_size")),
        ("attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("ssm.conv_kernel", v("conv_kernel")),
        ("ssm.inner_size", v("intermediate_size")),
        ("ssm.state_size", v("state_size")),
        ("ssm.time_step_rank", v("time_step_rank")),
        (
            "ssm.dt_b_c_rms",
            Value::Bool(cfg["model_type"] == "falcon_mamba"),
        ),
    ];
    write_file(path, "mamba", md, &q);
}

/// The tiny Jamba checkout as llama.cpp's converter writes it (`jamba`): per-layer KV head
/// counts (0 for the Mamba layers), q/k unpermuted (no RoPE), the Mamba-1 tensors as
/// `mamba1_gguf_tensor` writes them, the experts stacked beside their router.
fn write_jamba_gguf(path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join("jamba");
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let mut stacks = ExpertStacks::default();
    for (name, t) in &tensors {
        let (gguf, value, quantized) = match name.as_str() {
            "model.embed_tokens.weight" => ("token_embd.weight".to_string(), t.clone(), true),
            "model.final_layernorm.weight" => ("output_norm.weight".to_string(), t.clone(), false),
            "lm_head.weight" => ("output.weight".to_string(), t.clone(), true),
            _ => {
                let rest = name.strip_prefix("model.layers.").unwrap();
                let (l, part) = rest.split_once('.').unwrap();
                if let Some(expert) = part.strip_prefix("feed_forward.experts.") {
                    let (e, proj) = expert.split_once('.').unwrap();
                    let proj = proj.strip_suffix("_proj.weight").unwrap();
                    let proj = ["gate", "up", "down"]
                        .into_iter()
                        .find(|&p| p == proj)
                        .unwrap();
                    let e: usize = e.parse().unwrap();
                    stacks
                        .entry((l.to_string(), proj))
                        .or_default()
                        .push((e, t.clone()));
                    continue;
                }
                let (what, value, quantized) = match part {
                    "input_layernorm.weight" => ("attn_norm.weight", t.clone(), false),
                    "pre_ff_layernorm.weight" => ("ffn_norm.weight", t.clone(), false),
                    "self_attn.q_proj.weight" => ("attn_q.weight", t.clone(), true),
                    "self_attn.k_proj.weight" => ("attn_k.weight", t.clone(), true),
                    "self_attn.v_proj.weight" => ("attn_v.weight", t.clone(), true),
                    "self_attn.o_proj.weight" => ("attn_output.weight", t.clone(), true),
                    "feed_forward.router.weight" => ("ffn_gate_inp.weight", t.clone(), false),
                    "feed_forward.gate_proj.weight" => ("ffn_gate.weight", t.clone(), true),
                    "feed_forward.up_proj.weight" => ("ffn_up.weight", t.clone(), true),
                    "feed_forward.down_proj.weight" => ("ffn_down.weight", t.clone(), true),
                    _ => part
                        .strip_prefix("mamba.")
                        .and_then(|p| mamba1_gguf_tensor(p, t))
                        .unwrap_or_else(|| panic!("jamba: unexpected tensor {part}")),
                };
                (format!("blk.{l}.{what}"), value, quantized)
            }
        };
        let ty = converted_type(&value, dtype, quantized);
        q.push((gguf, gguf_tensor(&value, ty, rounded)));
    }
    q.extend(stacked(stacks, |t| gguf_tensor(t, dtype, rounded)));
    let v = |k: &str| Value::U32(u(k) as u32);
    let (period, offset) = (u("attn_layer_period"), u("attn_layer_offset"));
    let kv_heads = (0..u("num_hidden_layers"))
        .map(|l| match l % period == offset {
            true => Value::I32(u("num_key_value_heads") as i32),
            false => Value::I32(0),
        })
        .collect();
    let md: Vec<(&str, Value)> = vec![
        ("embedding_length", v("hidden_size")),
        ("block_count", v("num_hidden_layers")),
        ("context_length", Value::U32(1 << 20)),
        ("vocab_size", v("vocab_size")),
        ("feed_forward_length", v("intermediate_size")),
        ("attention.head_count", v("num_attention_heads")),
        ("attention.head_count_kv", Value::Array(kv_heads)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        ("ssm.conv_kernel", v("mamba_d_conv")),
        (
            "ssm.inner_size",
            Value::U32((u("mamba_expand") * u("hidden_size")) as u32),
        ),
        ("ssm.state_size", v("mamba_d_state")),
        ("ssm.time_step_rank", v("mamba_dt_rank")),
        ("expert_count", v("num_experts")),
        ("expert_used_count", v("num_experts_per_tok")),
    ];
    write_file(path, "jamba", md, &q);
}

/// Mamba and Falcon Mamba as llama.cpp's converter writes them (`mamba`).
#[test]
fn mamba_1_loads_from_gguf() {
    for fixture in ["mamba", "falcon_mamba"] {
        check_recurrent_gguf(fixture, fixture, &|path, dtype| {
            write_mamba_gguf(fixture, path, dtype)
        });
    }
}

/// The tiny Falcon-H1 checkout `fixture` as llama.cpp's converter writes it (`falcon-h1`):
/// every muP multiplier folded into the weights (the embeddings' and the head's too), the
/// FFN's norm named `ffn_norm` without a suffix (the converter maps the whole HF name), the
/// Mamba-2 tensors in llama.cpp's shapes, q/k as they are.
fn write_falcon_h1_gguf(fixture: &str, path: &Path, (dtype, rounded): (GgmlDType, bool)) {
    let src = fixtures().join("tiny").join(fixture);
    let cfg = read_json(&src.join("config.json"));
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let f = |k: &str| cfg[k].as_f64().unwrap();
    let fi = |k: &str, i: usize| cfg[k][i].as_f64().unwrap();
    let (heads, groups, state) = (u("mamba_n_heads"), u("mamba_n_groups"), u("mamba_d_state"));
    let inner = u("mamba_d_ssm");
    let bc = groups * state;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let scaled = |t: &Tensor, m: f64| t.affine(m, 0.0).unwrap();
    for (name, t) in &tensors {
        let (gguf, value, quantized) = match name.as_str() {
            "model.embed_tokens.weight" => (
                "token_embd.weight".to_string(),
                scaled(t, f("embedding_multiplier")),
                true,
            ),
            "model.final_layernorm.weight" => ("output_norm.weight".to_string(), t.clone(), false),
            "lm_head.weight" => (
                "output.weight".to_string(),
                scaled(t, f("lm_head_multiplier")),
                true,
            ),
            _ => {
                let rest = name.strip_prefix("model.layers.").unwrap();
                let (l, part) = rest.split_once('.').unwrap();
                let attn_in = f("attention_in_multiplier");
                let (what, value, quantized) = match part {
                    "input_layernorm.weight" => ("attn_norm.weight", t.clone(), false),
                    "pre_ff_layernorm.weight" => ("ffn_norm", t.clone(), false),
                    "self_attn.q_proj.weight" => ("attn_q.weight", scaled(t, attn_in), true),
                    "self_attn.k_proj.weight" => (
                        "attn_k.weight",
                        scaled(t, attn_in * f("key_multiplier")),
                        true,
                    ),
                    "self_attn.v_proj.weight" => ("attn_v.weight", scaled(t, attn_in), true),
                    "self_attn.o_proj.weight" => (
                        "attn_output.weight",
                        scaled(t, f("attention_out_multiplier")),
                        true,
                    ),
                    "feed_forward.gate_proj.weight" => {
                        ("ffn_gate.weight", scaled(t, fi("mlp_multipliers", 0)), true)
                    }
                    "feed_forward.up_proj.weight" => ("ffn_up.weight", t.clone(), true),
                    "feed_forward.down_proj.weight" => {
                        ("ffn_down.weight", scaled(t, fi("mlp_multipliers", 1)), true)
                    }
                    "mamba.in_proj.weight" => {
                        // z, x, B, C, dt rows, each section times its multiplier.
                        let sections = [inner, inner, bc, bc, heads];
                        let mut rows = Vec::new();
                        let mut from = 0;
                        for (i, n) in sections.into_iter().enumerate() {
                            let m = f("ssm_in_multiplier") * fi("ssm_multipliers", i);
                            rows.push(scaled(&t.narrow(0, from, n).unwrap(), m));
                            from += n;
                        }
                        ("ssm_in.weight", Tensor::cat(&rows, 0).unwrap(), true)
                    }
                    "mamba.out_proj.weight" => {
                        ("ssm_out.weight", scaled(t, f("ssm_out_multiplier")), true)
                    }
                    other => other
                        .strip_prefix("mamba.")
                        .and_then(|p| mamba2_gguf_tensor(p, t, (heads, groups, inner)))
                        .unwrap_or_else(|| panic!("{fixture}: unexpected tensor {other}")),
                };
                (format!("blk.{l}.{what}"), value, quantized)
            }
        };
        let ty = converted_type(&value, dtype, quantized);
        q.push((gguf, gguf_tensor(&value, ty, rounded)));
    }
    let v = |k: &str| Value::U32(u(k) as u32);
    let mut md: Vec<(&str, Value)> = vec![
        ("embedding_length", v("hidden_size")),
        ("block_count", v("num_hidden_layers")),
        ("context_length", Value::U32(1 << 20)),
        ("vocab_size", v("vocab_size")),
        ("feed_forward_length", v("intermediate_size")),
        ("attention.head_count", v("num_attention_heads")),
        ("attention.head_count_kv", v("num_key_value_heads")),
        ("attention.key_length", v("head_dim")),
        ("attention.value_length", v("head_dim")),
        ("rope.freq_base", Value::F32(f("rope_theta") as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(f("rms_norm_eps") as f32),
        ),
    ];
    let conv = u("mamba_d_conv") as u32;
    md.extend(mamba2_ssm_metadata(
        conv,
        inner,
        state as u32,
        groups as u32,
        heads,
    ));
    write_file(path, "falcon-h1", md, &q);
}

/// Falcon-H1 as llama.cpp's converter writes it (`falcon-h1`), of the checkout whose Mamba
/// has no output norm (llama.cpp norms after the gate where one is: the checkout with its norm
/// before the gate computes otherwise there).
#[test]
fn falcon_h1_loads_from_gguf() {
    check_recurrent_gguf("falcon_h1_plain", "falcon_h1", &|path, dtype| {
        write_falcon_h1_gguf("falcon_h1_plain", path, dtype)
    });
}

/// Jamba as llama.cpp's converter writes it (`jamba`).
#[test]
fn jamba_loads_from_gguf() {
    check_recurrent_gguf("jamba", "jamba", &write_jamba_gguf);
}

/// The tiny BitNet checkout `fixture` as llama.cpp's converter writes it (`bitnet`): llama's
/// keys, the sub-norms, q/k rows as they are (NeoX RoPE), the ternary products times their
/// scale in F32, or as TQ2_0 blocks (`--outtype tq2_0`) where `tq2_0`; the squared ReLU named
/// (`bitnet.hidden_activation`, as llama.cpp's fix for the 2B-4T writes it) where `named`.
fn write_bitnet_gguf(fixture: &str, path: &Path, tq2_0: bool, named: bool) {
    let src = fixtures().join("tiny").join(fixture);
    let cfg = read_json(&src.join("config.json"));
    let opened = open_model(&src, !tq2_0).unwrap();
    let mut names = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    for l in 0..cfg["num_hidden_layers"].as_u64().unwrap() {
        for part in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_sub_norm",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_sub_norm",
            "ffn_down",
        ] {
            names.push(format!("blk.{l}.{part}.weight"));
        }
    }
    let (mut q, mut own): (Vec<(String, QTensor)>, Vec<OwnTensor>) = (Vec::new(), Vec::new());
    for name in names {
        match opened.source.get(&name).unwrap().unwrap() {
            HostWeight::Mapped(m) => own.push((name, m.shape.clone(), m.bytes().to_vec(), 35)),
            w => q.push((
                name,
                QTensor::quantize(&w.to_f32().unwrap(), GgmlDType::F32).unwrap(),
            )),
        }
    }
    q.extend(own.iter().map(carrier));
    let u = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
    let mut md: Vec<(&str, Value)> = vec![
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
    ];
    if named {
        md.push(("hidden_activation", Value::String("relu2".into())));
    }
    write_file(path, "bitnet", md, &q);
    patch_own_types(path, &own);
}

/// BitNet b1.58 as llama.cpp's converter writes it (`bitnet`): in F32, the checkout's logits
/// exactly (the sub-norms, NeoX RoPE, the 8-bit activations the GGUF path quantizes too); as
/// TQ2_0 blocks, the checkout's logits served as TQ2_0 (the same blocks, the same kernels). A
/// file that names no activation runs SiLU, as llama.cpp runs it; bitnet.cpp's per-product
/// scale tensors are refused by name.
#[test]
fn bitnet_loads_from_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let f32_file = dir.path().join("bitnet.gguf");
    write_bitnet_gguf("bitnet", &f32_file, false, true);
    let reference = logits(&fixtures().join("tiny").join("bitnet"));
    let d = max_abs_diff(&logits(&f32_file), &reference);
    assert!(d < 1e-4, "bitnet F32: logits differ by {d}");
    let tq2 = dir.path().join("bitnet-tq2_0.gguf");
    write_bitnet_gguf("bitnet_tq2", &tq2, true, true);
    let w = GgufFile::open(&tq2, false)
        .unwrap()
        .get("blk.0.ffn_down.weight")
        .unwrap()
        .unwrap();
    let ternary = BlockType::Grid(candor_kernels::quant::QuantType::Tq2_0);
    assert!(
        matches!(&w, HostWeight::Mapped(m) if m.dtype == ternary),
        "{w:?}"
    );
    let reference = logits(&fixtures().join("tiny").join("bitnet_tq2"));
    let d = max_abs_diff(&logits(&tq2), &reference);
    assert!(d < 1e-4, "bitnet TQ2_0: logits differ by {d}");

    let unnamed = dir.path().join("bitnet-silu.gguf");
    write_bitnet_gguf("bitnet", &unnamed, false, false);
    let spec = open_model(&unnamed, false).unwrap().spec;
    assert_eq!(spec.activation, candor_models::backend::Activation::Silu);
    assert_eq!((spec.activation_bits, spec.sub_norms), (Some(8), true));

    let content = gguf_file::Content::read(&mut std::fs::File::open(&f32_file).unwrap()).unwrap();
    let mut tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let mut file = std::fs::File::open(&f32_file).unwrap();
            let t = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            (name.clone(), t)
        })
        .collect();
    let one = Tensor::new(&[1f32], &Device::Cpu).unwrap();
    tensors.push((
        "blk.0.attn_q.scale".into(),
        QTensor::quantize(&one, GgmlDType::F32).unwrap(),
    ));
    let scaled = dir.path().join("bitnet-scaled.gguf");
    write_gguf_file(&scaled, &metadata_of(&content), &tensors);
    let err = open_model(&scaled, false)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("scale"), "{err}");
}
