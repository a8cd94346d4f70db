//! DeepSeek's latent attention in the form the CPU runs it: the latent and the rotary key part
//! cached once per token (one KV head of `kv_lora_rank + rope`), queries and outputs taken
//! through the latent space; the same logits as transformers. `tests/tiny_golden.rs` runs the
//! same model through the KV cache (greedy decoding, batches); the expanded form is checked in
//! `tests/latent_attention_expanded.rs`.
mod common;

#[path = "latent_attention/check.rs"]
mod check;

#[test]
fn the_cpu_caches_the_latent_once_and_matches_transformers() {
    check::matches_transformers((1, 32 + 8));
}
