//! Architectures: how each family's hyper-parameters are read from an HF `config.json` or from
//! GGUF metadata. The forward pass is shared (`crate::decoder`), driven by the resulting spec.
pub mod afmoe;
pub mod apertus;
pub mod arcee;
pub mod bitnet;
pub mod bloom;
pub mod cohere;
pub mod deepseek;
pub mod dots1;
pub mod ernie4_5;
pub mod exaone4;
pub mod experts;
pub mod falcon;
pub mod falcon_h1;
pub mod gemma3;
pub mod glm4;
pub mod glm4_moe;
pub mod gpt2;
pub mod gpt_bigcode;
pub mod gpt_neox;
pub mod gpt_oss;
pub mod gptj;
pub mod granite;
pub mod hunyuan_dense;
pub mod jais2;
pub mod jamba;
pub mod kimi_linear;
pub mod lfm2;
pub mod llama;
pub mod llama4;
pub mod mamba;
pub mod mamba2;
pub mod minicpm;
pub mod minimax_m2;
pub mod mistral;
pub mod mpt;
pub mod nemotron;
pub mod nemotron_h;
pub mod olmo;
pub mod olmo2;
pub mod olmo_hybrid;
pub mod olmoe;
pub mod opt;
pub mod phi2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3_next;
pub mod rope_parameters;
pub mod seed_oss;
pub mod smollm3;
pub mod stablelm;
pub mod starcoder2;

use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec, RopeConfig, RopeScaling};
use crate::weights::gguf::GgufFile;
use crate::weights::names::HfNormNaming;

/// The `model_type`s `spec_from_hf` reads (a test holds them to it), named by the error for
/// any other.
pub const HF_MODEL_TYPES: [&str; 85] = [
    "llama",
    "mistral",
    "ministral",
    "ministral3",
    "qwen2",
    "qwen3",
    "qwen2_moe",
    "qwen3_moe",
    "qwen3_next",
    "qwen3_5_text",
    "qwen3_5_moe_text",
    "mixtral",
    "gemma3_text",
    "gemma3",
    "gemma2",
    "gemma",
    "phi",
    "gpt_neox",
    "phi3",
    "glm4",
    "glm",
    "cohere",
    "cohere2",
    "starcoder2",
    "jais2",
    "bitnet",
    "olmo_hybrid",
    "stablelm",
    "nemotron",
    "nemotron_h",
    "gpt2",
    "dots1",
    "arcee",
    "minicpm",
    "apertus",
    "gpt_bigcode",
    "gptj",
    "falcon",
    "lfm2",
    "lfm2_moe",
    "ernie4_5",
    "ernie4_5_moe",
    "seed_oss",
    "hunyuan_v1_dense",
    "hunyuan_v1_moe",
    "glm4_moe",
    "olmoe",
    "minimax_m2",
    "llama4_text",
    "mistral4",
    "solar_open",
    "glm4_moe_lite",
    "exaone_moe",
    "flex_olmo",
    "sarvam_moe",
    "olmo",
    "olmo2",
    "olmo3",
    "gpt_oss",
    "granite",
    "granitemoe",
    "granitemoeshared",
    "granitemoehybrid",
    "bamba",
    "mamba2",
    "mamba",
    "falcon_mamba",
    "jamba",
    "afmoe",
    "granite_swa",
    "granitemoe_swa",
    "falcon_h1",
    "cohere2_moe",
    "smollm3",
    "exaone4",
    "deepseek_v2",
    "deepseek_v3",
    "kimi_k2",
    "kimi_linear",
    "vaultgemma",
    "helium",
    "phimoe",
    "opt",
    "bloom",
    "mpt",
];

/// The `general.architecture`s `spec_from_gguf` reads, likewise.
pub const GGUF_ARCHITECTURES: [&str; 65] = [
    "llama",
    "mistral",
    "mistral3",
    "qwen2",
    "qwen2moe",
    "qwen3",
    "qwen3moe",
    "gemma3",
    "gemma2",
    "gemma",
    "phi2",
    "gptneox",
    "phi3",
    "deepseek2",
    "kimi-linear",
    "glm4",
    "chatglm",
    "command-r",
    "cohere2",
    "cohere2moe",
    "starcoder2",
    "jais2",
    "bitnet",
    "stablelm",
    "nemotron",
    "gpt2",
    "dots1",
    "arcee",
    "minicpm",
    "apertus",
    "starcoder",
    "falcon",
    "lfm2",
    "lfm2moe",
    "ernie4_5",
    "ernie4_5-moe",
    "seed_oss",
    "hunyuan-dense",
    "hunyuan-moe",
    "glm4moe",
    "olmoe",
    "olmo",
    "olmo2",
    "gpt-oss",
    "granite",
    "granitemoe",
    "smollm3",
    "exaone4",
    "minimax-m2",
    "llama4",
    "qwen3next",
    "qwen35",
    "qwen35moe",
    "granitehybrid",
    "nemotron_h",
    "nemotron_h_moe",
    "mamba2",
    "mamba",
    "jamba",
    "afmoe",
    "granite_swa",
    "falcon-h1",
    "phimoe",
    "bloom",
    "mpt",
];

/// The vision-language checkouts served as their text model.
pub fn text_model_wrappers() -> Vec<&'static str> {
    TEXT_MODEL_WRAPPERS.iter().map(|w| w.wrapper).collect()
}

