//! The random pick from one row of logits: temperature, then top-k, min-p and top-p, then a
//! draw among the tokens kept, most likely first.
//!
//! Ranking the whole vocabulary to truncate its head cost ~5 ms a token for a 152k vocabulary
//! on the 2-core Xeon VM: a third of a 0.5B model's decode step, paid by every request that
//! samples (and once per row and sequence, so a batch of sampled requests paid it many times
//! a step). The tokens kept are a few hundred at most, so only those that can be among them
//! are ranked: the ones within a margin of the largest logit, the margin widened until the
//! kept set provably lies inside (the top-p mass reached, or the min-p floor inside the
//! margin). A flat distribution widens it to the whole vocabulary, which is the old cost.
//! top-k takes its k tokens with a bounded heap instead of a sort.
use super::candidates::Candidates;
use super::infill::{Infill, CANDIDATES};
use super::temperature::DynamicTemperature;
use candor_kernels::activation::softmax_weights;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// How a row's distribution is truncated before the draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truncation {
    /// > 0 (0 is the argmax, decided before a pick).
    pub temperature: f32,
    /// 0: no top-k.
    pub top_k: usize,
    /// 0: no min-p. A token stays while its probability is at least `min_p` times the
    /// largest one.
    pub min_p: f32,
    /// 1: no top-p. The shortest run of most likely tokens whose mass reaches `top_p` stays.
    pub top_p: f32,
    /// XTC ("exclude top choices") for this pick: when two or more of the kept tokens have at
    /// least this probability (among the kept), all of them but the least likely go, so the
    /// draw falls among less obvious but still likely tokens. None: not this pick.
    pub xtc_threshold: Option<f32>,
    /// llama.cpp's order: top-k, min-p, top-p and XTC read the probabilities at temperature
    /// 1, and the temperature shapes only the draw among the tokens they keep (its default
    /// chain ends with the temperature). false: transformers' and vLLM's order, the
    /// temperature first.
    pub temperature_last: bool,
    /// The temperature follows the candidates' entropy (`temperature.rs`): over the tokens
    /// the truncations keep when the temperature comes last, else over top-k's (the row's).
    pub dynamic: Option<DynamicTemperature>,
    /// llama.cpp's `min_keep`: min-p, top-p and XTC leave at least this many tokens that can
    /// be drawn (when the row, or top-k, has them). 0 and 1: no floor.
    pub min_keep: usize,
}

impl Truncation {
    /// A pick at `temperature` that truncates nothing (callers set what they want on top).
    pub(crate) fn only_temperature(temperature: f32) -> Self {
        Truncation {
            temperature,
            top_k: 0,
            min_p: 0.0,
            top_p: 1.0,
            xtc_threshold: None,
            temperature_last: false,
            dynamic: None,
            min_keep: 0,
        }
    }

    /// The temperature the truncations read the probabilities at: 1 when the temperature
    /// comes last, else the pick's own (dynamic: over top-k's candidates `head`, ranked by
    /// the caller, or the row's).
    fn first_temperature(&self, logits: &[f32], max: f32, head: Option<&[u32]>) -> f32 {
        let Some(dynamic) = self.dynamic.filter(|_| !self.temperature_last) else {
            return if self.temperature_last {
                1.0
            } else {
                self.temperature
            };
        };
        let at_one = |l: f32| {
            let ln_w = l - max;
            (ln_w.exp(), ln_w)
        };
        if let Some(head) = head {
            dynamic.temperature(
                self.temperature,
                head.iter().map(|&i| at_one(logits[i as usize])),
            )
        } else {
            let w = weights_of(logits, max, 1.0);
            let pairs = w.iter().zip(logits).map(|(&w, &l)| (w, l - max));
            dynamic.temperature(self.temperature, pairs)
        }
    }

    /// The temperature of the draw among candidates of weights `w` (at temperature 1, as the
    /// truncations saw them) when the temperature comes last.
    fn last_temperature(&self, w: &[f32]) -> f32 {
        match self.dynamic {
            Some(d) => d.temperature(self.temperature, w.iter().map(|&x| (x, x.ln()))),
            None => self.temperature,
        }
    }
}

/// A top-k larger than this ranks the whole vocabulary (a heap of it would cost more).
const HEAP_TOP_K: usize = 4096;

/// The margins tried, in units of `(logit - max) / temperature` (a token at margin m has
/// e^-m of the largest one's weight): e^-4 ≈ 2% first, which holds a confident row's
/// nucleus, then wider.
const MARGINS: [f32; 5] = [4.0, 8.0, 16.0, 32.0, 64.0];

