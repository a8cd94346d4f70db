//! Launching matvec.cu: the product of a decode step's few rows with a dense weight (and its
//! bias, added in the same pass), where the weight's read is the whole cost.
use super::kernels::{launch_err, Kernels};
use super::launch::{self, as_i32};
use super::tensors::{alloc_out, config, rows_view, view, with_kernel_dtype, wrap, KernelDType};
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::Tensor;
use candor_models::error::Result;

impl Kernels {
    /// `x · wᵀ (+ bias)` for `x` `[rows, k]` (rows each contiguous, at any stride), `w`
    /// `[n, k]` contiguous, `bias` `[n]`, all of one dtype; None where the kernel does not
    /// apply (more rows than it takes, other shapes or dtypes, unaligned data: see
    /// `launch::matvec`) and the caller's general product should run instead.
    pub fn matvec(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Option<Tensor>> {
        let (&[rows, k], &[n, wk]) = (x.dims(), w.dims()) else {
            return Ok(None);
        };
        let dtype = x.dtype();
        if wk != k
            || w.dtype() != dtype
            || !w.is_contiguous()
            || bias.is_some_and(|b| b.dims() != [n] || b.dtype() != dtype || !b.is_contiguous())
        {
            return Ok(None);
        }
        with_kernel_dtype!(dtype, T, { self.matvec_t::<T>(x, w, bias, rows, n, k) })
    }

    fn matvec_t<T: KernelDType>(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        rows: usize,
        n: usize,
        k: usize,
    ) -> Result<Option<Tensor>> {
        let Some(x_rows) = super::row_layout::rows_of(x.layout()) else {
            return Ok(None);
        };
        let mut offsets = vec![
            w.layout().start_offset(),
            x.layout().start_offset(),
            x_rows.stride,
        ];
        offsets.extend(bias.map(|b| b.layout().start_offset()));
        let Some(shape) = launch::matvec(rows, n, k, std::mem::size_of::<T>(), &offsets) else {
            return Ok(None);
        };
        let (ws, wl) = w.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let wv = view::<T>(&ws, wl)?;
        let (xv, _) = rows_view::<T>(&xs, xl)?;
        // Without a bias the kernel is given the weight again, never read (has_bias 0).
        let bias_storage = bias.map(|b| b.storage_and_layout());
        let bv = match &bias_storage {
            Some((bs, bl)) => view::<T>(bs, bl)?,
            None => view::<T>(&ws, wl)?,
        };
        let has_bias = i32::from(bias.is_some());
        let mut out = alloc_out::<T>(&self.dev, rows * n)?;
        let (n_i, k_i) = (as_i32(n, "matvec columns")?, as_i32(k, "matvec depth")?);
        let stride = as_i32(x_rows.stride, "matvec row stride")?;
        let f = self.func("matvec", &format!("matvec_{}_r{rows}", T::SUFFIX))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&wv)
            .arg(&bv)
            .arg(&has_bias)
            .arg(&xv)
            .arg(&mut out)
            .arg(&n_i)
            .arg(&k_i)
            .arg(&stride);
        // SAFETY: argument types and order match matvec_<T>_r<rows> in matvec.cu; launch::matvec
        // checked rows (an instantiated count) and the 16-byte alignment of k, W, x and its
        // stride the kernel's vector loads need.
        unsafe { b.launch(config(shape)) }.map_err(launch_err)?;
        Ok(Some(wrap(out, &self.dev, &[rows, n])))
    }
}
