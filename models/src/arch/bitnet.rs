//! BitNet b1.58 (`bitnet`: microsoft/bitnet-b1.58-2B-4T, its `-bf16` master weights): llama's
//! blocks with an RMSNorm of the attention's output before `o_proj` (`attn_sub_norm`) and of
//! the GLU's before `down_proj` (`ffn_sub_norm`), a squared-ReLU GLU, RoPE in HF's halves, a
//! tied head. Its released checkout's ternary products and 8-bit activations come from its
//! `quantization_config` (`weights::ternary`, `activation_quant`); the `-bf16` master weights
//! run as stored, as transformers runs them.
//!
//! llama.cpp's `bitnet` GGUFs (converted from the master weights, ternarized by the converter:
//! F16, TQ1_0 or TQ2_0) hold the same tensors, q/k rows as they are (NeoX RoPE). llama.cpp runs
//! them with SiLU unless the file names its activation (`bitnet.hidden_activation`, which its
//! fix for the 2B-4T's squared ReLU reads); candor does the same, and quantizes the products'
//! inputs per token as the model was trained to (llama.cpp's graph does not).
use super::{activation_named, base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

/// The bits BitNet b1.58 quantizes its products' inputs to.
pub const ACTIVATION_BITS: u32 = 8;

/// The sub-norms are `[hidden]` in transformers' BitNet: the attention's is over the heads'
/// joined output, which must be as wide.
fn bitnet_common(mut spec: ModelSpec) -> Result<ModelSpec> {
    if spec.q_dim() != spec.hidden_size {
        return Err(ModelError::Config(format!(
            "BitNet with {} heads of {} (not the hidden size {}): its attention sub-norm is \
             hidden wide",
            spec.num_heads, spec.head_dim, spec.hidden_size
        )));
    }
    spec.sub_norms = true;
    Ok(spec)
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    bitnet_common(base_from_hf(c, Arch::BitNet)?)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    // bitnet.cpp's layout scales each product by a tensor of its own (`blk.N.attn_q.scale`);
    // llama.cpp's converter writes the scale into the values.
    if g.contains("blk.0.attn_q.scale") {
        return Err(ModelError::Config(
            "GGUF bitnet with per-product scale tensors (blk.N.*.scale) is not supported \
             (llama.cpp's converter's TQ1_0 / TQ2_0 / F16 files are)"
                .into(),
        ));
    }
    let mut spec = base_from_gguf(g, Arch::BitNet, RopeStyle::Neox)?;
    spec.activation = match g.get_str("bitnet.hidden_activation") {
        Some(name) => activation_named(&name)?,
        None => crate::backend::Activation::Silu,
    };
    spec.activation_bits = Some(ACTIVATION_BITS);
    bitnet_common(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Activation;

    /// microsoft/bitnet-b1.58-2B-4T's config.json: its shapes, the ternary products'
    /// activations from its quantization config; the `-bf16` master weights' without one.
    #[test]
    fn reads_the_2b_4t_config() {
        let mut cfg = serde_json::json!({
            "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
            "hidden_act": "relu2", "hidden_size": 2560, "intermediate_size": 6912,
            "num_attention_heads": 20, "num_key_value_heads": 5, "num_hidden_layers": 30,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "vocab_size": 128256, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
            "bos_token_id": 128000, "eos_token_id": 128001,
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                "quantization_mode": "offline"}
        });
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::BitNet);
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (20, 5, 128)
        );
        assert_eq!(spec.activation, Activation::Relu2);
        assert!(spec.sub_norms && spec.gated_ffn && spec.unfused_blocks());
        assert_eq!(spec.activation_bits, Some(8));
        cfg.as_object_mut().unwrap().remove("quantization_config");
        let master = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(master.activation_bits, None);
        assert!(master.sub_norms);
        cfg["head_dim"] = serde_json::json!(64);
        let err = crate::arch::spec_from_hf(&cfg).unwrap_err().to_string();
        assert!(err.contains("sub-norm"), "{err}");
    }

    /// HF1BitLLM's Llama3-8B-1.58: a llama whose products are BitNet's (no sub-norms).
    #[test]
    fn a_llama_with_bitnet_products_quantizes_its_activations() {
        let spec = crate::arch::spec_from_hf(&serde_json::json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512,
            "quantization_config": {"quant_method": "bitnet", "modules_to_not_convert": null}
        }))
        .unwrap();
        assert_eq!((spec.activation_bits, spec.sub_norms), (Some(8), false));
        assert!(spec.unfused_blocks());
    }
}
