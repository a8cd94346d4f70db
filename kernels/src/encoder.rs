//! Kernels of a bidirectional encoder's layer on the CPU (BERT-style): a projection's bias
//! added to its rows, and its GELU in the same pass; the residual add and LayerNorm in one;
//! on every thread, in an AVX2+FMA instance
//! where the CPU has them. (A hand-written attention over each head's keys ran at a third of
//! candle's blocked products; attention stays on those, with `activation::softmax_rows`.)
use crate::activation::{gelu_erf, gelu_tanh};
use rayon::prelude::*;

/// Rows per parallel task: enough values (~16k) to amortise the scheduling.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// `$name(args)` as an AVX-512 or AVX2+FMA instance of the `#[inline(always)]` function
/// `$body` where the CPU has them, else its baseline instance: one source, three instances
/// giving the same bits (as `dispatch!`'s).
macro_rules! instances {
    (fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,f16c,avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if crate::activation::has_avx512f() {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    unsafe { avx512($($arg),*) };
                    return;
                }
                if crate::activation::has_avx2_fma() {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    unsafe { avx2($($arg),*) };
                    return;
                }
            }
            $body($($arg),*)
        }
    };
}

instances!(fn bias_rows_of(rows: &mut [f32], bias: &[f32], gelu: Option<bool>) => bias_rows_body);

/// `x[r, :] += bias` for each row of `bias.len()` values, then GELU where asked (`Some(tanh
/// form)`): a projection's bias (and its activation) in one pass.
pub fn bias_rows(x: &mut [f32], bias: &[f32], gelu: Option<bool>) {
    let width = bias.len();
    if width == 0 || !x.len().is_multiple_of(width) {
        panic!("bias_rows: {} values are no whole rows of {width}", x.len());
    }
    x.par_chunks_mut(rows_per_task(width) * width)
        .for_each(|rows| bias_rows_of(rows, bias, gelu));
}

#[inline(always)]
fn bias_rows_body(rows: &mut [f32], bias: &[f32], gelu: Option<bool>) {
    for row in rows.chunks_exact_mut(bias.len()) {
        match gelu {
            None => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
            Some(false) => (row.iter_mut().zip(bias)).for_each(|(v, b)| *v = gelu_erf(*v + b)),
            Some(true) => (row.iter_mut().zip(bias)).for_each(|(v, b)| *v = gelu_tanh(*v + b)),
        }
    }
}

/// `out[r] = act(gate[r]) ⊙ up[r]` where each row of `gate_up` is `[gate | up]`, `2 · width`
/// wide (a gated feed-forward's two projections as one product), `act` SiLU (NomicBERT's
/// SwiGLU) or, with `gelu`, the exact erf GELU (ModernBERT's GeGLU): rows in parallel.
pub fn gated_rows(gate_up: &[f32], out: &mut [f32], width: usize, gelu: bool) {
    if width == 0 || gate_up.len() != 2 * out.len() || !out.len().is_multiple_of(width) {
        panic!(
            "gated_rows: {} values are no rows of gate|up for {} outputs of {width}",
            gate_up.len(),
            out.len()
        );
    }
    let rows = rows_per_task(2 * width);
    out.par_chunks_mut(rows * width)
        .zip(gate_up.par_chunks(rows * 2 * width))
        .for_each(|(out, gate_up)| {
            for (o, gu) in out
                .chunks_exact_mut(width)
                .zip(gate_up.chunks_exact(2 * width))
            {
                let (gate, up) = gu.split_at(width);
                match gelu {
                    true => gelu_glu_of(gate, up, o),
                    false => {
                        crate::activation::glu_chunk(gate, up, crate::activation::Act::Silu, o)
                    }
                }
            }
        });
}

instances!(fn gelu_glu_of(gate: &[f32], up: &[f32], out: &mut [f32]) => gelu_glu_body);

#[inline(always)]
fn gelu_glu_body(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = gelu_erf(g) * u;
    }
}

instances!(fn add_layer_norm_of(
    rows: &mut [f32], residual: &[f32], weight: &[f32], bias: &[f32], eps: f32
) => add_layer_norm_body);

