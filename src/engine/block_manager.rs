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
//!
//! The prefix cache is exact to the token, not only to the block: a sequence that ends (or is
//! preempted) leaves its last, partly filled block cached too (`keep_tail`), and a prompt that
//! goes on from its matched full blocks with the first tokens of a cached block (a partial
//! tail, or a full block it leaves before its end) takes a private copy of that block
//! (`PrefixMatch::copy`) and computes only past the shared tokens. A chat's next turn then
//! recomputes none of the conversation so far, where whole-block matching (vLLM's) recomputes
//! up to 15 tokens of it every turn; llama-server keeps a slot's exact tokens, but one
//! conversation per slot.
use super::error::EngineError;
use candor_models::lora::LoraMix;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};

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

/// The prefix cache's root for sequences running with `lora`: the base model's is 0; one
/// adapter's at its own scale is a uid the cache never hands out (uids count up from 1; these
/// are the top 2^32 values), so each adapter's blocks form a tree of their own. Any other mix
/// (scales, several adapters: llama-server's per-request `lora`) is rooted at a hash of its
/// pairs in [2^62, 2^63), below those and far above any uid: two mixes share blocks only if
/// their 62-bit hashes collide, as likely as two random 62-bit numbers being equal. A slot is
/// never reused for another adapter (`EngineHandle::load_lora` takes a new one), so a root
/// never outlives what it names.
///
/// A request's `cache_salt` roots its blocks at a hash of the mix and the salt, in the same
/// range, keyed with a secret drawn per process: a tenant without the salt cannot reach that
/// tree, nor compute where it lies from the salt alone.
pub fn prefix_root(lora: &LoraMix, salt: Option<&str>) -> u64 {
    match salt {
        None if lora.is_base() => return 0,
        None => {
            if let Some(a) = lora.single() {
                return u64::MAX - u64::from(a);
            }
        }
        Some(_) => {}
    }
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let mut hasher = match salt {
        Some(_) => KEY.get_or_init(std::hash::RandomState::new).build_hasher(),
        None => std::hash::DefaultHasher::new(),
    };
    for &(slot, scale) in lora.scales() {
        (slot, scale.to_bits()).hash(&mut hasher);
    }
    salt.hash(&mut hasher);
    (1 << 62) | (hasher.finish() >> 2)
}

impl BlockTable {
    /// An empty table whose blocks are cached under `root` (`prefix_root`).
    pub fn rooted(root: u64) -> Self {
        BlockTable {
            root,
            ..BlockTable::default()
        }
    }

    /// Its root in the prefix cache (`prefix_root`).
    pub fn root(&self) -> u64 {
        self.root
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The cache uid of full block `j`, once it is computed and registered: the identity of
    /// the prefix that ends with it.
    pub fn uid_of_full_block(&self, j: usize) -> Option<u64> {
        self.uids.get(j).copied()
    }

    /// The cache identity block `j` is keyed under: the root for the first block, else the
    /// uid of the full block before it (registered: `j <= uids.len()`).
    fn parent_of(&self, j: usize) -> u64 {
        match j {
            0 => self.root,
            _ => self.uids[j - 1],
        }
    }
}

/// `(parent uid, the block's tokens)`: all of them for a full block, fewer for a sequence's
/// kept tail (`keep_tail`), so the two kinds never share a key.
type BlockKey = (u64, Box<[u32]>);

/// Where a block is listed in `BlockManager::children`: its parent and first token (every
/// registered block holds at least one token).
fn children_key(key: &BlockKey) -> (u64, u32) {
    (key.0, key.1.first().copied().unwrap_or(u32::MAX))
}

/// What a block holds in the cache.
#[derive(Debug)]
struct Registered {
    key: BlockKey,
    uid: u64,
}

/// What `match_prefix` found.
#[derive(Debug)]
pub struct PrefixMatch {
    /// The shared full blocks, then the copy's destination where there is one.
    pub table: BlockTable,
    /// Tokens whose K/V the sequence starts with (those of the copy included).
    pub tokens: usize,
    /// A cached block whose first tokens the prompt goes on with: its K/V must be copied into
    /// the table's last block (`Runner::copy_blocks`) before the sequence runs. If the copy
    /// cannot be made, the sequence starts at `tokens - copy.tokens` instead.
    pub copy: Option<BlockCopy>,
}

impl PrefixMatch {
    /// Nothing taken from the cache: an empty table under `root`.
    pub fn none(root: u64) -> Self {
        PrefixMatch {
            table: BlockTable::rooted(root),
            tokens: 0,
            copy: None,
        }
    }

