//! `cargo bench -p candor-kernels --bench half`: products with f16/bf16 weights kept in 16 bits
//! (`half_matmul`) at Qwen2.5-0.5B's FFN shape (896 -> 4864): decode (M = 1), a batch of 8
//! streams and a 64-token prompt chunk. Throughput is weight bytes per second, to hold against
//! the machine's memory bandwidth (the weight is 8.7 MB: it may sit in a large L3 here, where a
//! whole model's weights would not). `CANDOR_BENCH_QUICK=1` shortens every measurement.
mod common;

use candor_kernels::half_matmul::{matmul, HalfType};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn half(c: &mut Criterion) {
    let (n, k) = (4864, 896);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f32 / 1000.0 - 1.0
    };
    let values: Vec<f32> = (0..n * k).map(|_| next() * 0.05).collect();
    for ty in [HalfType::Bf16, HalfType::F16] {
        let w: Vec<u16> = values.iter().map(|&v| ty.from_f32(v)).collect();
        let mut g = c.benchmark_group(format!("half/{ty:?}"));
        g.throughput(Throughput::Bytes((2 * n * k) as u64));
        for m in [1usize, 8, 64] {
            let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let mut y = vec![0f32; m * n];
            g.bench_function(
                BenchmarkId::new(format!("k{k}n{n}"), format!("m{m}")),
                |b| b.iter(|| matmul(ty, &w, n, k, &x, m, &mut y).expect("valid shapes")),
            );
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = half
}
criterion_main!(benches);
