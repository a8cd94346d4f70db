//! Pointwise activations (GLU with SiLU, tanh-GELU, exact GELU, ReLU or squared ReLU, logit soft-capping) and the elementwise
//! add/mul/scale, on slices.
//!
//! `exp` is a polynomial (Cephes-style range reduction, max relative error ~2e-7 in the range
//! that matters) written so the compiler vectorizes it: libm's scalar `expf`/`tanhf` were a
//! tenth of a Gemma prefill. Each op is compiled twice, for the baseline ISA and for AVX2+FMA,
//! and picks one at run time.
use crate::rows::for_each_chunk;

/// The activation of a gated linear unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `g · sigmoid(g)`.
    Silu,
    /// `0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))` (`gelu_pytorch_tanh`).
    GeluTanh,
    /// `0.5·g·(1 + erf(g/√2))`, the exact GELU (`gelu`).
    GeluErf,
    /// `max(g, 0)²`, the squared ReLU (`relu2`).
    Relu2,
    /// `max(g, 0)`, the ReLU (`relu`).
    Relu,
    /// gpt-oss's clamped SwiGLU: `g · sigmoid(1.702·g) · (u + 1)` with `g = min(gate, 7)`,
    /// `u = clamp(up, -7, 7)`, the up factor included (`glu` computes `act(g, u)` whole).
    SwigluOai,
}

/// `Act::SwigluOai`'s sigmoid slope and clamp (the model's constants, in no config).
const SWIGLU_OAI_ALPHA: f32 = 1.702;
const SWIGLU_OAI_LIMIT: f32 = 7.0;

/// `Act::SwigluOai` of one gate and up value.
#[inline(always)]
fn swiglu_oai(g: f32, u: f32) -> f32 {
    let g = g.min(SWIGLU_OAI_LIMIT);
    let u = u.clamp(-SWIGLU_OAI_LIMIT, SWIGLU_OAI_LIMIT);
    g / (1.0 + exp(-SWIGLU_OAI_ALPHA * g)) * (u + 1.0)
}

/// e^x for finite x; below e^-87.3 the result is a tiny positive number instead of 0, above
/// e^88.3 it saturates at ~2^127 (callers only divide by 1 + e^x).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a rounding
    // instruction (SSE2 has none), and vectorizes.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let k = shifted - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    // e^r on [-ln2/2, ln2/2].
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^k from the bits: `shifted` holds ROUND + k exactly (one ulp is 1 there), so its bits
    // minus ROUND's are k. Integer operations vectorize; `k as i32` (a saturating cast) made
    // LLVM convert the lanes one at a time.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    er * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

#[inline(always)]
fn silu(g: f32) -> f32 {
    g / (1.0 + exp(-g))
}

/// `0.5·g·(1 + tanh(z))` written as `g · sigmoid(2z)`: the same value without the
/// cancellation of `1 + tanh(z)` near -1.
#[inline(always)]
pub(crate) fn gelu_tanh(g: f32) -> f32 {
    const K: f32 = 0.797_884_6; // √(2/π)
    let z = K * (g + 0.044_715 * g * g * g);
    g / (1.0 + exp(-2.0 * z))
}

#[inline(always)]
pub fn tanh(y: f32) -> f32 {
    // 1 − 2/(e^{2y} + 1): exact limits ±1, absolute error ~1e-7 everywhere.
    1.0 - 2.0 / (exp(2.0 * y) + 1.0)
}

/// Whether the CPU can run the AVX2+FMA instances of the pointwise and attention kernels.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether the CPU can also run the AVX-512 instances (AVX2+FMA+F16C and AVX-512F).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    has_avx2_fma()
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("avx512f")
}

