//! An encoder checkout's config.json: BERT (`model_type` `bert`: BGE, E5, GTE, MiniLM,
//! ms-marco cross-encoders) and RoBERTa (`roberta`, `xlm-roberta`, `camembert`: multilingual
//! E5, BGE-M3, bge-reranker), which differ in where positions start and in their heads,
//! NomicBERT (`nomic_bert`: nomic-embed-text; its config in `super::nomic`), ModernBERT
//! (`super::modern`), GTE (`new`, `gte`: `super::gte`) and DistilBERT (`distilbert`:
//! `super::distil`).
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec, RopeConfig, RopeScaling};
use std::path::Path;

/// The two families' differences that matter to a forward pass and a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Positions from 0; a classifier reads the pooler (`bert.pooler.dense`) then
    /// `classifier`.
    Bert,
    /// Positions from `pad_token_id + 1` (fairseq's convention, kept by transformers); a
    /// classifier reads `classifier.dense` then `classifier.out_proj`.
    Roberta,
    /// NomicBERT's checkout: rotary positions, a SwiGLU feed-forward, the remote code's tensor
    /// names (`emb_ln`, `encoder.layers.N.attn.Wqkv`, `mlp.fc11`…); an embedder, no head.
    Nomic,
    /// ModernBERT's checkout: pre-norm layers, GeGLU, rotary positions, local and global
    /// attention (`super::modern`); an embedder, no head.
    Modern,
    /// GTE's checkout (Alibaba's `NewModel`): rotary positions (NTK-scaled), GeGLU, the remote
    /// code's or transformers 5's tensor names (`super::gte`); a classifier reads BERT's pooler
    /// then `classifier`.
    Gte,
    /// DistilBERT's checkout (`super::distil`): BERT's layers under their own names, no token
    /// types; a classifier reads `pre_classifier` (ReLU) then `classifier`.
    DistilBert,
}

/// ModernBERT's alternating attention: every `global_every`-th layer (from the first) attends
/// over the whole input, its rotary base `rotary_theta`; the others only `window` positions
/// each side, turned at `local_theta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalAttention {
    pub global_every: usize,
    pub window: usize,
    pub local_theta: f32,
}

/// The feed-forward activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderActivation {
    /// `gelu`: the exact, erf form (BERT's).
    GeluErf,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
    Silu,
}

#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    /// Rows of the position table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table (two for BERT's sentence pairs, one for RoBERTa's).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub activation: EncoderActivation,
    /// The position of a sequence's first token (RoBERTa: `pad_token_id + 1`).
    pub position_offset: usize,
    /// Whether the checkout is a sequence classifier (`*ForSequenceClassification`).
    pub classifies: bool,
    /// Rotary positions at this base (NomicBERT): each query and key turned by its position,
    /// the halves rotated as GPT-NeoX does; no position table. None: learned absolute
    /// positions (BERT, RoBERTa).
    pub rotary_theta: Option<f32>,
    /// What every rotary frequency is divided by: 1, or GTE's fixed NTK scaling (transformers'
    /// `linear` factor).
    pub rotary_divisor: f32,
    /// A gated feed-forward, `down(silu(gate · x) ⊙ (up · x))` (NomicBERT's SwiGLU), where
    /// BERT's is `down(act(up · x))`.
    pub gated: bool,
    /// Layers attending within a window (ModernBERT's).
    pub local_attention: Option<LocalAttention>,
}

impl EncoderConfig {
    /// The encoder a checkout's `config.json` describes, or None for another kind of model
    /// (a decoder, served by `spec_from_hf`).
    pub fn from_dir(dir: &Path) -> Result<Option<EncoderConfig>> {
        if !dir.is_dir() || !dir.join("config.json").exists() {
            return Ok(None);
        }
        EncoderConfig::from_json(&config_json(dir)?)
    }

