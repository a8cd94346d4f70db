//! The gated delta rule (Yang et al., "Gated Delta Networks"; Qwen3-Next's and Qwen3.5's
//! linear attention), token by token over a state carried between steps.
//!
//! Each value head keeps a `[k_dim, v_dim]` matrix S. For a token with query q, key k (both
//! L2-normalized, q then scaled by `1/sqrt(k_dim)`), value v, log-decay g and write strength
//! β:
//!
//! ```text
//! S ← exp(g) · S
//! S ← S + k ⊗ β (v − Sᵀk)      (the delta rule: what S recalls for k moves toward v)
//! o = Sᵀ q
//! ```
//!
//! Kimi Delta Attention (Kimi Linear) is the same rule with a log-decay per key channel:
//! `S ← diag(exp(g)) · S`, g `k_dim` values a head and token (`DeltaShape::channel_decay`).
//!
//! This is the recurrent form (transformers' `torch_recurrent_gated_delta_rule`, the FLA
//! library's fused recurrent kernel). Their chunked form computes the same outputs with
//! matrix products over chunks of 64 tokens, which pays on a GPU; on a CPU the recurrence is
//! `4 · k_dim · v_dim` multiply-adds per head and token, a few percent of the layer's
//! projections, and it needs no intermediate `[chunk, chunk]` tensors. Heads run in parallel.
use rayon::prelude::*;

/// The L2 norm's epsilon under the square root (FLA's `l2norm`, transformers' copy of it).
const L2_EPS: f32 = 1e-6;

/// The shapes of one sequence's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaShape {
    pub tokens: usize,
    /// Query/key heads; each serves `value_heads / key_heads` value heads.
    pub key_heads: usize,
    pub value_heads: usize,
    pub k_dim: usize,
    pub v_dim: usize,
    /// Value head `h` reads key head `h % key_heads` (llama.cpp's Qwen3.5 GGUFs); else
    /// `h / (value_heads / key_heads)`, in runs (PyTorch's `repeat_interleave`).
    pub tiled: bool,
    /// The log-decay is per key channel (Kimi Delta Attention: `g` `[tokens, value_heads,
    /// k_dim]`), not per head (`[tokens, value_heads]`).
    pub channel_decay: bool,
}

impl DeltaShape {
    /// The key head value head `h` reads.
    pub fn key_head(&self, h: usize) -> usize {
        match self.tiled {
            true => h % self.key_heads,
            false => h / (self.value_heads / self.key_heads),
        }
    }
}

impl DeltaShape {
    /// Values in one sequence's state: `value_heads · k_dim · v_dim`.
    pub fn state_len(&self) -> usize {
        self.value_heads * self.k_dim * self.v_dim
    }

    /// Log-decays a head and token: one, or one per key channel.
    pub fn decays_per_head(&self) -> usize {
        match self.channel_decay {
            true => self.k_dim,
            false => 1,
        }
    }
}

/// One sequence's inputs to a step of the rule: `q` and `k` `[tokens, key_heads, k_dim]` as
/// the projections give them (not yet normalized), `v` `[tokens, value_heads, v_dim]`, the
/// log-decays `g` (`[tokens, value_heads]`, or `[tokens, value_heads, k_dim]` with
/// `channel_decay`) and write strengths `beta` `[tokens, value_heads]`.
#[derive(Debug, Clone, Copy)]
pub struct DeltaInputs<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub g: &'a [f32],
    pub beta: &'a [f32],
}

