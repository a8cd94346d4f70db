//! Result documents a report reads: `candor bench` (local pp/tg), `candor bench --serve` (load
//! sweeps) and llama-bench's `-o json` output, each turned into one neutral shape. Fields are
//! read leniently (new optional fields may appear), but a file that is none of the three is an
//! error, not an empty report.
use crate::bench::kv_traffic::KvShape;
use crate::bench::TestProfile;
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
    /// The accelerator's measured device-to-device copy bandwidth (CUDA runs), GB/s.
    pub device_bandwidth_gbs: Option<f64>,
    /// The accelerator as the result describes it (name, memory, driver, compute capability).
    pub accelerator: Option<String>,
    /// The KV cache decode read; None when the result does not say (candor bench schema 1,
    /// llama-bench): decode MBU then counts the weights only.
    pub kv: Option<KvShape>,
    pub tests: Vec<TestRow>,
    /// `candor bench --profile-ops`: per test, where one synchronised pass spent its time.
    pub op_profile: Vec<TestProfile>,
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

/// A load sweep against a server. The server may be remote, so nothing describes its hardware:
/// the file name is the sweep's label, and the document may add the user's description of the
/// server, the model ids it reported, and the load generator's own machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeRun {
    pub file: String,
    pub label: String,
    pub url: String,
    pub date: Option<String>,
    pub max_tokens: usize,
    /// `--server-label` as given.
    pub server_label: Option<String>,
    /// The ids of the server's `/v1/models`.
    pub server_models: Option<Vec<String>>,
    /// The machine that sent the requests (CPU model, cores).
    pub load_generator: Option<String>,
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
    kv_cache: Option<KvShape>,
    #[serde(default)]
    config: Option<CandorConfig>,
    #[serde(default)]
    results: Vec<CandorResult>,
    // --serve documents
    url: Option<String>,
    max_tokens: Option<usize>,
    #[serde(default)]
    levels: Vec<CandorLevel>,
    #[serde(default)]
    load_generator_hardware: Option<CandorHardware>,
    #[serde(default)]
    server: Option<CandorServer>,
    #[serde(default)]
    op_profile: Vec<TestProfile>,
}

#[derive(Deserialize)]
struct CandorServer {
    label: Option<String>,
    models: Option<Vec<String>>,
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
    logical_cores: Option<usize>,
    host_bandwidth_gbs: Option<f64>,
    #[serde(default)]
    gpu: Option<CandorGpu>,
    device_bandwidth_gbs: Option<f64>,
}

#[derive(Deserialize)]
struct CandorGpu {
    name: String,
    memory_bytes: Option<u64>,
    driver_version: Option<String>,
    compute_capability: Option<String>,
}

