//! A BERT-style encoder from a GGUF as llama.cpp's converter writes it (architecture `bert`:
//! all-MiniLM, BGE, mxbai-embed, snowflake-arctic-embed as Ollama ships them; reranker GGUFs
//! with `cls.output`; architecture `nomic-bert`: nomic-embed-text). The converter already cut
//! RoBERTa's position table to start at 0 and dropped BERT's pooler; its tensors are renamed
//! back to the checkout's names and dequantized to f32 for the same encoder a checkout loads
//! into.
use super::bert::{load_head, BertEncoder};
use super::config::{heads_dividing, EncoderActivation, EncoderConfig, Family};
use crate::classifier::{Classifier, DenseActivation, HeadInput};
use crate::error::{ModelError, Result};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// The architecture names llama.cpp gives the encoders served here.
pub const ARCHS: [&str; 2] = ["bert", NOMIC];

const NOMIC: &str = "nomic-bert";

impl EncoderConfig {
    /// The encoder a `bert` or `nomic-bert` GGUF's metadata and tensor shapes describe.
    pub fn from_gguf(g: &GgufFile) -> Result<EncoderConfig> {
        let arch = g.architecture()?;
        let nomic = arch == NOMIC;
        let key = |k: &str| format!("{arch}.{k}");
        let rows = |name: &str| -> Result<Option<usize>> {
            Ok(g.get(name)?
                .map(|w| w.shape().first().copied().unwrap_or(0)))
        };
        let hidden_size = g.require_usize(&key("embedding_length"))?;
        let num_heads =
            heads_dividing(g.require_usize(&key("attention.head_count"))?, hidden_size)?;
        let vocab_size = rows("token_embd.weight")?
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        // A position table's rows; NomicBERT's positions are rotary, as many as it was
        // trained at (`context_length`).
        let positions = match nomic {
            true => g.require_usize(&key("context_length"))?,
            false => rows("position_embd.weight")?
                .ok_or_else(|| ModelError::MissingTensor("position_embd.weight".into()))?,
        };
        let classifies = g.contains("cls.output.weight");
        if nomic && classifies {
            return Err(ModelError::Config(
                "a NomicBERT classifier's head is not served (its embedder is)".into(),
            ));
        }
        Ok(EncoderConfig {
            family: if nomic { Family::Nomic } else { Family::Bert },
            vocab_size,
            hidden_size,
            num_layers: g.require_usize(&key("block_count"))?,
            num_heads,
            intermediate_size: g.require_usize(&key("feed_forward_length"))?,
            max_position_embeddings: positions,
            type_vocab_size: rows("token_types.weight")?.unwrap_or(1).max(1),
            layer_norm_eps: g
                .get_f64(&key("attention.layer_norm_epsilon"))
                .unwrap_or(1e-12),
            activation: match nomic {
                true => EncoderActivation::Silu,
                false => EncoderActivation::GeluErf,
            },
            position_offset: 0,
            classifies,
            rotary_theta: match nomic {
                true => Some(g.get_f64(&key("rope.freq_base")).unwrap_or(1000.0) as f32),
                false => None,
            },
            rotary_divisor: 1.0,
            gated: nomic,
            local_attention: None,
        })
    }
}

