//! Intel AMX (Advanced Matrix Extensions, Sapphire Rapids and later): eight 1 KiB tile
//! registers and a matrix unit that multiplies them, `TDPBF16PS` adding a 16×32 bf16 tile times
//! a 32×16 bf16 tile into a 16×16 f32 tile in one instruction (8192 multiply-adds). On a
//! Sapphire Rapids VM core the products alone reach ~1.3 T multiply-adds/s, but tile loads
//! bound a real product: a 2×2 block (the most the eight tiles hold) loads four tiles per four
//! products, which runs at ~400-450 G/s from L1 or L2 with the loads interleaved and
//! prefetched (a micro-benchmark; `block_32x32`), against ~120 G/s for the AVX-512 VNNI
//! prefill kernels on the same core.
//!
//! Written as inline assembly: Rust's AMX intrinsics and `is_x86_feature_detected!("amx-*")`
//! are unstable (rust-lang/rust#126622), so support is read from CPUID here, and Linux must
//! grant the process the 8 KiB of tile state first (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), without
//! which the first tile instruction faults.

/// Whether this CPU and OS run the AMX bf16 kernels, and `CANDOR_CPU_AMX` does not turn them
/// off (`0`/`off`/`false`: the AVX-512 VNNI kernels then run prefill too, whose results do not
/// depend on how many rows share a product). Asks Linux for the tile state once.
pub fn has_amx_bf16() -> bool {
    // Tiles round a prefill otherwise than the row kernels a decode step takes.
    if crate::batch_invariant() {
        return false;
    }
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let off = std::env::var("CANDOR_CPU_AMX")
            .is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false" | "no"));
        !off && cpu_has_amx_bf16() && super::has_vnni() && os_grants_tile_state()
    })
}

/// CPUID leaf 7: AMX-BF16 (EDX bit 22) and AMX-TILE (bit 24); AVX512-BF16 (leaf 7 sub-leaf 1,
/// EAX bit 5) converts the operands.
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if __cpuid_count(0, 0).eax < 7 {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    let amx = leaf7.edx & (1 << 22) != 0 && leaf7.edx & (1 << 24) != 0;
    amx && std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(target_os = "linux")]
fn os_grants_tile_state() -> bool {
    // From linux/arch/x86/include/uapi/asm/prctl.h and asm/fpu/types.h.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a syscall with integer arguments only; it changes the process's permitted
    // XSAVE features (for every thread) or fails with an error code.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

/// Other systems: not attempted (no known way to ask for the tile state).
#[cfg(not(target_os = "linux"))]
fn os_grants_tile_state() -> bool {
    false
}

/// Tile rows (activation rows per A tile, weight rows per B tile).
pub const TILE_ROWS: usize = 16;
/// bf16 values per tile row (64 bytes): the K step of one `TDPBF16PS`.
pub const TILE_K: usize = 32;
/// Bytes of one B tile: 16 rows of 16 bf16 pairs.
pub const B_TILE_BYTES: usize = TILE_ROWS * 64;
/// Bytes of one A tile: 16 rows of 32 bf16 values.
pub const A_TILE_BYTES: usize = TILE_ROWS * 64;

/// The tile configuration every kernel here uses: palette 1, all eight tiles 16 rows × 64
/// bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const ALL_FULL: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            // colsb[t] (u16 at 16 + 2t) = 64 bytes; rows[t] (u8 at 48 + t) = 16.
            c[16 + 2 * t] = 64;
            c[48 + t] = TILE_ROWS as u8;
            t += 1;
        }
        TileConfig(c)
    };
}

/// Tiles configured for the current thread while alive; released (back to the init state, so
/// context switches need not save 8 KiB of tiles) when dropped.
pub struct Tiles(());

impl Tiles {
    /// # Safety
    /// `has_amx_bf16()` must be true.
    pub unsafe fn configure() -> Tiles {
        std::arch::asm!("ldtilecfg [{0}]", in(reg) TileConfig::ALL_FULL.0.as_ptr(), options(nostack, readonly));
        Tiles(())
    }

