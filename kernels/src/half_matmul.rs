//! Products with f16/bf16 weight matrices kept in their own 16 bits: `y = x · wᵀ` for f32
//! activations `x` (`[m, k]`) and a weight of `n` rows of `k` half values.
//!
//! Why not widen the weights to f32 once at load and use candle's f32 product: decode reads
//! every weight once per token, so it runs at the speed memory delivers weight bytes, and
//! 16-bit weights are half the bytes of f32 ones (and half the resident memory). Each weight
//! row is widened in registers (F16C or FCVTL for f16, a 16-bit shift for bf16) right before
//! its FMAs.
//! Tasks take runs of weight rows; a tile is 4 weight rows by 4 activation rows with AVX-512
//! and NEON (2 with AVX2), so each widened weight vector serves several tokens and each activation
//! vector four rows. Long prompts are better served by a blocked GEMM on widened panels (the
//! CPU backend switches, `HALF_GEMM_MIN_ROWS`).
use rayon::prelude::*;

/// The 16-bit float formats a weight can be kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfType {
    F16,
    Bf16,
}

impl HalfType {
    /// `v` rounded to this format (to nearest, ties to even), as its bits.
    pub fn from_f32(self, v: f32) -> u16 {
        match self {
            HalfType::F16 => half::f16::from_f32(v).to_bits(),
            HalfType::Bf16 => half::bf16::from_f32(v).to_bits(),
        }
    }

    pub fn to_f32(self, bits: u16) -> f32 {
        match self {
            HalfType::F16 => half::f16::from_bits(bits).to_f32(),
            HalfType::Bf16 => f32::from_bits((bits as u32) << 16),
        }
    }

    /// `dst[i] = src[i]` widened to f32 (`half`'s slice conversion: SIMD where the CPU has it).
    pub fn widen(self, src: &[u16], dst: &mut [f32]) {
        use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
        let len = src.len().min(dst.len());
        let (src, dst) = (&src[..len], &mut dst[..len]);
        match self {
            HalfType::F16 => src
                .reinterpret_cast::<half::f16>()
                .convert_to_f32_slice(dst),
            HalfType::Bf16 => src
                .reinterpret_cast::<half::bf16>()
                .convert_to_f32_slice(dst),
        }
    }
}

/// Weight bytes one task reads: enough rows to amortise waking a thread, few enough that a
/// 152k-row LM head splits into hundreds of tasks for the pool to balance.
const TASK_WEIGHT_BYTES: usize = 64 * 1024;
/// Weight rows per tile.
const TILE_ROWS: usize = 4;
/// Activation rows per tile, at most (AVX-512's 32 registers hold a 4x4 tile of accumulators;
/// AVX2's 16 hold 4x2).
const TILE_TOKENS: usize = 4;

/// Whether `matmul` runs `m` activation rows against `ty` weights of rows of `k` on AMX tiles
/// (`quant::x86::amx_gemm`, activations rounded to bf16, f32 sums): bf16 weights only (f16
/// ones would lose three bits of mantissa), `quant::AMX_MIN_ROWS` rows or more, K a whole
/// number of 32-value tile steps, on a CPU with AMX.
pub fn runs_on_amx(ty: HalfType, m: usize, k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::quant::{Isa, AMX_MIN_ROWS};
        ty == HalfType::Bf16
            && m >= AMX_MIN_ROWS
            && k > 0
            && k.is_multiple_of(32)
            && Isa::AmxBf16.supported()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ty, m, k);
        false
    }
}

