//! The sampling settings a model's authors recommend, as the model ships them: a checkout's
//! `generation_config.json` (`temperature`, `top_p`, `top_k`, `min_p`,
//! `repetition_penalty`), or a GGUF's `general.sampling.*` keys, which llama.cpp's converter
//! copies from that file. vLLM and llama-server both use them for the fields a request leaves
//! out (Qwen2.5's instruct models ask for temperature 0.7, top-p 0.8, top-k 20 and a
//! repetition penalty of 1.05; without the penalty small ones loop more readily).
use crate::error::{ModelError, Result};
use crate::weights::gguf::GgufFile;
use serde::Serialize;
use std::path::Path;

/// Sampling defaults; a field left out is the server's own default. Kept as the JSON's
/// numbers (f64), so that `0.7` is still `0.7` where the server shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerationDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// 0 turns top-k off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// XTC (llama.cpp's sampler; GGUF keys only, transformers has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xtc_probability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xtc_threshold: Option<f64>,
    /// How many of the last tokens llama.cpp's penalties count (-1: the whole context, 0:
    /// none). llama.cpp's reading of the penalties (GGUF `penalty_last_n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<i64>,
    /// Mirostat: 0 off, 1 or 2 its version (GGUF keys only, as XTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirostat: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirostat_tau: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirostat_eta: Option<f64>,
}

/// The values a sampling field may take. A model's defaults and a request's fields are checked
/// against the same ranges (the server names the request's field, this file the model's), so
/// a bound changed once changes for both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldRange {
    pub lo: f64,
    pub hi: f64,
    /// `lo` itself is out.
    pub lo_open: bool,
}

impl FieldRange {
    const fn closed(lo: f64, hi: f64) -> Self {
        FieldRange {
            lo,
            hi,
            lo_open: false,
        }
    }

    const fn above(lo: f64, hi: f64) -> Self {
        FieldRange {
            lo,
            hi,
            lo_open: true,
        }
    }

    pub fn contains(&self, x: f64) -> bool {
        x.is_finite() && (x > self.lo || (!self.lo_open && x == self.lo)) && x <= self.hi
    }
}

/// `in (0, 1]`.
impl std::fmt::Display for FieldRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = if self.lo_open { '(' } else { '[' };
        write!(f, "in {open}{}, {}]", self.lo, self.hi)
    }
}

/// The ranges of the sampling fields, by the request's name.
pub mod ranges {
    use super::FieldRange;

    pub const TEMPERATURE: FieldRange = FieldRange::closed(0.0, 2.0);
    pub const TOP_P: FieldRange = FieldRange::above(0.0, 1.0);
    pub const MIN_P: FieldRange = FieldRange::closed(0.0, 1.0);
    pub const REPETITION_PENALTY: FieldRange = FieldRange::above(0.0, 10.0);
    /// OpenAI's.
    pub const PRESENCE_PENALTY: FieldRange = FieldRange::closed(-2.0, 2.0);
    pub const FREQUENCY_PENALTY: FieldRange = FieldRange::closed(-2.0, 2.0);
    pub const XTC_PROBABILITY: FieldRange = FieldRange::closed(0.0, 1.0);
    pub const XTC_THRESHOLD: FieldRange = FieldRange::closed(0.0, 1.0);
    /// Bits: a token's surprise over a 2^100 vocabulary.
    pub const MIROSTAT_TAU: FieldRange = FieldRange::closed(0.0, 100.0);
    pub const MIROSTAT_ETA: FieldRange = FieldRange::closed(0.0, 10.0);
    /// The dynamic temperature's reach around the temperature, and its exponent.
    pub const DYNATEMP_RANGE: FieldRange = FieldRange::closed(0.0, 2.0);
    pub const DYNATEMP_EXPONENT: FieldRange = FieldRange::closed(0.0, 10.0);
}

