//! Projections for devices nobody measured: the efficiency (MBU, MFU) a measured device reached,
//! applied to another device's roofs from the spec database. A projection is a statement of
//! "if it were as well used as the measured device", never a measurement; reports label it so.
use super::experts::ExpertShape;
use super::roofline;

/// What the model costs per token (the bytes a decoded token reads depend on the test: see
/// [`decode`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    pub weight_bytes: f64,
    pub flops_per_token: f64,
    /// A mixture of experts reads only the experts its tokens chose (with the parameters
    /// they are a share of): see [`super::experts`].
    pub experts: Option<(ExpertShape, f64)>,
}

impl Workload {
    /// A model of `parameters` stored in `weight_bytes`, with its experts if it has some.
    pub fn of_model(weight_bytes: f64, parameters: f64, experts: Option<ExpertShape>) -> Self {
        let active = experts.map_or(parameters, |e| e.active_parameters(parameters));
        Workload {
            weight_bytes,
            flops_per_token: roofline::flops_per_token(active),
            experts: experts.map(|e| (e, parameters)),
        }
    }

    /// Weight bytes a step of `tokens` tokens reads: all of them for a dense model.
    pub fn weight_bytes_read(&self, tokens: usize) -> f64 {
        match self.experts {
            Some((e, total)) => self.weight_bytes * e.read_fraction(total, tokens),
            None => self.weight_bytes,
        }
    }
}

/// The roofs of the device projected onto.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub bandwidth_bytes_s: Option<f64>,
    pub peak_flops: Option<f64>,
    pub memory_bytes: Option<f64>,
}

/// Which roof limits a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Bandwidth,
    Compute,
}

