//! vLLM's `allowed_token_ids` and `bad_words`: tokens a request may never draw. The allowed
//! set keeps only its tokens; a bad word (as token sequences) bans its last token wherever the
//! answer has just written the rest of it, and a one-token word everywhere, so the word never
//! appears whole in the answer. The prompt is not looked at, as in vLLM: a bad word the prompt
//! ends with may still be finished once (the answer never contains it whole on its own).

/// What a request may not draw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Banned {
    /// Sorted and without repeats: the only tokens it may draw (None: any).
    allowed: Option<Vec<u32>>,
    /// Each bad word's tokens, none empty.
    words: Vec<Vec<u32>>,
}

impl Banned {
    /// `allowed` (any order, repeats allowed) and bad words as token sequences (empty ones
    /// dropped; the same sequence twice counts once).
    pub fn new(allowed: Option<Vec<u32>>, words: Vec<Vec<u32>>) -> Self {
        let allowed = allowed.map(|mut ids| {
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let mut kept: Vec<Vec<u32>> = Vec::new();
        for word in words {
            if !word.is_empty() && !kept.contains(&word) {
                kept.push(word);
            }
        }
        Banned {
            allowed,
            words: kept,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_none() && self.words.is_empty()
    }

    /// Set to -inf the logit of every token that may not come after `generated`.
    pub fn apply(&self, logits: &mut [f32], generated: &[u32]) {
        if let Some(allowed) = &self.allowed {
            let mut next = allowed.iter().peekable();
            for (id, l) in (0u32..).zip(logits.iter_mut()) {
                if next.next_if_eq(&&id).is_none() {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        for word in &self.words {
            let (last, before) = word.split_last().expect("no empty word is kept");
            if generated.ends_with(before) {
                if let Some(l) = logits.get_mut(*last as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banned_after(b: &Banned, generated: &[u32]) -> Vec<u32> {
        let mut logits = vec![0.0; 8];
        b.apply(&mut logits, generated);
        (0u32..)
            .zip(&logits)
            .filter(|(_, l)| l.is_infinite())
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn only_allowed_tokens_are_left() {
        let b = Banned::new(Some(vec![6, 2, 2, 40]), Vec::new());
        assert_eq!(banned_after(&b, &[]), [0, 1, 3, 4, 5, 7]);
        assert!(Banned::new(None, vec![vec![]]).is_empty());
    }

    #[test]
    fn a_bad_word_loses_its_last_token_once_the_rest_is_written() {
        let b = Banned::new(None, vec![vec![3], vec![1, 2, 5], vec![1, 2, 5]]);
        assert_eq!(banned_after(&b, &[]), [3], "one token: always");
        assert_eq!(banned_after(&b, &[7, 1]), [3]);
        assert_eq!(banned_after(&b, &[7, 1, 2]), [3, 5]);
        assert_eq!(banned_after(&b, &[1, 2, 4]), [3]);
        // Both rules at once, a word outside the vocabulary's logits ignored.
        let b = Banned::new(Some(vec![0, 5, 6]), vec![vec![4, 6], vec![99]]);
        assert_eq!(banned_after(&b, &[4]), [1, 2, 3, 4, 6, 7]);
    }
}
