//! Feed-forward blocks: the dense gated MLP every family runs, and the mixture of experts of
//! DeepSeek's layers (a router picks each token's experts; shared experts run on every token).
//!
//! Experts run one at a time over the rows routed to them (`gather_rows`, the expert's own
//! gated MLP, `add_rows_scaled` into the output): each expert's weights are read once per
//! step for all its tokens, which is what bounds decode on any device, and every op is one
//! the backends already have. The routing itself is host code (`route`).
pub mod route;

use crate::backend::{Activation, Backend};
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::{members, run_jobs, run_linear_job, LinearJob, ProductInput, Projections};
use crate::spec::MixtureOfExperts;
use crate::weights::names::{expert, layer};
use crate::weights::HostWeight;
use crate::xielu::XieluParams;
use route::route;

/// A gated MLP: `down(act(gate(x)) * up(x))`, gate and up joined where the backend allows;
/// with biases where the model has them (gpt-oss's experts). Ungated (StarCoder2):
/// `down(act(up(x)))`, `gate_up` holding the up projection alone.
pub struct Mlp<B: Backend> {
    pub(crate) gate_up: Projections<B>,
    pub(crate) down: B::Weight,
    pub(crate) down_bias: Option<B::Weight>,
    pub(crate) gated: bool,
    /// The ungated MLP's xIELU (Apertus), which replaces the model's activation.
    pub(crate) xielu: Option<XieluParams>,
    /// BitNet's RMSNorm of the GLU's output before `down` (`ffn_sub_norm`), with its epsilon.
    pub(crate) sub_norm: Option<(B::Weight, f32)>,
    /// Each product's input quantized per token to this many bits (BitNet's activations,
    /// `ModelSpec::activation_bits`).
    pub(crate) activation_bits: Option<u32>,
}

impl<B: Backend> Mlp<B> {
    /// The MLP of `gate` (None: an ungated MLP), `up` (`[f, h]`) and `down` (`[h, f]`) by
    /// canonical name, each with the bias of the same name (`.bias` for `.weight`) where the
    /// file has one.
    fn load(
        ld: &Loader<'_, B>,
        gate: Option<&str>,
        [up, down]: [&str; 2],
        f: usize,
        h: usize,
    ) -> Result<Self> {
        let bias = |name: &str, rows: usize| match name.strip_suffix(".weight") {
            Some(stem) => ld.opt_weight(&format!("{stem}.bias"), &[rows]),
            None => Ok(None),
        };
        let mut products = Vec::with_capacity(2);
        if let Some(gate) = gate {
            products.push((ld.weight(gate, &[f, h])?, bias(gate, f)?));
        }
        products.push((ld.weight(up, &[f, h])?, bias(up, f)?));
        Ok(Mlp {
            gate_up: Projections::new(ld.backend, products)?,
            down: ld.weight(down, &[h, f])?,
            down_bias: bias(down, h)?,
            gated: gate.is_some(),
            xielu: None,
            sub_norm: None,
            activation_bits: None,
        })
    }

    /// The gated MLP of gate and up stored as one `[2f, h]` weight (gate rows first) and
    /// `down` by canonical name.
    fn joined(
        ld: &Loader<'_, B>,
        joined: HostWeight,
        down: &str,
        f: usize,
        h: usize,
    ) -> Result<Self> {
        let gate_up = match ld.backend.splits_outputs() {
            true => Projections::joined(ld.backend, ld.backend.load_weight(joined)?, vec![f, f])?,
            // A backend that cannot split the joined product's outputs gets gate and up as
            // weights of their own.
            false => {
                let half = |from: usize| -> Result<(B::Weight, Option<B::Weight>)> {
                    Ok((ld.backend.load_weight(joined.rows(from, f)?)?, None))
                };
                Projections::new(ld.backend, vec![half(0)?, half(f)?])?
            }
        };
        Ok(Mlp {
            gate_up,
            down: ld.weight(down, &[h, f])?,
            down_bias: None,
            gated: true,
            xielu: None,
            sub_norm: None,
            activation_bits: None,
        })
    }

