//! Launching matvec.cu: the product of a decode step's few rows with a dense half-precision
//! weight, where the weight's read is the whole cost; the bias is added in the same pass, and
//! the op before the product (the FFN's GLU, an RMSNorm with or without the residual add) can
//! be applied to the input as it is read, and a q/k/v product's columns finished by RoPE and
//! the KV write where they are summed.
use super::kernels::{launch_err, Kernels, RopeArgs};
use super::launch::{self, as_i32};
use super::rope_kv_write::KvTarget;
use super::row_layout::rows_of;
use super::tensors::{alloc_out, config, rows_view, view, wrap, KernelDType};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, PushKernelArg};
use candle_core::{DType, Layout, StorageRef, Tensor};
use candor_models::backend::{Activation, QkvHeads, RopeStyle};
use candor_models::error::Result;

/// The rows a product reads, `[rows, k]`, each row contiguous (rows at any stride where the
/// kernel reads them in place): `x` as it is; the GLU `act(gate, up)`; or `x` (+ `residual`)
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

/// Where a product's columns go.
pub enum MatvecTarget<'a> {
    /// A new `[rows, n]` tensor.
    Rows,
    /// The columns of a joined q/k/v product (as `heads` lays them out) finished as
    /// `rope_kv_write` finishes them: q rotated by `rope` into a new `[rows, heads, head_dim]`
    /// tensor, k rotated and v written into `kv` at the rows' slots (u32 on the device,
    /// validated by the caller; one per row, as `rope`'s positions).
    RopeKv {
        heads: QkvHeads,
        rope: &'a RopeArgs,
        kv: KvTarget<'a>,
    },
}

