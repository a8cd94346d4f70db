//! Prefill attention blocks (`prefill`) on AMX tiles: the same walk over 64-key chunks with an
//! online softmax, but both products of a chunk run as bf16 tile products with f32 sums
//! (`quant::x86::amx`): scores S = Q·Kᵀ for all the block's queries at once (keys take the
//! place of weight rows), then O = P·V with the weights P rounded to bf16 (V transposed, its
//! dimensions in the place of weight rows), as flash-attention does on GPUs.
//!
//! Q, K and V are rounded to bf16: outputs differ from the f32 kernels by about bf16's half ulp
//! (2⁻⁹) relative, the rounding GPU attention kernels make. Only f16 caches come here (those of
//! quantized and half-precision models); f32 caches are the precise path and stay on f32.
use super::prefill::{softmax_step, BlockScratch, RowBlock, Running, KEYS};
use super::{Emit, KvElement, RowReader};
use crate::quant::x86::amx::{has_amx_bf16, ARows, Tiles, TILE_K};
use crate::quant::x86::bf16_tiles::{b_tiles_bytes, bf16_b_tiles, row_pair_b_tiles, to_bf16};

/// Queries (and keys, and V dimensions) per pass of the 2×2 tiles.
const BLOCK: usize = 32;

/// Whether blocks of head_dim `d` run here: a CPU with AMX-BF16 (not turned off) and `d` a
/// whole number of tile steps.
pub fn usable(d: usize) -> bool {
    d > 0 && d.is_multiple_of(TILE_K) && has_amx_bf16()
}

/// Per-task buffers (inside `BlockScratch`).
#[derive(Default)]
pub struct AmxScratch {
    /// The block's queries in bf16, `[queries rounded up to 32][d]`.
    q: Vec<u16>,
    /// One K or V row widened.
    row: Vec<f32>,
    /// The chunk's keys in bf16, `[KEYS][d]`, and as B tiles (4 runs of 16 keys).
    k: Vec<u16>,
    k_tiles: Vec<u8>,
    /// The chunk's V rows in bf16, `[keys][d]`, and as B tiles (runs of 16 dimensions).
    v: Vec<u16>,
    v_tiles: Vec<u8>,
    /// Scores, then weights, `[queries][KEYS]`; the weights in bf16; the chunk's P·V.
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
    let (tk, tv) = (b_tiles_bytes(d), b_tiles_bytes(KEYS));
    s.q.clear();
    s.q.resize(padded * d, 0);
    s.row.resize(d, 0.0);
    s.k.resize(KEYS * d, 0);
    s.k_tiles.resize(KEYS / 16 * tk, 0);
    s.v.resize(KEYS * d, 0);
    s.v_tiles.resize(d / 16 * tv, 0);
    s.scores.resize(padded * KEYS, 0.0);
    s.p.clear();
    s.p.resize(padded * KEYS, 0);
    s.o.resize(padded * d, 0.0);
    s.run.reset(b);
    s.alpha.resize(queries, 1.0);
    for r in 0..b.rows {
        for g in 0..b.group {
            let qv = r * b.group + g;
            // SAFETY: the CPU has AVX-512 BF16 (`usable`); d values each, a multiple of 32.
            unsafe { to_bf16(b.query(r, g), &mut s.q[qv * d..(qv + 1) * d]) };
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
                to_bf16(k, &mut s.k[i * d..(i + 1) * d]);
                let v = R::read(&kv.v[at..at + re], &mut s.row);
                to_bf16(v, &mut s.v[i * d..(i + 1) * d]);
            }
        }
        // Past the last key: zeros (finite scores, nothing weighed). Key tiles of 16 keys
        // (transposed), V tiles straight from pairs of V rows.
        for (g, out) in s.k_tiles.chunks_exact_mut(tk).enumerate() {
            let keys = &s.k[(16 * g).min(live) * d..(16 * g + 16).min(live) * d];
            // SAFETY: as above; d a multiple of 32, at most 16 whole rows, `out` tk bytes.
            unsafe { bf16_b_tiles(keys, d, out) };
        }
        // SAFETY: as above; d a multiple of 16, `live` ≤ KEYS rows, KEYS a multiple of 32,
        // the V tiles d/16 runs of tv bytes.
        unsafe { row_pair_b_tiles(&s.v[..live * d], d, KEYS, &mut s.v_tiles) };
        // SAFETY: the queries are `padded` rows of d bf16, the key tiles KEYS/16 runs of d/32
        // tiles, the scores `padded` rows of KEYS f32.
        unsafe {
            let (q, scores) = (s.q.as_ptr(), s.scores.as_mut_ptr());
            tile_products(
                &amx,
                (q, d),
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
                    s.alpha[qv] = softmax_step(&mut row[keys.clone()], b.shape, max, sum);
                }
                row[..keys.start].fill(0.0);
                row[keys.end..].fill(0.0);
                // SAFETY: as for the queries; KEYS (64) values.
                unsafe { to_bf16(row, &mut s.p[qv * KEYS..(qv + 1) * KEYS]) };
            }
        }
        // SAFETY: the weights are `padded` rows of KEYS bf16, the V tiles d/16 runs of KEYS/32
        // tiles, the outputs `padded` rows of d f32.
        unsafe {
            let (p, o) = (s.p.as_ptr(), s.o.as_mut_ptr());
            tile_products(&amx, (p, KEYS), (s.v_tiles.as_ptr(), tv), (o, d), padded)
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
