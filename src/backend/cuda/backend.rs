//! `CudaBackend`: the Backend trait on candle CUDA tensors. cuBLAS (through candle's matmul) for
//! dense weights, candle's quantized CUDA matmul for GGUF blocks, candle ops for the simple
//! elementwise ops, and candor's kernels (kernels/cuda) for RMSNorm (fused with the residual
//! add), RoPE, GLU, the KV write, paged attention and the dense products of decode steps' few
//! rows (matvec.cu).
use super::block_table::{pack, query_tiles};
use super::device::gpu_info;
use super::error::CudaError;
use super::kernels::{fast_kernels_from_env, AttentionArgs, Kernels, RopeArgs, ShortConvArgs};
use super::kv::CudaKvCache;
use super::launch;
use super::matvec::{MatvecInput, MatvecOutput, MatvecTarget};
use super::rope_kv_write::KvTarget;
use super::uploads::UploadCache;
use super::weights::CudaWeight;
use super::GpuInfo;
use candle_core::{DType, Device, Tensor};
use candor_kernels::conv::NO_ROW;
use candor_models::backend::{
    glu_then_linear, qkv_rope_write_kv, rms_norm_maybe_add, rms_norm_then_linear, Activation,
    AttentionParams, Backend, DeviceInfo, KvCacheSpec, OpDesc, QkvHeads, RopeKvWrite, RopeSpec,
};
use candor_models::batch::SeqAttention;
use candor_models::error::Result;
use candor_models::kv_rows::KvRows;
use candor_models::projection::NormedInput;
use candor_models::short_conv::{ConvTaps, ShortConvWeights};
use candor_models::weights::HostWeight;

pub struct CudaBackend {
    device: Device,
    kernels: Kernels,
    info: GpuInfo,
    /// Dtype of activations, dense weights and the KV cache.
    act: DType,
    uploads: UploadCache,
    /// Prompt chunks attend on tensor cores (paged_attention_mma.cu) where the kernel has an
    /// instance, and few rows over long contexts split their keys across blocks;
    /// `CANDOR_CUDA_ATTENTION=simple` keeps every batch on the one-pass simple kernel (the
    /// reference the others are measured against).
    fast_attention: bool,
    /// Decode steps' few rows multiply dense weights in matvec.cu, which streams each weight
    /// once at the memory's pace; `CANDOR_CUDA_MATMUL=cublas` sends every product to cuBLAS
    /// (the reference the kernel is measured against).
    fast_matvec: bool,
}

/// A batch attends on tensor cores when one of its sequences brings at least this many query
/// rows: a tile of 16 rows per warp is mostly empty below that, and decode-only batches (one
/// row per sequence) stay on the simple kernel, which splits no work it does not need.
const MMA_MIN_QUERY_ROWS: usize = 16;

impl CudaBackend {
    /// The backend on GPU `ordinal`, computing in `act` (F32, F16 or BF16).
    /// The candle device its tensors live on (an encoder runs candle's ops there).
    pub fn candle_device(&self) -> &Device {
        &self.device
    }

    pub fn new(ordinal: usize, act: DType) -> Result<Self> {
        if !matches!(act, DType::F32 | DType::F16 | DType::BF16) {
            return Err(CudaError::Launch(format!("activation dtype {act:?}")).into());
        }
        let info = gpu_info(ordinal)?;
        let device = Device::new_cuda(ordinal)?;
        let (major, minor) = info.compute_capability;
        let kernels = Kernels::new(device.as_cuda_device()?.clone(), major, minor)?;
        Ok(CudaBackend {
            device,
            kernels,
            info,
            act,
            uploads: UploadCache::default(),
            fast_attention: fast_kernels_from_env("CANDOR_CUDA_ATTENTION", "simple")?,
            fast_matvec: fast_kernels_from_env("CANDOR_CUDA_MATMUL", "cublas")?,
        })
    }

    /// Whether attention may use the tensor-core prompt kernel and key splits, or only the
    /// one-pass simple kernel (tests compare them on the same inputs).
    pub fn set_fast_attention(&mut self, on: bool) {
        self.fast_attention = on;
    }

    /// Whether dense products of up to `launch::MATVEC_MAX_ROWS` rows may run on matvec.cu, or
    /// all on cuBLAS (tests compare them on the same inputs).
    pub fn set_fast_matvec(&mut self, on: bool) {
        self.fast_matvec = on;
    }

