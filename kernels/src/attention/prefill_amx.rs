//! Prefill attention blocks (`prefill`) on AMX tiles: the same walk over 64-key chunks with an
//! online softmax, but both products of a chunk run as bf16 tile products with f32 sums
//! (`quant::x86::amx`): scores S = Q·Kᵀ for all the block's queries at once (keys take the
//! place of weight rows), then O = P·V with the softmax weights P (V transposed, its
//! dimensions in the place of weight rows), as flash-attention does on GPUs.
//!
//! Every operand is split into two bf16 values (`split_bf16`: f16 keys and values exactly, f32
//! queries and weights to 2⁻¹⁷ relative) and each product runs over the pairs as one product
//! of thrice the depth (hi·hi + hi·lo + lo·hi, the operands laid side by side). Rounded to one
//! bf16 each, as GPU kernels round them, keys of a few hundred (Qwen2.5's biased channels)
//! lose whole units: a prompt scored in one pass moved 0.07 nats from the one-row steps that
//! decode it, and a prefill on the tiles from one found in the prefix cache. Split, outputs
//! come ~300x nearer the f32 kernels' (the tests' keys of 150), at 1.4x the time of one bf16
//! and 0.75x that of the f32 kernels (512-token prefill, Xeon AMX, 2 threads); Qwen2.5's
//! logprobs are as near transformers' as with the f32 kernels. Only f16 and q8_0 caches come
//! here (those of quantized and half-precision models); f32 caches stay on the f32 kernels.
use super::prefill::{softmax_step, BlockScratch, RowBlock, Running, KEYS};
use super::{Emit, KvElement, RowReader};
use crate::quant::x86::amx::{has_amx_bf16, ARows, Tiles, TILE_K};
use crate::quant::x86::bf16_tiles::{b_tiles_bytes, bf16_b_tiles, row_pair_b_tiles, split_bf16};

/// Queries (and keys, and V dimensions) per pass of the 2×2 tiles.
const BLOCK: usize = 32;

/// Whether blocks of head_dim `d` run here: a CPU with AMX-BF16 (not turned off) and `d` a
/// whole number of tile steps.
pub fn usable(d: usize) -> bool {
    d > 0 && d.is_multiple_of(TILE_K) && has_amx_bf16()
}

/// How many bf16 terms each operand of a product spans (`split_bf16`'s three pair products).
const TERMS: usize = 3;

/// Per-task buffers (inside `BlockScratch`).
#[derive(Default)]
pub struct AmxScratch {
    /// The block's queries, `[queries rounded up to 32][hi | hi | lo]` (d bf16 each).
    q: Vec<u16>,
    /// One K or V row widened.
    row: Vec<f32>,
    /// The chunk's keys, `[KEYS][hi | lo | hi]`, and as B tiles (4 runs of 16 keys).
    k: Vec<u16>,
    k_tiles: Vec<u8>,
    /// The chunk's V rows, `[hi rows; lo rows; hi rows]` (KEYS rows of d each), and as B
    /// tiles (runs of 16 dimensions).
    v: Vec<u16>,
    v_tiles: Vec<u8>,
    /// Scores, then weights, `[queries][KEYS]`; the weights as `[hi | hi | lo]`; the chunk's
    /// P·V.
    scores: Vec<f32>,
    p: Vec<u16>,
    o: Vec<f32>,
    /// Per query: the online softmax, and this chunk's rescale factor.
    run: Running,
    alpha: Vec<f32>,
}

