//! Bidirectional encoders: BERT and RoBERTa checkouts (sentence-transformers embedders such as
//! BGE, E5, GTE and MiniLM; cross-encoder rerankers such as bge-reranker and the ms-marco
//! MiniLMs), NomicBERT's (nomic-embed-text), ModernBERT's (modernbert-embed,
//! gte-modernbert), GTE's (gte-base-en-v1.5, gte-multilingual-base and its reranker,
//! snowflake-arctic-embed-m-v2.0) and DistilBERT's (`distil`: multi-qa-distilbert, sst-2
//! classifiers); sparse vectors from BERT's, RoBERTa's and DistilBERT's masked LMs (SPLADE:
//! `splade`), the static query table of an inference-free SPLADE model (`static_sparse`),
//! BGE-M3's lexical head (`lexical`), BGE-M3's ColBERT vectors (`colbert`), and token
//! classifiers' labels for every token (`token_head`: NER models). Every token
//! attends to every other, so an input is read whole, in one pass, with no KV cache: the
//! engine hands such a model whole prompts (`Runner::whole_prompts`). They embed and
//! classify; they do not generate.
mod bert;
mod colbert;
mod config;
mod cpu_ops;
mod distil;
mod gguf;
mod gte;
mod layer;
mod lexical;
mod modern;
mod nomic;
mod rotary;
mod sparse;
mod splade;
mod static_sparse;
mod token_head;

pub use bert::{BertEncoder, EncoderInput};
pub use colbert::{ColbertHead, COLBERT_FILE};
pub use config::{EncoderActivation, EncoderConfig, Family, LocalAttention};
pub use gguf::{load_gguf, ARCHS as GGUF_ARCHS};
pub use lexical::{LexicalHead, TokenWeights, LEXICAL_FILE};
pub use sparse::SparseHead;
pub use splade::{is_masked_lm, MlmHead, Splade, SpladeActivation, SpladeConfig, SpladeStrategy};
pub use static_sparse::{StaticRoute, StaticSparse, IDF_FILE, STATIC_SPARSE_FILE};
pub use token_head::load_token_head;

/// Each token's type in a BERT pair `[CLS] a [SEP] b [SEP]`: 0 up to the first separator,
/// 1 after it, as BERT's tokenizer marks a pair's second text; all 0 for a single text (its
/// one separator ends it) and for a model with one type (RoBERTa's pairs are all type 0).
pub fn token_types(ids: &[u32], separator: Option<u32>, type_vocab_size: usize) -> Vec<u32> {
    let second = match (separator, type_vocab_size) {
        (Some(sep), 2..) => ids
            .iter()
            .position(|&t| t == sep)
            .map_or(ids.len(), |p| p + 1),
        _ => ids.len(),
    };
    (0..ids.len()).map(|i| u32::from(i >= second)).collect()
}

#[cfg(test)]
mod tests {
    use super::token_types;

    #[test]
    fn the_second_text_of_a_bert_pair_is_type_one() {
        // [CLS]=2 a [SEP]=3 b c [SEP]
        assert_eq!(
            token_types(&[2, 7, 3, 8, 9, 3], Some(3), 2),
            [0, 0, 0, 1, 1, 1]
        );
        assert_eq!(token_types(&[2, 7, 8, 3], Some(3), 2), [0, 0, 0, 0]);
        assert_eq!(token_types(&[0, 7, 2, 2, 8, 2], Some(2), 1), [0; 6]);
        assert_eq!(token_types(&[2, 7, 3, 8], None, 2), [0; 4]);
    }
}
