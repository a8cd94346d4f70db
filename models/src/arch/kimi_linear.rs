//! Kimi Linear (`kimi_linear`: Kimi-Linear-48B-A3B): DeepSeek-V3's latent attention without
//! positions in a few layers, Kimi Delta Attention (`crate::kimi_delta`) in the others, and
//! DeepSeek-V3's experts after a leading dense layer. Checkouts name their layers in
//! `linear_attn_config` (1-based `kda_layers` / `full_attn_layers`, with the delta layers'
//! heads and convolution), transformers 5's saves in `layer_types` / `mlp_layer_types`; the
//! routing keys are Moonshot's (`num_experts`, `num_experts_per_token`, `moe_renormalize`...).
use super::experts::{sigmoid_experts, ExpertCounts};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, LinearAttention, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `KimiLinearConfig` defaults where config.json is silent.
const DEFAULT_HEADS: usize = 32;
const DEFAULT_HEAD_DIM: usize = 128;
const DEFAULT_CONV: usize = 4;

/// Per layer, whether it is a Kimi Delta Attention layer (the others attend).
fn delta_layers(c: &HfConfig, layers: usize, linear: &HfConfig) -> Result<Vec<bool>> {
    if let Some(types) = c.0.get("layer_types").and_then(|v| v.as_array()) {
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("linear_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(ModelError::Config(format!(
                    "unknown Kimi Linear layer type {t}"
                ))),
            })
            .collect();
    }
    let listed = |key: &str| -> Result<Vec<usize>> {
        let list = linear
            .0
            .get(key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| {
                ModelError::Config(format!("config.json: linear_attn_config without `{key}`"))
            })?;
        list.iter()
            .map(|n| match n.as_u64() {
                Some(n) if (1..=layers as u64).contains(&n) => Ok(n as usize - 1),
                _ => Err(ModelError::Config(format!(
                    "config.json: `{key}` names layer {n} of 1..={layers}"
                ))),
            })
            .collect()
    };
    let mut kda = vec![None; layers];
    for l in listed("kda_layers")? {
        kda[l] = Some(true);
    }
    for l in listed("full_attn_layers")? {
        kda[l] = Some(false);
    }
    kda.into_iter()
        .enumerate()
        .map(|(l, k)| {
            k.ok_or_else(|| {
                ModelError::Config(format!("config.json: layer {} is in neither list", l + 1))
            })
        })
        .collect()
}

/// Per layer, whether its FFN is experts: `mlp_layer_types` (`dense` / `sparse`), else all
/// but the first `first_k_dense_replace`.
fn expert_layers(c: &HfConfig, layers: usize) -> Result<Vec<bool>> {
    match c.0.get("mlp_layer_types").and_then(|v| v.as_array()) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("sparse") => Ok(true),
                Some("dense") => Ok(false),
                _ => Err(ModelError::Config(format!(
                    "unknown Kimi Linear MLP type {t}"
                ))),
            })
            .collect(),
        None => {
            let dense = c.opt_usize("first_k_dense_replace")?.unwrap_or(1);
            Ok((0..layers).map(|l| l >= dense).collect())
        }
    }
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if let Some(f) = c
        .str("moe_router_activation_func")
        .filter(|&f| f != "sigmoid")
    {
        return Err(ModelError::Config(format!(
            "config.json: Kimi Linear's router by {f} is not supported (sigmoid is)"
        )));
    }
    // DeepSeek's reader takes the latent attention; the layer types (not windows) out of its
    // way, the context under llama's key.
    let mut cfg = c.0.clone();
    if let Some(fields) = cfg.as_object_mut() {
        fields.remove("layer_types");
        if let Some(n) = c.opt_usize("model_max_length")? {
            fields.insert("max_position_embeddings".into(), n.into());
        }
    }
    let mut spec = super::deepseek::from_hf(&HfConfig(&cfg), true)?;
    spec.arch = Arch::KimiLinear;
    let layers = spec.num_layers;
    let empty = serde_json::json!({});
    let linear = HfConfig(c.0.get("linear_attn_config").unwrap_or(&empty));
    let kda = delta_layers(c, layers, &linear)?;
    let experts = expert_layers(c, layers)?;
    if kda.len() != layers || experts.len() != layers {
        return Err(ModelError::Config(format!(
            "config.json: {} layer types and {} MLP types for {layers} layers",
            kda.len(),
            experts.len()
        )));
    }
    let heads = match linear.opt_usize("num_heads")? {
        Some(n) => n,
        None => c.opt_usize("linear_num_heads")?.unwrap_or(DEFAULT_HEADS),
    };
    let dim = match linear.opt_usize("head_dim")? {
        Some(n) => n,
        None => c.opt_usize("linear_head_dim")?.unwrap_or(DEFAULT_HEAD_DIM),
    };
    let conv = match linear.opt_usize("short_conv_kernel_size")? {
        Some(n) => n,
        None => c
            .opt_usize("linear_conv_kernel_dim")?
            .unwrap_or(DEFAULT_CONV),
    };
    spec.linear_attention = Some(LinearAttention {
        layers: kda,
        key_heads: heads,
        value_heads: heads,
        key_dim: dim,
        value_dim: dim,
        conv_kernel: conv,
        value_heads_tiled: false,
        channel_decay: true,
        beta_scale: 1.0,
        norm_eps: None,
    });
    // The latent attention runs without positions.
    spec.unrotated_layers = vec![true; layers];
    let width = c.usize("moe_intermediate_size")?;
    let groups = c.opt_usize("num_expert_group")?.unwrap_or(1);
    spec.experts = Some(sigmoid_experts(
        experts,
        ExpertCounts {
            experts: c.usize("num_experts")?,
            per_token: c.usize("num_experts_per_token")?,
            width,
            shared_width: c.opt_usize("num_shared_experts")?.unwrap_or(1) * width,
            groups,
            topk_groups: c.opt_usize("topk_group")?.unwrap_or(groups),
            normalize: c.bool("moe_renormalize", true),
            scaling: c.f32("routed_scaling_factor", 1.0)?,
        },
    ));
    spec.validate()?;
    Ok(spec)
}

