//! BERT-style encoders against transformers (tests/fixtures/tiny/make_encoders.py, and
//! make_nomic.py for NomicBERT: rotary positions, SwiGLU, the remote code's names;
//! make_modernbert.py for ModernBERT: pre-norm, GeGLU, local and global attention;
//! make_distilbert.py for DistilBERT: its names, no token types, a ReLU head): the
//! tokenizer's ids for texts and pairs, each token's type as the engine derives it, every
//! final hidden state of every input run together in one pass (within 1e-4,
//! `common::encoder::assert_matches_golden`, which the GPU's test runs too), and the
//! classifier heads' logits from the state they read.
mod common;

use candle_core::Device;
use candor_models::encoder::{token_types, BertEncoder, EncoderConfig, EncoderInput};
use candor_models::tokenizer::Tokenizer;
use common::encoder::{assert_matches_golden, has_head, ENCODERS};
use common::{as_f32s, as_u32s, max_abs_diff, read_json};

fn dir(name: &str) -> std::path::PathBuf {
    common::encoder::encoder_dir(name)
}

fn tokenizer(name: &str) -> Tokenizer {
    let d = dir(name);
    let config = d.join("tokenizer_config.json");
    Tokenizer::from_file(&d.join("tokenizer.json"), Some(&config))
        .expect("tokenizer")
        .for_encoder()
        .expect("encoder tokenizer")
}

/// A golden case (a text or a pair) through `tok`: its ids and token types, checked against
/// transformers'.
fn checked_tokens(
    tok: &Tokenizer,
    config: &EncoderConfig,
    case: &serde_json::Value,
    name: &str,
) -> (Vec<u32>, Vec<u32>) {
    let text = case["text"].as_str().unwrap();
    let ids = match case["text_pair"].as_str() {
        Some(second) => tok.encode_pair(text, second).unwrap().expect("a pair"),
        None => tok.encode(text, true).unwrap(),
    };
    assert_eq!(ids, as_u32s(&case["ids"]), "{name}: {text}");
    let types = token_types(&ids, tok.separator(), config.type_vocab_size);
    assert_eq!(types, as_u32s(&case["type_ids"]), "{name}: {text}");
    (ids, types)
}

#[test]
fn the_encoder_tokenizer_makes_transformers_ids_and_types() {
    for name in ENCODERS {
        let tok = tokenizer(name);
        let config = EncoderConfig::from_dir(&dir(name)).unwrap().unwrap();
        let golden = read_json(&dir(name).join("golden.json"));
        for case in golden["cases"].as_array().unwrap() {
            checked_tokens(&tok, &config, case, name);
        }
    }
}

#[test]
fn every_hidden_state_and_head_matches_transformers() {
    for name in ENCODERS {
        let (encoder, inputs, rows) = assert_matches_golden(name, &Device::Cpu);
        // One input alone gives what it gave among the others.
        let alone = encoder
            .forward(&inputs.inputs()[1..2])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let first_len = inputs.ids[0].len();
        let among = &rows[first_len..first_len + inputs.ids[1].len()];
        assert!(
            max_abs_diff(&alone.concat(), &among.concat()) < 1e-5,
            "{name}"
        );
    }
}

#[test]
fn splade_vectors_match_sentence_transformers() {
    for name in common::encoder::SPLADE_ENCODERS {
        // The tokenizer sentence-transformers saved makes the ids the golden ran.
        let model = common::encoder::splade_model_dir(name);
        let config = model.join("tokenizer_config.json");
        let tok = Tokenizer::from_file(&model.join("tokenizer.json"), Some(&config))
            .unwrap()
            .for_encoder()
            .unwrap();
        let golden = read_json(&dir(name).join("golden.json"));
        for case in golden["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                tok.encode(text, true).unwrap(),
                as_u32s(&case["ids"]),
                "{name}"
            );
        }
        common::encoder::assert_splade_matches_golden(name, &Device::Cpu);
    }
}

