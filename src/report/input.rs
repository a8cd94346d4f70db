//! Result documents a report reads: `candor bench` (local pp/tg), `candor bench --serve` (load
//! sweeps), `candor perplexity --format json` (a perplexity alone, of a model file or of a
//! server), llama-bench's `-o json` output and `benches/hf_transformers_bench.py` (HF
//! transformers on the same shapes), each turned into one neutral shape. Fields are read
//! leniently (new optional fields may appear), but a file that is none of these is an error,
//! not an empty report.
use crate::bench::experts::ExpertShape;
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
    /// A mixture of experts' shape, where the result recorded it (candor's `model.experts`).
    pub experts: Option<ExpertShape>,
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
    /// `candor bench --perplexity FILE`: the model's perplexity on a text on this device.
    pub perplexity: Option<PerplexityRun>,
}

/// A perplexity a run recorded (docs/bench-json.md): comparable across runs of the same model
/// on the same text (its sha256) with the same chunking.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PerplexityRun {
    pub file: String,
    pub file_sha256: String,
    pub ctx: usize,
    pub chunks: usize,
    pub tokens_scored: usize,
    pub ppl: f64,
    pub ppl_stderr: f64,
    /// The first scored positions' most likely tokens and the text tokens' logprobs (absent
    /// from documents before they were recorded).
    #[serde(default)]
    pub top1_ids: Vec<u32>,
    #[serde(default)]
    pub logprobs: Vec<f32>,
}

/// Whether a run's flags say candor's AMX prefill kernels ran.
pub fn lists_amx(isa: &[String]) -> bool {
    let amx = crate::backend::cpu::AMX_FEATURE;
    isa.iter().any(|f| f.eq_ignore_ascii_case(amx))
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
    /// Tokens the server drafted and kept (speculative decoding), when it said.
    pub drafts: Option<crate::loadgen::DraftCounts>,
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
    /// Each request sent a prompt of its own (`--unique-prompts`), so no prefix cache served
    /// it; false: one prompt for every request.
    pub unique_prompts: bool,
    pub levels: Vec<Level>,
}

/// `candor perplexity --format json`: a perplexity measured alone, of a model file on the
/// machine that ran it or of a server through its completions endpoint (`--serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct PerplexityDoc {
    pub file: String,
    /// `candor 7bcaee0`, or `server` for one measured through a server.
    pub software: String,
    /// The model's name, as runs of the same model are grouped (`--model-key`).
    pub model_key: String,
    pub quantization: Option<String>,
    /// Where it was computed: `device (N threads)`, or the server (`--server-label`, else its
    /// URL).
    pub system: String,
    pub run: PerplexityRun,
}

// One value per result file, a handful per report: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Local(LocalRun),
    Serve(ServeRun),
    Perplexity(PerplexityDoc),
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
    /// `--unique-prompts` (absent before it existed: one prompt for every request).
    #[serde(default)]
    unique_prompts: bool,
    #[serde(default)]
    levels: Vec<CandorLevel>,
    #[serde(default)]
    load_generator_hardware: Option<CandorHardware>,
    #[serde(default)]
    server: Option<CandorServer>,
    #[serde(default)]
    op_profile: Vec<TestProfile>,
    #[serde(default)]
    perplexity: Option<PerplexityRun>,
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
    /// `gguf`, `safetensors`, `dummy` (whose `path` describes the shapes: no file).
    format: Option<String>,
    size_bytes: u64,
    quantization: Option<String>,
    parameters: Option<u64>,
    /// The LoRA adapter the run's sequences used (`candor bench --lora`).
    #[serde(default)]
    lora: Option<String>,
    #[serde(default)]
    experts: Option<ExpertShape>,
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
    #[serde(default)]
    drafts: Option<crate::loadgen::DraftCounts>,
}

// ---- candor perplexity --format json

