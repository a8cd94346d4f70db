//! BLOOM (`bloom`: BigScience's BLOOM-560M to 176B, BLOOMZ, and the models trained on its
//! code): ALiBi positions (no RoPE; `crate::alibi`), a LayerNorm of the token embeddings
//! before the first block (`word_embeddings_layernorm`), pre-norm blocks of biased
//! LayerNorms, q/k/v in one biased product stored per head (each head's q, k and v rows in
//! turn, as GPT-NeoX's: regrouped as they load), an ungated tanh-GELU MLP (`bloom_gelu`) with
//! biases, and a head tied to the embeddings.
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf};
use crate::alibi::Alibi;
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `BloomConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
/// BLOOM trained at 2048 positions; its config has no key for them (ALiBi lets it run past
/// them; `seq_length` where a config has it).
const TRAINED_CONTEXT: usize = 2048;

/// The blocks, as both formats describe them.
fn bloom_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.gated_ffn = false;
    spec.qkv_bias = true;
    spec.activation = Activation::GeluTanh;
    spec.embed_norm = true;
    spec.alibi = Some(Alibi::STANDARD);
    spec.unrotated_layers = vec![true; spec.num_layers];
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.bool("apply_residual_connection_post_layernorm", false) {
        return Err(ModelError::Config(
            "config.json: BLOOM with apply_residual_connection_post_layernorm is not supported"
                .into(),
        ));
    }
    // BLOOM's own key names (`n_embed`, `n_head`, `n_layer`; `BloomConfig`'s attribute map)
    // under those the llama-shaped reader knows.
    let n = |keys: [&str; 2]| keys.iter().find_map(|k| c.0.get(*k).cloned());
    let hidden = c
        .opt_usize("hidden_size")?
        .or(c.opt_usize("n_embed")?)
        .ok_or_else(|| ModelError::Config("config.json: BLOOM without hidden_size".into()))?;
    let mut cfg = c.0.clone();
    cfg["hidden_size"] = hidden.into();
    cfg["num_attention_heads"] = n(["num_attention_heads", "n_head"]).unwrap_or_default();
    cfg["num_hidden_layers"] = n(["num_hidden_layers", "n_layer"]).unwrap_or_default();
    cfg["intermediate_size"] = (4 * hidden).into();
    cfg["max_position_embeddings"] = c.opt_usize("seq_length")?.unwrap_or(TRAINED_CONTEXT).into();
    cfg["hidden_act"] = "gelu_pytorch_tanh".into();
    let c = HfConfig(&cfg);
    let mut spec = base_from_hf(&c, Arch::Bloom)?;
    spec.rms_eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
    bloom_common(&mut spec);
    spec.validate()?;
    Ok(spec)
}

/// A `bloom` GGUF: q/k/v as llama.cpp's converter regroups them (q, k, v), the embeddings'
/// norm as `token_embd_norm`, ALiBi's bias fixed at 8 as llama.cpp reads these files.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Bloom, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    bloom_common(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bigscience/bloom-560m's config.json, as published.
    fn bloom_560m_config() -> serde_json::Value {
        serde_json::json!({
            "apply_residual_connection_post_layernorm": false, "architectures": ["BloomForCausalLM"],
            "attention_dropout": 0.0, "attention_softmax_in_fp32": true, "bias_dropout_fusion": true,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_dropout": 0.0, "hidden_size": 1024,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
            "masked_softmax_fusion": true, "model_type": "bloom", "n_head": 16, "n_inner": null,
            "n_layer": 24, "offset_alibi": 100, "pad_token_id": 3, "pretraining_tp": 1,
            "skip_bias_add": true, "skip_bias_add_qkv": false, "slow_but_exact": false,
            "unk_token_id": 0, "use_cache": true, "vocab_size": 250880
        })
    }

    #[test]
    fn bloom_reads_its_own_key_names() {
        let spec = crate::arch::spec_from_hf(&bloom_560m_config()).unwrap();
        assert_eq!(spec.arch, Arch::Bloom);
        assert_eq!(
            (
                spec.hidden_size,
                spec.num_heads,
                spec.num_kv_heads,
                spec.head_dim
            ),
            (1024, 16, 16, 64)
        );
        assert_eq!((spec.num_layers, spec.intermediate_size), (24, 4096));
        assert_eq!(spec.alibi, Some(Alibi::STANDARD));
        assert!(spec.embed_norm && spec.unrotated_layers.iter().all(|&u| u));
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias && !spec.gated_ffn);
        assert!(!spec.learned_positions);
        assert_eq!(spec.activation, Activation::GeluTanh);
        assert_eq!(spec.eos_token_ids, [2]);
        let mut c = bloom_560m_config();
        c["apply_residual_connection_post_layernorm"] = true.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
    }
}
