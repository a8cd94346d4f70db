//! TII's Falcon-H1 (`falcon_h1`: Falcon-H1 0.5B-34B, Falcon-H1R): in every layer llama's
//! attention and a Mamba-2 mixer read the same normed stream side by side, their outputs
//! summed (`ModelSpec::parallel_mamba`), then a SwiGLU FFN; names as Bamba's (`mamba.*`,
//! `feed_forward`, `pre_ff_layernorm`, `final_layernorm`). Its muP multipliers scale the
//! embeddings (`embedding_multiplier`) and the logits (`lm_head_multiplier`), and inside the
//! layers the attention's input (`attention_in_multiplier`) and keys (`key_multiplier`), the
//! attention's and the Mamba's outputs, the Mamba's input and each section of its input product
//! (`ssm_multipliers`: z, x, B, C, dt), the MLP's gate and output: those are folded into the
//! weights as they load (`ModelSpec::weight_scales`), as llama.cpp's converter folds them into
//! its `falcon-h1` GGUFs (read too). The Mamba's output is RMS-normed before its gate, after it, or not at
//! all (`mamba_rms_norm`, `mamba_norm_before_gate`).
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, GatedNorm, HfConfig, ModelSpec, WeightScale};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.bool("projectors_bias", false) || c.bool("mamba_proj_bias", false) {
        return Err(ModelError::Config(
            "config.json: Falcon-H1 with biases on its products is not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::FalconH1)?;
    let (hidden, layers) = (spec.hidden_size, spec.num_layers);
    // Granite 4.0-H's keys and transformers' defaults (the same), its norm per group.
    let mut mamba = super::granite::mamba_from_hf(c, hidden, vec![true; layers])?;
    let (inner, groups) = (mamba.inner(), mamba.groups);
    if groups == 0 || !inner.is_multiple_of(groups) {
        return Err(ModelError::Config(format!(
            "config.json: Falcon-H1's Mamba: {groups} groups for an inner width of {inner}"
        )));
    }
    mamba.norm_group = inner / groups;
    mamba.gated_norm = match (
        c.bool("mamba_rms_norm", false),
        c.bool("mamba_norm_before_gate", true),
    ) {
        (false, _) => GatedNorm::None,
        (true, true) => GatedNorm::BeforeGate,
        (true, false) => GatedNorm::AfterGate,
    };
    let (heads, state) = (mamba.heads, mamba.state);
    spec.mamba = Some(mamba);
    spec.parallel_mamba = true;
    let multiplier = |key: &str| c.f32(key, 1.0);
    let pair = |key: &str| -> Result<Vec<f32>> {
        match c.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ModelError::Config(format!("config.json: `{key}`: {e}"))),
        }
    };
    spec.embed_scale = Some(multiplier("embedding_multiplier")?).filter(|&m| m != 1.0);
    let head = multiplier("lm_head_multiplier")?;
    spec.logit_divisor = (head != 1.0 && head != 0.0).then(|| 1.0 / head);
    let attn_in = multiplier("attention_in_multiplier")?;
    let ssm_in = multiplier("ssm_in_multiplier")?;
    let mlp = pair("mlp_multipliers")?;
    let ssm = pair("ssm_multipliers")?;
    if (!mlp.is_empty() && mlp.len() != 2) || (!ssm.is_empty() && ssm.len() != 5) {
        return Err(ModelError::Config(format!(
            "config.json: Falcon-H1's `mlp_multipliers` {mlp:?} (two) or `ssm_multipliers` \
             {ssm:?} (five)"
        )));
    }
    let at = |v: &[f32], i: usize| v.get(i).copied().unwrap_or(1.0);
    let bc = groups * state;
    let all = |tensor: &'static str, scale: f32| WeightScale {
        tensor,
        runs: vec![(usize::MAX, scale)],
    };
    spec.weight_scales = vec![
        all("attn_q.weight", attn_in),
        all("attn_k.weight", attn_in * multiplier("key_multiplier")?),
        all("attn_v.weight", attn_in),
        all(
            "attn_output.weight",
            multiplier("attention_out_multiplier")?,
        ),
        all("ssm_out.weight", multiplier("ssm_out_multiplier")?),
        all("ffn_gate.weight", at(&mlp, 0)),
        all("ffn_down.weight", at(&mlp, 1)),
        // in_proj's rows: z, x, B, C, dt, each section times its multiplier, all times the
        // input's.
        WeightScale {
            tensor: "ssm_in.weight",
            runs: vec![
                (inner, ssm_in * at(&ssm, 0)),
                (inner, ssm_in * at(&ssm, 1)),
                (bc, ssm_in * at(&ssm, 2)),
                (bc, ssm_in * at(&ssm, 3)),
                (heads, ssm_in * at(&ssm, 4)),
            ],
        },
    ];
    spec.weight_scales
        .retain(|s| s.runs.iter().any(|&(_, m)| m != 1.0));
    spec.validate()?;
    Ok(spec)
}