/// Run `$body` (a block over the listed slices) compiled for AVX-512 or AVX2+FMA when the CPU
/// has them, else for the baseline ISA: one source, three instances. The instances compute the
/// same bits (Rust never fuses a multiply and an add on its own, and every reduction here sums
/// in a fixed order); AVX-512's sixteen lanes a register halve the instructions and the
/// spills of the 16-lane loops (softmax rows 1.5x faster on a Sapphire Rapids Xeon).
macro_rules! dispatch {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {{
        #[inline(always)]
        fn body($($arg: $ty),*) $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fast($($arg: $ty),*) {
            body($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma,f16c,avx512f")]
        unsafe fn wide($($arg: $ty),*) {
            body($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        {
            if $crate::activation::has_avx512f() {
                // SAFETY: the CPU has the features `wide` is compiled for.
                unsafe { wide($($arg),*) };
                return;
            }
            if $crate::activation::has_avx2_fma() {
                // SAFETY: the CPU has the features `fast` is compiled for.
                unsafe { fast($($arg),*) };
                return;
            }
        }
        body($($arg),*)
    }};
}

/// `out = act(gate) · up`, elementwise.
pub fn glu(gate: &[f32], up: &[f32], act: Act, out: &mut [f32]) {
    assert!(
        gate.len() == up.len() && up.len() == out.len(),
        "glu: sizes differ"
    );
    for_each_chunk(out, |at, o| {
        glu_chunk(&gate[at..at + o.len()], &up[at..at + o.len()], act, o)
    });
}

/// `out = act(x)` elementwise, for the ungated FFNs (GPT-2, OPT, StarCoder2...): the bits `glu`
/// gives with an up of ones (a product by 1 is exact), without making and reading the ones.
/// gpt-oss's SwiGLU is gated: it has no activation alone (its callers refuse it first).
pub fn activate(x: &[f32], act: Act, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "activate: sizes differ");
    assert!(act != Act::SwigluOai, "activate: gpt-oss's SwiGLU is gated");
    for_each_chunk(out, |at, o| activate_chunk(&x[at..at + o.len()], act, o));
}

fn activate_chunk(x: &[f32], act: Act, o: &mut [f32]) {
    match act {
        Act::Silu => dispatch!(silu_alone(x: &[f32], o: &mut [f32]) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = silu(x);
            }
        }),
        Act::GeluTanh => dispatch!(gelu_alone(x: &[f32], o: &mut [f32]) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = gelu_tanh(x);
            }
        }),
        Act::GeluErf => dispatch!(gelu_erf_alone(x: &[f32], o: &mut [f32]) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = gelu_erf(x);
            }
        }),
        Act::Relu2 => dispatch!(relu2_alone(x: &[f32], o: &mut [f32]) {
            for (o, &x) in o.iter_mut().zip(x) {
                let r = x.max(0.0);
                *o = r * r;
            }
        }),
        Act::Relu => dispatch!(relu_alone(x: &[f32], o: &mut [f32]) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = x.max(0.0);
            }
        }),
        Act::SwigluOai => unreachable!("refused by `activate`"),
    }
}

/// `glu` on the calling thread (for callers already inside a parallel task). The same
/// instance as `glu` computes every value, so both give the same bits.
pub fn glu_chunk(g: &[f32], u: &[f32], act: Act, o: &mut [f32]) {
    assert!(
        g.len() == u.len() && u.len() == o.len(),
        "glu: sizes differ"
    );
    match act {
        Act::Silu => dispatch!(silu_glu(g: &[f32], u: &[f32], o: &mut [f32]) {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = silu(g) * u;
            }
        }),
        Act::GeluTanh => dispatch!(gelu_glu(g: &[f32], u: &[f32], o: &mut [f32]) {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = gelu_tanh(g) * u;
            }
        }),
        Act::GeluErf => dispatch!(gelu_erf_glu(g: &[f32], u: &[f32], o: &mut [f32]) {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = gelu_erf(g) * u;
            }
        }),
        Act::Relu2 => dispatch!(relu2_glu(g: &[f32], u: &[f32], o: &mut [f32]) {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                let r = g.max(0.0);
                *o = r * r * u;
            }
        }),
        Act::Relu => dispatch!(relu_glu(g: &[f32], u: &[f32], o: &mut [f32]) {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g.max(0.0) * u;
            }
        }),
        Act::SwigluOai => dispatch!(swiglu_oai_glu(g: &[f32], u: &[f32], o: &mut [f32]) {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = swiglu_oai(g, u);
            }
        }),
    }
}

