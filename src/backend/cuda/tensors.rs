//! Between candle's CUDA tensors and raw kernel arguments: the device view of a contiguous
//! tensor or of rows at a stride, and a tensor around a freshly written device buffer.
use super::error::CudaError;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use candle_core::cuda_backend::CudaDType;
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, Layout, Storage, Tensor, WithDType};
use candor_models::error::Result;

use super::launch::Launch;
use super::row_layout::{rows_of, Rows};

/// Storage types the kernels are instantiated for (the `_f32`, `_f16`, `_bf16` entry points).
pub trait KernelDType: CudaDType + DeviceRepr + ValidAsZeroBits + WithDType {
    const SUFFIX: &'static str;
    /// Bytes of one value, as `KvRows` holds it (little-endian).
    const BYTES: usize;
    fn put_le(&self, out: &mut Vec<u8>);
    /// The value `bytes` (`BYTES` of them) hold.
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! kernel_dtype {
    ($T:ty, $suffix:literal, $bytes:literal) => {
        impl KernelDType for $T {
            const SUFFIX: &'static str = $suffix;
            const BYTES: usize = $bytes;
            fn put_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn from_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; $bytes];
                b.copy_from_slice(&bytes[..$bytes]);
                <$T>::from_le_bytes(b)
            }
        }
    };
}
kernel_dtype!(f32, "f32", 4);
kernel_dtype!(half::f16, "f16", 2);
kernel_dtype!(half::bf16, "bf16", 2);

/// Run `$body` with `$T` bound to the Rust type of a candle dtype the kernels take.
macro_rules! with_kernel_dtype {
    ($dtype:expr, $T:ident, $body:block) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F16 => {
                type $T = half::f16;
                $body
            }
            candle_core::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            other => Err($crate::backend::cuda::error::CudaError::Launch(format!(
                "no CUDA kernel for {other:?} tensors"
            ))
            .into()),
        }
    };
}
pub(crate) use with_kernel_dtype;

/// The elements of a contiguous CUDA tensor's storage, as a kernel argument.
pub fn view<'a, T: CudaDType>(storage: &'a Storage, layout: &Layout) -> Result<CudaView<'a, T>> {
    let Storage::Cuda(s) = storage else {
        return Err(CudaError::Launch("a kernel input is not on the GPU".into()).into());
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| CudaError::Launch("a kernel input is not contiguous".into()))?;
    Ok(s.as_cuda_slice::<T>()?.slice(start..end))
}

/// `x` itself when its rows are each contiguous (`rows_of`), else a contiguous copy: the
/// input of a kernel that reads rows at a stride.
pub fn with_contiguous_rows(x: &Tensor) -> Result<Tensor> {
    if rows_of(x.layout()).is_some() {
        Ok(x.clone())
    } else {
        Ok(x.contiguous()?)
    }
}

/// The rows of a tensor as `with_contiguous_rows` leaves it, as a kernel argument: the
/// elements from its first to the end of its last row, and the row layout.
pub fn rows_view<'a, T: CudaDType>(
    storage: &'a Storage,
    layout: &Layout,
) -> Result<(CudaView<'a, T>, Rows)> {
    let Storage::Cuda(s) = storage else {
        return Err(CudaError::Launch("a kernel input is not on the GPU".into()).into());
    };
    let rows = rows_of(layout)
        .ok_or_else(|| CudaError::Launch("a kernel input's rows are not contiguous".into()))?;
    let tokens = layout.dims().first().copied().unwrap_or(0);
    let len = match tokens {
        0 => 0,
        t => (t - 1) * rows.stride + rows.row,
    };
    let start = layout.start_offset();
    Ok((s.as_cuda_slice::<T>()?.slice(start..start + len), rows))
}

/// A tensor of `shape` owning `slice` (written by a kernel).
pub fn wrap<T: CudaDType>(slice: CudaSlice<T>, dev: &CudaDevice, shape: &[usize]) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone())),
        shape,
        BackpropOp::none(),
        false,
    )
}

/// An uninitialised device buffer for a kernel that writes every element.
pub fn alloc_out<T: KernelDType>(dev: &CudaDevice, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: every caller launches a kernel that writes all `n` elements before any read.
    Ok(unsafe { dev.alloc::<T>(n) }?)
}

pub fn config(l: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: l.block,
        shared_mem_bytes: 0,
    }
}
