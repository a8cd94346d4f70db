//! Allocation of paged KV blocks (16 tokens each) to sequences through block tables, with a
//! prefix cache: every full block whose K/V has been computed is registered under its content
//! and its parent's identity, so a later request with the same prefix (a shared system prompt,
//! a preempted sequence coming back) takes the blocks instead of recomputing them.
//!
//! A block's cache key is `(parent uid, its 16 token ids)`, where the uid is a number handed out
//! once per registration and never reused. Chaining on uids instead of on a hash of the whole
//! prefix makes a hit exact (no hash collision can alias two prefixes), and when a block is
//! evicted its children become unreachable without any bookkeeping.
//!
//! Blocks are reference counted (shared full blocks are read-only: a sequence only writes at
//! positions past its matched prefix). A block whose last user leaves stays cached and is
//! evicted least recently used first, and the tail of a sequence before its head, so that
//! shared prefixes outlive their private continuations.
use super::error::EngineError;
use std::collections::{BTreeMap, HashMap};

pub const BLOCK_SIZE: usize = 16;

/// The blocks of one sequence.
#[derive(Debug, Default, Clone)]
pub struct BlockTable {
    /// Physical block ids, in position order.
    pub ids: Vec<u32>,
    /// Cache uid of each full, computed block, for blocks `0..uids.len()`.
    uids: Vec<u64>,
    /// The parent of its first block in the prefix cache (`prefix_root`): sequences whose
    /// K/V differ for the same tokens (another LoRA adapter) share nothing.
    root: u64,
}

/// The prefix cache's root for sequences of `adapter`: the base model's is 0; an adapter's is
/// a uid the cache never hands out (uids count up from 1), so each adapter's blocks form a
/// tree of their own.
pub fn prefix_root(adapter: Option<u32>) -> u64 {
    adapter.map_or(0, |a| u64::MAX - u64::from(a))
}

