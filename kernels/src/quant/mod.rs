//! Matrix products against GGML block-quantized weights, with the activations quantized to
//! 8-bit blocks (llama.cpp's approach): y[M×N] = x[M×K] · Wᵀ, W being N rows of K elements
//! stored as GGUF blocks (Q4_0, Q5_0, Q8_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4,
//! IQ4_NL, IQ4_XS and the lattice-codebook IQ1/IQ2/IQ3 types), read in place.
//!
//! Why not candle's `QMatMul`: it has no SIMD dot product for Q5_0 (the type most 896/640-wide
//! tensors of Q4_K_M files use, because K-quants need rows that are multiples of 256) and it
//! computes an M-row product as M separate vector products. Here each decoded weight block is
//! reused across a tile of activation rows held in registers, with AVX-512 VNNI or AVX2 on
//! x86_64 and NEON (with `sdot` where the CPU has dotprod) on aarch64, chosen at run time, and
//! a portable scalar path that is also the reference.
//!
//! * `formats`: block layouts and dequantization.
//! * `iq_grid`, `iq_grids`: the lattice-codebook types' layouts and codebooks.
//! * `activations`: 8-bit activation blocks (per 32, or per 256 with 16-sums for K-quants).
//! * `reference`: scalar products.
//! * `tile_driver`: the walk over tiles that every SIMD kernel set shares.
//! * `x86`, `neon`: the SIMD kernels.
//! * `matmul`: shape checks, activation quantization, the split over threads.
mod activations;
mod formats;
pub mod iq_grid;
mod iq_grids;
mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
mod reference;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod tile_driver;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use crate::activation::Act;
pub use activations::{round_small, QuantizedRows, RowsView};
pub use formats::{
    decode_block, dequantize, e8m0_half, filler_blocks, iq4xs_scales, k_scales_mins, set_scales,
    ActFormat, IntBlock, QuantType, E8M0_HALF, IQ4NL_VALUES, MXFP4_DOUBLED,
};
pub use matmul::AMX_MIN_ROWS;

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
    #[error("output has {got} values, the product needs {want}")]
    OutputSize { got: usize, want: usize },
    #[error("this CPU cannot run the {0:?} kernels")]
    Unsupported(Isa),
}

/// Which implementation runs the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL/VNNI.
    Avx512Vnni,
    /// AVX-512 VNNI, and AMX tiles in bf16 for products of `AMX_MIN_ROWS` activation rows or
    /// more (prefill; Sapphire Rapids and later, Linux). Off with `CANDOR_CPU_AMX=0`.
    AmxBf16,
    /// aarch64 Advanced SIMD (Armv8.0, every aarch64 CPU).
    Neon,
    /// NEON with the dotprod extension (`sdot`, Armv8.2+).
    NeonDotprod,
}

impl Isa {
    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::has_vnni(),
            #[cfg(target_arch = "x86_64")]
            Isa::AmxBf16 => x86::amx::has_amx_bf16(),
            // Advanced SIMD is part of the aarch64 baseline Rust's targets compile for.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => neon::has_dotprod(),
            // The other architecture's kernels.
            _ => false,
        }
    }

    /// The fastest one this CPU supports (detected once), or the fastest at most as fast as
    /// `CANDOR_CPU_ISA` names (`amx`, `avx512vnni`, `avx2`, `neondotprod`, `neon`, `scalar`):
    /// to compare the kernels of one machine in whole models.
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let order = [
                Isa::AmxBf16,
                Isa::Avx512Vnni,
                Isa::Avx2,
                Isa::NeonDotprod,
                Isa::Neon,
            ];
            let cap = std::env::var("CANDOR_CPU_ISA")
                .ok()
                .map(|v| v.to_ascii_lowercase());
            let from = match cap.as_deref() {
                Some("scalar") => return Isa::Scalar,
                Some(name) => order.iter().position(|i| i.cap_name() == name).unwrap_or(0),
                None => 0,
            };
            order[from..]
                .iter()
                .copied()
                .find(|i| i.supported())
                .unwrap_or(Isa::Scalar)
        })
    }

    /// The name `CANDOR_CPU_ISA` gives this implementation.
    fn cap_name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AmxBf16 => "amx",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neondotprod",
        }
    }

    /// Every implementation this CPU supports (for tests and benchmarks).
    pub fn all_supported() -> Vec<Isa> {
        [
            Isa::Scalar,
            Isa::Avx2,
            Isa::Avx512Vnni,
            Isa::AmxBf16,
            Isa::Neon,
            Isa::NeonDotprod,
        ]
        .into_iter()
        .filter(|i| i.supported())
        .collect()
    }
}

/// y[M×N] = x[M×K] · Wᵀ with `w` holding N rows of K elements of type `ty`, on the fastest
/// kernels this CPU has. Errors (nothing written) when K is not a whole number of blocks or a
/// buffer has the wrong size.
pub fn matmul(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    matmul::run(Isa::best(), ty, w, n, k, Input::Rows(x), m, y)
}

/// `matmul` of a gated linear unit's output: y = (act(gate) · up) · Wᵀ, `gate` and `up` M×K.
/// The same bits as `activation::glu` then `matmul`; on AMX tiles the GLU of each 16 rows goes
/// straight into their bf16 tiles, so the M×K product is never written out and read back
/// (the FFN's down projection, whose K is the model's widest).
#[allow(clippy::too_many_arguments)]
pub fn glu_matmul(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    gate: &[f32],
    up: &[f32],
    act: Act,
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    matmul::run(Isa::best(), ty, w, n, k, Input::Glu { gate, up, act }, m, y)
}

