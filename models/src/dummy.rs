//! `--load-format dummy`: a real model's shapes with random weights, so speed can be measured
//! (on a GPU above all) without downloading the weights. The shapes come from each model's
//! published Hugging Face `config.json` (the fields the spec reads), parsed by the same code as a
//! real checkout; the weights are `HostWeight::Synthetic`, made by the backend on its device.
use crate::arch::spec_from_hf;
use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use crate::loader::{ModelFormat, OpenedModel};
use crate::spec::{Arch, ModelSpec};
use crate::weights::mxfp4;
use crate::weights::names::{expert, layer};
use crate::weights::synthetic::{
    block_scales, ggml_blocks, ggml_name, grid_blocks, mxfp4_blocks, tensor_seed, SyntheticWeight,
};
use crate::weights::{BlockType, HostWeight, WeightSource};
use candle_core::quantized::GgmlDType;
use serde_json::json;
use std::collections::BTreeMap;

/// One entry of the shape table.
pub struct DummyShape {
    /// `--arch` value (aliases in `ARCH_ALIASES`).
    pub arch: &'static str,
    /// `--size` value.
    pub size: &'static str,
    /// The model whose `config.json` the shapes are copied from (`test-only` for the tiny ones).
    pub source: &'static str,
    config: fn() -> serde_json::Value,
}

const ARCH_ALIASES: [(&str, &str); 21] = [
    ("minimax_m2", "minimax-m2"),
    ("qwen2.5", "qwen2"),
    ("gpt-neox", "gptneox"),
    ("gpt_neox", "gptneox"),
    ("pythia", "gptneox"),
    ("phi", "phi2"),
    ("llama3", "llama"),
    ("llama-3", "llama"),
    ("qwen3moe", "qwen3-moe"),
    ("qwen3_moe", "qwen3-moe"),
    ("deepseek-v2", "deepseek"),
    ("gpt_oss", "gpt-oss"),
    ("gptoss", "gpt-oss"),
    ("cohere", "command-r"),
    ("command-r-plus", "command-r"),
    ("command_r", "command-r"),
    ("gpt_bigcode", "starcoder"),
    ("gpt-bigcode", "starcoder"),
    ("ernie4_5_moe", "ernie4_5-moe"),
    ("ernie-4.5-moe", "ernie4_5-moe"),
    ("hunyuan_v1_moe", "hunyuan-moe"),
];

/// gpt-oss's published config, `layers` deep with `experts` experts (the 20B and the 120B
/// differ in nothing else).
fn gpt_oss(layers: usize, experts: usize) -> serde_json::Value {
    json!({"model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880,
           "intermediate_size": 2880, "num_hidden_layers": layers, "num_attention_heads": 64,
           "num_key_value_heads": 8, "head_dim": 64, "num_local_experts": experts,
           "num_experts_per_tok": 4, "sliding_window": 128, "rms_norm_eps": 1e-5,
           "rope_theta": 150000.0, "max_position_embeddings": 131072,
           "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                            "beta_slow": 1.0, "truncate": false,
                            "original_max_position_embeddings": 4096},
           "tie_word_embeddings": false, "bos_token_id": 199998, "eos_token_id": 200002})
}

/// Command R7B's config at other sizes: parallel LayerNorm blocks, three sliding layers
/// (window 4096) to one global, tied head, logits x 0.25.
fn cohere2(
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
) -> serde_json::Value {
    json!({"model_type": "cohere2", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": intermediate, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "layer_norm_eps": 1e-5, "rope_theta": 50000.0, "sliding_window": 4096,
           "sliding_window_pattern": 4, "logit_scale": 0.25, "max_position_embeddings": 132096,
           "tie_word_embeddings": true, "bos_token_id": 5, "eos_token_id": 255001})
}

/// ERNIE-4.5-21B-A3B's config at other sizes: layer 0 dense, the others 6 of `experts`
/// experts beside two shared ones, tied head.
fn ernie_moe(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    experts: usize,
) -> serde_json::Value {
    json!({"model_type": "ernie4_5_moe", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": 12288, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": 4, "head_dim": 128,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072,
           "moe_num_experts": experts, "moe_k": 6, "moe_intermediate_size": 1536,
           "moe_num_shared_experts": 2, "moe_layer_start_index": 1, "moe_layer_end_index": -1,
           "moe_layer_interval": 1, "use_bias": false, "tie_word_embeddings": true,
           "bos_token_id": 1, "eos_token_id": 2})
}

/// BitNet b1.58 2B-4T's config at other sizes: sub-norms, a squared-ReLU GLU, its ternary
/// products' 8-bit activations (the `bitnet` quantization config), tied head.
fn bitnet(
    vocab: usize,
    hidden: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
) -> serde_json::Value {
    json!({"model_type": "bitnet", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "relu2",
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 4096,
           "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": 128001,
           "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
               "quantization_mode": "offline"}})
}

/// Phi-3.5-MoE's config at other sizes: LayerNorms with biases, biased attention, experts
/// routed by sparsemixer (16 of them in the model), LongRoPE past 4096 positions (factors of
/// one: a dummy's RoPE costs the same whatever they are), a head with a bias.
fn phimoe(
    vocab: usize,
    hidden: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    experts: usize,
) -> serde_json::Value {
    let pairs = hidden / heads / 2;
    json!({"model_type": "phimoe", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "num_local_experts": experts,
           "num_experts_per_tok": 2, "router_jitter_noise": 0.01, "attention_bias": true,
           "lm_head_bias": true, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
           "rope_scaling": {"type": "longrope", "short_factor": vec![1.0; pairs],
               "long_factor": vec![1.0; pairs], "short_mscale": 1.243163121016122,
               "long_mscale": 1.243163121016122, "original_max_position_embeddings": 4096},
           "sliding_window": 131072, "tie_word_embeddings": false, "bos_token_id": 1,
           "eos_token_id": 32000})
}

/// Llama 4's text config at other sizes: chunked attention in three layers of four (the fourth
/// global, without RoPE, its queries tempered), one routed expert a token beside a shared
/// one in every `moe_step`-th layer (the others dense, of twice the width), untied head.
/// Scout's llama3 scaling where `scaled`, q/k L2 norms where `qk_norm`.
fn llama4(
    layers: usize,
    experts: usize,
    moe_step: usize,
    scaled: bool,
    qk_norm: bool,
    (vocab, hidden, heads, expert_ff): (usize, usize, usize, usize),
) -> serde_json::Value {
    let rope_scaling = scaled.then(|| {
        json!({"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
               "high_freq_factor": 1.0, "original_max_position_embeddings": 8192})
    });
    json!({"model_type": "llama4_text", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": expert_ff, "intermediate_size_mlp": 2 * expert_ff,
           "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": heads / 5, "head_dim": 128, "rms_norm_eps": 1e-5,
           "rope_theta": 500000.0, "max_position_embeddings": 1048576,
           "rope_scaling": rope_scaling, "num_local_experts": experts,
           "num_experts_per_tok": 1, "interleave_moe_layer_step": moe_step,
           "use_qk_norm": qk_norm, "no_rope_layers": [], "attention_chunk_size": 8192,
           "attn_temperature_tuning": true, "floor_scale": 8192, "attn_scale": 0.1,
           "tie_word_embeddings": false, "bos_token_id": 200000, "eos_token_id": 200008})
}

/// AFM-4.5B's config at other sizes (an ungated squared-ReLU MLP, YaRN over 4096 positions,
/// untied head).
fn arcee(vocab: usize, hidden: usize, ff: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "arcee", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": 4, "head_dim": 128, "hidden_act": "relu2",
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 65536,
           "rope_scaling": {"rope_type": "yarn", "factor": 20.0, "beta_fast": 32.0,
                            "beta_slow": 1.0, "original_max_position_embeddings": 4096},
           "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128003})
}

