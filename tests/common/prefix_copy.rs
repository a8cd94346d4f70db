//! The prefix cache's block copies through a real runner (CPU in tiny_golden, CUDA in
//! cuda_golden): prompts continued from copied blocks against one whole computation.
use super::max_abs_diff;
use candor::engine::{BlockManager, BlockTable, Logits, Runner};
use candor_models::{Batch, LogitsWanted, SeqInput};

/// One step of `tokens[start..]` from `start` over `table`, asking for `wanted`.
fn step_from(
    r: &mut dyn Runner,
    tokens: &[u32],
    start: usize,
    table: &BlockTable,
    wanted: LogitsWanted,
) -> Logits {
    r.forward(&Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: tokens[start..].to_vec(),
            start_pos: start,
            block_table: table.ids.clone(),
            logits: wanted,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    })
    .unwrap()
}

/// `ids` (40 tokens) through the prefix cache on a fresh runner `r` of `arch`, against `whole`
/// (every position's logits, computed in one pass): a prompt that starts from a finished
/// sequence's kept tail, and one that starts from part of a full block another sequence holds,
/// give the whole computation's logits within `tol`.
pub fn check(arch: &str, mut r: Box<dyn Runner>, ids: &[u32], whole: &Logits, tol: f32) {
    assert!(
        ids.len() > 32,
        "{arch}: the input must span two full blocks"
    );
    if r.spec().keeps_sequence_state() {
        // Cached blocks hold no recurrent state: such a model continues from nothing but its
        // own slot (the engine takes nothing from the prefix cache for it), and a step from a
        // position its slot does not stand at is refused.
        let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
        let mut table = BlockTable::default();
        bm.ensure(&mut table, ids.len()).unwrap();
        let refused = r.forward(&Batch {
            seqs: vec![SeqInput {
                state_slot: 0,
                tokens: ids[16..].to_vec(),
                start_pos: 16,
                block_table: table.ids.clone(),
                logits: LogitsWanted::Last,
                lora: candor_models::lora::LoraMix::BASE,
            }],
        });
        assert!(refused.is_err(), "{arch}: a step without its state ran");
        return;
    }
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), true);
    // A: 27 tokens computed, a full block and a tail of 11, kept when it ends.
    let mut a = bm.match_prefix(&ids[..27], 0).table;
    bm.ensure(&mut a, 27).unwrap();
    step_from(r.as_mut(), &ids[..27], 0, &a, LogitsWanted::None);
    bm.register_computed(&mut a, &ids[..27], 27);
    // D, the first 24 tokens while A runs (a later choice of `n`): A's full block, then 7
    // tokens of the block A is still filling, copied.
    let full = bm.match_full_blocks(&ids[..24], 0);
    assert_eq!(full.tokens, 16, "{arch}");
    let found = bm.with_copy_of(full, a.ids[1], 7);
    let copy = found.copy.expect("A's block is copied");
    r.copy_blocks(&[(copy.src, copy.dst)]).unwrap();
    let out = step_from(r.as_mut(), &ids[..24], 23, &found.table, LogitsWanted::Last);
    let d = max_abs_diff(out.row(0), whole.row(23));
    assert!(
        d < tol,
        "{arch}: position 23 after a running block's copy: {d}"
    );
    let mut d_table = found.table;
    bm.release(&mut d_table);
    bm.retire(&mut a, &ids[..27], 27);
    // B, the whole input: the full block shared, A's tail copied, the rest computed.
    let found = bm.match_prefix(ids, 0);
    let copy = found.copy.expect("A's tail is copied");
    assert_eq!((found.tokens, copy.tokens), (27, 11), "{arch}");
    r.copy_blocks(&[(copy.src, copy.dst)]).unwrap();
    let mut b = found.table;
    bm.ensure(&mut b, ids.len()).unwrap();
    let out = step_from(r.as_mut(), ids, 27, &b, LogitsWanted::All);
    for p in 27..ids.len() {
        let d = max_abs_diff(out.row(p - 27), whole.row(p));
        assert!(d < tol, "{arch}: position {p} after the copied tail: {d}");
    }
    bm.register_computed(&mut b, ids, ids.len());
    // C, the first 24 tokens while B runs: 7 tokens of a cached block (B's second, held by
    // B, or A's tail) copied, the last token computed.
    let found = bm.match_prefix(&ids[..24], 0);
    assert_eq!(found.tokens, 23, "{arch}");
    let copy = found.copy.expect("a block shared in part is copied");
    r.copy_blocks(&[(copy.src, copy.dst)]).unwrap();
    let out = step_from(r.as_mut(), &ids[..24], 23, &found.table, LogitsWanted::Last);
    let d = max_abs_diff(out.row(0), whole.row(23));
    assert!(d < tol, "{arch}: position 23 after a copied block: {d}");
}
