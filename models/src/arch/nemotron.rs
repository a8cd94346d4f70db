//! Nemotron (`nemotron`: Nemotron-Mini-4B, Minitron-4B/8B, Nemotron-4-340B): llama's attention
//! with RoPE over half of each head, LayerNorms whose weights are stored less one (transformers'
//! `NemotronLayerNorm1P` scales by `1 + w`; llama.cpp's converter writes `1 + w`), and an
//! ungated MLP through the squared ReLU (`relu2`); biases where the config asks for them.
use super::{
    base_from_gguf, base_from_hf, layer_norm_eps_from_gguf, rotary_dim_from_gguf,
    rotary_dim_from_hf,
};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `NemotronConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ROTARY_FACTOR: f32 = 0.5;

fn nemotron_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.gated_ffn = false;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Nemotron)?;
    if spec.activation != Activation::Relu2 {
        return Err(ModelError::Config(format!(
            "config.json: Nemotron with activation {:?} is not supported (relu2 is)",
            spec.activation
        )));
    }
    spec.rms_eps = c.f32("norm_eps", DEFAULT_EPS)?;
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, Some(DEFAULT_ROTARY_FACTOR))?;
    // LayerNorm1P: the checkout stores w for a (1 + w) scale.
    spec.norm_weight_offset = 1.0;
    nemotron_common(&mut spec);
    Ok(spec)
}

/// A `nemotron` GGUF: its norms already hold `1 + w`, q/k rows as they are (NeoX RoPE), the
/// rotated dimensions under `rope.dimension_count`.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Nemotron, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.activation = Activation::Relu2;
    spec.qkv_bias = true;
    nemotron_common(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nvidia/Nemotron-Mini-4B-Instruct's config.json (its shapes).
    fn nemotron_mini_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["NemotronForCausalLM"], "model_type": "nemotron",
            "bos_token_id": 2, "eos_token_id": 3, "head_dim": 128, "hidden_act": "relu2",
            "hidden_size": 3072, "intermediate_size": 9216, "max_position_embeddings": 4096,
            "norm_eps": 1e-5, "num_attention_heads": 24, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "partial_rotary_factor": 0.5, "rope_theta": 10000,
            "tie_word_embeddings": false, "vocab_size": 256000
        })
    }

    #[test]
    fn nemotron_rotates_half_of_each_head_under_one_plus_layer_norms() {
        let spec = crate::arch::spec_from_hf(&nemotron_mini_config()).unwrap();
        assert_eq!(spec.arch, Arch::Nemotron);
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, Some(64)));
        assert_eq!((spec.num_heads, spec.num_kv_heads), (24, 8));
        assert!(spec.layer_norm && spec.norm_bias && !spec.gated_ffn && !spec.parallel_block);
        assert_eq!(spec.norm_weight_offset, 1.0);
        assert_eq!(spec.activation, Activation::Relu2);
        let mut c = nemotron_mini_config();
        c["hidden_act"] = "silu".into();
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("relu2"), "{e}");
    }
}
