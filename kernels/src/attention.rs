//! Causal attention over a paged KV cache (f32), for mixed prefill and decode rows.
//!
//! The cache of one layer is `[num_slots, kv_heads, head_dim]` with
//! `slot = block_table[pos / block_size] * block_size + pos % block_size`.
use crate::activation::{exp, tanh};
use rayon::prelude::*;

pub struct PagedKv<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub block_size: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// One sequence's queries in the flattened batch.
pub struct SeqQueries<'a> {
    pub q_start: usize,
    pub q_len: usize,
    /// Position of the first query token.
    pub start_pos: usize,
    pub block_table: &'a [u32],
}

pub struct AttnShape {
    pub heads: usize,
    pub scale: f32,
    /// A query at position i sees keys j with `i - window < j <= i`.
    pub window: Option<usize>,
    pub softcap: Option<f32>,
}

/// `out[t, h, :] = softmax(q[t,h,:] · K[j] * scale) · V[j]` over the visible keys of row t's
/// sequence. `q` and `out` are `[tokens, heads, head_dim]`. Rows not covered by `seqs` are
/// left untouched. Panics only on inconsistent slice sizes, which callers validate.
pub fn paged_attention(
    q: &[f32],
    out: &mut [f32],
    kv: &PagedKv,
    seqs: &[SeqQueries],
    shape: &AttnShape,
) {
    let d = kv.head_dim;
    let row = shape.heads * d;
    let group = shape.heads / kv.kv_heads.max(1);
    // Which sequence each row belongs to, and its position.
    let mut owner = vec![usize::MAX; q.len() / row.max(1)];
    for (si, s) in seqs.iter().enumerate() {
        let end = (s.q_start + s.q_len).min(owner.len());
        owner[s.q_start.min(end)..end].fill(si);
    }
    let attend = attend_for_this_cpu();
    // One task per (row, head): a single decode token still spreads its heads over threads.
    out.par_chunks_mut(d.max(1))
        .enumerate()
        .for_each_init(Vec::<f32>::new, |scores, (idx, oh)| {
            let (r, h) = (idx / shape.heads.max(1), idx % shape.heads.max(1));
            let si = owner[r];
            if si == usize::MAX {
                return;
            }
            let s = &seqs[si];
            let pos = s.start_pos + (r - s.q_start);
            let first = match shape.window {
                Some(w) if w > 0 => (pos + 1).saturating_sub(w),
                _ => 0,
            };
            let head = Head {
                q: &q[r * row + h * d..r * row + (h + 1) * d],
                kv,
                kv_head: h / group,
                table: s.block_table,
                first,
                pos,
                scale: shape.scale,
                softcap: shape.softcap,
            };
            attend(&head, scores, oh);
        });
}

/// One query head of one row, and the keys it sees.
struct Head<'a> {
    q: &'a [f32],
    kv: &'a PagedKv<'a>,
    kv_head: usize,
    table: &'a [u32],
    /// Visible key positions: `first..=pos`.
    first: usize,
    pos: usize,
    scale: f32,
    softcap: Option<f32>,
}

type AttendFn = fn(&Head<'_>, &mut Vec<f32>, &mut [f32]);

/// `attend` compiled for AVX2+FMA where the CPU has them (the crate's baseline is SSE2, which
/// halves the width of every dot product and weighted sum), else the baseline instance.
fn attend_for_this_cpu() -> AttendFn {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn attend_avx2(h: &Head<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
            attend(h, scores, out)
        }
        if crate::activation::has_avx2_fma() {
            // SAFETY: the CPU has the features `attend_avx2` is compiled for.
            return |h, scores, out| unsafe { attend_avx2(h, scores, out) };
        }
    }
    attend
}

