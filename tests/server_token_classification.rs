//! Token classifiers (NER) served over HTTP against transformers (tests/fixtures/tiny/
//! make_token_classifiers.py): `POST /` answers as `pipeline("token-classification")` does,
//! under every aggregation strategy (`none`, `simple`, `first`, `average`, `max`); vLLM's `/pooling` task
//! `token_classify` answers every token's label probabilities; what is refused.
mod common;

use common::server::Server;
use serde_json::{json, Value};

const TOLERANCE: f64 = 1e-4;

fn dir(name: &str) -> std::path::PathBuf {
    common::fixtures().join("tiny").join(name)
}

fn golden(name: &str) -> (usize, Vec<Value>) {
    let g = common::read_json(&dir(name).join("golden.json"));
    let labels = g["labels"].as_u64().unwrap() as usize;
    (labels, g["cases"].as_array().unwrap().clone())
}

/// An entity list against the pipeline's: the same fields, words and spans, scores within
/// the tolerance.
fn assert_entities(got: &Value, want: &Value, what: &str) {
    let (got, want) = (got.as_array().expect("a list"), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let mut g = g.clone();
        let mut w = w.clone();
        let (gs, ws) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
        assert!((gs - ws).abs() < TOLERANCE, "{what}: {g} vs {w}");
        g["score"] = json!(null);
        w["score"] = json!(null);
        assert_eq!(g, w, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ner_models_answer_as_the_token_classification_pipeline() {
    for name in ["bert_ner", "xlmr_ner", "distilbert_ner", "modernbert_ner"] {
        let (labels, cases) = golden(name);
        let s = Server::start_path(&dir(name), name, &[]).await;
        let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
        for strategy in ["none", "simple", "first", "average", "max"] {
            let body = json!({"inputs": texts, "parameters": {"aggregation_strategy": strategy}});
            let (status, v) = s.post("/", &body).await;
            assert_eq!(status, 200, "{name}: {v}");
            for (got, case) in v.as_array().unwrap().iter().zip(&cases) {
                let what = format!("{name} {strategy} {}", case["text"]);
                assert_entities(got, &case[strategy], &what);
            }
        }
        // One text alone is answered as its list; `none` is the default.
        let (_, one) = s.post("/", &json!({"inputs": texts[4]})).await;
        assert_entities(&one, &cases[4]["none"], name);
        // Nothing ignored: every token but the special ones, `O` too.
        let body = json!({"inputs": texts[0], "parameters": {"ignore_labels": []}});
        let (_, all) = s.post("/", &body).await;
        let tokens = cases[0]["ids"].as_array().unwrap().len() - 2;
        assert_eq!(all.as_array().unwrap().len(), tokens, "{name}: {all}");

        // vLLM's `token_classify`: every token's label probabilities, or logits.
        let (status, v) = s.post("/pooling", &json!({"input": [texts[1]]})).await;
        assert_eq!(status, 200, "{name}: {v}");
        let rows = v["data"][0]["data"].as_array().expect("a row per token");
        let logits = common::as_f32s(&cases[1]["logits"]);
        assert_eq!(rows.len() * labels, logits.len(), "{name}");
        for (row, want) in rows.iter().zip(logits.chunks(labels)) {
            let max = want.iter().copied().fold(f32::MIN, f32::max);
            let sum: f64 = want.iter().map(|l| ((l - max) as f64).exp()).sum();
            for (g, l) in row.as_array().unwrap().iter().zip(want) {
                let p = ((l - max) as f64).exp() / sum;
                assert!((g.as_f64().unwrap() - p).abs() < TOLERANCE, "{name}: {row}");
            }
        }
        let body = json!({"input": texts[1], "task": "token_classify", "use_activation": false});
        let (_, raw) = s.post("/pooling", &body).await;
        let first: Vec<f64> = (raw["data"][0]["data"][0].as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap())
            .collect();
        for (g, w) in first.iter().zip(&logits[..labels]) {
            assert!((g - *w as f64).abs() < TOLERANCE, "{name}: {first:?}");
        }

        // TEI's `/info` lists the labels, the pipeline tag saying they are the tokens'.
        let info: Value = reqwest::get(s.url("/info"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["model_pipeline_tag"], "token-classification", "{info}");
        assert_eq!(
            info["model_type"]["classifier"]["id2label"]["1"], "B-PER",
            "{info}"
        );

        // What is refused.
        for (body, field) in [
            (
                json!({"inputs": "a", "parameters": {"aggregation_strategy": "longest"}}),
                "longest",
            ),
            (json!({"inputs": 3}), "inputs"),
            (json!({"inputs": []}), "inputs"),
            (json!({"inputs": vec!["cat"; 80].join(" ")}), "context"),
        ] {
            let (status, v) = s.post("/", &body).await;
            assert_eq!(status, 400, "{name} {body}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(field), "{name}: {message}");
        }
        let (status, v) = s.post("/v1/classify", &json!({"input": "a"})).await;
        assert_eq!(status, 400, "{name}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_token_head_refuses_token_classify() {
    let s = Server::start_path(&dir("bert_classifier"), "sentiment", &[]).await;
    let body = json!({"input": "the cat", "task": "token_classify"});
    let (status, v) = s.post("/pooling", &body).await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("ForTokenClassification"), "{message}");
}
