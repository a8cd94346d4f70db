//! Falcon (`falcon`: Falcon-7B / 40B / 180B, Falcon2-11B): parallel blocks
//! (`x + attn(ln(x)) + mlp(ln(x))`; the "new decoder architecture" of 40B / 180B norms each
//! branch apart, `ln_attn` and `ln_mlp`), q/k/v in one product stored per KV head (the group's
//! q heads, then its k and v; 7B's single KV head keeps q, k, v in turn: multi-query), full
//! NeoX RoPE, an ungated exact-GELU MLP, no biases by default, a tied head. Falcon-RW
//! (`alibi`: RefinedWeb's 1B / 7B) attends with ALiBi instead of RoPE, its bias added before
//! the 1/√d scaling (so scaled with the scores) and its slopes rounded to bf16 as
//! transformers' Falcon builds them.
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf};
use crate::alibi::Alibi;
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

/// transformers' `FalconConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;

fn falcon_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.gated_ffn = false;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let hidden = c
        .opt_usize("hidden_size")?
        .or(c.opt_usize("n_embed")?)
        .ok_or_else(|| ModelError::Config("config.json: Falcon without hidden_size".into()))?;
    let heads = c.usize("num_attention_heads")?;
    let new_arch = c.bool("new_decoder_architecture", false);
    let kv_heads = match (new_arch, c.bool("multi_query", true)) {
        (true, _) => c.opt_usize("num_kv_heads")?.unwrap_or(heads),
        (false, true) => 1,
        (false, false) => heads,
    };
    // Falcon's own key names, as the llama-shaped reader knows them.
    let mut cfg = c.0.clone();
    cfg["hidden_size"] = hidden.into();
    cfg["num_key_value_heads"] = kv_heads.into();
    cfg["intermediate_size"] = c.opt_usize("ffn_hidden_size")?.unwrap_or(4 * hidden).into();
    cfg["hidden_act"] = c.str("activation").unwrap_or("gelu").into();
    cfg["attention_bias"] = c.bool("bias", false).into();
    let c = HfConfig(&cfg);
    let mut spec = base_from_hf(&c, Arch::Falcon)?;
    if !matches!(spec.activation, Activation::GeluErf | Activation::GeluTanh) {
        return Err(ModelError::Config(format!(
            "config.json: Falcon with activation {:?} is not supported",
            spec.activation
        )));
    }
    spec.rms_eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
    let two_norms = new_arch && c.opt_usize("num_ln_in_parallel_attn")?.unwrap_or(2) == 2;
    spec.parallel_block = new_arch || c.bool("parallel_attn", true);
    spec.parallel_ffn_norm = two_norms;
    falcon_common(&mut spec);
    if c.bool("alibi", false) {
        spec.alibi = Some(Alibi {
            scale: spec.attn_scale,
            bf16_slopes: true,
            ..Alibi::STANDARD
        });
        spec.unrotated_layers = vec![true; spec.num_layers];
    }
    Ok(spec)
}

/// A `falcon` GGUF: q/k/v as llama.cpp's converter regroups them (q, k, v), the FFN's own norm
/// as `attn_norm_2` where the blocks have two, the epsilon under
/// `attention.layer_norm_epsilon`. llama.cpp runs the tanh approximation of GELU on these
/// files; candor runs the exact one the models were trained with.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Falcon, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.activation = Activation::GeluErf;
    spec.qkv_bias = g.contains("blk.0.attn_qkv.bias");
    spec.parallel_block = true;
    spec.parallel_ffn_norm = g.contains("blk.0.attn_norm_2.weight");
    falcon_common(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tiiuae/falcon-7b's config.json (its shapes).
    fn falcon_7b() -> serde_json::Value {
        serde_json::json!({
            "model_type": "falcon", "alibi": false, "bias": false, "hidden_size": 4544,
            "layer_norm_epsilon": 1e-5, "multi_query": true, "new_decoder_architecture": false,
            "num_attention_heads": 71, "num_hidden_layers": 32, "parallel_attn": true,
            "vocab_size": 65024, "bos_token_id": 11, "eos_token_id": 11
        })
    }

    #[test]
    fn falcon_7b_is_multi_query_with_one_norm() {
        let spec = crate::arch::spec_from_hf(&falcon_7b()).unwrap();
        assert_eq!(spec.arch, Arch::Falcon);
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (71, 1, 64)
        );
        assert_eq!(spec.intermediate_size, 4 * 4544);
        assert!(spec.parallel_block && !spec.parallel_ffn_norm && !spec.qkv_bias);
        assert_eq!(spec.activation, Activation::GeluErf);
        assert_eq!(spec.rotary_dim, None);
    }

    #[test]
    fn falcon_40b_norms_each_branch_and_groups_its_kv_heads() {
        let mut c = falcon_7b();
        c["new_decoder_architecture"] = true.into();
        c["num_kv_heads"] = 8.into();
        c["num_attention_heads"] = 128.into();
        c["hidden_size"] = 8192.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!((spec.num_heads, spec.num_kv_heads), (128, 8));
        assert!(spec.parallel_block && spec.parallel_ffn_norm);
        c["num_ln_in_parallel_attn"] = 1.into();
        assert!(!crate::arch::spec_from_hf(&c).unwrap().parallel_ffn_norm);
    }

    /// tiiuae/falcon-rw-1b's config.json (as transformers converts RefinedWeb's): sequential
    /// blocks with biases, one KV head per query head, ALiBi instead of RoPE.
    #[test]
    fn falcon_rw_attends_with_alibi() {
        let c = serde_json::json!({
            "alibi": true, "architectures": ["FalconForCausalLM"], "attention_dropout": 0.0,
            "bias": true, "bos_token_id": 1, "eos_token_id": 2, "hidden_dropout": 0.0,
            "hidden_size": 2048, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
            "model_type": "falcon", "multi_query": false, "new_decoder_architecture": false,
            "num_attention_heads": 32, "num_hidden_layers": 24, "parallel_attn": false,
            "vocab_size": 50304
        });
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (32, 32, 64)
        );
        assert!(!spec.parallel_block && spec.qkv_bias);
        assert!(spec.unrotated_layers.iter().all(|&u| u));
        let alibi = spec.alibi.expect("ALiBi");
        assert_eq!((alibi.scale, alibi.bf16_slopes), (0.125, true));
    }
}