/// The token drawn from `logits` under `t`, for a uniform `draw` in [0, 1).
///
/// Tokens rank by logit, ties by the lower id; top-k keeps the first k; the probabilities
/// are the softmax over those (the whole row without top-k); min-p keeps the tokens with at
/// least `min_p` times the first's probability (the first always); top-p keeps the shortest
/// prefix of those whose probabilities sum to `top_p` or more (all of them if none does);
/// the draw falls among the kept tokens in rank order, in proportion to their probabilities.
pub fn pick(logits: &[f32], t: &Truncation, draw: f32) -> u32 {
    candidates(logits, t).draw(draw)
}

/// The draw as `pick` makes it, with llama.cpp's infill sampler (`infill_candidates`).
pub fn pick_infill(logits: &[f32], t: &Truncation, infill: &Infill, draw: f32) -> u32 {
    infill_candidates(logits, t, infill).draw(draw)
}

/// What `pick` draws from: the tokens `t` keeps of `logits` and their weights.
pub fn candidates(logits: &[f32], t: &Truncation) -> Candidates {
    shaped(logits, t, None)
}

/// The candidates as `candidates` keeps them, then reshaped by llama.cpp's infill sampler:
/// top-k caps them at `infill::CANDIDATES` (the sampler compares every pair).
pub fn infill_candidates(logits: &[f32], t: &Truncation, infill: &Infill) -> Candidates {
    let cap = match t.top_k {
        0 => CANDIDATES,
        k => k.min(CANDIDATES),
    };
    let t = Truncation { top_k: cap, ..*t };
    shaped(logits, &t, Some(infill))
}

fn shaped(logits: &[f32], t: &Truncation, infill: Option<&Infill>) -> Candidates {
    let max = row_max(logits);
    if !max.is_finite() {
        // Nothing finite to weigh (every token masked, or an infinite logit).
        return Candidates::Only(candor_kernels::argmax(logits));
    }
    // The temperature's place matters only to what reads the probabilities; elsewhere the
    // temperature first costs one weighing of the row instead of two.
    let reads = t.min_p > 0.0
        || t.top_p < 1.0
        || t.xtc_threshold.is_some()
        || t.dynamic.is_some()
        || infill.is_some();
    let t = &Truncation {
        temperature_last: t.temperature_last && reads,
        ..*t
    };
    // Top-k's candidates, ranked once for the temperature and the draw.
    let top = (t.top_k > 0 && (t.top_k < logits.len() || infill.is_some()))
        .then(|| top_k(logits, t.top_k));
    let seen_at = t.first_temperature(logits, max, top.as_deref());
    if seen_at <= 0.0 {
        // A dynamic temperature that reached 0.
        return Candidates::Only(candor_kernels::argmax(logits));
    }
    let inv_t = 1.0 / seen_at;
    if let Some(ranked) = top {
        let head: Vec<f32> = ranked.iter().map(|&i| logits[i as usize]).collect();
        let weights = weights_of(&head, max, inv_t);
        let total = weights.iter().sum();
        let kept = kept_of(&weights, total, t, true).unwrap_or(1);
        if let Some(infill) = infill {
            let kept = kept.clamp(1, ranked.len());
            let (ids, p) = infill.reshape(&ranked[..kept], &weights[..kept]);
            return kept_candidates(&ids, &p, ids.len(), t);
        }
        return kept_candidates(&ranked, &weights, kept, t);
    }
    let weights = weights_of(logits, max, inv_t);
    let total = sum(&weights);
    if t.min_p <= 0.0 && t.top_p >= 1.0 {
        return whole_row(logits, max, weights, total, t);
    }
    for margin in MARGINS {
        let within = (-margin).exp();
        let (ranked, w) = ranked_within(logits, &weights, |x| x >= within);
        // The largest weighs 1, so min-p keeps the weights from `min_p` up: all of them are
        // candidates when that floor is within the margin.
        let holds_min_p = t.min_p > 0.0 && t.min_p >= within && w.len() >= t.min_keep;
        if let Some(kept) = kept_of(&w, total, t, holds_min_p) {
            return kept_candidates(&ranked, &w, kept, t);
        }
    }
    // Tokens that weigh nothing (underflowed, masked, NaN) can never be drawn.
    let (ranked, w) = ranked_within(logits, &weights, |x| x > 0.0);
    let kept = kept_of(&w, total, t, true).unwrap_or(1);
    kept_candidates(&ranked, &w, kept, t)
}

