//! llama-server's `samplers`: which samplers run, and where the temperature stands among
//! them. Given as names (`["top_k", "top_p", "temperature"]`, with llama.cpp's aliases:
//! `top-k`, `topk`, `nucleus`, `temp`, `typ`...) or as a string of its letters (`"kpt"`).
//!
//! A sampler left out is off, whatever its fields say, as in llama.cpp, and the others run in
//! the list's order. The truncations in llama.cpp's default order (top-n-sigma, top-k,
//! typical-p, top-p and min-p, XTC) with the temperature before or after all that read
//! probabilities (typical-p, top-p, min-p, XTC; top-k and top-n-sigma do not change with it)
//! run the fixed pipeline of `engine::sampler`; any other order (top-p before top-k, the
//! temperature between min-p and top-p...) runs stage by stage (`engine::sampler_order`), as
//! llama.cpp's chain does. Without `temperature` the draw is at temperature 1 (a request's 0
//! stays greedy). `infill` (llama.vim sends it) runs llama.cpp's infill sampler after the
//! truncations (`engine::infill`), in the default order only.
use super::error::ApiError;
use crate::engine::sampler::SamplingParams;
use crate::engine::sampler_order::{fixed_pipeline_for, Stage};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Penalties,
    Dry,
    /// A truncation or the temperature: what `engine::sampler_order` runs in any order.
    Stage(Stage),
    Infill,
}

/// llama.cpp's names and letters, in its default order.
const KINDS: [(&str, char, Kind); 10] = [
    ("penalties", 'e', Kind::Penalties),
    ("dry", 'd', Kind::Dry),
    ("top_n_sigma", 's', Kind::Stage(Stage::TopNSigma)),
    ("top_k", 'k', Kind::Stage(Stage::TopK)),
    ("typ_p", 'y', Kind::Stage(Stage::TypicalP)),
    ("top_p", 'p', Kind::Stage(Stage::TopP)),
    ("min_p", 'm', Kind::Stage(Stage::MinP)),
    ("xtc", 'x', Kind::Stage(Stage::Xtc)),
    ("temperature", 't', Kind::Stage(Stage::Temperature)),
    ("infill", 'i', Kind::Infill),
];

/// The samplers of a request, in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain(Vec<Kind>);

impl Chain {
    /// llama.cpp's default chain: every sampler but infill, the temperature last.
    pub fn llama_cpp() -> Self {
        let kinds = KINDS.iter().map(|&(_, _, k)| k);
        Chain(kinds.filter(|&k| k != Kind::Infill).collect())
    }

    /// llama.cpp's names of the chain, as `/props` lists them.
    pub fn names(&self) -> Vec<&'static str> {
        self.0
            .iter()
            .filter_map(|k| KINDS.iter().find(|(_, _, kind)| kind == k))
            .map(|&(name, _, _)| name)
            .collect()
    }

    fn has(&self, kind: Kind) -> bool {
        self.0.contains(&kind)
    }

    /// The chain's stages that are on with `s`'s settings, in its order.
    fn active_stages(&self, s: &SamplingParams) -> Vec<Stage> {
        self.0
            .iter()
            .filter_map(|k| match k {
                Kind::Stage(stage) if stage.is_on(s) => Some(*stage),
                _ => None,
            })
            .collect()
    }

    /// Turn off what the chain leaves out and place the temperature. Returns what the engine
    /// needs the model for: DRY's breakers and the infill sampler's vocabulary.
    pub fn apply(&self, s: &mut SamplingParams) -> Result<Needs, ApiError> {
        if !self.has(Kind::Penalties) {
            // The engine's defaults are every sampler off.
            s.penalties = SamplingParams::default().penalties;
        }
        for &(_, _, kind) in &KINDS {
            if let Kind::Stage(stage) = kind {
                if !self.has(kind) {
                    stage.turn_off(s);
                }
            }
        }
        let stages = self.active_stages(s);
        match fixed_pipeline_for(&stages) {
            Some(temperature_last) => s.temperature_last = temperature_last,
            None if self.has(Kind::Infill) => {
                return Err(ApiError::invalid(
                    "samplers",
                    "`samplers` with `infill` must keep llama.cpp's order of the truncations \
                     (top_n_sigma, top_k, typ_p, top_p, min_p, xtc) and the temperature \
                     before or after all of typ_p, top_p, min_p and xtc",
                ))
            }
            None => s.order = Some(stages.into()),
        }
        Ok(Needs {
            dry: self.has(Kind::Dry),
            infill: self.has(Kind::Infill),
        })
    }
}

/// What a chain keeps that the engine needs the model for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub dry: bool,
    pub infill: bool,
}

