//! Mamba-2's selective state-space recurrence (Dao and Gu, "Transformers are SSMs": the SSD
//! layer of Granite 4.0-H, Nemotron-H, Falcon-H1, Bamba), token by token over a state carried
//! between steps.
//!
//! Each head h keeps a `[head_dim, state]` matrix S. For a token with input x (the head's
//! `head_dim` channels), step size dt (after its softplus), and the group's B and C (`state`
//! wide, shared by the heads of a group):
//!
//! ```text
//! S ← exp(dt · A_h) · S + dt · x ⊗ B
//! y = S C + D_h · x
//! ```
//!
//! The recurrent form, as transformers' and llama.cpp's decode run it; their chunked scan of a
//! prefill gives the same outputs. `2 · head_dim · state` multiply-adds per head and token;
//! heads run in parallel.
use rayon::prelude::*;

/// The shapes of one sequence's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdShape {
    pub tokens: usize,
    pub heads: usize,
    /// Groups of heads sharing B and C: head `h` reads group `h / (heads / groups)`.
    pub groups: usize,
    pub head_dim: usize,
    pub state: usize,
}

impl SsdShape {
    /// Values in one sequence's state: `heads · head_dim · state`.
    pub fn state_len(&self) -> usize {
        self.heads * self.head_dim * self.state
    }
}

/// One sequence's inputs: `x` `[tokens, heads, head_dim]`, `b` and `c` `[tokens, groups,
/// state]`, `dt` `[tokens, heads]` (after the softplus), and per head `a` (the negative
/// rates, −exp(A_log)) and `d` (the skip's weights).
#[derive(Debug, Clone, Copy)]
pub struct SsdInputs<'a> {
    pub x: &'a [f32],
    pub b: &'a [f32],
    pub c: &'a [f32],
    pub dt: &'a [f32],
    pub a: &'a [f32],
    pub d: &'a [f32],
}