/// Runs the rule over `shape.tokens` tokens of one sequence from `state` (updated in place to
/// the state after the last token), writing `out` (`[tokens, value_heads, v_dim]`). Errors
/// name a slice whose length does not fit the shape.
pub fn gated_delta_rule(
    shape: DeltaShape,
    inputs: DeltaInputs<'_>,
    state: &mut [f32],
    out: &mut [f32],
) -> Result<(), String> {
    let DeltaInputs { q, k, v, g, beta } = inputs;
    let DeltaShape {
        tokens,
        key_heads,
        value_heads,
        k_dim,
        v_dim,
        ..
    } = shape;
    if key_heads == 0 || value_heads == 0 || !value_heads.is_multiple_of(key_heads) {
        return Err(format!(
            "gated delta rule: {value_heads} value heads over {key_heads} key heads"
        ));
    }
    let fits = q.len() == tokens * key_heads * k_dim
        && k.len() == q.len()
        && v.len() == tokens * value_heads * v_dim
        && g.len() == tokens * value_heads * shape.decays_per_head()
        && beta.len() == tokens * value_heads
        && state.len() == shape.state_len()
        && out.len() == v.len();
    if !fits {
        return Err(format!(
            "gated delta rule: {} q, {} k, {} v, {} g, {} beta, {} state and {} output values \
             for {shape:?}",
            q.len(),
            k.len(),
            v.len(),
            g.len(),
            beta.len(),
            state.len(),
            out.len()
        ));
    }
    if tokens == 0 || k_dim == 0 || v_dim == 0 {
        return Ok(());
    }
    let q = l2_normalized(q, k_dim, 1.0 / (k_dim as f32).sqrt());
    let k = l2_normalized(k, k_dim, 1.0);
    // Each head's outputs, token-major within the head: `[value_heads][tokens, v_dim]`.
    let mut by_head = vec![0.0f32; out.len()];
    state
        .par_chunks_mut(k_dim * v_dim)
        .zip(by_head.par_chunks_mut(tokens * v_dim))
        .enumerate()
        .for_each(|(h, (s, o))| {
            let kh = shape.key_head(h);
            let mut recalled = vec![0.0f32; v_dim];
            for t in 0..tokens {
                let key = &k[(t * key_heads + kh) * k_dim..][..k_dim];
                let query = &q[(t * key_heads + kh) * k_dim..][..k_dim];
                let value = &v[(t * value_heads + h) * v_dim..][..v_dim];
                let per = shape.decays_per_head();
                let logs = &g[(t * value_heads + h) * per..][..per];
                let b = beta[t * value_heads + h];
                // Decay S (each key channel's row by its own decay, or all by the head's) and
                // read what it recalls for the key, in one pass.
                recalled.fill(0.0);
                for (i, (row, &ki)) in s.chunks_exact_mut(v_dim).zip(key).enumerate() {
                    let decay = logs[if per == 1 { 0 } else { i }].exp();
                    for (sij, r) in row.iter_mut().zip(recalled.iter_mut()) {
                        *sij *= decay;
                        *r += *sij * ki;
                    }
                }
                // delta = β (v − Sᵀk), reusing `recalled`.
                for (r, &vj) in recalled.iter_mut().zip(value) {
                    *r = b * (vj - *r);
                }
                // Write k ⊗ delta into S and read Sᵀq, in one pass.
                let o = &mut o[t * v_dim..][..v_dim];
                o.fill(0.0);
                for ((row, &ki), &qi) in s.chunks_exact_mut(v_dim).zip(key).zip(query) {
                    for ((sij, &dj), oj) in row.iter_mut().zip(recalled.iter()).zip(o.iter_mut()) {
                        *sij += ki * dj;
                        *oj += *sij * qi;
                    }
                }
            }
        });
    for h in 0..value_heads {
        for t in 0..tokens {
            out[(t * value_heads + h) * v_dim..][..v_dim]
                .copy_from_slice(&by_head[(h * tokens + t) * v_dim..][..v_dim]);
        }
    }
    Ok(())
}