    /// This match with `copy` (if any) appended: its destination as the table's next block,
    /// its tokens counted.
    fn with(mut self, copy: Option<BlockCopy>) -> Self {
        if let Some(c) = copy {
            self.table.ids.push(c.dst);
            self.tokens += c.tokens;
            self.copy = Some(c);
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCopy {
    pub src: u32,
    pub dst: u32,
    /// Tokens of `src` the sequence shares.
    pub tokens: usize,
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
    /// The cached blocks (full and kept tails) under each parent uid, by their first token:
    /// where a prompt that leaves the exact chain of full blocks looks for a block it shares
    /// the start of (only those that start with its next token can share any).
    children: HashMap<(u64, u32), Vec<u32>>,
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
            children: HashMap::new(),
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
    /// leaving the last token to compute (its logits are needed): the full blocks shared as
    /// they are, then a private copy of the cached block that shares the most of the tokens
    /// after them.
    pub fn match_prefix(&mut self, tokens: &[u32], root: u64) -> PrefixMatch {
        self.match_with(tokens, root, true)
    }

    /// `match_prefix` without the copy: the shared full blocks only.
    pub fn match_full_blocks(&mut self, tokens: &[u32], root: u64) -> PrefixMatch {
        self.match_with(tokens, root, false)
    }

    fn match_with(&mut self, tokens: &[u32], root: u64, copies: bool) -> PrefixMatch {
        let mut table = BlockTable::rooted(root);
        if !self.caching || tokens.is_empty() {
            return PrefixMatch::none(root);
        }
        let max_blocks = (tokens.len() - 1) / self.block_size;
        let mut parent = root;
        for chunk in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let key: BlockKey = (parent, chunk.into());
            let Some(&block) = self.cache.get(&key) else {
                break;
            };
            self.take(block);
            let uid = self.uid_of(block);
            table.ids.push(block);
            table.uids.push(uid);
            parent = uid;
        }
        let covered = table.ids.len() * self.block_size;
        let rest = &tokens[covered..tokens.len() - 1];
        let next = &rest[..rest.len().min(self.block_size)];
        let copy = copies
            .then(|| self.best_child(parent, next))
            .flatten()
            .and_then(|(src, shared)| self.fresh_copy_of(src, shared));
        PrefixMatch {
            table,
            tokens: covered,
            copy: None,
        }
        .with(copy)
    }

    /// `found` (full blocks only) and a copy of the first `tokens` of block `src`, which a
    /// running sequence computed and is still filling (the first of `n` choices, whose partly
    /// filled prompt block is not cached yet), appended to it. `found` as it is when no block
    /// is free.
    pub fn with_copy_of(&mut self, found: PrefixMatch, src: u32, tokens: usize) -> PrefixMatch {
        if found.copy.is_some() {
            return found;
        }
        let copy = self.fresh_copy_of(src, tokens);
        found.with(copy)
    }

    /// A fresh block to copy the first `tokens` of `src` into (none for no tokens, or when no
    /// block is free). The source is held while the destination is taken, so it cannot be
    /// the block evicted for it.
    fn fresh_copy_of(&mut self, src: u32, tokens: usize) -> Option<BlockCopy> {
        if tokens == 0 {
            return None;
        }
        self.take(src);
        let dst = self.alloc();
        self.put_back(src);
        let dst = dst?;
        self.refs[dst as usize] = 1;
        Some(BlockCopy { src, dst, tokens })
    }

    /// Of the cached blocks under `parent`, the one whose tokens start with the longest run of
    /// `next`, and how many of them it shares (none when no block starts with `next`'s first).
    fn best_child(&self, parent: u64, next: &[u32]) -> Option<(u32, usize)> {
        let first = *next.first()?;
        let shared = |b: &u32| {
            let key = &self.registered[*b as usize].as_ref()?.key.1;
            let n = key.iter().zip(next).take_while(|(a, b)| a == b).count();
            Some((n, *b))
        };
        let (tokens, src) = self
            .children
            .get(&(parent, first))?
            .iter()
            .filter_map(shared)
            .max_by_key(|&(n, _)| n)?;
        Some((src, tokens))
    }

    /// The uid of cached block `b` if a prompt that shares `shared` of its tokens shares all
    /// of them (a state kept at its end is the prompt's there).
    fn uid_if_whole(&self, b: u32, shared: usize) -> Option<u64> {
        let r = self.registered[b as usize].as_ref()?;
        (r.key.1.len() == shared).then_some(r.uid)
    }

    /// The cache uid of registered block `b`.
    fn uid_of(&self, b: u32) -> u64 {
        self.registered[b as usize].as_ref().map_or(0, |r| r.uid)
    }

    /// One more user of cached block `b` (out of the evictable ones if it was idle).
    fn take(&mut self, b: u32) {
        let i = b as usize;
        if self.refs[i] == 0 {
            self.evictable.remove(&self.evict_tick[i]);
        }
        self.refs[i] += 1;
    }

    /// One user fewer of block `b`; with none left it stays cached as the most recently used
    /// idle block if it is registered, and is free otherwise.
    fn put_back(&mut self, b: u32) {
        let i = b as usize;
        self.refs[i] = self.refs[i].saturating_sub(1);
        if self.refs[i] > 0 {
            return;
        }
        if self.registered[i].is_some() {
            self.tick += 1;
            self.evict_tick[i] = self.tick;
            self.evictable.insert(self.tick, b);
        } else {
            self.free.push(b);
        }
    }

    /// Release a sequence that ends or leaves (`computed` tokens of `tokens` have K/V),
    /// keeping its last, partly filled block in the cache (`keep_tail`). Returns the uid of
    /// the cached block that ends exactly where the sequence stands (its kept tail, or its
    /// last full block), if there is one: the identity of all it computed.
    pub fn retire(
        &mut self,
        table: &mut BlockTable,
        tokens: &[u32],
        computed: usize,
    ) -> Option<u64> {
        let last = self.keep_tail(table, tokens, computed);
        self.release(table);
        last
    }

    /// The cached prefixes a `match_prefix` result ends with, as `(tokens, uid)` from the
    /// shortest: each full block's, then the copied block's where the prompt shares all of it
    /// (a kept tail, or a full block it leaves at its end). Where the sequence could resume a
    /// state kept for one of them (`StateCache`).
    pub fn resume_points(&self, found: &PrefixMatch) -> Vec<(usize, u64)> {
        let bs = self.block_size;
        let mut points: Vec<(usize, u64)> = (found.table.uids.iter().enumerate())
            .map(|(j, &uid)| ((j + 1) * bs, uid))
            .collect();
        if let Some(uid) = found.copy.and_then(|c| self.uid_if_whole(c.src, c.tokens)) {
            points.push((found.tokens, uid));
        }
        points
    }

    /// The same for what `match_prefix` would find of `tokens` under `root` (all but their
    /// last), taking nothing: where a waiting request could resume.
    pub fn cached_resume_points(&self, tokens: &[u32], root: u64) -> Vec<(usize, u64)> {
        match tokens.split_last() {
            Some((_, usable)) => self.cached_prefix_points(usable, root),
            None => Vec::new(),
        }
    }

    /// The cached prefixes of all of `tokens` under `root`, as `(tokens, uid)` from the
    /// shortest: its full blocks along their chain, then a cached block it shares whole.
    pub fn cached_prefix_points(&self, usable: &[u32], root: u64) -> Vec<(usize, u64)> {
        let (mut points, mut parent) = (Vec::new(), root);
        if !self.caching {
            return points;
        }
        for chunk in usable.chunks_exact(self.block_size) {
            let Some(&b) = self.cache.get(&(parent, chunk.into())) else {
                return points;
            };
            parent = self.uid_of(b);
            points.push((points.len() * self.block_size + chunk.len(), parent));
        }
        let covered = points.len() * self.block_size;
        let rest = &usable[covered..];
        if let Some((src, shared)) = self.best_child(parent, rest) {
            if let Some(uid) = self.uid_if_whole(src, shared) {
                points.push((covered + shared, uid));
            }
        }
        points
    }

    /// `found` cut back to its first `tokens` tokens, a whole number of its full blocks (or
    /// all of it, kept as it is): the blocks past them given back, the copy dropped. A
    /// sequence whose state can resume only there computes the rest again.
    pub fn cut_match(&mut self, mut found: PrefixMatch, tokens: usize) -> PrefixMatch {
        if tokens >= found.tokens {
            return found;
        }
        let keep = (tokens / self.block_size).min(found.table.uids.len());
        for &b in found.table.ids[keep..].iter().rev() {
            self.put_back(b);
        }
        found.table.ids.truncate(keep);
        found.table.uids.truncate(keep);
        found.tokens = keep * self.block_size;
        found.copy = None;
        found
    }

    /// Keep the last, partly filled block of a sequence about to be released in the cache,
    /// under the full block before it, so a prompt that goes on from the same tokens can copy
    /// it (`match_prefix`).
    /// Returns the uid of the cached block that ends at `computed` (the tail, one of the same
    /// tokens cached before, or the last full block where `computed` ends one).
    fn keep_tail(&mut self, table: &BlockTable, tokens: &[u32], computed: usize) -> Option<u64> {
        let computed = computed.min(tokens.len());
        let (j, part) = (computed / self.block_size, computed % self.block_size);
        if !self.caching || table.uids.len() != j {
            return None;
        }
        if part == 0 {
            return j.checked_sub(1).map(|last| table.uids[last]);
        }
        let key: BlockKey = (
            table.parent_of(j),
            tokens[j * self.block_size..computed].into(),
        );
        if let Some(&cached) = self.cache.get(&key) {
            return Some(self.uid_of(cached));
        }
        let &block = table.ids.get(j)?;
        let b = block as usize;
        if self.refs[b] != 1 || self.registered[b].is_some() {
            return None;
        }
        Some(self.register(block, key))
    }

    /// Forget every cached block, so nothing computed so far is shared with later sequences
    /// (a cold prompt measured again). Blocks in use stay with their sequences, private from
    /// now on. Returns how many blocks were cached.
    pub fn forget_cached(&mut self) -> usize {
        let cached = self.registered.iter_mut().filter_map(Option::take).count();
        self.cache.clear();
        self.children.clear();
        let idle = std::mem::take(&mut self.evictable);
        self.free.extend(idle.into_values());
        cached
    }

    /// Put `block` in the cache under `key`; returns its new uid.
    fn register(&mut self, block: u32, key: BlockKey) -> u64 {
        let uid = self.next_uid;
        self.next_uid += 1;
        self.children
            .entry(children_key(&key))
            .or_default()
            .push(block);
        self.cache.insert(key.clone(), block);
        self.registered[block as usize] = Some(Registered { key, uid });
        uid
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
            let key: BlockKey = (
                table.parent_of(j),
                tokens[j * self.block_size..(j + 1) * self.block_size].into(),
            );
            if let Some(&existing) = self.cache.get(&key) {
                // Another sequence computed the same block first: chain on its identity so
                // this sequence's later blocks are found by the same lookups.
                table.uids.push(self.uid_of(existing));
                continue;
            }
            let uid = self.register(table.ids[j], key);
            table.uids.push(uid);
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        let (_, b) = self.evictable.pop_first()?;
        self.unregister(b);
        Some(b)
    }

    /// Take block `b` out of the cache (its children become unreachable); returns the tokens
    /// it held.
    fn unregister(&mut self, b: u32) -> usize {
        let Some(r) = self.registered[b as usize].take() else {
            return 0;
        };
        self.cache.remove(&r.key);
        let slot = children_key(&r.key);
        if let Some(siblings) = self.children.get_mut(&slot) {
            siblings.retain(|&s| s != b);
            if siblings.is_empty() {
                self.children.remove(&slot);
            }
        }
        r.key.1.len()
    }

    /// The cached blocks that hold the start of `tokens` under `root` exactly (its full blocks
    /// along their chain, then a block holding its last, short chunk: a kept tail), and how
    /// many tokens they hold. Takes nothing: what a saved prompt cache reads.
    pub fn cached_start(&self, tokens: &[u32], root: u64) -> (Vec<u32>, usize) {
        let (mut blocks, mut held, mut parent) = (Vec::new(), 0, root);
        if !self.caching {
            return (blocks, held);
        }
        for chunk in tokens.chunks(self.block_size) {
            let Some(&b) = self.cache.get(&(parent, chunk.into())) else {
                break;
            };
            blocks.push(b);
            held += chunk.len();
            parent = self.uid_of(b);
        }
        (blocks, held)
    }

    /// Drop `blocks` from the cache where no sequence uses them (those in use stay cached
    /// until their users end); returns the tokens they held.
    pub fn forget_idle(&mut self, blocks: &[u32]) -> usize {
        let mut tokens = 0;
        for &b in blocks {
            let i = b as usize;
            if self.refs.get(i) != Some(&0) || self.registered[i].is_none() {
                continue;
            }
            self.evictable.remove(&self.evict_tick[i]);
            tokens += self.unregister(b);
            self.free.push(b);
        }
        tokens
    }

    /// The cache slots (`block × block_size + offset`) of positions `0..tokens` over `blocks`.
    pub fn slots_of(&self, blocks: &[u32], tokens: usize) -> Vec<u32> {
        let bs = self.block_size;
        (0..tokens)
            .filter_map(|p| {
                blocks
                    .get(p / bs)
                    .map(|&b| (b as usize * bs + p % bs) as u32)
            })
            .collect()
    }

    pub fn caching(&self) -> bool {
        self.caching
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
            self.put_back(b);
        }
        table.ids.clear();
        table.uids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `match_prefix`'s table and tokens.
    fn matched(m: &mut BlockManager, tokens: &[u32], root: u64) -> (BlockTable, usize) {
        let found = m.match_prefix(tokens, root);
        (found.table, found.tokens)
    }

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
        let (mut a, hit) = matched(&mut m, &prompt, 0);
        assert_eq!(hit, 0);
        m.ensure(&mut a, 13).unwrap();
        m.register_computed(&mut a, &prompt, 12);
        // Same 12 tokens: the first two blocks are shared and the third's first three tokens
        // copied (the last token must be run).
        let found = m.match_prefix(&prompt, 0);
        assert_eq!(found.tokens, 11);
        assert_eq!(found.table.ids[..2], a.ids[..2]);
        let copy = found.copy.expect("a copy of the third block");
        assert_eq!((copy.src, copy.tokens), (a.ids[2], 3));
        assert_eq!(found.table.ids[2], copy.dst);
        assert!(!a.ids.contains(&copy.dst));
        // Full blocks only: the first two.
        let found = m.match_full_blocks(&prompt, 0);
        assert_eq!((found.tokens, found.copy), (8, None));
        assert_eq!(found.table.ids, a.ids[..2].to_vec());
        // Longer prompt with the same head: all three blocks, nothing to copy.
        let mut longer = prompt.clone();
        longer.extend([99, 98]);
        let found = m.match_prefix(&longer, 0);
        assert_eq!((found.tokens, found.copy), (12, None));
        assert_eq!(found.table.ids, a.ids[..3].to_vec());
        // A different second block stops the shared blocks after the first; the second's
        // token before the difference is copied.
        let mut other = prompt.clone();
        other[5] = 1000;
        let found = m.match_prefix(&other, 0);
        assert_eq!(found.tokens, 5);
        assert_eq!(found.table.ids[0], a.ids[0]);
        assert_eq!(found.copy.map(|c| (c.src, c.tokens)), Some((a.ids[1], 1)));
        // Nothing in common after the first block: no copy.
        other[4] = 1000;
        let found = m.match_prefix(&other, 0);
        assert_eq!((found.tokens, found.copy, found.table.len()), (4, None, 1));
    }

    /// A conversation's next turn: the blocks of the turn before, then its kept tail (a
    /// partly filled block) copied, so only the new tokens are computed.
    #[test]
    fn a_kept_tail_is_copied_by_a_prompt_that_goes_on_from_it() {
        let mut m = BlockManager::new(8, 4, true);
        // 10 tokens, the last just sampled: 9 computed, the tail block holds one.
        let turn = toks(10, 2);
        let (mut a, _) = matched(&mut m, &turn, 0);
        m.ensure(&mut a, 10).unwrap();
        m.register_computed(&mut a, &turn, 9);
        let tail = a.ids[2];
        m.retire(&mut a, &turn, 9);
        assert_eq!(m.num_cached_idle(), 3, "two full blocks and the tail");
        let mut next = turn.clone();
        next.extend([50, 51]);
        let found = m.match_prefix(&next, 0);
        assert_eq!(found.tokens, 9);
        assert_eq!(found.copy.map(|c| (c.src, c.tokens)), Some((tail, 1)));
        assert_eq!(found.table.len(), 3);
        // The tail is not the sequence's: it stays cached for others.
        assert_eq!(
            m.num_cached_idle(),
            1,
            "the tail, idle; the full blocks are held"
        );
        // The same tail again is not kept twice; a different one under the same block is,
        // and the prompt takes the one it shares more of.
        let mut b = found.table;
        m.ensure(&mut b, 11).unwrap();
        m.register_computed(&mut b, &next, 9);
        m.retire(&mut b, &next, 9);
        assert_eq!(m.num_cached_idle(), 3);
        let mut c = matched(&mut m, &next, 0).0;
        m.ensure(&mut c, 12).unwrap();
        m.register_computed(&mut c, &next, 11);
        let longer_tail = c.ids[2];
        m.retire(&mut c, &next, 11);
        assert_eq!(m.num_cached_idle(), 4);
        let mut again = next.clone();
        again.push(60);
        let found = m.match_prefix(&again, 0);
        assert_eq!(found.tokens, 11);
        assert_eq!(
            found.copy.map(|c| (c.src, c.tokens)),
            Some((longer_tail, 3))
        );
    }

    /// Where a recurrent model's sequence could resume: each matched full block's prefix, and
    /// a kept tail the prompt shares whole (named by the uid `retire` told); a match cut back
    /// to one of them gives the blocks past it back.
    #[test]
    fn resume_points_name_the_prefixes_a_match_ends_with_and_a_cut_gives_the_rest_back() {
        let mut m = BlockManager::new(8, 4, true);
        let turn = toks(10, 2);
        let (mut a, _) = matched(&mut m, &turn, 0);
        m.ensure(&mut a, 10).unwrap();
        m.register_computed(&mut a, &turn, 9);
        let full = [
            a.uid_of_full_block(0).unwrap(),
            a.uid_of_full_block(1).unwrap(),
        ];
        assert_eq!(a.uid_of_full_block(2), None);
        let tail = m.retire(&mut a, &turn, 9).expect("the kept tail's uid");
        assert!(!full.contains(&tail));
        let mut next = turn.clone();
        next.extend([50, 51]);
        assert_eq!(
            m.cached_resume_points(&next, 0),
            [(4, full[0]), (8, full[1]), (9, tail)]
        );
        assert_eq!(
            m.cached_resume_points(&next, 7),
            [],
            "another root's prefixes"
        );
        let found = m.match_prefix(&next, 0);
        assert_eq!(
            m.resume_points(&found),
            [(4, full[0]), (8, full[1]), (9, tail)]
        );
        // A prompt that leaves the tail resumes at the full blocks at most.
        let partial = m.match_prefix(&[&turn[..8], &[90, 91, 92]].concat(), 0);
        assert_eq!(m.resume_points(&partial), [(4, full[0]), (8, full[1])]);
        let mut table = partial.table;
        m.release(&mut table);

        let idle = m.num_free();
        let cut = m.cut_match(found, 4);
        assert_eq!((cut.tokens, cut.table.len(), cut.copy), (4, 1, None));
        assert_eq!(
            m.num_free(),
            idle + 2,
            "the second block and the copy's came back"
        );
        let kept = m.cut_match(cut, 9);
        assert_eq!(
            (kept.tokens, kept.table.len()),
            (4, 1),
            "a cut never grows a match"
        );
        // A sequence that ends at a block's end names that block.
        let mut b = kept.table;
        m.ensure(&mut b, 8).unwrap();
        m.register_computed(&mut b, &turn, 8);
        assert_eq!(m.retire(&mut b, &turn, 8), Some(full[1]));
        let mut off = BlockManager::new(8, 4, false);
        let (mut c, _) = matched(&mut off, &turn, 0);
        off.ensure(&mut c, 10).unwrap();
        assert_eq!(
            off.retire(&mut c, &turn, 9),
            None,
            "nothing is cached without caching"
        );
    }

    #[test]
    fn no_tail_is_kept_of_a_full_block_or_without_caching() {
        let prompt = toks(9, 4);
        for (caching, computed, kept) in [(true, 8, 2), (false, 7, 0), (true, 7, 2)] {
            let mut m = BlockManager::new(8, 4, caching);
            let (mut a, _) = matched(&mut m, &prompt, 0);
            m.ensure(&mut a, 9).unwrap();
            m.register_computed(&mut a, &prompt, computed);
            m.retire(&mut a, &prompt, computed);
            // 7 computed: one full block and a tail of three; 8: two full blocks, no tail.
            assert_eq!(m.num_cached_idle(), kept, "{caching} {computed}");
        }
    }

    /// The copy's destination may evict an idle cached block, never the source.
    #[test]
    fn the_copied_block_is_not_the_one_evicted_for_its_copy() {
        let mut m = BlockManager::new(4, 4, true);
        // A: one full block and a tail of one token; B: two full blocks of other tokens.
        let a_tokens = toks(6, 1);
        let (mut a, _) = matched(&mut m, &a_tokens, 0);
        m.ensure(&mut a, 6).unwrap();
        m.register_computed(&mut a, &a_tokens, 5);
        let b_tokens = toks(9, 100);
        let (mut b, _) = matched(&mut m, &b_tokens, 0);
        m.ensure(&mut b, 8).unwrap();
        m.register_computed(&mut b, &b_tokens, 8);
        let (tail, b_second) = (a.ids[1], b.ids[1]);
        m.retire(&mut a, &a_tokens, 5);
        m.release(&mut b);
        // Nothing free: A's tail is the oldest idle block, B's last the next.
        assert_eq!((m.num_free(), m.num_cached_idle()), (4, 4));
        let mut next = a_tokens[..5].to_vec();
        next.extend([77, 78]);
        let found = m.match_prefix(&next, 0);
        assert_eq!(found.tokens, 5);
        let copy = found.copy.expect("a copy");
        assert_eq!((copy.src, copy.dst), (tail, b_second));
        // B's second block is gone, its first still found; the tail is still cached.
        assert_eq!(matched(&mut m, &b_tokens, 0).1, 4);
        assert_eq!(m.num_cached_idle(), 1);
        assert!(m.children.values().flatten().any(|&c| c == tail));
    }

    #[test]
    fn released_blocks_stay_cached_until_space_is_needed() {
        let mut m = BlockManager::new(4, 4, true);
        let prompt = toks(9, 3);
        let (mut a, _) = matched(&mut m, &prompt, 0);
        m.ensure(&mut a, 9).unwrap();
        m.register_computed(&mut a, &prompt, 9);
        m.release(&mut a);
        assert_eq!(m.num_free(), 4);
        assert_eq!(m.num_cached_idle(), 2);
        // The prompt and a token more: both full blocks, nothing to copy.
        let mut prompt = prompt;
        prompt.push(999);
        let (mut b, hit) = matched(&mut m, &prompt, 0);
        assert_eq!(hit, 8);
        assert_eq!(m.num_free(), 2);
        m.release(&mut b);
        // Filling the cache evicts the cached blocks, tail first; then the prefix is gone.
        let mut big = BlockTable::default();
        m.ensure(&mut big, 12).unwrap();
        assert_eq!(m.num_cached_idle(), 1);
        let (e, hit) = matched(&mut m, &prompt, 0);
        assert_eq!(hit, 4, "the head block survives the tail");
        let mut e = e;
        m.release(&mut e);
        m.ensure(&mut big, 16).unwrap();
        assert_eq!(matched(&mut m, &prompt, 0).1, 0);
    }

    #[test]
    fn identical_blocks_computed_twice_chain_on_one_identity() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(8, 5);
        let (mut a, _) = matched(&mut m, &prompt, 0);
        let (mut b, _) = matched(&mut m, &prompt, 0);
        m.ensure(&mut a, 8).unwrap();
        m.ensure(&mut b, 8).unwrap();
        m.register_computed(&mut a, &prompt, 4);
        m.register_computed(&mut b, &prompt, 8);
        m.register_computed(&mut a, &prompt, 8);
        let mut longer = prompt.clone();
        longer.extend([1, 2]);
        let (c, hit) = matched(&mut m, &longer, 0);
        assert_eq!(hit, 8);
        assert_eq!(c.ids, vec![a.ids[0], b.ids[1]]);
    }

