//! Building a runner from an opened model on a chosen backend.
use super::block_manager::BLOCK_SIZE;
use super::error::EngineError;
use super::op_profile::{OpProfiler, Profiled};
use super::runner::{ModelRunner, Runner};
use crate::backend::cpu::{CpuBackend, KvDtype};
use crate::backend::plugin::PluginBackend;
use crate::backend::BackendChoice;
use candor_models::backend::Backend;
use candor_models::classifier::Classifier;
use candor_models::generation_config::GenerationDefaults;
use candor_models::loader::{ModelFormat, OpenedModel};
use candor_models::lora::LoraAdapter;
use candor_models::tokenizer::Tokenizer;
use candor_models::DecoderModel;
use std::sync::Arc;

/// The element type asked of the KV cache (`--kv-cache-dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KvCacheDtype {
    /// f16 for quantized or half-precision weights (llama.cpp's default: the cache is rounded
    /// no more than the weights already are), f32 for f32 weights and `--dequantize` (the
    /// reference path the golden tests check).
    #[default]
    Auto,
    F32,
    F16,
    /// Blocks of 32 bytes and an f16 scale along each head (llama.cpp's `q8_0` cache): about
    /// half the memory and decode-attention bytes of f16, the values within half a step of
    /// max|x|/127 (CPU backend; heads a multiple of 32 wide).
    #[value(name = "q8_0")]
    Q8_0,
}

impl KvCacheDtype {
    /// What the CPU backend stores for `opened` loaded with `dequantize`.
    pub fn resolve(self, opened: &OpenedModel, dequantize: bool) -> Result<KvDtype, EngineError> {
        use candor_models::backend::WeightDtype;
        Ok(match self {
            KvCacheDtype::F32 => KvDtype::F32,
            KvCacheDtype::F16 => KvDtype::F16,
            KvCacheDtype::Q8_0 => KvDtype::Q8_0,
            KvCacheDtype::Auto if dequantize => KvDtype::F32,
            KvCacheDtype::Auto => match embedding_dtype(opened)? {
                Some(WeightDtype::F32) | None => KvDtype::F32,
                Some(_) => KvDtype::F16,
            },
        })
    }
}

/// The stored type of the token embedding table, which stands for the model's weights (GGUF
/// files keep it quantized like the rest; safetensors checkouts use one dtype throughout).
fn embedding_dtype(
    opened: &OpenedModel,
) -> Result<Option<candor_models::backend::WeightDtype>, EngineError> {
    Ok(candor_models::weights::require(opened.source.as_ref(), "token_embd.weight")?.dtype())
}

/// A CPU runner whose KV cache holds `kv_tokens` tokens (rounded up to whole blocks) of
/// `kv_dtype`.
pub fn cpu_runner(
    opened: &OpenedModel,
    threads: usize,
    kv_tokens: usize,
    kv_dtype: KvDtype,
) -> Result<Box<dyn Runner>, EngineError> {
    runner_on(
        cpu_backend(threads, kv_dtype),
        opened,
        kv_tokens,
        None,
        &[],
        |_| {},
    )
}

fn cpu_backend(threads: usize, kv_dtype: KvDtype) -> CpuBackend {
    CpuBackend::new(threads).with_kv_dtype(kv_dtype)
}

/// `opened` loaded onto `backend` with a KV cache of `kv_tokens` tokens (whole blocks), `lora`
/// served beside it, every op timed by `profiler` while it is switched on (`candor bench
/// --profile-ops`). `loaded` sees the backend once the weights are on it.
fn runner_on<B: Backend>(
    backend: B,
    opened: &OpenedModel,
    kv_tokens: usize,
    profiler: Option<&Arc<OpProfiler>>,
    lora: &[LoraAdapter],
    loaded: impl FnOnce(&B),
) -> Result<Box<dyn Runner>, EngineError> {
    match profiler {
        Some(p) => model_runner(
            Profiled::new(backend, p.clone()),
            opened,
            kv_tokens,
            lora,
            |b: &Profiled<B>| loaded(b.inner()),
        ),
        None => model_runner(backend, opened, kv_tokens, lora, loaded),
    }
}