/// `row`, the scores of the query at `position` against the keys from `first_key` on,
/// replaced by its softmax over the keys at most `window` positions from it, zero elsewhere
/// (`None`: over every key): ModernBERT's local attention, as a softmax after adding -inf
/// outside the window computes it, without a mask to build, add and read (on two cores that
/// add took longer than the score product). A query whose window holds none of the row's keys
/// gets a row of zeros. A row's max is subtracted first; a row of -inf or NaN gives zeros.
pub fn softmax_band_row(row: &mut [f32], position: usize, first_key: usize, window: Option<usize>) {
    let Some(window) = window else {
        return softmax_row(row);
    };
    let first = (position.saturating_sub(window)).saturating_sub(first_key);
    let end = (position + window + 1)
        .saturating_sub(first_key)
        .min(row.len());
    if first >= end {
        row.fill(0.0);
        return;
    }
    row[..first].fill(0.0);
    row[end..].fill(0.0);
    softmax_row(&mut row[first..end]);
}

/// `x` replaced by its softmax on the calling thread.
pub fn softmax_row(x: &mut [f32]) {
    dispatch!(softmax_row_in_place(x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut lanes = [0f32; 16];
        for chunk in x.chunks_mut(16) {
            for (l, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
                *v = weight(*v - max);
                *l += *v;
            }
        }
        let sum: f32 = lanes.iter().sum();
        let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
        for v in x.iter_mut() {
            *v *= inv;
        }
    })
}

/// `0.5·x·(1 + erf(x/√2))`, the exact GELU BERT-style encoders use, erf by Abramowitz and
/// Stegun 7.1.26 (absolute error under 1.5e-7), branch-free so that it vectorizes (candle's
/// scalar erf took as long as the projection before it).
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * exp(-a * a);
    0.5 * x * (1.0 + erf_abs.copysign(z))
}

/// `out = cap · tanh(x / cap)`.
pub fn softcap(x: &[f32], cap: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "softcap: sizes differ");
    for_each_chunk(out, |at, o| {
        let x = &x[at..at + o.len()];
        dispatch!(softcap_chunk(x: &[f32], o: &mut [f32], cap: f32) {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = cap * tanh(v / cap);
            }
        })
    });
}

/// `out = e^((x - max)·scale)`: a row's softmax weights (`scale` the inverse temperature,
/// `max` the row's largest value), exactly 0 below e^-87 (a masked token's -inf, a NaN), so
/// such tokens weigh nothing. On the calling thread: a row is one sampler's, which may run
/// beside others'.
pub fn softmax_weights(x: &[f32], max: f32, scale: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "softmax_weights: sizes differ");
    dispatch!(softmax_weights_row(x: &[f32], out: &mut [f32], max: f32, scale: f32) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = weight((v - max) * scale);
        }
    })
}

/// e^z for a softmax weight, exactly 0 below e^-87 (where `exp` would give a tiny positive
/// number) and for a NaN, which compares false too.
#[inline(always)]
fn weight(z: f32) -> f32 {
    let w = exp(z);
    if z >= -87.0 {
        w
    } else {
        0.0
    }
}

/// `Σ e^(x − max)`: a row's softmax denominator (`max` its largest value), terms below e^-87
/// (a masked -inf, a NaN) counting 0. On the calling thread, summed in 16 lanes.
pub fn sum_exp(x: &[f32], max: f32) -> f32 {
    let mut total = 0.0;
    sum_exp_into(x, max, &mut total);
    total
}

/// `sum_exp` for `dispatch!` (which returns from the function it is in).
fn sum_exp_into(x: &[f32], max: f32, total: &mut f32) {
    dispatch!(sum_exp_row(x: &[f32], max: f32, total: &mut f32) {
        let term = |v: f32| weight(v - max);
        let mut lanes = [0f32; 16];
        let chunks = x.chunks_exact(16);
        let tail: f32 = chunks.remainder().iter().map(|&v| term(v)).sum();
        for chunk in chunks {
            for (l, &v) in lanes.iter_mut().zip(chunk) {
                *l += term(v);
            }
        }
        *total = lanes.iter().sum::<f32>() + tail;
    })
}

