use candor::cli::{Cli, Command};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs one line per request by default; the CLI tools only warnings.
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,candor=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let result = match cli.command {
        Command::Generate(args) => candor::cli::generate::run(args),
        Command::Pull(args) => candor::cli::pull::run(args),
        Command::Perplexity(args) => candor::cli::perplexity::run(args),
        Command::Serve(args) => candor::cli::serve::run(args),
        Command::RunBatch(args) => candor::cli::run_batch::run(args),
        Command::Bench(args) => candor::cli::bench::run(args),
        Command::Report(args) => candor::cli::report::run(args),
        Command::Devices(args) => candor::cli::devices::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
