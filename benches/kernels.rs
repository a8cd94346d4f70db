//! `cargo bench --bench kernels`: one group per CPU kernel — the quantized matmul per weight
//! type (decode-sized GEMV and prefill-sized GEMM at Qwen2.5-0.5B's shapes), paged attention
//! (decode over 1024 cached tokens) and RoPE. `CANDOR_BENCH_QUICK=1` shortens every
//! measurement so the suite runs in CI on 2 cores in well under a minute.
use candor_kernels::attention::{paged_attention, AttnShape, PagedKv, SeqQueries};
use candor_kernels::quant::{matmul, QuantType};
use candor_kernels::rope::{apply_rope, Pairing};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

fn quick() -> bool {
    std::env::var("CANDOR_BENCH_QUICK").is_ok_and(|v| v != "0")
}

fn config() -> Criterion {
    let c = Criterion::default();
    if quick() {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10)
    } else {
        c
    }
}

/// Deterministic filler bytes; every f16 scale slot is overwritten with a small valid value.
fn weights(ty: QuantType, n: usize, k: usize) -> Vec<u8> {
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    let scale_at: &[usize] = match ty {
        QuantType::Q5_0 | QuantType::Q8_0 => &[0],
        QuantType::Q4K => &[0, 2],
        QuantType::Q6K => &[208],
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut w = Vec::with_capacity(n * k / ty.block_elems() * ty.block_bytes());
    for _ in 0..n * k / ty.block_elems() {
        let start = w.len();
        for _ in 0..ty.block_bytes() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.push(state as u8);
        }
        for &at in scale_at {
            w[start + at..start + at + 2].copy_from_slice(&scale);
        }
    }
    w
}

fn quant_matmul(c: &mut Criterion) {
    let (n, k) = (4864, 896 / 32 * 32);
    for ty in [
        QuantType::Q5_0,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q6K,
    ] {
        // K-quants need rows of 256: use the next multiple (the shape of a down projection).
        let k = if ty.block_elems() == 256 { 1024 } else { k };
        let w = weights(ty, n, k);
        let mut g = c.benchmark_group(format!("quant_matmul/{ty:?}"));
        for m in [1usize, 128] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
            let mut y = vec![0f32; m * n];
            g.throughput(Throughput::Elements((m * n * k) as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{n}x{k}"), format!("m{m}")),
                &m,
                |b, &m| b.iter(|| matmul(ty, &w, n, k, &x, m, &mut y).expect("valid shapes")),
            );
        }
        g.finish();
    }
}

fn attention(c: &mut Criterion) {
    let (heads, kv_heads, d, block, ctx) = (14, 2, 64, 16, 1024);
    let slots = ctx;
    let k: Vec<f32> = (0..slots * kv_heads * d)
        .map(|i| ((i % 13) as f32 - 6.0) / 13.0)
        .collect();
    let v = k.clone();
    let table: Vec<u32> = (0..(ctx / block) as u32).collect();
    let q: Vec<f32> = (0..heads * d)
        .map(|i| ((i % 7) as f32 - 3.0) / 7.0)
        .collect();
    let mut out = vec![0f32; heads * d];
    let kv = PagedKv {
        k: &k,
        v: &v,
        block_size: block,
        kv_heads,
        head_dim: d,
    };
    let seqs = [SeqQueries {
        q_start: 0,
        q_len: 1,
        start_pos: ctx - 1,
        block_table: &table,
    }];
    let shape = AttnShape {
        heads,
        scale: 1.0 / (d as f32).sqrt(),
        window: None,
        softcap: None,
    };
    let mut g = c.benchmark_group("paged_attention");
    g.throughput(Throughput::Elements(ctx as u64));
    g.bench_function("decode_ctx1024", |b| {
        b.iter(|| paged_attention(&q, &mut out, &kv, &seqs, &shape))
    });
    g.finish();
}

fn rope(c: &mut Criterion) {
    let (tokens, heads, d) = (128, 14, 64);
    let inv_freq: Vec<f32> = (0..d / 2)
        .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
        .collect();
    let positions: Vec<u32> = (0..tokens as u32).collect();
    let mut x = vec![0.5f32; tokens * heads * d];
    let mut g = c.benchmark_group("rope");
    g.throughput(Throughput::Elements((tokens * heads) as u64));
    g.bench_function("neox_128x14x64", |b| {
        b.iter(|| apply_rope(&mut x, &positions, heads, d, &inv_freq, Pairing::Neox, 1.0))
    });
    g.finish();
}

criterion_group! {
    name = kernels;
    config = config();
    targets = quant_matmul, attention, rope
}
criterion_main!(kernels);