fn model_runner<B: Backend>(
    backend: B,
    opened: &OpenedModel,
    kv_tokens: usize,
    lora: &[LoraAdapter],
    loaded: impl FnOnce(&B),
) -> Result<Box<dyn Runner>, EngineError> {
    let mut model = DecoderModel::load(&backend, opened.spec.clone(), opened.source.as_ref())?;
    model.attach_lora(&backend, lora)?;
    loaded(&backend);
    let blocks = kv_tokens.div_ceil(BLOCK_SIZE).max(1);
    Ok(Box::new(ModelRunner::new(
        backend, model, blocks, BLOCK_SIZE,
    )?))
}

/// The activation dtype for a model on the GPU: f32 for f32 weights (the reference path:
/// golden tests, `--dequantize`) and for GGUF blocks (candle's quantized kernels take f32
/// activations); the weights' own half type for f16/bf16 models (tensor cores, half the KV cache).
#[cfg(feature = "cuda")]
fn cuda_act_dtype(opened: &OpenedModel) -> Result<candle_core::DType, EngineError> {
    use candor_models::backend::WeightDtype;
    Ok(match embedding_dtype(opened)? {
        Some(WeightDtype::BF16) => candle_core::DType::BF16,
        Some(WeightDtype::F16) => candle_core::DType::F16,
        _ => candle_core::DType::F32,
    })
}

/// A runner on CUDA device `ordinal` whose KV cache holds `kv_tokens` tokens.
#[cfg(feature = "cuda")]
pub fn cuda_runner(
    opened: &OpenedModel,
    ordinal: usize,
    kv_tokens: usize,
) -> Result<Box<dyn Runner>, EngineError> {
    let backend = cuda_backend(opened, ordinal, KvCacheDtype::Auto)?;
    runner_on(backend, opened, kv_tokens, None, &[], |_| {})
}

/// CUDA keeps the KV cache in the activation dtype: `asked` must be auto or that type.
#[cfg(feature = "cuda")]
fn cuda_backend(
    opened: &OpenedModel,
    ordinal: usize,
    asked: KvCacheDtype,
) -> Result<crate::backend::cuda::CudaBackend, EngineError> {
    let act = cuda_act_dtype(opened)?;
    check_fixed_kv_dtype(asked, "CUDA", &format!("{act:?}").to_lowercase())?;
    Ok(crate::backend::cuda::CudaBackend::new(ordinal, act)?)
}

