//! A token classifier's head (`*ForTokenClassification`: NER models such as dslim/bert-base-NER,
//! xlm-roberta-large-finetuned-conll03, DistilBERT NER fine-tunes): one linear layer,
//! `classifier`, scoring every label at every token's final state. It runs on the host over
//! the states the engine returns for each token (a few labels × the hidden size a token).
use super::bert::safetensors_files;
use super::config::{config_json, names_architecture, EncoderConfig, Family};
use crate::classifier::{hf_labels, Classifier, HeadInput};
use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;

/// The token classification head of checkout `dir`, where its config.json names a
/// `*ForTokenClassification`; labels by its `id2label`.
pub fn load_token_head(c: &EncoderConfig, dir: &Path) -> Result<Option<Classifier>> {
    if !names_architecture(&config_json(dir)?, "ForTokenClassification") {
        return Ok(None);
    }
    if !matches!(
        c.family,
        Family::Bert | Family::Roberta | Family::DistilBert
    ) {
        return Err(ModelError::Config(format!(
            "a {:?} token classifier's head is not served (BERT's, RoBERTa's and DistilBERT's \
             are)",
            c.family
        )));
    }
    let files = safetensors_files(dir)?;
    // Safety: as `BertEncoder::load` maps the same files: read-only, not written while served.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu)? };
    let head = vb.pp("classifier");
    let labels = hf_labels(dir)?;
    let h = c.hidden_size;
    let count = match labels.len() {
        0 => 2,
        n => n,
    };
    let host = |t: Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    let weight = host(head.get((count, h), "weight")?)?;
    let bias = host(head.get(count, "bias")?)?;
    Classifier::encoder_head(None, weight, bias, h, &labels, HeadInput::EachToken).map(Some)
}
