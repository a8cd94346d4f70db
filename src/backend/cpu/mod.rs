//! The CPU backend: candle-core tensors as storage, candor-kernels for the work (quantized
//! products with 8-bit activations, paged attention, RoPE, norms, activations), candle for dense
//! matmuls and the block types the kernels do not read. Threads come from rayon, which parks
//! when idle.
mod kv;
mod many;
mod values;
mod weight;

use kv::LayerView;
pub use kv::{CpuKvCache, KvDtype};
pub use weight::CpuWeight;

use candle_core::{DType, Device, Module, Tensor};
use candor_kernels::activation::{self as act, Act, Binary};
use candor_kernels::attention::{paged_attention, AttnShape, SeqQueries};
use candor_kernels::half_matmul::{self, HalfType};
use candor_kernels::norm;
use candor_kernels::quant::{self, QuantType};
use candor_kernels::rope::{apply_rope, Pairing};
use candor_models::backend::{
    glu_then_linear, Activation, AttentionParams, Backend, ConvTaps, DeviceInfo, KvCacheSpec,
    OpDesc, RopeSpec, RopeStyle, ShortConvWeights,
};
use candor_models::batch::SeqAttention;
use candor_models::error::{ModelError, Result};
use candor_models::kv_rows::KvRows;
use candor_models::projection::LinearJob;
use candor_models::short_conv::host_short_conv;
use candor_models::weights::{HostWeight, MappedBlocks};
use rayon::prelude::*;
use values::{new_tensor, with_values};

#[derive(Debug, Clone, Default)]
pub struct CpuBackend {
    threads: usize,
    kv_dtype: KvDtype,
    /// Join q/k/v and gate/up weights held in memory of their own (`concat_weights`).
    join_projections: bool,
}

impl CpuBackend {
    /// `threads`: the worker count the process was configured with (see `configure_threads`).
    /// The KV cache is f32 (the reference); see [`CpuBackend::with_kv_dtype`].
    pub fn new(threads: usize) -> Self {
        CpuBackend {
            threads,
            kv_dtype: KvDtype::F32,
            join_projections: true,
        }
    }

    /// Whether models loaded on this backend join their q/k/v and gate/up weights where the
    /// layout allows (on by default; tests and benchmarks compare both).
    pub fn with_joined_projections(self, join_projections: bool) -> Self {
        CpuBackend {
            join_projections,
            ..self
        }
    }

    /// The element type of the KV caches this backend allocates.
    pub fn with_kv_dtype(self, kv_dtype: KvDtype) -> Self {
        CpuBackend { kv_dtype, ..self }
    }
}

/// Fix the number of compute threads for this process, before any tensor work starts.
/// candle's quantized matmul pool and rayon both read `RAYON_NUM_THREADS`.
pub fn configure_threads(threads: Option<usize>) -> usize {
    let n = threads.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    // Fails only when a pool exists already (tests in one process); the first one wins.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Backend(e.to_string())
}

/// Rows of a mapped block table, dequantized one by one (no f32 copy of the table).
fn mapped_embedding(blocks: &MappedBlocks, ty: QuantType, ids: &[u32]) -> Result<Tensor> {
    let [rows, hidden] = blocks.shape[..] else {
        return Err(err(format!("embedding table of shape {:?}", blocks.shape)));
    };
    let row_bytes = hidden / ty.block_elems() * ty.block_bytes();
    let data = blocks.bytes();
    let mut out = vec![0f32; ids.len() * hidden];
    for (&id, o) in ids.iter().zip(out.chunks_exact_mut(hidden)) {
        let id = id as usize;
        if id >= rows {
            return Err(err(format!(
                "token id {id} outside the {rows}-row embedding table"
            )));
        }
        quant::dequantize(ty, &data[id * row_bytes..(id + 1) * row_bytes], o);
    }
    Ok(Tensor::from_vec(out, (ids.len(), hidden), &Device::Cpu)?)
}

/// x[.., K] · Wᵀ through candor-kernels' quantized product (W: [N, K] GGML blocks).
fn quant_linear(x: &Tensor, data: &[u8], shape: &[usize], ty: QuantType) -> Result<Tensor> {
    quant_product(x.dims(), shape, |n, k, m, y| {
        with_values(x, |xs| quant::matmul(ty, data, n, k, xs, m, y))
    })
}

