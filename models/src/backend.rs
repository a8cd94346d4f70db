//! The Backend trait: the op-level interface every device implements (CPU, CUDA, C plugins).
//!
//! Models are written once against this trait. Tensors are device-resident and cheap to clone;
//! weights may be kept quantized or repacked in whatever layout suits the device. The paged KV
//! cache is backend-owned storage addressed by slots (`block * block_size + offset`), written and
//! read only through `kv_write` and `paged_attention`.
use crate::batch::SeqAttention;
use crate::error::Result;
use crate::kv_rows::KvRows;
use crate::projection::{run_linear_job, split_heads, LinearJob, NormedInput};
use crate::short_conv::short_conv_via_rows;
pub use crate::short_conv::{ConvTaps, ShortConvWeights};
use crate::weights::HostWeight;

/// Facts about a device, for logs, `candor devices` and benchmark fingerprints.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeviceInfo {
    pub name: String,
    /// Who made it, when the device says (a plugin's `vendor`, NVIDIA for CUDA).
    pub vendor: Option<String>,
    pub kind: String,
    pub memory_total_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
    /// ISA flags (avx2, fma, neon...) or a compute capability.
    pub features: Vec<String>,
    pub threads: Option<usize>,
}

/// An op a backend may or may not support, with the facts that decide it.
#[derive(Debug, Clone, PartialEq)]
pub enum OpDesc {
    Embedding {
        weight_dtype: WeightDtype,
    },
    RmsNorm,
    /// LayerNorm (rows centered before they are scaled), with or without a bias.
    LayerNorm,
    Linear {
        weight_dtype: WeightDtype,
    },
    Rope {
        style: RopeStyle,
    },
    KvWrite,
    PagedAttention {
        head_dim: usize,
        sliding_window: bool,
        softcap: bool,
        /// A learned logit per head in every softmax (`AttentionParams::sinks`).
        sinks: bool,
        /// ALiBi slopes (`AttentionParams::alibi`).
        alibi: bool,
    },
    Glu {
        act: Activation,
    },
    Add,
    Mul,
    Scale,
    Softmax,
    GatherRows,
    Argmax,
    /// `heads_linear`: a product per head, each with its own matrix.
    HeadsLinear,
}

/// Storage type of a weight as it came from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
    Q4_0,
    Q8_0,
    Q5_0,
    Q4K,
    Q5K,
    Q6K,
    Q4_1,
    Q5_1,
    Q2K,
    Q3K,
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            WeightDtype::F32 => "F32",
            WeightDtype::F16 => "F16",
            WeightDtype::BF16 => "BF16",
            WeightDtype::Q4_0 => "Q4_0",
            WeightDtype::Q8_0 => "Q8_0",
            WeightDtype::Q5_0 => "Q5_0",
            WeightDtype::Q4K => "Q4_K",
            WeightDtype::Q5K => "Q5_K",
            WeightDtype::Q6K => "Q6_K",
            WeightDtype::Q4_1 => "Q4_1",
            WeightDtype::Q5_1 => "Q5_1",
            WeightDtype::Q2K => "Q2_K",
            WeightDtype::Q3K => "Q3_K",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
    /// The exact GELU, `0.5·x·(1 + erf(x/√2))` (transformers' `gelu`: GPT-NeoX).
    GeluErf,
    /// The squared ReLU, `max(x, 0)²` (transformers' `relu2`: Nemotron).
    Relu2,
    /// The plain ReLU, `max(x, 0)` (transformers' `relu`: OPT).
    Relu,
    /// gpt-oss's clamped SwiGLU: with g = min(gate, 7) and u = clamp(up, -7, 7),
    /// `g · sigmoid(1.702 g) · (u + 1)`. The constants are the model's, fixed in transformers'
    /// and llama.cpp's code alike (no config or GGUF key carries them), so each kernel holds
    /// them as they do.
    SwigluOai,
}

