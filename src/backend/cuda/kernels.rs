//! candor's own CUDA kernels (kernels/cuda/*.cu): loading the cubin built for the device's
//! architecture (else the PTX) and launching each one on candle tensors.
//! Inputs are made contiguous, except those the kernels read as rows at a stride (RoPE, GLU and
//! KV-write inputs: the members of a joined projection, read in place); outputs are new
//! contiguous tensors; all kernels accumulate in f32.
use super::block_table::PackedBatch;
use super::error::CudaError;
use super::launch::{self, as_i32};
use super::tensors::{
    alloc_out, config, rows_view, view, with_contiguous_rows, with_kernel_dtype, wrap, KernelDType,
};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaView, LaunchArgs, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, StorageRef, Tensor};
use candor_kernels::cuda_ptx::{pick_arch, pick_cubin, PtxModule, MODULES};
use candor_models::backend::{Activation, RopeStyle};
use candor_models::error::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Whether environment variable `var` asks for candor's fast path (`auto`, or unset: yes) or
/// for `reference`, the one other choice (the path the fast one is measured against).
pub(super) fn fast_kernels_from_env(var: &str, reference: &str) -> Result<bool> {
    match std::env::var(var).as_deref() {
        Err(_) | Ok("auto") | Ok("") => Ok(true),
        Ok(v) if v == reference => Ok(false),
        Ok(other) => {
            Err(CudaError::Launch(format!("{var}={other}: expected auto or {reference}")).into())
        }
    }
}

pub(super) fn launch_err(e: impl std::fmt::Display) -> CudaError {
    CudaError::Launch(e.to_string())
}

pub struct Kernels {
    pub(super) dev: CudaDevice,
    major: u32,
    minor: u32,
    /// Load machine code (the cubin built for the device's architecture) where there is one;
    /// false: always the PTX (`CANDOR_CUDA_KERNELS=ptx`, the driver compiles it).
    cubins: bool,
    /// Modules by name, and functions by name, once loaded: a decode step of an 8B model
    /// launches ~200 of these kernels, and candle's module cache would ask the driver for the
    /// function (`cuModuleGetFunction`) on every call.
    loaded: Mutex<Loaded>,
    /// The split attention's per-(row, head) arrival counts (`arrivals`).
    arrivals: Mutex<Option<CudaSlice<u32>>>,
}

#[derive(Default)]
struct Loaded {
    modules: HashMap<&'static str, Arc<CudaModule>>,
    functions: HashMap<String, CudaFunction>,
}

/// What `rope` needs besides the tensor: per-token positions (u32, [tokens]) and the inverse
/// frequencies (f32, [head_dim / 2]), both already on the device.
pub struct RopeArgs {
    pub positions: Tensor,
    pub inv_freq: Tensor,
    pub style: RopeStyle,
    pub mscale: f32,
}

/// glu.cu's entry point for `act`, before the dtype suffix.
fn glu_name(act: Activation) -> &'static str {
    match act {
        Activation::Silu => "glu_silu",
        Activation::GeluTanh => "glu_gelu_tanh",
        Activation::SwigluOai => "glu_swiglu_oai",
        Activation::GeluErf => "glu_gelu_erf",
        Activation::Relu2 => "glu_relu2",
        Activation::Relu => "glu_relu",
    }
}

/// Static shape of one attention call.
pub struct AttentionArgs {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub scale: f32,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    /// Key ranges per row of the simple kernel and keys per range
    /// (`launch::attention_key_splits`); 1 range: one pass.
    pub key_ranges: (usize, usize),
    /// The heads' sink logits (`AttentionParams::sinks`), f32 on the device, one per query
    /// head (checked by `paged_attention`); None: no sinks.
    pub sinks: Option<Tensor>,
    /// The heads' ALiBi slopes (`AttentionParams::alibi`), f32 on the device, one per query
    /// head (checked by `paged_attention`); None: no ALiBi.
    pub alibi: Option<Tensor>,
}

/// The null device pointer: what the attention kernels read as "none" (no sinks, no ALiBi).
const NO_PER_HEAD: u64 = 0;

/// The cache halves short_conv.cu takes (`SHORT_CONV_MAX_PIECES`): four cache layers.
pub const SHORT_CONV_MAX_PIECES: usize = 8;

/// One short-convolution launch's inputs on the device (`Kernels::short_conv`).
pub struct ShortConvArgs<'a> {
    /// The K and V buffers of the layer's cache layers in row order: a row's pieces of `piece`
    /// values each.
    pub halves: Vec<&'a CudaStorage>,
    pub piece: usize,
    /// u32: the tapped rows' slots and each token's taps into them (`ConvTaps`; every tap and
    /// slot checked by the caller).
    pub slots: Tensor,
    pub taps: Tensor,
    /// f32: the kernel `[kernel, width]` and its bias.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub width: usize,
}

