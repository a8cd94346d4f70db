//! Every CUDA op against the CPU backend (the reference) on random inputs, on a GPU. Without a
//! GPU (no driver, the build-time stub driver, or no device) each test prints why and returns:
//! run them on a GPU machine with shared/tools/gpu-run.sh (docs/cuda.md).
#![cfg(feature = "cuda")]
mod common;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::DType;
use candor::backend::cpu::CpuBackend;
use candor::backend::cuda::kernels::Kernels;
use candor::backend::cuda::matvec::{MatvecInput, MatvecTarget};
use candor::backend::cuda::CudaBackend;
use candor_models::backend::{
    qkv_rope_write_kv, Activation, AttentionParams, Backend, KvCacheSpec, QkvHeads, RopeKvWrite,
    RopeSpec, RopeStyle, WeightDtype,
};
use candor_models::batch::SeqAttention;
use candor_models::projection::NormedInput;
use candor_models::weights::{HostWeight, SyntheticWeight};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The GPU backend computing in `act`, or None (with the reason printed) without a GPU.
fn gpu(act: DType) -> Option<CudaBackend> {
    common::gpu::gpus_or_skip().map(|_| CudaBackend::new(0, act).expect("open GPU 0"))
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn dense(data: Vec<f32>, shape: &[usize]) -> HostWeight {
    HostWeight::Dense {
        tensor: candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu).unwrap(),
        source: WeightDtype::F32,
    }
}

/// Largest |a - b| relative to the largest |b| (1 at least); infinite for a NaN.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    common::max_abs_diff(a, b) / scale
}

/// Tolerance of an op computed with activations in `act` against the f32 CPU reference.
fn tol(act: DType) -> f32 {
    match act {
        DType::F32 => 1e-4,
        _ => 2e-2,
    }
}

const ACTS: [DType; 2] = [DType::F32, DType::BF16];

fn norms<B: Backend>(b: &B, x: &[f32], r: &[f32], w: &[f32], dims: [usize; 2]) -> Vec<f32> {
    let xt = b.upload(x, &dims).unwrap();
    let rt = b.upload(r, &dims).unwrap();
    let wt = b.load_weight(dense(w.to_vec(), &[dims[1]])).unwrap();
    let mut out = b.download(&b.rms_norm(&xt, &wt, 1e-5).unwrap()).unwrap();
    let (sum, normed) = b.add_rms_norm(&xt, &rt, &wt, 1e-5).unwrap();
    out.extend(b.download(&sum).unwrap());
    out.extend(b.download(&normed).unwrap());
    out
}

#[test]
fn rms_norm_and_fused_add_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        for dims in [[3, 64], [5, 896], [2, 4096], [1, 1100]] {
            let n = dims[0] * dims[1];
            let (x, r, w) = (random(n, 1), random(n, 2), random(dims[1], 3));
            let d = rel_diff(&norms(&g, &x, &r, &w, dims), &norms(&cpu, &x, &r, &w, dims));
            assert!(d < tol(act), "{act:?} {dims:?}: {d}");
        }
    }
}

fn rope<B: Backend>(b: &B, x: &[f32], dims: [usize; 3], pos: &[u32], spec: &RopeSpec) -> Vec<f32> {
    let t = b.upload(x, &dims).unwrap();
    b.download(&b.rope(&t, pos, spec).unwrap()).unwrap()
}

#[test]
fn rope_both_pairings_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
            let d = 128;
            let spec = RopeSpec {
                inv_freq: (0..d / 2)
                    .map(|i| 1.0 / 500000f32.powf(2.0 * i as f32 / d as f32))
                    .collect(),
                style,
                mscale: 1.0,
            };
            let dims = [4, 8, d];
            let x = random(4 * 8 * d, 4);
            // Positions far into a long context, where the angle's precision matters.
            let pos = [0, 1, 4095, 131_000];
            let diff = rel_diff(
                &rope(&g, &x, dims, &pos, &spec),
                &rope(&cpu, &x, dims, &pos, &spec),
            );
            assert!(diff < tol(act), "{act:?} {style:?}: {diff}");
        }
    }
}

fn glu<B: Backend>(b: &B, gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    let (g, u) = (
        b.upload(gate, &[3, 1000]).unwrap(),
        b.upload(up, &[3, 1000]).unwrap(),
    );
    b.download(&b.glu(&g, &u, act).unwrap()).unwrap()
}

#[test]
fn glu_every_activation_matches_the_cpu() {
    let cpu = CpuBackend::new(2);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        let (gate, up) = (random(3 * 1000, 5), random(3 * 1000, 6));
        // Gate and up in [-10, 10) too: past the clamped SwiGLU's ±7 on both sides.
        let wide = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| 10.0 * x).collect() };
        let (gate_wide, up_wide) = (wide(&gate), wide(&up));
        for a in [
            Activation::Silu,
            Activation::GeluTanh,
            Activation::SwigluOai,
            Activation::GeluErf,
            Activation::Relu2,
            Activation::Relu,
        ] {
            for (gate, up) in [(&gate, &up), (&gate_wide, &up_wide)] {
                let d = rel_diff(&glu(&g, gate, up, a), &glu(&cpu, gate, up, a));
                assert!(d < tol(act), "{act:?} {a:?}: {d}");
            }
        }
    }
}

/// One attention case: sequences (q_len, start_pos), the layer's params.
struct AttnCase {
    seqs: Vec<(usize, usize)>,
    params: AttentionParams,
}

/// Fill the cache with every sequence's keys (the history and the new tokens) through
/// `kv_write`, then attend: the result of `paged_attention` for the new tokens.
fn attention<B: Backend>(b: &B, case: &AttnCase, block_size: usize) -> Vec<f32> {
    try_attention(b, case, block_size).unwrap()
}

