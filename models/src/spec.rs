//! The hyper-parameters of a decoder-only transformer, independent of file format.
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma3,
    /// Gemma 2: Gemma 3 without q/k norms, with logit softcaps, one RoPE base.
    Gemma2,
    /// Gemma (1) and CodeGemma: Gemma 2's layers without the norms after attention and the FFN,
    /// every layer global, no softcaps.
    Gemma,
    Phi3,
    /// DeepSeek-V2 and V3 (and their kin: Kimi K2, Moonlight): latent attention and experts.
    Deepseek,
    /// GLM-4.5 / 4.6 (and -Air): DeepSeek-V3's experts behind grouped-query attention with
    /// biases, RoPE over half of each head.
    Glm4Moe,
    /// OLMoE: llama with q/k norms over the whole projections and softmax experts.
    Olmoe,
    /// MiniMax-M2: q/k norms over the whole projections, RoPE over part of each head, sigmoid
    /// experts chosen with a correction bias in every layer.
    MinimaxM2,
    Llama4,
    /// Qwen3-Next: gated DeltaNet layers between gated attention layers, Qwen2-MoE's experts.
    Qwen3Next,
    /// Qwen3.5: Qwen3-Next's layers, its FFN dense (`Qwen35`) or experts (`Qwen35Moe`).
    Qwen35,
    Qwen35Moe,
    /// Granite 4.0-H: Mamba-2 layers with an attention layer every so often.
    GraniteMoeHybrid,
    Mistral4,
    SolarOpen,
    ExaoneMoe,
    FlexOlmo,
    /// OLMo 2: q/k norms over the whole projections, norms after attention and the FFN only.
    Olmo2,
    /// OLMo 3: OLMo 2 with sliding-window layers, whose RoPE is never scaled.
    Olmo3,
    /// OLMo Hybrid: gated DeltaNet layers (pre-norm) among OLMo 3's post-norm attention
    /// layers.
    OlmoHybrid,
    /// gpt-oss: attention sinks, alternating sliding-window layers, biased experts with a
    /// clamped SwiGLU.
    GptOss,
    /// IBM Granite 3.x: llama with scaled embeddings, attention scores, residual branches and
    /// logits.
    Granite,
    /// Granite 3.x MoE: Granite with Mixtral's experts.
    GraniteMoe,
    /// SmolLM3: llama whose every fourth layer runs without RoPE.
    Smollm3,
    /// GLM-4 (dense): q/k/v biases, half-head interleaved RoPE, norms before and after both
    /// attention and the FFN.
    Glm4,
    /// ERNIE 4.5 (dense): llama with interleaved RoPE pairs.
    Ernie45,
    /// ERNIE 4.5's mixture of experts (21B-A3B, 300B-A47B).
    Ernie45Moe,
    /// Seed-OSS: llama with q/k/v biases.
    SeedOss,
    /// Hunyuan (dense): llama with per-head q/k norms after RoPE.
    HunyuanDense,
    /// Hunyuan's mixture of experts (Hunyuan-A13B).
    HunyuanMoe,
    /// EXAONE 4.0: OLMo 2's post-norms with per-head q/k norms; beside sliding layers, global
    /// layers without RoPE.
    Exaone4,
    /// Cohere's Command R (and Aya): parallel blocks of LayerNorms, interleaved RoPE, scaled
    /// logits.
    Cohere,
    /// Command R7B / Command A: Cohere with three sliding-window layers to one global, the
    /// global ones without RoPE.
    Cohere2,
    /// Phi-1 / 1.5 / 2: parallel blocks of LayerNorms with biases, biased projections and LM
    /// head, an ungated tanh-GELU MLP, RoPE over part of each head.
    Phi2,
    /// GPT-NeoX (Pythia and its kin): LayerNorms with biases, q/k/v in one product, RoPE over
    /// part of each head, an ungated exact-GELU MLP, parallel blocks with two norms (or
    /// sequential ones).
    GptNeox,
    /// StableLM (2): llama's projections and SwiGLU under LayerNorms with biases, RoPE over part
    /// of each head, sequential or parallel blocks.
    Stablelm,
    /// Nemotron: llama's attention with half-head RoPE under LayerNorms of `1 + w`, an ungated
    /// squared-ReLU MLP.
    Nemotron,
    /// Nemotron-H: layers of one mixer each (Mamba-2, attention without positions, a
    /// squared-ReLU MLP or experts).
    NemotronH,
    /// Mamba-2 alone: every layer a Mamba-2 mixer.
    Mamba2,
    /// Mamba-1 alone: every layer a Mamba-1 mixer.
    Mamba,
    /// Falcon Mamba: Mamba-1 layers with B, C and dt normed.
    FalconMamba,
    /// Cohere's mixture of experts: Command R7B's parallel blocks over dense prefix layers
    /// and experts beside shared ones.
    Cohere2Moe,
    /// Falcon-H1: attention and a Mamba-2 mixer side by side in every layer, muP multipliers.
    FalconH1,
    /// Granite with interleaved sliding windows and per-head sinks (IBM's "swash" models,
    /// dense or with Granite MoE's experts).
    GraniteSwa,
    /// Arcee's AFMoE (Trinity): llama's attention with per-head q/k norms and a sigmoid gate of
    /// its own product on its output, RoPE in the sliding layers only, norms before and after
    /// attention and FFN, DeepSeek-V3's experts past the dense layers.
    Afmoe,
    /// Jamba: Mamba-1 layers (B, C and dt normed with weights) beside attention layers
    /// without positions, Mixtral's experts in every other layer.
    Jamba,
    /// Bamba: Mamba-2 layers beside llama attention layers with partial RoPE.
    Bamba,
    /// Kimi Linear: Kimi Delta Attention and latent attention without positions, DeepSeek-V3's
    /// experts.
    KimiLinear,
    /// GPT-2: learned absolute positions, LayerNorms with biases, q/k/v in one biased product,
    /// an ungated tanh-GELU MLP, a tied head.
    Gpt2,
    /// GPT-BigCode (StarCoder 1, SantaCoder): GPT-2's blocks with multi-query attention.
    GptBigcode,
    /// OPT: GPT-2's blocks with q, k and v apart and an ungated ReLU MLP, positions offset by
    /// two rows of their table.
    Opt,
    /// BLOOM: ALiBi positions, a LayerNorm of the embeddings, GPT-NeoX's per-head q/k/v,
    /// biased LayerNorms and products, an ungated tanh-GELU MLP, a tied head.
    Bloom,
    /// MPT: ALiBi positions, LayerNorms and products without biases, an ungated GELU MLP,
    /// a tied head.
    Mpt,
    /// GPT-J: parallel blocks of one LayerNorm, interleaved RoPE over part of each head.
    Gptj,
    /// Phi-3.5-MoE: llama's attention with biases under LayerNorms, Mixtral's experts routed
    /// by sparsemixer, a head with a bias.
    PhiMoe,
    /// rednote's dots.llm1: Qwen3's attention, DeepSeek-V3's experts.
    Dots1,
    /// GLM-4-9B-chat (HF `glm`, llama.cpp `chatglm`): GLM-4's blocks without norms after.
    Glm,
    /// Apertus: llama's attention with q/k norms, an ungated MLP through xIELU.
    Apertus,
    /// OLMo (1): llama under LayerNorms without weights, q/k/v clamped.
    Olmo,
    /// Arcee's AFM: llama with an ungated squared-ReLU MLP.
    Arcee,
    /// MiniCPM: llama under Granite's μP scalings.
    MiniCpm,
    /// Falcon: parallel blocks (one norm, or one per branch), q/k/v grouped per KV head,
    /// multi-query at 7B, an ungated exact-GELU MLP.
    Falcon,
    /// StarCoder2: LayerNorms with biases, biased projections, an ungated tanh-GELU MLP.
    Starcoder2,
    /// Jais 2: LayerNorms with biases, biased projections, an ungated squared-ReLU MLP.
    Jais2,
    /// BitNet b1.58: llama's blocks with RMSNorms of the attention's and the GLU's outputs
    /// before their products, ternary products over 8-bit activations.
    BitNet,
    /// Liquid AI's LFM2: most layers mix tokens by a gated short convolution instead of
    /// attention; the others are llama's with per-head q/k norms.
    Lfm2,
    /// LFM2-MoE (LFM2-8B-A1B, LFM2-24B-A2B): LFM2's layers with experts past the first ones.
    Lfm2Moe,
    /// BERT-style bidirectional encoders (BERT, RoBERTa, XLM-RoBERTa): embeddings and
    /// classifiers, no generation (`crate::encoder`).
    Bert,
    /// NomicBERT (nomic-embed-text): a BERT-style encoder with rotary positions and SwiGLU;
    /// named as llama.cpp and Ollama name it.
    NomicBert,
    /// ModernBERT: a pre-norm encoder with GeGLU and local/global attention.
    ModernBert,
    /// GTE (Alibaba's `NewModel`): a BERT-style encoder with rotary positions and GeGLU.
    Gte,
    /// DistilBERT: BERT's layers, six of them, no token types, its own tensor names.
    DistilBert,
    /// A static embedding model (Model2Vec, sentence-transformers' `StaticEmbedding`): a
    /// table of token vectors and no layers (`crate::static_embedding`).
    StaticEmbedding,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma => "gemma",
            Arch::Phi3 => "phi3",
            Arch::Deepseek => "deepseek",
            Arch::Glm4 => "glm4",
            Arch::Ernie45 => "ernie4_5",
            Arch::Ernie45Moe => "ernie4_5-moe",
            Arch::SeedOss => "seed_oss",
            Arch::HunyuanDense => "hunyuan-dense",
            Arch::HunyuanMoe => "hunyuan-moe",
            Arch::Glm4Moe => "glm4moe",
            Arch::Olmoe => "olmoe",
            Arch::MinimaxM2 => "minimax-m2",
            Arch::Olmo2 => "olmo2",
            Arch::Olmo3 => "olmo3",
            Arch::OlmoHybrid => "olmo_hybrid",
            Arch::GptOss => "gpt-oss",
            Arch::Granite => "granite",
            Arch::GraniteMoe => "granitemoe",
            Arch::Smollm3 => "smollm3",
            Arch::Llama4 => "llama4",
            Arch::Qwen3Next => "qwen3next",
            Arch::Qwen35 => "qwen35",
            Arch::Qwen35Moe => "qwen35moe",
            Arch::GraniteMoeHybrid => "granitehybrid",
            Arch::Mistral4 => "mistral4",
            Arch::SolarOpen => "solar_open",
            Arch::ExaoneMoe => "exaone_moe",
            Arch::FlexOlmo => "flex_olmo",
            Arch::Exaone4 => "exaone4",
            Arch::Cohere => "command-r",
            Arch::Cohere2 => "cohere2",
            Arch::Phi2 => "phi2",
            Arch::GptNeox => "gptneox",
            Arch::Stablelm => "stablelm",
            Arch::Nemotron => "nemotron",
            Arch::NemotronH => "nemotron_h",
            Arch::Mamba2 => "mamba2",
            Arch::Mamba => "mamba",
            // llama.cpp converts Falcon Mamba as Mamba (`ssm.dt_b_c_rms` set).
            Arch::FalconMamba => "mamba",
            Arch::Jamba => "jamba",
            Arch::Afmoe => "afmoe",
            Arch::FalconH1 => "falcon-h1",
            Arch::Cohere2Moe => "cohere2moe",
            Arch::GraniteSwa => "granite_swa",
            // llama.cpp converts Bamba as Granite 4.0-H.
            Arch::Bamba => "granitehybrid",
            Arch::KimiLinear => "kimi_linear",
            Arch::Gpt2 => "gpt2",
            Arch::GptBigcode => "starcoder",
            Arch::Opt => "opt",
            Arch::Bloom => "bloom",
            Arch::Mpt => "mpt",
            Arch::Gptj => "gptj",
            Arch::PhiMoe => "phimoe",
            Arch::Falcon => "falcon",
            Arch::Arcee => "arcee",
            Arch::MiniCpm => "minicpm",
            Arch::Olmo => "olmo",
            Arch::Apertus => "apertus",
            Arch::Glm => "chatglm",
            Arch::Dots1 => "dots1",
            Arch::Starcoder2 => "starcoder2",
            Arch::Jais2 => "jais2",
            Arch::BitNet => "bitnet",
            Arch::Lfm2 => "lfm2",
            Arch::Lfm2Moe => "lfm2moe",
            Arch::Bert => "bert",
            Arch::NomicBert => "nomic-bert",
            Arch::ModernBert => "modern-bert",
            Arch::Gte => "gte",
            Arch::DistilBert => "distilbert",
            Arch::StaticEmbedding => "static-embedding",
        }
    }
}

