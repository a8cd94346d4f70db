//! What a mixture of experts reads and computes per token, for honest MBU and MFU: a token runs
//! `per_token` of each MoE layer's `experts`, so counting every parameter (as for a dense
//! model) would credit a Qwen3-30B-A3B decode with reading ten times the bytes it reads.
//!
//! - FLOPs per token: 2 × the active parameters (every parameter less the experts a token
//!   skips).
//! - Weight bytes a step of `n` tokens reads: every weight but the experts none of its tokens
//!   chose. With routing spread evenly (what load-balanced routers are trained for), a layer's
//!   step touches `E (1 - (1 - k/E)^n)` of its `E` experts: `k` at batch 1, nearly all for a
//!   512-token prefill chunk. Bytes are taken in proportion to parameters (one storage type).
use candor_models::ModelSpec;
use serde::{Deserialize, Serialize};

/// A model's experts as a result document records them (`model.experts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpertShape {
    /// Routed experts per MoE layer.
    pub experts: usize,
    /// Experts each token runs per MoE layer.
    pub per_token: usize,
    /// Layers that run experts.
    pub layers: usize,
    /// Parameters of one routed expert (its gate, up and down matrices).
    pub parameters_per_expert: u64,
}

impl ExpertShape {
    /// The experts of `spec`; None for a dense model.
    pub fn of_model(spec: &ModelSpec) -> Option<Self> {
        let m = spec.experts.as_ref()?;
        Some(ExpertShape {
            experts: m.num_experts,
            per_token: m.experts_per_token,
            layers: m.layers.iter().filter(|&&moe| moe).count(),
            parameters_per_expert: 3 * (m.expert_intermediate_size * spec.hidden_size) as u64,
        })
    }

    /// Parameters one token computes with, of a model of `total`.
    pub fn active_parameters(&self, total: f64) -> f64 {
        let skipped = self.experts.saturating_sub(self.per_token) as f64;
        (total - self.layers as f64 * skipped * self.parameters_per_expert as f64).max(0.0)
    }

    /// The share of a model of `total` parameters that a step of `tokens` tokens reads.
    pub fn read_fraction(&self, total: f64, tokens: usize) -> f64 {
        if total <= 0.0 || self.experts == 0 {
            return 1.0;
        }
        let e = self.experts as f64;
        let chosen = (self.per_token as f64 / e).min(1.0);
        let touched = e * (1.0 - (1.0 - chosen).powi(tokens.max(1) as i32));
        let unread = self.layers as f64 * (e - touched) * self.parameters_per_expert as f64;
        ((total - unread) / total).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen3-30B-A3B: 48 layers of 128 experts (8 per token) of 3 × 768 × 2048 parameters.
    const QWEN3_30B: ExpertShape = ExpertShape {
        experts: 128,
        per_token: 8,
        layers: 48,
        parameters_per_expert: 3 * 768 * 2048,
    };
    const TOTAL: f64 = 30_532_122_624.0;

    #[test]
    fn a_token_computes_with_the_active_parameters_only() {
        // Published: 3.3B activated.
        let active = QWEN3_30B.active_parameters(TOTAL);
        assert!((active / 1e9 - 3.35).abs() < 0.01, "{active}");
    }

    #[test]
    fn a_step_reads_the_experts_its_tokens_chose() {
        let one = QWEN3_30B.read_fraction(TOTAL, 1);
        assert!((one - QWEN3_30B.active_parameters(TOTAL) / TOTAL).abs() < 1e-12);
        let batch = QWEN3_30B.read_fraction(TOTAL, 32);
        assert!(batch > one && batch < 0.9, "{batch}");
        assert!(QWEN3_30B.read_fraction(TOTAL, 512) > 0.99);
    }
}
