//! The official `openai` Python client talks to the real server (chat, chat stream,
//! completions, errors). The client is installed with pip into the target directory when the
//! system Python lacks it.
mod common;

use common::server::Server;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python_with_openai() -> (String, Option<PathBuf>) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has = |pythonpath: Option<&Path>| {
        let mut c = Command::new(&python);
        c.args(["-c", "import openai"]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    if has(None) {
        return (python, None);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-python");
    if !has(Some(&dir)) {
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg("openai")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python} -m pip: {e}"));
        assert!(
            out.status.success(),
            "pip install openai failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (python, Some(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_client_works() {
    let (python, pythonpath) = tokio::task::block_in_place(python_with_openai);
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(&s.base).arg("qwen2.5-0.5b");
    if let Some(p) = &pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let out = tokio::task::block_in_place(|| cmd.output()).expect("run the client script");
    assert!(
        out.status.success(),
        "openai client script failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("openai client: ok"));
}