/// The spec of an HF checkout, by `model_type`; a vision-language checkout's is its text
/// model's (`text_model_config`).
pub fn spec_from_hf(cfg: &serde_json::Value) -> Result<ModelSpec> {
    if let Some(text) = text_model_config(cfg) {
        return spec_from_hf(&text);
    }
    let cfg = rope_parameters::with_legacy_rope_keys(cfg);
    let c = HfConfig(&cfg);
    let model_type = c
        .str("model_type")
        .ok_or_else(|| ModelError::Config("config.json: missing `model_type`".into()))?;
    let mut spec = match model_type {
        "llama" => llama::from_hf(&c)?,
        "helium" => llama::helium_from_hf(&c)?,
        // transformers' `ministral` (Ministral-8B's interleaved windows as `layer_types`).
        "mistral" | "ministral" => mistral::from_hf(&c)?,
        "ministral3" => mistral::ministral3_from_hf(&c)?,
        "qwen2" => qwen2::from_hf(&c)?,
        "qwen3" => qwen3::from_hf(&c)?,
        "qwen3_next" => qwen3_next::from_hf(&c)?,
        "qwen3_5_text" => qwen3_next::qwen3_5_from_hf(&c, false)?,
        "qwen3_5_moe_text" => qwen3_next::qwen3_5_from_hf(&c, true)?,
        "qwen2_moe" => {
            let mut spec = qwen2::from_hf(&c)?;
            spec.experts = Some(experts::qwen2_moe_from_hf(&c, spec.num_layers)?);
            spec
        }
        "qwen3_moe" => {
            let mut spec = qwen3::from_hf(&c)?;
            spec.experts = Some(experts::qwen3_moe_from_hf(&c, spec.num_layers)?);
            spec
        }
        "mixtral" => {
            let mut spec = mistral::from_hf(&c)?;
            spec.experts = Some(experts::mixtral_from_hf(&c, spec.num_layers)?);
            spec
        }
        "gemma3_text" | "gemma3" => gemma3::from_hf(&c)?,
        "gemma2" => gemma3::gemma2_from_hf(&c)?,
        "vaultgemma" => gemma3::vaultgemma_from_hf(&c)?,
        "gemma" => gemma3::gemma1_from_hf(&c)?,
        "phi" => phi2::from_hf(&c)?,
        "gpt_neox" => gpt_neox::from_hf(&c)?,
        "phi3" => phi3::from_hf(&c)?,
        "phimoe" => phi3::phimoe_from_hf(&c)?,
        "glm4" => glm4::from_hf(&c)?,
        "glm" => glm4::glm_from_hf(&c, Arch::Glm)?,
        "cohere" => cohere::from_hf(&c)?,
        "cohere2" => cohere::cohere2_from_hf(&c)?,
        "starcoder2" => starcoder2::from_hf(&c)?,
        "jais2" => jais2::from_hf(&c)?,
        "stablelm" => stablelm::from_hf(&c)?,
        "nemotron" => nemotron::from_hf(&c)?,
        "gpt2" => gpt2::from_hf(&c)?,
        "opt" => opt::from_hf(&c)?,
        "bloom" => bloom::from_hf(&c)?,
        "mpt" => mpt::from_hf(&c)?,
        "dots1" => dots1::from_hf(&c)?,
        "arcee" => arcee::from_hf(&c)?,
        "minicpm" => minicpm::from_hf(&c)?,
        "apertus" => apertus::from_hf(&c)?,
        "gpt_bigcode" => gpt_bigcode::from_hf(&c)?,
        "gptj" => gptj::from_hf(&c)?,
        "falcon" => falcon::from_hf(&c)?,
        "lfm2" => lfm2::from_hf(&c)?,
        "lfm2_moe" => lfm2::moe_from_hf(&c)?,
        "ernie4_5" => ernie4_5::from_hf(&c)?,
        "ernie4_5_moe" => ernie4_5::moe_from_hf(&c)?,
        "seed_oss" => seed_oss::from_hf(&c)?,
        "hunyuan_v1_dense" => hunyuan_dense::from_hf(&c)?,
        "hunyuan_v1_moe" => hunyuan_dense::moe_from_hf(&c)?,
        "glm4_moe" => glm4_moe::from_hf(&c)?,
        "olmoe" => olmoe::from_hf(&c)?,
        "minimax_m2" => minimax_m2::from_hf(&c)?,
        "llama4_text" => llama4::from_hf(&c)?,
        "mistral4" => deepseek::mistral4_from_hf(&c)?,
        "solar_open" => glm4_moe::solar_open_from_hf(&c)?,
        "glm4_moe_lite" => deepseek::glm4_moe_lite_from_hf(&c)?,
        "exaone_moe" => exaone4::moe_from_hf(&c)?,
        "flex_olmo" => olmo2::flex_olmo_from_hf(&c)?,
        "sarvam_moe" => glm4_moe::sarvam_from_hf(&c)?,
        "olmo" => olmo::from_hf(&c)?,
        "olmo2" => olmo2::from_hf(&c)?,
        "olmo3" => olmo2::olmo3_from_hf(&c)?,
        "gpt_oss" => gpt_oss::from_hf(&c)?,
        "granite" => granite::from_hf(&c)?,
        "granitemoe" | "granitemoeshared" => granite::moe_from_hf(&c)?,
        "granitemoehybrid" => granite::hybrid_from_hf(&c)?,
        "bamba" => granite::bamba_from_hf(&c)?,
        "mamba2" => mamba2::from_hf(&c)?,
        "mamba" => mamba::from_hf(&c, false)?,
        "falcon_mamba" => mamba::from_hf(&c, true)?,
        "jamba" => jamba::from_hf(&c)?,
        "afmoe" => afmoe::from_hf(&c)?,
        "falcon_h1" => falcon_h1::from_hf(&c)?,
        "cohere2_moe" => cohere::cohere2_moe_from_hf(&c)?,
        "granite_swa" => granite::swa_from_hf(&c, false)?,
        "granitemoe_swa" => granite::swa_from_hf(&c, true)?,
        "nemotron_h" => nemotron_h::from_hf(&c)?,
        "kimi_linear" => kimi_linear::from_hf(&c)?,
        "smollm3" => smollm3::from_hf(&c)?,
        "exaone4" => exaone4::from_hf(&c)?,
        "deepseek_v2" => deepseek::from_hf(&c, false)?,
        "deepseek_v3" | "kimi_k2" => deepseek::from_hf(&c, true)?,
        "bitnet" => bitnet::from_hf(&c)?,
        "olmo_hybrid" => olmo_hybrid::from_hf(&c)?,
        other => return Err(ModelError::UnsupportedArch(other.to_string())),
    };
    // transformers' `bitnet` quantization (of any model: BitNet's own checkouts, HF1BitLLM's
    // Llama): its products quantize their inputs per token to 8 bits.
    let method = cfg.pointer("/quantization_config/quant_method");
    if method.and_then(serde_json::Value::as_str) == Some("bitnet") {
        spec.activation_bits = Some(bitnet::ACTIVATION_BITS);
    }
    spec.validate()?;
    Ok(spec)
}

/// A vision-language checkout candor serves as its text model (the vision tower and its
/// projector left unread: requests with images are refused before they reach the model).
struct TextModelWrapper {
    /// The checkout's `model_type`.
    wrapper: &'static str,
    /// The text model's, where `text_config` leaves it out or names it after the wrapper
    /// (`qwen3_vl_text`).
    text_type: &'static str,
    /// transformers' default `text_config` of the wrapper (the keys candor reads): the
    /// configs transformers 4.50-4.51 saved write only the keys that differ from it (Gemma 3
    /// 4B-27B's, Mistral Small 3.1's).
    defaults: fn() -> serde_json::Value,
}