/// `attention`, its error where `paged_attention` refuses the case.
fn try_attention<B: Backend>(
    b: &B,
    case: &AttnCase,
    block_size: usize,
) -> candor_models::error::Result<Vec<f32>> {
    let p = &case.params;
    let row = p.num_kv_heads * p.head_dim;
    let blocks_per_seq: Vec<usize> = case
        .seqs
        .iter()
        .map(|(q, s)| (q + s).div_ceil(block_size))
        .collect();
    let num_blocks: usize = blocks_per_seq.iter().sum::<usize>() + 1;
    let mut cache = b
        .alloc_kv_cache(&KvCacheSpec {
            num_layers: 2,
            num_blocks,
            block_size,
            num_kv_heads: p.num_kv_heads,
            head_dim: p.head_dim,
            key_offsets: vec![],
        })
        .unwrap();
    // Scattered, descending block ids so tables are not contiguous.
    let mut next_block = num_blocks;
    let mut metas = Vec::new();
    let mut q_start = 0;
    for (si, &(q_len, start)) in case.seqs.iter().enumerate() {
        let table: Vec<u32> = (0..blocks_per_seq[si])
            .map(|_| {
                next_block -= 1;
                next_block as u32
            })
            .collect();
        let ctx = start + q_len;
        let slots: Vec<u32> = (0..ctx)
            .map(|pos| table[pos / block_size] * block_size as u32 + (pos % block_size) as u32)
            .collect();
        let k = b.upload(
            &random(ctx * row, 100 + si as u64),
            &[ctx, p.num_kv_heads, p.head_dim],
        );
        let v = b.upload(
            &random(ctx * row, 200 + si as u64),
            &[ctx, p.num_kv_heads, p.head_dim],
        );
        b.kv_write(&mut cache, 1, &k.unwrap(), &v.unwrap(), &slots)
            .unwrap();
        metas.push(SeqAttention {
            q_start,
            q_len,
            start_pos: start,
            block_table: table,
        });
        q_start += q_len;
    }
    let q = b
        .upload(
            &random(q_start * p.num_heads * p.head_dim, 300),
            &[q_start, p.num_heads, p.head_dim],
        )
        .unwrap();
    let out = b.paged_attention(&q, &cache, 1, &metas, block_size, p)?;
    b.download(&out)
}

/// `p` with a sink per head, spread over [-1, 5): from below every score to the weight of
/// ~150 keys at the top score, so the sinks matter at short and long contexts alike.
fn with_sinks(p: AttentionParams, seed: u64) -> AttentionParams {
    let sinks: Vec<f32> = random(p.num_heads, seed)
        .iter()
        .map(|v| 2.0 + 3.0 * v)
        .collect();
    AttentionParams {
        sinks: Some(sinks.into()),
        ..p
    }
}

/// `p` with BLOOM's and MPT's ALiBi slopes (`2^(-8(h+1)/heads)` for a power of two): from a
/// few keys' reach on head 0 to nearly flat, so a wrong sign, distance or head shows.
fn with_alibi(p: AttentionParams) -> AttentionParams {
    let slopes = candor_models::alibi::Alibi::STANDARD.slopes(p.num_heads);
    AttentionParams {
        alibi: Some(slopes.into()),
        ..p
    }
}

