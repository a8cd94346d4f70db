//! Causal attention over a paged KV cache (f32 or f16), for mixed prefill and decode rows.
//!
//! The cache of one layer is `[num_slots, kv_heads, head_dim]` with
//! `slot = block_table[pos / block_size] * block_size + pos % block_size`.
//!
//! An f16 cache halves the KV memory and the bytes decode reads per token (llama.cpp's default
//! for quantized models); its rows are widened to f32 one key at a time (F16C on x86), and all
//! arithmetic stays in f32. A q8_0 cache (`q8`: blocks of 32 bytes and an f16 scale, llama.cpp's
//! `-ctk q8_0 -ctv q8_0`) halves them again, its rows dequantized the same way.
use crate::activation::{exp, tanh};
use half::f16;
use prefill::{AttendRowsFn, BlockScratch, RowBlock};
use rayon::prelude::*;

/// `attend_fn` and `attend_rows_fn` of a cache type whose rows are widened to f32 on read (f16,
/// q8_0): with `$x86` (a reader using F16C) where the CPU has AVX2, FMA and F16C, prefill on AMX
/// tiles or 512-bit vectors where it has those; else with `$portable`.
macro_rules! widened_kernels {
    ($e:ty, $x86:path, $portable:ty) => {
        fn attend_fn() -> $crate::attention::AttendFn<$e> {
            use $crate::attention::attend;
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::attention::{Heads, Scratch};
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn attend_f16c(h: &Heads<'_, $e>, scratch: &mut Scratch, out: &mut [f32]) {
                    attend::<$e, $x86>(h, scratch, out)
                }
                if $crate::activation::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c")
                {
                    // SAFETY: the CPU has the features `attend_f16c` is compiled for, which
                    // are also what the reader needs.
                    return |h, scratch, out| unsafe { attend_f16c(h, scratch, out) };
                }
            }
            // SAFETY: the portable reader needs no CPU feature.
            |h, scratch, out| unsafe { attend::<$e, $portable>(h, scratch, out) }
        }

        fn attend_rows_fn(head_dim: usize) -> $crate::attention::AttendRowsFn<$e> {
            use $crate::attention::prefill;
            // Only x86_64 has a kernel that depends on it (AMX).
            #[cfg(not(target_arch = "x86_64"))]
            let _ = head_dim;
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::attention::prefill::{BlockScratch, RowBlock};
                use $crate::attention::Emit;
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")]
                unsafe fn rows_amx(b: &RowBlock<'_, $e>, s: &mut BlockScratch, emit: Emit<'_>) {
                    $crate::attention::prefill_amx::attend_rows::<$e, $x86>(b, s, emit)
                }
                if $crate::attention::prefill_amx::usable(head_dim) {
                    // SAFETY: `usable` checked AMX-BF16, which comes with these features (and
                    // F16C, which the reader needs).
                    return |b, s, emit| unsafe { rows_amx(b, s, emit) };
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn rows_f16c(b: &RowBlock<'_, $e>, s: &mut BlockScratch, emit: Emit<'_>) {
                    prefill::attend_rows::<$e, $x86, true, false>(b, s, emit)
                }
                #[target_feature(enable = "avx2,fma,f16c,avx512f")]
                unsafe fn rows_avx512(
                    b: &RowBlock<'_, $e>,
                    s: &mut BlockScratch,
                    emit: Emit<'_>,
                ) {
                    prefill::attend_rows::<$e, $x86, true, true>(b, s, emit)
                }
                if $crate::activation::has_avx512f() {
                    // SAFETY: the CPU has the features `rows_avx512` is compiled for, which
                    // include what the reader needs.
                    return |b, s, emit| unsafe { rows_avx512(b, s, emit) };
                }
                if $crate::activation::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c")
                {
                    // SAFETY: the CPU has the features `rows_f16c` is compiled for, which are
                    // also what the reader needs.
                    return |b, s, emit| unsafe { rows_f16c(b, s, emit) };
                }
            }
            // SAFETY: the portable reader needs no CPU feature.
            |b, s, emit| unsafe { prefill::attend_rows::<$e, $portable, false, false>(b, s, emit) }
        }
    };
}

mod prefill;
#[cfg(target_arch = "x86_64")]
mod prefill_amx;
mod q8;
mod split_keys;

pub use q8::KvQ8;

/// What a KV cache may hold: f32, f16 widened on read, or q8_0 blocks dequantized on read.
pub trait KvElement: Copy + Default + Send + Sync + 'static {
    /// Values one element holds (32 for a q8_0 block): a head row of `head_dim` values is
    /// `head_dim / VALUES` elements, so `head_dim` must be a multiple of it.
    const VALUES: usize = 1;
    /// Query heads whose V strips decode attention sums in one pass over the keys (at most 8):
    /// two 256-bit registers each, so four leave room for the V strip and the weights among
    /// AVX2's sixteen; more heads take more passes, each reading the V rows again.
    /// Qwen2.5-0.5B (7 heads per KV head), 2048 tokens of context, EPYC VM, 2 threads,
    /// alternating: an f16 cache decodes 8 sequences at 159-167 tok/s in runs of 4 and 3,
    /// 122-131 in one run of 7.
    const STRIP_HEADS: usize = 4;
    /// Store `src` (`dst.len() * VALUES` values) as this type (rounding to nearest for f16).
    fn narrow(src: &[f32], dst: &mut [Self]);
    /// The fastest `attend` instance this CPU runs for caches of this type.
    fn attend_fn() -> AttendFn<Self>;
    /// The fastest `prefill::attend_rows` instance for heads of `head_dim`, likewise (on AMX
    /// tiles where `prefill_amx` takes them).
    fn attend_rows_fn(head_dim: usize) -> AttendRowsFn<Self>;
}