impl Bound {
    pub fn label(self) -> &'static str {
        match self {
            Bound::Bandwidth => "bandwidth-bound",
            Bound::Compute => "compute-bound",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Projection {
    TokS {
        tok_s: f64,
        bound: Bound,
    },
    /// The weights alone exceed the device's memory.
    DoesNotFit,
    /// The spec database lacks the roof this regime needs.
    NoRoof(&'static str),
}

impl Projection {
    pub fn tok_s(&self) -> Option<f64> {
        match self {
            Projection::TokS { tok_s, .. } => Some(*tok_s),
            _ => None,
        }
    }
}

fn fits(w: &Workload, t: &Target) -> bool {
    t.memory_bytes.is_none_or(|m| w.weight_bytes <= m)
}

/// Prefill tok/s in chunks of `chunk` tokens at the measured MFU, capped by the bandwidth roof
/// at the measured MBU when known (a short prompt reads every weight for few tokens, which is
/// bandwidth-bound on devices whose ridge is high).
pub fn prefill(w: &Workload, chunk: usize, mfu: f64, mbu: Option<f64>, t: &Target) -> Projection {
    if !fits(w, t) {
        return Projection::DoesNotFit;
    }
    let Some(peak) = t.peak_flops else {
        return Projection::NoRoof("peak FLOPS at this dtype");
    };
    let by_compute = mfu * peak / w.flops_per_token;
    let bytes = roofline::prefill_bytes_per_token(w.weight_bytes_read(chunk), chunk);
    let by_bandwidth = mbu.zip(t.bandwidth_bytes_s).map(|(e, bw)| e * bw / bytes);
    lower(
        (by_compute, Bound::Compute),
        by_bandwidth.map(|b| (b, Bound::Bandwidth)),
    )
}

/// The lower of a regime's roof and an optional second roof.
fn lower(main: (f64, Bound), cap: Option<(f64, Bound)>) -> Projection {
    let (tok_s, bound) = match cap {
        Some(c) if c.0 < main.0 => c,
        _ => main,
    };
    Projection::TokS { tok_s, bound }
}

/// Aggregate decode tok/s at the measured MBU, for a test whose tokens each read
/// `bytes_per_token` (the same bytes the MBU was measured with: see
/// [`roofline::decode_bytes_per_token`]), capped by the compute roof at the measured prefill MFU
/// when both are known (large batches turn compute-bound).
pub fn decode(
    w: &Workload,
    bytes_per_token: f64,
    mbu: f64,
    mfu: Option<f64>,
    t: &Target,
) -> Projection {
    if !fits(w, t) {
        return Projection::DoesNotFit;
    }
    let Some(bw) = t.bandwidth_bytes_s else {
        return Projection::NoRoof("memory bandwidth");
    };
    let by_bandwidth = mbu * bw / bytes_per_token;
    let by_compute = mfu
        .zip(t.peak_flops)
        .map(|(e, peak)| e * peak / w.flops_per_token);
    lower(
        (by_bandwidth, Bound::Bandwidth),
        by_compute.map(|c| (c, Bound::Compute)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Workload = Workload {
        weight_bytes: 0.5e9,
        flops_per_token: 1.0e9,
        experts: None,
    };
    /// Batch-1 decode reading the weights and no cache.
    const B1: f64 = 0.5e9;

    fn target(bw: f64, peak: Option<f64>) -> Target {
        Target {
            bandwidth_bytes_s: Some(bw),
            peak_flops: peak,
            memory_bytes: Some(80e9),
        }
    }

    #[test]
    fn decode_scales_with_bandwidth_at_the_measured_utilisation() {
        // Measured: 50% of 40 GB/s. Target: 3.35 TB/s → 0.5 × 3.35e12 / 0.5e9 = 3350 tok/s.
        let p = decode(&W, B1, 0.5, None, &target(3.35e12, None));
        assert_eq!(
            p,
            Projection::TokS {
                tok_s: 3350.0,
                bound: Bound::Bandwidth
            }
        );
        // A test that reads as many KV bytes as weight bytes per token runs at half the speed.
        let with_kv = roofline::decode_bytes_per_token(W.weight_bytes, 0.5e9, 1);
        assert_eq!(
            decode(&W, with_kv, 0.5, None, &target(3.35e12, None)).tok_s(),
            Some(1675.0)
        );
        // The ratio of two projections is the ratio of their bandwidths, whatever the MBU.
        let a = decode(&W, B1, 0.3, None, &target(3.2e12, None))
            .tok_s()
            .unwrap();
        let b = decode(&W, B1, 0.3, None, &target(3.35e12, None))
            .tok_s()
            .unwrap();
        assert!((a / b - 3.2 / 3.35).abs() < 1e-12);
    }

    #[test]
    fn large_batches_hit_the_compute_roof() {
        // 256 sequences: bandwidth would allow 0.5 × 2e12 × 256 / 0.5e9 = 512000 tok/s, but 20%
        // of 100 TFLOPS at 1 GFLOP/token is 20000.
        let t = target(2e12, Some(100e12));
        let b256 = roofline::decode_bytes_per_token(W.weight_bytes, 0.0, 256);
        let p = decode(&W, b256, 0.5, Some(0.2), &t);
        assert_eq!(
            p,
            Projection::TokS {
                tok_s: 20000.0,
                bound: Bound::Compute
            }
        );
        assert_eq!(
            prefill(&W, 512, 0.2, Some(0.5), &t),
            Projection::TokS {
                tok_s: 20000.0,
                bound: Bound::Compute
            }
        );
        // A 4-token prompt reads the weights for only 4 tokens: 0.5 × 2e12 × 4 / 0.5e9 = 8000.
        assert_eq!(
            prefill(&W, 4, 0.2, Some(0.5), &t),
            Projection::TokS {
                tok_s: 8000.0,
                bound: Bound::Bandwidth
            }
        );
    }

    #[test]
    fn missing_roofs_and_small_memories_are_reported_not_guessed() {
        let no_peak = target(1e12, None);
        assert!(matches!(
            prefill(&W, 512, 0.2, None, &no_peak),
            Projection::NoRoof(_)
        ));
        let no_bw = Target {
            bandwidth_bytes_s: None,
            ..no_peak
        };
        assert!(matches!(
            decode(&W, B1, 0.5, None, &no_bw),
            Projection::NoRoof(_)
        ));
        let tiny = Target {
            memory_bytes: Some(0.1e9),
            ..target(1e12, Some(1e12))
        };
        assert_eq!(decode(&W, B1, 0.5, None, &tiny), Projection::DoesNotFit);
        assert_eq!(prefill(&W, 512, 0.5, None, &tiny), Projection::DoesNotFit);
    }
}
