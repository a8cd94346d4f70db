//! A token classifier's head (`*ForTokenClassification`: NER models such as dslim/bert-base-NER,
//! xlm-roberta-large-finetuned-conll03, DistilBERT and GTE NER fine-tunes): one linear layer,
//! `classifier`, scoring every label at every token's final state (ModernBERT's: its head's
//! dense layer, GELU and norm before it). It runs on the host over
//! the states the engine returns for each token (a few labels × the hidden size a token).
use super::bert::{load_head, safetensors_files};
use super::config::{config_json, names_architecture, EncoderConfig, Family};
use crate::classifier::{hf_labels, Classifier, HeadInput};
use crate::error::{ModelError, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::Path;

/// The token classification head of checkout `dir`, where its config.json names a
/// `*ForTokenClassification`; labels by its `id2label`.
pub fn load_token_head(c: &EncoderConfig, dir: &Path) -> Result<Option<Classifier>> {
    let json = config_json(dir)?;
    if !names_architecture(&json, "ForTokenClassification") {
        return Ok(None);
    }
    let files = safetensors_files(dir)?;
    // Safety: as `BertEncoder::load` maps the same files: read-only, not written while served.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu)? };
    let labels = hf_labels(dir)?;
    match c.family {
        Family::Bert | Family::Roberta | Family::DistilBert | Family::Gte => {}
        // ModernBERT's head (dense, GELU, norm) before the rows, at every token.
        Family::Modern => return super::modern::load_head(&vb, c, &json, &labels, true).map(Some),
        other => {
            return Err(ModelError::Config(format!(
                "a {other:?} token classifier's head is not served (BERT's, RoBERTa's, \
                 DistilBERT's, GTE's and ModernBERT's are)"
            )))
        }
    }
    let head = vb.pp("classifier");
    load_head(c, None, &head, &labels, HeadInput::EachToken).map(Some)
}
