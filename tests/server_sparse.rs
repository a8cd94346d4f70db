//! SPLADE sparse encoders served over HTTP, against sentence-transformers' `SparseEncoder`
//! (tests/fixtures/tiny/make_splade.py): text-embeddings-inference's `/embed_sparse` (the
//! non-zero entries), `/v1/embeddings`, `/pooling` and TEI's `/embed` (the vector over the
//! vocabulary, as pooled unless asked to normalise), `/score` (the dot product), Ollama's
//! `/api/embed` (normalised, as Ollama's always are); `--pooling splade` on a bare masked LM;
//! what is refused, with a 400 or a load failure that says why. BGE-M3 (tests/fixtures/tiny/
//! make_bge_m3.py) against FlagEmbedding: its dense embedding, its lexical weights and its
//! ColBERT vectors. An inference-free model (make_distilbert.py: a Router over a DistilBERT
//! masked LM and a static query table) against `encode_query` / `encode_document`.
mod common;

use common::server::Server;
use serde_json::{json, Value};

/// sentence-transformers' f32 against candle's f32 CPU ops, relative above 1.
const TOLERANCE: f64 = 1e-4;

fn dir(name: &str) -> std::path::PathBuf {
    common::fixtures().join("tiny").join(name)
}

fn golden(name: &str) -> Vec<Value> {
    let g = common::read_json(&dir(name).join("golden.json"));
    g["cases"].as_array().unwrap().clone()
}

