//! The one operation where the two NEON kernel sets differ, dotprod flavour (same name and
//! meaning as `prim_plain`).
use std::arch::aarch64::*;
use std::arch::asm;

/// `acc` plus the 16 products of signed bytes `w` × `x`, summed four per i32 lane (which
/// product lands in which lane differs between the flavours; callers only scale whole
/// vectors and sum their lanes).
///
/// `sdot` sums four byte products into each lane in one instruction, without intermediate
/// saturation. Written as inline assembly because Rust's `vdotq_s32` is still unstable
/// (`stdarch_neon_dotprod`); the instruction is only reached when the CPU reported dotprod.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub fn dot16(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` only reads and writes the three vector registers; the CPU has dotprod
    // (this function's target features, checked by the caller's dispatch).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}