#[test]
fn paged_attention_prefill_decode_window_gqa_softcap_sinks_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    let params = |heads, kv_heads, head_dim: usize, window, softcap| AttentionParams {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
        sliding_window: window,
        softcap,
        sinks: None,
        alibi: None,
    };
    let cases = [
        // A prefill chunk longer than a tile, mixed with a decode token deep in its context.
        AttnCase {
            seqs: vec![(150, 0), (1, 300)],
            params: params(8, 2, 64, None, None),
        },
        // Chunked prefill continuing after cached tokens; head_dim 128 (Llama/Qwen 7-8B).
        AttnCase {
            seqs: vec![(40, 77)],
            params: params(32, 8, 128, None, None),
        },
        // Sliding window and softcap (Gemma), head_dim 256.
        AttnCase {
            seqs: vec![(70, 10), (1, 200)],
            params: params(4, 1, 256, Some(32), Some(50.0)),
        },
        // Tile edges: a 64-row tile and a 1-row one (head_dim 128), then 33 rows after a
        // history that ends mid-block (head_dim 64, keys in 64-key steps).
        AttnCase {
            seqs: vec![(65, 3), (33, 45)],
            params: params(4, 2, 128, None, None),
        },
        AttnCase {
            seqs: vec![(33, 45)],
            params: params(2, 1, 64, Some(40), None),
        },
        // Many decode tokens (a batch of 8), multi-head without GQA.
        AttnCase {
            seqs: (0..8).map(|i| (1, 5 + 37 * i)).collect(),
            params: params(4, 4, 64, None, None),
        },
        // Long-context decode of few rows: keys cut into ranges and combined
        // (launch::attention_key_splits), one sequence and two of different lengths.
        AttnCase {
            seqs: vec![(1, 3000)],
            params: params(32, 8, 128, None, None),
        },
        AttnCase {
            seqs: vec![(1, 2500), (1, 700)],
            params: params(8, 2, 64, None, None),
        },
        // ... and with a window: ranges start at each row's first visible key.
        AttnCase {
            seqs: vec![(1, 4000)],
            params: params(4, 1, 256, Some(1024), Some(50.0)),
        },
        // Sinks (gpt-oss): on the tensor-core kernel (prompt chunks) and the simple one (the
        // decode token), with a window (gpt-oss's sliding layers, head_dim 64), and on key
        // ranges, where the sink joins the combination once.
        AttnCase {
            seqs: vec![(150, 0), (1, 300)],
            params: with_sinks(params(8, 2, 64, None, None), 40),
        },
        AttnCase {
            seqs: vec![(70, 10), (1, 200)],
            params: with_sinks(params(8, 1, 64, Some(32), None), 41),
        },
        AttnCase {
            seqs: vec![(65, 3), (33, 45)],
            params: with_sinks(params(4, 2, 128, None, None), 42),
        },
        AttnCase {
            seqs: vec![(1, 3000)],
            params: with_sinks(params(64, 8, 64, None, None), 43),
        },
        AttnCase {
            seqs: vec![(1, 2500), (1, 700)],
            params: with_sinks(params(8, 2, 256, Some(1024), Some(50.0)), 44),
        },
        // ALiBi (BLOOM, MPT): prompt tiles beside a decode token (GQA: the query head's slope),
        // tile edges after a history mid-block, key ranges of long decode rows (distances from
        // the row, not the range), and with a window, softcap and sinks at once.
        AttnCase {
            seqs: vec![(150, 0), (1, 300)],
            params: with_alibi(params(8, 2, 64, None, None)),
        },
        AttnCase {
            seqs: vec![(65, 3), (33, 45)],
            params: with_alibi(params(4, 2, 128, None, None)),
        },
        AttnCase {
            seqs: vec![(1, 2500), (1, 700)],
            params: with_alibi(params(32, 8, 128, None, None)),
        },
        AttnCase {
            seqs: vec![(70, 10), (1, 200)],
            params: with_alibi(with_sinks(params(8, 1, 256, Some(32), Some(50.0)), 46)),
        },
    ];
    // Half-precision caches run prompt chunks on the tensor-core kernel, and long decode rows
    // split their keys; each case also runs on the one-pass simple kernel alone, so every
    // kernel is checked on the same inputs.
    for act in [DType::F32, DType::BF16, DType::F16] {
        for fast in [true, false] {
            let Some(mut g) = gpu(act) else { return };
            g.set_fast_attention(fast);
            for (i, c) in cases.iter().enumerate() {
                let d = rel_diff(&attention(&g, c, 16), &attention(&cpu, c, 16));
                assert!(d < tol(act), "{act:?} case {i} (fast kernels {fast}): {d}");
            }
        }
    }
    // A sink count other than the heads' is an error, not a read past the array.
    let Some(g) = gpu(DType::BF16) else { return };
    let mut bad = with_sinks(params(8, 2, 64, None, None), 45);
    bad.sinks = bad.sinks.map(|s| s[..7].into());
    let case = AttnCase {
        seqs: vec![(20, 0)],
        params: bad,
    };
    assert!(try_attention(&g, &case, 16).is_err(), "7 sinks for 8 heads");
    // ... and so is an ALiBi slope count.
    let mut bad = with_alibi(params(8, 2, 64, None, None));
    bad.alibi = bad.alibi.map(|s| s[..7].into());
    let case = AttnCase {
        seqs: vec![(20, 0)],
        params: bad,
    };
    assert!(
        try_attention(&g, &case, 16).is_err(),
        "7 ALiBi slopes for 8 heads"
    );
}

fn linear<B: Backend>(b: &B, x: &[f32], w: HostWeight, bias: &[f32], dims: [usize; 2]) -> Vec<f32> {
    let n = bias.len();
    let xt = b.upload(x, &dims).unwrap();
    let wt = b.load_weight(w).unwrap();
    let bt = b.load_weight(dense(bias.to_vec(), &[n])).unwrap();
    b.download(&b.linear(&xt, &wt, Some(&bt)).unwrap()).unwrap()
}

#[test]
fn dense_and_quantized_linear_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    let (m, k, n) = (7, 512, 96);
    let x = random(m * k, 7);
    let w = random(n * k, 8);
    let bias = random(n, 9);
    let wt =
        || candle_core::Tensor::from_vec(w.clone(), (n, k), &candle_core::Device::Cpu).unwrap();
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        let d = rel_diff(
            &linear(&g, &x, dense(w.clone(), &[n, k]), &bias, [m, k]),
            &linear(&cpu, &x, dense(w.clone(), &[n, k]), &bias, [m, k]),
        );
        assert!(d < tol(act), "dense {act:?}: {d}");
        // Quantized weights: both sides quantize the activations to 8 bits their own way.
        let types = [
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q4_1,
            GgmlDType::Q5_1,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
        ];
        for ty in types {
            let q = || HostWeight::Quant(QTensor::quantize(&wt(), ty).unwrap());
            let d = rel_diff(
                &linear(&g, &x, q(), &bias, [m, k]),
                &linear(&cpu, &x, q(), &bias, [m, k]),
            );
            assert!(d < 3e-2, "{ty:?} {act:?}: {d}");
        }
    }
}

/// The IQ blocks (IQ4_NL / IQ4_XS and the lattice types, which candle lacks) reach the GPU as
/// Q8_0 blocks (`weights::iq::to_q8_0`) and give the CPU kernels' products of the blocks
/// themselves.
#[test]
fn iq_linear_matches_the_cpu_kernels() {
    use candor_kernels::quant::{filler_blocks, iq_grid::GRID_TYPES, QuantType};
    use candor_models::weights::{BlockType, MappedBlocks};
    let cpu = CpuBackend::new(2);
    let (m, k, n) = (5, 512, 40);
    let x = random(m * k, 31);
    let bias = random(n, 32);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        let grid = GRID_TYPES.map(|t| (t, BlockType::Grid(t)));
        let iq4 = [
            (QuantType::Iq4Nl, BlockType::Iq4Nl),
            (QuantType::Iq4Xs, BlockType::Iq4Xs),
        ];
        for (ty, block) in iq4.into_iter().chain(grid) {
            let blocks = filler_blocks(ty, n * k / ty.block_elems(), 33, 0.01);
            let w = || HostWeight::Mapped(MappedBlocks::owned(&blocks, block, vec![n, k]).unwrap());
            let d = rel_diff(
                &linear(&g, &x, w(), &bias, [m, k]),
                &linear(&cpu, &x, w(), &bias, [m, k]),
            );
            assert!(d < 3e-2, "{ty:?} {act:?}: {d}");
        }
    }
}