    #[test]
    fn shared_blocks_return_to_the_pool_only_after_the_last_user() {
        let mut m = BlockManager::new(4, 4, true);
        let prompt = toks(6, 0);
        let (mut a, _) = matched(&mut m, &prompt, 0);
        m.ensure(&mut a, 6).unwrap();
        m.register_computed(&mut a, &prompt, 6);
        let (mut b, hit) = matched(&mut m, &prompt, 0);
        assert_eq!(hit, 4);
        m.ensure(&mut b, 6).unwrap();
        assert_eq!(m.num_free(), 1);
        m.release(&mut a);
        assert_eq!(m.num_free(), 2, "the shared block is still held by b");
        m.release(&mut b);
        assert_eq!(m.num_free(), 4);
    }

    #[test]
    fn each_root_caches_apart() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(10, 1);
        let (mut base, _) = matched(&mut m, &prompt, prefix_root(&LoraMix::BASE, None));
        m.ensure(&mut base, 10).unwrap();
        m.register_computed(&mut base, &prompt, 10);
        // The same tokens under an adapter's root find nothing of the base model's...
        let (mut tuned, hit) = matched(&mut m, &prompt, prefix_root(&LoraMix::one(0), None));
        assert_eq!(hit, 0);
        m.ensure(&mut tuned, 10).unwrap();
        m.register_computed(&mut tuned, &prompt, 10);
        // ...and each finds its own afterwards, the second adapter still nothing.
        assert_eq!(
            matched(&mut m, &prompt, prefix_root(&LoraMix::BASE, None)).1,
            8
        );
        assert_eq!(
            matched(&mut m, &prompt, prefix_root(&LoraMix::one(0), None)).1,
            8
        );
        assert_eq!(
            matched(&mut m, &prompt, prefix_root(&LoraMix::one(1), None)).1,
            0
        );
        // The same adapter at another scale, or beside another, computes other K/V.
        let half = LoraMix::scaled([(0, 0.5)]);
        let both = LoraMix::scaled([(0, 1.0), (1, 1.0)]);
        assert_eq!(matched(&mut m, &prompt, prefix_root(&half, None)).1, 0);
        assert_eq!(matched(&mut m, &prompt, prefix_root(&both, None)).1, 0);
    }

