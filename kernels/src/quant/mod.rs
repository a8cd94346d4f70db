//! Matrix products against GGML block-quantized weights, with the activations quantized to
//! 8-bit blocks (llama.cpp's approach): y[M×N] = x[M×K] · Wᵀ, W being N rows of K elements
//! stored as GGUF blocks.
//!
//! Why not candle's `QMatMul`: it has no SIMD dot product for Q5_0 (the type most 896/640-wide
//! tensors of Q4_K_M files use, because K-quants need rows that are multiples of 256) and it
//! computes an M-row product as M separate vector products. Here every decoded weight block is
//! reused across a tile of up to four activation rows, and the dot products use AVX2 where the
//! CPU has it (runtime-detected), with a portable scalar path that is also the reference.
mod activations;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod blocks;
mod scalar;

pub use activations::{QuantizedRows, RowsView};
pub use blocks::{dequantize, QuantType};

use rayon::prelude::*;

/// Activation rows processed together against each decoded weight block (with two weight rows
/// at a time, 4 × 2 accumulators fit the 16 AVX2 registers beside the operands).
pub const ROW_TILE: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("row length {k} is not a multiple of the {block}-element block")]
    RowLength { k: usize, block: usize },
    #[error("weight buffer has {got} bytes, {n}×{k} {ty:?} needs {want}")]
    WeightSize {
        got: usize,
        want: usize,
        n: usize,
        k: usize,
        ty: QuantType,
    },
    #[error("activations have {got} values, {m}×{k} needs {want}")]
    InputSize {
        got: usize,
        want: usize,
        m: usize,
        k: usize,
    },
}

/// Which implementation runs the dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 kernels with AVX-512 VNNI's byte dot product.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Isa {
    /// The best this CPU supports, or what `CANDOR_KERNEL_ISA` (`scalar`, `avx2`, `vnni`)
    /// asks for where the CPU supports it (for A/B measurements). Decided once per process.
    pub fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            let best = Isa::best();
            match std::env::var("CANDOR_KERNEL_ISA").as_deref() {
                Ok("scalar") => Isa::Scalar,
                #[cfg(target_arch = "x86_64")]
                Ok("avx2") if best != Isa::Scalar => Isa::Avx2,
                _ => best,
            }
        })
    }

    fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            let vnni = std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl");
            match (avx2, vnni) {
                (true, true) => return Isa::Avx512Vnni,
                (true, false) => return Isa::Avx2,
                _ => {}
            }
        }
        Isa::Scalar
    }
}

/// Dot products of `C` weight rows with `rows` (≤ R) quantized activation rows, added into
/// `out[c][r]`.
fn tile_dots<const C: usize, const R: usize>(
    isa: Isa,
    ty: QuantType,
    w: [&[u8]; C],
    x: &RowsView<'_>,
    rows: usize,
    out: &mut [[f32; R]; C],
) {
    match isa {
        Isa::Scalar => scalar::dots::<C, R>(ty, w, x, rows, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => {
            let vnni = isa == Isa::Avx512Vnni;
            // The SIMD kernel takes the row count as a constant (its accumulators then live in
            // registers), so dispatch on it.
            fn run<const C: usize, const N: usize, const R: usize>(
                vnni: bool,
                ty: QuantType,
                w: [&[u8]; C],
                x: &RowsView<'_>,
                out: &mut [[f32; R]; C],
            ) {
                let mut acc = [[0f32; N]; C];
                // SAFETY: `Isa::Avx2`/`Avx512Vnni` are only produced by `detect` after checking
                // avx2, fma, f16c (and avx512vnni+vl); `matmul_with` checked that every row holds K/32 whole blocks and
                // that x has K/32 blocks per row; the view holds exactly N rows.
                unsafe { avx2::dots::<C, N>(vnni, ty, w, x, N, &mut acc) };
                for (o, a) in out.iter_mut().zip(&acc) {
                    for (o, a) in o.iter_mut().zip(a) {
                        *o += a;
                    }
                }
            }
            match rows {
                1 => run::<C, 1, R>(vnni, ty, w, x, out),
                2 => run::<C, 2, R>(vnni, ty, w, x, out),
                3 => run::<C, 3, R>(vnni, ty, w, x, out),
                _ => run::<C, 4, R>(vnni, ty, w, x, out),
            }
        }
    }
}

/// y[M×N] = x[M×K] · Wᵀ with `w` holding N rows of K elements of type `ty`.
pub fn matmul(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    matmul_with(Isa::detect(), ty, w, n, k, x, m, y)
}

#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    let block = ty.block_elems();
    if !k.is_multiple_of(block) {
        return Err(QuantError::RowLength { k, block });
    }
    let row_bytes = k / block * ty.block_bytes();
    if w.len() != n * row_bytes {
        return Err(QuantError::WeightSize {
            got: w.len(),
            want: n * row_bytes,
            n,
            k,
            ty,
        });
    }
    if x.len() != m * k || y.len() != m * n {
        return Err(QuantError::InputSize {
            got: x.len(),
            want: m * k,
            m,
            k,
        });
    }
    if !k.is_multiple_of(32) {
        return Err(QuantError::RowLength { k, block: 32 });
    }
    let xq = QuantizedRows::quantize(x, m, k);
    // Each task owns a run of weight rows and writes their outputs for every activation row
    // into a buffer of its own, copied into `y` one activation row at a time afterwards.
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = n.div_ceil(threads * 4).max(16);
    let parts: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(rows_per_task))
        .into_par_iter()
        .map(|t| {
            let start = t * rows_per_task;
            let end = (start + rows_per_task).min(n);
            let len = end - start;
            let mut part = vec![0f32; len * m];
            let row_of = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
            let mut row = start;
            while row < end {
                let pair = end - row >= 2;
                let mut r0 = 0;
                while r0 < m {
                    let rows = (m - r0).min(ROW_TILE);
                    let view = xq.rows(r0, rows);
                    if pair {
                        let mut acc = [[0f32; ROW_TILE]; 2];
                        tile_dots::<2, ROW_TILE>(
                            isa,
                            ty,
                            [row_of(row), row_of(row + 1)],
                            &view,
                            rows,
                            &mut acc,
                        );
                        for (c, a) in acc.iter().enumerate() {
                            let j = row + c - start;
                            for (i, v) in a[..rows].iter().enumerate() {
                                part[(r0 + i) * len + j] = *v;
                            }
                        }
                    } else {
                        let mut acc = [[0f32; ROW_TILE]; 1];
                        tile_dots::<1, ROW_TILE>(isa, ty, [row_of(row)], &view, rows, &mut acc);
                        let j = row - start;
                        for (i, v) in acc[0][..rows].iter().enumerate() {
                            part[(r0 + i) * len + j] = *v;
                        }
                    }
                    r0 += rows;
                }
                row += if pair { 2 } else { 1 };
            }
            (start, part)
        })
        .collect();
    for (start, part) in parts {
        let len = part.len() / m.max(1);
        for (r, src) in part.chunks_exact(len.max(1)).enumerate() {
            y[r * n + start..r * n + start + len].copy_from_slice(src);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