    /// Layer `l`'s ungated MLP (`ffn_up`, `ffn_down`, their biases where the file has them).
    fn load_ungated(
        ld: &Loader<'_, B>,
        l: usize,
        (f, h): (usize, usize),
        xielu: Option<XieluParams>,
    ) -> Result<Self> {
        let names = [&layer(l, "ffn_up.weight"), &layer(l, "ffn_down.weight")];
        Ok(Mlp {
            xielu,
            ..Mlp::load(ld, None, names.map(String::as_str), f, h)?
        })
    }

    /// `x` (`[tokens, hidden]`, already normed) through the MLP.
    pub fn forward(&self, b: &B, x: &B::Tensor, act: Activation) -> Result<B::Tensor> {
        let quantized = match self.activation_bits {
            Some(bits) => Some(b.quantize_rows(x, bits)?),
            None => None,
        };
        let x = quantized.as_ref().unwrap_or(x);
        if !self.gated {
            let [up] = members(self.gate_up.apply(b, x, None)?)?;
            let y = match &self.xielu {
                Some(p) => b.xielu(&up, p)?,
                None => b.activate(&up, act)?,
            };
            let y = self.down_input(b, y)?;
            return b.linear(&y, &self.down, self.down_bias.as_ref());
        }
        let [gate, up] = members(self.gate_up.apply(b, x, None)?)?;
        if self.sub_norm.is_none() && self.activation_bits.is_none() {
            return run_linear_job(b, &self.down_job(&gate, &up, act));
        }
        let m = self.down_input(b, b.glu(&gate, &up, act)?)?;
        b.linear(&m, &self.down, self.down_bias.as_ref())
    }

    /// What `down` reads of the activated product `m`: BitNet's sub-norm of it, quantized.
    fn down_input(&self, b: &B, m: B::Tensor) -> Result<B::Tensor> {
        let m = match &self.sub_norm {
            Some((w, eps)) => b.rms_norm(&m, w, *eps)?,
            None => m,
        };
        match self.activation_bits {
            Some(bits) => b.quantize_rows(&m, bits),
            None => Ok(m),
        }
    }

    /// The down projection of `act(gate) · up` (+ the down bias).
    fn down_job<'a>(
        &'a self,
        gate: &'a B::Tensor,
        up: &'a B::Tensor,
        act: Activation,
    ) -> LinearJob<'a, B> {
        LinearJob {
            input: ProductInput::Glu { gate, up, act },
            w: &self.down,
            bias: self.down_bias.as_ref(),
        }
    }
}

/// One layer's mixture of experts.
pub struct Experts<B: Backend> {
    /// `[num_experts, hidden]`: the router's logits are `x @ router^T` (+ `router_bias`).
    router: B::Weight,
    router_bias: Option<B::Weight>,
    /// DeepSeek-V3's per-expert correction of the scores, for the choice only.
    correction_bias: Option<Vec<f32>>,
    experts: Vec<Mlp<B>>,
    shared: Option<Mlp<B>>,
    /// `[1, hidden]`: the shared experts' sigmoid gate, where the model has one.
    shared_gate: Option<B::Weight>,
    spec: MixtureOfExperts,
    hidden: usize,
}

