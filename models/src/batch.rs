//! A batched, variable-length forward request: several sequences, each a chunk of new tokens
//! (a prefill chunk or one decode token) appended after the tokens already in its paged KV cache.
use crate::error::{ModelError, Result};
use crate::lora::LoraMix;

/// Which logits a sequence wants back from a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsWanted {
    /// No logits (a prefill chunk that is not the last one).
    None,
    /// Logits of the last new token (the usual prefill/decode case).
    Last,
    /// Logits of every new token (teacher forcing, scoring, golden checks).
    All,
    /// Only the index of the last new token's largest logit (greedy sampling that reports no
    /// logprobs), found on the device: a step then brings back a token id, not a vocabulary of
    /// floats per sequence (19 MB per step for 32 sequences of a 150k vocabulary).
    Argmax,
    /// The index of the largest logit of every new token, found on the device (greedy
    /// checking of drafted tokens: a row per draft, each needing only its pick).
    ArgmaxAll,
    /// No logits: the last new token's final hidden state (after the final norm), for an
    /// embedding pooled from the last token.
    HiddenLast,
    /// No logits: every new token's final hidden state, for an embedding pooled over all.
    HiddenAll,
    /// No logits; the final hidden state of the chunk's first row (a prompt's first token,
    /// for `[CLS]` pooling: asked of the chunk that starts the prompt).
    HiddenFirst,
    /// No logits, no states: the sequence's sparse vector over the vocabulary (SPLADE's
    /// pooled masked-LM scores, or BGE-M3's lexical weights), one row of the step's `sparse`
    /// output; asked of an encoder's whole prompt.
    Sparse,
}

/// One sequence's part of a batch.
#[derive(Debug, Clone)]
pub struct SeqInput {
    /// New tokens to run.
    pub tokens: Vec<u32>,
    /// Number of tokens of this sequence already in the KV cache (position of `tokens[0]`).
    pub start_pos: usize,
    /// Physical KV block of each logical block; must cover `start_pos + tokens.len()` tokens.
    pub block_table: Vec<u32>,
    pub logits: LogitsWanted,
    /// The LoRA adapters it runs with, at their scales (`LoraMix::BASE`: the base model
    /// alone).
    pub lora: LoraMix,
    /// Where its recurrent state is kept, for a model that keeps one
    /// (`ModelSpec::keeps_sequence_state`): the same slot at every step of the sequence, no
    /// other sequence's while it runs (the engine's running slot). A step from position 0
    /// starts the slot afresh. Other models ignore it.
    pub state_slot: u32,
}

impl SeqInput {
    /// Which of its new tokens' rows the pass brings back (indices into `tokens`), in order:
    /// what a step's output holds for this sequence.
    pub fn logit_rows(&self) -> std::ops::Range<usize> {
        let n = self.tokens.len();
        match self.logits {
            LogitsWanted::None
            | LogitsWanted::HiddenLast
            | LogitsWanted::HiddenAll
            | LogitsWanted::HiddenFirst
            | LogitsWanted::Sparse => n..n,
            LogitsWanted::Last | LogitsWanted::Argmax => n.saturating_sub(1)..n,
            LogitsWanted::All | LogitsWanted::ArgmaxAll => 0..n,
        }
    }

    /// Which of its new tokens' final hidden states the pass brings back (indices into
    /// `tokens`), in order.
    pub fn hidden_rows(&self) -> std::ops::Range<usize> {
        let n = self.tokens.len();
        match self.logits {
            LogitsWanted::HiddenLast => n.saturating_sub(1)..n,
            LogitsWanted::HiddenAll => 0..n,
            LogitsWanted::HiddenFirst => 0..n.min(1),
            _ => n..n,
        }
    }