/// How RoPE frequencies are stretched for long contexts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (HF "linear").
    Linear {
        factor: f32,
    },
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position: usize,
    },
    /// YaRN (HF "yarn"; Qwen2.5 long context, DeepSeek-V2/V3): frequencies below the
    /// `beta_slow` rotations over the original context interpolated by `factor`, those above
    /// `beta_fast` kept, a linear ramp between; cos/sin times `attention_factor`.
    Yarn {
        factor: f32,
        original_max_position: usize,
        beta_fast: f32,
        beta_slow: f32,
        /// Round the ramp's ends to whole dimensions (HF `truncate`, true by default).
        truncate: bool,
        attention_factor: f32,
    },
    /// LongRoPE (HF "longrope"; Phi-3 128k, Phi-3.5, Phi-4-mini): each frequency divided by
    /// its own factor, from `long_factor` when the context served passes
    /// `original_max_position` (`long`), else `short_factor`; cos/sin times
    /// `attention_factor` either way.
    LongRope {
        short_factor: Vec<f32>,
        long_factor: Vec<f32>,
        original_max_position: usize,
        attention_factor: f32,
        long: bool,
    },
}

impl RopeScaling {
    /// The scaling for a served context of `tokens`: LongRoPE's long factors past its original
    /// context, the short ones within it (as llama.cpp chooses, once, by the context it
    /// serves: a cache never mixes keys rotated both ways); the others as they are.
    pub fn for_context(&self, tokens: usize) -> RopeScaling {
        let mut out = self.clone();
        if let RopeScaling::LongRope {
            original_max_position,
            ref mut long,
            ..
        } = out
        {
            *long = tokens > original_max_position;
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RopeConfig {
    pub theta: f32,
    pub scaling: RopeScaling,
    pub style: RopeStyle,
}

/// Multi-head latent attention (DeepSeek-V2/V3): each token's keys and values are made from a
/// small latent (`kv_lora_rank` wide) and one rotated key part shared by every head; queries
/// go through a latent of their own (`q_lora_rank`) or straight. Each head's q and k are a
/// part without RoPE (`qk_nope_head_dim`) then a rotated part (`qk_rope_head_dim`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatentAttention {
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
}

impl LatentAttention {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }
}

/// Llama 4's attention temperature tuning (transformers' `attn_temperature_tuning`,
/// `get_llama_4_attn_scale` as Ministral 3 runs it, llama.cpp's `attn_temp`): each query,
/// after RoPE, times `1 + beta · ln(1 + floor((position + offset) / length))`, which is 1
/// below `length` (the YaRN original context, 16,384 in Ministral 3; Llama 4's
/// `floor_scale`, 8,192) and grows by steps past it, sharpening the attention of far positions
/// as the context stretches.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AttnTemperature {
    pub beta: f32,
    pub length: usize,
    /// Added to the position first: 1 in Llama 4, 0 in Ministral 3.
    pub offset: usize,
    /// Only the layers without RoPE scale their queries (Llama 4's NoPE layers); else all.
    pub unrotated_only: bool,
}

