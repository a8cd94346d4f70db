//! DeepSeek's latent attention in its expanded form (every head's key and value cached, as
//! backends without per-head products or attention over 576-wide heads run it: plugins,
//! CUDA): the same logits as transformers. Its own test binary, as it sets the process-wide
//! `CANDOR_MLA_CACHE`.
mod common;

#[path = "latent_attention/check.rs"]
mod check;

#[test]
fn the_expanded_cache_holds_every_head_and_matches_transformers() {
    // SAFETY: set before any thread of this binary reads the environment (its only test).
    unsafe { std::env::set_var("CANDOR_MLA_CACHE", "expanded") };
    check::matches_transformers((4, 16 + 8));
}
