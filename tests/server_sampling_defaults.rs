//! The sampling defaults a model ships (`generation_config.json`) reach the requests that
//! leave those fields out, as in vLLM and llama-server; `--generation-config vllm` keeps the
//! server's own, `--override-generation-config` sets some over them, and a field a request
//! sends always wins. Checked by behaviour on the tiny random llama, whose rows are near
//! uniform: four choices of one request agree only when the pick is greedy.
mod common;

use common::plugins;
use common::server::Server;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The servable tiny llama with `extra` merged into its generation_config.json.
fn tiny_with(dir: &Path, extra: Value) -> PathBuf {
    let model = plugins::servable_tiny("llama", dir);
    let file = model.join("generation_config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    std::fs::write(&file, config.to_string()).unwrap();
    model
}

/// Whether the four choices of a completion that sends `fields` came out the same.
async fn choices_agree(s: &Server, fields: Value) -> bool {
    let mut body = json!({"prompt": "t5 t6 t7", "max_tokens": 12, "n": 4, "ignore_eos": true});
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let texts = s.completion_texts(&body).await;
    assert_eq!(texts.len(), 4);
    texts.iter().all(|t| *t == texts[0])
}

#[tokio::test]
async fn the_model_s_defaults_fill_what_requests_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_with(dir.path(), json!({"temperature": 0.0, "top_p": 0.9}));
    let s = Server::start_path(&model, "tiny", &[]).await;
    let (_, props) = s.get("/props").await;
    let params = &props["default_generation_settings"]["params"];
    assert_eq!(params["temperature"], 0.0, "{props}");
    assert_eq!(params["top_p"], 0.9, "{props}");
    assert!(
        !s.log_lines("sampling defaults").is_empty(),
        "the server says what it applies"
    );
    let (_, show) = s.post("/api/show", &json!({"model": "tiny"})).await;
    assert_eq!(
        show["parameters"],
        format!("{:<30} 0.0\n{:<30} 0.9", "temperature", "top_p"),
        "Ollama's listing"
    );
    assert!(
        choices_agree(&s, json!({})).await,
        "the model's temperature 0"
    );
    assert!(
        !choices_agree(&s, json!({"temperature": 1.0})).await,
        "a request's temperature wins"
    );
    drop(s);

    let s = Server::start_path(&model, "tiny", &["--generation-config", "vllm"]).await;
    assert!(
        !choices_agree(&s, json!({})).await,
        "the server's own default: temperature 1"
    );
    let (_, props) = s.get("/props").await;
    assert_eq!(
        props["default_generation_settings"]["params"]["temperature"],
        1.0
    );
    drop(s);

    let over = [
        "--generation-config",
        "vllm",
        "--override-generation-config",
        r#"{"top_k": 1}"#,
    ];
    let s = Server::start_path(&model, "tiny", &over).await;
    assert!(
        choices_agree(&s, json!({})).await,
        "top_k 1 set by the operator"
    );
    assert!(
        !choices_agree(&s, json!({"top_k": -1})).await,
        "a request's top_k -1 turns it off"
    );
    drop(s);

    // Another folder's generation_config.json, for a model that ships none of these fields.
    let plain = tempfile::tempdir().unwrap();
    let plain_model = tiny_with(plain.path(), json!({}));
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(
        elsewhere.path().join("generation_config.json"),
        r#"{"temperature": 0}"#,
    )
    .unwrap();
    let from = elsewhere.path().to_str().unwrap();
    let s = Server::start_path(&plain_model, "tiny", &["--generation-config", from]).await;
    assert!(
        choices_agree(&s, json!({})).await,
        "the folder's temperature 0"
    );
}

/// A model whose generation_config.json asks for what no request may: the server says so, and
/// how to serve without it, instead of failing every request.
#[test]
fn a_broken_generation_config_is_named_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_with(dir.path(), json!({"temperature": 5.0}));
    let mut child = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(["serve", "--port", "0", "--threads", "2", "--model"])
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start candor serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("failed to load") || line.contains("ready") {
                let _ = tx.send(line);
            }
        }
    });
    let t0 = Instant::now();
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the load's outcome");
    let _ = child.kill();
    let _ = child.wait();
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(line.contains("failed to load"), "{line}");
    assert!(line.contains("`temperature`"), "{line}");
    assert!(line.contains("--generation-config vllm"), "{line}");
}

#[test]
fn bad_overrides_are_refused_at_start() {
    let tiny = common::fixtures().join("tiny").join("llama");
    for (json, needle) in [
        (r#"{"temprature": 0.5}"#, "`temprature`"),
        (r#"{"top_p": 0}"#, "`top_p`"),
        ("not json", "not JSON"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["serve", "--port", "0", "--model"])
            .arg(&tiny)
            .args(["--override-generation-config", json])
            .output()
            .expect("run candor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{json}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(needle), "{json}: {stderr}");
    }
}
