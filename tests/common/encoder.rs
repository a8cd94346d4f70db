//! The tiny encoder fixtures against their transformers goldens, on any candle device: one
//! check for the CPU's golden test and the GPU's.
use super::{as_f32s, as_u32s, fixtures, max_abs_diff, read_json};
use candle_core::Device;
use candor_models::classifier::{Classifier, HeadInput};
use candor_models::encoder::{BertEncoder, EncoderConfig, EncoderInput};
use std::path::PathBuf;

/// Every tiny encoder fixture (tests/fixtures/tiny/make_encoders.py, make_xlmr_gguf.py,
/// make_nomic.py, make_modernbert.py, make_gte.py, make_distilbert.py).
pub const ENCODERS: [&str; 12] = [
    "bert_embed",
    "bert_classifier",
    "xlmr_reranker",
    "xlmr_spm_reranker",
    "nomic_embed",
    "modernbert_embed",
    "modernbert_classifier",
    "gte_embed",
    "gte_native_embed",
    "gte_reranker",
    "distilbert_embed",
    "distilbert_classifier",
];

pub fn encoder_dir(name: &str) -> PathBuf {
    fixtures().join("tiny").join(name)
}

/// Whether the fixture is a sequence classifier (a head over its pooled state).
pub fn has_head(name: &str) -> bool {
    !name.ends_with("_embed")
}

/// The state a head reads of an input's rows: the first, or their mean.
pub fn head_input(head: &Classifier, rows: &[Vec<f32>]) -> Vec<f32> {
    match head.reads() {
        HeadInput::Mean => (0..rows[0].len())
            .map(|d| rows.iter().map(|r| r[d]).sum::<f32>() / rows.len() as f32)
            .collect(),
        HeadInput::First | HeadInput::Last | HeadInput::EachToken => rows[0].clone(),
    }
}

/// A fixture's golden inputs: each case's ids and token types.
pub struct GoldenInputs {
    pub ids: Vec<Vec<u32>>,
    pub types: Vec<Vec<u32>>,
}

impl GoldenInputs {
    pub fn inputs(&self) -> Vec<EncoderInput<'_>> {
        (self.ids.iter().zip(&self.types))
            .map(|(ids, type_ids)| EncoderInput { ids, type_ids })
            .collect()
    }
}

/// Fixture `name` loaded on `device`, every golden case run in one pass (each input attends
/// over its own rows only): each final state within 1e-4 of transformers', and the head's
/// logits over the state it reads. Returns the encoder, the inputs and the stacked rows.
pub fn assert_matches_golden(
    name: &str,
    device: &Device,
) -> (BertEncoder, GoldenInputs, Vec<Vec<f32>>) {
    let dir = encoder_dir(name);
    let config = EncoderConfig::from_dir(&dir).unwrap().unwrap();
    let (encoder, head) = BertEncoder::load(&config, &dir, device).unwrap();
    assert_eq!(head.is_some(), has_head(name), "{name}");
    let golden = read_json(&dir.join("golden.json"));
    let cases = golden["cases"].as_array().unwrap();
    let inputs = GoldenInputs {
        ids: cases.iter().map(|c| as_u32s(&c["ids"])).collect(),
        types: cases.iter().map(|c| as_u32s(&c["type_ids"])).collect(),
    };
    let rows = (encoder.forward(&inputs.inputs()).unwrap())
        .to_vec2::<f32>()
        .unwrap();
    let mut at = 0;
    for (case, ids) in cases.iter().zip(&inputs.ids) {
        let own = &rows[at..at + ids.len()];
        let diff = max_abs_diff(&own.concat(), &as_f32s(&case["hidden"]));
        let text = &case["text"];
        assert!(
            diff < 1e-4,
            "{name} {text}: hidden differs by {diff} on {device:?}"
        );
        if let Some(head) = &head {
            let logits = head.logits(&head_input(head, own)).unwrap();
            let diff = max_abs_diff(&logits, &as_f32s(&case["logits"]));
            assert!(
                diff < 1e-4,
                "{name} {text}: logits differ by {diff} on {device:?}"
            );
        }
        at += ids.len();
    }
    (encoder, inputs, rows)
}

/// The final states of one input `ids` of a model without token types, run alone.
fn states_alone(encoder: &BertEncoder, ids: &[u32]) -> candle_core::Tensor {
    let types = vec![0; ids.len()];
    (encoder.forward(&[EncoderInput {
        ids,
        type_ids: &types,
    }]))
    .unwrap()
}

/// The tiny SPLADE fixtures (tests/fixtures/tiny/make_splade.py; make_distilbert.py's
/// inference-free one, a Router over a DistilBERT masked LM and a static query table;
/// make_gte_splade.py's GTE masked LM under the remote code's names).
pub const SPLADE_ENCODERS: [&str; 5] = [
    "bert_splade",
    "roberta_splade",
    "modernbert_splade",
    "distilbert_sparse",
    "gte_splade",
];

/// Where a SPLADE fixture keeps its model: its directory, or a Router's encoder route's.
pub fn splade_model_dir(name: &str) -> PathBuf {
    let dir = encoder_dir(name);
    match candor_models::sentence_transformers::Modules::read(&dir).unwrap() {
        Some(modules) => modules.model_dir(),
        None => dir,
    }
}