/// Hunyuan-A13B's config at other sizes: 8 of `experts` experts and a shared one in every
/// layer, each of `ff`, RoPE stretched by its NTK alpha, tied head.
fn hunyuan_moe(
    vocab: usize,
    hidden: usize,
    ff: usize,
    layers: usize,
    experts: usize,
) -> serde_json::Value {
    json!({"model_type": "hunyuan_v1_moe", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128, "num_experts": experts, "moe_topk": 8,
           "num_shared_expert": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "rope_scaling": {"type": "dynamic", "alpha": 1000.0, "factor": 1.0},
           "max_position_embeddings": 32768, "attention_bias": false,
           "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 127960})
}

/// dots.llm1's config at other sizes: Qwen3's attention, layer 0 dense, the others 6 of
/// `experts` sigmoid-routed experts beside two shared ones, untied head.
fn dots1(vocab: usize, hidden: usize, layers: usize, experts: usize) -> serde_json::Value {
    json!({"model_type": "dots1", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": 10944, "moe_intermediate_size": 1408,
           "num_hidden_layers": layers, "num_attention_heads": 32, "num_key_value_heads": 32,
           "head_dim": 128, "n_routed_experts": experts, "n_shared_experts": 2,
           "num_experts_per_tok": 6, "first_k_dense_replace": 1, "norm_topk_prob": true,
           "routed_scaling_factor": 2.5, "n_group": 1, "topk_group": 1, "rms_norm_eps": 1e-5,
           "rope_theta": 10000000.0, "max_position_embeddings": 32768,
           "tie_word_embeddings": false, "bos_token_id": 151643, "eos_token_id": 151649})
}

/// Command R+ (08-2024)'s config as published: Command R's parallel LayerNorm blocks with
/// per-head LayerNorms of q and k, tied head.
fn command_r_plus() -> serde_json::Value {
    json!({"model_type": "cohere", "vocab_size": 256000, "hidden_size": 12288,
           "intermediate_size": 33792, "num_hidden_layers": 64, "num_attention_heads": 96,
           "num_key_value_heads": 8, "layer_norm_eps": 1e-5, "rope_theta": 75000000.0,
           "logit_scale": 0.8333333, "use_qk_norm": true, "max_position_embeddings": 131072,
           "tie_word_embeddings": true, "bos_token_id": 5, "eos_token_id": 255001})
}

/// LFM2's config at other sizes: short convolutions (kernel 3) in every layer but the
/// `attention` ones, a SwiGLU FFN of two thirds of `ff` rounded up to 256, tied head.
fn lfm2(hidden: usize, ff: usize, heads: usize, attention: &[usize]) -> serde_json::Value {
    json!({"model_type": "lfm2", "vocab_size": 65536, "hidden_size": hidden,
           "block_ff_dim": ff, "block_multiple_of": 256, "block_ffn_dim_multiplier": 1.0,
           "block_auto_adjust_ff_dim": true, "num_hidden_layers": 16,
           "num_attention_heads": heads, "num_key_value_heads": 8, "norm_eps": 1e-5,
           "conv_L_cache": 3, "conv_bias": false, "rope_theta": 1000000.0,
           "max_position_embeddings": 128000, "full_attn_idxs": attention,
           "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 7})
}

/// MiniMax-M2's config (MiniMaxAI/MiniMax-M2; M2.1 has the same shapes): 62 layers of 256
/// experts of 1536, eight per token.
fn minimax_m2() -> serde_json::Value {
    json!({"model_type": "minimax_m2", "vocab_size": 200064, "hidden_size": 3072,
           "intermediate_size": 1536, "num_hidden_layers": 62, "num_attention_heads": 48,
           "num_key_value_heads": 8, "head_dim": 128, "rotary_dim": 64,
           "rope_theta": 5000000.0, "rms_norm_eps": 1e-6, "num_local_experts": 256,
           "num_experts_per_tok": 8, "scoring_func": "sigmoid", "use_routing_bias": true,
           "use_qk_norm": true, "qk_norm_type": "per_layer",
           "max_position_embeddings": 196608, "tie_word_embeddings": false})
}

/// LFM2-8B-A1B's config (`lfm2_moe`): LFM2's layers (attention in six of 24), dense FFNs of
/// 7168 in the first two, then 32 experts of 1792, four per token, sigmoid routing.
fn lfm2_moe() -> serde_json::Value {
    let types: Vec<&str> = (0..24)
        .map(|l| match [2, 6, 10, 14, 18, 21].contains(&l) {
            true => "full_attention",
            false => "conv",
        })
        .collect();
    json!({"model_type": "lfm2_moe", "vocab_size": 65536, "hidden_size": 2048,
           "intermediate_size": 7168, "moe_intermediate_size": 1792, "num_hidden_layers": 24,
           "num_attention_heads": 32, "num_key_value_heads": 8, "norm_eps": 1e-5,
           "conv_L_cache": 3, "conv_bias": false, "num_dense_layers": 2, "num_experts": 32,
           "num_experts_per_tok": 4, "use_expert_bias": true, "norm_topk_prob": true,
           "routed_scaling_factor": 1.0, "rope_theta": 1000000.0,
           "max_position_embeddings": 128000, "layer_types": types,
           "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 7})
}

/// Phi-2's config at other sizes (`phi`: parallel blocks, biases everywhere, 40% of each head
/// rotated, untied head).
fn phi(vocab: usize, hidden: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "phi", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": heads,
           "layer_norm_eps": 1e-5, "partial_rotary_factor": 0.4, "hidden_act": "gelu_new",
           "rope_theta": 10000.0, "max_position_embeddings": 2048,
           "tie_word_embeddings": false, "bos_token_id": 50256, "eos_token_id": 50256})
}

/// GPT-NeoX's config as Pythia's are published (the older key names), at other sizes.
fn pythia(hidden: usize, layers: usize, heads: usize, vocab: usize) -> serde_json::Value {
    json!({"model_type": "gpt_neox", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
           "num_attention_heads": heads, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
           "rotary_pct": 0.25, "rotary_emb_base": 10000, "max_position_embeddings": 2048,
           "use_parallel_residual": true, "tie_word_embeddings": false,
           "bos_token_id": 0, "eos_token_id": 0})
}

/// StableLM 2's config (q/k/v biases, a quarter of each head rotated, sequential blocks).
fn stablelm(
    vocab: usize,
    hidden: usize,
    ff: usize,
    layers: usize,
    heads: usize,
) -> serde_json::Value {
    json!({"model_type": "stablelm", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": heads, "hidden_act": "silu", "layer_norm_eps": 1e-5,
           "partial_rotary_factor": 0.25, "rope_theta": 10000, "use_qkv_bias": true,
           "qk_layernorm": false, "use_parallel_residual": false,
           "max_position_embeddings": 4096, "tie_word_embeddings": false,
           "bos_token_id": 100257, "eos_token_id": 100257})
}

/// Nemotron's config (LayerNorm1P, half-head RoPE, an ungated squared-ReLU MLP, no biases).
fn nemotron(vocab: usize, hidden: usize, ff: usize, heads: usize, kv: usize) -> serde_json::Value {
    json!({"model_type": "nemotron", "vocab_size": vocab, "hidden_size": hidden,
           "intermediate_size": ff, "num_hidden_layers": 32, "num_attention_heads": heads,
           "num_key_value_heads": kv, "head_dim": 128, "hidden_act": "relu2", "norm_eps": 1e-5,
           "partial_rotary_factor": 0.5, "rope_theta": 10000, "max_position_embeddings": 4096,
           "tie_word_embeddings": false, "bos_token_id": 2, "eos_token_id": 3})
}

/// GPT-2's config (its own key names) at other sizes.
fn gpt2(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    positions: usize,
) -> serde_json::Value {
    json!({"model_type": "gpt2", "vocab_size": vocab, "n_embd": hidden, "n_layer": layers,
           "n_head": heads, "n_positions": positions, "n_ctx": positions,
           "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
           "tie_word_embeddings": true, "bos_token_id": 50256, "eos_token_id": 50256})
}

/// OPT's config (its own key names) at other sizes: a ReLU MLP, positions after two rows.
fn opt(vocab: usize, hidden: usize, ffn: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "opt", "vocab_size": vocab, "hidden_size": hidden, "ffn_dim": ffn,
           "num_hidden_layers": layers, "num_attention_heads": heads,
           "max_position_embeddings": 2048, "word_embed_proj_dim": hidden,
           "activation_function": "relu", "do_layer_norm_before": true,
           "tie_word_embeddings": true, "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1})
}

/// OPT-350M's config: OPT's with norms after the residual adds and 512-wide embeddings.
fn opt_350m() -> serde_json::Value {
    let mut c = opt(50272, 1024, 4096, 24, 16);
    c["do_layer_norm_before"] = false.into();
    c["word_embed_proj_dim"] = 512.into();
    c
}

/// BLOOM's config (its own key names) at other sizes: ALiBi, an embeddings LayerNorm, biases
/// everywhere, a 4x tanh-GELU MLP, tied head.
fn bloom(hidden: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "bloom", "vocab_size": 250880, "hidden_size": hidden,
           "n_layer": layers, "n_head": heads, "layer_norm_epsilon": 1e-5,
           "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3})
}

/// MPT's config (its own key names) at other sizes: ALiBi, no biases, a 4x GELU MLP, tied.
fn mpt(vocab: usize, hidden: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "mpt", "vocab_size": vocab, "d_model": hidden, "n_layers": layers,
           "n_heads": heads, "expansion_ratio": 4, "max_seq_len": 2048, "no_bias": true,
           "attn_config": {"alibi": true, "alibi_bias_max": 8, "clip_qkv": null},
           "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 0})
}

/// StarCoder2's config at other sizes: biased LayerNorms and projections, an ungated
/// tanh-GELU MLP of 4x, a 4096-token window on every layer, tied head.
fn starcoder2(hidden: usize, layers: usize, heads: usize, kv_heads: usize) -> serde_json::Value {
    json!({"model_type": "starcoder2", "vocab_size": 49152, "hidden_size": hidden,
           "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "hidden_act": "gelu_pytorch_tanh", "norm_epsilon": 1e-5, "use_bias": true,
           "rope_theta": 999999.4420358813, "sliding_window": 4096,
           "max_position_embeddings": 16384, "tie_word_embeddings": true,
           "bos_token_id": 0, "eos_token_id": 0})
}

/// StarCoder's config (GPT-BigCode: GPT-2's blocks, multi-query, tied head) at other sizes.
fn starcoder(vocab: usize, hidden: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "gpt_bigcode", "vocab_size": vocab, "n_embd": hidden,
           "n_inner": 4 * hidden, "n_layer": layers, "n_head": heads, "n_positions": 8192,
           "multi_query": true, "activation_function": "gelu_pytorch_tanh",
           "layer_norm_epsilon": 1e-5, "scale_attn_weights": true,
           "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 0})
}

/// Falcon-7B's config (multi-query, parallel blocks of one LayerNorm, tied head) at other
/// sizes.
fn falcon(vocab: usize, hidden: usize, layers: usize, heads: usize) -> serde_json::Value {
    json!({"model_type": "falcon", "vocab_size": vocab, "hidden_size": hidden,
           "num_hidden_layers": layers, "num_attention_heads": heads, "multi_query": true,
           "new_decoder_architecture": false, "parallel_attn": true, "bias": false,
           "alibi": false, "layer_norm_epsilon": 1e-5, "max_position_embeddings": 2048,
           "tie_word_embeddings": true, "bos_token_id": 11, "eos_token_id": 11})
}

/// LFM2-350M's and LFM2-1.2B's attention layers.
const LFM2_ATTENTION: [usize; 6] = [2, 5, 8, 10, 12, 14];

/// Gemma (1)'s config at its two sizes: 256-wide heads, a 256k vocabulary, tied head.
fn gemma(
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv: usize,
) -> serde_json::Value {
    json!({"model_type": "gemma", "vocab_size": 256000, "hidden_size": hidden,
           "intermediate_size": intermediate, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": 256,
           "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 8192,
           "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true,
           "bos_token_id": 2, "eos_token_id": 1})
}

fn llama3_rope() -> serde_json::Value {
    json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192})
}

/// The table. Real sizes are the published configs; `tiny` ones are test-sized models of the
/// same architecture, for running the dummy path on a CPU.
pub const SHAPES: &[DummyShape] = &[
    DummyShape {
        arch: "llama",
        size: "8b",
        source: "meta-llama/Llama-3.1-8B",
        config: || {
            json!({"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
                   "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                   "max_position_embeddings": 131072, "rope_scaling": llama3_rope(),
                   "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128001})
        },
    },
    DummyShape {
        arch: "llama",
        size: "1b",
        source: "meta-llama/Llama-3.2-1B",
        config: || {
            let mut rope = llama3_rope();
            rope["factor"] = json!(32.0);
            json!({"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
                   "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                   "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5,
                   "rope_theta": 500000.0, "max_position_embeddings": 131072,
                   "rope_scaling": rope, "tie_word_embeddings": true,
                   "bos_token_id": 128000, "eos_token_id": 128001})
        },
    },
    DummyShape {
        arch: "llama",
        size: "tiny",
        source: "test-only",
        config: || {
            json!({"model_type": "llama", "vocab_size": 256, "hidden_size": 64,
                   "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                   "max_position_embeddings": 2048, "tie_word_embeddings": false})
        },
    },
    DummyShape {
        arch: "qwen2",
        size: "7b",
        source: "Qwen/Qwen2.5-7B",
        config: || {
            json!({"model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584,
                   "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                   "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 131072, "use_sliding_window": false,
                   "tie_word_embeddings": false, "bos_token_id": 151643, "eos_token_id": 151643})
        },
    },
    DummyShape {
        arch: "qwen2",
        size: "0.5b",
        source: "Qwen/Qwen2.5-0.5B",
        config: || {
            json!({"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
                   "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                   "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 32768, "use_sliding_window": false,
                   "tie_word_embeddings": true, "bos_token_id": 151643, "eos_token_id": 151643})
        },
    },
    DummyShape {
        arch: "qwen2",
        size: "tiny",
        source: "test-only",
        config: || {
            json!({"model_type": "qwen2", "vocab_size": 256, "hidden_size": 64,
                   "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 2048, "tie_word_embeddings": true})
        },
    },
    DummyShape {
        arch: "qwen3-moe",
        size: "30b-a3b",
        source: "Qwen/Qwen3-30B-A3B",
        config: || {
            json!({"model_type": "qwen3_moe", "vocab_size": 151936, "hidden_size": 2048,
                   "intermediate_size": 6144, "moe_intermediate_size": 768,
                   "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
                   "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
                   "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
                   "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 40960, "tie_word_embeddings": false,
                   "bos_token_id": 151643, "eos_token_id": 151645})
        },
    },
    DummyShape {
        arch: "qwen3-moe",
        size: "tiny",
        source: "test-only",
        config: || {
            json!({"model_type": "qwen3_moe", "vocab_size": 256, "hidden_size": 64,
                   "intermediate_size": 128, "moe_intermediate_size": 32,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "head_dim": 16, "num_experts": 8, "num_experts_per_tok": 2,
                   "norm_topk_prob": true, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 2048, "tie_word_embeddings": false})
        },
    },
    DummyShape {
        arch: "ernie4_5-moe",
        size: "21b-a3b",
        source: "baidu/ERNIE-4.5-21B-A3B-PT",
        config: || ernie_moe(103424, 2560, 28, 20, 64),
    },
    DummyShape {
        arch: "ernie4_5-moe",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = ernie_moe(256, 64, 3, 4, 8);
            for (k, v) in [
                ("intermediate_size", 128),
                ("moe_intermediate_size", 32),
                ("num_key_value_heads", 2),
                ("head_dim", 16),
            ] {
                c[k] = json!(v);
            }
            c
        },
    },
    DummyShape {
        arch: "bitnet",
        size: "2b",
        source: "microsoft/bitnet-b1.58-2B-4T",
        config: || bitnet(128256, 2560, 6912, 30, 20, 5),
    },
    DummyShape {
        arch: "bitnet",
        size: "tiny",
        source: "test-only",
        config: || bitnet(256, 64, 128, 2, 4, 2),
    },
    DummyShape {
        arch: "llama4",
        size: "scout",
        source: "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        config: || llama4(48, 16, 1, true, true, (202048, 5120, 40, 8192)),
    },
    DummyShape {
        arch: "llama4",
        size: "maverick",
        source: "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        config: || llama4(48, 128, 2, false, false, (202048, 5120, 40, 8192)),
    },
    DummyShape {
        arch: "llama4",
        size: "tiny",
        source: "test-only",
        config: || llama4(4, 4, 2, true, true, (256, 320, 5, 32)),
    },
    DummyShape {
        arch: "phimoe",
        size: "42b",
        source: "microsoft/Phi-3.5-MoE-instruct",
        config: || phimoe(32064, 4096, 6400, 32, 32, 8, 16),
    },
    DummyShape {
        arch: "phimoe",
        size: "tiny",
        source: "test-only",
        config: || phimoe(256, 64, 32, 2, 4, 2, 4),
    },
    DummyShape {
        arch: "arcee",
        size: "4.5b",
        source: "arcee-ai/AFM-4.5B",
        config: || arcee(128004, 2560, 18432, 36, 20),
    },
    DummyShape {
        arch: "arcee",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = arcee(256, 64, 128, 2, 4);
            c["num_key_value_heads"] = json!(2);
            c["head_dim"] = json!(16);
            c
        },
    },
    DummyShape {
        arch: "hunyuan-moe",
        size: "a13b",
        source: "tencent/Hunyuan-A13B-Instruct",
        config: || hunyuan_moe(128167, 4096, 3072, 32, 64),
    },
    DummyShape {
        arch: "hunyuan-moe",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = hunyuan_moe(256, 512, 64, 2, 8);
            c["num_key_value_heads"] = json!(2);
            c["head_dim"] = json!(16);
            c
        },
    },
    DummyShape {
        arch: "dots1",
        size: "142b",
        source: "rednote-hilab/dots.llm1.inst",
        config: || dots1(152064, 4096, 62, 128),
    },
    DummyShape {
        arch: "dots1",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = dots1(256, 512, 3, 8);
            for (k, v) in [
                ("intermediate_size", 128),
                ("moe_intermediate_size", 32),
                ("num_key_value_heads", 4),
                ("head_dim", 16),
            ] {
                c[k] = json!(v);
            }
            c
        },
    },
    DummyShape {
        arch: "deepseek",
        size: "v2-lite",
        source: "deepseek-ai/DeepSeek-V2-Lite",
        config: || {
            json!({"model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048,
                   "intermediate_size": 10944, "moe_intermediate_size": 1408,
                   "num_hidden_layers": 27, "num_attention_heads": 16,
                   "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2,
                   "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1,
                   "kv_lora_rank": 512, "q_lora_rank": null, "qk_nope_head_dim": 128,
                   "qk_rope_head_dim": 64, "v_head_dim": 128, "topk_method": "greedy",
                   "n_group": 1, "topk_group": 1, "norm_topk_prob": false,
                   "routed_scaling_factor": 1.0, "scoring_func": "softmax",
                   "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "max_position_embeddings": 163840,
                   "rope_scaling": {"type": "yarn", "factor": 40, "beta_fast": 32,
                                    "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707,
                                    "original_max_position_embeddings": 4096},
                   "tie_word_embeddings": false, "bos_token_id": 100000,
                   "eos_token_id": 100001})
        },
    },
    DummyShape {
        arch: "gpt-oss",
        size: "20b",
        source: "openai/gpt-oss-20b",
        config: || gpt_oss(24, 32),
    },
    DummyShape {
        arch: "gpt-oss",
        size: "120b",
        source: "openai/gpt-oss-120b",
        config: || gpt_oss(36, 128),
    },
    DummyShape {
        arch: "gpt-oss",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = gpt_oss(2, 4);
            for (k, v) in [
                ("vocab_size", 256),
                ("hidden_size", 64),
                ("intermediate_size", 32),
                ("num_attention_heads", 4),
                ("num_key_value_heads", 2),
                ("head_dim", 16),
                ("sliding_window", 16),
            ] {
                c[k] = json!(v);
            }
            c
        },
    },
    DummyShape {
        arch: "cohere2",
        size: "7b",
        source: "CohereLabs/c4ai-command-r7b-12-2024",
        config: || cohere2(256000, 4096, 14336, 32, 32, 8),
    },
    DummyShape {
        arch: "cohere2",
        size: "tiny",
        source: "test-only",
        config: || cohere2(256, 64, 128, 4, 4, 2),
    },
    DummyShape {
        arch: "command-r",
        size: "104b",
        source: "CohereLabs/c4ai-command-r-plus-08-2024",
        config: command_r_plus,
    },
    DummyShape {
        arch: "command-r",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = command_r_plus();
            for (k, v) in [
                ("vocab_size", 256),
                ("hidden_size", 64),
                ("intermediate_size", 128),
                ("num_hidden_layers", 2),
                ("num_attention_heads", 4),
                ("num_key_value_heads", 2),
            ] {
                c[k] = json!(v);
            }
            c
        },
    },
    DummyShape {
        arch: "lfm2",
        size: "1.2b",
        source: "LiquidAI/LFM2-1.2B",
        config: || lfm2(2048, 12288, 32, &LFM2_ATTENTION),
    },
    DummyShape {
        arch: "gemma",
        size: "2b",
        source: "google/gemma-2b",
        config: || gemma(2048, 16384, 18, 8, 1),
    },
    DummyShape {
        arch: "gemma",
        size: "7b",
        source: "google/gemma-7b",
        config: || gemma(3072, 24576, 28, 16, 16),
    },
    // transformers' Ministral 3 defaults are the 8B's (its text model: the checkouts add a
    // 0.4B vision encoder, which candor does not run).
    DummyShape {
        arch: "ministral3",
        size: "8b",
        source: "mistralai/Ministral-3-8B-Base-2512",
        config: || {
            let mut c = crate::arch::ministral3_text_defaults();
            c["model_type"] = "ministral3".into();
            c
        },
    },
    DummyShape {
        arch: "minimax-m2",
        size: "230b-a10b",
        source: "MiniMaxAI/MiniMax-M2",
        config: minimax_m2,
    },
    DummyShape {
        arch: "lfm2moe",
        size: "8b-a1b",
        source: "LiquidAI/LFM2-8B-A1B",
        config: lfm2_moe,
    },
    DummyShape {
        arch: "lfm2",
        size: "350m",
        source: "LiquidAI/LFM2-350M",
        config: || lfm2(1024, 6656, 16, &LFM2_ATTENTION),
    },
    DummyShape {
        arch: "lfm2",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = lfm2(64, 192, 4, &[1]);
            for (k, v) in [
                ("vocab_size", 256),
                ("num_hidden_layers", 3),
                ("num_key_value_heads", 2),
            ] {
                c[k] = json!(v);
            }
            c
        },
    },
    DummyShape {
        arch: "phi2",
        size: "2.7b",
        source: "microsoft/phi-2",
        config: || phi(51200, 2560, 32, 32),
    },
    DummyShape {
        arch: "phi2",
        size: "tiny",
        source: "test-only",
        config: || phi(256, 80, 2, 4),
    },
    DummyShape {
        arch: "gptneox",
        size: "1.4b",
        source: "EleutherAI/pythia-1.4b",
        config: || pythia(2048, 24, 16, 50304),
    },
    DummyShape {
        arch: "gptneox",
        size: "tiny",
        source: "test-only",
        config: || pythia(64, 2, 4, 256),
    },
    DummyShape {
        arch: "stablelm",
        size: "1.6b",
        source: "stabilityai/stablelm-2-1_6b",
        config: || stablelm(100352, 2048, 5632, 24, 32),
    },
    DummyShape {
        arch: "stablelm",
        size: "12b",
        source: "stabilityai/stablelm-2-12b",
        config: || {
            let mut c = stablelm(100352, 5120, 13824, 40, 32);
            c["num_key_value_heads"] = json!(8);
            c["use_qkv_bias"] = json!(false);
            c["qk_layernorm"] = json!(true);
            c["use_parallel_residual"] = json!(true);
            c
        },
    },
    DummyShape {
        arch: "stablelm",
        size: "tiny",
        source: "test-only",
        config: || stablelm(256, 64, 128, 2, 4),
    },
    DummyShape {
        arch: "nemotron",
        size: "4b",
        source: "nvidia/Nemotron-Mini-4B-Instruct",
        config: || nemotron(256000, 3072, 9216, 24, 8),
    },
    DummyShape {
        arch: "nemotron",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = nemotron(256, 64, 128, 4, 2);
            c["num_hidden_layers"] = json!(2);
            c["head_dim"] = json!(16);
            c
        },
    },
    DummyShape {
        arch: "gpt2",
        size: "124m",
        source: "openai-community/gpt2",
        config: || gpt2(50257, 768, 12, 12, 1024),
    },
    DummyShape {
        arch: "gpt2",
        size: "1.5b",
        source: "openai-community/gpt2-xl",
        config: || gpt2(50257, 1600, 48, 25, 1024),
    },
    DummyShape {
        arch: "gpt2",
        size: "tiny",
        source: "test-only",
        config: || gpt2(256, 64, 2, 4, 64),
    },
    DummyShape {
        arch: "opt",
        size: "125m",
        source: "facebook/opt-125m",
        config: || opt(50272, 768, 3072, 12, 12),
    },
    DummyShape {
        arch: "opt",
        size: "350m",
        source: "facebook/opt-350m",
        config: opt_350m,
    },
    DummyShape {
        arch: "opt",
        size: "1.3b",
        source: "facebook/opt-1.3b",
        config: || opt(50272, 2048, 8192, 24, 32),
    },
    DummyShape {
        arch: "opt",
        size: "tiny",
        source: "test-only",
        config: || opt(256, 64, 128, 2, 4),
    },
    DummyShape {
        arch: "bloom",
        size: "560m",
        source: "bigscience/bloom-560m",
        config: || bloom(1024, 24, 16),
    },
    DummyShape {
        arch: "bloom",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = bloom(64, 2, 4);
            c["vocab_size"] = json!(256);
            c
        },
    },
    DummyShape {
        arch: "mpt",
        size: "7b",
        source: "mosaicml/mpt-7b",
        config: || mpt(50432, 4096, 32, 32),
    },
    DummyShape {
        arch: "mpt",
        size: "tiny",
        source: "test-only",
        config: || mpt(256, 64, 2, 4),
    },
    DummyShape {
        arch: "starcoder2",
        size: "3b",
        source: "bigcode/starcoder2-3b",
        config: || starcoder2(3072, 30, 24, 2),
    },
    DummyShape {
        arch: "starcoder2",
        size: "tiny",
        source: "test-only",
        config: || {
            let mut c = starcoder2(64, 2, 4, 2);
            c["vocab_size"] = json!(256);
            c
        },
    },
    DummyShape {
        arch: "starcoder",
        size: "15b",
        source: "bigcode/starcoder",
        config: || starcoder(49152, 6144, 40, 48),
    },
    DummyShape {
        arch: "starcoder",
        size: "tiny",
        source: "test-only",
        config: || starcoder(256, 64, 2, 4),
    },
    DummyShape {
        arch: "falcon",
        size: "7b",
        source: "tiiuae/falcon-7b",
        config: || falcon(65024, 4544, 32, 71),
    },
    DummyShape {
        arch: "falcon",
        size: "tiny",
        source: "test-only",
        config: || falcon(256, 64, 2, 4),
    },
    DummyShape {
        arch: "deepseek",
        size: "tiny",
        source: "test-only",
        config: || {
            json!({"model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 64,
                   "intermediate_size": 128, "moe_intermediate_size": 32,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                   "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
                   "first_k_dense_replace": 1, "kv_lora_rank": 32, "q_lora_rank": 48,
                   "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
                   "n_group": 2, "topk_group": 1, "norm_topk_prob": true,
                   "routed_scaling_factor": 2.5, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "max_position_embeddings": 2048, "tie_word_embeddings": false})
        },
    },
];

