//! The sampling defaults of requests that leave a field out: the model's own
//! (`--generation-config auto`, as vLLM's default and llama-server do), none
//! (`--generation-config vllm`: OpenAI's defaults, temperature 1 and no truncation), or a
//! folder's `generation_config.json`; then `--override-generation-config` on top. A field a
//! request sends always wins.
use crate::engine::load::LoadedModel;
use candor_models::generation_config::GenerationDefaults;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the defaults come from (`--generation-config`, vLLM's spelling).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum GenerationConfigSource {
    /// The model's: its checkout's `generation_config.json` or its GGUF's
    /// `general.sampling.*` keys.
    #[default]
    Auto,
    /// None of the model's: the server's own defaults.
    Server,
    /// `generation_config.json` in this folder (or this file).
    Path(PathBuf),
}

impl FromStr for GenerationConfigSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "vllm" | "none" => Self::Server,
            "" => return Err("an empty value (auto, vllm or a folder)".into()),
            path => Self::Path(PathBuf::from(path)),
        })
    }
}

/// `--override-generation-config`: a JSON object of the same fields (`{"temperature": 0.6}`).
pub fn parse_overrides(json: &str) -> Result<GenerationDefaults, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("--override-generation-config: not JSON ({e})"))?;
    let Some(object) = value.as_object() else {
        return Err("--override-generation-config: a JSON object of sampling fields".into());
    };
    const KNOWN: [&str; 11] = [
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repetition_penalty",
        "xtc_probability",
        "xtc_threshold",
        "repeat_last_n",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    ];
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "--override-generation-config: unknown field `{unknown}` (known: {})",
            KNOWN.join(", ")
        ));
    }
    GenerationDefaults::from_json(&value, "--override-generation-config").map_err(|e| e.to_string())
}

/// The defaults requests get, from `source` over `model`, then `overrides`.
pub fn resolve(
    source: &GenerationConfigSource,
    model: &LoadedModel,
    overrides: &GenerationDefaults,
) -> Result<GenerationDefaults, String> {
    let base = match source {
        GenerationConfigSource::Auto => model.generation.clone().map_err(|e| {
            format!(
                "the model's sampling defaults: {e} (--generation-config vllm serves without them)"
            )
        })?,
        GenerationConfigSource::Server => GenerationDefaults::default(),
        GenerationConfigSource::Path(path) => {
            let found = path.is_file() || path.join("generation_config.json").is_file();
            if !found {
                return Err(format!(
                    "--generation-config {}: no generation_config.json there",
                    path.display()
                ));
            }
            GenerationDefaults::from_hf_dir(path).map_err(|e| e.to_string())?
        }
    };
    Ok(base.overridden_by(overrides))
}

/// What a request that sends none of the sampling fields samples with: the defaults where
/// they are set, else the server's own (OpenAI's: temperature 1, nothing truncated, no
/// penalty; XTC off, at llama.cpp's threshold of 0.1 when a request turns it on; llama.cpp's
/// penalty window of 64 on its endpoints; mirostat off, at llama.cpp's tau 5 and eta 0.1).
/// The model's `repeat_last_n` applies where llama.cpp's reading of the penalties does (the
/// llama-server and Ollama endpoints): the OpenAI endpoints read them as vLLM does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub min_p: f64,
    pub repetition_penalty: f64,
    pub xtc_probability: f64,
    pub xtc_threshold: f64,
    pub repeat_last_n: i64,
    pub mirostat: u8,
    pub mirostat_tau: f64,
    pub mirostat_eta: f64,
}

pub fn applied(d: &GenerationDefaults) -> Applied {
    Applied {
        temperature: d.temperature.unwrap_or(1.0),
        top_p: d.top_p.unwrap_or(1.0),
        top_k: d.top_k.unwrap_or(0),
        min_p: d.min_p.unwrap_or(0.0),
        repetition_penalty: d.repetition_penalty.unwrap_or(1.0),
        xtc_probability: d.xtc_probability.unwrap_or(0.0),
        xtc_threshold: d.xtc_threshold.unwrap_or(0.1),
        repeat_last_n: d.repeat_last_n.unwrap_or(64),
        mirostat: d.mirostat.unwrap_or(0),
        mirostat_tau: d.mirostat_tau.unwrap_or(5.0),
        mirostat_eta: d.mirostat_eta.unwrap_or(0.1),
    }
}

/// The defaults as a log line's text (`temperature=0.7 top_p=0.8`).
pub fn describe(d: &GenerationDefaults) -> String {
    match serde_json::to_value(d) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_vllm_spells_them() {
        assert_eq!("auto".parse(), Ok(GenerationConfigSource::Auto));
        assert_eq!("vllm".parse(), Ok(GenerationConfigSource::Server));
        assert_eq!(
            "/models/qwen".parse(),
            Ok(GenerationConfigSource::Path("/models/qwen".into()))
        );
        assert!("".parse::<GenerationConfigSource>().is_err());
    }

    #[test]
    fn overrides_are_checked_by_name_and_range() {
        let o = parse_overrides(r#"{"temperature": 0.6, "top_k": 20}"#).unwrap();
        assert_eq!((o.temperature, o.top_k), (Some(0.6), Some(20)));
        assert!(parse_overrides(r#"{"temprature": 0.6}"#)
            .unwrap_err()
            .contains("`temprature`"));
        assert!(parse_overrides(r#"{"top_p": 2}"#)
            .unwrap_err()
            .contains("`top_p`"));
        assert!(parse_overrides("[1]").is_err());
        assert!(parse_overrides("{").is_err());
        assert_eq!(describe(&o), "temperature=0.6 top_k=20");
    }
}