impl AttnTemperature {
    /// Ministral 3's: every layer's queries, by their positions as they are.
    pub fn every_layer(beta: f32, length: usize) -> Self {
        AttnTemperature {
            beta,
            length,
            offset: 0,
            unrotated_only: false,
        }
    }

    /// The factor of a query at `position`.
    pub fn at(&self, position: u32) -> f32 {
        let steps = ((position as usize + self.offset) / self.length.max(1)) as f32;
        1.0 + self.beta * steps.ln_1p()
    }
}

/// LFM2's gated short convolutions: `out(C · conv(B · x))` with B, C and x one product of
/// the normed stream (`in_proj`, `[3 × hidden, hidden]`) and `conv` a causal depthwise
/// convolution over the last `kernel` tokens (HF `conv_L_cache`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShortConv {
    /// Per layer, whether it runs the convolution (the others attend).
    pub layers: Vec<bool>,
    pub kernel: usize,
    /// `in_proj`, the convolution and `out_proj` have biases (HF `conv_bias`).
    pub bias: bool,
}

/// Gated DeltaNet layers (Qwen3-Next, Qwen3.5): linear attention whose memory of the past is
/// a per-sequence state (`crate::gated_delta_net`) instead of KV rows. q, k and v pass a
/// causal depthwise convolution (`conv_kernel` taps, SiLU) first; value heads share the key
/// heads in runs of `value_heads / key_heads`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinearAttention {
    /// Per layer, whether it is a gated DeltaNet layer (the others attend).
    pub layers: Vec<bool>,
    pub key_heads: usize,
    pub value_heads: usize,
    pub key_dim: usize,
    pub value_dim: usize,
    pub conv_kernel: usize,
    /// The value heads are laid out tiled over the key heads (value head `j` reads key head
    /// `j % key_heads`: llama.cpp's Qwen3.5 GGUFs), not in runs (`j / (value_heads /
    /// key_heads)`: the checkouts, Qwen3-Next's GGUFs).
    pub value_heads_tiled: bool,
    /// Kimi Delta Attention (Kimi Linear; `crate::kimi_delta`): q, k, v apart, the decay per
    /// key channel from a low-rank forget gate, the output times a low-rank sigmoid gate.
    pub channel_decay: bool,
    /// β = this × sigmoid(b): 2 where the model allows negative eigenvalues (OLMo Hybrid's
    /// `linear_allow_neg_eigval`), else 1.
    pub beta_scale: f32,
    /// The gated output norm's epsilon where it is not the model's (OLMo Hybrid's 1e-5, FLA's
    /// default).
    pub norm_eps: Option<f32>,
}

impl LinearAttention {
    /// Channels of the convolution: q, k (`key_heads · key_dim` each), then v.
    pub fn conv_channels(&self) -> usize {
        2 * self.key_heads * self.key_dim + self.value_heads * self.value_dim
    }
    /// One layer's state per sequence: `(conv values, recurrent values)`.
    pub fn state_sizes(&self) -> (usize, usize) {
        (
            self.conv_kernel.saturating_sub(1) * self.conv_channels(),
            self.value_heads * self.key_dim * self.value_dim,
        )
    }
}

/// Mamba-2 layers (Granite 4.0-H, Nemotron-H): a selective state-space model whose memory of the past is
/// a per-sequence state (`crate::mamba2`). `heads` heads of `head_dim` channels (`inner` in
/// all) keep `[head_dim, state]` matrices; B and C are shared by the heads of each of
/// `groups` groups.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mamba2 {
    /// Per layer, whether it is a Mamba-2 layer (the others attend).
    pub layers: Vec<bool>,
    pub heads: usize,
    pub head_dim: usize,
    pub groups: usize,
    pub state: usize,
    pub conv_kernel: usize,
    /// The gated norm's groups of channels (the whole `inner` in Granite 4.0-H's checkouts,
    /// `inner / groups` in Nemotron-H's).
    pub norm_group: usize,
    /// The range each step dt is clamped to after its softplus (transformers'
    /// `time_step_limit`; `(0, ∞)`, the default, changes nothing).
    pub dt_limit: (f32, f32),
    /// Where the output's RMSNorm stands against its gate silu(z).
    pub gated_norm: GatedNorm,
}

/// How a Mamba-2 layer's output meets its gate silu(z) and its RMSNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum GatedNorm {
    /// norm(y · silu(z)): Mamba-2's own (transformers' `MambaRMSNormGated`).
    AfterGate,
    /// norm(y) · silu(z) (Falcon-H1's `mamba_norm_before_gate`).
    BeforeGate,
    /// y · silu(z) without a norm (Falcon-H1 without `mamba_rms_norm`).
    None,
}

/// Rows of a stored weight scaled at load: muP multipliers a checkout keeps apart from its
/// weights (Falcon-H1's; llama.cpp's converter folds them into its GGUFs).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WeightScale {
    /// The canonical tensor name after `blk.N.` (`attn_k.weight`), in every layer.
    pub tensor: &'static str,
    /// Consecutive runs of rows and their scale, in order; the last run covers whatever rows
    /// remain.
    pub runs: Vec<(usize, f32)>,
}

impl Mamba2 {
    /// The heads' channels: `heads · head_dim`.
    pub fn inner(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Channels of the convolution: x, then B and C of every group.
    pub fn conv_channels(&self) -> usize {
        self.inner() + 2 * self.groups * self.state
    }
    /// One layer's state per sequence: `(conv values, recurrent values)`.
    pub fn state_sizes(&self) -> (usize, usize) {
        (
            self.conv_kernel.saturating_sub(1) * self.conv_channels(),
            self.heads * self.head_dim * self.state,
        )
    }
}

/// What a layer holds where a model's layers may hold one of the usual two sublayers only
/// (Nemotron-H: each layer one mixer after one norm: Mamba-2, attention, an MLP or experts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LayerParts {
    /// Its mixing of tokens (attention or a recurrence), then its FFN.
    Both,
    /// Its mixing of tokens only.
    MixerOnly,
    /// Its FFN only.
    FfnOnly,
}