    #[test]
    fn roots_of_mixes_stay_apart_from_uids_and_from_single_adapters() {
        let roots = [
            prefix_root(&LoraMix::BASE, None),
            prefix_root(&LoraMix::one(0), None),
            prefix_root(&LoraMix::one(1), None),
            prefix_root(&LoraMix::scaled([(0, 0.5)]), None),
            prefix_root(&LoraMix::scaled([(0, 0.25)]), None),
            prefix_root(&LoraMix::scaled([(0, 1.0), (1, 1.0)]), None),
            prefix_root(&LoraMix::scaled([(0, 1.0), (1, 0.5)]), None),
        ];
        let distinct: std::collections::HashSet<u64> = roots.iter().copied().collect();
        assert_eq!(distinct.len(), roots.len(), "{roots:x?}");
        for root in &roots[3..] {
            assert!((1 << 62..1 << 63).contains(root), "{root:x}");
        }
        // A list's order and zero scales do not change what it computes, nor its root.
        assert_eq!(
            prefix_root(&LoraMix::scaled([(1, 0.5), (0, 1.0), (2, 0.0)]), None),
            roots[6]
        );
    }

    #[test]
    fn a_salt_roots_its_own_tree_whatever_the_adapters() {
        let salted = [
            prefix_root(&LoraMix::BASE, Some("tenant-a")),
            prefix_root(&LoraMix::BASE, Some("tenant-b")),
            prefix_root(&LoraMix::one(0), Some("tenant-a")),
            prefix_root(&LoraMix::scaled([(0, 0.5)]), Some("tenant-a")),
        ];
        let unsalted = [
            prefix_root(&LoraMix::BASE, None),
            prefix_root(&LoraMix::one(0), None),
            prefix_root(&LoraMix::scaled([(0, 0.5)]), None),
        ];
        let distinct: std::collections::HashSet<u64> =
            salted.iter().chain(&unsalted).copied().collect();
        assert_eq!(distinct.len(), 7, "{salted:x?} {unsalted:x?}");
        for root in &salted {
            assert!((1 << 62..1 << 63).contains(root), "{root:x}");
        }
        assert_eq!(prefix_root(&LoraMix::BASE, Some("tenant-a")), salted[0]);
        // A salted tree shares nothing with the shared one.
        let mut m = BlockManager::new(16, 4, true);
        let prompt = toks(9, 5);
        let (mut shared, _) = matched(&mut m, &prompt, unsalted[0]);
        m.ensure(&mut shared, 9).unwrap();
        m.register_computed(&mut shared, &prompt, 9);
        assert_eq!(matched(&mut m, &prompt, salted[0]).1, 0);
        assert_eq!(matched(&mut m, &prompt, unsalted[0]).1, 8);
    }

