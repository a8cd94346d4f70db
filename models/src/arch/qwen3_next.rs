//! Qwen3-Next (`qwen3_next`: Qwen3-Next-80B-A3B): three of every four layers mix tokens by
//! gated DeltaNet linear attention (`crate::gated_delta_net`), the fourth attends with
//! Qwen3's per-head q/k norms, RoPE over a quarter of each head and an output gate (`q_proj`
//! gives each head's query and gate). Every layer's FFN is Qwen2-MoE's experts with a
//! sigmoid-gated shared expert (but for `mlp_only_layers`). Its RMSNorms scale by `1 + w`,
//! except the gated norm inside the linear attention, which scales by `w`.
//!
//! Qwen3.5 (`qwen3_5_text`, `qwen3_5_moe_text`, the text models of the `qwen3_5` and
//! `qwen3_5_moe` checkouts) has the same layers; its DeltaNet's products are stored apart
//! (`in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a`: read by their names at load), its
//! FFN is dense or experts whose weights are always renormalized, and its RoPE is M-RoPE,
//! which on text alone is plain RoPE.
use super::{base_from_gguf, base_from_hf, experts};
use super::{rotary_dim_from_gguf, rotary_dim_from_hf, skip_prediction_layers};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, LinearAttention, MixtureOfExperts, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

/// transformers' defaults where config.json is silent.
const DEFAULT_FULL_ATTENTION_INTERVAL: usize = 4;
const DEFAULT_PARTIAL_ROTARY: f32 = 0.25;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    hybrid_from_hf(c, Arch::Qwen3Next, |cfg, layers| {
        let mut moe = experts::qwen2_moe_from_hf(cfg, layers)?;
        moe.normalize = c.bool("norm_topk_prob", true);
        Ok(Some(moe))
    })
}

/// Qwen3.5's text model: dense (`qwen3_5_text`) or with experts (`qwen3_5_moe_text`).
pub fn qwen3_5_from_hf(c: &HfConfig, with_experts: bool) -> Result<ModelSpec> {
    match with_experts {
        false => hybrid_from_hf(c, Arch::Qwen35, |_, _| Ok(None)),
        true => hybrid_from_hf(c, Arch::Qwen35Moe, |cfg, layers| {
            let mut moe = experts::qwen2_moe_from_hf(cfg, layers)?;
            moe.normalize = true;
            Ok(Some(moe))
        }),
    }
}

/// The spec of a Qwen3-Next-style checkout whose FFNs `experts` gives (None: dense).
fn hybrid_from_hf(
    c: &HfConfig,
    arch: Arch,
    experts: impl Fn(&HfConfig, usize) -> Result<Option<MixtureOfExperts>>,
) -> Result<ModelSpec> {
    let layers = c.usize("num_hidden_layers")?;
    let linear = linear_layers_from_hf(c, layers)?;
    // The base reads llama's keys; the layer types (linear / full, not windows) are taken out
    // of its way.
    // Qwen3.5-MoE's config has no dense width (every layer has experts): the experts' stands
    // in for the base's required one.
    let mut cfg = c.with_keys(&[("moe_intermediate_size", "intermediate_size")], &[]);
    if let Some(fields) = cfg.as_object_mut() {
        fields.remove("layer_types");
    }
    let cfg = HfConfig(&cfg);
    let mut spec = base_from_hf(&cfg, arch)?;
    spec.qk_norm = true;
    spec.norm_weight_offset = 1.0;
    spec.attn_output_gate = true;
    spec.rotary_dim = rotary_dim_from_hf(&cfg, spec.head_dim, Some(DEFAULT_PARTIAL_ROTARY))?;
    spec.experts = experts(&cfg, layers)?;
    spec.linear_attention = Some(LinearAttention {
        layers: linear,
        key_heads: c.usize("linear_num_key_heads")?,
        value_heads: c.usize("linear_num_value_heads")?,
        key_dim: c.usize("linear_key_head_dim")?,
        value_dim: c.usize("linear_value_head_dim")?,
        conv_kernel: c.usize("linear_conv_kernel_dim")?,
        value_heads_tiled: false,
        channel_decay: false,
        beta_scale: 1.0,
        norm_eps: None,
    });
    spec.validate()?;
    Ok(spec)
}