/// Mamba-1 layers (Mamba, Falcon Mamba): a selective scan whose every channel keeps its own
/// `state`-wide memory (`crate::mamba1`); dt comes through a rank-`dt_rank` pair of products,
/// B and C are shared by the channels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mamba1 {
    /// Per layer, whether it is a Mamba-1 layer.
    pub layers: Vec<bool>,
    pub inner: usize,
    pub state: usize,
    pub dt_rank: usize,
    pub conv_kernel: usize,
    /// Falcon Mamba and Jamba: B, C and dt's low-rank input RMS-normed by this epsilon.
    pub bcdt_norm: Option<f32>,
    /// Jamba: those norms have weights (`ssm_dt_norm`, `ssm_b_norm`, `ssm_c_norm`); Falcon
    /// Mamba's have none.
    pub bcdt_norm_weights: bool,
}

impl Mamba1 {
    /// One layer's state per sequence: `(conv values, recurrent values)`.
    pub fn state_sizes(&self) -> (usize, usize) {
        (
            self.conv_kernel.saturating_sub(1) * self.inner,
            self.inner * self.state,
        )
    }
}

/// How a router turns its logits into expert scores.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum ExpertScoring {
    Softmax,
    Sigmoid,
    /// Phi-3.5-MoE's sparsemixer (two experts, `route::sparse_mixer_top2`): the best expert,
    /// weighted by a softmax over the experts whose logits lie within `2 · jitter_eps` of its
    /// own (relative to the larger magnitude), then the best of the rest likewise.
    SparseMixer {
        jitter_eps: f32,
    },
}

/// How a group of experts is scored when routing is limited to the best groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum GroupScore {
    /// The group's best expert (DeepSeek-V2's `group_limited_greedy`).
    Max,
    /// The sum of its two best (DeepSeek-V3's `noaux_tc`).
    TopTwoSum,
}

