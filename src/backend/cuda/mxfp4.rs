//! MXFP4 weights on the GPU (kernels/cuda/mxfp4.cu): gpt-oss's experts at the file's 17 bytes
//! a block of 32 values, where candle's types would hold them as Q5_0 (22 bytes: 80 GB of
//! gpt-oss-120b's experts on an 80 GB H100 instead of 62). Products of up to
//! `launch::MATVEC_MAX_ROWS` rows read the blocks directly; larger ones expand the weight to the
//! activation dtype for cuBLAS, as candle does for its own quantized types.
use super::error::CudaError;
use super::kernels::{launch_err, Kernels};
use super::launch::{self, as_i32};
use super::row_layout::rows_of;
use super::tensors::with_kernel_dtype;
use super::tensors::{alloc_out, config, rows_view, view, wrap, KernelDType};
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{DType, Device, Tensor};
use candor_models::error::Result;
use candor_models::weights::mxfp4::{self, BLOCK, GGML_BLOCK_BYTES};

/// Code bytes of a block (its 32 four-bit codes).
const CODE_BYTES: usize = GGML_BLOCK_BYTES - 1;

/// An `[n, k]` MXFP4 weight on the device, in `mxfp4::codes_then_scales`' layout.
pub struct Mxfp4Weight {
    bytes: Tensor,
    n: usize,
    k: usize,
}

impl Mxfp4Weight {
    /// The file's blocks of an `[n, k]` weight (each expert's matrix: the loader splits the
    /// stacks), repacked and copied to `device`.
    pub fn load(file: &[u8], shape: &[usize], device: &Device) -> Result<Self> {
        let &[n, k] = shape else {
            return Err(CudaError::Launch(format!("an MXFP4 weight of shape {shape:?}")).into());
        };
        if k == 0 || !k.is_multiple_of(BLOCK) || n * k / BLOCK * GGML_BLOCK_BYTES != file.len() {
            return Err(CudaError::Launch(format!(
                "{} bytes of MXFP4 blocks for a weight of shape {shape:?}",
                file.len()
            ))
            .into());
        }
        let bytes = mxfp4::codes_then_scales(file)?;
        Ok(Mxfp4Weight {
            bytes: Tensor::from_vec(bytes, n * k / BLOCK * GGML_BLOCK_BYTES, device)?,
            n,
            k,
        })
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.n, self.k]
    }

    /// Where the scales start in `bytes`.
    fn scales_at(&self) -> usize {
        self.n * self.k / BLOCK * CODE_BYTES
    }
}

impl Kernels {
    /// `x · wᵀ` for `x` `[rows, k]` in a dtype the kernels take: read from the blocks for up to
    /// `launch::MATVEC_MAX_ROWS` rows at 16-byte aligned offsets, else through the weight
    /// expanded to x's dtype and cuBLAS.
    pub fn mxfp4_matmul_t(&self, x: &Tensor, w: &Mxfp4Weight) -> Result<Tensor> {
        let [rows, k] = x.dims() else {
            return Err(CudaError::Launch(format!("MXFP4 product of {:?}", x.dims())).into());
        };
        if *k != w.k {
            return Err(CudaError::Launch(format!(
                "MXFP4 product of {:?} with a [{}, {}] weight",
                x.dims(),
                w.n,
                w.k
            ))
            .into());
        }
        let direct = with_kernel_dtype!(x.dtype(), T, { self.mxfp4_matvec::<T>(x, w, *rows) })?;
        match direct {
            Some(y) => Ok(y),
            None => Ok(x.matmul(&self.mxfp4_expand(w, x.dtype())?.t()?)?),
        }
    }

    /// mxfp4.cu's `mxfp4_matvec_<dtype>_r<R>`; None where it does not apply (see
    /// `launch::matvec`).
    fn mxfp4_matvec<T: KernelDType>(
        &self,
        x: &Tensor,
        w: &Mxfp4Weight,
        rows: usize,
    ) -> Result<Option<Tensor>> {
        let Some(x_rows) = rows_of(x.layout()) else {
            return Ok(None);
        };
        let offsets = [x_rows.stride, x.layout().start_offset()];
        let elem = std::mem::size_of::<T>();
        let Some(plan) = launch::matvec(rows, w.n, w.k, elem, &offsets) else {
            return Ok(None);
        };
        let (xs, xl) = x.storage_and_layout();
        let (xv, _) = rows_view::<T>(&xs, xl)?;
        let (ws, wl) = w.bytes.storage_and_layout();
        let all = view::<u8>(&ws, wl)?;
        let (codes, scales) = (all.slice(..w.scales_at()), all.slice(w.scales_at()..));
        let mut out = alloc_out::<T>(&self.dev, rows * w.n)?;
        let f = self.func(
            "mxfp4",
            &format!("mxfp4_matvec_{}_r{}", T::SUFFIX, plan.instance_rows),
        )?;
        let (rows_i, n_i, k_i) = (
            as_i32(rows, "rows")?,
            as_i32(w.n, "columns")?,
            as_i32(w.k, "depth")?,
        );
        let stride = as_i32(x_rows.stride, "MXFP4 product row stride")?;
        let no_bias = 0i32;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        // The bias argument is never read (has_bias 0): x stands in for it.
        b.arg(&codes)
            .arg(&scales)
            .arg(&xv)
            .arg(&no_bias)
            .arg(&xv)
            .arg(&mut out)
            .arg(&rows_i)
            .arg(&n_i)
            .arg(&k_i)
            .arg(&stride);
        // SAFETY: argument types and order match mxfp4_matvec_<T>_r<R> in mxfp4.cu; the codes
        // are n·k/32 whole 16-byte blocks from the buffer's (aligned) start and the scales
        // follow them; launch::matvec picked an instantiated row count and checked that x's
        // start and row stride are 16-byte aligned (k is a multiple of 32).
        unsafe { b.launch(config(plan.launch)) }.map_err(launch_err)?;
        Ok(Some(wrap(out, &self.dev, &[rows, w.n])))
    }

    /// The weight as an `[n, k]` tensor of `dtype` (mxfp4.cu's `mxfp4_expand_<dtype>`).
    pub fn mxfp4_expand(&self, w: &Mxfp4Weight, dtype: DType) -> Result<Tensor> {
        with_kernel_dtype!(dtype, T, { self.mxfp4_expand_t::<T>(w) })
    }

    fn mxfp4_expand_t<T: KernelDType>(&self, w: &Mxfp4Weight) -> Result<Tensor> {
        let blocks = w.n * w.k / BLOCK;
        let (ws, wl) = w.bytes.storage_and_layout();
        let all = view::<u8>(&ws, wl)?;
        let (codes, scales) = (all.slice(..w.scales_at()), all.slice(w.scales_at()..));
        let mut out = alloc_out::<T>(&self.dev, w.n * w.k)?;
        let f = self.func("mxfp4", &format!("mxfp4_expand_{}", T::SUFFIX))?;
        let total = blocks as u64;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&codes).arg(&scales).arg(&mut out).arg(&total);
        // SAFETY: argument types and order match mxfp4_expand_<T> (size_t is 64-bit); `out`
        // holds the 32 values of each of the `blocks` blocks, which the kernel all writes.
        unsafe { b.launch(config(launch::elementwise(blocks))) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &[w.n, w.k]))
    }
}
