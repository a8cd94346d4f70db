//! Launching matvec.cu: the product of a decode step's few rows with a dense half-precision
//! weight, where the weight's read is the whole cost; the bias is added in the same pass, and
//! the op before the product (the FFN's GLU, an RMSNorm with or without the residual add) can
//! be applied to the input as it is read.
use super::kernels::{launch_err, Kernels};
use super::launch::{self, as_i32};
use super::row_layout::rows_of;
use super::tensors::{alloc_out, config, rows_view, view, wrap, KernelDType};
use candle_core::cuda_backend::cudarc::driver::{CudaView, PushKernelArg};
use candle_core::{DType, Layout, StorageRef, Tensor};
use candor_models::backend::Activation;
use candor_models::error::Result;

/// The rows a product reads, `[rows, k]`, each row contiguous (rows at any stride where the
/// kernel reads them in place): `x` as it is; `act(gate) * up`; or `x` (+ `residual`)
/// normalized by `weight`. Computed as they are read, rounded to the activation dtype where the
/// GLU and RMSNorm kernels round.
#[derive(Clone, Copy)]
pub enum MatvecInput<'a> {
    Rows(&'a Tensor),
    Glu {
        gate: &'a Tensor,
        up: &'a Tensor,
        act: Activation,
    },
    RmsNorm {
        x: &'a Tensor,
        residual: Option<&'a Tensor>,
        weight: &'a Tensor,
        eps: f32,
    },
}

/// A product's output, and for an RMSNorm input with a residual the sum `x + residual` (the
/// residual stream's next value, as the fused add + RMSNorm writes it).
pub struct MatvecOutput {
    pub y: Tensor,
    pub sum: Option<Tensor>,
}

impl MatvecInput<'_> {
    fn x(&self) -> &Tensor {
        match self {
            MatvecInput::Rows(x) | MatvecInput::Glu { gate: x, .. } => x,
            MatvecInput::RmsNorm { x, .. } => x,
        }
    }

    /// The kernel's name part.
    fn name(&self) -> &'static str {
        match self {
            MatvecInput::Rows(_) => "matvec",
            MatvecInput::Glu {
                act: Activation::Silu,
                ..
            } => "matvec_glu_silu",
            MatvecInput::Glu {
                act: Activation::GeluTanh,
                ..
            } => "matvec_glu_gelu_tanh",
            MatvecInput::RmsNorm { residual: None, .. } => "matvec_rms_norm",
            MatvecInput::RmsNorm {
                residual: Some(_), ..
            } => "matvec_add_rms_norm",
        }
    }

    /// The other tensors the kernel reads: `up`, the residual (contiguous, as x), the norm
    /// weight (`[k]`, contiguous).
    fn others(&self) -> [Option<&Tensor>; 3] {
        match *self {
            MatvecInput::Rows(_) => [None; 3],
            MatvecInput::Glu { up, .. } => [Some(up), None, None],
            MatvecInput::RmsNorm {
                residual, weight, ..
            } => [None, residual, Some(weight)],
        }
    }

    fn eps(&self) -> f32 {
        match self {
            MatvecInput::RmsNorm { eps, .. } => *eps,
            _ => 0.0,
        }
    }
}

/// A kernel argument for an optional input: its elements (`rows` for a row-strided one), else
/// `fallback`'s, which the kernel does not read.
fn view_or<'a, T: KernelDType>(
    input: &'a Option<(StorageRef<'a>, &'a Layout)>,
    rows: bool,
    fallback: &'a (StorageRef<'a>, &'a Layout),
) -> Result<CudaView<'a, T>> {
    let (s, l) = input.as_ref().unwrap_or(fallback);
    if rows {
        Ok(rows_view::<T>(s, l)?.0)
    } else {
        view::<T>(s, l)
    }
}