/// Mixture-of-experts FFNs: each token runs `experts_per_token` of `num_experts` small FFNs,
/// picked and weighted by a router, plus shared experts that every token runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MixtureOfExperts {
    pub num_experts: usize,
    pub experts_per_token: usize,
    pub expert_intermediate_size: usize,
    /// Intermediate size of the shared experts, run as one FFN (0: none).
    pub shared_intermediate_size: usize,
    /// The shared experts' output scaled per token by a sigmoid gate of its own (Qwen2-MoE's
    /// `shared_expert_gate`).
    pub shared_gate: bool,
    /// Whether each layer runs experts; the others run a dense FFN of `intermediate_size`.
    pub layers: Vec<bool>,
    pub scoring: ExpertScoring,
    /// Routing limited to the `topk_groups` best of `groups` equal groups (1: no limit).
    pub groups: usize,
    pub topk_groups: usize,
    pub group_score: GroupScore,
    /// A learned per-expert bias added to the scores for the choice only (DeepSeek-V3).
    pub correction_bias: bool,
    /// The chosen experts' weights divided by their sum.
    pub normalize: bool,
    /// The chosen experts' weights multiplied by this.
    pub routed_scaling: f32,
    /// The weights scale each expert's input rather than its output (Llama 4:
    /// `expert(w · x)`, which differs from `w · expert(x)` through the activation).
    pub weights_scale_inputs: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSpec {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub max_position: usize,
    pub rope: RopeConfig,
    /// RoPE base of the sliding-window layers when it differs (gemma3 `rope_local_base_freq`).
    pub rope_local_theta: Option<f32>,
    /// Sliding window of each layer (None = global attention).
    pub layer_windows: Vec<Option<usize>>,
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// A learned sink logit per head in every attention softmax (`attn_sinks`, gpt-oss).
    pub attn_sinks: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// The q and k norms span the whole projection (`[heads × head_dim]`, OLMoE) rather than
    /// each head.
    pub qk_norm_whole: bool,
    /// The per-head q and k norms come after RoPE rather than before it (Hunyuan).
    pub qk_norm_after_rope: bool,
    /// Each head has its own q and k norm weights (`[heads, head_dim]`), and the norms are
    /// LayerNorms without bias (Command R+, StableLM-2-12B): the models whose norms are
    /// `layer_norm`.
    pub qk_norm_per_head: bool,
    /// Gemma-style norms after attention and after the FFN.
    pub sandwich_norms: bool,
    /// RMSNorms of the residual stream before attention and before the FFN (every family but
    /// OLMo 2, which norms only their outputs: `sandwich_norms` without these).
    pub pre_norms: bool,
    /// The norms are LayerNorms (rows centered, then scaled; a bias where `norm_bias`) rather
    /// than RMSNorms (Cohere's Command R, StarCoder2). `rms_eps` is their epsilon.
    pub layer_norm: bool,
    /// Attention and FFN read the same normed input, and both outputs join the residual
    /// stream at once (Cohere: `x + attn(ln(x)) + mlp(ln(x))`); one norm per layer.
    pub parallel_block: bool,
    /// In a parallel block, the FFN reads its own norm of the stream (GPT-NeoX's
    /// `post_attention_layernorm`: `x + attn(ln1(x)) + mlp(ln2(x))`) rather than the
    /// attention's.
    pub parallel_ffn_norm: bool,
    /// The LayerNorms add a bias (StarCoder2's `nn.LayerNorm`).
    pub norm_bias: bool,
    /// The FFN is a GLU (`down(act(gate) · up)`); false: `down(act(up))` (StarCoder2's `c_fc`,
    /// `c_proj`).
    pub gated_ffn: bool,
    /// HF Gemma stores RMSNorm weights as `w` for `(1 + w)`; GGUF stores `1 + w` already.
    pub norm_weight_offset: f32,
    /// Embeddings multiplied by this (gemma: sqrt(hidden); Granite's `embedding_multiplier`).
    pub embed_scale: Option<f32>,
    /// The attention's and the FFN's outputs multiplied by this before they join the residual
    /// stream (Granite's `residual_multiplier`).
    pub residual_scale: Option<f32>,
    /// The logits divided by this (Granite's `logits_scaling`).
    pub logit_divisor: Option<f32>,
    /// The layers whose attention reads positions from nothing but the causal mask: no RoPE
    /// (SmolLM3's NoPE layers, every fourth). Empty: every layer rotates.
    pub unrotated_layers: Vec<bool>,
    pub activation: Activation,
    /// RoPE over the first this many dimensions of each head (HF `partial_rotary_factor`,
    /// llama.cpp's `rope.dimension_count`); None: the whole head.
    pub rotary_dim: Option<usize>,
    /// Latent attention in every layer instead of q/k/v projections (DeepSeek). `head_dim`
    /// and `num_kv_heads` are then the cache's: every head, `max(qk, v)` wide.
    pub latent_attention: Option<LatentAttention>,
    pub experts: Option<MixtureOfExperts>,
    /// Layers that mix tokens by a gated short convolution instead of attention (LFM2).
    pub short_conv: Option<ShortConv>,
    /// Layers that mix tokens by gated DeltaNet linear attention (Qwen3-Next): each sequence
    /// then carries a recurrent state beside its KV rows (`ModelSpec::keeps_sequence_state`).
    pub linear_attention: Option<LinearAttention>,
    /// Layers that mix tokens by Mamba-2's state-space model (Granite 4.0-H); each sequence
    /// then carries a recurrent state too.
    pub mamba: Option<Mamba2>,
    /// Layers that mix tokens by Mamba-1's selective scan (Mamba, Falcon Mamba).
    pub mamba1: Option<Mamba1>,
    /// Per layer, what it holds, where some layer lacks its mixing or its FFN (Nemotron-H);
    /// empty where every layer has both.
    pub layer_parts: Vec<LayerParts>,
    /// Each layer's Mamba-2 mixer (`mamba`) runs beside its attention on the same normed
    /// input, their outputs summed (Falcon-H1); otherwise a Mamba-2 layer has no attention.
    pub parallel_mamba: bool,
    /// Weights scaled by rows as they load (`WeightScale`).
    pub weight_scales: Vec<WeightScale>,
    /// The file holds the q/k rows permuted over whole heads, as llama.cpp's converter writes
    /// them for its interleaved RoPE, where the model rotates part of each head in HF's halves
    /// (Bamba): restored to the checkout's order as they load (`weights::unpermuted`).
    pub qk_rows_permuted: bool,
    /// The attention's output times `sigmoid(gate)`, the gate a second half of each query
    /// head's rows of q's product (Qwen3-Next: `q_proj` `[heads · 2 · head_dim, hidden]`), or a
    /// product of its own where the layer has one (`attn_gate`: AFMoE's `gate_proj`).
    pub attn_output_gate: bool,
    /// Positions enter as a learned table added to the token embeddings (`position_embd`,
    /// GPT-2's `wpe`), one row per position up to `max_position`; the layers run no RoPE.
    pub learned_positions: bool,
    /// Rows of that table before position 0's (OPT's 2, fairseq's padding rows): position p
    /// reads row p + this.
    pub learned_position_offset: usize,
    /// Each layer's xIELU (Apertus): the ungated FFN's activation, with numbers of its own per
    /// layer (`activation` then unused); empty for every other model.
    pub xielu: Vec<crate::xielu::XieluParams>,
    /// The norms have no weights (OLMo's non-parametric LayerNorms): unit weights stand in.
    pub weightless_norms: bool,
    /// q, k and v clamped to ±this after their products (OLMo's `clip_qkv`).
    pub clip_qkv: Option<f32>,
    /// Queries scaled by their position past a length (Ministral 3; Llama 4's attention
    /// temperature tuning).
    pub attn_temperature: Option<AttnTemperature>,
    /// The rotated layers attend within chunks of this many positions (Llama 4's
    /// `attention_chunk_size`): a query sees the keys of its own chunk, up to itself
    /// (`chunked_attention`); the layers without RoPE attend to everything before them.
    pub attention_chunk: Option<usize>,
    /// The rotated layers norm each head of q and k by its root mean square after RoPE, with
    /// no weights (Llama 4's `use_qk_norm`, `Llama4TextL2Norm`); the others do not.
    pub rotated_qk_l2_norm: bool,
    /// Per layer, whether it norms its sublayers' outputs only (OLMo 2's placement: no norm
    /// before attention or the FFN, one after each) where the others norm their inputs (OLMo
    /// Hybrid's attention layers among pre-norm DeltaNet layers); empty: every layer as
    /// `pre_norms` and `sandwich_norms` say.
    pub post_norm_layers: Vec<bool>,
    /// Each block's norms follow its residual adds (`x = ln1(x + attn(x))`, then
    /// `x = ln2(x + ffn(x))`: OPT-350M's `do_layer_norm_before: false`), and no norm follows
    /// the last block (its own ended the stream). LayerNorm blocks only.
    pub post_residual_norms: bool,
    /// The token embeddings' (and a tied head's) width where it is narrower than the blocks':
    /// a product `[hidden, width]` widens them (`project_in`) and one `[width, hidden]`
    /// narrows the last hidden states for the head (`project_out`): OPT-350M's
    /// `word_embed_proj_dim`.
    pub embed_width: Option<usize>,
    /// ALiBi positions (BLOOM, MPT, Falcon-RW): a bias per head on each score by the key's
    /// distance, no RoPE (every layer in `unrotated_layers`).
    pub alibi: Option<crate::alibi::Alibi>,
    /// A norm of the token embeddings before the first block (BLOOM's
    /// `word_embeddings_layernorm`, llama.cpp's `token_embd_norm`), of the blocks' kind.
    pub embed_norm: bool,
    /// RMSNorms of the attention's output before `o_proj` (`attn_sub_norm`, `[q_dim]`) and of
    /// the GLU's before `down_proj` (`ffn_sub_norm`, `[intermediate]`): BitNet b1.58's.
    pub sub_norms: bool,
    /// Every decoder product's input quantized per token (row) to integers of this many bits
    /// by its largest magnitude and back, as BitNet's `BitLinear` does before its ternary
    /// products (`bitnet::quantize_rows`); None: products read their input as it is.
    pub activation_bits: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelSpec {
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Whether a sequence's past is more than its KV rows: a recurrent state each running
    /// sequence carries from step to step (gated DeltaNet or Mamba-2 layers). Its steps then
    /// name the sequence's state slot (`SeqInput::state_slot`), and what rebuilds a sequence
    /// from cached blocks alone (dropped drafts; a cached prefix without a state kept for it)
    /// cannot serve it.
    pub fn keeps_sequence_state(&self) -> bool {
        self.linear_attention.is_some() || self.mamba.is_some() || self.mamba1.is_some()
    }

    /// Bytes of recurrent state one sequence holds (f32 values: each recurrent layer's
    /// convolution history and matrices); 0 for a model without.
    pub fn sequence_state_bytes(&self) -> usize {
        let values: usize = (self.state_sizes().iter())
            .map(|(conv, recurrent)| conv + recurrent)
            .sum();
        4 * values
    }

    /// Each recurrent layer's `(conv values, recurrent values)`, in layer order (what a
    /// sequence's state holds: `SequenceState::fits`).
    pub fn state_sizes(&self) -> Vec<(usize, usize)> {
        (0..self.num_layers)
            .filter_map(|l| self.recurrent_state_sizes(l))
            .collect()
    }

    /// What layer `l` holds.
    pub fn layer_parts(&self, l: usize) -> LayerParts {
        self.layer_parts.get(l).copied().unwrap_or(LayerParts::Both)
    }

    /// The sizes of layer `l`'s part of a sequence's recurrent state, `(conv values,
    /// recurrent values)`, where it is a recurrent layer (Mamba-1, Mamba-2, a gated DeltaNet
    /// or Kimi Delta layer; `validate` keeps a model to one kind of them); None otherwise.
    pub fn recurrent_state_sizes(&self, l: usize) -> Option<(usize, usize)> {
        let on = |layers: &[bool]| layers.get(l) == Some(&true);
        if let Some(m) = self.mamba1.as_ref().filter(|m| on(&m.layers)) {
            return Some(m.state_sizes());
        }
        if let Some(m) = self.mamba.as_ref().filter(|m| on(&m.layers)) {
            return Some(m.state_sizes());
        }
        self.linear_attention
            .as_ref()
            .filter(|a| on(&a.layers))
            .map(LinearAttention::state_sizes)
    }

    /// Where each layer's rows go in the paged cache, and how many cache layers there are. An
    /// attention layer's keys and values take one cache layer; a short-convolution layer keeps
    /// each token's convolution input (`hidden_size` values) in the K and V halves of as many
    /// cache layers as it fills, so its state lives by position beside the keys: prefix
    /// sharing, copy-on-write, speculative rollback and slot saves treat it as they treat keys.
    pub fn cache_layers(&self) -> CacheLayers {
        let conv = |l: usize| {
            self.short_conv
                .as_ref()
                .is_some_and(|c| c.layers.get(l) == Some(&true))
        };
        let mut first = Vec::with_capacity(self.num_layers);
        let mut total = 0;
        for l in 0..self.num_layers {
            first.push(total);
            total += match conv(l) {
                true => self.conv_cache_span(),
                // Its state is the sequence's, not its positions': no cache rows (unless
                // attention runs beside it).
                false if self.recurrent_state_sizes(l).is_some() && !self.parallel_mamba => 0,
                false if self.layer_parts(l) == LayerParts::FfnOnly => 0,
                false => 1,
            };
        }
        CacheLayers { first, total }
    }

    /// The width of the last hidden states, as the head reads them and embeddings return them:
    /// the embeddings' where the model narrows to them (`embed_width`), else `hidden_size`.
    pub fn output_width(&self) -> usize {
        self.embed_width.unwrap_or(self.hidden_size)
    }

    /// Cache layers one short-convolution layer's inputs fill: `hidden_size` values in halves
    /// of `kv_dim`.
    pub fn conv_cache_span(&self) -> usize {
        self.hidden_size.div_ceil(2 * self.kv_dim().max(1))
    }

    /// Layer `l`'s norms: (before its sublayers, after them). OLMo 2's placement (after only)
    /// where `post_norm_layers` says, else the model's.
    pub fn norm_placement(&self, l: usize) -> (bool, bool) {
        match self.post_norm_layers.get(l) {
            Some(true) => (false, true),
            _ => (self.pre_norms, self.sandwich_norms),
        }
    }

    /// Whether the layers run without their norms fused into the products (LayerNorms,
    /// parallel blocks, ungated FFNs, whose products the RMSNorm blocks' fused kernels do not
    /// take: the decoder's `unfused_block`), where no LoRA update is added. Layers of one
    /// sublayer (Nemotron-H) run in the fused walk, their ungated FFNs after a norm apart.
    pub fn unfused_blocks(&self) -> bool {
        self.layer_norm
            || self.parallel_block
            || (!self.gated_ffn && self.layer_parts.is_empty())
            || self.sub_norms
            || self.activation_bits.is_some()
    }

    /// Checks that keep the forward pass from indexing out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.vocab_size == 0
            || self.hidden_size == 0
            || self.num_layers == 0
            || self.head_dim == 0
        {
            return bad("vocab, hidden size, layers and head_dim must be positive".into());
        }
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad(format!(
                "attention heads ({}) must be a positive multiple of KV heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        if self.layer_windows.len() != self.num_layers {
            return bad(format!(
                "{} layer types for {} layers",
                self.layer_windows.len(),
                self.num_layers
            ));
        }
        if self.rms_eps.is_nan()
            || self.rms_eps <= 0.0
            || self.rope.theta.is_nan()
            || self.rope.theta <= 0.0
        {
            return bad("rms_norm_eps and rope theta must be positive".into());
        }
        let plain_pre_norms = self.pre_norms
            && !self.sandwich_norms
            && (!self.qk_norm || self.qk_norm_per_head)
            && self.latent_attention.is_none();
        if self.layer_norm && !plain_pre_norms {
            return bad("LayerNorm is supported as pre-norms, with q/k norms only per head".into());
        }
        if !self.xielu.is_empty()
            && (self.gated_ffn
                || self.xielu.len() != self.num_layers
                || !self.xielu.iter().all(|p| p.is_finite()))
        {
            return bad(format!(
                "xIELU needs an ungated FFN and finite numbers for each of the {} layers ({} given)",
                self.num_layers,
                self.xielu.len()
            ));
        }
        // Latent attention takes the temperature too: its queries, in the latent space, are
        // the scores' one side, so scaling them scales every score alike (Mistral 4).
        if let Some(t) = self.attn_temperature {
            if !(t.beta.is_finite() && t.length > 0) {
                return bad(format!(
                    "attention temperature {t:?} needs a finite beta and a positive length"
                ));
            }
        }
        if !self.layer_parts.is_empty() {
            if self.layer_parts.len() != self.num_layers {
                return bad(format!(
                    "{} layer plans for {} layers",
                    self.layer_parts.len(),
                    self.num_layers
                ));
            }
            if !self.pre_norms || self.layer_norm || self.parallel_block || self.sandwich_norms {
                return bad("layers of one sublayer are supported under RMSNorm pre-norms".into());
            }
            let recurrent_ffn = (0..self.num_layers).any(|l| {
                self.layer_parts(l) == LayerParts::FfnOnly
                    && self.recurrent_state_sizes(l).is_some()
            });
            if recurrent_ffn {
                return bad("a layer of an FFN only cannot be a recurrent layer too".into());
            }
        }
        if self.latent_attention.is_some()
            && self.unrotated_layers.contains(&true)
            && self.unrotated_layers.contains(&false)
        {
            return bad("latent attention runs with RoPE in every layer or in none".into());
        }
        if self.clip_qkv.is_some() && !self.unfused_blocks() {
            return bad("q/k/v clamps are supported in unfused blocks only".into());
        }
        if self.qk_norm_per_head
            && (!self.qk_norm || !self.layer_norm || self.qk_norm_whole || self.qk_norm_after_rope)
        {
            return bad("per-head q/k norm weights are LayerNorms before RoPE only".into());
        }
        if self.norm_bias && !self.layer_norm {
            return bad("norm biases need LayerNorms".into());
        }
        if (self.parallel_block || self.layer_norm) && self.residual_scale.is_some() {
            return bad("residual scales are supported in RMSNorm blocks only".into());
        }
        if self.parallel_block && (!self.pre_norms || self.sandwich_norms) {
            return bad("a parallel block needs its one norm before it and none after".into());
        }
        let bitnet = self.sub_norms || self.activation_bits.is_some();
        let plain_attention = self.latent_attention.is_none()
            && self.short_conv.is_none()
            && self.linear_attention.is_none()
            && self.mamba.is_none()
            && self.mamba1.is_none()
            && self.experts.is_none()
            && self.layer_parts.is_empty();
        if bitnet && !plain_attention {
            return bad(
                "BitNet's sub-norms and quantized activations are supported in attention \
                 layers with a dense FFN only"
                    .into(),
            );
        }
        if !self.post_norm_layers.is_empty() {
            let recurrent = (0..self.num_layers).any(|l| {
                self.post_norm_layers.get(l) == Some(&true)
                    && self.recurrent_state_sizes(l).is_some()
            });
            if self.post_norm_layers.len() != self.num_layers
                || recurrent
                || self.short_conv.is_some()
                || self.latent_attention.is_some()
                || self.unfused_blocks()
            {
                return bad(format!(
                    "{} norm placements for {} layers: post-norm layers are RMSNorm attention \
                     layers only",
                    self.post_norm_layers.len(),
                    self.num_layers
                ));
            }
        }
        if !self.unrotated_layers.is_empty() && self.unrotated_layers.len() != self.num_layers {
            return bad(format!(
                "{} RoPE flags for {} layers",
                self.unrotated_layers.len(),
                self.num_layers
            ));
        }
        if self.post_residual_norms
            && (!self.layer_norm
                || self.parallel_block
                || self.sandwich_norms
                || !self.post_norm_layers.is_empty()
                || !self.layer_parts.is_empty())
        {
            return bad(
                "norms after the residual adds are supported in sequential LayerNorm blocks only"
                    .into(),
            );
        }
        if self.embed_width == Some(0) {
            return bad("embeddings of no width".into());
        }
        let usable = |v: Option<f32>| v.is_none_or(|v| v.is_finite() && v != 0.0);
        if !usable(self.embed_scale) || !usable(self.residual_scale) || !usable(self.logit_divisor)
        {
            return bad("embedding, residual and logit scales must be finite and non-zero".into());
        }
        if self.qk_norm_after_rope && (!self.qk_norm || self.qk_norm_whole) {
            return bad("q/k norms after RoPE without per-head q/k norms".into());
        }
        if let Some(r) = self.rotary_dim {
            if r == 0
                || r > self.head_dim
                || !r.is_multiple_of(2)
                || self.latent_attention.is_some()
            {
                return bad(format!(
                    "RoPE over {r} of {} dimensions per head",
                    self.head_dim
                ));
            }
        }
        if let Some(m) = &self.experts {
            m.validate(self.num_layers)?;
        }
        if let Some(c) = &self.short_conv {
            let plain = self.pre_norms
                && !self.sandwich_norms
                && self.latent_attention.is_none()
                && !self.unfused_blocks();
            if c.layers.len() != self.num_layers || c.kernel == 0 || !plain {
                return bad(format!(
                    "short convolutions: {} layer flags for {} layers, a kernel of {}, \
                     pre-norm RMSNorm blocks only",
                    c.layers.len(),
                    self.num_layers,
                    c.kernel
                ));
            }
            if !self.hidden_size.is_multiple_of(self.kv_dim()) {
                // Its cache rows are whole K / V rows of the attention layers' width.
                return bad(format!(
                    "short convolutions over {} channels in cache rows of {}",
                    self.hidden_size,
                    self.kv_dim()
                ));
            }
        }
        if let Some(a) = &self.linear_attention {
            // Its attention layers may be latent (Kimi Linear).
            let plain = self.pre_norms
                && !self.sandwich_norms
                && self.short_conv.is_none()
                && !self.unfused_blocks();
            if a.layers.len() != self.num_layers
                || a.conv_kernel == 0
                || a.key_heads == 0
                || a.key_dim == 0
                || a.value_dim == 0
                || !a.value_heads.is_multiple_of(a.key_heads)
                || a.value_heads == 0
                || !plain
            {
                return bad(format!(
                    "gated DeltaNet: {} layer flags for {} layers, {} value heads over {} key \
                     heads of {} / {} dimensions, a kernel of {}; pre-norm RMSNorm blocks only",
                    a.layers.len(),
                    self.num_layers,
                    a.value_heads,
                    a.key_heads,
                    a.key_dim,
                    a.value_dim,
                    a.conv_kernel
                ));
            }
        }
        if let Some(m) = &self.mamba {
            let plain = self.pre_norms
                && !self.sandwich_norms
                && self.latent_attention.is_none()
                && self.short_conv.is_none()
                && self.linear_attention.is_none()
                && !self.unfused_blocks();
            let sizes = [
                m.heads,
                m.head_dim,
                m.groups,
                m.state,
                m.conv_kernel,
                m.norm_group,
            ];
            if m.layers.len() != self.num_layers
                || sizes.contains(&0)
                || !m.heads.is_multiple_of(m.groups)
                || !m.inner().is_multiple_of(m.norm_group)
                || !plain
            {
                return bad(format!(
                    "Mamba-2: {} layer flags for {} layers, {m:?}; pre-norm RMSNorm blocks only",
                    m.layers.len(),
                    self.num_layers
                ));
            }
        }
        if let Some(m) = &self.mamba1 {
            let alone = self.mamba.is_none()
                && self.linear_attention.is_none()
                && self.short_conv.is_none();
            let sizes = [m.inner, m.state, m.dt_rank, m.conv_kernel];
            if m.layers.len() != self.num_layers || sizes.contains(&0) || !alone {
                return bad(format!(
                    "Mamba-1: {} layer flags for {} layers, {m:?}; no other recurrent layers",
                    m.layers.len(),
                    self.num_layers
                ));
            }
        }
        // The decoder runs a parallel Mamba in its fused walk, on the attention's pre-norm.
        if self.parallel_mamba && (self.mamba.is_none() || self.unfused_blocks() || !self.pre_norms)
        {
            return bad("a Mamba-2 beside attention outside pre-norm RMSNorm blocks".into());
        }
        if self.attn_output_gate && self.latent_attention.is_some() {
            return bad("an attention output gate with latent attention".into());
        }
        if let Some(a) = &self.latent_attention {
            // The cache holds every head expanded, or the latent once (one KV head).
            let expanded = (self.num_heads, a.qk_head_dim().max(a.v_head_dim));
            let latent = (1, a.kv_lora_rank + a.qk_rope_head_dim);
            let heads = (self.num_kv_heads, self.head_dim);
            if a.kv_lora_rank == 0
                || a.qk_rope_head_dim == 0
                || !a.qk_rope_head_dim.is_multiple_of(2)
                || a.v_head_dim == 0
                || (heads != expanded && heads != latent)
            {
                return bad(format!(
                    "latent attention {a:?} does not fit heads of {} dimensions",
                    self.head_dim
                ));
            }
        }
        Ok(())
    }
}

/// `ModelSpec::cache_layers`: each layer's first cache layer, and the cache's layer count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayers {
    pub first: Vec<usize>,
    pub total: usize,
}