/// llama.cpp's `falcon-h1` GGUF: the multipliers already folded into the weights (the
/// embeddings' and the head's too), q/k as they are, NeoX RoPE; the Mamba-2 shapes as the
/// `ssm.*` keys give them (`time_step_rank`: heads), its output normed after its gate where the
/// file has `ssm_norm` (llama.cpp's one placement), else not at all.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::FalconH1, RopeStyle::Neox)?;
    let mut mamba = super::mamba2::mamba2_from_gguf(g, vec![true; spec.num_layers])?;
    if !g.contains(&layer(0, "ssm_norm.weight")) {
        mamba.gated_norm = GatedNorm::None;
    }
    spec.mamba = Some(mamba);
    spec.parallel_mamba = true;
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tiiuae/Falcon-H1-0.5B-Instruct's config.json (its shapes and multipliers).
    #[test]
    fn falcon_h1_runs_mamba_beside_attention_with_its_multipliers_folded() {
        let c = serde_json::json!({
            "architectures": ["FalconH1ForCausalLM"], "model_type": "falcon_h1",
            "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 36,
            "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
            "vocab_size": 32784, "rms_norm_eps": 1e-5, "rope_theta": 100000000000.0,
            "max_position_embeddings": 16384, "mamba_d_ssm": 1536, "mamba_n_heads": 24,
            "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 128, "mamba_d_conv": 4,
            "mamba_rms_norm": false, "mamba_norm_before_gate": false,
            "embedding_multiplier": 5.656854249492381, "lm_head_multiplier": 0.0390625,
            "attention_in_multiplier": 1.0, "attention_out_multiplier": 0.9375,
            "key_multiplier": 0.390625, "mlp_multipliers": [0.8838834764831844, 0.5859375],
            "ssm_in_multiplier": 1.25, "ssm_out_multiplier": 0.23570226039551587,
            "ssm_multipliers": [0.3535533905932738, 0.25, 0.3535533905932738, 0.5,
                                0.3535533905932738],
            "tie_word_embeddings": false
        });
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::FalconH1);
        assert!(spec.parallel_mamba);
        // Attention in every layer beside the Mamba's state.
        assert_eq!(spec.cache_layers().total, 36);
        let m = spec.mamba.as_ref().unwrap();
        assert_eq!(
            (m.heads, m.head_dim, m.state, m.gated_norm),
            (24, 64, 128, GatedNorm::None)
        );
        assert_eq!(spec.embed_scale, Some(5.656_854_f32));
        assert_eq!(spec.logit_divisor, Some(25.6));
        let of = |t: &str| spec.weight_scales.iter().find(|s| s.tensor == t).cloned();
        assert_eq!(of("attn_k.weight").unwrap().runs, [(usize::MAX, 0.390625)]);
        // q and v keep an attention input multiplier of 1.
        assert!(of("attn_q.weight").is_none() && of("attn_v.weight").is_none());
        let runs = of("ssm_in.weight").unwrap().runs;
        assert_eq!(
            runs.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1536, 1536, 128, 128, 24]
        );
        assert_eq!(runs[1].1, 1.25 * 0.25);
    }
}
