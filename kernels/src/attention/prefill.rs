//! Attention of a block of consecutive prefill rows of one sequence, for the query heads of
//! one KV head (flash-attention's walk, on the CPU).
//!
//! The per-row kernel (`attend`) reads and widens every visible K and V row once per query
//! row: a 512-token prompt widens each key ~256 times per head group, and its scores' softmax
//! runs one key at a time. Here the keys are walked in chunks of `KEYS`, each chunk's K and V
//! rows widened once for all `ROWS` query rows × the group's heads; each query keeps a running
//! maximum, sum and output (rescaled when the maximum grows), its scores are exponentiated as
//! one vectorizable loop per chunk, and the weighted V rows are summed a strip of columns at a
//! time in registers.
//!
//! Results equal the per-row kernel's within float rounding (the sums run in another order).
use super::{AttnShape, Emit, KvElement, PagedKv, RowReader, STRIP};
use crate::activation::tanh;
use std::ops::Range;

/// Query rows per block (one task: these rows × the heads of one KV head). Each chunk's K and V
/// rows are prepared once per block (widened; on AMX rounded and laid out as tiles), so more
/// rows spread that over more queries: 32 rather than 16 took Gemma 3 270M's prefill attention
/// (4 query heads per KV head) from 53-61 to 43-44 ms and Qwen2.5-0.5B's (7) from 95-109 to
/// 89-91 ms at 512 tokens (op profile, Xeon AMX, 2 threads).
pub const ROWS: usize = 32;
/// Keys per chunk: their widened K and V rows stay in L1/L2 (64 keys × 128 dims × 4 bytes ×
/// 2 = 64 KiB), and one query's chunk of scores is eight 256-bit registers.
pub(super) const KEYS: usize = 64;
/// Columns of V summed at once in `weigh_v`.
const V_STRIP: usize = 64;

/// One task: rows `first_row..first_row + rows` of the batch (positions `pos0..`) of one
/// sequence, query heads `kv_head·group..` (all that share `kv_head`).
pub struct RowBlock<'a, E> {
    /// All of q (`[tokens, heads, head_dim]`).
    pub q: &'a [f32],
    pub first_row: usize,
    pub rows: usize,
    pub pos0: usize,
    pub kv_head: usize,
    pub group: usize,
    pub kv: &'a PagedKv<'a, E>,
    pub table: &'a [u32],
    pub shape: &'a AttnShape<'a>,
}

impl<E: KvElement> RowBlock<'_, E> {
    /// The key positions the block's rows see, in chunks of `KEYS`.
    pub(super) fn chunks(&self) -> impl Iterator<Item = Range<usize>> {
        let end = self.pos0 + self.rows;
        (self.shape.first_visible(self.pos0)..end)
            .step_by(KEYS)
            .map(move |start| start..(start + KEYS).min(end))
    }

    /// The keys of `chunk` that row `r` sees, as indices into the chunk (empty if none).
    pub(super) fn row_keys(&self, r: usize, chunk: &Range<usize>) -> Range<usize> {
        let pos = self.pos0 + r;
        let lo = self.shape.first_visible(pos).clamp(chunk.start, chunk.end);
        let hi = (pos + 1).clamp(lo, chunk.end);
        lo - chunk.start..hi - chunk.start
    }

    /// Where key position `j`'s K and V rows for this block's KV head start in the cache.
    pub(super) fn kv_offset(&self, j: usize) -> usize {
        let bs = self.kv.block_size;
        let slot = self.table[j / bs] as usize * bs + j % bs;
        self.kv.row_offset(slot, self.kv_head)
    }

    /// The ALiBi term (`AttnShape::alibi_at`) of row `r`, group head `g`, for scores that
    /// start at key position `key0`.
    #[inline(always)]
    pub(super) fn alibi(&self, r: usize, g: usize, key0: usize) -> Option<(f32, isize)> {
        let head = self.kv_head * self.group + g;
        self.shape.alibi_at(head, key0, self.pos0 + r)
    }

    /// The query vector of row `r`, group head `g`.
    pub(super) fn query(&self, r: usize, g: usize) -> &[f32] {
        let d = self.kv.head_dim;
        let head = self.kv_head * self.group + g;
        &self.q[((self.first_row + r) * self.shape.heads + head) * d..][..d]
    }
}