impl MixtureOfExperts {
    fn validate(&self, num_layers: usize) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_experts == 0
            || self.experts_per_token == 0
            || self.experts_per_token > self.num_experts
            || self.expert_intermediate_size == 0
        {
            return bad(format!(
                "experts: {} of {} per token, intermediate size {}",
                self.experts_per_token, self.num_experts, self.expert_intermediate_size
            ));
        }
        if self.layers.len() != num_layers {
            return bad(format!(
                "experts: {} layer flags for {num_layers} layers",
                self.layers.len()
            ));
        }
        let per_group = self.num_experts / self.groups.max(1);
        let group_ok = self.groups > 0
            && self.num_experts.is_multiple_of(self.groups)
            && (1..=self.groups).contains(&self.topk_groups)
            && (self.group_score != GroupScore::TopTwoSum || self.groups == 1 || per_group >= 2)
            && self.experts_per_token <= self.topk_groups * per_group;
        if !group_ok {
            return bad(format!(
                "experts: {} per token from the best {} of {} groups of {} experts",
                self.experts_per_token, self.topk_groups, self.groups, self.num_experts
            ));
        }
        if !self.routed_scaling.is_finite() {
            return bad("experts: routed_scaling_factor must be finite".into());
        }
        if let ExpertScoring::SparseMixer { jitter_eps } = self.scoring {
            if self.experts_per_token != 2
                || self.groups != 1
                || self.correction_bias
                || !jitter_eps.is_finite()
            {
                return bad(format!(
                    "experts: sparsemixer routes 2 experts of one group without a correction \
                     bias (jitter {jitter_eps}), not {} of {} groups",
                    self.experts_per_token, self.groups
                ));
            }
        }
        Ok(())
    }
}

