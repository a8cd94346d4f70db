//! Launching matvec.cu: the product of a decode step's few rows with a dense half-precision
//! weight, where the weight's read is the whole cost; the bias is added in the same pass, and
//! the FFN's GLU can be applied to the input as it is read.
use super::kernels::{launch_err, Kernels};
use super::launch::{self, as_i32};
use super::row_layout::{rows_of, Rows};
use super::tensors::{alloc_out, config, rows_view, view, wrap, KernelDType};
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{DType, Tensor};
use candor_models::backend::Activation;
use candor_models::error::Result;

/// The rows a product reads: `x` as it is, or `act(gate) * up` (computed as it is read, rounded
/// to the activation dtype as the GLU kernel rounds it).
#[derive(Clone, Copy)]
pub enum MatvecInput<'a> {
    Rows(&'a Tensor),
    Glu {
        gate: &'a Tensor,
        up: &'a Tensor,
        act: Activation,
    },
}

impl MatvecInput<'_> {
    fn x(&self) -> &Tensor {
        match self {
            MatvecInput::Rows(x) | MatvecInput::Glu { gate: x, .. } => x,
        }
    }

    /// The second row set (`up`) a GLU input reads, and the kernel's name part.
    fn up_and_name(&self) -> (Option<&Tensor>, &'static str) {
        match self {
            MatvecInput::Rows(_) => (None, "matvec"),
            MatvecInput::Glu { up, act, .. } => (
                Some(up),
                match act {
                    Activation::Silu => "matvec_glu_silu",
                    Activation::GeluTanh => "matvec_glu_gelu_tanh",
                },
            ),
        }
    }
}

impl Kernels {
    /// `input · wᵀ (+ bias)` for an input of `[rows, k]` (rows each contiguous, at any stride),
    /// `w` `[n, k]` contiguous, `bias` `[n]`, all of one half-precision dtype; None where the
    /// kernel does not apply (f32, more rows than it takes, other shapes, unaligned data: see
    /// `launch::matvec`) and the caller's general path should run instead.
    pub fn matvec(
        &self,
        input: MatvecInput,
        w: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        let x = input.x();
        let (up, _) = input.up_and_name();
        let (&[rows, k], &[n, wk]) = (x.dims(), w.dims()) else {
            return Ok(None);
        };
        let dtype = x.dtype();
        if wk != k
            || w.dtype() != dtype
            || !w.is_contiguous()
            || up.is_some_and(|u| u.dims() != x.dims() || u.dtype() != dtype)
            || bias.is_some_and(|b| b.dims() != [n] || b.dtype() != dtype || !b.is_contiguous())
        {
            return Ok(None);
        }
        match dtype {
            DType::F16 => self.matvec_t::<half::f16>(input, w, bias, rows, n, k),
            DType::BF16 => self.matvec_t::<half::bf16>(input, w, bias, rows, n, k),
            _ => Ok(None),
        }
    }

    fn matvec_t<T: KernelDType>(
        &self,
        input: MatvecInput,
        w: &Tensor,
        bias: Option<&Tensor>,
        rows: usize,
        n: usize,
        k: usize,
    ) -> Result<Option<Tensor>> {
        let x = input.x();
        let (up, name) = input.up_and_name();
        let Some(x_rows) = rows_of(x.layout()) else {
            return Ok(None);
        };
        let up_rows = match up.map(|u| rows_of(u.layout())) {
            None => None,
            Some(None) => return Ok(None),
            Some(some) => some,
        };
        let mut offsets = vec![
            w.layout().start_offset(),
            x.layout().start_offset(),
            x_rows.stride,
        ];
        offsets.extend(bias.map(|b| b.layout().start_offset()));
        offsets.extend(up.map(|u| u.layout().start_offset()));
        offsets.extend(up_rows.map(|r| r.stride));
        let Some(plan) = launch::matvec(rows, n, k, std::mem::size_of::<T>(), &offsets) else {
            return Ok(None);
        };
        let (ws, wl) = w.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let wv = view::<T>(&ws, wl)?;
        let (xv, _) = rows_view::<T>(&xs, xl)?;
        // Inputs the kernel does not read (no bias, no `up`) are given the weight again.
        let bias_storage = bias.map(|b| b.storage_and_layout());
        let bv = match &bias_storage {
            Some((bs, bl)) => view::<T>(bs, bl)?,
            None => view::<T>(&ws, wl)?,
        };
        let up_storage = up.map(|u| u.storage_and_layout());
        let uv = match &up_storage {
            Some((us, ul)) => rows_view::<T>(us, ul)?.0,
            None => view::<T>(&ws, wl)?,
        };
        let up_stride = up_rows.unwrap_or(Rows { row: k, stride: k }).stride;
        let has_bias = i32::from(bias.is_some());
        let mut out = alloc_out::<T>(&self.dev, rows * n)?;
        let (rows_i, n_i, k_i) = (
            as_i32(rows, "matvec rows")?,
            as_i32(n, "matvec columns")?,
            as_i32(k, "matvec depth")?,
        );
        let x_stride = as_i32(x_rows.stride, "matvec row stride")?;
        let up_stride = as_i32(up_stride, "matvec up row stride")?;
        let f = self.func(
            "matvec",
            &format!("{name}_{}_r{}", T::SUFFIX, plan.instance_rows),
        )?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&wv)
            .arg(&bv)
            .arg(&has_bias)
            .arg(&xv)
            .arg(&uv)
            .arg(&mut out)
            .arg(&rows_i)
            .arg(&n_i)
            .arg(&k_i)
            .arg(&x_stride)
            .arg(&up_stride);
        // SAFETY: argument types and order match the matvec.cu entry point named; launch::matvec
        // picked an instantiated row count and checked the 16-byte alignment of k, W, x, up and
        // their strides that the kernel's vector loads need.
        unsafe { b.launch(config(plan.launch)) }.map_err(launch_err)?;
        Ok(Some(wrap(out, &self.dev, &[rows, n])))
    }
}
