//! `candor report RESULTS... -o DIR`: Markdown and self-contained HTML from result documents.
use crate::error::CliError;
use crate::report::{write_report, ReportRequest};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Result documents: `candor bench --json` (local or --serve), llama-bench `-o json` and
    /// benches/hf_transformers_bench.py `--json`.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Directory for report.md, report.html and charts/ (created if missing).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Device the ratios are taken against: an id or alias of the spec database.
    #[arg(long, default_value = "h100")]
    pub reference: String,
    /// Spec database (TOML) replacing the built-in one.
    #[arg(long)]
    pub specs: Option<PathBuf>,
    /// Claims file (TOML) replacing the built-in one.
    #[arg(long)]
    pub claims: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<(), CliError> {
    let written = write_report(&ReportRequest {
        results: args.results,
        out_dir: args.out,
        reference: args.reference,
        specs: args.specs,
        claims: args.claims,
    })?;
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