/// The wrappers read. Qwen-VL's M-RoPE gives every section the same position on text alone:
/// plain RoPE. Aya Vision's logits are scaled by its Command R7B text model's `logit_scale`,
/// as vLLM and llama.cpp run it (transformers' Aya Vision head leaves the scale out).
const TEXT_MODEL_WRAPPERS: [TextModelWrapper; 17] = [
    TextModelWrapper {
        wrapper: "gemma3",
        text_type: "gemma3_text",
        defaults: || {
            serde_json::json!({"vocab_size": 262208, "hidden_size": 2304,
                "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
                "num_key_value_heads": 4, "head_dim": 256,
                "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 131072,
                "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "attention_bias": false,
                "sliding_window": 4096, "tie_word_embeddings": true,
                "query_pre_attn_scalar": 256, "rope_local_base_freq": 10000.0})
        },
    },
    TextModelWrapper {
        wrapper: "mistral3",
        text_type: "mistral",
        defaults: || {
            serde_json::json!({"vocab_size": 131072, "hidden_size": 5120,
                "intermediate_size": 32768, "num_hidden_layers": 40, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
                "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
                "rope_theta": 1000000000.0, "sliding_window": null,
                "tie_word_embeddings": false})
        },
    },
    // LLaVA 1.5 and LLaVA-NeXT: whatever their text model (Vicuna, Mistral, ...), their files
    // leave out the keys that equal transformers' default llama.
    TextModelWrapper {
        wrapper: "llava",
        text_type: "llama",
        defaults: llama_text_defaults,
    },
    TextModelWrapper {
        wrapper: "llava_next",
        text_type: "llama",
        defaults: llama_text_defaults,
    },
    TextModelWrapper {
        wrapper: "aya_vision",
        text_type: "cohere2",
        defaults: || {
            serde_json::json!({"vocab_size": 256000, "hidden_size": 8192,
                "intermediate_size": 22528, "num_hidden_layers": 40, "num_attention_heads": 64,
                "num_key_value_heads": 64, "head_dim": 128, "hidden_act": "silu",
                "max_position_embeddings": 8192, "layer_norm_eps": 1e-5, "logit_scale": 0.0625,
                "rope_theta": 10000.0, "attention_bias": false, "sliding_window": 4096,
                "sliding_window_pattern": 4, "tie_word_embeddings": true})
        },
    },
    TextModelWrapper {
        wrapper: "internvl",
        text_type: "qwen2",
        defaults: || {
            serde_json::json!({"vocab_size": 151936, "hidden_size": 4096,
                "intermediate_size": 22016, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 32, "hidden_act": "silu", "max_position_embeddings": 32768,
                "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "sliding_window": null,
                "use_sliding_window": false, "tie_word_embeddings": false})
        },
    },
    TextModelWrapper {
        wrapper: "qwen2_vl",
        text_type: "qwen2",
        defaults: qwen2_5_vl_text_defaults,
    },
    TextModelWrapper {
        wrapper: "qwen2_5_vl",
        text_type: "qwen2",
        defaults: qwen2_5_vl_text_defaults,
    },
    TextModelWrapper {
        wrapper: "qwen3_vl",
        text_type: "qwen3",
        defaults: || {
            serde_json::json!({"vocab_size": 151936, "hidden_size": 4096,
                "intermediate_size": 22016, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 32, "head_dim": 128, "hidden_act": "silu",
                "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
                "rope_theta": 5000000.0, "attention_bias": false, "tie_word_embeddings": false})
        },
    },
    TextModelWrapper {
        wrapper: "qwen3_vl_moe",
        text_type: "qwen3_moe",
        defaults: || {
            serde_json::json!({"vocab_size": 151936, "hidden_size": 2048,
                "intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 16,
                "num_key_value_heads": 16, "head_dim": 128, "hidden_act": "silu",
                "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
                "rope_theta": 5000000.0, "attention_bias": false, "tie_word_embeddings": false,
                "num_experts": 60, "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                "decoder_sparse_step": 1})
        },
    },
    // GLM-4.1V-Thinking: a GLM-4 text model whose M-RoPE gives text one position, over the
    // part of each head `partial_rotary_factor` says (all of it where the config says
    // nothing, as transformers reads it), its q/k/v biases always there.
    TextModelWrapper {
        wrapper: "glm4v",
        text_type: "glm4",
        defaults: glm4v_text_defaults,
    },
    // GLM-4.5V: a GLM-4.5(-Air) text model, likewise.
    TextModelWrapper {
        wrapper: "glm4v_moe",
        text_type: "glm4_moe",
        defaults: || {
            serde_json::json!({"vocab_size": 151424, "hidden_size": 4096,
                "intermediate_size": 10944, "num_hidden_layers": 46, "num_attention_heads": 96,
                "num_key_value_heads": 8, "hidden_act": "silu", "max_position_embeddings": 65536,
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                "attention_bias": true, "use_qk_norm": false, "moe_intermediate_size": 1408,
                "num_experts_per_tok": 8, "n_group": 1, "topk_group": 1, "n_shared_experts": 1,
                "n_routed_experts": 128, "routed_scaling_factor": 1.0,
                "first_k_dense_replace": 1, "norm_topk_prob": true,
                "tie_word_embeddings": false})
        },
    },
    // GLM-4.6V (and -Flash): GLM-4.5V's or GLM-4.1V's text model, as its `text_config`
    // names it (read there); the dense one where it names none.
    TextModelWrapper {
        wrapper: "glm46v",
        text_type: "glm4",
        defaults: glm4v_text_defaults,
    },
    // EXAONE 4.5: an EXAONE 4 text model (named `exaone4_5_text` by its first release).
    TextModelWrapper {
        wrapper: "exaone4_5",
        text_type: "exaone4",
        defaults: || {
            serde_json::json!({"vocab_size": 102400, "hidden_size": 4096,
                "intermediate_size": 16384, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 32, "hidden_act": "silu", "max_position_embeddings": 2048,
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096,
                "sliding_window_pattern": 4, "tie_word_embeddings": false})
        },
    },
    // Qwen3.5 (`Qwen3_5ForConditionalGeneration`) and Qwen3.5-MoE: gated DeltaNet hybrids.
    TextModelWrapper {
        wrapper: "qwen3_5",
        text_type: "qwen3_5_text",
        defaults: || {
            serde_json::json!({"vocab_size": 248320, "hidden_size": 4096,
                "intermediate_size": 12288, "num_hidden_layers": 32, "num_attention_heads": 16,
                "num_key_value_heads": 4, "head_dim": 256, "hidden_act": "silu",
                "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                "partial_rotary_factor": 0.25, "linear_conv_kernel_dim": 4,
                "linear_key_head_dim": 128, "linear_value_head_dim": 128,
                "linear_num_key_heads": 16, "linear_num_value_heads": 32,
                "tie_word_embeddings": false})
        },
    },
    TextModelWrapper {
        wrapper: "qwen3_5_moe",
        text_type: "qwen3_5_moe_text",
        defaults: || {
            serde_json::json!({"vocab_size": 248320, "hidden_size": 2048,
                "num_hidden_layers": 40, "num_attention_heads": 16, "num_key_value_heads": 2,
                "head_dim": 256, "hidden_act": "silu", "max_position_embeddings": 32768,
                "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
                "linear_value_head_dim": 128, "linear_num_key_heads": 16,
                "linear_num_value_heads": 32, "moe_intermediate_size": 512,
                "shared_expert_intermediate_size": 512, "num_experts_per_tok": 8,
                "num_experts": 256, "tie_word_embeddings": false})
        },
    },
    // Llama 4 Scout and Maverick (`Llama4ForConditionalGeneration`).
    TextModelWrapper {
        wrapper: "llama4",
        text_type: "llama4_text",
        defaults: || {
            serde_json::json!({"vocab_size": 202048, "hidden_size": 5120,
                "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
                "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 131072,
                "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "num_local_experts": 16,
                "num_experts_per_tok": 1, "interleave_moe_layer_step": 1, "use_qk_norm": true,
                "attention_chunk_size": 8192, "attn_temperature_tuning": true,
                "floor_scale": 8192, "attn_scale": 0.1, "tie_word_embeddings": false})
        },
    },
];

/// GLM-4.1V's default text model (transformers 4.57's `glm4v_text`).
fn glm4v_text_defaults() -> serde_json::Value {
    serde_json::json!({"vocab_size": 151552, "hidden_size": 4096,
        "intermediate_size": 13696, "num_hidden_layers": 40, "num_attention_heads": 32,
        "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
        "attention_bias": true, "tie_word_embeddings": false})
}

/// LLaVA's default text model (transformers 4.57's llama).
fn llama_text_defaults() -> serde_json::Value {
    serde_json::json!({"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": false,
        "mlp_bias": false, "tie_word_embeddings": false})
}

/// Ministral 3's text model as transformers 5 defaults it (Ministral 3 8B's), for a
/// `mistral3` checkout whose `text_config` names `ministral3`.
pub(crate) fn ministral3_text_defaults() -> serde_json::Value {
    serde_json::json!({"vocab_size": 131072, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 34, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-5, "sliding_window": null, "tie_word_embeddings": false,
        "rope_parameters": {"type": "yarn", "rope_type": "yarn", "rope_theta": 1000000.0,
            "factor": 16.0, "original_max_position_embeddings": 16384,
            "max_position_embeddings": 262144, "beta_fast": 32.0, "beta_slow": 1.0,
            "mscale_all_dim": 1.0, "mscale": 1.0, "llama_4_scaling_beta": 0.1}})
}

/// Mistral 4's text model as transformers 5 defaults it, for a `mistral3` checkout whose
/// `text_config` names `mistral4`.
fn mistral4_text_defaults() -> serde_json::Value {
    serde_json::json!({"vocab_size": 131072, "hidden_size": 4096, "intermediate_size": 12288,
        "moe_intermediate_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 32, "n_shared_experts": 1, "n_routed_experts": 128,
        "routed_scaling_factor": 1.0, "kv_lora_rank": 256, "q_lora_rank": 1024,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "qk_nope_head_dim": 64, "n_group": 1,
        "topk_group": 1, "num_experts_per_tok": 4, "first_k_dense_replace": 0,
        "norm_topk_prob": true, "hidden_act": "silu", "max_position_embeddings": 1048576,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "rope_interleave": true,
        "attention_bias": false,
        "rope_parameters": {"type": "yarn", "rope_type": "yarn", "rope_theta": 10000.0,
            "factor": 128.0, "original_max_position_embeddings": 8192,
            "max_position_embeddings": 1048576, "beta_fast": 32.0, "beta_slow": 1.0,
            "mscale_all_dim": 1.0, "mscale": 1.0, "llama_4_scaling_beta": 0.1}})
}

/// Qwen2-VL's and Qwen2.5-VL's default text model (transformers 4.57's).
fn qwen2_5_vl_text_defaults() -> serde_json::Value {
    serde_json::json!({"vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568,
        "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
        "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0, "sliding_window": null, "use_sliding_window": false,
        "tie_word_embeddings": false})
}

/// A vision-language checkout's text model config: its `text_config`, then the keys the
/// wrapper keeps for both (special token ids, a tied head) where the text config lacks them,
/// then transformers' defaults for the rest; the wrapper's own keys where it has no
/// `text_config` (the released Qwen2-VL and Qwen2.5-VL configs). None for the other
/// checkouts.
fn text_model_config(cfg: &serde_json::Value) -> Option<serde_json::Value> {
    let top = cfg.as_object()?;
    let wrapper = top.get("model_type")?.as_str()?;
    let mut known = TEXT_MODEL_WRAPPERS.iter().find(|w| w.wrapper == wrapper)?;
    let mut text = match top.get("text_config") {
        Some(text) => text.as_object()?.clone(),
        None if wrapper.starts_with("qwen") => serde_json::Map::new(),
        None => return None,
    };
    // Named after the wrapper, however spelled (transformers 4.57 saves GLM-4.5V's text model
    // as `Glm4vMoe_text`).
    let squeezed = |t: &str| t.replace('_', "").to_ascii_lowercase();
    let named = text.get("model_type").and_then(|t| t.as_str());
    // GLM-4.6V's text model is GLM-4.1V's or GLM-4.5V's, named as theirs: read as in those.
    if let Some(glm_v) = named.and_then(|t| {
        TEXT_MODEL_WRAPPERS
            .iter()
            .filter(|w| w.wrapper.starts_with("glm4v"))
            .find(|w| squeezed(t) == squeezed(&format!("{}_text", w.wrapper)))
    }) {
        known = glm_v;
        text.insert("model_type".into(), known.text_type.into());
    }
    let named = text.get("model_type").and_then(|t| t.as_str());
    if named.is_none_or(|t| squeezed(t) == squeezed(&format!("{wrapper}_text"))) {
        text.insert("model_type".into(), known.text_type.into());
    }
    if wrapper == "qwen3_vl_moe" {
        // Its experts' weights are always renormalized, whatever `norm_topk_prob` says.
        text.insert("norm_topk_prob".into(), true.into());
    }
    for (key, value) in top {
        let wrapper_only =
            matches!(key.as_str(), "model_type" | "architectures") || key.ends_with("_config");
        if !wrapper_only && !text.contains_key(key) {
            text.insert(key.clone(), value.clone());
        }
    }
    // A transformers 5 text config keeps its RoPE in `rope_parameters`: read as the 4.x keys
    // before the defaults fill the rest, or a default base would stand in for its own.
    let mut text = match rope_parameters::with_legacy_rope_keys(&serde_json::Value::Object(text)) {
        std::borrow::Cow::Owned(serde_json::Value::Object(t)) => t,
        other => other.as_object()?.clone(),
    };
    let defaults = match text.get("model_type").and_then(|t| t.as_str()) {
        Some("ministral3") => ministral3_text_defaults(),
        Some("mistral4") => mistral4_text_defaults(),
        _ => (known.defaults)(),
    };
    if let serde_json::Value::Object(defaults) = defaults {
        for (key, value) in defaults {
            text.entry(key).or_insert(value);
        }
    }
    Some(serde_json::Value::Object(text))
}

/// The spec of a GGUF file, by `general.architecture`.
pub fn spec_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let arch = g.architecture()?;
    let mut spec = match arch.as_str() {
        "llama" => llama::from_gguf(g)?,
        "mistral" | "mistral3" => mistral::from_gguf(g)?,
        "qwen2" | "qwen2moe" => qwen2::from_gguf(g)?,
        "qwen3" | "qwen3moe" => qwen3::from_gguf(g)?,
        "gemma3" => gemma3::from_gguf(g)?,
        "gemma2" => gemma3::gemma2_from_gguf(g)?,
        "gemma" => gemma3::gemma1_from_gguf(g)?,
        "phi2" => phi2::from_gguf(g)?,
        "gptneox" => gpt_neox::from_gguf(g)?,
        "phi3" => phi3::from_gguf(g)?,
        "phimoe" => phi3::phimoe_from_gguf(g)?,
        "deepseek2" => deepseek::from_gguf(g)?,
        "kimi-linear" => kimi_linear::from_gguf(g)?,
        "glm4" => glm4::from_gguf(g)?,
        "chatglm" => glm4::chatglm_from_gguf(g)?,
        "command-r" => cohere::from_gguf(g)?,
        "cohere2" => cohere::cohere2_from_gguf(g)?,
        "cohere2moe" => cohere::cohere2_moe_from_gguf(g)?,
        "starcoder2" => starcoder2::from_gguf(g)?,
        "jais2" => jais2::from_gguf(g)?,
        "bitnet" => bitnet::from_gguf(g)?,
        "stablelm" => stablelm::from_gguf(g)?,
        "nemotron" => nemotron::from_gguf(g)?,
        "gpt2" => gpt2::from_gguf(g)?,
        "bloom" => bloom::from_gguf(g)?,
        "mpt" => mpt::from_gguf(g)?,
        "dots1" => dots1::from_gguf(g)?,
        "arcee" => arcee::from_gguf(g)?,
        "minicpm" => minicpm::from_gguf(g)?,
        "apertus" => apertus::from_gguf(g)?,
        "starcoder" => gpt_bigcode::from_gguf(g)?,
        "falcon" => falcon::from_gguf(g)?,
        "lfm2" => lfm2::from_gguf(g)?,
        "lfm2moe" => lfm2::moe_from_gguf(g)?,
        "ernie4_5" => ernie4_5::from_gguf(g)?,
        "ernie4_5-moe" => ernie4_5::moe_from_gguf(g)?,
        "seed_oss" => seed_oss::from_gguf(g)?,
        "hunyuan-dense" => hunyuan_dense::from_gguf(g)?,
        "hunyuan-moe" => hunyuan_dense::moe_from_gguf(g)?,
        "glm4moe" => glm4_moe::from_gguf(g)?,
        "olmoe" => olmoe::from_gguf(g)?,
        "minimax-m2" => minimax_m2::from_gguf(g)?,
        "llama4" => llama4::from_gguf(g)?,
        "qwen3next" => qwen3_next::from_gguf(g, Arch::Qwen3Next)?,
        "qwen35" => qwen3_next::from_gguf(g, Arch::Qwen35)?,
        "qwen35moe" => qwen3_next::from_gguf(g, Arch::Qwen35Moe)?,
        "granitehybrid" => granite::hybrid_from_gguf(g)?,
        "nemotron_h" | "nemotron_h_moe" => nemotron_h::from_gguf(g)?,
        "mamba2" => mamba2::from_gguf(g)?,
        "mamba" => mamba::from_gguf(g)?,
        "jamba" => jamba::from_gguf(g)?,
        "afmoe" => afmoe::from_gguf(g)?,
        "falcon-h1" => falcon_h1::from_gguf(g)?,
        "granite_swa" => granite::swa_from_gguf(g)?,
        "olmo" => olmo::from_gguf(g)?,
        "olmo2" => olmo2::from_gguf(g)?,
        "gpt-oss" => gpt_oss::from_gguf(g)?,
        "granite" | "granitemoe" => granite::from_gguf(g)?,
        "smollm3" => smollm3::from_gguf(g)?,
        "exaone4" => exaone4::from_gguf(g)?,
        other => return Err(ModelError::UnsupportedArch(other.to_string())),
    };
    if spec.experts.is_none() && !matches!(arch.as_str(), "deepseek2" | "glm4moe" | "gpt-oss") {
        // Mixtral (as `llama`), Qwen3-MoE (`qwen3moe`): the plain mixture of experts.
        spec.experts = experts::from_gguf(g, spec.num_layers)?;
    }
    spec.validate()?;
    Ok(spec)
}

pub fn hf_norm_naming(arch: Arch) -> HfNormNaming {
    match arch {
        // OLMo 2's (and FlexOlmo's) and EXAONE 4's `post_attention_layernorm` norm the attention's output, as
        // Gemma's.
        Arch::Gemma3
        | Arch::Gemma2
        | Arch::Olmo2
        | Arch::Olmo3
        | Arch::FlexOlmo
        | Arch::Exaone4
        | Arch::Afmoe => HfNormNaming::Gemma,
        // GLM-4 names its post-norms apart and keeps the pre-FFN one as llama's.
        Arch::Glm4 => HfNormNaming::Glm4,
        Arch::OlmoHybrid => HfNormNaming::OlmoHybrid,
        _ => HfNormNaming::Llama,
    }
}

/// The activation transformers names `name` (`hidden_act`; a GGUF's `hidden_activation`).
pub(crate) fn activation_named(name: &str) -> Result<Activation> {
    Ok(match name {
        "silu" | "swish" => Activation::Silu,
        // `gelu_new` (Phi) is the same tanh approximation under its older name.
        "gelu_pytorch_tanh" | "gelu_tanh" | "gelu_new" => Activation::GeluTanh,
        "gelu" => Activation::GeluErf,
        "relu2" => Activation::Relu2,
        "relu" => Activation::Relu,
        other => {
            return Err(ModelError::Config(format!(
                "unsupported activation `{other}`"
            )))
        }
    })
}

/// Each layer's window: layer `l` is global when `(l + 1) % pattern == 0`, sliding otherwise
/// (HF's and llama.cpp's rule: Gemma 3 every sixth global, Gemma 2 and gpt-oss every other,
/// OLMo 3 every fourth).
pub(crate) fn sliding_pattern(
    layers: usize,
    pattern: usize,
    window: Option<usize>,
) -> Vec<Option<usize>> {
    (0..layers)
        .map(|l| if (l + 1) % pattern == 0 { None } else { window })
        .collect()
}

/// Dimensions of each head RoPE rotates, from `partial_rotary_factor` (`default` when the
/// config has none; None: the whole head), truncated as transformers does
/// (`int(head_dim * factor)`).
pub(crate) fn rotary_dim_from_hf(
    c: &HfConfig,
    head_dim: usize,
    default: Option<f32>,
) -> Result<Option<usize>> {
    let Some(partial) = c.opt_f32("partial_rotary_factor")?.or(default) else {
        return Ok(None);
    };
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(ModelError::Config(format!(
            "config.json: partial_rotary_factor {partial} outside (0, 1]"
        )));
    }
    let rotary = (head_dim as f32 * partial) as usize;
    Ok(Some(rotary).filter(|&r| r != head_dim))
}

