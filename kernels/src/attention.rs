//! Causal attention over a paged KV cache (f32 or f16), for mixed prefill and decode rows.
//!
//! The cache of one layer is `[num_slots, kv_heads, head_dim]` with
//! `slot = block_table[pos / block_size] * block_size + pos % block_size`.
//!
//! An f16 cache halves the KV memory and the bytes decode reads per token (llama.cpp's default
//! for quantized models); its rows are widened to f32 one key at a time (F16C on x86), and all
//! arithmetic stays in f32.
use crate::activation::{exp, tanh};
use half::f16;
use rayon::prelude::*;

/// What a KV cache may hold: f32, or f16 widened on read.
pub trait KvElement: Copy + Default + Send + Sync + 'static {
    /// Store `src` as this type (rounding to nearest for f16).
    fn narrow(src: &[f32], dst: &mut [Self]);
    /// The fastest `attend` instance this CPU runs for caches of this type.
    fn attend_fn() -> AttendFn<Self>;
}

impl KvElement for f32 {
    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn attend_fn() -> AttendFn<f32> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn attend_avx2(h: &Head<'_, f32>, scratch: &mut Scratch, out: &mut [f32]) {
                attend::<f32, Borrowed>(h, scratch, out)
            }
            if crate::activation::has_avx2_fma() {
                // SAFETY: the CPU has the features `attend_avx2` is compiled for.
                return |h, scratch, out| unsafe { attend_avx2(h, scratch, out) };
            }
        }
        // SAFETY: `Borrowed` needs no CPU feature.
        |h, scratch, out| unsafe { attend::<f32, Borrowed>(h, scratch, out) }
    }
}

impl KvElement for f16 {
    fn narrow(src: &[f32], dst: &mut [f16]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src);
    }

    fn attend_fn() -> AttendFn<f16> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn attend_f16c(h: &Head<'_, f16>, scratch: &mut Scratch, out: &mut [f32]) {
                attend::<f16, x86_f16c::Widen>(h, scratch, out)
            }
            if crate::activation::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
                // SAFETY: the CPU has the features `attend_f16c` is compiled for, which are
                // also what `x86_f16c::Widen` needs.
                return |h, scratch, out| unsafe { attend_f16c(h, scratch, out) };
            }
        }
        // SAFETY: `Portable` needs no CPU feature.
        |h, scratch, out| unsafe { attend::<f16, Portable>(h, scratch, out) }
    }
}

/// The two products `attend` takes with one cached row, for a cache element type.
trait RowOps<E> {
    /// `q · k`. `buf` (at least `k.len()` long) is scratch for a widened copy.
    ///
    /// # Safety
    /// The CPU must have the features the implementation uses (see each type).
    unsafe fn dot(q: &[f32], k: &[E], buf: &mut [f32]) -> f32;
    /// `out += p · v`, with `buf` as for `dot`.
    ///
    /// # Safety
    /// As for `dot`.
    unsafe fn axpy(p: f32, v: &[E], out: &mut [f32], buf: &mut [f32]);
}

/// f32 rows, read in place.
struct Borrowed;
impl RowOps<f32> for Borrowed {
    #[inline(always)]
    unsafe fn dot(q: &[f32], k: &[f32], _: &mut [f32]) -> f32 {
        dot(q, k)
    }
    #[inline(always)]
    unsafe fn axpy(p: f32, v: &[f32], out: &mut [f32], _: &mut [f32]) {
        axpy(p, v, out)
    }
}