    #[test]
    fn a_forgotten_cache_matches_nothing_and_frees_its_idle_blocks() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(10, 3);
        let (mut a, _) = matched(&mut m, &prompt, 0);
        m.ensure(&mut a, 10).unwrap();
        m.register_computed(&mut a, &prompt, 9);
        m.retire(&mut a, &prompt, 9);
        let (mut b, hit) = matched(&mut m, &prompt, 0);
        assert_eq!(hit, 9);
        // b holds two full blocks and a copy; the tail is cached and idle.
        assert_eq!(m.forget_cached(), 3);
        assert_eq!((m.num_cached_idle(), m.num_free()), (0, 5));
        assert_eq!(matched(&mut m, &prompt, 0).1, 0);
        // b's blocks are its own now: released, they are free, not cached.
        m.release(&mut b);
        assert_eq!((m.num_cached_idle(), m.num_free()), (0, 8));
    }

    #[test]
    fn caching_off_matches_nothing() {
        let mut m = BlockManager::new(4, 4, false);
        let prompt = toks(9, 0);
        let (mut a, _) = matched(&mut m, &prompt, 0);
        m.ensure(&mut a, 9).unwrap();
        m.register_computed(&mut a, &prompt, 9);
        m.release(&mut a);
        assert_eq!(matched(&mut m, &prompt, 0).1, 0);
        assert_eq!(m.num_cached_idle(), 0);
    }
}