/// Dimensions of each head RoPE rotates, from a GGUF's `{arch}.rope.dimension_count` (None:
/// the whole head).
pub(crate) fn rotary_dim_from_gguf(g: &GgufFile, head_dim: usize) -> Result<Option<usize>> {
    let key = format!("{}.rope.dimension_count", g.architecture()?);
    Ok(g.get_usize(&key).filter(|&r| r != head_dim))
}

/// A LayerNorm model's epsilon in a GGUF: llama.cpp's `{arch}.attention.layer_norm_epsilon`,
/// else 1e-5 (the default of transformers' LayerNorms, Cohere's and StarCoder2's configs).
pub(crate) fn layer_norm_eps_from_gguf(g: &GgufFile) -> Result<f32> {
    let key = format!("{}.attention.layer_norm_epsilon", g.architecture()?);
    Ok(g.get_f64(&key).map_or(1e-5, |e| e as f32))
}

/// Per layer, whether it has no attention, from llama.cpp's per-layer
/// `attention.head_count_kv` array (0 for LFM2's convolutions, Granite 4.0-H's Mamba-2
/// layers); `spec.num_kv_heads` set to the attention layers' count, which must be one.
pub(crate) fn layers_without_attention(g: &GgufFile, spec: &mut ModelSpec) -> Result<Vec<bool>> {
    let a = g.architecture()?;
    let kv_heads = g
        .get_usize_array(&format!("{a}.attention.head_count_kv"))
        .ok_or_else(|| {
            ModelError::Config(format!(
                "{a} GGUF: no per-layer attention.head_count_kv array"
            ))
        })?;
    if kv_heads.len() != spec.num_layers {
        return Err(ModelError::Config(format!(
            "{a} GGUF: {} KV head counts for {} layers",
            kv_heads.len(),
            spec.num_layers
        )));
    }
    let mut attention = kv_heads.iter().filter(|&&n| n > 0);
    let heads = *attention
        .next()
        .ok_or_else(|| ModelError::Config(format!("{a} GGUF: no layer has attention")))?;
    if attention.any(|&n| n != heads) {
        return Err(ModelError::Config(format!(
            "{a} GGUF: attention layers with different KV head counts {kv_heads:?}"
        )));
    }
    spec.num_kv_heads = heads;
    Ok(kv_heads.iter().map(|&n| n == 0).collect())
}