/// `act(gate) · up` times Wᵀ in one product (candor-kernels' `glu_matmul`: on AMX tiles the
/// GLU goes straight into them; elsewhere it gives the bits of `glu` then `quant_linear`).
fn quant_glu_linear(
    gate: &Tensor,
    up: &Tensor,
    act: Act,
    data: &[u8],
    shape: &[usize],
    ty: QuantType,
) -> Result<Tensor> {
    let dims = same_dims(gate, up, "glu")?;
    quant_product(&dims, shape, |n, k, m, y| {
        with_values(gate, |g| {
            with_values(up, |u| quant::glu_matmul(ty, data, n, k, g, u, act, m, y))
        })?
    })
}

/// The `[.., N]` result of a quantized product over inputs of `dims` (last K) and a weight of
/// `shape` ([N, K]); `run(n, k, m, y)` fills y (m × n).
fn quant_product(
    dims: &[usize],
    shape: &[usize],
    run: impl FnOnce(
        usize,
        usize,
        usize,
        &mut [f32],
    ) -> Result<std::result::Result<(), quant::QuantError>>,
) -> Result<Tensor> {
    let ProductDims { n, k, m, out } = ProductDims::new(dims, shape)?;
    let mut y = vec![0f32; m * n];
    run(n, k, m, &mut y)?.map_err(err)?;
    Ok(Tensor::from_vec(y, out, &Device::Cpu)?)
}

/// The sizes of a product of inputs of some dims (last K) with a weight of shape [N, K]: M rows
/// in all, and the output's dims (the input's, last N).
struct ProductDims {
    n: usize,
    k: usize,
    m: usize,
    out: Vec<usize>,
}

impl ProductDims {
    fn new(dims: &[usize], shape: &[usize]) -> Result<Self> {
        let [n, k] = shape[..] else {
            return Err(err(format!(
                "linear: weight of shape {shape:?} is not a matrix"
            )));
        };
        if dims.last() != Some(&k) {
            return Err(err(format!(
                "linear: input {dims:?} against weight [{n}, {k}]"
            )));
        }
        let m = dims.iter().product::<usize>() / k.max(1);
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = n;
        }
        Ok(ProductDims { n, k, m, out })
    }
}

/// `y` plus `bias` (a dense vector) on every row, where there is one.
fn with_bias(y: Tensor, bias: Option<&CpuWeight>) -> Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => {
            let b = b.dense().ok_or_else(|| err("bias must be dense"))?;
            Ok(y.broadcast_add(b)?)
        }
    }
}

/// From this many activation rows a product with an f16/bf16 weight widens it to f32 a panel at
/// a time for candle's blocked GEMM, which reuses each weight value across rows better than the
/// 4x4 tiles of `half_matmul`. Measured on a bf16 0.5B model, 2 Xeon threads (AVX-512), against
/// the whole model widened to f32 at load: tiles 110 vs 83 tok/s at 64 prompt rows, 97 vs 96 at
/// 128, 80 vs 92 at 512 (panels: 90 at 512); decode 2.9x (half the bytes per token).
const HALF_GEMM_MIN_ROWS: usize = 256;
/// f32 values of one widened panel (16 MiB): the whole matrix for most layers, bounded memory
/// for a large vocabulary head.
const HALF_PANEL_VALUES: usize = 4 << 20;

/// `x @ wᵀ` for an f16/bf16 matrix `w` (`[n, k]`) kept in 16 bits.
fn half_linear(x: &Tensor, bits: &[u16], [n, k]: [usize; 2], ty: HalfType) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.last() != Some(&k) || k == 0 {
        return Err(err(format!(
            "linear: input {dims:?} against weight [{n}, {k}]"
        )));
    }
    let m = x.elem_count() / k;
    let mut out_dims = dims;
    if let Some(last) = out_dims.last_mut() {
        *last = n;
    }
    // The kernel's rows keep their bits in any company; candle's GEMM's do not.
    let gemm = m >= HALF_GEMM_MIN_ROWS && !candor_kernels::batch_invariant();
    if gemm && !half_matmul::runs_on_amx(ty, m, k) {
        let rows_per_panel = (HALF_PANEL_VALUES / k).max(1);
        let y = half_gemm_panels(&x.reshape((m, k))?, bits, [n, k], ty, rows_per_panel)?;
        return Ok(y.reshape(out_dims)?);
    }
    let mut y = vec![0f32; m * n];
    with_values(x, |xs| half_matmul::matmul(ty, bits, n, k, xs, m, &mut y))?.map_err(err)?;
    Ok(Tensor::from_vec(y, out_dims, &Device::Cpu)?)
}

