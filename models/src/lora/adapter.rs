//! A LoRA adapter in host memory: for some projections of some layers, the low-rank update
//! `s·B·A` (`A`: `[r, in]`, `B`: `[out, r]`) that turns the base weight `W` into `W + s·B·A`,
//! whatever file it came from (`peft`, `gguf`).
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::ModelSpec;
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// The projections of a decoder layer an adapter can update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The members of the q/k/v and the gate/up projection groups, in their order.
    pub const QKV: [LoraTarget; 3] = [LoraTarget::Q, LoraTarget::K, LoraTarget::V];
    pub const GATE_UP: [LoraTarget; 2] = [LoraTarget::Gate, LoraTarget::Up];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The base weight's canonical (GGUF) name stem: `blk.N.{stem}.weight`.
    pub fn gguf_stem(self) -> &'static str {
        match self {
            LoraTarget::Q => "attn_q",
            LoraTarget::K => "attn_k",
            LoraTarget::V => "attn_v",
            LoraTarget::O => "attn_output",
            LoraTarget::Gate => "ffn_gate",
            LoraTarget::Up => "ffn_up",
            LoraTarget::Down => "ffn_down",
        }
    }

    /// The module's name in a Hugging Face decoder layer (`model.layers.N.{module}`).
    pub fn hf_module(self) -> &'static str {
        match self {
            LoraTarget::Q => "self_attn.q_proj",
            LoraTarget::K => "self_attn.k_proj",
            LoraTarget::V => "self_attn.v_proj",
            LoraTarget::O => "self_attn.o_proj",
            LoraTarget::Gate => "mlp.gate_proj",
            LoraTarget::Up => "mlp.up_proj",
            LoraTarget::Down => "mlp.down_proj",
        }
    }

    pub fn from_gguf_stem(stem: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.gguf_stem() == stem)
    }

    pub fn from_hf_module(module: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.hf_module() == module)
    }

    /// `[out, in]` of the base weight in a model of `spec`.
    pub fn shape(self, spec: &ModelSpec) -> [usize; 2] {
        let (h, f) = (spec.hidden_size, spec.intermediate_size);
        match self {
            LoraTarget::Q => [spec.q_dim(), h],
            LoraTarget::K | LoraTarget::V => [spec.kv_dim(), h],
            LoraTarget::O => [h, spec.q_dim()],
            LoraTarget::Gate | LoraTarget::Up => [f, h],
            LoraTarget::Down => [h, f],
        }
    }
}

/// A projection group that some checkpoints store as one weight (Phi-3's `qkv_proj` and
/// `gate_up_proj`): its update comes as one pair, whose B rows are the members' in order,
/// split into their own pairs (sharing A) once the model's widths are known (`fitted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JoinedTarget {
    Qkv,
    GateUp,
}

impl JoinedTarget {
    pub const ALL: [JoinedTarget; 2] = [JoinedTarget::Qkv, JoinedTarget::GateUp];

    /// The module's name in a Hugging Face decoder layer.
    pub fn hf_module(self) -> &'static str {
        match self {
            JoinedTarget::Qkv => "self_attn.qkv_proj",
            JoinedTarget::GateUp => "mlp.gate_up_proj",
        }
    }

    pub fn from_hf_module(module: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.hf_module() == module)
    }

    /// The members, in their row order.
    pub fn members(self) -> &'static [LoraTarget] {
        match self {
            JoinedTarget::Qkv => &LoraTarget::QKV,
            JoinedTarget::GateUp => &LoraTarget::GATE_UP,
        }
    }
}

/// What one update in a file changes: a projection, or a joined group of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Updated {
    One(LoraTarget),
    Joined(JoinedTarget),
}

impl Updated {
    pub fn from_hf_module(module: &str) -> Option<Self> {
        LoraTarget::from_hf_module(module)
            .map(Updated::One)
            .or_else(|| JoinedTarget::from_hf_module(module).map(Updated::Joined))
    }
}

/// One projection's update: `a` is `[r, in]`, `b` is `[out, r]` with the adapter's scale for
/// this projection already folded in, so the update is exactly `b · a`; both in `stored`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Tensor,
    pub b: Tensor,
    /// The type the file stores both in (f16 or bf16, as adapters are mostly shipped), else
    /// f32: host and device keep the pair in it (B rounded once more where the folded scale
    /// is not a power of two).
    pub stored: DType,
}

