//! The router of a mixture of experts: from each token's router logits to the experts it runs
//! and their weights, as DeepSeek's routers choose (transformers' `DeepseekV3TopkRouter`, V2's
//! `MoEGate`). Pure host code: the logits are `tokens × experts` numbers, small beside the
//! experts' products, and the choice is a per-token sort no device op expresses.
use crate::error::{ModelError, Result};
use crate::spec::{ExpertScoring, GroupScore, MixtureOfExperts};

/// The tokens one expert runs (rows of the layer's input) and the weight of its output in each.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExpertRows {
    pub rows: Vec<u32>,
    pub weights: Vec<f32>,
}

/// Route `tokens` rows of `logits` (`[tokens, num_experts]`, row-major): for each expert, the
/// rows that chose it. `bias` is the per-expert correction added to the scores for the choice
/// only (DeepSeek-V3's `e_score_correction_bias`).
pub fn route(
    logits: &[f32],
    tokens: usize,
    bias: Option<&[f32]>,
    moe: &MixtureOfExperts,
) -> Result<Vec<ExpertRows>> {
    let n = moe.num_experts;
    if logits.len() != tokens * n || bias.is_some_and(|b| b.len() != n) {
        return Err(ModelError::Backend(format!(
            "router: {} logits for {tokens} tokens of {n} experts",
            logits.len()
        )));
    }
    let mut out = vec![ExpertRows::default(); n];
    if let ExpertScoring::SparseMixer { jitter_eps } = moe.scoring {
        for (row, logits) in logits.chunks_exact(n).enumerate() {
            for (e, w) in sparse_mixer_top2(logits, jitter_eps) {
                out[e].rows.push(row as u32);
                out[e].weights.push(w * moe.routed_scaling);
            }
        }
        return Ok(out);
    }
    let mut scores = vec![0f32; n];
    let mut choice = vec![0f32; n];
    for (row, logits) in logits.chunks_exact(n).enumerate() {
        score(logits, moe.scoring, &mut scores);
        for (i, c) in choice.iter_mut().enumerate() {
            *c = scores[i] + bias.map_or(0.0, |b| b[i]);
        }
        if moe.groups > 1 {
            mask_groups(&mut choice, moe);
        }
        let chosen = top_k(&choice, moe.experts_per_token);
        let mut weights: Vec<f32> = chosen.iter().map(|&e| scores[e]).collect();
        if moe.normalize {
            let sum: f32 = weights.iter().sum::<f32>() + 1e-20;
            weights.iter_mut().for_each(|w| *w /= sum);
        }
        for (&e, w) in chosen.iter().zip(weights) {
            out[e].rows.push(row as u32);
            out[e].weights.push(w * moe.routed_scaling);
        }
    }
    Ok(out)
}

/// Phi-3.5-MoE's sparsemixer at inference (transformers' `sparsemixer` outside training):
/// the best expert, weighted by its share of a softmax over the experts whose logits `s`
/// satisfy `(max - s) / max(|s|, max) <= 2 · jitter_eps`; then, with that expert left out, the
/// best of the rest, weighted by the same rule around it. The weights are not renormalized.
pub(crate) fn sparse_mixer_top2(logits: &[f32], jitter_eps: f32) -> [(usize, f32); 2] {
    let mut masked = logits.to_vec();
    let mut pick = || {
        let best = top_k(&masked, 1)[0];
        let max = masked[best];
        // The kept experts' softmax, over the logits not masked already (the first pick stays
        // out of the second's). Masked are those whose distance exceeds the bound, as torch
        // compares: a 0/0 distance (a best logit of exactly 0) keeps its expert.
        let kept = |e: usize| {
            let s = logits[e];
            let far = (max - s) / s.abs().max(max) > 2.0 * jitter_eps;
            masked[e] != f32::NEG_INFINITY && !far
        };
        let sum: f32 = (0..logits.len())
            .filter(|&e| kept(e))
            .map(|e| (logits[e] - max).exp())
            .sum();
        // No expert kept (logits that are not numbers): no weight rather than an infinite one.
        let weight = if sum > 0.0 { 1.0 / sum } else { 0.0 };
        masked[best] = f32::NEG_INFINITY;
        (best, weight)
    };
    let first = pick();
    [first, pick()]
}

