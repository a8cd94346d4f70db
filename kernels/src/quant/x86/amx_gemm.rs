//! Prefill products on AMX (`amx`): y[M×N] = x[M×K] · Wᵀ with bf16 operands and f32 sums.
//!
//! The activations are rounded to bf16 once, into A tiles (rows padded with zeros to a
//! multiple of 32).
//! Each task takes a group of up to four blocks of 32 weight rows (and, on CPUs with more
//! threads than groups, a range of activation rows): it decodes them into B tiles that stay in
//! L2, then walks its activation rows 32 at a time, each 32×32 block of y one pass of 2×2
//! tiles over K. A block inside y is stored straight from the tiles; one at an edge goes
//! through a buffer.
//!
//! Unlike the VNNI kernels, which quantize the activations to 8 bits, nothing here depends on
//! the weight format's blocks: the products are those of the dequantized weights, within bf16
//! rounding. bf16 weight matrices (safetensors checkpoints) go to the tiles as they are.
use super::amx::{has_amx_bf16, ARows, Tiles, TILE_K};
use super::bf16_tiles::{a_tiles, b_tiles, b_tiles_bytes, bf16_b_tiles};
use super::{panel, repack_panel};
use crate::activation::glu_chunk;
use crate::quant::{Input, QuantType};
use rayon::prelude::*;
use std::cell::RefCell;

/// Weight rows (and activation rows) of one pass of the 2×2 tiles.
const BLOCK: usize = 32;
/// Bytes of B tiles a task keeps (its weight blocks), with room left in a 2 MiB L2 for the
/// activation rows it streams past them.
const GROUP_TILE_BYTES: usize = 768 << 10;
/// At most this many weight blocks per task (beyond it L3 reads no longer dominate).
const MAX_GROUP: usize = 4;

thread_local! {
    /// A task's four VNNI panels and its weight rows' B tiles (per worker thread).
    static WEIGHTS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The activations in bf16 (per calling thread; taken out while in use).
    static XB: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// A GLU input's 16 rows, computed before they become A tiles (per worker thread).
    static GLU_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// y, written by tasks at disjoint 32×32 blocks.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes only its own blocks of y (disjoint weight-row blocks or activation
// row ranges), and `gemm` keeps y borrowed until every task has finished.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Where y's row `r`, column `c` lives (y is `n` wide).
    fn at(self, r: usize, c: usize, n: usize) -> *mut f32 {
        self.0.wrapping_add(r * n + c)
    }
}

/// The weight matrix of a product: `n` rows of `k` values.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// GGML blocks of `ty`, `row_bytes` per row.
    Quant {
        ty: QuantType,
        w: &'a [u8],
        row_bytes: usize,
    },
    /// bf16 values (their bits), row-major: the tiles take them as they are.
    Bf16(&'a [u16]),
}

impl Weights<'_> {
    /// Whether these are `n` whole rows of `k` values.
    fn holds(&self, n: usize, k: usize) -> bool {
        match *self {
            Weights::Quant { ty, w, row_bytes } => {
                Some(row_bytes) == ty.row_bytes(k) && w.len() == n * row_bytes
            }
            Weights::Bf16(bits) => bits.len() == n * k,
        }
    }
}