/// gpt-oss's MXFP4 experts kept as their blocks on the GPU: read directly for decode's few rows
/// (1 to 8, each instance), expanded for cuBLAS beyond; against the CPU multiplying the same
/// values as dense f32 weights (the blocks' values are exact in f32).
#[test]
fn mxfp4_linear_matches_the_cpu_on_the_values_of_its_blocks() {
    use candor_models::weights::{mxfp4, BlockType, MappedBlocks};
    let cpu = CpuBackend::new(2);
    let (n, k) = (67, 512);
    let blocks = mxfp4::quantize_ggml(&random(n * k, 21));
    let values = mxfp4::dequantize_ggml(&blocks);
    let mapped =
        || HostWeight::Mapped(MappedBlocks::owned(&blocks, BlockType::Mxfp4, vec![n, k]).unwrap());
    let bias = random(n, 22);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        for m in [1, 3, 8, 24] {
            let x = random(m * k, 23 + m as u64);
            let d = rel_diff(
                &linear(&g, &x, mapped(), &bias, [m, k]),
                &linear(&cpu, &x, dense(values.clone(), &[n, k]), &bias, [m, k]),
            );
            assert!(d < tol(act), "MXFP4 {act:?}, {m} rows: {d}");
        }
    }
}

#[test]
fn embedding_gather_softmax_softcap_argmax_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    let (vocab, hidden) = (300, 256);
    let table = random(vocab * hidden, 10);
    let ids = [0u32, 299, 17, 17];
    let wt = || {
        candle_core::Tensor::from_vec(table.clone(), (vocab, hidden), &candle_core::Device::Cpu)
            .unwrap()
    };
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        fn run<B: Backend>(b: &B, table: HostWeight, ids: &[u32]) -> (Vec<f32>, Vec<u32>) {
            let t = b.load_weight(table).unwrap();
            let e = b.embedding(&t, ids).unwrap();
            let rows = b.gather_rows(&e, &[3, 1]).unwrap();
            let mut out = b.download(&b.softmax(&rows).unwrap()).unwrap();
            out.extend(
                b.download(&b.softcap(&b.scale(&rows, 40.0).unwrap(), 30.0).unwrap())
                    .unwrap(),
            );
            (out, b.argmax(&e).unwrap())
        }
        let (a, am) = run(&g, dense(table.clone(), &[vocab, hidden]), &ids);
        let (c, cm) = run(&cpu, dense(table.clone(), &[vocab, hidden]), &ids);
        assert!(rel_diff(&a, &c) < tol(act), "{act:?}");
        if act == DType::F32 {
            assert_eq!(am, cm);
        }
        let q = || HostWeight::Quant(QTensor::quantize(&wt(), GgmlDType::Q8_0).unwrap());
        let (a, _) = run(&g, q(), &ids);
        let (c, _) = run(&cpu, q(), &ids);
        assert!(rel_diff(&a, &c) < tol(act), "Q8_0 embedding {act:?}");
        let e = g.embedding(
            &g.load_weight(dense(table.clone(), &[vocab, hidden]))
                .unwrap(),
            &[300],
        );
        assert!(e.is_err(), "a token past the table is an error");
    }
}

/// BitNet's per-token quantization of the products' inputs (candle's ops on the device): the
/// host's grid, the largest magnitude of each row on ±127 steps (a zero row stays zeros).
#[test]
fn quantized_rows_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    let Some(g) = gpu(DType::F32) else { return };
    let mut x = random(4 * 256, 11);
    x[3 * 256..].fill(0.0);
    fn run<B: Backend>(b: &B, x: &[f32]) -> Vec<f32> {
        let t = b.upload(x, &[4, 256]).unwrap();
        b.download(&b.quantize_rows(&t, 8).unwrap()).unwrap()
    }
    let (a, c) = (run(&g, &x), run(&cpu, &x));
    assert!(rel_diff(&a, &c) < 1e-5, "{}", rel_diff(&a, &c));
    assert!(c[3 * 256..].iter().all(|&v| v == 0.0));
}

