//! Latency percentiles and the per-level summary of a load run.
use serde::Serialize;

/// p50/p95/p99 and mean of a sample, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// The value at quantile `q` (0..=1) of sorted data, linearly interpolated between ranks.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Percentiles {
                mean: f64::NAN,
                p50: f64::NAN,
                p95: f64::NAN,
                p99: f64::NAN,
            };
        }
        values.sort_by(f64::total_cmp);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Percentiles {
            mean,
            p50: quantile(&values, 0.50),
            p95: quantile(&values, 0.95),
            p99: quantile(&values, 0.99),
        }
    }
}

/// What one concurrency level measured.
#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    /// First error messages (at most a few), to tell what went wrong.
    pub error_samples: Vec<String>,
    pub duration_s: f64,
    pub output_tokens: usize,
    /// Output tokens per second over all clients (the serving throughput).
    pub output_tok_s: f64,
    pub requests_per_s: f64,
    pub ttft_ms: Percentiles,
    /// Mean time per output token after the first, per request.
    pub tpot_ms: Percentiles,
    /// Gaps between consecutive streamed chunks.
    pub itl_ms: Percentiles,
    /// Tokens the server drafted and kept during the level (speculative decoding), from its
    /// `/metrics`; None when it exports no such counters.
    pub drafts: Option<super::DraftCounts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!((quantile(&v, 0.95) - 4.8).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn percentiles_ignore_non_finite_values_and_sort() {
        let p = Percentiles::of(vec![3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(p.mean, 2.0);
        assert_eq!(p.p50, 2.0);
        assert!(Percentiles::of(vec![]).p50.is_nan());
    }
}