/// Per-head floats (the sinks, the ALiBi slopes) as a kernel argument (None: none), from their
/// read-locked storage.
fn per_head_view<'a>(
    locked: &'a Option<(StorageRef<'a>, &'a Layout)>,
) -> Result<Option<CudaView<'a, f32>>> {
    locked.as_ref().map(|(s, l)| view::<f32>(s, l)).transpose()
}

/// Push one of the attention kernels' per-head arguments (`sinks`, `alibi`): the device array,
/// or null.
fn push_per_head<'a>(b: &mut LaunchArgs<'a>, values: &'a Option<CudaView<'a, f32>>) {
    match values {
        Some(v) => b.arg(v),
        None => b.arg(&NO_PER_HEAD),
    };
}

/// `AttentionArgs` as the `int`/`float` parameters both attention kernels declare.
struct AttentionScalars {
    heads: i32,
    kv_heads: i32,
    head_dim: i32,
    block_size: i32,
    /// 0 means "none" to the kernels: a window of 0 keys is no window (CPU semantics too).
    window: i32,
    /// 0 means none.
    softcap: f32,
    scale: f32,
}

impl AttentionScalars {
    /// The parameters both simple kernels (paged_attention.cu) take after the batch metadata:
    /// heads, KV heads, head_dim, block size, scale, window, softcap (then the sinks and the
    /// ALiBi slopes: `push_per_head`).
    fn push_simple<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.heads)
            .arg(&self.kv_heads)
            .arg(&self.head_dim)
            .arg(&self.block_size)
            .arg(&self.scale)
            .arg(&self.window)
            .arg(&self.softcap);
    }
}

/// Read access to tensors whose device memory a launch borrows, held while its arguments are.
fn lock<'t, const N: usize>(tensors: [&'t Tensor; N]) -> [(StorageRef<'t>, &'t Layout); N] {
    tensors.map(|t| t.storage_and_layout())
}

impl AttentionArgs {
    fn scalars(&self) -> Result<AttentionScalars> {
        Ok(AttentionScalars {
            heads: as_i32(self.heads, "heads")?,
            kv_heads: as_i32(self.kv_heads, "KV heads")?,
            head_dim: as_i32(self.head_dim, "head_dim")?,
            block_size: as_i32(self.block_size, "block size")?,
            window: as_i32(self.window.unwrap_or(0), "sliding window")?,
            softcap: self.softcap.unwrap_or(0.0),
            scale: self.scale,
        })
    }
}

/// The packed batch metadata on the device (see `block_table`).
#[derive(Clone)]
pub struct DeviceBatch {
    pub row_seq: Tensor,
    pub seq_meta: Tensor,
    pub tables: Tensor,
    /// Query tiles: present when the batch runs on the tensor-core prefill kernel.
    pub tiles: Option<Tensor>,
    /// Whether some sequence covers every row (else the uncovered rows' output must be zeroed
    /// by whoever does not visit them).
    pub row_seq_complete: bool,
}

impl Kernels {
    /// Kernels for a device of compute capability `major.minor`: an error when no compiled
    /// architecture runs on it.
    pub fn new(dev: CudaDevice, major: u32, minor: u32) -> Result<Self> {
        for m in MODULES {
            if pick_arch(m.per_arch, major, minor).is_none() {
                return Err(CudaError::UnsupportedDevice { major, minor }.into());
            }
        }
        let cubins = fast_kernels_from_env("CANDOR_CUDA_KERNELS", "ptx")?;
        Ok(Kernels {
            dev,
            major,
            minor,
            cubins,
            loaded: Mutex::new(Loaded::default()),
            arrivals: Mutex::new(None),
        })
    }