impl<B: Backend> Experts<B> {
    /// Layer `l`'s experts, each an MLP gated or not (`gated`: Nemotron-H's are not).
    pub(crate) fn load(
        ld: &Loader<'_, B>,
        l: usize,
        spec: &MixtureOfExperts,
        hidden: usize,
        gated: bool,
    ) -> Result<Self> {
        let (n, f, h) = (spec.num_experts, spec.expert_intermediate_size, hidden);
        let correction_bias = match spec.correction_bias {
            true => {
                let name = layer(l, "exp_probs_b.bias");
                // ERNIE 4.5 keeps its bias as `[1, experts]` (`moe_statics`), in checkouts
                // and in the GGUFs converted from them.
                let b = match ld.src.get(&name)?.map(|w| w.shape()) {
                    Some(s) if s == [1, n] => ld.checked(&name, &[1, n])?,
                    _ => ld.checked(&name, &[n])?,
                };
                Some(b.to_f32()?.flatten_all()?.to_vec1::<f32>()?)
            }
            false => None,
        };
        let experts = (0..n)
            .map(|e| {
                // Expert biases (gpt-oss) by the names `Mlp::load` derives from these.
                let [g, u, d] = ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"];
                let gate = gated.then(|| expert(l, g, e));
                let up_down = [&expert(l, u, e), &expert(l, d, e)];
                Mlp::load(ld, gate.as_deref(), up_down.map(String::as_str), f, h)
            })
            .collect::<Result<Vec<_>>>()?;
        let (gate_shexp, up_shexp) = (
            layer(l, "ffn_gate_shexp.weight"),
            layer(l, "ffn_up_shexp.weight"),
        );
        // Granite's swash MoE converter keeps the shared MLP's gate and up in one
        // double-height `ffn_up_shexp`.
        let joined_shared = gated && !ld.src.contains(&gate_shexp) && ld.src.contains(&up_shexp);
        let shared = match spec.shared_intermediate_size {
            0 => None,
            fs if joined_shared => {
                let joined = ld.checked(&up_shexp, &[2 * fs, h])?;
                let down = layer(l, "ffn_down_shexp.weight");
                Some(Mlp::joined(ld, joined, &down, fs, h)?)
            }
            fs => {
                let gate = gated.then(|| layer(l, "ffn_gate_shexp.weight"));
                let up_down = [
                    &layer(l, "ffn_up_shexp.weight"),
                    &layer(l, "ffn_down_shexp.weight"),
                ];
                Some(Mlp::load(
                    ld,
                    gate.as_deref(),
                    up_down.map(String::as_str),
                    fs,
                    h,
                )?)
            }
        };
        let shared_gate = match spec.shared_gate {
            true => Some(ld.weight(&layer(l, "ffn_gate_inp_shexp.weight"), &[1, h])?),
            false => None,
        };
        Ok(Experts {
            router: ld.weight(&layer(l, "ffn_gate_inp.weight"), &[n, h])?,
            router_bias: ld.opt_weight(&layer(l, "ffn_gate_inp.bias"), &[n])?,
            correction_bias,
            experts,
            shared,
            shared_gate,
            spec: spec.clone(),
            hidden,
        })
    }

    /// `x` (`[tokens, hidden]`, already normed) through the experts each token is routed to,
    /// weighted, plus the shared experts.
    pub fn forward(&self, b: &B, x: &B::Tensor, act: Activation) -> Result<B::Tensor> {
        let tokens = b.shape(x).first().copied().unwrap_or(0);
        let logits = b.download(&b.linear(x, &self.router, self.router_bias.as_ref())?)?;
        let routes = route(&logits, tokens, self.correction_bias.as_deref(), &self.spec)?;
        let zeros = || b.upload(&vec![0.0; tokens * self.hidden], &[tokens, self.hidden]);
        let mut out = match (&self.shared, &self.shared_gate) {
            (Some(shared), None) => shared.forward(b, x, act)?,
            (Some(shared), Some(gate)) => {
                // Each token's shared output times sigmoid(x · gate): a weighted add of every
                // row (the gate is one number a token, read back like the router's logits).
                let y = shared.forward(b, x, act)?;
                let g = b.download(&b.linear(x, gate, None)?)?;
                let weights: Vec<f32> = g.iter().map(|&v| route::sigmoid(v)).collect();
                scaled_rows(b, &y, &weights, self.hidden)?
            }
            (None, _) => zeros()?,
        };
        let chosen: Vec<(&Mlp<B>, &route::ExpertRows)> = self
            .experts
            .iter()
            .zip(&routes)
            .filter(|(_, routed)| !routed.rows.is_empty())
            .collect();
        let scale_inputs = self.spec.weights_scale_inputs;
        let outputs = routed_experts(b, x, &chosen, act, scale_inputs, self.hidden)?;
        for ((_, routed), y) in chosen.iter().zip(outputs) {
            let weights = match scale_inputs {
                // The weights went into the inputs: the outputs join as they are.
                true => vec![1.0; routed.rows.len()],
                false => routed.weights.clone(),
            };
            out = b.add_rows_scaled(&out, &routed.rows, &y, &weights)?;
        }
        Ok(out)
    }
}