/// SPLADE fixture `name` on `device`: every golden text's vector over the vocabulary, from its
/// masked-LM head and its sentence-transformers pooling, within 1e-4 of `SparseEncoder`'s
/// (relative above 1), zero exactly where it is zero (an inference-free model's `document`
/// vectors; its `query` vectors are checked by `encoder_golden`, they need no device).
pub fn assert_splade_matches_golden(name: &str, device: &Device) {
    use candor_models::encoder::{MlmHead, Splade, SpladeConfig};
    let (root, dir) = (encoder_dir(name), splade_model_dir(name));
    let config = EncoderConfig::from_dir(&dir).unwrap().unwrap();
    let (encoder, head) = BertEncoder::load(&config, &dir, device).unwrap();
    assert!(head.is_none(), "{name}");
    assert!(
        candor_models::encoder::is_masked_lm(&dir).unwrap(),
        "{name}"
    );
    let splade = Splade {
        head: MlmHead::load(&config, &dir, encoder.word_embeddings(), device).unwrap(),
        config: SpladeConfig::from_dir(&root)
            .unwrap()
            .expect("a SpladePooling module"),
    };
    let golden = read_json(&root.join("golden.json"));
    for case in golden["cases"].as_array().unwrap() {
        let ids = as_u32s(&case["ids"]);
        let states = states_alone(&encoder, &ids);
        let got = splade.pool(&states).unwrap();
        let routed = case.get("document").is_some();
        let want = as_f32s(&case[if routed { "document" } else { "sparse" }]);
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let text = &case["text"];
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{name} {text}: entry {i} is {g}, SparseEncoder's {w} on {device:?}"
            );
            assert_eq!(*g == 0.0, *w == 0.0, "{name} {text}: entry {i}: {g} vs {w}");
        }
    }
}

/// The tiny BGE-M3 (tests/fixtures/tiny/make_bge_m3.py) on `device`, against FlagEmbedding's
/// `BGEM3FlagModel`: each text's dense embedding (its `[CLS]` state, normalised) within 1e-4,
/// its lexical weights (`sparse_linear.pt`, special tokens left out, each id's largest) the
/// same ids within 1e-4, and its ColBERT vectors (`colbert_linear.pt` over every token after
/// the first, normalised) within 1e-4.
pub fn assert_bge_m3_matches_golden(device: &Device) {
    use candor_models::encoder::{ColbertHead, LexicalHead};
    let dir = encoder_dir("bge_m3");
    let config = EncoderConfig::from_dir(&dir).unwrap().unwrap();
    let (encoder, _) = BertEncoder::load(&config, &dir, device).unwrap();
    // XLM-R's <s>, </s>, <pad> and <unk>, as FlagEmbedding leaves them out.
    let head = LexicalHead::load(&dir, config.hidden_size, vec![0, 2, 1, 3], device)
        .unwrap()
        .expect("sparse_linear.pt");
    let colbert = ColbertHead::load(&dir, config.hidden_size)
        .unwrap()
        .expect("colbert_linear.pt");
    let golden = read_json(&dir.join("golden.json"));
    for case in golden["cases"].as_array().unwrap() {
        let text = &case["text"];
        let ids = as_u32s(&case["ids"]);
        let states = states_alone(&encoder, &ids);
        let cls = states.get(0).unwrap().to_vec1::<f32>().unwrap();
        let norm = cls.iter().map(|x| x * x).sum::<f32>().sqrt();
        let dense: Vec<f32> = cls.iter().map(|x| x / norm).collect();
        let diff = max_abs_diff(&dense, &as_f32s(&case["dense"]));
        assert!(
            diff < 1e-4,
            "bge_m3 {text}: dense differs by {diff} on {device:?}"
        );
        let vocab = config.vocab_size;
        let got = head.pool(&states, &ids, vocab).unwrap();
        let want = case["lexical_weights"].as_object().unwrap();
        let nonzero: Vec<(usize, f32)> = (got.iter().enumerate())
            .filter(|(_, &v)| v != 0.0)
            .map(|(i, &v)| (i, v))
            .collect();
        assert_eq!(
            nonzero.len(),
            want.len(),
            "bge_m3 {text}: {nonzero:?} vs {want:?}"
        );
        for (id, v) in nonzero {
            let w = want[&id.to_string()].as_f64().unwrap() as f32;
            assert!((v - w).abs() < 1e-4, "bge_m3 {text}: id {id}: {v} vs {w}");
        }
        let rows = states.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let vectors = colbert.vectors(&rows).unwrap();
        let want = case["colbert"].as_array().unwrap();
        assert_eq!(
            vectors.len(),
            want.len(),
            "bge_m3 {text}: one per token after [CLS]"
        );
        for (v, w) in vectors.iter().zip(want) {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let unit: Vec<f32> = v.iter().map(|x| x / norm).collect();
            let diff = max_abs_diff(&unit, &as_f32s(w));
            assert!(
                diff < 1e-4,
                "bge_m3 {text}: ColBERT differs by {diff} on {device:?}"
            );
        }
    }
}
