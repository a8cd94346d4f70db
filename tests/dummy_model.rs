//! `--load-format dummy` on the CPU: the tiny shapes load through the decoder (every tensor the
//! table lists is the one the decoder asks for), run, and are reproducible from their seed.
use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor_models::backend::WeightDtype;
use candor_models::dummy::{find, open_dummy};
use candor_models::{Batch, LogitsWanted, SeqInput};

fn logits(arch: &str, dtype: WeightDtype, seed: u64) -> Vec<f32> {
    forward(&open_dummy(find(arch, "tiny").unwrap(), dtype, seed).unwrap())
}

/// The logits of 20 tokens through `opened` on a CPU runner.
fn forward(opened: &candor_models::loader::OpenedModel) -> Vec<f32> {
    let kv = KvCacheDtype::Auto.resolve(opened, false).unwrap();
    let mut r = cpu_runner(opened, 2, 256, kv).unwrap();
    let batch = Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: (0..20).map(|i| i * 11 % 256).collect(),
            start_pos: 0,
            block_table: vec![0, 1],
            logits: LogitsWanted::All,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    r.forward(&batch).unwrap().data
}

#[test]
fn tiny_dummy_models_run_and_are_reproducible() {
    // The mixtures of experts too: Qwen3-MoE's softmax experts, DeepSeek's latent attention
    // with grouped sigmoid routing and a shared expert; Command R7B's parallel LayerNorm blocks
    // and Phi-2's biased ones (an ungated MLP, a head with a bias, part of each head rotated),
    // GPT-NeoX's with a norm each for attention and the MLP (the exact GELU), StableLM's
    // SwiGLU under LayerNorms, Nemotron's squared ReLU, GPT-2's learned positions, Falcon's
    // multi-query parallel blocks, Command R+'s per-head q/k norms, StarCoder's multi-query
    // GPT-2 blocks, ERNIE 4.5's experts chosen through a correction bias, AFM's ungated
    // squared ReLU under RMSNorms, Hunyuan-A13B's experts beside a shared one, dots.llm1's
    // sigmoid-routed experts under Qwen3's attention, BitNet's sub-norms over 8-bit
    // activations, Phi-3.5-MoE's sparsemixer-routed experts under biased LayerNorms, Llama 4's
    // chunked attention over one routed expert and a shared one, BLOOM's and MPT's ALiBi (BLOOM's
    // embeddings LayerNorm).
    for arch in [
        "command-r",
        "llama",
        "qwen2",
        "qwen3-moe",
        "deepseek",
        "cohere2",
        "phi2",
        "gptneox",
        "stablelm",
        "nemotron",
        "gpt2",
        "opt",
        "falcon",
        "starcoder",
        "starcoder2",
        "ernie4_5-moe",
        "arcee",
        "hunyuan-moe",
        "dots1",
        "bitnet",
        "phimoe",
        "llama4",
        "bloom",
        "mpt",
    ] {
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

/// Logits of a tiny dummy model on a CPU backend that joins (or keeps apart) its q/k/v and
/// gate/up weights, with the number of groups it joined.
fn logits_with(arch: &str, dtype: WeightDtype, join: bool) -> (Vec<f32>, usize) {
    use candor::backend::cpu::CpuBackend;
    use candor::engine::{ModelRunner, Runner};
    use candor_models::DecoderModel;
    let opened = open_dummy(find(arch, "tiny").unwrap(), dtype, 3).unwrap();
    let backend = CpuBackend::new(2).with_joined_projections(join);
    let model = DecoderModel::load(&backend, opened.spec.clone(), opened.source.as_ref()).unwrap();
    let joined = model.joined_projection_groups();
    let mut r = ModelRunner::new(backend, model, 16, 16).unwrap();
    // Two sequences (several rows each, so split columns are strided views) in one batch.
    let batch = Batch {
        seqs: vec![
            SeqInput {
                state_slot: 0,
                tokens: (0..20).map(|i| i * 7 % 256).collect(),
                start_pos: 0,
                block_table: vec![0, 1],
                logits: LogitsWanted::All,
                lora: candor_models::lora::LoraMix::BASE,
            },
            SeqInput {
                state_slot: 0,
                tokens: (0..5).map(|i| i * 13 % 256).collect(),
                start_pos: 0,
                block_table: vec![2],
                logits: LogitsWanted::All,
                lora: candor_models::lora::LoraMix::BASE,
            },
        ],
    };
    (r.forward(&batch).unwrap().data, joined)
}

#[test]
fn joined_projections_give_the_logits_of_separate_ones() {
    // llama: q/k/v without bias; qwen2: with biases, joined too.
    for arch in ["llama", "qwen2"] {
        let layers = find(arch, "tiny").unwrap().spec().unwrap().num_layers;
        for dtype in [WeightDtype::F32, WeightDtype::BF16] {
            let (apart, none) = logits_with(arch, dtype, false);
            let (joined, groups) = logits_with(arch, dtype, true);
            assert_eq!(none, 0, "{arch} {dtype}");
            assert_eq!(
                groups,
                2 * layers,
                "{arch} {dtype}: every layer joins both groups"
            );
            let scale = apart.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = apart
                .iter()
                .zip(&joined)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5 * scale, "{arch} {dtype}: {worst} of {scale}");
        }
    }
}

/// gpt-oss as it is published: the experts' matrices as MXFP4 blocks (read in place by the CPU
/// kernels), the rest bf16. The tiny shapes run, reproducibly, in less memory than all-bf16
/// takes; a model without experts is refused.
#[test]
fn dummy_mxfp4_experts_run_from_blocks() {
    use candor_models::dummy::{DummySource, DummyWeights};
    use candor_models::weights::{BlockType, HostWeight};
    let shape = find("gpt-oss", "tiny").unwrap();
    let run = |seed: u64| {
        let opened = open_dummy(shape, DummyWeights::Mxfp4Experts, seed).unwrap();
        let Ok(Some(HostWeight::Mapped(up))) = opened.source.get("blk.0.ffn_up_exps.1.weight")
        else {
            panic!("the experts are not MXFP4 blocks");
        };
        assert_eq!(up.dtype, BlockType::Mxfp4);
        forward(&opened)
    };
    let a = run(1);
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, run(1), "same seed");
    assert_ne!(a, run(2), "other seed");
    let spec = shape.spec().unwrap();
    let bytes =
        |w: DummyWeights| DummySource::new(&spec, shape.tied_embeddings(), w, 0).stored_bytes();
    assert!(bytes(DummyWeights::Mxfp4Experts) < bytes(WeightDtype::BF16.into()));
    assert!(open_dummy(
        find("llama", "tiny").unwrap(),
        DummyWeights::Mxfp4Experts,
        0
    )
    .is_err());
}

