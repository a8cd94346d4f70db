//! Published performance claims and how a report judges them: the claimed ratio against the
//! ratio of the two devices' roofs in each regime (compute-bound prefill and large-batch
//! decode, bandwidth-bound batch-1 decode), plus a method checklist per claim.
use super::specs::{DeviceSpec, Dtype};
use serde::Deserialize;
use thiserror::Error;

const BUILTIN: &str = include_str!("data/claims.toml");

/// What any claim of relative performance must pin down; every claim answers each item.
pub const CHECKLIST: [&str; 5] = [
    "Same weights and precision",
    "Prefill vs decode split",
    "Concurrency sweep",
    "Die vs package",
    "Accuracy parity",
];

#[derive(Debug, Error)]
pub enum ClaimError {
    #[error("cannot read the claims file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("claims {origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("claims {origin}, claim `{claim}`: {problem}")]
    Invalid {
        origin: String,
        claim: String,
        problem: String,
    },
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    NotMet,
    Unknown,
    NotApplicable,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::NotMet => "not met",
            Status::Unknown => "unknown",
            Status::NotApplicable => "n/a",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckItem {
    pub item: String,
    pub status: Status,
    pub note: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub id: String,
    pub statement: String,
    pub said_by: String,
    pub source_title: String,
    pub source_url: Option<String>,
    pub date: String,
    /// `inference` or `training`.
    pub scope: String,
    pub subject: String,
    pub baseline: String,
    pub claimed_ratio: f64,
    pub from_ratio: Option<f64>,
    pub context: String,
    pub checklist: Vec<CheckItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsDb {
    #[serde(rename = "claim")]
    pub claims: Vec<Claim>,
}

impl ClaimsDb {
    pub fn builtin() -> Result<ClaimsDb, ClaimError> {
        ClaimsDb::parse(BUILTIN, "(built in)")
    }

    pub fn from_file(path: &std::path::Path) -> Result<ClaimsDb, ClaimError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClaimError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ClaimsDb::parse(&text, &path.display().to_string())
    }

    /// Parse and check that every claim is sourced, dated, and answers the whole checklist.
    pub fn parse(text: &str, origin: &str) -> Result<ClaimsDb, ClaimError> {
        let db: ClaimsDb = toml::from_str(text).map_err(|e| ClaimError::Parse {
            origin: origin.to_string(),
            source: Box::new(e),
        })?;
        for c in &db.claims {
            let invalid = |problem: String| ClaimError::Invalid {
                origin: origin.to_string(),
                claim: c.id.clone(),
                problem,
            };
            if c.source_title.trim().is_empty() || c.date.trim().is_empty() {
                return Err(invalid("needs a source title and a date".into()));
            }
            let ratios = std::iter::once(c.claimed_ratio).chain(c.from_ratio);
            if ratios.into_iter().any(|r| !(r.is_finite() && r > 0.0)) {
                return Err(invalid("ratios must be above 0".into()));
            }
            for item in CHECKLIST {
                if !c.checklist.iter().any(|i| i.item == item) {
                    return Err(invalid(format!("checklist lacks `{item}`")));
                }
            }
        }
        Ok(db)
    }
}

/// The regimes a claim of "X% of the performance" can mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// Prompt processing: compute-bound.
    Prefill,
    /// One sequence generating: every weight read per token, bandwidth-bound.
    DecodeBatch1,
    /// Many sequences generating together: compute-bound past the ridge, and limited by how
    /// many sequences' caches fit in memory.
    DecodeLargeBatch,
}

impl Regime {
    pub const ALL: [Regime; 3] = [
        Regime::Prefill,
        Regime::DecodeBatch1,
        Regime::DecodeLargeBatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Regime::Prefill => "prefill (compute-bound)",
            Regime::DecodeBatch1 => "decode, batch 1 (bandwidth-bound)",
            Regime::DecodeLargeBatch => "decode, large batch (compute-bound)",
        }
    }
}

/// The ratio of two devices' roofs in a regime, with what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct RoofRatio {
    pub ratio: Option<f64>,
    pub basis: String,
}

/// Floating-point formats both devices publish, in order of preference for a like-for-like
/// comparison.
const SAME_PRECISION: [Dtype; 3] = [Dtype::Bf16, Dtype::Fp16, Dtype::Fp32];

fn compute_ratio(subject: &DeviceSpec, baseline: &DeviceSpec) -> RoofRatio {
    for d in SAME_PRECISION {
        if let (Some(s), Some(b)) = (subject.peak_tflops(d, None), baseline.peak_tflops(d, None)) {
            return RoofRatio {
                ratio: Some(s / b),
                basis: format!(
                    "dense {} peak {s} / {b} {}",
                    d.key().to_uppercase(),
                    d.unit()
                ),
            };
        }
    }
    RoofRatio {
        ratio: None,
        basis: "no floating-point peak published for both".into(),
    }
}

