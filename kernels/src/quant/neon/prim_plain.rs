//! The one operation where the two NEON kernel sets differ, Armv8.0 flavour (same name and
//! meaning as `prim_dotprod`).
use std::arch::aarch64::*;

/// `acc` plus the 16 products of signed bytes `w` × `x`, summed four per i32 lane.
///
/// Widening multiply of the low halves, multiply-accumulate of the high halves into the same
/// i16 lanes, then pairwise widening add into `acc`: three instructions for 16 products.
/// Exact because two products fit an i16 whenever |w| ≤ 128 and |x| ≤ 127 (2·128·127 =
/// 32512), which holds for every weight format (Q8_0's −128 included) and the activations
/// (never −128).
#[inline]
#[target_feature(enable = "neon")]
pub fn dot16(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let pairs = vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x);
    vpadalq_s16(acc, pairs)
}