#[test]
fn synthetic_weights_are_the_same_on_both_devices() {
    let cpu = CpuBackend::new(2);
    let Some(g) = gpu(DType::F32) else { return };
    for dtype in [WeightDtype::F32, WeightDtype::BF16] {
        let w = SyntheticWeight {
            shape: vec![33, 100],
            dtype,
            seed: 1234,
            lo: -0.5,
            hi: 0.25,
        };
        // Through embedding: every row, as f32.
        let ids: Vec<u32> = (0..33).collect();
        let a = g
            .download(
                &g.embedding(
                    &g.load_weight(HostWeight::Synthetic(w.clone())).unwrap(),
                    &ids,
                )
                .unwrap(),
            )
            .unwrap();
        let c = cpu
            .download(
                &cpu.embedding(
                    &cpu.load_weight(HostWeight::Synthetic(w.clone())).unwrap(),
                    &ids,
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(a, c, "{dtype:?}");
    }
}

/// A joined q/k/v and gate/up as the decoder runs them: the members are views of the joined
/// products' heads and halves, which RoPE, the KV write and GLU read in place (row strides).
/// Returns RoPE'd q, the attention over the written cache, and the GLU output.
/// With `fused`, RoPE and the KV write go through `rope_qk_write_kv` (one launch on the GPU).
fn joined_projections<B: Backend>(b: &B, tokens: usize, fused: bool) -> Vec<f32> {
    let (heads, kv_heads, d, hidden, ffn) = (4, 2, 32, 64, 96);
    let x = b
        .upload(&random(tokens * hidden, 11), &[tokens, hidden])
        .unwrap();
    let weight = |rows: usize, seed: u64| {
        b.load_weight(dense(random(rows * hidden, seed), &[rows, hidden]))
            .unwrap()
    };
    let (wq, wk, wv) = (
        weight(heads * d, 12),
        weight(kv_heads * d, 13),
        weight(kv_heads * d, 14),
    );
    let qkv = b
        .concat_weights(&[&wq, &wk, &wv])
        .unwrap()
        .expect("dense weights join");
    let y = b.linear(&x, &qkv, None).unwrap();
    let y = b.reshape(&y, &[tokens, heads + 2 * kv_heads, d]).unwrap();
    let [q, k, v]: [_; 3] = b
        .split(&y, &[heads, kv_heads, kv_heads])
        .unwrap()
        .try_into()
        .unwrap();
    let spec = RopeSpec {
        inv_freq: (0..d / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
            .collect(),
        style: RopeStyle::Neox,
        mscale: 1.0,
    };
    let pos: Vec<u32> = (0..tokens as u32).collect();
    let block_size = 16;
    let mut cache = b
        .alloc_kv_cache(&KvCacheSpec {
            num_layers: 1,
            num_blocks: tokens.div_ceil(block_size),
            block_size,
            num_kv_heads: kv_heads,
            head_dim: d,
            key_offsets: vec![],
        })
        .unwrap();
    let q = if fused {
        let kv = RopeKvWrite {
            positions: &pos,
            rope: &spec,
            cache: &mut cache,
            layer: 0,
            slots: &pos,
        };
        b.rope_qk_write_kv(&q, &k, &v, kv).unwrap()
    } else {
        let k = b.rope(&k, &pos, &spec).unwrap();
        b.kv_write(&mut cache, 0, &k, &v, &pos).unwrap();
        b.rope(&q, &pos, &spec).unwrap()
    };
    let heads = QkvHeads {
        heads,
        kv_heads,
        head_dim: d,
    };
    let block_table = (0..tokens.div_ceil(block_size) as u32).collect();
    let attn = attend_one_sequence(b, &q, &cache, heads, block_table, block_size);
    let gate_up = b
        .concat_weights(&[&weight(ffn, 15), &weight(ffn, 16)])
        .unwrap()
        .expect("dense weights join");
    let h = b.linear(&x, &gate_up, None).unwrap();
    let [gate, up]: [_; 2] = b.split(&h, &[ffn, ffn]).unwrap().try_into().unwrap();
    let m = b.glu(&gate, &up, Activation::Silu).unwrap();
    downloads(b, &[&q, &attn, &m])
}

/// Causal attention of `q` (`[tokens, heads, head_dim]`), one sequence from position 0, over
/// layer 0 of `cache` through `block_table`.
fn attend_one_sequence<B: Backend>(
    b: &B,
    q: &B::Tensor,
    cache: &B::KvCache,
    heads: QkvHeads,
    block_table: Vec<u32>,
    block_size: usize,
) -> B::Tensor {
    let params = AttentionParams {
        num_heads: heads.heads,
        num_kv_heads: heads.kv_heads,
        head_dim: heads.head_dim,
        scale: 1.0 / (heads.head_dim as f32).sqrt(),
        sliding_window: None,
        softcap: None,
        sinks: None,
        alibi: None,
    };
    let seq = SeqAttention {
        q_start: 0,
        q_len: b.shape(q)[0],
        start_pos: 0,
        block_table,
    };
    b.paged_attention(q, cache, 0, &[seq], block_size, &params)
        .unwrap()
}

/// `tensors` on the host, end to end.
fn downloads<B: Backend>(b: &B, tensors: &[&B::Tensor]) -> Vec<f32> {
    tensors
        .iter()
        .flat_map(|t| b.download(t).unwrap())
        .collect()
}

#[test]
fn joined_projections_read_in_place_match_the_cpu() {
    let cpu = CpuBackend::new(2);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        // One token (the views are contiguous) and several (rows at the joined stride).
        for tokens in [1, 7, 40] {
            for fused in [false, true] {
                let d = rel_diff(
                    &joined_projections(&g, tokens, fused),
                    &joined_projections(&cpu, tokens, false),
                );
                assert!(d < tol(act), "{act:?}, {tokens} tokens, fused {fused}: {d}");
            }
        }
    }
}

#[test]
fn argmax_picks_the_first_of_equal_values_like_the_cpu() {
    let cpu = CpuBackend::new(2);
    // Rows of a real vocabulary's width, of values exact in bf16 (eighths in [-8, 8)), so ties
    // survive the cast. Row 0: the maximum at a high index first seen by a low thread (1030:
    // thread 6 of 1024) and again at a lower index (70). Row 1: a NaN before the maximum.
    // Row 2: its maximum, 7.875, many times.
    let cols = 151_936;
    let mut rows: Vec<f32> = (0..3 * cols)
        .map(|i| ((i * 7919) % 128) as f32 / 8.0 - 8.0)
        .collect();
    rows[70] = 20.0;
    rows[1030] = 20.0;
    rows[cols + 5] = f32::NAN;
    rows[cols + 9] = 30.0;
    let on_cpu = cpu.argmax(&cpu.upload(&rows, &[3, cols]).unwrap()).unwrap();
    assert_eq!(&on_cpu[..2], &[70, 9]);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        let on_gpu = g.argmax(&g.upload(&rows, &[3, cols]).unwrap()).unwrap();
        assert_eq!(on_gpu, on_cpu, "{act:?}");
    }
}

/// What a decode product reads: x as it is, the GLU of x and up, or the RMSNorm of x (with the
/// residual add when `residual`).
#[derive(Debug, Clone, Copy)]
enum Input {
    Rows,
    Glu(Activation),
    RmsNorm { residual: bool },
}

/// A product of decode rows on the GPU in `act`, by matvec.cu (None where it declines) and by
/// our GLU or RMSNorm kernel then cuBLAS, from the same rounded inputs; x (and up) are `rows`
/// rows of a wider tensor when `padded`. With a residual, also both sums (x + residual), which
/// must be equal.
fn decode_product(
    (kernels, dev): (&Kernels, &candle_core::Device),
    act: DType,
    (rows, n, k): (usize, usize, usize),
    (padded, kind): (bool, Input),
    seed: u64,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let on_gpu = |data: Vec<f32>, shape: &[usize]| {
        candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)
            .and_then(|t| t.to_device(dev))
            .and_then(|t| t.to_dtype(act))
            .unwrap()
    };
    // A joined gate/up product when `padded`: x and up are its halves, rows 2k apart.
    let width = if padded { 2 * k } else { k };
    let wide = on_gpu(random(rows * width, seed), &[rows, width]);
    let x = wide.narrow(1, 0, k).unwrap();
    let up = if padded {
        wide.narrow(1, k, k).unwrap()
    } else {
        on_gpu(random(rows * k, seed + 3), &[rows, k])
    };
    let residual = on_gpu(random(rows * k, seed + 4), &[rows, k]);
    let norm = on_gpu(random(k, seed + 5), &[k]);
    let w = on_gpu(random(n * k, seed + 1), &[n, k]);
    let b = on_gpu(random(n, seed + 2), &[n]);
    let download = |y: &candle_core::Tensor| -> Vec<f32> {
        y.to_dtype(DType::F32)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1())
            .unwrap()
    };
    let eps = 1e-5;
    let (input, reference_x, bias, reference_sum) = match kind {
        Input::Rows => (MatvecInput::Rows(&x), x.clone(), Some(&b), None),
        Input::Glu(act) => (
            MatvecInput::Glu {
                gate: &x,
                up: &up,
                act,
            },
            kernels.glu(&x, &up, act).unwrap(),
            None,
            None,
        ),
        Input::RmsNorm { residual: add } => {
            let residual = add.then_some(&residual);
            let (sum, normed) = kernels.rms_norm(&x, residual, &norm, eps).unwrap();
            let input = MatvecInput::RmsNorm {
                x: &x,
                residual,
                weight: &norm,
                eps,
            };
            (input, normed, Some(&b), sum)
        }
    };
    let fast = kernels
        .matvec(input, &w, bias, MatvecTarget::Rows)
        .unwrap()
        .map(|out| {
            let sums = (
                out.sum.as_ref().map(download),
                reference_sum.as_ref().map(download),
            );
            assert_eq!(sums.0, sums.1, "{kind:?}: the sums x + residual differ");
            download(&out.y)
        });
    let mut cublas = reference_x.matmul(&w.t().unwrap()).unwrap();
    if let Some(b) = bias {
        cublas = cublas.broadcast_add(b).unwrap();
    }
    (fast, download(&cublas))
}

