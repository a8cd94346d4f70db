//! Queries scaled by their position within one forward (`spec::AttnTemperature`: Ministral 3).
use crate::backend::Backend;
use crate::error::{ModelError, Result};
use crate::spec::AttnTemperature;
use std::cell::OnceCell;

/// The factors of one batch's queries, applied before each attention layer.
pub struct QueryTemperatures<T> {
    /// Each token's factor; None where all are 1 (every position below the length: the usual
    /// case, which then costs nothing).
    per_token: Option<Vec<f32>>,
    /// The factors spread over the queries' shape: made at the first layer, read by the rest.
    spread: OnceCell<T>,
}

impl<T: Clone> QueryTemperatures<T> {
    pub fn new(temperature: Option<AttnTemperature>, positions: &[u32]) -> Self {
        let per_token = temperature
            .map(|t| positions.iter().map(|&p| t.at(p)).collect::<Vec<f32>>())
            .filter(|f| f.iter().any(|&x| x != 1.0));
        QueryTemperatures {
            per_token,
            spread: OnceCell::new(),
        }
    }

    /// `q` (`[tokens, ...]`, one row per token) times its tokens' factors; None where they
    /// are all 1.
    pub fn apply<B: Backend<Tensor = T>>(&self, b: &B, q: &T) -> Result<Option<T>> {
        let Some(per_token) = &self.per_token else {
            return Ok(None);
        };
        let spread = match self.spread.get() {
            Some(s) => s,
            None => {
                let shape = b.shape(q);
                let total: usize = shape.iter().product();
                if shape.first() != Some(&per_token.len()) {
                    return Err(ModelError::InvalidBatch(format!(
                        "queries of shape {shape:?} for {} tokens",
                        per_token.len()
                    )));
                }
                let width = total / per_token.len().max(1);
                let values: Vec<f32> = per_token
                    .iter()
                    .flat_map(|&f| std::iter::repeat_n(f, width))
                    .collect();
                let _ = self.spread.set(b.upload(&values, &shape)?);
                self.spread
                    .get()
                    .ok_or_else(|| ModelError::Backend("query temperatures were not kept".into()))?
            }
        };
        b.mul(q, spread).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::AttnTemperature;

    /// transformers' `get_llama_4_attn_scale`: 1 below the length, then
    /// `1 + beta · ln(1 + floor(position / length))`.
    #[test]
    fn factors_step_up_past_each_multiple_of_the_length() {
        let t = AttnTemperature::every_layer(0.1, 16384);
        assert_eq!(t.at(0), 1.0);
        assert_eq!(t.at(16383), 1.0);
        assert!((t.at(16384) - (1.0 + 0.1 * 2f32.ln())).abs() < 1e-7);
        assert!((t.at(3 * 16384 + 5) - (1.0 + 0.1 * 4f32.ln())).abs() < 1e-7);
        let none = super::QueryTemperatures::<()>::new(Some(t), &[0, 5, 16383]);
        assert!(none.per_token.is_none());
        let some = super::QueryTemperatures::<()>::new(Some(t), &[0, 16384]);
        assert_eq!(some.per_token.as_ref().map(Vec::len), Some(2));
    }
}