/// `prefill::attend_rows` on tiles.
///
/// # Safety
/// `usable(head_dim)` must hold, and the CPU have the features `R` needs.
#[inline(always)]
pub unsafe fn attend_rows<E: KvElement, R: RowReader<E>>(
    b: &RowBlock<'_, E>,
    scratch: &mut BlockScratch,
    emit: Emit<'_>,
) {
    let kv = b.kv;
    let (d, re) = (kv.head_dim, kv.row_elems());
    let queries = b.rows * b.group;
    let padded = queries.next_multiple_of(BLOCK);
    let s = &mut scratch.amx;
    // The products' depths: both operands' pairs side by side.
    let (dq, dp) = (TERMS * d, TERMS * KEYS);
    let (tk, tv) = (b_tiles_bytes(dq), b_tiles_bytes(dp));
    s.q.clear();
    s.q.resize(padded * dq, 0);
    s.row.resize(d, 0.0);
    s.k.resize(KEYS * dq, 0);
    s.k_tiles.resize(KEYS / 16 * tk, 0);
    s.v.resize(dp * d, 0);
    s.v_tiles.resize(d / 16 * tv, 0);
    s.scores.resize(padded * KEYS, 0.0);
    s.p.clear();
    s.p.resize(padded * dp, 0);
    s.o.resize(padded * d, 0.0);
    s.run.reset(b);
    s.alpha.resize(queries, 1.0);
    for r in 0..b.rows {
        for g in 0..b.group {
            let qv = r * b.group + g;
            // SAFETY: the CPU has AVX-512 BF16 (`usable`); d values each, a multiple of 32.
            unsafe {
                split_terms(
                    b.query(r, g),
                    &mut s.q[qv * dq..(qv + 1) * dq],
                    Terms::HiHiLo,
                )
            };
        }
    }
    // SAFETY: `usable` checked AMX.
    let amx = unsafe { Tiles::configure() };
    for chunk in b.chunks() {
        let live = chunk.len();
        for i in 0..live {
            let at = b.kv_offset(chunk.start + i);
            // SAFETY (each): forwarded from this function's contract; rows of d values, and
            // the CPU has AVX-512 BF16 (`usable`).
            unsafe {
                let k = R::read(&kv.k[at..at + re], &mut s.row);
                split_terms(k, &mut s.k[i * dq..(i + 1) * dq], Terms::HiLoHi);
                let v = R::read(&kv.v[at..at + re], &mut s.row);
                let (hi, rest) = s.v[i * d..].split_at_mut(KEYS * d);
                let (lo, hi2) = rest.split_at_mut(KEYS * d);
                split_bf16(v, &mut hi[..d], &mut hi2[..d], &mut lo[..d]);
            }
        }
        // A last chunk's missing keys: zero V rows in each third (weighed by zeros, but rows
        // of the previous chunk would still be multiplied).
        for third in s.v.chunks_exact_mut(KEYS * d) {
            third[live * d..].fill(0);
        }
        // Past the last key: zeros (finite scores, nothing weighed). Key tiles of 16 keys
        // (transposed), V tiles straight from pairs of V rows.
        for (g, out) in s.k_tiles.chunks_exact_mut(tk).enumerate() {
            let keys = &s.k[(16 * g).min(live) * dq..(16 * g + 16).min(live) * dq];
            // SAFETY: as above; dq a multiple of 32, at most 16 whole rows, `out` tk bytes.
            unsafe { bf16_b_tiles(keys, dq, out) };
        }
        // SAFETY: as above; d a multiple of 16, dp rows, dp a multiple of 32, the V tiles
        // d/16 runs of tv bytes.
        unsafe { row_pair_b_tiles(&s.v, d, dp, &mut s.v_tiles) };
        // SAFETY: the queries are `padded` rows of dq bf16, the key tiles KEYS/16 runs of dq/32
        // tiles, the scores `padded` rows of KEYS f32.
        unsafe {
            let (q, scores) = (s.q.as_ptr(), s.scores.as_mut_ptr());
            tile_products(
                &amx,
                (q, dq),
                (s.k_tiles.as_ptr(), tk),
                (scores, KEYS),
                padded,
            )
        };
        for r in 0..b.rows {
            let keys = b.row_keys(r, &chunk);
            for g in 0..b.group {
                let qv = r * b.group + g;
                let row = &mut s.scores[qv * KEYS..(qv + 1) * KEYS];
                if keys.is_empty() {
                    s.alpha[qv] = 1.0;
                } else {
                    let (max, sum) = (&mut s.run.max[qv], &mut s.run.sum[qv]);
                    let alibi = b.alibi(r, g, chunk.start + keys.start);
                    s.alpha[qv] = softmax_step(&mut row[keys.clone()], b.shape, alibi, max, sum);
                }
                row[..keys.start].fill(0.0);
                row[keys.end..].fill(0.0);
                // SAFETY: as for the queries; KEYS (64) values.
                unsafe { split_terms(row, &mut s.p[qv * dp..(qv + 1) * dp], Terms::HiHiLo) };
            }
        }
        // SAFETY: the weights are `padded` rows of dp bf16, the V tiles d/16 runs of dp/32
        // tiles, the outputs `padded` rows of d f32.
        unsafe {
            let (p, o) = (s.p.as_ptr(), s.o.as_mut_ptr());
            tile_products(&amx, (p, dp), (s.v_tiles.as_ptr(), tv), (o, d), padded)
        };
        for (qv, &alpha) in s.alpha.iter().enumerate() {
            let acc = &mut s.run.acc[qv * d..(qv + 1) * d];
            for (a, &o) in acc.iter_mut().zip(&s.o[qv * d..(qv + 1) * d]) {
                *a = *a * alpha + o;
            }
        }
    }
    drop(amx);
    s.run.emit(b, emit);
}

/// How `split_terms` lays out an operand's thirds: the A operand (queries, weights) as
/// `[hi | hi | lo]` meets the B operand (keys, V) as `[hi | lo | hi]`.
#[derive(Clone, Copy)]
enum Terms {
    HiHiLo,
    HiLoHi,
}

/// `x` split (`split_bf16`) into `out` (`TERMS` × its length), laid out as `terms` says.
///
/// # Safety
/// As `split_bf16`; `out.len() == TERMS * x.len()`.
#[inline(always)]
unsafe fn split_terms(x: &[f32], out: &mut [u16], terms: Terms) {
    let n = x.len();
    let (hi, rest) = out.split_at_mut(n);
    let (b, c) = rest.split_at_mut(n);
    let (lo, hi2) = match terms {
        Terms::HiHiLo => (c, b),
        Terms::HiLoHi => (b, c),
    };
    // SAFETY: forwarded.
    unsafe { split_bf16(x, hi, hi2, lo) };
}

/// C = A · Bᵀ on tiles, 32×32 at a time: A is `rows` rows of `a.1` bf16 at `a.0`, B the B-tile
/// runs of 16 of its rows at `b.0` (`b.1` bytes a run, `a.1 / 32` tiles), C `rows` rows of
/// `c.1` f32 at `c.0` (one column per 16 rows of B, so `c.1 / 16` runs).
///
/// # Safety
/// `amx` configured this thread's tiles; every buffer holds what it describes; `rows` and
/// `c.1` are multiples of 32.
unsafe fn tile_products(
    amx: &Tiles,
    a: (*const u16, usize),
    b: (*const u8, usize),
    c: (*mut f32, usize),
    rows: usize,
) {
    for i in 0..rows / BLOCK {
        for j in 0..c.1 / BLOCK {
            // SAFETY: forwarded; block (i, j) lies inside each buffer.
            unsafe {
                amx.block_32x32(
                    ARows::row_major(a.0.add(i * BLOCK * a.1).cast(), 2 * a.1),
                    b.0.add(2 * j * b.1),
                    a.1 / TILE_K,
                    c.0.add(i * BLOCK * c.1 + j * BLOCK).cast(),
                    4 * c.1,
                )
            };
        }
    }
}