/// Each query's online softmax across the chunks (queries row-major over rows, then heads):
/// running max, sum and unnormalised output.
#[derive(Default)]
pub(super) struct Running {
    pub max: Vec<f32>,
    pub sum: Vec<f32>,
    pub acc: Vec<f32>,
}

impl Running {
    /// The start state of block `b`'s queries (`rows × group`, query qv of head `kv_head ·
    /// group + qv % group`): nothing seen, or each head's sink (`AttnShape::softmax_start`).
    pub fn reset<E>(&mut self, b: &RowBlock<'_, E>) {
        let queries = b.rows * b.group;
        self.max.clear();
        self.sum.clear();
        for qv in 0..queries {
            let (max, sum) = b.shape.softmax_start(b.kv_head * b.group + qv % b.group);
            self.max.push(max);
            self.sum.push(sum);
        }
        self.acc.clear();
        self.acc.resize(queries * b.kv.head_dim, 0.0);
    }

    /// Normalise every query's output and send it to `emit(row, head, values)`.
    pub fn emit<E>(&mut self, b: &RowBlock<'_, E>, emit: Emit<'_>) {
        let d = b.kv.head_dim;
        for (qv, acc) in self.acc.chunks_exact_mut(d.max(1)).enumerate() {
            let inv = 1.0 / self.sum[qv];
            acc.iter_mut().for_each(|x| *x *= inv);
            emit(
                b.first_row + qv / b.group,
                b.kv_head * b.group + qv % b.group,
                acc,
            );
        }
    }
}

/// Per-task buffers, reused across the blocks a worker runs.
#[derive(Default)]
pub struct BlockScratch {
    /// The chunk's K rows widened and transposed: `[head_dim][KEYS]`.
    kt: Vec<f32>,
    /// The chunk's V rows widened: `[KEYS][head_dim]`.
    v: Vec<f32>,
    /// One K row widened.
    row: Vec<f32>,
    run: Running,
    /// The AMX instance's buffers (`prefill_amx`).
    #[cfg(target_arch = "x86_64")]
    pub(super) amx: super::prefill_amx::AmxScratch,
}

/// A compiled instance of `attend_rows` for caches of `E`.
pub type AttendRowsFn<E> = fn(&RowBlock<'_, E>, &mut BlockScratch, Emit<'_>);

/// Attention of every query of the block; each query's output row (head_dim values) goes to
/// `emit(row, head, values)` (`row` in the batch, `head` the query head). `FMA`: multiply-adds
/// fused (the instances for CPUs with FMA; Rust never fuses `a * b + c` on its own). `WIDE`:
/// the sums split for AVX-512's wider registers (`chunk_scores`, `weigh_v`).
///
/// # Safety
/// The CPU must have the features `R` needs, and FMA if `FMA` (the instances in
/// `KvElement::attend_rows_fn`).
#[inline(always)]
pub unsafe fn attend_rows<E: KvElement, R: RowReader<E>, const FMA: bool, const WIDE: bool>(
    b: &RowBlock<'_, E>,
    s: &mut BlockScratch,
    emit: Emit<'_>,
) {
    let kv = b.kv;
    let (d, re) = (kv.head_dim, kv.row_elems());
    s.kt.resize(KEYS * d, 0.0);
    s.v.resize(KEYS * d, 0.0);
    s.row.resize(d, 0.0);
    s.run.reset(b);
    for chunk in b.chunks() {
        for (i, j) in chunk.clone().enumerate() {
            let at = b.kv_offset(j);
            // SAFETY (both): forwarded from this function's contract.
            unsafe { widen_into::<E, R>(&kv.v[at..at + re], &mut s.v[i * d..(i + 1) * d]) };
            // K transposed (kt[e·KEYS + i]): a query's scores over the chunk are then
            // KEYS-wide multiply-adds, one per dimension, with no horizontal sums.
            unsafe { widen_into::<E, R>(&kv.k[at..at + re], &mut s.row) };
            for (e, &x) in s.row.iter().enumerate() {
                s.kt[e * KEYS + i] = x;
            }
        }
        for i in chunk.len()..KEYS {
            // Past the last key: zeros, so the unused scores stay finite.
            for e in 0..d {
                s.kt[e * KEYS + i] = 0.0;
            }
        }
        for r in 0..b.rows {
            let keys = b.row_keys(r, &chunk);
            if keys.is_empty() {
                continue;
            }
            for g in 0..b.group {
                let qv = r * b.group + g;
                let mut scores = chunk_scores::<FMA, WIDE>(b.query(r, g), &s.kt);
                let sc = &mut scores[keys.clone()];
                let run = &mut s.run;
                let alibi = b.alibi(r, g, chunk.start + keys.start);
                let alpha = softmax_step(sc, b.shape, alibi, &mut run.max[qv], &mut run.sum[qv]);
                let acc = &mut run.acc[qv * d..(qv + 1) * d];
                weigh_v::<FMA, WIDE>(acc, alpha, sc, &s.v[keys.start * d..keys.end * d], d);
            }
        }
    }
    s.run.emit(b, emit);
}