/// Each chosen expert's MLP over the rows routed to it (each row times its weight first
/// where `scale_inputs`, `hidden` wide), as two grouped calls (`Backend::linear_many`,
/// `run_jobs`): every expert's gate and up products, then every down product.
fn routed_experts<B: Backend>(
    b: &B,
    x: &B::Tensor,
    chosen: &[(&Mlp<B>, &route::ExpertRows)],
    act: Activation,
    scale_inputs: bool,
    hidden: usize,
) -> Result<Vec<B::Tensor>> {
    let rows = chosen
        .iter()
        .map(|(_, routed)| {
            let rows = b.gather_rows(x, &routed.rows)?;
            match scale_inputs {
                true => scaled_rows(b, &rows, &routed.weights, hidden),
                false => Ok(rows),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let jobs: Vec<Vec<LinearJob<'_, B>>> = chosen
        .iter()
        .zip(&rows)
        .map(|((mlp, _), x)| mlp.gate_up.jobs(x))
        .collect();
    let mut products =
        run_jobs(b, &jobs.iter().flatten().copied().collect::<Vec<_>>())?.into_iter();
    // Each expert's input to its down projection: gate and up, or an ungated expert's
    // activated up (Nemotron-H's) with nothing beside it.
    let halves = chosen
        .iter()
        .zip(&jobs)
        .map(|((mlp, _), own)| {
            let outputs = products.by_ref().take(own.len()).collect();
            let parts = mlp.gate_up.members_of(b, outputs, 1)?;
            match mlp.gated {
                true => members::<_, 2>(parts).map(|[gate, up]| (gate, Some(up))),
                false => {
                    let [up] = members::<_, 1>(parts)?;
                    Ok((b.activate(&up, act)?, None))
                }
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let downs: Vec<LinearJob<'_, B>> = chosen
        .iter()
        .zip(&halves)
        .map(|((mlp, _), (first, up))| match up {
            Some(up) => mlp.down_job(first, up, act),
            None => LinearJob {
                input: ProductInput::Rows(first),
                w: &mlp.down,
                bias: mlp.down_bias.as_ref(),
            },
        })
        .collect();
    run_jobs(b, &downs)
}

/// Each row of `y` (`[weights.len(), width]`) times its weight: added, scaled, to zeros (no
/// backend op scales rows by values of their own).
fn scaled_rows<B: Backend>(
    b: &B,
    y: &B::Tensor,
    weights: &[f32],
    width: usize,
) -> Result<B::Tensor> {
    let n = weights.len();
    let zeros = b.upload(&vec![0.0; n * width], &[n, width])?;
    let rows: Vec<u32> = (0..n as u32).collect();
    b.add_rows_scaled(&zeros, &rows, y, weights)
}

/// `Backend::add_rows_scaled` on host slices: `acc` of `shape` (`[rows, width]`), `x` of
/// `rows.len()` rows of the same width.
pub fn add_rows_scaled_host(
    acc: &mut [f32],
    shape: &[usize],
    rows: &[u32],
    x: &[f32],
    weights: &[f32],
) -> Result<()> {
    let (&[n, width], true) = (shape, rows.len() == weights.len()) else {
        return Err(ModelError::Backend(format!(
            "add_rows_scaled: accumulator {shape:?}, {} rows, {} weights",
            rows.len(),
            weights.len()
        )));
    };
    if x.len() != rows.len() * width || acc.len() != n * width {
        return Err(ModelError::Backend(format!(
            "add_rows_scaled: {} values for {} rows of {width}",
            x.len(),
            rows.len()
        )));
    }
    for ((&r, &w), src) in rows.iter().zip(weights).zip(x.chunks_exact(width.max(1))) {
        let r = r as usize;
        if r >= n {
            return Err(ModelError::Backend(format!(
                "add_rows_scaled: row {r} of {n}"
            )));
        }
        for (a, &v) in acc[r * width..(r + 1) * width].iter_mut().zip(src) {
            *a += w * v;
        }
    }
    Ok(())
}

/// A layer's feed-forward block.
pub enum Ffn<B: Backend> {
    Dense(Mlp<B>),
    Experts(Box<Experts<B>>),
}

impl<B: Backend> Ffn<B> {
    /// Layer `l`'s FFN: its experts where the spec gives the layer some, else the dense MLP
    /// (gate and up possibly stored joined).
    pub(crate) fn load(
        ld: &Loader<'_, B>,
        l: usize,
        moe: Option<&MixtureOfExperts>,
        (f, h): (usize, usize),
        gated: bool,
        xielu: Option<XieluParams>,
    ) -> Result<Self> {
        if let Some(m) = moe.filter(|m| m.layers.get(l).copied().unwrap_or(false)) {
            return Ok(Ffn::Experts(Box::new(Experts::load(ld, l, m, h, gated)?)));
        }
        if !gated {
            return Mlp::load_ungated(ld, l, (f, h), xielu).map(Ffn::Dense);
        }
        if let Some(joined) = ld.joined_gate_up(l, f, h)? {
            let down = layer(l, "ffn_down.weight");
            return Mlp::joined(ld, joined, &down, f, h).map(Ffn::Dense);
        }
        let n = |s: &str| layer(l, s);
        let up_down = [&n("ffn_up.weight"), &n("ffn_down.weight")];
        Mlp::load(
            ld,
            Some(&n("ffn_gate.weight")),
            up_down.map(String::as_str),
            f,
            h,
        )
        .map(Ffn::Dense)
    }

    /// The FFN with BitNet's additions (`Mlp::sub_norm`, `Mlp::activation_bits`); refused for
    /// experts, which no BitNet model has.
    pub(crate) fn with_bitnet(
        self,
        sub_norm: Option<(B::Weight, f32)>,
        activation_bits: Option<u32>,
    ) -> Result<Self> {
        if sub_norm.is_none() && activation_bits.is_none() {
            return Ok(self);
        }
        match self {
            Ffn::Dense(mlp) => Ok(Ffn::Dense(Mlp {
                sub_norm,
                activation_bits,
                ..mlp
            })),
            Ffn::Experts(_) => Err(crate::error::ModelError::Config(
                "BitNet's sub-norms and quantized activations in a mixture of experts".into(),
            )),
        }
    }

    pub fn is_joined(&self) -> bool {
        match self {
            Ffn::Dense(m) => m.gate_up.is_joined(),
            Ffn::Experts(_) => false,
        }
    }

    /// `x` (`[tokens, hidden]`, already normed) through the MLP or the experts.
    pub fn forward(&self, b: &B, x: &B::Tensor, act: Activation) -> Result<B::Tensor> {
        match self {
            Ffn::Dense(mlp) => mlp.forward(b, x, act),
            Ffn::Experts(experts) => experts.forward(b, x, act),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_weighted_rows_where_they_belong() {
        let mut acc = vec![1.0; 6];
        add_rows_scaled_host(
            &mut acc,
            &[3, 2],
            &[2, 0],
            &[1.0, 2.0, 3.0, 4.0],
            &[0.5, 2.0],
        )
        .unwrap();
        assert_eq!(acc, vec![7.0, 9.0, 1.0, 1.0, 1.5, 2.0]);
        let bad = add_rows_scaled_host(&mut acc, &[3, 2], &[3], &[1.0, 2.0], &[1.0]);
        assert!(bad.is_err());
        assert!(add_rows_scaled_host(&mut acc, &[3, 2], &[0], &[1.0], &[1.0]).is_err());
    }
}