/// `y[t * n + r] = Σ_j x[t * k + j] · w[r * k + j]` for `m` activation rows.
pub fn matmul(
    ty: HalfType,
    w: &[u16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    if runs_on_amx(ty, m, k) {
        check_shapes(w, n, k, x, m, y)?;
        use crate::quant::x86::amx_gemm::{gemm, Weights};
        gemm(
            Weights::Bf16(w),
            n,
            k,
            crate::quant::Input::Rows(x),
            m,
            y,
            rayon::current_num_threads(),
        );
        return Ok(());
    }
    matmul_with(Kernel::detect(), ty, w, n, k, x, m, y)
}

/// The buffers hold `[n, k]` weights, `[m, k]` activations and `[m, n]` outputs.
fn check_shapes(
    w: &[u16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &[f32],
) -> Result<(), String> {
    if w.len() != n * k || x.len() != m * k || y.len() != m * n {
        return Err(format!(
            "half matmul: weight {} for [{n}, {k}], x {} for [{m}, {k}], y {} for [{m}, {n}]",
            w.len(),
            x.len(),
            y.len()
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn matmul_with(
    kernel: Kernel,
    ty: HalfType,
    w: &[u16],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), String> {
    check_shapes(w, n, k, x, m, y)?;
    if n == 0 || m == 0 {
        return Ok(());
    }
    if k == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let rows_per_task = (TASK_WEIGHT_BYTES / (2 * k)).max(1).div_ceil(TILE_ROWS) * TILE_ROWS;
    let run = |out_rows: &mut [f32], first_row: usize| {
        let rows = out_rows.len() / m;
        rows_block(
            kernel,
            ty,
            &w[first_row * k..(first_row + rows) * k],
            k,
            x,
            m,
            out_rows,
        );
    };
    if m == 1 {
        // [n] is [1, n]: no transpose.
        y.par_chunks_mut(rows_per_task)
            .enumerate()
            .for_each(|(i, c)| run(c, i * rows_per_task));
        return Ok(());
    }
    // Tasks write whole weight rows of a transposed [n, m] result.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(rows_per_task * m)
        .enumerate()
        .for_each(|(i, c)| run(c, i * rows_per_task));
    for (r, col) in yt.chunks_exact(m).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            y[t * n + r] = v;
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kernel {
    /// Where no SIMD kernel applies (AArch64 always has NEON: there it serves the tests only).
    #[cfg_attr(target_arch = "aarch64", allow(dead_code))]
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Every AArch64 CPU has NEON and the f16 conversions.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// Activation rows one tile takes.
    fn tile_tokens(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 4,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => 4,
            _ => 2,
        }
    }

    #[cfg(target_arch = "aarch64")]
    fn detect() -> Self {
        Kernel::Neon
    }

    #[cfg(not(target_arch = "aarch64"))]
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }
}

/// `out[r * m + t]` for the rows of `w` (`[rows, k]`) and every activation row.
fn rows_block(
    kernel: Kernel,
    ty: HalfType,
    w: &[u16],
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
) {
    let rows = w.len() / k;
    let tile_tokens = kernel.tile_tokens();
    let mut r = 0;
    while r < rows {
        let take = if rows - r >= TILE_ROWS { TILE_ROWS } else { 1 };
        let mut t = 0;
        while t < m {
            let toks = (m - t).min(tile_tokens);
            let wr = &w[r * k..(r + take) * k];
            let xt = &x[t * k..(t + toks) * k];
            let mut acc = [[0f32; TILE_TOKENS]; TILE_ROWS];
            match kernel {
                Kernel::Portable => portable_tile(ty, wr, xt, k, take, toks, &mut acc),
                // SAFETY: each SIMD kernel is chosen only when the CPU has its features
                // (detect); the slices hold `take` rows and `toks` rows of `k` values.
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => unsafe { avx2::tile(ty, wr, xt, k, take, toks, &mut acc) },
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => unsafe { avx512::tile(ty, wr, xt, k, take, toks, &mut acc) },
                #[cfg(target_arch = "aarch64")]
                Kernel::Neon => unsafe { neon::tile(ty, wr, xt, k, take, toks, &mut acc) },
            }
            for (i, a) in acc.iter().enumerate().take(take) {
                for (j, &v) in a.iter().enumerate().take(toks) {
                    out[(r + i) * m + t + j] = v;
                }
            }
            t += toks;
        }
        r += take;
    }
}

fn portable_tile(
    ty: HalfType,
    w: &[u16],
    x: &[f32],
    k: usize,
    rows: usize,
    toks: usize,
    acc: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
) {
    for (i, a) in acc.iter_mut().enumerate().take(rows) {
        let wr = &w[i * k..(i + 1) * k];
        for (j, v) in a.iter_mut().enumerate().take(toks) {
            let xr = &x[j * k..(j + 1) * k];
            *v = wr.iter().zip(xr).map(|(&b, &a)| ty.to_f32(b) * a).sum();
        }
    }
}

/// The SIMD tile kernel of one instruction set, written once: inside a module that defines the
/// vector type `V` and `zero`, `load` (LANES f32), `widen::<BF16>` (LANES 16-bit weights),
/// `fma(acc, w, x)` and `hsum`, this makes `tile`: R weight rows by T tokens (dispatched on the
/// tile's actual size), LANES columns per step, the k % LANES tail in scalar.
macro_rules! simd_tile {
    (lanes: $lanes:literal, feature: $feature:literal) => {
        // The accumulators are a register tile indexed by (row, token): index loops say so best.
        #[allow(clippy::needless_range_loop)]
        #[inline(always)]
        unsafe fn tile_rt<const BF16: bool, const R: usize, const T: usize>(
            ty: HalfType,
            w: &[u16],
            x: &[f32],
            k: usize,
            acc_out: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
        ) {
            let (wp, xp) = (w.as_ptr(), x.as_ptr());
            let mut acc = [[zero(); T]; R];
            let mut i = 0;
            while i + $lanes <= k {
                let mut wv = [zero(); R];
                for (r, v) in wv.iter_mut().enumerate() {
                    *v = widen::<BF16>(wp.add(r * k + i));
                }
                for t in 0..T {
                    let xv = load(xp.add(t * k + i));
                    for r in 0..R {
                        acc[r][t] = fma(acc[r][t], wv[r], xv);
                    }
                }
                i += $lanes;
            }
            for r in 0..R {
                for t in 0..T {
                    let mut s = hsum(acc[r][t]);
                    for j in i..k {
                        s += ty.to_f32(w[r * k + j]) * x[t * k + j];
                    }
                    acc_out[r][t] = s;
                }
            }
        }

        #[target_feature(enable = $feature)]
        pub unsafe fn tile(
            ty: HalfType,
            w: &[u16],
            x: &[f32],
            k: usize,
            rows: usize,
            toks: usize,
            acc: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
        ) {
            macro_rules! go {
                ($bf16:literal) => {
                    match (rows, toks) {
                        (4, 4) => tile_rt::<$bf16, 4, 4>(ty, w, x, k, acc),
                        (4, 3) => tile_rt::<$bf16, 4, 3>(ty, w, x, k, acc),
                        (4, 2) => tile_rt::<$bf16, 4, 2>(ty, w, x, k, acc),
                        (4, _) => tile_rt::<$bf16, 4, 1>(ty, w, x, k, acc),
                        (_, 4) => tile_rt::<$bf16, 1, 4>(ty, w, x, k, acc),
                        (_, 3) => tile_rt::<$bf16, 1, 3>(ty, w, x, k, acc),
                        (_, 2) => tile_rt::<$bf16, 1, 2>(ty, w, x, k, acc),
                        _ => tile_rt::<$bf16, 1, 1>(ty, w, x, k, acc),
                    }
                };
            }
            match ty {
                HalfType::Bf16 => go!(true),
                HalfType::F16 => go!(false),
            }
        }
    };
}

/// AVX2 + FMA + F16C, 8 lanes (16 registers: tiles of at most 4x2, `tile_tokens`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{HalfType, TILE_ROWS, TILE_TOKENS};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    /// F16C for f16, a shift into the high half for bf16.
    #[inline(always)]
    unsafe fn widen<const BF16: bool>(p: *const u16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        } else {
            _mm256_cvtph_ps(h)
        }
    }
    #[inline(always)]
    unsafe fn fma(acc: __m256, w: __m256, x: __m256) -> __m256 {
        _mm256_fmadd_ps(w, x, acc)
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    simd_tile!(lanes: 8, feature: "avx2,fma,f16c");
}

/// AVX-512F, 16 lanes, tiles up to 4x4.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{HalfType, TILE_ROWS, TILE_TOKENS};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn widen<const BF16: bool>(p: *const u16) -> __m512 {
        let h = _mm256_loadu_si256(p as *const __m256i);
        if BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
        } else {
            _mm512_cvtph_ps(h)
        }
    }
    #[inline(always)]
    unsafe fn fma(acc: __m512, w: __m512, x: __m512) -> __m512 {
        _mm512_fmadd_ps(w, x, acc)
    }
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }

    simd_tile!(lanes: 16, feature: "avx512f");
}