/// `out = softmax(q · K[j] · scale) · V[j]` over the visible keys, with a fused max-subtracted
/// exponent (the vectorizable `activation::exp`) and one normalisation at the end.
#[inline(always)]
fn attend(h: &Head<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    let kv = h.kv;
    let d = kv.head_dim;
    let slot_of =
        |j: usize| h.table[j / kv.block_size] as usize * kv.block_size + j % kv.block_size;
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for j in h.first..=h.pos {
        let kh = &kv.k[(slot_of(j) * kv.kv_heads + h.kv_head) * d..][..d];
        let mut sc = dot(h.q, kh) * h.scale;
        if let Some(cap) = h.softcap {
            sc = cap * tanh(sc / cap);
        }
        scores.push(sc);
        max = max.max(sc);
    }
    let mut sum = 0f32;
    for sc in scores.iter_mut() {
        *sc = exp(*sc - max);
        sum += *sc;
    }
    let inv = 1.0 / sum;
    out.fill(0.0);
    for (i, j) in (h.first..=h.pos).enumerate() {
        let vh = &kv.v[(slot_of(j) * kv.kv_heads + h.kv_head) * d..][..d];
        let p = scores[i] * inv;
        for (o, v) in out.iter_mut().zip(vh) {
            *o += p * v;
        }
    }
}

/// Dot product in eight independent lanes, so the compiler vectorizes it (a single running
/// sum is a dependency chain floats may not reorder).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense reference: attention of one query over contiguous keys.
    fn dense(q: &[f32], ks: &[Vec<f32>], vs: &[Vec<f32>], scale: f32) -> Vec<f32> {
        let s: Vec<f32> = ks
            .iter()
            .map(|k| k.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() * scale)
            .collect();
        let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f32 = e.iter().sum();
        let mut o = vec![0.0; q.len()];
        for (p, v) in e.iter().zip(vs) {
            for (oi, vi) in o.iter_mut().zip(v) {
                *oi += p / z * vi;
            }
        }
        o
    }

    #[test]
    fn scattered_blocks_match_dense_attention_and_window() {
        let (bs, d) = (2usize, 3usize);
        let n_keys = 5;
        let table = [3u32, 0, 2];
        let mut k = vec![0f32; 4 * bs * d];
        let mut v = vec![0f32; 4 * bs * d];
        let mut ks = vec![];
        let mut vs = vec![];
        for j in 0..n_keys {
            let kj: Vec<f32> = (0..d)
                .map(|e| ((j * 7 + e * 3) % 5) as f32 * 0.3 - 0.5)
                .collect();
            let vj: Vec<f32> = (0..d).map(|e| ((j * 5 + e) % 7) as f32 * 0.2).collect();
            let slot = table[j / bs] as usize * bs + j % bs;
            k[slot * d..slot * d + d].copy_from_slice(&kj);
            v[slot * d..slot * d + d].copy_from_slice(&vj);
            ks.push(kj);
            vs.push(vj);
        }
        let q = vec![0.2f32, -0.4, 0.9, 0.1, 0.3, -0.2];
        let mut out = vec![0f32; 6];
        let kv = PagedKv {
            k: &k,
            v: &v,
            block_size: bs,
            kv_heads: 1,
            head_dim: d,
        };
        let seqs = [SeqQueries {
            q_start: 0,
            q_len: 2,
            start_pos: 3,
            block_table: &table,
        }];
        paged_attention(
            &q,
            &mut out,
            &kv,
            &seqs,
            &AttnShape {
                heads: 1,
                scale: 0.5,
                window: None,
                softcap: None,
            },
        );
        let r0 = dense(&q[0..3], &ks[..4], &vs[..4], 0.5);
        let r1 = dense(&q[3..6], &ks[..5], &vs[..5], 0.5);
        for (a, b) in out.iter().zip(r0.iter().chain(&r1)) {
            assert!((a - b).abs() < 1e-6);
        }
        paged_attention(
            &q,
            &mut out,
            &kv,
            &seqs,
            &AttnShape {
                heads: 1,
                scale: 0.5,
                window: Some(2),
                softcap: None,
            },
        );
        let w1 = dense(&q[3..6], &ks[3..5], &vs[3..5], 0.5);
        for (a, b) in out[3..].iter().zip(&w1) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