/// Everything needed to serve a model: the runner, its tokenizer and chat template.
pub struct LoadedModel {
    pub runner: Box<dyn Runner>,
    /// None for a safetensors checkout without tokenizer.json (token ids only).
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<String>,
    /// The template a request with tools renders with, where the model keeps one apart
    /// (Command R, Hermes 2 Pro: `tool_use` among named templates).
    pub tool_use_template: Option<String>,
    pub spec: candor_models::ModelSpec,
    pub path: std::path::PathBuf,
    pub format: candor_models::loader::ModelFormat,
    /// A GGUF file's quantization as llama.cpp names it (`Q4_K_M`) and its parameter count,
    /// read from the metadata while it is loaded (for result documents).
    pub quantization: Option<String>,
    pub parameters: Option<u64>,
    /// How the model's file says to pool an embedding (a GGUF's `{arch}.pooling_type`).
    pub pooling: Option<crate::engine::pooling::Pooling>,
    /// The sentence-transformers `Dense` modules a checkout runs on its pooled embedding.
    pub dense: Option<crate::engine::dense::DenseModules>,
    /// The sequence classifier's head: the file's own (a `*ForSequenceClassification`
    /// checkout, a reranker GGUF), or one from the LM head's rows of
    /// `LoadOptions::classifier_tokens`.
    pub classifier: Option<candor_models::classifier::Classifier>,
    /// Whether the model generates: not when its file's head is a classifier (its language
    /// model head is absent or not what it was trained with).
    pub generates: bool,
    /// Whether it makes sparse vectors (`Pooling::Sparse`): a SPLADE masked LM's head or
    /// BGE-M3's lexical layer is loaded.
    pub sparse: bool,
    /// BGE-M3's ColBERT head (`colbert_linear.pt`), whose vectors are its tokens'.
    pub colbert: Option<candor_models::encoder::ColbertHead>,
    /// BGE-M3's lexical layer token by token (`/pooling`'s `token_classify`).
    pub token_weights: Option<candor_models::encoder::TokenWeights>,
    /// An inference-free SPLADE model's static route (its name, `query`, and its table): the
    /// texts a request sends under that name are weighed by the table, not encoded.
    pub static_sparse: Option<candor_models::encoder::StaticRoute>,
    /// A token classifier's head (`*ForTokenClassification`: NER), scoring every token.
    pub token_classifier: Option<Classifier>,
    /// The sampling settings the model ships (`generation_config.json`, a GGUF's
    /// `general.sampling.*`), or why they could not be read: only the server uses them, so
    /// a broken file fails `candor serve` (which names a way around it), not the other tools.
    pub generation: Result<GenerationDefaults, String>,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub dequantize: bool,
    pub threads: usize,
    /// Tokens the KV cache must hold.
    pub kv_tokens: usize,
    pub backend: BackendChoice,
    /// The KV cache's element type on the CPU backend. CUDA keeps the model's activation dtype
    /// and plugins f32 or (ABI 1.1) f16: there, a type the backend does not keep is an error.
    pub kv_cache_dtype: KvCacheDtype,
    /// Times every op while switched on (`candor bench --profile-ops`); None runs the backend
    /// unwrapped.
    pub op_profiler: Option<Arc<OpProfiler>>,
    /// LoRA adapters served beside the model: a sequence naming adapter `i`
    /// (`SeqInput::lora`) runs with `lora[i]`.
    pub lora: Vec<LoraAdapter>,
    /// Vocabulary strings whose LM-head rows make a classifier (vLLM's
    /// `classifier_from_token`: `no`, `yes` for Qwen3-Reranker); empty: the file's head, if any.
    pub classifier_tokens: Vec<String>,
}

/// A runner for `opened` on the backend the options name.
pub fn runner_for(
    opened: &OpenedModel,
    opts: &LoadOptions,
) -> Result<Box<dyn Runner>, EngineError> {
    let profiler = opts.op_profiler.as_ref();
    let asked = opts.kv_cache_dtype;
    match &opts.backend {
        BackendChoice::Cpu => runner_on(
            cpu_backend(opts.threads, asked.resolve(opened, opts.dequantize)?),
            opened,
            opts.kv_tokens,
            profiler,
            &opts.lora,
            |_| {},
        ),
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda(ordinal) => runner_on(
            cuda_backend(opened, *ordinal, asked)?,
            opened,
            opts.kv_tokens,
            profiler,
            &opts.lora,
            |_| {},
        ),
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda(_) => Err(EngineError::Backend(
            crate::backend::cuda::CudaError::NotBuilt.to_string(),
        )),
        BackendChoice::Plugin(path) => runner_on(
            plugin_backend(
                path,
                opts.threads,
                asked.resolve(opened, opts.dequantize)?,
                asked,
            )?,
            opened,
            opts.kv_tokens,
            profiler,
            &opts.lora,
            log_plugin_placement,
        ),
    }
}

/// `--kv-cache-dtype` on a backend whose cache element type is fixed (`fixed`: f32, f16, bf16):
/// `auto` or that very type; another is refused rather than silently ignored (CUDA, which
/// keeps the activation dtype).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn check_fixed_kv_dtype(
    asked: KvCacheDtype,
    backend: &str,
    fixed: &str,
) -> Result<(), EngineError> {
    let name = match asked {
        KvCacheDtype::Auto => return Ok(()),
        KvCacheDtype::F32 => "f32",
        KvCacheDtype::F16 => "f16",
        KvCacheDtype::Q8_0 => "q8_0",
    };
    if name == fixed {
        return Ok(());
    }
    Err(EngineError::Backend(format!(
        "--kv-cache-dtype {name}: the {backend} backend keeps this model's KV cache in {fixed} \
         (leave it at auto)"
    )))
}

