//! AI21's Jamba (`jamba`: Jamba-v0.1, Jamba 1.5 / 1.6 / 1.7 Mini and Large, Jamba Reasoning
//! 3B): Mamba-1 layers (`crate::mamba1`) whose B, C and dt inputs pass RMSNorms with weights,
//! and every `attn_layer_period`-th layer from `attn_layer_offset` an attention layer without
//! positions (no RoPE, no other: the Mamba layers before it carry the order); every
//! `expert_layer_period`-th layer from `expert_layer_offset` has Mixtral's experts (a softmax
//! over all router logits, its top k kept as they are, not renormalized), the others a SwiGLU
//! MLP. Pre-norm blocks (`input_layernorm`, `pre_ff_layernorm`, `final_layernorm`). llama.cpp's
//! `jamba` GGUFs mark the Mamba layers by 0 KV heads.
use super::experts::softmax_top_k;
use super::mamba::{dt_rank, DEFAULT_CONV, DEFAULT_EXPAND, DEFAULT_STATE};
use super::{base_from_gguf, base_from_hf, layers_without_attention};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, Mamba1, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `JambaConfig` defaults where config.json is silent.
const DEFAULT_ATTN_PERIOD: usize = 8;
const DEFAULT_ATTN_OFFSET: usize = 4;
const DEFAULT_EXPERT_PERIOD: usize = 2;
const DEFAULT_EXPERT_OFFSET: usize = 1;
const DEFAULT_EXPERTS: usize = 16;
const DEFAULT_EXPERTS_PER_TOKEN: usize = 2;
const DEFAULT_EPS: f32 = 1e-6;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.str("hidden_act").is_some_and(|a| a != "silu") {
        return Err(ModelError::Config(
            "config.json: Jamba's activation must be silu".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::Jamba)?;
    let layers = spec.num_layers;
    let every = |period: &str, offset: &str, defaults: (usize, usize)| -> Result<Vec<bool>> {
        let p = c.opt_usize(period)?.unwrap_or(defaults.0);
        let o = c.opt_usize(offset)?.unwrap_or(defaults.1);
        if p == 0 {
            return Err(ModelError::Config(format!("config.json: `{period}` is 0")));
        }
        Ok((0..layers).map(|l| l % p == o).collect())
    };
    let attention = every(
        "attn_layer_period",
        "attn_layer_offset",
        (DEFAULT_ATTN_PERIOD, DEFAULT_ATTN_OFFSET),
    )?;
    let experts = every(
        "expert_layer_period",
        "expert_layer_offset",
        (DEFAULT_EXPERT_PERIOD, DEFAULT_EXPERT_OFFSET),
    )?;
    let num_experts = c.opt_usize("num_experts")?.unwrap_or(DEFAULT_EXPERTS);
    // One expert is a dense MLP (transformers builds `JambaMLP` then: Jamba Reasoning 3B).
    if num_experts > 1 && experts.contains(&true) {
        let top_k = c
            .opt_usize("num_experts_per_tok")?
            .unwrap_or(DEFAULT_EXPERTS_PER_TOKEN);
        spec.experts = Some(softmax_top_k(
            num_experts,
            top_k,
            spec.intermediate_size,
            false,
            experts,
        ));
    }
    spec.unrotated_layers = vec![true; layers];
    let hidden = spec.hidden_size;
    spec.mamba1 = Some(Mamba1 {
        layers: attention.iter().map(|&a| !a).collect(),
        inner: c.opt_usize("mamba_expand")?.unwrap_or(DEFAULT_EXPAND) * hidden,
        state: c.opt_usize("mamba_d_state")?.unwrap_or(DEFAULT_STATE),
        dt_rank: dt_rank(c, "mamba_dt_rank", hidden),
        conv_kernel: c.opt_usize("mamba_d_conv")?.unwrap_or(DEFAULT_CONV),
        bcdt_norm: Some(c.f32("rms_norm_eps", DEFAULT_EPS)?),
        bcdt_norm_weights: true,
    });
    spec.validate()?;
    Ok(spec)
}

/// llama.cpp's `jamba` GGUF: the Mamba layers are those with no KV heads in the per-layer
/// `attention.head_count_kv`, their shapes the `ssm.*` keys; experts in the layers with a
/// router (`experts::from_gguf`, not renormalized for `jamba`).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    // No RoPE: the style is moot (and the converter leaves q/k unpermuted).
    let mut spec = base_from_gguf(g, Arch::Jamba, RopeStyle::Neox)?;
    let mamba = layers_without_attention(g, &mut spec)?;
    spec.unrotated_layers = vec![true; spec.num_layers];
    spec.mamba1 = Some(Mamba1 {
        layers: mamba,
        inner: g.require_usize(&k("ssm.inner_size"))?,
        state: g.require_usize(&k("ssm.state_size"))?,
        dt_rank: g.require_usize(&k("ssm.time_step_rank"))?,
        conv_kernel: g.require_usize(&k("ssm.conv_kernel"))?,
        bcdt_norm: Some(spec.rms_eps),
        bcdt_norm_weights: true,
    });
    spec.experts = super::experts::from_gguf(g, spec.num_layers)?;
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ai21labs/AI21-Jamba-Mini-1.5's config.json (its shapes and layer periods).
    fn jamba_mini() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["JambaForCausalLM"], "model_type": "jamba",
            "attn_layer_offset": 4, "attn_layer_period": 8, "expert_layer_offset": 1,
            "expert_layer_period": 2, "hidden_act": "silu", "hidden_size": 4096,
            "intermediate_size": 14336, "mamba_conv_bias": true, "mamba_d_conv": 4,
            "mamba_d_state": 16, "mamba_dt_rank": 256, "mamba_expand": 2,
            "mamba_proj_bias": false, "max_position_embeddings": 262144,
            "num_attention_heads": 32, "num_experts": 16, "num_experts_per_tok": 2,
            "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": false, "use_mamba_kernels": true, "vocab_size": 65536
        })
    }

    #[test]
    fn jamba_mini_attends_every_eighth_layer_with_experts_every_other() {
        let spec = super::super::spec_from_hf(&jamba_mini()).unwrap();
        assert_eq!(spec.arch, Arch::Jamba);
        // Attention in layers 4, 12, 20, 28: four cache layers, none rotated.
        assert_eq!(spec.cache_layers().total, 4);
        assert!(spec.unrotated_layers.iter().all(|&u| u));
        let m = spec.mamba1.as_ref().unwrap();
        assert!(!m.layers[4] && m.layers[5] && !m.layers[28]);
        assert_eq!(
            (
                m.inner,
                m.state,
                m.dt_rank,
                m.bcdt_norm,
                m.bcdt_norm_weights
            ),
            (8192, 16, 256, Some(1e-6), true)
        );
        assert_eq!(spec.sequence_state_bytes(), 4 * 28 * (3 * 8192 + 8192 * 16));
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!((moe.num_experts, moe.experts_per_token), (16, 2));
        assert!(moe.layers[1] && !moe.layers[2] && moe.layers[31]);
        assert!(!moe.normalize);
        // One expert: dense MLPs throughout; `"auto"` rank.
        let mut c = jamba_mini();
        c["num_experts"] = 1.into();
        c["mamba_dt_rank"] = "auto".into();
        let spec = super::super::spec_from_hf(&c).unwrap();
        assert!(spec.experts.is_none());
        assert_eq!(spec.mamba1.unwrap().dt_rank, 256);
        c["attn_layer_period"] = 0.into();
        let e = super::super::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("attn_layer_period"), "{e}");
    }
}