impl MatvecTarget<'_> {
    /// Whether the kernel takes this target for a product of `rows` rows and `n` columns with
    /// `input`: the RoPE target needs the q/k/v layout, one position and slot per row, RoPE
    /// frequencies for the heads, and an input other than the GLU (no such instances).
    fn fits(&self, input: &MatvecInput, rows: usize, n: usize) -> bool {
        let MatvecTarget::RopeKv { heads, rope, kv } = self else {
            return true;
        };
        let d = heads.head_dim;
        !matches!(input, MatvecInput::Glu { .. })
            && d > 0
            && d.is_multiple_of(2)
            && heads.widths().iter().sum::<usize>() == n
            && rope.positions.elem_count() == rows
            && kv.slots.elem_count() == rows
            && rope.inv_freq.elem_count() * 2 == d
    }
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
            MatvecInput::Glu {
                act: Activation::SwigluOai,
                ..
            } => "matvec_glu_swiglu_oai",
            MatvecInput::Glu {
                act: Activation::GeluErf,
                ..
            } => "matvec_glu_gelu_erf",
            MatvecInput::Glu {
                act: Activation::Relu2,
                ..
            } => "matvec_glu_relu2",
            MatvecInput::Glu {
                act: Activation::Relu,
                ..
            } => "matvec_glu_relu",
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
    /// `[n]`, all of one half-precision dtype, its columns stored as `target` says; None where
    /// the kernel does not apply (f32, more rows than it takes — `launch::MATVEC_MAX_NORM_ROWS`
    /// for an RMSNorm input —, other shapes, unaligned data: see `launch::matvec`; a target it
    /// does not take: `MatvecTarget::fits`) and the caller's general path should run instead.
    pub fn matvec(
        &self,
        input: MatvecInput,
        w: &Tensor,
        bias: Option<&Tensor>,
        target: MatvecTarget,
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
            || !target.fits(&input, rows, n)
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
            DType::F16 => self.matvec_t::<half::f16>(input, w, bias, target, [rows, n, k]),
            DType::BF16 => self.matvec_t::<half::bf16>(input, w, bias, target, [rows, n, k]),
            _ => Ok(None),
        }
    }

    fn matvec_t<T: KernelDType>(
        &self,
        input: MatvecInput,
        w: &Tensor,
        bias: Option<&Tensor>,
        target: MatvecTarget,
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
        let mut sum = alloc_out::<T>(&self.dev, if residual.is_some() { rows * k } else { 1 })?;
        let args = CommonArgs {
            w: wv,
            bias: bv,
            has_bias: i32::from(bias.is_some()),
            x: xv,
            residual: rv,
            norm: gv,
            rows: as_i32(rows, "rows")?,
            k: as_i32(k, "depth")?,
            x_stride: as_i32(x_rows.stride, "matvec row stride")?,
            eps: input.eps(),
            kernel: input.name().to_string(),
            instance: format!("{}_r{}", T::SUFFIX, plan.instance_rows),
            launch: plan.launch,
        };
        let y = match target {
            MatvecTarget::Rows => {
                let up_stride = as_i32(up_stride, "matvec up row stride")?;
                self.launch_rows(&args, &uv, up_stride, &mut sum, [rows, n])?
            }
            MatvecTarget::RopeKv { heads, rope, kv } => {
                match self.launch_rope_kv(&args, &mut sum, heads, rope, kv)? {
                    Some(q) => q,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(MatvecOutput {
            y,
            sum: residual.map(|_| wrap(sum, &self.dev, &[rows, k])),
        }))
    }

    /// matvec.cu's `<input>_<dtype>_r<R>`: the product into a new `[rows, n]` tensor.
    fn launch_rows<T: KernelDType>(
        &self,
        a: &CommonArgs<'_, T>,
        up: &CudaView<'_, T>,
        up_stride: i32,
        sum: &mut CudaSlice<T>,
        [rows, n]: [usize; 2],
    ) -> Result<Tensor> {
        let mut out = alloc_out::<T>(&self.dev, rows * n)?;
        let n_i = as_i32(n, "columns")?;
        let f = self.func("matvec", &format!("{}_{}", a.kernel, a.instance))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&a.w)
            .arg(&a.bias)
            .arg(&a.has_bias)
            .arg(&a.x)
            .arg(up)
            .arg(&a.residual)
            .arg(&a.norm)
            .arg(sum)
            .arg(&mut out)
            .arg(&a.rows)
            .arg(&n_i)
            .arg(&a.k)
            .arg(&a.x_stride)
            .arg(&up_stride)
            .arg(&a.eps);
        // SAFETY: argument types and order match the matvec.cu entry point named; launch::matvec
        // picked an instantiated row count and checked the 16-byte alignment of k, every
        // pointer read and the strides that the kernel's vector loads need; `sum` holds rows × k
        // elements whenever the entry point writes it (add_rms_norm).
        unsafe { b.launch(config(a.launch)) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &[rows, n]))
    }

    /// matvec.cu's `<input>_rope_kv_<dtype>_r<R>`: the q/k/v product finished by RoPE and the
    /// KV write; returns the rotated q, or None where the caches are smaller than their slots
    /// say (the general path reports it).
    fn launch_rope_kv<T: KernelDType>(
        &self,
        a: &CommonArgs<'_, T>,
        sum: &mut CudaSlice<T>,
        heads: QkvHeads,
        rope: &RopeArgs,
        kv: KvTarget,
    ) -> Result<Option<Tensor>> {
        let [q_width, kv_width, _] = heads.widths();
        let k_cache = kv.k_cache.as_cuda_slice_mut::<T>()?;
        let v_cache = kv.v_cache.as_cuda_slice_mut::<T>()?;
        if k_cache.len() < kv.num_slots * kv_width || v_cache.len() < kv.num_slots * kv_width {
            return Ok(None);
        }
        let (ps, pl) = rope.positions.storage_and_layout();
        let (ss, sl) = kv.slots.storage_and_layout();
        let (fs, fl) = rope.inv_freq.storage_and_layout();
        let (positions, slots, inv_freq) = (
            view::<u32>(&ps, pl)?,
            view::<u32>(&ss, sl)?,
            view::<f32>(&fs, fl)?,
        );
        let q_width_i = as_i32(q_width, "q width")?;
        let kv_width_i = as_i32(kv_width, "KV width")?;
        let head_dim = as_i32(heads.head_dim, "head_dim")?;
        let interleaved = i32::from(rope.style == RopeStyle::Interleaved);
        let num_slots = u32::try_from(kv.num_slots).map_err(launch_err)?;
        let rows = a.rows as usize;
        let mut q = alloc_out::<T>(&self.dev, rows * q_width)?;
        let f = self.func("matvec", &format!("{}_rope_kv_{}", a.kernel, a.instance))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&a.w)
            .arg(&a.bias)
            .arg(&a.has_bias)
            .arg(&a.x)
            .arg(&a.residual)
            .arg(&a.norm)
            .arg(sum)
            .arg(&mut q)
            .arg(k_cache)
            .arg(v_cache)
            .arg(&positions)
            .arg(&slots)
            .arg(&inv_freq)
            .arg(&a.rows)
            .arg(&a.k)
            .arg(&a.x_stride)
            .arg(&q_width_i)
            .arg(&kv_width_i)
            .arg(&head_dim)
            .arg(&interleaved)
            .arg(&rope.mscale)
            .arg(&num_slots)
            .arg(&a.eps);
        // SAFETY: argument types and order match the matvec.cu `*_rope_kv_*` entry point named;
        // launch::matvec checked alignment as for `launch_rows`; `MatvecTarget::fits` checked
        // the q/k/v layout (n columns of whole heads of even width), one position and one slot
        // per row and head_dim / 2 frequencies; the caches hold `num_slots` rows of kv_width
        // (checked above) and slots past them write nothing.
        unsafe { b.launch(config(a.launch)) }.map_err(launch_err)?;
        Ok(Some(wrap(
            q,
            &self.dev,
            &[rows, heads.heads, heads.head_dim],
        )))
    }
}

/// The arguments both kinds of matvec.cu entry point take.
struct CommonArgs<'a, T> {
    w: CudaView<'a, T>,
    bias: CudaView<'a, T>,
    has_bias: i32,
    x: CudaView<'a, T>,
    residual: CudaView<'a, T>,
    norm: CudaView<'a, T>,
    rows: i32,
    k: i32,
    x_stride: i32,
    eps: f32,
    /// The entry point's name up to the target (`matvec_add_rms_norm`), and its dtype and
    /// instance (`bf16_r2`).
    kernel: String,
    instance: String,
    launch: launch::Launch,
}
