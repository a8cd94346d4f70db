//! LongRoPE picks its factors by the context served: a model loaded for its whole trained
//! context (past its original one) runs the long factors; told it serves no more than the
//! original context (`Runner::use_context`, as `candor serve` does with its context), the
//! short ones, and then gives transformers' logits for a sequence within the original context.
//! (`tests/tiny_golden.rs` checks the long factors against transformers on a longer input.)
mod common;

use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor_models::loader::open_model;
use common::*;

#[test]
fn longrope_takes_the_short_factors_within_the_original_context() {
    let dir = fixtures().join("tiny/phi3_longrope_short");
    let g = read_json(&dir.join("golden.json"));
    let opened = open_model(&dir, false).expect("open");
    let kv = KvCacheDtype::Auto
        .resolve(&opened, false)
        .expect("KV dtype");
    let mut whole = cpu_runner(&opened, 2, 4096, kv).expect("runner");
    let long = tiny_golden_distance(whole.as_mut(), &g);
    assert!(long > 1e-2, "the long factors should differ here: {long}");
    let mut within = cpu_runner(&opened, 2, 4096, kv).expect("runner");
    within.use_context(64);
    let short = tiny_golden_distance(within.as_mut(), &g);
    assert!(short < 1e-4, "short factors: logits differ by {short}");
}