/// f16 rows widened into the scratch by `half`'s slice conversion (runtime-detected SIMD
/// where it has one), then the f32 products.
struct Portable;
impl Portable {
    #[inline(always)]
    fn widen<'b>(src: &[f16], buf: &'b mut [f32]) -> &'b [f32] {
        use half::slice::HalfFloatSliceExt;
        let buf = &mut buf[..src.len()];
        src.convert_to_f32_slice(buf);
        buf
    }
}
impl RowOps<f16> for Portable {
    #[inline(always)]
    unsafe fn dot(q: &[f32], k: &[f16], buf: &mut [f32]) -> f32 {
        dot(q, Portable::widen(k, buf))
    }
    #[inline(always)]
    unsafe fn axpy(p: f32, v: &[f16], out: &mut [f32], buf: &mut [f32]) {
        axpy(p, Portable::widen(v, buf), out)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_f16c {
    use half::f16;
    use std::arch::x86_64::*;

    /// f16 rows widened eight at a time with VCVTPH2PS straight into the FMAs, inlined into
    /// the F16C `attend` instance: no widened copy is stored and read back.
    pub struct Widen;
    impl super::RowOps<f16> for Widen {
        /// # Safety
        /// The CPU must have AVX, FMA and F16C.
        #[inline(always)]
        unsafe fn dot(q: &[f32], k: &[f16], _: &mut [f32]) -> f32 {
            let n = q.len().min(k.len());
            let (q, k) = (&q[..n], &k[..n]);
            // Two accumulators: the FMA latency is not one chain over the whole row.
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            // SAFETY (all intrinsics below): loads stay within `q` and `k` (i + 16 <= n,
            // i + 8 <= n); the caller guarantees the CPU features.
            unsafe {
                while i + 16 <= n {
                    let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i).cast()));
                    let k1 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8).cast()));
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), k0, a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i + 8)), k1, a1);
                    i += 16;
                }
                if i + 8 <= n {
                    let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i).cast()));
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), k0, a0);
                    i += 8;
                }
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(a0, a1));
                let tail: f32 = q[i..]
                    .iter()
                    .zip(&k[i..])
                    .map(|(a, b)| a * b.to_f32())
                    .sum();
                lanes.iter().sum::<f32>() + tail
            }
        }

        /// # Safety
        /// As for `dot`.
        #[inline(always)]
        unsafe fn axpy(p: f32, v: &[f16], out: &mut [f32], _: &mut [f32]) {
            let n = v.len().min(out.len());
            let mut i = 0;
            // SAFETY: as in `dot`, within `v` and `out`.
            unsafe {
                let pv = _mm256_set1_ps(p);
                while i + 8 <= n {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
                    let o = out.as_mut_ptr().add(i);
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(pv, x, _mm256_loadu_ps(o)));
                    i += 8;
                }
            }
            for (o, x) in out[i..n].iter_mut().zip(&v[i..n]) {
                *o += p * x.to_f32();
            }
        }
    }
}

pub struct PagedKv<'a, E = f32> {
    pub k: &'a [E],
    pub v: &'a [E],
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
pub fn paged_attention<E: KvElement>(
    q: &[f32],
    out: &mut [f32],
    kv: &PagedKv<'_, E>,
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
    let attend = E::attend_fn();
    // One task per (row, head): a single decode token still spreads its heads over threads.
    out.par_chunks_mut(d.max(1)).enumerate().for_each_init(
        Scratch::default,
        |scratch, (idx, oh)| {
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
            attend(&head, scratch, oh);
        },
    );
}

/// One query head of one row, and the keys it sees.
pub struct Head<'a, E> {
    q: &'a [f32],
    kv: &'a PagedKv<'a, E>,
    kv_head: usize,
    table: &'a [u32],
    /// Visible key positions: `first..=pos`.
    first: usize,
    pos: usize,
    scale: f32,
    softcap: Option<f32>,
}

