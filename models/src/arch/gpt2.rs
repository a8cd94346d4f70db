//! GPT-2 (`gpt2`: GPT-2 small to XL, DistilGPT2 and the models trained on its code): learned
//! absolute positions added to the token embeddings (no RoPE), pre-norm blocks of LayerNorms with
//! biases, q/k/v in one biased product (`c_attn`), an ungated tanh-GELU MLP (`gelu_new`), biases
//! on every product, and a head tied to the embeddings. The checkouts store their products
//! `[in, out]` (`Conv1D`), read transposed; llama.cpp's converter writes them transposed.
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `GPT2Config` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;

/// GPT-2's blocks, which GPT-BigCode's are too.
pub(super) fn gpt2_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.gated_ffn = false;
    spec.qkv_bias = true;
    spec.learned_positions = true;
    spec.unrotated_layers = vec![true; spec.num_layers];
}

/// A GPT-2-style config.json (GPT-2's, GPT-BigCode's) with its own key names (`n_embd`,
/// `n_head`, `n_layer`, `n_positions`, `n_inner`, `activation_function`) also under the names
/// the llama-shaped reader knows.
pub(super) fn with_llama_keys(c: &HfConfig) -> Result<serde_json::Value> {
    let n = |key: &str| c.0.get(key).cloned();
    let hidden = c.usize("n_embd")?;
    let mut cfg = c.0.clone();
    for (key, value) in [
        ("hidden_size", n("n_embd")),
        ("num_attention_heads", n("n_head")),
        ("num_hidden_layers", n("n_layer")),
        ("max_position_embeddings", n("n_positions")),
        ("hidden_act", n("activation_function")),
    ] {
        cfg[key] = value.unwrap_or(serde_json::Value::Null);
    }
    cfg["intermediate_size"] = match c.opt_usize("n_inner")? {
        Some(inner) => inner.into(),
        None => (4 * hidden).into(),
    };
    Ok(cfg)
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let cfg = with_llama_keys(c)?;
    if c.bool("scale_attn_by_inverse_layer_idx", false) || c.bool("reorder_and_upcast_attn", false)
    {
        return Err(ModelError::Config(
            "config.json: GPT-2 with scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn \
             is not supported"
                .into(),
        ));
    }
    let c = HfConfig(&cfg);
    let mut spec = base_from_hf(&c, Arch::Gpt2)?;
    if spec.activation != Activation::GeluTanh {
        return Err(ModelError::Config(format!(
            "config.json: GPT-2 with activation {:?} is not supported (gelu_new is)",
            spec.activation
        )));
    }
    spec.rms_eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
    gpt2_common(&mut spec);
    Ok(spec)
}

/// A `gpt2` GGUF: `position_embd` beside `token_embd`, `attn_qkv` with its bias, the
/// LayerNorm epsilon under `attention.layer_norm_epsilon`, the context as `context_length`.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    gpt2_family_from_gguf(g, Arch::Gpt2)
}

/// A GGUF of GPT-2's blocks as `arch` (GPT-2's, StarCoder's): the tanh GELU llama.cpp runs for
/// both.
pub(super) fn gpt2_family_from_gguf(g: &GgufFile, arch: Arch) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, arch, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    gpt2_common(&mut spec);
    spec.activation = Activation::GeluTanh;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openai-community/gpt2's config.json, as published.
    fn gpt2_config() -> serde_json::Value {
        serde_json::json!({
            "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1, "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
            "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
            "resid_pdrop": 0.1, "vocab_size": 50257
        })
    }

    #[test]
    fn gpt2_reads_its_own_key_names() {
        let spec = crate::arch::spec_from_hf(&gpt2_config()).unwrap();
        assert_eq!(spec.arch, Arch::Gpt2);
        assert_eq!(
            (spec.hidden_size, spec.num_heads, spec.head_dim),
            (768, 12, 64)
        );
        assert_eq!((spec.num_layers, spec.intermediate_size), (12, 3072));
        assert_eq!(spec.max_position, 1024);
        assert!(spec.learned_positions && spec.unrotated_layers.iter().all(|&u| u));
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias && !spec.gated_ffn);
        assert_eq!(spec.eos_token_ids, [50256]);
        let mut c = gpt2_config();
        c["scale_attn_by_inverse_layer_idx"] = true.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
    }
}