impl CandorGpu {
    /// `NVIDIA H200, 141.0 GB, compute capability 9.0, driver CUDA 13.0`.
    fn describe(&self) -> String {
        let mut parts = vec![self.name.clone()];
        if let Some(m) = self.memory_bytes {
            parts.push(format!("{:.1} GB", m as f64 / 1e9));
        }
        if let Some(cc) = &self.compute_capability {
            parts.push(format!("compute capability {cc}"));
        }
        if let Some(d) = &self.driver_version {
            parts.push(format!("driver CUDA {d}"));
        }
        parts.join(", ")
    }
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
        device_bandwidth_gbs: None,
        accelerator: None,
        kv: None,
        tests: Vec::new(),
        op_profile: Vec::new(),
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
    if let Some(kv) = &d.kv_cache {
        kv.check()?;
    }
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
        device_name: match (is_cpu, &hw.gpu) {
            (true, _) => hw.cpu_model,
            (false, Some(g)) => g.name.clone(),
            (false, None) => backend.device,
        },
        backend: backend.kind,
        is_cpu,
        threads: backend.threads,
        isa: hw.isa_flags,
        host_bandwidth_gbs: hw.host_bandwidth_gbs,
        device_bandwidth_gbs: hw.device_bandwidth_gbs,
        accelerator: hw.gpu.as_ref().map(CandorGpu::describe),
        kv: d.kv_cache,
        tests,
        op_profile: d.op_profile,
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
        server_label: d.server.as_ref().and_then(|s| s.label.clone()),
        server_models: d.server.and_then(|s| s.models),
        load_generator: d.load_generator_hardware.map(|h| match h.logical_cores {
            Some(n) => format!("{} ({n} logical cores)", h.cpu_model),
            None => h.cpu_model,
        }),
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
    fn schema_2_documents_bring_the_gpu_and_the_kv_cache_and_schema_1_falls_back() {
        let text = r#"{"schema_version":2,"tool":"candor bench","git_commit":"abc",
  "model":{"name":"q","path":"/x/q.gguf","size_bytes":10,"quantization":"Q4_K_M","parameters":5},
  "backend":{"kind":"cuda","device":"NVIDIA H200","threads":null},
  "hardware":{"cpu_model":"Intel Xeon","isa_flags":["avx2"],"host_bandwidth_gbs":30.0,
    "gpu":{"kind":"cuda","index":0,"name":"NVIDIA H200","vendor":"NVIDIA",
           "memory_bytes":150000000000,"driver_version":"13.0","compute_capability":"9.0",
           "multiprocessors":132,"details":["sm_90"]},
    "device_bandwidth_gbs":4100.5},
  "kv_cache":{"layers":2,"kv_heads":2,"head_dim":64,"element_bytes":2,"layer_windows":[null,512]},
  "results":[{"test":"tg128","kind":"decode","n_tokens":128,"batch":1,"depth":0,
              "tok_s_mean":300.0,"tok_s_sd":1.0}]}"#;
        let Input::Local(run) = parse("g.json", text).unwrap() else {
            panic!("not local")
        };
        // The device is the GPU, its roof probe the device copy; the host stays the host's.
        assert_eq!(run.device_name, "NVIDIA H200");
        assert!(!run.is_cpu);
        assert_eq!(run.device_bandwidth_gbs, Some(4100.5));
        assert_eq!(run.host_bandwidth_gbs, Some(30.0));
        assert_eq!(
            run.accelerator.as_deref(),
            Some("NVIDIA H200, 150.0 GB, compute capability 9.0, driver CUDA 13.0")
        );
        let kv = run.kv.unwrap();
        assert_eq!((kv.element_bytes, kv.layer_windows[1]), (2, Some(512)));
        // Schema 1 (no kv_cache, no gpu) still loads, with nothing made up.
        let old = text
            .replace(r#""kv_cache":{"layers":2,"kv_heads":2,"head_dim":64,"element_bytes":2,"layer_windows":[null,512]},"#, "")
            .replace(r#""schema_version":2"#, r#""schema_version":1"#);
        let Input::Local(old) = parse("o.json", &old).unwrap() else {
            panic!("not local")
        };
        assert!(old.kv.is_none());
        // A cache shape that contradicts itself is an error, not a silent guess.
        let bad = text.replace("[null,512]", "[null,512,512]");
        let e = parse("b.json", &bad).unwrap_err().to_string();
        assert!(e.contains("3 entries for 2 layers"), "{e}");
    }

    #[test]
    fn serve_documents_describe_the_server_and_the_client_but_no_server_hardware() {
        let text = r#"{"schema_version":2,"tool":"candor bench --serve","url":"http://h:8000",
  "max_tokens":64,"load_generator_hardware":{"cpu_model":"AMD EPYC","logical_cores":2},
  "server":{"label":"vLLM on 1x H100","models":["qwen"],"models_error":null},
  "levels":[{"concurrency":1,"requests":2,"errors":0,"output_tok_s":10.0,
    "ttft_ms":{"mean":1,"p50":1,"p95":2},"tpot_ms":{"mean":3,"p50":3,"p95":4},
    "itl_ms":{"mean":3,"p50":3,"p95":5}}]}"#;
        let Input::Serve(s) = parse("serve-x.json", text).unwrap() else {
            panic!("not serve")
        };
        assert_eq!(s.label, "serve-x");
        assert_eq!(s.server_label.as_deref(), Some("vLLM on 1x H100"));
        assert_eq!(s.server_models, Some(vec!["qwen".to_string()]));
        assert_eq!(
            s.load_generator.as_deref(),
            Some("AMD EPYC (2 logical cores)")
        );
        let old = r#"{"tool":"candor bench --serve","url":"http://h","levels":[]}"#;
        let Input::Serve(o) = parse("o.json", old).unwrap() else {
            panic!("not serve")
        };
        assert!(
            o.server_label.is_none() && o.server_models.is_none() && o.load_generator.is_none()
        );
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