impl LoraPair {
    /// The pair as read from a file: `b` times `scale` (in f32, rounded back to the file's
    /// type); their ranks must agree.
    pub fn scaled(
        a: Tensor,
        b: Tensor,
        scale: f64,
        what: &str,
    ) -> std::result::Result<Self, String> {
        let stored = match (a.dtype(), b.dtype()) {
            (DType::F16, DType::F16) => DType::F16,
            (DType::BF16, DType::BF16) => DType::BF16,
            _ => DType::F32,
        };
        let (a, b) = (f32_2d(a, what, "A")?, f32_2d(b, what, "B")?);
        let (r_a, r_b) = (a.dims()[0], b.dims()[1]);
        if r_a != r_b || r_a == 0 {
            return Err(format!(
                "{what}: A is {:?} and B is {:?}; A must be [r, in] and B [out, r] with the same \
                 rank r > 0",
                a.dims(),
                b.dims()
            ));
        }
        let stored_as = |t: Tensor| t.to_dtype(stored).map_err(|e| format!("{what}: {e}"));
        let b = b.affine(scale, 0.0).map_err(|e| format!("{what}: {e}"))?;
        Ok(LoraPair {
            a: stored_as(a)?,
            b: stored_as(b)?,
            stored,
        })
    }

    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `[out, in]` of the weight this pair updates.
    pub fn shape(&self) -> [usize; 2] {
        [self.b.dims()[0], self.a.dims()[1]]
    }

    /// `b · a` (f32): what the adapter adds to the base weight.
    pub fn delta(&self) -> Result<Tensor> {
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        Ok(f32(&self.b)?.matmul(&f32(&self.a)?)?)
    }
}

/// The rows of a q or k weight (`[heads * head_dim, in]`) reordered between Hugging Face's
/// RoPE pairing (i with i + d/2) and the interleaved one (2i with 2i + 1) llama.cpp's converter
/// gives llama-family weights: `to_interleaved` as the converter permutes, else back.
fn reorder_rope_rows(w: &Tensor, heads: usize, to_interleaved: bool) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let half = out / heads.max(1) / 2;
    if heads == 0 || half == 0 || heads * half * 2 != out {
        return Err(ModelError::Config(format!(
            "a q/k update of {out} rows is not {heads} heads of an even size"
        )));
    }
    let split = match to_interleaved {
        true => (heads, 2, half, inp),
        false => (heads, half, 2, inp),
    };
    Ok(w.reshape(split)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

fn f32_2d(t: Tensor, what: &str, which: &str) -> std::result::Result<Tensor, String> {
    if t.rank() != 2 {
        return Err(format!("{what}: {which} has shape {:?}, not 2-D", t.dims()));
    }
    t.to_dtype(DType::F32).map_err(|e| format!("{what}: {e}"))
}

/// The A and B tensors of an adapter's updates as a file lists them (in any order), gathered
/// into pairs.
pub(super) struct Halves<T> {
    /// (layer, target) → the update's name in the file, and its A and B as found.
    found: BTreeMap<(usize, T), (String, HalvesFound)>,
}

impl<T> Default for Halves<T> {
    fn default() -> Self {
        Halves {
            found: BTreeMap::new(),
        }
    }
}

type HalvesFound = [Option<Tensor>; 2];

impl<T: Ord + Copy> Halves<T> {
    pub fn insert(&mut self, layer: usize, target: T, what: String, is_a: bool, t: Tensor) {
        let entry = self
            .found
            .entry((layer, target))
            .or_insert((what, [None, None]));
        entry.1[usize::from(!is_a)] = Some(t);
    }

    /// The pairs, each scaled by `scale(name, rank)`; an update missing A or B is refused.
    pub fn into_pairs(
        self,
        scale: impl Fn(&str, usize) -> f64,
    ) -> std::result::Result<BTreeMap<(usize, T), LoraPair>, String> {
        let mut pairs = BTreeMap::new();
        for (key, (what, [a, b])) in self.found {
            let (Some(a), Some(b)) = (a, b) else {
                return Err(format!("{what} has only one of its A and B tensors"));
            };
            let rank = a.dims().first().copied().unwrap_or(0).max(1);
            pairs.insert(key, LoraPair::scaled(a, b, scale(&what, rank), &what)?);
        }
        Ok(pairs)
    }
}

/// An adapter: its updates by (layer, projection).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// Where it was read from (for messages).
    pub path: String,
    pub pairs: BTreeMap<(usize, LoraTarget), LoraPair>,
    /// Updates of joined groups, split into `pairs` by `fitted`.
    pub joined: BTreeMap<(usize, JoinedTarget), LoraPair>,
    /// Whether the rows of its q and k updates are in the order llama.cpp's converter gives
    /// llama-family weights for its interleaved RoPE (`RopeStyle::Interleaved`), rather than
    /// Hugging Face's.
    pub qk_interleaved: bool,
}

