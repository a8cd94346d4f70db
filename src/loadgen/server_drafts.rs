//! The speculative-decoding counters a server exports at `/metrics` (candor's and vLLM's have
//! the same names after their prefix), read before and after a level so that its result says
//! how many tokens came from kept drafts: a server that drafts serves repetitive text faster,
//! which a hardware comparison must not credit to the hardware.
use serde::{Deserialize, Serialize};

/// Drafted and kept tokens (a level's: the difference of the counters around it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftCounts {
    pub drafted: u64,
    pub kept: u64,
}

const DRAFTED: &str = "spec_decode_num_draft_tokens_total";
const KEPT: &str = "spec_decode_num_accepted_tokens_total";

impl DraftCounts {
    /// What was counted between `before` and `self`.
    pub fn since(self, before: DraftCounts) -> DraftCounts {
        DraftCounts {
            drafted: self.drafted.saturating_sub(before.drafted),
            kept: self.kept.saturating_sub(before.kept),
        }
    }
}

/// The draft counters of a Prometheus text exposition, summed over label sets; None when the
/// server exports neither (it does not draft, or says nothing of it).
pub fn parse_draft_counters(text: &str) -> Option<DraftCounts> {
    let (mut drafted, mut kept) = (None::<f64>, None::<f64>);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.trim().rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let metric = name.rsplit(':').next().unwrap_or(name);
        let slot = match metric {
            DRAFTED => &mut drafted,
            KEPT => &mut kept,
            _ => continue,
        };
        if let Ok(v) = value.parse::<f64>() {
            *slot = Some(slot.unwrap_or(0.0) + v);
        }
    }
    if drafted.is_none() && kept.is_none() {
        return None;
    }
    let count = |v: Option<f64>| v.unwrap_or(0.0).max(0.0) as u64;
    Some(DraftCounts {
        drafted: count(drafted),
        kept: count(kept),
    })
}

/// The server's draft counters now; None when `/metrics` does not answer or has none.
pub async fn draft_counters(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
) -> Option<DraftCounts> {
    let mut req = client.get(format!("{}/metrics", url.trim_end_matches('/')));
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    parse_draft_counters(&resp.text().await.ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_candor_and_vllm_counters_and_nothing_else() {
        let candor = "# HELP candor:spec_decode_num_draft_tokens_total Tokens drafted.\n\
                      # TYPE candor:spec_decode_num_draft_tokens_total counter\n\
                      candor:spec_decode_num_draft_tokens_total 120\n\
                      candor:spec_decode_num_accepted_tokens_total 90\n\
                      candor:spec_decode_num_drafts_total 40\n";
        assert_eq!(
            parse_draft_counters(candor),
            Some(DraftCounts {
                drafted: 120,
                kept: 90
            })
        );
        let vllm = "vllm:spec_decode_num_draft_tokens_total{engine=\"0\",model_name=\"q\"} 10.0\n\
                    vllm:spec_decode_num_draft_tokens_total{engine=\"1\",model_name=\"q\"} 5.0\n\
                    vllm:spec_decode_num_accepted_tokens_total{engine=\"0\",model_name=\"q\"} 7.0\n";
        assert_eq!(
            parse_draft_counters(vllm),
            Some(DraftCounts {
                drafted: 15,
                kept: 7
            })
        );
        assert_eq!(
            parse_draft_counters("llamacpp:tokens_predicted_total 100\n"),
            None
        );
        let after = DraftCounts {
            drafted: 150,
            kept: 100,
        };
        let before = DraftCounts {
            drafted: 120,
            kept: 90,
        };
        assert_eq!(
            after.since(before),
            DraftCounts {
                drafted: 30,
                kept: 10
            }
        );
    }
}