/// A runner on the device plugin at `path`, with the CPU backend (`threads`) for the ops the
/// plugin does not support. Logs where the weights went and which ops fall back.
pub fn plugin_runner(
    opened: &OpenedModel,
    path: &std::path::Path,
    threads: usize,
    kv_tokens: usize,
) -> Result<Box<dyn Runner>, EngineError> {
    let auto = KvCacheDtype::Auto;
    let backend = plugin_backend(path, threads, auto.resolve(opened, false)?, auto)?;
    runner_on(backend, opened, kv_tokens, None, &[], log_plugin_placement)
}

/// A plugin backend whose KV cache holds `wanted` (the CPU's choice for the model: f16 for
/// quantized or half-precision weights) where the plugin keeps that type (F16 caches came in
/// ABI 1.1), else f32; f16 `asked` for by name and not kept is an error, not ignored, and so
/// is q8_0, which the plugin ABI has no cache type for.
fn plugin_backend(
    path: &std::path::Path,
    threads: usize,
    wanted: KvDtype,
    asked: KvCacheDtype,
) -> Result<PluginBackend, EngineError> {
    use crate::backend::plugin::ffi;
    if wanted == KvDtype::Q8_0 {
        return Err(EngineError::Backend(
            "--kv-cache-dtype q8_0: plugin KV caches are f32 or f16 (the plugin ABI has no \
             8-bit cache type); q8_0 is the CPU backend's"
                .into(),
        ));
    }
    let backend = PluginBackend::load(path, CpuBackend::new(threads))
        .map_err(|e| EngineError::Backend(e.to_string()))?;
    if wanted != KvDtype::F16 {
        return Ok(backend);
    }
    // `with_kv_cache` refuses only a cache the plugin does not keep.
    match (backend.clone().with_kv_cache(ffi::DTYPE_F16), asked) {
        (Ok(on_f16), _) => Ok(on_f16),
        (Err(_), KvCacheDtype::F16) => Err(EngineError::Backend(format!(
            "--kv-cache-dtype f16: the plugin `{}` keeps KV caches in f32 only (an f16 cache \
             needs ABI 1.1 and its yes to kv_write and paged_attention in f16); use f32 or auto",
            backend.plugin().name()
        ))),
        (Err(_), _) => Ok(backend),
    }
}

/// Once the weights are loaded: where they went and which ops fall back to the CPU.
fn log_plugin_placement(backend: &PluginBackend) {
    let report = backend.startup_report();
    tracing::info!("{report}");
    eprintln!("candor: {report}");
}

/// The tokenizer of an opened model: GGUF metadata, or `tokenizer.json` beside safetensors.
/// Once per opened GGUF model: it takes the vocabulary arrays out of the file's metadata.
pub fn load_tokenizer(opened: &OpenedModel) -> Result<Option<Tokenizer>, EngineError> {
    let tok = match &opened.gguf {
        // Takes the vocabulary arrays out of the file's metadata: the tokenizer keeps its own.
        Some(g) => Tokenizer::from_gguf_metadata(&g.take_tokenizer_metadata())
            .map_err(candor_models::ModelError::from)?,
        None => match checkout_tokenizer(&opened.path)? {
            Some(tok) => tok,
            None => return Ok(None),
        },
    };
    fitting(tok, opened.spec.vocab_size).map(Some)
}