    /// C (32 activation rows × 32 weight rows, f32) = A · B over `steps` K steps of 32:
    /// A as `a` says (`ARows`), B two runs of `steps` B tiles, one after the other from `b`
    /// (weight rows 0..16, then 16..32; tile s = 16 rows of 64 bytes, each the bf16 pair
    /// (k, k+1) of the 16 weight rows for k = 32s + 2·row). C goes to `c`, rows `ldc` bytes
    /// apart: activation row i's 32 outputs at `c + i·ldc`.
    ///
    /// Each step first asks for the next step's four tiles in L1 (`prefetcht0`): a tile load
    /// waits on its 16 lines, and the hardware prefetchers do not run ahead of tile loads, so
    /// without it the matrix unit idles on L2 (Sapphire Rapids VM, 32×896 blocks from L2:
    /// 190 → 400+ G multiply-adds/s per core in a micro-benchmark).
    ///
    /// # Safety
    /// `self` configured this thread's tiles; every pointer must cover what it describes.
    #[inline]
    pub unsafe fn block_32x32(&self, a: ARows, b: *const u8, steps: usize, c: *mut u8, ldc: usize) {
        use std::arch::asm;
        // tmm0..3: C (activation half × weight half), tmm4/5: A halves, tmm6/7: B halves.
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        let (b0, b1) = (b, b.add(steps * B_TILE_BYTES));
        for s in 0..steps {
            if s + 1 < steps {
                prefetch_tile(a.lo.add(a.step * (s + 1)), a.row);
                prefetch_tile(a.hi.add(a.step * (s + 1)), a.row);
                prefetch_tile(b0.add(B_TILE_BYTES * (s + 1)), 64);
                prefetch_tile(b1.add(B_TILE_BYTES * (s + 1)), 64);
            }
            // Loads and products interleaved: a tile register is not renamed, so a load waits
            // for the products still reading it; this order gives each load products to hide
            // behind.
            asm!(
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {row}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {row}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a.lo.add(a.step * s),
                a1 = in(reg) a.hi.add(a.step * s),
                lda = in(reg) a.row,
                b0 = in(reg) b0.add(B_TILE_BYTES * s),
                b1 = in(reg) b1.add(B_TILE_BYTES * s),
                row = in(reg) 64usize,
                options(nostack, readonly)
            );
        }
        let c1 = c.add(TILE_ROWS * ldc);
        asm!(
            "tilestored [{c0} + {ldc}*1], tmm0",
            "tilestored [{c0h} + {ldc}*1], tmm1",
            "tilestored [{c1} + {ldc}*1], tmm2",
            "tilestored [{c1h} + {ldc}*1], tmm3",
            c0 = in(reg) c,
            c0h = in(reg) c.add(64),
            c1 = in(reg) c1,
            c1h = in(reg) c1.add(64),
            ldc = in(reg) ldc,
            options(nostack)
        );
    }
}

/// Asks for the 16 lines of a tile (rows `stride` bytes apart from `p`) in L1.
///
/// # Safety
/// None beyond x86-64 (a prefetch never faults); `p` comes from a live buffer.
#[inline(always)]
unsafe fn prefetch_tile(p: *const u8, stride: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for r in 0..TILE_ROWS {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(r * stride) as *const i8);
    }
}

/// Where the 32 activation rows of a `block_32x32` lie: two halves of 16 rows (one A tile per
/// K step each), their rows `row` bytes apart and their K steps `step` bytes apart.
#[derive(Clone, Copy)]
pub struct ARows {
    lo: *const u8,
    hi: *const u8,
    row: usize,
    step: usize,
}

impl ARows {
    /// 32 row-major bf16 rows from `a`, `lda` bytes apart.
    pub fn row_major(a: *const u8, lda: usize) -> ARows {
        ARows {
            lo: a,
            hi: a.wrapping_add(TILE_ROWS * lda),
            row: lda,
            step: 64,
        }
    }

    /// Two runs of `steps` A tiles from `a` (`bf16_tiles::a_tiles`' layout): rows 0..16's,
    /// then rows 16..32's, each tile 16 rows of 64 bytes. One tile is one contiguous KiB, which
    /// loads faster than 16 lines a whole activation row apart.
    pub fn tiled(a: *const u8, steps: usize) -> ARows {
        ARows {
            lo: a,
            hi: a.wrapping_add(steps * A_TILE_BYTES),
            row: 64,
            step: A_TILE_BYTES,
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured (`configure`), so the CPU has AMX.
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
    }
}