/// The table entry for `--arch` / `--size` (case-insensitive, with aliases such as `qwen2.5`).
pub fn find(arch: &str, size: &str) -> Result<&'static DummyShape> {
    let arch = arch.to_ascii_lowercase();
    let arch = ARCH_ALIASES
        .iter()
        .find(|(alias, _)| *alias == arch)
        .map_or(arch.as_str(), |(_, canonical)| canonical);
    let size = size.to_ascii_lowercase();
    SHAPES
        .iter()
        .find(|s| s.arch == arch && s.size == size)
        .ok_or_else(|| {
            let known: Vec<String> = SHAPES
                .iter()
                .map(|s| format!("{} {}", s.arch, s.size))
                .collect();
            ModelError::Config(format!(
                "no dummy shapes for --arch {arch} --size {size} (known: {})",
                known.join(", ")
            ))
        })
}

impl DummyShape {
    pub fn spec(&self) -> Result<ModelSpec> {
        spec_from_hf(&(self.config)())
    }

    pub fn tied_embeddings(&self) -> bool {
        (self.config)()["tie_word_embeddings"]
            .as_bool()
            .unwrap_or(false)
    }

    /// `dummy-llama-8b`: the name results carry.
    pub fn name(&self) -> String {
        format!("dummy-{}-{}", self.arch, self.size)
    }
}