impl KvElement for f32 {
    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn attend_fn() -> AttendFn<f32> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn attend_avx2(h: &Heads<'_, f32>, scratch: &mut Scratch, out: &mut [f32]) {
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

    /// Never on AMX tiles: an f32 cache is the precise path (f32 and `--dequantize`d
    /// weights, the reference plugins are checked against), which bf16 would round.
    fn attend_rows_fn(_head_dim: usize) -> AttendRowsFn<f32> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn rows_avx2(b: &RowBlock<'_, f32>, s: &mut BlockScratch, emit: Emit<'_>) {
                prefill::attend_rows::<f32, Borrowed, true, false>(b, s, emit)
            }
            #[target_feature(enable = "avx2,fma,f16c,avx512f")]
            unsafe fn rows_avx512(b: &RowBlock<'_, f32>, s: &mut BlockScratch, emit: Emit<'_>) {
                prefill::attend_rows::<f32, Borrowed, true, true>(b, s, emit)
            }
            if crate::activation::has_avx512f() {
                // SAFETY: the CPU has the features `rows_avx512` is compiled for.
                return |b, s, emit| unsafe { rows_avx512(b, s, emit) };
            }
            if crate::activation::has_avx2_fma() {
                // SAFETY: the CPU has the features `rows_avx2` is compiled for.
                return |b, s, emit| unsafe { rows_avx2(b, s, emit) };
            }
        }
        // SAFETY: `Borrowed` needs no CPU feature.
        |b, s, emit| unsafe { prefill::attend_rows::<f32, Borrowed, false, false>(b, s, emit) }
    }
}

/// Where `prefill::attend_rows` sends each query's output: (batch row, query head, values).
pub(crate) type Emit<'e> = &'e mut dyn FnMut(usize, usize, &[f32]);

impl KvElement for f16 {
    fn narrow(src: &[f32], dst: &mut [f16]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src);
    }

    widened_kernels!(f16, x86_f16c::Widen, Portable);
}

/// How `attend` reads one cached K or V row as f32.
trait RowReader<E> {
    /// `src` as f32: borrowed when it already is, else widened into `buf` (at least
    /// `src.len()` long).
    ///
    /// # Safety
    /// The CPU must have the features the implementation uses (see each type).
    unsafe fn read<'b>(src: &'b [E], buf: &'b mut [f32]) -> &'b [f32];

    /// Values `e..e + STRIP` of the head row `row` as f32, in registers (`e` a multiple of
    /// `STRIP`, the row at least `e + STRIP` values long).
    ///
    /// # Safety
    /// As for `read`.
    unsafe fn strip(row: &[E], e: usize) -> [f32; STRIP];
}

/// Columns of V per strip in `weighted_v`: two 256-bit vectors per head.
const STRIP: usize = 16;

/// f32 rows, read in place.
struct Borrowed;
impl RowReader<f32> for Borrowed {
    #[inline(always)]
    unsafe fn read<'b>(src: &'b [f32], _: &'b mut [f32]) -> &'b [f32] {
        src
    }
    #[inline(always)]
    unsafe fn strip(row: &[f32], e: usize) -> [f32; STRIP] {
        std::array::from_fn(|t| row[e + t])
    }
}

/// f16 rows through `half`'s slice conversion (runtime-detected SIMD where it has one).
struct Portable;
impl RowReader<f16> for Portable {
    #[inline(always)]
    unsafe fn read<'b>(src: &'b [f16], buf: &'b mut [f32]) -> &'b [f32] {
        use half::slice::HalfFloatSliceExt;
        let buf = &mut buf[..src.len()];
        src.convert_to_f32_slice(buf);
        buf
    }
    #[inline(always)]
    unsafe fn strip(row: &[f16], e: usize) -> [f32; STRIP] {
        use half::slice::HalfFloatSliceExt;
        let mut out = [0f32; STRIP];
        row[e..e + STRIP].convert_to_f32_slice(&mut out);
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_f16c {
    use half::f16;
    use std::arch::x86_64::*;

    /// f16 rows widened eight at a time with VCVTPH2PS, inlined into the F16C `attend`
    /// instance (a call into `half` per row would cost as much as the row's products).
    pub struct Widen;
    impl super::RowReader<f16> for Widen {
        /// # Safety
        /// The CPU must have AVX and F16C.
        #[inline(always)]
        unsafe fn read<'b>(src: &'b [f16], buf: &'b mut [f32]) -> &'b [f32] {
            let buf = &mut buf[..src.len()];
            let mut fs = buf.chunks_exact_mut(8);
            for (h, f) in src.chunks_exact(8).zip(&mut fs) {
                // SAFETY: both chunks hold 8 elements; the caller guarantees F16C.
                unsafe {
                    let v = _mm_loadu_si128(h.as_ptr().cast());
                    _mm256_storeu_ps(f.as_mut_ptr(), _mm256_cvtph_ps(v));
                }
            }
            let tail = src.chunks_exact(8).remainder();
            for (h, f) in tail.iter().zip(fs.into_remainder()) {
                *f = h.to_f32();
            }
            buf
        }

        /// # Safety
        /// As for `read`.
        #[inline(always)]
        unsafe fn strip(row: &[f16], e: usize) -> [f32; super::STRIP] {
            let src = &row[e..e + 16];
            let mut out = [0f32; 16];
            // SAFETY: 16 halves in, 16 floats out; the caller guarantees F16C.
            unsafe {
                let lo = _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().cast()));
                let hi = _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().add(8).cast()));
                _mm256_storeu_ps(out.as_mut_ptr(), lo);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
            }
            out
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

impl<E: KvElement> PagedKv<'_, E> {
    /// Elements of one head row (`head_dim` values).
    pub fn row_elems(&self) -> usize {
        self.head_dim / E::VALUES
    }

    /// Where the row of `kv_head` at `slot` starts in `k` and `v`, in elements.
    pub fn row_offset(&self, slot: usize, kv_head: usize) -> usize {
        (slot * self.kv_heads + kv_head) * self.row_elems()
    }
}

/// One sequence's queries in the flattened batch.
pub struct SeqQueries<'a> {
    pub q_start: usize,
    pub q_len: usize,
    /// Position of the first query token.
    pub start_pos: usize,
    pub block_table: &'a [u32],
}

pub struct AttnShape<'a> {
    pub heads: usize,
    pub scale: f32,
    /// A query at position i sees keys j with `i - window < j <= i`.
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    /// One logit per query head (`heads` of them) that joins each of its softmaxes as a key
    /// without a value (gpt-oss's sinks): the weights are `exp(s_j - m) / (exp(sink - m) +
    /// Σ exp(s_j - m))`. In the units of the scaled, capped scores.
    pub sinks: Option<&'a [f32]>,
    /// ALiBi: one slope per query head (`heads` of them); a query at position i adds
    /// `slope · (j − i)` to its score of key j, after the scale and cap. Relative to the query
    /// (BLOOM's and MPT's biases differ from it by a constant per row, which the softmax drops),
    /// so the bias stays small and exact in f32 however long the context.
    pub alibi: Option<&'a [f32]>,
}

