//! Nemotron-H (`nemotron_h`: Nemotron-H-4B/8B/47B/56B, Nemotron Nano 2, Nemotron 3 Nano): each
//! layer is one mixer after one RMSNorm, `x + mixer(norm(x))`: Mamba-2 (B and C in groups, the
//! gated norm per group), attention without positions, a squared-ReLU MLP, or squared-ReLU
//! experts (DeepSeek-V3's sigmoid routing with a correction bias) beside a shared one. The
//! layer plan is a string in checkouts (`hybrid_override_pattern`: `M`, `*`, `-`, `E`), a list
//! in transformers 5's saves (`layers_block_type`), and per-layer head and FFN counts in
//! llama.cpp's GGUFs (`nemotron_h`, `nemotron_h_moe`).
use super::experts::{sigmoid_experts, ExpertCounts};
use super::{base_from_gguf, base_from_hf, layers_without_attention};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, LayerParts, Mamba2, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

/// transformers' `NemotronHConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_MAMBA_HEADS: usize = 128;
const DEFAULT_MAMBA_HEAD_DIM: usize = 64;
const DEFAULT_GROUPS: usize = 8;
const DEFAULT_STATE: usize = 128;
const DEFAULT_CONV: usize = 4;

/// What one Nemotron-H layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Mamba,
    Attention,
    Mlp,
    Experts,
}

impl Block {
    fn parts(self) -> LayerParts {
        match self {
            Block::Mamba | Block::Attention => LayerParts::MixerOnly,
            Block::Mlp | Block::Experts => LayerParts::FfnOnly,
        }
    }
}

/// The layer plan of a config.json: `hybrid_override_pattern` or `layers_block_type`, in
/// either's names (transformers 5 renamed `mamba` and `attention`).
fn layer_plan(c: &HfConfig) -> Result<Vec<Block>> {
    let unknown = |t: &str| ModelError::Config(format!("unknown Nemotron-H layer type `{t}`"));
    if let Some(pattern) = c.str("hybrid_override_pattern") {
        return pattern
            .chars()
            .map(|ch| match ch {
                'M' => Ok(Block::Mamba),
                '*' => Ok(Block::Attention),
                '-' => Ok(Block::Mlp),
                'E' => Ok(Block::Experts),
                other => Err(unknown(&other.to_string())),
            })
            .collect();
    }
    let types =
        c.0.get("layers_block_type")
            .and_then(|v| v.as_array())
            .ok_or_else(|| {
                ModelError::Config(
                "config.json: Nemotron-H without `hybrid_override_pattern` or `layers_block_type`"
                    .into(),
            )
            })?;
    types
        .iter()
        .map(|t| match t.as_str() {
            Some("mamba" | "linear_attention") => Ok(Block::Mamba),
            Some("attention" | "full_attention") => Ok(Block::Attention),
            Some("mlp") => Ok(Block::Mlp),
            Some("moe") => Ok(Block::Experts),
            _ => Err(unknown(&t.to_string())),
        })
        .collect()
}

/// The spec's layer parts, positions and Mamba-2 mask from a plan.
fn apply_plan(spec: &mut ModelSpec, plan: &[Block]) {
    spec.layer_parts = plan.iter().map(|b| b.parts()).collect();
    // Attention without positions: the Mamba-2 layers order the tokens.
    spec.unrotated_layers = vec![true; plan.len()];
    spec.gated_ffn = false;
}

/// Mamba-2's dimensions, the gated norm per group of B/C (transformers' and llama.cpp's alike).
fn mamba(layers: Vec<bool>, (heads, head_dim): (usize, usize), groups: usize) -> Result<Mamba2> {
    let inner = heads * head_dim;
    if heads == 0 || groups == 0 || !heads.is_multiple_of(groups) {
        return Err(ModelError::Config(format!(
            "Nemotron-H: {heads} Mamba-2 heads in {groups} groups"
        )));
    }
    Ok(Mamba2 {
        layers,
        heads,
        head_dim,
        groups,
        state: DEFAULT_STATE,
        conv_kernel: DEFAULT_CONV,
        norm_group: inner / groups,
        dt_limit: (0.0, f32::INFINITY),
        gated_norm: crate::spec::GatedNorm::AfterGate,
    })
}

