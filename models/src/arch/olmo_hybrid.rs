//! OLMo Hybrid (`olmo_hybrid`: AllenAI's OLMo 3 hybrid): gated DeltaNet layers (Qwen3-Next's
//! rule, normed before the DeltaNet and before llama's FFN) among OLMo 3's attention layers
//! (norms after attention and after the FFN only, q/k RMSNorms over the whole projections;
//! every fourth layer by default). The DeltaNet's q, k, v, output gate g, β's b and the decay's
//! a are products of their own (`linear_attn.{q,k,v,g,b,a}_proj`); β is twice sigmoid(b) where
//! the model allows negative eigenvalues (`linear_allow_neg_eigval`, the default); its gated
//! output norm's epsilon is FLA's 1e-5 whatever the model's. The released checkouts attend
//! without RoPE (`rope_parameters` whose `rope_theta` is null); with a base, the attention
//! layers rotate q and k in HF's halves.
use super::qwen3_next::linear_layers_from_hf;
use super::{base_from_hf, Activation};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, LinearAttention, ModelSpec};

/// The gated output norm's epsilon (FLA's `FusedRMSNormGated` default, which transformers
/// keeps).
const OUTPUT_NORM_EPS: f32 = 1e-5;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let layers = c.usize("num_hidden_layers")?;
    let linear = linear_layers_from_hf(c, layers)?;
    let rope = c.0.get("rope_parameters").and_then(|p| p.as_object());
    let nope = rope.is_some_and(|p| p.get("rope_theta").is_some_and(|t| t.is_null()));
    // The base reads llama's keys; the layer types (linear / full, not windows) are taken out
    // of its way.
    let mut cfg = c.0.clone();
    if let Some(fields) = cfg.as_object_mut() {
        fields.remove("layer_types");
    }
    let cfg = HfConfig(&cfg);
    let mut spec = base_from_hf(&cfg, Arch::OlmoHybrid)?;
    if spec.activation != Activation::Silu {
        return Err(ModelError::Config(format!(
            "config.json: OLMo Hybrid with activation {:?} (its convolution's is SiLU)",
            spec.activation
        )));
    }
    spec.qk_norm = true;
    spec.qk_norm_whole = true;
    spec.post_norm_layers = linear.iter().map(|&l| !l).collect();
    if nope {
        spec.unrotated_layers = vec![true; layers];
    }
    let heads = spec.num_heads;
    let key_heads = c.opt_usize("linear_num_key_heads")?.unwrap_or(heads);
    let value_heads = c.opt_usize("linear_num_value_heads")?.unwrap_or(heads);
    if key_heads != value_heads {
        return Err(ModelError::Config(format!(
            "config.json: OLMo Hybrid with {value_heads} DeltaNet value heads over {key_heads} \
             key heads (transformers runs them one to one)"
        )));
    }
    let key_dim = match c.opt_usize("linear_key_head_dim")? {
        Some(d) => d,
        None => 3 * spec.hidden_size / (4 * key_heads.max(1)),
    };
    spec.linear_attention = Some(LinearAttention {
        layers: linear,
        key_heads,
        value_heads,
        key_dim,
        value_dim: c.opt_usize("linear_value_head_dim")?.unwrap_or(2 * key_dim),
        conv_kernel: c.opt_usize("linear_conv_kernel_dim")?.unwrap_or(4),
        value_heads_tiled: false,
        channel_decay: false,
        beta_scale: match c.bool("linear_allow_neg_eigval", true) {
            true => 2.0,
            false => 1.0,
        },
        norm_eps: Some(OUTPUT_NORM_EPS),
    });
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OLMo Hybrid config as released (RoPE's base null: no RoPE), its defaults filled as
    /// transformers fills them.
    #[test]
    fn reads_the_released_layout() {
        let mut cfg = serde_json::json!({
            "architectures": ["OlmoHybridForCausalLM"], "model_type": "olmo_hybrid",
            "vocab_size": 100352, "hidden_size": 3840, "intermediate_size": 11008,
            "num_hidden_layers": 8, "num_attention_heads": 30, "num_key_value_heads": 30,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 65536,
            "rope_parameters": {"rope_type": "default", "rope_theta": null}
        });
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::OlmoHybrid);
        let a = spec.linear_attention.clone().unwrap();
        assert_eq!(
            a.layers,
            [false, false, false, true, false, false, false, true].map(|f| !f)
        );
        assert_eq!((a.key_heads, a.key_dim, a.value_dim), (30, 96, 192));
        assert_eq!((a.beta_scale, a.norm_eps), (2.0, Some(1e-5)));
        assert!(spec.post_norm_layers[3]);
        assert_eq!(spec.norm_placement(3), (false, true));
        assert_eq!(spec.norm_placement(0), (true, false));
        assert!(spec.unrotated_layers.iter().all(|&u| u), "no RoPE");
        assert!(spec.qk_norm_whole);

        cfg["rope_parameters"]["rope_theta"] = 10000.0.into();
        cfg["linear_allow_neg_eigval"] = false.into();
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert!(!spec.unrotated_layers.contains(&true));
        assert_eq!(spec.linear_attention.unwrap().beta_scale, 1.0);
        cfg["linear_num_value_heads"] = 60.into();
        assert!(crate::arch::spec_from_hf(&cfg).is_err());
    }
}
