//! Speculative decoding by prompt lookup: draft the next tokens of a sequence by finding its
//! last few tokens earlier in the sequence (prompt or answer) and copying what followed them
//! there. Answers that repeat their input (code edits, rewrites, quotes, JSON that echoes the
//! question) then advance several tokens per forward pass: the pass runs the drafts as a short
//! prefill chunk and the sampler checks them row by row.
//!
//! Checking is exact for any sampling: row `i` is sampled as it would be without drafts (same
//! history, same random draw), and the draft token is kept only when the sample equals it. For a
//! draft that is a single token with certainty, that is the speculative-sampling rule itself
//! (keep with probability p(d), else a sample of p without d), and it consumes one random draw
//! per emitted token, so a seeded request emits the same tokens with and without drafts (up to
//! the kernels' rounding of a multi-row pass, as for any batch).
//!
//! Written here rather than taken from a crate: the lookup is a dozen lines over the token ids
//! the engine already holds, and no crate does prompt lookup over a caller's token buffer.

/// Longest suffix compared: a longer match picks the more specific of several occurrences.
const MAX_NGRAM: usize = 8;
/// Shortest suffix that may propose a draft. Single-token matches are everywhere in prose and
/// their continuations mostly wrong; a wrong draft costs a row of compute.
const MIN_NGRAM: usize = 2;

/// `limit` tokens to follow an answer (`generated` so far) from a prediction of it (OpenAI's
/// Predicted Outputs: the file before an edit, say): while the answer is the prediction's
/// start, the prediction's next tokens; past a difference, what follows the occurrence of the
/// answer's longest suffix (`MIN_NGRAM` to `MAX_NGRAM` tokens) in the prediction, the one
/// nearest the answer's own position among equally long ones (an edit keeps the rest of a file
/// where it was, give or take the edit's length). Empty when nothing matches.
pub fn propose_from(prediction: &[u32], generated: &[u32], limit: usize) -> Vec<u32> {
    if limit == 0 || prediction.is_empty() {
        return Vec::new();
    }
    let g = generated.len();
    if prediction.starts_with(generated) {
        return prediction[g.min(prediction.len())..]
            .iter()
            .take(limit)
            .copied()
            .collect();
    }
    if g < MIN_NGRAM {
        return Vec::new();
    }
    // (match length, distance from the answer's position, where the continuation starts)
    let mut best: Option<(usize, usize, usize)> = None;
    let last = generated[g - 1];
    for (end, _) in prediction.iter().enumerate().filter(|(_, &t)| t == last) {
        let mut len = 1;
        while len < MAX_NGRAM
            && len <= end
            && len < g
            && prediction[end - len] == generated[g - 1 - len]
        {
            len += 1;
        }
        let from = end + 1;
        if len < MIN_NGRAM || from >= prediction.len() {
            continue;
        }
        let distance = from.abs_diff(g);
        if best.is_none_or(|(l, d, _)| len > l || (len == l && distance < d)) {
            best = Some((len, distance, from));
        }
    }
    best.map_or_else(Vec::new, |(_, _, from)| {
        prediction[from..].iter().take(limit).copied().collect()
    })
}

/// `limit` tokens to follow `tokens`, copied from after the earlier occurrence of the longest
/// suffix of `tokens` (between `MIN_NGRAM` and `MAX_NGRAM` tokens; the latest occurrence among
/// equally long ones). Empty when no such suffix occurs earlier.
pub fn propose(tokens: &[u32], limit: usize) -> Vec<u32> {
    let n = tokens.len();
    if limit == 0 || n < MIN_NGRAM + 1 {
        return Vec::new();
    }
    let last = tokens[n - 1];
    // (match length, position of the match's last token)
    let mut best = (0usize, 0usize);
    // `end` is where an earlier occurrence ends; its continuation starts at end + 1 < n.
    for end in (0..n - 1).rev() {
        if tokens[end] != last {
            continue;
        }
        let mut len = 1;
        while len < MAX_NGRAM && len <= end && tokens[end - len] == tokens[n - 1 - len] {
            len += 1;
        }
        if len > best.0 {
            best = (len, end);
            if len == MAX_NGRAM {
                break;
            }
        }
    }
    let (len, end) = best;
    if len < MIN_NGRAM {
        return Vec::new();
    }
    // An overlapping copy, as in LZ77: past the end of `tokens` the draft continues with its
    // own first tokens, so a repeating pattern is drafted in full.
    let from = end + 1;
    let mut draft = Vec::with_capacity(limit);
    for at in from..from + limit {
        let token = match tokens.get(at) {
            Some(&t) => t,
            None => draft[at - n],
        };
        draft.push(token);
    }
    draft
}

