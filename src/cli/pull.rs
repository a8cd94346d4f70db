//! `candor pull NAME|hf:ORG/REPO[:FILE|:TAG]`.
use crate::error::CliError;
use crate::pull;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Catalogue name (see `--list`), hf:ORG/REPO:FILE, hf:ORG/REPO:TAG (its one .gguf of a
    /// quantization, e.g. Q4_K_M or iq4_xs, as llama.cpp's -hf and Ollama name them), or
    /// hf:ORG/REPO (its one .gguf, else its safetensors checkout: config, tokenizer, weights,
    /// sentence-transformers pooling).
    #[arg(required_unless_present = "list")]
    pub model: Option<String>,
    /// List the catalogue.
    #[arg(long)]
    pub list: bool,
}

pub fn run(args: PullArgs) -> Result<(), CliError> {
    if args.list {
        for e in pull::catalogue() {
            println!(
                "{:<16} {:>7.1} MB  {}",
                e.name,
                e.size as f64 / 1e6,
                e.description
            );
        }
        return Ok(());
    }
    let spec = args
        .model
        .unwrap_or_else(|| pull::DEFAULT_MODEL.to_string());
    let path = pull::pull(&spec, &pull::PullOptions::default())?;
    println!("{}", path.display());
    Ok(())
}