/// `f(x)` for candle's products, which round a row otherwise among others than alone (the
/// one-row case is another loop): in batch-invariant mode (`candor_kernels::batch_invariant`)
/// each index of x's first dimension (a token) goes through `f` alone and the results are
/// joined again, so a token's bits never depend on the batch. A pass over the weights per
/// token: the reference path's prefill slows, which the mode accepts.
fn tokens_alone(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let tokens = x.dims().first().copied().unwrap_or(0);
    if tokens <= 1 || !candor_kernels::batch_invariant() {
        return f(x);
    }
    let parts = (0..tokens)
        .map(|t| f(&x.narrow(0, t, 1)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// `x2 @ wᵀ` (`[m, n]`) through candle's GEMM on `rows_per_panel` weight rows at a time,
/// widened to f32.
fn half_gemm_panels(
    x2: &Tensor,
    bits: &[u16],
    [n, k]: [usize; 2],
    ty: HalfType,
    rows_per_panel: usize,
) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(n.div_ceil(rows_per_panel));
    for first in (0..n).step_by(rows_per_panel) {
        let rows = rows_per_panel.min(n - first);
        let mut panel = vec![0f32; rows * k];
        panel
            .par_chunks_mut(k)
            .zip(bits[first * k..(first + rows) * k].par_chunks(k))
            .for_each(|(dst, src)| ty.widen(src, dst));
        let panel = Tensor::from_vec(panel, (rows, k), &Device::Cpu)?;
        parts.push(x2.matmul(&panel.t()?)?);
    }
    // Most matrices fit one panel: its product is the result, with no copy through cat.
    Ok(match parts.len() {
        1 => parts.remove(0),
        _ => Tensor::cat(&parts, 1)?,
    })
}

/// Rows `ids` of an f16/bf16 table, widened to f32.
fn half_embedding(
    bits: &[u16],
    ty: HalfType,
    [rows, cols]: [usize; 2],
    ids: &[u32],
) -> Result<Tensor> {
    let mut out = vec![0f32; ids.len() * cols];
    for (dst, &id) in out.chunks_exact_mut(cols.max(1)).zip(ids) {
        let id = id as usize;
        if id >= rows {
            return Err(err(format!(
                "token id {id} outside the {rows}-row embedding table"
            )));
        }
        ty.widen(&bits[id * cols..(id + 1) * cols], dst);
    }
    Ok(Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)?)
}

/// The dense f32 tensor of a norm weight.
fn dense_weight<'a>(w: &'a CpuWeight, op: &str) -> Result<&'a Tensor> {
    w.dense()
        .ok_or_else(|| err(format!("{op}: the weight must be dense")))
}

/// Norm weights span the last dimension.
fn check_rows(dims: &[usize], cols: usize, op: &str) -> Result<()> {
    if dims.last() != Some(&cols) {
        return Err(err(format!(
            "{op}: input {dims:?} against a weight of {cols}"
        )));
    }
    Ok(())
}

/// `Backend::heads_linear` with candle's batched product: `[heads, tokens, in]` times
/// `[heads, in, out]`.
fn heads_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let fits = match (x.dims(), w.dims()) {
        (&[_, h, k], &[wh, _, wk]) => (wh, wk) == (h, k),
        _ => false,
    };
    if !fits {
        return Err(err(format!(
            "heads_linear: x {:?} by w {:?}",
            x.dims(),
            w.dims()
        )));
    }
    let w = w.transpose(1, 2)?.to_dtype(x.dtype())?;
    tokens_alone(x, |x| {
        let y = x.transpose(0, 1)?.contiguous()?.matmul(&w)?;
        Ok(y.transpose(0, 1)?.contiguous()?)
    })
}

