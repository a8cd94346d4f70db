//! Token sampling on the host: greedy, or temperature (fixed or dynamic, before the
//! truncations or after them) with top-k / top-p / min-p / typical-p / top-n-sigma filtering
//! and XTC, or mirostat, after repetition / presence / frequency penalties and DRY. Seeded runs
//! are reproducible (ChaCha8).
use super::banned::Banned;
use super::candidates::Candidates;
use super::dry::DryParams;
use super::error::EngineError;
use super::grammar::Constraint;
use super::infill::Infill;
use super::mirostat::{Mirostat, MirostatState};
use super::penalties::{Penalizer, Penalties};
use super::pick::{candidates, infill_candidates, keep_typical, ranked, top_k, Truncation};
use super::runner::Logits;
use super::sampler_order::{ordered_candidates, Stage};
use super::temperature::DynamicTemperature;
use super::thought::Thought;
use candor_kernels::activation::sum_exp;
use candor_models::LogitsWanted;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 1.0 disables nucleus filtering.
    pub top_p: f32,
    /// 0 disables top-k filtering.
    pub top_k: usize,
    /// 0.0 disables min-p filtering.
    pub min_p: f32,
    /// Repetition, presence and frequency penalties, and the tokens they count.
    pub penalties: Penalties,
    pub seed: Option<u64>,
    /// Added to the logits of these tokens before sampling (OpenAI `logit_bias`).
    pub logit_bias: Vec<(u32, f32)>,
    /// The request's end tokens (`Sampler::ending_with`) cannot be sampled before this many
    /// tokens (vLLM's `min_tokens`).
    pub min_tokens: usize,
    /// llama.cpp's top-n-sigma: only tokens whose logit is within this many standard
    /// deviations (of the row's finite logits) of the largest stay. 0: off.
    pub top_n_sigma: f32,
    /// Locally typical sampling's mass (`pick::keep_typical`). 1: off.
    pub typical_p: f32,
    /// XTC: with this probability a pick drops every token of at least `xtc_threshold`
    /// probability but the least likely of them (when there are two or more). 0: off.
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
    /// DRY's repeat penalty (`dry.rs`); None: off.
    pub dry: Option<Arc<DryParams>>,
    /// Mirostat in place of the truncations above (`mirostat.rs`); None: off.
    pub mirostat: Option<Mirostat>,
    /// llama.cpp's order: the truncations (top-k, typical-p, top-p, min-p, XTC) read the
    /// probabilities at temperature 1 and the temperature shapes only the draw among what
    /// they keep. false: transformers' and vLLM's, the temperature first.
    pub temperature_last: bool,
    /// llama.cpp's dynamic temperature around `temperature` (`temperature.rs`); None: off.
    pub dynamic_temperature: Option<DynamicTemperature>,
    /// llama.cpp's infill sampler after the truncations (`infill.rs`); None: off.
    pub infill: Option<Arc<Infill>>,
    /// llama.cpp's `min_keep`: typical-p, min-p, top-p and XTC leave at least this many
    /// tokens (`pick::Truncation::min_keep`). 0: no floor.
    pub min_keep: usize,
    /// The request's chain in its own order, where the fixed pipeline cannot follow it
    /// (`sampler_order`); None: the fixed pipeline.
    pub order: Option<Arc<[Stage]>>,
    /// Tokens it may not draw (vLLM's `allowed_token_ids` and `bad_words`); None: any.
    pub banned: Option<Arc<Banned>>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            penalties: Penalties::default(),
            seed: None,
            logit_bias: Vec::new(),
            min_tokens: 0,
            top_n_sigma: 0.0,
            typical_p: 1.0,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            dry: None,
            mirostat: None,
            temperature_last: false,
            dynamic_temperature: None,
            infill: None,
            min_keep: 0,
            order: None,
            banned: None,
        }
    }
}

