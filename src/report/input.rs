//! Result documents a report reads: `candor bench` (local pp/tg), `candor bench --serve` (load
//! sweeps) and llama-bench's `-o json` output, each turned into one neutral shape. Fields are
//! read leniently (new optional fields may appear), but a file that is none of the three is an
//! error, not an empty report.
use serde::Deserialize;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Shape { path: String, problem: String },
}

/// Prefill or decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Prefill,
    Decode,
}

/// One test of a local run: mean ± sd tok/s over its repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRow {
    pub test: String,
    pub phase: Phase,
    /// Prompt tokens (prefill) or generated tokens per sequence (decode).
    pub n: usize,
    pub batch: usize,
    pub depth: usize,
    /// Largest prefill chunk: weights are read once per chunk.
    pub ubatch: usize,
    pub tok_s_mean: f64,
    pub tok_s_sd: f64,
    pub repetitions: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    /// The model file's stem: the same for every tool that ran the same file.
    pub key: String,
    pub quantization: Option<String>,
    pub parameters: Option<u64>,
    pub size_bytes: u64,
}

/// A local pp/tg run: one model on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRun {
    pub file: String,
    /// `candor 7bcaee0`, `llama.cpp 0c1e570`.
    pub software: String,
    pub date: Option<String>,
    pub model: ModelRef,
    /// `cpu`, `cuda`, `plugin`...
    pub backend: String,
    pub device_name: String,
    pub is_cpu: bool,
    pub threads: Option<usize>,
    pub isa: Vec<String>,
    /// The run's measured host bandwidth (candor bench's STREAM-like probe), GB/s.
    pub host_bandwidth_gbs: Option<f64>,
    pub tests: Vec<TestRow>,
}

/// One concurrency level of a load sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub output_tok_s: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub tpot_p50_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p95_ms: f64,
}

/// A load sweep against a server. Serve documents carry no hardware fingerprint (the server may
/// be remote), so the file name is their label.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeRun {
    pub file: String,
    pub label: String,
    pub url: String,
    pub date: Option<String>,
    pub max_tokens: usize,
    pub levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Local(LocalRun),
    Serve(ServeRun),
}

// ---- candor bench (docs/bench-json.md)

#[derive(Deserialize)]
struct CandorDoc {
    tool: String,
    git_commit: Option<String>,
    date: Option<String>,
    #[serde(default)]
    model: Option<CandorModel>,
    #[serde(default)]
    backend: Option<CandorBackend>,
    #[serde(default)]
    hardware: Option<CandorHardware>,
    #[serde(default)]
    config: Option<CandorConfig>,
    #[serde(default)]
    results: Vec<CandorResult>,
    // --serve documents
    url: Option<String>,
    max_tokens: Option<usize>,
    #[serde(default)]
    levels: Vec<CandorLevel>,
}

#[derive(Deserialize)]
struct CandorModel {
    name: String,
    path: Option<String>,
    size_bytes: u64,
    quantization: Option<String>,
    parameters: Option<u64>,
}

#[derive(Deserialize)]
struct CandorBackend {
    kind: String,
    device: String,
    threads: Option<usize>,
}

#[derive(Deserialize)]
struct CandorHardware {
    cpu_model: String,
    #[serde(default)]
    isa_flags: Vec<String>,
    host_bandwidth_gbs: Option<f64>,
}

#[derive(Deserialize)]
struct CandorConfig {
    ubatch: Option<usize>,
}

#[derive(Deserialize)]
struct CandorResult {
    test: String,
    kind: String,
    n_tokens: usize,
    batch: usize,
    depth: usize,
    #[serde(default)]
    tok_s: Vec<f64>,
    tok_s_mean: f64,
    tok_s_sd: f64,
}

#[derive(Deserialize)]
struct Pcts {
    mean: Option<f64>,
    p50: Option<f64>,
    p95: Option<f64>,
}

#[derive(Deserialize)]
struct CandorLevel {
    concurrency: usize,
    requests: usize,
    errors: usize,
    output_tok_s: f64,
    ttft_ms: Pcts,
    tpot_ms: Pcts,
    itl_ms: Pcts,
}

// ---- llama-bench -o json: an array of one object per test

