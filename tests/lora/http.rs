//! `candor serve --lora NAME=PATH`: the adapter is listed and answers as a model of its own,
//! as the merged model would, beside the base model in the same engine.
use super::common::plugins::servable_tiny;
use super::common::server::Server;
use super::files::{tuned_tiny, tuned_tiny_lora, Lora};
use serde_json::{json, Value};

/// A prompt longer than a KV block, so the base model's answer leaves a cached block an
/// adapter's request must not take.
const PROMPT: &str = "t5 t6 t7 t8 t9 t10 t11 t12 t13 t14 t15 t16 t17 t18 t19 t20 t21 t22";

fn completion(model: &str) -> Value {
    json!({"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": true})
}

async fn text_of(server: &Server, model: &str) -> String {
    text_with(server, completion(model)).await
}

async fn text_with(server: &Server, body: Value) -> String {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let (status, body) = server.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], model, "the answer names the model asked for");
    body["choices"][0]["text"].as_str().unwrap().to_string()
}

async fn embedding(server: &Server, model: &str) -> Vec<f64> {
    let (status, body) = server
        .post("/v1/embeddings", &json!({"model": model, "input": PROMPT}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn an_adapter_answers_as_its_merged_model_beside_the_base_model() {
    let dir = tempfile::tempdir().unwrap();
    let (base, peft, merged) = tuned_tiny(dir.path(), 5);
    let server = Server::start_path(
        &base,
        "tiny",
        &["--lora", &format!("tuned={}", peft.display())],
    )
    .await;
    let reference = Server::start_path(&merged, "tiny", &[]).await;

    let (status, models) = server.get("/v1/models").await;
    assert_eq!(status, 200, "{models}");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny", "tuned"]);
    assert_eq!(models["data"][1]["parent"], "tiny");
    let (status, one) = server.get("/v1/models/tuned").await;
    assert_eq!((status, &one["parent"]), (200, &json!("tiny")), "{one}");
    // Ollama's listing too, and its chat answers with the adapter's name.
    let (status, tags) = server.get("/api/tags").await;
    assert_eq!(status, 200, "{tags}");
    assert_eq!(tags["models"][1]["name"], "tuned:latest", "{tags}");
    let generate = |model: &str| {
        json!({"model": model, "prompt": PROMPT, "raw": true, "stream": false,
               "options": {"temperature": 0, "num_predict": 8}})
    };
    let (status, tuned_raw) = server
        .post("/api/generate", &generate("tuned:latest"))
        .await;
    assert_eq!(
        (status, &tuned_raw["model"]),
        (200, &json!("tuned:latest")),
        "{tuned_raw}"
    );
    let (_, plain_raw) = server.post("/api/generate", &generate("tiny")).await;
    assert_ne!(tuned_raw["response"], plain_raw["response"]);

    // The base model first: its prompt blocks are cached, and the adapter must not use them.
    let plain = text_of(&server, "tiny").await;
    let tuned = text_of(&server, "tuned").await;
    let expected = text_of(&reference, "tiny").await;
    assert_eq!(tuned, expected, "the adapter answers as the merged model");
    assert_ne!(tuned, plain, "the adapter changes the answer");
    // Both at once, in one engine: each as alone.
    let (a, b) = tokio::join!(text_of(&server, "tiny"), text_of(&server, "tuned"));
    assert_eq!((a, b), (plain, tuned));

    let (e, reference_e) = (
        embedding(&server, "tuned").await,
        embedding(&reference, "tiny").await,
    );
    let off = e
        .iter()
        .zip(&reference_e)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(off < 1e-4, "embeddings with the adapter are off by {off}");

    // `/metrics` has vLLM's `lora_requests_info` (no adapter in use once all answered).
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(
            "candor:lora_requests_info{max_lora=\"16\",running_lora_adapters=\"\",\
             waiting_lora_adapters=\"\"}"
        ),
        "{metrics}"
    );
    let plain_metrics = reference.metrics_text().await;
    assert!(
        !plain_metrics.contains("lora_requests_info"),
        "no adapters, no gauge"
    );

    // Loading while serving is off unless the server was started to allow it.
    let load = json!({"lora_name": "other", "lora_path": peft});
    let (status, body) = server.post("/v1/load_lora_adapter", &load).await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = server
        .post("/v1/completions", &completion("tuned-v2"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`tuned`"), "{message}");
}

#[test]
fn serve_refuses_an_adapter_named_as_the_model_missing_or_past_the_most() {
    let dir = tempfile::tempdir().unwrap();
    let base = servable_tiny("llama", &dir.path().join("base"));
    let candor_with = |lora: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["serve", "--model", base.to_str().unwrap()])
            .args(["--served-model-name", "tiny", "--port", "0", "--lora", lora])
            .args(extra)
            .output()
            .unwrap()
    };
    let candor = |lora: &str| candor_with(lora, &[]);
    let same = candor(&format!("tiny={}", base.display()));
    assert!(!same.status.success());
    let err = String::from_utf8_lossy(&same.stderr);
    assert!(err.contains("base model's name"), "{err}");
    let missing = candor("tuned=/nowhere/adapter");
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("/nowhere/adapter"), "{err}");
    let past_the_most = candor_with(
        &format!("tuned={}", base.display()),
        &["--max-lora-adapters", "0"],
    );
    assert!(!past_the_most.status.success());
    let err = String::from_utf8_lossy(&past_the_most.stderr);
    assert!(err.contains("--max-lora-adapters 0"), "{err}");
}

/// `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter` (vLLM's), with
/// `--allow-runtime-lora`.
#[tokio::test]
async fn adapters_load_and_unload_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (base, peft, merged) = tuned_tiny(dir.path(), 11);
    let args = ["--allow-runtime-lora", "--max-lora-adapters", "2"];
    let server = Server::start_path(&base, "tiny", &args).await;
    let reference = Server::start_path(&merged, "tiny", &[]).await;
    let load = |name: &str, path: &std::path::Path| json!({"lora_name": name, "lora_path": path});

    let (status, text) = server
        .post_for_text("/v1/load_lora_adapter", &load("tuned", &peft))
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Success"), "{text}");
    let (_, models) = server.get("/v1/models").await;
    assert_eq!(models["data"][1]["id"], "tuned", "{models}");
    assert_eq!(
        text_of(&server, "tuned").await,
        text_of(&reference, "tiny").await
    );

    // A name is loaded once; a path that is not there, or an adapter of another model, is
    // refused and leaves nothing behind.
    let (status, body) = server
        .post("/v1/load_lora_adapter", &load("tuned", &peft))
        .await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("lora_name")),
        "{body}"
    );
    let nowhere = dir.path().join("nowhere");
    let (status, body) = server
        .post("/v1/load_lora_adapter", &load("x", &nowhere))
        .await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("lora_path")),
        "{body}"
    );
    let gemma = super::common::fixtures().join("tiny").join("gemma3");
    let misfit = Lora::random(&gemma, &["self_attn.q_proj"], 2, 4.0, 12)
        .write_peft(&dir.path().join("misfit"));
    let (status, body) = server
        .post("/v1/load_lora_adapter", &load("x", &misfit))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("attn_q"),
        "{body}"
    );
    let (status, _) = server.post("/v1/completions", &completion("x")).await;
    assert_eq!(status, 404);

    let unload = json!({"lora_name": "tuned"});
    let (status, text) = server
        .post_for_text("/v1/unload_lora_adapter", &unload)
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, body) = server.post("/v1/completions", &completion("tuned")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("model_not_found")),
        "{body}"
    );
    let (status, _) = server.post("/v1/unload_lora_adapter", &unload).await;
    assert_eq!(status, 404);
    // Loaded again under the same name (a new slot), it answers as before.
    let loads = |name: &'static str| {
        let (server, reference, body) = (&server, &reference, load(name, &peft));
        async move {
            let (status, text) = server.post_for_text("/v1/load_lora_adapter", &body).await;
            assert_eq!(status, 200, "{text}");
            assert_eq!(
                text_of(server, name).await,
                text_of(reference, "tiny").await
            );
        }
    };
    loads("tuned").await;
    // Two adapters at most (`--max-lora-adapters 2`): a third waits for an unload.
    loads("again").await;
    let (status, body) = server
        .post("/v1/load_lora_adapter", &load("third", &peft))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-lora-adapters"),
        "{body}"
    );
    let (status, _) = server
        .post_for_text("/v1/unload_lora_adapter", &json!({"lora_name": "again"}))
        .await;
    assert_eq!(status, 200);
    loads("third").await;
}