/// NEON, 4 lanes, tiles up to 4x4 (32 registers).
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{HalfType, TILE_ROWS, TILE_TOKENS};
    use std::arch::aarch64::*;

    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    /// FCVTL for f16, a shift into the high half for bf16.
    #[inline(always)]
    unsafe fn widen<const BF16: bool>(p: *const u16) -> float32x4_t {
        let h = vld1_u16(p);
        if BF16 {
            vreinterpretq_f32_u32(vshll_n_u16::<16>(h))
        } else {
            vcvt_f32_f16(vreinterpret_f16_u16(h))
        }
    }
    #[inline(always)]
    unsafe fn fma(acc: float32x4_t, w: float32x4_t, x: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, w, x)
    }
    #[inline(always)]
    unsafe fn hsum(v: float32x4_t) -> f32 {
        vaddvq_f32(v)
    }

    simd_tile!(lanes: 4, feature: "neon");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::Gen;

    /// Both kernels against an f64 product of the same (rounded) weights, over tile and
    /// column tails, one and many activation rows, and a weight large enough for many tasks.
    #[test]
    fn matches_an_f64_reference_for_both_types_and_every_tail() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for ty in [HalfType::F16, HalfType::Bf16] {
            for (n, k, m) in [
                (1, 1, 1),
                (7, 13, 1),
                (9, 64, 3),
                (33, 100, 2),
                (4100, 40, 5),
            ] {
                let w: Vec<u16> = (0..n * k).map(|_| ty.from_f32(g.f32())).collect();
                let x: Vec<f32> = (0..m * k).map(|_| g.f32()).collect();
                let want: Vec<f64> = (0..m * n)
                    .map(|i| {
                        let (t, r) = (i / n, i % n);
                        (0..k)
                            .map(|j| ty.to_f32(w[r * k + j]) as f64 * x[t * k + j] as f64)
                            .sum()
                    })
                    .collect();
                let mut y = vec![f32::NAN; m * n];
                matmul(ty, &w, n, k, &x, m, &mut y).unwrap();
                let mut portable = vec![f32::NAN; m * n];
                matmul_with(Kernel::Portable, ty, &w, n, k, &x, m, &mut portable).unwrap();
                #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
                let mut results = vec![("dispatched", y), ("portable", portable)];
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
                {
                    let mut avx2 = vec![f32::NAN; m * n];
                    matmul_with(Kernel::Avx2, ty, &w, n, k, &x, m, &mut avx2).unwrap();
                    results.push(("avx2", avx2));
                }
                for (name, got) in &results {
                    for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{ty:?} {name} n={n} k={k} m={m} at {i}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    /// Batch-invariant mode (`crate::invariance`): a row gets its bits alone among any number
    /// of rows (AMX's 32 and more included), for both types.
    #[test]
    fn in_batch_invariant_mode_a_row_gets_its_bits_among_any_rows() {
        let _mode = crate::invariance::forced();
        let mut g = Gen(0x5eed_1de4);
        for ty in [HalfType::F16, HalfType::Bf16] {
            let (n, k) = (37, 96);
            let w: Vec<u16> = (0..n * k).map(|_| ty.from_f32(g.f32())).collect();
            for m in [2, 5, 32, 70] {
                let x: Vec<f32> = (0..m * k).map(|_| g.f32()).collect();
                let mut all = vec![f32::NAN; m * n];
                matmul(ty, &w, n, k, &x, m, &mut all).unwrap();
                for r in [0, m / 2, m - 1] {
                    let mut one = vec![f32::NAN; n];
                    matmul(ty, &w, n, k, &x[r * k..(r + 1) * k], 1, &mut one).unwrap();
                    for (j, v) in one.iter().enumerate() {
                        let want = all[r * n + j];
                        assert_eq!(v.to_bits(), want.to_bits(), "{ty:?} m{m} row {r} [{j}]");
                    }
                }
            }
        }
    }

    /// bf16 weights on AMX tiles (CPUs that have them; elsewhere the same call takes the
    /// vector kernels and meets the same bound): against an f64 product of the weights and the
    /// activations rounded to bf16, over row and column tails and several weight blocks.
    #[test]
    fn bf16_products_of_many_rows_match_the_bf16_rounded_reference() {
        use crate::quant::AMX_MIN_ROWS;
        eprintln!("AMX: {}", runs_on_amx(HalfType::Bf16, AMX_MIN_ROWS, 64));
        let mut g = Gen(0x00a3_0b16_5eed);
        let ty = HalfType::Bf16;
        for (n, k, m) in [
            (37, 96, AMX_MIN_ROWS),
            (130, 64, AMX_MIN_ROWS + 37),
            (5, 640, 300),
        ] {
            let w: Vec<u16> = (0..n * k).map(|_| ty.from_f32(g.f32())).collect();
            let x: Vec<f32> = (0..m * k).map(|_| g.f32()).collect();
            let xr: Vec<f64> = x
                .iter()
                .map(|&v| ty.to_f32(ty.from_f32(v)) as f64)
                .collect();
            let mut y = vec![f32::NAN; m * n];
            matmul(ty, &w, n, k, &x, m, &mut y).unwrap();
            for (i, &got) in y.iter().enumerate() {
                let (t, r) = (i / n, i % n);
                let terms = (0..k).map(|j| (ty.to_f32(w[r * k + j]) as f64, xr[t * k + j]));
                let (want, mag) = terms.fold((0f64, 0f64), |(s, a), (wv, xv)| {
                    (s + wv * xv, a + (wv * xv).abs())
                });
                // Activations rounded to bf16 (2⁻⁹ relative) on paths that do not round.
                let bound = 2f64.powi(-8) * mag + 1e-6;
                assert!(
                    (got as f64 - want).abs() <= bound,
                    "n={n} k={k} m={m} at {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rejects_mismatched_lengths_and_handles_empty_rows() {
        let mut y = vec![0f32; 2];
        assert!(matmul(HalfType::F16, &[0; 5], 2, 3, &[0.0; 3], 1, &mut y).is_err());
        let mut y = vec![7f32; 2];
        matmul(HalfType::Bf16, &[], 2, 0, &[], 1, &mut y).unwrap();
        assert_eq!(y, [0.0, 0.0]);
    }
}