impl SamplingParams {
    /// Whether sampling is the plain argmax of the logits (temperature 0, no logit bias, no
    /// penalties), which the backend can pick without sending the logits to the host.
    pub fn is_plain_greedy(&self) -> bool {
        self.temperature == 0.0
            && self.logit_bias.is_empty()
            && self.banned.is_none()
            && self.min_tokens == 0
            && self.dry.is_none()
            && self.penalties.are_off()
    }

    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadSampling(m.to_string()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        let penalties = &self.penalties;
        if !(penalties.repetition.is_finite() && penalties.repetition > 0.0) {
            return bad("repetition_penalty must be > 0");
        }
        if !(-2.0..=2.0).contains(&penalties.presence)
            || !(-2.0..=2.0).contains(&penalties.frequency)
        {
            return bad("presence_penalty and frequency_penalty must be in [-2, 2]");
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return bad("typical_p must be in (0, 1]");
        }
        if !(self.top_n_sigma.is_finite() && self.top_n_sigma >= 0.0) {
            return bad("top_n_sigma must be >= 0");
        }
        if !(0.0..=1.0).contains(&self.xtc_probability)
            || !(0.0..=1.0).contains(&self.xtc_threshold)
        {
            return bad("xtc_probability and xtc_threshold must be in [0, 1]");
        }
        if let Some(d) = &self.dry {
            if !(d.multiplier.is_finite()
                && d.multiplier > 0.0
                && d.base.is_finite()
                && d.base >= 1.0)
            {
                return bad("dry_multiplier must be > 0 and dry_base >= 1");
            }
        }
        if let Some(d) = &self.dynamic_temperature {
            if !(d.range.is_finite() && d.range >= 0.0 && d.exponent.is_finite()) {
                return bad("dynatemp_range must be >= 0 and dynatemp_exponent finite");
            }
        }
        if let Some(m) = &self.mirostat {
            if !(m.tau.is_finite() && m.tau >= 0.0 && m.eta.is_finite() && m.eta >= 0.0) {
                return bad("mirostat_tau and mirostat_eta must be finite and >= 0");
            }
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    constraint: Option<Constraint>,
    /// A thinking model's thought: its budget, and where the grammar starts (`thought.rs`).
    thought: Option<Thought>,
    /// The tokens that end the request (held back before `min_tokens`).
    end_ids: Vec<u32>,
    penalizer: Penalizer,
    /// The sequence's mirostat and its `mu`, when the request asks for it.
    mirostat: Option<MirostatState>,
    /// Whether each pick keeps what it drew from (`drawn_from`).
    keeps_candidates: bool,
    /// What the last pick drew from, when kept.
    drawn: Option<Candidates>,
}

/// The tokens a pick follows: the prompt's, then those generated so far.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub tokens: &'a [u32],
    pub prompt_len: usize,
}

impl<'a> History<'a> {
    /// `tokens`, of which the first `prompt_len` are the prompt's (all of them at most).
    pub fn new(tokens: &'a [u32], prompt_len: usize) -> Self {
        History {
            tokens,
            prompt_len: prompt_len.min(tokens.len()),
        }
    }

    pub fn prompt(&self) -> &'a [u32] {
        &self.tokens[..self.prompt_len]
    }

    pub fn generated(&self) -> &'a [u32] {
        &self.tokens[self.prompt_len..]
    }
}

/// Tokens generated after a prompt the penalties and DRY do not see (a slice, an array, a
/// Vec).
impl<'a, T: AsRef<[u32]> + ?Sized> From<&'a T> for History<'a> {
    fn from(generated: &'a T) -> Self {
        History::new(generated.as_ref(), 0)
    }
}