    /// Query rows per tile when this batch attends on tensor cores, None for the simple kernel.
    fn mma_tile_rows(&self, head_dim: usize, seqs: &[SeqAttention]) -> Option<usize> {
        let longest = seqs.iter().map(|s| s.q_len).max().unwrap_or(0);
        if !self.fast_attention || self.act == DType::F32 || longest < MMA_MIN_QUERY_ROWS {
            return None;
        }
        super::launch::mma_attention_rows(head_dim)
    }

    /// `input · wᵀ (+ bias)` by matvec.cu where it applies (dense weights, decode's few rows;
    /// `launch::matvec`) and is switched on, into `target`; None for the general path.
    fn matvec(
        &self,
        input: MatvecInput,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
        target: MatvecTarget,
    ) -> Result<Option<MatvecOutput>> {
        let (true, CudaWeight::Dense(w)) = (self.fast_matvec, w) else {
            return Ok(None);
        };
        let bias = bias.map(|b| dense(b, "bias")).transpose()?;
        self.kernels.matvec(input, w, bias, target)
    }

    /// The q/k/v product of `input` (the normed rows, or the rows to norm) finished by RoPE and
    /// the KV write in matvec.cu, where it applies; None for the general path (nothing done).
    fn matvec_rope_kv(
        &self,
        input: MatvecInput,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
        heads: QkvHeads,
        kv: RopeKvWrite<'_, CudaKvCache>,
    ) -> Result<Option<MatvecOutput>> {
        if !self.fast_matvec {
            return Ok(None);
        }
        let (rope, kv) = self.rope_kv_target(kv)?;
        let target = MatvecTarget::RopeKv {
            heads,
            rope: &rope,
            kv,
        };
        self.matvec(input, w, bias, target)
    }

    pub fn act_dtype(&self) -> DType {
        self.act
    }

    fn ids(&self, kind: &'static str, ids: &[u32]) -> Result<Tensor> {
        self.uploads.u32s(&self.device, kind, ids)
    }

    /// A RoPE call's positions and frequencies on the device (both uploads cached).
    fn rope_args(&self, positions: &[u32], rope: &RopeSpec) -> Result<RopeArgs> {
        Ok(RopeArgs {
            positions: self.ids("rope positions", positions)?,
            inv_freq: self.uploads.f32s(&self.device, &rope.inv_freq)?,
            style: rope.style,
            mscale: rope.mscale,
        })
    }

    /// What RoPE and the KV write need on the device: the positions and frequencies, and the
    /// layer's cache buffers with the tokens' slots (checked against the cache).
    fn rope_kv_target<'a>(
        &self,
        kv: RopeKvWrite<'a, CudaKvCache>,
    ) -> Result<(RopeArgs, KvTarget<'a>)> {
        let num_slots = kv.cache.num_slots();
        let slots = self.slots(kv.slots, num_slots)?;
        let rope = self.rope_args(kv.positions, kv.rope)?;
        let (k_cache, v_cache) = kv.cache.layer_mut(kv.layer)?;
        let target = KvTarget {
            k_cache,
            v_cache,
            slots,
            num_slots,
        };
        Ok((rope, target))
    }

    /// Per-head attention floats (the sinks, the ALiBi slopes) on the device, uploaded once
    /// per distinct set: a model's layers each have theirs, the same on every forward pass.
    /// Their count is checked where the kernels launch (`Kernels::paged_attention`).
    fn per_head(&self, values: Option<&[f32]>) -> Result<Option<Tensor>> {
        values
            .map(|v| self.uploads.f32s(&self.device, v))
            .transpose()
    }

    /// KV slots on the device, each checked against the cache's `num_slots`.
    fn slots(&self, slots: &[u32], num_slots: usize) -> Result<Tensor> {
        if let Some(&bad) = slots.iter().find(|&&s| s as usize >= num_slots) {
            return Err(CudaError::Batch(format!(
                "kv_write: slot {bad} past the cache ({num_slots})"
            ))
            .into());
        }
        self.ids("kv slots", slots)
    }
}

/// A norm input as matvec.cu reads it (the norm inside the product), where the norm weight is
/// dense.
fn rms_norm_input<'a>(input: &NormedInput<'a, CudaBackend>) -> Option<MatvecInput<'a>> {
    let CudaWeight::Dense(weight) = input.norm else {
        return None;
    };
    Some(MatvecInput::RmsNorm {
        x: input.x,
        residual: input.residual,
        weight,
        eps: input.eps,
    })
}

