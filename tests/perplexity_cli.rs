//! `candor perplexity` on the real default model: the number, the same number from the server's
//! prompt scoring (`echo`) over the same chunks, and what it refuses.
mod common;

use common::server::Server;
use common::{fixtures, real_model};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Output, Stdio};

const CTX: usize = 128;

fn perplexity(args: &[&str], stdin: Option<&str>) -> Output {
    perplexity_of("qwen2.5-0.5b", args, stdin)
}

fn perplexity_of(name: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let model = real_model(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(["perplexity", "--offline", "--threads", "2", "--model"])
        .arg(&model)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run candor perplexity");
    let mut input = child.stdin.take().expect("stdin");
    // A run that refuses its arguments exits without reading stdin; the pipe it closed is not a
    // failure of the test.
    match input.write_all(stdin.unwrap_or_default().as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    drop(input);
    child.wait_with_output().expect("candor perplexity")
}

fn result(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn sample() -> std::path::PathBuf {
    fixtures().join("perplexity/sample.txt")
}

/// The perplexity of the sample under `name`, checked against the server's prompt scoring:
/// each chunk's tokens sent with `echo` and nothing generated, their second half's logprobs
/// give the same mean NLL, up to the rounding of differently cut passes. Each chunk starts with
/// BOS where the model adds one (gemma), as llama-perplexity does. Returns the perplexity.
async fn check_against_the_server(name: &str) -> f64 {
    let file = sample();
    let ctx = CTX.to_string();
    let out = perplexity_of(
        name,
        &["-f", file.to_str().unwrap(), "-c", &ctx, "--format", "json"],
        None,
    );
    let p = result(&out);
    let chunks = p["chunks"].as_u64().unwrap() as usize;
    let tokens = p["text_tokens"].as_u64().unwrap() as usize;
    assert_eq!(chunks, tokens / CTX, "{p}");
    assert_eq!(
        p["tokens_scored"].as_u64(),
        Some((chunks * (CTX / 2 - 1)) as u64)
    );
    let ppl = p["ppl"].as_f64().unwrap();
    let mean_nll = p["mean_nll"].as_f64().unwrap();
    assert!((ppl - mean_nll.exp()).abs() < 1e-9 * ppl, "{p}");
    assert!(p["ppl_stderr"].as_f64().unwrap() > 0.0, "{p}");

    let s = Server::start(name, &[]).await;
    let text = std::fs::read_to_string(&file).unwrap();
    let tokenize = |special: bool| {
        let body = json!({"prompt": text, "add_special_tokens": special});
        let s = &s;
        async move {
            let (_, v) = s.post("/tokenize", &body).await;
            v["tokens"].as_array().expect("tokens").clone()
        }
    };
    let ids = tokenize(true).await;
    let bos = (ids.len() > tokenize(false).await.len()).then(|| ids[0].clone());
    assert_eq!(ids.len(), tokens);
    let mut nll = 0.0;
    let mut scored = 0;
    for c in 0..chunks {
        let mut chunk = ids[c * CTX..(c + 1) * CTX].to_vec();
        if let Some(bos) = &bos {
            chunk[0] = bos.clone();
        }
        let (_, v) = s
            .post(
                "/v1/completions",
                &json!({"prompt": chunk, "max_tokens": 0, "echo": true, "logprobs": 0}),
            )
            .await;
        let lp = v["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"));
        // Positions CTX/2 .. CTX-2 predict tokens CTX/2+1 .. CTX-1.
        for l in &lp[CTX / 2 + 1..CTX] {
            nll -= l.as_f64().expect("a logprob");
            scored += 1;
        }
    }
    assert_eq!(scored, p["tokens_scored"].as_u64().unwrap() as usize);
    let served = nll / scored as f64;
    eprintln!("{name}: mean NLL {mean_nll:.5} (perplexity), {served:.5} (server)");
    assert!(
        (served - mean_nll).abs() < 0.002,
        "{name}: mean NLL {mean_nll} from candor perplexity, {served} from the server"
    );
    // `candor perplexity --serve` does the same through the server's own endpoints; named as
    // the model file is, its result joins the local one in a report.
    let url = s.url("");
    let stem = real_model(name)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = perplexity_of(
        name,
        &[
            "--serve",
            &url,
            "-f",
            file.to_str().unwrap(),
            "-c",
            &ctx,
            "--format",
            "json",
            "--model-key",
            &stem,
            "--server-label",
            "candor serve here",
        ],
        None,
    );
    let remote = result(&out);
    assert_eq!(remote["tokens_scored"], p["tokens_scored"], "{remote}");
    assert_eq!(remote["text_tokens"], p["text_tokens"], "{remote}");
    assert_eq!(remote["server_models"], json!([name]), "{remote}");
    let remote_nll = remote["mean_nll"].as_f64().unwrap();
    assert!(
        (remote_nll - mean_nll).abs() < 0.002,
        "{name}: mean NLL {mean_nll} locally, {remote_nll} through --serve"
    );
    assert_eq!(p["tool"], "candor perplexity");
    assert_eq!(p["model_key"], stem.as_str());
    assert_eq!(p["file_sha256"], remote["file_sha256"]);
    report_joins(name, &stem, &p, &remote);
    ppl
}

/// `candor report` on the two results alone: one accuracy group of two runs, the same model
/// up to rounding.
fn report_joins(name: &str, stem: &str, local: &Value, remote: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["report".to_string()];
    for (file, doc) in [("local.json", local), ("served.json", remote)] {
        let path = dir.path().join(file);
        std::fs::write(&path, doc.to_string()).unwrap();
        args.push(path.display().to_string());
    }
    let out_dir = dir.path().join("report");
    args.extend(["-o".into(), out_dir.display().to_string()]);
    let o = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains(&format!("- {stem} on "))
            && md.contains("2 runs")
            && md.contains("the same model, up to rounding"),
        "{name}: {md}"
    );
    assert!(md.contains("| server | candor serve here |"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perplexity_matches_the_servers_scoring() {
    let ppl = check_against_the_server("qwen2.5-0.5b").await;
    check_against_the_server("gemma3-270m").await;
    // The same words in reverse order, read from standard input, are far less likely.
    let text = std::fs::read_to_string(sample()).unwrap();
    let reversed: Vec<&str> = text.split_whitespace().rev().collect();
    let ctx = CTX.to_string();
    let out = perplexity(
        &["-f", "-", "-c", &ctx, "--format", "json"],
        Some(&reversed.join(" ")),
    );
    let shuffled = result(&out)["ppl"].as_f64().unwrap();
    assert!(shuffled > 3.0 * ppl, "reversed text {shuffled}, text {ppl}");
}

#[test]
fn perplexity_refuses_what_it_cannot_score() {
    let file = sample();
    let file = file.to_str().unwrap();
    for (args, needle) in [
        (vec!["-f", file, "-c", "100000"], "context"),
        (vec!["-f", file, "-c", "2"], "at least 4"),
        (vec!["-f", "/nonexistent/text.txt"], "cannot read"),
        (vec!["-f", "-", "-c", "128"], "fewer than one chunk"),
        (vec!["-f", file, "--serve", "localhost:1"], "base URL"),
        (
            vec!["-f", file, "--serve", "http://127.0.0.1:1"],
            "/tokenize",
        ),
    ] {
        let out = perplexity(&args, Some("too short"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
