//! LongRoPE picks its factors by the context served: a model loaded for its whole trained
//! context (past its original one) runs the long factors; told it serves no more than the
//! original context (`Runner::use_context`, as `candor serve` does with its context), the
//! short ones, and then gives transformers' logits for a sequence within the original context.
//! (`tests/tiny_golden.rs` checks the long factors against transformers on a longer input.)
mod common;

use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor::engine::{BlockManager, BlockTable, Runner};
use candor_models::loader::open_model;
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;

/// The largest difference from transformers' logits over the golden positions.
fn distance_from_transformers(r: &mut dyn Runner, g: &serde_json::Value) -> f32 {
    let ids = as_u32s(&g["input_ids"]);
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
    let mut table = BlockTable::default();
    bm.ensure(&mut table, ids.len()).unwrap();
    let out = r
        .forward(&Batch {
            seqs: vec![SeqInput {
                tokens: ids,
                start_pos: 0,
                block_table: table.ids,
                logits: LogitsWanted::All,
                adapter: None,
            }],
        })
        .unwrap();
    as_u32s(&g["positions"])
        .into_iter()
        .map(|p| {
            let want = as_f32s(&g["float32"]["logits"][p.to_string()]);
            max_abs_diff(out.row(p as usize), &want)
        })
        .fold(0.0, f32::max)
}

#[test]
fn longrope_takes_the_short_factors_within_the_original_context() {
    let dir = fixtures().join("tiny/phi3_longrope_short");
    let g = read_json(&dir.join("golden.json"));
    let opened = open_model(&dir, false).expect("open");
    let kv = KvCacheDtype::Auto
        .resolve(&opened, false)
        .expect("KV dtype");
    let mut whole = cpu_runner(&opened, 2, 4096, kv).expect("runner");
    let long = distance_from_transformers(whole.as_mut(), &g);
    assert!(long > 1e-2, "the long factors should differ here: {long}");
    let mut within = cpu_runner(&opened, 2, 4096, kv).expect("runner");
    within.use_context(64);
    let short = distance_from_transformers(within.as_mut(), &g);
    assert!(short < 1e-4, "short factors: logits differ by {short}");
}