/// llama.cpp's `qwen3next`, `qwen35` and `qwen35moe` GGUFs: the converter bakes the norms'
/// `1 + w` into their weights (the gated norm's `w` as it is) and stores −exp(A_log) as
/// `ssm_a`; the DeltaNet's shapes are the `ssm.*` keys (`group_count` key heads of
/// `state_size`, `time_step_rank` value heads filling `inner_size`), its layers those
/// `attention.recurrent_layers` flags or all but every `full_attention_interval`-th. The
/// prediction layers counted in `block_count` are not run. Qwen3.5's converter lays the value
/// heads out tiled over the key heads (`LinearAttention::value_heads_tiled`).
pub fn from_gguf(g: &GgufFile, arch: Arch) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = base_from_gguf(g, arch, RopeStyle::Neox)?;
    skip_prediction_layers(&mut spec, g)?;
    spec.qk_norm = true;
    spec.attn_output_gate = true;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    let layers = spec.num_layers;
    let linear = match g.get_bool_array(&k("attention.recurrent_layers")) {
        Some(flags) if flags.len() >= layers => flags[..layers].to_vec(),
        Some(flags) => {
            return Err(ModelError::Config(format!(
                "{a}: {} recurrent-layer flags for {layers} layers",
                flags.len()
            )))
        }
        None => {
            let interval = g
                .get_usize(&k("full_attention_interval"))
                .unwrap_or(DEFAULT_FULL_ATTENTION_INTERVAL)
                .max(1);
            (0..layers).map(|l| (l + 1) % interval != 0).collect()
        }
    };
    let value_heads = g.require_usize(&k("ssm.time_step_rank"))?;
    let inner = g.require_usize(&k("ssm.inner_size"))?;
    if value_heads == 0 || !inner.is_multiple_of(value_heads) {
        return Err(ModelError::Config(format!(
            "{a}: an inner size of {inner} over {value_heads} value heads"
        )));
    }
    spec.linear_attention = Some(LinearAttention {
        layers: linear,
        key_heads: g.require_usize(&k("ssm.group_count"))?,
        value_heads,
        key_dim: g.require_usize(&k("ssm.state_size"))?,
        value_dim: inner / value_heads,
        conv_kernel: g.require_usize(&k("ssm.conv_kernel"))?,
        value_heads_tiled: arch != Arch::Qwen3Next,
        channel_decay: false,
        beta_scale: 1.0,
        norm_eps: None,
    });
    if arch != Arch::Qwen35 {
        let mut moe = experts::required_from_gguf(g, layers)?;
        moe.normalize = true;
        // A file without the shared expert's width has it as wide as the dense FFN (llama.cpp
        // reads `feed_forward_length` then).
        let shared = (0..layers).any(|l| g.contains(&layer(l, "ffn_gate_inp_shexp.weight")));
        if moe.shared_intermediate_size == 0 && shared {
            moe.shared_intermediate_size = spec.intermediate_size;
            moe.shared_gate = true;
        }
        spec.experts = Some(moe);
    }
    spec.validate()?;
    Ok(spec)
}

/// Per layer, whether it is a linear-attention layer: `layer_types` ("linear_attention" /
/// "full_attention"), else every layer but each `full_attention_interval`-th.
pub(crate) fn linear_layers_from_hf(c: &HfConfig, layers: usize) -> Result<Vec<bool>> {
    let Some(types) = c.0.get("layer_types").and_then(|v| v.as_array()) else {
        let interval = c
            .opt_usize("full_attention_interval")?
            .unwrap_or(DEFAULT_FULL_ATTENTION_INTERVAL)
            .max(1);
        return Ok((0..layers).map(|l| (l + 1) % interval != 0).collect());
    };
    let linear = types
        .iter()
        .map(|t| match t.as_str() {
            Some("linear_attention") => Ok(true),
            Some("full_attention") => Ok(false),
            _ => Err(ModelError::Config(format!(
                "unknown Qwen3-Next layer type {t}"
            ))),
        })
        .collect::<Result<Vec<bool>>>()?;
    match linear.len() == layers {
        true => Ok(linear),
        false => Err(ModelError::Config(format!(
            "{} layer types for {layers} layers",
            linear.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen3-Next-80B-A3B's config.json, as published.
    fn published() -> serde_json::Value {
        serde_json::json!({
            "model_type": "qwen3_next", "hidden_size": 2048, "num_hidden_layers": 48,
            "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
            "intermediate_size": 5120, "vocab_size": 151936, "rms_norm_eps": 1e-6,
            "rope_theta": 10000000, "partial_rotary_factor": 0.25,
            "max_position_embeddings": 262144, "full_attention_interval": 4,
            "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
            "linear_num_key_heads": 16, "linear_num_value_heads": 32,
            "linear_value_head_dim": 128, "num_experts": 512, "num_experts_per_tok": 10,
            "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512,
            "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": true,
            "tie_word_embeddings": false, "hidden_act": "silu"
        })
    }

    #[test]
    fn reads_the_published_config() {
        let spec = super::super::spec_from_hf(&published()).unwrap();
        assert_eq!(spec.arch, Arch::Qwen3Next);
        let a = spec.linear_attention.as_ref().unwrap();
        assert_eq!(a.layers.iter().filter(|&&l| l).count(), 36);
        assert!(!a.layers[3] && a.layers[4] && !a.layers[47]);
        assert_eq!(
            (a.key_heads, a.value_heads, a.key_dim, a.value_dim),
            (16, 32, 128, 128)
        );
        assert_eq!(a.conv_channels(), 8192);
        assert_eq!(spec.rotary_dim, Some(64));
        assert!(spec.attn_output_gate && spec.qk_norm && spec.keeps_sequence_state());
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!((moe.num_experts, moe.experts_per_token), (512, 10));
        assert!(moe.shared_gate && moe.normalize && moe.layers.iter().all(|&l| l));
        // Only the twelve attention layers hold KV rows; 36 layers of state (3 x 8192 conv
        // inputs and 32 x 128 x 128 values each) per sequence.
        assert_eq!(spec.cache_layers().total, 12);
        assert_eq!(
            spec.sequence_state_bytes(),
            36 * 4 * (3 * 8192 + 32 * 128 * 128)
        );
    }

    #[test]
    fn refuses_unknown_layer_types() {
        let mut cfg = published();
        cfg["num_hidden_layers"] = 2.into();
        cfg["layer_types"] = serde_json::json!(["linear_attention", "mamba"]);
        let e = super::super::spec_from_hf(&cfg).unwrap_err().to_string();
        assert!(e.contains("unknown Qwen3-Next layer type"), "{e}");
    }
}
