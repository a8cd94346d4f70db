//! Prefill attention blocks (`prefill`) on AMX tiles: the same walk over 64-key chunks with an
//! online softmax, but both products of a chunk run as bf16 tile products with f32 sums
//! (`quant::x86::amx`): scores S = Q·Kᵀ for all the block's queries at once (keys take the
//! place of weight rows), then O = P·V with the weights P rounded to bf16 (V transposed, its
//! dimensions in the place of weight rows), as flash-attention does on GPUs.
//!
//! Q, K and V are rounded to bf16: outputs differ from the f32 kernels by about bf16's half ulp
//! (2⁻⁹) relative, the rounding GPU attention kernels make. Only f16 caches come here (those of
//! quantized and half-precision models); f32 caches are the precise path and stay on f32.
use super::prefill::{softmax_step, BlockScratch, RowBlock, KEYS};
use super::{Emit, RowReader};
use crate::quant::x86::amx::{has_amx_bf16, Tiles, TILE_K};
use crate::quant::x86::bf16_tiles::{b_tiles_bytes, bf16_b_tiles, to_bf16};

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
    /// The chunk's V transposed, `[d][KEYS]` (f32, then bf16), and as B tiles (runs of 16
    /// dimensions).
    vt: Vec<f32>,
    vt16: Vec<u16>,
    v_tiles: Vec<u8>,
    /// Scores, then weights, `[queries][KEYS]`; the weights in bf16; the chunk's P·V.
    scores: Vec<f32>,
    p: Vec<u16>,
    o: Vec<f32>,
    /// Per query: running max, sum, output, and this chunk's rescale factor.
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
    alpha: Vec<f32>,
}

