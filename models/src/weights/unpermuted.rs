//! A weight source whose q/k projections come back in the checkout's row order where a GGUF
//! holds them permuted over whole heads (llama.cpp's converter permutes them so that its
//! interleaved RoPE pairs what HF's `rotate_half` pairs) yet the model rotates only part of
//! each head (`ModelSpec::qk_rows_permuted`): over a part, the halves HF pairs are not the
//! pairs the permutation made adjacent, so no RoPE style over the permuted rows is the
//! checkout's. Undoing the permutation at load gives the rows back their order, rotated as
//! the checkout is (NeoX over the first `rotary_dim` dimensions).
use super::{HostWeight, WeightSource};
use crate::error::{ModelError, Result};

pub struct UnpermutedSource<'a> {
    inner: &'a dyn WeightSource,
    /// (query heads, key heads, head dim).
    heads: (usize, usize, usize),
}

impl<'a> UnpermutedSource<'a> {
    pub fn new(inner: &'a dyn WeightSource, heads: (usize, usize, usize)) -> Self {
        UnpermutedSource { inner, heads }
    }
}

/// For each row of a checkout's projection of `heads` heads of `dim` rows, the row of its
/// permuted form that holds it: the converter put row `a * dim/2 + b` of a head (half `a`,
/// offset `b`) at `2b + a`.
pub fn unpermuted_rows(heads: usize, dim: usize) -> Vec<Option<usize>> {
    let half = dim / 2;
    (0..heads * dim)
        .map(|r| {
            let (h, within) = (r / dim, r % dim);
            let (a, b) = (within / half.max(1), within % half.max(1));
            Some(h * dim + 2 * b + a)
        })
        .collect()
}

impl WeightSource for UnpermutedSource<'_> {
    fn get(&self, name: &str) -> Result<Option<HostWeight>> {
        let (q_heads, kv_heads, dim) = self.heads;
        let heads = match name.rsplit_once('.').map(|(stem, _)| stem) {
            Some(stem) if stem.ends_with(".attn_q") => q_heads,
            Some(stem) if stem.ends_with(".attn_k") => kv_heads,
            _ => return self.inner.get(name),
        };
        let Some(w) = self.inner.get(name)? else {
            return Ok(None);
        };
        if !name.ends_with(".weight") || w.shape().first() != Some(&(heads * dim)) {
            return Err(ModelError::Config(format!(
                "{name}: rows permuted over {heads} heads of {dim} cannot be restored from a \
                 tensor of shape {:?}",
                w.shape()
            )));
        }
        w.pick_rows(&unpermuted_rows(heads, dim)).map(Some)
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse of llama.cpp's `permute` (reshape to `[heads, 2, dim/2]`, swap the last
    /// two axes): rows 0..4 of a head of 8 were halves (0, 4), (1, 5), ... made adjacent.
    #[test]
    fn rows_return_from_adjacent_pairs_to_halves() {
        let rows: Vec<usize> = unpermuted_rows(2, 8).into_iter().flatten().collect();
        assert_eq!(rows, [0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15]);
        // llama.cpp's permutation of rows 0..8 (what it writes at each position), undone.
        let permuted: Vec<usize> = (0..8).map(|p| (p % 2) * 4 + p / 2).collect();
        let restored: Vec<usize> = rows[..8].iter().map(|&p| permuted[p]).collect();
        assert_eq!(restored, (0..8).collect::<Vec<_>>());
    }
}