impl BlockTable {
    /// An empty table whose blocks are cached under `root` (`prefix_root`).
    pub fn rooted(root: u64) -> Self {
        BlockTable {
            root,
            ..BlockTable::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

type BlockKey = (u64, Box<[u32]>);

/// What a block holds in the cache.
#[derive(Debug)]
struct Registered {
    key: BlockKey,
    uid: u64,
}

/// Reference-counted allocator of physical KV blocks with a prefix cache.
#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    num_blocks: usize,
    caching: bool,
    /// Blocks with no content worth keeping.
    free: Vec<u32>,
    refs: Vec<u32>,
    registered: Vec<Option<Registered>>,
    cache: HashMap<BlockKey, u32>,
    /// Cached blocks nobody uses, by release tick (oldest first): evicted in this order.
    evictable: BTreeMap<u64, u32>,
    evict_tick: Vec<u64>,
    tick: u64,
    next_uid: u64,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize, caching: bool) -> Self {
        BlockManager {
            block_size: block_size.max(1),
            num_blocks,
            caching,
            // Hand out low block ids first (pop from the end).
            free: (0..num_blocks as u32).rev().collect(),
            refs: vec![0; num_blocks],
            registered: (0..num_blocks).map(|_| None).collect(),
            cache: HashMap::new(),
            evictable: BTreeMap::new(),
            evict_tick: vec![0; num_blocks],
            tick: 0,
            next_uid: 1,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }
    /// Blocks that can be handed out: never used, or cached but unused (evictable).
    pub fn num_free(&self) -> usize {
        self.free.len() + self.evictable.len()
    }
    /// Cached blocks nobody uses right now.
    pub fn num_cached_idle(&self) -> usize {
        self.evictable.len()
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Take the cached blocks that hold a prefix of `tokens` under `root` (`prefix_root`),
    /// leaving at least the last token to compute (its logits are needed). Returns the table
    /// and the number of tokens covered.
    pub fn match_prefix(&mut self, tokens: &[u32], root: u64) -> (BlockTable, usize) {
        let mut table = BlockTable::rooted(root);
        if !self.caching || tokens.is_empty() {
            return (table, 0);
        }
        let max_blocks = (tokens.len() - 1) / self.block_size;
        let mut parent = root;
        for chunk in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let key: BlockKey = (parent, chunk.into());
            let Some(&block) = self.cache.get(&key) else {
                break;
            };
            let b = block as usize;
            if self.refs[b] == 0 {
                self.evictable.remove(&self.evict_tick[b]);
            }
            self.refs[b] += 1;
            let uid = self.registered[b].as_ref().map_or(0, |r| r.uid);
            table.ids.push(block);
            table.uids.push(uid);
            parent = uid;
        }
        let covered = table.ids.len() * self.block_size;
        (table, covered)
    }

    /// Register the full blocks of `table` whose K/V are computed (`computed` tokens of
    /// `tokens`), so later requests can share them.
    pub fn register_computed(&mut self, table: &mut BlockTable, tokens: &[u32], computed: usize) {
        if !self.caching {
            return;
        }
        let full = (computed.min(tokens.len()) / self.block_size).min(table.ids.len());
        while table.uids.len() < full {
            let j = table.uids.len();
            let parent = if j == 0 {
                table.root
            } else {
                table.uids[j - 1]
            };
            let key: BlockKey = (
                parent,
                tokens[j * self.block_size..(j + 1) * self.block_size].into(),
            );
            if let Some(&existing) = self.cache.get(&key) {
                // Another sequence computed the same block first: chain on its identity so
                // this sequence's later blocks are found by the same lookups.
                let uid = self.registered[existing as usize]
                    .as_ref()
                    .map_or(0, |r| r.uid);
                table.uids.push(uid);
                continue;
            }
            let block = table.ids[j];
            let uid = self.next_uid;
            self.next_uid += 1;
            self.cache.insert(key.clone(), block);
            self.registered[block as usize] = Some(Registered { key, uid });
            table.uids.push(uid);
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        let (_, b) = self.evictable.pop_first()?;
        if let Some(r) = self.registered[b as usize].take() {
            self.cache.remove(&r.key);
        }
        Some(b)
    }

    /// Grow `table` so it covers `tokens` tokens. All or nothing.
    pub fn ensure(&mut self, table: &mut BlockTable, tokens: usize) -> Result<(), EngineError> {
        let needed = self.blocks_for(tokens).saturating_sub(table.ids.len());
        if needed > self.num_free() {
            return Err(EngineError::OutOfBlocks {
                needed,
                free: self.num_free(),
            });
        }
        for _ in 0..needed {
            if let Some(b) = self.alloc() {
                self.refs[b as usize] = 1;
                table.ids.push(b);
            }
        }
        Ok(())
    }

    /// Return a sequence's blocks. Cached ones stay findable until evicted; the tail is
    /// released first so it is evicted before the prefix it extends.
    pub fn release(&mut self, table: &mut BlockTable) {
        for &b in table.ids.iter().rev() {
            let i = b as usize;
            self.refs[i] = self.refs[i].saturating_sub(1);
            if self.refs[i] > 0 {
                continue;
            }
            if self.registered[i].is_some() {
                self.tick += 1;
                self.evict_tick[i] = self.tick;
                self.evictable.insert(self.tick, b);
            } else {
                self.free.push(b);
            }
        }
        table.ids.clear();
        table.uids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i * 7 + salt).collect()
    }

    #[test]
    fn grows_tables_and_recycles_blocks() {
        let mut m = BlockManager::new(4, 16, false);
        let mut a = BlockTable::default();
        m.ensure(&mut a, 17).unwrap();
        assert_eq!(a.ids, vec![0, 1]);
        m.ensure(&mut a, 32).unwrap();
        assert_eq!(a.len(), 2);
        let mut b = BlockTable::default();
        assert!(matches!(
            m.ensure(&mut b, 49),
            Err(EngineError::OutOfBlocks { needed: 4, free: 2 })
        ));
        assert!(b.is_empty());
        m.release(&mut a);
        assert_eq!(m.num_free(), 4);
        m.ensure(&mut b, 64).unwrap();
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn a_computed_prefix_is_shared_and_the_last_token_is_left_to_compute() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(12, 1);
        let (mut a, hit) = m.match_prefix(&prompt, 0);
        assert_eq!(hit, 0);
        m.ensure(&mut a, 13).unwrap();
        m.register_computed(&mut a, &prompt, 12);
        // Same 12 tokens: only the first two blocks are taken (the last token must be run).
        let (b, hit) = m.match_prefix(&prompt, 0);
        assert_eq!(hit, 8);
        assert_eq!(b.ids, a.ids[..2].to_vec());
        // Longer prompt with the same head: all three blocks.
        let mut longer = prompt.clone();
        longer.extend([99, 98]);
        let (c, hit) = m.match_prefix(&longer, 0);
        assert_eq!(hit, 12);
        assert_eq!(c.ids, a.ids[..3].to_vec());
        // A different second block stops the match after the first.
        let mut other = prompt.clone();
        other[5] = 1000;
        let (d, hit) = m.match_prefix(&other, 0);
        assert_eq!((hit, d.ids.len()), (4, 1));
    }

    #[test]
    fn released_blocks_stay_cached_until_space_is_needed() {
        let mut m = BlockManager::new(4, 4, true);
        let prompt = toks(9, 3);
        let (mut a, _) = m.match_prefix(&prompt, 0);
        m.ensure(&mut a, 9).unwrap();
        m.register_computed(&mut a, &prompt, 9);
        m.release(&mut a);
        assert_eq!(m.num_free(), 4);
        assert_eq!(m.num_cached_idle(), 2);
        let (mut b, hit) = m.match_prefix(&prompt, 0);
        assert_eq!(hit, 8);
        assert_eq!(m.num_free(), 2);
        m.release(&mut b);
        // Filling the cache evicts the cached blocks, tail first; then the prefix is gone.
        let mut big = BlockTable::default();
        m.ensure(&mut big, 12).unwrap();
        assert_eq!(m.num_cached_idle(), 1);
        let (e, hit) = m.match_prefix(&prompt, 0);
        assert_eq!(hit, 4, "the head block survives the tail");
        let mut e = e;
        m.release(&mut e);
        m.ensure(&mut big, 16).unwrap();
        assert_eq!(m.match_prefix(&prompt, 0).1, 0);
    }

    #[test]
    fn identical_blocks_computed_twice_chain_on_one_identity() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(8, 5);
        let (mut a, _) = m.match_prefix(&prompt, 0);
        let (mut b, _) = m.match_prefix(&prompt, 0);
        m.ensure(&mut a, 8).unwrap();
        m.ensure(&mut b, 8).unwrap();
        m.register_computed(&mut a, &prompt, 4);
        m.register_computed(&mut b, &prompt, 8);
        m.register_computed(&mut a, &prompt, 8);
        let mut longer = prompt.clone();
        longer.push(1);
        let (c, hit) = m.match_prefix(&longer, 0);
        assert_eq!(hit, 8);
        assert_eq!(c.ids, vec![a.ids[0], b.ids[1]]);
    }

    #[test]
    fn shared_blocks_return_to_the_pool_only_after_the_last_user() {
        let mut m = BlockManager::new(4, 4, true);
        let prompt = toks(5, 0);
        let (mut a, _) = m.match_prefix(&prompt, 0);
        m.ensure(&mut a, 5).unwrap();
        m.register_computed(&mut a, &prompt, 5);
        let (mut b, hit) = m.match_prefix(&prompt, 0);
        assert_eq!(hit, 4);
        m.ensure(&mut b, 5).unwrap();
        assert_eq!(m.num_free(), 1);
        m.release(&mut a);
        assert_eq!(m.num_free(), 2, "the shared block is still held by b");
        m.release(&mut b);
        assert_eq!(m.num_free(), 4);
    }

    #[test]
    fn each_root_caches_apart() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(9, 1);
        let (mut base, _) = m.match_prefix(&prompt, prefix_root(None));
        m.ensure(&mut base, 9).unwrap();
        m.register_computed(&mut base, &prompt, 9);
        // The same tokens under an adapter's root find nothing of the base model's...
        let (mut tuned, hit) = m.match_prefix(&prompt, prefix_root(Some(0)));
        assert_eq!(hit, 0);
        m.ensure(&mut tuned, 9).unwrap();
        m.register_computed(&mut tuned, &prompt, 9);
        // ...and each finds its own afterwards, the second adapter still nothing.
        assert_eq!(m.match_prefix(&prompt, prefix_root(None)).1, 8);
        assert_eq!(m.match_prefix(&prompt, prefix_root(Some(0))).1, 8);
        assert_eq!(m.match_prefix(&prompt, prefix_root(Some(1))).1, 0);
    }

    #[test]
    fn caching_off_matches_nothing() {
        let mut m = BlockManager::new(4, 4, false);
        let prompt = toks(9, 0);
        let (mut a, _) = m.match_prefix(&prompt, 0);
        m.ensure(&mut a, 9).unwrap();
        m.register_computed(&mut a, &prompt, 9);
        m.release(&mut a);
        assert_eq!(m.match_prefix(&prompt, 0).1, 0);
        assert_eq!(m.num_cached_idle(), 0);
    }
}