impl LoraAdapter {
    /// An adapter of `pairs`; refused when it updates nothing.
    pub fn new(
        path: String,
        pairs: BTreeMap<(usize, LoraTarget), LoraPair>,
        qk_interleaved: bool,
    ) -> Result<Self> {
        Self::with_joined(path, pairs, BTreeMap::new(), qk_interleaved)
    }

    /// An adapter of `pairs` and of updates of joined groups (`JoinedTarget`).
    pub fn with_joined(
        path: String,
        pairs: BTreeMap<(usize, LoraTarget), LoraPair>,
        joined: BTreeMap<(usize, JoinedTarget), LoraPair>,
        qk_interleaved: bool,
    ) -> Result<Self> {
        if pairs.is_empty() && joined.is_empty() {
            return Err(ModelError::BadAdapter {
                path,
                reason: "it updates no projection of a decoder layer".into(),
            });
        }
        Ok(LoraAdapter {
            path,
            pairs,
            joined,
            qk_interleaved,
        })
    }

    /// The joined groups' updates split into their members' pairs (each member's rows of B,
    /// the shared A), for a model of `spec`.
    fn split_joined(&self, spec: &ModelSpec) -> Result<LoraAdapter> {
        let mut split = self.clone();
        split.joined.clear();
        for (&(layer, group), pair) in &self.joined {
            let bad = |reason: String| ModelError::BadAdapter {
                path: self.path.clone(),
                reason,
            };
            let widths: Vec<usize> = group.members().iter().map(|m| m.shape(spec)[0]).collect();
            let rows = pair.shape()[0];
            if rows != widths.iter().sum::<usize>() {
                return Err(bad(format!(
                    "its update of layer {layer}'s {} has {rows} rows, the model's members \
                     have {widths:?} (an adapter of another model?)",
                    group.hf_module()
                )));
            }
            let mut start = 0;
            for (&member, width) in group.members().iter().zip(widths) {
                let part = LoraPair {
                    a: pair.a.clone(),
                    b: pair.b.narrow(0, start, width)?.contiguous()?,
                    stored: pair.stored,
                };
                start += width;
                if split.pairs.insert((layer, member), part).is_some() {
                    return Err(bad(format!(
                        "it updates layer {layer}'s {} both joined and apart",
                        member.gguf_stem()
                    )));
                }
            }
        }
        Ok(split)
    }

    /// The adapter as a model of `spec` reads it: checked (`check`), its q and k updates'
    /// rows in the model's order (a PEFT adapter on a llama GGUF, or a llama.cpp adapter on a
    /// Hugging Face checkout, has them in the other one).
    pub fn fitted(&self, spec: &ModelSpec) -> Result<LoraAdapter> {
        let mut fitted = self.split_joined(spec)?;
        fitted.check_pairs(spec)?;
        let interleaved = spec.rope.style == RopeStyle::Interleaved;
        if interleaved == fitted.qk_interleaved {
            return Ok(fitted);
        }
        for (&(_, target), pair) in fitted.pairs.iter_mut() {
            let heads = match target {
                LoraTarget::Q => spec.num_heads,
                LoraTarget::K => spec.num_kv_heads,
                _ => continue,
            };
            pair.b = reorder_rope_rows(&pair.b, heads, interleaved)?;
        }
        fitted.qk_interleaved = interleaved;
        Ok(fitted)
    }

    /// Its largest rank on `target` across layers (0 where it leaves `target` alone).
    pub fn rank(&self, target: LoraTarget) -> usize {
        self.pairs
            .iter()
            .filter(|((_, t), _)| *t == target)
            .map(|(_, p)| p.rank())
            .max()
            .unwrap_or(0)
    }

    /// Whether it fits a model of `spec`: layers that exist, each pair the shape of the
    /// weight it updates (joined groups split first).
    pub fn check(&self, spec: &ModelSpec) -> Result<()> {
        self.split_joined(spec)?.check_pairs(spec)
    }