impl GenerationDefaults {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The fields of a `generation_config.json` (or of `--override-generation-config`, which
    /// takes the same names). Values out of range are an error naming the field: a model that
    /// asks for them would otherwise fail every request that leaves the field out.
    pub fn from_json(v: &serde_json::Value, source: &str) -> Result<Self> {
        let bad = |key: &str, why: &str| {
            ModelError::Config(format!("{source}: `{key}` {why}, got {}", v[key]))
        };
        let number = |key: &str| -> Result<Option<f64>> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .map(Some)
                    .ok_or_else(|| bad(key, "must be a number")),
            }
        };
        let within = |key: &str, range: FieldRange| -> Result<Option<f64>> {
            match number(key)? {
                Some(x) if !range.contains(x) => Err(bad(key, &format!("must be {range}"))),
                x => Ok(x),
            }
        };
        let top_k = match number("top_k")? {
            None => None,
            // -1 and 0 both mean off (vLLM's -1, transformers' 0).
            Some(k) if k == -1.0 || k == 0.0 => Some(0),
            Some(k) if k > 0.0 && k.fract() == 0.0 => Some(k as usize),
            Some(_) => return Err(bad("top_k", "must be a positive integer, 0 or -1")),
        };
        let integer = |key: &str, ok: fn(f64) -> bool, why: &str| -> Result<Option<i64>> {
            match number(key)? {
                Some(x) if x.fract() == 0.0 && ok(x) => Ok(Some(x as i64)),
                Some(_) => Err(bad(key, why)),
                None => Ok(None),
            }
        };
        Ok(GenerationDefaults {
            temperature: within("temperature", ranges::TEMPERATURE)?,
            top_p: within("top_p", ranges::TOP_P)?,
            top_k,
            min_p: within("min_p", ranges::MIN_P)?,
            repetition_penalty: within("repetition_penalty", ranges::REPETITION_PENALTY)?,
            xtc_probability: within("xtc_probability", ranges::XTC_PROBABILITY)?,
            xtc_threshold: within("xtc_threshold", ranges::XTC_THRESHOLD)?,
            repeat_last_n: integer(
                "repeat_last_n",
                |x| x >= -1.0 && x <= i32::MAX as f64,
                "must be an integer >= -1",
            )?,
            mirostat: integer(
                "mirostat",
                |x| (0.0..=2.0).contains(&x),
                "must be 0, 1 or 2",
            )?
            .map(|m| m as u8),
            mirostat_tau: within("mirostat_tau", ranges::MIROSTAT_TAU)?,
            mirostat_eta: within("mirostat_eta", ranges::MIROSTAT_ETA)?,
        })
    }

    /// A checkout's `generation_config.json` (`dir` itself may name the file); nothing when
    /// there is none.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let file = if dir.is_dir() {
            dir.join("generation_config.json")
        } else {
            dir.to_path_buf()
        };
        if !file.is_file() {
            return Ok(Self::default());
        }
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|source| ModelError::Io {
            path: shown.clone(),
            source,
        })?;
        let json: serde_json::Value = crate::config_json::parse(&text)
            .map_err(|e| ModelError::Config(format!("{shown}: {e}")))?;
        Self::from_json(&json, &shown)
    }

    /// A GGUF's `general.sampling.*` keys (llama.cpp's names: `temp`, `penalty_repeat`).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let mut json = serde_json::Map::new();
        for (key, field) in [
            ("temp", "temperature"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
            ("min_p", "min_p"),
            ("penalty_repeat", "repetition_penalty"),
            ("xtc_probability", "xtc_probability"),
            ("xtc_threshold", "xtc_threshold"),
            ("penalty_last_n", "repeat_last_n"),
            ("mirostat", "mirostat"),
            ("mirostat_tau", "mirostat_tau"),
            ("mirostat_eta", "mirostat_eta"),
        ] {
            if let Some(v) = gguf.get_f64(&format!("general.sampling.{key}")) {
                json.insert(field.into(), serde_json::json!(shortest_f32(v)));
            }
        }
        Self::from_json(&json.into(), &format!("{} general.sampling", gguf.path()))
    }

    /// `self` with every field `over` sets replaced.
    pub fn overridden_by(&self, over: &GenerationDefaults) -> GenerationDefaults {
        GenerationDefaults {
            temperature: over.temperature.or(self.temperature),
            top_p: over.top_p.or(self.top_p),
            top_k: over.top_k.or(self.top_k),
            min_p: over.min_p.or(self.min_p),
            repetition_penalty: over.repetition_penalty.or(self.repetition_penalty),
            xtc_probability: over.xtc_probability.or(self.xtc_probability),
            xtc_threshold: over.xtc_threshold.or(self.xtc_threshold),
            repeat_last_n: over.repeat_last_n.or(self.repeat_last_n),
            mirostat: over.mirostat.or(self.mirostat),
            mirostat_tau: over.mirostat_tau.or(self.mirostat_tau),
            mirostat_eta: over.mirostat_eta.or(self.mirostat_eta),
        }
    }
}

