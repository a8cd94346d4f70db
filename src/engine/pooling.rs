//! One embedding from a prompt's final hidden states (`/v1/embeddings`): the last token's
//! (decoder embedding models such as Qwen3-Embedding, and vLLM's default for a generative
//! model) or the mean over every token; or none, every token's state kept (llama-server's
//! `--pooling none`, for late-interaction retrieval). The engine pools as prefill chunks
//! compute the states, so a long prompt pooled never holds all its rows at once.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The last prompt token's state: in a causal model the only one that saw the whole text.
    Last,
    /// The mean of every prompt token's state.
    Mean,
    /// Every prompt token's state, one after another.
    None,
}

impl Pooling {
    /// From a GGUF's `{arch}.pooling_type` (llama.cpp's codes: 0 none, 1 mean, 2 cls, 3 last,
    /// 4 rank); `None` for the kinds a causal model cannot pool with here.
    pub fn from_gguf_code(code: u64) -> Option<Pooling> {
        match code {
            1 => Some(Pooling::Mean),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }

    /// Whether it reads every prompt position's state (not the last alone).
    pub fn reads_every_row(self) -> bool {
        matches!(self, Pooling::Mean | Pooling::None)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Last => "last",
            Pooling::Mean => "mean",
            Pooling::None => "none",
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "none" => Ok(Pooling::None),
            other => Err(format!("unknown pooling `{other}` (last, mean, none)")),
        }
    }
}

/// A sequence's embedding as its prefill computes it: for `Mean` the running sum, for `Last`
/// the last row; `upto` prompt positions taken in so far, so a sequence preempted and computed
/// again does not count a position twice.
#[derive(Debug, Default)]
pub struct Pool {
    acc: Vec<f32>,
    upto: usize,
}

impl Pool {
    /// Positions taken in so far.
    pub fn upto(&self) -> usize {
        self.upto
    }

    /// Take in the hidden states of prompt positions `first..first + rows.len()`.
    pub fn take_in<'a>(
        &mut self,
        pooling: Pooling,
        first: usize,
        rows: impl IntoIterator<Item = &'a [f32]>,
    ) {
        for (pos, row) in (first..).zip(rows) {
            if pos < self.upto || row.is_empty() {
                continue;
            }
            match pooling {
                Pooling::Last => self.acc = row.to_vec(),
                Pooling::Mean if self.acc.is_empty() => self.acc = row.to_vec(),
                Pooling::Mean => {
                    for (a, x) in self.acc.iter_mut().zip(row) {
                        *a += x;
                    }
                }
                Pooling::None => self.acc.extend_from_slice(row),
            }
            self.upto = pos + 1;
        }
    }

    /// The embedding of the `prompt_len` positions taken in (not yet normalised); without
    /// pooling, each position's in turn.
    pub fn embedding(&self, pooling: Pooling, prompt_len: usize) -> Vec<f32> {
        match pooling {
            Pooling::Last | Pooling::None => self.acc.clone(),
            Pooling::Mean => {
                let n = prompt_len.max(1) as f32;
                self.acc.iter().map(|x| x / n).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_counts_each_position_once_across_chunks_and_recomputation() {
        let mut pool = Pool::default();
        let rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        pool.take_in(Pooling::Mean, 0, rows[..2].iter().map(|r| &r[..]));
        // Preempted and computed again from 0: positions 0 and 1 are not counted twice.
        pool.take_in(Pooling::Mean, 0, rows.iter().map(|r| &r[..]));
        assert_eq!(pool.upto(), 3);
        assert_eq!(pool.embedding(Pooling::Mean, 3), [3.0, 4.0]);
    }

    #[test]
    fn none_keeps_every_position_once() {
        let mut pool = Pool::default();
        let rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        pool.take_in(Pooling::None, 0, rows[..2].iter().map(|r| &r[..]));
        pool.take_in(Pooling::None, 0, rows.iter().map(|r| &r[..]));
        assert_eq!(
            pool.embedding(Pooling::None, 3),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!("none".parse::<Pooling>(), Ok(Pooling::None));
    }

    #[test]
    fn last_keeps_the_last_position() {
        let mut pool = Pool::default();
        pool.take_in(Pooling::Last, 4, [&[7.0, 8.0][..]]);
        assert_eq!(pool.upto(), 5);
        assert_eq!(pool.embedding(Pooling::Last, 5), [7.0, 8.0]);
    }

    #[test]
    fn gguf_codes_and_names() {
        assert_eq!(Pooling::from_gguf_code(1), Some(Pooling::Mean));
        assert_eq!(Pooling::from_gguf_code(3), Some(Pooling::Last));
        assert_eq!(Pooling::from_gguf_code(2), None);
        assert_eq!("mean".parse::<Pooling>(), Ok(Pooling::Mean));
        assert!("cls".parse::<Pooling>().is_err());
    }
}