/// One chunk of a query's online softmax: `sc` (its raw scores over the chunk's visible keys)
/// becomes the unnormalised weights e^(score − max), `max` and `sum` move on, and the factor
/// that rescales what was summed before (e^(old max − new max)) is returned. `alibi`: the
/// query head's slope and `sc[0]`'s key distance (`RowBlock::alibi`).
#[inline(always)]
pub(super) fn softmax_step(
    sc: &mut [f32],
    shape: &AttnShape<'_>,
    alibi: Option<(f32, isize)>,
    max: &mut f32,
    sum: &mut f32,
) -> f32 {
    let scale = shape.scale;
    match shape.softcap {
        Some(cap) => sc
            .iter_mut()
            .for_each(|x| *x = cap * tanh(*x * scale / cap)),
        None => sc.iter_mut().for_each(|x| *x *= scale),
    }
    if let Some((slope, distance)) = alibi {
        super::add_alibi(sc, slope, distance);
    }
    let new_max = lane_max(sc).max(*max);
    // Before the first chunk the max is −∞: nothing summed is kept (a zero sum and output).
    let alpha = super::softmax_weight(*max - new_max);
    sc.iter_mut()
        .for_each(|x| *x = super::softmax_weight(*x - new_max));
    *sum = *sum * alpha + lane_sum(sc);
    *max = new_max;
    alpha
}

/// `a·b + c`, fused when `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// q · K for the chunk's `KEYS` keys (`kt`: K transposed, `q.len()` rows of `KEYS`): vectors
/// of sums held in registers across the dimensions. `WIDE` (AVX-512, whose 64 sums are only
/// four registers): even and odd dimensions into two sets of sums, so eight independent
/// multiply-add chains hide the FMA latency.
#[inline(always)]
fn chunk_scores<const FMA: bool, const WIDE: bool>(q: &[f32], kt: &[f32]) -> [f32; KEYS] {
    let mut s = [[0f32; KEYS]; 2];
    let mut e = 0;
    if WIDE {
        for (qp, rows) in q.chunks_exact(2).zip(kt.chunks_exact(2 * KEYS)) {
            let (r0, r1) = rows.split_at(KEYS);
            for t in 0..KEYS {
                s[0][t] = madd::<FMA>(qp[0], r0[t], s[0][t]);
                s[1][t] = madd::<FMA>(qp[1], r1[t], s[1][t]);
            }
        }
        e = q.len() & !1;
    }
    for (&qe, row) in q[e..].iter().zip(kt[e * KEYS..].chunks_exact(KEYS)) {
        for t in 0..KEYS {
            s[0][t] = madd::<FMA>(qe, row[t], s[0][t]);
        }
    }
    let [mut even, odd] = s;
    if WIDE {
        even.iter_mut().zip(odd).for_each(|(a, b)| *a += b);
    }
    even
}