    pub fn from_json(json: &serde_json::Value) -> Result<Option<EncoderConfig>> {
        let c = HfConfig(json);
        let family = match c.str("model_type") {
            Some("bert") => Family::Bert,
            Some("roberta" | "xlm-roberta" | "camembert") => Family::Roberta,
            Some("nomic_bert") => return super::nomic::config(&c, classifies(json)).map(Some),
            Some("modernbert") => return super::modern::config(&c, classifies(json)).map(Some),
            Some("new" | "gte") => return super::gte::config(&c, classifies(json)).map(Some),
            Some("distilbert") => return super::distil::config(&c, classifies(json)).map(Some),
            _ => return Ok(None),
        };
        if let Some(kind) = c.str("position_embedding_type") {
            if kind != "absolute" {
                return Err(ModelError::Config(format!(
                    "config.json: `position_embedding_type` `{kind}`: only absolute position \
                     embeddings are served"
                )));
            }
        }
        let activation = activation(c.str("hidden_act").unwrap_or("gelu"))?;
        let position_offset = match family {
            Family::Bert | Family::Nomic | Family::Modern | Family::Gte | Family::DistilBert => 0,
            Family::Roberta => c.opt_usize("pad_token_id")?.unwrap_or(1) + 1,
        };
        let hidden_size = c.usize("hidden_size")?;
        let num_heads = heads_dividing(c.usize("num_attention_heads")?, hidden_size)?;
        let max_position_embeddings = c.usize("max_position_embeddings")?;
        if max_position_embeddings <= position_offset + 1 {
            return Err(ModelError::Config(format!(
                "config.json: {max_position_embeddings} positions leave no room past the first \
                 at {position_offset}"
            )));
        }
        Ok(Some(EncoderConfig {
            family,
            vocab_size: c.usize("vocab_size")?,
            hidden_size,
            num_layers: c.usize("num_hidden_layers")?,
            num_heads,
            intermediate_size: c.usize("intermediate_size")?,
            max_position_embeddings,
            type_vocab_size: c.opt_usize("type_vocab_size")?.unwrap_or(2).max(1),
            layer_norm_eps: c.f32("layer_norm_eps", 1e-12)? as f64,
            activation,
            position_offset,
            classifies: classifies(json),
            rotary_theta: None,
            rotary_divisor: 1.0,
            gated: false,
            local_attention: None,
        }))
    }