#[derive(Deserialize)]
struct LlamaTest {
    build_commit: Option<String>,
    cpu_info: String,
    #[serde(default)]
    gpu_info: String,
    #[serde(default)]
    backends: String,
    model_filename: String,
    model_type: String,
    model_size: u64,
    model_n_params: u64,
    n_ubatch: Option<usize>,
    n_threads: Option<usize>,
    n_prompt: usize,
    n_gen: usize,
    n_depth: Option<usize>,
    test_time: Option<String>,
    avg_ts: f64,
    stddev_ts: f64,
    #[serde(default)]
    samples_ts: Vec<f64>,
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// llama.cpp's file-type description (`Q4_K - Medium`) as its short name (`Q4_K_M`).
fn llama_quant_name(model_type: &str) -> Option<String> {
    // `<arch> <size> <type...>`
    let ty: Vec<&str> = model_type.split_whitespace().skip(2).collect();
    if ty.is_empty() {
        return None;
    }
    let ty = ty.join(" ");
    let short = ty
        .replace(" - Medium", "_M")
        .replace(" - Small", "_S")
        .replace(" - Large", "_L");
    Some(short)
}

fn short_commit(c: Option<String>) -> String {
    c.map(|c| c.chars().take(7).collect())
        .unwrap_or_else(|| "unknown".into())
}

fn from_llama(file: &str, tests: Vec<LlamaTest>) -> Result<LocalRun, String> {
    let first = tests.first().ok_or("an empty llama-bench array")?;
    let gpu = !first.gpu_info.trim().is_empty();
    let mut run = LocalRun {
        file: file.to_string(),
        software: format!("llama.cpp {}", short_commit(first.build_commit.clone())),
        date: first.test_time.clone(),
        model: ModelRef {
            key: stem(&first.model_filename),
            quantization: llama_quant_name(&first.model_type),
            parameters: Some(first.model_n_params),
            size_bytes: first.model_size,
        },
        backend: first.backends.to_lowercase(),
        device_name: if gpu {
            first.gpu_info.clone()
        } else {
            first.cpu_info.clone()
        },
        is_cpu: !gpu,
        threads: first.n_threads,
        isa: Vec::new(),
        host_bandwidth_gbs: None,
        tests: Vec::new(),
    };
    for t in tests {
        let (phase, n, test) = match (t.n_prompt, t.n_gen) {
            (p, 0) if p > 0 => (Phase::Prefill, p, format!("pp{p}")),
            (0, g) if g > 0 => (Phase::Decode, g, format!("tg{g}")),
            (p, g) => {
                return Err(format!(
                    "llama-bench test pp{p}+tg{g} is not a pp or tg test"
                ))
            }
        };
        run.tests.push(TestRow {
            test,
            phase,
            n,
            batch: 1,
            depth: t.n_depth.unwrap_or(0),
            ubatch: t.n_ubatch.unwrap_or(512),
            tok_s_mean: t.avg_ts,
            tok_s_sd: t.stddev_ts,
            repetitions: t.samples_ts.len(),
        });
    }
    Ok(run)
}

fn from_candor_local(file: &str, d: CandorDoc) -> Result<LocalRun, String> {
    let model = d.model.ok_or("no `model`")?;
    let backend = d.backend.ok_or("no `backend`")?;
    let hw = d.hardware.ok_or("no `hardware`")?;
    let ubatch = d.config.and_then(|c| c.ubatch).unwrap_or(512);
    let is_cpu = backend.kind == "cpu";
    let mut tests = Vec::new();
    for r in d.results {
        let phase = match r.kind.as_str() {
            "prefill" => Phase::Prefill,
            "decode" => Phase::Decode,
            other => return Err(format!("result `{}` has unknown kind `{other}`", r.test)),
        };
        tests.push(TestRow {
            test: r.test,
            phase,
            n: r.n_tokens / r.batch.max(1),
            batch: r.batch.max(1),
            depth: r.depth,
            ubatch,
            tok_s_mean: r.tok_s_mean,
            tok_s_sd: r.tok_s_sd,
            repetitions: r.tok_s.len(),
        });
    }
    Ok(LocalRun {
        file: file.to_string(),
        software: format!("candor {}", short_commit(d.git_commit)),
        date: d.date,
        model: ModelRef {
            key: model.path.as_deref().map(stem).unwrap_or(model.name),
            quantization: model.quantization,
            parameters: model.parameters,
            size_bytes: model.size_bytes,
        },
        device_name: if is_cpu { hw.cpu_model } else { backend.device },
        backend: backend.kind,
        is_cpu,
        threads: backend.threads,
        isa: hw.isa_flags,
        host_bandwidth_gbs: hw.host_bandwidth_gbs,
        tests,
    })
}

fn from_candor_serve(file: &str, d: CandorDoc) -> Result<ServeRun, String> {
    let nan = f64::NAN;
    Ok(ServeRun {
        file: file.to_string(),
        label: stem(file),
        url: d.url.ok_or("no `url`")?,
        date: d.date,
        max_tokens: d.max_tokens.unwrap_or(0),
        levels: d
            .levels
            .into_iter()
            .map(|l| Level {
                concurrency: l.concurrency,
                requests: l.requests,
                errors: l.errors,
                output_tok_s: l.output_tok_s,
                ttft_p50_ms: l.ttft_ms.p50.unwrap_or(nan),
                ttft_p95_ms: l.ttft_ms.p95.unwrap_or(nan),
                tpot_p50_ms: l.tpot_ms.p50.or(l.tpot_ms.mean).unwrap_or(nan),
                itl_p50_ms: l.itl_ms.p50.unwrap_or(nan),
                itl_p95_ms: l.itl_ms.p95.unwrap_or(nan),
            })
            .collect(),
    })
}

/// Read one result document, whichever of the three kinds it is.
pub fn parse(file: &str, text: &str) -> Result<Input, InputError> {
    let shape = |problem: String| InputError::Shape {
        path: file.to_string(),
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| InputError::Json {
            path: file.to_string(),
            source,
        })?;
    if value.is_array() {
        let tests: Vec<LlamaTest> = serde_json::from_value(value)
            .map_err(|e| shape(format!("not a llama-bench JSON array: {e}")))?;
        return from_llama(file, tests).map(Input::Local).map_err(shape);
    }
    let doc: CandorDoc = serde_json::from_value(value)
        .map_err(|e| shape(format!("not a candor bench result: {e}")))?;
    match doc.tool.as_str() {
        "candor bench" => from_candor_local(file, doc)
            .map(Input::Local)
            .map_err(shape),
        "candor bench --serve" => from_candor_serve(file, doc)
            .map(Input::Serve)
            .map_err(shape),
        other => Err(shape(format!("unknown tool `{other}`"))),
    }
}

pub fn load(path: &Path) -> Result<Input, InputError> {
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    parse(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_bench_arrays_become_one_run() {
        let text = r#"[
 {"build_commit":"0c1e570","cpu_info":"AMD EPYC","gpu_info":"","backends":"CPU",
  "model_filename":"/m/qwen-q4_k_m.gguf","model_type":"qwen2 1B Q4_K - Medium",
  "model_size":485452288,"model_n_params":630167424,"n_ubatch":512,"n_threads":2,
  "n_prompt":128,"n_gen":0,"n_depth":0,"avg_ts":237.1,"stddev_ts":6.5,"samples_ts":[1,2,3]},
 {"build_commit":"0c1e570","cpu_info":"AMD EPYC","gpu_info":"","backends":"CPU",
  "model_filename":"/m/qwen-q4_k_m.gguf","model_type":"qwen2 1B Q4_K - Medium",
  "model_size":485452288,"model_n_params":630167424,"n_prompt":0,"n_gen":64,
  "avg_ts":49.2,"stddev_ts":0.9}]"#;
        let Input::Local(run) = parse("l.json", text).unwrap() else {
            panic!("not local")
        };
        assert_eq!(run.model.key, "qwen-q4_k_m");
        assert_eq!(run.model.quantization.as_deref(), Some("Q4_K_M"));
        assert!(run.is_cpu);
        assert_eq!(run.software, "llama.cpp 0c1e570");
        assert_eq!(run.tests[0].test, "pp128");
        assert_eq!(run.tests[1].phase, Phase::Decode);
        assert_eq!(run.tests[0].repetitions, 3);
    }

    #[test]
    fn batched_decode_keeps_tokens_per_sequence() {
        let text = r#"{"tool":"candor bench","git_commit":"7bcaee00061e",
  "model":{"name":"q","path":"/x/q.gguf","size_bytes":10,"quantization":null,"parameters":5},
  "backend":{"kind":"cpu","device":"AMD EPYC","threads":2},
  "hardware":{"cpu_model":"AMD EPYC","isa_flags":["avx2"],"host_bandwidth_gbs":30.0},
  "config":{"ubatch":256},
  "results":[{"test":"tg128@b16","kind":"decode","n_tokens":2048,"batch":16,"depth":0,
              "tok_s":[1.0,2.0],"tok_s_mean":1.5,"tok_s_sd":0.7}]}"#;
        let Input::Local(run) = parse("c.json", text).unwrap() else {
            panic!("not local")
        };
        assert_eq!(run.software, "candor 7bcaee0");
        assert_eq!((run.tests[0].n, run.tests[0].batch), (128, 16));
        assert_eq!(run.tests[0].ubatch, 256);
        assert_eq!(run.host_bandwidth_gbs, Some(30.0));
    }

    #[test]
    fn foreign_documents_are_errors() {
        assert!(parse("x", "not json").is_err());
        assert!(parse("x", r#"{"tool":"other"}"#).is_err());
        assert!(parse("x", "[]").is_err());
        assert!(parse("x", r#"{"tool":"candor bench"}"#).is_err());
        let e = parse("x", r#"[{"n_prompt":1}]"#).unwrap_err().to_string();
        assert!(e.contains("llama-bench"), "{e}");
    }
}