/// A checkout's `tokenizer.json` (with its `tokenizer_config.json`), or its slow tokenizer's
/// `vocab.json` and `merges.txt`, Mistral's `tekken.json` or SentencePiece's
/// `tokenizer.model`, if it has one.
pub fn checkout_tokenizer(dir: &std::path::Path) -> Result<Option<Tokenizer>, EngineError> {
    let file = dir.join("tokenizer.json");
    if candor_models::tokenizer::vocab_merges::is_slow_checkout(dir) {
        let tok = Tokenizer::from_vocab_merges(dir)
            .and_then(|t| t.with_checkout_templates(dir))
            .map_err(candor_models::ModelError::from)?;
        return Ok(Some(tok));
    }
    if candor_models::tokenizer::tekken::is_tekken_checkout(dir) {
        let tok = Tokenizer::from_tekken_checkout(dir).map_err(candor_models::ModelError::from)?;
        return Ok(Some(tok));
    }
    if candor_models::tokenizer::sentencepiece_model::is_slow_checkout(dir) {
        let tok =
            Tokenizer::from_sentencepiece_checkout(dir).map_err(candor_models::ModelError::from)?;
        return Ok(Some(tok));
    }
    if !file.exists() {
        return Ok(None);
    }
    let config = dir.join("tokenizer_config.json");
    let tok = Tokenizer::from_file(&file, config.exists().then_some(config.as_path()))
        .and_then(|t| t.with_checkout_templates(dir))
        .map_err(candor_models::ModelError::from)?;
    Ok(Some(tok))
}

/// `tok`, if its ids all fall within the model's vocabulary of `vocab` rows.
pub fn fitting(tok: Tokenizer, vocab: usize) -> Result<Tokenizer, EngineError> {
    if tok.vocab_size() > vocab {
        return Err(candor_models::ModelError::Config(format!(
            "the tokenizer has {} tokens, the model's vocabulary {vocab}",
            tok.vocab_size()
        ))
        .into());
    }
    Ok(tok)
}