/// The ratio when each device runs its fastest floating-point format (FP8 where it has one):
/// what a throughput comparison without precision parity measures.
pub fn best_precision_ratio(subject: &DeviceSpec, baseline: &DeviceSpec) -> RoofRatio {
    let best = |d: &DeviceSpec| {
        [Dtype::Fp8, Dtype::Bf16, Dtype::Fp16]
            .into_iter()
            .filter_map(|t| d.peak_tflops(t, None).map(|p| (p, t)))
            // The first of equal peaks wins (BF16 over FP16).
            .fold(None, |best: Option<(f64, Dtype)>, x| match best {
                Some(b) if b.0 >= x.0 => Some(b),
                _ => Some(x),
            })
    };
    match (best(subject), best(baseline)) {
        (Some((s, ts)), Some((b, tb))) => RoofRatio {
            ratio: Some(s / b),
            basis: format!(
                "{} {s} / {} {b} TFLOPS",
                ts.key().to_uppercase(),
                tb.key().to_uppercase()
            ),
        },
        _ => RoofRatio {
            ratio: None,
            basis: "no floating-point peak published for both".into(),
        },
    }
}

/// The ratio of the roofs that bound `regime`, at the same precision.
pub fn roof_ratio(regime: Regime, subject: &DeviceSpec, baseline: &DeviceSpec) -> RoofRatio {
    match regime {
        Regime::Prefill | Regime::DecodeLargeBatch => compute_ratio(subject, baseline),
        Regime::DecodeBatch1 => match (subject.bandwidth_gbs, baseline.bandwidth_gbs) {
            (Some(s), Some(b)) => RoofRatio {
                ratio: Some(s / b),
                basis: format!("memory bandwidth {s} / {b} GB/s"),
            },
            _ => RoofRatio {
                ratio: None,
                basis: "memory bandwidth not published for both".into(),
            },
        },
    }
}

/// A claimed ratio held against the roof ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    /// The hardware allows it; the subject must reach `needed` × the baseline's efficiency.
    WithinRoof {
        needed: f64,
    },
    /// The claim exceeds what the roofs allow: only possible with the baseline under-used
    /// (at most `baseline_at_most` × the subject's efficiency), or a different workload.
    AboveRoof {
        baseline_at_most: f64,
    },
    Unknown,
}

pub fn judge(claimed: f64, roof: Option<f64>) -> Judgement {
    match roof {
        Some(r) if r > 0.0 && claimed <= r => Judgement::WithinRoof {
            needed: claimed / r,
        },
        Some(r) if r > 0.0 => Judgement::AboveRoof {
            baseline_at_most: r / claimed,
        },
        _ => Judgement::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::specs::SpecDb;

    #[test]
    fn builtin_claims_are_sourced_and_answer_the_checklist() {
        let claims = ClaimsDb::builtin().unwrap();
        let specs = SpecDb::builtin().unwrap();
        assert!(claims.claims.len() >= 2);
        for c in &claims.claims {
            assert!(specs.find(&c.subject).is_some(), "{}", c.subject);
            assert!(specs.find(&c.baseline).is_some(), "{}", c.baseline);
        }
        let bad = BUILTIN.replacen("item = \"Accuracy parity\"", "item = \"Vibes\"", 1);
        let e = ClaimsDb::parse(&bad, "t").unwrap_err().to_string();
        assert!(e.contains("lacks `Accuracy parity`"), "{e}");
    }

    #[test]
    fn roof_ratios_per_regime_for_910c_against_h100() {
        let specs = SpecDb::builtin().unwrap();
        let (c, h) = (specs.find("910c").unwrap(), specs.find("h100").unwrap());
        let pf = roof_ratio(Regime::Prefill, c, h).ratio.unwrap();
        assert!((pf - 780.0 / 989.5).abs() < 1e-12);
        let d1 = roof_ratio(Regime::DecodeBatch1, c, h).ratio.unwrap();
        assert!((d1 - 3200.0 / 3350.0).abs() < 1e-12);
        // Without precision parity the H100 runs FP8: 780 / 1979.
        let best = best_precision_ratio(c, h).ratio.unwrap();
        assert!((best - 780.0 / 1979.0).abs() < 1e-12);
        let mlu = specs.find("mlu590").unwrap();
        assert_eq!(roof_ratio(Regime::DecodeBatch1, mlu, h).ratio, None);
    }

    #[test]
    fn judgement_says_what_efficiency_a_claim_implies() {
        assert_eq!(
            judge(0.5, Some(0.8)),
            Judgement::WithinRoof { needed: 0.625 }
        );
        assert_eq!(
            judge(0.8, Some(0.4)),
            Judgement::AboveRoof {
                baseline_at_most: 0.5
            }
        );
        assert_eq!(judge(0.6, None), Judgement::Unknown);
    }
}