/// The kernels' name for a GLU activation.
fn kernel_act(act: Activation) -> Act {
    match act {
        Activation::Silu => Act::Silu,
        Activation::GeluTanh => Act::GeluTanh,
        Activation::GeluErf => Act::GeluErf,
        Activation::Relu2 => Act::Relu2,
        Activation::Relu => Act::Relu,
        Activation::SwigluOai => Act::SwigluOai,
    }
}

fn same_dims(a: &Tensor, b: &Tensor, op: &str) -> Result<Vec<usize>> {
    if a.dims() != b.dims() {
        return Err(err(format!("{op}: {:?} against {:?}", a.dims(), b.dims())));
    }
    Ok(a.dims().to_vec())
}

fn ids_tensor(ids: &[u32]) -> Result<Tensor> {
    Ok(Tensor::from_slice(ids, ids.len(), &Device::Cpu)?)
}

/// The device feature that says the AMX prefill kernels run (reports key their bf16 roof on it).
pub const AMX_FEATURE: &str = "amx-bf16";
/// The device feature that says the kernels run batch-invariant (`serve --batch-invariant`).
pub const BATCH_INVARIANT_FEATURE: &str = "batch-invariant";

/// The SIMD features candor's kernels care about (avx2, fma, avx512f, avx512vnni, f16c,
/// amx-bf16; neon, dotprod).
pub fn cpu_features() -> Vec<String> {
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
        ] {
            if on {
                f.push(name.to_string());
            }
        }
        // AMX tiles as the kernels use them: present, granted by the OS, not turned off by
        // CANDOR_CPU_AMX (prefill products then round to bf16, so a change of it must show).
        if candor_kernels::quant::Isa::AmxBf16.supported() {
            f.push(AMX_FEATURE.to_string());
        }
    }
    // Batch-invariant kernels round otherwise (`candor_kernels::batch_invariant`).
    if candor_kernels::batch_invariant() {
        f.push(BATCH_INVARIANT_FEATURE.to_string());
    }
    #[cfg(target_arch = "aarch64")]
    {
        for (name, on) in [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
        ] {
            if on {
                f.push(name.to_string());
            }
        }
    }
    f
}

/// `/proc/cpuinfo`'s model name, or the architecture where there is none.
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

