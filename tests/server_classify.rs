//! Sequence classifiers on the real server, against transformers' goldens: `/classify` answers
//! each label's probability from a `*ForSequenceClassification` checkout's head; a one-score
//! head (a cross-encoder reranker) scores `/score` and `/rerank` pairs as one sequence; a
//! classifier made of the language-model head's rows (`--classifier-from-tokens`) scores what
//! the model's own logits say; a checkout without a language-model head refuses to generate;
//! bad input is a 400 and a token that is not in the vocabulary fails the model's load.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use serde_json::{json, Value};

/// transformers' f32 logits against candor's f32 CPU backend (1e-3 is the tiny goldens' bound
/// for logits; a probability moves less).
const TOLERANCE: f64 = 1e-4;

fn golden(arch: &str) -> Value {
    let path = common::fixtures()
        .join("tiny")
        .join(arch)
        .join("golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden")).expect("golden json")
}

fn floats(v: &Value) -> Vec<f64> {
    (v.as_array().expect("a list").iter())
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < TOLERANCE, "{what}: {got:?} vs {want:?}");
    }
}

/// The words that the tiny tokenizer reads as `ids` (`tN` is token N).
fn words(ids: &Value) -> String {
    let ids = ids.as_array().expect("ids");
    let words: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
    words.join(" ")
}