/// `src` as f32 into `dst`.
///
/// # Safety
/// As `RowReader::read`.
#[inline(always)]
unsafe fn widen_into<E, R: RowReader<E>>(src: &[E], dst: &mut [f32]) {
    let (ptr, len) = (dst.as_mut_ptr(), dst.len());
    // SAFETY: forwarded.
    let row = unsafe { R::read(src, dst) }.as_ptr();
    if !std::ptr::eq(row, ptr) {
        // The reader borrowed `src` (an f32 cache) instead of writing `dst`: copy it.
        // SAFETY: `row` is `src` as f32, `len` values long, and does not overlap `dst`.
        unsafe { std::ptr::copy_nonoverlapping(row, ptr, len) };
    }
}

/// Σ x in eight lanes (vectorizes; one running sum would not).
#[inline(always)]
pub(super) fn lane_sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += c[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest of `x` (−∞ for none), in sixteen lanes: `f32::max`'s NaN rule keeps a fold
/// from vectorizing, a comparison does not (scores are never NaN for finite q and K).
#[inline(always)]
pub(super) fn lane_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    let greater = |m: f32, &v: &f32| if v > m { v } else { m };
    tail.iter()
        .fold(lanes.iter().fold(f32::NEG_INFINITY, greater), greater)
}

/// `acc = alpha·acc + Σ_i w[i]·v[i]` (`v`: w.len() rows of `d`), `V_STRIP` columns at a time
/// held in registers across the keys (eight independent vectors of sums with AVX2, enough to
/// keep both FMA ports busy through their latency; with AVX-512, `WIDE`, four per set of sums
/// and two sets, over even and odd keys), then 16, then one.
#[inline(always)]
fn weigh_v<const FMA: bool, const WIDE: bool>(
    acc: &mut [f32],
    alpha: f32,
    w: &[f32],
    v: &[f32],
    d: usize,
) {
    let mut e = 0;
    while e + V_STRIP <= d {
        strip::<FMA, WIDE, V_STRIP>(&mut acc[e..e + V_STRIP], alpha, w, &v[e..], d);
        e += V_STRIP;
    }
    while e + STRIP <= d {
        strip::<FMA, WIDE, STRIP>(&mut acc[e..e + STRIP], alpha, w, &v[e..], d);
        e += STRIP;
    }
    for t in e..d {
        let mut x = acc[t] * alpha;
        for (i, &p) in w.iter().enumerate() {
            x = madd::<FMA>(p, v[i * d + t], x);
        }
        acc[t] = x;
    }
}

/// One strip of `weigh_v`: `acc` (W columns) from rows of `v` `d` apart.
#[inline(always)]
fn strip<const FMA: bool, const WIDE: bool, const W: usize>(
    acc: &mut [f32],
    alpha: f32,
    w: &[f32],
    v: &[f32],
    d: usize,
) {
    let row = |i: usize| -> &[f32; W] { v[i * d..i * d + W].try_into().expect("W columns") };
    let mut sums: [[f32; W]; 2] = [std::array::from_fn(|t| acc[t] * alpha), [0f32; W]];
    let mut i = 0;
    if WIDE {
        while i + 2 <= w.len() {
            let (r0, r1) = (row(i), row(i + 1));
            for t in 0..W {
                sums[0][t] = madd::<FMA>(w[i], r0[t], sums[0][t]);
                sums[1][t] = madd::<FMA>(w[i + 1], r1[t], sums[1][t]);
            }
            i += 2;
        }
    }
    for (j, &p) in w.iter().enumerate().skip(i) {
        let r = row(j);
        for t in 0..W {
            sums[0][t] = madd::<FMA>(p, r[t], sums[0][t]);
        }
    }
    for t in 0..W {
        acc[t] = if WIDE {
            sums[0][t] + sums[1][t]
        } else {
            sums[0][t]
        };
    }
}

#[cfg(test)]
mod tests {
    use super::lane_max;

    #[test]
    fn lane_max_is_the_largest_value_at_any_length_and_place() {
        assert_eq!(lane_max(&[]), f32::NEG_INFINITY);
        for len in 1..70 {
            for at in 0..len {
                let mut x: Vec<f32> = (0..len).map(|i| -((i * 37 % 11) as f32)).collect();
                x[at] = 5.0;
                assert_eq!(lane_max(&x), 5.0, "len {len}, largest at {at}");
            }
        }
    }
}