impl AttnShape<'_> {
    /// Head `head`'s ALiBi term for the scores of keys `key0..` seen from `pos`: its slope
    /// and the first key's distance `key0 − pos`, or None without ALiBi.
    #[inline(always)]
    pub(crate) fn alibi_at(&self, head: usize, key0: usize, pos: usize) -> Option<(f32, isize)> {
        let slope = *self.alibi?.get(head)?;
        Some((slope, key0 as isize - pos as isize))
    }

    /// The first key position a query at `pos` sees: its window's start, else 0.
    #[inline(always)]
    pub(crate) fn first_visible(&self, pos: usize) -> usize {
        match self.window {
            Some(w) if w > 0 => (pos + 1).saturating_sub(w),
            _ => 0,
        }
    }

    /// The running max and sum an online softmax of `head` starts from: the sink as a score
    /// already seen (its weight e^0 = 1 at its own max), or nothing.
    #[inline(always)]
    pub(crate) fn softmax_start(&self, head: usize) -> (f32, f32) {
        match self.sinks.and_then(|s| s.get(head)) {
            Some(&sink) => (sink, 1.0),
            None => (f32::NEG_INFINITY, 0.0),
        }
    }
}

/// `out[t, h, :] = softmax(q[t,h,:] · K[j] * scale) · V[j]` over the visible keys of row t's
/// sequence. `q` and `out` are `[tokens, heads, head_dim]`. Rows not covered by `seqs` are
/// left untouched. Panics only on inconsistent slice sizes, which callers validate.
pub fn paged_attention<E: KvElement>(
    q: &[f32],
    out: &mut [f32],
    kv: &PagedKv<'_, E>,
    seqs: &[SeqQueries],
    shape: &AttnShape<'_>,
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
    // Batch-invariant: every row alone over all its keys (`crate::invariance`).
    if !crate::batch_invariant() {
        attend_prefill_blocks(q, out, kv, seqs, shape, &mut owner);
        if split_keys::attend_decode_rows(q, out, kv, seqs, shape, &owner) {
            return;
        }
    }
    let attend = E::attend_fn();
    let rows = owner.len();
    let heads_per_task = heads_per_task(rows, kv.kv_heads, group);
    let tasks_per_row = shape.heads / heads_per_task.max(1);
    out.par_chunks_mut((heads_per_task * d).max(1))
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (idx, oh)| {
            let (r, h0) = (
                idx / tasks_per_row.max(1),
                idx % tasks_per_row.max(1) * heads_per_task,
            );
            let si = owner[r];
            if si == usize::MAX {
                return;
            }
            let s = &seqs[si];
            let pos = s.start_pos + (r - s.q_start);
            let first = shape.first_visible(pos);
            let heads = Heads {
                q: &q[r * row + h0 * d..r * row + (h0 + heads_per_task) * d],
                count: heads_per_task,
                kv,
                kv_head: h0 / group,
                table: s.block_table,
                first,
                pos,
                scale: shape.scale,
                softcap: shape.softcap,
                sinks: shape.sinks.map(|s| &s[h0..h0 + heads_per_task]),
                alibi: shape.alibi.map(|s| (&s[h0..h0 + heads_per_task], pos)),
            };
            attend(&heads, scratch, oh);
        });
}

/// Sequences with at least this many rows in the batch (prefill chunks) run in blocks of up to
/// `prefill::ROWS` rows (`prefill`); fewer (decode) one row at a time, whose tasks split long
/// contexts over their keys (`split_keys`) or else a KV group's heads to keep every thread
/// busy.
const BLOCK_MIN_ROWS: usize = 8;

/// y rows written by block tasks at disjoint (row, head) places.
#[derive(Clone, Copy)]
struct OutRows(*mut f32, usize);
// SAFETY: every block task writes only its own rows' heads of its KV group (`attend_prefill_
// blocks` hands each (sequence rows, KV head) to one task), and the caller's `&mut` borrow of
// the output outlives the parallel loop.
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    /// Copy `vals` to `at..at + vals.len()`.
    ///
    /// # Safety
    /// No other thread may touch that range meanwhile.
    unsafe fn write(self, at: usize, vals: &[f32]) {
        assert!(at + vals.len() <= self.1, "attention output out of range");
        // SAFETY: in bounds (checked); exclusive by the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(vals.as_ptr(), self.0.add(at), vals.len()) };
    }
}

/// The rows of sequences with `BLOCK_MIN_ROWS` rows or more, in blocks of `prefill::ROWS`
/// rows × one KV head's query heads; their rows are marked done in `owner` (`usize::MAX`).
fn attend_prefill_blocks<E: KvElement>(
    q: &[f32],
    out: &mut [f32],
    kv: &PagedKv<'_, E>,
    seqs: &[SeqQueries],
    shape: &AttnShape<'_>,
    owner: &mut [usize],
) {
    let d = kv.head_dim;
    let group = shape.heads / kv.kv_heads.max(1);
    if d == 0 || group == 0 {
        return;
    }
    // (sequence, first row of the block within it, rows, KV head)
    let mut blocks = Vec::new();
    for (si, s) in seqs.iter().enumerate() {
        let end = (s.q_start + s.q_len).min(owner.len());
        let rows = end.saturating_sub(s.q_start);
        if rows < BLOCK_MIN_ROWS {
            continue;
        }
        owner[s.q_start..end].fill(usize::MAX);
        for off in (0..rows).step_by(prefill::ROWS) {
            for g in 0..kv.kv_heads {
                blocks.push((si, off, prefill::ROWS.min(rows - off), g));
            }
        }
    }
    if blocks.is_empty() {
        return;
    }
    let attend_rows = E::attend_rows_fn(d);
    let row_len = shape.heads * d;
    let dst = OutRows(out.as_mut_ptr(), out.len());
    // Latest rows first: they see the most keys, so the longest tasks start first.
    blocks
        .par_iter()
        .rev()
        .for_each_init(BlockScratch::default, |scratch, &(si, off, rows, g)| {
            let s = &seqs[si];
            let block = RowBlock {
                q,
                first_row: s.q_start + off,
                rows,
                pos0: s.start_pos + off,
                kv_head: g,
                group,
                kv,
                table: s.block_table,
                shape,
            };
            attend_rows(&block, scratch, &mut |row, head, vals| {
                // SAFETY: (row, head) belongs to this task's block only.
                unsafe { dst.write(row * row_len + head * d, vals) }
            });
        });
}