/// A llama.cpp `kimi-linear` GGUF: the latent attention as its converter writes DeepSeek's
/// (one KV head of `kv_lora_rank + rope`, `attn_k_b` / `attn_v_b`; run without positions, as
/// the checkout), the delta layers those with no KV heads in the per-layer
/// `attention.head_count_kv`, with `attention.head_count` heads of `kda.head_dim` and a
/// convolution of `ssm.conv_kernel` taps; DeepSeek-V3's experts, their weights normalized
/// (llama.cpp always does for this architecture; Moonshot's `moe_renormalize`).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = super::deepseek::from_gguf(g)?;
    spec.arch = Arch::KimiLinear;
    let kda = super::layers_without_attention(g, &mut spec)?;
    // Every latent-attention head keeps its own keys (the file's one KV head is llama.cpp's
    // latent form).
    spec.num_kv_heads = spec.num_heads;
    let dim = g.require_usize(&k("kda.head_dim"))?;
    spec.linear_attention = Some(LinearAttention {
        layers: kda,
        key_heads: spec.num_heads,
        value_heads: spec.num_heads,
        key_dim: dim,
        value_dim: dim,
        conv_kernel: g.require_usize(&k("ssm.conv_kernel"))?,
        value_heads_tiled: false,
        channel_decay: true,
        beta_scale: 1.0,
        norm_eps: None,
    });
    spec.unrotated_layers = vec![true; spec.num_layers];
    let mut experts = super::deepseek::sigmoid_gguf_experts(g, spec.num_layers)?;
    experts.normalize = g.get_bool(&k("expert_weights_norm")).unwrap_or(true);
    spec.experts = Some(experts);
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moonshotai/Kimi-Linear-48B-A3B-Instruct's config.json (its shapes and plan).
    fn kimi_linear_48b_config() -> serde_json::Value {
        let kda: Vec<usize> = (1..=27).filter(|l| l % 4 != 0).collect();
        let full: Vec<usize> = (1..=27).filter(|l| l % 4 == 0).collect();
        serde_json::json!({
            "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear",
            "hidden_size": 2304, "intermediate_size": 9216, "moe_intermediate_size": 1024,
            "num_hidden_layers": 27, "num_attention_heads": 32, "num_key_value_heads": 32,
            "kv_lora_rank": 512, "q_lora_rank": null, "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64, "v_head_dim": 128, "num_experts": 256,
            "num_experts_per_token": 8, "num_shared_experts": 1, "first_k_dense_replace": 1,
            "moe_renormalize": true, "routed_scaling_factor": 2.446, "num_expert_group": 1,
            "topk_group": 1, "moe_router_activation_func": "sigmoid", "rms_norm_eps": 1e-5,
            "model_max_length": 1048576, "vocab_size": 163840, "tie_word_embeddings": false,
            "linear_attn_config": {"kda_layers": kda, "full_attn_layers": full,
                                   "head_dim": 128, "num_heads": 32,
                                   "short_conv_kernel_size": 4}
        })
    }

    #[test]
    fn kimi_linear_48b_reads_its_plan_and_routing() {
        let spec = crate::arch::spec_from_hf(&kimi_linear_48b_config()).unwrap();
        assert_eq!(spec.arch, Arch::KimiLinear);
        let a = spec.linear_attention.as_ref().unwrap();
        assert!(a.channel_decay && a.layers[0] && !a.layers[3] && a.layers[4]);
        assert_eq!((a.key_heads, a.key_dim, a.conv_kernel), (32, 128, 4));
        // Six latent-attention layers take cache rows.
        assert_eq!(spec.cache_layers().total, 6);
        let moe = spec.experts.as_ref().unwrap();
        assert!(!moe.layers[0] && moe.layers[1] && moe.correction_bias && moe.normalize);
        assert_eq!((moe.num_experts, moe.experts_per_token), (256, 8));
        assert_eq!(moe.shared_intermediate_size, 1024);
        assert_eq!(spec.max_position, 1048576);
        let mut c = kimi_linear_48b_config();
        c["linear_attn_config"]["full_attn_layers"] = serde_json::json!([4, 8, 12]);
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
        c = kimi_linear_48b_config();
        c["moe_router_activation_func"] = "softmax".into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
    }
}