/// Drafted tokens reached and kept, as faded sums: an acceptance rate that follows the recent
/// past, pulled towards a prior while the evidence is thin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Acceptance {
    kept: f32,
    tried: f32,
}

/// Weight of the prior, in drafts.
const PRIOR_WEIGHT: f32 = 2.0;
/// The prior of a server that has checked no draft yet.
const FIRST_PRIOR: f32 = 0.5;

impl Acceptance {
    /// Record that `accepted` of `drafted` tokens were kept (the first rejected one, if any,
    /// was reached too; the ones after it were not), after fading what was seen by `fade`.
    pub fn record(&mut self, drafted: usize, accepted: usize, fade: f32) {
        let reached = (accepted + usize::from(accepted < drafted)) as f32;
        self.kept = self.kept * fade + accepted as f32;
        self.tried = self.tried * fade + reached;
    }

    /// The estimated chance that a reached draft token is kept.
    pub fn rate(&self, prior: f32) -> f32 {
        (self.kept + prior * PRIOR_WEIGHT) / (self.tried + PRIOR_WEIGHT)
    }
}

/// How many tokens a sequence drafts next, from how its drafts have fared and how full the step
/// is. With a per-token acceptance rate `a` (drafts are kept in order, so the i-th is kept with
/// probability a^i) a draft row pays when a^i beats what a row yields without drafts:
/// `rows / (rows + base_rows)` tokens, for `rows` decoding sequences on a device where a step's
/// fixed cost (reading the weights) equals `base_rows` extra rows. A lone sequence that copies
/// its input drafts long runs; in a full batch only near-certain drafts pay, and a sequence
/// whose matches are chance stops drafting (its evidence fades back to the prior, so it tries
/// again later, e.g. when its answer starts quoting code). The prior is the server's recent
/// acceptance (`server_prior`), so new requests start from what drafts have been worth lately.
#[derive(Debug, Clone, Copy)]
pub struct DraftPolicy {
    max: usize,
    prior: f32,
    seen: Acceptance,
}

/// How much a draft's expected yield must beat a plain row's: both rates are estimates from
/// few, noisy steps, and near the break-even point a batch of 4 on 2 Xeon threads measured
/// 0-8% slower with drafts than without.
const DRAFT_MARGIN: f32 = 1.25;
/// Weight of a sequence's past evidence at each check (about the last ten checks count).
const FADE: f32 = 0.9;
/// Weight of past evidence at each step without a draft, so that refusals do not last.
const IDLE_FADE: f32 = 0.97;
/// Weight of the server's past evidence at each check (about the last hundred count).
pub const SERVER_FADE: f32 = 0.99;

/// The prior for a new sequence: the server's recent acceptance.
/// The prior of a request with a prediction (`propose_from`): its own checks soon correct it
/// when the answer departs from the prediction.
pub const PREDICTION_PRIOR: f32 = 0.9;

/// The longest draft a request with a prediction makes: a prediction holds far more of the
/// answer than a prompt lookup, and its own checks shorten the drafts it gets wrong.
pub const PREDICTION_MAX_DRAFT: usize = 8;

pub fn server_prior(server: &Acceptance) -> f32 {
    server.rate(FIRST_PRIOR)
}

impl DraftPolicy {
    /// At most `max` tokens, starting from acceptance rate `prior`.
    pub fn new(max: usize, prior: f32) -> Self {
        DraftPolicy {
            max,
            prior,
            seen: Acceptance::default(),
        }
    }

    /// The estimated chance that a reached draft token is kept.
    pub fn rate(&self) -> f32 {
        self.seen.rate(self.prior)
    }

    /// Tokens to draft with `rows` sequences decoding in the step (see the type).
    pub fn length(&self, rows: usize, base_rows: f32) -> usize {
        let rows = rows.max(1) as f32;
        let worth = DRAFT_MARGIN * rows / (rows + base_rows.max(f32::MIN_POSITIVE));
        let rate = self.rate();
        let mut reached = rate;
        let mut n = 0;
        while n < self.max && reached > worth {
            n += 1;
            reached *= rate;
        }
        n
    }

    /// Record that `accepted` of `drafted` tokens were kept (none drafted: a step without,
    /// which only fades the evidence).
    pub fn update(&mut self, drafted: usize, accepted: usize) {
        let fade = if drafted == 0 { IDLE_FADE } else { FADE };
        self.seen.record(drafted, accepted, fade);
    }
}

/// What a step's fixed cost is worth in rows on this device and model, from the steps the
/// engine times: a running least-squares fit of a decode step's seconds as `fixed + per_row *
/// rows`, weighted towards the last ~100 steps. `DraftPolicy` takes `fixed / per_row`. Until
/// the steps seen vary enough in size to fit (or when the fit makes no sense), the prior for
/// the device kind holds.
#[derive(Debug, Clone)]
pub struct StepCost {
    prior: f32,
    /// Weighted sums of 1, rows, seconds, rows², rows·seconds.
    w: f64,
    r: f64,
    t: f64,
    rr: f64,
    rt: f64,
}

