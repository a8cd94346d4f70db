//! `candor bench` end to end on a tiny model: the table, the result document, bad arguments,
//! and `--serve` against a real candor server.
mod common;

use serde_json::Value;
use std::process::Command;

fn candor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_candor"))
}

/// Run `candor bench ARGS --json FILE`, check that it succeeded, and return its stdout and the
/// result document it wrote.
fn bench_document(args: &[&str]) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let out = candor()
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (stdout, doc)
}

fn tiny_llama() -> String {
    common::fixtures()
        .join("tiny/llama")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

#[test]
fn bench_writes_a_table_and_a_complete_result_document() {
    let model = tiny_llama();
    let (stdout, doc) = bench_document(&[
        "--offline",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "-b",
        "1,3",
        "-t",
        "2",
        "-m",
        &model,
    ]);
    for test in ["| pp16 |", "| tg4 |", "| tg4@b3 |"] {
        assert!(stdout.contains(test), "{test} missing from\n{stdout}");
    }
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["model"]["format"], "safetensors");
    assert!(doc["hardware"]["host_bandwidth_gbs"].as_f64().unwrap() > 0.0);
    // The CPU backend: no accelerator, no device bandwidth, written as null.
    assert!(doc["hardware"]["gpu"].is_null() && doc["hardware"]["device_bandwidth_gbs"].is_null());
    // The tiny llama's cache: 2 layers of 2 KV heads × 16, f32 on the CPU, no windows.
    let kv = &doc["kv_cache"];
    assert_eq!(
        (
            &kv["layers"],
            &kv["kv_heads"],
            &kv["head_dim"],
            kv["element_bytes"].as_f64()
        ),
        (&2.into(), &2.into(), &16.into(), Some(4.0))
    );
    assert_eq!(kv["layer_windows"], serde_json::json!([null, null]));
    assert!(doc["hardware"]["logical_cores"].as_u64().unwrap() >= 1);
    assert_eq!(doc["backend"]["threads"], 2);
    assert!(doc["date"].as_str().unwrap().ends_with('Z'));
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r["seconds"].as_array().unwrap().len(), 2);
        assert!(r["tok_s_mean"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(results[2]["n_tokens"], 12);
}

#[test]
fn profile_ops_adds_an_op_table_per_test_counted_per_pass() {
    let model = tiny_llama();
    let (stdout, doc) = bench_document(&[
        "--offline",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-b",
        "1,3",
        "-t",
        "2",
        "--profile-ops",
        "-m",
        &model,
    ]);
    let profiles = doc["op_profile"].as_array().expect("op_profile");
    let names: Vec<&str> = profiles
        .iter()
        .map(|p| p["test"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pp16", "tg4", "tg4@b3"]);
    // One pass each: the tiny llama has 2 layers, so attention runs twice per forward; the LM
    // head ([512, 64]) runs once per forward that wants logits (the prompt's last position,
    // every decode step).
    for (p, forwards) in profiles.iter().zip([1u64, 4, 4]) {
        let calls = |op: &str| {
            p["ops"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["op"] == op)
                .map(|o| o["calls"].as_u64().unwrap())
        };
        assert_eq!(calls("paged_attention"), Some(2 * forwards), "{p}");
        assert_eq!(calls("linear 512x64"), Some(forwards), "{p}");
        let wall = p["wall_seconds"].as_f64().unwrap();
        let in_ops: f64 = p["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["seconds"].as_f64().unwrap())
            .sum();
        let host = p["host_seconds"].as_f64().unwrap();
        assert!(wall > 0.0 && host >= 0.0 && in_ops <= wall * 1.0001, "{p}");
    }
    assert!(stdout.contains("op profile of tg4@b3"), "{stdout}");
    assert!(stdout.contains("| paged_attention | 8 |"), "{stdout}");
    // `candor report` shows each op's share of each test's pass.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("profiled.json");
    std::fs::write(&json, doc.to_string()).unwrap();
    let out = candor()
        .arg("report")
        .arg(&json)
        .arg("-o")
        .arg(dir.path().join("report"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(md.contains("## Where the time goes (op profiles)"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| `paged_attention` |"))
        .expect("an attention row");
    assert_eq!(row.matches('%').count(), 3, "one share per test: {row}");
    assert!(md.lines().any(|l| l.starts_with("| *host* |")), "{md}");
    // Without the flag the document has no profile.
    let (_, plain) = bench_document(&["--offline", "-p", "8", "-n", "0", "-r", "1", "-m", &model]);
    assert!(plain.get("op_profile").is_none());
}

#[test]
fn a_plugin_run_logs_where_the_loaded_weights_went() {
    let model = tiny_llama();
    let plugin = format!("plugin:{}", common::plugins::reference().display());
    let out = candor()
        .args([
            "bench",
            "--offline",
            "-p",
            "8",
            "-n",
            "0",
            "-r",
            "1",
            "--backend",
        ])
        .arg(&plugin)
        .arg("--profile-ops")
        .args(["-m", &model])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The line is written after the model loads, so it counts the weights the plugin took.
    let line = stderr
        .lines()
        .find(|l| l.contains("weights on the device:"))
        .unwrap_or_else(|| panic!("no placement line in {stderr}"));
    assert!(!line.contains("weights on the device: none"), "{line}");
}

#[test]
fn a_plugin_run_describes_the_plugins_device() {
    let model = tiny_llama();
    let plugin = format!("plugin:{}", common::plugins::reference().display());
    // pp8 and tg2 of the tiny llama on the reference plugin, with `extra` arguments.
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "--offline",
            "-p",
            "8",
            "-n",
            "2",
            "-r",
            "1",
            "-t",
            "2",
            "--backend",
            &plugin,
            "-m",
            &model,
        ];
        args.extend_from_slice(extra);
        bench_document(&args).1
    };
    let doc = bench(&["--profile-ops"]);
    // Profiling waits on the plugin's `synchronize` after each op; the pass still counts right.
    let tg2 = &doc["op_profile"][1];
    assert_eq!(tg2["test"], "tg2");
    let attention = tg2["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "paged_attention")
        .expect("attention row");
    assert_eq!(attention["calls"], 4, "{tg2}");
    let gpu = &doc["hardware"]["gpu"];
    assert_eq!(gpu["kind"], "plugin");
    assert_eq!(gpu["name"], "candor reference (host C)");
    assert_eq!(gpu["vendor"], "candor");
    assert!(gpu["details"][0].as_str().unwrap().starts_with("abi 1."));
    // The host is described as the host, not as the plugin's device.
    assert_ne!(doc["hardware"]["cpu_model"], gpu["name"]);
    // The plugin ABI has no device-to-device copy to time; an f32 model's cache is F32.
    assert!(doc["hardware"]["device_bandwidth_gbs"].is_null());
    assert_eq!(doc["kv_cache"]["element_bytes"].as_f64(), Some(4.0));
    // Asked for f16, a plugin that keeps such caches (ABI 1.1) holds half the bytes.
    let doc = bench(&["--kv-cache-dtype", "f16"]);
    assert_eq!(doc["kv_cache"]["element_bytes"].as_f64(), Some(2.0));
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    let model = common::fixtures().join("tiny/llama");
    let older_plugin = format!(
        "plugin:{}",
        common::plugins::variant("reference_abi_1_0").display()
    );
    for (args, needle) in [
        (vec!["-r", "0"], "repetitions"),
        (vec!["-p", "0", "-n", "0"], "nothing to measure"),
        (vec!["-b", "0"], "batch"),
        (vec!["--backend", "tpu"], "unknown backend"),
        (vec!["--backend", "cuda"], "--features cuda"),
        (vec!["-p", "999999"], "context"),
        (vec!["--serve", "localhost:1"], "base URL"),
        (
            vec!["--backend", &older_plugin, "--kv-cache-dtype", "f16"],
            "keeps KV caches in f32 only",
        ),
        (vec!["--perplexity", "/nonexistent/text.txt"], "cannot read"),
        (
            vec![
                "--perplexity",
                "README.md",
                "-p",
                "16",
                "--perplexity-ctx",
                "64",
            ],
            "no tokenizer",
        ),
        (
            vec![
                "--perplexity",
                "README.md",
                "--load-format",
                "dummy",
                "--arch",
                "llama",
                "--size",
                "8b",
            ],
            "real weights",
        ),
    ] {
        let out = candor()
            .args(["bench", "--offline", "-m"])
            .arg(&model)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` not in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `--perplexity` adds the model's perplexity on a text to the result, measured on the same
/// device as `candor perplexity` measures it: the same number, and the text's sha256 so that
/// reports compare runs on the same text only.
#[test]
fn bench_records_the_perplexity_of_a_text() {
    let text = common::fixtures().join("perplexity/sample.txt");
    let text = text.to_str().unwrap();
    let (stdout, doc) = bench_document(&[
        "--offline",
        "-m",
        "qwen2.5-0.5b",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-t",
        "2",
        "--perplexity",
        text,
        "--perplexity-ctx",
        "128",
        "--perplexity-chunks",
        "2",
    ]);
    let p = &doc["perplexity"];
    assert_eq!(
        (p["ctx"].as_u64(), p["chunks"].as_u64()),
        (Some(128), Some(2)),
        "{p}"
    );
    assert_eq!(p["tokens_scored"].as_u64(), Some(2 * 63));
    assert_eq!(p["file_sha256"].as_str().map(str::len), Some(64), "{p}");
    assert!(stdout.contains("perplexity of"), "{stdout}");
    let out = candor()
        .args([
            "perplexity",
            "--offline",
            "--model",
            "qwen2.5-0.5b",
            "--threads",
            "2",
        ])
        .args(["-f", text, "-c", "128", "--chunks", "2", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alone: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (bench, cli) = (p["ppl"].as_f64().unwrap(), alone["ppl"].as_f64().unwrap());
    assert!(
        (bench - cli).abs() < 1e-9 * cli,
        "bench {bench}, candor perplexity {cli}"
    );
    // Each scored position's pick and logprob, for comparing devices position by position.
    assert_eq!(p["top1_ids"].as_array().map(Vec::len), Some(2 * 63));
    assert_eq!(p["top1_ids"], alone["top1_ids"]);
    assert_eq!(p["logprobs"], alone["logprobs"]);
    let nll: f64 = p["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| -l.as_f64().unwrap())
        .sum();
    let mean = p["mean_nll"].as_f64().unwrap();
    assert!((nll / 126.0 - mean).abs() < 1e-4, "{nll} {mean}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mode_measures_a_real_server() {
    let s = common::server::Server::start("gemma3-270m", &[]).await;
    let (_, doc) = tokio::task::block_in_place(|| {
        bench_document(&[
            "--serve",
            &s.base,
            "-n",
            "8",
            "--concurrency",
            "1,2",
            "--requests-per-client",
            "2",
            "--server-label",
            "candor serve on this machine",
        ])
    });
    // The server as the user and its /v1/models describe it; the client's own machine apart.
    assert_eq!(doc["server"]["label"], "candor serve on this machine");
    assert_eq!(doc["server"]["models"], serde_json::json!(["gemma3-270m"]));
    assert!(doc["server"]["models_error"].is_null());
    let client = &doc["load_generator_hardware"];
    assert!(!client["cpu_model"].as_str().unwrap().is_empty());
    assert!(client["logical_cores"].as_u64().unwrap() >= 1);
    assert!(client["gpu"].is_null() && client["host_bandwidth_gbs"].is_null());
    let levels = doc["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for l in levels {
        assert_eq!(l["errors"], 0, "{l}");
        assert_eq!(
            l["output_tokens"],
            l["requests"].as_u64().unwrap() * 8,
            "{l}"
        );
        assert!(l["ttft_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert!(l["output_tok_s"].as_f64().unwrap() > 0.0);
        // candor exports its draft counters: the level says what came from drafts.
        let (drafted, kept) = (&l["drafts"]["drafted"], &l["drafts"]["kept"]);
        assert!(kept.as_u64().unwrap() <= drafted.as_u64().unwrap(), "{l}");
    }
    assert_eq!(doc["unique_prompts"], false);
    // Unique prompts: the server's prefix cache serves a token or two of each at most.
    let hits = s.metric("candor:prefix_cache_hits_total").await;
    let (_, doc) = tokio::task::block_in_place(|| {
        bench_document(&[
            "--serve",
            &s.base,
            "-n",
            "2",
            "--concurrency",
            "2",
            "--requests-per-client",
            "2",
            "--unique-prompts",
        ])
    });
    assert_eq!(doc["unique_prompts"], true);
    assert_eq!(doc["levels"][0]["errors"], 0, "{doc}");
    let served = s.metric("candor:prefix_cache_hits_total").await - hits;
    assert!(
        served <= 2.0 * 4.0,
        "{served} prompt tokens came from the cache"
    );
}

#[test]
fn bench_runs_a_dummy_model_of_known_shapes() {
    let (_, doc) = bench_document(&[
        "--load-format",
        "dummy",
        "--arch",
        "qwen2.5",
        "--size",
        "tiny",
        "--dummy-dtype",
        "f32",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-t",
        "2",
    ]);
    assert_eq!(doc["model"]["format"], "dummy");
    assert_eq!(doc["model"]["name"], "dummy-qwen2-tiny");
    assert_eq!(doc["model"]["arch"], "qwen2");
    assert_eq!(doc["model"]["quantization"], "F32");
    let params = doc["model"]["parameters"].as_u64().unwrap();
    assert_eq!(doc["model"]["size_bytes"].as_u64().unwrap(), params * 4);
    assert_eq!(doc["results"].as_array().unwrap().len(), 2);

    let bad = candor()
        .args([
            "bench",
            "--load-format",
            "dummy",
            "--size",
            "70b",
            "-r",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("llama 8b"), "{err}");
}

/// A mixture of experts records its experts (reports count the active ones), and DeepSeek's
/// latent attention its cache as the CPU holds it: one KV head of kv_lora_rank + rope.
#[test]
fn bench_records_experts_and_the_latent_cache() {
    let args = |arch: &'static str| {
        [
            "--load-format",
            "dummy",
            "--arch",
            arch,
            "--size",
            "tiny",
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "1",
            "-t",
            "2",
        ]
    };
    let (_, moe) = bench_document(&args("qwen3-moe"));
    let e = &moe["model"]["experts"];
    assert_eq!(
        (e["experts"].as_u64(), e["per_token"].as_u64()),
        (Some(8), Some(2))
    );
    assert_eq!(e["parameters_per_expert"], 3 * 32 * 64);
    let (_, ds) = bench_document(&args("deepseek"));
    assert_eq!(ds["model"]["experts"]["layers"], 1);
    assert_eq!(
        (
            ds["kv_cache"]["kv_heads"].as_u64(),
            ds["kv_cache"]["head_dim"].as_u64()
        ),
        (Some(1), Some(40))
    );
    let (_, dense) = bench_document(&args("llama"));
    assert!(dense["model"].get("experts").is_none());
}
