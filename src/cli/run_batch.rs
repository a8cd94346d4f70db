//! `candor run-batch -i requests.jsonl -o results.jsonl`: vLLM's `run-batch` (OpenAI's Batch
//! API file format) on the model and options `candor serve` takes.
use super::serve::{config, runtime, ServeArgs};
use crate::error::CliError;
use crate::server::batch::run_batch;
use std::io::{BufRead, Write};

#[derive(Debug, clap::Args)]
pub struct RunBatchArgs {
    /// The requests, one JSON object a line: `{"custom_id", "method": "POST", "url":
    /// "/v1/chat/completions", "body": {...}}` (also /v1/completions, /v1/embeddings,
    /// /v1/responses, /v1/score, /v1/rerank, /v1/classify); `-` reads stdin.
    #[arg(short = 'i', long = "input-file", value_name = "FILE")]
    pub input: String,
    /// Where the results go, one line per request in input order: `{"id", "custom_id",
    /// "response": {"status_code", "request_id", "body"}, "error"}`; `-` writes stdout.
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub output: String,
    /// The model and engine options, as `candor serve` takes them (host, port, keys and TLS
    /// are not used: nothing listens).
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub fn run(args: RunBatchArgs) -> Result<(), CliError> {
    let lines = read_lines(&args.input)?;
    // The output is opened before the model loads: a path that cannot be written fails now.
    let mut out: Box<dyn Write + Send> = match args.output.as_str() {
        "-" => Box::new(std::io::stdout()),
        path => Box::new(
            std::fs::File::create(path)
                .map_err(|e| CliError::Usage(format!("cannot write the results to {path}: {e}")))?,
        ),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let config = config(args.serve)?;
    let requests = lines.iter().filter(|l| !l.trim().is_empty()).count() as u64;
    eprintln!(
        "candor: {requests} request(s) from {} for model `{}`",
        args.input, config.model_name
    );
    let bar = super::bench::bar(requests);
    let summary = runtime()?
        .block_on(run_batch(config, lines, &mut out, || bar.inc(1)))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    bar.finish_and_clear();
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

/// Every line of `input` (`-`: stdin).
fn read_lines(input: &str) -> Result<Vec<String>, CliError> {
    let cannot = |e: std::io::Error| CliError::Usage(format!("cannot read {input}: {e}"));
    match input {
        "-" => std::io::stdin().lock().lines().collect::<Result<_, _>>(),
        path => std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .and_then(|f| f.lines().collect::<Result<_, _>>()),
    }
    .map_err(cannot)
}