/// Weight of a step after each newer one.
const STEP_FADE: f64 = 0.99;
/// Least weight and spread of row counts (variance) before the fit is trusted.
const MIN_STEPS: f64 = 8.0;
const MIN_ROW_VARIANCE: f64 = 0.25;
/// Bounds of the fitted worth: a step costs at least a row, and a row is never quite free.
const BASE_ROWS: std::ops::RangeInclusive<f32> = 1.0..=256.0;

impl StepCost {
    pub fn new(prior: f32) -> Self {
        StepCost {
            prior,
            w: 0.0,
            r: 0.0,
            t: 0.0,
            rr: 0.0,
            rt: 0.0,
        }
    }

    /// A decode step of `rows` rows (decode tokens and drafts) took `seconds`.
    pub fn observe(&mut self, rows: usize, seconds: f64) {
        let r = rows as f64;
        for sum in [
            &mut self.w,
            &mut self.r,
            &mut self.t,
            &mut self.rr,
            &mut self.rt,
        ] {
            *sum *= STEP_FADE;
        }
        self.w += 1.0;
        self.r += r;
        self.t += seconds;
        self.rr += r * r;
        self.rt += r * seconds;
    }

    /// A step's fixed cost in rows.
    pub fn base_rows(&self) -> f32 {
        if self.w < MIN_STEPS {
            return self.prior;
        }
        let (mean_r, mean_t) = (self.r / self.w, self.t / self.w);
        let variance = self.rr / self.w - mean_r * mean_r;
        if variance < MIN_ROW_VARIANCE {
            return self.prior;
        }
        let per_row = (self.rt / self.w - mean_r * mean_t) / variance;
        if per_row <= 0.0 {
            return self.prior;
        }
        let fixed = mean_t - per_row * mean_r;
        ((fixed / per_row) as f32).clamp(*BASE_ROWS.start(), *BASE_ROWS.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prediction_is_followed_from_its_start_and_past_an_edit() {
        let prediction = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(propose_from(&prediction, &[], 3), [1, 2, 3]);
        assert_eq!(propose_from(&prediction, &[1, 2], 3), [3, 4, 5]);
        assert_eq!(propose_from(&prediction, &prediction, 3), Vec::<u32>::new());
        // `3` became `9, 9`: once the answer is back on the prediction, it is followed again.
        assert_eq!(
            propose_from(&prediction, &[1, 2, 9, 9], 3),
            Vec::<u32>::new()
        );
        assert_eq!(propose_from(&prediction, &[1, 2, 9, 9, 4, 5], 3), [6, 7, 8]);
        // Of two equally long matches, the one nearer the answer's position.
        let repeated = [7, 7, 1, 2, 3, 1, 2, 4];
        assert_eq!(propose_from(&repeated, &[0, 0, 0, 1, 2], 1), [3]);
        assert_eq!(propose_from(&repeated, &[0, 0, 0, 0, 0, 0, 1, 2], 1), [4]);
        assert!(propose_from(&[], &[1], 4).is_empty());
    }

    #[test]
    fn copies_what_followed_the_earlier_occurrence() {
        // ... 7 8 9 10 11 ... 7 8 → 9 10 11
        let tokens = [1, 7, 8, 9, 10, 11, 2, 3, 7, 8];
        assert_eq!(propose(&tokens, 3), vec![9, 10, 11]);
        assert_eq!(propose(&tokens, 2), vec![9, 10]);
        // The continuation runs into the suffix itself and on into the draft.
        assert_eq!(propose(&tokens, 10), vec![9, 10, 11, 2, 3, 7, 8, 9, 10, 11]);
        assert!(propose(&tokens, 0).is_empty());
    }

    #[test]
    fn prefers_the_longest_match_then_the_latest() {
        // "5 7 8" occurs once (→ 20); "7 8" alone occurs later too (→ 30).
        let tokens = [5, 7, 8, 20, 1, 7, 8, 30, 2, 5, 7, 8];
        assert_eq!(propose(&tokens, 1), vec![20]);
        // Two equally long matches: the latest one.
        let tokens = [7, 8, 20, 1, 7, 8, 30, 2, 7, 8];
        assert_eq!(propose(&tokens, 1), vec![30]);
    }

    #[test]
    fn a_single_token_match_or_none_proposes_nothing() {
        assert!(propose(&[4, 9, 1, 2, 9], 4).is_empty());
        assert!(propose(&[1, 2, 3, 4], 4).is_empty());
        assert!(propose(&[1, 1], 4).is_empty());
        assert!(propose(&[], 4).is_empty());
    }

    #[test]
    fn runs_of_one_token_draft_more_of_it() {
        assert_eq!(propose(&[0, 0, 0, 0], 5), vec![0; 5]);
        assert_eq!(propose(&[1, 2, 1, 2, 1], 4), vec![2, 1, 2, 1]);
        assert_eq!(propose(&[3, 0, 0, 0, 0, 0], 2), vec![0, 0]);
    }

    #[test]
    fn drafts_grow_with_acceptance_and_shrink_with_the_batch() {
        let mut copying = DraftPolicy::new(4, 0.5);
        // The prior (a half): two tokens for a lone sequence on a CPU-like device.
        assert_eq!(copying.length(1, 6.0), 2);
        for _ in 0..20 {
            copying.update(4, 4);
        }
        assert!(copying.rate() > 0.95);
        assert_eq!(copying.length(1, 6.0), 4, "never above the maximum");
        assert_eq!(copying.length(16, 6.0), 3, "a full batch drafts less");
        assert_eq!(copying.length(64, 6.0), 0);

        let mut chance = DraftPolicy::new(4, 0.5);
        for _ in 0..20 {
            chance.update(1, 0);
        }
        assert_eq!(chance.length(1, 6.0), 0);
        // On a device whose step costs as much as many rows, doubtful drafts still pay.
        assert_eq!(chance.length(1, 1000.0), 2);
        // Without drafts, the evidence fades until the sequence tries again.
        let steps = (0..200).take_while(|_| {
            chance.update(0, 0);
            chance.length(1, 6.0) == 0
        });
        assert!(steps.count() < 200);

        // Half kept, half not: the rate follows.
        let mut half = DraftPolicy::new(8, 0.5);
        for _ in 0..50 {
            half.update(2, 1);
        }
        assert!((half.rate() - 0.5).abs() < 0.05, "{}", half.rate());
        assert_eq!(half.length(1, 6.0), 2);
        assert_eq!(half.length(8, 6.0), 0);
    }

    #[test]
    fn step_cost_fits_the_fixed_share_of_a_step() {
        let mut cost = StepCost::new(6.0);
        assert_eq!(cost.base_rows(), 6.0, "the prior before any step");
        // 24 ms fixed + 4 ms a row, as a CPU: worth 6 rows.
        for rows in [1, 3, 1, 5, 2, 1, 4, 1, 2, 5] {
            cost.observe(rows, 0.024 + 0.004 * rows as f64);
        }
        assert!(
            (cost.base_rows() - 6.0).abs() < 0.01,
            "{}",
            cost.base_rows()
        );
        // A device where rows are nearly free: the steps say so.
        let mut gpu = StepCost::new(6.0);
        for rows in [1, 9, 17, 33, 1, 5, 40, 2, 12, 20] {
            gpu.observe(rows, 0.005 + 0.00005 * rows as f64);
        }
        assert!((gpu.base_rows() - 100.0).abs() < 0.5, "{}", gpu.base_rows());
        // Steps all of one size tell nothing about a row: the prior stays.
        let mut same = StepCost::new(6.0);
        for _ in 0..50 {
            same.observe(4, 0.03);
        }
        assert_eq!(same.base_rows(), 6.0);
        // Noise that makes more rows look cheaper fits nothing: the prior.
        let mut odd = StepCost::new(6.0);
        for rows in [1, 8, 1, 8, 1, 8, 1, 8, 1, 8] {
            odd.observe(rows, if rows == 1 { 0.03 } else { 0.02 });
        }
        assert_eq!(odd.base_rows(), 6.0);
        // Old steps fade: after a change of load, the new costs win.
        for _ in 0..1000 {
            for rows in [1, 5] {
                odd.observe(rows, 0.024 + 0.004 * rows as f64);
            }
        }
        assert!((odd.base_rows() - 6.0).abs() < 0.1, "{}", odd.base_rows());
    }

    #[test]
    fn new_sequences_start_from_the_servers_recent_acceptance() {
        let mut server = Acceptance::default();
        assert_eq!(server_prior(&server), FIRST_PRIOR);
        for _ in 0..100 {
            server.record(2, 0, SERVER_FADE);
        }
        let doubtful = DraftPolicy::new(4, server_prior(&server));
        assert_eq!(doubtful.length(1, 6.0), 0, "drafts have not paid lately");
        for _ in 0..300 {
            server.record(4, 4, SERVER_FADE);
        }
        let trusting = DraftPolicy::new(4, server_prior(&server));
        assert_eq!(trusting.length(4, 6.0), 4);
    }
}
