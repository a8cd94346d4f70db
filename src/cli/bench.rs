//! `candor bench`: llama-bench-style prefill/decode speed of a model on a backend, or, with
//! `--serve URL`, a load sweep against any OpenAI-compatible server.
use crate::backend::cpu::configure_threads;
use crate::backend::BackendChoice;
use crate::bench::hardware::{self, Hardware};
use crate::bench::kv_traffic::KvShape;
use crate::bench::report::{self, BackendInfo, BenchDocument, ModelInfo, PerplexityResult};
use crate::bench::{self, BenchConfig};
use crate::cli::dummy::DummyArgs;
use crate::cli::lora_args::LoraArgs;
use crate::cli::perplexity::{check_ctx, measure, read_text};
use crate::engine::load::{load_model, load_opened, KvCacheDtype, LoadOptions};
use crate::engine::op_profile::OpProfiler;
use crate::error::CliError;
use crate::loadgen::{self, LevelReport, LoadConfig, RequestSpec};
use crate::pull;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model: a .gguf file (a split model's first part), a safetensors directory, a catalogue
    /// name or hf:ORG/REPO[:FILE|:TAG] (those two pulled if missing).
    #[arg(long, short = 'm', env = "CANDOR_MODEL", default_value = pull::DEFAULT_MODEL)]
    pub model: String,
    /// Prefill tests: prompt lengths (comma-separated; 0 skips prefill).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Decode tests: tokens to generate (comma-separated; 0 skips decode). With --serve, the
    /// `max_tokens` of each request.
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Timed repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,
    /// Tokens already in the KV cache before each timed pass.
    #[arg(short = 'd', long = "depth", default_value_t = 0)]
    pub depth: usize,
    /// Decode batch sizes: sequences decoding together (aggregate tok/s).
    #[arg(
        short = 'b',
        long = "batch",
        value_delimiter = ',',
        default_value = "1"
    )]
    pub batch: Vec<usize>,
    /// Largest prefill chunk per forward pass.
    #[arg(long, default_value_t = 512)]
    pub ubatch: usize,
    #[arg(long, short = 't', env = "CANDOR_THREADS")]
    pub threads: Option<usize>,
    /// cpu, cuda[:N] or plugin:PATH.
    #[arg(long, env = "CANDOR_BACKEND", default_value = "cpu")]
    pub backend: BackendChoice,
    #[arg(long)]
    pub dequantize: bool,
    /// KV cache element type: auto (CPU, and plugins that keep f16 caches: f16 for quantized
    /// weights; CUDA: the activation dtype; other plugins: f32), f32, f16, q8_0 (CPU: blocks of
    /// 32 bytes and a scale, about half f16's memory). CUDA keeps its one type, and a plugin
    /// f32 or f16: another asked of them is an error.
    #[arg(long, env = "CANDOR_KV_CACHE_DTYPE", value_enum, default_value_t)]
    pub kv_cache_dtype: KvCacheDtype,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the result document here (schema: docs/bench-json.md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub offline: bool,
    /// Measure a running OpenAI-compatible server at this base URL instead of a local model.
    #[arg(long)]
    pub serve: Option<String>,
    /// With --serve: concurrent streaming clients per level.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// With --serve: requests each client sends per level.
    #[arg(long, default_value_t = 4)]
    pub requests_per_client: usize,
    /// With --serve: the prompt (default: a fixed paragraph of about 100 tokens).
    #[arg(long)]
    pub prompt: Option<String>,
    /// With --serve: start each request's prompt with a tag of its own (its number, level and
    /// run), so a server's prefix cache serves a token or two of it at most and TTFT counts the
    /// whole prefill. Without it every request sends the same prompt, and a caching server
    /// (candor, vLLM, llama-server) computes little of it after the first.
    #[arg(long)]
    pub unique_prompts: bool,
    /// With --serve: the `model` field of requests (default: none, the server's own).
    #[arg(long)]
    pub served_model: Option<String>,
    /// With --serve: what the server is, for the result (e.g. "vLLM 0.11 on 1x H100 SXM"):
    /// recorded as given; candor cannot see a remote server's hardware.
    #[arg(long)]
    pub server_label: Option<String>,
    #[arg(long, env = "CANDOR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// After the timed runs, one more pass of each test with every op synchronised and
    /// timed: a table per test (and `op_profile` in the JSON) of where the time goes.
    #[arg(long)]
    pub profile_ops: bool,
    /// After the timed tests, the model's perplexity on this text file on the same device
    /// (`candor perplexity`'s method), recorded as `perplexity` in the result: accuracy beside
    /// speed, so a report can check that devices compute the same model.
    #[arg(long, value_name = "FILE")]
    pub perplexity: Option<String>,
    /// Run every measured sequence with these LoRA adapters: what adapters cost beside the
    /// base model's run (`--perplexity` scores with them too). Recorded as `model.lora`;
    /// reports keep such runs apart.
    #[command(flatten)]
    pub lora: LoraArgs,
    /// With --perplexity: tokens per chunk.
    #[arg(long, default_value_t = 512)]
    pub perplexity_ctx: usize,
    /// With --perplexity: at most this many chunks (default: every whole chunk of the text).
    #[arg(long)]
    pub perplexity_chunks: Option<usize>,
    #[command(flatten)]
    pub dummy: DummyArgs,
}