/// Query heads per task: a whole KV group (its query heads share each K and V row, read and
/// widened once for all of them) unless that leaves fewer than two tasks per thread, as for
/// a single decode token of a model with one or two KV heads; then the largest divisor of
/// the group that does.
fn heads_per_task(rows: usize, kv_heads: usize, group: usize) -> usize {
    let want_tasks = 2 * rayon::current_num_threads();
    let units = (rows * kv_heads).max(1);
    let splits = want_tasks.div_ceil(units);
    (1..=group.max(1))
        .rev()
        .find(|&c| group.is_multiple_of(c) && group / c >= splits.min(group))
        .unwrap_or(1)
}

/// Consecutive query heads of one row that share a KV head, and the keys they see.
pub struct Heads<'a, E> {
    /// `count` query vectors of `head_dim`.
    q: &'a [f32],
    count: usize,
    kv: &'a PagedKv<'a, E>,
    kv_head: usize,
    table: &'a [u32],
    /// Visible key positions: `first..=pos`.
    first: usize,
    pos: usize,
    scale: f32,
    softcap: Option<f32>,
    /// The `count` heads' sinks (`AttnShape::sinks`).
    sinks: Option<&'a [f32]>,
    /// The `count` heads' ALiBi slopes (`AttnShape::alibi`) and the query's position (`pos`
    /// is the last key's: a key split's segment may end before the query).
    alibi: Option<(&'a [f32], usize)>,
}