/// `x[r] = LayerNorm(x[r] + residual[r]) · weight + bias` for each row of `weight.len()`
/// values: a post-norm layer's residual add and norm in one pass, rows in parallel (candle's
/// add runs on one thread).
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
    let width = weight.len();
    assert!(
        width > 0
            && x.len().is_multiple_of(width)
            && residual.len() == x.len()
            && bias.len() == width,
        "add_layer_norm: {} values, {} residual values, rows of {width}",
        x.len(),
        residual.len()
    );
    let chunk = rows_per_task(width) * width;
    x.par_chunks_mut(chunk)
        .zip(residual.par_chunks(chunk))
        .for_each(|(rows, residual)| add_layer_norm_of(rows, residual, weight, bias, eps));
}

#[inline(always)]
fn add_layer_norm_body(rows: &mut [f32], residual: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
    let width = weight.len();
    for (row, res) in rows
        .chunks_exact_mut(width)
        .zip(residual.chunks_exact(width))
    {
        row.iter_mut().zip(res).for_each(|(v, r)| *v += r);
        let mean = sum16(row) / width as f32;
        let mut lanes = [0f32; 16];
        for chunk in row.chunks(16) {
            for (l, &v) in lanes.iter_mut().zip(chunk) {
                *l += (v - mean) * (v - mean);
            }
        }
        let var = lanes.iter().sum::<f32>() / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

/// A sum in sixteen independent lanes, so that it vectorizes.
#[inline(always)]
fn sum16(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    for chunk in x.chunks(16) {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_layer_norm_normalises_each_summed_row() {
        let width = 37;
        let x: Vec<f32> = (0..width * 3)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0)
            .collect();
        let residual: Vec<f32> = (0..width * 3).map(|i| (i % 7) as f32 - 3.0).collect();
        let weight: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 / 37.0).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 / 100.0).collect();
        let mut got = x.clone();
        add_layer_norm(&mut got, &residual, &weight, &bias, 1e-12);
        for r in 0..3 {
            let row: Vec<f64> = (0..width)
                .map(|i| (x[r * width + i] + residual[r * width + i]) as f64)
                .collect();
            let mean = row.iter().sum::<f64>() / width as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            for i in 0..width {
                let want = (row[i] - mean) / var.sqrt() * weight[i] as f64 + bias[i] as f64;
                let g = got[r * width + i] as f64;
                assert!((g - want).abs() < 1e-5, "row {r} value {i}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn a_gated_row_reads_gate_then_up() {
        let width = 5;
        // Enough rows for several parallel tasks.
        let rows = 2 * rows_per_task(2 * width) + 3;
        let gate_up: Vec<f32> = (0..rows * 2 * width)
            .map(|i| ((i * 37) % 23) as f32 / 4.0 - 2.5)
            .collect();
        for gelu in [false, true] {
            let mut out = vec![f32::NAN; rows * width];
            gated_rows(&gate_up, &mut out, width, gelu);
            for r in 0..rows {
                for i in 0..width {
                    let g = gate_up[r * 2 * width + i];
                    let u = gate_up[r * 2 * width + width + i] as f64;
                    // The activations' own values are checked in `activation`.
                    let act = match gelu {
                        true => gelu_erf(g) as f64,
                        false => g as f64 / (1.0 + (-g as f64).exp()),
                    };
                    let (got, want) = (out[r * width + i] as f64, act * u);
                    assert!((got - want).abs() < 1e-5, "{gelu} {r} {i}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn a_bias_and_gelu_go_over_every_row() {
        let mut x = vec![0.0f32; 6];
        bias_rows(&mut x, &[1.0, -1.0, 0.5], None);
        assert_eq!(x, [1.0, -1.0, 0.5, 1.0, -1.0, 0.5]);
        let mut g = vec![0.0f32; 3];
        bias_rows(&mut g, &[1.0, 0.0, -30.0], Some(false));
        assert!((g[0] - 0.841_344_7).abs() < 1e-6, "{g:?}");
        assert_eq!(&g[1..], [0.0, 0.0]);
    }
}
