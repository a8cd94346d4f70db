//! BGE-M3's lexical weights: beside its dense `[CLS]` embedding, BAAI's checkout ships a
//! one-output layer (`sparse_linear.pt`) that weighs each token, `relu(w · h + b)`; a text's
//! sparse vector holds, for every vocabulary id it contains, the largest weight of its
//! occurrences, leaving out the special tokens (`[CLS]`, EOS, padding, unknown), as
//! FlagEmbedding's `BGEM3FlagModel` answers `lexical_weights`. The file is PyTorch's (a
//! pickled state dict), read by candle's restricted unpickler: it runs no code.
use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// The file BAAI's checkout keeps the lexical layer in.
pub const LEXICAL_FILE: &str = "sparse_linear.pt";

pub struct LexicalHead {
    /// `[hidden, 1]`.
    weight: Tensor,
    bias: f32,
    /// Token ids that weigh nothing whatever the layer says (the special tokens).
    skipped: Vec<u32>,
}

impl LexicalHead {
    /// The layer in `dir/sparse_linear.pt` for states `hidden` wide, on `device`; None where
    /// the checkout has no such file. `skipped`: the ids of the tokenizer's `[CLS]`, EOS,
    /// padding and unknown tokens.
    pub fn load(
        dir: &Path,
        hidden: usize,
        skipped: Vec<u32>,
        device: &Device,
    ) -> Result<Option<LexicalHead>> {
        let path = dir.join(LEXICAL_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let (weight, bias) = read_pt_layer(&path)?;
        let weight = weight.flatten_all()?;
        let bias = bias.to_vec1::<f32>()?;
        if weight.dim(0)? != hidden || bias.len() != 1 {
            return Err(ModelError::Config(format!(
                "{}: a layer of {} weights and {} biases; the model's states are {hidden} wide \
                 and the layer has one output",
                path.display(),
                weight.dim(0)?,
                bias.len()
            )));
        }
        Ok(Some(LexicalHead {
            weight: weight.reshape((hidden, 1))?.to_device(device)?,
            bias: bias[0],
            skipped,
        }))
    }

    /// One input's sparse vector over a vocabulary of `vocab` entries from its tokens `ids`
    /// and their final states (`[tokens, hidden]`), on the host.
    pub fn pool(&self, states: &Tensor, ids: &[u32], vocab: usize) -> Result<Vec<f32>> {
        let weights = states.matmul(&self.weight)?.flatten_all()?;
        let weights = weights.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        Ok(self.vector(&weights, ids, vocab))
    }

    /// The vector of tokens `ids` whose layer outputs (before the bias) are `weights`.
    fn vector(&self, weights: &[f32], ids: &[u32], vocab: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; vocab];
        for (&id, &w) in ids.iter().zip(weights) {
            let w = (w + self.bias).max(0.0);
            match out.get_mut(id as usize) {
                Some(slot) if !self.skipped.contains(&id) => *slot = slot.max(w),
                _ => {}
            }
        }
        out
    }
}