/// An f32 the file stored (0.7 as 0.699999988...) as the decimal it was written from: the
/// shortest that reads back as the same f32.
fn shortest_f32(v: f64) -> f64 {
    let f = v as f32;
    if f as f64 != v {
        return v; // stored wider than f32
    }
    f.to_string().parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_transformers_writes_and_ignores_the_rest() {
        // Qwen2.5-7B-Instruct's generation_config.json.
        let qwen = json!({
            "bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true,
            "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
            "temperature": 0.7, "top_p": 0.8, "top_k": 20, "transformers_version": "4.37.0"
        });
        let d = GenerationDefaults::from_json(&qwen, "qwen").unwrap();
        assert_eq!(
            d,
            GenerationDefaults {
                temperature: Some(0.7),
                top_p: Some(0.8),
                top_k: Some(20),
                min_p: None,
                repetition_penalty: Some(1.05),
                ..Default::default()
            }
        );
        let none = json!({"_from_model_config": true, "bos_token_id": 1, "eos_token_id": 2});
        assert!(GenerationDefaults::from_json(&none, "tiny")
            .unwrap()
            .is_empty());
        let off = GenerationDefaults::from_json(&json!({"top_k": -1}), "x").unwrap();
        assert_eq!(off.top_k, Some(0));
    }

    #[test]
    fn ranges_say_which_ends_are_in() {
        assert_eq!(ranges::TOP_P.to_string(), "in (0, 1]");
        assert_eq!(ranges::TEMPERATURE.to_string(), "in [0, 2]");
        assert!(!ranges::TOP_P.contains(0.0) && ranges::TOP_P.contains(1.0));
        assert!(ranges::MIN_P.contains(0.0) && !ranges::MIN_P.contains(1.0 + 1e-9));
        assert!(!ranges::MIN_P.contains(f64::NAN));
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        for (bad, field) in [
            (json!({"temperature": 3.0}), "temperature"),
            (json!({"top_p": 0.0}), "top_p"),
            (json!({"top_k": 2.5}), "top_k"),
            (json!({"min_p": "high"}), "min_p"),
            (json!({"repetition_penalty": -1}), "repetition_penalty"),
        ] {
            let e = GenerationDefaults::from_json(&bad, "cfg").unwrap_err();
            assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
        }
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let model = GenerationDefaults {
            temperature: Some(0.7),
            top_k: Some(20),
            ..Default::default()
        };
        let over = GenerationDefaults {
            temperature: Some(0.2),
            min_p: Some(0.05),
            ..Default::default()
        };
        let d = model.overridden_by(&over);
        assert_eq!(
            (d.temperature, d.top_k, d.min_p),
            (Some(0.2), Some(20), Some(0.05))
        );
    }
}

#[cfg(test)]
mod gguf_tests {
    use super::*;
    use candle_core::quantized::gguf_file::Value;

    use crate::weights::gguf::metadata_only as gguf_with;

    /// The keys llama.cpp's converter writes from a generation_config.json, in its types.
    #[test]
    fn reads_llama_cpp_s_sampling_keys() {
        let gguf = gguf_with(
            "qwen",
            &[
                ("general.architecture", Value::String("qwen2".into())),
                ("general.sampling.temp", Value::F32(0.7)),
                ("general.sampling.top_k", Value::I32(20)),
                ("general.sampling.top_p", Value::F32(0.8)),
                ("general.sampling.penalty_repeat", Value::F32(1.05)),
                ("general.sampling.xtc_probability", Value::F32(0.5)),
                ("general.sampling.penalty_last_n", Value::I32(128)),
                ("general.sampling.mirostat", Value::I32(2)),
                ("general.sampling.mirostat_tau", Value::F32(4.5)),
            ],
        );
        let d = GenerationDefaults::from_gguf(&gguf).unwrap();
        assert_eq!(d.temperature, Some(0.7));
        assert_eq!(d.top_k, Some(20));
        assert_eq!(d.top_p, Some(0.8));
        assert_eq!(d.repetition_penalty, Some(1.05));
        assert_eq!(d.min_p, None);
        assert_eq!((d.xtc_probability, d.xtc_threshold), (Some(0.5), None));
        assert_eq!(d.repeat_last_n, Some(128));
        assert_eq!(
            (d.mirostat, d.mirostat_tau, d.mirostat_eta),
            (Some(2), Some(4.5), None)
        );
        let bare = gguf_with(
            "bare",
            &[("general.architecture", Value::String("qwen2".into()))],
        );
        assert!(GenerationDefaults::from_gguf(&bare).unwrap().is_empty());
        let broken = gguf_with("broken", &[("general.sampling.top_p", Value::F32(1.5))]);
        let e = GenerationDefaults::from_gguf(&broken).unwrap_err();
        assert!(e.to_string().contains("`top_p`"), "{e}");
        let broken = gguf_with("mirostat", &[("general.sampling.mirostat", Value::I32(3))]);
        let e = GenerationDefaults::from_gguf(&broken).unwrap_err();
        assert!(e.to_string().contains("`mirostat`"), "{e}");
    }
}
