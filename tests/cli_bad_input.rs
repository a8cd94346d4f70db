//! Bad input to `candor generate` gets one clear error line and a non-zero exit, never a panic.
mod common;

use common::fixtures;
use std::path::Path;
use std::process::Command;

fn generate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_candor"))
        .arg("generate")
        .args(args)
        .env(
            "CANDOR_MODELS",
            std::env::temp_dir().join("candor-no-models"),
        )
        .output()
        .expect("run candor");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "candor panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

fn expect_error(args: &[&str], needle: &str) {
    let (code, stderr) = generate(args);
    assert_ne!(code, 0, "{args:?} should fail");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in: {stderr}"
    );
}

fn tiny(arch: &str) -> String {
    fixtures().join("tiny").join(arch).display().to_string()
}

/// A minimal GGUF v3 file: one metadata string and one tensor of GGML type `ggml_type`.
fn gguf_with_tensor_type(path: &Path, ggml_type: u32) {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    let s = |b: &mut Vec<u8>, t: &str| {
        b.extend_from_slice(&(t.len() as u64).to_le_bytes());
        b.extend_from_slice(t.as_bytes());
    };
    s(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    s(&mut b, "llama");
    s(&mut b, "token_embd.weight");
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&256u64.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(&ggml_type.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32 + 4096, 0);
    std::fs::write(path, b).unwrap();
}

#[test]
fn missing_truncated_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    expect_error(
        &["--model", "/no/such/model.gguf", "--prompt", "hi"],
        "cannot read /no/such/model.gguf",
    );
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"hello world").unwrap();
    expect_error(
        &["--model", bad.to_str().unwrap(), "--prompt", "hi"],
        "wrong magic",
    );
    let trunc = dir.path().join("trunc.gguf");
    std::fs::write(&trunc, b"GGUF\x03\x00\x00\x00\x05").unwrap();
    expect_error(
        &["--model", trunc.to_str().unwrap(), "--prompt", "hi"],
        "invalid GGUF file",
    );
    expect_error(
        &["--model", "no-such-model", "--prompt", "hi"],
        "not in the catalogue (qwen2.5-0.5b, gemma3-270m)",
    );
    expect_error(
        &["--model", "gemma3-270m", "--offline", "--prompt", "hi"],
        "downloads are off",
    );
}

#[test]
fn unsupported_quantization_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f64.gguf");
    gguf_with_tensor_type(&f, 28);
    expect_error(
        &["--model", f.to_str().unwrap(), "--prompt-tokens", "1"],
        "unsupported tensor type F64",
    );
    expect_error(
        &["--model", f.to_str().unwrap(), "--prompt-tokens", "1"],
        "candor reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, \
         IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4",
    );
}

#[test]
fn config_that_disagrees_with_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "generation_config.json"] {
        std::fs::copy(fixtures().join("tiny/llama").join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny/llama/config.json")).unwrap(),
    )
    .unwrap();
    cfg["intermediate_size"] = serde_json::json!(96);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    expect_error(
        &[
            "--model",
            dir.path().to_str().unwrap(),
            "--prompt-tokens",
            "1",
        ],
        "config disagrees with the weights",
    );
    cfg["model_type"] = serde_json::json!("rwkv");
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    expect_error(
        &[
            "--model",
            dir.path().to_str().unwrap(),
            "--prompt-tokens",
            "1",
        ],
        "unsupported architecture `rwkv`",
    );
}

#[test]
fn prompt_and_flag_errors() {
    let llama = tiny("llama");
    expect_error(
        &["--model", &llama, "--prompt-tokens", "5,999999"],
        "token id 999999 is out of the vocabulary (size 512)",
    );
    let long: Vec<String> = (0..300).map(|i| (3 + i % 500).to_string()).collect();
    expect_error(
        &[
            "--model",
            &llama,
            "--prompt-tokens",
            &long.join(","),
            "--max-tokens",
            "1",
        ],
        "exceeds the context of 256 tokens",
    );
    expect_error(
        &[
            "--model",
            &llama,
            "--prompt-tokens",
            "5",
            "--temperature",
            "-1",
        ],
        "temperature must be",
    );
    expect_error(
        &["--model", &llama, "--prompt-tokens", "5", "--top-p", "0"],
        "top_p must be",
    );
    expect_error(
        &["--model", &llama, "--prompt", "hi"],
        "has no tokenizer.json",
    );
    expect_error(
        &["--model", &llama, "--prompt-tokens", "x,y"],
        "invalid value",
    );
    expect_error(
        &["--model", &llama, "--no-such-flag"],
        "unexpected argument",
    );
    // A q8_0 cache needs heads of whole 32-value blocks (the tiny llama's are 16), and is the
    // CPU's: a plugin is refused before it is even opened.
    let q8 = [
        "--model",
        &llama,
        "--prompt-tokens",
        "5",
        "--kv-cache-dtype",
        "q8_0",
    ];
    expect_error(&q8, "heads are 16 wide (use f16 or f32)");
    let on_plugin = [&q8[..], &["--backend", "plugin:/nonexistent"]].concat();
    expect_error(&on_plugin, "the plugin ABI has no 8-bit cache type");
}

#[test]
fn greedy_json_output_is_one_object_with_the_speeds() {
    let out = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args([
            "generate",
            "--model",
            &tiny("qwen3"),
            "--prompt-tokens",
            "5,6,7",
            "--max-tokens",
            "6",
            "--temperature",
            "0",
            "--ignore-eos",
            "--format",
            "json",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!([5, 6, 7]));
    assert_eq!(v["generated_ids"].as_array().unwrap().len(), 6);
    for key in ["prefill_tok_s", "decode_tok_s", "peak_rss_bytes"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}");
    }
}

#[test]
fn serve_names_an_unreadable_chat_template() {
    let out = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(["serve", "--port", "0", "--model", &tiny("llama")])
        .args(["--chat-template", "/no/such/template.jinja"])
        .output()
        .expect("run candor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("--chat-template /no/such/template.jinja"),
        "{stderr}"
    );
}

/// `serve --batch-invariant` is a mode of the CPU kernels: asked of another backend, the
/// server refuses to start, saying so; asked by flag or through the environment as `1` (every
/// switch reads 1/0, yes/no, on/off).
#[test]
fn batch_invariant_mode_on_another_backend_is_refused() {
    let flag: (&[&str], &[(&str, &str)]) = (&["--batch-invariant"], &[]);
    let env: (&[&str], &[(&str, &str)]) = (
        &[],
        &[("CANDOR_BATCH_INVARIANT", "1"), ("CANDOR_CORS", "yes")],
    );
    for (args, vars) in [flag, env] {
        let out = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["serve", "--model", &tiny("llama"), "--port", "0"])
            .args(["--backend", "plugin:/nonexistent/plugin.so"])
            .args(args)
            .envs(vars.iter().copied())
            .output()
            .expect("run candor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("--batch-invariant"),
            "{args:?} {vars:?}: {stderr}"
        );
    }
}
