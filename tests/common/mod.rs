//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn as_u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

pub fn as_f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Path of a real test model, e.g. `qwen2.5-0.5b`.
pub fn real_model(name: &str) -> PathBuf {
    let dir = std::env::var_os("CANDOR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/candor/models")
        });
    let file = match name {
        "qwen2.5-0.5b" => "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "gemma3-270m" => "gemma-3-270m-q4_k_m.gguf",
        other => panic!("unknown model {other}"),
    };
    let p = dir.join(file);
    assert!(
        p.exists(),
        "{} is missing: run `candor pull {name}`",
        p.display()
    );
    p
}
