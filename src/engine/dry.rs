//! DRY ("don't repeat yourself", p-e-w's sampler in text-generation-webui and llama.cpp): a
//! token that would extend a repetition of something already in the context loses
//! `multiplier · base^(length − allowed_length)` from its logit, `length` being how many tokens
//! of the context's end it would repeat. Unlike a repetition penalty it leaves single words
//! alone and grows with the length of what is copied. A repeat never spans a sequence
//! breaker (a token whose text holds one of the breaker strings: newlines, `:`, quotes, `*` by
//! default), so names and formatting may recur.
//!
//! The matches of the context's end are the Z-function of the reversed context: `z[k]` is how
//! far the text ending `k` tokens before the end repeats the end, found for every `k` in
//! O(context) rather than by walking back from each earlier occurrence of the last token.
use std::sync::Arc;

/// Tokens whose text holds a sequence breaker, by id.
#[derive(Clone, PartialEq)]
pub struct Breakers(pub Arc<Vec<bool>>);

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.iter().filter(|&&b| b).count();
        write!(f, "Breakers({n} tokens)")
    }
}

impl Breakers {
    fn has(&self, token: u32) -> bool {
        self.0.get(token as usize).copied().unwrap_or(false)
    }
}

/// A request's DRY settings and the context before its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DryParams {
    /// > 0 (0 is off and never built).
    pub multiplier: f32,
    /// ≥ 1: how fast the penalty grows with the repeat's length.
    pub base: f32,
    /// Repeats up to this long go unpunished.
    pub allowed_length: usize,
    /// The last this many tokens of prompt and answer are searched (None: all).
    pub last_n: Option<usize>,
    pub breakers: Breakers,
}

/// The exponent stops here: past it the penalty (1.75^40 ≈ 5·10⁹) already bans the token, and
/// larger powers would overflow to infinity.
const MAX_EXPONENT: usize = 40;

impl DryParams {
    /// Lower the logits of the tokens that would extend a repeat of the end of `context`
    /// (the prompt and the tokens generated so far; its last `last_n` are searched).
    pub fn apply(&self, logits: &mut [f32], context: &[u32]) {
        let keep = self.last_n.map_or(context.len(), |n| n.min(context.len()));
        let context = &context[context.len() - keep..];
        for (token, length) in self.repeats(context) {
            if length < self.allowed_length {
                continue;
            }
            let exponent = (length - self.allowed_length).min(MAX_EXPONENT);
            if let Some(l) = logits.get_mut(token as usize) {
                *l -= self.multiplier * self.base.powi(exponent as i32);
            }
        }
    }

    /// Each token that follows an earlier occurrence of the context's end, with the longest
    /// such repeat it would extend (breakers cut repeats; a breaker as the next token is never
    /// punished).
    fn repeats(&self, context: &[u32]) -> Vec<(u32, usize)> {
        let n = context.len();
        if n < 2 || self.breakers.has(context[n - 1]) {
            return Vec::new();
        }
        // No repeat reaches past the last breaker.
        let reach = context
            .iter()
            .rev()
            .take_while(|&&t| !self.breakers.has(t))
            .count();
        let reversed: Vec<u32> = context.iter().rev().copied().collect();
        let z = z_function(&reversed);
        let mut longest: std::collections::HashMap<u32, usize> = Default::default();
        for (k, &len) in z.iter().enumerate().skip(1) {
            if len == 0 {
                continue;
            }
            // The repeat ends at n-1-k; the token after it is context[n-k].
            let next = context[n - k];
            if self.breakers.has(next) {
                continue;
            }
            let len = len.min(reach);
            let best = longest.entry(next).or_default();
            *best = (*best).max(len);
        }
        longest.into_iter().collect()
    }
}