/// The greedy pick, shared with the CPU backend's `argmax` so a token picked on the backend
/// (`LogitsWanted::Argmax`) is the one the sampler would pick.
pub use candor_kernels::argmax;

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, EngineError> {
        params.validate()?;
        let rng = match params.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_os_rng(),
        };
        Ok(Sampler {
            mirostat: params.mirostat.map(MirostatState::new),
            params,
            rng,
            constraint: None,
            thought: None,
            end_ids: Vec::new(),
            penalizer: Penalizer::default(),
            keeps_candidates: false,
            drawn: None,
        })
    }

    /// Keep what each pick draws from, after every sampler (`drawn_from`): llama-server's
    /// `post_sampling_probs` reports those probabilities instead of the model's.
    pub fn keeping_candidates(mut self, keep: bool) -> Self {
        self.keeps_candidates = keep;
        self
    }

    /// What the last pick drew from, if this sampler keeps it (`keeping_candidates`).
    pub fn drawn_from(&self) -> Option<&Candidates> {
        self.drawn.as_ref()
    }

    /// The token of a pick from `candidates`, kept if asked to.
    fn took(&mut self, candidates: Candidates, token: u32) -> u32 {
        if self.keeps_candidates {
            self.drawn = Some(candidates);
        }
        token
    }

    /// Sample only tokens `constraint` allows (it then needs the logits every step).
    pub fn constrained(mut self, constraint: Option<Constraint>) -> Self {
        self.constraint = constraint;
        self
    }

    /// Follow a thinking model's thought: its budget, and a grammar kept for the answer.
    pub fn thinking(mut self, thought: Option<Thought>) -> Self {
        self.thought = thought;
        self
    }

    /// The tokens that end the request, as the engine reads them (none under `ignore_eos`).
    pub fn ending_with(mut self, end_ids: &[u32], ignore_eos: bool) -> Self {
        self.end_ids = if ignore_eos {
            Vec::new()
        } else {
            end_ids.to_vec()
        };
        self
    }

    /// Whether the next pick needs a grammar's mask (`prepare_mask` may compute it early).
    pub fn needs_mask(&self) -> bool {
        self.constraint.as_ref().is_some_and(Constraint::is_active) && self.grammar_applies()
    }

    /// Whether a grammar shapes the next token: not inside a thought, nor while the budget's
    /// closing is forced.
    fn grammar_applies(&self) -> bool {
        self.thought
            .as_ref()
            .is_none_or(|t| t.grammar_applies() && t.forced().is_none())
    }

    /// Whether the next pick starts the closing of a thought cut at its budget.
    pub fn cuts_a_thought(&self) -> bool {
        self.thought.as_ref().is_some_and(Thought::cut_now)
    }

    /// Whether a grammar follows the picks.
    pub fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// Compute the grammar's mask for the next pick now (see `Constraint::prepare_mask`).
    pub fn prepare_mask(&mut self) {
        if !self.grammar_applies() {
            return;
        }
        if let Some(constraint) = &mut self.constraint {
            constraint.prepare_mask();
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// What a step should bring back for the row this sampler picks from: the device's argmax
    /// alone when the pick is the plain argmax and no logprobs need the values, else the
    /// logits (`next_token` takes either).
    pub fn logits_wanted(&self, logprobs: bool) -> LogitsWanted {
        if !logprobs && self.params.is_plain_greedy() && !self.needs_mask() {
            LogitsWanted::Argmax
        } else {
            LogitsWanted::Last
        }
    }

    /// What a step should bring back for a row and the drafted tokens after it: the device's
    /// picks alone where the plain argmax decides, else every row's logits. A grammar, even a
    /// lazy one still waiting for its trigger, needs the values: a draft row may be the first
    /// after the trigger, where the pick must follow the grammar's mask.
    pub fn logits_wanted_with_drafts(&self, logprobs: bool) -> LogitsWanted {
        match self.logits_wanted(logprobs) {
            LogitsWanted::Argmax if !self.is_constrained() => LogitsWanted::ArgmaxAll,
            _ => LogitsWanted::All,
        }
    }

    /// The next token from row `row` of a step's output: the device's pick where it made one,
    /// else sampled from the row's logits after `history`. A thought's forced closing comes
    /// first, whatever the row says.
    pub fn next_token<'a>(
        &mut self,
        out: &Logits,
        row: usize,
        history: impl Into<History<'a>>,
    ) -> u32 {
        if let Some(token) = self.thought.as_ref().and_then(Thought::forced) {
            self.accept(token);
            return self.took(Candidates::Only(token), token);
        }
        match out.token(row) {
            Some(id) => {
                // A lazy grammar waiting for its trigger still watches the tokens.
                self.accept(id);
                self.took(Candidates::Only(id), id)
            }
            None => self.sample(out.row(row), history),
        }
    }

    /// Follow a token written: the thought sees every token, the grammar those of the answer.
    fn accept(&mut self, token: u32) {
        // A lazy grammar still waiting for its trigger shapes nothing yet.
        let shaped = self.constraint.as_ref().is_some_and(Constraint::is_active);
        let answer = self
            .thought
            .as_mut()
            .is_none_or(|t| t.accept(token, shaped));
        if let (true, Some(constraint)) = (answer, &mut self.constraint) {
            constraint.accept(token);
        }
    }

    /// Choose the next token from one row of logits (among those the constraint allows),
    /// after `history`: the tokens generated so far, and the prompt before them where the
    /// penalties and DRY should see it.
    pub fn sample<'a>(&mut self, logits: &[f32], history: impl Into<History<'a>>) -> u32 {
        let history = history.into();
        let mut logits = logits.to_vec();
        for &(t, b) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        if let Some(banned) = &self.params.banned {
            banned.apply(&mut logits, history.generated());
        }
        self.penalizer
            .apply(&self.params.penalties, &mut logits, history);
        if let Some(dry) = &self.params.dry {
            dry.apply(&mut logits, history.tokens);
        }
        if let Some(token) = self.thought.as_ref().and_then(Thought::forced) {
            self.accept(token);
            return self.took(Candidates::Only(token), token);
        }
        let shaping = self.grammar_applies();
        let candidates = match self.constraint.take() {
            Some(mut constraint) if shaping => {
                // At the answer's start a thought may open beside what the grammar allows.
                let opening = self.thought.as_ref().and_then(Thought::opening_token);
                let kept = opening.and_then(|t| Some((t, *logits.get(t as usize)?)));
                let allowed = constraint.mask(&mut logits);
                if let Some((t, l)) = kept {
                    logits[t as usize] = l;
                }
                let candidates = if allowed {
                    self.hold_back_the_end(&mut logits, history);
                    self.candidates(&mut logits)
                } else {
                    Candidates::Only(constraint.eos())
                };
                self.constraint = Some(constraint);
                candidates
            }
            unshaped => {
                self.constraint = unshaped;
                self.hold_back_the_end(&mut logits, history);
                self.candidates(&mut logits)
            }
        };
        let token = self.draw(&candidates);
        self.accept(token);
        self.took(candidates, token)
    }

    /// Before `min_tokens`, the end tokens are out, unless nothing else is left (a grammar
    /// that is complete allows only the end).
    fn hold_back_the_end(&self, logits: &mut [f32], history: History) {
        if history.generated().len() >= self.params.min_tokens || self.end_ids.is_empty() {
            return;
        }
        let is_end = |i: usize| self.end_ids.iter().any(|&e| e as usize == i);
        let other_left = logits
            .iter()
            .enumerate()
            .any(|(i, l)| *l > f32::NEG_INFINITY && !is_end(i));
        if other_left {
            for &t in &self.end_ids {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// What the pick draws from: the tokens every sampler keeps of `logits` (masked in place
    /// by top-n-sigma and typical-p, or by every stage of a reordered chain; the coin of XTC,
    /// when on, is tossed here).
    fn candidates(&mut self, logits: &mut [f32]) -> Candidates {
        let p = &self.params;
        if p.temperature == 0.0 {
            return Candidates::Only(argmax(logits));
        }
        if let Some(mirostat) = &self.mirostat {
            return mirostat.candidates(logits, p.temperature);
        }
        // The coin is tossed only where XTC is on, so other requests' draws stay as they were.
        let xtc = p.xtc_probability > 0.0 && self.rng.random::<f32>() < p.xtc_probability;
        match &p.order {
            Some(order) => ordered_candidates(logits, p, order, xtc),
            None => fixed_candidates(logits, p, xtc),
        }
    }

    /// The token drawn among `candidates` (mirostat's `mu` learns from it); a certain one
    /// takes no draw.
    fn draw(&mut self, candidates: &Candidates) -> u32 {
        if let Candidates::Only(token) = candidates {
            return *token;
        }
        let draw = self.rng.random::<f32>();
        match &mut self.mirostat {
            Some(mirostat) => mirostat.draw(candidates, draw),
            None => candidates.draw(draw),
        }
    }
}

/// The fixed pipeline of truncations, in llama.cpp's default order (top-n-sigma, top-k,
/// typical-p, top-p and min-p, XTC when `xtc` came up), the temperature first or last
/// (`SamplingParams::temperature_last`): what a pick draws from when the request's chain
/// keeps that order. Masks `logits` in place (top-n-sigma, typical-p).
pub(crate) fn fixed_candidates(logits: &mut [f32], p: &SamplingParams, xtc: bool) -> Candidates {
    if p.top_n_sigma > 0.0 {
        keep_within_sigmas(logits, p.top_n_sigma);
    }
    if p.typical_p < 1.0 {
        // After top-k, over its candidates, as llama.cpp's chain and transformers' warpers
        // both run it.
        if p.top_k > 0 && p.top_k < logits.len() {
            keep_top_k(logits, p.top_k);
        }
        let seen_at = if p.temperature_last {
            1.0
        } else {
            p.temperature
        };
        keep_typical(logits, seen_at, p.typical_p, p.min_keep);
    }
    let truncation = Truncation {
        temperature: p.temperature,
        top_k: p.top_k,
        min_p: p.min_p,
        top_p: p.top_p,
        xtc_threshold: xtc.then_some(p.xtc_threshold),
        temperature_last: p.temperature_last,
        dynamic: p.dynamic_temperature,
        min_keep: p.min_keep,
    };
    match &p.infill {
        Some(infill) => infill_candidates(logits, &truncation, infill),
        None => candidates(logits, &truncation),
    }
}

/// Only the `k` first-ranked logits stay; the others become -inf.
pub(crate) fn keep_top_k(logits: &mut [f32], k: usize) {
    let mut keep = vec![false; logits.len()];
    for i in top_k(logits, k) {
        keep[i as usize] = true;
    }
    for (l, keep) in logits.iter_mut().zip(keep) {
        if !keep {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// top-n-sigma: the logits below `max − n·σ` (σ the standard deviation of the finite ones) are
/// masked. Scaling by a temperature scales max and σ alike, so it is the same before or after.
pub(crate) fn keep_within_sigmas(logits: &mut [f32], n: f32) {
    let (mut count, mut sum, mut max) = (0usize, 0f64, f32::NEG_INFINITY);
    for &l in logits.iter().filter(|l| l.is_finite()) {
        count += 1;
        sum += l as f64;
        max = max.max(l);
    }
    if count < 2 {
        return;
    }
    let mean = sum / count as f64;
    let var = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| (l as f64 - mean).powi(2))
        .sum::<f64>()
        / count as f64;
    let floor = max - n * var.sqrt() as f32;
    for l in logits.iter_mut() {
        if *l < floor {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Log-probability of `token` and the `k` most likely tokens (ties: the lower id first), from
/// raw logits. Paid per token of a request with logprobs and per prompt token scored: the
/// denominator is the vectorized `sum_exp` and the top k a bounded heap (`pick::top_k`),
/// where scalar exponentials and a selection over the vocabulary cost ~0.8 ms a row.
pub fn logprobs(logits: &[f32], token: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let Some(&max) = logits.get(argmax(logits) as usize) else {
        return (f32::NEG_INFINITY, Vec::new());
    };
    let lse = max + sum_exp(logits, max).ln();
    let lp = |t: u32| {
        logits
            .get(t as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - lse)
    };
    let top = match k {
        0 => Vec::new(),
        k if k >= logits.len() => ranked(logits),
        k => top_k(logits, k),
    };
    (lp(token), top.into_iter().map(|t| (t, lp(t))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row that came back without values (the device's pick only) has no alternatives to
    /// rank: nothing, not a panic.
    #[test]
    fn logprobs_of_an_empty_row_are_empty() {
        let (lp, top) = logprobs(&[], 3, 2);
        assert!(lp.is_infinite() && top.is_empty());
    }

    #[test]
    fn greedy_picks_max_and_seeded_sampling_repeats() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let mut g = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(g.sample(&logits, &[]), 1);
        let params = SamplingParams {
            temperature: 1.0,
            seed: Some(7),
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(params.clone()).unwrap();
            (0..20).map(|_| s.sample(&logits, &[])).collect()
        };
        let mut s = Sampler::new(params).unwrap();
        let b: Vec<u32> = (0..20).map(|_| s.sample(&logits, &[])).collect();
        assert_eq!(a, b);
        assert!(a.contains(&2), "sampling should not be greedy: {a:?}");
    }

    #[test]
    fn the_end_waits_for_min_tokens_unless_nothing_else_is_left() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            min_tokens: 2,
            ..Default::default()
        })
        .unwrap()
        .ending_with(&[1], false);
        assert!(!s.params().is_plain_greedy());
        assert_eq!(s.sample(&logits, &[]), 2);
        assert_eq!(s.sample(&logits, &[2]), 2);
        assert_eq!(
            s.sample(&logits, &[2, 2]),
            1,
            "the end is free after min_tokens"
        );
        let only_end = [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
        assert_eq!(s.sample(&only_end, &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_penalty_moves_choice() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            seed: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert!((0..10).all(|_| s.sample(&logits, &[]) == 1));
        let mut g = Sampler::new(SamplingParams {
            temperature: 0.0,
            penalties: Penalties {
                repetition: 2.0,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        assert_eq!(g.sample(&logits, &[1]), 2);
        // A token of the prompt is repeated as well (vLLM's reading).
        assert_eq!(g.sample(&logits, History::new(&[1], 1)), 2);
    }

    /// What a pick drew from, kept when asked: the truncated, tempered distribution (top-k
    /// two of four at temperature 0.5, a logit bias and a penalty applied first), which a
    /// seeded run follows in proportion; a greedy pick is certain.
    #[test]
    fn a_pick_keeps_what_it_drew_from_when_asked() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let params = SamplingParams {
            temperature: 0.5,
            top_k: 2,
            seed: Some(3),
            logit_bias: vec![(0, 1.85)],
            penalties: Penalties {
                repetition: 2.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut plain = Sampler::new(params.clone()).unwrap();
        let mut keeping = Sampler::new(params).unwrap().keeping_candidates(true);
        let history = History::new(&[2], 1);
        let picks: Vec<u32> = (0..400).map(|_| keeping.sample(&logits, history)).collect();
        assert_eq!(
            picks,
            (0..400)
                .map(|_| plain.sample(&logits, history))
                .collect::<Vec<_>>(),
            "keeping the candidates changes no draw"
        );
        assert!(plain.drawn_from().is_none());
        // Token 2 repeated: 1.9 / 2 = 0.95; token 0 biased: 1.95; token 1: 2.0.
        let drawn = keeping.drawn_from().unwrap();
        let expected = 1.0 / (1.0 + (-(2.0f32 - 1.95) / 0.5).exp());
        let top = drawn.most_likely(4);
        assert_eq!(top.len(), 2, "{top:?}");
        assert_eq!(top[0].0, 1);
        assert!((top[0].1 - expected).abs() < 1e-6, "{top:?}");
        assert_eq!(top[1].0, 0);
        let ones = picks.iter().filter(|&&t| t == 1).count() as f32 / 400.0;
        assert!((ones - expected).abs() < 0.08, "{ones} vs {expected}");
        let (lp, _) = drawn.logprobs(2, 1);
        assert_eq!(lp, f32::NEG_INFINITY, "out of the candidates");

        let mut greedy = Sampler::new(SamplingParams::greedy())
            .unwrap()
            .keeping_candidates(true);
        assert_eq!(greedy.sample(&logits, &[]), 1);
        assert_eq!(greedy.drawn_from(), Some(&Candidates::Only(1)));
    }

    /// Typical-p reads top-k's candidates, not the row: over a long flat tail the row's most
    /// typical token is in the tail, over the two first the likelier is.
    #[test]
    fn typical_p_follows_top_k() {
        let mut logits = vec![3.0f32; 1002];
        logits[0] = 5.0;
        logits[1] = 4.0;
        let mut s = Sampler::new(SamplingParams {
            top_k: 2,
            typical_p: 0.0001,
            seed: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert!((0..20).all(|_| s.sample(&logits, &[]) == 0));
        let mut row_wide = Sampler::new(SamplingParams {
            typical_p: 0.0001,
            seed: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert!(
            row_wide.sample(&logits, &[]) >= 2,
            "the tail is the row's typical"
        );
    }

    #[test]
    fn logprobs_are_normalised_and_sorted() {
        let (lp, top) = logprobs(&[0.0, 1.0, 2.0], 1, 2);
        let z = (1f32 + 1f32.exp() + 2f32.exp()).ln();
        assert!((lp - (1.0 - z)).abs() < 1e-6);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            logit_bias: vec![(0, 5.0)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.sample(&[0.0, 1.0, 2.0], &[]), 0);
    }

    #[test]
    fn top_n_sigma_and_xtc_cut_where_they_say() {
        // Two likely tokens over a flat tail.
        let mut logits = vec![0.0f32; 64];
        logits[5] = 6.0;
        logits[9] = 5.5;
        let sigma = SamplingParams {
            temperature: 1.5,
            top_n_sigma: 1.0,
            seed: Some(4),
            ..Default::default()
        };
        let mut s = Sampler::new(sigma).unwrap();
        let picks: Vec<u32> = (0..50).map(|_| s.sample(&logits, &[])).collect();
        assert!(picks.iter().all(|&t| t == 5 || t == 9), "{picks:?}");
        assert!(picks.contains(&9), "both stay within a sigma: {picks:?}");
        let xtc = SamplingParams {
            temperature: 1.0,
            xtc_probability: 1.0,
            xtc_threshold: 0.1,
            seed: Some(4),
            ..Default::default()
        };
        let mut s = Sampler::new(xtc).unwrap();
        let picks: Vec<u32> = (0..50).map(|_| s.sample(&logits, &[])).collect();
        assert!(!picks.contains(&5), "the top choice goes: {picks:?}");
        assert!(
            picks.contains(&9),
            "the least of the top choices stays: {picks:?}"
        );
    }

    #[test]
    fn dry_turns_greedy_away_from_a_repeat() {
        let mut breakers = vec![false; 8];
        breakers[7] = true;
        let dry = DryParams {
            multiplier: 2.0,
            base: 1.75,
            allowed_length: 2,
            last_n: None,
            breakers: super::super::dry::Breakers(Arc::new(breakers)),
        };
        let mut logits = vec![0.0f32; 8];
        logits[4] = 1.0;
        logits[6] = 0.5;
        let mut plain = Sampler::new(SamplingParams::greedy()).unwrap();
        let context = [1, 2, 3, 4, 1, 2, 3];
        let history = History::new(&context, 4);
        assert_eq!(plain.sample(&logits, history), 4);
        let params = SamplingParams {
            dry: Some(Arc::new(dry)),
            ..SamplingParams::greedy()
        };
        assert!(
            !params.is_plain_greedy(),
            "the device's argmax would miss DRY"
        );
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&logits, history), 6);
        assert_eq!(
            s.sample(&logits, History::new(&context[4..], 0)),
            4,
            "the repeat is of the prompt"
        );
    }

    #[test]
    fn rejects_bad_params() {
        assert!(Sampler::new(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        })
        .is_err());
    }
}
