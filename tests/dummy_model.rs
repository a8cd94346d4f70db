//! `--load-format dummy` on the CPU: the tiny shapes load through the decoder (every tensor the
//! table lists is the one the decoder asks for), run, and are reproducible from their seed.
use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor_models::backend::WeightDtype;
use candor_models::dummy::{find, open_dummy};
use candor_models::{Batch, LogitsWanted, SeqInput};

fn logits(arch: &str, dtype: WeightDtype, seed: u64) -> Vec<f32> {
    let opened = open_dummy(find(arch, "tiny").unwrap(), dtype, seed).unwrap();
    let kv = KvCacheDtype::Auto.resolve(&opened, false).unwrap();
    let mut r = cpu_runner(&opened, 2, 256, kv).unwrap();
    let batch = Batch {
        seqs: vec![SeqInput {
            tokens: (0..20).map(|i| i * 11 % 256).collect(),
            start_pos: 0,
            block_table: vec![0, 1],
            logits: LogitsWanted::All,
        }],
    };
    r.forward(&batch).unwrap().data
}

#[test]
fn tiny_dummy_models_run_and_are_reproducible() {
    for arch in ["llama", "qwen2"] {
        let a = logits(arch, WeightDtype::BF16, 1);
        assert_eq!(a.len(), 20 * 256);
        assert!(a.iter().all(|v| v.is_finite()), "{arch}");
        // Random weights still give distinct logits per token, not a constant.
        let spread =
            a.iter().cloned().fold(f32::MIN, f32::max) - a.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1e-3, "{arch}: spread {spread}");
        assert_eq!(a, logits(arch, WeightDtype::BF16, 1), "{arch}: same seed");
        assert_ne!(a, logits(arch, WeightDtype::BF16, 2), "{arch}: other seed");
    }
}
