//! XLM-RoBERTa's SentencePiece Unigram tokenizer from a GGUF (`tokenizer.ggml.model` `t5`, as
//! llama.cpp's converter writes XLM-R encoders: bge-m3, bge-reranker-v2-m3, multilingual-e5),
//! built on the `tokenizers` crate as transformers' XLMRobertaTokenizerFast is: the model's
//! own precompiled normalization map, trailing spaces stripped and runs of spaces joined where
//! it removes extra whitespace, `▁` before each word, `<s> a </s>` and pairs
//! `<s> a </s></s> b </s>`.
use super::{EncoderVocab, TokenizerError};
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::normalizers::strip::Strip;
use tokenizers::normalizers::utils::Sequence;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper};

const TYPE_CONTROL: i32 = 3;

/// What a `t5` GGUF says besides its pieces.
pub(super) struct UnigramSpec<'a> {
    pub scores: &'a [f32],
    pub charsmap: Option<&'a [u8]>,
    pub add_space_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub sep: Option<u32>,
    pub unk: Option<u32>,
}

fn failed(step: &str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Backend(format!("Unigram {step}: {e}"))
}

pub(super) fn from_gguf(
    tokens: &[String],
    types: &[i32],
    spec: UnigramSpec<'_>,
) -> Result<EncoderVocab, TokenizerError> {
    if spec.scores.len() != tokens.len() {
        return Err(TokenizerError::WrongType {
            key: "tokenizer.ggml.scores".into(),
            expected: "one score per token",
        });
    }
    let named = |id, text, key| EncoderVocab::special_id(tokens, id, text, key);
    let bos = named(spec.bos, "<s>", "tokenizer.ggml.bos_token_id")?;
    let eos = named(spec.eos, "</s>", "tokenizer.ggml.eos_token_id")?;
    let sep = spec
        .sep
        .filter(|&s| (s as usize) < tokens.len())
        .unwrap_or(eos);
    let unk = named(spec.unk, "<unk>", "tokenizer.ggml.unknown_token_id")?;
    let vocab: Vec<(String, f64)> = (tokens.iter().zip(spec.scores))
        .map(|(t, &s)| (t.clone(), s as f64))
        .collect();
    let model = Unigram::from(vocab, Some(unk as usize), false).map_err(|e| failed("model", e))?;
    let mut tk = tokenizers::Tokenizer::new(model);
    let mut steps: Vec<NormalizerWrapper> = Vec::new();
    if let Some(map) = spec.charsmap.filter(|m| !m.is_empty()) {
        steps.push(
            Precompiled::from(map)
                .map_err(|e| failed("charsmap", e))?
                .into(),
        );
    }
    if spec.remove_extra_whitespaces {
        steps.push(Strip::new(false, true).into());
        let runs = Replace::new(ReplacePattern::Regex(" {2,}".into()), "\u{2581}")
            .map_err(|e| failed("normalizer", e))?;
        steps.push(runs.into());
    }
    tk.with_normalizer(Some(Sequence::new(steps)))
        .map_err(|e| failed("normalizer", e))?;
    let prepend = match spec.add_space_prefix {
        true => PrependScheme::Always,
        false => PrependScheme::Never,
    };
    tk.with_pre_tokenizer(Some(Metaspace::new('\u{2581}', prepend, true)));
    let (b, e, s) = (
        &tokens[bos as usize],
        &tokens[eos as usize],
        &tokens[sep as usize],
    );
    let template = TemplateProcessing::builder()
        .try_single(format!("{b}:0 $A:0 {e}:0"))
        .map_err(|x| failed("template", x))?
        .try_pair(format!("{b}:0 $A:0 {s}:0 {s}:0 $B:0 {e}:0"))
        .map_err(|x| failed("template", x))?
        .special_tokens(vec![(b.clone(), bos), (e.clone(), eos), (s.clone(), sep)])
        .build()
        .map_err(|x| failed("template", x))?;
    tk.with_post_processor(Some(template));
    tk.with_decoder(Some(MetaspaceDecoder::new('\u{2581}', prepend, true)));
    let special: Vec<bool> = types.iter().map(|&t| t == TYPE_CONTROL).collect();
    let added: Vec<AddedToken> = (tokens.iter().zip(&special))
        .filter(|(_, s)| **s)
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tk.add_special_tokens(added)
        .map_err(|e| failed("special tokens", e))?;
    Ok(EncoderVocab {
        tokenizer: tk,
        special,
        sep,
    })
}