const DEFAULT_PROMPT: &str = "The history of the Roman Empire covers the history of ancient Rome from the \
fall of the Roman Republic in 27 BC until the abdication of Romulus Augustulus in AD 476 in the West, \
and the Fall of Constantinople in the East in AD 1453. Ancient Rome became a territorial empire while \
still a republic, but was then ruled by emperors beginning with Augustus. Write a long essay about it.";

pub fn run(args: BenchArgs) -> Result<(), CliError> {
    if args.repetitions == 0 {
        return Err(CliError::Usage(
            "-r/--repetitions must be at least 1".into(),
        ));
    }
    match &args.serve {
        Some(url) => run_serve(&args, url),
        None => run_local(&args),
    }
}

/// A progress bar of `len` steps on stderr (hidden where stderr is no terminal).
pub(crate) fn bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

fn write_json(path: &PathBuf, doc: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(doc)
        .map_err(|e| CliError::Usage(format!("cannot encode the result: {e}")))?;
    std::fs::write(path, text + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn run_local(args: &BenchArgs) -> Result<(), CliError> {
    if args.batch.contains(&0) || args.ubatch == 0 {
        return Err(CliError::Usage(
            "-b/--batch sizes and --ubatch must be at least 1".into(),
        ));
    }
    let config = BenchConfig {
        n_prompt: args.n_prompt.clone(),
        n_gen: args.n_gen.clone(),
        repetitions: args.repetitions,
        depth: args.depth,
        batch: args.batch.clone(),
        ubatch: args.ubatch,
        seed: args.seed,
        lora: args.lora.label()?,
        lora_mix: args.lora.mix()?,
    };
    let tests = config.tests();
    if tests.is_empty() {
        return Err(CliError::Usage(
            "nothing to measure: give -p and/or -n above 0".into(),
        ));
    }
    let threads = configure_threads(args.threads);
    let dummy_shape = args.dummy.shape()?;
    let lora = args.lora.read()?;
    if args.perplexity.is_some() && dummy_shape.is_some() {
        return Err(CliError::Usage(
            "--perplexity needs real weights: random ones have no perplexity worth recording"
                .into(),
        ));
    }
    let perplexity_text = args.perplexity.as_deref().map(read_text).transpose()?;
    let path = match dummy_shape {
        Some(shape) => shape.name().into(),
        None => pull::resolve_model(&args.model, !args.offline)?,
    };
    // The bandwidth probe's buffers (3 × 64 MiB) are freed before the model loads; the peak
    // restarts after it so the reported peak resident memory is the model's.
    let bandwidth = hardware::triad_bandwidth_gbs();
    crate::rss::reset_peak();
    let load_options = LoadOptions {
        dequantize: args.dequantize,
        kv_cache_dtype: args.kv_cache_dtype,
        threads,
        kv_tokens: match perplexity_text {
            Some(_) => config.kv_tokens().max(args.perplexity_ctx),
            None => config.kv_tokens(),
        },
        backend: args.backend.clone(),
        op_profiler: args.profile_ops.then(OpProfiler::new),
        lora,
        classifier_tokens: Vec::new(),
    };
    let mut model = match dummy_shape {
        Some(shape) => load_opened(args.dummy.open(shape, args.seed)?, &load_options)?,
        None => load_model(&path, &load_options)?,
    };
    let context = model.spec.max_position;
    let longest = config.depth
        + config
            .n_prompt
            .iter()
            .chain(&config.n_gen)
            .max()
            .copied()
            .unwrap_or(0);
    if longest > context {
        return Err(CliError::Usage(format!(
            "depth + tokens = {longest} exceeds the model's context of {context}"
        )));
    }
    if perplexity_text.is_some() {
        check_ctx(args.perplexity_ctx, context)?;
        if model.tokenizer.is_none() {
            return Err(CliError::Usage(format!(
                "--perplexity: {} has no tokenizer to read the text with",
                model.path.display()
            )));
        }
    }
    let device = model.runner.device();
    let kv_cache = KvShape::of_model(model.runner.spec(), model.runner.kv_bytes_per_value());
    let device_bandwidth_gbs = device_bandwidth(&args.backend);
    let pb = bar((tests.len() * config.repetitions) as u64);
    let results = bench::run(model.runner.as_mut(), &config, |t, r| {
        pb.set_message(format!("{} rep {} done", t.name(), r + 1));
        pb.inc(1);
    })?;
    pb.finish_and_clear();
    let peak_rss_bytes = crate::rss::peak_rss_bytes();
    let op_profile = match &load_options.op_profiler {
        Some(p) => Some(bench::profile(model.runner.as_mut(), &config, p)?),
        None => None,
    };
    let perplexity = match (&args.perplexity, &perplexity_text) {
        (Some(file), Some(text)) => Some(perplexity_result(args, &mut model, file, text)?),
        _ => None,
    };
    let fallbacks = model.runner.fallback_ops();
    if !fallbacks.is_empty() {
        eprintln!(
            "ops run on the CPU fallback: {}",
            crate::backend::plugin::fallback_summary(&fallbacks)
        );
    }
    let model_info = ModelInfo {
        lora: config.lora.clone(),
        ..match dummy_shape {
            Some(shape) => dummy_model_info(shape, &args.dummy, &model.spec)?,
            None => file_model_info(args, &path, &model),
        }
    };
    let doc = BenchDocument {
        schema_version: report::SCHEMA_VERSION,
        tool: "candor bench",
        candor_version: env!("CARGO_PKG_VERSION"),
        git_commit: report::git_commit(),
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        model: model_info,
        backend: BackendInfo {
            kind: device.kind.clone(),
            device: device.name.clone(),
            threads: device.threads,
        },
        hardware: Hardware {
            gpu: hardware::accelerator(&args.backend, &device),
            device_bandwidth_gbs,
            ..hardware::fingerprint(Some(bandwidth))
        },
        kv_cache,
        config,
        results,
        peak_rss_bytes,
        op_profile,
        perplexity,
    };
    print!("{}", report::table(&doc));
    if let Some(p) = &doc.perplexity {
        println!(
            "\nperplexity of {} ({} chunks of {}): {:.4} +/- {:.4}",
            p.file, p.chunks, p.ctx, p.ppl, p.ppl_stderr
        );
    }
    for p in doc.op_profile.iter().flatten() {
        print!("\n{}", bench::profile_table(p));
    }
    if let Some(p) = &args.json {
        write_json(p, &doc)?;
    }
    Ok(())
}

/// The model's perplexity on `text` (the file `file`), measured after the timed tests.
fn perplexity_result(
    args: &BenchArgs,
    model: &mut crate::engine::load::LoadedModel,
    file: &str,
    text: &str,
) -> Result<PerplexityResult, CliError> {
    eprintln!("perplexity of {file}:");
    let m = measure(
        model,
        &args.lora.mix()?,
        text,
        args.perplexity_ctx,
        args.perplexity_chunks,
        true,
    )?;
    let r = m.result;
    Ok(PerplexityResult {
        file: file.to_string(),
        file_sha256: super::perplexity::sha256_hex(text),
        ctx: args.perplexity_ctx,
        chunks: r.chunks,
        text_tokens: m.text_tokens,
        tokens_scored: r.tokens,
        ppl: r.ppl(),
        ppl_stderr: r.ppl_stderr(),
        mean_nll: r.mean_nll(),
        top1_rate: r.top1_rate(),
        seconds: r.seconds,
        top1_ids: r.kept.iter().map(|k| k.top1).collect(),
        logprobs: r.kept.iter().map(|k| k.logprob).collect(),
    })
}

/// The measured device-to-device bandwidth of the GPU a CUDA run uses (None elsewhere, or with
/// the reason on stderr when the probe fails).
fn device_bandwidth(backend: &BackendChoice) -> Option<f64> {
    let BackendChoice::Cuda(ordinal) = backend else {
        return None;
    };
    match crate::backend::cuda::device_bandwidth_gbs(*ordinal) {
        Ok(gbs) => Some(gbs),
        Err(e) => {
            eprintln!("candor: no device bandwidth in the result: {e}");
            None
        }
    }
}

/// What a result says about a model file.
fn file_model_info(
    args: &BenchArgs,
    path: &std::path::Path,
    model: &crate::engine::load::LoadedModel,
) -> ModelInfo {
    let name = if pull::find(&args.model).is_some() {
        args.model.clone()
    } else {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    ModelInfo {
        name,
        path: path.display().to_string(),
        sha256: if path.is_file() {
            pull::sha256_file(path).ok()
        } else {
            None
        },
        size_bytes: model_size(path),
        format: format!("{:?}", model.format).to_lowercase(),
        arch: format!("{:?}", model.spec.arch).to_lowercase(),
        quantization: model.quantization.clone(),
        parameters: model.parameters,
        lora: None,
        experts: crate::bench::experts::ExpertShape::of_model(&model.spec),
    }
}

/// What a result says about a dummy model: the shapes' source, its parameters and their bytes.
fn dummy_model_info(
    shape: &candor_models::dummy::DummyShape,
    dummy: &DummyArgs,
    spec: &candor_models::ModelSpec,
) -> Result<ModelInfo, CliError> {
    let weights = dummy.weights();
    let source = candor_models::dummy::DummySource::new(spec, shape.tied_embeddings(), weights, 0);
    let parameters = source.parameter_count();
    Ok(ModelInfo {
        name: shape.name(),
        path: format!("dummy weights with the shapes of {}", shape.source),
        sha256: None,
        size_bytes: source.stored_bytes(),
        format: "dummy".into(),
        arch: format!("{:?}", spec.arch).to_lowercase(),
        quantization: Some(weights.to_string()),
        parameters: Some(parameters),
        lora: None,
        experts: crate::bench::experts::ExpertShape::of_model(spec),
    })
}

/// Bytes of a model file, or of every file in a model directory.
fn model_size(path: &std::path::Path) -> u64 {
    if path.is_file() {
        // A split GGUF's parts together.
        return candor_models::weights::split::model_files(path)
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
    }
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[derive(Debug, Serialize)]
struct ServeDocument {
    schema_version: u32,
    tool: &'static str,
    candor_version: &'static str,
    git_commit: &'static str,
    date: String,
    url: String,
    model: Option<String>,
    max_tokens: usize,
    prompt_chars: usize,
    /// Whether each request's prompt began with a tag of its own (`--unique-prompts`).
    unique_prompts: bool,
    requests_per_client: usize,
    /// The machine the load generator ran on, which need not be the server's.
    load_generator_hardware: Hardware,
    server: ServerDescription,
    levels: Vec<LevelReport>,
}

/// What is known about the server under test: the user's label and the model ids it reports.
/// Nothing about its hardware, which a client cannot see.
#[derive(Debug, Serialize)]
struct ServerDescription {
    label: Option<String>,
    /// `GET /v1/models` ids; None when the server did not answer (see `models_error`).
    models: Option<Vec<String>>,
    models_error: Option<String>,
}

fn level_row(r: &LevelReport) -> String {
    format!(
        "| {} | {} | {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.1} | {:.1} / {:.1} |\n",
        r.concurrency,
        r.requests,
        r.errors,
        r.output_tok_s,
        r.ttft_ms.p50,
        r.ttft_ms.p95,
        r.ttft_ms.p99,
        r.tpot_ms.p50,
        r.itl_ms.p50,
        r.itl_ms.p95
    )
}

async fn served_models(url: &str, api_key: Option<&str>) -> Result<Vec<String>, String> {
    let client =
        loadgen::http_client(|| reqwest::Client::builder().timeout(Duration::from_secs(30)))?;
    loadgen::served_model_ids(&client, url, api_key).await
}

fn run_serve(args: &BenchArgs, url: &str) -> Result<(), CliError> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) || args.requests_per_client == 0
    {
        return Err(CliError::Usage(
            "--concurrency levels and --requests-per-client must be at least 1".into(),
        ));
    }
    let max_tokens = args
        .n_gen
        .first()
        .copied()
        .filter(|&n| n > 0)
        .ok_or_else(|| CliError::Usage("-n must be above 0 with --serve".into()))?;
    loadgen::check_base_url(url).map_err(CliError::Usage)?;
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| DEFAULT_PROMPT.to_string());
    let config = LoadConfig {
        request: RequestSpec {
            url: url.to_string(),
            model: args.served_model.clone(),
            prompt: prompt.clone(),
            max_tokens,
            api_key: args.api_key.clone(),
            unique_prompts: args.unique_prompts,
        },
        concurrency: args.concurrency.clone(),
        requests_per_client: args.requests_per_client,
        timeout: Duration::from_secs(600),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let models = rt.block_on(served_models(url, args.api_key.as_deref()));
    if let Err(e) = &models {
        eprintln!("candor: the result will not name the served model: {e}");
    }
    let pb = bar(args.concurrency.len() as u64);
    pb.set_message(format!("{} clients", args.concurrency[0]));
    let levels = rt.block_on(loadgen::run(&config, |r| {
        pb.inc(1);
        pb.set_message(format!(
            "{} clients done: {:.1} tok/s",
            r.concurrency, r.output_tok_s
        ));
    }));
    pb.finish_and_clear();
    let mut table = String::from("| clients | requests | errors | output tok/s | TTFT ms p50 / p95 / p99 | TPOT ms p50 | ITL ms p50 / p95 |\n");
    table.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in &levels {
        table.push_str(&level_row(r));
    }
    print!("{table}");
    for (r, d) in levels
        .iter()
        .filter_map(|r| Some((r, r.drafts.filter(|d| d.drafted > 0)?)))
    {
        println!(
            "{} clients: the server kept {} of {} drafted tokens (speculative decoding: its \
             tok/s depend on how repetitive the text is)",
            r.concurrency, d.kept, d.drafted
        );
    }
    for r in levels.iter().filter(|r| r.errors > 0) {
        eprintln!(
            "{} clients: {} errors, e.g. {}",
            r.concurrency,
            r.errors,
            r.error_samples.join("; ")
        );
    }
    if let Some(p) = &args.json {
        let doc = ServeDocument {
            schema_version: report::SCHEMA_VERSION,
            tool: "candor bench --serve",
            candor_version: env!("CARGO_PKG_VERSION"),
            git_commit: report::git_commit(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            url: url.to_string(),
            model: args.served_model.clone(),
            max_tokens,
            prompt_chars: prompt.len(),
            unique_prompts: args.unique_prompts,
            requests_per_client: args.requests_per_client,
            load_generator_hardware: hardware::fingerprint(None),
            server: ServerDescription {
                label: args.server_label.clone(),
                models_error: models.as_ref().err().cloned(),
                models: models.ok(),
            },
            levels,
        };
        write_json(p, &doc)?;
    }
    Ok(())
}