impl Backend for CpuBackend {
    type Tensor = Tensor;
    type Weight = CpuWeight;
    type KvCache = CpuKvCache;

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: cpu_model_name(),
            vendor: None,
            kind: "cpu".into(),
            memory_total_bytes: None,
            memory_free_bytes: None,
            features: cpu_features(),
            threads: Some(self.threads),
        }
    }

    fn supports(&self, op: &OpDesc) -> bool {
        // The CPU backend is the reference: every op, every listed weight type.
        let _ = op;
        true
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_slice(data, shape, &Device::Cpu)?)
    }

    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }

    fn shape(&self, t: &Tensor) -> Vec<usize> {
        t.dims().to_vec()
    }

    fn reshape(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        Ok(t.reshape(shape)?)
    }

    fn load_weight(&self, w: HostWeight) -> Result<CpuWeight> {
        CpuWeight::from_host(w)
    }

    fn weight_shape(&self, w: &CpuWeight) -> Vec<usize> {
        w.shape()
    }

    fn alloc_kv_cache(&self, spec: &KvCacheSpec) -> Result<CpuKvCache> {
        CpuKvCache::new(spec, self.kv_dtype)
    }

    fn copy_kv_blocks(&self, cache: &mut CpuKvCache, copies: &[(u32, u32)]) -> Result<()> {
        cache.copy_blocks(copies)
    }

    fn read_kv_rows(&self, cache: &CpuKvCache, slots: &[u32]) -> Result<KvRows> {
        cache.read_rows(slots)
    }

    fn write_kv_rows(&self, cache: &mut CpuKvCache, slots: &[u32], rows: &KvRows) -> Result<()> {
        cache.write_rows(slots, rows)
    }

    fn kv_bytes_per_value(&self) -> f64 {
        self.kv_dtype.bytes_per_value()
    }

    fn short_conv(
        &self,
        cache: &CpuKvCache,
        taps: &ConvTaps<'_>,
        w: &ShortConvWeights,
    ) -> Result<Tensor> {
        // Only the layer's own cache layers are read (the default reads every layer's rows).
        let out = host_short_conv(taps, w, |layer| cache.layer_values(layer, taps.slots))?;
        let tokens = out.len() / w.width.max(1);
        Ok(Tensor::from_vec(out, (tokens, w.width), &Device::Cpu)?)
    }

    fn embedding(&self, table: &CpuWeight, ids: &[u32]) -> Result<Tensor> {
        match table {
            CpuWeight::Dense(t) => Ok(t.index_select(&ids_tensor(ids)?, 0)?),
            CpuWeight::Half { bits, ty, shape } => half_embedding(bits, *ty, *shape, ids),
            // Rows are dequantized one by one: no f32 copy of the table.
            CpuWeight::Quant { q, .. } => Ok(q.embedding(&ids_tensor(ids)?)?),
            CpuWeight::Mapped { blocks, ty } => mapped_embedding(blocks, *ty, ids),
            CpuWeight::Skinny(t) => Ok(t.index_select(&ids_tensor(ids)?, 1)?.t()?.contiguous()?),
        }
    }

    fn rms_norm(&self, x: &Tensor, w: &CpuWeight, eps: f32) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        with_values(dense_weight(w, "rms_norm")?, |g| {
            check_rows(&dims, g.len(), "rms_norm")?;
            with_values(x, |xv| {
                new_tensor(&dims, |out| norm::rms_norm(xv, g, eps, out))
            })?
        })?
    }

    fn layer_norm(
        &self,
        x: &Tensor,
        w: &CpuWeight,
        bias: Option<&CpuWeight>,
        eps: f32,
    ) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let bias = bias.map(|b| dense_weight(b, "layer_norm")).transpose()?;
        with_values(dense_weight(w, "layer_norm")?, |g| {
            check_rows(&dims, g.len(), "layer_norm")?;
            let normed = |b: Option<&[f32]>| {
                with_values(x, |xv| {
                    new_tensor(&dims, |out| norm::layer_norm(xv, g, b, eps, out))
                })?
            };
            match bias {
                Some(b) => with_values(b, |bv| {
                    check_rows(&dims, bv.len(), "layer_norm bias")?;
                    normed(Some(bv))
                })?,
                None => normed(None),
            }
        })?
    }

    fn add_rms_norm(
        &self,
        x: &Tensor,
        residual: &Tensor,
        w: &CpuWeight,
        eps: f32,
    ) -> Result<(Tensor, Tensor)> {
        let dims = same_dims(x, residual, "add_rms_norm")?;
        let len = x.elem_count();
        let (mut sum, mut normed) = (vec![0f32; len], vec![0f32; len]);
        with_values(dense_weight(w, "add_rms_norm")?, |g| {
            check_rows(&dims, g.len(), "add_rms_norm")?;
            with_values(x, |xv| {
                with_values(residual, |rv| {
                    norm::add_rms_norm(xv, rv, g, eps, &mut sum, &mut normed)
                })
            })?
        })??;
        Ok((
            Tensor::from_vec(sum, dims.as_slice(), &Device::Cpu)?,
            Tensor::from_vec(normed, dims.as_slice(), &Device::Cpu)?,
        ))
    }

    fn linear(&self, x: &Tensor, w: &CpuWeight, bias: Option<&CpuWeight>) -> Result<Tensor> {
        let y = match w {
            CpuWeight::Dense(t) => tokens_alone(x, |x| Ok(x.matmul(&t.t()?)?))?,
            CpuWeight::Skinny(t) => tokens_alone(x, |x| Ok(x.contiguous()?.matmul(t)?))?,
            CpuWeight::Half { bits, ty, shape } => half_linear(x, bits, *shape, *ty)?,
            // candle's product serves what the kernels reject (e.g. a row length that is not
            // a whole number of blocks).
            CpuWeight::Quant {
                q,
                qmm,
                fast: Some(ty),
            } => match quant_linear(x, &q.data()?, q.shape().dims(), *ty) {
                Ok(y) => y,
                Err(_) => tokens_alone(x, |x| Ok(qmm.forward(&x.contiguous()?)?))?,
            },
            CpuWeight::Mapped { blocks, ty } => {
                quant_linear(x, blocks.bytes(), &blocks.shape, *ty)?
            }
            CpuWeight::Quant { qmm, .. } => {
                tokens_alone(x, |x| Ok(qmm.forward(&x.contiguous()?)?))?
            }
        };
        with_bias(y, bias)
    }

    fn linear_many(&self, jobs: &[LinearJob<'_, Self>]) -> Result<Vec<Tensor>> {
        many::linear_many(self, jobs)
    }

    fn rope(&self, x: &Tensor, positions: &[u32], rope: &RopeSpec) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let [t, h, d] = dims[..] else {
            return Err(err(format!(
                "rope expects [tokens, heads, head_dim], got {dims:?}"
            )));
        };
        if t != positions.len() || rope.inv_freq.len() * 2 != d {
            return Err(err(format!(
                "rope: {t} rows, {} positions, head_dim {d}, {} frequencies",
                positions.len(),
                rope.inv_freq.len()
            )));
        }
        let mut data = self.download(x)?;
        let pairing = match rope.style {
            RopeStyle::Neox => Pairing::Neox,
            RopeStyle::Interleaved => Pairing::Interleaved,
        };
        apply_rope(
            &mut data,
            positions,
            h,
            d,
            &rope.inv_freq,
            pairing,
            rope.mscale,
        );
        Ok(Tensor::from_vec(data, (t, h, d), &Device::Cpu)?)
    }

    fn kv_write(
        &self,
        cache: &mut CpuKvCache,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        slots: &[u32],
    ) -> Result<()> {
        with_values(k, |k| with_values(v, |v| cache.write(layer, k, v, slots)))??
    }

    fn paged_attention(
        &self,
        q: &Tensor,
        cache: &CpuKvCache,
        layer: usize,
        seqs: &[SeqAttention],
        block_size: usize,
        params: &AttentionParams,
    ) -> Result<Tensor> {
        let t = q.dims().first().copied().unwrap_or(0);
        let row = params.num_heads * params.head_dim;
        if q.elem_count() != t * row
            || params.num_kv_heads != cache.kv_heads()
            || params.head_dim != cache.head_dim()
        {
            return Err(err(format!(
                "attention: q {:?} does not match the params {params:?}",
                q.dims()
            )));
        }
        if block_size != cache.block_size() {
            return Err(err("attention: block size differs from the cache's"));
        }
        for s in seqs {
            if s.q_start + s.q_len > t || s.block_table.len() * block_size < s.context_len() {
                return Err(err("attention: sequence metadata out of range"));
            }
            if s.block_table
                .iter()
                .any(|&b| b as usize >= cache.num_blocks())
            {
                return Err(err("attention: block table refers past the cache"));
            }
        }
        let mut out = vec![0f32; t * row];
        let views: Vec<SeqQueries> = seqs
            .iter()
            .map(|s| SeqQueries {
                q_start: s.q_start,
                q_len: s.q_len,
                start_pos: s.start_pos,
                block_table: &s.block_table,
            })
            .collect();
        let shape = AttnShape {
            heads: params.num_heads,
            scale: params.scale,
            window: params.sliding_window,
            softcap: params.softcap,
            sinks: params.sinks.as_deref(),
            alibi: params.alibi.as_deref(),
        };
        if let Some(why) = params.per_head_mismatch() {
            return Err(err(why));
        }
        let kv = cache.layer(layer)?;
        with_values(q, |qv| match &kv {
            LayerView::F32(kv) => paged_attention(qv, &mut out, kv, &views, &shape),
            LayerView::F16(kv) => paged_attention(qv, &mut out, kv, &views, &shape),
            LayerView::Q8(kv) => paged_attention(qv, &mut out, kv, &views, &shape),
        })?;
        Ok(Tensor::from_vec(out, (t, row), &Device::Cpu)?)
    }

    /// Quantized weights the kernels take run `quant_glu_linear`; others (and a weight the
    /// kernels refuse, which candle's product serves) `glu` then `linear`.
    fn glu_linear(
        &self,
        gate: &Tensor,
        up: &Tensor,
        act: Activation,
        w: &CpuWeight,
    ) -> Result<Tensor> {
        let a = kernel_act(act);
        match w {
            CpuWeight::Quant {
                q, fast: Some(ty), ..
            } => match quant_glu_linear(gate, up, a, &q.data()?, q.shape().dims(), *ty) {
                Ok(y) => Ok(y),
                Err(_) => glu_then_linear(self, gate, up, act, w),
            },
            CpuWeight::Mapped { blocks, ty } => {
                quant_glu_linear(gate, up, a, blocks.bytes(), &blocks.shape, *ty)
            }
            _ => glu_then_linear(self, gate, up, act, w),
        }
    }

    fn glu(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        let act = kernel_act(act);
        let dims = same_dims(gate, up, "glu")?;
        with_values(gate, |g| {
            with_values(up, |u| new_tensor(&dims, |out| act::glu(g, u, act, out)))
        })??
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let dims = same_dims(a, b, "add")?;
        with_values(a, |av| {
            with_values(b, |bv| {
                new_tensor(&dims, |out| act::binary(av, Binary::Add(bv), out))
            })
        })??
    }

    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let dims = same_dims(a, b, "mul")?;
        with_values(a, |av| {
            with_values(b, |bv| {
                new_tensor(&dims, |out| act::binary(av, Binary::Mul(bv), out))
            })
        })??
    }

    /// The activation alone (the ungated FFNs'), without the default's GLU over an up of ones:
    /// the same bits, one tensor fewer made and read.
    fn activate(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        let kind = kernel_act(candor_models::backend::ungated(activation)?);
        let dims = x.dims().to_vec();
        with_values(x, |xv| {
            new_tensor(&dims, |out| act::activate(xv, kind, out))
        })?
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        with_values(x, |xv| {
            new_tensor(&dims, |out| act::binary(xv, Binary::Scale(s), out))
        })?
    }

    fn softcap(&self, x: &Tensor, cap: f32) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        with_values(x, |xv| new_tensor(&dims, |out| act::softcap(xv, cap, out)))?
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?)
    }

    /// On a worker of rayon's pool (`rayon::scope` from outside it runs its body there, the
    /// caller blocked once for the whole step). Measured on the 2-core VM, `candor bench -p 64
    /// -n 64 -t 2`, decode: gemma-3-270m Q4_K_M 47-71 → 91-110 tok/s, qwen2.5-0.5b Q4_K_M
    /// 34-44 → 41-52 tok/s (three alternating runs each).
    fn run_step<R: Send>(&self, step: impl FnOnce() -> R + Send) -> R {
        rayon::scope(|_| step())
    }

    fn concat_weights(&self, parts: &[&CpuWeight]) -> Result<Option<CpuWeight>> {
        if !self.join_projections {
            return Ok(None);
        }
        CpuWeight::concat_rows(parts)
    }

    fn splits_outputs(&self) -> bool {
        true
    }

    fn split(&self, x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
        crate::backend::split::split_dim1(x, sizes)
    }

    fn gather_rows(&self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        Ok(x.index_select(&ids_tensor(rows)?, 0)?)
    }

    fn heads_linear(&self, x: &Tensor, w: &CpuWeight) -> Result<Tensor> {
        let w = dense_weight(w, "heads_linear")?;
        heads_product(x, w)
    }

    fn argmax(&self, x: &Tensor) -> Result<Vec<u32>> {
        // candor-kernels' argmax, the sampler's: the first of equal values, NaN passed over.
        let cols = x.dims().last().copied().unwrap_or(0);
        if cols == 0 {
            return Err(err(format!("argmax over rows of {:?}", x.dims())));
        }
        with_values(x, |v| {
            v.chunks_exact(cols).map(candor_kernels::argmax).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step runs on a thread of the compute pool, from a thread outside it, and its value
    /// comes back.
    #[test]
    fn steps_run_on_a_pool_worker() {
        let b = CpuBackend::new(2);
        let outside = std::thread::spawn(move || {
            assert_eq!(rayon::current_thread_index(), None);
            b.run_step(|| (rayon::current_thread_index(), 7))
        });
        let (worker, value) = outside.join().unwrap();
        assert!(worker.is_some(), "the step ran outside the pool");
        assert_eq!(value, 7);
    }

    /// Long prompts take the widened panels; they must give the tiles' products, across
    /// several panels and a short last one.
    #[test]
    fn half_panels_match_the_half_tiles() {
        let (m, n, k) = (HALF_GEMM_MIN_ROWS + 3, 37, 24);
        let value = |i: usize| ((i * 7919) % 201) as f32 / 100.0 - 1.0;
        for ty in [HalfType::F16, HalfType::Bf16] {
            let bits: Vec<u16> = (0..n * k).map(|i| ty.from_f32(value(i))).collect();
            let xs: Vec<f32> = (0..m * k).map(|i| value(i + 5)).collect();
            let mut want = vec![0f32; m * n];
            half_matmul::matmul(ty, &bits, n, k, &xs, m, &mut want).unwrap();
            let x = Tensor::from_vec(xs, (m, k), &Device::Cpu).unwrap();
            for rows_per_panel in [10, n] {
                let got = half_gemm_panels(&x, &bits, [n, k], ty, rows_per_panel).unwrap();
                assert_eq!(got.dims(), [m, n]);
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{ty:?} {rows_per_panel} rows at {i}: {g} vs {w}"
                    );
                }
            }
            // Through the backend's entry point, which picks the panels for this many rows.
            let via_linear = half_linear(&x, &bits, [n, k], ty).unwrap();
            let via_linear = via_linear.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(via_linear
                .iter()
                .zip(&want)
                .all(|(g, w)| (g - w).abs() <= 1e-4 * (1.0 + w.abs())));
        }
    }

    /// A skinny weight (a LoRA B) is kept transposed: the same shape outside, the same
    /// products and rows.
    #[test]
    fn skinny_weights_keep_their_shape_products_and_rows() {
        let cpu = CpuBackend::new(1);
        let w = Tensor::randn(0f32, 1., (300, 8), &Device::Cpu).unwrap();
        let held = cpu
            .load_weight(HostWeight::Dense {
                tensor: w.to_dtype(DType::F16).unwrap(),
                source: candor_models::backend::WeightDtype::F16,
            })
            .unwrap();
        assert!(matches!(held, CpuWeight::Skinny(_)));
        assert_eq!(cpu.weight_shape(&held), [300, 8]);
        let w = w
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        for rows in [1, 3, 40] {
            let x = Tensor::randn(0f32, 1., (rows, 8), &Device::Cpu).unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let got = cpu.linear(&x, &held, None).unwrap();
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4, "{rows} rows");
        }
        let rows = cpu.embedding(&held, &[7, 299]).unwrap();
        assert_eq!(
            rows.to_vec2::<f32>().unwrap()[1],
            w.get(299).unwrap().to_vec1::<f32>().unwrap()
        );
    }
}

