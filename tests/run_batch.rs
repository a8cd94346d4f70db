//! `candor run-batch`: OpenAI's Batch API file run offline. Every line gets one result line,
//! in input order; answers equal what `candor serve` answers to the same bodies; lines that
//! cannot be sent say why in `error`, and answered errors keep their status and error JSON.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use serde_json::{json, Value};
use std::process::Command;

const TEMPLATE: &str = "{% for m in messages %}{{ m.content }} {% endfor %}";

fn line(custom_id: &str, url: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).to_string()
}

/// `candor run-batch` from `input` to `output` on the tiny `model`, with the options `shared`
/// with the server it is compared to.
fn run_batch(input: &str, output: &str, model: &std::path::Path, shared: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_candor"));
    command
        .args(["run-batch", "-i", input, "-o", output])
        .args(["--model", model.to_str().unwrap()])
        .args(["--served-model-name", "tiny", "--threads", "2"])
        .args(shared);
    command
}

fn completion(prompt: &str, max_tokens: usize) -> Value {
    json!({"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

#[tokio::test]
async fn a_batch_file_is_answered_line_by_line_as_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let chat = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "t8 t9 t10"}],
        "max_tokens": 5,
        "temperature": 0
    });
    let embed = json!({"model": "tiny", "input": "t5 t6"});
    let many: Vec<(String, Value)> = (0..12)
        .map(|i| {
            let prompt = format!("t{} t{} t{}", 20 + i, 40 + 3 * i, 7 + i);
            (format!("many-{i}"), completion(&prompt, 3 + i % 5))
        })
        .collect();
    let mut lines = vec![
        line("c1", "/v1/completions", completion("t5 t6 t7", 6)),
        line("ch", "/v1/chat/completions", chat.clone()),
        String::new(),
        "{not json".to_string(),
        line("e1", "/v1/embeddings", embed.clone()),
        line(
            "other-model",
            "/v1/completions",
            json!({"model": "nope", "prompt": "t5"}),
        ),
        line("c1", "/v1/completions", completion("t9", 2)),
        line(
            "s",
            "/v1/completions",
            json!({"model": "tiny", "prompt": "t5", "stream": true}),
        ),
    ];
    lines.extend(
        many.iter()
            .map(|(id, body)| line(id, "/v1/completions", body.clone())),
    );
    let input = dir.path().join("batch.jsonl");
    // Last, a line that is not UTF-8: refused alone.
    let mut bytes = (lines.join("\n") + "\n").into_bytes();
    bytes.extend_from_slice(b"{\"custom_id\": \"\xff\xfe\"}\n");
    std::fs::write(&input, bytes).unwrap();
    let output = dir.path().join("results.jsonl");
    let shared = ["--chat-template", TEMPLATE, "--max-num-seqs", "4"];
    let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
    let out = run_batch(input, output, &model, &shared)
        // A key in the environment guards a server; nothing listens here.
        .env("CANDOR_API_KEY", "sk-server-only")
        .output()
        .unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{told}");
    assert!(told.contains("20 request(s) in"), "{told}");
    assert!(told.contains("15 succeeded, 5 failed"), "{told}");

    let results: Vec<Value> = std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["custom_id"].as_str().unwrap_or("-"))
        .collect();
    let mut expected = vec!["c1", "ch", "-", "e1", "other-model", "c1", "s"];
    expected.extend(many.iter().map(|(id, _)| id.as_str()));
    expected.push("-");
    assert_eq!(ids, expected, "one result per line, in order");
    for r in &results {
        assert!(r["id"].as_str().unwrap().starts_with("batch_req_"), "{r}");
    }
    let code = |i: usize| {
        results[i]["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(code(2), "invalid_json_line");
    assert_eq!(code(5), "duplicate_custom_id");
    assert_eq!(code(6), "invalid_request");
    assert_eq!(code(19), "invalid_json_line");
    let why = results[19]["error"]["message"].as_str().unwrap();
    assert!(why.contains("line 21 is not UTF-8"), "{why}");
    assert_eq!(results[4]["response"]["status_code"], 404, "{}", results[4]);
    assert!(results[4]["response"]["body"]["error"]["message"].is_string());

    // The same bodies sent to the server get the same answers.
    let server = Server::start_path(&model, "tiny", &shared).await;
    let body = |i: usize| &results[i]["response"]["body"];
    let (status, served) = server
        .post("/v1/completions", &completion("t5 t6 t7", 6))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body(0)["choices"], served["choices"]);
    assert_eq!(body(0)["usage"], served["usage"]);
    assert_eq!(results[0]["response"]["request_id"], body(0)["id"]);
    // An embedding answer has no id: the request's, as the server's header told it.
    let embedded = results[3]["response"]["request_id"].as_str().unwrap();
    assert_eq!(embedded.len(), 32, "{}", results[3]);
    let (_, served) = server.post("/v1/chat/completions", &chat).await;
    assert_eq!(body(1)["choices"], served["choices"]);
    // Within rounding: the batch computed it beside other rows (the kernels' reductions
    // depend on the batch, see README's prefix-cache notes).
    let (_, served) = server.post("/v1/embeddings", &embed).await;
    let vector = |v: &Value| -> Vec<f64> {
        let values = v[0]["embedding"].as_array().unwrap();
        values.iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let (batched, alone) = (vector(&body(3)["data"]), vector(&served["data"]));
    assert_eq!(batched.len(), alone.len());
    for (a, b) in batched.iter().zip(&alone) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    for (i, (_, sent)) in many.iter().enumerate() {
        let (_, served) = server.post("/v1/completions", sent).await;
        assert_eq!(body(7 + i)["choices"], served["choices"], "many-{i}");
        assert_eq!(results[7 + i]["response"]["status_code"], 200);
    }

    // From stdin to stdout, read as it comes.
    let mut child = run_batch("-", "-", &model, &shared)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "{}",
            line("a", "/v1/completions", completion("t5 t6 t7", 6))
        )
        .unwrap();
        writeln!(stdin, "{}", line("b", "/v1/embeddings", embed.clone())).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{told}");
    assert!(told.contains("2 request(s) in"), "{told}");
    let piped: Vec<Value> = (String::from_utf8(out.stdout).unwrap().lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(piped.len(), 2);
    assert_eq!(piped[0]["custom_id"], "a");
    assert_eq!(piped[0]["response"]["body"]["choices"], body(0)["choices"]);
    assert_eq!(piped[1]["response"]["status_code"], 200);
}

#[test]
fn unreadable_input_and_unwritable_output_fail_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let run = |input: &str, output: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["run-batch", "-i", input, "-o", output])
            .args(["--model", "/nowhere/model.gguf", "--offline"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let told = run("/nowhere/batch.jsonl", "-");
    assert!(told.contains("cannot read /nowhere/batch.jsonl"), "{told}");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let told = run(input.to_str().unwrap(), "/nowhere/out.jsonl");
    assert!(
        told.contains("cannot write the results to /nowhere/out.jsonl"),
        "{told}"
    );
}

/// vLLM's URLs: the requests fetched with GET, the results sent with PUT once all are
/// written, the same as a local run's; an input the server does not have, or an upload it
/// refuses, fails saying so (the results kept in `--output-tmp-dir`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_files_come_from_and_go_to_urls() {
    use axum::http::StatusCode;
    use axum::routing::{get, put};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let requests = [
        line("a", "/v1/completions", completion("t5 t6 t7", 4)),
        line("b", "/v1/completions", completion("t9 t8", 3)),
    ]
    .join("\n");
    let uploaded: Arc<Mutex<Option<String>>> = Arc::default();
    let store = uploaded.clone();
    let served = requests.clone();
    let app = axum::Router::new()
        .route("/in.jsonl", get(move || async move { served }))
        .route(
            "/out.jsonl",
            put(move |body: String| async move {
                *store.lock().unwrap() = Some(body);
                StatusCode::CREATED
            }),
        )
        .route("/locked.jsonl", put(|| async { StatusCode::FORBIDDEN }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let run = |input: String, output: String, extra: Vec<String>| {
        let model = model.clone();
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            run_batch(&input, &output, &model, &extra).output().unwrap()
        })
    };

    let out = run(
        format!("{base}/in.jsonl"),
        format!("{base}/out.jsonl"),
        vec![],
    )
    .await
    .unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{told}");
    assert!(told.contains("2 request(s) from"), "counted first: {told}");
    let local_in = dir.path().join("in.jsonl");
    std::fs::write(&local_in, &requests).unwrap();
    let local_out = dir.path().join("out.jsonl");
    let out = run(
        local_in.to_str().unwrap().into(),
        local_out.to_str().unwrap().into(),
        vec![],
    )
    .await
    .unwrap();
    assert!(out.status.success());
    let answers = |text: &str| -> Vec<(Value, Value)> {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|r| {
                (
                    r["custom_id"].clone(),
                    r["response"]["body"]["choices"].clone(),
                )
            })
            .collect()
    };
    let sent = uploaded
        .lock()
        .unwrap()
        .clone()
        .expect("the results were sent");
    let local = std::fs::read_to_string(&local_out).unwrap();
    assert_eq!(answers(&sent), answers(&local));
    assert_eq!(answers(&sent).len(), 2);

    let out = run(format!("{base}/missing.jsonl"), "-".into(), vec![])
        .await
        .unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        told.contains("cannot read the requests from") && told.contains("404"),
        "{told}"
    );

    let kept = dir.path().join("kept");
    std::fs::create_dir(&kept).unwrap();
    let out = run(
        local_in.to_str().unwrap().into(),
        format!("{base}/locked.jsonl"),
        vec!["--output-tmp-dir".into(), kept.to_str().unwrap().into()],
    )
    .await
    .unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        told.contains("cannot send the results") && told.contains("403"),
        "{told}"
    );
    let left: Vec<_> = std::fs::read_dir(&kept).unwrap().collect();
    assert_eq!(left.len(), 1, "the results stay where the message says");
}
