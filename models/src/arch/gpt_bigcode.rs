//! GPT-BigCode (`gpt_bigcode`: StarCoder / StarCoderBase 1B-15B, SantaCoder, WizardCoder 15B,
//! OctoCoder; llama.cpp's `starcoder`): GPT-2's blocks (learned absolute positions, LayerNorms
//! with biases, q/k/v in one biased product, an ungated tanh-GELU MLP, a tied head) with
//! multi-query attention, and products stored `[out, in]` as any `nn.Linear`. Without
//! `multi_query`, `c_attn` holds q, k and v per head (as GPT-NeoX's), regrouped at load.
use super::base_from_hf;
use super::gpt2::{gpt2_common, with_llama_keys};
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `GPTBigCodeConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ACTIVATION: &str = "gelu_pytorch_tanh";

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut cfg = with_llama_keys(c)?;
    if c.str("activation_function").is_none() {
        cfg["hidden_act"] = DEFAULT_ACTIVATION.into();
    }
    let heads = c.usize("n_head")?;
    cfg["num_key_value_heads"] = match c.bool("multi_query", true) {
        true => 1.into(),
        false => heads.into(),
    };
    let mut spec = base_from_hf(&HfConfig(&cfg), Arch::GptBigcode)?;
    spec.rms_eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
    if !c.bool("scale_attn_weights", true) {
        spec.attn_scale = 1.0;
    }
    gpt2_common(&mut spec);
    Ok(spec)
}

/// A `starcoder` GGUF: GPT-2's tensor names (`position_embd`, a joined `attn_qkv` with its
/// bias), one KV head as llama.cpp's converter writes every such file, the tanh GELU llama.cpp
/// runs.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    super::gpt2::gpt2_family_from_gguf(g, Arch::GptBigcode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Activation;

    /// bigcode/starcoderbase-1b's config.json, as published (less its dropout rates).
    fn starcoderbase_1b_config() -> serde_json::Value {
        serde_json::json!({
            "activation_function": "gelu_pytorch_tanh", "architectures": ["GPTBigCodeForCausalLM"],
            "attention_softmax_in_fp32": true, "bos_token_id": 0, "eos_token_id": 0,
            "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt_bigcode",
            "multi_query": true, "n_embd": 2048, "n_head": 16, "n_inner": 8192, "n_layer": 24,
            "n_positions": 8192, "scale_attention_softmax_in_fp32": true,
            "scale_attn_weights": true, "vocab_size": 49152
        })
    }

    #[test]
    fn starcoder_attends_with_one_kv_head_over_learned_positions() {
        let spec = crate::arch::spec_from_hf(&starcoderbase_1b_config()).unwrap();
        assert_eq!(spec.arch, Arch::GptBigcode);
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (16, 1, 128)
        );
        assert_eq!((spec.intermediate_size, spec.max_position), (8192, 8192));
        assert!(spec.learned_positions && spec.layer_norm && !spec.gated_ffn && spec.qkv_bias);
        assert_eq!(spec.activation, Activation::GeluTanh);
        assert!((spec.attn_scale - 1.0 / 128f32.sqrt()).abs() < 1e-7);
        let mut c = starcoderbase_1b_config();
        c["multi_query"] = false.into();
        c["scale_attn_weights"] = false.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!((spec.num_kv_heads, spec.attn_scale), (16, 1.0));
    }
}
