//! `PluginBackend`: the Backend trait over a device plugin's function table. An op runs on the
//! device when the plugin has its function, keeps the weights it needs, and says yes to
//! `supports_op` for the actual shapes; otherwise it runs on the CPU backend with explicit
//! downloads and uploads, and the fallback is counted.
use super::buffer::DeviceBuffer;
use super::fallback::{FallbackCounts, Op};
use super::ffi::{self, CandorDeviceApi, CandorOpDesc, CandorStatus, CandorTensor};
use super::loader::{Plugin, PluginError};
use super::tensors::PluginWeight;
use super::tensors::{
    err, f32_bytes, kv_bytes, kv_element_bytes, kv_values, weight_bytes, DeviceWeight,
    PluginKvCache, PluginTensor,
};
use crate::backend::cpu::{CpuBackend, CpuKvCache, CpuWeight};
use candle_core::{Device, Tensor};
use candor_models::backend::{
    Activation, AttentionParams, Backend, ConvTaps, DeviceInfo, KvCacheSpec, OpDesc, RopeSpec,
    RopeStyle, ShortConvWeights,
};
use candor_models::batch::SeqAttention;
use candor_models::error::{ModelError, Result};
use candor_models::kv_rows::KvRows;
use candor_models::short_conv::short_conv_via_rows;
use candor_models::weights::HostWeight;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// "Not provided" for a function pointer missing from the table (never reached: callers check
/// availability first, but a status is still owed).
const UNSUPPORTED: CandorStatus = 1;

#[derive(Clone)]
pub struct PluginBackend {
    plugin: Arc<Plugin>,
    cpu: CpuBackend,
    fallbacks: Arc<FallbackCounts>,
    /// Weights loaded so far by dtype name: (on the device, on the host only).
    placement: Arc<Mutex<BTreeMap<String, (usize, usize)>>>,
    /// The KV cache's element type: F32 (ABI 1.0), or F16 where the plugin keeps it.
    kv_dtype: ffi::CandorDtype,
}

impl From<PluginError> for ModelError {
    fn from(e: PluginError) -> Self {
        ModelError::Backend(e.to_string())
    }
}

fn op_desc(op: ffi::CandorOp, dims: &[usize]) -> CandorOpDesc {
    let mut d = CandorOpDesc {
        op,
        ..Default::default()
    };
    for (slot, &v) in d.dims.iter_mut().zip(dims) {
        *slot = v as i64;
    }
    d
}

/// The attention entry a call goes to: the 1.0 function, or the 1.1 one with the sinks (host
/// memory, one per head) it is passed.
enum AttentionFn {
    Plain(ffi::PagedAttentionFn),
    Sinks(ffi::PagedAttentionSinksFn, Arc<[f32]>),
    /// The ALiBi slopes, and the sinks where the layer has them too.
    Alibi(ffi::PagedAttentionAlibiFn, Option<Arc<[f32]>>, Arc<[f32]>),
}

fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| err(format!("{what} {v} does not fit the plugin ABI (u32)")))
}

impl PluginBackend {
    /// Load and check the plugin at `path`; `cpu` runs the ops it does not.
    pub fn load(path: &std::path::Path, cpu: CpuBackend) -> std::result::Result<Self, PluginError> {
        Ok(Self::new(Arc::new(Plugin::load(path)?), cpu))
    }

    pub fn new(plugin: Arc<Plugin>, cpu: CpuBackend) -> Self {
        PluginBackend {
            plugin,
            cpu,
            fallbacks: Arc::new(FallbackCounts::default()),
            placement: Arc::default(),
            kv_dtype: ffi::DTYPE_F32,
        }
    }

    /// Whether the plugin keeps KV caches of `dtype`: F32 always; F16 (ABI 1.1) where it says
    /// yes to both the KV write and attention with that `dtype`.
    pub fn keeps_kv_cache(&self, dtype: ffi::CandorDtype) -> bool {
        if dtype == ffi::DTYPE_F32 {
            return true;
        }
        dtype == ffi::DTYPE_F16
            && self.plugin.speaks_minor(1)
            && [ffi::OP_KV_WRITE, ffi::OP_PAGED_ATTENTION]
                .iter()
                .all(|&op| {
                    self.has_function(op)
                        && self.plugin.supports(&CandorOpDesc {
                            op,
                            dtype,
                            ..Default::default()
                        })
                })
    }

    /// This backend with KV caches of `dtype` (`keeps_kv_cache` must hold).
    pub fn with_kv_cache(mut self, dtype: ffi::CandorDtype) -> Result<Self> {
        if !self.keeps_kv_cache(dtype) {
            return Err(err(format!(
                "the plugin `{}` keeps no KV cache of {} (ABI {}.{})",
                self.plugin.name(),
                ffi::dtype_name(dtype).unwrap_or_else(|| format!("dtype {dtype}")),
                self.plugin.abi().0,
                self.plugin.abi().1
            )));
        }
        self.kv_dtype = dtype;
        Ok(self)
    }

