//! An encoder checkout's sparse head, where it has one: a BERT, RoBERTa, DistilBERT,
//! ModernBERT or GTE masked LM (`*ForMaskedLM`) pools SPLADE vectors, as its
//! sentence-transformers `SpladePooling` module says (else max of `log(1 + relu)`); BGE-M3's
//! checkout weighs each token with the layer in its `sparse_linear.pt`.
use super::error::EngineError;
use super::load_encoder::Checkout;
use candor_models::encoder::{
    is_masked_lm, BertEncoder, EncoderConfig, Family, LexicalHead, MlmHead, SparseHead, Splade,
    SpladeConfig,
};
use candor_models::sentence_transformers::read_json;
use candor_models::tokenizer::Tokenizer;
use candor_models::ModelError;
use std::path::Path;

/// A checkout's sparse head, and whether its files make sparse vectors its pooling (a
/// sentence-transformers SparseEncoder) rather than an output beside its dense embedding
/// (BGE-M3, a masked LM served as an embedder).
pub struct FoundSparse {
    pub head: SparseHead,
    pub pools: bool,
}

/// The sparse head of checkout `path`. A masked LM served as a dense embedder
/// (bert-base-uncased is one) whose head does not load is still served, without it; a
/// checkout whose files name SPLADE pooling is refused without it.
pub fn sparse_head(
    config: &EncoderConfig,
    checkout: Checkout,
    encoder: &BertEncoder,
    tokenizer: Option<&Tokenizer>,
    device: &candle_core::Device,
) -> Result<Option<FoundSparse>, EngineError> {
    // The pooling module is the root's (a Router's route's); the head is in the model's files.
    let named = SpladeConfig::from_dir(checkout.root)?;
    let path = checkout.model;
    let splade_family = matches!(
        config.family,
        Family::Bert | Family::Roberta | Family::DistilBert | Family::Gte | Family::Modern
    );
    if is_masked_lm(path)? && splade_family {
        match MlmHead::load(config, path, encoder.word_embeddings(), device) {
            Ok(head) => {
                let config = named.unwrap_or_default();
                return Ok(Some(FoundSparse {
                    head: SparseHead::Splade(Splade { head, config }),
                    pools: named.is_some(),
                }));
            }
            Err(e) if named.is_none() => {
                tracing::warn!(error = %e, "the masked LM's head is not loaded: no SPLADE vectors")
            }
            Err(e) => return Err(e.into()),
        }
    }
    if named.is_some() {
        return Err(EngineError::Model(ModelError::Config(
            "the checkout's sentence-transformers files pool by SPLADE, which reads a masked \
             LM's head: its config.json must name a BERT, RoBERTa, DistilBERT, GTE or \
             ModernBERT `*ForMaskedLM`"
                .into(),
        )));
    }
    let skipped = tokenizer.map_or_else(Vec::new, |t| special_ids(path, t));
    let lexical = LexicalHead::load(path, config.hidden_size, skipped, device)?;
    Ok(lexical.map(|head| FoundSparse {
        head: SparseHead::Lexical(head),
        pools: false,
    }))
}

/// The ids of the tokens BGE-M3's lexical weights leave out: the tokenizer's `[CLS]`, EOS,
/// padding and unknown tokens as the checkout's tokenizer_config.json and
/// special_tokens_map.json name them (a name or `{"content": name}`), as FlagEmbedding reads
/// them.
fn special_ids(path: &Path, tokenizer: &Tokenizer) -> Vec<u32> {
    let mut ids = Vec::new();
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        // A file that is missing or unreadable names none, as the tokenizer reads it.
        let Ok(Some(json)) = read_json(&path.join(file)) else {
            continue;
        };
        for key in ["cls_token", "eos_token", "pad_token", "unk_token"] {
            let name = match json.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.as_str()),
                Some(v) => v.get("content").and_then(|c| c.as_str()),
                None => None,
            };
            if let Some(id) = name.and_then(|n| tokenizer.token_id(n)) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}
