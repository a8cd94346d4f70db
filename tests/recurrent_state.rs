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

/// The tiny recurrent models served: gated DeltaNet, Mamba-2 beside attention, Mamba-2 alone,
/// Mamba-1 beside attention and experts, attention and Mamba-2 side by side, gated DeltaNet
/// layers normed before them beside attention layers normed after.
const RECURRENT: [&str; 6] = [
    "qwen3_next",
    "olmo_hybrid",
    "granitemoehybrid",
    "mamba2",
    "jamba",
    "falcon_h1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_keep_their_own_state_together_and_through_preemption() {
    for arch in RECURRENT {
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
    // The states' memory in /metrics: none left with the sequences gone, whole states kept
    // for the prefixes they computed.
    let per_sequence = candor_models::loader::open_model(&model, false)
        .unwrap()
        .spec
        .sequence_state_bytes() as f64;
    assert_eq!(
        metric(&s, "candor:recurrent_state_bytes").await,
        0.0,
        "{arch}"
    );
    let kept = metric(&s, "candor:recurrent_state_cache_bytes").await / per_sequence;
    assert!(
        kept >= 1.0 && kept.fract() == 0.0,
        "{arch}: {kept} states kept of {per_sequence} bytes"
    );
    let log = s.log.lock().unwrap().join("\n");
    assert!(
        log.contains("cached prefixes resume where the state cache kept their states"),
        "{log}"
    );
}

/// The usage's count of prompt tokens taken from the cache.
fn cached_tokens(v: &Value) -> u64 {
    v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cached_tokens: {v}"))
}

/// `n` token ids of the tiny vocabulary (past its specials), drawn by `seed`.
fn words(seed: usize, n: usize) -> Vec<u64> {
    (0..n)
        .map(|j| 3 + ((13 * seed + 17 * j + j * j) % 500) as u64)
        .collect()
}

/// The ids of a choice's answer (`return_token_ids`).
fn answer_ids(v: &Value) -> Vec<u64> {
    v["choices"][0]["token_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no token_ids: {v}"))
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

fn joined(parts: &[&[u64]]) -> Vec<u64> {
    parts.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_prefixes_resume_from_kept_states_as_if_computed() {
    for arch in RECURRENT {
        resume_cached_prefixes(arch).await;
    }
}

/// A chat's next turn resumes where its last ended, requests behind a shared system prompt
/// resume where it ends (from the second that shows it shared, or at once for a burst), and
/// every answer is the one computed without the cache (`cache_prompt: false`).
async fn resume_cached_prefixes(arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny(arch, dir.path());
    let s = Server::start_path(&model, "tiny", &[]).await;
    let ask = |prompt: Vec<u64>, cache: bool| {
        let body = json!({"model": "tiny", "prompt": prompt, "max_tokens": 12,
                          "temperature": 0, "ignore_eos": true, "cache_prompt": cache,
                          "return_token_ids": true});
        let s = &s;
        async move {
            let (status, v) = s.post("/v1/completions", &body).await;
            assert_eq!(status, 200, "{arch}: {v}");
            v
        }
    };
    let uncached = |prompt: Vec<u64>| async { answer_ids(&ask(prompt, false).await) };
    let ask_json = |body: Value| {
        let s = &s;
        async move {
            let (status, v) = s.post("/v1/completions", &body).await;
            assert_eq!(status, 200, "{arch}: {v}");
            v
        }
    };

    // A conversation: the next turn goes on from all the last one computed (its prompt and
    // all but its last answer token), to the token.
    let first = words(1, 45);
    let v = ask(first.clone(), true).await;
    assert_eq!(cached_tokens(&v), 0, "{arch}");
    let next = joined(&[&first, &answer_ids(&v), &words(2, 7)]);
    let v = ask(next.clone(), true).await;
    assert_eq!(cached_tokens(&v), 45 + 11, "{arch}: {v}");
    assert_eq!(
        answer_ids(&v),
        uncached(next).await,
        "{arch}: the next turn"
    );

    // A system prompt of 70 tokens (four full blocks, 64 tokens) and questions after it: the
    // first computes it all, the second shows it is shared (its state is kept at the end of
    // the shared blocks), the third resumes there.
    let system = words(3, 70);
    let mut cached = Vec::new();
    for q in 0..3 {
        let prompt = joined(&[&system, &words(10 + q, 9)]);
        let v = ask(prompt.clone(), true).await;
        cached.push(cached_tokens(&v));
        assert_eq!(
            answer_ids(&v),
            uncached(prompt).await,
            "{arch}: question {q}"
        );
    }
    assert_eq!(cached, [0, 0, 64], "{arch}");

    // Three choices of one prompt: the first computes it, keeping its state at the end of
    // its full blocks, where the other two resume.
    let prompt = words(5, 40);
    let v = ask_json(
        json!({"model": "tiny", "prompt": prompt, "max_tokens": 12, "n": 3,
                            "temperature": 0, "ignore_eos": true}),
    );
    let v = v.await;
    assert_eq!(cached_tokens(&v), 32, "{arch}: {v}");
    let alone = texts(&ask(prompt, false).await);
    assert_eq!(
        texts(&v),
        vec![alone[0].clone(); 3],
        "{arch}: three choices"
    );

    // A burst behind another system prompt (three prompts of one request, queued together):
    // one computes it, the others wait for the state it keeps where they branch.
    let system = words(4, 100);
    let prompts: Vec<Vec<u64>> = (0..3)
        .map(|q| joined(&[&system, &words(20 + q, 5)]))
        .collect();
    let v = ask_json(json!({"model": "tiny", "prompt": prompts, "max_tokens": 12,
                            "temperature": 0, "ignore_eos": true, "return_token_ids": true}));
    let v = v.await;
    for (i, p) in prompts.iter().enumerate() {
        let choice = v["choices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["index"] == i)
            .unwrap();
        let ids: Vec<u64> = (choice["token_ids"].as_array().unwrap().iter())
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(
            ids,
            uncached(p.clone()).await,
            "{arch}: the burst's prompt {i}"
        );
    }
    assert_eq!(cached_tokens(&v), 2 * 96, "{arch}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_prompt_cache_carries_its_recurrent_state_across_a_restart() {
    for arch in ["qwen3_next", "mamba2"] {
        save_and_restore_state(arch).await;
    }
}

/// llama-server's slot save on a model with recurrent layers writes the state the prompt
/// reached beside its K/V; another server restores both, and the conversation goes on from
/// it computing only its new tokens, answering as computed whole.
async fn save_and_restore_state(arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny(arch, dir.path());
    let saves = dir.path().join("slots");
    let args = ["--slot-save-path", saves.to_str().unwrap()];
    let body = |prompt: &[u64], cache: bool| {
        json!({"model": "tiny", "prompt": prompt, "max_tokens": 12, "temperature": 0,
               "ignore_eos": true, "cache_prompt": cache, "return_token_ids": true})
    };
    let first = Server::start_path(&model, "tiny", &args).await;
    let prompt = words(7, 45);
    let (status, v) = first.post("/v1/completions", &body(&prompt, true)).await;
    assert_eq!(status, 200, "{arch}: {v}");
    let save = json!({"filename": "hybrid.bin"});
    let (status, saved) = first.post("/slots/0?action=save", &save).await;
    assert_eq!(status, 200, "{arch}: {saved}");
    // The prompt and the answer but its last token: where its state was kept when it ended.
    assert_eq!(saved["n_saved"], 45 + 11, "{arch}: {saved}");
    drop(first);

    let second = Server::start_path(&model, "tiny", &args).await;
    let (status, restored) = second.post("/slots/0?action=restore", &save).await;
    assert_eq!(status, 200, "{arch}: {restored}");
    assert_eq!(restored["n_restored"], 45 + 11, "{arch}");
    let next = joined(&[&prompt, &answer_ids(&v), &words(8, 6)]);
    let (_, resumed) = second.post("/v1/completions", &body(&next, true)).await;
    assert_eq!(cached_tokens(&resumed), 45 + 11, "{arch}: {resumed}");
    let (_, whole) = second.post("/v1/completions", &body(&next, false)).await;
    assert_eq!(answer_ids(&resumed), answer_ids(&whole), "{arch}");
    drop(second);

    // A server that keeps no states for cached prefixes refuses the file.
    let off = [
        "--slot-save-path",
        saves.to_str().unwrap(),
        "--cache-ram",
        "0",
    ];
    let third = Server::start_path(&model, "tiny", &off).await;
    let (status, refused) = third.post("/slots/0?action=restore", &save).await;
    assert_eq!(status, 400, "{arch}: {refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("prefix caching is off"),
        "{arch}: {message}"
    );
}

/// A long prompt keeps its state every step budget of tokens (256 at least) on its way: a
/// prompt that shares only its start with it resumes at the last such point before they part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prompt_keeps_states_on_its_way() {
    let dir = tempfile::tempdir().unwrap();
    // Mamba-2 alone: no positions, so a context longer than the other fixtures' 256.
    let model = servable_tiny("mamba2", dir.path());
    let s = Server::start_path(&model, "tiny", &["--max-model-len", "1024"]).await;
    let ask = |prompt: Vec<u64>, cache: bool| {
        let body = json!({"model": "tiny", "prompt": prompt, "max_tokens": 8, "temperature": 0,
                          "ignore_eos": true, "cache_prompt": cache, "return_token_ids": true});
        let s = &s;
        async move {
            let (status, v) = s.post("/v1/completions", &body).await;
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let long = words(9, 600);
    let v = ask(long.clone(), true).await;
    assert_eq!(cached_tokens(&v), 0);
    // Parts from it at 530: the state kept at 512 (the default step budget) is on the shared
    // start; the prompt's end is past where they part.
    let other = joined(&[&long[..530], &words(11, 20)]);
    let v = ask(other.clone(), true).await;
    assert_eq!(cached_tokens(&v), 512, "{v}");
    assert_eq!(answer_ids(&v), answer_ids(&ask(other, false).await));
}

/// A greedy completion of `prompt` (token ids), with its answer's ids.
async fn turn(s: &Server, prompt: Vec<u64>) -> Value {
    let body = json!({"model": "tiny", "prompt": prompt, "max_tokens": 4, "temperature": 0,
                      "ignore_eos": true, "return_token_ids": true});
    let (status, v) = s.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The kept states show in `/metrics`, go with `/reset_prefix_cache`, and `--cache-ram 0`
/// keeps none (prefix caching off for such a model, as before there was a state cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_states_are_counted_emptied_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("qwen3_next", dir.path());
    let first = words(12, 40);
    let on = Server::start_path(&model, "tiny", &[]).await;
    let v = turn(&on, first.clone()).await;
    let next = joined(&[&first, &answer_ids(&v), &words(13, 3)]);
    assert!(metric(&on, "candor:recurrent_state_cache_bytes").await > 0.0);
    let (status, reset) = on.post("/reset_prefix_cache", &json!({})).await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(metric(&on, "candor:recurrent_state_cache_bytes").await, 0.0);
    assert_eq!(cached_tokens(&turn(&on, next.clone()).await), 0, "emptied");

    let off = Server::start_path(&model, "tiny", &["--cache-ram", "0"]).await;
    let v = turn(&off, first.clone()).await;
    let next = joined(&[&first, &answer_ids(&v), &words(13, 3)]);
    assert_eq!(cached_tokens(&turn(&off, next).await), 0);
    assert_eq!(
        metric(&off, "candor:recurrent_state_cache_bytes").await,
        0.0
    );
    let log = off.log.lock().unwrap().join("\n");
    assert!(log.contains("prefix caching is off"), "{log}");
}