/// Every tensor a decoder of `spec` loads, by canonical name, with its shape and value range.
fn tensor_table(spec: &ModelSpec, tied: bool) -> BTreeMap<String, (Vec<usize>, f32, f32)> {
    let (h, q, kv, d) = (spec.hidden_size, spec.q_dim(), spec.kv_dim(), spec.head_dim);
    // Matrices: uniform with std 0.02 (HF's initializer_range); norms near 1; small biases.
    let a = 0.02 * 3f32.sqrt();
    let matrix = |shape: Vec<usize>| (shape, -a, a);
    let norm = |n: usize| (vec![n], 0.9, 1.1);
    let bias = |n: usize| (vec![n], -0.1, 0.1);
    let mut t = BTreeMap::new();
    let width = spec.output_width();
    t.insert(
        "token_embd.weight".into(),
        matrix(vec![spec.vocab_size, width]),
    );
    if !tied {
        t.insert("output.weight".into(), matrix(vec![spec.vocab_size, width]));
    }
    if let Some(w) = spec.embed_width {
        t.insert("token_embd_proj.weight".into(), matrix(vec![h, w]));
        t.insert("output_proj.weight".into(), matrix(vec![w, h]));
    }
    // Post-residual norms end the stream at the last block (OPT-350M).
    let final_norm = !spec.post_residual_norms;
    if final_norm {
        t.insert("output_norm.weight".into(), norm(h));
    }
    // Biases on every projection (Phi-2, GPT-NeoX) and the head (Phi-2), on the LayerNorms
    // where they have them.
    let biased = matches!(
        spec.arch,
        Arch::Phi2
            | Arch::GptNeox
            | Arch::Gpt2
            | Arch::GptBigcode
            | Arch::Starcoder2
            | Arch::Opt
            | Arch::Bloom
    );
    if spec.embed_norm {
        t.insert("token_embd_norm.weight".into(), norm(h));
        if spec.norm_bias {
            t.insert("token_embd_norm.bias".into(), bias(h));
        }
    }
    if spec.learned_positions {
        t.insert(
            "position_embd.weight".into(),
            matrix(vec![spec.max_position + spec.learned_position_offset, h]),
        );
    }
    // Phi-2's and Phi-3.5-MoE's heads have a bias.
    if matches!(spec.arch, Arch::Phi2 | Arch::PhiMoe) {
        t.insert("output.bias".into(), bias(spec.vocab_size));
    }
    if spec.norm_bias && final_norm {
        t.insert("output_norm.bias".into(), bias(h));
    }
    for l in 0..spec.num_layers {
        let n = |s: &str| layer(l, s);
        t.insert(n("attn_norm.weight"), norm(h));
        let ffn_norm = !spec.parallel_block || spec.parallel_ffn_norm;
        if ffn_norm {
            t.insert(n("ffn_norm.weight"), norm(h));
        }
        if spec.norm_bias {
            t.insert(n("attn_norm.bias"), bias(h));
            if ffn_norm {
                t.insert(n("ffn_norm.bias"), bias(h));
            }
        }
        if biased {
            t.insert(n("attn_output.bias"), bias(h));
            t.insert(n("ffn_up.bias"), bias(spec.intermediate_size));
            t.insert(n("ffn_down.bias"), bias(h));
        }
        ffn_tensors(spec, l, &mut t);
        if let Some(c) = spec.short_conv.as_ref().filter(|c| c.layers[l]) {
            t.insert(n("shortconv.in_proj.weight"), matrix(vec![3 * h, h]));
            t.insert(n("shortconv.conv.weight"), matrix(vec![h, c.kernel]));
            t.insert(n("shortconv.out_proj.weight"), matrix(vec![h, h]));
            continue;
        }
        if let Some(a) = &spec.latent_attention {
            let heads = spec.num_heads;
            let (qk, rank) = (a.qk_head_dim(), a.kv_lora_rank);
            match a.q_lora_rank {
                Some(qr) => {
                    t.insert(n("attn_q_a.weight"), matrix(vec![qr, h]));
                    t.insert(n("attn_q_a_norm.weight"), norm(qr));
                    t.insert(n("attn_q_b.weight"), matrix(vec![heads * qk, qr]));
                }
                None => {
                    t.insert(n("attn_q.weight"), matrix(vec![heads * qk, h]));
                }
            }
            let kv_a = rank + a.qk_rope_head_dim;
            t.insert(n("attn_kv_a_mqa.weight"), matrix(vec![kv_a, h]));
            t.insert(n("attn_kv_a_norm.weight"), norm(rank));
            let kv_b = heads * (a.qk_nope_head_dim + a.v_head_dim);
            t.insert(n("attn_kv_b.weight"), matrix(vec![kv_b, rank]));
            t.insert(
                n("attn_output.weight"),
                matrix(vec![h, heads * a.v_head_dim]),
            );
            continue;
        }
        t.insert(n("attn_q.weight"), matrix(vec![q, h]));
        t.insert(n("attn_k.weight"), matrix(vec![kv, h]));
        t.insert(n("attn_v.weight"), matrix(vec![kv, h]));
        if spec.qkv_bias {
            t.insert(n("attn_q.bias"), bias(q));
            t.insert(n("attn_k.bias"), bias(kv));
            t.insert(n("attn_v.bias"), bias(kv));
        }
        if spec.qk_norm_per_head {
            t.insert(n("attn_q_norm.weight"), (vec![spec.num_heads, d], 0.9, 1.1));
            t.insert(
                n("attn_k_norm.weight"),
                (vec![spec.num_kv_heads, d], 0.9, 1.1),
            );
        } else if spec.qk_norm_whole {
            t.insert(n("attn_q_norm.weight"), norm(q));
            t.insert(n("attn_k_norm.weight"), norm(kv));
        } else if spec.qk_norm {
            t.insert(n("attn_q_norm.weight"), norm(d));
            t.insert(n("attn_k_norm.weight"), norm(d));
        }
        t.insert(n("attn_output.weight"), matrix(vec![h, q]));
        // The attention's output gate as a product of its own (AFMoE's), which the loader
        // takes where a layer has one.
        if spec.attn_output_gate {
            t.insert(n("attn_gate.weight"), matrix(vec![q, h]));
        }
        // gpt-oss's and Phi-3.5-MoE's attention outputs have a bias (its q/k/v's, `qkv_bias`).
        if matches!(spec.arch, Arch::GptOss | Arch::PhiMoe) {
            t.insert(n("attn_output.bias"), bias(h));
        }
        if spec.attn_sinks {
            t.insert(n("attn_sinks.weight"), (vec![spec.num_heads], -1.0, 1.0));
        }
        if spec.sandwich_norms {
            t.insert(n("post_attention_norm.weight"), norm(h));
            t.insert(n("post_ffw_norm.weight"), norm(h));
        }
        if spec.sub_norms {
            t.insert(n("attn_sub_norm.weight"), norm(q));
            t.insert(n("ffn_sub_norm.weight"), norm(spec.intermediate_size));
        }
    }
    t
}

