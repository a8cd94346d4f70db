//! Which LoRA adapters a sequence runs with, and at what scale each: none for the base model,
//! one at scale 1 for a request that names an adapter as its model (vLLM's way), any set at any
//! scales for llama-server's per-request `lora` list (`[{"id", "scale"}]`). The scale multiplies
//! the adapter's update `(alpha / r)·B·A` on top of what its file already folds in, as
//! llama.cpp's `--lora-scaled` does.

/// The most a scale may be either way: far past any useful blend (llama.cpp takes any float;
/// an overflowing update would only turn the logits into infinities).
pub const MAX_LORA_SCALE: f64 = 1e4;

/// A scale as sent, if it is one: finite and at most `MAX_LORA_SCALE` either way.
pub fn usable_scale(scale: f64) -> Option<f32> {
    (scale.is_finite() && scale.abs() <= MAX_LORA_SCALE).then_some(scale as f32)
}

/// The adapters of one sequence, by slot (an index into the model's adapters), each with its
/// scale: sorted by slot, no slot twice, no zero scale (an adapter at scale 0 is not run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoraMix(Vec<(u32, f32)>);

impl LoraMix {
    /// The base model alone.
    pub const BASE: LoraMix = LoraMix(Vec::new());

    /// The adapter of `slot` at its own scale.
    pub fn one(slot: u32) -> Self {
        LoraMix(vec![(slot, 1.0)])
    }

    /// The adapter of `slot` at its own scale, or the base model for None.
    pub fn of(slot: Option<u32>) -> Self {
        slot.map_or(Self::BASE, Self::one)
    }

    /// `(slot, scale)` pairs in any order: a slot named twice keeps its last scale (as
    /// llama-server reads its list), scales of 0 are left out.
    pub fn scaled(pairs: impl IntoIterator<Item = (u32, f32)>) -> Self {
        let mut kept: Vec<(u32, f32)> = Vec::new();
        for (slot, scale) in pairs {
            match kept.iter_mut().find(|(s, _)| *s == slot) {
                Some(entry) => entry.1 = scale,
                None => kept.push((slot, scale)),
            }
        }
        kept.retain(|&(_, scale)| scale != 0.0);
        kept.sort_by_key(|&(slot, _)| slot);
        LoraMix(kept)
    }

    /// Whether no adapter is run (the base model's fused path).
    pub fn is_base(&self) -> bool {
        self.0.is_empty()
    }

    /// The adapters and their scales, by slot.
    pub fn scales(&self) -> &[(u32, f32)] {
        &self.0
    }

    /// The slots of the adapters it runs.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|&(slot, _)| slot)
    }

    /// Whether it runs the adapter of `slot`.
    pub fn uses(&self, slot: u32) -> bool {
        self.slots().any(|s| s == slot)
    }

    /// The one adapter it runs at scale 1, if that is what it is (a request that named an
    /// adapter as its model).
    pub fn single(&self) -> Option<u32> {
        match self.0[..] {
            [(slot, 1.0)] => Some(slot),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_kept_by_slot_with_its_last_scale_and_no_zeros() {
        let mix = LoraMix::scaled([(3, 0.5), (1, 2.0), (3, -1.0), (2, 0.0)]);
        assert_eq!(mix.scales(), &[(1, 2.0), (3, -1.0)]);
        assert!(mix.uses(3) && !mix.uses(2));
        assert_eq!(mix.single(), None);
        assert!(LoraMix::scaled([(0, 0.0)]).is_base());
        assert_eq!(LoraMix::scaled([(4, 1.0)]), LoraMix::one(4));
        assert_eq!(LoraMix::one(4).single(), Some(4));
        assert_eq!(LoraMix::scaled([(4, 0.5)]).single(), None);
        assert_eq!(LoraMix::of(None), LoraMix::BASE);
    }
}
