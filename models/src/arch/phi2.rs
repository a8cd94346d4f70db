//! Phi-1, Phi-1.5 and Phi-2 (`phi`; llama.cpp's `phi2`): parallel blocks (`x + attn(ln(x)) +
//! mlp(ln(x))`, one LayerNorm with a bias per layer), biases on every projection and on the
//! LM head, an ungated tanh-GELU MLP (`fc1`, `fc2`), NeoX RoPE over part of each head
//! (`partial_rotary_factor`, 0.4 in the released checkpoints) and an untied head.
use super::{
    base_from_gguf, base_from_hf, layer_norm_eps_from_gguf, rotary_dim_from_gguf,
    rotary_dim_from_hf,
};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `PhiConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ROTARY_FACTOR: f32 = 0.5;

fn phi2_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.parallel_block = true;
    spec.gated_ffn = false;
    spec.qkv_bias = true;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.bool("qk_layernorm", false) {
        return Err(ModelError::Config(
            "config.json: Phi with `qk_layernorm` (per-head LayerNorms of q and k) is not supported"
                .into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::Phi2)?;
    if spec.activation != Activation::GeluTanh {
        return Err(ModelError::Config(format!(
            "config.json: Phi with activation {:?} is not supported (gelu_new is)",
            spec.activation
        )));
    }
    spec.rms_eps = c.f32("layer_norm_eps", DEFAULT_EPS)?;
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, Some(DEFAULT_ROTARY_FACTOR))?;
    phi2_common(&mut spec);
    Ok(spec)
}

/// A `phi2` GGUF: llama.cpp's converter writes q/k rows as they are (NeoX RoPE), the rotated
/// dimensions under `rope.dimension_count`, the epsilon under `attention.layer_norm_epsilon`;
/// files converted from the original checkpoints hold q/k/v as one `attn_qkv` with its bias.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Phi2, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.activation = Activation::GeluTanh;
    phi2_common(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phi2_config() -> serde_json::Value {
        serde_json::json!({
            "model_type": "phi", "vocab_size": 51200, "hidden_size": 2560,
            "intermediate_size": 10240, "num_hidden_layers": 32, "num_attention_heads": 32,
            "hidden_act": "gelu_new", "layer_norm_eps": 1e-5, "partial_rotary_factor": 0.4,
            "rope_theta": 10000.0, "max_position_embeddings": 2048
        })
    }

    #[test]
    fn phi2_rotates_two_fifths_of_each_head_in_parallel_blocks() {
        let spec = crate::arch::spec_from_hf(&phi2_config()).unwrap();
        assert_eq!(spec.arch, Arch::Phi2);
        assert_eq!((spec.head_dim, spec.rotary_dim), (80, Some(32)));
        assert!(spec.layer_norm && spec.norm_bias && spec.parallel_block && spec.qkv_bias);
        assert!(!spec.gated_ffn);
        assert_eq!(spec.activation, Activation::GeluTanh);
        assert_eq!(spec.num_kv_heads, 32);
    }

    #[test]
    fn phi_variants_it_cannot_run_are_refused() {
        let mut c = phi2_config();
        c["qk_layernorm"] = true.into();
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("qk_layernorm"), "{e}");
        let mut c = phi2_config();
        c["hidden_act"] = "relu".into();
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("Relu"), "{e}");
    }
}