/// `prefill::attend_rows` on tiles.
///
/// # Safety
/// `usable(head_dim)` must hold, and the CPU have the features `R` needs.
#[inline(always)]
pub unsafe fn attend_rows<E, R: RowReader<E>>(
    b: &RowBlock<'_, E>,
    scratch: &mut BlockScratch,
    emit: Emit<'_>,
) {
    let kv = b.kv;
    let d = kv.head_dim;
    let heads = b.shape.heads;
    let queries = b.rows * b.group;
    let padded = queries.next_multiple_of(BLOCK);
    let s = &mut scratch.amx;
    let (tk, tv) = (b_tiles_bytes(d), b_tiles_bytes(KEYS));
    s.q.clear();
    s.q.resize(padded * d, 0);
    s.row.resize(d, 0.0);
    s.k.resize(KEYS * d, 0);
    s.k_tiles.resize(KEYS / 16 * tk, 0);
    s.vt.resize(d * KEYS, 0.0);
    s.vt16.resize(d * KEYS, 0);
    s.v_tiles.resize(d / 16 * tv, 0);
    s.scores.resize(padded * KEYS, 0.0);
    s.p.clear();
    s.p.resize(padded * KEYS, 0);
    s.o.resize(padded * d, 0.0);
    s.max.clear();
    s.max.resize(queries, f32::NEG_INFINITY);
    s.sum.clear();
    s.sum.resize(queries, 0.0);
    s.acc.clear();
    s.acc.resize(queries * d, 0.0);
    s.alpha.resize(queries, 1.0);
    for r in 0..b.rows {
        for g in 0..b.group {
            let qv = r * b.group + g;
            let at = ((b.first_row + r) * heads + b.kv_head * b.group + g) * d;
            // SAFETY: the CPU has AVX-512 BF16 (`usable`); d values each, a multiple of 32.
            unsafe { to_bf16(&b.q[at..at + d], &mut s.q[qv * d..(qv + 1) * d]) };
        }
    }
    let first_visible = |pos: usize| match b.shape.window {
        Some(w) if w > 0 => (pos + 1).saturating_sub(w),
        _ => 0,
    };
    let slot_of =
        |j: usize| b.table[j / kv.block_size] as usize * kv.block_size + j % kv.block_size;
    let last_pos = b.pos0 + b.rows - 1;
    // SAFETY: `usable` checked AMX.
    let amx = unsafe { Tiles::configure() };
    let mut start = first_visible(b.pos0);
    while start <= last_pos {
        let end = (start + KEYS).min(last_pos + 1);
        for i in 0..KEYS {
            let key = &mut s.k[i * d..(i + 1) * d];
            if start + i >= end {
                // Past the last key: zeros (finite scores, nothing weighed).
                key.fill(0);
                (0..d).for_each(|e| s.vt[e * KEYS + i] = 0.0);
                continue;
            }
            let at = (slot_of(start + i) * kv.kv_heads + b.kv_head) * d;
            // SAFETY (each): forwarded from this function's contract; rows of d values.
            unsafe {
                let k = R::read(&kv.k[at..at + d], &mut s.row);
                to_bf16(k, key);
            }
            let v = unsafe { R::read(&kv.v[at..at + d], &mut s.row) };
            for (e, &x) in v.iter().enumerate() {
                s.vt[e * KEYS + i] = x;
            }
        }
        // SAFETY: as for the queries; d·KEYS values.
        unsafe { to_bf16(&s.vt, &mut s.vt16) };
        for (keys, out) in s.k.chunks_exact(16 * d).zip(s.k_tiles.chunks_exact_mut(tk)) {
            bf16_b_tiles(keys, d, out);
        }
        for (dims, out) in s
            .vt16
            .chunks_exact(16 * KEYS)
            .zip(s.v_tiles.chunks_exact_mut(tv))
        {
            bf16_b_tiles(dims, KEYS, out);
        }
        for qb in 0..padded / BLOCK {
            for kb in 0..KEYS / BLOCK {
                // SAFETY: 32 query rows of d bf16 (2d bytes apart); key tiles 2·kb and
                // 2·kb + 1, d/32 tiles each; 32×32 scores inside `scores` (KEYS f32 a row).
                unsafe {
                    amx.block_32x32(
                        s.q.as_ptr().add(qb * BLOCK * d).cast(),
                        2 * d,
                        s.k_tiles.as_ptr().add(2 * kb * tk),
                        d / TILE_K,
                        s.scores
                            .as_mut_ptr()
                            .add(qb * BLOCK * KEYS + kb * BLOCK)
                            .cast(),
                        4 * KEYS,
                    )
                };
            }
        }
        for r in 0..b.rows {
            let pos = b.pos0 + r;
            let lo = first_visible(pos).max(start).min(end) - start;
            let hi = (pos + 1).min(end).max(start) - start;
            for g in 0..b.group {
                let qv = r * b.group + g;
                let row = &mut s.scores[qv * KEYS..(qv + 1) * KEYS];
                if lo < hi {
                    let (max, sum) = (&mut s.max[qv], &mut s.sum[qv]);
                    s.alpha[qv] = softmax_step(&mut row[lo..hi], b.shape, max, sum);
                } else {
                    s.alpha[qv] = 1.0;
                }
                row[..lo].fill(0.0);
                row[hi.max(lo)..].fill(0.0);
                // SAFETY: as for the queries; KEYS (64) values.
                unsafe { to_bf16(row, &mut s.p[qv * KEYS..(qv + 1) * KEYS]) };
            }
        }
        for qb in 0..padded / BLOCK {
            for db in 0..d / BLOCK {
                // SAFETY: 32 weight rows of KEYS bf16; V tiles 2·db and 2·db + 1, KEYS/32
                // tiles each; 32×32 outputs inside `o` (d f32 a row).
                unsafe {
                    amx.block_32x32(
                        s.p.as_ptr().add(qb * BLOCK * KEYS).cast(),
                        2 * KEYS,
                        s.v_tiles.as_ptr().add(2 * db * tv),
                        KEYS / TILE_K,
                        s.o.as_mut_ptr().add(qb * BLOCK * d + db * BLOCK).cast(),
                        4 * d,
                    )
                };
            }
        }
        for (qv, &alpha) in s.alpha.iter().enumerate() {
            let acc = &mut s.acc[qv * d..(qv + 1) * d];
            for (a, &o) in acc.iter_mut().zip(&s.o[qv * d..(qv + 1) * d]) {
                *a = *a * alpha + o;
            }
        }
        start = end;
    }
    drop(amx);
    for qv in 0..queries {
        let inv = 1.0 / s.sum[qv];
        let acc = &mut s.acc[qv * d..(qv + 1) * d];
        acc.iter_mut().for_each(|x| *x *= inv);
        emit(
            b.first_row + qv / b.group,
            b.kv_head * b.group + qv % b.group,
            acc,
        );
    }
}