/// Layer `l`'s FFN tensors: its experts (router, each expert's three matrices, the shared
/// experts', DeepSeek-V3's correction bias) or its dense MLP.
fn ffn_tensors(spec: &ModelSpec, l: usize, t: &mut BTreeMap<String, (Vec<usize>, f32, f32)>) {
    let (h, f) = (spec.hidden_size, spec.intermediate_size);
    let a = 0.02 * 3f32.sqrt();
    let matrix = |shape: Vec<usize>| (shape, -a, a);
    let n = |s: &str| layer(l, s);
    let mlp = |t: &mut BTreeMap<_, _>, names: [String; 3], f: usize| {
        let [gate, up, down] = names;
        if spec.gated_ffn || spec.experts.is_some() {
            t.insert(gate, matrix(vec![f, h]));
        }
        t.insert(up, matrix(vec![f, h]));
        t.insert(down, matrix(vec![h, f]));
    };
    let Some(m) = spec.experts.as_ref().filter(|m| m.layers[l]) else {
        mlp(
            t,
            [
                n("ffn_gate.weight"),
                n("ffn_up.weight"),
                n("ffn_down.weight"),
            ],
            f,
        );
        return;
    };
    t.insert(n("ffn_gate_inp.weight"), matrix(vec![m.num_experts, h]));
    // gpt-oss: biases on the router and on each expert's three projections.
    let biased = spec.arch == Arch::GptOss;
    let bias = |len: usize| (vec![len], -0.1, 0.1);
    if biased {
        t.insert(n("ffn_gate_inp.bias"), bias(m.num_experts));
    }
    if m.correction_bias {
        t.insert(n("exp_probs_b.bias"), bias(m.num_experts));
    }
    for e in 0..m.num_experts {
        let names = ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"].map(|w| expert(l, w, e));
        if biased {
            let f = m.expert_intermediate_size;
            for (name, rows) in names.iter().zip([f, f, h]) {
                t.insert(name.replace(".weight", ".bias"), bias(rows));
            }
        }
        mlp(t, names, m.expert_intermediate_size);
    }
    if m.shared_gate {
        t.insert(n("ffn_gate_inp_shexp.weight"), matrix(vec![1, h]));
    }
    if m.shared_intermediate_size > 0 {
        let names =
            ["ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"].map(|w| n(&format!("{w}.weight")));
        mlp(t, names, m.shared_intermediate_size);
    }
}