/// One compiled instance of `attend` for caches of `E`.
pub type AttendFn<E> = fn(&Heads<'_, E>, &mut Scratch, &mut [f32]);

/// Per-task buffers of `attend`, reused across the heads a task runs.
#[derive(Default)]
pub struct Scratch {
    scores: Vec<f32>,
    /// One K or V row widened to f32 (unused for f32 caches).
    row: Vec<f32>,
    /// Offset of each visible key's row for this KV head in the layer's K and V.
    offs: Vec<usize>,
    /// Per head of the last `attend`: the softmax's maximum and sum (a sink included).
    stats: Vec<(f32, f32)>,
}

/// For each head c: `out[c] = softmax(q[c] · K[j] · scale) · V[j]` over the visible keys,
/// each K and V row read (and widened) once for all heads, with a fused max-subtracted
/// exponent (the vectorizable `activation::exp`) and one normalisation at the end.
///
/// # Safety
/// The CPU must have the features `R` needs (the instances in `KvElement::attend_fn` check).
#[inline(always)]
unsafe fn attend<E: KvElement, R: RowReader<E>>(
    h: &Heads<'_, E>,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let kv = h.kv;
    let (d, re) = (kv.head_dim, kv.row_elems());
    let n = h.pos + 1 - h.first;
    let Scratch {
        scores,
        row,
        offs,
        stats,
    } = scratch;
    if row.len() < d {
        row.resize(d, 0.0);
    }
    let buf = row.as_mut_slice();
    let slot_of =
        |j: usize| h.table[j / kv.block_size] as usize * kv.block_size + j % kv.block_size;
    // scores[c * n + i]: head c, key first + i.
    stats.clear();
    scores.clear();
    scores.resize(h.count * n, 0.0);
    offs.clear();
    offs.extend((h.first..=h.pos).map(|j| kv.row_offset(slot_of(j), h.kv_head)));
    for (i, &o) in offs.iter().enumerate() {
        let kh = &kv.k[o..o + re];
        // SAFETY: forwarded from this function's contract.
        let kh = unsafe { R::read(kh, buf) };
        for (c, qc) in h.q.chunks_exact(d).enumerate() {
            let mut sc = dot(qc, kh) * h.scale;
            if let Some(cap) = h.softcap {
                sc = cap * tanh(sc / cap);
            }
            scores[c * n + i] = sc;
        }
    }
    if let Some((slopes, query)) = h.alibi {
        for (sc, &slope) in scores.chunks_exact_mut(n.max(1)).zip(slopes) {
            add_alibi(sc, slope, h.first as isize - query as isize);
        }
    }
    for (c, sc) in scores.chunks_exact_mut(n.max(1)).enumerate() {
        // Max, exponents and sum as three loops: each vectorizes (one loop carrying the
        // running sum would not). A sink joins the max and the sum, not the weights.
        let sink = h.sinks.and_then(|s| s.get(c)).copied();
        let max = prefill::lane_max(sc).max(sink.unwrap_or(f32::NEG_INFINITY));
        sc.iter_mut().for_each(|x| *x = softmax_weight(*x - max));
        let sunk = sink.map_or(0.0, |s| exp(s - max));
        let sum = prefill::lane_sum(sc) + sunk;
        stats.push((max, sum));
        let inv = 1.0 / sum;
        sc.iter_mut().for_each(|x| *x *= inv);
    }
    // Heads in runs of at most `E::STRIP_HEADS`, each run's strips held in registers.
    let most = E::STRIP_HEADS.clamp(1, 8);
    let mut c0 = 0;
    while c0 < h.count {
        let c = (h.count - c0).min(most);
        let sc = &scores[c0 * n..(c0 + c) * n];
        let oc = &mut out[c0 * d..(c0 + c) * d];
        // SAFETY (each arm): forwarded from this function's contract.
        match c {
            1 => unsafe { weighted_v::<E, R, 1>(kv, offs, sc, oc, buf) },
            2 => unsafe { weighted_v::<E, R, 2>(kv, offs, sc, oc, buf) },
            3 => unsafe { weighted_v::<E, R, 3>(kv, offs, sc, oc, buf) },
            4 => unsafe { weighted_v::<E, R, 4>(kv, offs, sc, oc, buf) },
            5 => unsafe { weighted_v::<E, R, 5>(kv, offs, sc, oc, buf) },
            6 => unsafe { weighted_v::<E, R, 6>(kv, offs, sc, oc, buf) },
            7 => unsafe { weighted_v::<E, R, 7>(kv, offs, sc, oc, buf) },
            _ => unsafe { weighted_v::<E, R, 8>(kv, offs, sc, oc, buf) },
        }
        c0 += c;
    }
}

/// `out[c] = Σ_i scores[c·n + i] · V[offs[i]]` for the C heads of a task, a strip of `STRIP`
/// columns at a time over all keys: the strip of every head stays in registers across the
/// keys instead of each head's output row being loaded and stored once per key.
///
/// # Safety
/// As `attend`.
#[inline(always)]
unsafe fn weighted_v<E: KvElement, R: RowReader<E>, const C: usize>(
    kv: &PagedKv<'_, E>,
    offs: &[usize],
    scores: &[f32],
    out: &mut [f32],
    buf: &mut [f32],
) {
    let (v, d, re) = (kv.v, kv.head_dim, kv.row_elems());
    let n = offs.len();
    let mut e = 0;
    while e < d {
        let w = STRIP.min(d - e);
        let mut acc = [[0f32; STRIP]; C];
        if w == STRIP {
            for (i, &o) in offs.iter().enumerate() {
                // SAFETY: forwarded from this function's contract.
                let vr = unsafe { R::strip(&v[o..o + re], e) };
                for (c, ac) in acc.iter_mut().enumerate() {
                    let p = scores[c * n + i];
                    for t in 0..STRIP {
                        ac[t] += p * vr[t];
                    }
                }
            }
        } else {
            for (i, &o) in offs.iter().enumerate() {
                // SAFETY: as above.
                let vr = &unsafe { R::read(&v[o..o + re], buf) }[e..];
                for (c, ac) in acc.iter_mut().enumerate() {
                    let p = scores[c * n + i];
                    for (a, x) in ac.iter_mut().zip(vr) {
                        *a += p * x;
                    }
                }
            }
        }
        for (c, ac) in acc.iter().enumerate() {
            out[c * d + e..c * d + e + w].copy_from_slice(&ac[..w]);
        }
        e += w;
    }
}

/// How far below a softmax's maximum a score gets weight 0 rather than e^(score − max):
/// e^-80 ≈ 1.8e-35, far below a float's resolution of the sum (at least 1), while its
/// normalized weight and its products with V rows would be subnormal floats, whose arithmetic
/// costs ~100× on x86. ALiBi's far keys (a slope times a distance in the hundreds) made
/// decode at 1024 tokens 5× slower before this.
const NEGLIGIBLE: f32 = -80.0;

/// e^d for a score `d` below its softmax's maximum, 0 past `NEGLIGIBLE` (a select: it
/// vectorizes with the exponent).
#[inline(always)]
pub(crate) fn softmax_weight(d: f32) -> f32 {
    let e = exp(d);
    if d < NEGLIGIBLE {
        0.0
    } else {
        e
    }
}

/// ALiBi's bias on one query head's scores of consecutive keys: `sc[i] += slope · (distance +
/// i)`, `distance` the first key's position minus the query's. Integer distances convert
/// exactly (below 2^24), so every path (decode, blocks, key splits) adds the same bias. In
/// i32 (a context is far below 2^31 positions): its conversion to f32 is one vector
/// instruction on AVX2, a 64-bit one is not (prefill with ALiBi ran 30% slower so).
#[inline(always)]
fn add_alibi(sc: &mut [f32], slope: f32, distance: isize) {
    let first = distance as i32;
    for (i, x) in sc.iter_mut().enumerate() {
        *x += slope * first.wrapping_add(i as i32) as f32;
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
                sinks: None,
                alibi: None,
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
                sinks: None,
                alibi: None,
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
        let shape = plain_shape(heads, 0.125);
        paged_attention(&q, &mut out, &kv, &seqs, &shape);
        for h in 0..heads {
            let want = dense(&q[h * d..][..d], &ks, &vs, 0.125);
            for (a, b) in out[h * d..][..d].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "head {h}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn f16_readers_agree() {
        // 75 elements: eight-wide steps and a tail.
        let src: Vec<f16> = (0..75).map(|i| f16::from_f32(noise(i) * 300.0)).collect();
        let want: Vec<f32> = src.iter().map(|x| x.to_f32()).collect();
        let mut buf = vec![0f32; 75];
        // SAFETY: `Portable` needs no CPU feature.
        assert_eq!(unsafe { Portable::read(&src, &mut buf) }, want.as_slice());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("f16c") {
            let mut buf = vec![0f32; 75];
            // SAFETY: the CPU has F16C (checked above).
            assert_eq!(
                unsafe { x86_f16c::Widen::read(&src, &mut buf) },
                want.as_slice()
            );
        }
    }

    /// Grouped-query attention over several prefill rows, and over one decode row: every head
    /// of every row against the dense reference, whether the tasks take whole KV groups (many
    /// rows) or single heads (one row).
    #[test]
    fn grouped_heads_match_dense_attention() {
        let (bs, d, heads, kv_heads) = (4usize, 16usize, 6usize, 2usize);
        let group = heads / kv_heads;
        let tables = [vec![1u32, 4, 2], vec![0u32, 3]];
        let lens = [11usize, 6];
        let slots = 5 * bs;
        let mut k = vec![0f32; slots * kv_heads * d];
        let mut v = vec![0f32; slots * kv_heads * d];
        // keys[s][g][j]: sequence s, KV head g, position j.
        let mut keys = vec![vec![vec![]; kv_heads]; 2];
        let mut vals = vec![vec![vec![]; kv_heads]; 2];
        for s in 0..2 {
            for j in 0..lens[s] {
                let slot = tables[s][j / bs] as usize * bs + j % bs;
                for g in 0..kv_heads {
                    let at = (slot * kv_heads + g) * d;
                    for e in 0..d {
                        k[at + e] = noise(1000 * s + 100 * g + 10 * j + e);
                        v[at + e] = noise(7000 + 1000 * s + 100 * g + 10 * j + e);
                    }
                    keys[s][g].push(k[at..at + d].to_vec());
                    vals[s][g].push(v[at..at + d].to_vec());
                }
            }
        }
        let kv = PagedKv {
            k: &k,
            v: &v,
            block_size: bs,
            kv_heads,
            head_dim: d,
        };
        let shape = plain_shape(heads, 0.3);
        // Sequence 0 prefills positions 3..11 (8 rows); sequence 1 decodes at position 5.
        for (s, rows, start_pos) in [(0usize, 8usize, 3usize), (1, 1, 5)] {
            let seqs = [SeqQueries {
                q_start: 0,
                q_len: rows,
                start_pos,
                block_table: &tables[s],
            }];
            let q: Vec<f32> = (0..rows * heads * d).map(|i| noise(90_000 + i)).collect();
            let mut out = vec![0f32; q.len()];
            paged_attention(&q, &mut out, &kv, &seqs, &shape);
            for r in 0..rows {
                let pos = start_pos + r;
                for h in 0..heads {
                    let g = h / group;
                    let at = (r * heads + h) * d;
                    let want = dense(
                        &q[at..at + d],
                        &keys[s][g][..=pos],
                        &vals[s][g][..=pos],
                        0.3,
                    );
                    for (a, b) in out[at..at + d].iter().zip(&want) {
                        assert!((a - b).abs() < 1e-5, "seq {s} row {r} head {h}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// Dense attention of one query over keys `ks[lo..=pos]`, scores capped as `softcap` says,
    /// a sink logit in the softmax where given (transformers' gpt-oss: a column concatenated
    /// to the scores, softmaxed, dropped).
    fn dense_capped(
        q: &[f32],
        ks: &[Vec<f32>],
        vs: &[Vec<f32>],
        scale: f32,
        cap: Option<f32>,
        sink: Option<f32>,
        alibi: Option<(f32, isize)>,
    ) -> Vec<f32> {
        let s: Vec<f64> = ks
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let x = k.iter().zip(q).map(|(a, b)| (a * b) as f64).sum::<f64>() * scale as f64;
                let x = match cap {
                    Some(c) => c as f64 * (x / c as f64).tanh(),
                    None => x,
                };
                // ALiBi: the slope times the key's distance back from the query.
                x + alibi.map_or(0.0, |(m, d0)| m as f64 * (d0 + i as isize) as f64)
            })
            .collect();
        let sink = sink.map(f64::from);
        let m = s
            .iter()
            .chain(&sink)
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum::<f64>() + sink.map_or(0.0, |x| (x - m).exp());
        let mut o = vec![0f64; q.len()];
        for (p, v) in e.iter().zip(vs) {
            for (oi, vi) in o.iter_mut().zip(v) {
                *oi += p / z * *vi as f64;
            }
        }
        o.into_iter().map(|x| x as f32).collect()
    }

    /// Prefill rows in blocks (`prefill`): several sequences in one batch (a long chunk
    /// starting mid-context, a short prompt, a decode row), head_dim 80 (a 64-column strip and
    /// a 16-column one), grouped heads, sliding window and score cap, f32 and f16 caches (q8_0
    /// ones at the dims below, multiples of its blocks), keys over several chunks: every row
    /// and head against dense attention over its visible keys.
    #[test]
    fn prefill_blocks_match_dense_attention() {
        check_prefill_blocks(80, FLOAT_SUMS);
    }

    /// Head dims the AMX instance takes (`prefill_amx`, f16 and q8_0 caches on CPUs with AMX;
    /// elsewhere the f32 kernels). Its products over split bf16 pairs hold the queries to 2⁻¹⁷
    /// (f32: 2⁻²⁴), which the key channel of 150 makes errors of up to ~3e-4 in the scores
    /// (2⁻¹⁷ · 150 · 0.3): outputs moved by 1.6-3.1e-4 at most (Xeon AMX), where one bf16 per
    /// operand moved them by 0.06-0.09 and the f32 kernels by 1e-5. The bound there is 5e-4.
    #[test]
    fn prefill_blocks_on_amx_match_dense_attention() {
        for d in [64, 96, 128] {
            #[cfg(target_arch = "x86_64")]
            let amx = prefill_amx::usable(d);
            #[cfg(not(target_arch = "x86_64"))]
            let amx = false;
            eprintln!("head_dim {d}: AMX {amx}");
            check_prefill_blocks(d, if amx { 5e-4 } else { FLOAT_SUMS });
        }
    }

    /// `paged_attention` over a cache of `k` and `v` of blocks of `bs` slots, `kv_heads`
    /// heads of `d`.
    fn run<E: KvElement>(
        (k, v): (&[E], &[E]),
        (bs, kv_heads, d): (usize, usize, usize),
        (q, out): (&[f32], &mut [f32]),
        seqs: &[SeqQueries],
        shape: &AttnShape,
    ) {
        let kv = PagedKv {
            k,
            v,
            block_size: bs,
            kv_heads,
            head_dim: d,
        };
        paged_attention(q, out, &kv, seqs, shape);
    }

    /// `x` (head rows of a multiple of 32 values) as q8_0 blocks.
    fn q8_blocks(x: &[f32]) -> Vec<KvQ8> {
        x.chunks_exact(32).map(KvQ8::quantize).collect()
    }

    /// What a cache of `cache` holds of `src` (q8_0: `q8`, its blocks), as f32.
    fn held(cache: &str, src: &[f32], q8: &[KvQ8]) -> Vec<f32> {
        match cache {
            "f16" => src.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
            "q8_0" => q8.iter().flat_map(KvQ8::values).collect(),
            _ => src.to_vec(),
        }
    }

    /// Causal attention over every earlier key: no window, cap, sinks or ALiBi.
    fn plain_shape(heads: usize, scale: f32) -> AttnShape<'static> {
        AttnShape {
            heads,
            scale,
            window: None,
            softcap: None,
            sinks: None,
            alibi: None,
        }
    }

    /// ALiBi's slopes for a power-of-two count of heads, 2^(-8(h+1)/heads), as BLOOM's and
    /// MPT's; other counts' slopes are different numbers of the same kind.
    fn alibi_slopes(heads: usize) -> Vec<f32> {
        (0..heads)
            .map(|h| 2f32.powf(-8.0 * (h + 1) as f32 / heads as f32))
            .collect()
    }

    /// `check_prefill_blocks`' bound for the f32 kernels: float sums in another order than the
    /// reference's, over scores of up to ~45 (the biased channel): 0.9-1.1e-5 measured (AVX2+FMA).
    const FLOAT_SUMS: f32 = 4e-5;

    /// Every row and head of a mixed batch against dense attention over the values the cache
    /// holds. One channel of the keys carries a bias of 150 (as Qwen2.5's do), which rounding
    /// the keys to one bf16 each (ulp 1 there) would show. `tol`: per output value, for f16
    /// and q8_0 caches (f32 ones are always held to float sums, `FLOAT_SUMS`).
    fn check_prefill_blocks(d: usize, tol: f32) {
        let (bs, heads, kv_heads) = (16usize, 6usize, 2usize);
        let group = heads / kv_heads;
        // (start_pos, rows) per sequence: blocks of up to 32 rows (a short last one) need at least
        // 8 rows.
        let seqs_spec = [(37usize, 70usize), (90, 1), (0, 9)];
        let ctx = 130usize;
        let blocks_per_seq = ctx.div_ceil(bs);
        let slots = seqs_spec.len() * blocks_per_seq * bs;
        let mut kf = vec![0f32; slots * kv_heads * d];
        let mut vf = vec![0f32; slots * kv_heads * d];
        // Each sequence's blocks, interleaved and reversed so tables are scattered.
        let tables: Vec<Vec<u32>> = (0..seqs_spec.len())
            .map(|s| {
                (0..blocks_per_seq)
                    .rev()
                    .map(|b| (b * seqs_spec.len() + s) as u32)
                    .collect()
            })
            .collect();
        for (i, x) in kf.iter_mut().enumerate() {
            *x = noise(i) + if i % d == 3 { 150.0 } else { 0.0 };
        }
        for (i, x) in vf.iter_mut().enumerate() {
            *x = noise(1_000_000 + i);
        }
        let (k16, v16) = (
            kf.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>(),
            vf.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>(),
        );
        let (k8, v8) = if d.is_multiple_of(32) {
            (q8_blocks(&kf), q8_blocks(&vf))
        } else {
            (vec![], vec![])
        };
        let tokens: usize = seqs_spec.iter().map(|s| s.1).sum();
        let q: Vec<f32> = (0..tokens * heads * d)
            .map(|i| noise(5_000_000 + i))
            .collect();
        let mut seqs = vec![];
        let mut q_start = 0;
        for (s, &(start_pos, rows)) in seqs_spec.iter().enumerate() {
            seqs.push(SeqQueries {
                q_start,
                q_len: rows,
                start_pos,
                block_table: &tables[s],
            });
            q_start += rows;
        }
        // Sinks spread over [-3, 3): some below every score, some above most.
        let sinks: Vec<f32> = (0..heads).map(|h| 3.0 * noise(9_000_000 + h)).collect();
        let slopes = alibi_slopes(heads);
        for (window, softcap, sinks, alibi) in [
            (None, None, None, None),
            (Some(50), None, None, None),
            (None, Some(2.0), None, None),
            (Some(20), Some(2.0), None, None),
            (None, None, Some(&sinks[..]), None),
            (Some(20), None, Some(&sinks[..]), None),
            (None, None, None, Some(&slopes[..])),
            (Some(20), Some(2.0), None, Some(&slopes[..])),
        ] {
            let shape = AttnShape {
                heads,
                scale: 0.3,
                window,
                softcap,
                sinks,
                alibi,
            };
            let caches: &[&str] = if d.is_multiple_of(32) {
                &["f32", "f16", "q8_0"]
            } else {
                &["f32", "f16"]
            };
            for &cache in caches {
                let mut out = vec![f32::NAN; q.len()];
                let tol = if cache == "f32" { FLOAT_SUMS } else { tol };
                let dims = (bs, kv_heads, d);
                match cache {
                    "f16" => run((&k16, &v16), dims, (&q, &mut out), &seqs, &shape),
                    "q8_0" => run((&k8, &v8), dims, (&q, &mut out), &seqs, &shape),
                    _ => run((&kf, &vf), dims, (&q, &mut out), &seqs, &shape),
                }
                let (kh, vh) = (held(cache, &kf, &k8), held(cache, &vf, &v8));
                for (s, seq) in seqs.iter().enumerate() {
                    for r in 0..seq.q_len {
                        let pos = seq.start_pos + r;
                        let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                        for h in 0..heads {
                            let g = h / group;
                            let row = |src: &[f32], j: usize| -> Vec<f32> {
                                let slot = tables[s][j / bs] as usize * bs + j % bs;
                                let at = (slot * kv_heads + g) * d;
                                src[at..at + d].to_vec()
                            };
                            let ks: Vec<_> = (lo..=pos).map(|j| row(&kh, j)).collect();
                            let vs: Vec<_> = (lo..=pos).map(|j| row(&vh, j)).collect();
                            let at = ((seq.q_start + r) * heads + h) * d;
                            let qr = &q[at..at + d];
                            let sink = sinks.map(|s| s[h]);
                            let bias = alibi.map(|m| (m[h], lo as isize - pos as isize));
                            let want = dense_capped(qr, &ks, &vs, 0.3, softcap, sink, bias);
                            for (e, (a, b)) in out[at..at + d].iter().zip(&want).enumerate() {
                                assert!(
                                    (a - b).abs() < tol,
                                    "window {window:?} cap {softcap:?} sinks {} alibi {} {cache} seq {s} row {r} head {h} [{e}]: {a} vs {b}",
                                    sinks.is_some(),
                                    alibi.is_some()
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Batch-invariant mode (`crate::invariance`): a row's output has the same bits whether it
    /// comes in a prefill of 40 rows, alone as a decode row (a prefix-cache hit, or a long
    /// context that would be split over its keys), or beside other sequences' rows; f16 and
    /// f32 caches, grouped heads.
    #[test]
    fn in_batch_invariant_mode_a_row_attends_alike_in_any_batch() {
        let _mode = crate::invariance::forced();
        let (bs, d, heads, kv_heads) = (16usize, 64usize, 14usize, 2usize);
        let ctx = 1600usize;
        let table: Vec<u32> = (0..(ctx / bs) as u32).rev().collect();
        let other: Vec<u32> = (0..4u32).collect();
        let kf: Vec<f32> = (0..ctx * kv_heads * d).map(|i| 2.0 * noise(i)).collect();
        let vf: Vec<f32> = (0..ctx * kv_heads * d)
            .map(|i| noise(2_000_000 + i))
            .collect();
        let (k16, v16): (Vec<f16>, Vec<f16>) = (
            kf.iter().map(|&x| f16::from_f32(x)).collect(),
            vf.iter().map(|&x| f16::from_f32(x)).collect(),
        );
        let shape = plain_shape(heads, 0.125);
        let row = heads * d;
        let q: Vec<f32> = (0..ctx * row).map(|i| noise(7_000_000 + i)).collect();
        let seq = |q_start, q_len, start_pos, block_table| SeqQueries {
            q_start,
            q_len,
            start_pos,
            block_table,
        };
        for cache in ["f16", "f32"] {
            let dims = (bs, kv_heads, d);
            let attend = |q: &[f32], seqs: &[SeqQueries]| {
                let mut out = vec![f32::NAN; q.len()];
                match cache {
                    "f16" => run((&k16, &v16), dims, (q, &mut out), seqs, &shape),
                    _ => run((&kf, &vf), dims, (q, &mut out), seqs, &shape),
                }
                out
            };
            // Rows 0..40 as one prefill; beside them a decode row of another sequence.
            let mut batch = q[..40 * row].to_vec();
            batch.extend_from_slice(&q[1000 * row..1001 * row]);
            let prefill = attend(&batch, &[seq(0, 40, 0, &table), seq(40, 1, 50, &other)]);
            for (r, pos) in [(39usize, 39usize), (5, 5)] {
                let alone = attend(&q[r * row..(r + 1) * row], &[seq(0, 1, pos, &table)]);
                assert!(
                    alone
                        .iter()
                        .zip(&prefill[r * row..])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{cache}: row {r} in a prefill vs alone"
                );
            }
            // A long context alone (split over its keys otherwise) and beside a short one.
            let at = (ctx - 1) * row;
            let alone = attend(&q[at..at + row], &[seq(0, 1, ctx - 1, &table)]);
            let mut two = q[at..at + row].to_vec();
            two.extend_from_slice(&q[..row]);
            let beside = attend(&two, &[seq(0, 1, ctx - 1, &table), seq(1, 1, 20, &other)]);
            assert!(
                alone
                    .iter()
                    .zip(&beside)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{cache}: a long row alone vs beside another"
            );
        }
    }

    /// Decode rows over long contexts, split over their keys (`split_keys`) in a pool of four
    /// threads: one row of a sequence 1500 tokens long and one of another 700 long, seven query
    /// heads per KV head (V summed in runs of four and three), window, cap and sinks, f32, f16
    /// and q8_0 caches, against dense attention.
    #[test]
    fn long_decode_rows_split_over_keys_match_dense_attention() {
        let (bs, d, heads, kv_heads) = (16usize, 64usize, 14usize, 2usize);
        let group = heads / kv_heads;
        let lens = [1500usize, 700];
        let tables: Vec<Vec<u32>> = vec![
            (0..94).rev().map(|b| 2 * b as u32).collect(),
            (0..44).map(|b| 2 * b as u32 + 1).collect(),
        ];
        let slots = 188 * bs;
        let kf: Vec<f32> = (0..slots * kv_heads * d).map(|i| 2.0 * noise(i)).collect();
        let vf: Vec<f32> = (0..slots * kv_heads * d)
            .map(|i| noise(3_000_000 + i))
            .collect();
        let k16: Vec<f16> = kf.iter().map(|&x| f16::from_f32(x)).collect();
        let v16: Vec<f16> = vf.iter().map(|&x| f16::from_f32(x)).collect();
        let (k8, v8) = (q8_blocks(&kf), q8_blocks(&vf));
        let seqs: Vec<SeqQueries> = (0..2)
            .map(|s| SeqQueries {
                q_start: s,
                q_len: 1,
                start_pos: lens[s] - 1,
                block_table: &tables[s],
            })
            .collect();
        let q: Vec<f32> = (0..2 * heads * d).map(|i| noise(7_000_000 + i)).collect();
        let sinks: Vec<f32> = (0..heads).map(|h| 4.0 * noise(8_000_000 + h)).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        // ALiBi slopes as small as a 64-head model's last (2^-8): its far keys still count.
        let slopes: Vec<f32> = (0..heads).map(|h| 0.5f32.powi(1 + h as i32 / 2)).collect();
        for (window, softcap, sinks, alibi) in [
            (None, None, None, None),
            (Some(1000), Some(3.0), None, None),
            (None, None, Some(&sinks[..]), None),
            (None, None, None, Some(&slopes[..])),
            (Some(1000), None, Some(&sinks[..]), Some(&slopes[..])),
        ] {
            let shape = AttnShape {
                heads,
                scale: 0.2,
                window,
                softcap,
                sinks,
                alibi,
            };
            let owner = [0usize, 1];
            pool.install(|| {
                let threads = rayon::current_num_threads();
                let (_, tasks) =
                    split_keys::plan(&owner, &seqs, &shape, kv_heads, threads).expect("split");
                assert!(tasks.len() > 2 * kv_heads, "{} tasks", tasks.len());
            });
            for cache in ["f32", "f16", "q8_0"] {
                let mut out = vec![f32::NAN; q.len()];
                let dims = (bs, kv_heads, d);
                pool.install(|| match cache {
                    "f16" => run((&k16, &v16), dims, (&q, &mut out), &seqs, &shape),
                    "q8_0" => run((&k8, &v8), dims, (&q, &mut out), &seqs, &shape),
                    _ => run((&kf, &vf), dims, (&q, &mut out), &seqs, &shape),
                });
                let (kh, vh) = (held(cache, &kf, &k8), held(cache, &vf, &v8));
                for (s, seq) in seqs.iter().enumerate() {
                    let pos = seq.start_pos;
                    let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    for h in 0..heads {
                        let g = h / group;
                        let row = |src: &[f32], j: usize| -> Vec<f32> {
                            let slot = tables[s][j / bs] as usize * bs + j % bs;
                            src[(slot * kv_heads + g) * d..][..d].to_vec()
                        };
                        let ks: Vec<_> = (lo..=pos).map(|j| row(&kh, j)).collect();
                        let vs: Vec<_> = (lo..=pos).map(|j| row(&vh, j)).collect();
                        let at = (s * heads + h) * d;
                        let sink = sinks.map(|x| x[h]);
                        let bias = alibi.map(|m| (m[h], lo as isize - pos as isize));
                        let want = dense_capped(&q[at..at + d], &ks, &vs, 0.2, softcap, sink, bias);
                        for (e, (a, b)) in out[at..at + d].iter().zip(&want).enumerate() {
                            assert!(
                                (a - b).abs() < 2e-5,
                                "{cache} window {window:?} cap {softcap:?} sinks {} alibi {} seq {s} head {h} [{e}]: {a} vs {b}",
                                sinks.is_some(),
                                alibi.is_some()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tasks_take_whole_groups_unless_too_few() {
        let threads = rayon::current_num_threads();
        // Plenty of rows: a whole group per task.
        assert_eq!(heads_per_task(64 * threads, 2, 7), 7);
        assert_eq!(heads_per_task(64 * threads, 1, 4), 4);
        // One decode row and one KV head: the group splits, into divisors only.
        let c = heads_per_task(1, 1, 4);
        assert!(4usize.is_multiple_of(c) && (c < 4 || threads == 1), "{c}");
        assert!(matches!(heads_per_task(1, 2, 7), 1 | 7));
    }
}