#[derive(Deserialize)]
struct PerplexityCli {
    git_commit: Option<String>,
    model_key: Option<String>,
    quantization: Option<String>,
    device: Option<String>,
    device_kind: Option<String>,
    threads: Option<usize>,
    server: Option<String>,
    server_label: Option<String>,
    #[serde(flatten)]
    run: PerplexityRun,
}

fn from_perplexity(file: &str, doc: PerplexityCli) -> PerplexityDoc {
    let (software, system) = match (&doc.server, &doc.device) {
        (Some(url), _) => (
            "server".to_string(),
            doc.server_label.clone().unwrap_or_else(|| url.clone()),
        ),
        (None, device) => {
            let device = device.clone().unwrap_or_else(|| "unknown device".into());
            let system = match (doc.device_kind.as_deref(), doc.threads) {
                (Some("cpu"), Some(t)) => format!("{device} ({t} threads)"),
                (kind, _) => format!("{device} ({})", kind.unwrap_or("?")),
            };
            (
                format!("candor {}", short_commit(doc.git_commit.clone())),
                system,
            )
        }
    };
    PerplexityDoc {
        file: file.to_string(),
        software,
        model_key: doc.model_key.unwrap_or_else(|| "unknown model".into()),
        quantization: doc.quantization,
        system,
        run: doc.run,
    }
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

/// A file's name without its extension (the path itself where it has none).
pub(crate) fn stem(path: &str) -> String {
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

/// A commit as reports show it: 7 hex digits, and a build from modified sources still says so.
fn short_commit(c: Option<String>) -> String {
    let Some(c) = c else {
        return "unknown".into();
    };
    let (hash, dirty) = match c.strip_suffix("-dirty") {
        Some(hash) => (hash, "-dirty"),
        None => (c.as_str(), ""),
    };
    format!("{}{dirty}", hash.chars().take(7).collect::<String>())
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
            experts: None,
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
        perplexity: None,
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

/// The `results[]` of a candor bench or hf_transformers_bench.py document as test rows, each
/// prefill chunked as `ubatch` says.
fn test_rows(
    results: Vec<CandorResult>,
    ubatch: impl Fn(&CandorResult) -> usize,
) -> Result<Vec<TestRow>, String> {
    results
        .into_iter()
        .map(|r| {
            let phase = match r.kind.as_str() {
                "prefill" => Phase::Prefill,
                "decode" => Phase::Decode,
                other => return Err(format!("result `{}` has unknown kind `{other}`", r.test)),
            };
            let batch = r.batch.max(1);
            Ok(TestRow {
                phase,
                n: r.n_tokens / batch,
                batch,
                depth: r.depth,
                ubatch: ubatch(&r),
                tok_s_mean: r.tok_s_mean,
                tok_s_sd: r.tok_s_sd,
                repetitions: r.tok_s.len(),
                test: r.test,
            })
        })
        .collect()
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
    let tests = test_rows(d.results, |_| ubatch)?;
    // Runs of one build on one CPU with and without its AMX kernels (CANDOR_CPU_AMX=0) stay
    // apart in the tables.
    let amx = is_cpu && lists_amx(&hw.isa_flags);
    Ok(LocalRun {
        file: file.to_string(),
        software: format!(
            "candor {}{}",
            short_commit(d.git_commit),
            if amx { " (AMX)" } else { "" }
        ),
        date: d.date,
        model: ModelRef {
            // A run with an adapter is another model's: never grouped with the base's.
            key: match (model.format.as_deref(), model.path.as_deref()) {
                (Some("dummy"), _) | (_, None) => model.name,
                (_, Some(path)) => stem(path),
            } + &crate::bench::lora_label::key_suffix(model.lora.as_deref()),
            quantization: model.quantization,
            parameters: model.parameters,
            size_bytes: model.size_bytes,
            experts: model.experts,
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
        perplexity: d.perplexity,
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
        unique_prompts: d.unique_prompts,
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
                drafts: l.drafts,
            })
            .collect(),
    })
}

// ---- benches/hf_transformers_bench.py: transformers on dummy weights of a model's shapes

#[derive(Deserialize)]
struct HfDoc {
    transformers_version: String,
    date: Option<String>,
    model: HfModel,
    hardware: HfHardware,
    #[serde(default)]
    results: Vec<CandorResult>,
}

#[derive(Deserialize)]
struct HfModel {
    name: String,
    quantization: Option<String>,
    parameters: Option<u64>,
}

#[derive(Deserialize)]
struct HfHardware {
    gpu_name: Option<String>,
    gpu_memory_bytes: Option<u64>,
    compute_capability: Option<String>,
    driver_version: Option<String>,
}

/// Bytes per weight of the dtypes the script runs (its results are bf16).
fn dtype_bytes(quantization: Option<&str>) -> u64 {
    match quantization.map(str::to_ascii_uppercase).as_deref() {
        Some("F32") => 4,
        _ => 2,
    }
}

fn from_hf(file: &str, d: HfDoc) -> Result<LocalRun, String> {
    let parameters = d.model.parameters.ok_or("no `model.parameters`")?;
    let gpu = d.hardware.gpu_name.clone().map(|name| CandorGpu {
        name,
        memory_bytes: d.hardware.gpu_memory_bytes,
        // The script records the driver's version, not the CUDA version it supports.
        driver_version: None,
        compute_capability: d.hardware.compute_capability.clone(),
    });
    // A prompt is one forward pass: the weights are read once for all of it.
    let tests = test_rows(d.results, |r| r.n_tokens.max(1))?;
    Ok(LocalRun {
        file: file.to_string(),
        software: format!("transformers {}", d.transformers_version),
        date: d.date,
        model: ModelRef {
            // `dummy-llama-8b`: the name candor bench gives the same shapes.
            key: d.model.name,
            size_bytes: parameters * dtype_bytes(d.model.quantization.as_deref()),
            quantization: d.model.quantization,
            parameters: Some(parameters),
            experts: None,
        },
        backend: if gpu.is_some() { "cuda" } else { "cpu" }.into(),
        device_name: gpu
            .as_ref()
            .map_or_else(|| "cpu".to_string(), |g| g.name.clone()),
        is_cpu: gpu.is_none(),
        threads: None,
        isa: Vec::new(),
        host_bandwidth_gbs: None,
        device_bandwidth_gbs: None,
        accelerator: gpu.as_ref().map(|g| match &d.hardware.driver_version {
            Some(v) => format!("{}, driver {v}", g.describe()),
            None => g.describe(),
        }),
        kv: None,
        tests,
        op_profile: Vec::new(),
        perplexity: None,
    })
}

/// Read one result document, whichever of the kinds it is.
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
    if value.get("tool").and_then(|t| t.as_str()) == Some("candor perplexity") {
        let doc: PerplexityCli = serde_json::from_value(value)
            .map_err(|e| shape(format!("not a candor perplexity result: {e}")))?;
        return Ok(Input::Perplexity(from_perplexity(file, doc)));
    }
    if value.get("tool").and_then(|t| t.as_str()) == Some("hf transformers") {
        let doc: HfDoc = serde_json::from_value(value)
            .map_err(|e| shape(format!("not an hf_transformers_bench.py result: {e}")))?;
        return from_hf(file, doc).map(Input::Local).map_err(shape);
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
    fn perplexity_documents_name_their_model_and_where_they_were_computed() {
        let local = r#"{"tool":"candor perplexity","git_commit":"96a32d9abc","date":"2026-12-01",
  "file":"wiki.test.raw","file_sha256":"ab12","text_tokens":9000,"ctx":512,"chunks":4,
  "tokens_scored":1020,"ppl":17.5,"ppl_stderr":0.4,"mean_nll":2.86,"top1_rate":0.4,"seconds":9.0,
  "tok_s":226.0,"model":"/m/q4.gguf","model_key":"q4","quantization":"Q4_K_M","dequantize":false,
  "device":"Intel Xeon","device_kind":"cpu","threads":2,"top1_ids":[5,6],"logprobs":[-0.5,-1.0]}"#;
        let Input::Perplexity(p) = parse("p.json", local).unwrap() else {
            panic!("not a perplexity")
        };
        assert_eq!(p.software, "candor 96a32d9");
        assert_eq!(p.system, "Intel Xeon (2 threads)");
        assert_eq!(p.model_key, "q4");
        assert_eq!(p.quantization.as_deref(), Some("Q4_K_M"));
        assert_eq!((p.run.ppl, p.run.chunks, p.run.ctx), (17.5, 4, 512));
        assert_eq!(p.run.top1_ids, [5, 6]);
        let served = r#"{"tool":"candor perplexity","file":"wiki.test.raw","file_sha256":"ab12",
  "ctx":512,"chunks":4,"tokens_scored":1020,"ppl":17.6,"ppl_stderr":0.4,
  "server":"http://h100:8000","served_model":null,"server_label":"vLLM 0.11 on H100",
  "server_models":["q4"],"model_key":"q4"}"#;
        let Input::Perplexity(p) = parse("s.json", served).unwrap() else {
            panic!("not a perplexity")
        };
        assert_eq!(
            (p.software.as_str(), p.system.as_str()),
            ("server", "vLLM 0.11 on H100")
        );
        assert!(p.run.top1_ids.is_empty());
        let broken = r#"{"tool":"candor perplexity","file":"x"}"#;
        assert!(parse("b.json", broken).is_err());
    }

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
        assert_eq!(run.model.key, "q");
        // A run with a LoRA adapter is another model's, never grouped with the base's.
        let tuned = text.replace(
            r#""parameters":5}"#,
            r#""parameters":5,"lora":"/a/sql-lora"}"#,
        );
        let Input::Local(tuned) = parse("c.json", &tuned).unwrap() else {
            panic!("not local")
        };
        assert_eq!(tuned.model.key, "q + LoRA sql-lora");
        assert_eq!((run.tests[0].n, run.tests[0].batch), (128, 16));
        assert_eq!(run.tests[0].ubatch, 256);
        assert_eq!(run.host_bandwidth_gbs, Some(30.0));
        // The same run with the AMX kernels on says so.
        let amx = text.replace(
            r#""isa_flags":["avx2"]"#,
            r#""isa_flags":["avx2","amx-bf16"]"#,
        );
        let Input::Local(run) = parse("c.json", &amx).unwrap() else {
            panic!("not local")
        };
        assert_eq!(run.software, "candor 7bcaee0 (AMX)");
        assert_eq!(run.perplexity, None);
        // `--perplexity` runs carry their measurement.
        let scored = text.replace(
            r#""config":{"ubatch":256},"#,
            r#""config":{"ubatch":256},"perplexity":{"file":"t.txt","file_sha256":"ab12",
              "ctx":128,"chunks":2,"text_tokens":300,"tokens_scored":126,"ppl":41.5,
              "ppl_stderr":3.25,"mean_nll":3.7,"top1_rate":0.3,"seconds":1.0},"#,
        );
        let Input::Local(run) = parse("c.json", &scored).unwrap() else {
            panic!("not local")
        };
        let p = run.perplexity.expect("a perplexity");
        assert_eq!((p.file_sha256.as_str(), p.ctx, p.chunks), ("ab12", 128, 2));
        assert_eq!((p.ppl, p.ppl_stderr, p.tokens_scored), (41.5, 3.25, 126));
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
        assert_eq!((kv.element_bytes, kv.layer_windows[1]), (2.0, Some(512)));
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
    "itl_ms":{"mean":3,"p50":3,"p95":5},"drafts":{"drafted":30,"kept":20}}]}"#;
        let Input::Serve(s) = parse("serve-x.json", text).unwrap() else {
            panic!("not serve")
        };
        assert_eq!(
            s.levels[0].drafts,
            Some(crate::loadgen::DraftCounts {
                drafted: 30,
                kept: 20
            })
        );
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
    fn hf_transformers_documents_become_a_gpu_run_of_the_same_model_key() {
        let doc = r#"{"schema_version": 1, "tool": "hf transformers",
            "transformers_version": "5.17.0", "date": "2026-11-30T12:00:00Z",
            "model": {"name": "dummy-llama-8b", "format": "dummy", "arch": "llama",
                      "quantization": "BF16", "parameters": 8030261248},
            "hardware": {"gpu_name": "NVIDIA H200", "gpu_memory_bytes": 150754820096,
                         "compute_capability": "9.0", "driver_version": "580.159.04"},
            "config": {"n_prompt": 512, "n_gen": 128},
            "results": [
              {"test": "pp512", "kind": "prefill", "n_tokens": 512, "batch": 1, "depth": 0,
               "seconds": [0.05], "tok_s": [10240.0, 10000.0], "tok_s_mean": 10120.0,
               "tok_s_sd": 169.7},
              {"test": "tg128@b8", "kind": "decode", "n_tokens": 1024, "batch": 8, "depth": 0,
               "tok_s": [300.0], "tok_s_mean": 300.0, "tok_s_sd": 0.0}]}"#;
        let Input::Local(run) = parse("hf.json", doc).unwrap() else {
            panic!("a local run")
        };
        assert_eq!(run.software, "transformers 5.17.0");
        assert_eq!(run.model.key, "dummy-llama-8b");
        assert_eq!(run.model.size_bytes, 2 * 8_030_261_248);
        assert_eq!((run.backend.as_str(), run.is_cpu), ("cuda", false));
        assert_eq!(run.device_name, "NVIDIA H200");
        let acc = run.accelerator.unwrap();
        assert!(
            acc.contains("compute capability 9.0") && acc.contains("driver 580"),
            "{acc}"
        );
        assert_eq!(run.tests.len(), 2);
        let (pp, tg) = (&run.tests[0], &run.tests[1]);
        assert_eq!(
            (pp.phase, pp.n, pp.ubatch, pp.repetitions),
            (Phase::Prefill, 512, 512, 2)
        );
        assert_eq!((tg.phase, tg.n, tg.batch), (Phase::Decode, 128, 8));
        // A CPU try of the script (no GPU facts) is a CPU run; a missing model size is an error.
        let cpu = doc.replace(
            r#""hardware": {"gpu_name": "NVIDIA H200", "gpu_memory_bytes": 150754820096,
                         "compute_capability": "9.0", "driver_version": "580.159.04"}"#,
            r#""hardware": {"device": "cpu"}"#,
        );
        let Input::Local(run) = parse("hf.json", &cpu).unwrap() else {
            panic!("a local run")
        };
        assert!(run.is_cpu && run.accelerator.is_none());
        let no_params = doc.replace(r#", "parameters": 8030261248"#, "");
        assert!(parse("hf.json", &no_params).is_err());
        // candor bench on the same shapes: its model key is the dummy's name, not a stem of
        // the description in `path`.
        let candor = r#"{"tool": "candor bench", "git_commit": "abc", "date": null,
            "model": {"name": "dummy-llama-8b", "format": "dummy", "size_bytes": 16060522496,
                      "path": "dummy weights with the shapes of meta-llama/Llama-3.1-8B",
                      "quantization": "BF16", "parameters": 8030261248},
            "backend": {"kind": "cuda", "device": "cuda:0"},
            "hardware": {"cpu_model": "host", "gpu": {"name": "NVIDIA H200"}},
            "results": []}"#;
        let Input::Local(run) = parse("candor.json", candor).unwrap() else {
            panic!("a local run")
        };
        assert_eq!(run.model.key, "dummy-llama-8b");
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

    #[test]
    fn short_commits_keep_the_dirty_mark() {
        assert_eq!(short_commit(Some("7d69b6820c8c".into())), "7d69b68");
        assert_eq!(
            short_commit(Some("7d69b6820c8c-dirty".into())),
            "7d69b68-dirty"
        );
        assert_eq!(short_commit(None), "unknown");
    }
}