/// BGE-M3's lexical layer token by token, as vLLM's `/pooling` answers `token_classify` for it:
/// every token's weight, less the first token where it is the model's BOS and the last where
/// it is its EOS (config.json's `bos_token_id`, `eos_token_id`). A host copy of the layer the
/// engine pools whole texts with.
pub struct TokenWeights {
    /// `[hidden, 1]`, on the host.
    weight: Tensor,
    bias: f32,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl TokenWeights {
    /// The layer of `head` (loaded from checkout `dir`), with the BOS and EOS its config.json
    /// names.
    pub fn of(head: &LexicalHead, dir: &Path) -> Result<TokenWeights> {
        let config = super::config::config_json(dir)?;
        let id = |key: &str| {
            let v = config.get(key)?;
            let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
            v.as_u64().and_then(|id| u32::try_from(id).ok())
        };
        Ok(TokenWeights {
            weight: head.weight.to_device(&Device::Cpu)?,
            bias: head.bias,
            bos: id("bos_token_id"),
            eos: id("eos_token_id"),
        })
    }

    /// One input's token weights from its tokens `ids` and their final states (row-major,
    /// the layer's width each): `relu(w · h + b)`, or `w · h + b` without `activation`.
    pub fn weights(&self, ids: &[u32], states: &[f32], activation: bool) -> Result<Vec<f32>> {
        let hidden = self.weight.dim(0)?;
        if states.len() != ids.len() * hidden {
            return Err(ModelError::Config(format!(
                "{} token states of {hidden} values for {} tokens",
                states.len() / hidden.max(1),
                ids.len()
            )));
        }
        let states = Tensor::from_slice(states, (ids.len(), hidden), &Device::Cpu)?;
        let raw = states
            .matmul(&self.weight)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let first = usize::from(self.bos.is_some() && ids.first() == self.bos.as_ref());
        let last = ids.len() - usize::from(ids.len() > first && ids.last() == self.eos.as_ref());
        let weight = |w: f32| match activation {
            true => (w + self.bias).max(0.0),
            false => w + self.bias,
        };
        Ok(raw[first..last].iter().map(|&w| weight(w)).collect())
    }
}

/// The `weight` and `bias` of a linear layer's state dict saved by PyTorch (`torch.save`), as
/// f32 on the host.
pub(super) fn read_pt_layer(path: &Path) -> Result<(Tensor, Tensor)> {
    let bad = |why: String| ModelError::Config(format!("{}: {why}", path.display()));
    let tensors = candle_core::pickle::read_all(path).map_err(|e| bad(e.to_string()))?;
    let named = |name: &str| -> Result<Tensor> {
        let (_, t) = (tensors.iter())
            .find(|(n, _)| n == name)
            .ok_or_else(|| bad(format!("no `{name}` tensor")))?;
        Ok(t.to_dtype(DType::F32)?)
    };
    Ok((named("weight")?, named("bias")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_keeps_its_largest_weight_and_special_tokens_none() {
        let head = LexicalHead {
            weight: Tensor::zeros((1, 1), DType::F32, &Device::Cpu).unwrap(),
            bias: -0.5,
            skipped: vec![0, 2],
        };
        // <s>=0 a=5 b=6 a=5 </s>=2, and an id past the vocabulary, which nothing counts.
        let v = head.vector(&[3.0, 1.0, 0.25, 2.0, 9.0, 4.0], &[0, 5, 6, 5, 2, 99], 8);
        assert_eq!(v, [0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0]);
    }

    #[test]
    fn token_weights_leave_out_a_leading_bos_and_a_trailing_eos_only() {
        // w = [1, 0]: a token's weight is its state's first value, plus the bias.
        let layer = TokenWeights {
            weight: Tensor::new(&[[1.0f32], [0.0]], &Device::Cpu).unwrap(),
            bias: -0.5,
            bos: Some(0),
            eos: Some(2),
        };
        let states = [3.0, 9.0, 1.0, 9.0, 0.25, 9.0, 2.0, 9.0];
        let w = |ids: &[u32], act| layer.weights(ids, &states[..2 * ids.len()], act).unwrap();
        assert_eq!(w(&[0, 5, 6, 2], true), [0.5, 0.0]);
        assert_eq!(w(&[0, 5, 6, 2], false), [0.5, -0.25]);
        // No BOS first, no EOS last: every token; a BOS or EOS elsewhere is a token like any.
        assert_eq!(w(&[5, 0, 2, 7], true), [2.5, 0.5, 0.0, 1.5]);
        assert_eq!(w(&[0], true), Vec::<f32>::new());
        assert!(layer.weights(&[5, 6], &states[..3], true).is_err());
    }

    #[test]
    fn a_checkout_without_the_file_has_no_head_and_a_bad_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("candor-lexical-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(LexicalHead::load(&dir, 4, vec![], &Device::Cpu)
            .unwrap()
            .is_none());
        std::fs::write(dir.join(LEXICAL_FILE), b"not a pickle").unwrap();
        let e = LexicalHead::load(&dir, 4, vec![], &Device::Cpu)
            .err()
            .expect("refused");
        assert!(e.to_string().contains(LEXICAL_FILE), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
