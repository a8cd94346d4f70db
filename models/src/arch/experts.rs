//! The plain mixture of experts of Mixtral and Qwen3-MoE (and llama.cpp GGUFs of either): a
//! softmax over the router's logits, the top k experts, their weights renormalized to sum to 1
//! where the model says so, no shared experts, no groups.
use crate::error::{ModelError, Result};
use crate::spec::{ExpertScoring, GroupScore, HfConfig, MixtureOfExperts};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

/// `experts_per_token` of `num_experts` experts of intermediate size `intermediate`, in the
/// layers `layers` flags.
pub fn softmax_top_k(
    num_experts: usize,
    experts_per_token: usize,
    intermediate: usize,
    normalize: bool,
    layers: Vec<bool>,
) -> MixtureOfExperts {
    MixtureOfExperts {
        num_experts,
        experts_per_token,
        expert_intermediate_size: intermediate,
        shared_intermediate_size: 0,
        shared_gate: false,
        layers,
        scoring: ExpertScoring::Softmax,
        groups: 1,
        topk_groups: 1,
        group_score: GroupScore::Max,
        correction_bias: false,
        normalize,
        routed_scaling: 1.0,
        weights_scale_inputs: false,
    }
}

/// Qwen2-MoE's experts (`qwen2_moe`: Qwen1.5-MoE, Qwen2-57B-A14B): Qwen3-MoE's, plus a shared
/// expert behind a sigmoid gate.
pub fn qwen2_moe_from_hf(c: &HfConfig, num_layers: usize) -> Result<MixtureOfExperts> {
    let mut m = qwen3_moe_from_hf(c, num_layers)?;
    m.shared_intermediate_size = c.usize("shared_expert_intermediate_size")?;
    m.shared_gate = m.shared_intermediate_size > 0;
    Ok(m)
}

/// Qwen3-MoE's experts (`qwen3_moe`): in the layers `decoder_sparse_step` selects that
/// `mlp_only_layers` does not list.
pub fn qwen3_moe_from_hf(c: &HfConfig, num_layers: usize) -> Result<MixtureOfExperts> {
    let step = c.opt_usize("decoder_sparse_step")?.unwrap_or(1).max(1);
    let dense: Vec<usize> = match c.0.get("mlp_only_layers") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
            .ok_or_else(|| {
                ModelError::Config("config.json: `mlp_only_layers` must list layers".into())
            })?,
    };
    let num_experts = c.usize("num_experts")?;
    let layers = (0..num_layers)
        .map(|l| !dense.contains(&l) && num_experts > 0 && (l + 1) % step == 0)
        .collect();
    Ok(softmax_top_k(
        num_experts,
        c.usize("num_experts_per_tok")?,
        c.usize("moe_intermediate_size")?,
        c.bool("norm_topk_prob", false),
        layers,
    ))
}

/// Mixtral's experts: every layer, of the config's `intermediate_size`, weights renormalized.
pub fn mixtral_from_hf(c: &HfConfig, num_layers: usize) -> Result<MixtureOfExperts> {
    Ok(softmax_top_k(
        c.usize("num_local_experts")?,
        c.usize("num_experts_per_tok")?,
        c.usize("intermediate_size")?,
        true,
        vec![true; num_layers],
    ))
}

/// The experts a GGUF's `{arch}.expert_count` announces (None without), in the layers that
/// have a router (`ffn_gate_inp`): Mixtral converted as `llama` (experts of
/// `feed_forward_length`), `qwen3moe` and `qwen2moe` (of `expert_feed_forward_length`; the
/// latter's gated shared expert of `expert_shared_feed_forward_length`).
pub fn from_gguf(g: &GgufFile, num_layers: usize) -> Result<Option<MixtureOfExperts>> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let Some(num_experts) = g.get_usize(&k("expert_count")).filter(|&n| n > 0) else {
        return Ok(None);
    };
    let intermediate = match g.get_usize(&k("expert_feed_forward_length")) {
        Some(f) => f,
        None => g.require_usize(&k("feed_forward_length"))?,
    };
    let layers: Vec<bool> = (0..num_layers)
        .map(|l| g.contains(&layer(l, "ffn_gate_inp.weight")))
        .collect();
    // llama.cpp renormalizes Mixtral's and Qwen3-MoE's weights, not Qwen2-MoE's, OLMoE's or
    // Jamba's.
    let normalize = !matches!(a.as_str(), "qwen2moe" | "olmoe" | "jamba");
    let mut m = softmax_top_k(
        num_experts,
        g.require_usize(&k("expert_used_count"))?,
        intermediate,
        normalize,
        layers,
    );
    // The shared experts' width where the file says it, else their count times an expert's
    // (ERNIE 4.5's converter writes both; a count alone is DeepSeek's convention).
    let shared = g
        .get_usize(&k("expert_shared_feed_forward_length"))
        .or_else(|| {
            g.get_usize(&k("expert_shared_count"))
                .filter(|&n| n > 0)
                .map(|n| n * intermediate)
        });
    if let Some(shared) = shared {
        m.shared_intermediate_size = shared;
        m.shared_gate = (0..num_layers).any(|l| g.contains(&layer(l, "ffn_gate_inp_shexp.weight")));
    }
    Ok(Some(m))
}

/// `from_gguf` for an architecture whose every file has experts: one without
/// `{arch}.expert_count` is refused.
pub fn required_from_gguf(g: &GgufFile, num_layers: usize) -> Result<MixtureOfExperts> {
    let a = g.architecture()?;
    from_gguf(g, num_layers)?
        .ok_or_else(|| ModelError::Config(format!("{a} GGUF without `{a}.expert_count`")))
}

/// DeepSeek-V3's routing as Nemotron-H's and Kimi Linear's experts take it: sigmoid scores
/// corrected by a bias for the choice, groups scored by their two best, the chosen weights
/// normalized or not and scaled; a shared expert beside them.
pub(crate) fn sigmoid_experts(layers: Vec<bool>, counts: ExpertCounts) -> MixtureOfExperts {
    MixtureOfExperts {
        num_experts: counts.experts,
        experts_per_token: counts.per_token,
        expert_intermediate_size: counts.width,
        shared_intermediate_size: counts.shared_width,
        shared_gate: false,
        layers,
        scoring: ExpertScoring::Sigmoid,
        groups: counts.groups,
        topk_groups: counts.topk_groups,
        group_score: GroupScore::TopTwoSum,
        correction_bias: true,
        normalize: counts.normalize,
        routed_scaling: counts.scaling,
        weights_scale_inputs: false,
    }
}

/// The numbers of such a mixture of experts.
pub(crate) struct ExpertCounts {
    pub experts: usize,
    pub per_token: usize,
    pub width: usize,
    pub shared_width: usize,
    pub groups: usize,
    pub topk_groups: usize,
    pub normalize: bool,
    pub scaling: f32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qwen3_moe_layers_follow_the_step_and_the_dense_list() {
        let cfg = json!({"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                         "decoder_sparse_step": 2, "mlp_only_layers": [3], "norm_topk_prob": true});
        let m = qwen3_moe_from_hf(&HfConfig(&cfg), 6).unwrap();
        assert_eq!(m.layers, vec![false, true, false, false, false, true]);
        assert!(m.normalize);
        assert_eq!(m.scoring, ExpertScoring::Softmax);
    }
}
