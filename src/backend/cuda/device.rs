//! The GPUs the driver reports, and the facts `candor devices` and benchmark fingerprints show.
use super::error::CudaError;
use super::GpuInfo;
use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaContext, DriverError};

fn driver(e: DriverError) -> CudaError {
    CudaError::Driver(e.to_string())
}

/// `13.0` for the driver's CUDA version 13000.
fn driver_version() -> Result<String, CudaError> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: cuDriverGetVersion writes one int through the pointer it is given.
    unsafe { sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(driver)?;
    Ok(format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// Initialise the driver; a machine without one (or with the build-time stub library) says so.
fn init() -> Result<(), CudaError> {
    result::init().map_err(|e| CudaError::NoDriver(e.to_string()))
}

/// Facts of device `ordinal`.
pub fn gpu_info(ordinal: usize) -> Result<GpuInfo, CudaError> {
    init()?;
    let count = CudaContext::device_count().map_err(driver)?.max(0) as usize;
    if ordinal >= count {
        return Err(CudaError::NoSuchDevice { ordinal, count });
    }
    let ctx = CudaContext::new(ordinal).map_err(driver)?;
    let (major, minor) = ctx.compute_capability().map_err(driver)?;
    let (free, total) = ctx.mem_get_info().map_err(driver)?;
    let multiprocessors = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(driver)?;
    Ok(GpuInfo {
        ordinal,
        name: ctx.name().map_err(driver)?,
        memory_total_bytes: total as u64,
        memory_free_bytes: free as u64,
        compute_capability: (major.max(0) as u32, minor.max(0) as u32),
        multiprocessors: multiprocessors.max(0) as u32,
        driver_version: driver_version()?,
    })
}

/// Every GPU the driver sees.
pub fn list_devices() -> Result<Vec<GpuInfo>, CudaError> {
    init()?;
    let count = CudaContext::device_count().map_err(driver)?.max(0) as usize;
    (0..count).map(gpu_info).collect()
}