/// Each `width`-wide row divided by its L2 norm (ε under the root), times `scale`.
fn l2_normalized(x: &[f32], width: usize, scale: f32) -> Vec<f32> {
    let mut y = x.to_vec();
    for row in y.chunks_exact_mut(width) {
        let sum: f32 = row.iter().map(|v| v * v).sum();
        let inv = scale / (sum + L2_EPS).sqrt();
        row.iter_mut().for_each(|v| *v *= inv);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule written as its matrices, one head and token at a time, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        s: DeltaShape,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        beta: &[f32],
        state: &mut [f64],
    ) -> Vec<f64> {
        let (kd, vd) = (s.k_dim, s.v_dim);
        let mut out = vec![0.0; s.tokens * s.value_heads * vd];
        let norm = |x: &[f32], scale: f64| {
            let n = (x.iter().map(|&a| (a as f64).powi(2)).sum::<f64>() + 1e-6).sqrt();
            x.iter()
                .map(|&a| a as f64 * scale / n)
                .collect::<Vec<f64>>()
        };
        for t in 0..s.tokens {
            for h in 0..s.value_heads {
                let kh = s.key_head(h);
                let kk = norm(&k[(t * s.key_heads + kh) * kd..][..kd], 1.0);
                let qq = norm(
                    &q[(t * s.key_heads + kh) * kd..][..kd],
                    1.0 / (kd as f64).sqrt(),
                );
                let st = &mut state[h * kd * vd..][..kd * vd];
                let per = s.decays_per_head();
                for i in 0..kd {
                    let log = g[(t * s.value_heads + h) * per + if per == 1 { 0 } else { i }];
                    let decay = (log as f64).exp();
                    st[i * vd..(i + 1) * vd]
                        .iter_mut()
                        .for_each(|x| *x *= decay);
                }
                for j in 0..vd {
                    let recall: f64 = (0..kd).map(|i| st[i * vd + j] * kk[i]).sum();
                    let delta = beta[t * s.value_heads + h] as f64
                        * (v[(t * s.value_heads + h) * vd + j] as f64 - recall);
                    for i in 0..kd {
                        st[i * vd + j] += kk[i] * delta;
                    }
                }
                for j in 0..vd {
                    out[(t * s.value_heads + h) * vd + j] =
                        (0..kd).map(|i| st[i * vd + j] * qq[i]).sum();
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_the_rule_written_as_matrices_and_resumes_from_its_state() {
        let s = DeltaShape {
            tokens: 7,
            key_heads: 2,
            value_heads: 4,
            k_dim: 5,
            v_dim: 3,
            tiled: false,
            channel_decay: false,
        };
        let q = values(s.tokens * s.key_heads * s.k_dim, 1);
        let k = values(q.len(), 2);
        let v = values(s.tokens * s.value_heads * s.v_dim, 3);
        let g: Vec<f32> = values(s.tokens * s.value_heads, 4)
            .iter()
            .map(|x| -x.abs())
            .collect();
        let beta: Vec<f32> = values(g.len(), 5).iter().map(|x| x.abs()).collect();
        let mut want_state = vec![0.0f64; s.state_len()];
        let want = reference(s, &q, &k, &v, &g, &beta, &mut want_state);

        // All seven tokens at once, then the same as 4 + 3 (a prefill chunk, then the rest).
        let mut state = vec![0.0f32; s.state_len()];
        let mut out = vec![0.0f32; v.len()];
        let all = DeltaInputs {
            q: &q,
            k: &k,
            v: &v,
            g: &g,
            beta: &beta,
        };
        gated_delta_rule(s, all, &mut state, &mut out).unwrap();
        for (a, b) in out.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
        for (a, b) in state.iter().zip(&want_state) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
        let mut state = vec![0.0f32; s.state_len()];
        let mut split = Vec::new();
        for (from, n) in [(0, 4), (4, 3)] {
            let part = DeltaShape { tokens: n, ..s };
            let cut = |x: &[f32], w: usize| x[from * w..(from + n) * w].to_vec();
            let mut o = vec![0.0f32; n * s.value_heads * s.v_dim];
            let (q, k, v, g, beta) = (
                cut(&q, s.key_heads * s.k_dim),
                cut(&k, s.key_heads * s.k_dim),
                cut(&v, s.value_heads * s.v_dim),
                cut(&g, s.value_heads),
                cut(&beta, s.value_heads),
            );
            let inputs = DeltaInputs {
                q: &q,
                k: &k,
                v: &v,
                g: &g,
                beta: &beta,
            };
            gated_delta_rule(part, inputs, &mut state, &mut o).unwrap();
            split.extend(o);
        }
        assert_eq!(split, out);

        // Tiled value heads: the same rule, key heads read round-robin.
        let tiled = DeltaShape { tiled: true, ..s };
        assert_eq!((tiled.key_head(1), tiled.key_head(2)), (1, 0));
        let mut want_state = vec![0.0f64; s.state_len()];
        let want = reference(tiled, &q, &k, &v, &g, &beta, &mut want_state);
        let mut state = vec![0.0f32; s.state_len()];
        gated_delta_rule(tiled, all, &mut state, &mut out).unwrap();
        for (a, b) in out.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// Kimi Delta Attention: a decay per key channel, each row of S by its own.
    #[test]
    fn decays_each_key_channel_by_its_own_rate() {
        let s = DeltaShape {
            tokens: 5,
            key_heads: 3,
            value_heads: 3,
            k_dim: 4,
            v_dim: 2,
            tiled: false,
            channel_decay: true,
        };
        let q = values(s.tokens * s.key_heads * s.k_dim, 7);
        let k = values(q.len(), 8);
        let v = values(s.tokens * s.value_heads * s.v_dim, 9);
        let g: Vec<f32> = values(q.len(), 10).iter().map(|x| -2.0 * x.abs()).collect();
        let beta: Vec<f32> = values(s.tokens * s.value_heads, 11)
            .iter()
            .map(|x| x.abs())
            .collect();
        let mut want_state = vec![0.0f64; s.state_len()];
        let want = reference(s, &q, &k, &v, &g, &beta, &mut want_state);
        let mut state = vec![0.0f32; s.state_len()];
        let mut out = vec![0.0f32; v.len()];
        let inputs = DeltaInputs {
            q: &q,
            k: &k,
            v: &v,
            g: &g,
            beta: &beta,
        };
        gated_delta_rule(s, inputs, &mut state, &mut out).unwrap();
        for (a, b) in out.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
        // One decay a head read as the first channel's would differ.
        let per_head = DeltaShape {
            channel_decay: false,
            ..s
        };
        let first: Vec<f32> = g.chunks_exact(s.k_dim).map(|c| c[0]).collect();
        let mut other = vec![0.0f32; v.len()];
        let mut state = vec![0.0f32; s.state_len()];
        let inputs = DeltaInputs {
            g: &first,
            ..inputs
        };
        gated_delta_rule(per_head, inputs, &mut state, &mut other).unwrap();
        assert!(other.iter().zip(&out).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    #[test]
    fn refuses_shapes_that_do_not_fit() {
        let s = DeltaShape {
            tokens: 1,
            key_heads: 3,
            value_heads: 4,
            k_dim: 2,
            v_dim: 2,
            tiled: false,
            channel_decay: false,
        };
        let mut state = vec![0.0; s.state_len()];
        let none = DeltaInputs {
            q: &[],
            k: &[],
            v: &[],
            g: &[],
            beta: &[],
        };
        let err = gated_delta_rule(s, none, &mut state, &mut []).unwrap_err();
        assert!(err.contains("4 value heads over 3 key heads"), "{err}");
        let s = DeltaShape { key_heads: 2, ..s };
        let three = DeltaInputs {
            q: &[0.0; 3],
            ..none
        };
        let err = gated_delta_rule(s, three, &mut state, &mut []).unwrap_err();
        assert!(err.contains("3 q"), "{err}");
    }
}
