//! Paths of the device plugins build.rs makes (the reference plugin and its fault variants),
//! and a tiny servable model (a tiny fixture plus a word-level tokenizer).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run the candor binary with two compute threads.
pub fn candor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(args)
        .env("CANDOR_THREADS", "2")
        .output()
        .expect("run candor")
}

pub fn reference() -> PathBuf {
    PathBuf::from(env!("CANDOR_REFERENCE_PLUGIN"))
}

/// A test variant, e.g. `fault_wrong_major` for `libcandor_fault_wrong_major.so`.
pub fn variant(name: &str) -> PathBuf {
    PathBuf::from(env!("CANDOR_TEST_PLUGIN_DIR")).join(format!(
        "{}candor_{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// A private copy of a plugin: the dynamic loader shares one instance per path, so tests that
/// read a plugin's global counters load their own copy.
pub fn private_copy(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().expect("plugin file name"));
    std::fs::copy(src, &dst).expect("copy the plugin");
    dst
}

/// The tiny `arch` fixture with a word-level tokenizer (`t0` … `t511`, bos `t1`, eos `t2`), so
/// `candor serve` can run it.
pub fn servable_tiny(arch: &str, dir: &Path) -> PathBuf {
    let src = super::fixtures().join("tiny").join(arch);
    let dst = dir.join(arch);
    std::fs::create_dir_all(&dst).expect("model dir");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).expect("copy fixture");
    }
    let vocab: serde_json::Map<String, serde_json::Value> = (0..512)
        .map(|i| (format!("t{i}"), serde_json::json!(i)))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}
    });
    std::fs::write(dst.join("tokenizer.json"), tokenizer.to_string()).expect("tokenizer");
    std::fs::write(
        dst.join("tokenizer_config.json"),
        r#"{"bos_token": "t1", "eos_token": "t2"}"#,
    )
    .expect("tokenizer config");
    dst
}