/// A normed product's (residual stream, product): the stream is the sum it wrote, or `x`
/// itself without a residual.
fn with_stream(out: MatvecOutput, x: &Tensor) -> (Tensor, Tensor) {
    (out.sum.unwrap_or_else(|| x.clone()), out.y)
}

fn dense<'a>(w: &'a CudaWeight, what: &str) -> Result<&'a Tensor> {
    w.dense()
        .ok_or_else(|| CudaError::Launch(format!("{what} weight must be dense")).into())
}

impl Backend for CudaBackend {
    type Tensor = Tensor;
    type Weight = CudaWeight;
    type KvCache = CudaKvCache;

    fn info(&self) -> DeviceInfo {
        let (major, minor) = self.info.compute_capability;
        DeviceInfo {
            name: self.info.name.clone(),
            vendor: Some("NVIDIA".into()),
            kind: "cuda".into(),
            memory_total_bytes: Some(self.info.memory_total_bytes),
            memory_free_bytes: Some(self.info.memory_free_bytes),
            features: vec![
                format!("sm_{major}{minor}"),
                format!("driver {}", self.info.driver_version),
                format!("{} SMs", self.info.multiprocessors),
                format!("activations {:?}", self.act).to_lowercase(),
            ],
            threads: None,
        }
    }

    fn supports(&self, op: &OpDesc) -> bool {
        match op {
            OpDesc::PagedAttention { head_dim, .. } => {
                (1..=super::launch::ATTENTION_MAX_HEAD_DIM).contains(head_dim)
            }
            // Every listed weight type has a candle CUDA matmul / embedding; the rest are ours
            // or candle's.
            _ => true,
        }
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_slice(data, shape, &self.device)?.to_dtype(self.act)?)
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

    fn load_weight(&self, w: HostWeight) -> Result<CudaWeight> {
        CudaWeight::load(w, &self.device, self.act, &self.kernels)
    }

    fn weight_shape(&self, w: &CudaWeight) -> Vec<usize> {
        w.shape()
    }

    fn alloc_kv_cache(&self, spec: &KvCacheSpec) -> Result<CudaKvCache> {
        CudaKvCache::new(self.device.as_cuda_device()?, spec, self.act)
    }

    fn copy_kv_blocks(&self, cache: &mut CudaKvCache, copies: &[(u32, u32)]) -> Result<()> {
        cache.copy_blocks(copies)
    }

    /// LFM2's short convolution on the device (short_conv.cu): the taps read from the layer's
    /// cache layers in place, where the default would read every tapped row back to the host
    /// and upload the result (a round trip per convolution layer and step).
    fn short_conv(
        &self,
        cache: &CudaKvCache,
        taps: &ConvTaps<'_>,
        w: &ShortConvWeights,
    ) -> Result<Tensor> {
        let (kernel, width) = (w.kernel(), w.width);
        let tokens = taps.index.len() / kernel.max(1);
        let num_slots = cache.num_slots();
        let bad_tap = taps
            .index
            .iter()
            .find(|&&r| r != NO_ROW && r as usize >= taps.slots.len());
        let bad_slot = taps.slots.iter().find(|&&s| s as usize >= num_slots);
        if kernel == 0
            || taps.index.len() != tokens * kernel
            || w.bias.as_ref().is_some_and(|b| b.len() != width)
            || bad_tap.is_some()
            || bad_slot.is_some()
        {
            return Err(CudaError::Batch(format!(
                "short_conv: {} taps of a {kernel}-tap kernel over {} rows (a tap {bad_tap:?}, \
                 a slot {bad_slot:?} of {num_slots})",
                taps.index.len(),
                taps.slots.len()
            ))
            .into());
        }
        if tokens == 0 {
            return Ok(Tensor::zeros((0, width), self.act, &self.device)?);
        }
        let mut halves = Vec::with_capacity(2 * taps.layers);
        for l in 0..taps.layers {
            let (k, v) = cache.layer(taps.first_layer + l)?;
            halves.extend([k, v]);
        }
        self.kernels.short_conv(&ShortConvArgs {
            halves,
            piece: cache.spec.num_kv_heads * cache.spec.head_dim,
            slots: self.ids("conv slots", taps.slots)?,
            taps: self.ids("conv taps", taps.index)?,
            weight: self.uploads.f32s(&self.device, &w.weight)?,
            bias: match &w.bias {
                Some(b) => Some(self.uploads.f32s(&self.device, b)?),
                None => None,
            },
            width,
        })
    }