#[cfg(test)]
mod glu_linear_tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};

    /// The fused GLU product of a quantized weight gives the bits of `glu` then `linear`, for
    /// a decode row and a prefill chunk long enough for AMX tiles where the CPU has them.
    #[test]
    fn glu_linear_of_quantized_weights_gives_glu_then_linear() {
        let b = CpuBackend::new(2);
        let (n, k) = (40, 256);
        let value = |i: usize| ((i * 7919) % 401) as f32 / 200.0 - 1.0;
        let wf: Vec<f32> = (0..n * k).map(value).collect();
        let wt = Tensor::from_vec(wf, (n, k), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let q = QTensor::quantize(&wt, dtype).unwrap();
            let w = CpuWeight::from_host(HostWeight::Quant(q)).unwrap();
            for m in [1, quant::AMX_MIN_ROWS + 9] {
                let gate: Vec<f32> = (0..m * k).map(|i| value(i + 3)).collect();
                let up: Vec<f32> = (0..m * k).map(|i| value(i + 11)).collect();
                let gate = b.upload(&gate, &[m, k]).unwrap();
                let up = b.upload(&up, &[m, k]).unwrap();
                let acts = [
                    Activation::Silu,
                    Activation::GeluTanh,
                    Activation::GeluErf,
                    Activation::Relu2,
                    Activation::Relu,
                ];
                for act in acts {
                    let fused = b.glu_linear(&gate, &up, act, &w).unwrap();
                    let apart = b
                        .linear(&b.glu(&gate, &up, act).unwrap(), &w, None)
                        .unwrap();
                    let (f, a) = (b.download(&fused).unwrap(), b.download(&apart).unwrap());
                    assert_eq!(fused.dims(), &[m, n]);
                    let same = f.iter().zip(&a).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{dtype:?} m={m} {act:?}");
                }
            }
        }
    }
}
