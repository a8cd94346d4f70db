//! BERT-style encoders served over HTTP, against transformers' goldens
//! (tests/fixtures/tiny/make_encoders.py, make_nomic.py, make_modernbert.py, make_gte.py):
//! embeddings pooled as the checkout's sentence-transformers files say (mean, CLS) or as
//! `--pooling cls` asks, a BERT classifier's
//! labels, an XLM-RoBERTa cross-encoder's `/score` and `/rerank` over the tokenizer's own pairs;
//! text-embeddings-inference's `/embed`, `/embed_all`, `/rerank` and `/predict`; generation refused with a message
//! that says what an encoder answers; bad input a 400.
mod common;

use common::server::Server;
use serde_json::{json, Value};

/// transformers' f32 states against candle's f32 CPU ops.
const TOLERANCE: f64 = 1e-4;

fn dir(name: &str) -> std::path::PathBuf {
    common::fixtures().join("tiny").join(name)
}

fn cases(name: &str) -> (usize, Vec<Value>) {
    let g = common::read_json(&dir(name).join("golden.json"));
    let hidden = g["hidden_size"].as_u64().unwrap() as usize;
    (hidden, g["cases"].as_array().unwrap().clone())
}

fn floats(v: &Value) -> Vec<f64> {
    (v.as_array().expect("a list").iter())
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn unit(v: Vec<f64>) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// A case's rows of final states pooled: their mean, or the first.
fn pooled(case: &Value, hidden: usize, mean: bool) -> Vec<f64> {
    let all = floats(&case["hidden"]);
    let rows: Vec<&[f64]> = all.chunks(hidden).collect();
    match mean {
        true => (0..hidden)
            .map(|d| rows.iter().map(|r| r[d]).sum::<f64>() / rows.len() as f64)
            .collect(),
        false => rows[0].to_vec(),
    }
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < TOLERANCE, "{what}: {got:?} vs {want:?}");
    }
}

