//! `--load-format dummy --arch A --size S`: a known model's shapes with random weights made on the
//! backend's device (candor_models::dummy), for measuring speed without the weights.
use crate::error::CliError;
use candle_core::quantized::GgmlDType;
use candor_kernels::quant::QuantType;
use candor_models::backend::WeightDtype;
use candor_models::dummy::{self, DummyShape, DummyWeights};
use candor_models::loader::OpenedModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadFormat {
    /// The model file or directory given with --model.
    Auto,
    /// Random weights of the shapes named by --arch and --size (--model is ignored).
    Dummy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DummyDtype {
    F32,
    F16,
    Bf16,
    /// The experts' matrices in MXFP4, the rest bf16: gpt-oss as it is published.
    Mxfp4,
    /// Every matrix in Q4_0 blocks (vectors f32), as llama.cpp's quantize makes it.
    #[value(name = "q4_0")]
    Q4_0,
    /// Every matrix in Q8_0 blocks.
    #[value(name = "q8_0")]
    Q8_0,
    /// Every matrix in Q4_K blocks (where rows are whole 256-element blocks, else f32).
    #[value(name = "q4_k")]
    Q4K,
    /// Every matrix in Q6_K blocks (likewise).
    #[value(name = "q6_k")]
    Q6K,
    /// Every matrix in Q2_K blocks (likewise).
    #[value(name = "q2_k")]
    Q2K,
    /// Every matrix in Q3_K blocks (likewise).
    #[value(name = "q3_k")]
    Q3K,
    /// Every matrix in IQ1_S blocks (likewise: a lattice codebook, 1.56 bits a weight).
    #[value(name = "iq1_s")]
    Iq1S,
    /// Every matrix in IQ1_M blocks (likewise, 1.75 bits).
    #[value(name = "iq1_m")]
    Iq1M,
    /// Every matrix in IQ2_XXS blocks (likewise, 2.06 bits).
    #[value(name = "iq2_xxs")]
    Iq2Xxs,
    /// Every matrix in IQ2_XS blocks (likewise, 2.31 bits).
    #[value(name = "iq2_xs")]
    Iq2Xs,
    /// Every matrix in IQ2_S blocks (likewise, 2.56 bits).
    #[value(name = "iq2_s")]
    Iq2S,
    /// Every matrix in IQ3_XXS blocks (likewise, 3.06 bits).
    #[value(name = "iq3_xxs")]
    Iq3Xxs,
    /// Every matrix in IQ3_S blocks (likewise, 3.44 bits).
    #[value(name = "iq3_s")]
    Iq3S,
    /// Every matrix in TQ1_0 blocks (likewise: ternary, 1.69 bits).
    #[value(name = "tq1_0")]
    Tq1_0,
    /// Every matrix in TQ2_0 blocks (likewise: ternary, 2.06 bits).
    #[value(name = "tq2_0")]
    Tq2_0,
}

#[derive(Debug, clap::Args)]
pub struct DummyArgs {
    #[arg(long, value_enum, default_value_t = LoadFormat::Auto)]
    pub load_format: LoadFormat,
    /// With --load-format dummy: the architecture (llama, qwen2 / qwen2.5, qwen3-moe,
    /// deepseek, gpt-oss, cohere2, command-r, gemma, ministral3, minimax-m2, lfm2, lfm2moe,
    /// phi2, gptneox, stablelm, nemotron, gpt2, opt, falcon, starcoder, starcoder2, ernie4_5-moe,
    /// arcee, hunyuan-moe, dots1, bitnet; an unknown pair's error lists every shape).
    #[arg(long, default_value = "llama")]
    pub arch: String,
    /// With --load-format dummy: the size (llama: 8b, 1b; qwen2: 7b, 0.5b; qwen3-moe:
    /// 30b-a3b; deepseek: v2-lite; gpt-oss: 20b, 120b; cohere2: 7b; command-r: 104b; gemma:
    /// 2b, 7b; ministral3: 8b; minimax-m2: 230b-a10b; lfm2: 1.2b, 350m; lfm2moe: 8b-a1b; phi2:
    /// 2.7b; gptneox: 1.4b; stablelm: 1.6b, 12b; nemotron: 4b; gpt2: 124m, 1.5b; opt: 125m,
    /// 1.3b; falcon: 7b; starcoder: 15b; starcoder2: 3b; ernie4_5-moe: 21b-a3b; arcee: 4.5b;
    /// hunyuan-moe: a13b; dots1: 142b; bitnet: 2b; most have a `tiny` one for tests).
    #[arg(long, default_value = "8b")]
    pub size: String,
    /// With --load-format dummy: the weights' type.
    #[arg(long, value_enum, default_value_t = DummyDtype::Bf16)]
    pub dummy_dtype: DummyDtype,
}

impl DummyArgs {
    /// The table entry when --load-format dummy was given.
    pub fn shape(&self) -> Result<Option<&'static DummyShape>, CliError> {
        match self.load_format {
            LoadFormat::Auto => Ok(None),
            LoadFormat::Dummy => Ok(Some(dummy::find(&self.arch, &self.size)?)),
        }
    }

    pub fn weights(&self) -> DummyWeights {
        match self.dummy_dtype {
            DummyDtype::F32 => WeightDtype::F32.into(),
            DummyDtype::F16 => WeightDtype::F16.into(),
            DummyDtype::Bf16 => WeightDtype::BF16.into(),
            DummyDtype::Mxfp4 => DummyWeights::Mxfp4Experts,
            DummyDtype::Q4_0 => DummyWeights::Quantized(GgmlDType::Q4_0),
            DummyDtype::Q8_0 => DummyWeights::Quantized(GgmlDType::Q8_0),
            DummyDtype::Q4K => DummyWeights::Quantized(GgmlDType::Q4K),
            DummyDtype::Q6K => DummyWeights::Quantized(GgmlDType::Q6K),
            DummyDtype::Q2K => DummyWeights::Quantized(GgmlDType::Q2K),
            DummyDtype::Q3K => DummyWeights::Quantized(GgmlDType::Q3K),
            DummyDtype::Iq1S => DummyWeights::Grid(QuantType::Iq1S),
            DummyDtype::Iq1M => DummyWeights::Grid(QuantType::Iq1M),
            DummyDtype::Iq2Xxs => DummyWeights::Grid(QuantType::Iq2Xxs),
            DummyDtype::Iq2Xs => DummyWeights::Grid(QuantType::Iq2Xs),
            DummyDtype::Iq2S => DummyWeights::Grid(QuantType::Iq2S),
            DummyDtype::Iq3Xxs => DummyWeights::Grid(QuantType::Iq3Xxs),
            DummyDtype::Iq3S => DummyWeights::Grid(QuantType::Iq3S),
            DummyDtype::Tq1_0 => DummyWeights::Grid(QuantType::Tq1_0),
            DummyDtype::Tq2_0 => DummyWeights::Grid(QuantType::Tq2_0),
        }
    }

    pub fn open(&self, shape: &DummyShape, seed: u64) -> Result<OpenedModel, CliError> {
        Ok(dummy::open_dummy(shape, self.weights(), seed)?)
    }
}