/// The candidates when nothing is truncated: the row as it lies, no ranking needed. `weights`
/// are at the temperature the truncations see (`Truncation::first_temperature`); XTC drops
/// its top choices by them; when the temperature comes last it then shapes the rest.
fn whole_row(
    logits: &[f32],
    max: f32,
    mut weights: Vec<f32>,
    mut total: f32,
    t: &Truncation,
) -> Candidates {
    let mut excluded = Excluded::default();
    if let Some(threshold) = t.xtc_threshold {
        excluded = exclude_top_choices(logits, &mut weights, total, threshold, t.min_keep);
        total -= excluded.weight;
    }
    let temperature = match (t.temperature_last, t.dynamic) {
        (false, _) => 1.0,
        (true, None) => t.temperature,
        (true, Some(d)) => {
            let pairs = weights.iter().zip(logits).map(|(&w, &l)| (w, l - max));
            d.temperature(t.temperature, pairs)
        }
    };
    if temperature != 1.0 {
        if temperature <= 0.0 {
            let only = excluded
                .left
                .unwrap_or_else(|| candor_kernels::argmax(logits));
            return Candidates::Only(only);
        }
        // Weighed from the largest left, so a cold pick does not underflow them all.
        let top = excluded.left.map_or(max, |i| logits[i as usize]);
        weights = weights_of(logits, top, 1.0 / temperature);
        for &i in &excluded.ids {
            weights[i as usize] = 0.0;
        }
        total = sum(&weights);
    }
    Candidates::Row { weights, total }
}

/// The ids whose weight `keep` takes, ranked, and their weights.
fn ranked_within(
    logits: &[f32],
    weights: &[f32],
    keep: impl Fn(f32) -> bool,
) -> (Vec<u32>, Vec<f32>) {
    let ranked = rank(logits, |i| keep(weights[i]));
    let w = ranked.iter().map(|&i| weights[i as usize]).collect();
    (ranked, w)
}

/// The softmax weights of `row` (masked tokens and NaN logits weigh exactly nothing).
pub(crate) fn weights_of(row: &[f32], max: f32, inv_t: f32) -> Vec<f32> {
    let mut w = vec![0.0; row.len()];
    softmax_weights(row, max, inv_t, &mut w);
    w
}