/// `out = a + b`, `out = a · b` or `out = a · s`: what the decoder needs between kernels.
#[derive(Debug, Clone, Copy)]
pub enum Binary<'a> {
    Add(&'a [f32]),
    Mul(&'a [f32]),
    Scale(f32),
}

pub fn binary(a: &[f32], op: Binary<'_>, out: &mut [f32]) {
    assert_eq!(a.len(), out.len(), "elementwise: sizes differ");
    if let Binary::Add(b) | Binary::Mul(b) = op {
        assert_eq!(a.len(), b.len(), "elementwise: sizes differ");
    }
    for_each_chunk(out, |at, o| {
        let a = &a[at..at + o.len()];
        match op {
            Binary::Add(b) => o
                .iter_mut()
                .zip(a.iter().zip(&b[at..]))
                .for_each(|(o, (x, y))| *o = x + y),
            Binary::Mul(b) => o
                .iter_mut()
                .zip(a.iter().zip(&b[at..]))
                .for_each(|(o, (x, y))| *o = x * y),
            Binary::Scale(s) => o.iter_mut().zip(a).for_each(|(o, x)| *o = x * s),
        }
    });
}

#[cfg(test)]
mod gelu_tests {
    use super::*;

    /// erf by its series (|x| < 3) or its asymptotic complement, in f64.
    fn erf_reference(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut sum, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt())
                * (1.0 - 1.0 / (2.0 * a * a) + 3.0 / (4.0 * a.powi(4)))
        };
        v.copysign(x)
    }

    #[test]
    fn gelu_is_within_a_few_ulps_of_its_definition() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.005).collect();
        let mut erf = xs.clone();
        crate::encoder::bias_rows(&mut erf, &[0.0], Some(false));
        let mut tanh = xs.clone();
        crate::encoder::bias_rows(&mut tanh, &[0.0], Some(true));
        for ((&x, &e), &t) in xs.iter().zip(&erf).zip(&tanh) {
            let x64 = x as f64;
            let want = 0.5 * x64 * (1.0 + erf_reference(x64 / 2f64.sqrt()));
            assert!(
                (e as f64 - want).abs() < 2e-6 * (1.0 + x64.abs()),
                "erf form at {x}"
            );
            let z = (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
            let want = 0.5 * x64 * (1.0 + z.tanh());
            assert!(
                (t as f64 - want).abs() < 2e-6 * (1.0 + x64.abs()),
                "tanh form at {x}"
            );
        }
        // Large inputs saturate without NaN.
        let mut far = vec![-100.0f32, 100.0];
        crate::encoder::bias_rows(&mut far, &[0.0], Some(false));
        assert_eq!(far, [0.0, 100.0]);
    }

    /// The GLU's exact GELU (GPT-NeoX's FFN) is the encoders' `gelu_erf` times up.
    #[test]
    fn the_exact_gelu_glu_follows_erf() {
        let g: Vec<f32> = (-1500..=1500).map(|i| i as f32 * 0.007).collect();
        let u: Vec<f32> = g.iter().map(|v| 1.0 - v * 0.3).collect();
        let mut out = vec![0f32; g.len()];
        glu(&g, &u, Act::GeluErf, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let x = g as f64;
            let want = 0.5 * x * (1.0 + erf_reference(x / 2f64.sqrt())) * u as f64;
            assert!(
                (o as f64 - want).abs() < 4e-6 * (1.0 + want.abs()),
                "gelu_erf {g}"
            );
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_their_order() {
        let width = 37;
        let mut x: Vec<f32> = (0..width * 3)
            .map(|i| ((i * 7919) % 97) as f32 * 0.1)
            .collect();
        let original = x.clone();
        x.chunks_mut(width).for_each(softmax_row);
        for (row, orig) in x.chunks(width).zip(original.chunks(width)) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{sum}");
            let max = orig.iter().copied().fold(f32::MIN, f32::max);
            let denom: f64 = orig.iter().map(|&v| ((v - max) as f64).exp()).sum();
            for (&p, &v) in row.iter().zip(orig) {
                let want = ((v - max) as f64).exp() / denom;
                assert!((p as f64 - want).abs() < 1e-6, "{p} vs {want}");
            }
        }
        let mut dead = vec![f32::NEG_INFINITY; 4];
        softmax_band_row(&mut dead, 0, 0, None);
        assert_eq!(dead, [0.0; 4]);
    }

    #[test]
    fn a_band_softmax_is_the_softmax_of_the_scores_masked_outside_the_window() {
        // Two heads of 40 positions (more than one task's rows), a window of 3 each side.
        let (heads, width, window) = (2, 40, 3);
        let scores: Vec<f32> = (0..heads * width * width)
            .map(|i| ((i * 7919) % 97) as f32 * 0.05 - 2.0)
            .collect();
        let mut masked = scores.clone();
        for (r, row) in masked.chunks_mut(width).enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                if (r % width).abs_diff(k) > window {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        masked.chunks_mut(width).for_each(softmax_row);
        let mut band = scores;
        // Each row over every key.
        for (r, row) in band.chunks_mut(width).enumerate() {
            softmax_band_row(row, r % width, 0, Some(window));
        }
        for (i, (b, m)) in band.iter().zip(&masked).enumerate() {
            assert!((b - m).abs() < 1e-6, "value {i}: {b} vs {m}");
        }
        // The first query's row: its own key and three after it, nothing else.
        assert_eq!(band[..width].iter().filter(|&&p| p > 0.0).count(), 4);

        // Rows of 8 queries against only the keys their windows reach give the same values.
        let block = 8;
        for head in 0..heads {
            for q0 in (0..width).step_by(block) {
                let (k0, k1) = (q0.saturating_sub(window), (q0 + block + window).min(width));
                let mut x: Vec<f32> = (q0..q0 + block)
                    .flat_map(|q| {
                        let row = (head * width + q) * width;
                        (k0..k1).map(move |k| row + k)
                    })
                    .map(|at| ((at * 7919) % 97) as f32 * 0.05 - 2.0)
                    .collect();
                for (r, row) in x.chunks_mut(k1 - k0).enumerate() {
                    softmax_band_row(row, q0 + r, k0, Some(window));
                }
                for (r, row) in x.chunks(k1 - k0).enumerate() {
                    let whole = &masked[(head * width + q0 + r) * width..][..width];
                    for (j, p) in row.iter().enumerate() {
                        let want = whole[k0 + j];
                        assert!((p - want).abs() < 1e-6, "head {head} query {}", q0 + r);
                    }
                    let outside: f32 = whole[..k0].iter().chain(&whole[k1..]).sum();
                    assert_eq!(outside, 0.0, "the block's keys hold the whole window");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The activation alone gives the bits of the GLU over an up of ones, every kind, over
    /// values across each one's range (and past a chunk's length).
    #[test]
    fn an_activation_alone_is_the_glu_over_ones() {
        let x: Vec<f32> = (0..70_001)
            .map(|i| (i as f32 - 35_000.0) * 3.7e-4)
            .collect();
        let ones = vec![1.0; x.len()];
        let (mut alone, mut glued) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        for act in [
            Act::Silu,
            Act::GeluTanh,
            Act::GeluErf,
            Act::Relu2,
            Act::Relu,
        ] {
            activate(&x, act, &mut alone);
            glu(&x, &ones, act, &mut glued);
            let same = alone
                .iter()
                .zip(&glued)
                .all(|(a, g)| a.to_bits() == g.to_bits());
            assert!(same, "{act:?}");
        }
    }

    fn grid() -> Vec<f32> {
        (-4000..=4000).map(|i| i as f32 / 40.0).collect()
    }

    #[test]
    fn softmax_weights_are_exponentials_and_zero_where_masked() {
        let x = [2.0f32, 1.0, f32::NEG_INFINITY, f32::NAN, -300.0, 0.5];
        let mut w = [9.0f32; 6];
        softmax_weights(&x, 2.0, 1.0 / 0.7, &mut w);
        for (&v, &got) in x.iter().zip(&w) {
            let want = ((v - 2.0) / 0.7).exp();
            let want = if want.is_nan() { 0.0 } else { want };
            assert!((got - want).abs() <= 1e-6 * want, "{v}: {got} vs {want}");
        }
        assert_eq!(&w[2..5], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn sum_exp_is_the_softmax_denominator() {
        let x: Vec<f32> = (0..1000)
            .map(|i| (i % 37) as f32 * 0.3 - 4.0)
            .chain([f32::NEG_INFINITY, f32::NAN])
            .collect();
        let max = 6.8;
        let want: f64 = x
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| ((v - max) as f64).exp())
            .sum();
        let got = sum_exp(&x, max) as f64;
        assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    }

    #[test]
    fn exp_is_accurate_and_saturates() {
        for x in grid().into_iter().filter(|x| (-87.0..=88.0).contains(x)) {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        // 2^k from the shifted value's bits is 2^k from the integer k, at every k the clamp
        // allows (both ends included).
        for x in grid()
            .into_iter()
            .chain([-87.3, 88.3, -1000.0, 1000.0, 0.0, -0.0])
        {
            let c = x.clamp(-87.3, 88.3);
            let k = (c * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
            let r = c - k * 0.693_359_4 - k * -2.121_944_4e-4;
            let p = [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5,
            ]
            .iter()
            .fold(1.987_569_1e-4f32, |p, &c| p * r + c);
            let want = (p * r * r + r + 1.0) * f32::from_bits(((k as i32 + 127) as u32) << 23);
            assert_eq!(exp(x).to_bits(), want.to_bits(), "exp({x})");
        }
    }

    #[test]
    fn glu_matches_the_textbook_formulas() {
        let g = grid();
        let u: Vec<f32> = g.iter().map(|v| 1.0 - v * 0.3).collect();
        let mut out = vec![0f32; g.len()];
        glu(&g, &u, Act::Silu, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let g = g as f64;
            let want = g / (1.0 + (-g).exp()) * u as f64;
            assert!(
                (o as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "silu {g}"
            );
        }
        glu(&g, &u, Act::GeluTanh, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let g = g as f64;
            let z = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
            let want = 0.5 * g * (1.0 + z.tanh()) * u as f64;
            assert!(
                (o as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "gelu {g}"
            );
        }
        glu(&g, &u, Act::Relu2, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let want = (g as f64).max(0.0).powi(2) * u as f64;
            assert!(
                (o as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "relu2 {g}"
            );
        }
        glu(&g, &u, Act::Relu, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let want = (g as f64).max(0.0) * u as f64;
            assert!(
                (o as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "relu {g}"
            );
        }
        // Gates and ups past the clamp (±7) on both sides: `u` spans [-12, 12] here.
        let u: Vec<f32> = g.iter().map(|v| 12.0 - v * 2.4).collect();
        glu(&g, &u, Act::SwigluOai, &mut out);
        for ((&o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let (g, u) = ((g as f64).min(7.0), (u as f64).clamp(-7.0, 7.0));
            let want = g / (1.0 + (-1.702 * g).exp()) * (u + 1.0);
            assert!(
                (o as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "swiglu_oai {g} {u}"
            );
        }
    }

    #[test]
    fn softcap_and_binary_ops() {
        let x = grid();
        let mut out = vec![0f32; x.len()];
        softcap(&x, 30.0, &mut out);
        for (&o, &v) in out.iter().zip(&x) {
            let want = 30.0 * (v as f64 / 30.0).tanh();
            assert!((o as f64 - want).abs() < 1e-5, "softcap {v}: {o} vs {want}");
        }
        let y: Vec<f32> = x.iter().map(|v| v * 2.0 + 1.0).collect();
        binary(&x, Binary::Add(&y), &mut out);
        assert!(out
            .iter()
            .zip(x.iter().zip(&y))
            .all(|(o, (a, b))| *o == a + b));
        binary(&x, Binary::Mul(&y), &mut out);
        assert!(out
            .iter()
            .zip(x.iter().zip(&y))
            .all(|(o, (a, b))| *o == a * b));
        binary(&x, Binary::Scale(0.5), &mut out);
        assert!(out.iter().zip(&x).all(|(o, a)| *o == a * 0.5));
    }

    #[test]
    fn large_inputs_split_over_threads_give_the_same_values() {
        let n = 300_000;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i % 1000) as f32 - 500.0) / 100.0)
            .collect();
        let mut big = vec![0f32; n];
        glu(&g, &g, Act::GeluTanh, &mut big);
        for at in [0, 12_345, n - 7] {
            let mut one = [0f32; 1];
            glu(&g[at..at + 1], &g[at..at + 1], Act::GeluTanh, &mut one);
            assert_eq!(one[0], big[at]);
        }
    }
}