fn score(logits: &[f32], scoring: ExpertScoring, out: &mut [f32]) {
    match scoring {
        ExpertScoring::Sigmoid => {
            for (o, &l) in out.iter_mut().zip(logits) {
                *o = sigmoid(l);
            }
        }
        // Sparsemixer's softmaxes are its own (`sparse_mixer_top2`, routed apart).
        ExpertScoring::Softmax | ExpertScoring::SparseMixer { .. } => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for (o, &l) in out.iter_mut().zip(logits) {
                *o = (l - max).exp();
                sum += *o;
            }
            out.iter_mut().for_each(|o| *o /= sum);
        }
    }
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Zero the choice scores of experts outside the `topk_groups` best groups (zero, not minus
/// infinity, as both DeepSeek routers do: a masked expert can still win over negative scores).
fn mask_groups(choice: &mut [f32], moe: &MixtureOfExperts) {
    let per_group = choice.len() / moe.groups;
    let group_scores: Vec<f32> = choice
        .chunks_exact(per_group)
        .map(|g| match moe.group_score {
            GroupScore::Max => g.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            GroupScore::TopTwoSum => top_k(g, 2.min(g.len())).iter().map(|&i| g[i]).sum(),
        })
        .collect();
    let kept = top_k(&group_scores, moe.topk_groups);
    for (gi, g) in choice.chunks_exact_mut(per_group).enumerate() {
        if !kept.contains(&gi) {
            g.iter_mut().for_each(|c| *c = 0.0);
        }
    }
}

/// Indices of the `k` largest values, largest first (the lower index first among equals; a
/// NaN counts as the smallest).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let key = |i: usize| {
        let v = values[i];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moe(groups: usize, topk_groups: usize) -> MixtureOfExperts {
        MixtureOfExperts {
            num_experts: 4,
            experts_per_token: 2,
            expert_intermediate_size: 8,
            shared_intermediate_size: 0,
            shared_gate: false,
            layers: vec![true],
            scoring: ExpertScoring::Sigmoid,
            groups,
            topk_groups,
            group_score: GroupScore::TopTwoSum,
            correction_bias: true,
            normalize: true,
            routed_scaling: 2.5,
            weights_scale_inputs: false,
        }
    }

    #[test]
    fn picks_the_best_scores_and_normalizes_their_weights() {
        let logits = [0.1, 2.0, -1.0, 1.0];
        let r = route(&logits, 1, None, &moe(1, 1)).unwrap();
        let (a, b) = (sigmoid(2.0), sigmoid(1.0));
        assert_eq!(r[1].rows, vec![0]);
        assert_eq!(r[3].rows, vec![0]);
        assert!(r[0].rows.is_empty() && r[2].rows.is_empty());
        assert!((r[1].weights[0] - 2.5 * a / (a + b)).abs() < 1e-6);
        assert!((r[3].weights[0] - 2.5 * b / (a + b)).abs() < 1e-6);
    }

    #[test]
    fn the_bias_steers_the_choice_but_not_the_weights() {
        let logits = [0.1, 2.0, -1.0, 1.0];
        let bias = [5.0, 0.0, 0.0, 0.0];
        let r = route(&logits, 1, Some(&bias), &moe(1, 1)).unwrap();
        assert_eq!((r[0].rows.len(), r[1].rows.len()), (1, 1));
        let (a, b) = (sigmoid(0.1), sigmoid(2.0));
        assert!((r[0].weights[0] - 2.5 * a / (a + b)).abs() < 1e-6);
    }

    #[test]
    fn routing_stays_inside_the_best_group() {
        // Groups {0, 1} and {2, 3}: the second group's top two sum higher although expert 0
        // is the best single expert.
        let logits = [3.0, -3.0, 1.5, 1.4];
        let r = route(&logits, 1, None, &moe(2, 1)).unwrap();
        assert_eq!(r[2].rows, vec![0]);
        assert_eq!(r[3].rows, vec![0]);
        assert!(r[0].rows.is_empty());
    }

    #[test]
    fn softmax_scores_without_normalizing_keep_their_scale() {
        let mut m = moe(1, 1);
        m.scoring = ExpertScoring::Softmax;
        m.normalize = false;
        m.routed_scaling = 1.0;
        m.experts_per_token = 1;
        let logits = [
            0.0,
            0.0,
            (2f32).ln(),
            0.0,
            /* second token */ 1.0,
            0.0,
            0.0,
            0.0,
        ];
        let r = route(&logits, 2, None, &m).unwrap();
        assert_eq!(r[2].rows, vec![0]);
        assert!((r[2].weights[0] - 0.4).abs() < 1e-6);
        assert_eq!(r[0].rows, vec![1]);
    }

    /// Sparsemixer as transformers computes it at inference: each pick weighted by a softmax
    /// over the experts near it only, the first pick out of the second's.
    #[test]
    fn sparse_mixer_weighs_each_pick_among_its_near_rivals() {
        // 2·jitter = 0.2: experts within 20% of the best (relative to the larger magnitude).
        let logits = [2.0f32, 1.9, 0.5, -1.0];
        let [(e1, w1), (e2, w2)] = sparse_mixer_top2(&logits, 0.1);
        // First: 2.0 with 1.9 beside it ((2 - 1.9) / 2 = 0.05); 0.5 is 0.75 away.
        assert_eq!(e1, 0);
        let want1 = 1.0 / (1.0 + (-0.1f32).exp());
        assert!((w1 - want1).abs() < 1e-6, "{w1} vs {want1}");
        // Second: 1.9 alone (0.5 is (1.9 - 0.5) / 1.9 away), its weight 1.
        assert_eq!((e2, w2), (1, 1.0));
        // A wide jitter opens the softmax to every expert but the first pick.
        let [_, (e2, w2)] = sparse_mixer_top2(&logits, 10.0);
        let sum: f32 = [1.9f32, 0.5, -1.0].iter().map(|s| (s - 1.9).exp()).sum();
        assert_eq!(e2, 1);
        assert!((w2 - 1.0 / sum).abs() < 1e-6);
        // A best logit of exactly 0 keeps itself (torch's 0/0 distance is not "far").
        let [(e1, w1), _] = sparse_mixer_top2(&[0.0, -5.0, -6.0], 0.01);
        assert_eq!((e1, w1), (0, 1.0));
        // Routed: both picks run, unnormalized.
        let mut m = moe(1, 1);
        m.scoring = ExpertScoring::SparseMixer { jitter_eps: 0.1 };
        m.experts_per_token = 2;
        m.routed_scaling = 1.0;
        let r = route(&logits, 1, None, &m).unwrap();
        assert_eq!((r[0].rows.clone(), r[1].rows.clone()), (vec![0], vec![0]));
        assert!((r[0].weights[0] + r[1].weights[0] - (want1 + 1.0)).abs() < 1e-6);
        assert!(r[2].rows.is_empty() && r[3].rows.is_empty());
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(route(&[0.0; 7], 2, None, &moe(1, 1)).is_err());
        assert!(route(&[0.0; 8], 2, Some(&[0.0; 3]), &moe(1, 1)).is_err());
    }
}