/// Leave out the multi-token-prediction layers a GLM GGUF counts in its blocks
/// (`nextn_predict_layers`, kept at the end): they are not run.
pub(crate) fn skip_prediction_layers(spec: &mut ModelSpec, g: &GgufFile) -> Result<()> {
    let a = g.architecture()?;
    let nextn = g
        .get_usize(&format!("{a}.nextn_predict_layers"))
        .unwrap_or(0);
    spec.num_layers = spec
        .num_layers
        .checked_sub(nextn)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            ModelError::Config(format!(
                "{a}: {} blocks, {nextn} of them prediction layers",
                spec.num_layers
            ))
        })?;
    spec.layer_windows.truncate(spec.num_layers);
    Ok(())
}

/// The llama-shaped base every supported HF family starts from.
pub(crate) fn base_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    let hidden = c.usize("hidden_size")?;
    let heads = c.usize("num_attention_heads")?;
    if heads == 0 {
        return Err(ModelError::Config(
            "config.json: `num_attention_heads` is 0".into(),
        ));
    }
    let num_layers = c.usize("num_hidden_layers")?;
    let head_dim = c.opt_usize("head_dim")?.unwrap_or(hidden / heads);
    let layer_windows = match c.0.get("layer_types").and_then(|v| v.as_array()) {
        Some(types) => {
            let window = c.opt_usize("sliding_window")?;
            types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => window.map(Some).ok_or_else(|| {
                        ModelError::Config(
                            "sliding_attention layer without `sliding_window`".into(),
                        )
                    }),
                    Some("full_attention") => Ok(None),
                    _ => Err(ModelError::Config(format!("unknown layer type {t}"))),
                })
                .collect::<Result<Vec<_>>>()?
        }
        None => vec![None; num_layers],
    };
    let activation = activation_named(
        c.str("hidden_act")
            .or_else(|| c.str("hidden_activation"))
            .unwrap_or("silu"),
    )?;
    Ok(ModelSpec {
        arch,
        vocab_size: c.usize("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: c.usize("intermediate_size")?,
        num_layers,
        num_heads: heads,
        num_kv_heads: c.opt_usize("num_key_value_heads")?.unwrap_or(heads),
        head_dim,
        rms_eps: c.f32("rms_norm_eps", 1e-6)?,
        max_position: c.opt_usize("max_position_embeddings")?.unwrap_or(4096),
        rope: RopeConfig {
            theta: c.f32("rope_theta", 10000.0)?,
            scaling: c.rope_scaling()?,
            style: RopeStyle::Neox,
        },
        rope_local_theta: None,
        layer_windows,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        attn_softcap: c.opt_f32("attn_logit_softcapping")?,
        final_softcap: c.opt_f32("final_logit_softcapping")?,
        attn_sinks: false,
        qkv_bias: c.bool("attention_bias", false),
        qk_norm: false,
        qk_norm_whole: false,
        qk_norm_after_rope: false,
        qk_norm_per_head: false,
        sandwich_norms: false,
        pre_norms: true,
        layer_norm: false,
        parallel_block: false,
        parallel_ffn_norm: false,
        norm_bias: false,
        gated_ffn: true,
        norm_weight_offset: 0.0,
        embed_scale: None,
        residual_scale: None,
        logit_divisor: None,
        unrotated_layers: Vec::new(),
        activation,
        rotary_dim: None,
        latent_attention: None,
        experts: None,
        short_conv: None,
        linear_attention: None,
        mamba: None,
        mamba1: None,
        layer_parts: Vec::new(),
        parallel_mamba: false,
        weight_scales: Vec::new(),
        qk_rows_permuted: false,
        attn_output_gate: false,
        sub_norms: false,
        post_norm_layers: Vec::new(),
        post_residual_norms: false,
        embed_width: None,
        alibi: None,
        embed_norm: false,
        activation_bits: None,
        learned_positions: false,
        learned_position_offset: 0,
        xielu: Vec::new(),
        weightless_norms: false,
        clip_qkv: None,
        attn_temperature: None,
        attention_chunk: None,
        rotated_qk_l2_norm: false,
        bos_token_id: c.token_ids("bos_token_id").first().copied(),
        eos_token_ids: c.token_ids("eos_token_id"),
    })
}