#[test]
fn decode_products_match_cublas_and_the_cpu() {
    let Some(gpus) = common::gpu::gpus_or_skip() else {
        return;
    };
    let (major, minor) = gpus[0].compute_capability;
    let dev = candle_core::Device::new_cuda(0).expect("open GPU 0");
    let cuda = dev.as_cuda_device().expect("a CUDA device").clone();
    let kernels = Kernels::new(cuda, major, minor).expect("kernels for GPU 0");
    let on = (&kernels, &dev);
    // Llama-8B's joined q/k/v at batch 1; columns past the last warp's and a last sweep of one
    // busy lane; every row count (on the 1, 2, 4 and 8-row instances); then more rows than the
    // kernel takes.
    let shapes = [
        (1, 6144, 4096),
        (1, 37, 264),
        (2, 300, 72),
        (3, 37, 264),
        (4, 128, 896),
        (5, 1001, 128),
        (6, 40, 512),
        (7, 96, 520),
        (8, 96, 512),
    ];
    let inputs = [
        Input::Rows,
        Input::Glu(Activation::Silu),
        Input::Glu(Activation::GeluTanh),
        Input::Glu(Activation::SwigluOai),
        Input::Glu(Activation::GeluErf),
        Input::Glu(Activation::Relu2),
        Input::Glu(Activation::Relu),
        Input::RmsNorm { residual: false },
        Input::RmsNorm { residual: true },
    ];
    for act in [DType::F16, DType::BF16] {
        for (i, &shape) in shapes.iter().enumerate() {
            for padded in [false, true] {
                for kind in inputs {
                    let (fast, cublas) = decode_product(on, act, shape, (padded, kind), i as u64);
                    let what = format!("{act:?} {shape:?} padded {padded} {kind:?}");
                    if matches!(kind, Input::RmsNorm { .. }) && shape.0 > 2 {
                        assert!(fast.is_none(), "{what}: the norm kernel first, from 3 rows");
                        continue;
                    }
                    let fast = fast.unwrap_or_else(|| panic!("{what}: declined"));
                    let d = rel_diff(&fast, &cublas);
                    assert!(d < tol(act), "{what}: {d}");
                }
            }
        }
        let (fast, _) = decode_product(on, act, (9, 96, 512), (false, Input::Rows), 0);
        assert!(fast.is_none(), "9 rows: cuBLAS");
    }
    let (fast, _) = decode_product(on, DType::F32, (1, 96, 512), (false, Input::Rows), 0);
    assert!(fast.is_none(), "f32: cuBLAS");
    // Through the backend, the bf16 model path against the CPU, both switched on and off.
    let cpu = CpuBackend::new(2);
    let (m, k, n) = (1, 512, 96);
    let (x, w, bias) = (random(m * k, 21), random(n * k, 22), random(n, 23));
    let want = linear(&cpu, &x, dense(w.clone(), &[n, k]), &bias, [m, k]);
    let mut g = gpu(DType::BF16).expect("a GPU");
    for fast in [true, false] {
        g.set_fast_matvec(fast);
        let got = linear(&g, &x, dense(w.clone(), &[n, k]), &bias, [m, k]);
        assert!(rel_diff(&got, &want) < tol(DType::BF16), "fast {fast}");
    }
}