/// One product of `matmul_many`: y (m × n) = x (m × k) · Wᵀ, `w` holding n rows of k
/// elements of type `ty`.
pub struct Product<'a> {
    pub ty: QuantType,
    pub w: &'a [u8],
    pub n: usize,
    pub k: usize,
    pub x: Input<'a>,
    pub m: usize,
    pub y: &'a mut [f32],
}

/// Several products in one call, each with the bits `matmul` (or `glu_matmul`) gives it. Those
/// split over weight rows (decode) share one parallel region instead of one each: a mixture of
/// experts' chosen experts, or projections of one input kept apart (q, k and v read in place
/// from a GGUF), where one small product after another would each wake the threads, wait for
/// the slowest and leave the memory bus idle in between. Errors (nothing written) as `matmul`
/// for the first product it rejects.
pub fn matmul_many(products: &mut [Product<'_>]) -> Result<(), QuantError> {
    matmul::run_many(Isa::best(), products)
}

/// The activations a product reads: rows as they are, or a gated linear unit's two inputs,
/// `act(gate) · up` computed where the rows are read.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Rows(&'a [f32]),
    Glu {
        gate: &'a [f32],
        up: &'a [f32],
        act: Act,
    },
}

impl Input<'_> {
    /// The length of a slice of this input that is not `want` values long, if any.
    fn wrong_length(&self, want: usize) -> Option<usize> {
        let lens: &[usize] = match *self {
            Input::Rows(x) => &[x.len()],
            Input::Glu { gate, up, .. } => &[gate.len(), up.len()],
        };
        lens.iter().copied().find(|&len| len != want)
    }
}

/// `matmul` with a chosen implementation (an error when this CPU lacks it).
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
    if !isa.supported() {
        return Err(QuantError::Unsupported(isa));
    }
    matmul::run(isa, ty, w, n, k, Input::Rows(x), m, y)
}

/// The scalar reference of `matmul_with(isa, ..)`: the same activation quantization, products
/// in portable code (for tests of the SIMD kernels).
#[allow(clippy::too_many_arguments)]
pub fn reference_for(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    let row_bytes = ty.row_bytes(k).ok_or(QuantError::RowLength {
        k,
        block: ty.block_elems(),
    })?;
    if w.len() != n * row_bytes || x.len() != m * k || y.len() != m * n {
        return Err(QuantError::OutputSize {
            got: y.len(),
            want: m * n,
        });
    }
    if matmul::takes_amx(isa, m) {
        reference::bf16_products(ty, w, row_bytes, k, x, m, y);
        return Ok(());
    }
    let mut act = QuantizedRows::default();
    act.quantize(matmul::activation_format(isa, ty, m), x, m, k);
    scalar_panel(ty, w, row_bytes, &act.rows(0, m), y, n);
    Ok(())
}

/// Products of the weight rows in `w` (whole rows of `row_bytes`) with every row of `x`;
/// weight row j times activation row r goes to `out[j + r·stride]`. `isa` must be supported
/// and the shapes valid (checked by `matmul::run`).
fn panel(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    x: &RowsView<'_>,
    out: &mut [f32],
    stride: usize,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Isa` other than Scalar reaches here only through `matmul` (`best`
        // checked it) or `matmul_with` (which checks `supported`); `run` checked that `w` is
        // whole rows of `row_bytes` = K/block blocks and quantized x to `ty.act_format()`
        // with the same K.
        Isa::Avx512Vnni => unsafe { x86::vnni::panel(ty, w, row_bytes, x, out, stride) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::avx2::panel(ty, w, row_bytes, x, out, stride) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::NeonDotprod => unsafe { neon::dotprod::panel(ty, w, row_bytes, x, out, stride) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above (every aarch64 CPU has NEON).
        Isa::Neon => unsafe { neon::plain::panel(ty, w, row_bytes, x, out, stride) },
        _ => scalar_panel(ty, w, row_bytes, x, out, stride),
    }
}

fn scalar_panel(
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    x: &RowsView<'_>,
    out: &mut [f32],
    stride: usize,
) {
    const R: usize = 4;
    // Values per activation scale and per quant sum: the Panel format (f32 16-sums present)
    // is per 32 whatever the weight type.
    let format = match x.fs16.is_empty() {
        true => ty.act_format(),
        false => ty.panel_format(),
    };
    let dspan = QuantizedRows::block(format);
    let sspan = QuantizedRows::sum_span(format);
    for (j, row) in w.chunks_exact(row_bytes).enumerate() {
        let mut r = 0;
        while r < x.rows {
            let n = (x.rows - r).min(R);
            let view = RowsView {
                rows: n,
                qs: &x.qs[r * x.k..],
                d: &x.d[r * x.k / dspan..],
                sums: &x.sums[r * x.k / sspan..],
                fs16: x.fs16.get(r * x.k / 16..).unwrap_or(&[]),
                fs32: x.fs32.get(r * x.k / 32..).unwrap_or(&[]),
                ..*x
            };
            let mut res = [[0f32; R]; 1];
            reference::tile::<1, R>(ty, [row], &view, &mut res);
            for (i, v) in res[0].iter().enumerate().take(n) {
                out[j + (r + i) * stride] = *v;
            }
            r += n;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
