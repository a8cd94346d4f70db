//! xIELU (arXiv 2411.13010; Apertus): a learned activation with four numbers per layer,
//! `f(x) = αp·x² + β·x` for x > 0, `(expm1(min(x, ε)) − x)·αn + β·x` otherwise, where the
//! checkpoints keep αp and αn before a softplus (αp = softplus(a_p), αn = β + softplus(a_n)),
//! as transformers' `XIELUActivation` and ggml's `xielu` read them.

/// One layer's xIELU, its coefficients as applied (softplus taken).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct XieluParams {
    pub alpha_p: f32,
    pub alpha_n: f32,
    pub beta: f32,
    pub eps: f32,
}

impl XieluParams {
    /// From the numbers a checkpoint stores: `alpha_p` and `alpha_n` before their softplus
    /// (in f32, as ggml takes them).
    pub fn from_stored(alpha_p: f32, alpha_n: f32, beta: f32, eps: f32) -> Self {
        Self::from_stored_rounded(alpha_p, alpha_n, beta, eps, |v| v)
    }

    /// The same, each step's result rounded by `round` as the stored numbers' own type rounds
    /// it: transformers takes the softplus and the sum in the parameters' dtype (bf16 in the
    /// released checkpoints and as `XIELUActivation` makes them).
    pub fn from_stored_rounded(
        alpha_p: f32,
        alpha_n: f32,
        beta: f32,
        eps: f32,
        round: impl Fn(f32) -> f32,
    ) -> Self {
        XieluParams {
            alpha_p: round(softplus(alpha_p)),
            alpha_n: round(beta + round(softplus(alpha_n))),
            beta,
            eps,
        }
    }

    pub fn apply(&self, x: f32) -> f32 {
        if x > 0.0 {
            self.alpha_p * x * x + self.beta * x
        } else {
            (x.min(self.eps).exp_m1() - x) * self.alpha_n + self.beta * x
        }
    }

    /// `apply` over a candle tensor with candle's elementwise ops in f32, on the tensor's own
    /// device (CUDA's xIELU: no read-back); the result in the input's dtype.
    pub fn apply_tensor(
        &self,
        x: &candle_core::Tensor,
    ) -> candle_core::Result<candle_core::Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(candle_core::DType::F32)?;
        let linear = x.affine(self.beta as f64, 0.0)?;
        let positive = (x.sqr()?.affine(self.alpha_p as f64, 0.0)? + &linear)?;
        // e^min(x, ε) − 1: candle has no expm1; its cancellation costs ~1e-7 absolute.
        let below = x.minimum(self.eps)?.exp()?.affine(1.0, -1.0)?;
        let negative = ((below - &x)?.affine(self.alpha_n as f64, 0.0)? + &linear)?;
        x.gt(0f32)?
            .where_cond(&positive, &negative)?
            .to_dtype(dtype)
    }

    /// Whether every number is finite (a checkpoint's NaN would poison every token).
    pub fn is_finite(&self) -> bool {
        [self.alpha_p, self.alpha_n, self.beta, self.eps]
            .iter()
            .all(|v| v.is_finite())
    }
}

/// torch's softplus: `ln(1 + eˣ)`, and x itself past 20 (where they agree in f32).
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xielu_is_quadratic_above_zero_and_saturates_below() {
        // transformers' initial values: αp = 0.8, αn = 0.8 (stored as ln(expm1(0.8)) and
        // ln(expm1(0.8 − β))), β = 0.5, ε = −1e−6.
        let stored = |a: f32| a.exp_m1().ln();
        let p = XieluParams::from_stored(stored(0.8), stored(0.3), 0.5, -1e-6);
        assert!((p.alpha_p - 0.8).abs() < 1e-6 && (p.alpha_n - 0.8).abs() < 1e-6);
        assert!((p.apply(2.0) - (0.8 * 4.0 + 1.0)).abs() < 1e-6);
        // Below zero: (e^x − 1 − x)·αn + β·x.
        let x = -3.0f32;
        let want = ((x.exp() - 1.0) - x) * 0.8 + 0.5 * x;
        assert!((p.apply(x) - want).abs() < 1e-6);
        // Just below ε the exponent is held at ε.
        assert!((p.apply(0.0) - ((-1e-6f32).exp_m1() * 0.8)).abs() < 1e-9);
        assert!(p.is_finite());
        assert!(!XieluParams::from_stored(f32::NAN, 0.0, 0.5, -1e-6).is_finite());
        assert_eq!(softplus(30.0), 30.0);
        // The tensor form (CUDA's) agrees with the scalar one.
        let xs: Vec<f32> = (-40..40).map(|i| i as f32 * 0.125).collect();
        let t = candle_core::Tensor::from_vec(xs.clone(), (8, 10), &candle_core::Device::Cpu);
        let got = p.apply_tensor(&t.unwrap()).unwrap().flatten_all().unwrap();
        for (x, y) in xs.iter().zip(got.to_vec1::<f32>().unwrap()) {
            let want = p.apply(*x);
            assert!(
                (want - y).abs() <= 1e-6 * want.abs().max(1.0),
                "{x}: {y} vs {want}"
            );
        }
        // bf16 rounding of each step, as transformers computes them in bf16.
        let bf16 = |v: f32| half::bf16::from_f32(v).to_f32();
        let r = XieluParams::from_stored_rounded(-0.0153, -0.0513, 0.5, -1e-6, bf16);
        assert_eq!(r.alpha_p, bf16(softplus(-0.0153)));
        assert_eq!(r.alpha_n, bf16(0.5 + bf16(softplus(-0.0513))));
    }
}