impl Kernels {
    /// `input · wᵀ (+ bias)` for an input of `[rows, k]`, `w` `[n, k]` contiguous, `bias`
    /// `[n]`, all of one half-precision dtype; None where the kernel does not apply (f32, more
    /// rows than it takes — `launch::MATVEC_MAX_NORM_ROWS` for an RMSNorm input —, other
    /// shapes, unaligned data: see `launch::matvec`) and the caller's general path should run
    /// instead.
    pub fn matvec(
        &self,
        input: MatvecInput,
        w: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Option<MatvecOutput>> {
        let x = input.x();
        let (&[rows, k], &[n, wk]) = (x.dims(), w.dims()) else {
            return Ok(None);
        };
        let dtype = x.dtype();
        if matches!(input, MatvecInput::RmsNorm { .. }) && rows > launch::MATVEC_MAX_NORM_ROWS {
            return Ok(None);
        }
        let [up, residual, norm] = input.others();
        let fits = |t: Option<&Tensor>, dims: &[usize], contiguous: bool| {
            t.is_none_or(|t| {
                t.dims() == dims && t.dtype() == dtype && (!contiguous || t.is_contiguous())
            })
        };
        if wk != k
            || w.dtype() != dtype
            || !w.is_contiguous()
            || !fits(bias, &[n], true)
            || !fits(up, &[rows, k], false)
            || !fits(residual, &[rows, k], true)
            || !fits(norm, &[k], true)
        {
            return Ok(None);
        }
        match dtype {
            DType::F16 => self.matvec_t::<half::f16>(input, w, bias, [rows, n, k]),
            DType::BF16 => self.matvec_t::<half::bf16>(input, w, bias, [rows, n, k]),
            _ => Ok(None),
        }
    }

    fn matvec_t<T: KernelDType>(
        &self,
        input: MatvecInput,
        w: &Tensor,
        bias: Option<&Tensor>,
        [rows, n, k]: [usize; 3],
    ) -> Result<Option<MatvecOutput>> {
        let x = input.x();
        let [up, residual, norm] = input.others();
        let Some(x_rows) = rows_of(x.layout()) else {
            return Ok(None);
        };
        let up_stride = match up.map(|u| rows_of(u.layout())) {
            None => k,
            Some(None) => return Ok(None),
            Some(Some(r)) => r.stride,
        };
        // Every pointer the kernel reads 16 bytes at a time from, and the row strides.
        let mut offsets = vec![x_rows.stride, up_stride];
        offsets.extend(
            [Some(w), Some(x), bias, up, residual, norm]
                .into_iter()
                .flatten()
                .map(|t| t.layout().start_offset()),
        );
        let Some(plan) = launch::matvec(rows, n, k, std::mem::size_of::<T>(), &offsets) else {
            return Ok(None);
        };
        let w_storage = w.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let wv = view::<T>(&w_storage.0, w_storage.1)?;
        let (xv, _) = rows_view::<T>(&xs, xl)?;
        // Inputs the kernel does not read (no bias, no `up`, ...) are given the weight again.
        let [bias_s, up_s, residual_s, norm_s] =
            [bias, up, residual, norm].map(|t| t.map(|t| t.storage_and_layout()));
        let bv = view_or::<T>(&bias_s, false, &w_storage)?;
        let uv = view_or::<T>(&up_s, true, &w_storage)?;
        let rv = view_or::<T>(&residual_s, false, &w_storage)?;
        let gv = view_or::<T>(&norm_s, false, &w_storage)?;
        let has_bias = i32::from(bias.is_some());
        let mut out = alloc_out::<T>(&self.dev, rows * n)?;
        // The sum x + residual, when there is a residual; else a one-element placeholder.
        let mut sum = alloc_out::<T>(&self.dev, if residual.is_some() { rows * k } else { 1 })?;
        let [rows_i, n_i, k_i] =
            [(rows, "rows"), (n, "columns"), (k, "depth")].map(|(v, what)| as_i32(v, what));
        let (rows_i, n_i, k_i) = (rows_i?, n_i?, k_i?);
        let x_stride = as_i32(x_rows.stride, "matvec row stride")?;
        let up_stride = as_i32(up_stride, "matvec up row stride")?;
        let eps = input.eps();
        let name = input.name();
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
            .arg(&rv)
            .arg(&gv)
            .arg(&mut sum)
            .arg(&mut out)
            .arg(&rows_i)
            .arg(&n_i)
            .arg(&k_i)
            .arg(&x_stride)
            .arg(&up_stride)
            .arg(&eps);
        // SAFETY: argument types and order match the matvec.cu entry point named; launch::matvec
        // picked an instantiated row count and checked the 16-byte alignment of k, every
        // pointer read and the strides that the kernel's vector loads need; `sum` holds rows × k
        // elements whenever the entry point writes it (add_rms_norm).
        unsafe { b.launch(config(plan.launch)) }.map_err(launch_err)?;
        Ok(Some(MatvecOutput {
            y: wrap(out, &self.dev, &[rows, n]),
            sum: residual.map(|_| wrap(sum, &self.dev, &[rows, k])),
        }))
    }
}