    /// Whether its rows come back as the device's picks rather than values.
    pub fn argmax_only(&self) -> bool {
        matches!(self.logits, LogitsWanted::Argmax | LogitsWanted::ArgmaxAll)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub seqs: Vec<SeqInput>,
}

/// Per-sequence attention metadata over the flattened token axis.
#[derive(Debug, Clone)]
pub struct SeqAttention {
    /// First row of this sequence's queries in the flattened batch.
    pub q_start: usize,
    pub q_len: usize,
    /// Position of the first query token (= tokens already cached before this step).
    pub start_pos: usize,
    pub block_table: Vec<u32>,
}

impl SeqAttention {
    /// Total keys visible to the last query of the sequence.
    pub fn context_len(&self) -> usize {
        self.start_pos + self.q_len
    }

    /// The KV slot of position `pos` (its block's first slot plus its offset); None past the
    /// block table.
    pub fn slot(&self, pos: usize, block_size: usize) -> Option<u32> {
        let block = *self.block_table.get(pos / block_size)? as usize;
        Some((block * block_size + pos % block_size) as u32)
    }
}

/// The batch flattened along the token axis, as models and backends consume it.
#[derive(Debug, Clone)]
pub struct FlatBatch {
    pub ids: Vec<u32>,
    pub positions: Vec<u32>,
    /// KV slot (block * block_size + offset) each new token is written to.
    pub slots: Vec<u32>,
    pub seqs: Vec<SeqAttention>,
    /// Rows of the flattened batch whose logits are computed, in order.
    pub logit_rows: Vec<u32>,
    /// For each of `logit_rows`: whether only its argmax is wanted (`LogitsWanted::Argmax`).
    pub argmax_only: Vec<bool>,
    /// Rows of the flattened batch whose final hidden states are brought back, in order.
    pub hidden_rows: Vec<u32>,
    /// Each sequence's LoRA adapters (`SeqInput::lora`), in the order of `seqs`.
    pub adapters: Vec<LoraMix>,
    /// Each sequence's recurrent-state slot (`SeqInput::state_slot`), in the order of `seqs`.
    pub state_slots: Vec<u32>,
    pub block_size: usize,
}

impl FlatBatch {
    pub fn new(batch: &Batch, block_size: usize, num_blocks: usize, vocab: usize) -> Result<Self> {
        if block_size == 0 {
            return Err(ModelError::InvalidBatch("block size is 0".into()));
        }
        let total: usize = batch.seqs.iter().map(|s| s.tokens.len()).sum();
        let mut flat = FlatBatch {
            ids: Vec::with_capacity(total),
            positions: Vec::with_capacity(total),
            slots: Vec::with_capacity(total),
            seqs: Vec::with_capacity(batch.seqs.len()),
            logit_rows: Vec::new(),
            argmax_only: Vec::new(),
            hidden_rows: Vec::new(),
            adapters: Vec::with_capacity(batch.seqs.len()),
            state_slots: Vec::with_capacity(batch.seqs.len()),
            block_size,
        };
        for (i, seq) in batch.seqs.iter().enumerate() {
            if seq.tokens.is_empty() {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} has no tokens"
                )));
            }
            let end = seq.start_pos + seq.tokens.len();
            let needed = end.div_ceil(block_size);
            if seq.block_table.len() < needed {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} needs {needed} KV blocks for {end} tokens, its block table has {}",
                    seq.block_table.len()
                )));
            }
            if let Some(&b) = seq.block_table.iter().find(|&&b| b as usize >= num_blocks) {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} refers to KV block {b}, the cache has {num_blocks}"
                )));
            }
            let q_start = flat.ids.len();
            let attention = SeqAttention {
                q_start,
                q_len: seq.tokens.len(),
                start_pos: seq.start_pos,
                block_table: seq.block_table.clone(),
            };
            for (j, &tok) in seq.tokens.iter().enumerate() {
                if tok as usize >= vocab {
                    return Err(ModelError::TokenOutOfVocab { id: tok, vocab });
                }
                let pos = seq.start_pos + j;
                let slot = attention.slot(pos, block_size).ok_or_else(|| {
                    ModelError::InvalidBatch(format!("sequence {i}: position {pos} has no block"))
                })?;
                flat.ids.push(tok);
                flat.positions.push(pos as u32);
                flat.slots.push(slot);
            }
            for r in seq.logit_rows() {
                flat.logit_rows.push((q_start + r) as u32);
                flat.argmax_only.push(seq.argmax_only());
            }
            for r in seq.hidden_rows() {
                flat.hidden_rows.push((q_start + r) as u32);
            }
            flat.adapters.push(seq.lora.clone());
            flat.state_slots.push(seq.state_slot);
            flat.seqs.push(attention);
        }
        Ok(flat)
    }

    pub fn num_tokens(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(tokens: Vec<u32>, start_pos: usize, table: Vec<u32>, logits: LogitsWanted) -> SeqInput {
        SeqInput {
            state_slot: 0,
            tokens,
            start_pos,
            block_table: table,
            logits,
            lora: LoraMix::BASE,
        }
    }

    #[test]
    fn flattens_mixed_prefill_and_decode() {
        let batch = Batch {
            seqs: vec![
                seq(vec![5, 6, 7], 0, vec![3], LogitsWanted::Last),
                seq(vec![9], 17, vec![0, 2], LogitsWanted::All),
            ],
        };
        let f = FlatBatch::new(&batch, 16, 4, 100).unwrap();
        assert_eq!(f.ids, vec![5, 6, 7, 9]);
        assert_eq!(f.positions, vec![0, 1, 2, 17]);
        assert_eq!(f.slots, vec![48, 49, 50, 2 * 16 + 1]);
        assert_eq!(f.logit_rows, vec![2, 3]);
        assert_eq!(f.argmax_only, vec![false, false]);
        assert_eq!(f.seqs[1].context_len(), 18);
    }

    #[test]
    fn argmax_rows_are_logit_rows_marked_argmax_only() {
        let batch = Batch {
            seqs: vec![
                seq(vec![5, 6], 0, vec![0], LogitsWanted::All),
                seq(vec![9, 8, 7], 0, vec![1], LogitsWanted::Argmax),
                seq(vec![4], 3, vec![2], LogitsWanted::None),
                seq(vec![3], 3, vec![3], LogitsWanted::Last),
                seq(vec![2, 1], 3, vec![3], LogitsWanted::ArgmaxAll),
            ],
        };
        let f = FlatBatch::new(&batch, 16, 4, 100).unwrap();
        assert_eq!(f.logit_rows, vec![0, 1, 4, 6, 7, 8]);
        assert_eq!(f.argmax_only, vec![false, false, true, false, true, true]);
        assert!(f.hidden_rows.is_empty());
    }

    #[test]
    fn hidden_rows_are_apart_from_logit_rows() {
        let batch = Batch {
            seqs: vec![
                seq(vec![5, 6, 7], 0, vec![0], LogitsWanted::HiddenLast),
                seq(vec![9], 4, vec![1], LogitsWanted::Last),
                seq(vec![4, 3], 0, vec![2], LogitsWanted::HiddenAll),
                seq(vec![8, 2, 1], 0, vec![3], LogitsWanted::HiddenFirst),
            ],
        };
        let f = FlatBatch::new(&batch, 16, 4, 100).unwrap();
        assert_eq!(f.logit_rows, vec![3]);
        assert_eq!(f.hidden_rows, vec![2, 4, 5, 6]);
    }

    #[test]
    fn rejects_short_block_table_bad_block_and_bad_token() {
        let short = Batch {
            seqs: vec![seq(vec![1; 17], 0, vec![0], LogitsWanted::Last)],
        };
        assert!(FlatBatch::new(&short, 16, 4, 100).is_err());
        let bad_block = Batch {
            seqs: vec![seq(vec![1], 0, vec![9], LogitsWanted::Last)],
        };
        assert!(FlatBatch::new(&bad_block, 16, 4, 100).is_err());
        let bad_tok = Batch {
            seqs: vec![seq(vec![100], 0, vec![0], LogitsWanted::Last)],
        };
        assert!(matches!(
            FlatBatch::new(&bad_tok, 16, 4, 100),
            Err(ModelError::TokenOutOfVocab {
                id: 100,
                vocab: 100
            })
        ));
    }
}
