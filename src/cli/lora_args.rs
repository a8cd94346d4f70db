//! The LoRA options of the commands that run a model locally (`candor generate`, `candor
//! perplexity`, `candor bench`): llama.cpp's `--lora PATH` (at the adapter's own scale) and
//! `--lora-scaled PATH SCALE`, each repeatable, all adapters run together over the base model
//! as `candor serve` runs a request's `lora` list.
use crate::error::CliError;
use candor_models::lora::{read_adapter, usable_scale, LoraAdapter, LoraMix, MAX_LORA_SCALE};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoraArgs {
    /// Run with this LoRA adapter (a PEFT directory or a llama.cpp LoRA GGUF) at its own
    /// scale, as `candor serve --lora` serves it; repeat for several, run together.
    #[arg(long, value_name = "PATH")]
    pub lora: Vec<PathBuf>,
    /// Run with this LoRA adapter at SCALE times its own (llama.cpp's `--lora-scaled`; 0.5 is
    /// half its update, a negative scale subtracts it); repeatable, run together with `--lora`.
    #[arg(long, num_args = 2, value_names = ["PATH", "SCALE"], allow_negative_numbers = true)]
    pub lora_scaled: Vec<String>,
}

impl LoraArgs {
    /// Each adapter named with its scale: `--lora`'s at 1 first, then `--lora-scaled`'s.
    pub fn scaled(&self) -> Result<Vec<(PathBuf, f32)>, CliError> {
        let mut all: Vec<(PathBuf, f32)> = self.lora.iter().map(|p| (p.clone(), 1.0)).collect();
        for pair in self.lora_scaled.chunks(2) {
            let [path, scale] = pair else {
                return Err(CliError::Usage("--lora-scaled takes PATH SCALE".into()));
            };
            let scale = scale
                .parse::<f64>()
                .ok()
                .and_then(usable_scale)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--lora-scaled {path} {scale}: the scale must be a number in \
                         [-{MAX_LORA_SCALE}, {MAX_LORA_SCALE}]"
                    ))
                })?;
            all.push((PathBuf::from(path), scale));
        }
        Ok(all)
    }

    /// How the run's result names its adapters (`bench::lora_label`), None without any.
    pub fn label(&self) -> Result<Option<String>, CliError> {
        Ok(crate::bench::lora_label::label(&self.scaled()?))
    }

    /// Read every adapter named, in order: adapter `i` is the model's slot `i`.
    pub fn read(&self) -> Result<Vec<LoraAdapter>, CliError> {
        self.scaled()?
            .iter()
            .map(|(path, _)| {
                read_adapter(path)
                    .map_err(|e| CliError::Usage(format!("--lora {}: {e}", path.display())))
            })
            .collect()
    }

    /// What every sequence of the run runs with: the adapters `read` loaded, at their scales.
    pub fn mix(&self) -> Result<LoraMix, CliError> {
        let scaled = self.scaled()?;
        Ok(LoraMix::scaled(
            (0u32..).zip(scaled.iter().map(|&(_, scale)| scale)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        lora: LoraArgs,
    }

    fn parse(args: &[&str]) -> Result<Vec<(PathBuf, f32)>, String> {
        let cli = Cli::try_parse_from([&["x"], args].concat()).map_err(|e| e.to_string())?;
        cli.lora.scaled().map_err(|e| e.to_string())
    }

    #[test]
    fn adapters_keep_their_order_and_scales() {
        assert_eq!(parse(&[]).unwrap(), []);
        assert_eq!(
            parse(&[
                "--lora-scaled",
                "b",
                "-0.5",
                "--lora",
                "a",
                "--lora-scaled",
                "c",
                "2"
            ])
            .unwrap(),
            [("a".into(), 1.0), ("b".into(), -0.5), ("c".into(), 2.0)]
        );
        for bad in [
            &["--lora-scaled", "b", "x"][..],
            &["--lora-scaled", "b", "inf"],
            &["--lora-scaled", "b", "1e5"],
            &["--lora-scaled", "b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
