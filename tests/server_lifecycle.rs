//! The server's life: one log line per request, and graceful shutdown on SIGTERM (running
//! streams finish, the process exits 0, nothing new is accepted).
mod common;

use common::server::Server;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_streams_finish_then_exits_zero() {
    let mut s = Server::start("gemma3-270m", &["--shutdown-timeout", "60"]).await;
    let client = reqwest::Client::new();

    // A finished request leaves one structured log line.
    let r: Value = client
        .post(s.url("/v1/completions"))
        .json(&json!({"prompt": "Once upon a time", "max_tokens": 3, "temperature": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let mut line = Vec::new();
    for _ in 0..50 {
        line = s.log_lines(&format!("request={id}"));
        if !line.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(line.len(), 1, "one log line for {id}");
    for field in [
        "outcome=length",
        "prompt_tokens=",
        "completion_tokens=3",
        "ttft_ms=",
        "duration_ms=",
    ] {
        assert!(line[0].contains(field), "`{field}` missing in {}", line[0]);
    }

    // A stream is running when SIGTERM arrives: it still gets every token and [DONE].
    let body = json!({"prompt": "The", "max_tokens": 40, "ignore_eos": true, "stream": true,
                      "stream_options": {"include_usage": true}});
    let resp = client
        .post(s.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()).into_owned();
    s.terminate();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("stream cut during shutdown"),
        ));
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream did not finish: {text}"
    );
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| !v["usage"].is_null())
        .expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 40);

    let status = tokio::task::block_in_place(|| s.wait_exit(Duration::from_secs(60)))
        .expect("server still running 60 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        client.get(s.url("/health")).send().await.is_err(),
        "a new connection was accepted after shutdown"
    );
}
