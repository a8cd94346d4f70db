//! Who may reach the server, and how. `candor serve --ssl-certfile --ssl-keyfile`: the API over
//! HTTPS, a client that stalls in its handshake holding no one else back, plain HTTP on the
//! port refused, certificate files that are wrong or missing named before anything listens,
//! and `candor bench --serve` measuring it over HTTPS. HTTP/2 over TLS (ALPN) and in clear
//! text (prior knowledge), streams included. `--ssl-ca-certs`: client certificates required or
//! optional. `--enable-ssl-refresh`: renewed files served without a restart. `--api-key`
//! (several) and `--api-key-file`: any of the keys opens the API.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// `candor serve`'s flags for HTTPS with the certificate and key at these paths.
fn tls_flags(cert: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let flags = [
        "--ssl-certfile".into(),
        path(cert),
        "--ssl-keyfile".into(),
        path(key),
    ];
    flags.to_vec()
}

/// Flags as `Server::launch` takes them.
fn as_args(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// A client trusting only the test CA (which issued the server's certificate to `localhost`),
/// speaking HTTP/1.1 only.
fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// `method path` with `body` over HTTPS at `addr`: the status and the body of the answer.
async fn https(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector().connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A peer that closes without TLS's close_notify is still a whole HTTP/1.1 answer here.
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test]
async fn the_api_answers_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let flags = tls_flags(&tls_fixture("cert.pem"), &tls_fixture("key.pem"));
    let server = Server::launch(&model, "tiny", &as_args(&flags));
    let addr = server
        .base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not told as https: {}", server.base))
        .to_string();
    let t0 = Instant::now();
    while https(&addr, "GET", "/health", "").await.0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(120), "not healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A client that connects and never starts its handshake holds no one else back: the
    // next request is answered long before that handshake's 10 s run out.
    let _stalled = TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"model": "tiny", "prompt": "t5 t6 t7", "max_tokens": 4, "temperature": 0}"#;
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(5),
        https(&addr, "POST", "/v1/completions", body),
    )
    .await
    .expect("answered while another client stalls in its handshake");
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], 4, "{answer}");

    // `candor bench --serve` measures it over HTTPS, trusting the test CA by SSL_CERT_FILE
    // (as the system's store would hold a real one).
    let bench = |trust: bool| {
        let json = dir.path().join(format!("bench-{trust}.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_candor"));
        cmd.args(["bench", "--serve", &server.base, "-n", "4"])
            .args(["--concurrency", "1", "--requests-per-client", "2", "--json"])
            .arg(&json);
        if trust {
            cmd.env("SSL_CERT_FILE", tls_fixture("ca.pem"));
        }
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap();
            let told = String::from_utf8_lossy(&out.stderr).into_owned();
            let doc: Option<serde_json::Value> = std::fs::read_to_string(&json)
                .ok()
                .map(|text| serde_json::from_str(&text).unwrap());
            (out.status.success(), told, doc)
        }
    };
    let (ok, told, doc) = bench(true).await;
    assert!(ok, "{told}");
    let doc = doc.expect("a result");
    assert_eq!(
        doc["server"]["models"],
        serde_json::json!(["tiny"]),
        "{doc}"
    );
    let level = &doc["levels"][0];
    assert_eq!(
        (&level["errors"], &level["output_tokens"]),
        (&0.into(), &8.into()),
        "{level}"
    );
    // Not trusted, every request fails and says why.
    let (_, told, doc) = bench(false).await;
    let doc = doc.expect("a result");
    let level = &doc["levels"][0];
    assert_eq!(level["errors"], 2, "{level}");
    let sample = level["error_samples"][0].as_str().unwrap();
    assert!(sample.contains("UnknownIssuer"), "{sample}");
    let models_error = doc["server"]["models_error"].as_str().unwrap();
    assert!(
        models_error.contains("certificate"),
        "{models_error}\n{told}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn certificate_files_are_checked_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let serve = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(args)
            .output()
            .expect("run candor serve");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let (cert, key) = (tls_fixture("cert.pem"), tls_fixture("key.pem"));
    let missing = dir.path().join("missing-key.pem");
    let told = serve(&[
        "--ssl-certfile",
        cert.to_str().unwrap(),
        "--ssl-keyfile",
        missing.to_str().unwrap(),
    ]);
    assert!(told.contains("missing-key.pem"), "{told}");
    assert!(!told.contains("listening"), "{told}");
    // The key given as the certificate.
    let told = serve(&[
        "--ssl-certfile",
        key.to_str().unwrap(),
        "--ssl-keyfile",
        key.to_str().unwrap(),
    ]);
    assert!(told.contains("no certificate"), "{told}");
    // One without the other.
    let told = serve(&["--ssl-certfile", cert.to_str().unwrap()]);
    assert!(told.contains("--ssl-keyfile"), "{told}");
}