async fn error_of(s: &Server, path: &str, body: Value) -> String {
    let (status, v) = s.post(path, &body).await;
    assert_eq!(status, 400, "{path} {body}: {v}");
    v["error"]["message"].as_str().expect("message").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkouts_head_classifies_as_transformers_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = servable_tiny("qwen3_classifier", dir.path());
    let s = Server::start_path(&model, "sentiment", &[]).await;
    let g = golden("qwen3_classifier");
    let labels: Vec<&str> = (g["labels"].as_array().unwrap().iter())
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels, ["negative", "neutral", "positive"]);

    let (status, v) = s
        .post(
            "/v1/classify",
            &json!({"model": "sentiment", "input": g["inputs"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "sentiment");
    assert!(v["id"].as_str().unwrap().starts_with("classify-"), "{v}");
    let inputs = g["inputs"].as_array().unwrap();
    let tokens: usize = inputs.iter().map(|i| i.as_array().unwrap().len()).sum();
    assert_eq!(v["usage"]["prompt_tokens"], tokens);
    assert_eq!(v["usage"]["total_tokens"], tokens);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), inputs.len());
    for (i, (item, logits)) in data.iter().zip(g["logits"].as_array().unwrap()).enumerate() {
        let want = softmax(&floats(logits));
        assert_eq!(item["index"], i);
        assert_eq!(item["num_classes"], 3);
        assert_close(&floats(&item["probs"]), &want, &format!("input {i}"));
        let best = (want.iter().enumerate())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(item["label"], labels[best], "input {i}");
    }

    // Text reads as its tokens (the tiny tokenizer adds no BOS to a checkout's text).
    let (status, one) = s
        .post("/classify", &json!({"input": words(&inputs[2])}))
        .await;
    assert_eq!(status, 200, "{one}");
    let want = softmax(&floats(&g["logits"][2]));
    assert_close(&floats(&one["data"][0]["probs"]), &want, "text");

    // A classifier has no language-model head: generation is refused, not made up.
    let refused = error_of(&s, "/v1/completions", json!({"prompt": "t5 t6"})).await;
    assert!(refused.contains("sequence classifier"), "{refused}");
    let refused = error_of(&s, "/completion", json!({"prompt": "t5", "n_predict": 2})).await;
    assert!(refused.contains("/classify"), "{refused}");
    let chat = json!({"messages": [{"role": "user", "content": "t5"}]});
    let refused = error_of(&s, "/v1/chat/completions", chat).await;
    assert!(refused.contains("sequence classifier"), "{refused}");
    // Its pooled states are still embeddings.
    let (status, e) = s.post("/v1/embeddings", &json!({"input": "t5 t6"})).await;
    assert_eq!(status, 200, "{e}");

    // Pairs need a head of one score.
    let three = error_of(&s, "/score", json!({"text_1": "t5", "text_2": "t6"})).await;
    assert!(three.contains("3 labels"), "{three}");

    // Bad input: a clear 400 each, and the server goes on.
    for body in [
        json!({"input": ""}),
        json!({"input": []}),
        json!({"input": [[]]}),
        json!({"input": [7, 100000]}),
        json!({"input": 5}),
        json!({}),
        json!({"input": "t5", "priority": "high"}),
    ] {
        error_of(&s, "/v1/classify", body).await;
    }
    let (status, v) = s.post("/v1/classify", &json!({"input": "t5"})).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_encoder_scores_and_reranks_pairs_as_one_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = servable_tiny("qwen3_reranker", dir.path());
    let s = Server::start_path(&model, "reranker", &[]).await;
    let g = golden("qwen3_reranker");
    let query = words(&g["query"]);
    let documents: Vec<String> = (g["documents"].as_array().unwrap().iter())
        .map(words)
        .collect();
    let want: Vec<f64> = (g["logits"].as_array().unwrap().iter())
        .map(|l| sigmoid(floats(l)[0]))
        .collect();

    let (status, v) = s
        .post("/score", &json!({"text_1": query, "text_2": documents}))
        .await;
    assert_eq!(status, 200, "{v}");
    let scores: Vec<f64> = (v["data"].as_array().unwrap().iter())
        .map(|d| d["score"].as_f64().unwrap())
        .collect();
    assert_close(&scores, &want, "/score");
    let tokens: usize = (g["inputs"].as_array().unwrap().iter())
        .map(|i| i.as_array().unwrap().len())
        .sum();
    assert_eq!(v["usage"]["prompt_tokens"], tokens);

    // Pair by pair: the same query beside each document.
    let queries = vec![query.clone(); documents.len()];
    let (status, v) = s
        .post(
            "/v1/score",
            &json!({"text_1": queries, "text_2": documents}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_close(
        &floats(&json!((v["data"].as_array().unwrap().iter())
            .map(|d| d["score"].clone())
            .collect::<Vec<_>>())),
        &want,
        "/score pairs",
    );

    let (status, v) = s
        .post(
            "/v1/rerank",
            &json!({"query": query, "documents": documents, "top_n": 3}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (r, &d) in results.iter().zip(&order) {
        assert_eq!(r["index"], d, "{v}");
        assert!((r["relevance_score"].as_f64().unwrap() - want[d]).abs() < TOLERANCE);
        assert_eq!(r["document"]["text"], documents[d]);
    }

    // /classify answers the one score's probability.
    let (status, v) = s
        .post("/classify", &json!({"input": [g["inputs"][0]]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["label"], "LABEL_0");
    assert_eq!(v["data"][0]["num_classes"], 1);
    assert_close(&floats(&v["data"][0]["probs"]), &want[..1], "/classify");

    let empty = error_of(&s, "/rerank", json!({"query": query, "documents": []})).await;
    assert!(empty.contains("documents"), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_from_tokens_scores_what_the_models_logits_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = servable_tiny("qwen3", dir.path());
    let g = golden("qwen3");
    let ids = &g["input_ids"];
    let last = ids.as_array().unwrap().len() - 1;
    let logits = floats(&g["float32"]["logits"][last.to_string()]);

    // `no,yes`: one score, yes minus no; the model still generates.
    let s = Server::start_path(&model, "tiny", &["--classifier-from-tokens", "t5,t7"]).await;
    let (status, v) = s.post("/v1/classify", &json!({"input": ids})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["label"], "t7");
    let want = sigmoid(logits[7] - logits[5]);
    assert_close(&floats(&v["data"][0]["probs"]), &[want], "yes - no");
    let (status, v) = s
        .post(
            "/v1/completions",
            &json!({"prompt": "t5 t6", "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    drop(s);

    // Three tokens: the model's distribution over those three alone.
    let s = Server::start_path(&model, "tiny", &["--classifier-from-tokens", "t5,t7,t9"]).await;
    let (status, v) = s.post("/v1/classify", &json!({"input": ids})).await;
    assert_eq!(status, 200, "{v}");
    let want = softmax(&[logits[5], logits[7], logits[9]]);
    assert_close(&floats(&v["data"][0]["probs"]), &want, "three tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_token_outside_the_vocabulary_fails_the_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = servable_tiny("qwen3", dir.path());
    let s = Server::launch(&model, "tiny", &["--classifier-from-tokens", "t5,nope"]);
    let failure = s.load_failure().await;
    assert!(failure.contains("`nope` is not a token"), "{failure}");
    assert!(s.log_lines("panicked").is_empty());
    let (status, v) = s.post("/v1/classify", &json!({"input": "t5"})).await;
    assert_eq!(status, 503, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generative_model_without_a_head_says_how_to_serve_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = servable_tiny("llama", dir.path());
    let s = Server::start_path(&model, "tiny", &[]).await;
    let message = error_of(&s, "/classify", json!({"input": "t5"})).await;
    assert!(message.contains("--classifier-from-tokens"), "{message}");
}

#[test]
fn run_batch_classifies_lines_as_the_server_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = servable_tiny("qwen3_classifier", dir.path());
    let g = golden("qwen3_classifier");
    let line = |id: &str, url: &str, body: Value| {
        json!({"custom_id": id, "method": "POST", "url": url, "body": body}).to_string()
    };
    let lines = [
        line("c", "/v1/classify", json!({"input": g["inputs"]})),
        line("gen", "/v1/completions", json!({"prompt": "t5"})),
    ];
    let input = dir.path().join("batch.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    let output = dir.path().join("results.jsonl");
    let out = common::plugins::candor(&[
        "run-batch",
        "-i",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = (std::fs::read_to_string(&output).expect("results").lines())
        .map(|l| serde_json::from_str(l).expect("a result line"))
        .collect();
    let body = &results[0]["response"]["body"];
    assert_eq!(results[0]["response"]["status_code"], 200, "{}", results[0]);
    for (item, logits) in
        (body["data"].as_array().unwrap().iter()).zip(g["logits"].as_array().unwrap())
    {
        assert_close(
            &floats(&item["probs"]),
            &softmax(&floats(logits)),
            "run-batch",
        );
    }
    assert_eq!(results[1]["response"]["status_code"], 400, "{}", results[1]);
}

/// A RoBERTa classifier whose checkout keeps the slow tokenizer only (`vocab.json`,
/// `merges.txt`, RobertaTokenizer's config: tests/fixtures/tiny/roberta_classifier_slow, from
/// make_roberta_slow.py): its texts get RoBERTa's `<s>` ... `</s>` as transformers' slow
/// tokenizer gives them, and `/classify` answers the head's probabilities for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roberta_classifier_with_a_slow_tokenizer_classifies_its_texts() {
    let dir = common::fixtures().join("tiny/roberta_classifier_slow");
    let g = golden("roberta_classifier_slow");
    let cases = g["cases"].as_array().unwrap();
    let tok = candor::engine::load::checkout_tokenizer(&dir)
        .unwrap()
        .expect("a tokenizer")
        .for_encoder()
        .unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = (case["ids"].as_array().unwrap().iter())
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text, true).unwrap(), want, "{text:?}");
    }
    let s = Server::start_path(&dir, "sentiment", &[]).await;
    let texts: Vec<&Value> = cases.iter().map(|c| &c["text"]).collect();
    let (status, v) = s
        .post(
            "/v1/classify",
            &json!({"model": "sentiment", "input": texts}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for (i, (item, case)) in v["data"].as_array().unwrap().iter().zip(cases).enumerate() {
        let want = softmax(&floats(&case["logits"]));
        assert_close(&floats(&item["probs"]), &want, &format!("text {i}"));
    }
}
