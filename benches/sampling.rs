//! `cargo bench --bench sampling`: what the sampler costs each sampled token, on a row of
//! Qwen2.5's vocabulary (151,936 logits): a few likely tokens over a long tail, as a model's
//! rows are. Temperature alone, with top-p, min-p, top-k or typical-p, with penalties over a
//! history (and over a 4k-token prompt), min-p with the temperature last, a dynamic
//! temperature, mirostat 1 and 2, and greedy for scale (a 0.5B
//! model's decode step is ~12 ms on 2 Xeon threads); and the logprobs of a row with 0, 5 and
//! 20 alternatives (`logprobs`, prompt scoring).
use candor::engine::mirostat::{Mirostat, MirostatVersion};
use candor::engine::penalties::Penalties;
use candor::engine::sampler::{logprobs, History, Sampler, SamplingParams};
use candor::engine::temperature::DynamicTemperature;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use std::time::Duration;

const VOCAB: usize = 151_936;

fn row() -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut logits: Vec<f32> = (0..VOCAB)
        .map(|_| rng.random::<f32>() * 14.0 - 6.0)
        .collect();
    for (i, l) in [(77, 24.0), (900, 23.1), (1234, 21.5), (40_000, 20.0)] {
        logits[i] = l;
    }
    logits
}

/// llama.cpp's defaults.
fn mirostat(version: MirostatVersion) -> Mirostat {
    Mirostat {
        version,
        tau: 5.0,
        eta: 0.1,
    }
}

fn sampling(c: &mut Criterion) {
    let logits = row();
    let history: Vec<u32> = (0..256).map(|i| (i * 577 % VOCAB) as u32).collect();
    let warm = SamplingParams {
        temperature: 0.8,
        seed: Some(1),
        ..Default::default()
    };
    let cases = [
        ("greedy", SamplingParams::greedy()),
        ("temperature", warm.clone()),
        (
            "top_p_0.95",
            SamplingParams {
                top_p: 0.95,
                ..warm.clone()
            },
        ),
        (
            "min_p_0.05",
            SamplingParams {
                min_p: 0.05,
                ..warm.clone()
            },
        ),
        (
            "top_k_40",
            SamplingParams {
                top_k: 40,
                ..warm.clone()
            },
        ),
        (
            "typical_p_0.9",
            SamplingParams {
                typical_p: 0.9,
                ..warm.clone()
            },
        ),
        (
            "top_p_penalties",
            SamplingParams {
                top_p: 0.95,
                penalties: Penalties {
                    repetition: 1.1,
                    frequency: 0.3,
                    ..Default::default()
                },
                ..warm.clone()
            },
        ),
        (
            "min_p_0.05_temperature_last",
            SamplingParams {
                min_p: 0.05,
                temperature_last: true,
                ..warm.clone()
            },
        ),
        (
            "dynatemp_0.5",
            SamplingParams {
                dynamic_temperature: Some(DynamicTemperature {
                    range: 0.5,
                    exponent: 1.0,
                }),
                ..warm.clone()
            },
        ),
        (
            "mirostat_v1",
            SamplingParams {
                mirostat: Some(mirostat(MirostatVersion::V1)),
                ..warm.clone()
            },
        ),
        (
            "mirostat_v2",
            SamplingParams {
                mirostat: Some(mirostat(MirostatVersion::V2)),
                ..warm.clone()
            },
        ),
    ];
    let mut g = c.benchmark_group("sampler/vocab_151936");
    for (name, params) in cases {
        let mut sampler = Sampler::new(params).expect("valid parameters");
        g.bench_function(name, |b| b.iter(|| sampler.sample(&logits, &history)));
    }
    // vLLM's repetition penalty over a 4k-token prompt as well as the answer: the prompt's
    // distinct tokens are kept between picks, not counted again.
    let context: Vec<u32> = (0..4096).map(|i| (i * 7919 % VOCAB) as u32).collect();
    let mut sampler = Sampler::new(SamplingParams {
        top_p: 0.95,
        penalties: Penalties {
            repetition: 1.1,
            ..Default::default()
        },
        ..warm.clone()
    })
    .expect("valid parameters");
    g.bench_function("top_p_repetition_prompt_4k", |b| {
        b.iter(|| sampler.sample(&logits, History::new(&context, 3840)))
    });
    // What `logprobs` / `top_logprobs` add to each token, and each scored prompt token.
    for k in [0, 5, 20] {
        g.bench_function(format!("logprobs_top{k}"), |b| {
            b.iter(|| logprobs(&logits, 77, k))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    let quick = std::env::var("CANDOR_BENCH_QUICK").is_ok_and(|v| v != "0");
    let c = Criterion::default().sample_size(20);
    if quick {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        c.measurement_time(Duration::from_secs(3))
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = sampling
}
criterion_main!(benches);
