//! The shared check of `tests/latent_attention*.rs`: the tiny DeepSeek-V3's cache heads, and
//! its logits against transformers'.
use super::common::*;
use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor_models::loader::open_model;

/// The tiny model's cache has `(kv heads, head width)` and its logits are transformers'.
pub fn matches_transformers(cache_heads: (usize, usize)) {
    let dir = fixtures().join("tiny/deepseek_v3");
    let g = read_json(&dir.join("golden.json"));
    let opened = open_model(&dir, false).expect("open");
    let kv = KvCacheDtype::Auto
        .resolve(&opened, false)
        .expect("KV dtype");
    let mut r = cpu_runner(&opened, 2, 4096, kv).expect("runner");
    let spec = r.spec();
    assert_eq!((spec.num_kv_heads, spec.head_dim), cache_heads);
    let d = tiny_golden_distance(r.as_mut(), &g);
    assert!(d < 1e-4, "logits differ by {d}");
}
