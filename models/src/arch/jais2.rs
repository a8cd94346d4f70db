//! Jais 2 (`jais2`: Inception's Jais-2-8B and 70B): pre-norm blocks of LayerNorms with
//! biases, biases on q/k/v/o and on an ungated squared-ReLU MLP (`up_proj`, `down_proj`), RoPE
//! over whole heads (NeoX pairs; llama.cpp's converter keeps the rows as they are).
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `Jais2Config` default `layer_norm_eps`.
const DEFAULT_EPS: f32 = 1e-5;

fn jais2_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.gated_ffn = false;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Jais2)?;
    if spec.activation != Activation::Relu2 {
        return Err(ModelError::Config(format!(
            "config.json: Jais 2 with activation {:?} is not supported (relu2 is)",
            spec.activation
        )));
    }
    spec.rms_eps = c.f32("layer_norm_eps", DEFAULT_EPS)?;
    spec.qkv_bias = c.bool("attention_bias", true);
    jais2_common(&mut spec);
    Ok(spec)
}

/// A `jais2` GGUF: q/k rows as they are (NeoX RoPE), its LayerNorm epsilon under
/// `attention.layer_norm_epsilon`, the biases llama.cpp requires.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Jais2, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.activation = Activation::Relu2;
    spec.qkv_bias = true;
    jais2_common(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// inceptionai/Jais-2-8B-Chat's config.json (its shapes).
    #[test]
    fn reads_the_8b_config() {
        let spec = crate::arch::spec_from_hf(&serde_json::json!({
            "architectures": ["Jais2ForCausalLM"], "model_type": "jais2",
            "hidden_size": 3328, "intermediate_size": 26624, "num_hidden_layers": 32,
            "num_attention_heads": 26, "num_key_value_heads": 26, "head_dim": 128,
            "hidden_act": "relu2", "max_position_embeddings": 8192, "vocab_size": 150272,
            "layer_norm_eps": 1e-5, "attention_bias": true, "mlp_bias": true,
            "tie_word_embeddings": false,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}
        }))
        .unwrap();
        assert_eq!(spec.arch, Arch::Jais2);
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias && !spec.gated_ffn);
        assert_eq!(spec.activation, Activation::Relu2);
        assert_eq!(
            (spec.head_dim, spec.rotary_dim),
            (128, None),
            "RoPE over whole heads"
        );
        let swiglu = crate::arch::spec_from_hf(&serde_json::json!({
            "model_type": "jais2", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512,
            "hidden_act": "silu"
        }));
        assert!(swiglu.is_err());
    }
}