/// y (m × n, row-major) = x (m × k) · Wᵀ.
pub fn gemm(
    w: Weights<'_>,
    n: usize,
    k: usize,
    x: Input<'_>,
    m: usize,
    y: &mut [f32],
    threads: usize,
) {
    assert!(has_amx_bf16(), "AMX products need AMX-BF16");
    assert!(w.holds(n, k) && k.is_multiple_of(TILE_K) && x.wrong_length(m * k).is_none());
    assert_eq!(y.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    // The bf16 activations' buffer of this thread, taken out while in use.
    let mut xb = XB.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let padded = m.next_multiple_of(BLOCK);
    if xb.len() < padded * k {
        xb.resize(padded * k, 0);
    }
    let xbuf = &mut xb[..padded * k];
    // In parallel: one thread converting 512 rows of 4864 took 9% of the product's time.
    xbuf.par_chunks_mut(16 * k)
        .enumerate()
        .for_each(|(g, tiles)| {
            let rows = (16 * g * k).min(m * k)..(16 * (g + 1) * k).min(m * k);
            // SAFETY (both): the CPU has AVX-512 BF16 (part of `has_amx_bf16`); k is a
            // multiple of 32, the rows whole rows (at most 16) and `tiles` 16 rows' worth.
            match x {
                Input::Rows(x) => unsafe { a_tiles(&x[rows], k, tiles) },
                Input::Glu { gate, up, act } => GLU_ROWS.with(|buf| {
                    let buf = &mut *buf.borrow_mut();
                    buf.resize(rows.len(), 0.0);
                    glu_chunk(&gate[rows.clone()], &up[rows], act, buf);
                    unsafe { a_tiles(buf, k, tiles) }
                }),
            }
        });
    let xbuf = &xbuf[..];

    let weight_blocks = n.div_ceil(BLOCK);
    let row_blocks = padded / BLOCK;
    // Weight blocks per task: their B tiles and one row block of A stay in L2 together, so
    // each 32 activation rows are read from L3 once per group rather than once per block.
    let tb = 2 * b_tiles_bytes(k);
    let per_group = (GROUP_TILE_BYTES / tb).clamp(1, MAX_GROUP);
    let groups = weight_blocks.div_ceil(per_group);
    // Enough tasks for every thread twice; each activation range re-decodes its weight rows.
    let ranges = (2 * threads).div_ceil(groups).clamp(1, row_blocks);
    let per_range = row_blocks.div_ceil(ranges);
    let out = Out(y.as_mut_ptr());
    // Weight block wb: its first row and its row count (32, or fewer at the end).
    let block_rows = |wb: usize| (wb * BLOCK, (n - wb * BLOCK).min(BLOCK));
    (0..groups * ranges).into_par_iter().for_each(|t| {
        let (group, range) = (t / ranges, t % ranges);
        let wbs = group * per_group..((group + 1) * per_group).min(weight_blocks);
        let row_range = range * per_range..((range + 1) * per_range).min(row_blocks);
        WEIGHTS.with(|buf| {
            let (panels, tiles) = &mut *buf.borrow_mut();
            tiles.resize(wbs.len() * tb, 0);
            for (i, wb) in wbs.clone().enumerate() {
                let (first, rows) = block_rows(wb);
                let out = &mut tiles[i * tb..(i + 1) * tb];
                decode_weight_block(w, first..first + rows, k, panels, out);
            }
            // SAFETY: `has_amx_bf16` was checked above.
            let amx = unsafe { Tiles::configure() };
            let mut edge = [0f32; BLOCK * BLOCK];
            for rb in row_range {
                // Row blocks cover m padded to 32, so every one holds at least one real row.
                let r0 = rb * BLOCK;
                let live = (m - r0).min(BLOCK);
                let a = ARows::tiled(xbuf[r0 * k..].as_ptr().cast(), k / TILE_K);
                for (i, wb) in wbs.clone().enumerate() {
                    let (first, rows) = block_rows(wb);
                    let b = tiles[i * tb..].as_ptr();
                    if live == BLOCK && rows == BLOCK {
                        // SAFETY: A is two runs of k/32 A tiles inside xbuf; the B
                        // runs are k/32 tiles each; the 32×32 block at (r0, first) lies inside
                        // y, whose rows are n·4 bytes apart, and no other task writes it.
                        unsafe {
                            let c = out.at(r0, first, n) as *mut u8;
                            amx.block_32x32(a, b, k / TILE_K, c, 4 * n)
                        };
                        continue;
                    }
                    // SAFETY: as above, C going to `edge` (32 rows of 32 f32).
                    unsafe {
                        let c = edge.as_mut_ptr() as *mut u8;
                        amx.block_32x32(a, b, k / TILE_K, c, 4 * BLOCK)
                    };
                    for (i, src) in edge.chunks_exact(BLOCK).take(live).enumerate() {
                        // SAFETY: row r0 + i < m, columns first..first + rows < n: inside y,
                        // and in this task's block only.
                        unsafe {
                            let dst = out.at(r0 + i, first, n);
                            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, rows);
                        }
                    }
                }
            }
        });
    });
    XB.with(|b| *b.borrow_mut() = xb);
}

/// The B tiles of up to 32 weight rows (`rows` of `w`) into `tiles` (two runs of
/// `b_tiles_bytes(k)`: rows 0..16, 16..32; missing rows are zeros): blocks through four VNNI
/// panels in `panels`, bf16 rows directly.
fn decode_weight_block(
    w: Weights<'_>,
    rows: std::ops::Range<usize>,
    k: usize,
    panels: &mut Vec<u8>,
    tiles: &mut [u8],
) {
    let tb = b_tiles_bytes(k);
    debug_assert_eq!(tiles.len(), 2 * tb);
    let (ty, w, row_bytes) = match w {
        Weights::Quant { ty, w, row_bytes } => (ty, w, row_bytes),
        Weights::Bf16(bits) => {
            let bits = &bits[rows.start * k..rows.end * k];
            for (half, out) in tiles.chunks_exact_mut(tb).enumerate() {
                let lo = (half * 16 * k).min(bits.len());
                let hi = (lo + 16 * k).min(bits.len());
                // SAFETY: the CPU has AVX-512 BF16 (`has_amx_bf16`); k is a multiple of 32,
                // `lo..hi` whole rows (at most 16), `out` b_tiles_bytes(k).
                unsafe { bf16_b_tiles(&bits[lo..hi], k, out) };
            }
            return;
        }
    };
    let w = &w[rows.start * row_bytes..rows.end * row_bytes];
    let pb = panel::panel_bytes(k);
    panels.resize(4 * pb, 0);
    let rows = w.len() / row_bytes;
    for (p, out) in panels.chunks_exact_mut(pb).enumerate() {
        let lo = (p * panel::ROWS).min(rows);
        let hi = (lo + panel::ROWS).min(rows);
        if lo == hi {
            out.fill(0);
        } else {
            repack_panel(ty, &w[lo * row_bytes..hi * row_bytes], row_bytes, k, out);
        }
    }
    for (half, out) in tiles.chunks_exact_mut(tb).enumerate() {
        let lo = &panels[2 * half * pb..(2 * half + 1) * pb];
        let hi = &panels[(2 * half + 1) * pb..(2 * half + 2) * pb];
        // SAFETY: the CPU has AVX-512 VNNI and BF16 (`has_amx_bf16`); the panels are
        // `panel_bytes(k)` each and `out` `b_tiles_bytes(k)`.
        unsafe { b_tiles(lo, hi, k, out) };
    }
}
