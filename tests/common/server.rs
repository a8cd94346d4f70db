//! A real `candor serve` process on a free port, killed when dropped.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Every line the server wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start `candor serve` with `args` (plus `--port 0`) and wait until /health is 200.
    pub async fn start(model: &str, args: &[&str]) -> Server {
        Self::start_path(&super::real_model(model), model, args).await
    }

    /// Start `candor serve` on the model at `path`, served as `name`, and return once it says
    /// where it listens (`base`: its scheme and address), not waiting for the model.
    pub fn launch(path: &std::path::Path, name: &str, args: &[&str]) -> Server {
        let model = name;
        let mut child = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args([
                "serve",
                "--model",
                path.to_str().expect("utf-8 path"),
                "--served-model-name",
                model,
                "--port",
                "0",
                "--threads",
                "2",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start candor serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                eprintln!("[server] {line}");
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not report its address");
        Server { child, base, log }
    }

    /// Start `candor serve` on the model at `path`, served as `name`.
    pub async fn start_path(path: &std::path::Path, name: &str, args: &[&str]) -> Server {
        let server = Self::launch(path, name, args);
        let client = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/health", server.base)).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "server not healthy after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POST `body` as JSON to `path`: the status and the JSON answer (null when it is none).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.send(path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The texts of the choices of a `/v1/completions` request that must succeed.
    pub async fn completion_texts(&self, body: &serde_json::Value) -> Vec<String> {
        let (status, v) = self.post("/v1/completions", body).await;
        assert_eq!(status, 200, "{v}");
        v["choices"]
            .as_array()
            .expect("choices")
            .iter()
            .map(|c| c["text"].as_str().expect("text").to_string())
            .collect()
    }

    /// GET `path`: the status and the JSON answer (null when it is none).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path).await
    }

    /// DELETE `path`: the status and the JSON answer (null when it is none).
    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::DELETE, path).await
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .request(method, self.url(path))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POST `body` as JSON to `path` and read the answer as text (an SSE stream's body).
    pub async fn post_for_text(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        let r = self.send(path, body).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// The /metrics exposition, as text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// A metric's value from /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }
}

impl Server {
    /// Send SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().filter(|x| x.contains(needle)).cloned().collect())
            .unwrap_or_default()
    }

    /// The log line saying the model failed to load, once it is there (within a minute).
    pub async fn load_failure(&self) -> String {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(line) = self.log_lines("model failed to load").into_iter().next() {
                return line;
            }
            assert!(t0.elapsed().as_secs() < 60, "the load did not fail");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
