//! Static embedding models against their own libraries (tests/fixtures/tiny/make_static.py):
//! Model2Vec's `StaticModel.encode` (per-token weights, a quantized vocabulary, the unknown
//! token left out) and sentence-transformers' `StaticEmbedding` (every token counts), each
//! text's vector the normalised mean of its tokens' rows; over the model API and over HTTP.
mod common;

use candor_models::static_embedding::StaticEmbedding;
use candor_models::tokenizer::Tokenizer;
use common::server::Server;
use common::{as_f32s, as_u32s, max_abs_diff, read_json};
use serde_json::{json, Value};

const FIXTURES: [&str; 2] = ["model2vec_embed", "static_embed"];

fn dir(name: &str) -> std::path::PathBuf {
    common::fixtures().join("tiny").join(name)
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / norm).collect()
}

#[test]
fn each_text_is_the_mean_of_its_tokens_rows() {
    for name in FIXTURES {
        let mut model = StaticEmbedding::from_dir(&dir(name))
            .unwrap()
            .expect("a table");
        let tok = Tokenizer::from_file(&model.tokenizer_dir.join("tokenizer.json"), None).unwrap();
        model.leave_out_unknown(&tok);
        let golden = read_json(&dir(name).join("golden.json"));
        for case in golden["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(
                ids,
                as_u32s(&case["ids"]),
                "{name}: {text}: no special tokens"
            );
            let rows = model.rows(&ids).unwrap();
            let dim = model.dim();
            let mean: Vec<f32> = (0..dim)
                .map(|d| rows.chunks(dim).map(|r| r[d]).sum::<f32>() / ids.len() as f32)
                .collect();
            let diff = max_abs_diff(&unit(mean), &as_f32s(&case["vector"]));
            assert!(diff < 1e-5, "{name}: {text}: differs by {diff}");
        }
    }
    // A transformer checkout is not a static model.
    assert!(StaticEmbedding::from_dir(&dir("bert_embed"))
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_models_embed_over_http() {
    for name in FIXTURES {
        let golden = read_json(&dir(name).join("golden.json"));
        let cases = golden["cases"].as_array().unwrap();
        let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
        let s = Server::start_path(&dir(name), name, &[]).await;
        let (status, v) = s.post("/v1/embeddings", &json!({"input": texts})).await;
        assert_eq!(status, 200, "{name}: {v}");
        let tokens: usize = cases
            .iter()
            .map(|c| c["ids"].as_array().unwrap().len())
            .sum();
        assert_eq!(v["usage"]["prompt_tokens"], tokens, "{name}: {v}");
        for (item, case) in v["data"].as_array().unwrap().iter().zip(cases) {
            let got: Vec<f32> = (item["embedding"].as_array().unwrap().iter())
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let diff = max_abs_diff(&got, &as_f32s(&case["vector"]));
            assert!(diff < 1e-5, "{name}: {}: differs by {diff}", case["text"]);
        }
        // TEI's /embed and Ollama's /api/embed answer the same vectors.
        let (_, e) = s.post("/embed", &json!({"inputs": texts[0]})).await;
        let got: Vec<f32> = (e[0].as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert!(
            max_abs_diff(&got, &as_f32s(&cases[0]["vector"])) < 1e-5,
            "{name}"
        );
        let (status, shown) = s.post("/api/show", &json!({"model": name})).await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["details"]["family"], "static-embedding", "{shown}");
        // It does not generate.
        let (status, v) = s
            .post(
                "/v1/completions",
                &json!({"prompt": "the", "max_tokens": 2}),
            )
            .await;
        assert_eq!(status, 400, "{name}: {v}");
        let _: Value = v;
    }

    // Model2Vec reads 512 tokens (its `max_length`): a longer text is refused unless cut,
    // and a cut keeps its first tokens (a static model's texts have no closing token).
    let s = Server::start_path(&dir("model2vec_embed"), "potion", &[]).await;
    let long = format!("the {} dog", vec!["cat"; 600].join(" "));
    let (status, v) = s.post("/v1/embeddings", &json!({"input": long})).await;
    assert_eq!(status, 400, "{v}");
    let mut model = StaticEmbedding::from_dir(&dir("model2vec_embed"))
        .unwrap()
        .unwrap();
    let tok = Tokenizer::from_file(&model.tokenizer_dir.join("tokenizer.json"), None).unwrap();
    model.leave_out_unknown(&tok);
    let head = &tok.encode(&long, true).unwrap()[..512];
    let rows = model.rows(head).unwrap();
    let want: Vec<f32> = unit(
        (0..model.dim())
            .map(|d| rows.chunks(model.dim()).map(|r| r[d]).sum::<f32>())
            .collect(),
    );
    let body = json!({"input": long, "truncate_prompt_tokens": -1});
    let (status, v) = s.post("/v1/embeddings", &body).await;
    assert_eq!(status, 200, "{v}");
    let got: Vec<f32> = (v["data"][0]["embedding"].as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&got, &want) < 1e-5, "the first 512 tokens");
    let (_, e) = s
        .post("/embed", &json!({"inputs": long, "truncate": true}))
        .await;
    let got: Vec<f32> = (e[0].as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(max_abs_diff(&got, &want) < 1e-5, "TEI's cut");
    drop(s);

    // Its one pooling is the mean.
    let s = Server::launch(&dir("static_embed"), "static", &["--pooling", "cls"]);
    let failure = s.load_failure().await;
    assert!(failure.contains("mean"), "{failure}");
}
