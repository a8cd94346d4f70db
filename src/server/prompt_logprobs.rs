//! vLLM's `prompt_logprobs`: each prompt token's logprob under the tokens before it, its rank,
//! and the `k` likeliest tokens at its place, in vLLM's shape: a list with `null` for the first
//! token (nothing predicts it), then per token an object keyed by token id of `{"logprob",
//! "rank", "decoded_token"}`, the prompt's own token among them.
use crate::engine::scheduler::TokenLogprobs;
use candor_models::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

/// One choice's prompt as the engine scores it.
pub struct PromptScores {
    k: usize,
    ids: Vec<u32>,
    scored: Vec<TokenLogprobs>,
}

impl PromptScores {
    /// Alternatives kept per token (`k`) of the prompt `ids`.
    pub fn new(k: usize, ids: Vec<u32>) -> Self {
        PromptScores {
            k,
            ids,
            scored: Vec::new(),
        }
    }

    /// The scores of the next prompt tokens, in order (`EngineEvent::PromptLogprobs`).
    pub fn add(&mut self, scored: &[TokenLogprobs]) {
        self.scored.extend_from_slice(scored);
    }

    pub fn to_json(&self, tok: &Tokenizer) -> Value {
        let decoded = |id: u32| tok.decode_fragment(&[id], false).unwrap_or_default();
        let entry = |logprob: f32, rank: Option<u32>, id: u32| json!({"logprob": logprob, "rank": rank, "decoded_token": decoded(id)});
        let first = self.ids.first().map(|_| Value::Null);
        let rest = self.ids.iter().skip(1).zip(&self.scored).map(|(&id, lp)| {
            let mut place = Map::new();
            for (rank, &(alt, logprob)) in (1u32..).zip(lp.top.iter().take(self.k)) {
                place.insert(alt.to_string(), entry(logprob, Some(rank), alt));
            }
            place.insert(id.to_string(), entry(lp.logprob, lp.rank, id));
            Value::Object(place)
        });
        Value::Array(first.into_iter().chain(rest).collect())
    }
}
