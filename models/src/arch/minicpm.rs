//! MiniCPM (`minicpm`: OpenBMB's MiniCPM-1B / 2B, MiniCPM4-0.5B): llama's blocks under μP's
//! scalings, which are Granite's: the embeddings times `scale_emb`, each attention and FFN
//! output times `scale_depth / sqrt(layers)` before the residual add, the last hidden states
//! divided by `hidden_size / dim_model_base` before the head; the attention scale stays
//! 1/sqrt(head_dim). llama.cpp runs its `minicpm` GGUFs through the Granite graph, its
//! converter writing the three as `embedding_scale`, `residual_scale` and `logit_scale`.
//! Its checkouts run transformers' remote code (`modeling_minicpm.py`), not a class of its own.
//!
//! MiniCPM4-8B's sparse attention over long contexts (`sparse_config`, InfLLM v2) and the
//! MiniCPM-MoE checkouts (`num_experts`) are refused by name; MiniCPM3 (`minicpm3`) is latent
//! attention, another architecture.
use super::granite::{apply_scalars, gguf_scalars, Scalars};
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let refuse = |what: &str| {
        Err(ModelError::Config(format!(
            "config.json: MiniCPM {what} is not supported"
        )))
    };
    if c.0.get("sparse_config").is_some_and(|s| !s.is_null()) {
        return refuse("with sparse attention over long contexts (sparse_config, InfLLM v2)");
    }
    if c.opt_usize("num_experts")?.unwrap_or(0) > 0 {
        return refuse("with experts (num_experts)");
    }
    let mut spec = base_from_hf(c, Arch::MiniCpm)?;
    let layers = spec.num_layers as f32;
    let hidden = spec.hidden_size as f32;
    let base = c.f32("dim_model_base", hidden)?;
    apply_scalars(
        &mut spec,
        Scalars {
            embedding: c.opt_f32("scale_emb")?,
            attention: None,
            residual: c.opt_f32("scale_depth")?.map(|d| d / layers.sqrt()),
            logits: Some(hidden / base),
        },
    );
    spec.validate()?;
    Ok(spec)
}

/// llama.cpp's `minicpm` GGUF: llama's tensors (q/k rows permuted for its interleaved RoPE)
/// and Granite's scalars under `minicpm.*`.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::MiniCpm, RopeStyle::Interleaved)?;
    apply_scalars(&mut spec, gguf_scalars(g)?);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openbmb/MiniCPM-2B-sft-bf16's config.json, as published (its `auto_map` aside).
    fn minicpm_2b_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["MiniCPMForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
            "hidden_act": "silu", "hidden_size": 2304, "initializer_range": 0.1,
            "intermediate_size": 5760, "max_position_embeddings": 4096, "num_attention_heads": 36,
            "num_hidden_layers": 40, "num_key_value_heads": 36, "rms_norm_eps": 1e-05,
            "rope_scaling": null, "torch_dtype": "bfloat16", "transformers_version": "4.36.0",
            "use_cache": true, "vocab_size": 122753, "scale_emb": 12, "dim_model_base": 256,
            "scale_depth": 1.4, "model_type": "minicpm"
        })
    }

    #[test]
    fn the_mup_scalings_become_granites() {
        let spec = crate::arch::spec_from_hf(&minicpm_2b_config()).unwrap();
        assert_eq!(spec.arch, Arch::MiniCpm);
        assert_eq!(spec.embed_scale, Some(12.0));
        assert_eq!(spec.residual_scale, Some(1.4 / 40f32.sqrt()));
        assert_eq!(spec.logit_divisor, Some(9.0));
        assert_eq!(spec.attn_scale, 1.0 / 64f32.sqrt());
        assert_eq!(
            (spec.num_heads, spec.head_dim, spec.num_layers),
            (36, 64, 40)
        );
    }

    #[test]
    fn sparse_attention_and_experts_are_refused() {
        let mut sparse = minicpm_2b_config();
        sparse["sparse_config"] = serde_json::json!({"kernel_size": 32, "dense_len": 8192});
        let mut moe = minicpm_2b_config();
        moe["num_experts"] = 8.into();
        for (c, said) in [(sparse, "sparse_config"), (moe, "num_experts")] {
            let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
            assert!(e.contains(said), "{e}");
        }
    }
}
