//! aarch64 NEON kernels, chosen at run time: with the dotprod extension (`sdot`: Armv8.2+, e.g.
//! Cortex-A76/A78, Neoverse N1/V1/V2, Apple M-series, Graviton 2+) or plain Armv8.0 NEON
//! (Cortex-A53/A57/A72, e.g. Raspberry Pi 4), which every aarch64 CPU has.
//!
//! Unlike the x86 kernels, weight quants are decoded to signed bytes with their offset removed
//! (q − 8, q − 16, q − 32): `sdot` and `smull` multiply signed by signed, so no activation
//! sum is needed to undo an offset; only the Q4_K/Q5_K minimums use the 16-sums.
mod decode;
mod kernels;
mod prim_dotprod;
mod prim_plain;
mod quantize;

pub use quantize::quantize;

/// With `sdot`: 32 vector registers, so 4 weight rows × 4 activation rows (16 accumulators,
/// 8 registers of decoded weights, 2 of activations, a few temporaries).
pub mod dotprod {
    use super::prim_dotprod as prim;
    super::kernels::neon_kernels!("neon,dotprod", C = 4, R = 4);
}

/// Without it: the widening multiplies need more temporaries per product, so 2 × 4 tiles.
pub mod plain {
    use super::prim_plain as prim;
    super::kernels::neon_kernels!("neon", C = 2, R = 4);
}

/// Whether the CPU has the dotprod extension (the kernels in `dotprod`).
pub fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}
