//! The recurrent states of cached prefixes, for models whose sequences carry one (gated
//! DeltaNet, Mamba, Kimi Delta layers). The paged prefix cache holds a prefix's keys and values
//! by position, but such a model's state at a position cannot be rebuilt from them: a
//! sequence can only resume a cached prefix where the state it reached there was kept. This is
//! where it is kept, in host memory, keyed by the prefix cache's identity of the block that
//! ends there (`BlockManager` uids: never reused, so a key names one exact chain of tokens
//! under one root: adapter and salt), least recently used first out under a byte budget.
//!
//! The engine keeps a state where a later request is likely to resume (vLLM's "align" mode
//! keeps one per large block, llama-server one per slot prompt): every `interval` tokens of a
//! prompt, where a prompt leaves a prefix that other requests computed too (the point they
//! branch at), where a request waiting for a running one's prompt will start, and wherever a
//! sequence ends or is preempted (its last state, moved here without a copy: the next turn of
//! a chat, or its own readmission, resumes from it to the token).
use candor_models::sequence_state::SequenceState;
use std::collections::{BTreeMap, HashMap};

/// The fewest tokens between the states a prompt keeps on its way (`interval`).
const MIN_INTERVAL: usize = 256;

/// Every how many tokens a prompt's state is kept: the engine's step budget, where a prompt
/// computed alone ends its chunks anyway (so keeping them costs no extra step), at least
/// `MIN_INTERVAL` tokens (a state is a few MB to tens of MB: one per small chunk of a long
/// prompt would crowd out those worth more), in whole blocks.
pub fn interval(step_tokens: usize, block_size: usize) -> usize {
    let bs = block_size.max(1);
    (step_tokens.max(MIN_INTERVAL) / bs).max(1) * bs
}

/// Of `points` (`(tokens, key)` from the shortest: `BlockManager::resume_points`), the
/// longest prefix whose state `cache` holds.
pub fn best_resume(cache: &StateCache, points: &[(usize, u64)]) -> Option<(usize, u64)> {
    points
        .iter()
        .rev()
        .find(|&&(pos, key)| cache.holds(key, pos))
        .copied()
}

/// A cached state and when it was last used.
#[derive(Debug)]
struct Entry {
    state: SequenceState,
    bytes: usize,
    tick: u64,
}

#[derive(Debug)]
pub struct StateCache {
    budget: usize,
    used: usize,
    entries: HashMap<u64, Entry>,
    /// Keys by last use (oldest first): evicted in this order.
    by_use: BTreeMap<u64, u64>,
    tick: u64,
}

impl StateCache {
    /// A cache of at most `budget` bytes of states (0 keeps none).
    pub fn new(budget: usize) -> Self {
        StateCache {
            budget,
            used: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Whether it keeps anything at all.
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Bytes its states hold.
    pub fn bytes(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether it holds the state of the prefix `key` names, reached at position `pos`.
    pub fn holds(&self, key: u64, pos: usize) -> bool {
        self.entries.get(&key).is_some_and(|e| e.state.pos == pos)
    }

    /// A copy of the state of the prefix `key` names, if it holds one reached at `pos` (a
    /// key's position is its prefix's length; checked all the same, since a wrong one would
    /// pair a sequence with another past). Counts as a use.
    pub fn get(&mut self, key: u64, pos: usize) -> Option<SequenceState> {
        let tick = self.next_tick();
        let e = self.entries.get_mut(&key).filter(|e| e.state.pos == pos)?;
        self.by_use.remove(&e.tick);
        e.tick = tick;
        self.by_use.insert(tick, key);
        Some(e.state.clone())
    }

    /// Keep `state` as the prefix `key` names, evicting the least recently used states until
    /// it fits (one larger than the whole budget is not kept). A key already held keeps its
    /// state: the same prefix reaches the same state. Returns whether a state is held for
    /// the key now.
    pub fn insert(&mut self, key: u64, state: SequenceState) -> bool {
        let bytes = state.bytes();
        if self.entries.contains_key(&key) {
            return true;
        }
        if bytes > self.budget {
            return false;
        }
        while self.used + bytes > self.budget {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= e.bytes;
            }
        }
        let tick = self.next_tick();
        self.by_use.insert(tick, key);
        self.entries.insert(key, Entry { state, bytes, tick });
        self.used += bytes;
        true
    }

    /// Forget every state (the prefix cache was emptied, or started over).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_use.clear();
        self.used = 0;
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_models::sequence_state::LayerState;

    /// A state at `pos` of `values` f32s (4 bytes each), marked by `mark`.
    fn state(pos: usize, values: usize, mark: f32) -> SequenceState {
        SequenceState {
            pos,
            layers: vec![LayerState {
                conv: vec![mark],
                recurrent: vec![0.0; values - 1],
            }],
        }
    }

    #[test]
    fn states_are_found_by_key_and_position() {
        let mut cache = StateCache::new(1000);
        cache.insert(7, state(32, 10, 1.0));
        assert!(cache.holds(7, 32));
        assert!(
            !cache.holds(7, 48),
            "another position of the key is not its state"
        );
        assert!(cache.get(7, 16).is_none());
        assert_eq!(cache.get(7, 32).unwrap().layers[0].conv[0], 1.0);
        assert!(cache.get(8, 32).is_none());
        // The first state of a key stays: the same prefix reaches the same state.
        cache.insert(7, state(32, 10, 2.0));
        assert_eq!(cache.get(7, 32).unwrap().layers[0].conv[0], 1.0);
        assert_eq!((cache.len(), cache.bytes()), (1, 40));
    }

    #[test]
    fn prompts_keep_states_every_step_budget_in_whole_blocks() {
        assert_eq!(interval(512, 16), 512);
        assert_eq!(interval(1000, 16), 992);
        assert_eq!(interval(32, 16), 256, "at least MIN_INTERVAL");
        assert_eq!(interval(300, 0), 300);
    }

    #[test]
    fn the_longest_held_prefix_is_resumed() {
        let mut cache = StateCache::new(1000);
        cache.insert(11, state(16, 4, 0.0));
        cache.insert(33, state(48, 4, 0.0));
        let points = [(16, 11), (32, 22), (48, 33), (55, 44)];
        assert_eq!(best_resume(&cache, &points), Some((48, 33)));
        assert_eq!(best_resume(&cache, &points[..2]), Some((16, 11)));
        // A key held for another position is no resume point.
        assert_eq!(best_resume(&cache, &[(32, 11)]), None);
        assert_eq!(best_resume(&cache, &[]), None);
    }

    #[test]
    fn the_least_recently_used_go_first_under_the_budget() {
        let mut cache = StateCache::new(100);
        cache.insert(1, state(16, 10, 1.0));
        cache.insert(2, state(16, 10, 2.0));
        // Used: 1 is now more recent than 2.
        assert!(cache.get(1, 16).is_some());
        cache.insert(3, state(16, 10, 3.0));
        assert!(!cache.holds(2, 16), "the least recently used went");
        assert!(cache.holds(1, 16) && cache.holds(3, 16));
        assert_eq!(cache.bytes(), 80);
        // Larger than the whole budget: not kept, nothing evicted for it.
        assert!(!cache.insert(4, state(16, 26, 4.0)));
        assert!(!cache.holds(4, 16));
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert!(cache.is_empty() && cache.bytes() == 0);
        assert!(!StateCache::new(0).enabled());
    }
}