/// Dummy models quantized as llama.cpp quantizes to one type: every matrix whose rows are whole
/// blocks is random blocks of that type (run in place by the CPU kernels), vectors stay f32;
/// they run, reproducibly, in fewer bytes than f32, and a type dummy blocks do not come in is
/// refused.
#[test]
fn dummy_quantized_models_run_from_blocks() {
    use candle_core::quantized::GgmlDType;
    use candor_models::dummy::{DummySource, DummyWeights};
    use candor_models::weights::{BlockType, HostWeight};
    let shape = find("llama", "tiny").unwrap();
    let spec = shape.spec().unwrap();
    let bytes =
        |w: DummyWeights| DummySource::new(&spec, shape.tied_embeddings(), w, 0).stored_bytes();
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
        let weights = DummyWeights::Quantized(dtype);
        let run = |seed: u64| {
            let opened = open_dummy(shape, weights, seed).unwrap();
            let Ok(Some(HostWeight::Mapped(up))) = opened.source.get("blk.0.ffn_up.weight") else {
                panic!("{dtype:?}: the matrices are not blocks");
            };
            assert_eq!(up.dtype, BlockType::Ggml(dtype));
            let Ok(Some(HostWeight::Synthetic(norm))) = opened.source.get("blk.0.attn_norm.weight")
            else {
                panic!("{dtype:?}: a norm's weight is not float");
            };
            assert_eq!(norm.dtype, WeightDtype::F32);
            forward(&opened)
        };
        let a = run(1);
        assert!(a.iter().all(|v| v.is_finite()), "{dtype:?}");
        assert_eq!(a, run(1), "{dtype:?}: same seed");
        assert_ne!(a, run(2), "{dtype:?}: other seed");
        assert!(
            bytes(weights) < bytes(WeightDtype::F32.into()) / 3,
            "{dtype:?}"
        );
    }
    // The tiny rows (64 and 128 values) are no whole Q4_K blocks: those matrices stay f32.
    let opened = open_dummy(shape, DummyWeights::Quantized(GgmlDType::Q4K), 1).unwrap();
    assert!(matches!(
        opened.source.get("blk.0.ffn_up.weight"),
        Ok(Some(HostWeight::Synthetic(_)))
    ));
    assert!(open_dummy(shape, DummyWeights::Quantized(GgmlDType::F16), 0).is_err());
}

/// `--dummy-dtype iq2_xxs` (and the other lattice IQ types): a 1B llama's matrices are random
/// blocks of that type, read in place, in fewer bytes than Q4_0's, named as llama.cpp names
/// the type.
#[test]
fn dummy_grid_models_store_their_matrices_as_blocks() {
    use candle_core::quantized::GgmlDType;
    use candor_kernels::quant::QuantType;
    use candor_models::dummy::{DummySource, DummyWeights};
    use candor_models::weights::{BlockType, HostWeight};
    let shape = find("llama", "1b").unwrap();
    let spec = shape.spec().unwrap();
    let bytes =
        |w: DummyWeights| DummySource::new(&spec, shape.tied_embeddings(), w, 0).stored_bytes();
    let types = [
        (QuantType::Iq2Xxs, "IQ2_XXS"),
        (QuantType::Iq3S, "IQ3_S"),
        (QuantType::Tq1_0, "TQ1_0"),
    ];
    for (ty, name) in types {
        let weights = DummyWeights::Grid(ty);
        assert_eq!(weights.to_string(), name);
        let opened = open_dummy(shape, weights, 1).unwrap();
        let Ok(Some(HostWeight::Mapped(up))) = opened.source.get("blk.0.ffn_up.weight") else {
            panic!("{ty:?}: the matrices are not blocks");
        };
        assert_eq!(up.dtype, BlockType::Grid(ty));
        assert!(bytes(weights) < bytes(DummyWeights::Quantized(GgmlDType::Q4_0)));
    }
}
