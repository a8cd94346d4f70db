//! Canonical (GGUF-style) tensor names and their Hugging Face equivalents.

/// Which HF layer-norm naming an architecture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfNormNaming {
    /// llama/mistral/qwen: `post_attention_layernorm` is the pre-FFN norm.
    Llama,
    /// gemma2/3: `post_attention_layernorm` is applied to the attention output,
    /// `pre_feedforward_layernorm` is the pre-FFN norm.
    Gemma,
}

pub fn layer(l: usize, what: &str) -> String {
    format!("blk.{l}.{what}")
}

/// HF safetensors name of a canonical tensor name, or None when it has no HF equivalent.
pub fn to_hf(name: &str, naming: HfNormNaming) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let top = match stem {
        "token_embd" => Some("model.embed_tokens".to_string()),
        "output_norm" => Some("model.norm".to_string()),
        "output" => Some("lm_head".to_string()),
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}.{suffix}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (l, part) = rest.split_once('.')?;
    let l: usize = l.parse().ok()?;
    let hf = match (part, naming) {
        ("attn_norm", _) => "input_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        // Phi-3's q/k/v in one tensor, and its gate and up (`ffn_gate_up`; llama.cpp's phi3
        // GGUFs store that pair as a double-height `ffn_up`).
        ("attn_qkv", _) => "self_attn.qkv_proj",
        ("ffn_gate_up", _) => "mlp.gate_up_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        ("ffn_norm", HfNormNaming::Llama) => "post_attention_layernorm",
        ("ffn_norm", HfNormNaming::Gemma) => "pre_feedforward_layernorm",
        ("post_attention_norm", HfNormNaming::Gemma) => "post_attention_layernorm",
        ("post_ffw_norm", HfNormNaming::Gemma) => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{l}.{hf}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_norms_per_family() {
        assert_eq!(
            to_hf("blk.2.ffn_norm.weight", HfNormNaming::Llama).as_deref(),
            Some("model.layers.2.post_attention_layernorm.weight")
        );
        assert_eq!(
            to_hf("blk.2.ffn_norm.weight", HfNormNaming::Gemma).as_deref(),
            Some("model.layers.2.pre_feedforward_layernorm.weight")
        );
        assert_eq!(
            to_hf("blk.0.post_attention_norm.weight", HfNormNaming::Gemma).as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            to_hf("blk.0.attn_q.bias", HfNormNaming::Llama).as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
        assert_eq!(
            to_hf("output.weight", HfNormNaming::Llama).as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(to_hf("blk.x.attn_q.weight", HfNormNaming::Llama), None);
    }
}