/// One compiled instance of `attend` for caches of `E`.
pub type AttendFn<E> = fn(&Head<'_, E>, &mut Scratch, &mut [f32]);

/// Per-task buffers of `attend`, reused across the heads a task runs.
#[derive(Default)]
pub struct Scratch {
    scores: Vec<f32>,
    /// One K or V row widened to f32 (unused for f32 caches).
    row: Vec<f32>,
}

/// `out = softmax(q · K[j] · scale) · V[j]` over the visible keys, with a fused max-subtracted
/// exponent (the vectorizable `activation::exp`) and one normalisation at the end.
///
/// # Safety
/// The CPU must have the features `R` needs (the instances in `KvElement::attend_fn` check).
#[inline(always)]
unsafe fn attend<E, R: RowOps<E>>(h: &Head<'_, E>, scratch: &mut Scratch, out: &mut [f32]) {
    let kv = h.kv;
    let d = kv.head_dim;
    let Scratch { scores, row } = scratch;
    if row.len() < d {
        row.resize(d, 0.0);
    }
    let buf = row.as_mut_slice();
    let slot_of =
        |j: usize| h.table[j / kv.block_size] as usize * kv.block_size + j % kv.block_size;
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for j in h.first..=h.pos {
        let kh = &kv.k[(slot_of(j) * kv.kv_heads + h.kv_head) * d..][..d];
        // SAFETY: forwarded from this function's contract.
        let mut sc = unsafe { R::dot(h.q, kh, buf) } * h.scale;
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
        // SAFETY: as above.
        unsafe { R::axpy(scores[i] * inv, vh, out, buf) };
    }
}

/// `out += p · v`.
#[inline(always)]
fn axpy(p: f32, v: &[f32], out: &mut [f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += p * x;
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

    /// A pseudo-random value in [-1, 1) from an index (no RNG dependency in this crate).
    fn noise(i: usize) -> f32 {
        let x = (i as u32).wrapping_mul(2_654_435_761).rotate_left(13) ^ 0x9e37_79b9;
        (x.wrapping_mul(2_246_822_519) >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }

    #[test]
    fn f16_cache_matches_dense_attention_over_the_rounded_values() {
        // head_dim 67: eight-wide chunks plus a tail; two query heads share one KV head.
        let (bs, d, heads, n_keys) = (4usize, 67usize, 2usize, 9usize);
        let table = [2u32, 0, 1];
        let slots = 3 * bs;
        let mut k = vec![f16::ZERO; slots * d];
        let mut v = vec![f16::ZERO; slots * d];
        let (mut ks, mut vs) = (vec![], vec![]);
        for j in 0..n_keys {
            let kj: Vec<f32> = (0..d).map(|e| noise(j * d + e)).collect();
            let vj: Vec<f32> = (0..d).map(|e| noise(10_000 + j * d + e)).collect();
            let slot = table[j / bs] as usize * bs + j % bs;
            f16::narrow(&kj, &mut k[slot * d..][..d]);
            f16::narrow(&vj, &mut v[slot * d..][..d]);
            // The reference sees what the cache holds: the values rounded to f16.
            ks.push(kj.iter().map(|&x| f16::from_f32(x).to_f32()).collect());
            vs.push(
                vj.iter()
                    .map(|&x| f16::from_f32(x).to_f32())
                    .collect::<Vec<_>>(),
            );
        }
        let q: Vec<f32> = (0..heads * d).map(|i| noise(50_000 + i)).collect();
        let mut out = vec![0f32; heads * d];
        let kv = PagedKv {
            k: &k,
            v: &v,
            block_size: bs,
            kv_heads: 1,
            head_dim: d,
        };
        let seqs = [SeqQueries {
            q_start: 0,
            q_len: 1,
            start_pos: n_keys - 1,
            block_table: &table,
        }];
        let shape = AttnShape {
            heads,
            scale: 0.125,
            window: None,
            softcap: None,
        };
        paged_attention(&q, &mut out, &kv, &seqs, &shape);
        for h in 0..heads {
            let want = dense(&q[h * d..][..d], &ks, &vs, 0.125);
            for (a, b) in out[h * d..][..d].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "head {h}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn f16_row_products_agree_across_instances() {
        // 75 elements: sixteen-wide steps, one eight-wide step and a tail.
        let v: Vec<f16> = (0..75).map(|i| f16::from_f32(noise(i) * 3.0)).collect();
        let q: Vec<f32> = (0..75).map(|i| noise(500 + i)).collect();
        let wide: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
        let mut buf = vec![0f32; 75];
        let want_dot: f64 = q
            .iter()
            .zip(&wide)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        let want_axpy: Vec<f32> = q.iter().zip(&wide).map(|(o, x)| o + 0.3 * x).collect();
        let check = |dot: f32, axpy: &[f32]| {
            assert!((dot as f64 - want_dot).abs() < 1e-4, "{dot} vs {want_dot}");
            for (a, b) in axpy.iter().zip(&want_axpy) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        };
        let mut out = q.clone();
        // SAFETY: `Portable` needs no CPU feature.
        unsafe {
            let dot = Portable::dot(&q, &v, &mut buf);
            Portable::axpy(0.3, &v, &mut out, &mut buf);
            check(dot, &out);
        }
        #[cfg(target_arch = "x86_64")]
        if crate::activation::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
            let mut out = q.clone();
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
            unsafe {
                let dot = x86_f16c::Widen::dot(&q, &v, &mut buf);
                x86_f16c::Widen::axpy(0.3, &v, &mut out, &mut buf);
                check(dot, &out);
            }
        }
    }
}
