//! DRY's request fields under llama-server's names (`dry_multiplier`, `dry_base`,
//! `dry_allowed_length`, `dry_penalty_last_n`, `dry_sequence_breakers`) and its sequence
//! breakers as sets of tokens: every token whose text holds one of the breaker strings (a
//! `\n\n` token breaks as `\n` does). The sets are built from the vocabulary once per list
//! and kept: a 150k vocabulary takes a few milliseconds to scan.
use super::error::ApiError;
use super::openai::LlamaSamplers;
use crate::engine::dry::{Breakers, DryParams};
use candor_models::tokenizer::Tokenizer;
use std::sync::{Arc, Mutex};

/// llama.cpp's defaults.
const DEFAULT_BASE: f64 = 1.75;
const DEFAULT_ALLOWED_LENGTH: i64 = 2;
const DEFAULT_BREAKERS: [&str; 4] = ["\n", ":", "\"", "*"];
/// Most breaker strings a request may send.
const MAX_BREAKERS: usize = 32;
/// Breaker lists whose token sets are kept.
const KEPT_SETS: usize = 8;

/// A request's DRY, checked; the breakers' tokens come later.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRequest {
    multiplier: f32,
    base: f32,
    allowed_length: usize,
    last_n: Option<usize>,
    breakers: Vec<String>,
}

/// DRY as the request asks, or None when off (`dry_multiplier` absent or 0, or
/// `dry_penalty_last_n` 0, as in llama.cpp).
pub fn dry_request(p: &LlamaSamplers) -> Result<Option<DryRequest>, ApiError> {
    let multiplier = match p.dry_multiplier {
        None => return Ok(None),
        Some(m) if (0.0..=1000.0).contains(&m) => m,
        Some(m) => {
            return Err(bad(
                "dry_multiplier",
                format!("must be in [0, 1000], got {m}"),
            ))
        }
    };
    let base = match p.dry_base.unwrap_or(DEFAULT_BASE) {
        b if b.is_finite() && (1.0..=100.0).contains(&b) => b,
        b => return Err(bad("dry_base", format!("must be in [1, 100], got {b}"))),
    };
    let allowed_length = match p.dry_allowed_length.unwrap_or(DEFAULT_ALLOWED_LENGTH) {
        n if n >= 0 => n as usize,
        n => return Err(bad("dry_allowed_length", format!("must be >= 0, got {n}"))),
    };
    let last_n = match p.dry_penalty_last_n.unwrap_or(-1) {
        -1 => None,
        n if n >= 0 => Some(n as usize),
        n => {
            return Err(bad(
                "dry_penalty_last_n",
                format!("must be -1 (all) or >= 0, got {n}"),
            ))
        }
    };
    let breakers = match &p.dry_sequence_breakers {
        None => default_breakers(),
        Some(list) if list.len() > MAX_BREAKERS => {
            return Err(bad(
                "dry_sequence_breakers",
                format!("at most {MAX_BREAKERS} strings, got {}", list.len()),
            ))
        }
        Some(list) if list.iter().any(String::is_empty) => {
            return Err(bad(
                "dry_sequence_breakers",
                "an empty string breaks nothing".into(),
            ))
        }
        Some(list) => list.clone(),
    };
    if multiplier == 0.0 || last_n == Some(0) {
        return Ok(None);
    }
    Ok(Some(DryRequest {
        multiplier: multiplier as f32,
        base: base as f32,
        allowed_length,
        last_n,
        breakers,
    }))
}

fn bad(param: &str, why: String) -> ApiError {
    ApiError::invalid(param, format!("`{param}` {why}"))
}

impl DryRequest {
    /// The engine's DRY, with the breakers' tokens.
    pub fn params(&self, breakers: Breakers) -> Arc<DryParams> {
        Arc::new(DryParams {
            multiplier: self.multiplier,
            base: self.base,
            allowed_length: self.allowed_length,
            last_n: self.last_n,
            breakers,
        })
    }

    pub fn breaker_strings(&self) -> &[String] {
        &self.breakers
    }
}

/// llama.cpp's default breakers, whose set a server builds at its start (`warm_up`).
pub fn default_breakers() -> Vec<String> {
    DEFAULT_BREAKERS.iter().map(|s| s.to_string()).collect()
}

/// Build the vocabulary's bytes and the default breakers' set off the request path, so the
/// first DRY request does not spend ~70 ms of an async worker on them.
pub fn warm_up(sets: &BreakerSets, tokenizer: &Tokenizer) {
    sets.of(tokenizer, &default_breakers());
}

/// The token sets of breaker lists, built from the vocabulary's bytes on first use.
#[derive(Default)]
pub struct BreakerSets {
    kept: Mutex<Vec<(Vec<String>, Breakers)>>,
}

impl BreakerSets {
    /// The tokens whose text holds one of `strings`.
    pub fn of(&self, tokenizer: &Tokenizer, strings: &[String]) -> Breakers {
        // A poisoned lock only means another request panicked while holding it.
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, set)) = kept.iter().find(|(s, _)| s == strings) {
            return set.clone();
        }
        let set = Breakers(Arc::new(
            tokenizer
                .token_bytes()
                .iter()
                .map(|t| strings.iter().any(|s| contains(&t.bytes, s.as_bytes())))
                .collect(),
        ));
        if kept.len() == KEPT_SETS {
            kept.remove(0);
        }
        kept.push((strings.to_vec(), set.clone()));
        set
    }
}

fn contains(text: &[u8], needle: &[u8]) -> bool {
    text.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_a_multiplier_is_sent() {
        assert_eq!(dry_request(&LlamaSamplers::default()).unwrap(), None);
        let zero = LlamaSamplers {
            dry_multiplier: Some(0.0),
            ..Default::default()
        };
        assert_eq!(dry_request(&zero).unwrap(), None);
        let on = LlamaSamplers {
            dry_multiplier: Some(0.8),
            ..Default::default()
        };
        let d = dry_request(&on).unwrap().unwrap();
        assert_eq!((d.base, d.allowed_length, d.last_n), (1.75, 2, None));
        assert_eq!(d.breaker_strings(), ["\n", ":", "\"", "*"]);
        let no_window = LlamaSamplers {
            dry_penalty_last_n: Some(0),
            ..on.clone()
        };
        assert_eq!(dry_request(&no_window).unwrap(), None);
    }

    #[test]
    fn bad_values_name_their_field() {
        let on = LlamaSamplers {
            dry_multiplier: Some(0.8),
            ..Default::default()
        };
        for (p, field) in [
            (
                LlamaSamplers {
                    dry_multiplier: Some(-1.0),
                    ..Default::default()
                },
                "dry_multiplier",
            ),
            (
                LlamaSamplers {
                    dry_base: Some(0.5),
                    ..on.clone()
                },
                "dry_base",
            ),
            (
                LlamaSamplers {
                    dry_allowed_length: Some(-2),
                    ..on.clone()
                },
                "dry_allowed_length",
            ),
            (
                LlamaSamplers {
                    dry_penalty_last_n: Some(-5),
                    ..on.clone()
                },
                "dry_penalty_last_n",
            ),
            (
                LlamaSamplers {
                    dry_sequence_breakers: Some(vec![String::new()]),
                    ..on.clone()
                },
                "dry_sequence_breakers",
            ),
        ] {
            let e = dry_request(&p).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field));
        }
    }

    #[test]
    fn breaker_strings_match_inside_a_token() {
        assert!(contains(b"a:\n", b"\n") && !contains(b"ab", b"abc"));
    }
}