    /// One line for the start-up log: where the weights went and which ops the plugin lacks
    /// (those, and every op on a host-only weight, run on the CPU).
    pub fn startup_report(&self) -> String {
        let placement = self.placement.lock().map(|p| p.clone()).unwrap_or_default();
        let list = |on_device: bool| {
            let parts: Vec<String> = placement
                .iter()
                .map(|(d, &(dev, host))| (d, if on_device { dev } else { host }))
                .filter(|&(_, n)| n > 0)
                .map(|(d, n)| format!("{n} {d}"))
                .collect();
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        };
        let lacking: Vec<&str> = [
            (ffi::OP_EMBEDDING, Op::Embedding),
            (ffi::OP_RMS_NORM, Op::RmsNorm),
            (ffi::OP_ADD_RMS_NORM, Op::AddRmsNorm),
            (ffi::OP_LINEAR, Op::Linear),
            (ffi::OP_ROPE, Op::Rope),
            (ffi::OP_KV_WRITE, Op::KvWrite),
            (ffi::OP_PAGED_ATTENTION, Op::PagedAttention),
            (ffi::OP_GLU, Op::Glu),
            (ffi::OP_ADD, Op::Add),
            (ffi::OP_MUL, Op::Mul),
            (ffi::OP_SCALE, Op::Scale),
            (ffi::OP_SOFTCAP, Op::Softcap),
            (ffi::OP_SOFTMAX, Op::Softmax),
            (ffi::OP_GATHER_ROWS, Op::GatherRows),
            (ffi::OP_ARGMAX, Op::Argmax),
            (ffi::OP_CLAMP, Op::Clamp),
            (ffi::OP_XIELU, Op::Xielu),
            (ffi::OP_QUANTIZE_ROWS, Op::QuantizeRows),
            (ffi::OP_MUL_SIGMOID, Op::MulSigmoid),
        ]
        .iter()
        .filter(|(code, _)| !self.has_function(*code))
        .map(|(_, op)| op.name())
        .collect();
        format!(
            "device plugin `{}` ({}): weights on the device: {}; on the host only: {}; ops the plugin lacks (CPU fallback): {}",
            self.plugin.name(),
            self.plugin.path().display(),
            list(true),
            list(false),
            if lacking.is_empty() {
                "none".to_string()
            } else {
                lacking.join(", ")
            }
        )
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    pub fn fallback_counts(&self) -> &FallbackCounts {
        &self.fallbacks
    }

    fn api(&self) -> &CandorDeviceApi {
        self.plugin.api()
    }

    /// An uninitialised f32 device tensor.
    fn alloc(&self, shape: &[usize]) -> Result<PluginTensor> {
        if shape.is_empty() || shape.len() > ffi::MAX_RANK {
            return Err(err(format!(
                "plugin tensors have rank 1 to {}, not {shape:?}",
                ffi::MAX_RANK
            )));
        }
        let elems = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| err(format!("tensor of shape {shape:?} overflows")))?;
        Ok(PluginTensor {
            buf: Arc::new(DeviceBuffer::alloc(&self.plugin, elems as u64)?),
            shape: shape.to_vec(),
        })
    }

    fn download_f32(&self, t: &PluginTensor) -> Result<Vec<f32>> {
        let mut out = vec![0f32; t.elems()];
        // SAFETY: any byte pattern is a valid f32; the slice covers exactly `out`.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), out.len() * 4) };
        t.buf.read(0, bytes)?;
        Ok(out)
    }