/// How a dummy model's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DummyWeights {
    /// Every weight in one float type (F32, F16 or BF16).
    Float(WeightDtype),
    /// As gpt-oss is published: the experts' matrices in MXFP4 (random blocks, read in place
    /// on the CPU), every other weight bf16. Memory as the real model's (gpt-oss-20b: 13 GB).
    Mxfp4Experts,
    /// As llama.cpp quantizes a model to one type: every matrix whose rows are whole blocks
    /// in random blocks of this type (Q4_0, Q8_0, Q4_K or Q6_K), routers and vectors f32.
    Quantized(GgmlDType),
    /// Likewise in a grid type (IQ1_S .. IQ3_S, TQ1_0, TQ2_0; `weights::synthetic::
    /// grid_blocks`), read in place by the CPU kernels.
    Grid(candor_kernels::quant::QuantType),
}

impl From<WeightDtype> for DummyWeights {
    fn from(d: WeightDtype) -> Self {
        DummyWeights::Float(d)
    }
}

impl std::fmt::Display for DummyWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DummyWeights::Float(d) => write!(f, "{d}"),
            DummyWeights::Mxfp4Experts => f.write_str("MXFP4 experts, BF16"),
            DummyWeights::Quantized(d) => write!(f, "{}", ggml_name(*d)),
            DummyWeights::Grid(t) => write!(f, "{}", grid_name(*t)),
        }
    }
}

impl DummyWeights {
    /// The float type of the weights not stored as blocks.
    fn float(self) -> WeightDtype {
        match self {
            DummyWeights::Float(d) => d,
            DummyWeights::Mxfp4Experts => WeightDtype::BF16,
            DummyWeights::Quantized(_) | DummyWeights::Grid(_) => WeightDtype::F32,
        }
    }
}

