//! Mamba-2 alone (`mamba2`: Mamba-Codestral-7B, state-spaces' mamba2 models): every layer one
//! Mamba-2 mixer after one RMSNorm, no attention and no FFN. Laid out as Nemotron-H's layers
//! (`backbone.*`, `mixer`), each a mixer only (`LayerParts::MixerOnly`); the attention fields
//! of the spec are placeholders no layer reads. llama.cpp's `mamba2` GGUFs name the tensors
//! as Nemotron-H's.
use super::base_from_hf;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, GatedNorm, HfConfig, LayerParts, Mamba2, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `Mamba2Config` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_HEADS: usize = 128;
const DEFAULT_HEAD_DIM: usize = 64;
const DEFAULT_GROUPS: usize = 8;
const DEFAULT_STATE: usize = 128;
const DEFAULT_CONV: usize = 4;
const DEFAULT_EXPAND: usize = 2;

/// The spec of a model of recurrent layers alone (Mamba-1, Mamba-2), before its layers':
/// every layer a mixer only, one placeholder attention head (no layer attends) and no FFN, the
/// norms' eps from `layer_norm_epsilon`.
pub(crate) fn recurrent_only_base(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    // The base reads llama's keys.
    let mut cfg = c.0.clone();
    if let Some(fields) = cfg.as_object_mut() {
        fields.insert("num_attention_heads".into(), 1.into());
        fields.insert("num_key_value_heads".into(), 1.into());
        fields.insert("head_dim".into(), 2.into());
        fields.insert("intermediate_size".into(), 1.into());
        fields.insert("hidden_act".into(), "silu".into());
        let eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
        fields.insert("rms_norm_eps".into(), f64::from(eps).into());
    }
    let mut spec = base_from_hf(&HfConfig(&cfg), arch)?;
    spec.layer_parts = vec![LayerParts::MixerOnly; spec.num_layers];
    Ok(spec)
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if !c.bool("rms_norm", true) {
        return Err(ModelError::Config(
            "config.json: Mamba-2 without its gated RMSNorm is not supported".into(),
        ));
    }
    if c.str("hidden_act").is_some_and(|a| a != "silu") {
        return Err(ModelError::Config(
            "config.json: Mamba-2's activation must be silu".into(),
        ));
    }
    let hidden = c.usize("hidden_size")?;
    let heads = c.opt_usize("num_heads")?.unwrap_or(DEFAULT_HEADS);
    let head_dim = c.opt_usize("head_dim")?.unwrap_or(DEFAULT_HEAD_DIM);
    let inner = c.opt_usize("expand")?.unwrap_or(DEFAULT_EXPAND) * hidden;
    if heads * head_dim != inner {
        return Err(ModelError::Config(format!(
            "Mamba-2: {heads} heads of {head_dim} for an inner width of {inner}"
        )));
    }
    let mut spec = recurrent_only_base(c, Arch::Mamba2)?;
    let layers = spec.num_layers;
    let groups = c.opt_usize("n_groups")?.unwrap_or(DEFAULT_GROUPS);
    if groups == 0 || !heads.is_multiple_of(groups) {
        return Err(ModelError::Config(format!(
            "Mamba-2: {heads} heads in {groups} groups"
        )));
    }
    spec.mamba = Some(Mamba2 {
        layers: vec![true; layers],
        heads,
        head_dim,
        groups,
        state: c.opt_usize("state_size")?.unwrap_or(DEFAULT_STATE),
        conv_kernel: c.opt_usize("conv_kernel")?.unwrap_or(DEFAULT_CONV),
        // transformers' norm is over the whole inner width, whatever the groups.
        norm_group: inner,
        dt_limit: super::nemotron_h::dt_limit(c)?,
        gated_norm: crate::spec::GatedNorm::AfterGate,
    });
    spec.validate()?;
    Ok(spec)
}

