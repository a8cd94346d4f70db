//! Liquid AI's LFM2 (LFM2-350M to 2.6B): a llama-shaped stack in which most layers mix tokens
//! by a gated short convolution (`crate::short_conv`) instead of attention; the attention
//! layers have Qwen3's per-head q/k RMSNorms. The norm after the last layer is named
//! `embedding_norm` (llama.cpp: `token_embd_norm`); the head is tied.
//!
//! LFM2-MoE (`lfm2_moe`: LFM2-8B-A1B, LFM2-24B-A2B) has the same layers, with a mixture of
//! experts in place of the FFN past the first `num_dense_layers`: sigmoid scores, a learned
//! per-expert bias for the choice only (`use_expert_bias`), the chosen weights normalized
//! (`norm_topk_prob`) and scaled (`routed_scaling_factor`), no shared experts.
use super::experts::softmax_top_k;
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, ExpertScoring, HfConfig, ModelSpec, ShortConv};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

/// transformers' defaults where config.json is silent.
const DEFAULT_KERNEL: usize = 3;
const DEFAULT_MULTIPLE_OF: usize = 256;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    lfm2_from_hf(c, Arch::Lfm2, ffn_size_from_hf(c)?)
}

/// LFM2-MoE's checkouts: its dense FFNs are `intermediate_size` wide as written (no LFM2
/// width adjustment).
pub fn moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = lfm2_from_hf(c, Arch::Lfm2Moe, c.usize("intermediate_size")?)?;
    let dense = c
        .opt_usize("num_dense_layers")?
        .unwrap_or(DEFAULT_DENSE_LAYERS);
    let mut experts = softmax_top_k(
        c.usize("num_experts")?,
        c.usize("num_experts_per_tok")?,
        c.usize("moe_intermediate_size")?,
        c.bool("norm_topk_prob", true),
        (0..spec.num_layers).map(|l| l >= dense).collect(),
    );
    experts.scoring = ExpertScoring::Sigmoid;
    experts.correction_bias = c.bool("use_expert_bias", true);
    experts.routed_scaling = c.f32("routed_scaling_factor", 1.0)?;
    spec.experts = Some(experts);
    Ok(spec)
}

/// An `lfm2moe` GGUF: LFM2's layers, DeepSeek-style expert keys. llama.cpp always
/// normalizes this model's expert weights; the converter writes no key for it.
pub fn moe_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = lfm2_from_gguf(g, Arch::Lfm2Moe)?;
    let mut experts = super::deepseek::gguf_experts(g, spec.num_layers)?
        .ok_or_else(|| ModelError::Config("lfm2moe GGUF without `lfm2moe.expert_count`".into()))?;
    experts.normalize = true;
    spec.experts = Some(experts);
    Ok(spec)
}

/// transformers' default count of dense layers before LFM2-MoE's experts.
const DEFAULT_DENSE_LAYERS: usize = 2;

/// The spec of an LFM2-style checkout whose FFN is `ffn_size` wide.
fn lfm2_from_hf(c: &HfConfig, arch: Arch, ffn_size: usize) -> Result<ModelSpec> {
    let layers = c.usize("num_hidden_layers")?;
    let conv = conv_layers_from_hf(c, layers)?;
    // The base reads llama's keys: LFM2's own names put where it looks, and its layer types
    // (conv / attention, not windows) taken out of its way.
    let mut llama = c.0.clone();
    let fields = llama
        .as_object_mut()
        .ok_or_else(|| ModelError::Config("config.json is not an object".into()))?;
    fields.remove("layer_types");
    fields.insert("intermediate_size".into(), ffn_size.into());
    if let Some(eps) = c.opt_f32("norm_eps")? {
        fields.insert("rms_norm_eps".into(), eps.into());
    }
    if let Some(theta) = c.opt_f32("theta")? {
        fields.insert("rope_theta".into(), theta.into());
    }
    let mut spec = base_from_hf(&HfConfig(&llama), arch)?;
    if c.0.get("norm_eps").is_none() {
        spec.rms_eps = 1e-5;
    }
    spec.qk_norm = true;
    spec.short_conv = Some(ShortConv {
        layers: conv,
        kernel: c.opt_usize("conv_L_cache")?.unwrap_or(DEFAULT_KERNEL),
        bias: c.bool("conv_bias", false),
    });
    spec.validate()?;
    Ok(spec)
}