#[tokio::test]
async fn any_of_several_api_keys_opens_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let file = dir.path().join("keys");
    std::fs::write(&file, "# the new key\nsk-three\n").unwrap();
    let args = [
        "--api-key",
        "sk-one,sk-two",
        "--api-key-file",
        file.to_str().unwrap(),
    ];
    let server = Server::start_path(&model, "tiny", &args).await;
    let client = reqwest::Client::new();
    let status = |key: Option<&'static str>| {
        let mut req = client.get(server.url("/v1/models"));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for key in ["sk-one", "sk-two", "sk-three"] {
        assert_eq!(status(Some(key)).await, 200, "{key}");
    }
    for key in [None, Some("sk-four"), Some("sk-one,sk-two")] {
        assert_eq!(status(key).await, 401, "{key:?}");
    }
}

/// A system certificate store holding an unreadable certificate stops nothing: the load
/// generator builds its client (Mozilla's roots alone where reqwest would refuse the store,
/// `loadgen::http_client`) and its requests fail for their own reason (nothing listens here).
#[test]
fn unreadable_system_certificates_do_not_stop_the_load_generator() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(["bench", "--serve", "https://127.0.0.1:9", "-n", "2"])
        .args(["--concurrency", "1", "--requests-per-client", "1", "--json"])
        .arg(&json)
        .env("SSL_CERT_FILE", &bad)
        .output()
        .unwrap();
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(!told.contains("panicked"), "{told}");
    assert!(out.status.success(), "{told}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["levels"][0]["errors"], 1, "{doc}");
    let sample = doc["levels"][0]["error_samples"][0].as_str().unwrap();
    assert!(!sample.contains("set up the HTTP client"), "{sample}");
}

