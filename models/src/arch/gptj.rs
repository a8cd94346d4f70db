//! GPT-J (`gptj`: GPT-J-6B and its fine-tunes, GPT4All-J): parallel blocks reading one
//! LayerNorm with a bias (`x + attn(ln(x)) + mlp(ln(x))`), q/k/v and the output product without
//! biases, RoPE over the first `rotary_dim` dimensions of each head in interleaved pairs
//! (`rotate_every_two`), an ungated tanh-GELU MLP with biases (`fc_in`, `fc_out`), an untied
//! head with a bias. GPT-2's key names in config.json. llama.cpp has no GPT-J graph: HF only.
use super::base_from_hf;
use super::gpt2::with_llama_keys;
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};

/// transformers' `GPTJConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ROTARY_DIM: usize = 64;
const DEFAULT_THETA: f64 = 10000.0;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut cfg = with_llama_keys(c)?;
    if c.str("activation_function").is_none() {
        cfg["hidden_act"] = "gelu_new".into();
    }
    // GPT-J's positions are sinusoids of base 10000 over `rotary_dim` (no config key).
    cfg["rope_theta"] = DEFAULT_THETA.into();
    let mut spec = base_from_hf(&HfConfig(&cfg), Arch::Gptj)?;
    if spec.activation != Activation::GeluTanh {
        return Err(ModelError::Config(format!(
            "config.json: GPT-J with activation {:?} is not supported (gelu_new is)",
            spec.activation
        )));
    }
    let rotary = match c.0.get("rotary_dim") {
        Some(serde_json::Value::Null) => spec.head_dim,
        Some(_) => c.usize("rotary_dim")?,
        None => DEFAULT_ROTARY_DIM,
    };
    spec.rotary_dim = Some(rotary).filter(|&r| r != spec.head_dim);
    spec.rope.style = RopeStyle::Interleaved;
    spec.rms_eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.parallel_block = true;
    spec.gated_ffn = false;
    spec.qkv_bias = false;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EleutherAI/gpt-j-6b's config.json, as published (less its dropout rates and task
    /// parameters).
    fn gptj_6b_config() -> serde_json::Value {
        serde_json::json!({
            "activation_function": "gelu_new", "architectures": ["GPTJForCausalLM"],
            "bos_token_id": 50256, "eos_token_id": 50256, "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-05, "model_type": "gptj", "n_embd": 4096, "n_head": 16,
            "n_inner": null, "n_layer": 28, "n_positions": 2048, "rotary": true,
            "rotary_dim": 64, "tie_word_embeddings": false, "vocab_size": 50400
        })
    }

    #[test]
    fn gptj_rotates_a_quarter_of_each_head_in_interleaved_pairs() {
        let spec = crate::arch::spec_from_hf(&gptj_6b_config()).unwrap();
        assert_eq!(spec.arch, Arch::Gptj);
        assert_eq!((spec.head_dim, spec.rotary_dim), (256, Some(64)));
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        assert_eq!(spec.intermediate_size, 16384);
        assert!(spec.parallel_block && spec.layer_norm && spec.norm_bias && !spec.qkv_bias);
        assert!(!spec.gated_ffn);
    }
}