/// Per layer, whether it is a convolution: `layer_types` ("conv" / "full_attention"), else
/// the older `full_attn_idxs` (every layer attends when neither is given).
fn conv_layers_from_hf(c: &HfConfig, layers: usize) -> Result<Vec<bool>> {
    if let Some(types) = c.0.get("layer_types").and_then(|v| v.as_array()) {
        let conv = types
            .iter()
            .map(|t| match t.as_str() {
                Some("conv") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(ModelError::Config(format!("unknown LFM2 layer type {t}"))),
            })
            .collect::<Result<Vec<bool>>>()?;
        return match conv.len() == layers {
            true => Ok(conv),
            false => Err(ModelError::Config(format!(
                "{} layer types for {layers} layers",
                conv.len()
            ))),
        };
    }
    let attention: Vec<usize> = match c.0.get("full_attn_idxs").and_then(|v| v.as_array()) {
        Some(ids) => ids
            .iter()
            .map(|i| {
                i.as_u64().map(|i| i as usize).ok_or_else(|| {
                    ModelError::Config(format!("full_attn_idxs: {i} is not a layer"))
                })
            })
            .collect::<Result<_>>()?,
        None => (0..layers).collect(),
    };
    Ok((0..layers).map(|l| !attention.contains(&l)).collect())
}

/// The FFN's width as transformers makes it: with `block_auto_adjust_ff_dim`, two thirds of
/// `block_ff_dim` (or `intermediate_size`), then (where `block_ffn_dim_multiplier` is set)
/// times it and rounded up to `block_multiple_of`.
fn ffn_size_from_hf(c: &HfConfig) -> Result<usize> {
    let mut size = match c.opt_usize("block_ff_dim")? {
        Some(s) => s,
        None => c.usize("intermediate_size")?,
    };
    if c.bool("block_auto_adjust_ff_dim", true) {
        size = 2 * size / 3;
        if let Some(m) = c.opt_f32("block_ffn_dim_multiplier")? {
            let multiple = c
                .opt_usize("block_multiple_of")?
                .unwrap_or(DEFAULT_MULTIPLE_OF)
                .max(1);
            size = ((m * size as f32) as usize).div_ceil(multiple) * multiple;
        }
    }
    Ok(size)
}

/// An `lfm2` GGUF: the convolution layers are those whose `attention.head_count_kv` is 0 (an
/// array per layer), the kernel `shortconv.l_cache`.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    lfm2_from_gguf(g, Arch::Lfm2)
}

