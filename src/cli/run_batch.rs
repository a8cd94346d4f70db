//! `candor run-batch -i requests.jsonl -o results.jsonl`: vLLM's `run-batch` (OpenAI's Batch
//! API file format) on the model and options `candor serve` takes.
use super::batch_urls;
use super::serve::{config, runtime, ServeArgs};
use crate::error::CliError;
use crate::server::batch::run_batch;
use std::io::{BufRead, BufReader, Read, Write};

#[derive(Debug, clap::Args)]
pub struct RunBatchArgs {
    /// The requests, one JSON object a line: `{"custom_id", "method": "POST", "url":
    /// "/v1/chat/completions", "body": {...}}` (also /v1/completions, /v1/embeddings,
    /// /v1/responses, /v1/score, /v1/rerank, /v1/classify); `-` reads stdin, an
    /// `http(s)://` URL is fetched (GET) first.
    #[arg(short = 'i', long = "input-file", value_name = "FILE|URL")]
    pub input: String,
    /// Where the results go, one line per request in input order: `{"id", "custom_id",
    /// "response": {"status_code", "request_id", "body"}, "error"}`; `-` writes stdout, an
    /// `http(s)://` URL gets them all at the end (PUT).
    #[arg(short = 'o', long = "output-file", value_name = "FILE|URL")]
    pub output: String,
    /// Where the results for an output URL are written before they are sent (the system's
    /// temporary directory by default).
    #[arg(long, value_name = "DIR")]
    pub output_tmp_dir: Option<std::path::PathBuf>,
    /// The model and engine options, as `candor serve` takes them (host, port, keys and TLS
    /// are not used: nothing listens).
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub fn run(args: RunBatchArgs) -> Result<(), CliError> {
    let runtime = runtime()?;
    let urls = (batch_urls::is_url(&args.input) || batch_urls::is_url(&args.output))
        .then(batch_urls::client)
        .transpose()?;
    let fetched = match &urls {
        Some(client) if batch_urls::is_url(&args.input) => {
            Some(runtime.block_on(batch_urls::fetch(client, &args.input))?)
        }
        _ => None,
    };
    let input = match &fetched {
        Some(file) => open_file(file.path(), &args.input)?,
        None => open(&args.input)?,
    };
    // The output is opened before the model loads: a path that cannot be written fails now.
    let cannot_write = |path: &dyn std::fmt::Display, e: std::io::Error| {
        CliError::Usage(format!("cannot write the results to {path}: {e}"))
    };
    let mut upload = None;
    let mut out: Box<dyn Write + Send> = match args.output.as_str() {
        "-" => Box::new(std::io::stdout()),
        url if batch_urls::is_url(url) => {
            let dir = args
                .output_tmp_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            let file = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|e| cannot_write(&dir.display(), e))?;
            let writer = file.reopen().map_err(|e| cannot_write(&dir.display(), e))?;
            upload = Some(file);
            Box::new(writer)
        }
        path => Box::new(std::fs::File::create(path).map_err(|e| cannot_write(&path, e))?),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let config = config(args.serve)?;
    let bar = match &input {
        Input::File { requests, .. } => {
            eprintln!(
                "candor: {requests} request(s) from {} for model `{}`",
                args.input, config.model_name
            );
            super::bench::bar(*requests)
        }
        Input::Stdin => {
            eprintln!(
                "candor: requests from stdin for model `{}`",
                config.model_name
            );
            indicatif::ProgressBar::no_length()
        }
    };
    let lines: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>> + Send> = match input {
        Input::File { file, .. } => Box::new(lines_of(file)),
        Input::Stdin => Box::new(lines_of(std::io::stdin())),
    };
    let summary = runtime
        .block_on(run_batch(config, lines, &mut out, || bar.inc(1)))
        .map_err(|e| match e {
            crate::server::batch::BatchError::Read { .. } => {
                CliError::Usage(format!("{}: {e}", args.input))
            }
            other => CliError::Usage(other.to_string()),
        })?;
    bar.finish_and_clear();
    out.flush().map_err(|e| cannot_write(&args.output, e))?;
    drop(out);
    if let (Some(file), Some(client)) = (upload, &urls) {
        if let Err(e) = runtime.block_on(batch_urls::upload(client, file.path(), &args.output)) {
            // The message names the file: keep it for the client to send again.
            let _ = file.keep();
            return Err(e);
        }
    }
    let per_s = |n: u64| n as f64 / summary.seconds.max(1e-9);
    eprintln!(
        "candor: {} request(s) in {:.1} s: {} succeeded, {} failed; {} prompt + {} completion \
         tokens ({:.1} completion tok/s); results in {}",
        summary.lines,
        summary.seconds,
        summary.succeeded,
        summary.failed,
        summary.prompt_tokens,
        summary.completion_tokens,
        per_s(summary.completion_tokens),
        args.output
    );
    Ok(())
}

/// Where the requests come from. A file's are counted first (one pass that keeps nothing), so
/// that the progress bar knows its length; the batch then reads it again as it runs.
enum Input {
    File { file: std::fs::File, requests: u64 },
    Stdin,
}

fn open(input: &str) -> Result<Input, CliError> {
    match input {
        "-" => Ok(Input::Stdin),
        path => open_file(std::path::Path::new(path), input),
    }
}

/// The requests in the file at `path` (`input` as the user named it).
fn open_file(path: &std::path::Path, input: &str) -> Result<Input, CliError> {
    let cannot = |e: std::io::Error| CliError::Usage(format!("cannot read {input}: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut requests = 0;
    for line in lines_of(file.try_clone().map_err(cannot)?) {
        requests += u64::from(!line.map_err(cannot)?.iter().all(u8::is_ascii_whitespace));
    }
    use std::io::Seek;
    let mut file = file;
    file.rewind().map_err(cannot)?;
    Ok(Input::File { file, requests })
}

/// The lines of `source` as bytes, without their newlines (a line that is not UTF-8 is that
/// line's error, not the file's).
fn lines_of(source: impl Read) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    BufReader::new(source).split(b'\n')
}