    /// The longest input the position table holds.
    pub fn context(&self) -> usize {
        self.max_position_embeddings - self.position_offset
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// What attention scales q·k by, 1/√head_dim: folded into the query projection once at
    /// load, which spares a pass over every score of every step.
    pub(super) fn query_scale(&self) -> f64 {
        1.0 / (self.head_dim() as f64).sqrt()
    }

    /// The model as the engine and server read any model: its sizes and context. An encoder
    /// has no KV cache, RoPE or language-model head; those fields are neutral.
    pub fn spec(&self) -> ModelSpec {
        let head_dim = self.head_dim();
        ModelSpec {
            arch: match self.family {
                Family::Nomic => Arch::NomicBert,
                Family::Modern => Arch::ModernBert,
                Family::Gte => Arch::Gte,
                Family::DistilBert => Arch::DistilBert,
                Family::Bert | Family::Roberta => Arch::Bert,
            },
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_layers,
            num_heads: self.num_heads,
            num_kv_heads: self.num_heads,
            head_dim,
            rms_eps: self.layer_norm_eps as f32,
            max_position: self.context(),
            rope: RopeConfig {
                theta: self.rotary_theta.unwrap_or(10000.0),
                scaling: match self.rotary_divisor {
                    1.0 => RopeScaling::None,
                    factor => RopeScaling::Linear { factor },
                },
                style: RopeStyle::Neox,
            },
            rope_local_theta: None,
            layer_windows: vec![None; self.num_layers],
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            attn_softcap: None,
            final_softcap: None,
            attn_sinks: false,
            qkv_bias: true,
            qk_norm: false,
            qk_norm_whole: false,
            qk_norm_after_rope: false,
            qk_norm_per_head: false,
            sandwich_norms: false,
            pre_norms: false,
            layer_norm: false,
            parallel_block: false,
            parallel_ffn_norm: false,
            norm_bias: false,
            gated_ffn: true,
            norm_weight_offset: 0.0,
            embed_scale: None,
            residual_scale: None,
            logit_divisor: None,
            unrotated_layers: Vec::new(),
            activation: match self.activation {
                EncoderActivation::Silu => Activation::Silu,
                _ => Activation::GeluTanh,
            },
            rotary_dim: None,
            latent_attention: None,
            experts: None,
            short_conv: None,
            linear_attention: None,
            mamba: None,
            mamba1: None,
            layer_parts: Vec::new(),
            parallel_mamba: false,
            weight_scales: Vec::new(),
            qk_rows_permuted: false,
            attn_output_gate: false,
            sub_norms: false,
            post_norm_layers: Vec::new(),
            post_residual_norms: false,
            embed_width: None,
            alibi: None,
            embed_norm: false,
            activation_bits: None,
            learned_positions: false,
            learned_position_offset: 0,
            xielu: Vec::new(),
            weightless_norms: false,
            clip_qkv: None,
            attn_temperature: None,
            attention_chunk: None,
            rotated_qk_l2_norm: false,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }
}

/// A checkout's config.json.
pub(super) fn config_json(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    crate::config_json::parse(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
}

/// The feed-forward activation a config names (`hidden_act`).
pub(super) fn activation(name: &str) -> Result<EncoderActivation> {
    Ok(match name {
        "gelu" => EncoderActivation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => EncoderActivation::GeluTanh,
        "relu" => EncoderActivation::Relu,
        "silu" | "swish" => EncoderActivation::Silu,
        other => {
            return Err(ModelError::Config(format!(
                "config.json: unsupported encoder activation `{other}`"
            )))
        }
    })
}

/// `heads`, where they split the hidden size evenly.
pub(super) fn heads_dividing(heads: usize, hidden_size: usize) -> Result<usize> {
    if heads == 0 || !hidden_size.is_multiple_of(heads) {
        return Err(ModelError::Config(format!(
            "{heads} attention heads do not divide a hidden size of {hidden_size}"
        )));
    }
    Ok(heads)
}

/// Whether the checkout is a sequence classifier (`*ForSequenceClassification`).
fn classifies(json: &serde_json::Value) -> bool {
    names_architecture(json, "ForSequenceClassification")
}

/// Whether a config's `architectures` name one ending with `suffix` (`ForMaskedLM`).
pub(super) fn names_architecture(json: &serde_json::Value, suffix: &str) -> bool {
    json.get("architectures")
        .and_then(|a| a.as_array())
        .is_some_and(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .any(|name| name.ends_with(suffix))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bert() -> serde_json::Value {
        json!({
            "model_type": "bert", "architectures": ["BertModel"], "vocab_size": 100,
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 512, "type_vocab_size": 2,
            "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0
        })
    }

    #[test]
    fn bert_and_roberta_differ_in_where_positions_start() {
        let b = EncoderConfig::from_json(&bert()).unwrap().unwrap();
        assert_eq!(
            (b.family, b.position_offset, b.context()),
            (Family::Bert, 0, 512)
        );
        assert!(!b.classifies);
        let mut r = bert();
        r["model_type"] = json!("xlm-roberta");
        r["pad_token_id"] = json!(1);
        r["max_position_embeddings"] = json!(514);
        r["architectures"] = json!(["XLMRobertaForSequenceClassification"]);
        let r = EncoderConfig::from_json(&r).unwrap().unwrap();
        assert_eq!(
            (r.family, r.position_offset, r.context()),
            (Family::Roberta, 2, 512)
        );
        assert!(r.classifies);
        assert_eq!(r.spec().arch, Arch::Bert);
        assert_eq!(r.spec().max_position, 512);
    }

    #[test]
    fn decoders_are_not_encoders_and_odd_encoders_are_refused() {
        assert!(EncoderConfig::from_json(&json!({"model_type": "qwen2"}))
            .unwrap()
            .is_none());
        let mut relative = bert();
        relative["position_embedding_type"] = json!("relative_key");
        assert!(EncoderConfig::from_json(&relative).is_err());
        let mut act = bert();
        act["hidden_act"] = json!("mish");
        assert!(EncoderConfig::from_json(&act).is_err());
        let mut heads = bert();
        heads["num_attention_heads"] = json!(5);
        assert!(EncoderConfig::from_json(&heads).is_err());
    }
}
