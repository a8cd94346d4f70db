//! ERNIE 4.5 (dense: ERNIE-4.5-0.3B, `ernie4_5`; mixture of experts: ERNIE-4.5-21B-A3B and
//! 300B-A47B, `ernie4_5_moe` / GGUF `ernie4_5-moe`): llama whose RoPE pairs dimensions 2i and
//! 2i + 1 of each head (transformers rotates them so; llama.cpp's converter permutes nothing and
//! rotates them as interleaved pairs), in checkouts and GGUFs alike. The experts: a softmax
//! over the router's logits, the top k by those scores plus a learned per-expert bias
//! (`moe_statics`), their weights renormalized, shared experts beside them; the layers from
//! `moe_layer_start_index` to `moe_layer_end_index` every `moe_layer_interval`, the others
//! dense.
use super::experts::softmax_top_k;
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, MixtureOfExperts, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

/// transformers' `Ernie4_5_MoeConfig` default.
const DEFAULT_SHARED_EXPERTS: usize = 2;

fn ernie_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    if c.bool("use_bias", false) {
        // Biases on every projection (the FFN's too): no released model has them.
        return Err(ModelError::Config(
            "ERNIE 4.5 with `use_bias` (biases on every projection) is not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, arch)?;
    spec.rope.style = RopeStyle::Interleaved;
    Ok(spec)
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    ernie_from_hf(c, Arch::Ernie45)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    base_from_gguf(g, Arch::Ernie45, RopeStyle::Interleaved)
}

pub fn moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = ernie_from_hf(c, Arch::Ernie45Moe)?;
    spec.experts = Some(experts_from_hf(c, spec.num_layers)?);
    Ok(spec)
}

/// An `ernie4_5-moe` GGUF: the experts in the layers with a router, the correction bias as
/// `exp_probs_b`.
pub fn moe_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Ernie45Moe, RopeStyle::Interleaved)?;
    let mut experts = super::experts::required_from_gguf(g, spec.num_layers)?;
    experts.correction_bias =
        (0..spec.num_layers).any(|l| g.contains(&layer(l, "exp_probs_b.bias")));
    spec.experts = Some(experts);
    Ok(spec)
}

fn experts_from_hf(c: &HfConfig, num_layers: usize) -> Result<MixtureOfExperts> {
    let start = c.opt_usize("moe_layer_start_index")?.unwrap_or(1);
    // -1 (transformers' default): to the last layer.
    let end = match c.0.get("moe_layer_end_index").and_then(|v| v.as_i64()) {
        Some(e) if e >= 0 => e as usize,
        _ => num_layers.saturating_sub(1),
    };
    let interval = c.opt_usize("moe_layer_interval")?.unwrap_or(1).max(1);
    let layers = (0..num_layers)
        .map(|l| (l + 1) % interval == 0 && l >= start && l <= end)
        .collect();
    let intermediate = c.usize("moe_intermediate_size")?;
    let mut m = softmax_top_k(
        c.usize("moe_num_experts")?,
        c.usize("moe_k")?,
        intermediate,
        true,
        layers,
    );
    let shared = c
        .opt_usize("moe_num_shared_experts")?
        .unwrap_or(DEFAULT_SHARED_EXPERTS);
    m.shared_intermediate_size = shared * intermediate;
    m.correction_bias = true;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// ERNIE-4.5-0.3B's config.json (fewer layers); a variant with biases refused.
    #[test]
    fn small_shapes() {
        let mut cfg = json!({"model_type": "ernie4_5", "hidden_size": 1024,
            "intermediate_size": 3072, "num_hidden_layers": 2, "num_attention_heads": 16,
            "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 103424,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "use_bias": false,
            "tie_word_embeddings": true, "max_position_embeddings": 131072});
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        assert_eq!((spec.head_dim, spec.num_kv_heads), (128, 2));
        cfg["use_bias"] = json!(true);
        assert!(from_hf(&HfConfig(&cfg)).is_err());
    }

    /// ERNIE-4.5-21B-A3B-PT's config.json: 64 experts, 6 per token, two shared, layer 0 dense.
    #[test]
    fn moe_layers_follow_the_start_end_and_interval() {
        let mut cfg = json!({"model_type": "ernie4_5_moe", "hidden_size": 2560,
            "intermediate_size": 12288, "num_hidden_layers": 28, "num_attention_heads": 20,
            "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 103424,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "use_bias": false,
            "tie_word_embeddings": true, "max_position_embeddings": 131072,
            "moe_num_experts": 64, "moe_k": 6, "moe_intermediate_size": 1536,
            "moe_num_shared_experts": 2, "moe_layer_start_index": 1, "moe_layer_end_index": 27,
            "moe_layer_interval": 1, "moe_use_aux_free": true});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::Ernie45Moe);
        let m = spec.experts.as_ref().unwrap();
        assert_eq!((m.num_experts, m.experts_per_token), (64, 6));
        assert_eq!(m.shared_intermediate_size, 3072);
        assert!(m.correction_bias && m.normalize && !m.layers[0] && m.layers[27]);
        cfg["moe_layer_interval"] = json!(2);
        cfg["moe_layer_end_index"] = json!(-1);
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        let layers = &spec.experts.as_ref().unwrap().layers;
        assert_eq!(layers[..4], [false, true, false, true]);
    }
}