/// A classifier from the LM head's rows of `tokens`, each a vocabulary string of its own.
fn classifier_from_tokens(
    opened: &OpenedModel,
    tokenizer: Option<&Tokenizer>,
    tokens: &[String],
) -> Result<Classifier, EngineError> {
    let Some(tokenizer) = tokenizer else {
        return Err(candor_models::ModelError::Config(
            "--classifier-from-tokens names tokens by their text: this model has no tokenizer"
                .into(),
        )
        .into());
    };
    let ids = tokens
        .iter()
        .map(|t| match tokenizer.token_id(t) {
            Some(id) => Ok((t.clone(), id)),
            None => Err(candor_models::ModelError::Config(format!(
                "--classifier-from-tokens: `{t}` is not a token of this model's vocabulary"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Classifier::from_tokens(opened, &ids)?)
}

pub fn load_model(path: &std::path::Path, opts: &LoadOptions) -> Result<LoadedModel, EngineError> {
    // A sentence-transformers Router keeps the model in its encoder route's directory.
    let modules = match path.is_dir() {
        true => candor_models::sentence_transformers::Modules::read(path)
            .map_err(candor_models::ModelError::Config)?,
        false => None,
    };
    if path.is_dir() {
        if let Some(table) = candor_models::static_embedding::StaticEmbedding::from_dir(path)? {
            return super::load_static::load_static(path, table, opts);
        }
    }
    let checkout = modules
        .as_ref()
        .map_or_else(|| path.to_path_buf(), |m| m.model_dir());
    if let Some(config) = candor_models::encoder::EncoderConfig::from_dir(&checkout)? {
        let found = super::load_encoder::Checkout {
            root: path,
            model: &checkout,
            modules: modules.as_ref(),
        };
        return super::load_encoder::load_encoder(found, config, opts);
    }
    match candor_models::loader::open_model(path, opts.dequantize) {
        // A GGUF of a BERT-style encoder is not a decoder: its own loader reads it.
        Err(candor_models::ModelError::UnsupportedArch(arch))
            if candor_models::encoder::GGUF_ARCHS.contains(&arch.as_str()) =>
        {
            super::load_encoder::load_encoder_gguf(path, opts)
        }
        opened => load_opened(opened?, opts),
    }
}

/// A model already opened (a file, or `--load-format dummy`), on the backend the options name.
pub fn load_opened(opened: OpenedModel, opts: &LoadOptions) -> Result<LoadedModel, EngineError> {
    let tokenizer = load_tokenizer(&opened)?;
    let file_head = Classifier::from_file(&opened)?;
    let generates = file_head.is_none();
    let classifier = match opts.classifier_tokens.as_slice() {
        [] => file_head,
        tokens => Some(classifier_from_tokens(&opened, tokenizer.as_ref(), tokens)?),
    };
    let runner = runner_for(&opened, opts)?;
    let loaded = LoadedModel {
        classifier,
        generates,
        sparse: false,
        colbert: None,
        token_weights: None,
        static_sparse: None,
        token_classifier: None,
        runner,
        chat_template: tokenizer.as_ref().and_then(|t| t.chat_template()),
        tool_use_template: tokenizer.as_ref().and_then(|t| t.tool_use_template()),
        tokenizer,
        spec: opened.spec.clone(),
        path: opened.path.clone(),
        format: opened.format,
        quantization: opened
            .gguf
            .as_ref()
            .and_then(|g| g.file_type_name())
            .map(str::to_string),
        parameters: opened.gguf.as_ref().map(|g| g.parameter_count()),
        pooling: match &opened.gguf {
            Some(g) => g.architecture().ok().and_then(|arch| {
                let code = g.get_usize(&format!("{arch}.pooling_type"))?;
                crate::engine::pooling::Pooling::from_gguf_code(code as u64)
            }),
            None => checkout_pooling(&opened.path),
        },
        dense: match &opened.gguf {
            Some(_) => None,
            None => checkout_dense(&opened.path, opened.spec.output_width())?,
        },
        generation: match (&opened.gguf, opened.format) {
            (Some(gguf), _) => GenerationDefaults::from_gguf(gguf),
            (None, ModelFormat::Safetensors) => GenerationDefaults::from_hf_dir(&opened.path),
            (None, _) => Ok(GenerationDefaults::default()),
        }
        .map_err(|e| e.to_string()),
    };
    // The file's metadata and every load-time buffer are gone now: return their pages.
    drop(opened);
    crate::rss::release_freed_heap();
    Ok(loaded)
}

/// The pooling a checkout's sentence-transformers files name (Qwen3-Embedding's last token,
/// gte-Qwen2's mean), if they name one candor pools by; one it does not is said, not served
/// silently otherwise.
fn checkout_pooling(dir: &std::path::Path) -> Option<crate::engine::pooling::Pooling> {
    match crate::engine::pooling::from_sentence_transformers(dir) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "pooling by the default");
            eprintln!("candor: {e}; pooling by the default unless --pooling says");
            None
        }
    }
}

/// The sentence-transformers `Dense` modules of a checkout (`dir` a directory), chained onto
/// its `hidden`-wide pooled vector: one candor cannot run refuses the model, whose embeddings
/// would not be the model's without it.
pub(crate) fn checkout_dense(
    dir: &std::path::Path,
    hidden: usize,
) -> Result<Option<crate::engine::dense::DenseModules>, EngineError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    crate::engine::dense::from_sentence_transformers(dir, hidden)
        .map_err(|e| EngineError::Model(candor_models::ModelError::Config(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_cache_type_takes_auto_or_itself_only() {
        assert!(check_fixed_kv_dtype(KvCacheDtype::Auto, "CUDA", "f32").is_ok());
        assert!(check_fixed_kv_dtype(KvCacheDtype::F32, "CUDA", "f32").is_ok());
        let e = check_fixed_kv_dtype(KvCacheDtype::F16, "CUDA", "f32").unwrap_err();
        assert!(e.to_string().contains("CUDA backend keeps"), "{e}");
        assert!(check_fixed_kv_dtype(KvCacheDtype::F16, "CUDA", "bf16").is_err());
        assert!(check_fixed_kv_dtype(KvCacheDtype::F16, "CUDA", "f16").is_ok());
        let e = check_fixed_kv_dtype(KvCacheDtype::Q8_0, "CUDA", "bf16").unwrap_err();
        assert!(e.to_string().contains("--kv-cache-dtype q8_0"), "{e}");
    }

    #[test]
    fn q8_0_is_asked_by_llama_cpp_s_name() {
        use clap::ValueEnum;
        let q8 = KvCacheDtype::from_str("q8_0", true).unwrap();
        assert_eq!(q8, KvCacheDtype::Q8_0);
        assert!(KvCacheDtype::from_str("q8-0", true).is_err());
    }
}