/// A request's `samplers`, or None when it sends none.
pub fn chain(samplers: Option<&Value>) -> Result<Option<Chain>, ApiError> {
    let bad = |why: String| ApiError::invalid("samplers", format!("`samplers`: {why}"));
    let kinds: Vec<Kind> = match samplers {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(letters)) => letters
            .chars()
            .map(|c| {
                KINDS
                    .iter()
                    .find(|&&(_, letter, _)| letter == c)
                    .map(|&(_, _, k)| k)
                    .ok_or_else(|| bad(format!("unknown sampler letter `{c}`")))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| {
                let name = n
                    .as_str()
                    .ok_or_else(|| bad(format!("{n} is not a name")))?;
                kind_named(name).ok_or_else(|| {
                    bad(format!(
                        "unknown sampler `{name}` (known: {})",
                        KINDS.map(|(n, _, _)| n).join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "a list of names or a string of letters, got {other}"
            )))
        }
    };
    Ok(Some(Chain(kinds)))
}

/// llama.cpp's name, or one of its aliases (kebab-case, without underscores, `nucleus`,
/// `temp`, `typ`, `typical_p`).
fn kind_named(name: &str) -> Option<Kind> {
    let plain = name.to_ascii_lowercase().replace(['-', '_'], "");
    let alias = match plain.as_str() {
        "nucleus" => Some(Kind::Stage(Stage::TopP)),
        "temp" => Some(Kind::Stage(Stage::Temperature)),
        "typ" | "typicalp" => Some(Kind::Stage(Stage::TypicalP)),
        _ => None,
    };
    alias.or_else(|| {
        KINDS
            .iter()
            .find(|(n, _, _)| n.replace('_', "") == plain)
            .map(|&(_, _, k)| k)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(samplers: Value, s: &SamplingParams) -> Result<(SamplingParams, bool), ApiError> {
        let mut s = s.clone();
        let chain = chain(Some(&samplers))?.unwrap();
        let needs = chain.apply(&mut s)?;
        Ok((s, needs.dry))
    }

    #[test]
    fn names_letters_and_aliases_read_alike() {
        let names = chain(Some(&json!(["top-k", "nucleus", "typ", "MinP", "temp"]))).unwrap();
        let letters = chain(Some(&json!("kpymt"))).unwrap();
        let want = [
            Kind::Stage(Stage::TopK),
            Kind::Stage(Stage::TopP),
            Kind::Stage(Stage::TypicalP),
            Kind::Stage(Stage::MinP),
            Kind::Stage(Stage::Temperature),
        ];
        assert_eq!(names.unwrap().0, want);
        assert_eq!(letters.unwrap().0, want);
        assert_eq!(chain(None).unwrap(), None);
        for bad in [json!(["top_q"]), json!("kz"), json!(3), json!([1])] {
            let e = chain(Some(&bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("samplers"), "{bad}");
        }
        assert_eq!(Chain::llama_cpp().names().last(), Some(&"temperature"));
    }

    #[test]
    fn samplers_left_out_are_off_and_the_temperature_is_placed() {
        let sent = SamplingParams {
            top_k: 40,
            top_p: 0.9,
            min_p: 0.05,
            xtc_probability: 0.5,
            ..Default::default()
        };
        let (s, dry) = applied(json!(["top_k", "min_p", "temperature"]), &sent).unwrap();
        assert_eq!(
            (s.top_k, s.top_p, s.min_p, s.xtc_probability),
            (40, 1.0, 0.05, 0.0)
        );
        assert!(s.temperature_last && !dry);
        let (s, dry) = applied(json!(["dry", "temperature", "top_p", "top_k"]), &sent).unwrap();
        assert!(!s.temperature_last && dry);
        // top-k does not read probabilities: it may stand on either side.
        let (s, _) = applied(json!(["top_k", "temperature", "top_p"]), &sent).unwrap();
        assert!(!s.temperature_last);
        // Orders the fixed pipeline cannot follow run stage by stage.
        let (s, _) = applied(json!(["top_p", "temperature", "min_p"]), &sent).unwrap();
        assert_eq!(
            s.order.as_deref(),
            Some(&[Stage::TopP, Stage::Temperature, Stage::MinP][..])
        );
        let (s, _) = applied(json!(["top_p", "top_k"]), &sent).unwrap();
        assert_eq!(s.order.as_deref(), Some(&[Stage::TopP, Stage::TopK][..]));
        let (s, _) = applied(json!(["top_k", "top_p", "min_p", "temperature"]), &sent).unwrap();
        assert_eq!(s.order, None);
        // A stage that is off has no place to keep: min-p before top-p with top-p at 1.
        let no_top_p = SamplingParams {
            top_p: 1.0,
            ..sent.clone()
        };
        let (s, _) = applied(json!(["min_p", "top_p", "top_k"]), &no_top_p).unwrap();
        assert_eq!(s.order.as_deref(), Some(&[Stage::MinP, Stage::TopK][..]));
        let e = applied(json!(["top_p", "top_k", "infill"]), &sent).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("samplers"));
        // llama.vim's list: no temperature sampler, a draw at 1.
        let hot = SamplingParams {
            temperature: 0.8,
            ..sent.clone()
        };
        let (s, _) = applied(json!(["top_k", "top_p", "infill"]), &hot).unwrap();
        assert_eq!(
            (s.top_k, s.top_p, s.min_p, s.temperature),
            (40, 0.9, 0.0, 1.0)
        );
        let needs = chain(Some(&json!("kpi")))
            .unwrap()
            .unwrap()
            .apply(&mut hot.clone());
        assert!(needs.unwrap().infill);
    }
}
