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
    Phi3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
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
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RopeConfig {
    pub theta: f32,
    pub scaling: RopeScaling,
    pub style: RopeStyle,
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
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// Gemma-style norms after attention and after the FFN.
    pub sandwich_norms: bool,
    /// HF Gemma stores RMSNorm weights as `w` for `(1 + w)`; GGUF stores `1 + w` already.
    pub norm_weight_offset: f32,
    /// Embeddings multiplied by this (gemma: sqrt(hidden)).
    pub embed_scale: Option<f32>,
    pub activation: Activation,
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
        Ok(())
    }
}

/// Typed access to an HF `config.json` with clear errors.
pub struct HfConfig<'a>(pub &'a serde_json::Value);

impl HfConfig<'_> {
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
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: sub.f32("factor", 1.0)?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: sub.f32("factor", 8.0)?,
                low_freq_factor: sub.f32("low_freq_factor", 1.0)?,
                high_freq_factor: sub.f32("high_freq_factor", 4.0)?,
                original_max_position: sub.usize("original_max_position_embeddings")?,
            }),
            other => Err(ModelError::Config(format!(
                "unsupported rope_scaling type `{other}`"
            ))),
        }
    }
}