fn texts(cases: &[Value]) -> Vec<&str> {
    cases.iter().map(|c| c["text"].as_str().unwrap()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    (v.as_array().expect("a list").iter())
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= TOLERANCE * w.abs().max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

/// `/embed_sparse`'s answer for one input against the golden vector: the same non-zero
/// entries, in index order, each within the tolerance.
fn assert_sparse_matches(answer: &Value, want: &[f64], what: &str) {
    let entries = answer.as_array().expect("a list of entries");
    let indices: Vec<u64> = entries
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    let want_indices: Vec<u64> = (want.iter().enumerate())
        .filter(|(_, &w)| w != 0.0)
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(indices, want_indices, "{what}");
    let values: Vec<f64> = entries
        .iter()
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    let want_values: Vec<f64> = want.iter().copied().filter(|&w| w != 0.0).collect();
    assert_close(&values, &want_values, what);
}

async fn error_of(s: &Server, path: &str, body: Value) -> String {
    let (status, v) = s.post(path, &body).await;
    assert_eq!(status, 400, "{path} {body}: {v}");
    v["error"]["message"].as_str().expect("message").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_encoder_answers_its_splade_vectors() {
    let cases = golden("bert_splade");
    let want: Vec<Vec<f64>> = cases.iter().map(|c| floats(&c["sparse"])).collect();
    let s = Server::start_path(&dir("bert_splade"), "splade", &[]).await;

    let (status, v) = s
        .post("/embed_sparse", &json!({"inputs": texts(&cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    let answers = v.as_array().expect("a list per input");
    assert_eq!(answers.len(), cases.len());
    for (answer, (case, want)) in answers.iter().zip(cases.iter().zip(&want)) {
        assert_sparse_matches(answer, want, &case["text"].to_string());
    }
    // One text, and its token ids, answer the same.
    let (_, one) = s
        .post("/embed_sparse", &json!({"inputs": cases[1]["text"]}))
        .await;
    assert_sparse_matches(&one[0], &want[1], "one text");
    let (_, ids) = s
        .post("/embed_sparse", &json!({"inputs": cases[1]["ids"]}))
        .await;
    assert_eq!(ids, one);

    // Dense over the vocabulary, as pooled; unit length when asked.
    let (status, v) = s
        .post("/v1/embeddings", &json!({"input": texts(&cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    for (item, want) in v["data"].as_array().unwrap().iter().zip(&want) {
        assert_close(&floats(&item["embedding"]), want, "/v1/embeddings");
    }
    let (_, v) = s
        .post(
            "/v1/embeddings",
            &json!({"input": cases[0]["text"], "normalize": true}),
        )
        .await;
    let norm = want[0].iter().map(|x| x * x).sum::<f64>().sqrt();
    let unit: Vec<f64> = want[0].iter().map(|x| x / norm).collect();
    assert_close(&floats(&v["data"][0]["embedding"]), &unit, "normalised");
    let (_, p) = s
        .post("/pooling", &json!({"input": [cases[2]["text"]]}))
        .await;
    assert_close(&floats(&p["data"][0]["data"]), &want[2], "/pooling");
    let (_, e) = s.post("/embed", &json!({"inputs": cases[3]["text"]})).await;
    assert_close(&floats(&e[0]), &want[3], "TEI's /embed");
    let (_, o) = s
        .post("/api/embed", &json!({"input": cases[0]["text"]}))
        .await;
    assert_close(&floats(&o["embeddings"][0]), &unit, "/api/embed");

    // Two texts score by the dot product of their vectors.
    let (status, v) = s
        .post(
            "/score",
            &json!({"text_1": cases[0]["text"], "text_2": [cases[1]["text"], cases[2]["text"]]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for (item, other) in v["data"].as_array().unwrap().iter().zip([1, 2]) {
        let dot: f64 = want[0].iter().zip(&want[other]).map(|(a, b)| a * b).sum();
        assert_close(&[item["score"].as_f64().unwrap()], &[dot], "/score");
    }

    // What is refused.
    let e = error_of(&s, "/v1/embeddings", json!({"input": "a", "dimensions": 8})).await;
    assert!(e.contains("SPLADE") && e.contains("dimensions"), "{e}");
    let e = error_of(&s, "/embed_sparse", json!({"inputs": 5})).await;
    assert!(e.contains("`inputs`"), "{e}");
    let e = error_of(&s, "/embed_sparse", json!({"inputs": []})).await;
    assert!(e.contains("`inputs`"), "{e}");
    let e = error_of(
        &s,
        "/embed_sparse",
        json!({"inputs": "the cat", "truncation_direction": "middle"}),
    )
    .await;
    assert!(e.contains("middle"), "{e}");
    let e = error_of(
        &s,
        "/embed_sparse",
        json!({"inputs": [1, 2], "prompt_name": "query"}),
    )
    .await;
    assert!(e.contains("prompt_name"), "{e}");

    // An input past the context (64 tokens) is refused unless cut; cut from either end.
    let long = ["the cat sat on the mat"; 20].join(" ");
    let e = error_of(&s, "/embed_sparse", json!({"inputs": long})).await;
    assert!(e.contains("context"), "{e}");
    let cut = |direction: &str| json!({"inputs": long, "truncate": true, "truncation_direction": direction});
    let (status, right) = s.post("/embed_sparse", &cut("right")).await;
    assert_eq!(status, 200, "{right}");
    let (status, left) = s.post("/embed_sparse", &cut("Left")).await;
    assert_eq!(status, 200, "{left}");
    assert!(!right[0].as_array().unwrap().is_empty());
    assert_ne!(right, left, "the two ends of the text differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_pooling_and_the_log1p_relu_activation_match_too() {
    let cases = golden("roberta_splade");
    let s = Server::start_path(&dir("roberta_splade"), "granite-sparse", &[]).await;
    let (status, v) = s
        .post("/embed_sparse", &json!({"inputs": texts(&cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    for (answer, case) in v.as_array().unwrap().iter().zip(&cases) {
        assert_sparse_matches(answer, &floats(&case["sparse"]), "roberta sum log1p_relu");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_free_model_weighs_queries_by_its_table_and_encodes_documents() {
    let cases = golden("distilbert_sparse");
    let query: Vec<Vec<f64>> = cases.iter().map(|c| floats(&c["query"])).collect();
    let document: Vec<Vec<f64>> = cases.iter().map(|c| floats(&c["document"])).collect();
    let s = Server::start_path(&dir("distilbert_sparse"), "opensearch-doc", &[]).await;

    // Documents by default (the Router's default route) and by name; queries by name.
    for (body, want, what) in [
        (json!({"inputs": texts(&cases)}), &document, "default"),
        (
            json!({"inputs": texts(&cases), "prompt_name": "document"}),
            &document,
            "document",
        ),
        (
            json!({"inputs": texts(&cases), "prompt_name": "query"}),
            &query,
            "query",
        ),
    ] {
        let (status, v) = s.post("/embed_sparse", &body).await;
        assert_eq!(status, 200, "{what}: {v}");
        for (answer, want) in v.as_array().unwrap().iter().zip(want) {
            assert_sparse_matches(answer, want, what);
        }
    }
    let (status, v) = s
        .post(
            "/v1/embeddings",
            &json!({"input": texts(&cases), "prompt_name": "query"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for (item, want) in v["data"].as_array().unwrap().iter().zip(&query) {
        assert_close(&floats(&item["embedding"]), want, "/v1/embeddings query");
    }
    let (_, p) = s
        .post(
            "/pooling",
            &json!({"input": [cases[2]["text"]], "prompt_name": "query"}),
        )
        .await;
    assert_close(&floats(&p["data"][0]["data"]), &query[2], "/pooling query");
    let (_, e) = s.post("/embed", &json!({"inputs": cases[3]["text"]})).await;
    assert_close(&floats(&e[0]), &document[3], "TEI's /embed");

    // A query scored against documents: the query by the table, each document encoded.
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let (status, v) = s
        .post(
            "/rerank",
            &json!({"query": cases[0]["text"], "documents": [cases[1]["text"], cases[0]["text"]]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for item in v["results"].as_array().unwrap() {
        let index = item["index"].as_u64().unwrap() as usize;
        let want = dot(&query[0], &document[[1, 0][index]]);
        let got = item["relevance_score"].as_f64().unwrap();
        assert_close(&[got], &[want], "/rerank");
    }
    let (status, v) = s
        .post(
            "/similarity",
            &json!({"inputs": {"source_sentence": cases[1]["text"],
                               "sentences": [cases[2]["text"]]}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let want = dot(&query[1], &document[2]);
    assert_close(&[v[0].as_f64().unwrap()], &[want], "/similarity");

    // A route it does not have is refused, naming those it has.
    let e = error_of(
        &s,
        "/embed_sparse",
        json!({"inputs": "a", "prompt_name": "passage"}),
    )
    .await;
    assert!(e.contains("`query`") && e.contains("`document`"), "{e}");
    drop(s);

    // A Router whose default route is the table's weighs a text whose task is not named.
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&dir("distilbert_sparse"), copy.path());
    let config = copy.path().join("router_config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        r#""default_route": "document""#,
        r#""default_route": "query""#,
    );
    std::fs::write(&config, text).unwrap();
    let s = Server::start_path(copy.path(), "opensearch-doc", &[]).await;
    let (status, v) = s
        .post("/embed_sparse", &json!({"inputs": cases[0]["text"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_sparse_matches(&v[0], &query[0], "the default route");
}

/// opensearch's doc-only encoders as first shipped: the masked LM at the checkout's root and
/// the query weights in an idf.json (no sentence-transformers files): documents are encoded
/// by SPLADE, a query named `query` is weighed by the table, as through the Router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doc_only_encoder_weighs_queries_by_its_idf_json() {
    let cases = golden("distilbert_sparse");
    let query: Vec<Vec<f64>> = cases.iter().map(|c| floats(&c["query"])).collect();
    let document: Vec<Vec<f64>> = cases.iter().map(|c| floats(&c["document"])).collect();
    let fixture = dir("distilbert_sparse");
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&fixture.join("document_0_MLMTransformer"), copy.path());
    // The Router's table as idf.json: token → weight, by the tokenizer's vocabulary.
    let table =
        std::fs::read(fixture.join("query_0_SparseStaticEmbedding/model.safetensors")).unwrap();
    let table = safetensors::SafeTensors::deserialize(&table).unwrap();
    let weight = table.tensor("weight").unwrap();
    assert_eq!(weight.dtype(), safetensors::Dtype::F32);
    let weights: Vec<f32> = (weight.data().chunks_exact(4))
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let tokenizer = common::read_json(&copy.path().join("tokenizer.json"));
    let mut idf = serde_json::Map::new();
    for (token, id) in tokenizer["model"]["vocab"].as_object().unwrap() {
        let w = weights[id.as_u64().unwrap() as usize];
        if w != 0.0 {
            idf.insert(token.clone(), json!(w));
        }
    }
    assert!(idf.len() > 10, "{} weighed tokens", idf.len());
    // A token the vocabulary lacks weighs nothing.
    idf.insert("no-such-token".into(), json!(7.5));
    std::fs::write(copy.path().join("idf.json"), Value::Object(idf).to_string()).unwrap();

    let s = Server::start_path(copy.path(), "opensearch-doc", &[]).await;
    for (body, want, what) in [
        (json!({"inputs": texts(&cases)}), &document, "documents"),
        (
            json!({"inputs": texts(&cases), "prompt_name": "query"}),
            &query,
            "queries",
        ),
    ] {
        let (status, v) = s.post("/embed_sparse", &body).await;
        assert_eq!(status, 200, "{what}: {v}");
        for (answer, want) in v.as_array().unwrap().iter().zip(want) {
            assert_sparse_matches(answer, want, what);
        }
    }
    // Its embeddings are its SPLADE vectors (no [CLS] state), the table's for queries.
    for (prompt, want) in [(None, &document[0]), (Some("query"), &query[0])] {
        let body = json!({"input": cases[0]["text"], "prompt_name": prompt});
        let (status, v) = s.post("/v1/embeddings", &body).await;
        assert_eq!(status, 200, "{v}");
        assert_close(&floats(&v["data"][0]["embedding"]), want, "/v1/embeddings");
    }
    drop(s);

    // A bad table is refused at the start, saying where.
    std::fs::write(copy.path().join("idf.json"), r#"{"the": "heavy"}"#).unwrap();
    let s = Server::launch(copy.path(), "bad-table", &[]);
    let failure = s.load_failure().await;
    assert!(
        failure.contains("idf.json") && failure.contains("`the`"),
        "{failure}"
    );
}

/// A copy of directory `from`, its subdirectories too, into `to`.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        match path.is_dir() {
            true => copy_tree(&path, &dest),
            false => {
                std::fs::copy(&path, &dest).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gte_and_modernbert_masked_lms_pool_too() {
    // The remote code's GTE `NewForMaskedLM` (make_gte_splade.py, max of `log1p_relu`, as
    // opensearch's doc-v3-gte) and a `ModernBertForMaskedLM` (make_splade.py).
    for name in ["gte_splade", "modernbert_splade"] {
        let cases = golden(name);
        let s = Server::start_path(&dir(name), name, &[]).await;
        let (status, v) = s
            .post("/embed_sparse", &json!({"inputs": texts(&cases)}))
            .await;
        assert_eq!(status, 200, "{name}: {v}");
        for (answer, case) in v.as_array().unwrap().iter().zip(&cases) {
            assert_sparse_matches(answer, &floats(&case["sparse"]), name);
        }
    }
}

/// A copy of fixture `name`'s top-level files, without `left_out`.
fn copy_without(name: &str, left_out: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir(name)).unwrap() {
        let from = entry.unwrap().path();
        let file = from.file_name().unwrap().to_str().unwrap().to_string();
        if from.is_file() && !left_out.contains(&file.as_str()) {
            std::fs::copy(&from, tmp.path().join(&file)).unwrap();
        }
    }
    tmp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooling_splade_is_asked_of_a_masked_lm_and_refused_elsewhere() {
    // A bare `BertForMaskedLM` (no sentence-transformers files) pools by SPLADE when asked,
    // as max of log(1 + relu): what bert_splade's own files say.
    let cases = golden("bert_splade");
    let bare = copy_without("bert_splade", &["modules.json"]);
    let s = Server::start_path(bare.path(), "bare", &["--pooling", "splade"]).await;
    let (_, v) = s
        .post("/embed_sparse", &json!({"inputs": cases[0]["text"]}))
        .await;
    assert_sparse_matches(&v[0], &floats(&cases[0]["sparse"]), "--pooling splade");
    drop(s);

    // Asked to pool otherwise, a SPLADE checkout embeds its [CLS] state, and its sparse
    // vectors stay on /embed_sparse.
    let s = Server::start_path(&dir("bert_splade"), "cls", &["--pooling", "cls"]).await;
    let (status, v) = s.post("/v1/embeddings", &json!({"input": "the cat"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 32);
    let (_, v) = s
        .post("/embed_sparse", &json!({"inputs": cases[1]["text"]}))
        .await;
    assert_sparse_matches(&v[0], &floats(&cases[1]["sparse"]), "beside cls");
    drop(s);

    // A dense embedder makes no sparse vectors.
    let s = Server::start_path(&dir("bert_embed"), "dense", &[]).await;
    let e = error_of(&s, "/embed_sparse", json!({"inputs": "the cat"})).await;
    assert!(e.contains("sparse") && e.contains("BGE-M3"), "{e}");
    drop(s);

    // A dense embedder has no head to pool by SPLADE with.
    let s = Server::launch(&dir("bert_embed"), "dense", &["--pooling", "splade"]);
    let failure = s.load_failure().await;
    assert!(failure.contains("ForMaskedLM"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bge_m3_answers_its_dense_embedding_lexical_weights_and_colbert_vectors() {
    let cases = golden("bge_m3");
    let s = Server::start_path(&dir("bge_m3"), "bge-m3", &[]).await;
    // The dense embedding its sentence-transformers files name: [CLS], normalised.
    let (status, v) = s
        .post("/v1/embeddings", &json!({"input": texts(&cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    for (item, case) in v["data"].as_array().unwrap().iter().zip(&cases) {
        assert_close(
            &floats(&item["embedding"]),
            &floats(&case["dense"]),
            "dense",
        );
    }
    // Its lexical weights, FlagEmbedding's `lexical_weights` by id.
    let (status, v) = s
        .post("/embed_sparse", &json!({"inputs": texts(&cases)}))
        .await;
    assert_eq!(status, 200, "{v}");
    let vocab = common::read_json(&dir("bge_m3").join("golden.json"))["vocab_size"]
        .as_u64()
        .unwrap() as usize;
    for (answer, case) in v.as_array().unwrap().iter().zip(&cases) {
        let mut want = vec![0.0; vocab];
        for (id, w) in case["lexical_weights"].as_object().unwrap() {
            want[id.parse::<usize>().unwrap()] = w.as_f64().unwrap();
        }
        assert_sparse_matches(answer, &want, &case["text"].to_string());
    }
    // Its ColBERT vectors are its tokens' (`token_embed`): one per token after [CLS],
    // normalised.
    let (status, v) = s
        .post(
            "/pooling",
            &json!({"input": texts(&cases), "task": "token_embed"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for (item, case) in v["data"].as_array().unwrap().iter().zip(&cases) {
        let rows = item["data"].as_array().unwrap();
        let want = case["colbert"].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{}", case["text"]);
        for (row, w) in rows.iter().zip(want) {
            assert_close(&floats(row), &floats(w), "ColBERT");
        }
    }
    // Its lexical weights token by token (`token_classify`, as vLLM answers it for BGE-M3):
    // one number per token between <s> and </s>, whose largest per id is FlagEmbedding's
    // weight of that id (its special tokens left out of FlagEmbedding's).
    let (status, v) = s
        .post(
            "/pooling",
            &json!({"input": texts(&cases), "task": "token_classify"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, raw) = s
        .post(
            "/pooling",
            &json!({"input": texts(&cases), "task": "token_classify", "use_activation": false}),
        )
        .await;
    let special = [0, 1, 2, 3];
    for ((item, raw), case) in v["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(raw["data"].as_array().unwrap())
        .zip(&cases)
    {
        let ids: Vec<u64> = (case["ids"].as_array().unwrap().iter())
            .map(|i| i.as_u64().unwrap())
            .collect();
        assert_eq!((ids[0], ids[ids.len() - 1]), (0, 2), "<s> … </s>");
        let inner = &ids[1..ids.len() - 1];
        let (weights, raw) = (floats(&item["data"]), floats(&raw["data"]));
        assert_eq!(weights.len(), inner.len(), "{}", case["text"]);
        let positive: Vec<f64> = raw.iter().map(|w| w.max(0.0)).collect();
        assert_close(&weights, &positive, "relu of the raw weights");
        for &id in inner.iter().filter(|id| !special.contains(*id)) {
            let most = (inner.iter().zip(&weights))
                .filter(|(i, _)| **i == id)
                .map(|(_, &w)| w)
                .fold(0.0, f64::max);
            let want = case["lexical_weights"][id.to_string()]
                .as_f64()
                .unwrap_or(0.0);
            assert_close(&[most], &[want], &format!("token {id}'s lexical weight"));
        }
    }
    drop(s);

    // `--pooling splade` makes the lexical weights its embeddings, dense over the vocabulary.
    let s = Server::start_path(&dir("bge_m3"), "bge-m3", &["--pooling", "splade"]).await;
    let (_, v) = s
        .post("/v1/embeddings", &json!({"input": cases[0]["text"]}))
        .await;
    let embedding = floats(&v["data"][0]["embedding"]);
    assert_eq!(embedding.len(), vocab);
    for (id, w) in cases[0]["lexical_weights"].as_object().unwrap() {
        let got = embedding[id.parse::<usize>().unwrap()];
        assert_close(&[got], &[w.as_f64().unwrap()], "lexical as the embedding");
    }
}
