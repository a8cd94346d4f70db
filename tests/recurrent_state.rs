//! Serving models whose sequences carry a recurrent state (Qwen3-Next's gated DeltaNet layers,
//! Granite 4.0-H's Mamba-2 layers, Mamba-2 alone with no KV cache layer at all; tiny random
//! weights) over HTTP: requests run together,
//! several choices of one prompt, and sequences preempted for KV blocks and recomputed each
//! keep their own state, answering exactly as each request does alone.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use serde_json::{json, Value};

fn completion(prompt: &str, n: usize) -> Value {
    json!({"model": "tiny", "prompt": prompt, "max_tokens": 40, "temperature": 0, "n": n,
           "ignore_eos": true})
}

fn texts(v: &Value) -> Vec<String> {
    v["choices"]
        .as_array()
        .unwrap_or_else(|| panic!("no choices: {v}"))
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

/// The server's count of a metric in its `/metrics` text.
async fn metric(s: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_keep_their_own_state_together_and_through_preemption() {
    for arch in [
        "qwen3_next",
        "granitemoehybrid",
        "mamba2",
        "jamba",
        "falcon_h1",
    ] {
        keep_their_own_state(arch).await;
    }
}

async fn keep_their_own_state(arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny(arch, dir.path());
    // Six blocks of 16, and sequences of 46 to 62 tokens (four blocks at their end): any two
    // that run at once cannot both finish, so one is preempted and recomputed.
    let s = Server::start_path(&model, "tiny", &["--kv-cache-tokens", "96"]).await;
    let prompts: Vec<String> = (0..5)
        .map(|i| {
            (0..6 + 4 * i)
                .map(|j| format!("t{}", 3 + (7 * i + 11 * j) % 500))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut alone = Vec::new();
    for p in &prompts {
        let (status, v) = s.post("/v1/completions", &completion(p, 1)).await;
        assert_eq!(status, 200, "{v}");
        alone.push(texts(&v).remove(0));
    }
    assert!(
        alone.iter().any(|t| t != &alone[0]),
        "{arch}: the prompts should not all answer alike: {alone:?}"
    );
    let preempted_before = metric(&s, "candor:num_preemptions_total").await;
    let server = &s;
    let together = futures::future::join_all(
        prompts
            .iter()
            .map(|p| async move { server.post("/v1/completions", &completion(p, 1)).await }),
    )
    .await;
    for (i, (status, v)) in together.iter().enumerate() {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(
            texts(v),
            vec![alone[i].clone()],
            "{arch}: prompt {i} run beside the others"
        );
    }
    assert!(
        metric(&s, "candor:num_preemptions_total").await > preempted_before,
        "{arch}: no sequence was preempted: the test no longer covers a recompute"
    );
    // Three choices of one prompt, greedy: three sequences, three states, one answer.
    let (status, v) = s.post("/v1/completions", &completion(&prompts[1], 3)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(texts(&v), vec![alone[1].clone(); 3], "{arch}");
    // The states' memory in /metrics: one state per slot used, at least the three choices'.
    let per_sequence = candor_models::loader::open_model(&model, false)
        .unwrap()
        .spec
        .sequence_state_bytes() as f64;
    let held = metric(&s, "candor:recurrent_state_bytes").await;
    let slots = held / per_sequence;
    assert!(
        slots >= 3.0 && slots.fract() == 0.0,
        "{arch}: {held} bytes of states, {per_sequence} a sequence"
    );
    let log = s.log.lock().unwrap().join("\n");
    assert!(
        log.contains("prefix caching and speculative decoding are off"),
        "{log}"
    );
}