/// The range of Mamba-2's steps: `time_step_limit` (or its older name `mamba_dt_limit`), a
/// pair of floats whose upper end is usually Python's `Infinity`.
pub(crate) fn dt_limit(c: &HfConfig) -> Result<(f32, f32)> {
    let Some(pair) =
        c.0.get("time_step_limit")
            .or_else(|| c.0.get("mamba_dt_limit"))
    else {
        return Ok((0.0, f32::INFINITY));
    };
    let ends: Option<Vec<f64>> = pair
        .as_array()
        .map(|ends| ends.iter().map(crate::config_json::float).collect())
        .unwrap_or(None);
    match ends.as_deref() {
        Some(&[lo, hi]) if lo <= hi => Ok((lo as f32, hi as f32)),
        _ => Err(ModelError::Config(format!(
            "config.json: `time_step_limit` must be two ordered floats, got {pair}"
        ))),
    }
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let plan = layer_plan(c)?;
    if let Some(latent) = c.opt_usize("moe_latent_size")? {
        return Err(ModelError::Config(format!(
            "config.json: Nemotron-H experts in a latent space of {latent} are not supported"
        )));
    }
    if c.str("mamba_hidden_act").is_some_and(|a| a != "silu") {
        return Err(ModelError::Config(
            "config.json: Nemotron-H's Mamba-2 activation must be silu".into(),
        ));
    }
    // The base reads llama's keys: the plan's length, the MLP's activation, the norms' eps and
    // the attention's head width under their names (layer types, not windows, out of its way).
    let mut cfg = c.0.clone();
    if let Some(fields) = cfg.as_object_mut() {
        fields.remove("layer_types");
        fields.insert("num_hidden_layers".into(), plan.len().into());
        let act = c.str("mlp_hidden_act").unwrap_or("relu2").to_string();
        fields.insert("hidden_act".into(), act.into());
        let eps = c.f32("layer_norm_epsilon", DEFAULT_EPS)?;
        fields.insert("rms_norm_eps".into(), f64::from(eps).into());
        if let (None, Some(d)) = (c.opt_usize("head_dim")?, c.opt_usize("attention_head_dim")?) {
            fields.insert("head_dim".into(), d.into());
        }
    }
    let cfg = HfConfig(&cfg);
    let mut spec = base_from_hf(&cfg, Arch::NemotronH)?;
    apply_plan(&mut spec, &plan);
    let key = |names: &[&str], default: usize| -> Result<usize> {
        for name in names {
            if let Some(v) = c.opt_usize(name)? {
                return Ok(v);
            }
        }
        Ok(default)
    };
    let heads = key(&["mamba_num_heads", "mamba_n_heads"], DEFAULT_MAMBA_HEADS)?;
    let head_dim = key(&["mamba_head_dim", "mamba_d_head"], DEFAULT_MAMBA_HEAD_DIM)?;
    let groups = key(&["n_groups", "mamba_n_groups"], DEFAULT_GROUPS)?;
    let layers = plan.iter().map(|&b| b == Block::Mamba).collect();
    spec.mamba = Some(Mamba2 {
        state: key(&["ssm_state_size", "mamba_d_state"], DEFAULT_STATE)?,
        conv_kernel: key(&["conv_kernel", "mamba_d_conv"], DEFAULT_CONV)?,
        dt_limit: dt_limit(c)?,
        gated_norm: crate::spec::GatedNorm::AfterGate,
        ..mamba(layers, (heads, head_dim), groups)?
    });
    if plan.contains(&Block::Experts) {
        let width = c.usize("moe_intermediate_size")?;
        let groups = c.opt_usize("n_group")?.unwrap_or(1);
        let counts = ExpertCounts {
            experts: c.usize("n_routed_experts")?,
            per_token: c.usize("num_experts_per_tok")?,
            width,
            shared_width: c.opt_usize("n_shared_experts")?.unwrap_or(1)
                * c.opt_usize("moe_shared_expert_intermediate_size")?
                    .unwrap_or(width),
            groups,
            topk_groups: c.opt_usize("topk_group")?.unwrap_or(groups),
            normalize: c.bool("norm_topk_prob", true),
            scaling: c.f32("routed_scaling_factor", 1.0)?,
        };
        let layers = plan.iter().map(|&b| b == Block::Experts).collect();
        spec.experts = Some(sigmoid_experts(layers, counts));
    }
    spec.validate()?;
    Ok(spec)
}