/// Runs the recurrence over `shape.tokens` tokens of one sequence from `state` (updated in
/// place), writing `out` (`[tokens, heads, head_dim]`). Errors name a slice whose length does
/// not fit the shape.
pub fn ssd_scan(
    shape: SsdShape,
    inputs: SsdInputs<'_>,
    state: &mut [f32],
    out: &mut [f32],
) -> Result<(), String> {
    let SsdShape {
        tokens,
        heads,
        groups,
        head_dim,
        state: n,
    } = shape;
    let SsdInputs { x, b, c, dt, a, d } = inputs;
    if groups == 0 || heads == 0 || !heads.is_multiple_of(groups) {
        return Err(format!("ssd: {heads} heads in {groups} groups"));
    }
    let fits = x.len() == tokens * heads * head_dim
        && b.len() == tokens * groups * n
        && c.len() == b.len()
        && dt.len() == tokens * heads
        && a.len() == heads
        && d.len() == heads
        && state.len() == shape.state_len()
        && out.len() == x.len();
    if !fits {
        return Err(format!(
            "ssd: {} x, {} B, {} C, {} dt, {} A, {} D, {} state and {} output values for \
             {shape:?}",
            x.len(),
            b.len(),
            c.len(),
            dt.len(),
            a.len(),
            d.len(),
            state.len(),
            out.len()
        ));
    }
    if tokens == 0 || head_dim == 0 || n == 0 {
        return Ok(());
    }
    let per_group = heads / groups;
    // Each head's outputs, token-major within the head: `[heads][tokens, head_dim]`.
    let mut by_head = vec![0.0f32; out.len()];
    state
        .par_chunks_mut(head_dim * n)
        .zip(by_head.par_chunks_mut(tokens * head_dim))
        .enumerate()
        .for_each(|(h, (s, o))| {
            let g = h / per_group;
            for t in 0..tokens {
                let step = dt[t * heads + h];
                let decay = (step * a[h]).exp();
                let xs = &x[(t * heads + h) * head_dim..][..head_dim];
                let bs = &b[(t * groups + g) * n..][..n];
                let cs = &c[(t * groups + g) * n..][..n];
                let o = &mut o[t * head_dim..][..head_dim];
                for ((row, &xi), oi) in s.chunks_exact_mut(n).zip(xs).zip(o.iter_mut()) {
                    let push = step * xi;
                    let mut y = 0.0;
                    for ((sij, &bj), &cj) in row.iter_mut().zip(bs).zip(cs) {
                        *sij = decay * *sij + push * bj;
                        y += *sij * cj;
                    }
                    *oi = y + d[h] * xi;
                }
            }
        });
    for h in 0..heads {
        for t in 0..tokens {
            out[(t * heads + h) * head_dim..][..head_dim]
                .copy_from_slice(&by_head[(h * tokens + t) * head_dim..][..head_dim]);
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

    #[test]
    fn matches_the_recurrence_written_out_and_resumes_from_its_state() {
        let s = SsdShape {
            tokens: 6,
            heads: 4,
            groups: 2,
            head_dim: 3,
            state: 5,
        };
        let x = values(s.tokens * s.heads * s.head_dim, 1);
        let b = values(s.tokens * s.groups * s.state, 2);
        let c = values(b.len(), 3);
        let dt: Vec<f32> = values(s.tokens * s.heads, 4)
            .iter()
            .map(|v| v.abs())
            .collect();
        let a: Vec<f32> = values(s.heads, 5).iter().map(|v| -v.abs() - 0.1).collect();
        let d = values(s.heads, 6);
        // The recurrence in f64, one head, token and state entry at a time.
        let mut st = vec![0.0f64; s.state_len()];
        let mut want = vec![0.0f64; x.len()];
        for t in 0..s.tokens {
            for h in 0..s.heads {
                let g = h / (s.heads / s.groups);
                let step = dt[t * s.heads + h] as f64;
                for p in 0..s.head_dim {
                    let xi = x[(t * s.heads + h) * s.head_dim + p] as f64;
                    let mut y = 0.0;
                    for j in 0..s.state {
                        let e = &mut st[(h * s.head_dim + p) * s.state + j];
                        *e = (step * a[h] as f64).exp() * *e
                            + step * xi * b[(t * s.groups + g) * s.state + j] as f64;
                        y += *e * c[(t * s.groups + g) * s.state + j] as f64;
                    }
                    want[(t * s.heads + h) * s.head_dim + p] = y + d[h] as f64 * xi;
                }
            }
        }
        let inputs = SsdInputs {
            x: &x,
            b: &b,
            c: &c,
            dt: &dt,
            a: &a,
            d: &d,
        };
        let mut state = vec![0.0f32; s.state_len()];
        let mut out = vec![0.0f32; x.len()];
        ssd_scan(s, inputs, &mut state, &mut out).unwrap();
        for (got, want) in out.iter().zip(&want) {
            assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        }
        // The same as 4 tokens, then 2 from the state they left.
        let mut state = vec![0.0f32; s.state_len()];
        let mut split = Vec::new();
        for (from, n) in [(0, 4), (4, 2)] {
            let cut = |v: &[f32], w: usize| v[from * w..(from + n) * w].to_vec();
            let (x, b, c, dt) = (
                cut(&x, s.heads * s.head_dim),
                cut(&b, s.groups * s.state),
                cut(&c, s.groups * s.state),
                cut(&dt, s.heads),
            );
            let part = SsdInputs {
                x: &x,
                b: &b,
                c: &c,
                dt: &dt,
                ..inputs
            };
            let mut o = vec![0.0f32; x.len()];
            ssd_scan(SsdShape { tokens: n, ..s }, part, &mut state, &mut o).unwrap();
            split.extend(o);
        }
        assert_eq!(split, out);
    }

    #[test]
    fn refuses_shapes_that_do_not_fit() {
        let s = SsdShape {
            tokens: 1,
            heads: 3,
            groups: 2,
            head_dim: 1,
            state: 1,
        };
        let none = SsdInputs {
            x: &[],
            b: &[],
            c: &[],
            dt: &[],
            a: &[],
            d: &[],
        };
        let mut state = vec![0.0; 3];
        let err = ssd_scan(s, none, &mut state, &mut []).unwrap_err();
        assert!(err.contains("3 heads in 2 groups"), "{err}");
        let s = SsdShape { groups: 1, ..s };
        let err = ssd_scan(s, none, &mut state, &mut []).unwrap_err();
        assert!(err.contains("0 x"), "{err}");
    }
}