/// One case of a layer's attention input: the tokens (rows), the RoPE pairing, whether the
/// q/k/v product has a bias (qwen2) and the norm a residual to add first (every layer but the
/// first).
#[derive(Clone, Copy, Debug)]
struct AttentionInputCase {
    tokens: usize,
    style: RopeStyle,
    bias: bool,
    residual: bool,
}

/// A layer's attention input from the residual stream, as one op (`one_op`:
/// `rms_norm_qkv_rope_write_kv`, on the GPU at decode one matvec.cu launch) or as its parts
/// (`rms_norm_linear`, then RoPE and the KV write on views of the product's heads). Returns
/// the rotated q, then the attention over the cache written (the keys at scattered slots:
/// the sequence's block table runs backwards), then the residual stream's next value.
fn attention_input<B: Backend>(b: &B, case: AttentionInputCase, one_op: bool) -> Vec<f32> {
    let AttentionInputCase {
        tokens,
        style,
        bias,
        residual,
    } = case;
    let heads = QkvHeads {
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
    };
    let (hidden, block_size) = (256, 16);
    let x = b
        .upload(&random(tokens * hidden, 31), &[tokens, hidden])
        .unwrap();
    let r = b
        .upload(&random(tokens * hidden, 32), &[tokens, hidden])
        .unwrap();
    let gains: Vec<f32> = random(hidden, 33).iter().map(|v| 1.0 + 0.5 * v).collect();
    let norm = b.load_weight(dense(gains, &[hidden])).unwrap();
    let member = |rows: usize, seed: u64| {
        let w = b
            .load_weight(dense(random(rows * hidden, seed), &[rows, hidden]))
            .unwrap();
        let bias = b
            .load_weight(dense(random(rows, seed + 10), &[rows]))
            .unwrap();
        (w, bias)
    };
    let [q_width, kv_width, _] = heads.widths();
    let (q, k, v) = (
        member(q_width, 34),
        member(kv_width, 35),
        member(kv_width, 36),
    );
    let joined = |parts: [&B::Weight; 3]| b.concat_weights(&parts).unwrap().expect("dense joins");
    let w = joined([&q.0, &k.0, &v.0]);
    let bias = bias.then(|| joined([&q.1, &k.1, &v.1]));
    let spec = RopeSpec {
        inv_freq: (0..heads.head_dim / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / heads.head_dim as f32))
            .collect(),
        style,
        mscale: 1.0,
    };
    let num_blocks = tokens.div_ceil(block_size) + 1;
    let mut cache = b
        .alloc_kv_cache(&KvCacheSpec {
            num_layers: 1,
            num_blocks,
            block_size,
            num_kv_heads: heads.kv_heads,
            head_dim: heads.head_dim,
            key_offsets: vec![],
        })
        .unwrap();
    let block_table: Vec<u32> = (0..num_blocks as u32).rev().collect();
    let slots: Vec<u32> = (0..tokens)
        .map(|i| block_table[i / block_size] * block_size as u32 + (i % block_size) as u32)
        .collect();
    // Far past 2π: the angle's double precision matters.
    let positions: Vec<u32> = (0..tokens as u32).map(|i| 5000 + 7 * i).collect();
    let input = NormedInput {
        x: &x,
        residual: residual.then_some(&r),
        norm: &norm,
        eps: 1e-5,
    };
    let kv = RopeKvWrite {
        positions: &positions,
        rope: &spec,
        cache: &mut cache,
        layer: 0,
        slots: &slots,
    };
    let (stream, q) = if one_op {
        b.rms_norm_qkv_rope_write_kv(input, &w, bias.as_ref(), heads, kv)
            .unwrap()
    } else {
        let (stream, y) = b.rms_norm_linear(input, &w, bias.as_ref()).unwrap();
        (stream, qkv_rope_write_kv(b, &y, heads, kv).unwrap())
    };
    let attn = attend_one_sequence(b, &q, &cache, heads, block_table, block_size);
    downloads(b, &[&q, &attn, &stream])
}

#[test]
fn the_attention_input_in_one_op_is_its_parts_and_matches_the_cpu() {
    let cpu = CpuBackend::new(2);
    for act in [DType::BF16, DType::F16, DType::F32] {
        let Some(mut g) = gpu(act) else { return };
        // Every row count matvec.cu takes (the norm inside the product up to 2 rows, before it
        // from 3), then more (cuBLAS and rope_kv_write.cu).
        for tokens in 1..=9 {
            for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
                for (bias, residual) in [(false, false), (true, true), (tokens % 2 == 0, false)] {
                    let case = AttentionInputCase {
                        tokens,
                        style,
                        bias,
                        residual,
                    };
                    let want = attention_input(&cpu, case, false);
                    for fast in [true, false] {
                        g.set_fast_matvec(fast);
                        let one = attention_input(&g, case, true);
                        let parts = attention_input(&g, case, false);
                        // RoPE of the product's values as rounded, slot for slot: the same bits.
                        assert_eq!(one, parts, "{act:?} {case:?} fast {fast}: one op vs parts");
                        let d = rel_diff(&one, &want);
                        assert!(
                            d < tol(act),
                            "{act:?} {case:?} fast {fast}: {d} from the CPU"
                        );
                    }
                }
            }
        }
    }
}