/// The half-widths of the bands `keep_typical` tries around the row's expected logit, in
/// units of `logit / temperature`.
const TYPICAL_BANDS: [f32; 8] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// Locally typical sampling (`typical_p`, as transformers, llama.cpp and TGI have it): only
/// the tokens whose surprise `-log p` is nearest the row's entropy stay, the fewest of them
/// whose probabilities reach `mass` and at least `min_keep` of them (ties with the last kept
/// stay too); the others' logits become -inf. The probabilities are the row's softmax at
/// `temperature`.
///
/// With `z = logit / temperature`, surprise minus entropy is `E[z] − z`: the kept tokens are
/// a band of logits around their mean. Bands are widened until the mass is inside, so only the
/// tokens near the mean are ranked (a whole 150k row took ~5 ms to rank).
pub fn keep_typical(logits: &mut [f32], temperature: f32, mass: f32, min_keep: usize) {
    let max = row_max(logits);
    if !max.is_finite() || mass >= 1.0 {
        return;
    }
    let inv_t = 1.0 / temperature;
    let w = weights_of(logits, max, inv_t);
    let total = sum(&w);
    // z relative to the largest (0 there); weightless tokens never count.
    let z = |i: usize| (logits[i] - max) * inv_t;
    let weighted: f64 = (0..logits.len())
        .filter(|&i| w[i] > 0.0)
        .map(|i| w[i] as f64 * z(i) as f64)
        .sum();
    let centre = (weighted / total as f64) as f32;
    let goal = mass * total;
    let deviation = |i: usize| (z(i) - centre).abs();
    let band_ids = |band: f32| -> Vec<u32> {
        (0..logits.len() as u32)
            .filter(|&i| w[i as usize] > 0.0 && deviation(i as usize) <= band)
            .collect()
    };
    // The narrowest band holding the mass (the whole row holds it all).
    let mut ids = TYPICAL_BANDS
        .iter()
        .map(|&band| band_ids(band))
        .find(|ids| {
            ids.len() >= min_keep && ids.iter().map(|&i| w[i as usize]).sum::<f32>() >= goal
        })
        .unwrap_or_else(|| band_ids(f32::INFINITY));
    if ids.is_empty() {
        return;
    }
    ids.sort_unstable_by(|&a, &b| {
        deviation(a as usize)
            .total_cmp(&deviation(b as usize))
            .then(a.cmp(&b))
    });
    let mut acc = 0.0;
    let crossing = ids
        .iter()
        .position(|&i| {
            acc += w[i as usize];
            acc >= goal
        })
        .map_or(ids.len(), |k| k + 1)
        .max(min_keep)
        .min(ids.len());
    // Ties with the last kept stay too.
    let last = deviation(ids[crossing - 1] as usize);
    let end = crossing
        + ids[crossing..]
            .iter()
            .take_while(|&&i| deviation(i as usize) <= last)
            .count();
    let mut keep = vec![false; logits.len()];
    for &i in &ids[..end] {
        keep[i as usize] = true;
    }
    for (l, keep) in logits.iter_mut().zip(keep) {
        if !keep {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// The largest value of a row, NaN passed over (the vectorized argmax's; a fold through
/// `f32::max` is a scalar chain).
pub(crate) fn row_max(logits: &[f32]) -> f32 {
    logits
        .get(candor_kernels::argmax(logits) as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY)
}

/// The sum of a row's weights, in 16 lanes (a sum in order waits on each addition).
pub(crate) fn sum(w: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = w.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// How many of the ranked candidates (weights `w`, probabilities `w / total`) stay: min-p's
/// prefix, cut where top-p's mass is reached, each at least `min_keep` long. When the mass is
/// not reached within them, the answer is min-p's prefix if the candidates hold every token
/// it could keep (`whole`), else unknown (`None`: there may be more candidates to rank; so
/// too when fewer than `min_keep` are at hand).
fn kept_of(w: &[f32], total: f32, t: &Truncation, whole: bool) -> Option<usize> {
    if !whole && w.len() < t.min_keep {
        return None;
    }
    let floor = t.min_keep.min(w.len());
    let by_min_p = min_p_kept(w, t.min_p).max(floor);
    match top_p_kept(&w[..by_min_p], total, t.top_p) {
        Some(n) => Some(n.max(floor)),
        None if whole => Some(by_min_p),
        None => None,
    }
}

/// How many of the ranked weights min-p keeps (at least one).
fn min_p_kept(w: &[f32], min_p: f32) -> usize {
    if min_p <= 0.0 || w.is_empty() {
        return w.len();
    }
    let floor = min_p * w[0];
    w.iter().take_while(|&&x| x >= floor).count().max(1)
}

/// The shortest prefix of the ranked weights whose mass reaches `top_p` of `total`, if it
/// does within them; every one of them without top-p.
fn top_p_kept(w: &[f32], total: f32, top_p: f32) -> Option<usize> {
    if top_p >= 1.0 {
        return None;
    }
    let goal = top_p * total;
    let mut acc = 0.0;
    for (i, &x) in w.iter().enumerate() {
        acc += x;
        if acc >= goal {
            return Some(i + 1);
        }
    }
    None
}

/// The first `kept` ranked tokens and their weights, past the top choices XTC excludes, at
/// the draw's temperature.
fn kept_candidates(ranked: &[u32], w: &[f32], kept: usize, t: &Truncation) -> Candidates {
    let kept = kept.clamp(1, ranked.len());
    let mut from = 0;
    if let Some(threshold) = t.xtc_threshold {
        let total: f32 = w[..kept].iter().sum();
        let top = w[..kept]
            .iter()
            .take_while(|&&x| x >= threshold * total)
            .count();
        // Two or more above the threshold: keep only the least likely of them, if that
        // leaves `min_keep` that can be drawn.
        let left = || w[top - 1..kept].iter().filter(|&&x| x > 0.0).count();
        if top >= 2 && left() >= t.min_keep {
            from = top - 1;
        }
    }
    let (ids, w) = (&ranked[from..kept], &w[from..kept]);
    let weights = if t.temperature_last {
        // The temperature comes last: on the kept tokens' weights at temperature 1, scaled
        // by the largest so a cold pick does not underflow them all (the infill sampler's
        // merges may have made a later one the largest).
        let temperature = t.last_temperature(w);
        let largest = (0..w.len()).fold(0, |best, i| if w[i] > w[best] { i } else { best });
        if temperature <= 0.0 {
            return Candidates::Only(ids[largest]);
        }
        let inv_t = 1.0 / temperature;
        w.iter().map(|&x| (x / w[largest]).powf(inv_t)).collect()
    } else {
        w.to_vec()
    };
    Candidates::Ranked {
        ids: ids.to_vec(),
        weights,
    }
}

/// The draw among `(token, weight)` pairs in their order, in proportion to their weights
/// (`total` their sum): the last that weighs anything when rounding leaves the draw past the
/// end, None when none does.
pub(crate) fn draw_among(
    pairs: impl Iterator<Item = (u32, f32)>,
    total: f32,
    draw: f32,
) -> Option<u32> {
    let mut r = draw * total;
    let mut last = None;
    for (token, x) in pairs.filter(|&(_, x)| x > 0.0) {
        r -= x;
        last = Some(token);
        if r <= 0.0 {
            break;
        }
    }
    last
}

/// The top choices XTC took out of a row.
#[derive(Debug, Default)]
struct Excluded {
    ids: Vec<u32>,
    /// Their weights' sum.
    weight: f32,
    /// The least likely top choice, which stays: the largest weight left.
    left: Option<u32>,
}

/// XTC over a whole row: when two or more tokens weigh at least `threshold` of `total`, all
/// but the least likely of them get weight 0, if that leaves `min_keep` that weigh anything.
fn exclude_top_choices(
    logits: &[f32],
    weights: &mut [f32],
    total: f32,
    threshold: f32,
    min_keep: usize,
) -> Excluded {
    let floor = threshold * total;
    let mut top: Vec<u32> = (0..weights.len() as u32)
        .filter(|&i| weights[i as usize] >= floor && weights[i as usize] > 0.0)
        .collect();
    if top.len() < 2 {
        return Excluded::default();
    }
    if min_keep > 1 {
        let weighing = weights.iter().filter(|&&x| x > 0.0).count();
        if weighing - (top.len() - 1) < min_keep {
            return Excluded::default();
        }
    }
    top.sort_unstable_by(|&a, &b| rank_order(logits, a, b));
    let left = top.pop();
    let weight = top
        .iter()
        .map(|&i| std::mem::take(&mut weights[i as usize]))
        .sum();
    Excluded {
        ids: top,
        weight,
        left,
    }
}

/// Rank order: larger logit first (NaN last), then lower id.
fn rank_order(logits: &[f32], a: u32, b: u32) -> Ordering {
    let key = |i: u32| {
        let l = logits[i as usize];
        if l.is_nan() {
            f32::NEG_INFINITY
        } else {
            l
        }
    };
    key(b).total_cmp(&key(a)).then(a.cmp(&b))
}

/// The ids for which `keep` holds, ranked.
fn rank(logits: &[f32], keep: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len())
        .filter(|&i| keep(i))
        .map(|i| i as u32)
        .collect();
    ids.sort_unstable_by(|&a, &b| rank_order(logits, a, b));
    ids
}

/// Every id, ranked.
pub(crate) fn ranked(logits: &[f32]) -> Vec<u32> {
    rank(logits, |_| true)
}

/// The `k` first-ranked ids, ranked (k < the row's length).
pub(crate) fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    if k > HEAP_TOP_K {
        let mut ids = rank(logits, |_| true);
        ids.truncate(k);
        return ids;
    }
    /// A heap entry whose greatest is the worst-ranked id kept so far.
    struct Kept<'a>(u32, &'a [f32]);
    impl PartialEq for Kept<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }
    impl Eq for Kept<'_> {}
    impl PartialOrd for Kept<'_> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Kept<'_> {
        fn cmp(&self, other: &Self) -> Ordering {
            rank_order(self.1, self.0, other.0)
        }
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    // The worst kept logit once the heap is full: most of a row falls below it, and that
    // comparison is all they cost (a NaN ranks last, so it is passed over too).
    let mut floor = f32::NEG_INFINITY;
    for (i, &l) in (0..).zip(logits) {
        if heap.len() < k {
            heap.push(Kept(i, logits));
        } else if l >= floor
            && heap
                .peek()
                .is_some_and(|worst| rank_order(logits, i, worst.0) == Ordering::Less)
        {
            heap.pop();
            heap.push(Kept(i, logits));
        } else {
            continue;
        }
        if heap.len() == k {
            floor = heap
                .peek()
                .map(|w| logits[w.0 as usize])
                .filter(|l| !l.is_nan())
                .unwrap_or(f32::NEG_INFINITY);
        }
    }
    heap.into_sorted_vec().into_iter().map(|e| e.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// llama.cpp's dynamic temperature, written plainly over probabilities in f64.
    fn dynamic_reference(base: f32, d: &DynamicTemperature, w: &[f64]) -> f64 {
        let w: Vec<f64> = w.iter().copied().filter(|&x| x > 0.0).collect();
        if w.len() <= 1 {
            return base as f64;
        }
        let total: f64 = w.iter().sum();
        let entropy: f64 = w.iter().map(|x| -(x / total) * (x / total).ln()).sum();
        let h = entropy / (w.len() as f64).ln();
        let lo = (base - d.range).max(0.0) as f64;
        lo + ((base + d.range) as f64 - lo) * h.powf(d.exponent as f64)
    }

    /// The definition, written plainly: rank everything, truncate, draw (in id order when
    /// nothing is truncated). The truncations read the probabilities at the temperature, or
    /// at 1 with the temperature last, which then shapes the kept tokens' draw.
    fn reference(logits: &[f32], t: &Truncation, draw: f32) -> u32 {
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        let truncates = (t.top_k > 0 && t.top_k < ids.len()) || t.min_p > 0.0 || t.top_p < 1.0;
        if truncates {
            ids.sort_by(|&a, &b| rank_order(logits, a, b));
        }
        if t.top_k > 0 && t.top_k < ids.len() {
            ids.truncate(t.top_k);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let at = |ids: &[u32], temperature: f64| -> Vec<f64> {
            ids.iter()
                .map(|&i| ((logits[i as usize] - max) as f64 / temperature).exp())
                .collect()
        };
        let seen_at = match (t.temperature_last, t.dynamic) {
            (true, _) => 1.0,
            (false, None) => t.temperature as f64,
            (false, Some(d)) => dynamic_reference(t.temperature, &d, &at(&ids, 1.0)),
        };
        if seen_at <= 0.0 {
            return candor_kernels::argmax(logits);
        }
        let w = at(&ids, seen_at);
        let total: f64 = w.iter().sum();
        // `min_keep` counts the tokens that can be drawn.
        let floor = t.min_keep.min(w.iter().filter(|&&x| x > 0.0).count());
        let mut kept = w.len();
        if t.min_p > 0.0 {
            kept = w
                .iter()
                .take_while(|&&x| x >= t.min_p as f64)
                .count()
                .max(1)
                .max(floor);
        }
        if t.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, x) in w[..kept].iter().enumerate() {
                acc += x / total;
                if acc >= t.top_p as f64 && i + 1 >= floor {
                    kept = i + 1;
                    break;
                }
            }
        }
        let (mut ids, mut w) = (ids[..kept].to_vec(), w[..kept].to_vec());
        if let Some(threshold) = t.xtc_threshold {
            // Every kept token at or above the threshold but the least likely goes.
            let total: f64 = w.iter().sum();
            let mut top: Vec<usize> = (0..w.len())
                .filter(|&i| w[i] > 0.0 && w[i] >= threshold as f64 * total)
                .collect();
            top.sort_by(|&a, &b| rank_order(logits, ids[a], ids[b]));
            let weighing = w.iter().filter(|&&x| x > 0.0).count();
            if top.len() >= 2 && weighing - (top.len() - 1) >= t.min_keep {
                for &i in &top[..top.len() - 1] {
                    w[i] = 0.0;
                }
            }
            let keep: Vec<bool> = w.iter().map(|&x| x > 0.0).collect();
            ids = ids
                .iter()
                .zip(&keep)
                .filter(|(_, &k)| k)
                .map(|(&i, _)| i)
                .collect();
            w.retain(|&x| x > 0.0);
        }
        if t.temperature_last {
            let temperature = match t.dynamic {
                Some(d) => dynamic_reference(t.temperature, &d, &w),
                None => t.temperature as f64,
            };
            let largest = w.iter().copied().fold(0.0, f64::max);
            if temperature <= 0.0 {
                let first = ids.iter().zip(&w).find(|(_, &x)| x == largest);
                return *first.map_or(&ids[0], |(id, _)| id);
            }
            w = w
                .iter()
                .map(|x| (x / largest).powf(1.0 / temperature))
                .collect();
        }
        let kept = ids.len();
        let kept_total: f64 = w.iter().sum();
        let mut r = draw as f64 * kept_total;
        for (&id, &x) in ids.iter().zip(&w) {
            r -= x;
            if x > 0.0 && r <= 0.0 {
                return id;
            }
        }
        // The last that weighs anything.
        let last = ids[..kept].iter().zip(&w).rev().find(|(_, &x)| x > 0.0);
        *last.map_or(&ids[0], |(id, _)| id)
    }

    /// A row as a model writes one: a few likely tokens over a long, low tail.
    fn row(rng: &mut ChaCha8Rng, vocab: usize, spread: f32) -> Vec<f32> {
        let mut logits: Vec<f32> = (0..vocab)
            .map(|_| rng.random::<f32>() * spread - spread)
            .collect();
        for _ in 0..rng.random_range(0..6) {
            let i = rng.random_range(0..vocab);
            logits[i] = rng.random::<f32>() * 4.0 + 2.0;
        }
        logits
    }

    /// Whether `draw` is far enough from the boundaries between the kept tokens' shares that
    /// sums in another order cannot move it across one.
    fn clear_of_boundaries(logits: &[f32], t: &Truncation, draw: f32) -> bool {
        [-1e-4f32, 1e-4].iter().all(|d| {
            reference(logits, t, (draw + d).clamp(0.0, 0.999_999)) == reference(logits, t, draw)
        })
    }

    #[test]
    fn picks_what_ranking_the_whole_row_picks() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut checked = 0;
        for case in 0..3000 {
            let vocab = [5, 40, 1000, 5000][case % 4];
            let spread = [1.0, 8.0, 30.0][case % 3];
            let mut logits = row(&mut rng, vocab, spread);
            if case % 5 == 0 {
                // A grammar's mask.
                for l in logits.iter_mut().skip(1).step_by(2) {
                    *l = f32::NEG_INFINITY;
                }
            }
            let t = Truncation {
                temperature: [0.3, 0.8, 1.0, 1.7][case % 4],
                top_k: [0, 0, 1, 3, 50, 6000][case % 6],
                min_p: [0.0, 0.0, 0.05, 0.3, 0.001][(case / 2) % 5],
                top_p: [1.0, 0.9, 0.5, 0.99][(case / 3) % 4],
                xtc_threshold: [None, Some(0.1), Some(0.02)][(case / 7) % 3],
                temperature_last: (case / 11) % 2 == 1,
                dynamic: [
                    None,
                    Some(DynamicTemperature {
                        range: 0.5,
                        exponent: 1.0,
                    }),
                    Some(DynamicTemperature {
                        range: 1.5,
                        exponent: 0.5,
                    }),
                ][(case / 13) % 3],
                min_keep: [0, 0, 1, 3, 40][(case / 17) % 5],
            };
            let draw = rng.random::<f32>();
            if !clear_of_boundaries(&logits, &t, draw) {
                continue;
            }
            checked += 1;
            assert_eq!(
                pick(&logits, &t, draw),
                reference(&logits, &t, draw),
                "case {case}: {t:?}, draw {draw}"
            );
        }
        assert!(checked > 2500, "{checked} cases clear of boundaries");
    }

    /// What `post_sampling_probs` reports is what the draw does: a draw inside a candidate's
    /// share of the cumulative probabilities (in the draw's order) falls on that candidate, and
    /// the shares make the whole.
    #[test]
    fn the_candidates_probabilities_are_the_draws() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for case in 0..400 {
            let logits = row(&mut rng, [40, 1000][case % 2], [2.0, 10.0][(case / 2) % 2]);
            let t = Truncation {
                temperature: [0.5, 1.0, 1.5][case % 3],
                top_k: [0, 5, 60][(case / 3) % 3],
                min_p: [0.0, 0.05][(case / 9) % 2],
                top_p: [1.0, 0.9][(case / 18) % 2],
                xtc_threshold: [None, Some(0.1)][(case / 36) % 2],
                temperature_last: (case / 72) % 2 == 1,
                dynamic: None,
                min_keep: 0,
            };
            let c = candidates(&logits, &t);
            let order: Vec<u32> = match &c {
                Candidates::Only(id) => vec![*id],
                Candidates::Ranked { ids, .. } => ids.clone(),
                Candidates::Row { weights, .. } => (0..weights.len() as u32)
                    .filter(|&i| weights[i as usize] > 0.0)
                    .collect(),
            };
            let total: f32 = order.iter().map(|&i| c.probability(i)).sum();
            assert!((total - 1.0).abs() < 1e-4, "case {case}: {total}");
            let mut below = 0.0f32;
            for &id in &order {
                let share = c.probability(id);
                if share > 1e-3 {
                    let middle = below + share / 2.0;
                    assert_eq!(c.draw(middle), id, "case {case}: {t:?}");
                    assert_eq!(pick(&logits, &t, middle), id, "case {case}");
                }
                below += share;
            }
        }
    }

    /// Rows whose nucleus reaches past the first margins, or past all of them.
    #[test]
    fn long_nuclei_widen_the_margin() {
        for (step, top_p) in [(0.01f32, 0.99f32), (0.003, 0.999), (0.05, 0.999_999_9)] {
            let logits: Vec<f32> = (0..3000).map(|i| 3.0 - i as f32 * step).collect();
            let t = Truncation {
                temperature: 1.0,
                top_k: 0,
                min_p: 0.0,
                top_p,
                xtc_threshold: None,
                temperature_last: false,
                dynamic: None,
                min_keep: 0,
            };
            for k in 0..50 {
                let draw = k as f32 / 50.0 + 0.0071;
                if clear_of_boundaries(&logits, &t, draw) {
                    assert_eq!(pick(&logits, &t, draw), reference(&logits, &t, draw));
                }
            }
        }
    }

    /// transformers' TypicalLogitsWarper, written plainly: every token ranked by how far its
    /// surprise is from the entropy.
    fn typical_reference(
        logits: &[f32],
        temperature: f32,
        mass: f32,
        min_keep: usize,
    ) -> Vec<bool> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: Vec<f64> = logits
            .iter()
            .map(|&l| ((l - max) / temperature) as f64)
            .collect();
        let lse = z.iter().map(|z| z.exp()).sum::<f64>().ln();
        let logp: Vec<f64> = z.iter().map(|z| z - lse).collect();
        let entropy: f64 = -logp.iter().map(|lp| lp * lp.exp()).sum::<f64>();
        let dev: Vec<f64> = logp.iter().map(|lp| (-lp - entropy).abs()).collect();
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        ids.sort_by(|&a, &b| dev[a].total_cmp(&dev[b]).then(a.cmp(&b)));
        let mut acc = 0.0;
        let mut crossing = ids.len() - 1;
        for (k, &i) in ids.iter().enumerate() {
            acc += logp[i].exp();
            if acc >= mass as f64 {
                crossing = k;
                break;
            }
        }
        let crossing = crossing.max(min_keep.saturating_sub(1)).min(ids.len() - 1);
        let limit = dev[ids[crossing]];
        dev.iter().map(|&d| d <= limit).collect()
    }

    #[test]
    fn typical_keeps_what_ranking_by_surprise_keeps() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let mut checked = 0;
        for case in 0..400 {
            let vocab = [30, 500, 3000][case % 3];
            let logits = row(&mut rng, vocab, [2.0, 10.0, 25.0][(case / 27) % 3]);
            let temperature = [0.5, 1.0, 1.3][(case / 3) % 3];
            let mass = [0.2, 0.6, 0.95][(case / 9) % 3];
            let min_keep = [0, 5][(case / 81) % 2];
            let want = typical_reference(&logits, temperature, mass, min_keep);
            // Leave out rows where f32 and f64 sums may disagree on the crossing token.
            let near = [mass - 2e-4, mass + 2e-4]
                .iter()
                .any(|&m| typical_reference(&logits, temperature, m, min_keep) != want);
            if near {
                continue;
            }
            checked += 1;
            let mut got = logits.clone();
            keep_typical(&mut got, temperature, mass, min_keep);
            let got: Vec<bool> = got.iter().map(|l| l.is_finite()).collect();
            assert_eq!(got, want, "case {case}");
        }
        assert!(checked > 300, "{checked}");
    }

    /// A flat row's nucleus is most of the vocabulary.
    #[test]
    fn a_flat_row_keeps_its_whole_nucleus() {
        let logits = vec![0.5f32; 3000];
        let t = Truncation {
            temperature: 1.0,
            top_k: 0,
            min_p: 0.0,
            top_p: 0.95,
            xtc_threshold: None,
            temperature_last: false,
            dynamic: None,
            min_keep: 0,
        };
        let picked: std::collections::HashSet<u32> = (0..200)
            .map(|i| pick(&logits, &t, i as f32 / 200.0))
            .collect();
        assert!(picked.len() > 150, "{} distinct", picked.len());
        assert!(picked.iter().all(|&p| p < 2850), "past the 95% nucleus");
    }

    #[test]
    fn broken_and_masked_rows_do_not_panic() {
        let t = Truncation {
            temperature: 0.7,
            top_k: 0,
            min_p: 0.1,
            top_p: 0.9,
            xtc_threshold: None,
            temperature_last: false,
            dynamic: None,
            min_keep: 0,
        };
        assert_eq!(
            pick(&[f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY], &t, 0.5),
            1
        );
        assert_eq!(pick(&[f32::NAN, 1.0, 0.5], &t, 0.0), 1);
        let top_2 = Truncation { top_k: 2, ..t };
        assert_eq!(pick(&[f32::NAN, f32::NAN, 0.5, 3.0, 1.0], &top_2, 0.0), 3);
        let all_masked = [f32::NEG_INFINITY; 4];
        assert!(pick(&all_masked, &t, 0.3) < 4);
        assert_eq!(pick(&[0.0, f32::INFINITY, 1.0], &t, 0.9), 1);
        let plain = Truncation {
            top_p: 1.0,
            min_p: 0.0,
            ..t
        };
        assert_eq!(pick(&[f32::NAN, f32::NEG_INFINITY, 2.0], &plain, 0.99), 2);
    }
}