/// A `nemotron_h` / `nemotron_h_moe` GGUF: a layer without KV heads or FFN width is Mamba-2's,
/// one with KV heads attends, the rest are FFNs (experts where the layer has a router).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = base_from_gguf(g, Arch::NemotronH, RopeStyle::Neox)?;
    // llama.cpp's graph squares the ReLU of every MLP and expert.
    spec.activation = Activation::Relu2;
    if let Some(eps) = g.get_f64(&k("attention.layer_norm_epsilon")) {
        if g.get_f64(&k("attention.layer_norm_rms_epsilon")).is_none() {
            spec.rms_eps = eps as f32;
        }
    }
    let without_attention = layers_without_attention(g, &mut spec)?;
    let ffn = g
        .get_usize_array(&k("feed_forward_length"))
        .ok_or_else(|| ModelError::Config(format!("{a} GGUF: no per-layer feed_forward_length")))?;
    if ffn.len() != spec.num_layers {
        return Err(ModelError::Config(format!(
            "{a} GGUF: {} FFN widths for {} layers",
            ffn.len(),
            spec.num_layers
        )));
    }
    let plan: Vec<Block> = (0..spec.num_layers)
        .map(|l| match (without_attention[l], ffn[l]) {
            (false, _) => Block::Attention,
            (true, 0) => Block::Mamba,
            _ if g.contains(&layer(l, "ffn_gate_inp.weight")) => Block::Experts,
            _ => Block::Mlp,
        })
        .collect();
    if let Some(width) = ffn.iter().zip(&plan).find(|(_, &b)| b == Block::Mlp) {
        spec.intermediate_size = *width.0;
    }
    apply_plan(&mut spec, &plan);
    let inner = g.require_usize(&k("ssm.inner_size"))?;
    let heads = g.require_usize(&k("ssm.time_step_rank"))?;
    if heads == 0 || !inner.is_multiple_of(heads) {
        return Err(ModelError::Config(format!(
            "{a}: an inner size of {inner} over {heads} heads"
        )));
    }
    let layers = plan.iter().map(|&b| b == Block::Mamba).collect();
    spec.mamba = Some(Mamba2 {
        state: g.require_usize(&k("ssm.state_size"))?,
        conv_kernel: g.require_usize(&k("ssm.conv_kernel"))?,
        ..mamba(
            layers,
            (heads, inner / heads),
            g.require_usize(&k("ssm.group_count"))?,
        )?
    });
    if plan.contains(&Block::Experts) {
        if g.get_usize(&k("moe_latent_size")).is_some_and(|n| n > 0) {
            return Err(ModelError::Config(format!(
                "{a} GGUF: experts in a latent space are not supported"
            )));
        }
        let width = g.require_usize(&k("expert_feed_forward_length"))?;
        let groups = g.get_usize(&k("expert_group_count")).unwrap_or(1).max(1);
        let counts = ExpertCounts {
            experts: g.require_usize(&k("expert_count"))?,
            per_token: g.require_usize(&k("expert_used_count"))?,
            width,
            shared_width: g
                .get_usize(&k("expert_shared_feed_forward_length"))
                .unwrap_or(width)
                * g.get_usize(&k("expert_shared_count")).unwrap_or(1),
            groups,
            topk_groups: g.get_usize(&k("expert_group_used_count")).unwrap_or(groups),
            normalize: g.get_bool(&k("expert_weights_norm")).unwrap_or(true),
            scaling: g.get_f64(&k("expert_weights_scale")).unwrap_or(1.0) as f32,
        };
        let layers = plan.iter().map(|&b| b == Block::Experts).collect();
        spec.experts = Some(sigmoid_experts(layers, counts));
    }
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nvidia/NVIDIA-Nemotron-Nano-9B-v2's config.json (its shapes and plan).
    fn nano_v2_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h",
            "attention_head_dim": 128, "chunk_size": 128, "conv_kernel": 4, "expand": 2,
            "hidden_size": 4480, "hybrid_override_pattern":
                "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
            "intermediate_size": 15680, "layer_norm_epsilon": 1e-05, "mamba_head_dim": 80,
            "mamba_hidden_act": "silu", "mamba_num_heads": 128, "max_position_embeddings": 131072,
            "mlp_hidden_act": "relu2", "n_groups": 8, "num_attention_heads": 40,
            "num_hidden_layers": 56, "num_key_value_heads": 8, "ssm_state_size": 128,
            "tie_word_embeddings": false, "use_bias": false, "use_conv_bias": true,
            "vocab_size": 131072, "bos_token_id": 1, "eos_token_id": 12
        })
    }

    #[test]
    fn nano_v2_layers_are_one_mixer_each() {
        let spec = crate::arch::spec_from_hf(&nano_v2_config()).unwrap();
        assert_eq!(spec.arch, Arch::NemotronH);
        assert_eq!(
            (spec.num_layers, spec.head_dim, spec.num_kv_heads),
            (56, 128, 8)
        );
        let m = spec.mamba.as_ref().unwrap();
        assert_eq!((m.heads, m.head_dim, m.groups, m.state), (128, 80, 8, 128));
        assert_eq!(m.norm_group, 128 * 80 / 8);
        assert_eq!(m.layers.iter().filter(|&&x| x).count(), 27);
        assert_eq!(spec.layer_parts[0], LayerParts::MixerOnly);
        assert_eq!(spec.layer_parts[1], LayerParts::FfnOnly);
        // Four attention layers take cache rows; Mamba-2 and MLP layers none.
        assert_eq!(spec.cache_layers().total, 4);
        assert!(spec.unrotated_layers.iter().all(|&u| u) && !spec.gated_ffn);
        assert_eq!(spec.activation, Activation::Relu2);
        assert!(spec.experts.is_none());
        assert_eq!(m.dt_limit, (0.0, f32::INFINITY));
        let mut c = nano_v2_config();
        c["time_step_limit"] = serde_json::json!([0.001, "Infinity"]);
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.mamba.unwrap().dt_limit, (0.001, f32::INFINITY));
        c["time_step_limit"] = serde_json::json!([0.1, 0.01]);
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("time_step_limit"), "{e}");
    }

    #[test]
    fn nemotron_3_nano_routes_like_deepseek_v3_and_refuses_latent_experts() {
        let mut c = nano_v2_config();
        c["hybrid_override_pattern"] = "MEM*EME".into();
        c["num_hidden_layers"] = 7.into();
        for (k, v) in [
            ("n_routed_experts", 128),
            ("num_experts_per_tok", 6),
            ("moe_intermediate_size", 1856),
            ("moe_shared_expert_intermediate_size", 3712),
            ("n_shared_experts", 1),
            ("n_group", 1),
            ("topk_group", 1),
        ] {
            c[k] = v.into();
        }
        c["routed_scaling_factor"] = 2.5.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!(moe.layers, [false, true, false, false, true, false, true]);
        assert_eq!((moe.num_experts, moe.experts_per_token), (128, 6));
        assert_eq!(
            (moe.expert_intermediate_size, moe.shared_intermediate_size),
            (1856, 3712)
        );
        assert!(moe.correction_bias && moe.normalize);
        assert_eq!(
            (moe.scoring, moe.routed_scaling),
            (crate::spec::ExpertScoring::Sigmoid, 2.5)
        );
        c["moe_latent_size"] = 1024.into();
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("latent"), "{e}");
    }

    #[test]
    fn transformers_5_lists_read_as_the_pattern() {
        let mut c = nano_v2_config();
        c.as_object_mut().unwrap().remove("hybrid_override_pattern");
        c["layers_block_type"] = serde_json::json!(["linear_attention", "mlp", "full_attention"]);
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.num_layers, 3);
        assert_eq!(
            spec.layer_parts,
            [
                LayerParts::MixerOnly,
                LayerParts::FfnOnly,
                LayerParts::MixerOnly
            ]
        );
        c["layers_block_type"] = serde_json::json!(["mamba", "sliding"]);
        let e = crate::arch::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("sliding"), "{e}");
    }
}
