//! RoPE over part of each head (Phi-4-mini's 96 of 128 dimensions, GLM-4's half) run as a
//! rotation of the whole head, so every backend's RoPE and fused kernels serve: q's and k's
//! rows are laid out at load so the rotated pairs sit where a whole-head rotation pairs them
//! and the others get a frequency of 0, which leaves them exactly as they are
//! (`rope::partial_rope_spec`, `rope::partial_head_sources`). Scores are q·k, the same under
//! the same permutation of both. Biases and per-head norms of q and k follow the rows.
//!
//! A scaled RoPE's attention factor (LongRoPE, YaRN) must multiply the rotated dimensions
//! only, so it is folded too: into the rotated rows, or, where a per-head norm comes between
//! the product and RoPE (and would undo a scale of its input), into the norm's weights.
use crate::error::Result;
use crate::rope::partial_head_sources;
use crate::spec::ModelSpec;
use crate::weights::{pick_tensor_rows, HostWeight};

/// Which of q, k, v a weight holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkvPart {
    Q,
    K,
    V,
    /// q, k and v joined (Phi-3's `qkv_proj`).
    Joined,
}

pub struct PartialRope {
    /// For each position of a laid-out head, the HF dimension it holds and whether it rotates.
    head: Vec<(usize, bool)>,
    heads: usize,
    kv_heads: usize,
    factor: f32,
    /// Per-head q/k norms: the factor goes into their weights, not the rows.
    normed: bool,
}

impl PartialRope {
    /// For a model of `spec` rotating the first `rotary` dimensions of each head, with the
    /// attention factor `factor` (1 unless its RoPE is scaled).
    pub fn new(spec: &ModelSpec, rotary: usize, factor: f32) -> Self {
        PartialRope {
            head: partial_head_sources(spec.head_dim, rotary, spec.rope.style),
            heads: spec.num_heads,
            kv_heads: spec.num_kv_heads,
            factor,
            normed: spec.qk_norm,
        }
    }

    /// Row sources and scales of a weight holding `part`: q's and k's heads laid out (their
    /// rotated rows times the factor unless a norm takes it), v's as they are.
    fn rows(&self, part: QkvPart) -> (Vec<usize>, Vec<f32>) {
        let d = self.head.len();
        let held: &[(usize, bool)] = match part {
            QkvPart::Q => &[(self.heads, true)],
            QkvPart::K => &[(self.kv_heads, true)],
            QkvPart::V => &[(self.kv_heads, false)],
            QkvPart::Joined => &[
                (self.heads, true),
                (self.kv_heads, true),
                (self.kv_heads, false),
            ],
        };
        let row_factor = if self.normed { 1.0 } else { self.factor };
        let (mut rows, mut scales) = (Vec::new(), Vec::new());
        for &(heads, laid_out) in held {
            let base = rows.len();
            for h in 0..heads {
                for (p, &(j, rotated)) in self.head.iter().enumerate() {
                    rows.push(base + h * d + if laid_out { j } else { p });
                    scales.push(if laid_out && rotated { row_factor } else { 1.0 });
                }
            }
        }
        (rows, scales)
    }

    /// A q/k/v weight (`[rows, in]`) laid out: exact row picks in the weight's own storage
    /// where every scale is 1, a rebuilt dense weight otherwise.
    pub fn fold_rows(&self, w: HostWeight, part: QkvPart) -> Result<HostWeight> {
        let (rows, scales) = self.rows(part);
        w.pick_rows_scaled(&rows.into_iter().map(Some).collect::<Vec<_>>(), &scales)
    }

    /// A q/k/v bias laid out as its weight's rows.
    pub fn fold_bias(&self, b: HostWeight, part: QkvPart) -> Result<HostWeight> {
        let (rows, scales) = self.rows(part);
        fold_vector(b, &rows, &scales)
    }

    /// A per-head q or k norm's weight (`[head_dim]`, or `[heads, head_dim]` where each of
    /// `heads` has its own) laid out as the heads, its rotated dimensions times the attention
    /// factor.
    pub fn fold_norm(&self, w: HostWeight, heads: usize) -> Result<HostWeight> {
        let d = self.head.len();
        let (mut rows, mut scales) = (Vec::new(), Vec::new());
        for h in 0..heads {
            for &(j, rotated) in &self.head {
                rows.push(h * d + j);
                scales.push(if rotated { self.factor } else { 1.0 });
            }
        }
        fold_vector(w, &rows, &scales)
    }
}

/// Elements `rows` of the vector `w`, each times its scale (kept dense, its source dtype
/// recorded).
fn fold_vector(w: HostWeight, rows: &[usize], scales: &[f32]) -> Result<HostWeight> {
    let values = w.to_f32()?;
    let column = values.reshape((values.elem_count(), 1))?;
    let sources: Vec<Option<usize>> = rows.iter().copied().map(Some).collect();
    Ok(HostWeight::Dense {
        tensor: pick_tensor_rows(&column, &sources, Some(scales))?.flatten_all()?,
        source: w.dtype().unwrap_or(crate::backend::WeightDtype::F32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn layout(normed: bool) -> PartialRope {
        // head_dim 4, rotary 2: HF dims [r0, r1, p0, p1] → positions [r0, p0, r1, p1].
        PartialRope {
            head: partial_head_sources(4, 2, crate::backend::RopeStyle::Neox),
            heads: 2,
            kv_heads: 1,
            factor: 2.0,
            normed,
        }
    }

    #[test]
    fn q_and_k_rows_are_laid_out_and_v_kept() {
        let (rows, scales) = layout(false).rows(QkvPart::Joined);
        assert_eq!(rows[..4], [0, 2, 1, 3]);
        assert_eq!(rows[4..8], [4, 6, 5, 7]);
        assert_eq!(rows[8..12], [8, 10, 9, 11]);
        assert_eq!(rows[12..], [12, 13, 14, 15]);
        assert_eq!(scales[..4], [2.0, 1.0, 2.0, 1.0]);
        assert_eq!(scales[12..], [1.0; 4]);
        // With per-head norms the factor goes into the norms instead.
        let (_, scales) = layout(true).rows(QkvPart::Q);
        assert!(scales.iter().all(|&s| s == 1.0));
        let norm = HostWeight::Dense {
            tensor: Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], 4, &Device::Cpu).unwrap(),
            source: crate::backend::WeightDtype::F32,
        };
        let folded = layout(true).fold_norm(norm, 1).unwrap().to_f32().unwrap();
        assert_eq!(folded.to_vec1::<f32>().unwrap(), vec![2.0, 3.0, 4.0, 4.0]);
        // Each head its own weights (Command R+): every head laid out the same way.
        let norms = HostWeight::Dense {
            tensor: Tensor::from_vec((1..=8).map(|v| v as f32).collect(), (2, 4), &Device::Cpu)
                .unwrap(),
            source: crate::backend::WeightDtype::F32,
        };
        let folded = layout(true).fold_norm(norms, 2).unwrap().to_f32().unwrap();
        assert_eq!(
            folded.to_vec1::<f32>().unwrap(),
            vec![2.0, 3.0, 4.0, 4.0, 10.0, 7.0, 12.0, 8.0]
        );
    }
}