    fn read_kv_rows(&self, cache: &CudaKvCache, slots: &[u32]) -> Result<KvRows> {
        cache.read_rows(slots)
    }

    fn write_kv_rows(&self, cache: &mut CudaKvCache, slots: &[u32], rows: &KvRows) -> Result<()> {
        cache.write_rows(slots, rows)
    }

    fn kv_bytes_per_value(&self) -> f64 {
        // The cache is kept in the activation dtype (kv.rs).
        self.act.size_in_bytes() as f64
    }

    fn embedding(&self, table: &CudaWeight, ids: &[u32]) -> Result<Tensor> {
        let rows = table.shape().first().copied().unwrap_or(0);
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= rows) {
            return Err(CudaError::Launch(format!(
                "token id {bad} outside the {rows}-row embedding table"
            ))
            .into());
        }
        table.rows(&self.ids("embedding ids", ids)?, self.act, &self.kernels)
    }

    fn rms_norm(&self, x: &Tensor, w: &CudaWeight, eps: f32) -> Result<Tensor> {
        Ok(self
            .kernels
            .rms_norm(x, None, dense(w, "rms_norm")?, eps)?
            .1)
    }

    /// candle's LayerNorm kernel (one block per row, f32 sums), a zero bias where the model has
    /// none: the families that need it (Cohere's) run it twice a layer, not worth a fused
    /// kernel of our own yet.
    fn layer_norm(
        &self,
        x: &Tensor,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
        eps: f32,
    ) -> Result<Tensor> {
        let x = x.contiguous()?;
        let w = dense(w, "layer_norm")?.to_dtype(x.dtype())?.contiguous()?;
        let bias = match bias {
            Some(b) => dense(b, "layer_norm")?.to_dtype(x.dtype())?.contiguous()?,
            None => w.zeros_like()?,
        };
        let cols = x.dims().last().copied().unwrap_or(0);
        if w.elem_count() != cols || bias.elem_count() != cols {
            return Err(CudaError::Launch(format!(
                "layer_norm: x {:?}, weight {:?}, bias {:?}",
                x.dims(),
                w.dims(),
                bias.dims()
            ))
            .into());
        }
        if x.elem_count() == 0 {
            return Ok(x);
        }
        Ok(candle_nn::ops::layer_norm(&x, &w, &bias, eps)?)
    }

    fn add_rms_norm(
        &self,
        x: &Tensor,
        residual: &Tensor,
        w: &CudaWeight,
        eps: f32,
    ) -> Result<(Tensor, Tensor)> {
        let (sum, normed) = self
            .kernels
            .rms_norm(x, Some(residual), dense(w, "rms_norm")?, eps)?;
        let sum = sum.ok_or_else(|| CudaError::Launch("add_rms_norm returned no sum".into()))?;
        Ok((sum, normed))
    }

    fn linear(&self, x: &Tensor, w: &CudaWeight, bias: Option<&CudaWeight>) -> Result<Tensor> {
        if let Some(out) = self.matvec(MatvecInput::Rows(x), w, bias, MatvecTarget::Rows)? {
            return Ok(out.y);
        }
        let y = w.matmul_t(x, &self.kernels)?;
        match bias {
            None => Ok(y),
            Some(b) => Ok(y.broadcast_add(dense(b, "bias")?)?),
        }
    }

    fn rope(&self, x: &Tensor, positions: &[u32], rope: &RopeSpec) -> Result<Tensor> {
        self.kernels.rope(x, &self.rope_args(positions, rope)?)
    }

    fn rope_qk_write_kv(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        kv: RopeKvWrite<'_, CudaKvCache>,
    ) -> Result<Tensor> {
        let (rope, target) = self.rope_kv_target(kv)?;
        self.kernels.rope_kv_write(q, k, v, &rope, target)
    }

    fn kv_write(
        &self,
        cache: &mut CudaKvCache,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        slots: &[u32],
    ) -> Result<()> {
        let num_slots = cache.num_slots();
        let slots = self.slots(slots, num_slots)?;
        let (kc, vc) = cache.layer_mut(layer)?;
        self.kernels.kv_write(kc, vc, k, v, &slots, num_slots)
    }

    fn paged_attention(
        &self,
        q: &Tensor,
        cache: &CudaKvCache,
        layer: usize,
        seqs: &[SeqAttention],
        block_size: usize,
        params: &AttentionParams,
    ) -> Result<Tensor> {
        let spec = &cache.spec;
        if block_size != spec.block_size
            || params.num_kv_heads != spec.num_kv_heads
            || params.head_dim != spec.head_dim
        {
            return Err(CudaError::Launch(format!(
                "attention: params {params:?} do not match the cache {spec:?}"
            ))
            .into());
        }
        let sinks = self.per_head(params.sinks.as_deref())?;
        let alibi = self.per_head(params.alibi.as_deref())?;
        let tokens = q.dims().first().copied().unwrap_or(0);
        let mut packed = pack(seqs, tokens, block_size, spec.num_blocks)?;
        if let Some(rows) = self.mma_tile_rows(params.head_dim, seqs) {
            packed.tiles = query_tiles(seqs, rows)?;
        }
        let batch = self.uploads.batch(&self.device, packed)?;
        let (kc, vc) = cache.layer(layer)?;
        // The most keys a row sees: its context, or its window.
        let longest = seqs.iter().map(|s| s.context_len()).max().unwrap_or(0);
        let visible = params.sliding_window.map_or(longest, |w| w.min(longest));
        let args = AttentionArgs {
            heads: params.num_heads,
            kv_heads: params.num_kv_heads,
            head_dim: params.head_dim,
            block_size,
            scale: params.scale,
            window: params.sliding_window,
            softcap: params.softcap,
            key_ranges: if self.fast_attention {
                super::launch::attention_key_splits(
                    tokens,
                    params.num_heads,
                    visible,
                    self.info.multiprocessors as usize,
                )
            } else {
                (1, visible.max(1))
            },
            sinks,
            alibi,
        };
        self.kernels.paged_attention(q, kc, vc, &batch, &args)
    }

    fn glu(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        self.kernels.glu(gate, up, act)
    }

    fn glu_linear(
        &self,
        gate: &Tensor,
        up: &Tensor,
        act: Activation,
        w: &CudaWeight,
    ) -> Result<Tensor> {
        if let Some(out) = self.matvec(
            MatvecInput::Glu { gate, up, act },
            w,
            None,
            MatvecTarget::Rows,
        )? {
            return Ok(out.y);
        }
        glu_then_linear(self, gate, up, act, w)
    }

    fn rms_norm_linear(
        &self,
        input: NormedInput<'_, Self>,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
    ) -> Result<(Tensor, Tensor)> {
        if let Some(normed) = rms_norm_input(&input) {
            if let Some(out) = self.matvec(normed, w, bias, MatvecTarget::Rows)? {
                return Ok(with_stream(out, input.x));
            }
        }
        rms_norm_then_linear(self, input, w, bias)
    }

    fn rms_norm_qkv_rope_write_kv(
        &self,
        input: NormedInput<'_, Self>,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
        heads: QkvHeads,
        mut kv: RopeKvWrite<'_, CudaKvCache>,
    ) -> Result<(Tensor, Tensor)> {
        let (x, residual, norm, eps) = (input.x, input.residual, input.norm, input.eps);
        let rows = x.dims().first().copied().unwrap_or(0);
        // Few enough rows for the norm inside the product: one launch for all of it.
        if let (Some(normed), true) = (rms_norm_input(&input), rows <= launch::MATVEC_MAX_NORM_ROWS)
        {
            if let Some(out) = self.matvec_rope_kv(normed, w, bias, heads, kv.reborrow())? {
                return Ok(with_stream(out, x));
            }
        }
        // Otherwise the norm first, then the product with RoPE and the KV write where
        // matvec.cu takes it, else cuBLAS and rope_kv_write.cu.
        let (stream, h) = rms_norm_maybe_add(self, x, residual, norm, eps)?;
        if rows <= launch::MATVEC_MAX_ROWS {
            let rows_in = MatvecInput::Rows(&h);
            if let Some(out) = self.matvec_rope_kv(rows_in, w, bias, heads, kv.reborrow())? {
                return Ok((stream, out.y));
            }
        }
        let qkv = self.linear(&h, w, bias)?;
        Ok((stream, qkv_rope_write_kv(self, &qkv, heads, kv)?))
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok((a + b)?)
    }

    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok((a * b)?)
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        Ok(x.affine(s as f64, 0.0)?)
    }

    /// candle's elementwise kernels (its `gelu` is the tanh approximation, `gelu_erf` the exact
    /// one), no ones to upload.
    fn activate(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        match act {
            Activation::Silu => Ok(x.silu()?),
            Activation::GeluTanh => Ok(x.gelu()?),
            Activation::GeluErf => Ok(x.gelu_erf()?),
            Activation::Relu2 => Ok(x.relu()?.sqr()?),
            Activation::Relu => Ok(x.relu()?),
            Activation::SwigluOai => {
                Err(CudaError::Launch("gpt-oss's SwiGLU has no activation alone".into()).into())
            }
        }
    }

    /// candle's clamp on the device (OLMo's `clip_qkv`).
    fn clamp(&self, x: &Tensor, limit: f32) -> Result<Tensor> {
        Ok(x.clamp(-limit, limit)?)
    }

    /// BitNet's per-token activation quantization from candle's ops on the device (no
    /// read-back). candle rounds ties away from zero where the host (as torch) rounds them to
    /// even: only values exactly halfway between two steps differ, by one step.
    fn quantize_rows(&self, x: &Tensor, bits: u32) -> Result<Tensor> {
        use candle_core::D;
        let top = candor_models::activation_quant::largest_quant(bits) as f64;
        let largest = x
            .abs()?
            .max_keepdim(D::Minus1)?
            .clamp(1e-5f32, f32::INFINITY)?;
        let scale = (largest.recip()? * top)?;
        let q = x.broadcast_mul(&scale)?.round()?.clamp(-top - 1.0, top)?;
        Ok(q.broadcast_div(&scale)?)
    }

    fn mul_sigmoid(&self, x: &Tensor, gate: &Tensor) -> Result<Tensor> {
        let gate = gate.contiguous()?.reshape(x.shape())?;
        Ok((x * candle_nn::ops::sigmoid(&gate)?)?)
    }

    /// Apertus's xIELU from candle's elementwise ops in f32 on the device (no read-back):
    /// `αp·x² + β·x` where x > 0, else `(e^min(x, ε) − 1 − x)·αn + β·x`.
    fn xielu(&self, x: &Tensor, p: &candor_models::xielu::XieluParams) -> Result<Tensor> {
        Ok(p.apply_tensor(x)?)
    }

    fn softcap(&self, x: &Tensor, cap: f32) -> Result<Tensor> {
        Ok(((x / cap as f64)?.tanh()? * cap as f64)?)
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?)
    }

    fn concat_weights(&self, parts: &[&CudaWeight]) -> Result<Option<CudaWeight>> {
        CudaWeight::concat_rows(parts)
    }

    fn splits_outputs(&self) -> bool {
        true
    }

    fn split(&self, x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
        crate::backend::split::split_dim1(x, sizes)
    }

    fn gather_rows(&self, x: &Tensor, rows: &[u32]) -> Result<Tensor> {
        let n = x.dims().first().copied().unwrap_or(0);
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= n) {
            return Err(CudaError::Launch(format!("gather_rows: row {bad} of {n}")).into());
        }
        Ok(x.index_select(&self.ids("gathered rows", rows)?, 0)?)
    }

    /// candle's batched product (cuBLAS strided batched GEMM).
    fn heads_linear(&self, x: &Tensor, w: &CudaWeight) -> Result<Tensor> {
        let CudaWeight::Dense(w) = w else {
            return Err(CudaError::Launch("heads_linear: the weight is not dense".into()).into());
        };
        let y = x
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&w.transpose(1, 2)?.contiguous()?)?;
        Ok(y.transpose(0, 1)?.contiguous()?)
    }

    /// On the device (candle's `index_add`): no round trip through host memory per expert.
    fn add_rows_scaled(
        &self,
        acc: &Tensor,
        rows: &[u32],
        x: &Tensor,
        weights: &[f32],
    ) -> Result<Tensor> {
        let n = acc.dims().first().copied().unwrap_or(0);
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= n) {
            return Err(CudaError::Launch(format!("add_rows_scaled: row {bad} of {n}")).into());
        }
        if weights.len() != rows.len() || x.dims().first() != Some(&rows.len()) {
            return Err(CudaError::Launch(format!(
                "add_rows_scaled: {} rows, {} weights, values {:?}",
                rows.len(),
                weights.len(),
                x.dims()
            ))
            .into());
        }
        // Uploaded each call, not through `UploadCache::f32s`: routing weights differ on every
        // step, and that cache keeps each distinct content for good.
        let w = Tensor::from_slice(weights, (rows.len(), 1), &self.device)?.to_dtype(x.dtype())?;
        let scaled = x.broadcast_mul(&w)?;
        Ok(acc.index_add(&self.ids("expert rows", rows)?, &scaled, 0)?)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    fn argmax(&self, x: &Tensor) -> Result<Vec<u32>> {
        self.kernels.argmax(x)
    }
}