    /// `function` of kernels/cuda/`module`.cu (names are unique across modules), loaded once.
    pub(super) fn func(&self, module: &str, function: &str) -> Result<CudaFunction> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = loaded.functions.get(function) {
            return Ok(f.clone());
        }
        let m = match MODULES.iter().find(|m| m.name == module) {
            Some(m) => m,
            None => return Err(CudaError::Launch(format!("no kernel module {module}")).into()),
        };
        let md = match loaded.modules.get(m.name) {
            Some(md) => md.clone(),
            None => {
                let md = self.load_module(m)?;
                loaded.modules.insert(m.name, md.clone());
                md
            }
        };
        let f = md.load_function(function).map_err(launch_err)?;
        loaded.functions.insert(function.to_string(), f.clone());
        Ok(f)
    }

    /// The module's cubin for this device where there is one (nothing to compile), else (or
    /// should the driver refuse it) its PTX for the highest architecture the device runs.
    fn load_module(&self, m: &PtxModule) -> Result<Arc<CudaModule>> {
        let ctx = self.dev.cuda_stream().context().clone();
        if self.cubins {
            if let Some((arch, cubin)) = pick_cubin(m.cubins, self.major, self.minor) {
                match ctx.load_module(Ptx::from_binary(cubin.to_vec())) {
                    Ok(md) => return Ok(md),
                    Err(e) => tracing::warn!(
                        module = m.name,
                        "the sm_{arch} cubin did not load ({e}); compiling the PTX instead"
                    ),
                }
            }
        }
        let (_, ptx) =
            pick_arch(m.per_arch, self.major, self.minor).ok_or(CudaError::UnsupportedDevice {
                major: self.major,
                minor: self.minor,
            })?;
        Ok(ctx.load_module(Ptx::from_src(ptx)).map_err(launch_err)?)
    }

    /// RMSNorm of the rows of `x` times `w`; with `residual`, of `x + residual`, returning the
    /// sum as well (one fused pass).
    pub fn rms_norm(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        w: &Tensor,
        eps: f32,
    ) -> Result<(Option<Tensor>, Tensor)> {
        with_kernel_dtype!(x.dtype(), T, { self.rms_norm_t::<T>(x, residual, w, eps) })
    }

    fn rms_norm_t<T: KernelDType>(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        w: &Tensor,
        eps: f32,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let dims = x.dims().to_vec();
        let cols = dims.last().copied().unwrap_or(0);
        let n = x.elem_count();
        if w.elem_count() != cols || residual.is_some_and(|r| r.dims() != dims.as_slice()) {
            return Err(CudaError::Launch(format!(
                "rms_norm: x {dims:?}, weight {:?}, residual {:?}",
                w.dims(),
                residual.map(|r| r.dims().to_vec())
            ))
            .into());
        }
        if n == 0 {
            return Ok((residual.map(|_| x.clone()), x.clone()));
        }
        let rows = n / cols;
        let x = x.contiguous()?;
        let w = w.to_dtype(x.dtype())?.contiguous()?;
        let residual = residual.map(|r| r.contiguous()).transpose()?;
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let xv = view::<T>(&xs, xl)?;
        let wv = view::<T>(&ws, wl)?;
        let mut out = alloc_out::<T>(&self.dev, n)?;
        let cols_i = as_i32(cols, "rms_norm columns")?;
        let cfg = config(launch::per_row(rows, cols)?);
        let sum = match &residual {
            None => {
                let f = self.func("rms_norm", &format!("rms_norm_{}", T::SUFFIX))?;
                let stream = self.dev.cuda_stream();
                let mut b = stream.launch_builder(&f);
                b.arg(&xv).arg(&wv).arg(&mut out).arg(&cols_i).arg(&eps);
                // SAFETY: argument types and order match rms_norm_<T> in rms_norm.cu.
                unsafe { b.launch(cfg) }.map_err(launch_err)?;
                None
            }
            Some(r) => {
                let (rs, rl) = r.storage_and_layout();
                let rv = view::<T>(&rs, rl)?;
                let mut sum = alloc_out::<T>(&self.dev, n)?;
                let f = self.func("rms_norm", &format!("add_rms_norm_{}", T::SUFFIX))?;
                let stream = self.dev.cuda_stream();
                let mut b = stream.launch_builder(&f);
                b.arg(&xv)
                    .arg(&rv)
                    .arg(&wv)
                    .arg(&mut sum)
                    .arg(&mut out)
                    .arg(&cols_i)
                    .arg(&eps);
                // SAFETY: argument types and order match add_rms_norm_<T> in rms_norm.cu.
                unsafe { b.launch(cfg) }.map_err(launch_err)?;
                Some(wrap(sum, &self.dev, &dims))
            }
        };
        Ok((sum, wrap(out, &self.dev, &dims)))
    }

    /// The index of each row's largest value (`x`: `[rows, cols]`), the first of equal values
    /// and NaN passed over, as the CPU backend picks it.
    pub fn argmax(&self, x: &Tensor) -> Result<Vec<u32>> {
        with_kernel_dtype!(x.dtype(), T, { self.argmax_t::<T>(x) })
    }

    fn argmax_t<T: KernelDType>(&self, x: &Tensor) -> Result<Vec<u32>> {
        let cols = x.dims().last().copied().unwrap_or(0);
        if cols == 0 {
            return Err(CudaError::Launch(format!("argmax over rows of {:?}", x.dims())).into());
        }
        let rows = x.elem_count() / cols;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let x = x.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let xv = view::<T>(&xs, xl)?;
        // SAFETY: the kernel writes one index per row, every row.
        let mut out = unsafe { self.dev.alloc::<u32>(rows) }?;
        let cols_i = as_i32(cols, "argmax columns")?;
        let f = self.func("argmax", &format!("argmax_{}", T::SUFFIX))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&xv).arg(&mut out).arg(&cols_i);
        // SAFETY: argument types and order match argmax_<T> in argmax.cu; the block is a power
        // of two of at most 1024 threads (its shared arrays).
        unsafe { b.launch(config(launch::per_row_pow2(rows, cols)?)) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &[rows]).to_vec1::<u32>()?)
    }

    /// Rotary embedding of `x` (`[tokens, heads, head_dim]`).
    pub fn rope(&self, x: &Tensor, args: &RopeArgs) -> Result<Tensor> {
        with_kernel_dtype!(x.dtype(), T, { self.rope_t::<T>(x, args) })
    }

    fn rope_t<T: KernelDType>(&self, x: &Tensor, a: &RopeArgs) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let [t, h, d] = dims[..] else {
            return Err(CudaError::Launch(format!("rope: x of shape {dims:?}")).into());
        };
        if a.positions.elem_count() != t || a.inv_freq.elem_count() * 2 != d {
            return Err(CudaError::Launch(format!(
                "rope: {t} rows, {} positions, head_dim {d}, {} frequencies",
                a.positions.elem_count(),
                a.inv_freq.elem_count()
            ))
            .into());
        }
        if t == 0 {
            return Ok(x.clone());
        }
        let x = with_contiguous_rows(x)?;
        let (xs, xl) = x.storage_and_layout();
        let (ps, pl) = a.positions.storage_and_layout();
        let (fs, fl) = a.inv_freq.storage_and_layout();
        let ((xv, rows), pv, fv) = (
            rows_view::<T>(&xs, xl)?,
            view::<u32>(&ps, pl)?,
            view::<f32>(&fs, fl)?,
        );
        let mut out = alloc_out::<T>(&self.dev, x.elem_count())?;
        let (heads, head_dim) = (as_i32(h, "heads")?, as_i32(d, "head_dim")?);
        let in_stride = as_i32(rows.stride, "rope row stride")?;
        let interleaved = i32::from(a.style == RopeStyle::Interleaved);
        let f = self.func("rope", &format!("rope_{}", T::SUFFIX))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&xv)
            .arg(&mut out)
            .arg(&pv)
            .arg(&fv)
            .arg(&heads)
            .arg(&head_dim)
            .arg(&in_stride)
            .arg(&interleaved)
            .arg(&a.mscale);
        // SAFETY: argument types and order match rope_<T> in rope.cu.
        unsafe { b.launch(config(launch::per_row(t, h * d / 2)?)) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &dims))
    }

    /// The gated linear unit `act(gate, up)`: SiLU or GELU-tanh of gate times up, or gpt-oss's
    /// clamped SwiGLU.
    pub fn glu(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        with_kernel_dtype!(gate.dtype(), T, { self.glu_t::<T>(gate, up, act) })
    }

    fn glu_t<T: KernelDType>(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        if gate.dims() != up.dims() || gate.dtype() != up.dtype() {
            return Err(CudaError::Launch(format!(
                "glu: gate {:?} and up {:?}",
                gate.dims(),
                up.dims()
            ))
            .into());
        }
        let n = gate.elem_count();
        if n == 0 {
            return Ok(gate.clone());
        }
        let (g, u) = (with_contiguous_rows(gate)?, with_contiguous_rows(up)?);
        let (gs, gl) = g.storage_and_layout();
        let (us, ul) = u.storage_and_layout();
        let ((gv, g_rows), (uv, u_rows)) = (rows_view::<T>(&gs, gl)?, rows_view::<T>(&us, ul)?);
        let mut out = alloc_out::<T>(&self.dev, n)?;
        let f = self.func("glu", &format!("{}_{}", glu_name(act), T::SUFFIX))?;
        let n64 = n as u64;
        let cols = as_i32(g_rows.row, "glu columns")?;
        let gate_stride = as_i32(g_rows.stride, "glu gate stride")?;
        let up_stride = as_i32(u_rows.stride, "glu up stride")?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&gv)
            .arg(&uv)
            .arg(&mut out)
            .arg(&n64)
            .arg(&cols)
            .arg(&gate_stride)
            .arg(&up_stride);
        // SAFETY: argument types and order match glu_*_<T> in glu.cu (size_t is 64-bit); gate
        // and up have the same shape, so the same `cols`.
        unsafe { b.launch(config(launch::elementwise(n))) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, gate.dims()))
    }

    /// LFM2's short convolution read from the paged cache (short_conv.cu) → `[tokens, width]`
    /// in the cache's dtype.
    pub fn short_conv(&self, a: &ShortConvArgs<'_>) -> Result<Tensor> {
        let dtype = a.halves.first().map_or(DType::F32, |h| {
            candle_core::backend::BackendStorage::dtype(*h)
        });
        with_kernel_dtype!(dtype, T, { self.short_conv_t::<T>(a) })
    }

    fn short_conv_t<T: KernelDType>(&self, a: &ShortConvArgs<'_>) -> Result<Tensor> {
        let ShortConvArgs {
            halves,
            piece,
            slots,
            taps,
            weight: w,
            bias,
            width,
        } = a;
        let (piece, width) = (*piece, *width);
        let kernel = w.elem_count() / width.max(1);
        let tokens = taps.elem_count() / kernel.max(1);
        let pieces = width.div_ceil(piece.max(1));
        if halves.is_empty()
            || halves.len() > SHORT_CONV_MAX_PIECES
            || pieces > halves.len()
            || kernel == 0
            || w.elem_count() != kernel * width
            || taps.elem_count() != tokens * kernel
            || tokens == 0
        {
            return Err(CudaError::Launch(format!(
                "short_conv: {} cache halves of {piece} for {width} channels, {} weights, {} taps",
                halves.len(),
                w.elem_count(),
                taps.elem_count()
            ))
            .into());
        }
        let n = tokens * width;
        let mut out = alloc_out::<T>(&self.dev, n)?;
        let cache: Vec<&CudaSlice<T>> = halves
            .iter()
            .map(|h| h.as_cuda_slice::<T>())
            .collect::<candle_core::Result<_>>()?;
        let (ss, sl) = slots.storage_and_layout();
        let (ts, tl) = taps.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (sv, tv, wv) = (
            view::<u32>(&ss, sl)?,
            view::<u32>(&ts, tl)?,
            view::<f32>(&ws, wl)?,
        );
        let bias_storage = bias.as_ref().map(|b| b.storage_and_layout());
        let bv = match &bias_storage {
            Some((bs, bl)) => Some(view::<f32>(bs, bl)?),
            None => None,
        };
        let f = self.func("short_conv", &format!("short_conv_{}", T::SUFFIX))?;
        let (piece_i, kernel_i, width_i) = (
            as_i32(piece, "short_conv piece")?,
            as_i32(kernel, "short_conv kernel")?,
            as_i32(width, "short_conv width")?,
        );
        let has_bias = i32::from(bv.is_some());
        let n64 = n as u64;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        for i in 0..SHORT_CONV_MAX_PIECES {
            // Halves past the row's pieces are never read: any valid pointer.
            b.arg(cache.get(i).copied().unwrap_or(cache[0]));
        }
        b.arg(&piece_i).arg(&sv).arg(&tv).arg(&wv);
        match &bv {
            Some(bv) => b.arg(bv),
            // No bias: never read (has_bias 0).
            None => b.arg(&wv),
        };
        b.arg(&has_bias)
            .arg(&kernel_i)
            .arg(&width_i)
            .arg(&n64)
            .arg(&mut out);
        // SAFETY: argument types and order match short_conv_<T> in short_conv.cu (size_t is
        // 64-bit); the caller checked every tap against `slots` and every slot against the
        // cache, and `pieces` halves hold rows of `piece` values at every slot.
        unsafe { b.launch(config(launch::elementwise(n))) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &[tokens, width]))
    }

    /// Scatter `k`, `v` (`[tokens, row]`) into one layer's cache buffers at `slots` (u32 on the
    /// device; validated by the caller against `num_slots`).
    pub fn kv_write(
        &self,
        k_cache: &mut CudaStorage,
        v_cache: &mut CudaStorage,
        k: &Tensor,
        v: &Tensor,
        slots: &Tensor,
        num_slots: usize,
    ) -> Result<()> {
        with_kernel_dtype!(k.dtype(), T, {
            self.kv_write_t::<T>(k_cache, v_cache, k, v, slots, num_slots)
        })
    }

    fn kv_write_t<T: KernelDType>(
        &self,
        k_cache: &mut CudaStorage,
        v_cache: &mut CudaStorage,
        k: &Tensor,
        v: &Tensor,
        slots: &Tensor,
        num_slots: usize,
    ) -> Result<()> {
        let tokens = slots.elem_count();
        if tokens == 0 {
            return Ok(());
        }
        let row = k.elem_count() / tokens;
        if k.elem_count() != tokens * row || v.dims() != k.dims() || v.dtype() != k.dtype() {
            return Err(CudaError::Launch(format!(
                "kv_write: {tokens} slots for k {:?}, v {:?}",
                k.dims(),
                v.dims()
            ))
            .into());
        }
        let (k, v) = (with_contiguous_rows(k)?, with_contiguous_rows(v)?);
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (ss, sl) = slots.storage_and_layout();
        let ((kv, k_rows), (vv, v_rows), sv) = (
            rows_view::<T>(&ks, kl)?,
            rows_view::<T>(&vs, vl)?,
            view::<u32>(&ss, sl)?,
        );
        if k_rows.row != row || v_rows.row != row {
            return Err(CudaError::Launch(format!(
                "kv_write: rows of {} and {} elements for a cache row of {row}",
                k_rows.row, v_rows.row
            ))
            .into());
        }
        let k_stride = as_i32(k_rows.stride, "k row stride")?;
        let v_stride = as_i32(v_rows.stride, "v row stride")?;
        let kc = k_cache.as_cuda_slice_mut::<T>()?;
        let vc = v_cache.as_cuda_slice_mut::<T>()?;
        if kc.len() < num_slots * row || vc.len() < num_slots * row {
            return Err(CudaError::Launch("kv_write: cache smaller than its slots".into()).into());
        }
        let row_i = as_i32(row, "KV row")?;
        let num_slots = u32::try_from(num_slots).map_err(launch_err)?;
        let f = self.func("kv_write", &format!("kv_write_{}", T::SUFFIX))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&kv)
            .arg(&vv)
            .arg(kc)
            .arg(vc)
            .arg(&sv)
            .arg(&row_i)
            .arg(&k_stride)
            .arg(&v_stride)
            .arg(&num_slots);
        // SAFETY: argument types and order match kv_write_<T> in kv_write.cu; slots past
        // `num_slots` are skipped by the kernel.
        unsafe { b.launch(config(launch::per_row(tokens, row)?)) }.map_err(launch_err)?;
        Ok(())
    }

    /// Attention of `q` (`[tokens, heads, head_dim]`) over one layer's paged cache →
    /// `[tokens, heads * head_dim]`.
    pub fn paged_attention(
        &self,
        q: &Tensor,
        k_cache: &CudaStorage,
        v_cache: &CudaStorage,
        batch: &DeviceBatch,
        a: &AttentionArgs,
    ) -> Result<Tensor> {
        with_kernel_dtype!(q.dtype(), T, {
            self.paged_attention_t::<T>(q, k_cache, v_cache, batch, a)
        })
    }

    fn paged_attention_t<T: KernelDType>(
        &self,
        q: &Tensor,
        k_cache: &CudaStorage,
        v_cache: &CudaStorage,
        batch: &DeviceBatch,
        a: &AttentionArgs,
    ) -> Result<Tensor> {
        let tokens = batch.row_seq.elem_count();
        let row = a.heads * a.head_dim;
        if q.elem_count() != tokens * row {
            return Err(CudaError::Launch(format!(
                "attention: q {:?} for {tokens} rows of {} heads × {}",
                q.dims(),
                a.heads,
                a.head_dim
            ))
            .into());
        }
        // The kernels read one f32 per query head from each: anything else is an error, not a
        // read past the array.
        for (what, values) in [("sinks", &a.sinks), ("ALiBi slopes", &a.alibi)] {
            if let Some(v) = values {
                if v.elem_count() != a.heads || v.dtype() != DType::F32 {
                    return Err(CudaError::Launch(format!(
                        "attention: {} {:?} {what} for {} heads",
                        v.elem_count(),
                        v.dtype(),
                        a.heads
                    ))
                    .into());
                }
            }
        }
        let shape = [tokens, row];
        if tokens == 0 {
            return Ok(q.reshape(&shape[..])?);
        }
        let q = q.contiguous()?;
        // Tensor-core tiles read Q rows 16 bytes at a time: the rows must start aligned (they
        // do for a kernel's fresh output; a view into another buffer takes the simple kernel).
        let aligned = (q.layout().start_offset() * std::mem::size_of::<T>()).is_multiple_of(16);
        if let (Some(tiles), true) = (&batch.tiles, aligned) {
            return self.paged_attention_mma::<T>(&q, k_cache, v_cache, batch, tiles, a);
        }
        // Few rows over long contexts: each row's keys in `ranges` ranges across blocks, the
        // last block of each (row, head) combining them; else one block per (row, head).
        let (ranges, keys) = a.key_ranges;
        let cfg = config(if ranges > 1 {
            launch::attention_split(tokens, a.heads, a.kv_heads, a.head_dim, ranges)?
        } else {
            launch::attention(tokens, a.heads, a.kv_heads, a.head_dim)?
        });
        let (qs, ql) = q.storage_and_layout();
        let qv = view::<T>(&qs, ql)?;
        let locked = lock([&batch.row_seq, &batch.seq_meta, &batch.tables]);
        let [rv, mv, tv] = locked.each_ref().map(|(s, l)| view::<u32>(s, l));
        let (rv, mv, tv) = (rv?, mv?, tv?);
        let (kc, vc) = (k_cache.as_cuda_slice::<T>()?, v_cache.as_cuda_slice::<T>()?);
        let mut out = alloc_out::<T>(&self.dev, tokens * row)?;
        let s = a.scalars()?;
        let sinks_locked = a.sinks.as_ref().map(Tensor::storage_and_layout);
        let sinks = per_head_view(&sinks_locked)?;
        let alibi_locked = a.alibi.as_ref().map(Tensor::storage_and_layout);
        let alibi = per_head_view(&alibi_locked)?;
        let stream = self.dev.cuda_stream();
        if ranges == 1 {
            let f = self.func("paged_attention", &format!("paged_attention_{}", T::SUFFIX))?;
            let mut b = stream.launch_builder(&f);
            b.arg(&qv)
                .arg(kc)
                .arg(vc)
                .arg(&mut out)
                .arg(&rv)
                .arg(&mv)
                .arg(&tv);
            s.push_simple(&mut b);
            push_per_head(&mut b, &sinks);
            push_per_head(&mut b, &alibi);
            // SAFETY: argument types and order match paged_attention_<T>; every index the
            // kernel forms was validated by block_table::pack against the cache's size; the
            // sinks and ALiBi slopes (each null, or one per head) were checked by
            // `paged_attention`.
            unsafe { b.launch(cfg) }.map_err(launch_err)?;
            return Ok(wrap(out, &self.dev, &shape));
        }
        let parts = tokens * a.heads * ranges;
        // SAFETY: the split kernel writes every range's max, sum and output (empty ranges too),
        // and the last block of each (row, head) every output element of it.
        let mut part_ml = unsafe { self.dev.alloc::<f32>(2 * parts) }?;
        let mut part_acc = unsafe { self.dev.alloc::<f32>(parts * a.head_dim) }?;
        let mut arrivals = self.arrivals(tokens * a.heads)?;
        let counts = arrivals
            .as_mut()
            .ok_or_else(|| CudaError::Launch("no arrival counts for the split attention".into()))?;
        let keys_i = as_i32(keys, "keys per range")?;
        let f = self.func(
            "paged_attention",
            &format!("paged_attention_split_{}", T::SUFFIX),
        )?;
        let mut b = stream.launch_builder(&f);
        b.arg(&qv)
            .arg(kc)
            .arg(vc)
            .arg(&mut part_ml)
            .arg(&mut part_acc)
            .arg(&mut out)
            .arg(counts)
            .arg(&rv)
            .arg(&mv)
            .arg(&tv);
        s.push_simple(&mut b);
        push_per_head(&mut b, &sinks);
        push_per_head(&mut b, &alibi);
        b.arg(&keys_i);
        // SAFETY: argument types and order match paged_attention_split_<T>; indices as the
        // one-pass kernel's, validated by block_table::pack; partials sized for the grid; the
        // arrival counts cover every (row, head), zero between launches (each launch's last
        // blocks set theirs back, in stream order before the next launch reads them).
        unsafe { b.launch(cfg) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &shape))
    }

    /// The split attention's arrival counts, at least `pairs` of them, all zero between
    /// launches: allocated zeroed (grown when a batch needs more), and every launch leaves
    /// them zero. Held (locked) while a launch uses them.
    fn arrivals(&self, pairs: usize) -> Result<MutexGuard<'_, Option<CudaSlice<u32>>>> {
        let mut counts = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        if counts.as_ref().is_none_or(|c| c.len() < pairs) {
            *counts = Some(self.dev.alloc_zeros::<u32>(pairs.next_power_of_two())?);
        }
        Ok(counts)
    }

    /// `paged_attention` on tensor cores (paged_attention_mma.cu): one block per (query tile,
    /// head), for f16/bf16 and the head sizes `launch::mma_attention_rows` lists.
    fn paged_attention_mma<T: KernelDType>(
        &self,
        q: &Tensor,
        k_cache: &CudaStorage,
        v_cache: &CudaStorage,
        batch: &DeviceBatch,
        tiles: &Tensor,
        a: &AttentionArgs,
    ) -> Result<Tensor> {
        if T::SUFFIX == "f32" {
            return Err(
                CudaError::Launch("tensor-core attention takes f16/bf16 only".into()).into(),
            );
        }
        let tokens = batch.row_seq.elem_count();
        let row = a.heads * a.head_dim;
        let n_tiles = tiles.elem_count() / 3;
        let cfg = config(launch::attention_mma(
            n_tiles, a.heads, a.kv_heads, a.head_dim,
        )?);
        let (qs, ql) = q.storage_and_layout();
        let qv = view::<T>(&qs, ql)?;
        let locked = lock([&batch.seq_meta, &batch.tables, tiles]);
        let [mv, tv, iv] = locked.each_ref().map(|(s, l)| view::<u32>(s, l));
        let (mv, tv, iv) = (mv?, tv?, iv?);
        let (kc, vc) = (k_cache.as_cuda_slice::<T>()?, v_cache.as_cuda_slice::<T>()?);
        // Every row belongs to a tile, but a row no sequence covers has none: zero first.
        let mut out = if batch.row_seq_complete {
            alloc_out::<T>(&self.dev, tokens * row)?
        } else {
            self.dev.alloc_zeros::<T>(tokens * row)?
        };
        let s = a.scalars()?;
        let sinks_locked = a.sinks.as_ref().map(Tensor::storage_and_layout);
        let sinks = per_head_view(&sinks_locked)?;
        let alibi_locked = a.alibi.as_ref().map(Tensor::storage_and_layout);
        let alibi = per_head_view(&alibi_locked)?;
        let name = format!("paged_attention_mma_{}_d{}", T::SUFFIX, a.head_dim);
        let f = self.func("paged_attention_mma", &name)?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&qv)
            .arg(kc)
            .arg(vc)
            .arg(&mut out)
            .arg(&mv)
            .arg(&tv)
            .arg(&iv)
            .arg(&s.heads)
            .arg(&s.kv_heads)
            .arg(&s.block_size)
            .arg(&a.scale)
            .arg(&s.window)
            .arg(&s.softcap);
        push_per_head(&mut b, &sinks);
        push_per_head(&mut b, &alibi);
        // SAFETY: argument types and order match paged_attention_mma_<T>_d<D>; the tiles come
        // from block_table::query_tiles over sequences block_table::pack validated against the
        // cache, and the launch's block size is the one the instance was compiled for.
        unsafe { b.launch(cfg) }.map_err(launch_err)?;
        Ok(wrap(out, &self.dev, &[tokens, row]))
    }

    /// A tensor of `shape` and `dtype` filled with the synthetic stream `seed`, uniform in
    /// `[lo, hi)` (fill.cu; equal to `candor_models::weights::synthetic` on the host).
    pub fn fill_uniform(
        &self,
        shape: &[usize],
        dtype: DType,
        seed: u64,
        (lo, hi): (f32, f32),
    ) -> Result<Tensor> {
        with_kernel_dtype!(dtype, T, { self.fill_t::<T>(shape, seed, lo, hi) })
    }

    fn fill_t<T: KernelDType>(
        &self,
        shape: &[usize],
        seed: u64,
        lo: f32,
        hi: f32,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let mut out = alloc_out::<T>(&self.dev, n.max(1))?;
        let n64 = n as u64;
        let f = self.func("fill", &format!("fill_uniform_{}", T::SUFFIX))?;
        let stream = self.dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&mut out).arg(&n64).arg(&seed).arg(&lo).arg(&hi);
        // SAFETY: argument types and order match fill_uniform_<T> in fill.cu.
        unsafe { b.launch(config(launch::elementwise(n))) }.map_err(launch_err)?;
        let t = wrap(out, &self.dev, &[n.max(1)]);
        Ok(t.narrow(0, 0, n)?.reshape(shape)?)
    }
}

impl PackedBatch {
    /// Upload the packed arrays.
    pub fn to_device(&self, device: &candle_core::Device) -> Result<DeviceBatch> {
        let up = |v: &[u32]| -> Result<Tensor> {
            // An empty array still needs a valid (1-element) buffer as a kernel argument.
            let data: &[u32] = if v.is_empty() { &[0] } else { v };
            Ok(Tensor::from_slice(data, data.len(), device)?)
        };
        Ok(DeviceBatch {
            row_seq: Tensor::from_slice(&self.row_seq, self.row_seq.len(), device)?,
            seq_meta: up(&self.seq_meta)?,
            tables: up(&self.tables)?,
            tiles: if self.tiles.is_empty() {
                None
            } else {
                Some(up(&self.tiles)?)
            },
            row_seq_complete: !self.row_seq.contains(&super::block_table::NO_SEQ),
        })
    }
}
