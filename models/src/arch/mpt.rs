//! MPT (`mpt`: MosaicML's MPT-7B / 30B and their Instruct / Chat / StoryWriter fine-tunes,
//! Replit's kin): ALiBi positions (no RoPE; `crate::alibi`, slopes up to `alibi_bias_max`),
//! pre-norm blocks of LayerNorms without biases, q/k/v in one product (`Wqkv`: q rows, then
//! k, then v) clamped to ±`clip_qkv` where the config says, no biases anywhere, an ungated
//! exact-GELU MLP four times as wide, and a head tied to the embeddings. transformers' `MptModel`
//! has no other positions: a config without ALiBi, with q/k LayerNorms or a prefix LM is
//! refused rather than read as something it is not.
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf};
use crate::alibi::Alibi;
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

/// transformers' `MptConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ALIBI_BIAS_MAX: f32 = 8.0;

fn mpt_common(spec: &mut ModelSpec, max_bias: f32) {
    spec.layer_norm = true;
    spec.gated_ffn = false;
    spec.activation = Activation::GeluErf;
    spec.alibi = Some(Alibi {
        max_bias,
        ..Alibi::STANDARD
    });
    spec.unrotated_layers = vec![true; spec.num_layers];
}

fn refuse<T>(what: &str) -> Result<T> {
    Err(ModelError::Config(format!(
        "config.json: MPT {what} is not supported"
    )))
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let empty = serde_json::json!({});
    let attn = HfConfig(c.0.get("attn_config").unwrap_or(&empty));
    if !attn.bool("alibi", false) {
        return refuse("without ALiBi (attn_config.alibi: false)");
    }
    if attn.bool("qk_ln", false) {
        return refuse("with q/k LayerNorms (attn_config.qk_ln)");
    }
    if attn.bool("prefix_lm", false) {
        return refuse("as a prefix LM (attn_config.prefix_lm)");
    }
    if !c.bool("no_bias", true) {
        return refuse("with biases (no_bias: false; transformers drops them)");
    }
    if c.0.get("logit_scale").is_some_and(|v| !v.is_null()) {
        return refuse("with logit_scale");
    }
    let hidden = c.usize("d_model")?;
    let mut cfg = c.0.clone();
    cfg["hidden_size"] = hidden.into();
    cfg["num_attention_heads"] = c.usize("n_heads")?.into();
    cfg["num_hidden_layers"] = c.usize("n_layers")?.into();
    // transformers' `MptMLP` is four times as wide whatever `expansion_ratio` says (4 in every
    // MPT release); llm-foundry's reads it, and so does candor.
    let ratio = c.opt_usize("expansion_ratio")?.unwrap_or(4);
    cfg["intermediate_size"] = (ratio * hidden).into();
    cfg["max_position_embeddings"] = c.usize("max_seq_len")?.into();
    cfg["hidden_act"] = "gelu".into();
    let c = HfConfig(&cfg);
    let mut spec = base_from_hf(&c, Arch::Mpt)?;
    spec.rms_eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
    if let Some(scale) = attn.opt_f32("softmax_scale")? {
        spec.attn_scale = scale;
    }
    spec.clip_qkv = attn.opt_f32("clip_qkv")?;
    mpt_common(
        &mut spec,
        attn.f32("alibi_bias_max", DEFAULT_ALIBI_BIAS_MAX)?,
    );
    spec.validate()?;
    Ok(spec)
}

/// An `mpt` GGUF: `attention.max_alibi_bias`, `attention.clamp_kqv` where set; the norms'
/// biases where the file has them. Learned positions, q/k norms and the FFN activation scales
/// llama.cpp also reads are refused. llama.cpp runs the tanh approximation of GELU on these
/// files; candor runs the exact one the models were trained with.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    for (tensor, what) in [
        ("position_embd.weight", "learned positions"),
        ("blk.0.attn_q_norm.weight", "q/k norms"),
        ("blk.0.ffn_act.scales", "FFN activation scales"),
    ] {
        if g.contains(tensor) {
            return Err(ModelError::Config(format!(
                "GGUF: MPT with {what} ({tensor}) is not supported"
            )));
        }
    }
    let mut spec = base_from_gguf(g, Arch::Mpt, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.norm_bias = g.contains("blk.0.attn_norm.bias");
    spec.qkv_bias = g.contains("blk.0.attn_qkv.bias");
    spec.clip_qkv = g
        .get_f64("mpt.attention.clamp_kqv")
        .filter(|&c| c > 0.0)
        .map(|c| c as f32);
    let max_bias = g
        .get_f64("mpt.attention.max_alibi_bias")
        .map_or(DEFAULT_ALIBI_BIAS_MAX, |b| b as f32);
    mpt_common(&mut spec, max_bias);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mosaicml/mpt-7b's config.json, as published (its `attn_config` and the keys candor
    /// reads; the rest is training settings).
    fn mpt_7b_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["MPTForCausalLM"], "model_type": "mpt", "d_model": 4096,
            "n_heads": 32, "n_layers": 32, "expansion_ratio": 4, "max_seq_len": 2048,
            "vocab_size": 50432, "resid_pdrop": 0.0, "emb_pdrop": 0.0, "learned_pos_emb": true,
            "attn_config": {"attn_type": "multihead_attention", "attn_pdrop": 0.0,
                "attn_impl": "torch", "qk_ln": false, "clip_qkv": null, "softmax_scale": null,
                "prefix_lm": false, "attn_uses_sequence_id": false, "alibi": true,
                "alibi_bias_max": 8},
            "init_device": "cpu", "logit_scale": null, "no_bias": true, "verbose": 0,
            "embedding_fraction": 1.0, "norm_type": "low_precision_layernorm", "use_cache": false,
            "tokenizer_name": "EleutherAI/gpt-neox-20b"
        })
    }

    #[test]
    fn mpt_reads_its_own_key_names() {
        let spec = crate::arch::spec_from_hf(&mpt_7b_config()).unwrap();
        assert_eq!(spec.arch, Arch::Mpt);
        assert_eq!(
            (
                spec.hidden_size,
                spec.num_heads,
                spec.num_kv_heads,
                spec.head_dim
            ),
            (4096, 32, 32, 128)
        );
        assert_eq!((spec.num_layers, spec.intermediate_size), (32, 16384));
        assert_eq!(spec.max_position, 2048);
        assert_eq!(spec.alibi, Some(Alibi::STANDARD));
        assert!(spec.unrotated_layers.iter().all(|&u| u) && !spec.embed_norm);
        assert!(spec.layer_norm && !spec.norm_bias && !spec.qkv_bias && !spec.gated_ffn);
        assert_eq!(spec.clip_qkv, None);
        assert_eq!(spec.activation, Activation::GeluErf);
        let mut c = mpt_7b_config();
        c["attn_config"]["clip_qkv"] = 6.0.into();
        c["attn_config"]["alibi_bias_max"] = 16.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.clip_qkv, Some(6.0));
        assert_eq!(spec.alibi.map(|a| a.max_bias), Some(16.0));
        for (key, value) in [("qk_ln", true), ("alibi", false), ("prefix_lm", true)] {
            let mut c = mpt_7b_config();
            c["attn_config"][key] = value.into();
            assert!(crate::arch::spec_from_hf(&c).is_err(), "{key}: {value}");
        }
    }
}