/// KV rows read from the GPU's cache are the CPU cache's bytes for the same writes (f32), and
/// rows written back to other slots read back the same (every activation dtype): what a saved
/// prompt cache moves.
/// A cache of `spec` (2 KV heads of 8) with random keys and values (from `seed`) written at
/// `slots` in every layer.
fn filled_cache<B: Backend>(b: &B, spec: &KvCacheSpec, slots: &[u32], seed: u64) -> B::KvCache {
    let mut cache = b.alloc_kv_cache(spec).unwrap();
    let n = slots.len();
    for layer in 0..spec.num_layers {
        let seed = seed + layer as u64;
        let k = b.upload(&random(n * 16, seed), &[n, 2, 8]).unwrap();
        let v = b.upload(&random(n * 16, seed + 10), &[n, 2, 8]).unwrap();
        b.kv_write(&mut cache, layer, &k, &v, slots).unwrap();
    }
    cache
}

#[test]
fn kv_rows_read_and_written_back_match_the_cpu() {
    let spec = KvCacheSpec {
        num_layers: 2,
        num_blocks: 4,
        block_size: 4,
        num_kv_heads: 2,
        head_dim: 8,
        key_offsets: vec![],
    };
    fn written<B: Backend>(
        b: &B,
        spec: &KvCacheSpec,
    ) -> (B::KvCache, candor_models::kv_rows::KvRows) {
        let slots = [3u32, 4, 5, 9];
        let cache = filled_cache(b, spec, &slots, 40);
        let rows = b.read_kv_rows(&cache, &slots).unwrap();
        (cache, rows)
    }
    for act in ACTS {
        let Some(gpu) = gpu(act) else { return };
        let (mut cache, rows) = written(&gpu, &spec);
        assert_eq!(rows.rows(), 4);
        if act == DType::F32 {
            let (_, cpu_rows) = written(&CpuBackend::new(2), &spec);
            assert_eq!(rows, cpu_rows, "the same bytes as the CPU's f32 cache");
        }
        gpu.write_kv_rows(&mut cache, &[12, 13, 0, 15], &rows)
            .unwrap();
        assert_eq!(
            gpu.read_kv_rows(&cache, &[12, 13, 0, 15]).unwrap(),
            rows,
            "{act:?}"
        );
        assert!(gpu
            .write_kv_rows(&mut cache, &[12, 13, 0, 16], &rows)
            .is_err());
    }
}

/// LFM2's short convolution on the device (short_conv.cu) against the CPU's, and against the
/// default path on the same GPU (rows read back, convolved on the host): 56 channels in rows of
/// 16 (four pieces over two cache layers, the last piece partly used), taps before the
/// sequences' starts, a bias. A tap past the rows is refused.
#[test]
fn short_convolution_over_the_cache_matches_the_cpu() {
    use candor_kernels::conv::NO_ROW;
    use candor_models::short_conv::{short_conv_via_rows, ConvTaps, ShortConvWeights};
    let spec = KvCacheSpec {
        num_layers: 3,
        num_blocks: 4,
        block_size: 4,
        num_kv_heads: 2,
        head_dim: 8,
        key_offsets: vec![],
    };
    let (width, kernel) = (56, 3);
    let weights = ShortConvWeights {
        weight: random(kernel * width, 60).into(),
        bias: Some(random(width, 61).into()),
        width,
    };
    // Two sequences: 3 new tokens from position 0; 2 new tokens after 2 cached ones.
    let slots = [5u32, 6, 7, 12, 13, 14, 15];
    let index = [
        NO_ROW, NO_ROW, 0, NO_ROW, 0, 1, 0, 1, 2, // sequence 1
        3, 4, 5, 4, 5, 6, // sequence 2
    ];
    fn conv<B: Backend>(
        b: &B,
        spec: &KvCacheSpec,
        slots: &[u32],
        index: &[u32],
        w: &ShortConvWeights,
        default_path: bool,
    ) -> Vec<f32> {
        let cache = filled_cache(b, spec, slots, 70);
        let taps = ConvTaps {
            first_layer: 1,
            layers: 2,
            slots,
            index,
        };
        let out = match default_path {
            true => short_conv_via_rows(b, &cache, &taps, w).unwrap(),
            false => b.short_conv(&cache, &taps, w).unwrap(),
        };
        assert_eq!(b.shape(&out), [5, 56]);
        b.download(&out).unwrap()
    }
    let cpu = conv(&CpuBackend::new(2), &spec, &slots, &index, &weights, false);
    for act in ACTS {
        let Some(g) = gpu(act) else { return };
        let on_device = conv(&g, &spec, &slots, &index, &weights, false);
        let d = rel_diff(&on_device, &cpu);
        assert!(d < tol(act), "{act:?}: {d}");
        if act == DType::F32 {
            let via_rows = conv(&g, &spec, &slots, &index, &weights, true);
            assert_eq!(on_device, via_rows, "the host kernel's bits");
        }
        let cache = g.alloc_kv_cache(&spec).unwrap();
        let bad = ConvTaps {
            first_layer: 1,
            layers: 2,
            slots: &slots,
            index: &[0, 1, 7],
        };
        assert!(g.short_conv(&cache, &bad, &weights).is_err());
    }
}
