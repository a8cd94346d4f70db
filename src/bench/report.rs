//! The result document of `candor bench` (schema in docs/bench-json.md) and its table.
use super::hardware::Hardware;
use super::kv_traffic::KvShape;
use super::{BenchConfig, TestProfile, TestResult};
use serde::Serialize;

/// Bumped whenever a field changes meaning or disappears. 2: `hardware.cpu_model` is always the
/// host CPU (1 wrote a GPU's name there on the CUDA backend), `hardware.host_bandwidth_gbs` may
/// be null; new: `hardware.gpu`, `hardware.device_bandwidth_gbs`, `kv_cache`, and the serve
/// documents' `load_generator_hardware` and `server`.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: String,
    pub sha256: Option<String>,
    pub size_bytes: u64,
    pub format: String,
    pub arch: String,
    pub quantization: Option<String>,
    pub parameters: Option<u64>,
    /// `--lora`: the LoRA adapter every measured sequence ran with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<String>,
    /// A mixture of experts' shape: its MBU and MFU count the experts its tokens ran, not all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experts: Option<super::experts::ExpertShape>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub kind: String,
    pub device: String,
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchDocument {
    pub schema_version: u32,
    pub tool: &'static str,
    pub candor_version: &'static str,
    pub git_commit: &'static str,
    /// UTC, RFC 3339.
    pub date: String,
    pub model: ModelInfo,
    pub backend: BackendInfo,
    pub hardware: Hardware,
    /// The KV cache decode reads, for the bytes-per-token of decode MBU.
    pub kv_cache: KvShape,
    pub config: BenchConfig,
    pub results: Vec<TestResult>,
    pub peak_rss_bytes: Option<u64>,
    /// `--profile-ops`: one extra, untimed pass per test with every op timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_profile: Option<Vec<TestProfile>>,
    /// `--perplexity FILE`: the model's perplexity on a text, measured on the same device
    /// after the timed tests (accuracy beside speed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<PerplexityResult>,
}

/// A perplexity in a result document (`candor perplexity`'s method; docs/bench-json.md).
#[derive(Debug, Clone, Serialize)]
pub struct PerplexityResult {
    /// The text file as given, and its content's sha256: runs compare only on the same text.
    pub file: String,
    pub file_sha256: String,
    pub ctx: usize,
    pub chunks: usize,
    pub text_tokens: usize,
    pub tokens_scored: usize,
    pub ppl: f64,
    pub ppl_stderr: f64,
    pub mean_nll: f64,
    pub top1_rate: f64,
    pub seconds: f64,
    /// The first scored positions (at most 4096, in text order): the model's most likely token
    /// and the logprob of the text's token, so reports compare devices position by position.
    pub top1_ids: Vec<u32>,
    pub logprobs: Vec<f32>,
}

pub fn git_commit() -> &'static str {
    option_env!("CANDOR_GIT_COMMIT").unwrap_or("unknown")
}

fn human_size(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.2} MiB")
    }
}

fn human_params(p: Option<u64>) -> String {
    match p {
        Some(p) if p >= 1_000_000_000 => format!("{:.2} B", p as f64 / 1e9),
        Some(p) => format!("{:.2} M", p as f64 / 1e6),
        None => "?".into(),
    }
}

/// A markdown table like llama-bench's, one row per test.
pub fn table(doc: &BenchDocument) -> String {
    let mut s = String::from("| model | size | params | backend | threads | test | t/s |\n");
    s.push_str("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    let quant = doc
        .model
        .quantization
        .as_deref()
        .map(|q| format!(" {q}"))
        .unwrap_or_default()
        + &doc
            .model
            .lora
            .as_deref()
            .map(|l| format!(" + LoRA {l}"))
            .unwrap_or_default();
    for r in &doc.results {
        s.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {:.2} ± {:.2} |\n",
            doc.model.name,
            quant,
            human_size(doc.model.size_bytes),
            human_params(doc.model.parameters),
            doc.backend.kind,
            doc.backend.threads.map_or("?".into(), |t| t.to_string()),
            if r.depth > 0 {
                format!("{} @ d{}", r.test, r.depth)
            } else {
                r.test.clone()
            },
            r.tok_s_mean,
            r.tok_s_sd,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_parameter_counts_read_like_llama_bench() {
        assert_eq!(human_size(397_807_936), "379.38 MiB");
        assert_eq!(human_params(Some(494_032_768)), "494.03 M");
        assert_eq!(human_params(Some(7_615_616_512)), "7.62 B");
    }
}
