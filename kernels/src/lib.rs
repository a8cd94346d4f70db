//! candor-kernels: compute kernels on plain slices, used by the CPU backend and as the reference
//! the other backends are checked against; and (feature `cuda`) the PTX of the CUDA kernels.
pub mod activation;
pub mod attention;
pub mod conv;
pub mod cuda_ptx;
pub mod encoder;
pub mod encoder_attention;
pub mod gated_delta;
pub mod half_matmul;
mod invariance;
pub mod norm;
pub mod quant;
pub mod rope;
mod rows;
pub mod selective_scan;
pub mod ssd;

pub use invariance::{batch_invariant, set_batch_invariant};
pub use rows::argmax;
