//! x86_64 SIMD kernels, chosen at run time: AVX-512 VNNI (with VL/BW, e.g. Zen 4, Ice Lake and
//! later) or AVX2+FMA+F16C (Haswell and later). Older CPUs use the scalar reference. On CPUs
//! with AMX (Sapphire Rapids and later) prefill products run on its tiles in bf16
//! (`amx_gemm`).
pub mod amx;
pub mod amx_gemm;
pub(crate) mod bf16_tiles;
mod kernels;
pub mod panel;
mod prim_avx2;
mod prim_vnni;
mod quantize;

/// AVX2 + FMA + F16C: 16 vector registers, so tiles of 2 weight rows × 4 activation rows.
pub mod avx2 {
    use super::prim_avx2 as prim;
    super::kernels::x86_kernels!("avx2,fma,f16c", C = 2, R = 4);
}

/// AVX-512 VNNI on 256-bit vectors: 32 registers, so 4 × 4 tiles.
pub mod vnni {
    use super::prim_vnni as prim;
    super::kernels::x86_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        C = 4,
        R = 4
    );
}

pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

pub fn has_vnni() -> bool {
    has_avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Ask for every cache line of `bytes` (a hint: never faults). For a panel to be repacked
/// while the previous one is multiplied: its 8 rows are one contiguous run of a few KiB, which
/// the hardware prefetchers, stopping at page boundaries and ramping up slowly, leave mostly
/// to demand misses.
pub fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: SSE is part of x86_64; a prefetch of a valid address has no effect beyond
        // the cache.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// Safe entry to `panel::repack` (VNNI): repack up to 8 weight rows into `out`.
pub fn repack_panel(
    ty: crate::quant::QuantType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    out: &mut [u8],
) {
    assert!(has_vnni(), "panel kernels need AVX-512 VNNI");
    assert!(
        Some(row_bytes) == ty.row_bytes(k)
            && w.len().is_multiple_of(row_bytes)
            && w.len() <= panel::ROWS * row_bytes
            && out.len() == panel::panel_bytes(k)
    );
    // SAFETY: the CPU has the features (checked above, cached by std), `w` is at most 8 whole
    // rows of K/block blocks of `ty` and `out` is one panel.
    unsafe { panel::repack(ty, w, row_bytes, k, out) }
}

/// Safe entry to `panel::gemm` (VNNI): `y` (x.rows × n, rows `ystride` apart) = x · Wᵀ from
/// repacked panels.
pub fn panel_gemm(
    ty: crate::quant::QuantType,
    panels: &[u8],
    n: usize,
    k: usize,
    x: &crate::quant::RowsView<'_>,
    y: &mut [f32],
    ystride: usize,
) {
    assert!(has_vnni(), "panel kernels need AVX-512 VNNI");
    assert!(
        k.is_multiple_of(ty.block_elems())
            && x.k == k
            && panels.len() == n.div_ceil(panel::ROWS) * panel::panel_bytes(k)
            && ystride >= n
            && (x.rows == 0 || y.len() >= (x.rows - 1) * ystride + n)
            && x.qs.len() >= x.rows * k
            && x.d.len() >= x.rows * k / 32
            && x.fs16.len() >= x.rows * k / 16
            && x.fs32.len() >= x.rows * k / 32
    );
    // SAFETY: features checked; panels hold every row of W repacked for this K; x has the
    // Panel format's buffers for `x.rows` rows of K; y holds x.rows rows of n, ystride apart.
    unsafe { panel::gemm(ty, panels, n, k, x, y, ystride) }
}

/// Quantize activation blocks with AVX2 when the CPU has it (same bytes as the scalar loop);
/// false when it does not.
pub fn quantize(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], s16: &mut [i32]) -> bool {
    if !has_avx2() {
        return false;
    }
    assert!(
        (block == 32 || block == 256)
            && x.len().is_multiple_of(block)
            && qs.len() == x.len()
            && d.len() == x.len() / block
            && s16.len() == x.len() / 16
    );
    // SAFETY: AVX2 and FMA are present; the buffer sizes were checked above.
    unsafe { quantize::quantize(x, block, qs, d, s16) };
    true
}
