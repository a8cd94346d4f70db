//! `candor perplexity`: the perplexity of a text file under a model, as llama.cpp's
//! `llama-perplexity` measures it (same chunking, same scored half), so a device's speed can be
//! reported beside proof that it computes the same model.
use super::generate::OutputFormat;
use super::model_args::ModelArgs;
use crate::bench::lora_label::key_suffix as lora_key_suffix;
use crate::engine::load::LoadedModel;
use crate::engine::perplexity::{perplexity, Perplexity, PerplexityOptions};
use crate::error::CliError;
use crate::loadgen::score::{remote_perplexity, RemoteScoring};
use crate::loadgen::server_models::served_model_ids;
use candor_models::lora::LoraMix;
use std::io::{Read, Write};

#[derive(Debug, clap::Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to score (UTF-8; `-` reads standard input), e.g. wikitext-2's wiki.test.raw.
    #[arg(long, short = 'f')]
    pub file: String,
    /// Tokens per chunk; the second half of each is scored.
    #[arg(long, short = 'c', default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks (default: every whole chunk of the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Score the text on a running OpenAI-compatible server at this base URL instead (candor,
    /// vLLM: `/tokenize`, then `/v1/completions` with `echo` and `logprobs` per chunk); the
    /// model options are then unused.
    #[arg(long, value_name = "URL")]
    pub serve: Option<String>,
    /// With --serve: the `model` field of requests (default: none, the server's own).
    #[arg(long)]
    pub served_model: Option<String>,
    /// With --serve: chunks scored at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[arg(long, env = "CANDOR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model's name in reports, which compare perplexities of the same name (default: the
    /// model file's stem, as `candor bench` and llama-bench name it; with --serve,
    /// --served-model, else the server's only model). Give a server's run the file's stem to
    /// compare it with local runs of that file.
    #[arg(long)]
    pub model_key: Option<String>,
    /// With --serve: what the server is, for the result (e.g. "vLLM 0.11 on 1x H100 SXM"):
    /// recorded as given, and the report's name for it.
    #[arg(long)]
    pub server_label: Option<String>,
}

/// The file name without directories and extension: how reports name a model file.
fn file_stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub fn read_text(file: &str) -> Result<String, CliError> {
    let mut text = String::new();
    let read = match file {
        "-" => std::io::stdin().read_to_string(&mut text).map(|_| ()),
        path => std::fs::read_to_string(path).map(|t| text = t),
    };
    read.map_err(|e| CliError::Usage(format!("cannot read {file} as UTF-8 text: {e}")))?;
    Ok(text)
}

/// A perplexity measured on a loaded model: the result and the text's token count.
pub struct Measured {
    pub result: Perplexity,
    pub text_tokens: usize,
}

/// Score `text` on `model` (with the adapters of `lora`) in chunks of `ctx` (at most
/// `chunks`); `progress` prints the running perplexity after each chunk on stderr,
/// llama-perplexity style.
pub fn measure(
    model: &mut LoadedModel,
    lora: &LoraMix,
    text: &str,
    ctx: usize,
    chunks: Option<usize>,
    progress: bool,
) -> Result<Measured, CliError> {
    let tokenizer = model.tokenizer.as_ref().ok_or_else(|| {
        CliError::Usage(format!(
            "{} has no tokenizer: perplexity needs one to read the text",
            model.path.display()
        ))
    })?;
    // As llama-perplexity: the text with BOS where the model adds one (and every chunk then
    // starts with BOS); control-token text in it is text.
    let tokens = tokenizer
        .encode_text(text, true)
        .map_err(candor_models::ModelError::from)?;
    let bos = tokenizer.added_bos();
    let opts = PerplexityOptions {
        lora: lora.clone(),
        ctx,
        max_chunks: chunks,
        bos,
        prefill_chunk: 512,
    };
    let result = perplexity(model.runner.as_mut(), &tokens, &opts, |p| {
        if progress {
            show_progress(p)
        }
    })?;
    if progress {
        eprintln!();
    }
    Ok(Measured {
        result,
        text_tokens: tokens.len(),
    })
}

/// Refuse a chunk longer than the model's context before a KV cache for it is allocated.
pub fn check_ctx(ctx: usize, context: usize) -> Result<(), CliError> {
    match ctx > context {
        true => Err(CliError::Usage(format!(
            "a perplexity chunk of {ctx} tokens exceeds the model's context of {context} tokens"
        ))),
        false => Ok(()),
    }
}

