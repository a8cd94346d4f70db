//! Projections that read the same input, as one joined product where the backend allows it.
//!
//! q, k and v all multiply the attention norm's output, gate and up the FFN norm's. Joined
//! (`Backend::concat_weights`), each group is one product whose output columns are split back:
//! on a GPU that is one launch instead of three (decode of an 8B model is bound by ~15 launches
//! per layer as much as by bandwidth) and a wider GEMM for the small k/v products. The values
//! are the same either way: every output column is its own dot product.
use crate::backend::{rms_norm_maybe_add, Activation, Backend, QkvHeads, RopeKvWrite};
use crate::error::{ModelError, Result};

/// A projection group's input when it is the RMSNorm of `x` (with `residual`: of
/// `x + residual`, the fused add of a decoder layer) by `norm`.
pub struct NormedInput<'a, B: Backend + ?Sized> {
    pub x: &'a B::Tensor,
    pub residual: Option<&'a B::Tensor>,
    pub norm: &'a B::Weight,
    pub eps: f32,
}

impl<B: Backend + ?Sized> Clone for NormedInput<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized> Copy for NormedInput<'_, B> {}

impl<B: Backend + ?Sized> NormedInput<'_, B> {
    /// The stream's next value (`x + residual`, or `x`) and its RMSNorm, apart: for the
    /// products no fused norm kernel takes.
    pub fn normed(&self, b: &B) -> Result<(B::Tensor, B::Tensor)> {
        rms_norm_maybe_add(b, self.x, self.residual, self.norm, self.eps)
    }
}

/// What one product of `Backend::linear_many` multiplies: rows, or a gated linear unit's two
/// halves, `act(gate) · up`, as `Backend::glu_linear` reads them.
pub enum ProductInput<'a, T> {
    Rows(&'a T),
    Glu {
        gate: &'a T,
        up: &'a T,
        act: Activation,
    },
}

impl<T> Clone for ProductInput<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ProductInput<'_, T> {}

/// One product of `Backend::linear_many`: its input times the transpose of `w` (+ `bias`).
pub struct LinearJob<'a, B: Backend + ?Sized> {
    pub input: ProductInput<'a, B::Tensor>,
    pub w: &'a B::Weight,
    pub bias: Option<&'a B::Weight>,
}

impl<B: Backend + ?Sized> Clone for LinearJob<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend + ?Sized> Copy for LinearJob<'_, B> {}

impl<'a, B: Backend + ?Sized> LinearJob<'a, B> {
    /// `x @ w^T (+ bias)`.
    pub fn rows(x: &'a B::Tensor, w: &'a B::Weight, bias: Option<&'a B::Weight>) -> Self {
        LinearJob {
            input: ProductInput::Rows(x),
            w,
            bias,
        }
    }
}

/// One job as `Backend::linear_many`'s default runs it: `linear`, or `glu_linear` (with a bias:
/// `glu`, then `linear`).
pub fn run_linear_job<B: Backend + ?Sized>(b: &B, job: &LinearJob<'_, B>) -> Result<B::Tensor> {
    match (job.input, job.bias) {
        (ProductInput::Rows(x), bias) => b.linear(x, job.w, bias),
        (ProductInput::Glu { gate, up, act }, None) => b.glu_linear(gate, up, act, job.w),
        (ProductInput::Glu { gate, up, act }, Some(bias)) => {
            b.linear(&b.glu(gate, up, act)?, job.w, Some(bias))
        }
    }
}

