//! The heads that make a sparse vector over the vocabulary from an input's final states:
//! SPLADE's (a masked LM's scores, pooled: `super::splade`) or BGE-M3's lexical weights
//! (`super::lexical`).
use super::lexical::LexicalHead;
use super::splade::Splade;
use crate::error::Result;
use candle_core::Tensor;

pub enum SparseHead {
    Splade(Splade),
    Lexical(LexicalHead),
}

impl SparseHead {
    /// One input's vector over a vocabulary of `vocab` entries, from its tokens `ids` and
    /// their final states (`[tokens, hidden]`), on the host.
    pub fn pool(&self, states: &Tensor, ids: &[u32], vocab: usize) -> Result<Vec<f32>> {
        match self {
            SparseHead::Splade(splade) => splade.pool(states),
            SparseHead::Lexical(head) => head.pool(states, ids, vocab),
        }
    }
}
