//! OPT (`opt`: Meta's OPT-125M to OPT-66B, OPT-IML, Galactica's kin trained on its code; vLLM's
//! hello-world `facebook/opt-125m`): GPT-2's pre-norm blocks (LayerNorms with biases, learned
//! absolute positions added to the token embeddings, biases on every product, a tied head)
//! with q, k and v as three products and an ungated ReLU MLP (`fc1`, `fc2`). Its position
//! table keeps fairseq's two rows before position 0 (`OPTLearnedPositionalEmbedding`'s offset).
//!
//! OPT-350M alone differs: its LayerNorms follow each block's residual adds
//! (`do_layer_norm_before: false`; `spec.post_residual_norms`, no norm after the last block) and
//! its embeddings are narrower than its blocks (`word_embed_proj_dim`: `project_in` widens
//! them, `project_out` narrows the last hidden states for the tied head; `spec.embed_width`).
use super::base_from_hf;
use super::gpt2::gpt2_common;
use crate::backend::Activation;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};

/// `nn.LayerNorm`'s epsilon: OPT's config has no key for it.
const EPS: f32 = 1e-5;
/// The rows of OPT's position table before position 0's (fairseq's padding index, plus one).
const POSITION_OFFSET: usize = 2;

/// OPT's config.json with its own key names (`ffn_dim`, `activation_function`) also under the
/// names the llama-shaped reader knows.
fn with_llama_keys(c: &HfConfig) -> Result<serde_json::Value> {
    let mut cfg = c.0.clone();
    cfg["intermediate_size"] = c.usize("ffn_dim")?.into();
    cfg["hidden_act"] = c.str("activation_function").unwrap_or("relu").into();
    Ok(cfg)
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let refuse = |what: &str| {
        Err(ModelError::Config(format!(
            "config.json: OPT {what} is not supported"
        )))
    };
    let norms_before = c.bool("do_layer_norm_before", true);
    if norms_before && c.bool("_remove_final_layer_norm", false) {
        return refuse("without its last LayerNorm (_remove_final_layer_norm)");
    }
    if !c.bool("layer_norm_elementwise_affine", true) {
        return refuse("with LayerNorms without weights (layer_norm_elementwise_affine: false)");
    }
    if !c.bool("enable_bias", true) {
        return refuse("without biases (enable_bias: false)");
    }
    let hidden = c.usize("hidden_size")?;
    let embed_width = c
        .opt_usize("word_embed_proj_dim")?
        .filter(|&width| width != hidden);
    let cfg = with_llama_keys(c)?;
    let mut spec = base_from_hf(&HfConfig(&cfg), Arch::Opt)?;
    if spec.activation != Activation::Relu {
        return Err(ModelError::Config(format!(
            "config.json: OPT with activation {:?} is not supported (relu is)",
            spec.activation
        )));
    }
    spec.rms_eps = EPS;
    gpt2_common(&mut spec);
    spec.learned_position_offset = POSITION_OFFSET;
    spec.post_residual_norms = !norms_before;
    spec.embed_width = embed_width;
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// facebook/opt-125m's config.json, as published.
    fn opt_125m_config() -> serde_json::Value {
        serde_json::json!({
            "_name_or_path": "facebook/opt-125m", "_remove_final_layer_norm": false,
            "activation_dropout": 0.0, "activation_function": "relu",
            "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 2,
            "do_layer_norm_before": true, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 3072,
            "hidden_size": 768, "init_std": 0.02, "layerdrop": 0.0,
            "max_position_embeddings": 2048, "model_type": "opt", "num_attention_heads": 12,
            "num_hidden_layers": 12, "pad_token_id": 1, "prefix": "</s>",
            "torch_dtype": "float16", "transformers_version": "4.21.0.dev0", "use_cache": true,
            "vocab_size": 50272, "word_embed_proj_dim": 768
        })
    }

    #[test]
    fn opt_reads_its_own_key_names() {
        let spec = crate::arch::spec_from_hf(&opt_125m_config()).unwrap();
        assert_eq!(spec.arch, Arch::Opt);
        assert_eq!(
            (
                spec.hidden_size,
                spec.num_heads,
                spec.num_kv_heads,
                spec.head_dim
            ),
            (768, 12, 12, 64)
        );
        assert_eq!((spec.num_layers, spec.intermediate_size), (12, 3072));
        assert_eq!(spec.activation, Activation::Relu);
        assert_eq!((spec.max_position, spec.learned_position_offset), (2048, 2));
        assert!(spec.learned_positions && spec.unrotated_layers.iter().all(|&u| u));
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias && !spec.gated_ffn);
        assert_eq!(
            (spec.bos_token_id, spec.eos_token_ids.as_slice()),
            (Some(2), &[2][..])
        );
    }

    /// facebook/opt-350m: norms after the residual adds, 512-wide embeddings.
    #[test]
    fn opt_350m_norms_after_its_blocks_and_projects_its_embeddings() {
        let mut c = opt_125m_config();
        for (key, value) in [
            ("do_layer_norm_before", false.into()),
            ("word_embed_proj_dim", 512.into()),
            ("hidden_size", 1024.into()),
            ("ffn_dim", 4096.into()),
            ("num_attention_heads", 16.into()),
            ("num_hidden_layers", 24.into()),
        ] {
            c[key] = value;
        }
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert!(spec.post_residual_norms);
        assert_eq!((spec.hidden_size, spec.embed_width), (1024, Some(512)));
        let plain = crate::arch::spec_from_hf(&opt_125m_config()).unwrap();
        assert!(!plain.post_residual_norms && plain.embed_width.is_none());
    }

    #[test]
    fn other_variants_are_refused() {
        for (key, value, said) in [
            (
                "_remove_final_layer_norm",
                true.into(),
                "_remove_final_layer_norm",
            ),
            ("enable_bias", false.into(), "enable_bias"),
            (
                "layer_norm_elementwise_affine",
                false.into(),
                "elementwise_affine",
            ),
            ("activation_function", "gelu".into(), "GeluErf"),
        ] {
            let mut c = opt_125m_config();
            c[key] = value;
            let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
            assert!(e.contains(said), "{key}: {e}");
        }
    }
}