/// A grid type as llama.cpp names it (`IQ2_XXS`, `TQ1_0`).
fn grid_name(t: candor_kernels::quant::QuantType) -> String {
    let debug = format!("{t:?}").to_uppercase();
    if debug.contains('_') {
        return debug;
    }
    // IQ2XXS -> IQ2_XXS: the digit after "IQ" ends the first part.
    match debug.split_at_checked(3) {
        Some((head, tail)) => format!("{head}_{tail}"),
        None => debug,
    }
}

/// Whether tensor `name` is one expert's matrix (`blk.L.ffn_up_exps.E.weight`).
fn expert_matrix(name: &str) -> bool {
    name.contains("_exps.") && name.ends_with(".weight")
}

/// Serves `HostWeight::Synthetic` for every tensor of the model (and MXFP4 blocks for the
/// experts' matrices where the weights say so).
pub struct DummySource {
    tensors: BTreeMap<String, (Vec<usize>, f32, f32)>,
    weights: DummyWeights,
    seed: u64,
}

impl DummySource {
    pub fn new(spec: &ModelSpec, tied: bool, weights: impl Into<DummyWeights>, seed: u64) -> Self {
        DummySource {
            tensors: tensor_table(spec, tied),
            weights: weights.into(),
            seed,
        }
    }

