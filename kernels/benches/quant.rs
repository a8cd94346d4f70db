//! `cargo bench -p candor-kernels --bench quant`: the quantized products per weight type and
//! kernel set, at the shapes of Qwen2.5-0.5B (hidden 896, FFN 4864) and Gemma3-270M (640,
//! 2048): decode GEMV (M = 1) and prefill GEMM (M = 128). K-quants need K to be a multiple of
//! 256, so they use the down-projection shapes (K = FFN width). A dequantize-then-f32 GEMV is
//! the baseline. `CANDOR_BENCH_QUICK=1` shortens every measurement.
mod common;

use candor_kernels::quant::{dequantize, filler_blocks, matmul_with, Isa, QuantType};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Deterministic filler bytes with small valid scales.
fn weights(ty: QuantType, n: usize, k: usize) -> Vec<u8> {
    filler_blocks(ty, n * k / ty.block_elems(), 0x2545_f491_4f6c_dd1d, 0.01)
}

/// (K, N) pairs per type: the up/gate projections for 32-element formats, down projections
/// for K-quants.
fn shapes(ty: QuantType) -> [(usize, usize); 2] {
    if ty.block_elems() == 256 {
        [(4864, 896), (2048, 640)]
    } else {
        [(896, 4864), (640, 2048)]
    }
}

fn quant(c: &mut Criterion) {
    let isas: Vec<Isa> = Isa::all_supported()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect();
    for ty in QuantType::ALL {
        let mut g = c.benchmark_group(format!("quant/{ty:?}"));
        for (i, (k, n)) in shapes(ty).into_iter().enumerate() {
            let w = weights(ty, n, k);
            let ms: &[usize] = if i == 0 { &[1, 128] } else { &[1] };
            for &m in ms {
                let x: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
                let mut y = vec![0f32; m * n];
                g.throughput(Throughput::Elements((m * n * k) as u64));
                for &isa in &isas {
                    g.bench_with_input(
                        BenchmarkId::new(format!("{isa:?}/k{k}n{n}"), format!("m{m}")),
                        &m,
                        |b, &m| {
                            b.iter(|| {
                                matmul_with(isa, ty, &w, n, k, &x, m, &mut y).expect("valid shapes")
                            })
                        },
                    );
                }
                if m == 1 && i == 0 {
                    // Baseline: dequantize each row to f32 and dot it.
                    let row_bytes = w.len() / n;
                    let mut row = vec![0f32; k];
                    g.bench_function(BenchmarkId::new(format!("f32/k{k}n{n}"), "m1"), |b| {
                        b.iter(|| {
                            for (wr, o) in w.chunks_exact(row_bytes).zip(y.iter_mut()) {
                                dequantize(ty, wr, &mut row);
                                *o = row.iter().zip(&x).map(|(a, b)| a * b).sum();
                            }
                        })
                    });
                }
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = quant
}
criterion_main!(benches);