    fn check_pairs(&self, spec: &ModelSpec) -> Result<()> {
        for (&(layer, target), pair) in &self.pairs {
            let bad = |reason: String| ModelError::BadAdapter {
                path: self.path.clone(),
                reason,
            };
            if layer >= spec.num_layers {
                return Err(bad(format!(
                    "it updates layer {layer}; the model has {} layers",
                    spec.num_layers
                )));
            }
            let expected = target.shape(spec);
            if pair.shape() != expected {
                return Err(bad(format!(
                    "its update of blk.{layer}.{} is {:?}, the model's weight is {expected:?} \
                     (an adapter of another model?)",
                    target.gguf_stem(),
                    pair.shape()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_pair_folds_its_scale_into_b_and_checks_ranks() {
        let a = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::ones((4, 2), DType::F32, &Device::Cpu).unwrap();
        let p = LoraPair::scaled(a.clone(), b.clone(), 0.5, "x").unwrap();
        assert_eq!((p.rank(), p.shape()), (2, [4, 3]));
        let d: Vec<Vec<f32>> = p.delta().unwrap().to_vec2().unwrap();
        assert!(d.iter().flatten().all(|&v| (v - 1.0).abs() < 1e-6));
        let wrong = Tensor::ones((4, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(LoraPair::scaled(a, wrong, 1.0, "x").is_err());
    }

    #[test]
    fn rope_row_orders_convert_both_ways() {
        // One head of 4 rows: HF pairs rows (0, 2) and (1, 3); interleaved (0, 1) and (2, 3).
        let w = Tensor::arange(0f32, 8., &Device::Cpu)
            .unwrap()
            .reshape((4, 2))
            .unwrap();
        let inter = reorder_rope_rows(&w, 1, true).unwrap();
        let rows: Vec<Vec<f32>> = inter.to_vec2().unwrap();
        assert_eq!(
            rows,
            vec![vec![0., 1.], vec![4., 5.], vec![2., 3.], vec![6., 7.]]
        );
        let back: Vec<Vec<f32>> = reorder_rope_rows(&inter, 1, false)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(back, w.to_vec2::<f32>().unwrap());
    }

    /// A joined update splits into its members' pairs (B's rows in order, A shared); one of
    /// another model's widths, or one given both joined and apart, is refused.
    #[test]
    fn joined_updates_split_into_their_members() {
        let spec = crate::arch::spec_from_hf(&serde_json::json!({
            "model_type": "phi3", "hidden_size": 8, "intermediate_size": 6,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "vocab_size": 16
        }))
        .unwrap();
        let (q, kv) = (spec.q_dim(), spec.kv_dim());
        let pair = |rows: usize| {
            let b = Tensor::arange(0f32, rows as f32, &Device::Cpu)
                .unwrap()
                .reshape((rows, 1))
                .unwrap();
            LoraPair::scaled(
                Tensor::ones((1, 8), DType::F32, &Device::Cpu).unwrap(),
                b,
                1.0,
                "x",
            )
            .unwrap()
        };
        let joined = |rows: usize| BTreeMap::from([((0, JoinedTarget::Qkv), pair(rows))]);
        let adapter =
            LoraAdapter::with_joined("a".into(), BTreeMap::new(), joined(q + 2 * kv), false)
                .unwrap();
        let fitted = adapter.fitted(&spec).unwrap();
        let first_row = |t: LoraTarget| fitted.pairs[&(0, t)].b.to_vec2::<f32>().unwrap()[0][0];
        assert_eq!(
            [LoraTarget::Q, LoraTarget::K, LoraTarget::V].map(first_row),
            [0.0, q as f32, (q + kv) as f32]
        );
        assert_eq!(fitted.pairs[&(0, LoraTarget::K)].shape(), [kv, 8]);
        let misfit = LoraAdapter::with_joined("a".into(), BTreeMap::new(), joined(q), false);
        assert!(misfit.unwrap().check(&spec).is_err());
        let both = LoraAdapter::with_joined(
            "a".into(),
            BTreeMap::from([((0, LoraTarget::K), pair(kv))]),
            joined(q + 2 * kv),
            false,
        );
        let e = both.unwrap().check(&spec).unwrap_err().to_string();
        assert!(e.contains("both joined and apart"), "{e}");
    }

    #[test]
    fn targets_name_themselves_both_ways() {
        for t in LoraTarget::ALL {
            assert_eq!(LoraTarget::from_gguf_stem(t.gguf_stem()), Some(t));
            assert_eq!(LoraTarget::from_hf_module(t.hf_module()), Some(t));
        }
        assert_eq!(LoraTarget::from_hf_module("lm_head"), None);
    }
}
