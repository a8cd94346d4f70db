//! `cargo bench --bench kernels`: the CPU attention, RoPE, RMSNorm and GLU kernels — paged
//! attention (decode over 1024 cached tokens with f32 and f16 caches, over 4096 with f16 and
//! q8_0 ones, and a 512-token causal
//! prefill), RoPE, RMSNorm fused with the residual add, and tanh-GELU GLU. The quantized matmul
//! has its groups per weight type in `kernels/benches/quant.rs` (`cargo bench -p
//! candor-kernels`). `CANDOR_BENCH_QUICK=1` shortens every measurement so the suite runs in CI
//! on 2 cores in well under a minute.
use candor_kernels::activation::{glu, Act};
use candor_kernels::attention::{paged_attention, AttnShape, KvQ8, PagedKv, SeqQueries};
use candor_kernels::norm::{add_rms_norm, rms_norm};
use candor_kernels::rope::{apply_rope, Pairing};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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

fn to_f16(x: &[f32]) -> Vec<half::f16> {
    x.iter().map(|&v| half::f16::from_f32(v)).collect()
}

/// One sequence decoding at 4096 tokens of context over f16 and q8_0 caches (the keys split
/// over threads, `split_keys.rs`): where a long chat's decode spends its attention time.
fn decode_long(c: &mut Criterion, q: &[f32], shape: &AttnShape<'_>) {
    let (kv_heads, d, block, ctx) = (2, 64, 16, 4096);
    let k: Vec<f32> = (0..ctx * kv_heads * d)
        .map(|i| ((i * 7 % 29) as f32 - 14.0) / 9.0)
        .collect();
    let table: Vec<u32> = (0..(ctx / block) as u32).collect();
    let seqs = [SeqQueries {
        q_start: 0,
        q_len: 1,
        start_pos: ctx - 1,
        block_table: &table,
    }];
    let mut out = vec![0f32; q.len()];
    let k16 = to_f16(&k);
    let k8: Vec<KvQ8> = k.chunks_exact(32).map(KvQ8::quantize).collect();
    let mut g = c.benchmark_group("paged_attention_long");
    g.throughput(Throughput::Elements(ctx as u64));
    let kv16 = PagedKv {
        k: &k16,
        v: &k16,
        block_size: block,
        kv_heads,
        head_dim: d,
    };
    g.bench_function("decode_ctx4096_f16", |b| {
        b.iter(|| paged_attention(q, &mut out, &kv16, &seqs, shape))
    });
    let kv8 = PagedKv {
        k: &k8,
        v: &k8,
        block_size: block,
        kv_heads,
        head_dim: d,
    };
    g.bench_function("decode_ctx4096_q8_0", |b| {
        b.iter(|| paged_attention(q, &mut out, &kv8, &seqs, shape))
    });
    g.finish();
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
        sinks: None,
        alibi: None,
    };
    // The same cache in f16 (what quantized models use on the CPU).
    let (k16, v16) = (to_f16(&k), to_f16(&v));
    let kv16 = PagedKv {
        k: &k16,
        v: &v16,
        block_size: block,
        kv_heads,
        head_dim: d,
    };
    let mut g = c.benchmark_group("paged_attention");
    g.throughput(Throughput::Elements(ctx as u64));
    g.bench_function("decode_ctx1024_f32", |b| {
        b.iter(|| paged_attention(&q, &mut out, &kv, &seqs, &shape))
    });
    g.bench_function("decode_ctx1024_f16", |b| {
        b.iter(|| paged_attention(&q, &mut out, &kv16, &seqs, &shape))
    });
    // ALiBi's bias on every score (BLOOM, MPT): what it adds to the same decode.
    let slopes = candor_models::alibi::Alibi::STANDARD.slopes(heads);
    let alibi = AttnShape {
        alibi: Some(&slopes),
        ..shape
    };
    g.bench_function("decode_ctx1024_f16_alibi", |b| {
        b.iter(|| paged_attention(&q, &mut out, &kv16, &seqs, &alibi))
    });
    g.finish();
    decode_long(c, &q, &shape);
    // Prefill: 512 causal rows over the same cache (each row sees positions 0..=its own).
    let rows = 512;
    let qp: Vec<f32> = (0..rows * heads * d)
        .map(|i| ((i % 11) as f32 - 5.0) / 11.0)
        .collect();
    let mut outp = vec![0f32; rows * heads * d];
    let prefill = [SeqQueries {
        q_start: 0,
        q_len: rows,
        start_pos: 0,
        block_table: &table,
    }];
    let mut g = c.benchmark_group("paged_attention_prefill");
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("prefill_512_f16", |b| {
        b.iter(|| paged_attention(&qp, &mut outp, &kv16, &prefill, &shape))
    });
    g.bench_function("prefill_512_f16_alibi", |b| {
        b.iter(|| paged_attention(&qp, &mut outp, &kv16, &prefill, &alibi))
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

/// One decode row and a 128-token prefill chunk of Qwen2.5-0.5B's hidden size (896).
fn norm(c: &mut Criterion) {
    let hidden = 896;
    let w: Vec<f32> = (0..hidden).map(|i| 1.0 + (i % 5) as f32 * 0.01).collect();
    let mut g = c.benchmark_group("rms_norm");
    for rows in [1usize, 128] {
        let x: Vec<f32> = (0..rows * hidden)
            .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
            .collect();
        let r = x.clone();
        let (mut sum, mut out) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        g.throughput(Throughput::Elements(x.len() as u64));
        g.bench_function(format!("rows{rows}x{hidden}"), |b| {
            b.iter(|| rms_norm(&x, &w, 1e-6, &mut out))
        });
        g.bench_function(format!("add_fused_rows{rows}x{hidden}"), |b| {
            b.iter(|| add_rms_norm(&x, &r, &w, 1e-6, &mut sum, &mut out))
        });
    }
    g.finish();
}

/// Gemma 3 270M's feed-forward width (2048) for a 128-token chunk.
fn gated_unit(c: &mut Criterion) {
    let n = 128 * 2048;
    let gate: Vec<f32> = (0..n).map(|i| ((i % 101) as f32 - 50.0) / 10.0).collect();
    let up = gate.clone();
    let mut out = vec![0f32; n];
    let mut g = c.benchmark_group("glu");
    g.throughput(Throughput::Elements(n as u64));
    for (name, act) in [("silu", Act::Silu), ("gelu_tanh", Act::GeluTanh)] {
        g.bench_function(format!("{name}_128x2048"), |b| {
            b.iter(|| glu(&gate, &up, act, &mut out))
        });
    }
    g.finish();
}

criterion_group! {
    name = kernels;
    config = config();
    targets = attention, rope, norm, gated_unit
}
criterion_main!(kernels);