/// The texts of `cases` embedded by `s`, each within the tolerance of its golden states
/// pooled (`mean`, else the first).
async fn assert_embeds(s: &Server, cases: &[Value], hidden: usize, mean: bool, what: &str) {
    let (status, v) = s
        .post("/v1/embeddings", &json!({"input": texts(cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    let singles = singles(cases);
    let tokens: usize = singles
        .iter()
        .map(|c| c["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(v["usage"]["prompt_tokens"], tokens, "{v}");
    for (item, case) in v["data"].as_array().unwrap().iter().zip(singles) {
        let want = unit(pooled(case, hidden, mean));
        assert_close(&floats(&item["embedding"]), &want, what);
    }
}

/// `/v1/classify` of the texts of `cases` by `s`: each label's probability the softmax of the
/// golden `logits_key`.
async fn assert_classifies(s: &Server, cases: &[Value], logits_key: &str) -> Value {
    let (status, v) = s
        .post("/v1/classify", &json!({"input": texts(cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    let singles = singles(cases);
    for (item, case) in v["data"].as_array().unwrap().iter().zip(singles) {
        let want = softmax(&floats(&case[logits_key]));
        assert_close(&floats(&item["probs"]), &want, logits_key);
    }
    v
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::MIN, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// The golden pairs of `cases` (one query, its documents) scored by `s` at `path`: each the
/// sigmoid of its golden logit, the tokens read all the pairs'. Returns the query, the
/// documents and those scores.
async fn assert_scores_pairs<'a>(
    s: &Server,
    path: &str,
    cases: &'a [Value],
) -> (&'a str, Vec<&'a str>, Vec<f64>) {
    let pairs: Vec<&Value> = cases.iter().filter(|c| c["kind"] == "pair").collect();
    let query = pairs[0]["text"].as_str().unwrap();
    let documents: Vec<&str> = (pairs.iter())
        .map(|c| c["text_pair"].as_str().unwrap())
        .collect();
    let want: Vec<f64> = (pairs.iter())
        .map(|c| 1.0 / (1.0 + (-floats(&c["logits"])[0]).exp()))
        .collect();
    let (status, v) = s
        .post(path, &json!({"text_1": query, "text_2": documents}))
        .await;
    assert_eq!(status, 200, "{v}");
    let scores: Vec<f64> = (v["data"].as_array().unwrap().iter())
        .map(|d| d["score"].as_f64().unwrap())
        .collect();
    assert_close(&scores, &want, path);
    let tokens: usize = pairs
        .iter()
        .map(|c| c["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(v["usage"]["prompt_tokens"], tokens, "{v}");
    (query, documents, want)
}

/// A writable copy of fixture `name`'s checkout (its files and its pooling config).
fn checkout_copy(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for entry in std::fs::read_dir(dir(name)).unwrap() {
        let from = entry.unwrap().path();
        if from.is_file() {
            std::fs::copy(&from, d.join(from.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir(d.join("1_Pooling")).unwrap();
    let pooling = "1_Pooling/config.json";
    std::fs::copy(dir(name).join(pooling), d.join(pooling)).unwrap();
    tmp
}

async fn error_of(s: &Server, path: &str, body: Value) -> String {
    let (status, v) = s.post(path, &body).await;
    assert_eq!(status, 400, "{path} {body}: {v}");
    v["error"]["message"].as_str().expect("message").to_string()
}

/// The cases of single texts (not pairs), in order.
fn singles(cases: &[Value]) -> Vec<&Value> {
    cases.iter().filter(|c| c["kind"] == "text").collect()
}

fn texts(cases: &[Value]) -> Vec<String> {
    (singles(cases).iter())
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoder_embeds_as_sentence_transformers_pools_it() {
    let (hidden, cases) = cases("bert_embed");
    let singles = singles(&cases);
    let s = Server::start_path(&dir("bert_embed"), "minilm", &[]).await;
    assert_embeds(&s, &cases, hidden, true, "mean pooling").await;

    // Token ids go in as sent (the tokenizer's [CLS] and [SEP] included).
    let ids = &singles[1]["ids"];
    let (status, v) = s.post("/v1/embeddings", &json!({"input": ids})).await;
    assert_eq!(status, 200, "{v}");
    let want = unit(pooled(singles[1], hidden, true));
    assert_close(&floats(&v["data"][0]["embedding"]), &want, "ids");

    // Without a head, /score is the embeddings' cosine.
    let (status, v) = s
        .post(
            "/score",
            &json!({"text_1": singles[0]["text"], "text_2": singles[1]["text"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (a, b) = (
        unit(pooled(singles[0], hidden, true)),
        unit(pooled(singles[1], hidden, true)),
    );
    let cosine: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!(
        (v["data"][0]["score"].as_f64().unwrap() - cosine).abs() < TOLERANCE,
        "{v}"
    );

    // An encoder generates nothing; it says what it answers.
    let refused = error_of(&s, "/v1/completions", json!({"prompt": "the cat"})).await;
    assert!(refused.contains("encoder"), "{refused}");
    let chat = json!({"messages": [{"role": "user", "content": "hello"}]});
    let refused = error_of(&s, "/v1/chat/completions", chat).await;
    assert!(refused.contains("embeddings"), "{refused}");
    let refused = error_of(&s, "/v1/classify", json!({"input": "the cat"})).await;
    assert!(refused.contains("no classification head"), "{refused}");

    // Past the 64 positions: refused, and the server goes on.
    let long = vec!["cat"; 80].join(" ");
    let (status, v) = s.post("/v1/embeddings", &json!({"input": long})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    // Truncated, an input keeps its [CLS] and its closing [SEP]: the same vector as those
    // tokens sent as ids.
    let cut = json!({"input": long, "truncate_prompt_tokens": 5});
    let (status, v) = s.post("/v1/embeddings", &cut).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 5, "{v}");
    let cat = singles[0]["ids"][2].clone();
    let (status, same) = s
        .post("/v1/embeddings", &json!({"input": [2, cat, cat, cat, 3]}))
        .await;
    assert_eq!(status, 200, "{same}");
    assert_close(
        &floats(&v["data"][0]["embedding"]),
        &floats(&same["data"][0]["embedding"]),
        "truncated",
    );
    // vLLM's `add_special_tokens: false`: the text's tokens alone, without [CLS] and [SEP]
    // (and truncated to its first ones, none kept for a [SEP] it lacks): as those ids sent.
    let bare = json!({"input": long, "add_special_tokens": false, "truncate_prompt_tokens": 3});
    let (status, v) = s.post("/v1/embeddings", &bare).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 3, "{v}");
    let (status, same) = s
        .post("/v1/embeddings", &json!({"input": [cat, cat, cat]}))
        .await;
    assert_eq!(status, 200, "{same}");
    assert_close(
        &floats(&v["data"][0]["embedding"]),
        &floats(&same["data"][0]["embedding"]),
        "without special tokens",
    );
    let whole = json!({"input": long, "truncate_prompt_tokens": -1});
    let (status, v) = s.post("/v1/embeddings", &whole).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 64, "the whole context: {v}");
    let (status, v) = s
        .post("/v1/embeddings", &json!({"input": [[2, 9999]]}))
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.post("/v1/embeddings", &json!({"input": "the mat"})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.get("/v1/models").await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cls_pooling_reads_the_first_state() {
    let (hidden, cases) = cases("bert_embed");
    let s = Server::start_path(&dir("bert_embed"), "bge", &["--pooling", "cls"]).await;
    assert_embeds(&s, &cases, hidden, false, "cls pooling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bert_classifier_labels_texts_from_its_cls_state() {
    let (_, cases) = cases("bert_classifier");
    let s = Server::start_path(&dir("bert_classifier"), "sentiment", &[]).await;
    let v = assert_classifies(&s, &cases, "logits").await;
    let labels = ["negative", "neutral", "positive"];
    let singles = singles(&cases);
    for (item, case) in v["data"].as_array().unwrap().iter().zip(singles) {
        let want = softmax(&floats(&case["logits"]));
        let best = (0..3).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
        assert_eq!(item["label"], labels[best], "{v}");
    }
    // `add_special_tokens: false` classifies the text's own tokens, [CLS] and [SEP] left out.
    let first = &cases[0];
    let body = json!({"input": first["text"], "add_special_tokens": false});
    let (status, v) = s.post("/classify", &body).await;
    assert_eq!(status, 200, "{v}");
    let with_specials = first["ids"].as_array().unwrap().len();
    assert_eq!(v["usage"]["prompt_tokens"], with_specials - 2, "{v}");
    // text-embeddings-inference's `/predict`: every label with its probability, best first;
    // a batch as a list of those; the logits with `raw_scores`.
    let ranked = |answer: &Value, want: &[f64]| {
        let mut order: Vec<usize> = (0..want.len()).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let got = answer.as_array().expect("a label list");
        assert_eq!(got.len(), 3, "{answer}");
        for (item, &l) in got.iter().zip(&order) {
            assert_eq!(item["label"], labels[l], "{answer}");
            assert_close(&[item["score"].as_f64().unwrap()], &[want[l]], "/predict");
        }
    };
    let (status, v) = s
        .post("/predict", &json!({"inputs": cases[0]["text"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    ranked(&v, &softmax(&floats(&cases[0]["logits"])));
    let batch = json!({"inputs": [[cases[0]["text"]], [cases[1]["text"]]], "raw_scores": true});
    let (status, v) = s.post("/predict", &batch).await;
    assert_eq!(status, 200, "{v}");
    ranked(&v[0], &floats(&cases[0]["logits"]));
    ranked(&v[1], &floats(&cases[1]["logits"]));
    // A pair is read as one sequence, as the tokenizer joins it.
    let pair = cases.iter().find(|c| c["kind"] == "pair").unwrap();
    let body = json!({"inputs": [pair["text"], pair["text_pair"]]});
    let (_, v) = s.post("/predict", &body).await;
    ranked(&v, &softmax(&floats(&pair["logits"])));
    let e = error_of(&s, "/predict", json!({"inputs": ["a", "b", "c"]})).await;
    assert!(e.contains("`inputs`"), "{e}");
    let (_, v) = s.get("/info").await;
    assert_eq!(
        v["model_type"]["classifier"]["id2label"]["2"], "positive",
        "{v}"
    );
    let (status, v) = s.post("/", &json!({"inputs": cases[0]["text"]})).await;
    assert_eq!(status, 200, "{v}");
    ranked(&v, &softmax(&floats(&cases[0]["logits"])));
    // Three labels are no pair score.
    let refused = error_of(&s, "/score", json!({"text_1": "a", "text_2": "b"})).await;
    assert!(refused.contains("3 labels"), "{refused}");
    let refused = error_of(&s, "/v1/completions", json!({"prompt": "the cat"})).await;
    assert!(refused.contains("/classify"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlm_roberta_cross_encoder_reranks_its_own_pairs() {
    let (_, cases) = cases("xlmr_reranker");
    let s = Server::start_path(&dir("xlmr_reranker"), "bge-reranker", &[]).await;
    let (query, documents, want) = assert_scores_pairs(&s, "/score", &cases).await;

    let (status, v) = s
        .post(
            "/v1/rerank",
            &json!({"query": query, "documents": documents, "top_n": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    for (r, &d) in results.iter().zip(&order) {
        assert_eq!(r["index"], d, "{v}");
        assert!((r["relevance_score"].as_f64().unwrap() - want[d]).abs() < TOLERANCE);
    }

    // text-embeddings-inference's body (`texts`) answered in its shape, best first: the
    // sigmoid, or the head's logit with `raw_scores`; each text echoed with `return_text`.
    let tei = json!({"query": query, "texts": documents, "return_text": true});
    let (status, v) = s.post("/rerank", &tei).await;
    assert_eq!(status, 200, "{v}");
    let ranked = v.as_array().expect("TEI's list");
    assert_eq!(ranked.len(), want.len(), "{v}");
    for (r, &d) in ranked.iter().zip(&order) {
        assert_eq!(r["index"], d, "{v}");
        assert_eq!(r["text"], documents[d], "{v}");
        assert_close(&[r["score"].as_f64().unwrap()], &[want[d]], "TEI rerank");
    }
    let raw = json!({"query": query, "texts": documents, "raw_scores": true});
    let (_, v) = s.post("/rerank", &raw).await;
    let logit = |p: f64| (p / (1.0 - p)).ln();
    for r in v.as_array().unwrap() {
        let d = r["index"].as_u64().unwrap() as usize;
        assert_close(&[r["score"].as_f64().unwrap()], &[logit(want[d])], "raw");
        assert!(r.get("text").is_none(), "{v}");
    }
    // Past the context (66 positions): refused, or cut with `truncate`.
    let long = ["the cat sat on the mat"; 20].join(" ");
    let e = error_of(&s, "/rerank", json!({"query": query, "texts": [long]})).await;
    assert!(e.contains("context"), "{e}");
    let cut = json!({"query": query, "texts": [long], "truncate": true});
    let (status, v) = s.post("/rerank", &cut).await;
    assert_eq!(status, 200, "{v}");
    let e = error_of(&s, "/rerank", json!({"query": query, "texts": []})).await;
    assert!(e.contains("`texts`"), "{e}");

    // A single text through the head: its `<s>` state's score.
    let single = cases.iter().find(|c| c["kind"] == "text").unwrap();
    let (status, v) = s.post("/classify", &json!({"input": single["text"]})).await;
    assert_eq!(status, 200, "{v}");
    let want = 1.0 / (1.0 + (-floats(&single["logits"])[0]).exp());
    assert!(
        (v["data"][0]["probs"][0].as_f64().unwrap() - want).abs() < TOLERANCE,
        "{v}"
    );

    error_of(
        &s,
        "/v1/rerank",
        json!({"query": "a\u{0}b", "documents": ["c"]}),
    )
    .await;
    error_of(&s, "/v1/rerank", json!({"query": "a", "documents": []})).await;
    let (status, v) = s
        .post("/v1/rerank", &json!({"query": "a", "documents": ["b"]}))
        .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_llama_cpp_gguf_embeds_and_classifies() {
    let gguf = |name: &str| common::fixtures().join("tiny").join(format!("{name}.gguf"));
    // Mean pooling, as its `bert.pooling_type` says.
    let (hidden, embedded) = cases("bert_embed");
    let s = Server::start_path(&gguf("bert_embed"), "minilm-gguf", &[]).await;
    assert_embeds(&s, &embedded, hidden, true, "gguf mean pooling").await;
    let refused = error_of(&s, "/v1/completions", json!({"prompt": "the cat"})).await;
    assert!(refused.contains("encoder"), "{refused}");

    // Without BERT's pooler, which the converter drops.
    let (_, cases) = cases("bert_classifier");
    let s = Server::start_path(&gguf("bert_classifier"), "sentiment-gguf", &[]).await;
    assert_classifies(&s, &cases, "gguf_logits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlm_roberta_gguf_reranks_with_its_sentencepiece_vocabulary() {
    let (_, cases) = cases("xlmr_spm_reranker");
    let gguf = common::fixtures()
        .join("tiny")
        .join("xlmr_spm_reranker.gguf");
    let s = Server::start_path(&gguf, "bge-reranker-gguf", &[]).await;
    let (query, documents, want) = assert_scores_pairs(&s, "/v1/score", &cases).await;
    let (status, v) = s
        .post("/rerank", &json!({"query": query, "documents": documents}))
        .await;
    assert_eq!(status, 200, "{v}");
    let best = (0..want.len())
        .max_by(|&a, &b| want[a].total_cmp(&want[b]))
        .unwrap();
    assert_eq!(v["results"][0]["index"], best, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nomic_embed_text_embeds_from_its_checkout_and_its_gguf() {
    // NomicBERT (tests/fixtures/tiny/make_nomic.py): rotary positions and SwiGLU, mean pooling
    // by its sentence-transformers files and by the GGUF's `nomic-bert.pooling_type`.
    let (hidden, cases) = cases("nomic_embed");
    let gguf = common::fixtures().join("tiny").join("nomic_embed.gguf");
    for (path, name) in [(dir("nomic_embed"), "nomic"), (gguf, "nomic-gguf")] {
        let s = Server::start_path(&path, name, &[]).await;
        assert_embeds(&s, &cases, hidden, true, name).await;
        // Trained at 48 positions: a longer input is refused, or cut when asked.
        let long = vec!["cat"; 60].join(" ");
        let (status, v) = s.post("/v1/embeddings", &json!({"input": long})).await;
        assert_eq!(status, 400, "{name}: {v}");
        let (status, v) = s
            .post(
                "/v1/embeddings",
                &json!({"input": long, "truncate_prompt_tokens": 48}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {v}");
        assert_eq!(v["usage"]["prompt_tokens"], 48, "{name}: {v}");
        // Named as Ollama names nomic-embed-text's family.
        let (status, shown) = s.post("/api/show", &json!({"model": name})).await;
        assert_eq!(status, 200, "{name}: {shown}");
        assert_eq!(shown["details"]["family"], "nomic-bert", "{shown}");
        assert_eq!(
            shown["model_info"]["nomic-bert.context_length"], 48,
            "{shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_module_projects_the_pooled_embedding() {
    // bert_embed with a sentence-transformers Dense module after its mean pooling (32 -> 8,
    // tanh, as LaBSE's): each embedding is tanh(W · mean + b), normalised.
    let (hidden, cases) = cases("bert_embed");
    let tmp = checkout_copy("bert_embed");
    let d = tmp.path();
    let modules = json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}
    ]);
    std::fs::write(d.join("modules.json"), modules.to_string()).unwrap();
    let out = 8;
    let weight: Vec<f32> = (0..out * hidden)
        .map(|i| ((i * 37 % 29) as f32 - 14.0) / 20.0)
        .collect();
    let bias: Vec<f32> = (0..out).map(|o| o as f32 / 10.0 - 0.3).collect();
    std::fs::create_dir(d.join("2_Dense")).unwrap();
    let config = json!({"in_features": hidden, "out_features": out, "bias": true,
        "activation_function": "torch.nn.modules.activation.Tanh"});
    std::fs::write(d.join("2_Dense/config.json"), config.to_string()).unwrap();
    let cpu = candle_core::Device::Cpu;
    let tensors = std::collections::HashMap::from([
        (
            "linear.weight".to_string(),
            candle_core::Tensor::from_vec(weight.clone(), (out, hidden), &cpu).unwrap(),
        ),
        (
            "linear.bias".to_string(),
            candle_core::Tensor::from_vec(bias.clone(), out, &cpu).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, d.join("2_Dense/model.safetensors")).unwrap();

    let s = Server::start_path(d, "labse-like", &[]).await;
    let singles = singles(&cases);
    let (status, v) = s
        .post("/v1/embeddings", &json!({"input": texts(&cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    for (item, case) in v["data"].as_array().unwrap().iter().zip(&singles) {
        let mean = pooled(case, hidden, true);
        let projected: Vec<f64> = (0..out)
            .map(|o| {
                let row = &weight[o * hidden..(o + 1) * hidden];
                let dot: f64 = row.iter().zip(&mean).map(|(w, x)| *w as f64 * x).sum();
                (dot + bias[o] as f64).tanh()
            })
            .collect();
        assert_close(&floats(&item["embedding"]), &unit(projected), "dense");
    }
    // `dimensions` counts the Dense module's outputs.
    let (status, v) = s
        .post(
            "/v1/embeddings",
            &json!({"input": "the cat", "dimensions": 4}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    let (status, v) = s
        .post(
            "/v1/embeddings",
            &json!({"input": "the cat", "dimensions": 9}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    drop(s);

    // A module candor cannot run refuses the model rather than answer other vectors.
    let relu = json!({"in_features": hidden, "out_features": out,
        "activation_function": "torch.nn.modules.activation.ReLU"});
    std::fs::write(d.join("2_Dense/config.json"), relu.to_string()).unwrap();
    let s = Server::launch(d, "labse-like", &[]);
    let failure = s.load_failure().await;
    assert!(failure.contains("ReLU"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modernbert_checkouts_embed_and_classify() {
    // ModernBERT (tests/fixtures/tiny/make_modernbert.py): pre-norm, GeGLU, local layers
    // attending within 4 positions each side; mean pooling by its sentence-transformers files.
    let (hidden, cases) = cases("modernbert_embed");
    let s = Server::start_path(&dir("modernbert_embed"), "modernbert", &[]).await;
    assert_embeds(&s, &cases, hidden, true, "modernbert").await;
    let (status, shown) = s.post("/api/show", &json!({"model": "modernbert"})).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["details"]["family"], "modern-bert", "{shown}");

    // A ModernBERT classifier: its head (dense, GELU, norm) over the mean state, as its
    // `classifier_pooling` says.
    let (_, labelled) = self::cases("modernbert_classifier");
    let s = Server::start_path(&dir("modernbert_classifier"), "modern-sentiment", &[]).await;
    assert_classifies(&s, &labelled, "logits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gte_checkouts_embed_and_rerank() {
    // GTE (tests/fixtures/tiny/make_gte.py): rotary positions NTK-scaled, GeGLU, no token-type
    // table; CLS pooling by its sentence-transformers files, from the remote code's checkout
    // and from transformers 5's.
    let (hidden, cases) = cases("gte_embed");
    for name in ["gte_embed", "gte_native_embed"] {
        let s = Server::start_path(&dir(name), name, &[]).await;
        assert_embeds(&s, &cases, hidden, false, name).await;
        let (status, shown) = s.post("/api/show", &json!({"model": name})).await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["details"]["family"], "gte", "{shown}");
        // 64 positions: a longer input is refused, or cut when asked.
        let long = vec!["cat"; 70].join(" ");
        let (status, v) = s.post("/v1/embeddings", &json!({"input": long})).await;
        assert_eq!(status, 400, "{name}: {v}");
        let body = json!({"input": long, "truncate_prompt_tokens": 64});
        let (status, v) = s.post("/v1/embeddings", &body).await;
        assert_eq!(status, 200, "{name}: {v}");
        assert_eq!(v["usage"]["prompt_tokens"], 64, "{name}: {v}");
    }

    // gte-multilingual-reranker-base's shape: BERT's pooler and one label under `new.`.
    let (_, cases) = self::cases("gte_reranker");
    let s = Server::start_path(&dir("gte_reranker"), "gte-reranker", &[]).await;
    let (query, documents, want) = assert_scores_pairs(&s, "/v1/score", &cases).await;
    let (status, v) = s
        .post(
            "/v1/rerank",
            &json!({"query": query, "documents": documents}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let best = (0..want.len())
        .max_by(|&a, &b| want[a].total_cmp(&want[b]))
        .unwrap();
    assert_eq!(v["results"][0]["index"], best, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distilbert_checkouts_embed_and_classify() {
    // DistilBERT (tests/fixtures/tiny/make_distilbert.py): its own tensor names, no token
    // types; mean pooling by its sentence-transformers files.
    let (hidden, cases) = cases("distilbert_embed");
    let s = Server::start_path(&dir("distilbert_embed"), "distilbert", &[]).await;
    assert_embeds(&s, &cases, hidden, true, "distilbert").await;
    let (status, shown) = s.post("/api/show", &json!({"model": "distilbert"})).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["details"]["family"], "distilbert", "{shown}");

    // An sst-2 style classifier: `pre_classifier`, a ReLU, then `classifier`, over [CLS].
    let (_, labelled) = self::cases("distilbert_classifier");
    let s = Server::start_path(&dir("distilbert_classifier"), "sst2", &[]).await;
    let v = assert_classifies(&s, &labelled, "logits").await;
    assert!(v.to_string().contains("POSITIVE"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_truncate_cuts_tei_inputs_unless_a_request_says_not_to() {
    let s = Server::start_path(&dir("bert_embed"), "tei", &["--auto-truncate"]).await;
    let (_, info) = s.get("/info").await;
    assert_eq!(info["auto_truncate"], true, "{info}");
    // 64 positions: a longer input is cut to them, as TEI's `--auto-truncate` does.
    let long = vec!["cat"; 80].join(" ");
    let (status, v) = s.post("/embed", &json!({"inputs": long})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/embed_sparse", &json!({"inputs": long})).await;
    assert_eq!(status, 400, "no sparse head, whatever the length: {v}");
    let body = json!({"inputs": long, "truncate": false});
    let e = error_of(&s, "/embed", body).await;
    assert!(e.contains("context"), "{e}");
    let body = json!({"query": "cat", "texts": [long.clone(), "dog".to_string()]});
    let (status, v) = s.post("/rerank", &body).await;
    assert_eq!(status, 200, "{v}");
    // Without the flag the same input is refused unless a request asks to cut it.
    let s = Server::start_path(&dir("bert_embed"), "tei", &[]).await;
    let (_, info) = s.get("/info").await;
    assert_eq!(info["auto_truncate"], false, "{info}");
    let e = error_of(&s, "/embed", json!({"inputs": long})).await;
    assert!(e.contains("context"), "{e}");
}

/// Little-endian f32s from base64, as vLLM and OpenAI encode them.
fn from_base64(v: &Value) -> Vec<f64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .unwrap();
    (bytes.chunks(4))
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooling_answers_each_task_as_vllm_does() {
    // An embedder's own task is `embed`: the vector /v1/embeddings answers (mean pooling).
    let (hidden, cases) = cases("bert_embed");
    let singles = singles(&cases);
    let s = Server::start_path(&dir("bert_embed"), "minilm", &[]).await;
    let (status, v) = s.post("/pooling", &json!({"input": texts(&cases)})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list", "{v}");
    let tokens: usize = (singles.iter())
        .map(|c| c["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(v["usage"]["prompt_tokens"], tokens, "{v}");
    for (item, case) in v["data"].as_array().unwrap().iter().zip(&singles) {
        assert_eq!(item["object"], "pooling", "{v}");
        let want = unit(pooled(case, hidden, true));
        assert_close(&floats(&item["data"]), &want, "embed");
    }

    // `token_embed`: each token's final state, normalised unless `normalize: false`, as
    // base64 the rows one after another.
    let case = singles[0];
    let golden = floats(&case["hidden"]);
    let rows: Vec<&[f64]> = golden.chunks(hidden).collect();
    for normalize in [true, false] {
        let body = json!({"input": case["text"], "task": "token_embed", "normalize": normalize});
        let (status, v) = s.post("/pooling", &body).await;
        assert_eq!(status, 200, "{v}");
        let got = v["data"][0]["data"].as_array().unwrap();
        assert_eq!(got.len(), rows.len(), "{v}");
        for (g, w) in got.iter().zip(&rows) {
            let want = match normalize {
                true => unit(w.to_vec()),
                false => w.to_vec(),
            };
            assert_close(&floats(g), &want, "token_embed");
        }
    }
    let body = json!({"input": case["text"], "task": "token_embed", "encoding_format": "base64"});
    let (status, v) = s.post("/pooling", &body).await;
    assert_eq!(status, 200, "{v}");
    let flat: Vec<f64> = rows.iter().flat_map(|r| unit(r.to_vec())).collect();
    assert_close(
        &from_base64(&v["data"][0]["data"]),
        &flat,
        "token_embed base64",
    );

    // What this model cannot do is a 400 that says what it can.
    let bad = |task: &str| json!({"input": "the cat", "task": task});
    let refused = error_of(&s, "/pooling", bad("token_ner")).await;
    assert!(refused.contains("token_embed"), "{refused}");
    let refused = error_of(&s, "/pooling", bad("token_classify")).await;
    assert!(refused.contains("ForTokenClassification"), "{refused}");
    let refused = error_of(&s, "/pooling", bad("classify")).await;
    assert!(refused.contains("classification head"), "{refused}");
    let body = json!({"input": "the cat", "task": "token_embed", "dimensions": 4});
    error_of(&s, "/pooling", body).await;

    // A classifier's own task is `classify`: the labels' probabilities, or its logits.
    let (_, labelled) = self::cases("bert_classifier");
    let s = Server::start_path(&dir("bert_classifier"), "sentiment", &[]).await;
    let text = labelled.iter().find(|c| c["kind"] == "text").unwrap();
    let logits = floats(&text["logits"]);
    let (status, v) = s.post("/pooling", &json!({"input": text["text"]})).await;
    assert_eq!(status, 200, "{v}");
    assert_close(
        &floats(&v["data"][0]["data"]),
        &softmax(&logits),
        "classify",
    );
    let body = json!({"input": text["text"], "task": "classify", "use_activation": false});
    let (status, v) = s.post("/pooling", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_close(&floats(&v["data"][0]["data"]), &logits, "classify logits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentence_transformers_prompts_go_before_the_texts() {
    // bert_embed with prompts: "what is " + "the capital of france" is a golden text.
    let (hidden, cases) = cases("bert_embed");
    let case = (cases.iter())
        .find(|c| c["text"] == "what is the capital of france")
        .unwrap();
    let want = unit(pooled(case, hidden, true));
    let tokens = case["ids"].as_array().unwrap().len();
    let tmp = checkout_copy("bert_embed");
    let config = tmp.path().join("config_sentence_transformers.json");
    let prompts = json!({"query": "what is ", "document": ""});
    let write = |default: Value| {
        let json = json!({"prompts": prompts, "default_prompt_name": default});
        std::fs::write(&config, json.to_string()).unwrap();
    };
    write(Value::Null);
    let s = Server::start_path(tmp.path(), "prompted", &[]).await;
    let bare = "the capital of france";
    let body = json!({"input": bare, "prompt_name": "query"});
    let (status, v) = s.post("/v1/embeddings", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_close(&floats(&v["data"][0]["embedding"]), &want, "prompt_name");
    assert_eq!(v["usage"]["prompt_tokens"], tokens, "{v}");
    let (status, v) = s.post("/pooling", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_close(
        &floats(&v["data"][0]["data"]),
        &want,
        "/pooling prompt_name",
    );
    // No default prompt: the text as sent.
    let (_, v) = s.post("/v1/embeddings", &json!({"input": bare})).await;
    assert_eq!(v["usage"]["prompt_tokens"], tokens - 2, "{v}");
    let refused = error_of(
        &s,
        "/v1/embeddings",
        json!({"input": bare, "prompt_name": "passage"}),
    )
    .await;
    assert!(refused.contains("`document`, `query`"), "{refused}");
    let ids = json!({"input": [2, 7, 3], "prompt_name": "query"});
    error_of(&s, "/v1/embeddings", ids).await;

    // A default prompt goes before every text, Ollama's too.
    write(json!("query"));
    let s = Server::start_path(tmp.path(), "prompted", &[]).await;
    let (status, v) = s.post("/v1/embeddings", &json!({"input": bare})).await;
    assert_eq!(status, 200, "{v}");
    assert_close(&floats(&v["data"][0]["embedding"]), &want, "default prompt");
    let (status, v) = s
        .post("/api/embed", &json!({"model": "prompted", "input": bare}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_close(
        &floats(&v["embeddings"][0]),
        &want,
        "Ollama's default prompt",
    );
    // `document`'s empty prompt overrides the default.
    let body = json!({"input": bare, "prompt_name": "document"});
    let (_, v) = s.post("/v1/embeddings", &body).await;
    assert_eq!(v["usage"]["prompt_tokens"], tokens - 2, "{v}");

    // A default that names no prompt is refused at load, as sentence-transformers refuses it.
    write(json!("passage"));
    let s = Server::launch(tmp.path(), "prompted", &[]);
    let failure = s.load_failure().await;
    assert!(failure.contains("default_prompt_name"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_embeddings_inference_endpoints_answer_in_its_shapes() {
    let (hidden, cases) = cases("bert_embed");
    let singles = singles(&cases);
    let s = Server::start_path(&dir("bert_embed"), "tei", &[]).await;
    // `/embed`: each input's pooled vector (mean, as the checkout says), normalised.
    let (status, v) = s.post("/embed", &json!({"inputs": texts(&cases)})).await;
    assert_eq!(status, 200, "{v}");
    let rows = v.as_array().expect("a list of vectors");
    assert_eq!(rows.len(), singles.len());
    for (row, case) in rows.iter().zip(&singles) {
        assert_close(&floats(row), &unit(pooled(case, hidden, true)), "/embed");
    }
    // As pooled, cut to `dimensions`, or of one text given alone.
    let body = json!({"inputs": singles[0]["text"], "normalize": false, "dimensions": 8});
    let (status, v) = s.post("/embed", &body).await;
    assert_eq!(status, 200, "{v}");
    let want = pooled(singles[0], hidden, true);
    assert_close(&floats(&v[0]), &want[..8], "/embed raw");
    // `/embed_all`: every token's final state.
    let (status, v) = s
        .post("/embed_all", &json!({"inputs": [singles[1]["text"]]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let all = floats(&singles[1]["hidden"]);
    let tokens = v[0].as_array().expect("a row per token");
    assert_eq!(tokens.len(), all.len() / hidden);
    for (row, want) in tokens.iter().zip(all.chunks(hidden)) {
        assert_close(&floats(row), want, "/embed_all");
    }
    // `/tokenize` in TEI's shape (by its `inputs`), as TEI reads the tokenizers crate's
    // encoding: each token's bytes of the text, the special ones without.
    let (status, v) = s
        .post("/tokenize", &json!({"inputs": ["Hello, world!", "zyx"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let special = |id: u32, text: &str| json!({"id": id, "text": text, "special": true, "start": null, "stop": null});
    let read = |id: u32, text: &str, start: usize, stop: usize| json!({"id": id, "text": text, "special": false, "start": start, "stop": stop});
    assert_eq!(
        v[0],
        json!([
            special(2, "[CLS]"),
            read(88, "Hello", 0, 5),
            read(5, ",", 5, 6),
            read(89, "world", 7, 12),
            read(7, "!", 12, 13),
            special(3, "[SEP]")
        ]),
        "{v}"
    );
    assert_eq!(v[1].as_array().unwrap().len(), 5, "{v}");
    let (_, bare) = s
        .post(
            "/tokenize",
            &json!({"inputs": "zyx", "add_special_tokens": false}),
        )
        .await;
    assert_eq!(bare[0][0], read(34, "z", 0, 1), "{bare}");
    // `/decode`: id lists back to texts, special tokens left out unless asked for.
    let (status, v) = s
        .post("/decode", &json!({"ids": [[2, 88, 5, 89, 3], [34]]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!(["hello, world", "z"]));
    let body = json!({"ids": [2, 88, 3], "skip_special_tokens": false});
    let (_, v) = s.post("/decode", &body).await;
    assert_eq!(v, json!(["[CLS] hello [SEP]"]));
    for (path, body, field) in [
        ("/tokenize", json!({"inputs": []}), "inputs"),
        ("/tokenize", json!({"inputs": 3}), "inputs"),
        (
            "/tokenize",
            json!({"inputs": "a", "prompt": "b"}),
            "exactly one",
        ),
        (
            "/tokenize",
            json!({"inputs": "a", "prompt_name": "query"}),
            "prompt",
        ),
        ("/decode", json!({"ids": []}), "ids"),
        ("/decode", json!({"ids": [-1]}), "ids"),
        ("/decode", json!({"ids": [100000]}), "vocabulary"),
    ] {
        let e = error_of(&s, path, body).await;
        assert!(e.contains(field), "{path}: {e}");
    }
    // `/similarity`: each sentence's cosine with the source.
    let body = json!({"inputs": {"source_sentence": singles[0]["text"],
                                 "sentences": [singles[1]["text"], singles[2]["text"]]}});
    let (status, v) = s.post("/similarity", &body).await;
    assert_eq!(status, 200, "{v}");
    let source = unit(pooled(singles[0], hidden, true));
    let cosines: Vec<f64> = (singles[1..3].iter())
        .map(|c| {
            let other = unit(pooled(c, hidden, true));
            source.iter().zip(&other).map(|(a, b)| a * b).sum()
        })
        .collect();
    assert_close(&floats(&v), &cosines, "/similarity");
    let empty = json!({"inputs": {"source_sentence": "a", "sentences": []}});
    let e = error_of(&s, "/similarity", empty).await;
    assert!(e.contains("`sentences`"), "{e}");
    // `POST /` is the model's own task, `/info` says what it is.
    let (status, v) = s.post("/", &json!({"inputs": singles[0]["text"]})).await;
    assert_eq!(status, 200, "{v}");
    assert_close(
        &floats(&v[0]),
        &unit(pooled(singles[0], hidden, true)),
        "POST /",
    );
    let (status, v) = s
        .post("/invocations", &json!({"inputs": singles[0]["text"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_close(
        &floats(&v[0]),
        &unit(pooled(singles[0], hidden, true)),
        "SageMaker",
    );
    let (status, v) = s.get("/info").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model_type"]["embedding"]["pooling"], "mean", "{v}");
    assert_eq!(v["max_input_length"], 64, "{v}");
    // What TEI's clients may send wrong.
    let e = error_of(&s, "/embed", json!({"inputs": {"text": "a"}})).await;
    assert!(e.contains("`inputs`"), "{e}");
    let e = error_of(&s, "/embed", json!({"inputs": "a", "dimensions": 0})).await;
    assert!(e.contains("dimensions"), "{e}");
    let e = error_of(&s, "/embed_all", json!({"inputs": ""})).await;
    assert!(e.contains("empty"), "{e}");
}