/// The LFM2 layers of a GGUF of `arch` (`lfm2`, `lfm2moe`).
fn lfm2_from_gguf(g: &GgufFile, arch: Arch) -> Result<ModelSpec> {
    let a = arch.name();
    let mut spec = base_from_gguf(g, arch, RopeStyle::Neox)?;
    let layers = super::layers_without_attention(g, &mut spec)?;
    spec.rms_eps = g
        .get_f64(&format!("{a}.attention.layer_norm_rms_epsilon"))
        .map_or(1e-5, |e| e as f32);
    spec.qk_norm = true;
    // The metadata has no key for the biases: the first convolution's tensors tell.
    let first_conv = layers.iter().position(|&c| c).unwrap_or(0);
    spec.short_conv = Some(ShortConv {
        layers,
        kernel: g
            .get_usize(&format!("{a}.shortconv.l_cache"))
            .unwrap_or(DEFAULT_KERNEL),
        bias: g.contains(&format!("blk.{first_conv}.shortconv.in_proj.bias")),
    });
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> serde_json::Value {
        let mut cfg = serde_json::json!({
            "model_type": "lfm2", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "norm_eps": 1e-5,
            "conv_L_cache": 3, "block_ff_dim": 96, "block_multiple_of": 16,
            "block_ffn_dim_multiplier": 1.0, "block_auto_adjust_ff_dim": true,
            "layer_types": ["conv", "conv", "full_attention", "conv"],
        });
        if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
            cfg.extend(extra.clone());
        }
        cfg
    }

    #[test]
    fn layer_types_ffn_width_and_cache_layers_read_as_transformers_does() {
        let spec = from_hf(&HfConfig(&config(serde_json::json!({})))).unwrap();
        let conv = spec.short_conv.as_ref().unwrap();
        assert_eq!(conv.layers, [true, true, false, true]);
        assert_eq!(conv.kernel, 3);
        // 96 -> 2/3 = 64, x 1.0, a multiple of 16.
        assert_eq!(spec.intermediate_size, 64);
        assert!(spec.qk_norm);
        assert_eq!(spec.rms_eps, 1e-5);
        // 32 channels in K/V rows of 2 x 8: one cache layer for each layer.
        assert_eq!(spec.cache_layers().total, 4);
        let mut wide = spec.clone();
        wide.num_kv_heads = 1;
        // Rows of 8: 32 channels fill K and V of two cache layers.
        assert_eq!(wide.cache_layers().first, [0, 2, 4, 5]);
        assert_eq!(wide.cache_layers().total, 7);
    }

    /// LiquidAI/LFM2-8B-A1B's config.json (fewer layers and experts), as transformers 5
    /// saves it: RoPE's base in `rope_parameters`, the dense FFNs as wide as written.
    #[test]
    fn lfm2_moe_routes_by_sigmoid_past_its_dense_layers() {
        let cfg = config(serde_json::json!({"model_type": "lfm2_moe",
            "intermediate_size": 112, "moe_intermediate_size": 24, "num_dense_layers": 2,
            "num_experts": 8, "num_experts_per_tok": 2, "use_expert_bias": true,
            "norm_topk_prob": true, "routed_scaling_factor": 1.0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}));
        let mut cfg = cfg.as_object().unwrap().clone();
        for key in [
            "block_ff_dim",
            "block_multiple_of",
            "block_ffn_dim_multiplier",
        ] {
            cfg.remove(key);
        }
        let spec = crate::arch::spec_from_hf(&serde_json::Value::Object(cfg)).unwrap();
        assert_eq!(spec.arch, Arch::Lfm2Moe);
        assert_eq!(spec.intermediate_size, 112);
        assert_eq!(spec.rope.theta, 1_000_000.0);
        assert_eq!(
            spec.short_conv.as_ref().unwrap().layers,
            [true, true, false, true]
        );
        let m = spec.experts.as_ref().unwrap();
        assert_eq!(m.layers, [false, false, true, true]);
        assert_eq!(m.scoring, ExpertScoring::Sigmoid);
        assert!(m.correction_bias && m.normalize);
        assert_eq!((m.num_experts, m.experts_per_token), (8, 2));
        assert_eq!(m.expert_intermediate_size, 24);
    }

    #[test]
    fn older_configs_name_their_attention_layers_and_odd_widths_round_up() {
        let mut cfg = config(serde_json::json!({
            "full_attn_idxs": [1], "block_ff_dim": 100, "block_ffn_dim_multiplier": 1.5,
        }));
        cfg.as_object_mut().unwrap().remove("layer_types");
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!(spec.short_conv.unwrap().layers, [true, false, true, true]);
        // 100 -> 66, x 1.5 = 99, up to 112.
        assert_eq!(spec.intermediate_size, 112);
        let cfg = config(serde_json::json!({"layer_types": ["conv", "mamba", "conv", "conv"]}));
        assert!(from_hf(&HfConfig(&cfg)).is_err());
        let cfg = config(serde_json::json!({"hidden_size": 36}));
        assert!(
            from_hf(&HfConfig(&cfg)).is_err(),
            "36 channels in rows of 16"
        );
    }
}
