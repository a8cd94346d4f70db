//! The shared check of `tests/latent_attention*.rs`: the tiny DeepSeek-V3's cache heads, and
//! its logits against transformers'.
use super::common::*;
use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor::engine::{BlockManager, BlockTable};
use candor_models::loader::open_model;
use candor_models::{Batch, LogitsWanted, SeqInput};

/// The tiny model's cache has `(kv heads, head width)` and its logits are transformers'.
pub fn matches_transformers(cache_heads: (usize, usize)) {
    let dir = fixtures().join("tiny/deepseek_v3");
    let g = read_json(&dir.join("golden.json"));
    let ids = as_u32s(&g["input_ids"]);
    let opened = open_model(&dir, false).expect("open");
    let kv = KvCacheDtype::Auto
        .resolve(&opened, false)
        .expect("KV dtype");
    let mut r = cpu_runner(&opened, 2, 4096, kv).expect("runner");
    let spec = r.spec();
    assert_eq!((spec.num_kv_heads, spec.head_dim), cache_heads);
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
    let mut table = BlockTable::default();
    bm.ensure(&mut table, ids.len()).unwrap();
    let out = r
        .forward(&Batch {
            seqs: vec![SeqInput {
                tokens: ids.clone(),
                start_pos: 0,
                block_table: table.ids,
                logits: LogitsWanted::All,
                adapter: None,
            }],
        })
        .unwrap();
    for p in as_u32s(&g["positions"]) {
        let want = as_f32s(&g["float32"]["logits"][p.to_string()]);
        let d = max_abs_diff(out.row(p as usize), &want);
        assert!(d < 1e-4, "position {p}: logits differ by {d}");
    }
}
