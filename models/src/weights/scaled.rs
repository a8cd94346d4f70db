//! A weight source whose tensors come out with rows scaled as `ModelSpec::weight_scales` says:
//! multipliers a checkout keeps apart from its weights (Falcon-H1's muP ones), folded into the
//! weights as they load so that no step multiplies by them.
use super::{HostWeight, WeightSource};
use crate::error::Result;
use crate::spec::WeightScale;

pub struct ScaledSource<'a> {
    inner: &'a dyn WeightSource,
    scales: &'a [WeightScale],
}

impl<'a> ScaledSource<'a> {
    pub fn new(inner: &'a dyn WeightSource, scales: &'a [WeightScale]) -> Self {
        ScaledSource { inner, scales }
    }

    /// The scale runs of canonical tensor `name` (`blk.N.attn_k.weight`), if it has any.
    fn runs_of(&self, name: &str) -> Option<&[(usize, f32)]> {
        let rest = name.strip_prefix("blk.")?;
        let (_, tensor) = rest.split_once('.')?;
        let scale = self.scales.iter().find(|s| s.tensor == tensor)?;
        Some(&scale.runs)
    }
}

/// Each of `rows` rows' scale from consecutive `runs` of (rows, scale), the last run
/// covering whatever remains.
fn row_scales(runs: &[(usize, f32)], rows: usize) -> Vec<f32> {
    let mut scales = Vec::with_capacity(rows);
    for (i, &(len, scale)) in runs.iter().enumerate() {
        let take = match i + 1 == runs.len() {
            true => rows - scales.len(),
            false => len.min(rows - scales.len()),
        };
        scales.extend(std::iter::repeat_n(scale, take));
    }
    scales.resize(rows, 1.0);
    scales
}

impl WeightSource for ScaledSource<'_> {
    fn get(&self, name: &str) -> Result<Option<HostWeight>> {
        let Some(w) = self.inner.get(name)? else {
            return Ok(None);
        };
        let Some(runs) = self.runs_of(name) else {
            return Ok(Some(w));
        };
        let rows = w.shape().first().copied().unwrap_or(0);
        let scales = row_scales(runs, rows);
        let all: Vec<Option<usize>> = (0..rows).map(Some).collect();
        w.pick_rows_scaled(&all, &scales).map(Some)
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_rows_in_order_the_last_to_the_end() {
        assert_eq!(
            row_scales(&[(2, 0.5), (1, 2.0), (0, 3.0)], 5),
            [0.5, 0.5, 2.0, 3.0, 3.0]
        );
        assert_eq!(row_scales(&[(usize::MAX, 4.0)], 2), [4.0, 4.0]);
        assert_eq!(row_scales(&[(1, 2.0), (1, 3.0)], 3), [2.0, 3.0, 3.0]);
    }
}