/// `act` where it applies alone (`Backend::activate`, the ungated FFNs): gpt-oss's SwiGLU,
/// gated, is refused.
pub fn ungated(act: Activation) -> Result<Activation> {
    match act {
        Activation::SwigluOai => Err(crate::error::ModelError::Config(
            "gpt-oss's SwiGLU is gated: it has no activation alone".into(),
        )),
        other => Ok(other),
    }
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RopeStyle {
    /// Dimension i pairs with i + d/2 (HF `rotate_half`, GGUF qwen2/gemma3: "neox").
    Neox,
    /// Dimension 2i pairs with 2i+1 (GGUF llama after the converter's permutation: "normal").
    Interleaved,
}

/// What a rope op needs: the inverse frequencies (scaling already applied) and the pairing.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    pub inv_freq: Vec<f32>,
    pub style: RopeStyle,
    /// Multiplier applied to cos/sin (YaRN-style attention factor; 1.0 otherwise).
    pub mscale: f32,
}

/// Where a layer's rotated keys and its values go: the rotary embedding at each token's
/// position, and the cache of `layer` at each token's slot. What the ops between a layer's q/k/v
/// product and its attention need beside the product.
pub struct RopeKvWrite<'a, C> {
    pub positions: &'a [u32],
    pub rope: &'a RopeSpec,
    pub cache: &'a mut C,
    pub layer: usize,
    pub slots: &'a [u32],
}

impl<C> RopeKvWrite<'_, C> {
    /// The same destination for one op, keeping this one for another (an op that may decline
    /// and leave the work to others).
    pub fn reborrow(&mut self) -> RopeKvWrite<'_, C> {
        RopeKvWrite {
            positions: self.positions,
            rope: self.rope,
            cache: &mut *self.cache,
            layer: self.layer,
            slots: self.slots,
        }
    }
}

/// The columns of a joined q/k/v product: `heads` q heads, then `kv_heads` k heads, then
/// `kv_heads` v heads, each `head_dim` wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QkvHeads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl QkvHeads {
    /// The q, k and v widths, in the product's column order.
    pub fn widths(&self) -> [usize; 3] {
        let kv = self.kv_heads * self.head_dim;
        [self.heads * self.head_dim, kv, kv]
    }
}

/// Static attention parameters of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionParams {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Keys visible to a query at position i: `i - W < j <= i` (HF semantics).
    pub sliding_window: Option<usize>,
    pub softcap: Option<f32>,
    /// One learned logit per query head that joins every softmax of that head as a key with
    /// no value (gpt-oss's "attention sinks"): each row's weights are
    /// `exp(s_j - m) / (exp(sink - m) + Σ exp(s_j - m))`, so a head may attend to nothing.
    /// In the units of the scaled (and capped) scores.
    pub sinks: Option<std::sync::Arc<[f32]>>,
    /// ALiBi positions (BLOOM, MPT, Falcon-RW): one slope per query head; a query at position
    /// i adds `slope · (j − i)` to its score of key j, in the units of the scaled (and capped)
    /// scores. The models' own biases (`slope · j`, or `slope · (j − last)`) differ from it by
    /// a constant per query row, which the softmax drops.
    pub alibi: Option<std::sync::Arc<[f32]>>,
}

impl AttentionParams {
    /// Why the per-head floats (sinks, ALiBi slopes) do not fit the heads, if they do not:
    /// every backend reads one of each per query head.
    pub fn per_head_mismatch(&self) -> Option<String> {
        [("sinks", &self.sinks), ("ALiBi slopes", &self.alibi)]
            .into_iter()
            .find_map(|(what, values)| {
                let n = values.as_ref()?.len();
                (n != self.num_heads)
                    .then(|| format!("attention: {n} {what} for {} heads", self.num_heads))
            })
    }
}

/// Shape of the paged KV cache.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCacheSpec {
    pub num_layers: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Per layer (or none at all), a vector of `num_kv_heads × head_dim` a cache that rounds
    /// keys coarsely may subtract from every key row it stores: attention over the shifted
    /// keys is the same (`key_offset`), their rounding finer.
    pub key_offsets: Vec<Option<Vec<f32>>>,
}

impl KvCacheSpec {
    /// Values of K (or V) one block holds in one layer.
    pub fn block_values(&self) -> usize {
        self.block_size * self.num_kv_heads * self.head_dim
    }