/// The products of `jobs` in order: `Backend::linear_many`, or a lone job as the plain op it
/// is (`linear`, `glu_linear`: one op in profiles, a backend's fused form).
pub(crate) fn run_jobs<B: Backend + ?Sized>(
    b: &B,
    jobs: &[LinearJob<'_, B>],
) -> Result<Vec<B::Tensor>> {
    match jobs {
        [one] => Ok(vec![run_linear_job(b, one)?]),
        _ => b.linear_many(jobs),
    }
}

/// The `N` outputs of a projection group.
pub(crate) fn members<T, const N: usize>(parts: Vec<T>) -> Result<[T; N]> {
    parts.try_into().map_err(|p: Vec<T>| {
        ModelError::Backend(format!(
            "a projection group gave {} outputs, not {N}",
            p.len()
        ))
    })
}

/// The members of a joined product `y` (`[tokens, Σ widths]`): as `[tokens, width]` where
/// `unit` is 1, else in `unit`-wide heads, `split` by heads, not columns (the `[tokens, heads,
/// unit]` reshape is free), each member a view of whole rows of heads at the joined row's
/// stride, which the ops after it (RoPE, the KV write) read in place.
pub(crate) fn split_columns<B: Backend + ?Sized>(
    b: &B,
    y: &B::Tensor,
    widths: &[usize],
    unit: usize,
) -> Result<Vec<B::Tensor>> {
    let y = as_heads(b, y.clone(), widths.iter().sum(), unit)?;
    let sizes: Vec<usize> = widths.iter().map(|w| w / unit).collect();
    let parts = b.split(&y, &sizes)?;
    if parts.len() != widths.len() {
        return Err(ModelError::Backend(format!(
            "split returned {} parts for sizes {sizes:?}",
            parts.len()
        )));
    }
    Ok(parts)
}

/// `split_columns` into exactly `N` members, in `unit`-wide heads.
pub(crate) fn split_heads<B: Backend + ?Sized, const N: usize>(
    b: &B,
    y: &B::Tensor,
    widths: &[usize; N],
    unit: usize,
) -> Result<[B::Tensor; N]> {
    members(split_columns(b, y, widths, unit)?)
}

/// `y` (`[tokens, width]`) as it is (`unit` 1) or as `[tokens, width / unit, unit]`.
fn as_heads<B: Backend + ?Sized>(
    b: &B,
    y: B::Tensor,
    width: usize,
    unit: usize,
) -> Result<B::Tensor> {
    if unit == 1 {
        return Ok(y);
    }
    if !width.is_multiple_of(unit) {
        return Err(ModelError::Backend(format!(
            "a projection of width {width} is not made of {unit}-wide heads"
        )));
    }
    let tokens = b.shape(&y).first().copied().unwrap_or(0);
    b.reshape(&y, &[tokens, width / unit, unit])
}

pub struct Projections<B: Backend> {
    /// Output width of each member, in order.
    widths: Vec<usize>,
    weights: Weights<B>,
}

enum Weights<B: Backend> {
    Joined {
        weight: B::Weight,
        bias: Option<B::Weight>,
    },
    Separate(Vec<(B::Weight, Option<B::Weight>)>),
}

impl<B: Backend> Projections<B> {
    /// Join `members` (weight, optional bias) where the backend can: all weights, and the
    /// biases when every member has one (a group with some biases stays separate).
    pub fn new(backend: &B, members: Vec<(B::Weight, Option<B::Weight>)>) -> Result<Self> {
        let widths = members
            .iter()
            .map(|(w, _)| backend.weight_shape(w).first().copied().unwrap_or(0))
            .collect();
        Ok(Projections {
            widths,
            weights: Self::join(backend, members)?,
        })
    }

    /// A group stored joined in the file (Phi-3's `qkv_proj` and `gate_up_proj`): one weight
    /// whose output rows are the members', of `widths`, in order.
    pub fn joined(backend: &B, weight: B::Weight, widths: Vec<usize>) -> Result<Self> {
        let rows = backend.weight_shape(&weight).first().copied().unwrap_or(0);
        if rows != widths.iter().sum::<usize>() {
            return Err(ModelError::Backend(format!(
                "a joined projection of {rows} rows for members of widths {widths:?}"
            )));
        }
        Ok(Projections {
            widths,
            weights: Weights::Joined { weight, bias: None },
        })
    }

    fn join(backend: &B, members: Vec<(B::Weight, Option<B::Weight>)>) -> Result<Weights<B>> {
        let all_biased = members.iter().all(|(_, b)| b.is_some());
        let no_bias = members.iter().all(|(_, b)| b.is_none());
        if members.len() < 2 || !(all_biased || no_bias) {
            return Ok(Weights::Separate(members));
        }
        let weights: Vec<&B::Weight> = members.iter().map(|(w, _)| w).collect();
        let Some(weight) = backend.concat_weights(&weights)? else {
            return Ok(Weights::Separate(members));
        };
        let bias = if all_biased {
            let biases: Vec<&B::Weight> = members.iter().filter_map(|(_, b)| b.as_ref()).collect();
            match backend.concat_weights(&biases)? {
                Some(b) => Some(b),
                None => return Ok(Weights::Separate(members)),
            }
        } else {
            None
        };
        Ok(Weights::Joined { weight, bias })
    }

    /// Each member's product with the RMSNorm of `input` (`[tokens, in]`), in order: the
    /// layer's norm and the group that reads it, as one op where the group is joined
    /// (`Backend::rms_norm_linear`). Returns the residual stream's next value beside the
    /// members, each `[tokens, width]`, or with `head_dim` `[tokens, width / head_dim,
    /// head_dim]`: a joined product is then split by heads, not columns (its
    /// `[tokens, heads, head_dim]` reshape is free), and each member is a view of whole rows
    /// of heads at the joined row's stride, which the ops after it (RoPE, the KV write) read in
    /// place.
    pub fn apply_normed(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        head_dim: Option<usize>,
    ) -> Result<(B::Tensor, Vec<B::Tensor>)> {
        let unit = head_dim.unwrap_or(1);
        match &self.weights {
            Weights::Joined { weight, bias } => {
                let (stream, y) = b.rms_norm_linear(*input, weight, bias.as_ref())?;
                Ok((stream, split_columns(b, &y, &self.widths, unit)?))
            }
            Weights::Separate(_) => {
                let (stream, h) = input.normed(b)?;
                Ok((stream, self.apply_in(b, &h, unit)?))
            }
        }
    }

    /// `apply_normed` with each member's product passed through `finish(member, normed
    /// input, product)` before it is cut into heads (a LoRA update, which reads the normed
    /// input): always the unfused path, the norm and the products apart.
    pub fn apply_normed_then(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        head_dim: Option<usize>,
        finish: impl Fn(usize, &B::Tensor, B::Tensor) -> Result<B::Tensor>,
    ) -> Result<(B::Tensor, Vec<B::Tensor>)> {
        let unit = head_dim.unwrap_or(1);
        let (stream, h) = input.normed(b)?;
        let members = self
            .apply_in(b, &h, 1)?
            .into_iter()
            .zip(&self.widths)
            .enumerate()
            .map(|(i, (y, &width))| as_heads(b, finish(i, &h, y)?, width, unit))
            .collect::<Result<Vec<_>>>()?;
        Ok((stream, members))
    }

    /// The q/k/v group's work up to attention, from the residual stream (`input`): the norm,
    /// the products, RoPE of q and k, k and v written into the cache (`kv`). Returns the
    /// residual stream's next value and the rotated q (`[tokens, heads, head_dim]`). A joined
    /// group is one op (`Backend::rms_norm_qkv_rope_write_kv`); members must have the widths
    /// `heads` gives.
    pub fn apply_normed_rope_write_kv(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        heads: QkvHeads,
        kv: RopeKvWrite<'_, B::KvCache>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        if self.widths != heads.widths() {
            return Err(ModelError::Backend(format!(
                "q/k/v projections of widths {:?} for heads {heads:?}",
                self.widths
            )));
        }
        match &self.weights {
            Weights::Joined { weight, bias } => {
                b.rms_norm_qkv_rope_write_kv(*input, weight, bias.as_ref(), heads, kv)
            }
            Weights::Separate(_) => {
                let (stream, qkv) = self.apply_normed(b, input, Some(heads.head_dim))?;
                let [q, k, v] = members(qkv)?;
                Ok((stream, b.rope_qk_write_kv(&q, &k, &v, kv)?))
            }
        }
    }

    /// Each member's product with `x` (`[tokens, in]`), in order: `[tokens, width]`, or with
    /// `head_dim` `[tokens, width / head_dim, head_dim]` (views of a joined product, as
    /// `apply_normed` gives them).
    pub fn apply(&self, b: &B, x: &B::Tensor, head_dim: Option<usize>) -> Result<Vec<B::Tensor>> {
        self.apply_in(b, x, head_dim.unwrap_or(1))
    }

    /// `unit` 1: 2-D outputs; otherwise outputs of `unit`-wide heads.
    fn apply_in(&self, b: &B, x: &B::Tensor, unit: usize) -> Result<Vec<B::Tensor>> {
        self.members_of(b, run_jobs(b, &self.jobs(x))?, unit)
    }

    /// This group's products with `x` for `Backend::linear_many`: the joined one, or one per
    /// member (run in one call, not one after another).
    pub(crate) fn jobs<'a>(&'a self, x: &'a B::Tensor) -> Vec<LinearJob<'a, B>> {
        match &self.weights {
            Weights::Joined { weight, bias } => vec![LinearJob::rows(x, weight, bias.as_ref())],
            Weights::Separate(members) => members
                .iter()
                .map(|(w, bias)| LinearJob::rows(x, w, bias.as_ref()))
                .collect(),
        }
    }

    /// The members, in `unit`-wide heads (2-D with `unit` 1), from the outputs of `jobs`.
    pub(crate) fn members_of(
        &self,
        b: &B,
        outputs: Vec<B::Tensor>,
        unit: usize,
    ) -> Result<Vec<B::Tensor>> {
        match &self.weights {
            Weights::Joined { .. } => {
                let [y] = members(outputs)?;
                split_columns(b, &y, &self.widths, unit)
            }
            Weights::Separate(_) if outputs.len() == self.widths.len() => outputs
                .into_iter()
                .zip(&self.widths)
                .map(|(y, &width)| as_heads(b, y, width, unit))
                .collect(),
            Weights::Separate(_) => Err(ModelError::Backend(format!(
                "{} products came back for a projection group of {} members",
                outputs.len(),
                self.widths.len()
            ))),
        }
    }

    pub fn is_joined(&self) -> bool {
        matches!(self.weights, Weights::Joined { .. })
    }
}