/// llama-server's LoRA API: `GET /lora-adapters`, a request's `lora` list of ids and scales,
/// and `POST /lora-adapters` for requests that send none.
#[tokio::test]
async fn lora_lists_scale_and_blend_adapters_as_llama_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let (base, peft, _) = tuned_tiny(dir.path(), 13);
    let half = tuned_tiny_lora(&base, 13)
        .scaled(0.5)
        .write_merged(&base, &dir.path().join("half"));
    let server = Server::start_path(
        &base,
        "tiny",
        &["--lora", &format!("tuned={}", peft.display())],
    )
    .await;
    let reference = Server::start_path(&half, "tiny", &[]).await;

    let (status, listed) = server.get("/lora-adapters").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["id"], 0, "{listed}");
    assert_eq!(listed[0]["name"], "tuned", "{listed}");
    assert_eq!(
        listed[0]["scale"], 0.0,
        "off for the base model until set: {listed}"
    );
    assert_eq!(listed[0]["path"], peft.display().to_string(), "{listed}");

    let with = |lora: Value| {
        let mut body = completion("tiny");
        body["lora"] = lora;
        body
    };
    // The base model first, so its prompt blocks are cached for the scaled runs to avoid.
    let plain = text_of(&server, "tiny").await;
    let tuned = text_of(&server, "tuned").await;
    assert_ne!(plain, tuned, "the adapter changes the answer");
    let at = |scale: f64| with(json!([{"id": 0, "scale": scale}]));
    assert_eq!(
        text_with(&server, at(1.0)).await,
        tuned,
        "scale 1: the adapter as a model"
    );
    assert_eq!(
        text_with(&server, at(0.0)).await,
        plain,
        "scale 0: the base model"
    );
    let expected_half = text_of(&reference, "tiny").await;
    assert_ne!(expected_half, plain);
    assert_ne!(expected_half, tuned);
    assert_eq!(
        text_with(&server, at(0.5)).await,
        expected_half,
        "half the update"
    );
    // Another scale in the same engine at once: each keeps its own K/V.
    let (a, b, c) = tokio::join!(
        text_with(&server, at(0.5)),
        text_with(&server, at(1.0)),
        text_with(&server, with(json!([]))),
    );
    assert_eq!(
        (a, b, c),
        (expected_half.clone(), tuned.clone(), plain.clone())
    );
    // llama-server's own endpoint takes it too.
    let native = |lora: Option<Value>| {
        let mut body = json!({"prompt": PROMPT, "n_predict": 8, "temperature": 0});
        if let Some(lora) = lora {
            body["lora"] = lora;
        }
        body
    };
    let content = |(status, body): (u16, Value)| {
        assert_eq!(status, 200, "{body}");
        body["content"].clone()
    };
    let half_native = json!([{"id": 0, "scale": 0.5}]);
    assert_eq!(
        content(server.post("/completion", &native(Some(half_native))).await),
        content(reference.post("/completion", &native(None)).await)
    );

    // Refused, naming the field: no such adapter, a negative id, a scale that is no number
    // in range, a list that is not one, and a list beside an adapter named as the model.
    for (lora, model, what) in [
        (json!([{"id": 3, "scale": 1}]), "tiny", "`lora[0].id` is 3"),
        (json!([{"id": -1, "scale": 1}]), "tiny", "lora[0].id"),
        (json!([{"id": 0, "scale": 1e9}]), "tiny", "lora[0].scale"),
        (json!([{"id": 0, "scale": 1}]), "tuned", "base model"),
    ] {
        let mut body = completion(model);
        body["lora"] = lora;
        let (status, answer) = server.post("/v1/completions", &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["param"], "lora", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(what), "{what}: {message}");
    }
    let (status, answer) = server
        .post("/v1/completions", &with(json!({"id": 0})))
        .await;
    assert_eq!(status, 400, "{answer}");

    // Scales for requests that send no list: set, listed, used; the adapter by name and an
    // empty list are unchanged.
    let (status, answer) = server
        .post("/lora-adapters", &json!([{"id": 0, "scale": 0.5}]))
        .await;
    assert_eq!((status, &answer), (200, &json!({"success": true})));
    let (_, listed) = server.get("/lora-adapters").await;
    assert_eq!(listed[0]["scale"], 0.5, "{listed}");
    assert_eq!(text_of(&server, "tiny").await, expected_half);
    assert_eq!(text_of(&server, "tuned").await, tuned);
    assert_eq!(text_with(&server, with(json!([]))).await, plain);
    let (status, answer) = server
        .post(
            "/lora-adapters",
            &json!([{"id": 0, "scale": 1}, {"id": 1, "scale": 1}]),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("`[1].id` of the body is 1"),
        "{message}"
    );
    assert_eq!(text_of(&server, "tiny").await, expected_half, "unchanged");
    let (status, _) = server.post("/lora-adapters", &json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&server, "tiny").await, plain, "all back to 0");
}
