//! `--load-format dummy --arch A --size S`: a known model's shapes with random weights made on the
//! backend's device (candor_models::dummy), for measuring speed without the weights.
use crate::error::CliError;
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
}

#[derive(Debug, clap::Args)]
pub struct DummyArgs {
    #[arg(long, value_enum, default_value_t = LoadFormat::Auto)]
    pub load_format: LoadFormat,
    /// With --load-format dummy: the architecture (llama, qwen2 / qwen2.5, qwen3-moe,
    /// deepseek, gpt-oss).
    #[arg(long, default_value = "llama")]
    pub arch: String,
    /// With --load-format dummy: the size (llama: 8b, 1b, tiny; qwen2: 7b, 0.5b, tiny;
    /// qwen3-moe: 30b-a3b, tiny; deepseek: v2-lite, tiny; gpt-oss: 20b, 120b, tiny).
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
        }
    }

    pub fn open(&self, shape: &DummyShape, seed: u64) -> Result<OpenedModel, CliError> {
        Ok(dummy::open_dummy(shape, self.weights(), seed)?)
    }
}
