//! Prompt caches saved and restored (llama-server's slot save / restore / erase): the K/V a
//! slot's last request left in the prefix cache, read out with its tokens, and later written
//! back into free blocks and registered in the prefix cache, so a request that starts with
//! those tokens computes none of them, even after a restart.
//!
//! Where llama-server restores into one slot (one conversation per slot), a restored prompt
//! here joins the prefix cache every sequence shares: any slot's request takes it.
//!
//! A model whose sequences carry a recurrent state saves the state its prompt reached too
//! (the one the state cache kept: the file holds the prompt up to the longest cached prefix
//! with one), and a restore keeps it in the state cache, where a request resumes it.
use super::block_manager::{BlockManager, BlockTable};
use super::runner::Runner;
use super::state_cache::{self, StateCache};
use candor_models::kv_rows::KvRows;
use candor_models::sequence_state::SequenceState;

/// The prompt a slot's last request left: its root in the prefix cache and the tokens whose
/// K/V it computed (prompt and answer).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotPrompt {
    pub root: u64,
    pub tokens: Vec<u32>,
}

/// Tokens and their K/V rows, one row per token, position 0 first; for a model whose
/// sequences carry a recurrent state, the state after the last token.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPrompt {
    pub tokens: Vec<u32>,
    pub rows: KvRows,
    pub state: Option<SequenceState>,
}

/// What a slot action asks of the engine.
#[derive(Debug)]
pub enum SlotAction {
    Save(usize),
    Restore(SavedPrompt),
    Erase(usize),
}

/// What it did.
#[derive(Debug, PartialEq)]
pub enum SlotOutcome {
    Saved(SavedPrompt),
    /// Tokens now in the prefix cache.
    Restored(usize),
    /// Tokens dropped from the prefix cache.
    Erased(usize),
}

/// The engine's record of each slot's last prompt.
#[derive(Debug, Default)]
pub struct SlotPrompts(Vec<Option<SlotPrompt>>);

impl SlotPrompts {
    /// Slot `slot`'s request ended having computed `tokens` under `root`.
    pub fn record(&mut self, slot: usize, root: u64, tokens: &[u32]) {
        if self.0.len() <= slot {
            self.0.resize(slot + 1, None);
        }
        self.0[slot] = Some(SlotPrompt {
            root,
            tokens: tokens.to_vec(),
        });
    }

    /// Run `action` between steps.
    pub fn apply(
        &mut self,
        action: SlotAction,
        blocks: &mut BlockManager,
        runner: &mut dyn Runner,
        states: &mut StateCache,
    ) -> Result<SlotOutcome, String> {
        match action {
            SlotAction::Save(slot) => {
                save(self.last(slot)?, blocks, runner, states).map(SlotOutcome::Saved)
            }
            SlotAction::Restore(saved) => {
                restore(saved, blocks, runner, states).map(SlotOutcome::Restored)
            }
            SlotAction::Erase(slot) => {
                let prompt = self.last(slot)?;
                let (held, _) = blocks.cached_start(&prompt.tokens, prompt.root);
                let erased = blocks.forget_idle(&held);
                self.0[slot] = None;
                Ok(SlotOutcome::Erased(erased))
            }
        }
    }

    fn last(&self, slot: usize) -> Result<&SlotPrompt, String> {
        self.0
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("slot {slot} has no prompt cached (no request ended in it)"))
    }
}

/// The cached start of `prompt`, its K/V read from the cache (and the recurrent state kept
/// for it, for a model whose sequences carry one: then up to where one was kept).
fn save(
    prompt: &SlotPrompt,
    blocks: &BlockManager,
    runner: &dyn Runner,
    states: &mut StateCache,
) -> Result<SavedPrompt, String> {
    if prompt.root != 0 {
        // A LoRA mix's or a salt's root means nothing to another process (adapter slots and
        // the salt's key are drawn per process), and a salted prompt is a tenant's secret.
        return Err(
            "the slot's last request ran with a LoRA adapter or a cache salt: only the base \
             model's prompts are saved"
                .into(),
        );
    }
    let (held, mut tokens) = blocks.cached_start(&prompt.tokens, prompt.root);
    if tokens == 0 {
        return Err("the slot's last prompt is no longer in the prefix cache".into());
    }
    let state = match runner.spec().keeps_sequence_state() {
        false => None,
        true => {
            let points = blocks.cached_prefix_points(&prompt.tokens[..tokens], prompt.root);
            let kept = state_cache::best_resume(states, &points)
                .and_then(|(pos, key)| states.get(key, pos));
            let Some(state) = kept else {
                return Err(
                    "no recurrent state is kept for the slot's last prompt any more \
                            (the state cache let it go)"
                        .into(),
                );
            };
            tokens = state.pos;
            Some(state)
        }
    };
    let rows = runner
        .read_kv_rows(&blocks.slots_of(&held, tokens))
        .map_err(|e| e.to_string())?;
    Ok(SavedPrompt {
        tokens: prompt.tokens[..tokens].to_vec(),
        rows,
        state,
    })
}

/// `saved` written into fresh blocks and registered in the prefix cache under the base
/// model's root (its recurrent state kept in the state cache); returns its tokens.
fn restore(
    saved: SavedPrompt,
    blocks: &mut BlockManager,
    runner: &mut dyn Runner,
    states: &mut StateCache,
) -> Result<usize, String> {
    let SavedPrompt {
        tokens,
        rows,
        state,
    } = saved;
    if !blocks.caching() {
        return Err(
            "prefix caching is off on this server: a restored prompt would not be kept".into(),
        );
    }
    // A model with no attention layer at all (Mamba alone) keeps no rows to restore.
    let rows_held = match rows.layers.is_empty() {
        true => tokens.len(),
        false => rows.rows(),
    };
    if tokens.is_empty() || rows_held != tokens.len() {
        return Err(format!(
            "a saved prompt of {} tokens with {} K/V rows",
            tokens.len(),
            rows.rows()
        ));
    }
    let spec = runner.spec();
    match (&state, spec.keeps_sequence_state()) {
        (None, true) => {
            return Err(
                "the saved prompt has no recurrent state, which this model's \
                        sequences carry"
                    .into(),
            )
        }
        (Some(_), false) => {
            return Err("the saved prompt has a recurrent state; this model keeps none".into())
        }
        (Some(s), true) if s.pos != tokens.len() || !s.fits(&spec.state_sizes()) => {
            return Err(format!(
                "the saved recurrent state (at position {} of {} tokens) is not of this \
                 model's layers",
                s.pos,
                tokens.len()
            ))
        }
        _ => {}
    }
    let mut table = BlockTable::rooted(0);
    blocks.ensure(&mut table, tokens.len()).map_err(|e| {
        format!(
            "the KV cache has no room for a prompt of {} tokens now: {e}",
            tokens.len()
        )
    })?;
    let slots = blocks.slots_of(&table.ids, tokens.len());
    if let Err(e) = runner.write_kv_rows(&slots, &rows) {
        blocks.release(&mut table);
        return Err(e.to_string());
    }
    blocks.register_computed(&mut table, &tokens, tokens.len());
    let last = blocks.retire(&mut table, &tokens, tokens.len());
    if let Some(state) = state {
        let kept = last.is_some_and(|key| states.insert(key, state));
        if !kept {
            return Err(
                "the saved recurrent state does not fit in the state cache (--cache-ram)".into(),
            );
        }
    }
    Ok(tokens.len())
}