/// Typed access to an HF `config.json` with clear errors.
pub struct HfConfig<'a>(pub &'a serde_json::Value);

impl HfConfig<'_> {
    /// This config as another family's reader reads it: each `aliases` value (`from`, `to`)
    /// copied under `to` where the config has `from` and no `to`, then each of `defaults`
    /// where the key is absent (the family's own transformers defaults).
    pub fn with_keys(
        &self,
        aliases: &[(&str, &str)],
        defaults: &[(&str, serde_json::Value)],
    ) -> serde_json::Value {
        let mut cfg = self.0.clone();
        if let Some(o) = cfg.as_object_mut() {
            for (from, to) in aliases {
                if let Some(v) = o.get(*from).cloned() {
                    o.entry(*to).or_insert(v);
                }
            }
            for (key, value) in defaults {
                o.entry(*key).or_insert_with(|| value.clone());
            }
        }
        cfg
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| ModelError::Config(format!("config.json: missing `{key}`")))
    }
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                ModelError::Config(format!(
                    "config.json: `{key}` must be a non-negative integer, got {v}"
                ))
            }),
        }
    }
    pub fn f32(&self, key: &str, default: f32) -> Result<f32> {
        Ok(self.opt_f32(key)?.unwrap_or(default))
    }
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| {
                ModelError::Config(format!("config.json: `{key}` must be a number, got {v}"))
            }),
        }
    }
    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.0.get(key).and_then(|v| v.as_bool()).unwrap_or(default)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str())
    }
    /// `eos_token_id` may be an integer or a list.
    pub fn token_ids(&self, key: &str) -> Vec<u32> {
        match self.0.get(key) {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64().map(|v| v as u32))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        let Some(rs) = self.0.get("rope_scaling").filter(|v| !v.is_null()) else {
            return Ok(RopeScaling::None);
        };
        let sub = HfConfig(rs);
        let kind = sub
            .str("rope_type")
            .or_else(|| sub.str("type"))
            .unwrap_or("default");
        match kind {
            // Qwen2-VL's M-RoPE ("mrope" in the released configs): on text alone every section
            // sees the same position, which is plain RoPE.
            "default" | "mrope" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: sub.f32("factor", 1.0)?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: sub.f32("factor", 8.0)?,
                low_freq_factor: sub.f32("low_freq_factor", 1.0)?,
                high_freq_factor: sub.f32("high_freq_factor", 4.0)?,
                original_max_position: sub.usize("original_max_position_embeddings")?,
            }),
            "yarn" => {
                let (original, factor) = self.stretch(&sub, "yarn")?;
                let attention_factor = match sub.opt_f32("attention_factor")? {
                    Some(a) => a,
                    None => match (sub.opt_f32("mscale")?, sub.opt_f32("mscale_all_dim")?) {
                        (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                            yarn_mscale(factor, m) / yarn_mscale(factor, all)
                        }
                        _ => yarn_mscale(factor, 1.0),
                    },
                };
                if !(factor.is_finite() && factor > 0.0 && attention_factor.is_finite()) {
                    return Err(ModelError::Config(format!(
                        "config.json: yarn factor {factor} / attention factor \
                         {attention_factor} out of range"
                    )));
                }
                Ok(RopeScaling::Yarn {
                    factor,
                    original_max_position: original,
                    beta_fast: sub
                        .opt_f32("beta_fast")?
                        .filter(|b| *b != 0.0)
                        .unwrap_or(32.0),
                    beta_slow: sub
                        .opt_f32("beta_slow")?
                        .filter(|b| *b != 0.0)
                        .unwrap_or(1.0),
                    truncate: sub.bool("truncate", true),
                    attention_factor,
                })
            }
            "longrope" | "su" => {
                let factors = |key: &str| -> Result<Vec<f32>> {
                    sub.0
                        .get(key)
                        .and_then(|v| v.as_array())
                        .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect())
                        .ok_or_else(|| {
                            ModelError::Config(format!(
                                "config.json: longrope rope_scaling needs a list `{key}`"
                            ))
                        })
                };
                let (original, factor) = self.stretch(&sub, "longrope")?;
                let max_position = self.opt_usize("max_position_embeddings")?;
                let attention_factor = match sub.opt_f32("attention_factor")? {
                    Some(a) => a,
                    None => longrope_attention_factor(factor, original),
                };
                Ok(RopeScaling::LongRope {
                    short_factor: factors("short_factor")?,
                    long_factor: factors("long_factor")?,
                    original_max_position: original,
                    attention_factor,
                    long: max_position.is_some_and(|m| m > original),
                })
            }
            other => Err(ModelError::Config(format!(
                "unsupported rope_scaling type `{other}`"
            ))),
        }
    }
}