#[test]
fn an_inference_free_splade_model_weighs_queries_by_its_table() {
    let root = dir("distilbert_sparse");
    let modules = candor_models::sentence_transformers::Modules::read(&root)
        .unwrap()
        .unwrap();
    let (route, table) = modules.static_route().expect("a static route");
    assert_eq!(route, "query");
    let table = candor_models::encoder::StaticSparse::load(table).unwrap();
    let golden = read_json(&root.join("golden.json"));
    let vocab = golden["vocab_size"].as_u64().unwrap() as usize;
    for case in golden["cases"].as_array().unwrap() {
        let got = table.vector(&as_u32s(&case["ids"]), vocab);
        let want = as_f32s(&case["query"]);
        assert!(max_abs_diff(&got, &want) < 1e-6, "{}", case["text"]);
        assert!(want.iter().any(|&w| w > 0.0), "{}", case["text"]);
    }
}

#[test]
fn bge_m3_dense_lexical_and_colbert_vectors_match_flag_embedding() {
    let tok = tokenizer("bge_m3");
    let golden = read_json(&dir("bge_m3").join("golden.json"));
    for case in golden["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap(),
            as_u32s(&case["ids"]),
            "{text}"
        );
    }
    common::encoder::assert_bge_m3_matches_golden(&Device::Cpu);
}

#[test]
fn the_classifier_heads_are_labelled_from_the_config() {
    let labels = |name: &str| {
        let config = EncoderConfig::from_dir(&dir(name)).unwrap().unwrap();
        let (_, head) = BertEncoder::load(&config, &dir(name), &Device::Cpu).unwrap();
        head.expect("a head").labels().to_vec()
    };
    assert_eq!(
        labels("bert_classifier"),
        ["negative", "neutral", "positive"]
    );
    assert_eq!(labels("xlmr_reranker"), ["LABEL_0"]);
    assert_eq!(
        labels("modernbert_classifier"),
        ["negative", "neutral", "positive"]
    );
    assert_eq!(labels("distilbert_classifier"), ["NEGATIVE", "POSITIVE"]);
}

#[test]
fn token_classifiers_label_every_token_as_transformers_does() {
    // tests/fixtures/tiny/make_token_classifiers.py: BERT, XLM-R, DistilBERT and ModernBERT
    // NER heads; make_gte.py's GTE one under the remote code's names.
    for name in [
        "bert_ner",
        "xlmr_ner",
        "distilbert_ner",
        "modernbert_ner",
        "gte_ner",
    ] {
        let d = dir(name);
        let config = EncoderConfig::from_dir(&d).unwrap().unwrap();
        let (encoder, sequence_head) = BertEncoder::load(&config, &d, &Device::Cpu).unwrap();
        assert!(sequence_head.is_none(), "{name}");
        let head = candor_models::encoder::load_token_head(&config, &d)
            .unwrap()
            .expect("a token head");
        assert_eq!(head.labels()[..3], ["O", "B-PER", "I-PER"], "{name}");
        let tok = tokenizer(name);
        let golden = read_json(&d.join("golden.json"));
        for case in golden["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(ids, as_u32s(&case["ids"]), "{name}: {text}");
            let types = vec![0; ids.len()];
            let rows = (encoder.forward(&[EncoderInput {
                ids: &ids,
                type_ids: &types,
            }]))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
            let logits: Vec<f32> = rows.iter().flat_map(|r| head.logits(r).unwrap()).collect();
            let diff = max_abs_diff(&logits, &as_f32s(&case["logits"]));
            assert!(diff < 1e-4, "{name} {text}: logits differ by {diff}");
        }
    }
    // A sequence classifier has no token head.
    let d = dir("bert_classifier");
    let config = EncoderConfig::from_dir(&d).unwrap().unwrap();
    assert!(candor_models::encoder::load_token_head(&config, &d)
        .unwrap()
        .is_none());
}

