//! Counting the ops a plugin did not run. The backend runs such an op on the CPU backend with
//! explicit copies (download the inputs, compute on the host, upload the result); every such
//! run is counted here by op, for the start-up log, `/metrics` and the conformance table.
use std::sync::atomic::{AtomicU64, Ordering};

/// The Backend trait's ops, by the names used in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Embedding,
    RmsNorm,
    AddRmsNorm,
    Linear,
    Rope,
    KvWrite,
    PagedAttention,
    Glu,
    Add,
    Mul,
    Scale,
    Softcap,
    Softmax,
    GatherRows,
    Argmax,
    HeadsLinear,
    LayerNorm,
    /// Not in the ABI: LFM2's short convolutions always read their taps back to the host.
    ShortConv,
    /// Apertus's xIELU, numbers of its own per layer (ABI 1.5).
    Xielu,
    /// OLMo's and MPT's clamp of q, k and v (ABI 1.5).
    Clamp,
    /// Qwen3-Next's sigmoid gate of the attention's output (ABI 1.5).
    MulSigmoid,
    /// BitNet's per-token quantization of the products' inputs (ABI 1.5).
    QuantizeRows,
}

impl Op {
    pub const ALL: [Op; 22] = [
        Op::Embedding,
        Op::RmsNorm,
        Op::AddRmsNorm,
        Op::Linear,
        Op::Rope,
        Op::KvWrite,
        Op::PagedAttention,
        Op::Glu,
        Op::Add,
        Op::Mul,
        Op::Scale,
        Op::Softcap,
        Op::Softmax,
        Op::GatherRows,
        Op::Argmax,
        Op::HeadsLinear,
        Op::LayerNorm,
        Op::ShortConv,
        Op::Xielu,
        Op::Clamp,
        Op::MulSigmoid,
        Op::QuantizeRows,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Embedding => "embedding",
            Op::RmsNorm => "rms_norm",
            Op::AddRmsNorm => "add_rms_norm",
            Op::Linear => "linear",
            Op::Rope => "rope",
            Op::KvWrite => "kv_write",
            Op::PagedAttention => "paged_attention",
            Op::Glu => "glu",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Scale => "scale",
            Op::Softcap => "softcap",
            Op::Softmax => "softmax",
            Op::GatherRows => "gather_rows",
            Op::Argmax => "argmax",
            Op::HeadsLinear => "heads_linear",
            Op::LayerNorm => "layer_norm",
            Op::ShortConv => "short_conv",
            Op::Xielu => "xielu",
            Op::Clamp => "clamp",
            Op::MulSigmoid => "mul_sigmoid",
            Op::QuantizeRows => "quantize_rows",
        }
    }
}

/// Per-op counts of CPU fallbacks; lock-free, shared by clones of the backend.
#[derive(Debug, Default)]
pub struct FallbackCounts {
    counts: [AtomicU64; Op::ALL.len()],
}

impl FallbackCounts {
    pub fn record(&self, op: Op) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, op: Op) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// (op name, count) of every op that fell back at least once.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        Op::ALL
            .iter()
            .map(|&op| (op.name(), self.get(op)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// `linear×96, gather_rows×2` for logs; "none" when empty.
pub fn summary(counts: &[(&'static str, u64)]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(op, n)| format!("{op}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_op_and_lists_only_used_ones() {
        let c = FallbackCounts::default();
        assert!(c.nonzero().is_empty());
        c.record(Op::GatherRows);
        c.record(Op::Linear);
        c.record(Op::GatherRows);
        assert_eq!(c.nonzero(), vec![("linear", 1), ("gather_rows", 2)]);
        assert_eq!(summary(&c.nonzero()), "linear×1, gather_rows×2");
        assert_eq!(summary(&[]), "none");
        // Indexes stay within the array for every op.
        for op in Op::ALL {
            c.record(op);
        }
        assert_eq!(c.get(Op::Argmax), 1);
    }
}