impl HfConfig<'_> {
    /// The original context a `rope_scaling` (`sub`, of `kind`) stretches (its
    /// `original_max_position_embeddings`, the config's, else `max_position_embeddings`) and
    /// by how much (its `factor`, else the ratio of the two contexts), as transformers reads
    /// them.
    fn stretch(&self, sub: &HfConfig, kind: &str) -> Result<(usize, f32)> {
        let max_position = self.opt_usize("max_position_embeddings")?;
        let original = sub
            .opt_usize("original_max_position_embeddings")?
            .or(self.opt_usize("original_max_position_embeddings")?)
            .or(max_position)
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "config.json: {kind} rope_scaling without `original_max_position_embeddings`"
                ))
            })?;
        let factor = match (sub.opt_f32("factor")?, max_position) {
            (Some(f), _) => f,
            (None, Some(max)) => max as f32 / original as f32,
            (None, None) => 1.0,
        };
        Ok((original, factor))
    }
}

/// LongRoPE's attention factor for a context stretched `factor` times over `original`
/// positions: `sqrt(1 + ln factor / ln original)` (1 when not stretched).
pub fn longrope_attention_factor(factor: f32, original: usize) -> f32 {
    if factor <= 1.0 || original < 2 {
        1.0
    } else {
        (1.0 + factor.ln() / (original as f32).ln()).sqrt()
    }
}

/// YaRN's attention temperature for a context stretched `scale` times (`0.1 m ln s + 1`).
pub fn yarn_mscale(scale: f32, mscale: f32) -> f32 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}
