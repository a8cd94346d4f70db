//! Errors of the CUDA backend.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CudaError {
    #[error(
        "this candor was built without CUDA: rebuild with `cargo build --release --features cuda` \
         (see docs/cuda.md)"
    )]
    NotBuilt,
    #[error("no usable NVIDIA driver: {0}")]
    NoDriver(String),
    #[error("CUDA device {ordinal} does not exist ({count} found)")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error("compute capability {major}.{minor} is older than every architecture candor's kernels are built for (sm_80 and newer)")]
    UnsupportedDevice { major: u32, minor: u32 },
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error("{0}")]
    Launch(String),
    #[error("invalid batch for the CUDA kernels: {0}")]
    Batch(String),
}

impl From<CudaError> for candor_models::ModelError {
    fn from(e: CudaError) -> Self {
        candor_models::ModelError::Backend(e.to_string())
    }
}
