//! The CUDA backend (feature `cuda`): candle CUDA tensors plus candor's own kernels for paged
//! attention and the fused ops (kernels/cuda). See docs/cuda.md.
//!
//! The host-side logic (launch configurations, block-table packing) is built and tested in every
//! build; the device code only with the feature. `list_devices`, `gpu_info` and
//! `device_bandwidth_gbs` exist in both builds: without the feature they say how to build with
//! CUDA.
pub mod bandwidth;
pub mod block_table;
pub mod error;
pub mod launch;
pub mod row_layout;

#[cfg(feature = "cuda")]
mod backend;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
pub mod kernels;
#[cfg(feature = "cuda")]
mod kv;
#[cfg(feature = "cuda")]
pub mod matvec;
#[cfg(feature = "cuda")]
mod mxfp4;
#[cfg(feature = "cuda")]
mod rope_kv_write;
#[cfg(feature = "cuda")]
mod tensors;
#[cfg(feature = "cuda")]
mod uploads;
#[cfg(feature = "cuda")]
mod weights;

#[cfg(feature = "cuda")]
pub use backend::CudaBackend;
#[cfg(feature = "cuda")]
pub use kv::CudaKvCache;
#[cfg(feature = "cuda")]
pub use weights::CudaWeight;

pub use error::CudaError;

/// Facts about one GPU, for `candor devices` and benchmark fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// (major, minor), e.g. (9, 0) for an H100.
    pub compute_capability: (u32, u32),
    pub multiprocessors: u32,
    /// The CUDA version the driver supports, e.g. "13.0".
    pub driver_version: String,
}

/// Every GPU the driver reports. Errors: no driver (or the build-time stub), or a build without
/// the `cuda` feature.
pub fn list_devices() -> Result<Vec<GpuInfo>, CudaError> {
    #[cfg(feature = "cuda")]
    {
        device::list_devices()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(CudaError::NotBuilt)
    }
}

/// Facts of GPU `ordinal` (the query behind `candor devices`).
pub fn gpu_info(ordinal: usize) -> Result<GpuInfo, CudaError> {
    #[cfg(feature = "cuda")]
    {
        device::gpu_info(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        Err(CudaError::NotBuilt)
    }
}

/// Measured device-to-device copy bandwidth of GPU `ordinal`, GB/s (see [`bandwidth`]).
pub fn device_bandwidth_gbs(ordinal: usize) -> Result<f64, CudaError> {
    #[cfg(feature = "cuda")]
    {
        bandwidth::measure(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        Err(CudaError::NotBuilt)
    }
}