#[test]
fn inputs_past_the_positions_or_the_vocabulary_are_refused() {
    let config = EncoderConfig::from_dir(&dir("bert_embed"))
        .unwrap()
        .unwrap();
    let (encoder, _) = BertEncoder::load(&config, &dir("bert_embed"), &Device::Cpu).unwrap();
    let long = vec![5u32; config.context() + 1];
    let types = vec![0u32; long.len()];
    let input = EncoderInput {
        ids: &long,
        type_ids: &types,
    };
    assert!(encoder.forward(&[input]).is_err());
    let bad = [config.vocab_size as u32];
    let input = EncoderInput {
        ids: &bad,
        type_ids: &[0],
    };
    assert!(encoder.forward(&[input]).is_err());
    let input = EncoderInput {
        ids: &[2, 3],
        type_ids: &[0, 2],
    };
    assert!(encoder.forward(&[input]).is_err());
}

/// A GGUF as llama.cpp's converter writes it (tests/fixtures/tiny/make_encoder_ggufs.py).
fn gguf(name: &str) -> candor_models::weights::gguf::GgufFile {
    let path = common::fixtures().join("tiny").join(format!("{name}.gguf"));
    candor_models::weights::gguf::GgufFile::open(&path, true).expect("gguf")
}

#[test]
fn a_llama_cpp_gguf_encodes_as_its_checkout_does() {
    for name in [
        "bert_embed",
        "bert_classifier",
        "xlmr_spm_reranker",
        "nomic_embed",
    ] {
        let file = gguf(name);
        let config = EncoderConfig::from_gguf(&file).unwrap();
        let tok = Tokenizer::from_gguf_metadata(&file.take_tokenizer_metadata()).unwrap();
        let (encoder, head) =
            candor_models::encoder::load_gguf(&config, &file, &Device::Cpu).unwrap();
        let golden = read_json(&dir(name).join("golden.json"));
        for case in golden["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            // BERT's phantom-space vocabulary spelled back, XLM-R's Unigram with its charsmap:
            // the checkout's ids, types and states.
            let (ids, types) = checked_tokens(&tok, &config, case, name);
            let input = EncoderInput {
                ids: &ids,
                type_ids: &types,
            };
            let rows = encoder.forward(&[input]).unwrap().to_vec2::<f32>().unwrap();
            let diff = max_abs_diff(&rows.concat(), &as_f32s(&case["hidden"]));
            assert!(diff < 1e-4, "{name} {text}: hidden differs by {diff}");
            if let Some(head) = &head {
                // The converter drops BERT's pooler: that head projects [CLS] directly.
                // XLM-R's keeps its dense layer: the checkout's logits.
                let key = match name {
                    "bert_classifier" => "gguf_logits",
                    _ => "logits",
                };
                let logits = head.logits(&rows[0]).unwrap();
                let diff = max_abs_diff(&logits, &as_f32s(&case[key]));
                assert!(diff < 1e-4, "{name} {text}: logits differ by {diff}");
            }
        }
        assert_eq!(head.is_some(), has_head(name), "{name}");
    }
}

#[test]
fn nomic_bert_serves_the_positions_it_was_trained_at() {
    // The checkout's `n_positions` is 8192; it was trained at 48 (`max_trained_positions`),
    // as the GGUF's `context_length` says too.
    let config = EncoderConfig::from_dir(&dir("nomic_embed"))
        .unwrap()
        .unwrap();
    assert_eq!(config.context(), 48);
    assert_eq!(
        EncoderConfig::from_gguf(&gguf("nomic_embed"))
            .unwrap()
            .context(),
        48
    );
    let (encoder, _) = BertEncoder::load(&config, &dir("nomic_embed"), &Device::Cpu).unwrap();
    for (len, fits) in [(48, true), (49, false)] {
        let ids = vec![7u32; len];
        let types = vec![0u32; len];
        let input = EncoderInput {
            ids: &ids,
            type_ids: &types,
        };
        assert_eq!(encoder.forward(&[input]).is_ok(), fits, "{len} tokens");
    }
}