/// `z[k]`: the length of the longest common prefix of `s` and `s[k..]` (`z[0] = len`).
fn z_function(s: &[u32]) -> Vec<usize> {
    let n = s.len();
    let mut z = vec![0; n];
    if n == 0 {
        return z;
    }
    z[0] = n;
    let (mut l, mut r) = (0, 0);
    for i in 1..n {
        if i < r {
            z[i] = z[i - l].min(r - i);
        }
        while i + z[i] < n && s[z[i]] == s[i + z[i]] {
            z[i] += 1;
        }
        if i + z[i] > r {
            l = i;
            r = i + z[i];
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    /// text-generation-webui's loop: from each earlier occurrence of the last token, walk back
    /// while the tokens agree with the context's end and are no breakers.
    fn reference(context: &[u32], breakers: &Breakers) -> Vec<(u32, usize)> {
        let n = context.len();
        let mut longest = std::collections::BTreeMap::new();
        if n < 2 || breakers.has(context[n - 1]) {
            return Vec::new();
        }
        for i in 0..n - 1 {
            if context[i] != context[n - 1] || breakers.has(context[i + 1]) {
                continue;
            }
            let mut len = 1;
            while len <= i {
                let previous = context[n - 1 - len];
                if context[i - len] != previous || breakers.has(previous) {
                    break;
                }
                len += 1;
            }
            let best = longest.entry(context[i + 1]).or_insert(0);
            *best = (*best).max(len);
        }
        longest.into_iter().collect()
    }

    fn params(breakers: &[u32], vocab: usize) -> DryParams {
        let mut set = vec![false; vocab];
        for &b in breakers {
            set[b as usize] = true;
        }
        DryParams {
            multiplier: 0.8,
            base: 1.75,
            allowed_length: 2,
            last_n: None,
            breakers: Breakers(Arc::new(set)),
        }
    }

    #[test]
    fn repeats_are_what_walking_back_finds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let p = params(&[0], 6);
        for _ in 0..500 {
            let n = rng.random_range(0..60);
            // A small alphabet repeats often; 0 is a breaker.
            let context: Vec<u32> = (0..n).map(|_| rng.random_range(0..6)).collect();
            let mut got = p.repeats(&context);
            got.sort_unstable();
            assert_eq!(got, reference(&context, &p.breakers), "{context:?}");
        }
    }

    #[test]
    fn a_longer_copy_costs_more_and_breakers_stop_it() {
        let mut p = params(&[9], 16);
        // "1 2 3 4 5 ... 1 2 3": 4 would continue a repeat of length 3.
        let mut logits = vec![0.0f32; 16];
        p.apply(&mut logits, &[1, 2, 3, 4, 5, 6, 1, 2, 3]);
        let expected = 0.8 * 1.75f32.powi(1);
        assert!((logits[4] + expected).abs() < 1e-6, "{logits:?}");
        assert!(logits.iter().enumerate().all(|(i, &l)| i == 4 || l == 0.0));
        // A repeat as long as the allowed length costs the multiplier; a shorter one nothing.
        let mut logits = vec![0.0f32; 16];
        p.apply(&mut logits, &[1, 2, 3, 4, 5, 6, 7, 2, 3]);
        assert!((logits[4] + 0.8).abs() < 1e-6, "{logits:?}");
        let mut logits = vec![0.0f32; 16];
        p.apply(&mut logits, &[1, 2, 3, 4, 5, 6, 7, 8, 3]);
        assert!(logits.iter().all(|&l| l == 0.0), "{logits:?}");
        // A breaker inside the end cuts the repeat to what follows it.
        let context = [1, 9, 2, 3, 4, 1, 9, 2, 3];
        let mut logits = vec![0.0f32; 16];
        p.apply(&mut logits, &context);
        assert!(
            (logits[4] + 0.8).abs() < 1e-6,
            "length 2, not 4: {logits:?}"
        );
        // Only the last `last_n` tokens are searched.
        p.last_n = Some(4);
        let mut logits = vec![0.0f32; 16];
        p.apply(&mut logits, &context);
        assert!(logits.iter().all(|&l| l == 0.0), "{logits:?}");
    }

    #[test]
    fn endless_repeats_stay_finite() {
        let p = params(&[], 4);
        let mut logits = vec![0.0f32; 4];
        p.apply(&mut logits, &[1; 3010]);
        assert!(logits[1].is_finite() && logits[1] < -1e9, "{logits:?}");
    }
}
