//! Faulty device plugins give clear errors, never a crash: the loader's checks, an op that fails
//! mid-generation (CLI: non-zero exit; serve: a 500 OpenAI error for that request only, and the
//! next request is served), a plugin that claims an op and then fails it, and buffer ownership
//! (every allocation freed exactly once, counted by the plugin itself).
#![cfg(unix)]
mod common;

use candor::backend::cpu::CpuBackend;
use candor::backend::plugin::{PluginBackend, PluginError};
use candor::engine::runner::{ModelRunner, Runner};
use candor_models::backend::Backend;
use candor_models::{Batch, DecoderModel, LogitsWanted, SeqInput};
use common::plugins::{self, candor};
use common::server::Server;
use std::path::Path;
use std::process::Output;

fn load_error(path: &Path) -> PluginError {
    match PluginBackend::load(path, CpuBackend::new(1)) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn the_loader_refuses_bad_plugins_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.so");
    assert!(matches!(load_error(&missing), PluginError::NotFound { .. }));
    let text = dir.path().join("text.so");
    std::fs::write(&text, "not an ELF file").unwrap();
    let e = load_error(&text);
    assert!(matches!(e, PluginError::NotALibrary { .. }), "{e}");
    type IsVariant = fn(&PluginError) -> bool;
    let cases: [(&str, IsVariant, &str); 4] = [
        (
            "fault_no_entry",
            |e| matches!(e, PluginError::MissingEntryPoint { .. }),
            "does not export `candor_device_get_api`",
        ),
        (
            "fault_null_table",
            |e| matches!(e, PluginError::NullTable { .. }),
            "returned NULL",
        ),
        (
            "fault_wrong_major",
            |e| {
                matches!(
                    e,
                    PluginError::WrongMajor {
                        found: 2,
                        expected: 1,
                        ..
                    }
                )
            },
            "ABI 2.x",
        ),
        (
            "fault_small_struct",
            |e| matches!(e, PluginError::TableTooSmall { size: 16, .. }),
            "struct_size too small",
        ),
    ];
    for (name, is, words) in cases {
        let e = load_error(&plugins::variant(name));
        assert!(is(&e), "{name}: {e:?}");
        assert!(e.to_string().contains(words), "{name}: {e}");
    }
}

fn generate(model: &Path, plugin: &Path) -> Output {
    candor(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--offline",
        "--prompt-tokens",
        "1,45,300",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--backend",
        &format!("plugin:{}", plugin.display()),
    ])
}

#[test]
fn the_cli_exits_non_zero_with_the_plugins_message() {
    let model = common::fixtures().join("tiny/llama");
    let cases = [
        (
            "fault_wrong_major",
            "it speaks ABI 2.x, this candor speaks 1.x",
        ),
        ("fault_no_entry", "does not export `candor_device_get_api`"),
        // rms_norm call 5 is in the first decode step: the prefill worked, then the op failed.
        (
            "fault_fail_at_call",
            "rms_norm failed (device error): injected fault: rms_norm call 5 failed",
        ),
        (
            "fault_claims_all",
            "gather_rows failed (unsupported): gather_rows is not implemented on this device",
        ),
    ];
    for (name, words) in cases {
        let out = generate(&model, &plugins::variant(name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(words), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let out = candor(&[
        "devices",
        "--plugin",
        plugins::variant("fault_null_table").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("returned NULL"));
}

/// `candor_reference_stats` of a loaded plugin copy: (live buffers, frees of unknown handles).
fn reference_stats(lib: &libloading::Library) -> (u64, u64) {
    // SAFETY: the reference plugin exports this function with this signature.
    unsafe {
        let f = lib
            .get::<unsafe extern "C" fn(*mut u64, *mut u64)>(b"candor_reference_stats\0")
            .expect("stats symbol");
        let (mut live, mut bad) = (0, 0);
        f(&mut live, &mut bad);
        (live, bad)
    }
}

#[test]
fn every_device_buffer_is_freed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = plugins::private_copy(&plugins::reference(), dir.path());
    // Held open across the test, so the plugin's counters outlive candor's own handle.
    // SAFETY: our reference plugin; loading runs no initialisers.
    let lib = unsafe { libloading::Library::new(&path) }.expect("load the plugin copy");
    assert_eq!(reference_stats(&lib), (0, 0));
    {
        let backend = PluginBackend::load(&path, CpuBackend::new(1)).expect("load");
        let opened =
            candor_models::loader::open_model(&common::fixtures().join("tiny/qwen2"), false)
                .expect("fixture");
        let model = DecoderModel::load(&backend, opened.spec.clone(), opened.source.as_ref())
            .expect("model");
        let weights = reference_stats(&lib).0;
        assert!(weights > 10, "weights on the device: {weights}");
        let mut runner = ModelRunner::new(backend.clone(), model, 4, 16).expect("runner");
        let batch = Batch {
            seqs: vec![SeqInput {
                state_slot: 0,
                tokens: vec![1, 2, 3, 4, 5],
                start_pos: 0,
                block_table: vec![0],
                logits: LogitsWanted::All,
                lora: candor_models::lora::LoraMix::BASE,
            }],
        };
        for _ in 0..3 {
            runner.forward(&batch).expect("forward");
        }
        // Activations of finished steps are gone: weights + KV cache (2 layers x K, V) remain.
        assert_eq!(reference_stats(&lib).0, weights + 4);
        // Tensors shared by clones and reshapes are freed once, when the last one goes.
        let t = backend.upload(&[1.0; 6], &[2, 3]).unwrap();
        let (u, v) = (t.clone(), backend.reshape(&t, &[3, 2]).unwrap());
        assert_eq!(reference_stats(&lib).0, weights + 5);
        drop(t);
        drop(u);
        assert_eq!(reference_stats(&lib).0, weights + 5);
        drop(v);
        assert_eq!(reference_stats(&lib).0, weights + 4);
    }
    assert_eq!(
        reference_stats(&lib),
        (0, 0),
        "leaked or double-freed buffers"
    );
}

async fn complete(server: &Server, prompt: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(server.url("/v1/completions"))
        .json(&serde_json::json!({"prompt": prompt, "max_tokens": 4, "temperature": 0}))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

#[tokio::test]
async fn serve_fails_only_the_request_that_hit_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let model = plugins::servable_tiny("llama", dir.path());
    let backend = format!(
        "plugin:{}",
        plugins::variant("fault_fail_at_call").display()
    );
    // The warm-up pass makes rms_norm calls 1-3; the first request's prefill hits call 5.
    let server = Server::start_path(&model, "tiny", &["--backend", &backend]).await;
    let (status, body) = complete(&server, "t5 t6 t7").await;
    assert_eq!(status, 500, "{body}");
    let err = &body["error"];
    assert_eq!(err["type"], "server_error", "{body}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("injected fault"),
        "{body}"
    );
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "{body}"
    );
    // The engine keeps serving.
    for _ in 0..2 {
        let (status, body) = complete(&server, "t9 t10").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["usage"]["completion_tokens"].as_u64().map(|n| n > 0),
            Some(true),
            "{body}"
        );
    }
    assert!(server.metric("candor:request_errors_total").await >= 1.0);
    // The reference plugin leaves gather_rows to the CPU: counted in /metrics.
    assert!(
        server
            .metric("candor:backend_fallback_ops_total{op=\"gather_rows\"}")
            .await
            >= 3.0
    );
    assert!(!server
        .log_lines("device plugin `candor reference (host C)`")
        .is_empty());
}
