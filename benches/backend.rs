//! `cargo bench --bench backend`: the CPU backend end to end through the batched runner —
//! prefill of 512 tokens and 128 decode steps (batch 1 and 16) — on the default real model when
//! it is already on disk (nothing is downloaded here), else on the tiny llama fixture.
//! `CANDOR_BENCH_QUICK=1` shortens every measurement.
use candor::backend::cpu::configure_threads;
use candor::bench::measure::{time_decode, time_prefill, TokenSource};
use candor::engine::load::{load_model, LoadOptions};
use candor::pull;
use candor_models::lora::LoraMix;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Duration;

fn quick() -> bool {
    std::env::var("CANDOR_BENCH_QUICK").is_ok_and(|v| v != "0")
}

fn config() -> Criterion {
    let c = Criterion::default().sample_size(10);
    if quick() {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(500))
    } else {
        c.measurement_time(Duration::from_secs(20))
    }
}

/// The default model if it was pulled already, else the tiny fixture (always present).
fn model() -> (String, PathBuf) {
    if let Some(entry) = pull::find(pull::DEFAULT_MODEL) {
        let path = pull::models_dir().join(entry.file);
        if path.is_file() {
            return (entry.name.to_string(), path);
        }
    }
    (
        "tiny-llama".into(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/llama"),
    )
}

fn backend(c: &mut Criterion) {
    let threads = configure_threads(None);
    let (name, path) = model();
    // Under `cargo test` (no `--bench` argument) each function runs once as a smoke test:
    // small sizes keep that quick.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (prompt, steps, batch) = if measuring {
        (512, 128, 16)
    } else {
        (64, 8, 16)
    };
    let opts = LoadOptions {
        dequantize: false,
        threads,
        kv_tokens: (prompt + 16).max(batch * (steps + 16)),
        backend: Default::default(),
        kv_cache_dtype: Default::default(),
        op_profiler: None,
        lora: Vec::new(),
        classifier_tokens: Vec::new(),
    };
    let mut m =
        load_model(&path, &opts).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    let vocab = m.spec.vocab_size;
    let mut src = TokenSource::new(7, vocab);
    let runner = m.runner.as_mut();
    let mut g = c.benchmark_group(format!("cpu_backend/{name}/t{threads}"));
    g.throughput(Throughput::Elements(prompt as u64));
    g.bench_function(format!("prefill_{prompt}"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    time_prefill(runner, prompt, 0, 512, &LoraMix::BASE, &mut src).expect("prefill")
                })
                .sum()
        })
    });
    for bsz in [1usize, batch] {
        g.throughput(Throughput::Elements((steps * bsz) as u64));
        g.bench_function(format!("decode_{steps}_b{bsz}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        time_decode(runner, steps, 0, bsz, 512, &LoraMix::BASE, &mut src)
                            .expect("decode")
                    })
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = backend
}
criterion_main!(benches);
