//! Mamba-1's selective scan (Gu & Dao, "Mamba"; transformers' `MambaMixer.slow_forward`),
//! token by token over a state carried between steps.
//!
//! Each channel c keeps a `state`-wide vector h. For a token with input x, step dt (already
//! through its softplus) per channel, and B, C (`state` wide, shared by the channels):
//!
//! ```text
//! h[c] ← exp(A[c] · dt[c]) ⊙ h[c] + dt[c] · x[c] · B
//! y[c] = h[c] · C + D[c] · x[c]
//! ```
//!
//! A (`[channels, state]`, negative) and D (per channel) are the layer's. Unlike Mamba-2 every
//! channel has its own decays, so there is no matrix product to batch; channels run in
//! parallel chunks.
use rayon::prelude::*;

/// Channels a parallel task takes.
const CHANNELS_PER_TASK: usize = 64;

/// The shapes of one sequence's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanShape {
    pub tokens: usize,
    pub channels: usize,
    pub state: usize,
}

/// One sequence's inputs: `x` and `dt` `[tokens, channels]`, `b` and `c` `[tokens, state]`,
/// the layer's `a` `[channels, state]` and `d` `[channels]`.
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    pub x: &'a [f32],
    pub dt: &'a [f32],
    pub b: &'a [f32],
    pub c: &'a [f32],
    pub a: &'a [f32],
    pub d: &'a [f32],
}

/// Runs the scan over `shape.tokens` tokens of one sequence from `h` (`[channels, state]`,
/// updated in place), writing `out` (`[tokens, channels]`). Errors name a slice whose length
/// does not fit the shape.
pub fn selective_scan(
    shape: ScanShape,
    inputs: ScanInputs<'_>,
    h: &mut [f32],
    out: &mut [f32],
) -> Result<(), String> {
    let ScanShape {
        tokens,
        channels,
        state,
    } = shape;
    let ScanInputs { x, dt, b, c, a, d } = inputs;
    let fits = x.len() == tokens * channels
        && dt.len() == x.len()
        && b.len() == tokens * state
        && c.len() == b.len()
        && a.len() == channels * state
        && d.len() == channels
        && h.len() == a.len()
        && out.len() == x.len();
    if !fits {
        return Err(format!(
            "selective scan: {} x, {} dt, {} B, {} C, {} A, {} D, {} state and {} output values \
             for {shape:?}",
            x.len(),
            dt.len(),
            b.len(),
            c.len(),
            a.len(),
            d.len(),
            h.len(),
            out.len()
        ));
    }
    if tokens == 0 || channels == 0 || state == 0 {
        return Ok(());
    }
    // Each task's outputs, token-major within it: `[tasks][tokens, its channels]`.
    let chunk = CHANNELS_PER_TASK.min(channels);
    let mut by_task = vec![0.0f32; out.len()];
    h.par_chunks_mut(chunk * state)
        .zip(by_task.par_chunks_mut(tokens * chunk))
        .enumerate()
        .for_each(|(task, (h, o))| {
            let first = task * chunk;
            let n = h.len() / state;
            for t in 0..tokens {
                let (bt, ct) = (&b[t * state..][..state], &c[t * state..][..state]);
                for (i, hc) in h.chunks_exact_mut(state).enumerate() {
                    let ch = first + i;
                    let (xv, step) = (x[t * channels + ch], dt[t * channels + ch]);
                    let ac = &a[ch * state..][..state];
                    let mut y = 0.0f32;
                    for (((hs, &av), &bv), &cv) in hc.iter_mut().zip(ac).zip(bt).zip(ct) {
                        *hs = (av * step).exp() * *hs + step * xv * bv;
                        y += *hs * cv;
                    }
                    o[t * n + i] = y + d[ch] * xv;
                }
            }
        });
    for (task, o) in by_task.chunks(tokens * chunk).enumerate() {
        let n = o.len() / tokens;
        for t in 0..tokens {
            out[t * channels + task * chunk..][..n].copy_from_slice(&o[t * n..][..n]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// The scan written out in f64, one channel and token at a time.
    fn reference(s: ScanShape, i: &ScanInputs<'_>, h: &mut [f64]) -> Vec<f64> {
        let mut out = vec![0.0; s.tokens * s.channels];
        for t in 0..s.tokens {
            for ch in 0..s.channels {
                let (x, dt) = (
                    i.x[t * s.channels + ch] as f64,
                    i.dt[t * s.channels + ch] as f64,
                );
                let mut y = 0.0;
                for k in 0..s.state {
                    let hk = &mut h[ch * s.state + k];
                    *hk = (i.a[ch * s.state + k] as f64 * dt).exp() * *hk
                        + dt * x * i.b[t * s.state + k] as f64;
                    y += *hk * i.c[t * s.state + k] as f64;
                }
                out[t * s.channels + ch] = y + i.d[ch] as f64 * x;
            }
        }
        out
    }

    #[test]
    fn matches_the_scan_written_out_and_resumes_from_its_state() {
        // 150 channels: tasks of 64, 64 and 22.
        let s = ScanShape {
            tokens: 6,
            channels: 150,
            state: 5,
        };
        let x = values(s.tokens * s.channels, 1);
        let dt: Vec<f32> = values(x.len(), 2).iter().map(|v| v.abs() * 0.5).collect();
        let b = values(s.tokens * s.state, 3);
        let c = values(b.len(), 4);
        let a: Vec<f32> = values(s.channels * s.state, 5)
            .iter()
            .map(|v| -v.abs())
            .collect();
        let d = values(s.channels, 6);
        let inputs = ScanInputs {
            x: &x,
            dt: &dt,
            b: &b,
            c: &c,
            a: &a,
            d: &d,
        };
        let mut want_h = vec![0.0f64; a.len()];
        let want = reference(s, &inputs, &mut want_h);
        let mut h = vec![0.0f32; a.len()];
        let mut out = vec![0.0f32; x.len()];
        selective_scan(s, inputs, &mut h, &mut out).unwrap();
        for (got, want) in out.iter().zip(&want).chain(h.iter().zip(&want_h)) {
            assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        }
        // The same as 4 + 2 tokens.
        let mut h2 = vec![0.0f32; a.len()];
        let mut split = Vec::new();
        for (from, n) in [(0, 4), (4, 2)] {
            let cut = |v: &[f32], w: usize| v[from * w..(from + n) * w].to_vec();
            let (x, dt, b, c) = (
                cut(&x, s.channels),
                cut(&dt, s.channels),
                cut(&b, s.state),
                cut(&c, s.state),
            );
            let part = ScanInputs {
                x: &x,
                dt: &dt,
                b: &b,
                c: &c,
                ..inputs
            };
            let mut o = vec![0.0f32; n * s.channels];
            selective_scan(ScanShape { tokens: n, ..s }, part, &mut h2, &mut o).unwrap();
            split.extend(o);
        }
        assert_eq!(split, out);
        let err = selective_scan(
            s,
            ScanInputs {
                d: &d[1..],
                ..inputs
            },
            &mut h,
            &mut out,
        );
        assert!(err.unwrap_err().contains("149 D"));
    }
}
