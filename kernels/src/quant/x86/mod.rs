//! x86_64 SIMD kernels, chosen at run time: AVX-512 VNNI (with VL/BW, e.g. Zen 4, Ice Lake and
//! later) or AVX2+FMA+F16C (Haswell and later). Older CPUs use the scalar reference.
mod kernels;
mod prim_avx2;
mod prim_vnni;

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