pub fn run(args: PerplexityArgs) -> Result<(), CliError> {
    if let Some(url) = &args.serve {
        return run_remote(&args, url);
    }
    let threads = args.model.configure_threads();
    let text = read_text(&args.file)?;
    let path = args.model.resolve()?;
    let context = candor_models::loader::open_model(&path, false)?
        .spec
        .max_position;
    check_ctx(args.ctx, context)?;
    let lora = args.model.lora.mix()?;
    let lora_label = args.model.lora.label()?;
    let mut model = args.model.load(&path, args.ctx, threads)?;
    // Each window is the context (LongRoPE picks its factors by it).
    model.runner.use_context(args.ctx);
    let progress = args.format == OutputFormat::Text;
    let Measured {
        result,
        text_tokens,
    } = measure(&mut model, &lora, &text, args.ctx, args.chunks, progress)?;
    let device = model.runner.device();
    let fields = serde_json::json!({
        "model": model.path.display().to_string(),
        "model_key": args.model_key.clone().unwrap_or_else(|| {
            // A run with an adapter is another model's (as `candor report` keys bench runs).
            file_stem(&model.path) + &lora_key_suffix(lora_label.as_deref())
        }),
        "lora": lora_label,
        "quantization": model.quantization,
        "dequantize": args.model.dequantize,
        "device": device.name,
        "device_kind": device.kind,
        "threads": threads,
        // The first scored positions, for comparing runs position by position.
        "top1_ids": result.kept.iter().map(|k| k.top1).collect::<Vec<_>>(),
        "logprobs": result.kept.iter().map(|k| shortest(k.logprob)).collect::<Vec<_>>(),
    });
    let on = format!("{threads} threads");
    report(&args, &text, &result, text_tokens, &on, fields)
}

/// `--serve`: the text scored by a running server.
fn run_remote(args: &PerplexityArgs, url: &str) -> Result<(), CliError> {
    crate::loadgen::check_base_url(url).map_err(CliError::Usage)?;
    let text = read_text(&args.file)?;
    let scoring = RemoteScoring {
        url: url.to_string(),
        api_key: args.api_key.clone(),
        model: args.served_model.clone(),
        ctx: args.ctx,
        max_chunks: args.chunks,
        concurrency: args.concurrency,
    };
    let progress = args.format == OutputFormat::Text;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the HTTP client: {e}")))?;
    let (scored, models) = rt.block_on(async {
        let client = match crate::loadgen::http_client(reqwest::Client::builder) {
            Ok(client) => client,
            Err(e) => return (Err(e.clone()), Err(e)),
        };
        let models = served_model_ids(&client, url, args.api_key.as_deref()).await;
        let scored = remote_perplexity(&scoring, &text, |p| {
            if progress {
                show_progress(p)
            }
        })
        .await;
        (scored, models)
    });
    let scored = scored.map_err(CliError::Failed)?;
    if progress {
        eprintln!();
    }
    let only_model = models
        .as_ref()
        .ok()
        .filter(|m| m.len() == 1)
        .map(|m| m[0].clone());
    let model_key = args
        .model_key
        .clone()
        .or_else(|| args.served_model.clone())
        .or(only_model);
    let fields = serde_json::json!({
        "server": url,
        "served_model": args.served_model,
        "server_label": args.server_label,
        "server_models": models.as_ref().ok(),
        "server_models_error": models.as_ref().err(),
        "model_key": model_key,
    });
    let on = format!("server {url}");
    report(args, &text, &scored.result, scored.text_tokens, &on, fields)
}

/// The running perplexity after a chunk, llama-perplexity style (`[3]12.3456,`).
fn show_progress(p: &Perplexity) {
    eprint!("[{}]{:.4},", p.chunks, p.ppl());
    let _ = std::io::stderr().flush();
}

/// Print the result: its line, or one JSON object of the measurement and `fields` (where it was
/// computed). `on` names that place in the line.
fn report(
    args: &PerplexityArgs,
    text: &str,
    result: &Perplexity,
    text_tokens: usize,
    on: &str,
    fields: serde_json::Value,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if args.format == OutputFormat::Text {
        writeln!(out, "{}", summary(result, args.ctx, on))?;
        return Ok(());
    }
    let mut obj = serde_json::json!({
        "tool": "candor perplexity",
        "git_commit": crate::bench::report::git_commit(),
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "file": args.file,
        "file_sha256": sha256_hex(text),
        "text_tokens": text_tokens,
        "ctx": args.ctx,
        "chunks": result.chunks,
        "tokens_scored": result.tokens,
        "ppl": result.ppl(),
        "ppl_stderr": result.ppl_stderr(),
        "mean_nll": result.mean_nll(),
        "top1_rate": result.top1_rate(),
        "seconds": result.seconds,
        "tok_s": result.tok_s(),
    });
    if let (Some(obj), Some(fields)) = (obj.as_object_mut(), fields.as_object()) {
        obj.extend(fields.clone());
    }
    writeln!(out, "{obj}")?;
    Ok(())
}

/// An f32 as the f64 its shortest decimal names: JSON values hold f64, and the f32's exact
/// binary value printed as f64 takes 17 digits where 8 say the same (and `candor bench`'s
/// document, serialized from f32, writes those 8).
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// The result line; `on` says where it was computed (`2 threads`, `server URL`).
fn summary(p: &Perplexity, ctx: usize, on: &str) -> String {
    format!(
        "PPL = {:.4} +/- {:.4} (mean NLL {:.4} nats, top-1 {:.1}%) over {} tokens in {} chunks of {ctx}; {:.1} tok/s, {on}",
        p.ppl(),
        p.ppl_stderr(),
        p.mean_nll(),
        100.0 * p.top1_rate(),
        p.tokens,
        p.chunks,
        p.tok_s()
    )
}

/// The sha256 of a text, hex: results compare only on the same text.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}
