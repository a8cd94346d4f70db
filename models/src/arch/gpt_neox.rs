//! GPT-NeoX (`gpt_neox`; llama.cpp's `gptneox`): Pythia, GPT-NeoX-20B and the models trained
//! with EleutherAI's code (RedPajama-INCITE, Dolly v2, StableLM-Alpha, OpenCALM ...). LayerNorms
//! with biases, q/k/v as one biased product (`query_key_value`, its rows per head in the
//! checkouts: q, k, v of head 0, then of head 1 ...; llama.cpp's converter stacks q, then k,
//! then v, the layout candor loads), NeoX RoPE over `rotary_pct` of each head, an ungated MLP
//! through the exact GELU, an untied head (`embed_out`), and parallel blocks with a norm each
//! (`x + attn(ln1(x)) + mlp(ln2(x))`) or, with `use_parallel_residual` false, sequential ones.
use super::{
    base_from_gguf, base_from_hf, layer_norm_eps_from_gguf, rotary_dim_from_gguf,
    rotary_dim_from_hf,
};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `GPTNeoXConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ROTARY_PCT: f32 = 0.25;
const DEFAULT_ROPE_BASE: f32 = 10000.0;

fn gpt_neox_common(spec: &mut ModelSpec, parallel: bool) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.parallel_block = parallel;
    spec.parallel_ffn_norm = parallel;
    spec.gated_ffn = false;
    spec.qkv_bias = true;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if !c.bool("attention_bias", true) {
        return Err(ModelError::Config(
            "config.json: GPT-NeoX without `attention_bias` is not supported".into(),
        ));
    }
    // The older configs' names (`rotary_pct`, `rotary_emb_base`) beside transformers' newer
    // ones, and GPT-NeoX's own default activation (the exact GELU).
    let mut cfg = c.0.clone();
    let fill = |cfg: &mut serde_json::Value, key: &str, value: serde_json::Value| {
        if cfg.get(key).is_none_or(serde_json::Value::is_null) {
            cfg[key] = value;
        }
    };
    fill(&mut cfg, "hidden_act", "gelu".into());
    fill(
        &mut cfg,
        "rope_theta",
        c.0.get("rotary_emb_base")
            .cloned()
            .unwrap_or(DEFAULT_ROPE_BASE.into()),
    );
    let c = HfConfig(&cfg);
    let mut spec = base_from_hf(&c, Arch::GptNeox)?;
    if !matches!(spec.activation, Activation::GeluErf | Activation::GeluTanh) {
        return Err(ModelError::Config(format!(
            "config.json: GPT-NeoX with activation {:?} is not supported",
            spec.activation
        )));
    }
    spec.rms_eps = c.f32("layer_norm_eps", DEFAULT_EPS)?;
    let pct = c.opt_f32("rotary_pct")?.unwrap_or(DEFAULT_ROTARY_PCT);
    spec.rotary_dim = rotary_dim_from_hf(&c, spec.head_dim, Some(pct))?;
    // GPT-NeoX attends with every head (no grouped keys in its config).
    spec.num_kv_heads = spec.num_heads;
    gpt_neox_common(&mut spec, c.bool("use_parallel_residual", true));
    Ok(spec)
}

/// A `gptneox` GGUF: `use_parallel_residual`, `rope.dimension_count` and
/// `attention.layer_norm_epsilon` as llama.cpp's converter writes them. llama.cpp runs the
/// tanh approximation of GELU on these files; candor runs the exact one the models were trained
/// with (transformers' `gelu`).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::GptNeox, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.activation = Activation::GeluErf;
    let parallel = g.get_bool("gptneox.use_parallel_residual").unwrap_or(true);
    gpt_neox_common(&mut spec, parallel);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EleutherAI/pythia-1.4b's config.json, as published (the older key names).
    fn pythia_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
            "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu", "hidden_size": 2048,
            "initializer_range": 0.02, "intermediate_size": 8192, "layer_norm_eps": 1e-5,
            "max_position_embeddings": 2048, "num_attention_heads": 16,
            "num_hidden_layers": 24, "rotary_emb_base": 10000, "rotary_pct": 0.25,
            "tie_word_embeddings": false, "use_cache": true, "use_parallel_residual": true,
            "vocab_size": 50304
        })
    }

    #[test]
    fn pythia_rotates_a_quarter_of_each_head_in_parallel_blocks_with_two_norms() {
        let spec = crate::arch::spec_from_hf(&pythia_config()).unwrap();
        assert_eq!(spec.arch, Arch::GptNeox);
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, Some(32)));
        assert_eq!((spec.num_heads, spec.num_kv_heads), (16, 16));
        assert!(spec.parallel_block && spec.parallel_ffn_norm);
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias && !spec.gated_ffn);
        assert_eq!(spec.activation, Activation::GeluErf);
        assert_eq!(spec.rope.theta, 10000.0);
        let mut c = pythia_config();
        c["use_parallel_residual"] = false.into();
        c["rotary_emb_base"] = 1000000.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert!(!spec.parallel_block && !spec.parallel_ffn_norm);
        assert_eq!(spec.rope.theta, 1e6);
    }

    #[test]
    fn gpt_neox_without_biases_is_refused() {
        let mut c = pythia_config();
        c["attention_bias"] = false.into();
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("attention_bias"), "{e}");
    }
}