/// The llama-shaped base from GGUF metadata (`{arch}.*` keys, llama.cpp naming).
/// A GGUF's vocabulary size: `{arch}.vocab_size`, else its token list's length.
pub(crate) fn vocab_from_gguf(g: &GgufFile) -> Result<usize> {
    let a = g.architecture()?;
    g.get_usize(&format!("{a}.vocab_size"))
        .or_else(|| g.array_len("tokenizer.ggml.tokens"))
        .ok_or_else(|| {
            ModelError::Config("GGUF: no vocab size and no tokenizer.ggml.tokens".into())
        })
}

/// A GGUF's BOS token and its end tokens (EOS, then EOT where it names one).
pub(crate) fn special_tokens_from_gguf(g: &GgufFile) -> (Option<u32>, Vec<u32>) {
    let id = |key: &str| g.get_usize(key).map(|v| v as u32);
    let eos = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
        .iter()
        .filter_map(|key| id(key))
        .collect();
    (id("tokenizer.ggml.bos_token_id"), eos)
}

pub(crate) fn base_from_gguf(g: &GgufFile, arch: Arch, style: RopeStyle) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let hidden = g.require_usize(&k("embedding_length"))?;
    let heads = g.require_usize(&k("attention.head_count"))?;
    if heads == 0 {
        return Err(ModelError::Config("GGUF: attention.head_count is 0".into()));
    }
    let num_layers = g.require_usize(&k("block_count"))?;
    let head_dim = g
        .get_usize(&k("attention.key_length"))
        .unwrap_or(hidden / heads);
    let vocab_size = vocab_from_gguf(g)?;
    let scaling = match g.get_str(&k("rope.scaling.type")).as_deref() {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear {
            factor: g.get_f64(&k("rope.scaling.factor")).unwrap_or(1.0) as f32,
        },
        Some("yarn") => {
            let factor = g.get_f64(&k("rope.scaling.factor")).unwrap_or(1.0) as f32;
            let original = g
                .get_usize(&k("rope.scaling.original_context_length"))
                .ok_or_else(|| {
                    ModelError::Config(
                        "GGUF: yarn rope scaling without rope.scaling.original_context_length"
                            .into(),
                    )
                })?;
            let beta = |key: &str, default: f32| {
                g.get_f64(&k(key))
                    .map(|b| b as f32)
                    .filter(|b| *b != 0.0)
                    .unwrap_or(default)
            };
            RopeScaling::Yarn {
                factor,
                original_max_position: original,
                beta_fast: beta("rope.scaling.yarn_beta_fast", 32.0),
                beta_slow: beta("rope.scaling.yarn_beta_slow", 1.0),
                truncate: true,
                // llama.cpp multiplies YaRN's own temperature by `attn_factor` (1 unless set);
                // where the file has `yarn_log_multiplier` (HF's `mscale_all_dim`: Ministral
                // 3), that temperature is HF's `mscale(1) / mscale(mscale_all_dim)`, as
                // llama.cpp's context takes it (DeepSeek's own reading is its arch's).
                attention_factor: g
                    .get_f64(&k("rope.scaling.attn_factor"))
                    .map_or(1.0, |a| a as f32)
                    * match g.get_f64(&k("rope.scaling.yarn_log_multiplier")) {
                        Some(all_dim) if all_dim != 0.0 => {
                            crate::spec::yarn_mscale(factor, 1.0)
                                / crate::spec::yarn_mscale(factor, all_dim as f32)
                        }
                        _ => crate::spec::yarn_mscale(factor, 1.0),
                    },
            }
        }
        Some(other) => {
            return Err(ModelError::Config(format!(
                "unsupported GGUF rope scaling `{other}`"
            )))
        }
    };
    let (bos, eos) = special_tokens_from_gguf(g);
    Ok(ModelSpec {
        arch,
        vocab_size,
        hidden_size: hidden,
        // Qwen3.5-MoE's converter writes no dense width (every layer has experts).
        // A per-layer list (Nemotron-H: 0 where a layer has no FFN): its widest.
        intermediate_size: match g.get_usize(&k("feed_forward_length")).or_else(|| {
            g.get_usize_array(&k("feed_forward_length"))
                .and_then(|widths| widths.into_iter().max())
                .filter(|&w| w > 0)
        }) {
            Some(f) => f,
            None => g.require_usize(&k("expert_feed_forward_length"))?,
        },
        num_layers,
        num_heads: heads,
        num_kv_heads: g.get_usize(&k("attention.head_count_kv")).unwrap_or(heads),
        head_dim,
        rms_eps: g
            .get_f64(&k("attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-6) as f32,
        max_position: g.get_usize(&k("context_length")).unwrap_or(4096),
        rope: RopeConfig {
            theta: g.get_f64(&k("rope.freq_base")).unwrap_or(10000.0) as f32,
            scaling,
            style,
        },
        rope_local_theta: None,
        layer_windows: vec![None; num_layers],
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        attn_softcap: None,
        final_softcap: None,
        attn_sinks: false,
        qkv_bias: false,
        qk_norm: false,
        qk_norm_whole: false,
        qk_norm_after_rope: false,
        qk_norm_per_head: false,
        sandwich_norms: false,
        pre_norms: true,
        layer_norm: false,
        parallel_block: false,
        parallel_ffn_norm: false,
        norm_bias: false,
        gated_ffn: true,
        norm_weight_offset: 0.0,
        embed_scale: None,
        residual_scale: None,
        logit_divisor: None,
        unrotated_layers: Vec::new(),
        activation: Activation::Silu,
        rotary_dim: None,
        latent_attention: None,
        experts: None,
        short_conv: None,
        linear_attention: None,
        mamba: None,
        mamba1: None,
        layer_parts: Vec::new(),
        parallel_mamba: false,
        weight_scales: Vec::new(),
        qk_rows_permuted: false,
        attn_output_gate: false,
        sub_norms: false,
        post_norm_layers: Vec::new(),
        post_residual_norms: false,
        embed_width: None,
        alibi: None,
        embed_norm: false,
        activation_bits: None,
        learned_positions: false,
        learned_position_offset: 0,
        xielu: Vec::new(),
        weightless_norms: false,
        clip_qkv: None,
        attn_temperature: None,
        attention_chunk: None,
        rotated_qk_l2_norm: false,
        bos_token_id: bos,
        eos_token_ids: eos,
    })
}

#[cfg(test)]
mod tests {
    use super::sliding_pattern;

    /// Each `model_type` the error names is one the dispatcher reads (a bare config then fails
    /// on its missing shapes, not as unsupported); another is refused naming them all.
    #[test]
    fn the_model_types_named_as_supported_are_read() {
        for t in super::HF_MODEL_TYPES {
            let e = super::spec_from_hf(&serde_json::json!({ "model_type": t })).unwrap_err();
            assert!(
                !matches!(e, crate::error::ModelError::UnsupportedArch(_)),
                "{t}: {e}"
            );
        }
        let e = super::spec_from_hf(&serde_json::json!({"model_type": "zamba2"}))
            .unwrap_err()
            .to_string();
        for named in [
            "`zamba2`",
            "qwen3_next",
            "ministral3",
            "qwen3_vl_moe",
            "lfm2moe",
            "modernbert",
        ] {
            assert!(e.contains(named), "{named}: {e}");
        }
    }

    /// Each GGUF architecture the error names is one the dispatcher reads (a file of that name
    /// alone fails on its missing keys, not as unsupported).
    #[test]
    fn the_gguf_architectures_named_as_supported_are_read() {
        use candle_core::quantized::gguf_file::Value;
        for a in super::GGUF_ARCHITECTURES {
            let g = crate::weights::gguf::metadata_only(
                &format!("arch-{a}"),
                &[("general.architecture", Value::String(a.into()))],
            );
            let e = super::spec_from_gguf(&g).unwrap_err();
            assert!(
                !matches!(e, crate::error::ModelError::UnsupportedArch(_)),
                "{a}: {e}"
            );
        }
    }

    /// gemma-3-4b-it's config.json (its vision config cut short): a `text_config` of the keys
    /// that differ from transformers' defaults, which fill the rest; the end-of-turn id the
    /// wrapper keeps. A wrapper candor does not know, or one without `text_config`, is left to
    /// the usual dispatch.
    /// GLM-4.1V's and GLM-4.5V's text models, their types named after the wrappers (GLM-4.5V's
    /// as transformers 4.57 spells it): GLM-4's and GLM-4.5's, with transformers' readings of
    /// what a config leaves out (GLM-4.1V rotates whole heads then, GLM-4.5V half).
    #[test]
    fn glm_v_checkouts_are_read_as_glm_text_models() {
        let glm4v = serde_json::json!({"model_type": "glm4v", "text_config": {
            "model_type": "glm4v_text", "hidden_size": 4096, "num_attention_heads": 32,
            "rope_scaling": {"type": "default", "mrope_section": [16, 24, 24]}}});
        let spec = super::spec_from_hf(&glm4v).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Glm4);
        assert!(spec.qkv_bias && spec.sandwich_norms);
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, None));
        let glm45v = serde_json::json!({"model_type": "glm4v_moe", "text_config": {
            "model_type": "Glm4vMoe_text", "head_dim": 128,
            "rope_scaling": {"type": "default", "mrope_section": [8, 12, 12]}}});
        let spec = super::spec_from_hf(&glm45v).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Glm4Moe);
        assert_eq!(spec.rotary_dim, Some(64));
        let experts = spec.experts.unwrap();
        assert_eq!((experts.num_experts, experts.experts_per_token), (128, 8));
    }

    /// Mistral Small 4's wrapper (`mistral3`) around a `mistral4` text config that leaves
    /// everything to transformers 5's defaults: DeepSeek-V3's shapes, the softmax router, the
    /// query temperature over the original context of 8,192.
    #[test]
    fn a_mistral4_text_model_fills_from_its_own_defaults() {
        let cfg = serde_json::json!({"model_type": "mistral3",
            "text_config": {"model_type": "mistral4"}});
        let spec = super::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Mistral4);
        let latent = spec.latent_attention.unwrap();
        assert_eq!((latent.kv_lora_rank, latent.q_lora_rank), (256, Some(1024)));
        let t = spec.attn_temperature.unwrap();
        assert_eq!((t.beta, t.length, t.offset), (0.1, 8192, 0));
        let experts = spec.experts.unwrap();
        assert_eq!(experts.scoring, crate::spec::ExpertScoring::Softmax);
        assert!(!experts.correction_bias && experts.normalize);
    }

    #[test]
    fn vision_language_checkouts_are_read_as_their_text_model() {
        let cfg = serde_json::json!({"model_type": "gemma3",
            "architectures": ["Gemma3ForConditionalGeneration"], "eos_token_id": [1, 106],
            "mm_tokens_per_image": 256, "vision_config": {"model_type": "siglip_vision_model",
                "hidden_size": 1152},
            "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                "model_type": "gemma3_text", "num_hidden_layers": 34, "sliding_window": 1024,
                "rope_scaling": {"rope_type": "linear", "factor": 8.0}}});
        let spec = super::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Gemma3);
        assert_eq!(
            (spec.hidden_size, spec.num_layers, spec.vocab_size),
            (2560, 34, 262208)
        );
        assert!(
            spec.eos_token_ids.contains(&106),
            "{:?}",
            spec.eos_token_ids
        );
        // The defaults' heads and scalar, the file's window on five layers in six.
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (8, 4, 256)
        );
        assert_eq!(spec.attn_scale, 1.0 / 16.0);
        assert_eq!(
            spec.layer_windows[..6],
            [Some(1024); 5]
                .into_iter()
                .chain([None])
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(spec.rope.theta, 1_000_000.0);
        let text = super::text_model_config(&cfg).unwrap();
        assert_eq!(text["model_type"], "gemma3_text");
        // A text config as sparse as Mistral Small 3.1's would be: every shape from the
        // defaults (which are that model's).
        let mistral = serde_json::json!({"model_type": "mistral3",
            "text_config": {"model_type": "mistral"}, "vision_config": {}});
        let spec = super::spec_from_hf(&mistral).unwrap();
        assert_eq!(
            (spec.hidden_size, spec.num_layers, spec.head_dim),
            (5120, 40, 128)
        );
        assert_eq!(spec.rope.theta, 1e9);
        // Saved by transformers 5: the base in `rope_parameters`, not the default's 1e9.
        let mistral5 = serde_json::json!({"model_type": "mistral3", "text_config": {
            "model_type": "mistral", "rope_parameters": {"rope_type": "default",
            "rope_theta": 1000000.0}}});
        assert_eq!(super::spec_from_hf(&mistral5).unwrap().rope.theta, 1e6);
        // Ministral 3 3B's shapes as its checkouts come (transformers 5, `ministral3` text):
        // YaRN over 16,384 positions and Llama 4's query temperature past them.
        let ministral = serde_json::json!({"model_type": "mistral3", "dtype": "bfloat16",
            "text_config": {"model_type": "ministral3", "hidden_size": 3072,
            "intermediate_size": 9216, "num_hidden_layers": 26, "tie_word_embeddings": true,
            "rope_parameters": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 16.0,
                "llama_4_scaling_beta": 0.1, "mscale": 1.0, "mscale_all_dim": 1.0,
                "original_max_position_embeddings": 16384, "rope_theta": 1000000.0,
                "rope_type": "yarn", "type": "yarn"}}, "vision_config": {}});
        let spec = super::spec_from_hf(&ministral).unwrap();
        assert_eq!(
            (spec.hidden_size, spec.num_layers, spec.num_kv_heads),
            (3072, 26, 8)
        );
        assert_eq!(spec.rope.theta, 1e6);
        assert!(matches!(
            spec.rope.scaling,
            crate::spec::RopeScaling::Yarn {
                factor: 16.0,
                original_max_position: 16384,
                attention_factor: 1.0,
                ..
            }
        ));
        assert_eq!(
            spec.attn_temperature,
            Some(crate::spec::AttnTemperature::every_layer(0.1, 16384))
        );
        assert_eq!(spec.layer_windows, vec![None; 26]);
        // llava-1.5-7b-hf's text config: Vicuna's keys that differ from llama's defaults.
        let llava = serde_json::json!({"model_type": "llava", "image_token_index": 32000,
            "text_config": {"model_type": "llama", "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-5, "vocab_size": 32064}, "vision_config": {}});
        let spec = super::spec_from_hf(&llava).unwrap();
        assert_eq!(
            (spec.hidden_size, spec.num_kv_heads, spec.vocab_size),
            (4096, 32, 32064)
        );
        assert_eq!((spec.intermediate_size, spec.max_position), (11008, 4096));
        // aya-vision-8b's shape: Command R7B's logit scale kept (a divisor of 16).
        let aya = serde_json::json!({"model_type": "aya_vision", "text_config": {
            "model_type": "cohere2", "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8}});
        let spec = super::spec_from_hf(&aya).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Cohere2);
        assert_eq!(spec.logit_divisor, Some(16.0));
        assert!(text.get("vision_config").is_none() && text.get("architectures").is_none());
        let other = serde_json::json!({"model_type": "whisper", "text_config": {}});
        assert!(super::text_model_config(&other).is_none());
        let bare = serde_json::json!({"model_type": "mistral3"});
        assert!(super::text_model_config(&bare).is_none());
        // Qwen2.5-VL-7B-Instruct's released config (fewer keys): the text model's keys at the
        // top, M-RoPE under its legacy name.
        let qwen = serde_json::json!({"model_type": "qwen2_5_vl", "hidden_size": 3584,
            "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "vocab_size": 152064, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "vision_config": {"depth": 32}, "tie_word_embeddings": false});
        let spec = super::spec_from_hf(&qwen).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Qwen2);
        assert!(spec.qkv_bias);
        assert_eq!(spec.rope.scaling, crate::spec::RopeScaling::None);
    }

    #[test]
    fn every_sixth_layer_is_global() {
        let w = sliding_pattern(12, 6, Some(512));
        assert_eq!(w.iter().filter(|x| x.is_none()).count(), 2);
        assert_eq!(w[5], None);
        assert_eq!(w[11], None);
        assert_eq!(w[0], Some(512));
    }

    /// gpt-oss's layers: the first sliding, every other after it.
    #[test]
    fn every_other_layer_is_global_from_the_second() {
        assert_eq!(
            sliding_pattern(4, 2, Some(128)),
            vec![Some(128), None, Some(128), None]
        );
    }
}
