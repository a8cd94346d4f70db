//! Mamba-1 (`mamba`: state-spaces' mamba-*-hf; `falcon_mamba`: Falcon Mamba 7B, Falcon3-Mamba):
//! every layer one Mamba-1 mixer after one RMSNorm, no attention and no FFN
//! (`crate::mamba1`), named as Nemotron-H's layers are (`backbone.*`, `mixer`). Falcon Mamba
//! RMS-normalizes B, C and dt's low-rank input without weights.
use super::mamba2::recurrent_only_base;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, Mamba1, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `MambaConfig` defaults where config.json is silent (`JambaConfig`'s too).
pub(crate) const DEFAULT_STATE: usize = 16;
pub(crate) const DEFAULT_CONV: usize = 4;
pub(crate) const DEFAULT_EXPAND: usize = 2;
const DEFAULT_MIXER_RMS_EPS: f32 = 1e-6;

pub fn from_hf(c: &HfConfig, falcon: bool) -> Result<ModelSpec> {
    if c.str("hidden_act").is_some_and(|a| a != "silu") {
        return Err(ModelError::Config(
            "config.json: Mamba's activation must be silu".into(),
        ));
    }
    let arch = if falcon {
        Arch::FalconMamba
    } else {
        Arch::Mamba
    };
    let mut spec = recurrent_only_base(c, arch)?;
    let hidden = spec.hidden_size;
    let inner = match c.opt_usize("intermediate_size")? {
        Some(n) => n,
        None => c.opt_usize("expand")?.unwrap_or(DEFAULT_EXPAND) * hidden,
    };
    let dt_rank = dt_rank(c, "time_step_rank", hidden);
    spec.mamba1 = Some(Mamba1 {
        layers: vec![true; spec.num_layers],
        inner,
        state: c.opt_usize("state_size")?.unwrap_or(DEFAULT_STATE),
        dt_rank,
        conv_kernel: c.opt_usize("conv_kernel")?.unwrap_or(DEFAULT_CONV),
        bcdt_norm: match falcon {
            true => Some(c.f32("mixer_rms_eps", DEFAULT_MIXER_RMS_EPS)?),
            false => None,
        },
        bcdt_norm_weights: false,
    });
    spec.validate()?;
    Ok(spec)
}

/// Mamba-1's dt rank under `key`: a number, or `"auto"` (transformers' default, also where the
/// key is absent): ceil(hidden / 16).
pub(crate) fn dt_rank(c: &HfConfig, key: &str, hidden: usize) -> usize {
    match c.opt_usize(key) {
        Ok(Some(r)) => r,
        _ => hidden.div_ceil(16),
    }
}

/// A `mamba` GGUF (llama.cpp's, Falcon Mamba's with `ssm.dt_b_c_rms`): its `ssm.*` shapes
/// read as the config.json they came from; llama.cpp norms Falcon Mamba's B, C and dt by the
/// model's own epsilon.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let vocab = super::vocab_from_gguf(g)?;
    let eps = g
        .get_f64(&k("attention.layer_norm_rms_epsilon"))
        .unwrap_or(1e-5);
    let falcon = g.get_bool(&k("ssm.dt_b_c_rms")).unwrap_or(false);
    let config = serde_json::json!({
        "hidden_size": g.require_usize(&k("embedding_length"))?,
        "num_hidden_layers": g.require_usize(&k("block_count"))?,
        "vocab_size": vocab,
        "intermediate_size": g.require_usize(&k("ssm.inner_size"))?,
        "state_size": g.require_usize(&k("ssm.state_size"))?,
        "time_step_rank": g.require_usize(&k("ssm.time_step_rank"))?,
        "conv_kernel": g.require_usize(&k("ssm.conv_kernel"))?,
        "layer_norm_epsilon": eps,
        "mixer_rms_eps": eps,
        "max_position_embeddings": g.get_usize(&k("context_length")).unwrap_or(1 << 20),
    });
    let mut spec = from_hf(&HfConfig(&config), falcon)?;
    (spec.bos_token_id, spec.eos_token_ids) = super::special_tokens_from_gguf(g);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tiiuae/falcon-mamba-7b's config.json (its shapes).
    #[test]
    fn falcon_mamba_7b_is_mamba_1_layers_alone() {
        let c = serde_json::json!({
            "architectures": ["FalconMambaForCausalLM"], "model_type": "falcon_mamba",
            "conv_kernel": 4, "expand": 16, "hidden_act": "silu", "hidden_size": 4096,
            "intermediate_size": 8192, "layer_norm_epsilon": 1e-5, "mixer_rms_eps": 1e-6,
            "num_hidden_layers": 64, "state_size": 16, "time_step_rank": 256,
            "use_bias": false, "use_conv_bias": true, "vocab_size": 65024,
            "tie_word_embeddings": false
        });
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::FalconMamba);
        assert_eq!(spec.cache_layers().total, 0);
        let m = spec.mamba1.as_ref().unwrap();
        assert_eq!(
            (m.inner, m.state, m.dt_rank, m.bcdt_norm),
            (8192, 16, 256, Some(1e-6))
        );
        assert_eq!(spec.sequence_state_bytes(), 4 * 64 * (3 * 8192 + 8192 * 16));
        let mut c = c;
        c["model_type"] = "mamba".into();
        c["time_step_rank"] = "auto".into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        let m = spec.mamba1.unwrap();
        assert_eq!((m.dt_rank, m.bcdt_norm), (256, None));
    }
}
