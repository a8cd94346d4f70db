//! The sampling flags of `candor generate`: the engine's samplers under the request fields'
//! names (`--top-p`, `--typical-p`, `--repeat-last-n`, `--mirostat`...).
use crate::engine::mirostat::{Mirostat, MirostatVersion};
use crate::engine::penalties::{Penalties, PenaltyScope};
use crate::engine::sampler::SamplingParams;
use crate::engine::temperature::DynamicTemperature;
use crate::error::CliError;

#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8, allow_hyphen_values = true)]
    pub temperature: f32,
    /// Apply the temperature after top-p, min-p, typical-p and XTC, as llama.cpp's chain does
    /// (they then read the probabilities at temperature 1); by default it comes first, as in
    /// transformers and vLLM.
    #[arg(long)]
    pub temperature_last: bool,
    /// Dynamic temperature: the temperature moves within this much of --temperature by the
    /// candidates' normalized entropy (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub dynatemp_range: f32,
    /// How the normalized entropy maps onto the dynamic range (1 = linearly).
    #[arg(long, default_value_t = 1.0)]
    pub dynatemp_exponent: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Locally typical sampling's mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub typical_p: f32,
    /// Typical-p, min-p, top-p and XTC leave at least this many tokens (0 = no floor).
    #[arg(long, default_value_t = 0)]
    pub min_keep: usize,
    /// Keep the tokens within this many standard deviations of the largest logit (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub top_n_sigma: f32,
    /// XTC: with this probability a pick drops every token at or above --xtc-threshold but the
    /// least likely of them (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub xtc_probability: f32,
    #[arg(long, default_value_t = 0.1)]
    pub xtc_threshold: f32,
    /// Divides the logits of tokens already in the prompt or the answer (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Subtracted from the logit of each token the answer holds (OpenAI's; 0 = off).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub presence_penalty: f32,
    /// Subtracted per time the answer holds a token (OpenAI's; 0 = off).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub frequency_penalty: f32,
    /// Count the penalties over the last N tokens of prompt and answer, as llama.cpp does
    /// (-1 = all); unset, vLLM's reading: repetition over both, the others over the answer.
    #[arg(long, allow_hyphen_values = true)]
    pub repeat_last_n: Option<i64>,
    /// Mirostat's version (1 or 2) in place of top-k / top-p / min-p (0 = off).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub mirostat: u8,
    /// Mirostat's target surprise in bits.
    #[arg(long, default_value_t = 5.0)]
    pub mirostat_tau: f32,
    /// Mirostat's learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub mirostat_eta: f32,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The engine's parameters (checked by `SamplingParams::validate` after).
    pub fn params(&self) -> Result<SamplingParams, CliError> {
        let scope = match self.repeat_last_n {
            None => PenaltyScope::PromptAndAnswer,
            Some(n) => PenaltyScope::last_n(n).ok_or_else(|| {
                CliError::Usage(format!("--repeat-last-n {n}: -1 (all), 0 (off) or more"))
            })?,
        };
        let mirostat = MirostatVersion::numbered(self.mirostat.into());
        Ok(SamplingParams {
            temperature: self.temperature,
            temperature_last: self.temperature_last,
            dynamic_temperature: (self.dynatemp_range > 0.0).then_some(DynamicTemperature {
                range: self.dynatemp_range,
                exponent: self.dynatemp_exponent,
            }),
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            typical_p: self.typical_p,
            min_keep: self.min_keep,
            top_n_sigma: self.top_n_sigma,
            xtc_probability: self.xtc_probability,
            xtc_threshold: self.xtc_threshold,
            penalties: Penalties {
                repetition: self.repetition_penalty,
                presence: self.presence_penalty,
                frequency: self.frequency_penalty,
                scope,
            },
            mirostat: mirostat.map(|version| Mirostat {
                version,
                tau: self.mirostat_tau,
                eta: self.mirostat_eta,
            }),
            seed: self.seed,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sampling: SamplingArgs,
    }

    fn params(args: &[&str]) -> Result<SamplingParams, CliError> {
        let cli = Cli::try_parse_from(std::iter::once("candor").chain(args.iter().copied()))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        cli.sampling.params()
    }

    #[test]
    fn flags_reach_the_engine_s_parameters() {
        let p = params(&[
            "--temperature-last",
            "--dynatemp-range",
            "0.5",
            "--typical-p",
            "0.9",
            "--xtc-probability",
            "0.5",
            "--repeat-last-n",
            "-1",
            "--mirostat",
            "2",
        ])
        .unwrap();
        assert!(p.temperature_last);
        assert_eq!(p.dynamic_temperature.map(|d| d.range), Some(0.5));
        assert_eq!((p.typical_p, p.xtc_probability), (0.9, 0.5));
        assert_eq!(p.penalties.scope, PenaltyScope::LastN(usize::MAX));
        assert_eq!(p.mirostat.map(|m| m.version), Some(MirostatVersion::V2));
        let plain = params(&[]).unwrap();
        assert_eq!(
            (plain.temperature, plain.dynamic_temperature, plain.mirostat),
            (0.8, None, None)
        );
        assert!(params(&["--repeat-last-n", "-2"]).is_err());
        assert!(params(&["--mirostat", "3"]).is_err());
    }
}