    /// `copy_kv_blocks`' pairs, refused whole if one names a block past the cache.
    pub fn check_block_copies(&self, copies: &[(u32, u32)]) -> Result<()> {
        let past = |b: u32| b as usize >= self.num_blocks;
        match copies.iter().find(|&&(s, d)| past(s) || past(d)) {
            Some((s, d)) => Err(crate::error::ModelError::Backend(format!(
                "copy_kv_blocks: block {s} to {d} in a cache of {}",
                self.num_blocks
            ))),
            None => Ok(()),
        }
    }
}

fn no_kv_rows(device: &DeviceInfo) -> crate::error::ModelError {
    crate::error::ModelError::Backend(format!(
        "the {} backend cannot read or write its KV cache's rows",
        device.kind
    ))
}

/// The op-level device interface. Every op has a CPU reference implementation.
///
/// Shapes: activations are 2-D `[tokens, features]` or 3-D `[tokens, heads, head_dim]`,
/// row-major. `linear` multiplies by the transpose of a `[out, in]` weight (PyTorch layout).
pub trait Backend: Send + Sync + 'static {
    type Tensor: Clone + Send + Sync + std::fmt::Debug;
    type Weight: Send + Sync;
    type KvCache: Send;

    fn info(&self) -> DeviceInfo;
    /// Whether the op runs on this device as described. Never panics.
    fn supports(&self, op: &OpDesc) -> bool;

    // ---- memory ----
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Self::Tensor>;
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>>;
    fn shape(&self, t: &Self::Tensor) -> Vec<usize>;
    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Take a host weight (possibly quantized) into the device's preferred layout.
    fn load_weight(&self, w: HostWeight) -> Result<Self::Weight>;
    fn weight_shape(&self, w: &Self::Weight) -> Vec<usize>;
    fn alloc_kv_cache(&self, spec: &KvCacheSpec) -> Result<Self::KvCache>;
    /// Bytes per cached K or V value in the caches `alloc_kv_cache` makes (4 for f32, 34/32
    /// for q8_0 blocks). Decode reads the whole cache of each sequence every step, so
    /// benchmark reports count it in the bytes a token costs.
    fn kv_bytes_per_value(&self) -> f64;
    /// For each `(src, dst)` pair, every layer's K and V of cache block `src` copied over block
    /// `dst` (blocks of `KvCacheSpec::block_size` slots). The prefix cache gives a sequence
    /// whose prompt starts like a cached block, without filling it, a private copy to write
    /// its own tokens into past the shared ones. An error leaves `dst` unspecified.
    fn copy_kv_blocks(&self, cache: &mut Self::KvCache, copies: &[(u32, u32)]) -> Result<()>;
    /// Every layer's K and V rows of cache `slots`, as the cache stores them (`KvRows`): a
    /// prompt cache saved to disk. Backends that cannot (the default) say so.
    fn read_kv_rows(&self, cache: &Self::KvCache, slots: &[u32]) -> Result<KvRows> {
        let _ = (cache, slots);
        Err(no_kv_rows(&self.info()))
    }
    /// `rows` (as `read_kv_rows` returned them, from a cache of the same encoding and row
    /// width) written back to `slots`, one row per slot. Refused whole if they do not fit.
    fn write_kv_rows(&self, cache: &mut Self::KvCache, slots: &[u32], rows: &KvRows) -> Result<()> {
        let _ = (cache, slots, rows);
        Err(no_kv_rows(&self.info()))
    }

    // ---- ops ----
    /// Rows of `table` ([vocab, hidden]) for `ids` → `[ids.len(), hidden]`.
    fn embedding(&self, table: &Self::Weight, ids: &[u32]) -> Result<Self::Tensor>;
    /// RMSNorm over the last dimension, times `w`.
    fn rms_norm(&self, x: &Self::Tensor, w: &Self::Weight, eps: f32) -> Result<Self::Tensor>;
    /// `sum = x + residual; (sum, rms_norm(sum))`, fused where the device can.
    fn add_rms_norm(
        &self,
        x: &Self::Tensor,
        residual: &Self::Tensor,
        w: &Self::Weight,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// LayerNorm over the last dimension (the row's mean taken out, scaled to unit variance),
    /// times `w`, plus `bias` where the model has one.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// `x @ w^T (+ bias)`; `x` is `[tokens, in]`, `w` is `[out, in]`.
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
    ) -> Result<Self::Tensor>;
    /// `act(x)` elementwise, for the ungated FFNs (StarCoder2): by default the GLU with an up
    /// of ones (one upload); backends with the activation alone override it.
    fn activate(&self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor> {
        let act = ungated(act)?;
        let shape = self.shape(x);
        let ones = self.upload(&vec![1.0; shape.iter().product()], &shape)?;
        self.glu(x, &ones, act)
    }
    /// `x` clamped to `[-limit, limit]` elementwise (OLMo's `clip_qkv`). By default on the
    /// host: read back, clamped, uploaded; backends with the op override it.
    fn clamp(&self, x: &Self::Tensor, limit: f32) -> Result<Self::Tensor> {
        clamp_on_host(self, x, limit)
    }
    /// xIELU of `x` elementwise with one layer's numbers (Apertus). By default on the host:
    /// read back, applied, uploaded (one layer's FFN width per token); backends with the op
    /// override it.
    fn xielu(&self, x: &Self::Tensor, p: &crate::xielu::XieluParams) -> Result<Self::Tensor> {
        xielu_on_host(self, x, p)
    }
    /// `x · sigmoid(gate)` elementwise, `gate` holding `x`'s count of values in `x`'s order
    /// whatever its shape (Qwen3-Next's gated attention output). By default on the host: read
    /// back, applied, uploaded; backends with the ops override it.
    fn mul_sigmoid(&self, x: &Self::Tensor, gate: &Self::Tensor) -> Result<Self::Tensor> {
        mul_sigmoid_on_host(self, x, gate)
    }
    /// Each row of `x` (its last dimension) quantized to `bits`-bit integers by its largest
    /// magnitude and back (BitNet's activations: `activation_quant::quantize_row`). By default
    /// on the host: read back, quantized, uploaded; backends with the ops override it.
    fn quantize_rows(&self, x: &Self::Tensor, bits: u32) -> Result<Self::Tensor> {
        quantize_rows_on_host(self, x, bits)
    }
    /// Rotary embedding of `x` (`[tokens, heads, head_dim]`) at per-token `positions`.
    fn rope(&self, x: &Self::Tensor, positions: &[u32], rope: &RopeSpec) -> Result<Self::Tensor>;
    /// Write `k`, `v` (`[tokens, kv_heads, head_dim]`) into the cache of `layer` at `slots`.
    fn kv_write(
        &self,
        cache: &mut Self::KvCache,
        layer: usize,
        k: &Self::Tensor,
        v: &Self::Tensor,
        slots: &[u32],
    ) -> Result<()>;
    /// RoPE of `q` and `k`, and the rotated `k` with `v` written into the cache (`kv` says at
    /// which positions, where); returns the rotated `q`. The three ops every layer runs between
    /// its q/k/v product and attention: a backend may do them in one pass (CUDA: one launch
    /// per layer instead of three); the default runs `rope`, `rope` and `kv_write`.
    fn rope_qk_write_kv(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        kv: RopeKvWrite<'_, Self::KvCache>,
    ) -> Result<Self::Tensor> {
        let q = self.rope(q, kv.positions, kv.rope)?;
        let k = self.rope(k, kv.positions, kv.rope)?;
        self.kv_write(kv.cache, kv.layer, &k, v, kv.slots)?;
        Ok(q)
    }
    /// Causal attention of `q` (`[tokens, heads, head_dim]`) over each sequence's cached keys
    /// (the new ones included: `kv_write` comes first) → `[tokens, heads * head_dim]`.
    fn paged_attention(
        &self,
        q: &Self::Tensor,
        cache: &Self::KvCache,
        layer: usize,
        seqs: &[SeqAttention],
        block_size: usize,
        params: &AttentionParams,
    ) -> Result<Self::Tensor>;
    /// A short-convolution layer's outputs (`[tokens, width]`, LFM2): each token's `kernel`
    /// taps read from the cache (`kv_write` put this step's inputs there first; see
    /// `short_conv`), weighted per channel. The default reads the tapped rows back to the host
    /// (`read_kv_rows`) and convolves there: right on every backend that can read its cache's
    /// rows, at a round trip per layer and step where the device has no kernel of its own.
    fn short_conv(
        &self,
        cache: &Self::KvCache,
        taps: &ConvTaps<'_>,
        w: &ShortConvWeights,
    ) -> Result<Self::Tensor> {
        short_conv_via_rows(self, cache, taps, w)
    }
    /// `act(gate) * up`.
    fn glu(&self, gate: &Self::Tensor, up: &Self::Tensor, act: Activation) -> Result<Self::Tensor>;
    /// The RMSNorm of `x` (with `residual`: of `x + residual`) by `norm`, times `w` (+ `bias`):
    /// the layer's norm and the projection that reads it. Returns the residual stream's next
    /// value (`x + residual` as `add_rms_norm` returns it; `x` itself without a residual) and
    /// the product. A backend may normalize as the product reads its input (CUDA at decode: no
    /// launch for the norm, the normalized rows never written out); the default runs the norm
    /// then `linear` (`rms_norm_then_linear`).
    fn rms_norm_linear(
        &self,
        input: NormedInput<'_, Self>,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        rms_norm_then_linear(self, input, w, bias)
    }
    /// A layer's attention input from the residual stream, as one op: the RMSNorm of `input`,
    /// its product with the joined q/k/v weight `w` (+ `bias`; columns as `heads` lays them
    /// out), RoPE of q and k, and k and v written into the cache (`kv`). Returns the residual
    /// stream's next value (as `rms_norm_linear`) and the rotated q, `[tokens, heads,
    /// head_dim]`. A backend may finish the product's columns where it computes them (CUDA at
    /// decode: the q/k/v never written out, one launch for the norm, the product, RoPE and
    /// the KV write); the default runs `rms_norm_linear` then `rope_qk_write_kv` on views of
    /// its q, k and v heads (`qkv_rope_write_kv`), so a backend that overrides neither needs
    /// `split`.
    fn rms_norm_qkv_rope_write_kv(
        &self,
        input: NormedInput<'_, Self>,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
        heads: QkvHeads,
        kv: RopeKvWrite<'_, Self::KvCache>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let (stream, qkv) = self.rms_norm_linear(input, w, bias)?;
        Ok((stream, qkv_rope_write_kv(self, &qkv, heads, kv)?))
    }
    /// `glu(gate, up, act)` times `w` (the FFN's down projection), the GLU rounded to the
    /// activation dtype first as `glu` leaves it. A backend may apply the GLU as the product
    /// reads its input (CUDA at decode: one launch per layer fewer, and the GLU never written
    /// out); the default runs `glu` then `linear` (`glu_then_linear`).
    fn glu_linear(
        &self,
        gate: &Self::Tensor,
        up: &Self::Tensor,
        act: Activation,
        w: &Self::Weight,
    ) -> Result<Self::Tensor> {
        glu_then_linear(self, gate, up, act, w)
    }
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    fn scale(&self, x: &Self::Tensor, s: f32) -> Result<Self::Tensor>;
    /// `cap * tanh(x / cap)`.
    fn softcap(&self, x: &Self::Tensor, cap: f32) -> Result<Self::Tensor>;
    /// Softmax over the last dimension.
    fn softmax(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Rows `rows` of a 2-D tensor.
    fn gather_rows(&self, x: &Self::Tensor, rows: &[u32]) -> Result<Self::Tensor>;
    /// Index of the largest value of each row of a 2-D tensor.
    fn argmax(&self, x: &Self::Tensor) -> Result<Vec<u32>>;
    /// Per-head products: head h of `x` (`[tokens, heads, in]`) times the transpose of matrix
    /// h of `w` (`[heads, out, in]`) → `[tokens, heads, out]`. Latent attention's
    /// up-projections applied in the latent space (one small matrix per head, as a batched
    /// GEMM). Backends without it (the default refuses) run latent attention expanded.
    fn heads_linear(&self, x: &Self::Tensor, w: &Self::Weight) -> Result<Self::Tensor> {
        let _ = (x, w);
        Err(crate::error::ModelError::Backend(
            "this backend has no per-head products (heads_linear)".into(),
        ))
    }
    /// Each job's product (`linear`, or `glu_linear` for a GLU input), in order. The CPU runs
    /// the quantized ones the kernels take in one parallel region (a mixture of experts'
    /// chosen experts; q, k and v or gate and up kept apart), where one small product after
    /// another would each wake the threads and wait for the slowest; the default runs them
    /// one by one (`run_linear_job`).
    fn linear_many(&self, jobs: &[LinearJob<'_, Self>]) -> Result<Vec<Self::Tensor>> {
        jobs.iter().map(|j| run_linear_job(self, j)).collect()
    }
    /// `acc` (`[rows, width]`) with row i of `x` (`[rows.len(), width]`) times `weights[i]`
    /// added to its row `rows[i]`: a mixture of experts adding one expert's output to the
    /// tokens routed to it. The default goes through host memory (the sums are the same in
    /// every order: each row of `acc` takes one addition per call).
    fn add_rows_scaled(
        &self,
        acc: &Self::Tensor,
        rows: &[u32],
        x: &Self::Tensor,
        weights: &[f32],
    ) -> Result<Self::Tensor> {
        let shape = self.shape(acc);
        let mut sums = self.download(acc)?;
        let values = self.download(x)?;
        crate::moe::add_rows_scaled_host(&mut sums, &shape, rows, &values, weights)?;
        self.upload(&sums, &shape)
    }

    /// One weight holding the rows of `parts` in order (`[Σ out, in]`; vectors end to end), so
    /// projections that read the same input (q, k and v; gate and up) run as one product: one
    /// launch instead of three on a GPU, and one larger GEMM. None (the default) where this
    /// backend keeps them apart, or cannot join these layouts without a second resident copy
    /// (weights read in place from a mapped file). A backend that joins weights implements
    /// `split`.
    fn concat_weights(&self, parts: &[&Self::Weight]) -> Result<Option<Self::Weight>> {
        let _ = parts;
        Ok(None)
    }

    /// Whether `split` works here: a backend without it is given the members of a projection
    /// a file stores joined (Phi-3's, Falcon's q/k/v) as weights of their own.
    fn splits_outputs(&self) -> bool {
        false
    }

    /// Consecutive ranges of dimension 1 (`sizes` long, summing to it) of a 2-D `[tokens,
    /// features]` or 3-D `[tokens, heads, head_dim]` tensor: the outputs of a joined
    /// projection, as columns or as heads. Views where the backend has them (the ops that take
    /// them read rows at a stride), copies otherwise.
    fn split(&self, x: &Self::Tensor, sizes: &[usize]) -> Result<Vec<Self::Tensor>> {
        let _ = (x, sizes);
        Err(crate::error::ModelError::Backend(
            "this backend does not join projections, so it has no split".into(),
        ))
    }

    /// Wait until every op issued so far has finished. Backends whose ops return only when
    /// done (the CPU) need nothing; queued devices (CUDA streams, plugins) wait here. Used to
    /// time single ops (`candor bench --profile-ops`), never on the serving path.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    /// Run `step` (one model step: a forward and the reading back of its outputs) where this
    /// backend issues its ops best. The CPU runs it on a thread of its compute pool, so each
    /// parallel op inside starts on a thread that is already awake, where from any other
    /// thread every op would wake a worker and put the caller to sleep until the op ends (two
    /// wake-ups an op, hundreds of ops a token); others run it in place (the default).
    fn run_step<R: Send>(&self, step: impl FnOnce() -> R + Send) -> R {
        step()
    }

    /// Ops this backend handed to another device since it was created (a plugin's CPU
    /// fallback), as (op name, count) for those that did; empty for a backend that runs every
    /// op itself.
    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// RoPE and the KV write of a joined q/k/v product `qkv` (`[tokens, Σ widths]`, columns as
/// `heads` lays them out), read as views of its q, k and v heads; returns the rotated q.
pub fn qkv_rope_write_kv<B: Backend + ?Sized>(
    b: &B,
    qkv: &B::Tensor,
    heads: QkvHeads,
    kv: RopeKvWrite<'_, B::KvCache>,
) -> Result<B::Tensor> {
    let [q, k, v] = split_heads(b, qkv, &heads.widths(), heads.head_dim)?;
    b.rope_qk_write_kv(&q, &k, &v, kv)
}

/// `Backend::glu_linear` as two ops: the GLU, then the product.
pub fn glu_then_linear<B: Backend + ?Sized>(
    b: &B,
    gate: &B::Tensor,
    up: &B::Tensor,
    act: Activation,
    w: &B::Weight,
) -> Result<B::Tensor> {
    let m = b.glu(gate, up, act)?;
    b.linear(&m, w, None)
}

/// `Backend::rms_norm_linear` as two ops: the (fused add +) RMSNorm, then the product.
/// `Backend::clamp` on the host: `x` read back, clamped, uploaded.
fn clamp_on_host<B: Backend + ?Sized>(b: &B, x: &B::Tensor, limit: f32) -> Result<B::Tensor> {
    let shape = b.shape(x);
    let mut values = b.download(x)?;
    values.iter_mut().for_each(|v| *v = v.clamp(-limit, limit));
    b.upload(&values, &shape)
}

/// `Backend::mul_sigmoid` on the host: `x` and `gate` read back, multiplied, uploaded in
/// `x`'s shape.
fn mul_sigmoid_on_host<B: Backend + ?Sized>(
    b: &B,
    x: &B::Tensor,
    gate: &B::Tensor,
) -> Result<B::Tensor> {
    let shape = b.shape(x);
    let mut values = b.download(x)?;
    let gate = b.download(gate)?;
    if gate.len() != values.len() {
        return Err(crate::error::ModelError::Backend(format!(
            "mul_sigmoid: {} gate values for {} values",
            gate.len(),
            values.len()
        )));
    }
    for (v, g) in values.iter_mut().zip(gate) {
        *v /= 1.0 + (-g).exp();
    }
    b.upload(&values, &shape)
}

/// `Backend::quantize_rows` on the host: `x` read back, quantized, uploaded.
fn quantize_rows_on_host<B: Backend + ?Sized>(
    b: &B,
    x: &B::Tensor,
    bits: u32,
) -> Result<B::Tensor> {
    let shape = b.shape(x);
    let mut values = b.download(x)?;
    let cols = shape.last().copied().unwrap_or(1);
    crate::activation_quant::quantize_rows(&mut values, cols, bits);
    b.upload(&values, &shape)
}

/// `Backend::xielu` on the host: `x` read back, applied, uploaded.
fn xielu_on_host<B: Backend + ?Sized>(
    b: &B,
    x: &B::Tensor,
    p: &crate::xielu::XieluParams,
) -> Result<B::Tensor> {
    let shape = b.shape(x);
    let mut values = b.download(x)?;
    values.iter_mut().for_each(|v| *v = p.apply(*v));
    b.upload(&values, &shape)
}

pub fn rms_norm_then_linear<B: Backend + ?Sized>(
    b: &B,
    input: NormedInput<'_, B>,
    w: &B::Weight,
    bias: Option<&B::Weight>,
) -> Result<(B::Tensor, B::Tensor)> {
    let (stream, h) = input.normed(b)?;
    Ok((stream, b.linear(&h, w, bias)?))
}

/// The RMSNorm of `x` (with `residual`: of `x + residual`, by `add_rms_norm`), and the residual
/// stream's next value (the sum, or `x` itself).
pub fn rms_norm_maybe_add<B: Backend + ?Sized>(
    b: &B,
    x: &B::Tensor,
    residual: Option<&B::Tensor>,
    norm: &B::Weight,
    eps: f32,
) -> Result<(B::Tensor, B::Tensor)> {
    match residual {
        Some(r) => b.add_rms_norm(x, r, norm, eps),
        None => Ok((x.clone(), b.rms_norm(x, norm, eps)?)),
    }
}