    /// Parameters of the model: the sum of its tensors' element counts.
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .values()
            .map(|(shape, _, _)| shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// Bytes the weights take as stored.
    pub fn stored_bytes(&self) -> u64 {
        let float = match self.weights.float() {
            WeightDtype::F32 => 4,
            _ => 2,
        };
        self.tensors
            .iter()
            .map(|(name, (shape, _, _))| {
                let elems = shape.iter().product::<usize>() as u64;
                let blocks = match self.block_type(name, shape) {
                    Some(BlockType::Mxfp4) => mxfp4::tensor_bytes(shape),
                    Some(dtype) => dtype.bytes_of(shape.iter().product()),
                    None => None,
                };
                match blocks {
                    Some(bytes) => bytes as u64,
                    None => elems * float,
                }
            })
            .sum()
    }

    /// The blocks tensor `name` is stored in, or None for a float tensor.
    fn block_type(&self, name: &str, shape: &[usize]) -> Option<BlockType> {
        let quantized = match self.weights {
            DummyWeights::Mxfp4Experts if expert_matrix(name) => return Some(BlockType::Mxfp4),
            DummyWeights::Quantized(d) => BlockType::Ggml(d),
            DummyWeights::Grid(t) => BlockType::Grid(t),
            _ => return None,
        };
        // Matrices whose rows are whole blocks only, and not the routers (llama.cpp keeps those
        // f32 too).
        let matrix = shape.len() == 2
            && shape[1].is_multiple_of(quantized.block().0)
            && !name.contains("ffn_gate_inp");
        matrix.then_some(quantized)
    }
}

impl WeightSource for DummySource {
    fn get(&self, name: &str) -> Result<Option<HostWeight>> {
        let Some((shape, lo, hi)) = self.tensors.get(name) else {
            return Ok(None);
        };
        let seed = tensor_seed(self.seed, name);
        let max_abs = lo.abs().max(hi.abs());
        match self.block_type(name, shape) {
            Some(BlockType::Mxfp4) => {
                let blocks = mxfp4_blocks(seed, shape.clone(), max_abs)?;
                return Ok(Some(HostWeight::Mapped(blocks)));
            }
            Some(BlockType::Ggml(d)) => {
                let blocks = ggml_blocks(seed, shape.clone(), d, max_abs)?;
                return Ok(Some(HostWeight::Mapped(blocks)));
            }
            Some(BlockType::Grid(t)) => {
                let blocks = grid_blocks(seed, shape.clone(), t, max_abs)?;
                return Ok(Some(HostWeight::Mapped(blocks)));
            }
            // Dummy weights come in no IQ4 type (`block_type`).
            Some(BlockType::Iq4Nl | BlockType::Iq4Xs) | None => {}
        }
        Ok(Some(HostWeight::Synthetic(SyntheticWeight {
            shape: shape.clone(),
            dtype: self.weights.float(),
            seed,
            lo: *lo,
            hi: *hi,
        })))
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// A dummy model, opened like a file: float weights are F32, F16 or BF16; MXFP4 experts need
/// a mixture of experts whose rows are whole blocks; quantized ones a type dummy blocks come in.
pub fn open_dummy(
    shape: &DummyShape,
    weights: impl Into<DummyWeights>,
    seed: u64,
) -> Result<OpenedModel> {
    let weights = weights.into();
    let float = weights.float();
    if !matches!(
        float,
        WeightDtype::F32 | WeightDtype::F16 | WeightDtype::BF16
    ) {
        return Err(ModelError::Config(format!(
            "dummy weights are f32, f16 or bf16, not {float}"
        )));
    }
    let spec = shape.spec()?;
    if weights == DummyWeights::Mxfp4Experts && spec.experts.is_none() {
        return Err(ModelError::Config(format!(
            "{} has no experts to store in MXFP4",
            shape.name()
        )));
    }
    if let DummyWeights::Quantized(d) = weights {
        // A type dummy blocks do not come in is refused here, before any weight is made.
        block_scales(d, 1.0)?;
    }
    let source = DummySource::new(&spec, shape.tied_embeddings(), weights, seed);
    Ok(OpenedModel {
        path: shape.name().into(),
        format: ModelFormat::Dummy,
        spec,
        source: Box::new(source),
        gguf: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(arch: &str, size: &str) -> u64 {
        let s = find(arch, size).unwrap();
        DummySource::new(
            &s.spec().unwrap(),
            s.tied_embeddings(),
            WeightDtype::BF16,
            0,
        )
        .parameter_count()
    }

    /// The totals published for each model (safetensors metadata on its Hugging Face page).
    #[test]
    fn parameter_counts_match_the_published_models() {
        assert_eq!(params("llama", "8b"), 8_030_261_248);
        assert_eq!(params("llama", "1b"), 1_235_814_400);
        assert_eq!(params("qwen2.5", "7b"), 7_615_616_512);
        assert_eq!(params("qwen2", "0.5b"), 494_032_768);
        assert_eq!(params("qwen3-moe", "30b-a3b"), 30_532_122_624);
        // dots.llm1 (142B on its page; 142,774,381,696 by my count of its config's shapes).
        assert_eq!(params("dots1", "142b"), 142_774_381_696);
        // Hunyuan-A13B (80B on its page: 80,393,183,232), 64 experts and a shared one a layer.
        assert_eq!(params("hunyuan-moe", "a13b"), 80_393_183_232);
        // AFM-4.5B (4.62B by my count of its config's shapes: 4.5B on its page, which does
        // not say whether the untied embeddings count).
        assert_eq!(params("arcee", "4.5b"), 4_619_184_640);
        // BitNet b1.58 2B-4T ("~2 billion" on its page; 2.41B with the tied embeddings).
        assert_eq!(params("bitnet", "2b"), 2_412_820_480);
        // Phi-3.5-MoE (41.9B on its page), 16 experts a layer, biases on the attention, the
        // norms and the head.
        assert_eq!(params("phimoe", "42b"), 41_873_153_344);
        // Llama 4's text models (109B and 400B on their pages, the vision tower and its
        // projector included; 107.8B and 400.7B by my count of their text configs' shapes).
        assert_eq!(params("llama4", "scout"), 107_769_861_120);
        assert_eq!(params("llama4", "maverick"), 400_711_848_960);
        // ERNIE-4.5-21B-A3B (21B on its page; 21,825,437,888 by my count of its config's
        // shapes, its multi-token-prediction layers left out as every runtime leaves them).
        assert_eq!(params("ernie4_5-moe", "21b-a3b"), 21_825_437_888);
        assert_eq!(params("deepseek", "v2-lite"), 15_706_484_224);
        // The model card gives gpt-oss's totals to 10M: 20.91B and 116.83B.
        let near = |p: u64, billions: f64| ((p as f64 / 1e9) - billions).abs() < 0.005;
        assert!(
            near(params("gpt-oss", "20b"), 20.91),
            "{}",
            params("gpt-oss", "20b")
        );
        assert!(
            near(params("gpt_oss", "120b"), 116.83),
            "{}",
            params("gpt-oss", "120b")
        );
    }

    #[test]
    fn specs_carry_the_published_attention_shapes() {
        let l = find("llama", "8b").unwrap().spec().unwrap();
        assert_eq!((l.num_heads, l.num_kv_heads, l.head_dim), (32, 8, 128));
        assert!(!l.qkv_bias);
        let q = find("QWEN2.5", "7B").unwrap().spec().unwrap();
        assert_eq!((q.num_heads, q.num_kv_heads, q.head_dim), (28, 4, 128));
        assert!(q.qkv_bias);
        assert!(q.layer_windows.iter().all(Option::is_none));
        let c = find("cohere2", "7b").unwrap().spec().unwrap();
        assert!(c.parallel_block && c.layer_norm);
        assert_eq!(
            c.layer_windows[..4],
            [Some(4096), Some(4096), Some(4096), None]
        );
        // Command R7B's model card: 8.03B parameters.
        assert_eq!(params("cohere2", "7b"), 8_028_033_024);
        // LFM2-1.2B's safetensors total (1.17B on its page); 350M by its config, likewise
        // counted. Ten of their sixteen layers are convolutions.
        assert_eq!(params("lfm2", "1.2b"), 1_170_340_608);
        assert_eq!(params("lfm2", "350m"), 354_483_968);
        // Gemma 2B's and 7B's safetensors totals (2.51B and 8.54B on their pages).
        assert_eq!(params("gemma", "2b"), 2_506_172_416);
        assert_eq!(params("gemma", "7b"), 8_537_680_896);
        // My count of MiniMax-M2's shapes (its page: 230B in all, 10B active; the multi-token
        // prediction modules left out).
        assert_eq!(params("minimax-m2", "230b-a10b"), 228_689_764_864);
        // Ministral 3 8B's text model (its page: 8.4B language model + 0.4B vision encoder).
        assert_eq!(params("ministral3", "8b"), 8_489_553_920);
        // My count of LFM2-8B-A1B's shapes (its page: 8.3B in all, 1.5B active).
        assert_eq!(params("lfm2moe", "8b-a1b"), 8_339_930_560);
        let l = find("lfm2", "1.2b").unwrap().spec().unwrap();
        let conv = l.short_conv.as_ref().unwrap();
        assert_eq!(conv.layers.iter().filter(|&&c| c).count(), 10);
        assert_eq!(l.intermediate_size, 8192);
        let tiny = open_dummy(find("lfm2", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        assert!(tiny.source.contains("blk.0.shortconv.conv.weight"));
        assert!(!tiny.source.contains("blk.0.attn_q.weight"));
        assert!(tiny.source.contains("blk.1.attn_q_norm.weight"));
        let tiny = open_dummy(find("cohere2", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        assert!(!tiny.source.contains("blk.0.ffn_norm.weight"));
        // microsoft/phi-2's safetensors total (2.78B on its page): biases on every projection
        // and on the head, no gate.
        assert_eq!(params("phi2", "2.7b"), 2_779_683_840);
        let p = find("phi2", "2.7b").unwrap().spec().unwrap();
        assert_eq!((p.head_dim, p.rotary_dim), (80, Some(32)));
        let tiny = open_dummy(find("phi2", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        assert!(tiny.source.contains("output.bias") && tiny.source.contains("blk.1.ffn_up.bias"));
        assert!(!tiny.source.contains("blk.0.ffn_gate.weight"));
        // EleutherAI/pythia-1.4b's total (its model card: 1,414,647,808): two biased
        // LayerNorms per layer, biased q/k/v, output and MLP products, an untied head.
        assert_eq!(params("gptneox", "1.4b"), 1_414_647_808);
        let p = find("gptneox", "1.4b").unwrap().spec().unwrap();
        assert_eq!((p.head_dim, p.rotary_dim), (128, Some(32)));
        assert!(p.parallel_ffn_norm);
        let tiny = open_dummy(find("gptneox", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        assert!(tiny.source.contains("blk.1.ffn_norm.bias"));
        assert!(!tiny.source.contains("output.bias"));
        // stabilityai/stablelm-2-1_6b's total (1.64B on its page: 1,644,515,328).
        assert_eq!(params("stablelm", "1.6b"), 1_644_515_328);
        // StableLM-2-12B (12.1B on its page; 12,143,185,920 by my count of its config's
        // shapes): parallel blocks, per-head q/k norms (head_dim 160), GQA 32/8, untied.
        assert_eq!(params("stablelm", "12b"), 12_143_185_920);
        // Command R+ 08-2024 (104B on its page: 103,810,674,688), tied head, per-head norms.
        assert_eq!(params("command-r", "104b"), 103_810_674_688);
        let c = find("command-r-plus", "104b").unwrap().spec().unwrap();
        assert!(c.qk_norm_per_head && c.parallel_block);
        let tiny = open_dummy(find("cohere", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        let k_norm = tiny
            .source
            .get("blk.1.attn_k_norm.weight")
            .unwrap()
            .unwrap();
        assert_eq!(k_norm.shape(), [tiny.spec.num_kv_heads, tiny.spec.head_dim]);
        // Nemotron-Mini-4B-Instruct (4.19B on its page): no gate, biased LayerNorms.
        assert_eq!(params("nemotron", "4b"), 4_190_509_056);
        // GPT-2 (124,439,808) and GPT-2 XL (1,557,611,200): learned positions, tied head.
        assert_eq!(params("gpt2", "124m"), 124_439_808);
        assert_eq!(params("gpt2", "1.5b"), 1_557_611_200);
        // OPT-125M (125,239,296) and OPT-1.3B (1,315,758,080): the position table's two extra
        // rows counted, tied head.
        assert_eq!(params("opt", "125m"), 125_239_296);
        assert_eq!(params("opt", "350m"), 331_196_416);
        assert_eq!(params("opt", "1.3b"), 1_315_758_080);
        // BLOOM-560M (559,214,592): its embeddings' LayerNorm, biases everywhere, tied.
        assert_eq!(params("bloom", "560m"), 559_214_592);
        // MPT-7B (6,649,286,656): no biases, weight-only LayerNorms, tied.
        assert_eq!(params("mpt", "7b"), 6_649_286_656);
        // StarCoder2-3B (3.03B on its page: 3,030,371,328): biases everywhere, tied.
        assert_eq!(params("starcoder2", "3b"), 3_030_371_328);
        // StarCoder (15.5B on its page: 15,517,456,384): one KV head, learned positions over
        // 8192, biases everywhere, tied.
        assert_eq!(params("gpt_bigcode", "15b"), 15_517_456_384);
        let s = find("starcoder", "15b").unwrap().spec().unwrap();
        assert_eq!((s.num_heads, s.num_kv_heads, s.head_dim), (48, 1, 128));
        // Falcon-7B (6,921,720,704): 71 q heads and one KV head in `query_key_value`, tied.
        assert_eq!(params("falcon", "7b"), 6_921_720_704);
        let f = find("falcon", "7b").unwrap().spec().unwrap();
        assert_eq!((f.num_heads, f.num_kv_heads), (71, 1));
    }

    #[test]
    fn unknown_shapes_list_the_known_ones() {
        let e = find("llama", "70b").err().unwrap().to_string();
        assert!(e.contains("llama 8b") && e.contains("qwen2 7b"), "{e}");
        assert!(open_dummy(find("llama", "tiny").unwrap(), WeightDtype::Q4K, 0).is_err());
    }

    #[test]
    fn tied_models_have_no_output_weight() {
        let tied = open_dummy(find("qwen2", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        assert!(!tied.source.contains("output.weight"));
        assert!(tied.source.contains("blk.1.attn_q.bias"));
        let untied = open_dummy(find("llama", "tiny").unwrap(), WeightDtype::F32, 0).unwrap();
        assert!(untied.source.contains("output.weight"));
        assert!(!untied.source.contains("blk.0.attn_q.bias"));
        assert!(untied.source.get("blk.2.attn_q.weight").unwrap().is_none());
    }
}