    fn download_host(&self, t: &PluginTensor) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.download_f32(t)?,
            t.shape.as_slice(),
            &Device::Cpu,
        )?)
    }

    fn upload_host(&self, t: &Tensor) -> Result<PluginTensor> {
        let data = self.cpu.download(t)?;
        self.upload(&data, t.dims())
    }

    /// One call into the plugin for `op`, its status turned into an error.
    fn call(&self, op: Op, f: impl FnOnce(&CandorDeviceApi) -> CandorStatus) -> Result<()> {
        Ok(self.plugin.call(op.name(), f)?)
    }

    /// Run an op with one f32 output of `out_shape`: on the device when `available` and the
    /// plugin supports `desc`, else on the CPU (counted).
    fn run(
        &self,
        op: Op,
        desc: &CandorOpDesc,
        available: bool,
        out_shape: &[usize],
        device: impl FnOnce(&CandorDeviceApi, &CandorTensor) -> CandorStatus,
        cpu: impl FnOnce(&CpuBackend) -> Result<Tensor>,
    ) -> Result<PluginTensor> {
        if available && self.plugin.supports(desc) {
            let out = self.alloc(out_shape)?;
            let od = out.desc();
            self.call(op, |api| device(api, &od))?;
            return Ok(out);
        }
        self.fallbacks.record(op);
        let y = cpu(&self.cpu)?;
        self.upload_host(&y)
    }

    /// Elementwise ops over two tensors of one shape.
    fn binary(
        &self,
        op: Op,
        code: ffi::CandorOp,
        a: &PluginTensor,
        b: &PluginTensor,
        f: Option<
            unsafe extern "C" fn(
                *const CandorTensor,
                *const CandorTensor,
                *const CandorTensor,
            ) -> CandorStatus,
        >,
        cpu: impl FnOnce(&CpuBackend, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<PluginTensor> {
        if a.shape != b.shape {
            return Err(err(format!(
                "{}: shapes {:?} and {:?} differ",
                op.name(),
                a.shape,
                b.shape
            )));
        }
        let (rows, cols) = a.rows_cols();
        let (ad, bd) = (a.desc(), b.desc());
        self.run(
            op,
            &op_desc(code, &[rows, cols]),
            f.is_some(),
            &a.shape,
            // SAFETY (all op calls below): descriptors and host arrays live across the call.
            |_, od| f.map_or(UNSUPPORTED, |f| unsafe { f(&ad, &bd, od) }),
            |c| cpu(c, &self.download_host(a)?, &self.download_host(b)?),
        )
    }

    /// Ops of one tensor into one of its shape: `device(x, out)` where the plugin has the
    /// function (`available`) and takes the op, else `cpu` over `x` read back.
    fn unary(
        &self,
        op: Op,
        code: ffi::CandorOp,
        x: &PluginTensor,
        available: bool,
        device: impl FnOnce(&CandorTensor, &CandorTensor) -> CandorStatus,
        cpu: impl FnOnce(&CpuBackend, &Tensor) -> Result<Tensor>,
    ) -> Result<PluginTensor> {
        let (rows, cols) = x.rows_cols();
        let xd = x.desc();
        self.run(
            op,
            &op_desc(code, &[rows, cols]),
            available,
            &x.shape,
            |_, od| device(&xd, od),
            |c| cpu(c, &self.download_host(x)?),
        )
    }

    /// Elementwise ops with one float parameter.
    fn unary_param(
        &self,
        op: Op,
        code: ffi::CandorOp,
        x: &PluginTensor,
        p: f32,
        f: Option<
            unsafe extern "C" fn(*const CandorTensor, f32, *const CandorTensor) -> CandorStatus,
        >,
        cpu: impl FnOnce(&CpuBackend, &Tensor) -> Result<Tensor>,
    ) -> Result<PluginTensor> {
        let device = |xd: &CandorTensor, od: &CandorTensor| {
            f.map_or(UNSUPPORTED, |f| unsafe { f(xd, p, od) })
        };
        self.unary(op, code, x, f.is_some(), device, cpu)
    }

    fn has_function(&self, op: ffi::CandorOp) -> bool {
        let a = self.api();
        match op {
            ffi::OP_EMBEDDING => a.embedding.is_some(),
            ffi::OP_RMS_NORM => a.rms_norm.is_some(),
            ffi::OP_ADD_RMS_NORM => a.add_rms_norm.is_some(),
            ffi::OP_LINEAR => a.linear.is_some(),
            ffi::OP_ROPE => a.rope.is_some(),
            ffi::OP_KV_WRITE => a.kv_write.is_some(),
            ffi::OP_PAGED_ATTENTION => a.paged_attention.is_some(),
            ffi::OP_GLU => a.glu.is_some(),
            ffi::OP_ADD => a.add.is_some(),
            ffi::OP_MUL => a.mul.is_some(),
            ffi::OP_SCALE => a.scale.is_some(),
            ffi::OP_SOFTCAP => a.softcap.is_some(),
            ffi::OP_SOFTMAX => a.softmax.is_some(),
            ffi::OP_GATHER_ROWS => a.gather_rows.is_some(),
            ffi::OP_ARGMAX => a.argmax.is_some(),
            ffi::OP_CAST => a.cast.is_some(),
            ffi::OP_HEADS_LINEAR => a.heads_linear.is_some(),
            ffi::OP_LAYER_NORM => a.layer_norm.is_some(),
            ffi::OP_CLAMP => a.clamp.is_some(),
            ffi::OP_XIELU => a.xielu.is_some(),
            ffi::OP_QUANTIZE_ROWS => a.quantize_rows.is_some(),
            ffi::OP_MUL_SIGMOID => a.mul_sigmoid.is_some(),
            _ => false,
        }
    }

    /// The ABI descriptor of a trait-level op (shapes unknown: dims 0), with this backend's
    /// cache dtype for the ops that read or write the cache, as their calls will carry it.
    fn abi_desc(&self, op: &OpDesc) -> CandorOpDesc {
        let mut d = CandorOpDesc::default();
        match op {
            OpDesc::Embedding { weight_dtype } => {
                d.op = ffi::OP_EMBEDDING;
                d.dtype = ffi::dtype_code(*weight_dtype);
            }
            OpDesc::Linear { weight_dtype } => {
                d.op = ffi::OP_LINEAR;
                d.dtype = ffi::dtype_code(*weight_dtype);
            }
            OpDesc::RmsNorm => d.op = ffi::OP_RMS_NORM,
            OpDesc::LayerNorm => d.op = ffi::OP_LAYER_NORM,
            OpDesc::Rope { style } => {
                d.op = ffi::OP_ROPE;
                d.variant = rope_pairing(*style);
            }
            OpDesc::KvWrite => {
                d.op = ffi::OP_KV_WRITE;
                d.dtype = self.kv_dtype;
            }
            OpDesc::PagedAttention {
                head_dim,
                sliding_window,
                softcap,
                sinks,
                alibi,
            } => {
                d.op = ffi::OP_PAGED_ATTENTION;
                d.dtype = self.kv_dtype;
                d.dims[3] = *head_dim as i64;
                d.flags = attn_flags(*sliding_window, *softcap, *sinks, *alibi);
            }
            OpDesc::Glu { act } => {
                d.op = ffi::OP_GLU;
                d.variant = activation_code(*act);
            }
            OpDesc::Add => d.op = ffi::OP_ADD,
            OpDesc::Mul => d.op = ffi::OP_MUL,
            OpDesc::Scale => d.op = ffi::OP_SCALE,
            OpDesc::Softmax => d.op = ffi::OP_SOFTMAX,
            OpDesc::GatherRows => d.op = ffi::OP_GATHER_ROWS,
            OpDesc::Argmax => d.op = ffi::OP_ARGMAX,
            OpDesc::HeadsLinear => d.op = ffi::OP_HEADS_LINEAR,
        }
        d
    }
}

fn rope_pairing(style: RopeStyle) -> u32 {
    match style {
        RopeStyle::Neox => ffi::ROPE_NEOX,
        RopeStyle::Interleaved => ffi::ROPE_INTERLEAVED,
    }
}

/// The ABI's code of an activation.
fn activation_code(act: Activation) -> u32 {
    match act {
        Activation::Silu => ffi::ACT_SILU,
        Activation::GeluTanh => ffi::ACT_GELU_TANH,
        Activation::SwigluOai => ffi::ACT_SWIGLU_OAI,
        Activation::GeluErf => ffi::ACT_GELU_ERF,
        Activation::Relu2 => ffi::ACT_RELU2,
        Activation::Relu => ffi::ACT_RELU,
    }
}

/// The ABI minor that gave an activation its code: a plugin of an older one is not asked.
fn activation_minor(act: Activation) -> u32 {
    match act {
        Activation::Silu | Activation::GeluTanh => 0,
        Activation::SwigluOai => 1,
        Activation::GeluErf | Activation::Relu2 => 3,
        Activation::Relu => 4,
    }
}

fn attn_flags(sliding_window: bool, softcap: bool, sinks: bool, alibi: bool) -> u32 {
    let flag = |on: bool, f: u32| if on { f } else { 0 };
    flag(sliding_window, ffi::ATTN_SLIDING_WINDOW)
        | flag(softcap, ffi::ATTN_SOFTCAP)
        | flag(sinks, ffi::ATTN_SINKS)
        | flag(alibi, ffi::ATTN_ALIBI)
}

impl Backend for PluginBackend {
    type Tensor = PluginTensor;
    type Weight = PluginWeight;
    type KvCache = PluginKvCache;

    fn info(&self) -> DeviceInfo {
        let memory = self.plugin.memory();
        let features = self.plugin.features();
        let vendor = self.plugin.vendor();
        DeviceInfo {
            name: self.plugin.name().to_string(),
            vendor: (!vendor.is_empty()).then(|| vendor.to_string()),
            kind: "plugin".into(),
            memory_total_bytes: memory.map(|m| m.0),
            memory_free_bytes: memory.map(|m| m.1),
            features,
            threads: None,
        }
    }

    fn supports(&self, op: &OpDesc) -> bool {
        // Per-head products, sinks and the clamped SwiGLU came in 1.1: on a plugin of 1.0,
        // latent attention runs expanded and the others on the CPU fallback (the loader drops
        // the 1.1 functions of a 1.0 table; the GLU's code is asked of 1.1 plugins only).
        match op {
            OpDesc::PagedAttention { sinks: true, .. }
                if self.api().paged_attention_sinks.is_none() =>
            {
                return false
            }
            // ALiBi came in 1.5: an older plugin's attention of such models falls back.
            OpDesc::PagedAttention { alibi: true, .. }
                if self.api().paged_attention_alibi.is_none() =>
            {
                return false
            }
            OpDesc::Glu { act } if !self.plugin.speaks_minor(activation_minor(*act)) => {
                return false
            }
            _ => {}
        }
        let d = self.abi_desc(op);
        let dtype_ok = match op {
            OpDesc::Embedding { .. } | OpDesc::Linear { .. } => self.plugin.has_dtype(d.dtype),
            _ => true,
        };
        dtype_ok && self.has_function(d.op) && self.plugin.supports(&d)
    }

    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        self.fallbacks.nonzero()
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<PluginTensor> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(err(format!(
                "upload: {} values for shape {shape:?}",
                data.len()
            )));
        }
        let t = self.alloc(shape)?;
        t.buf.write(0, &f32_bytes(data))?;
        Ok(t)
    }

    fn download(&self, t: &PluginTensor) -> Result<Vec<f32>> {
        self.download_f32(t)
    }

    fn shape(&self, t: &PluginTensor) -> Vec<usize> {
        t.shape.clone()
    }

    fn reshape(&self, t: &PluginTensor, shape: &[usize]) -> Result<PluginTensor> {
        if shape.iter().product::<usize>() != t.elems() || shape.len() > ffi::MAX_RANK {
            return Err(err(format!("cannot reshape {:?} to {shape:?}", t.shape)));
        }
        Ok(PluginTensor {
            buf: t.buf.clone(),
            shape: shape.to_vec(),
        })
    }

    fn load_weight(&self, w: HostWeight) -> Result<PluginWeight> {
        let shape = w.shape();
        let (dtype, bytes) = weight_bytes(&w, self.plugin.keeps_mxfp4())?;
        let device = if self.plugin.has_dtype(dtype) && !shape.is_empty() && shape.len() <= 4 {
            let buf = DeviceBuffer::alloc(&self.plugin, bytes.len() as u64)?;
            buf.write(0, &bytes)?;
            Some(DeviceWeight { buf })
        } else {
            None
        };
        let name = ffi::dtype_name(dtype).unwrap_or_else(|| format!("dtype {dtype}"));
        if let Ok(mut p) = self.placement.lock() {
            let entry = p.entry(name).or_default();
            if device.is_some() {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        Ok(PluginWeight {
            device,
            host: CpuWeight::from_host(w)?,
            dtype,
            shape,
        })
    }

    fn weight_shape(&self, w: &PluginWeight) -> Vec<usize> {
        w.shape.clone()
    }

    fn alloc_kv_cache(&self, spec: &KvCacheSpec) -> Result<PluginKvCache> {
        let bytes = spec
            .num_blocks
            .checked_mul(spec.block_size)
            .and_then(|s| {
                s.checked_mul(spec.num_kv_heads * spec.head_dim * kv_element_bytes(self.kv_dtype))
            })
            .ok_or_else(|| err("KV cache size overflows"))? as u64;
        let mut layers = Vec::with_capacity(spec.num_layers);
        for _ in 0..spec.num_layers {
            let (k, v) = (
                DeviceBuffer::alloc(&self.plugin, bytes)?,
                DeviceBuffer::alloc(&self.plugin, bytes)?,
            );
            // Zeroed like the CPU cache, so a fallback that downloads a layer reads defined data.
            k.zero()?;
            v.zero()?;
            layers.push((k, v));
        }
        Ok(PluginKvCache {
            spec: spec.clone(),
            dtype: self.kv_dtype,
            layers,
        })
    }

    fn kv_bytes_per_value(&self) -> f64 {
        kv_element_bytes(self.kv_dtype) as f64
    }

    fn copy_kv_blocks(&self, cache: &mut PluginKvCache, copies: &[(u32, u32)]) -> Result<()> {
        cache.copy_blocks(copies)
    }

    fn read_kv_rows(&self, cache: &PluginKvCache, slots: &[u32]) -> Result<KvRows> {
        cache.read_rows(slots)
    }

    fn write_kv_rows(&self, cache: &mut PluginKvCache, slots: &[u32], rows: &KvRows) -> Result<()> {
        cache.write_rows(slots, rows)
    }

    /// The plugin's `clamp` (1.5), else on the CPU fallback.
    fn clamp(&self, x: &PluginTensor, limit: f32) -> Result<PluginTensor> {
        self.unary_param(
            Op::Clamp,
            ffi::OP_CLAMP,
            x,
            limit,
            self.api().clamp,
            |c, x| c.clamp(x, limit),
        )
    }

    /// The plugin's `quantize_rows` (1.5), else on the CPU fallback.
    fn quantize_rows(&self, x: &PluginTensor, bits: u32) -> Result<PluginTensor> {
        let f = self.api().quantize_rows;
        self.unary(
            Op::QuantizeRows,
            ffi::OP_QUANTIZE_ROWS,
            x,
            f.is_some(),
            |xd, od| f.map_or(UNSUPPORTED, |f| unsafe { f(xd, bits, od) }),
            |c, x| c.quantize_rows(x, bits),
        )
    }

    /// The plugin's `mul_sigmoid` (1.5), else on the CPU fallback; `gate` of `x`'s element
    /// count, the output in `x`'s shape.
    fn mul_sigmoid(&self, x: &PluginTensor, gate: &PluginTensor) -> Result<PluginTensor> {
        if gate.elems() != x.elems() {
            return Err(err(format!(
                "mul_sigmoid: gate {:?} for x {:?}",
                gate.shape, x.shape
            )));
        }
        let (rows, cols) = x.rows_cols();
        let (xd, gd, f) = (x.desc(), gate.desc(), self.api().mul_sigmoid);
        self.run(
            Op::MulSigmoid,
            &op_desc(ffi::OP_MUL_SIGMOID, &[rows, cols]),
            f.is_some(),
            &x.shape,
            |_, od| f.map_or(UNSUPPORTED, |f| unsafe { f(&xd, &gd, od) }),
            |c| c.mul_sigmoid(&self.download_host(x)?, &self.download_host(gate)?),
        )
    }

    /// The plugin's `xielu` (1.5), else on the CPU fallback.
    fn xielu(
        &self,
        x: &PluginTensor,
        p: &candor_models::xielu::XieluParams,
    ) -> Result<PluginTensor> {
        let f = self.api().xielu;
        let (ap, an, beta, eps) = (p.alpha_p, p.alpha_n, p.beta, p.eps);
        self.unary(
            Op::Xielu,
            ffi::OP_XIELU,
            x,
            f.is_some(),
            |xd, od| f.map_or(UNSUPPORTED, |f| unsafe { f(xd, ap, an, beta, eps, od) }),
            |c, x| c.xielu(x, p),
        )
    }

    /// No ABI op: the taps come back to the host (counted as a fallback).
    fn short_conv(
        &self,
        cache: &PluginKvCache,
        taps: &ConvTaps<'_>,
        w: &ShortConvWeights,
    ) -> Result<PluginTensor> {
        self.fallbacks.record(Op::ShortConv);
        short_conv_via_rows(self, cache, taps, w)
    }

    fn embedding(&self, table: &PluginWeight, ids: &[u32]) -> Result<PluginTensor> {
        let [vocab, hidden] = table.shape[..] else {
            return Err(err(format!("embedding table of shape {:?}", table.shape)));
        };
        let mut desc = op_desc(ffi::OP_EMBEDDING, &[ids.len(), vocab, hidden]);
        desc.dtype = table.dtype;
        let td = table.desc();
        let f = self.api().embedding;
        self.run(
            Op::Embedding,
            &desc,
            f.is_some() && td.is_some(),
            &[ids.len(), hidden],
            |_, od| match (f, &td) {
                (Some(f), Some(td)) => unsafe { f(td, ids.as_ptr(), ids.len() as u64, od) },
                _ => UNSUPPORTED,
            },
            |c| c.embedding(&table.host, ids),
        )
    }

    fn rms_norm(&self, x: &PluginTensor, w: &PluginWeight, eps: f32) -> Result<PluginTensor> {
        let (rows, cols) = x.rows_cols();
        let (xd, wd) = (x.desc(), w.desc());
        let f = self.api().rms_norm;
        self.run(
            Op::RmsNorm,
            &op_desc(ffi::OP_RMS_NORM, &[rows, cols]),
            f.is_some() && wd.is_some(),
            &x.shape,
            |_, od| match (f, &wd) {
                (Some(f), Some(wd)) => unsafe { f(&xd, wd, eps, od) },
                _ => UNSUPPORTED,
            },
            |c| c.rms_norm(&self.download_host(x)?, &w.host, eps),
        )
    }

    fn layer_norm(
        &self,
        x: &PluginTensor,
        w: &PluginWeight,
        bias: Option<&PluginWeight>,
        eps: f32,
    ) -> Result<PluginTensor> {
        let (rows, cols) = x.rows_cols();
        let (xd, wd) = (x.desc(), w.desc());
        // A bias left on the host (none is: rank-1 weights are always uploaded) sends the op to
        // the fallback rather than lose the bias.
        let bd = bias.map(PluginWeight::desc);
        let bias_ok = bd.as_ref().is_none_or(Option::is_some);
        let f = self.api().layer_norm;
        self.run(
            Op::LayerNorm,
            &op_desc(ffi::OP_LAYER_NORM, &[rows, cols]),
            f.is_some() && wd.is_some() && bias_ok,
            &x.shape,
            |_, od| match (f, &wd) {
                (Some(f), Some(wd)) => {
                    let b = bd.as_ref().and_then(Option::as_ref);
                    let b = b.map_or(std::ptr::null(), |b| b as *const CandorTensor);
                    unsafe { f(&xd, wd, b, eps, od) }
                }
                _ => UNSUPPORTED,
            },
            |c| {
                let x = self.download_host(x)?;
                c.layer_norm(&x, &w.host, bias.map(|b| &b.host), eps)
            },
        )
    }

    fn add_rms_norm(
        &self,
        x: &PluginTensor,
        residual: &PluginTensor,
        w: &PluginWeight,
        eps: f32,
    ) -> Result<(PluginTensor, PluginTensor)> {
        if x.shape != residual.shape {
            return Err(err(format!(
                "add_rms_norm: shapes {:?} and {:?} differ",
                x.shape, residual.shape
            )));
        }
        let (rows, cols) = x.rows_cols();
        let desc = op_desc(ffi::OP_ADD_RMS_NORM, &[rows, cols]);
        let wd = w.desc();
        if let (Some(f), Some(wd)) = (self.api().add_rms_norm, wd) {
            if self.plugin.supports(&desc) {
                let (sum, norm) = (self.alloc(&x.shape)?, self.alloc(&x.shape)?);
                let (xd, rd, sd, nd) = (x.desc(), residual.desc(), sum.desc(), norm.desc());
                self.call(Op::AddRmsNorm, |_| unsafe {
                    f(&xd, &rd, &wd, eps, &sd, &nd)
                })?;
                return Ok((sum, norm));
            }
        }
        self.fallbacks.record(Op::AddRmsNorm);
        let (sum, norm) = self.cpu.add_rms_norm(
            &self.download_host(x)?,
            &self.download_host(residual)?,
            &w.host,
            eps,
        )?;
        Ok((self.upload_host(&sum)?, self.upload_host(&norm)?))
    }

    fn linear(
        &self,
        x: &PluginTensor,
        w: &PluginWeight,
        bias: Option<&PluginWeight>,
    ) -> Result<PluginTensor> {
        let [n, k] = w.shape[..] else {
            return Err(err(format!("linear: weight of shape {:?}", w.shape)));
        };
        if x.shape.last() != Some(&k) {
            return Err(err(format!(
                "linear: input {:?} against weight [{n}, {k}]",
                x.shape
            )));
        }
        let m = x.elems() / k.max(1);
        let mut desc = op_desc(ffi::OP_LINEAR, &[m, n, k]);
        desc.dtype = w.dtype;
        desc.flags = if bias.is_some() { ffi::LINEAR_BIAS } else { 0 };
        let (xd, wd) = (x.desc(), w.desc());
        let bd = bias.map(|b| b.desc());
        let bias_ok = !matches!(bd, Some(None));
        let f = self.api().linear;
        let mut out_shape = x.shape.clone();
        if let Some(last) = out_shape.last_mut() {
            *last = n;
        }
        self.run(
            Op::Linear,
            &desc,
            f.is_some() && wd.is_some() && bias_ok,
            &out_shape,
            |_, od| match (f, &wd) {
                (Some(f), Some(wd)) => {
                    let bp = match &bd {
                        Some(Some(b)) => b as *const CandorTensor,
                        _ => std::ptr::null(),
                    };
                    unsafe { f(&xd, wd, bp, od) }
                }
                _ => UNSUPPORTED,
            },
            |c| c.linear(&self.download_host(x)?, &w.host, bias.map(|b| &b.host)),
        )
    }

    fn rope(&self, x: &PluginTensor, positions: &[u32], rope: &RopeSpec) -> Result<PluginTensor> {
        let [t, h, d] = x.shape[..] else {
            return Err(err(format!(
                "rope expects [tokens, heads, head_dim], got {:?}",
                x.shape
            )));
        };
        if t != positions.len() || rope.inv_freq.len() * 2 != d {
            return Err(err(format!(
                "rope: {t} rows, {} positions, head_dim {d}, {} frequencies",
                positions.len(),
                rope.inv_freq.len()
            )));
        }
        let mut desc = op_desc(ffi::OP_ROPE, &[t, h, d]);
        desc.variant = rope_pairing(rope.style);
        let xd = x.desc();
        let f = self.api().rope;
        let n_freq = to_u32(rope.inv_freq.len(), "rope frequencies")?;
        self.run(
            Op::Rope,
            &desc,
            f.is_some(),
            &x.shape,
            |_, od| {
                f.map_or(UNSUPPORTED, |f| unsafe {
                    f(
                        &xd,
                        positions.as_ptr(),
                        rope.inv_freq.as_ptr(),
                        n_freq,
                        desc.variant,
                        rope.mscale,
                        od,
                    )
                })
            },
            |c| c.rope(&self.download_host(x)?, positions, rope),
        )
    }

    fn kv_write(
        &self,
        cache: &mut PluginKvCache,
        layer: usize,
        k: &PluginTensor,
        v: &PluginTensor,
        slots: &[u32],
    ) -> Result<()> {
        let [num_slots, kv_heads, head_dim] = cache.layer_shape();
        let row = kv_heads * head_dim;
        if k.elems() != slots.len() * row || v.elems() != k.elems() {
            return Err(err(format!(
                "kv_write: {} slots for {} values",
                slots.len(),
                k.elems()
            )));
        }
        let (kc, vc) = cache.layer(layer)?;
        let mut desc = op_desc(
            ffi::OP_KV_WRITE,
            &[slots.len(), kv_heads, head_dim, num_slots],
        );
        desc.dtype = cache.dtype;
        if let Some(f) = self.api().kv_write {
            if self.plugin.supports(&desc) {
                let shape = cache.layer_shape();
                let (kcd, vcd) = (
                    kc.tensor(cache.dtype, &shape),
                    vc.tensor(cache.dtype, &shape),
                );
                let (kd, vd) = (k.desc(), v.desc());
                return self.call(Op::KvWrite, |_| unsafe {
                    f(&kcd, &vcd, &kd, &vd, slots.as_ptr(), slots.len() as u64)
                });
            }
        }
        // Fallback: the scatter done on the host, one row upload per slot (no cache download).
        self.fallbacks.record(Op::KvWrite);
        let (kh, vh) = (self.download_f32(k)?, self.download_f32(v)?);
        for (i, &slot) in slots.iter().enumerate() {
            let slot = slot as usize;
            if slot >= num_slots {
                return Err(err(format!(
                    "kv_write: slot {slot} past the cache ({num_slots})"
                )));
            }
            let at = (slot * row * kv_element_bytes(cache.dtype)) as u64;
            kc.write(at, &kv_bytes(&kh[i * row..(i + 1) * row], cache.dtype))?;
            vc.write(at, &kv_bytes(&vh[i * row..(i + 1) * row], cache.dtype))?;
        }
        Ok(())
    }

    fn paged_attention(
        &self,
        q: &PluginTensor,
        cache: &PluginKvCache,
        layer: usize,
        seqs: &[SeqAttention],
        block_size: usize,
        params: &AttentionParams,
    ) -> Result<PluginTensor> {
        let t = q.shape.first().copied().unwrap_or(0);
        let row = params.num_heads * params.head_dim;
        if q.elems() != t * row
            || params.num_kv_heads != cache.spec.num_kv_heads
            || params.head_dim != cache.spec.head_dim
            || block_size != cache.spec.block_size
        {
            return Err(err(format!(
                "attention: q {:?} does not match the params {params:?} or the cache",
                q.shape
            )));
        }
        let (kc, vc) = cache.layer(layer)?;
        let mut desc = op_desc(
            ffi::OP_PAGED_ATTENTION,
            &[t, params.num_heads, params.num_kv_heads, params.head_dim],
        );
        desc.flags = attn_flags(
            params.sliding_window.is_some(),
            params.softcap.is_some(),
            params.sinks.is_some(),
            params.alibi.is_some(),
        );
        desc.dtype = cache.dtype;
        if let Some(why) = params.per_head_mismatch() {
            return Err(err(why));
        }
        // Without sinks the 1.0 function; with them the 1.1 one, given a sink per head; with
        // ALiBi slopes the 1.5 one, given the slopes and the sinks if any.
        let call = match (&params.sinks, &params.alibi) {
            (sinks, Some(a)) => {
                let f = self.api().paged_attention_alibi;
                f.map(|f| AttentionFn::Alibi(f, sinks.clone(), a.clone()))
            }
            (None, None) => self.api().paged_attention.map(AttentionFn::Plain),
            (Some(s), None) => {
                let f = self.api().paged_attention_sinks;
                f.map(|f| AttentionFn::Sinks(f, s.clone()))
            }
        };
        if let Some(f) = call {
            if self.plugin.supports(&desc) {
                let abi_seqs = seqs
                    .iter()
                    .map(|s| {
                        Ok(ffi::CandorSeq {
                            q_start: to_u32(s.q_start, "query row")?,
                            q_len: to_u32(s.q_len, "query count")?,
                            start_pos: to_u32(s.start_pos, "position")?,
                            num_blocks: to_u32(s.block_table.len(), "block count")?,
                            block_table: s.block_table.as_ptr(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let p = ffi::CandorAttention {
                    num_heads: to_u32(params.num_heads, "heads")?,
                    num_kv_heads: to_u32(params.num_kv_heads, "KV heads")?,
                    head_dim: to_u32(params.head_dim, "head_dim")?,
                    block_size: to_u32(block_size, "block size")?,
                    scale: params.scale,
                    softcap: params.softcap.unwrap_or(0.0),
                    sliding_window: to_u32(params.sliding_window.unwrap_or(0), "window")?,
                    reserved: 0,
                };
                let shape = cache.layer_shape();
                let (kcd, vcd) = (
                    kc.tensor(cache.dtype, &shape),
                    vc.tensor(cache.dtype, &shape),
                );
                let out = self.alloc(&[t, row])?;
                let (qd, od) = (q.desc(), out.desc());
                let (seqs_ptr, n_seqs) = (abi_seqs.as_ptr(), abi_seqs.len() as u64);
                self.call(Op::PagedAttention, |_| unsafe {
                    match &f {
                        AttentionFn::Plain(f) => f(&qd, &kcd, &vcd, seqs_ptr, n_seqs, &p, &od),
                        AttentionFn::Sinks(f, sinks) => {
                            f(&qd, &kcd, &vcd, seqs_ptr, n_seqs, &p, sinks.as_ptr(), &od)
                        }
                        AttentionFn::Alibi(f, sinks, slopes) => {
                            let sinks = sinks.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
                            let slopes = slopes.as_ptr();
                            f(&qd, &kcd, &vcd, seqs_ptr, n_seqs, &p, sinks, slopes, &od)
                        }
                    }
                })?;
                return Ok(out);
            }
        }
        // Fallback: this layer's cache comes to the host for the CPU kernel.
        self.fallbacks.record(Op::PagedAttention);
        // As f32 values: an f16 cache widens exactly, so the CPU attends over the same values.
        let read_layer = |b: &DeviceBuffer| -> Result<Vec<f32>> {
            let mut bytes = vec![0u8; b.bytes() as usize];
            b.read(0, &mut bytes)?;
            Ok(kv_values(&bytes, cache.dtype))
        };
        let host_cache = CpuKvCache::from_layer(&cache.spec, read_layer(kc)?, read_layer(vc)?)?;
        let y = self.cpu.paged_attention(
            &self.download_host(q)?,
            &host_cache,
            0,
            seqs,
            block_size,
            params,
        )?;
        self.upload_host(&y)
    }

    fn glu(&self, gate: &PluginTensor, up: &PluginTensor, act: Activation) -> Result<PluginTensor> {
        if gate.shape != up.shape {
            return Err(err(format!(
                "glu: shapes {:?} and {:?} differ",
                gate.shape, up.shape
            )));
        }
        let (rows, cols) = gate.rows_cols();
        let mut desc = op_desc(ffi::OP_GLU, &[rows, cols]);
        desc.variant = activation_code(act);
        let (gd, ud) = (gate.desc(), up.desc());
        let f = self.api().glu;
        self.run(
            Op::Glu,
            &desc,
            f.is_some() && self.plugin.speaks_minor(activation_minor(act)),
            &gate.shape,
            |_, od| f.map_or(UNSUPPORTED, |f| unsafe { f(&gd, &ud, desc.variant, od) }),
            |c| c.glu(&self.download_host(gate)?, &self.download_host(up)?, act),
        )
    }

    fn heads_linear(&self, x: &PluginTensor, w: &PluginWeight) -> Result<PluginTensor> {
        let (t, h, n, k) = match (&x.shape[..], &w.shape[..]) {
            (&[t, h, k], &[wh, n, wk]) if (wh, wk) == (h, k) => (t, h, n, k),
            _ => {
                return Err(err(format!(
                    "heads_linear: x {:?} by w {:?}",
                    x.shape, w.shape
                )))
            }
        };
        let mut desc = op_desc(ffi::OP_HEADS_LINEAR, &[t, h, n, k]);
        desc.dtype = w.dtype;
        let (xd, wd) = (x.desc(), w.desc());
        let f = self.api().heads_linear;
        self.run(
            Op::HeadsLinear,
            &desc,
            f.is_some() && wd.is_some(),
            &[t, h, n],
            |_, od| match (f, &wd) {
                (Some(f), Some(wd)) => unsafe { f(&xd, wd, od) },
                _ => UNSUPPORTED,
            },
            |c| c.heads_linear(&self.download_host(x)?, &w.host),
        )
    }

    fn add(&self, a: &PluginTensor, b: &PluginTensor) -> Result<PluginTensor> {
        self.binary(Op::Add, ffi::OP_ADD, a, b, self.api().add, |c, a, b| {
            c.add(a, b)
        })
    }

    fn mul(&self, a: &PluginTensor, b: &PluginTensor) -> Result<PluginTensor> {
        self.binary(Op::Mul, ffi::OP_MUL, a, b, self.api().mul, |c, a, b| {
            c.mul(a, b)
        })
    }

    fn scale(&self, x: &PluginTensor, s: f32) -> Result<PluginTensor> {
        self.unary_param(Op::Scale, ffi::OP_SCALE, x, s, self.api().scale, |c, x| {
            c.scale(x, s)
        })
    }

    fn softcap(&self, x: &PluginTensor, cap: f32) -> Result<PluginTensor> {
        self.unary_param(
            Op::Softcap,
            ffi::OP_SOFTCAP,
            x,
            cap,
            self.api().softcap,
            |c, x| c.softcap(x, cap),
        )
    }

    fn softmax(&self, x: &PluginTensor) -> Result<PluginTensor> {
        let (rows, cols) = x.rows_cols();
        let xd = x.desc();
        let f = self.api().softmax;
        self.run(
            Op::Softmax,
            &op_desc(ffi::OP_SOFTMAX, &[rows, cols]),
            f.is_some(),
            &x.shape,
            |_, od| f.map_or(UNSUPPORTED, |f| unsafe { f(&xd, od) }),
            |c| c.softmax(&self.download_host(x)?),
        )
    }

    fn gather_rows(&self, x: &PluginTensor, rows: &[u32]) -> Result<PluginTensor> {
        let [n, cols] = x.shape[..] else {
            return Err(err(format!("gather_rows: x of shape {:?}", x.shape)));
        };
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= n) {
            return Err(err(format!("gather_rows: row {r} of {n}")));
        }
        let xd = x.desc();
        let f = self.api().gather_rows;
        self.run(
            Op::GatherRows,
            &op_desc(ffi::OP_GATHER_ROWS, &[n, cols]),
            f.is_some(),
            &[rows.len(), cols],
            |_, od| {
                f.map_or(UNSUPPORTED, |f| unsafe {
                    f(&xd, rows.as_ptr(), rows.len() as u64, od)
                })
            },
            |c| c.gather_rows(&self.download_host(x)?, rows),
        )
    }

    fn synchronize(&self) -> Result<()> {
        // Required by the loader (loader.rs), so never absent on a loaded plugin.
        match self.api().synchronize {
            Some(f) => Ok(self.plugin.call("synchronize", |_| unsafe { f() })?),
            None => Ok(()),
        }
    }

    fn argmax(&self, x: &PluginTensor) -> Result<Vec<u32>> {
        let [rows, cols] = x.shape[..] else {
            return Err(err(format!("argmax: x of shape {:?}", x.shape)));
        };
        let desc = op_desc(ffi::OP_ARGMAX, &[rows, cols]);
        if let Some(f) = self.api().argmax {
            if self.plugin.supports(&desc) {
                let mut out = vec![0u32; rows];
                let xd = x.desc();
                self.call(Op::Argmax, |_| unsafe { f(&xd, out.as_mut_ptr()) })?;
                return Ok(out);
            }
        }
        self.fallbacks.record(Op::Argmax);
        self.cpu.argmax(&self.download_host(x)?)
    }
}