/// The encoder of a `bert` GGUF on `device`, and its classification head (`cls.output`, after
/// `cls` where the converter kept a tanh layer) where it has one.
pub fn load_gguf(
    config: &EncoderConfig,
    g: &GgufFile,
    device: &Device,
) -> Result<(BertEncoder, Option<Classifier>)> {
    let mut tensors = HashMap::new();
    for name in g.tensor_names() {
        let names = match config.family {
            Family::Nomic => &NOMIC_NAMES,
            Family::Bert | Family::Roberta => &BERT_NAMES,
            Family::Modern | Family::Gte | Family::DistilBert => {
                return Err(ModelError::Config(
                    "a ModernBERT or GTE GGUF is not served".into(),
                ))
            }
        };
        let Some(hf) = checkout_name(name, names) else {
            continue;
        };
        let weight = crate::weights::require(g, name)?;
        let t: Tensor = weight.to_f32()?.to_device(device)?;
        tensors.insert(hf, t);
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let encoder = BertEncoder::from_vb(config, &vb, device)?;
    let head = match config.classifies {
        true => {
            let head = vb.pp("classifier");
            let pre = head.pp("dense");
            let pre = (pre.contains_tensor("weight")).then_some((&pre, DenseActivation::Tanh));
            let labels = crate::classifier::gguf_labels(g);
            let out = head.pp("out_proj");
            let count = out.get_unchecked("bias")?.dims1()?;
            // The labels the file names, else `LABEL_i` for each row of the head.
            let mut named = labels;
            named.resize(count, None);
            Some(load_head(config, pre, &out, &named, HeadInput::First)?)
        }
        false => None,
    };
    Ok((encoder, head))
}

/// How a llama.cpp encoder's tensors are named in the checkout the encoder loads: the
/// top-level stems, where the layers sit, and each layer part's name.
struct CheckoutNames {
    top: &'static [(&'static str, &'static str)],
    layers: &'static str,
    parts: &'static [(&'static str, &'static str)],
}

/// `bert`: transformers' `BertModel` names (a classifier's head as RoBERTa's).
const BERT_NAMES: CheckoutNames = CheckoutNames {
    top: &[
        ("token_embd", "embeddings.word_embeddings"),
        ("position_embd", "embeddings.position_embeddings"),
        ("token_types", "embeddings.token_type_embeddings"),
        ("token_embd_norm", "embeddings.LayerNorm"),
        ("cls", "classifier.dense"),
        ("cls.output", "classifier.out_proj"),
    ],
    layers: "encoder.layer",
    parts: &[
        ("attn_q", "attention.self.query"),
        ("attn_k", "attention.self.key"),
        ("attn_v", "attention.self.value"),
        ("attn_output", "attention.output.dense"),
        ("attn_output_norm", "attention.output.LayerNorm"),
        ("ffn_up", "intermediate.dense"),
        ("ffn_down", "output.dense"),
        ("layer_output_norm", "output.LayerNorm"),
    ],
};

/// `nomic-bert`: the remote code's names.
const NOMIC_NAMES: CheckoutNames = CheckoutNames {
    top: &[
        ("token_embd", "embeddings.word_embeddings"),
        ("token_types", "embeddings.token_type_embeddings"),
        ("token_embd_norm", "emb_ln"),
    ],
    layers: "encoder.layers",
    parts: &[
        ("attn_qkv", "attn.Wqkv"),
        ("attn_output", "attn.out_proj"),
        ("attn_output_norm", "norm1"),
        ("ffn_up", "mlp.fc11"),
        ("ffn_gate", "mlp.fc12"),
        ("ffn_down", "mlp.fc2"),
        ("layer_output_norm", "norm2"),
    ],
};

/// A llama.cpp tensor name in the checkout's spelling (None for one the encoder does not use).
fn checkout_name(gguf: &str, names: &CheckoutNames) -> Option<String> {
    let (stem, suffix) = gguf.rsplit_once('.')?;
    let find = |table: &[(&str, &'static str)], key: &str| {
        table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    };
    if let Some(top) = find(names.top, stem) {
        return Some(format!("{top}.{suffix}"));
    }
    let (layer, part) = stem.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = find(names.parts, part)?;
    Some(format!("{}.{layer}.{part}.{suffix}", names.layers))
}

#[cfg(test)]
mod tests {
    use super::{checkout_name, BERT_NAMES, NOMIC_NAMES};

    fn nomic_name(gguf: &str) -> Option<String> {
        checkout_name(gguf, &NOMIC_NAMES)
    }

    fn transformers_name(gguf: &str) -> Option<String> {
        checkout_name(gguf, &BERT_NAMES)
    }

    #[test]
    fn nomic_bert_names_map_back_to_the_remote_code() {
        assert_eq!(
            nomic_name("token_embd_norm.bias").as_deref(),
            Some("emb_ln.bias")
        );
        assert_eq!(
            nomic_name("blk.3.ffn_gate.weight").as_deref(),
            Some("encoder.layers.3.mlp.fc12.weight")
        );
        assert_eq!(
            nomic_name("blk.0.attn_qkv.weight").as_deref(),
            Some("encoder.layers.0.attn.Wqkv.weight")
        );
        assert_eq!(nomic_name("position_embd.weight"), None);
    }

    #[test]
    fn llama_cpp_names_map_back_to_transformers() {
        let name = |n: &str| transformers_name(n);
        assert_eq!(
            name("token_embd.weight").as_deref(),
            Some("embeddings.word_embeddings.weight")
        );
        assert_eq!(
            name("blk.11.attn_output_norm.bias").as_deref(),
            Some("encoder.layer.11.attention.output.LayerNorm.bias")
        );
        assert_eq!(
            name("cls.output.weight").as_deref(),
            Some("classifier.out_proj.weight")
        );
        assert_eq!(name("cls.bias").as_deref(), Some("classifier.dense.bias"));
        assert_eq!(name("blk.0.attn_qkv.weight"), None);
        assert_eq!(name("output_norm.weight"), None);
    }
}