/// A reqwest client trusting only the CA in `ca`, showing the certificate and key in
/// `identity` when asked for one; no pooled connections (each request a new handshake).
fn tls_client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls_fixture(ca)).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0);
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(tls_fixture(cert)).unwrap();
        pem.extend(std::fs::read(tls_fixture(key)).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// `GET /health` with `client`: its status and HTTP version, or why it failed.
async fn health(client: &reqwest::Client, base: &str) -> Result<(u16, reqwest::Version), String> {
    let answer = client.get(format!("{base}/health")).send().await;
    answer
        .map(|r| (r.status().as_u16(), r.version()))
        .map_err(|e| format!("{e:?}"))
}

/// Wait until the model answers `/health` over `client`.
async fn until_healthy(client: &reqwest::Client, base: &str) {
    let t0 = Instant::now();
    while !matches!(health(client, base).await, Ok((200, _))) {
        assert!(t0.elapsed() < Duration::from_secs(120), "not healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A streamed completion over `client`: its HTTP version and the text of the stream.
async fn streamed(client: &reqwest::Client, base: &str) -> (reqwest::Version, String) {
    let body = serde_json::json!({
        "model": "tiny", "prompt": "t5 t6 t7", "max_tokens": 4, "temperature": 0, "stream": true
    });
    let answer = client
        .post(format!("{base}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    (answer.version(), answer.text().await.unwrap())
}

#[tokio::test]
async fn http2_is_spoken_over_tls_and_in_clear_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    // Clear text: HTTP/1.1, or HTTP/2 to a client that starts with its preface (h2c).
    let plain = Server::start_path(&model, "tiny", &[]).await;
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let (version, stream) = streamed(&h2c, &plain.base).await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert!(stream.trim_end().ends_with("data: [DONE]"), "{stream}");
    let (version, _) = streamed(&reqwest::Client::new(), &plain.base).await;
    assert_eq!(version, reqwest::Version::HTTP_11);

    // Over TLS, ALPN picks h2 for a client offering it; several streams share its connection.
    let flags = tls_flags(&tls_fixture("cert.pem"), &tls_fixture("key.pem"));
    let server = Server::launch(&model, "tiny", &as_args(&flags));
    let client = tls_client("ca.pem", None);
    until_healthy(&client, &server.base).await;
    let (a, b) = tokio::join!(
        streamed(&client, &server.base),
        streamed(&client, &server.base)
    );
    assert_eq!(
        (a.0, b.0),
        (reqwest::Version::HTTP_2, reqwest::Version::HTTP_2)
    );
    assert_eq!(a.1.matches("data: ").count(), b.1.matches("data: ").count());
    assert!(a.1.trim_end().ends_with("data: [DONE]"), "{}", a.1);
}

#[tokio::test]
async fn client_certificates_from_the_ca_given_are_required_or_optional() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let mut flags = tls_flags(&tls_fixture("cert.pem"), &tls_fixture("key.pem"));
    flags.extend([
        "--ssl-ca-certs".into(),
        tls_fixture("ca2.pem").display().to_string(),
    ]);
    let tls = as_args(&flags);
    // The client certificate ca2.pem issued; the server's own, from another CA, shown as a
    // client's; none.
    let known = tls_client("ca.pem", Some(("client.pem", "client-key.pem")));
    let stranger = tls_client("ca.pem", Some(("cert.pem", "key.pem")));
    let anonymous = tls_client("ca.pem", None);

    // Required by default once a CA is given.
    let server = Server::launch(&model, "tiny", &tls);
    until_healthy(&known, &server.base).await;
    assert!(health(&stranger, &server.base).await.is_err());
    assert!(health(&anonymous, &server.base).await.is_err());
    drop(server);

    // Optional (vLLM's number 1): anyone without one, no one with another CA's.
    let server = Server::launch(
        &model,
        "tiny",
        &[&tls[..], &["--ssl-cert-reqs", "1"]].concat(),
    );
    until_healthy(&known, &server.base).await;
    assert!(matches!(
        health(&anonymous, &server.base).await,
        Ok((200, _))
    ));
    assert!(health(&stranger, &server.base).await.is_err());
}

#[tokio::test]
async fn renewed_certificate_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(tls_fixture("cert.pem"), &cert).unwrap();
    std::fs::copy(tls_fixture("key.pem"), &key).unwrap();
    let mut flags = tls_flags(&cert, &key);
    flags.push("--enable-ssl-refresh".into());
    let server = Server::launch(&model, "tiny", &as_args(&flags));
    let (first_ca, second_ca) = (tls_client("ca.pem", None), tls_client("ca2.pem", None));
    until_healthy(&first_ca, &server.base).await;
    assert!(health(&second_ca, &server.base).await.is_err());
    // The renewal: a certificate from another CA, as a rotation to a new issuer would bring.
    std::fs::copy(tls_fixture("cert2.pem"), &cert).unwrap();
    std::fs::copy(tls_fixture("key2.pem"), &key).unwrap();
    let t0 = Instant::now();
    while health(&second_ca, &server.base).await.is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the renewed files are not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(health(&first_ca, &server.base).await.is_err());
    assert_eq!(server.log_lines("TLS files read again").len(), 1);
}

#[tokio::test]
async fn the_model_answers_to_each_of_its_served_names() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    // `Server` names it `tiny`; the names given here come after (vLLM's list, or commas).
    let server =
        Server::start_path(&model, "tiny", &["--served-model-name", "alias-a,alias-b"]).await;
    let (_, listed) = server.get("/v1/models").await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny", "alias-a", "alias-b"]);
    let body = |model: &str| serde_json::json!({"model": model, "prompt": "t5 t6", "max_tokens": 2, "temperature": 0});
    let (status, answer) = server.post("/v1/completions", &body("alias-b")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "tiny", "answers carry the first name");
    let (status, answer) = server.post("/v1/completions", &body("other")).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`alias-a`"),
        "{answer}"
    );

    // A name given twice, or empty, is refused before anything listens.
    for names in ["x,x", "x,"] {
        let out = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(["--served-model-name", names])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let told = String::from_utf8_lossy(&out.stderr);
        assert!(told.contains("--served-model-name"), "{names}: {told}");
    }
}

/// vLLM's `cache_salt`: a tenant's salted prompts share cached blocks only with requests of the
/// same salt, so another cannot learn them by timing its own requests' cache hits.
#[tokio::test]
async fn salted_prompts_share_cached_blocks_only_under_their_salt() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let server = Server::start_path(&model, "tiny", &[]).await;
    let prompt: Vec<String> = (0..40).map(|i| format!("t{}", 5 + i)).collect();
    let prompt = prompt.join(" ");
    let cached = |salt: Option<&str>| {
        let mut body = serde_json::json!({
            "model": "tiny", "prompt": prompt, "max_tokens": 1, "temperature": 0
        });
        if let Some(salt) = salt {
            body["cache_salt"] = salt.into();
        }
        let server = &server;
        async move {
            let (status, answer) = server.post("/v1/completions", &body).await;
            assert_eq!(status, 200, "{answer}");
            answer["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(cached(Some("tenant-a")).await, 0);
    assert!(cached(Some("tenant-a")).await >= 32, "the salt's own cache");
    assert_eq!(
        cached(Some("tenant-b")).await,
        0,
        "another salt finds nothing"
    );
    assert_eq!(cached(None).await, 0, "nor does the shared cache");
    assert!(cached(None).await >= 32);
    let (status, answer) = server
        .post(
            "/v1/completions",
            &serde_json::json!({"model": "tiny", "prompt": "t5", "cache_salt": ""}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["param"], "cache_salt");
}

/// A client's `X-Request-Id` names its request: in the answer's id (`cmpl-<id>`, as vLLM's)
/// and header; without one (or with one unfit for logs) the server draws one and tells it.
#[tokio::test]
async fn request_ids_come_back_in_the_header_and_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let server = Server::start_path(&model, "tiny", &[]).await;
    let client = reqwest::Client::new();
    let send = |path: &'static str, id: Option<&'static str>| {
        let mut req = client.post(server.url(path)).json(&serde_json::json!({
            "model": "tiny", "prompt": "t5 t6", "max_tokens": 2, "input": "t5"
        }));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move {
            let answer = req.send().await.unwrap();
            let told = answer.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let body: serde_json::Value = answer.json().await.unwrap();
            (told, body)
        }
    };
    let (told, body) = send("/v1/completions", Some("trace-7.a")).await;
    assert_eq!(told, "trace-7.a");
    assert_eq!(body["id"], "cmpl-trace-7.a", "{body}");
    // An embedding answer has no id of its own (OpenAI's shape): the header tells it.
    let (told, body) = send("/v1/embeddings", Some("trace-8")).await;
    assert_eq!(told, "trace-8");
    assert!(body["data"].is_array(), "{body}");
    let (told, body) = send("/v1/completions", None).await;
    assert_eq!(body["id"], format!("cmpl-{told}"));
    assert_eq!(told.len(), 32);
    let (told, _) = send("/v1/completions", Some("two words")).await;
    assert_eq!(told.len(), 32, "an id unfit for logs is replaced");
    // Refusals carry it too.
    let (told, body) = send("/v1/nowhere", Some("trace-9")).await;
    assert_eq!(told, "trace-9");
    assert!(body["error"].is_object(), "{body}");
}

/// SageMaker's routes as vLLM serves them: `/ping` (and vLLM's `/version`) open as `/health`
/// is; `/invocations` behind the key, running the request its body is.
#[tokio::test]
async fn sagemaker_routes_probe_and_dispatch_by_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let template = "{% for m in messages %}{{ m.content }} {% endfor %}";
    let args = ["--api-key", "sk-1", "--chat-template", template];
    let server = Server::start_path(&model, "tiny", &args).await;
    let client = reqwest::Client::new();
    let ping = client.get(server.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    let ping = client.post(server.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    let (status, version) = server.get("/version").await;
    assert_eq!(status, 200);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let post = |path: &str, body: serde_json::Value, key: Option<&'static str>| {
        let mut req = client.post(server.url(path)).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        async move {
            let answer = req.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<serde_json::Value>().await.unwrap())
        }
    };
    let invoke = |body, key| post("/invocations", body, key);
    let chat = serde_json::json!({
        "messages": [{"role": "user", "content": "t5 t6"}], "max_tokens": 2
    });
    assert_eq!(invoke(chat.clone(), None).await.0, 401);
    let (status, answer) = invoke(chat, Some("sk-1")).await;
    assert_eq!(
        (status, &answer["object"]),
        (200, &"chat.completion".into())
    );
    let (_, answer) = invoke(
        serde_json::json!({"prompt": "t5", "max_tokens": 2}),
        Some("sk-1"),
    )
    .await;
    assert_eq!(answer["object"], "text_completion", "{answer}");
    let (_, answer) = invoke(serde_json::json!({"input": "t5 t6"}), Some("sk-1")).await;
    assert!(answer["data"][0]["embedding"].is_array(), "{answer}");
    // A bad field is refused as that endpoint refuses it.
    let bad = serde_json::json!({"prompt": "t5", "max_tokens": "two"});
    let (status, answer) = invoke(bad.clone(), Some("sk-1")).await;
    assert_eq!(status, 400, "{answer}");
    let (_, direct) = post("/v1/completions", bad, Some("sk-1")).await;
    assert_eq!(answer, direct);
    let (status, answer) = invoke(serde_json::json!({"question": "?"}), Some("sk-1")).await;
    assert_eq!(status, 400, "{answer}");
}