/// A `mamba2` GGUF (llama.cpp's): its `ssm.*` shapes read as the config.json they came from,
/// the gated norm per group of B/C as llama.cpp runs it (transformers' checkouts: over the
/// whole inner width; the same for one group).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let hidden = g.require_usize(&k("embedding_length"))?;
    let inner = g.require_usize(&k("ssm.inner_size"))?;
    let heads = g.require_usize(&k("ssm.time_step_rank"))?;
    let groups = g.require_usize(&k("ssm.group_count"))?;
    if hidden == 0 || heads == 0 || !inner.is_multiple_of(hidden) || !inner.is_multiple_of(heads) {
        return Err(ModelError::Config(format!(
            "{a} GGUF: an inner size of {inner} over {heads} heads, hidden {hidden}"
        )));
    }
    let vocab = super::vocab_from_gguf(g)?;
    let eps = g
        .get_f64(&k("attention.layer_norm_rms_epsilon"))
        .unwrap_or(f64::from(DEFAULT_EPS));
    let config = serde_json::json!({
        "hidden_size": hidden,
        "num_hidden_layers": g.require_usize(&k("block_count"))?,
        "vocab_size": vocab,
        "num_heads": heads,
        "head_dim": inner / heads,
        "expand": inner / hidden,
        "n_groups": groups,
        "state_size": g.require_usize(&k("ssm.state_size"))?,
        "conv_kernel": g.require_usize(&k("ssm.conv_kernel"))?,
        "layer_norm_epsilon": eps,
        "max_position_embeddings": g.get_usize(&k("context_length")).unwrap_or(1 << 20),
    });
    let mut spec = from_hf(&HfConfig(&config))?;
    if let Some(m) = spec.mamba.as_mut() {
        m.norm_group = inner / groups.max(1);
    }
    (spec.bos_token_id, spec.eos_token_ids) = super::special_tokens_from_gguf(g);
    spec.validate()?;
    Ok(spec)
}

/// The Mamba-2 layers `layers` flags of a GGUF with llama.cpp's `ssm.*` keys
/// (`time_step_rank`: the heads), the gated norm after the gate per group of
/// `inner / group_count` channels as llama.cpp runs it (Granite 4.0-H's, Falcon-H1's).
pub(crate) fn mamba2_from_gguf(g: &GgufFile, layers: Vec<bool>) -> Result<Mamba2> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let inner = g.require_usize(&k("ssm.inner_size"))?;
    let heads = g.require_usize(&k("ssm.time_step_rank"))?;
    let groups = g.require_usize(&k("ssm.group_count"))?;
    if heads == 0 || groups == 0 || !inner.is_multiple_of(heads) || !inner.is_multiple_of(groups) {
        return Err(ModelError::Config(format!(
            "{a}: an inner size of {inner} over {heads} heads in {groups} groups"
        )));
    }
    Ok(Mamba2 {
        layers,
        heads,
        head_dim: inner / heads,
        groups,
        state: g.require_usize(&k("ssm.state_size"))?,
        conv_kernel: g.require_usize(&k("ssm.conv_kernel"))?,
        norm_group: inner / groups,
        dt_limit: (0.0, f32::INFINITY),
        gated_norm: GatedNorm::AfterGate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mistralai/Mamba-Codestral-7B-v0.1's config.json (its shapes).
    #[test]
    fn codestral_mamba_is_mamba_2_layers_alone() {
        let c = serde_json::json!({
            "architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2",
            "chunk_size": 256, "conv_kernel": 4, "expand": 2, "head_dim": 64,
            "hidden_act": "silu", "hidden_size": 4096, "layer_norm_epsilon": 1e-5,
            "n_groups": 8, "num_heads": 128, "num_hidden_layers": 64, "rms_norm": true,
            "state_size": 128, "tie_word_embeddings": false, "use_bias": false,
            "use_conv_bias": true, "vocab_size": 32768
        });
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::Mamba2);
        assert_eq!(spec.cache_layers().total, 0);
        assert!(spec.layer_parts.iter().all(|&p| p == LayerParts::MixerOnly));
        let m = spec.mamba.as_ref().unwrap();
        assert_eq!((m.heads, m.head_dim, m.groups, m.state), (128, 64, 8, 128));
        assert_eq!(
            spec.sequence_state_bytes(),
            4 * 64 * (3 * (8192 + 2048) + 128 * 64 * 128)
        );
    }
}
