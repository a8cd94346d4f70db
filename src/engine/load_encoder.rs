//! Loading a bidirectional encoder checkout (BERT, RoBERTa, XLM-RoBERTa) for serving: its
//! weights on the CPU or a CUDA device, its tokenizer in encoder mode (the file's own
//! `[CLS] … [SEP]` post-processor), its head where it is a classifier, its sparse head where
//! it has one (`load_sparse`), and the pooling its sentence-transformers files name (`[CLS]`
//! otherwise, as BERT embedders are trained).
use super::block_manager::BLOCK_SIZE;
use super::encoder_runner::EncoderRunner;
use super::error::EngineError;
use super::load::{checkout_dense, checkout_tokenizer, fitting, LoadOptions, LoadedModel};
use super::load_sparse::sparse_head;
use super::pooling::Pooling;
use crate::backend::BackendChoice;
use candor_models::backend::{Backend, DeviceInfo};
use candor_models::encoder::{
    load_token_head, BertEncoder, ColbertHead, EncoderConfig, SparseHead, StaticRoute,
    StaticSparse, TokenWeights, IDF_FILE,
};
use candor_models::generation_config::GenerationDefaults;
use candor_models::loader::ModelFormat;
use candor_models::sentence_transformers::Modules;
use candor_models::tokenizer::Tokenizer;
use candor_models::weights::gguf::GgufFile;
use candor_models::ModelError;
use std::path::Path;

/// Where an encoder checkout's files are: its directory (`root`: its sentence-transformers
/// files, modules.json and the prompts) and the model's own (`model`: config.json, weights,
/// tokenizer), the same directory unless a Router keeps the model in a route's.
#[derive(Clone, Copy)]
pub struct Checkout<'a> {
    pub root: &'a Path,
    pub model: &'a Path,
    /// The root's modules.json, where it has one.
    pub modules: Option<&'a Modules>,
}

/// A checkout (`config.json` of an encoder, `*.safetensors`, `tokenizer.json`).
pub fn load_encoder(
    checkout: Checkout,
    config: EncoderConfig,
    opts: &LoadOptions,
) -> Result<LoadedModel, EngineError> {
    check_options(opts)?;
    let (path, root) = (checkout.model, checkout.root);
    let (device, info, threads) = encoder_device(&opts.backend, opts.threads)?;
    let (encoder, head) = BertEncoder::load(&config, path, &device)?;
    let token_head = load_token_head(&config, path)?;
    let tokenizer = match checkout_tokenizer(path)? {
        Some(tok) => Some(fitting(
            tok.for_encoder().map_err(ModelError::from)?,
            config.vocab_size,
        )?),
        None => None,
    };
    let sparse = sparse_head(&config, checkout, &encoder, tokenizer.as_ref(), &device)?;
    let mut static_sparse = static_route(checkout)?;
    // A doc-only encoder without sentence-transformers' Router: its queries by its idf.json,
    // its documents by SPLADE over the masked LM.
    let mut pools = sparse.as_ref().is_some_and(|s| s.pools);
    if static_sparse.is_none() {
        let splade = matches!(
            sparse.as_ref().map(|s| &s.head),
            Some(SparseHead::Splade(_))
        );
        static_sparse = idf_route(root, tokenizer.as_ref(), splade)?;
        pools |= static_sparse.is_some();
    }
    if static_sparse.is_some() && !pools {
        return Err(refused(
            "the checkout's Router weighs queries by a static table, but its encoder route \
             makes no sparse vectors to compare them with (no SpladePooling over a masked LM)",
        ));
    }
    let pooling = match super::pooling::from_sentence_transformers(root) {
        _ if pools => Some(Pooling::Sparse),
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "pooling by the first token ([CLS])");
            eprintln!("candor: {e}; pooling by the first token ([CLS]) unless --pooling says");
            None
        }
    };
    let dense = checkout_dense(root, config.hidden_size)?;
    let colbert = ColbertHead::load(path, config.hidden_size)?;
    let token_weights = match sparse.as_ref().map(|s| &s.head) {
        Some(SparseHead::Lexical(head)) => Some(TokenWeights::of(head, path)?),
        _ => None,
    };
    let loaded = Encoder {
        colbert,
        token_weights,
        encoder,
        head,
        sparse: sparse.map(|s| s.head),
        static_sparse,
        token_head,
        tokenizer,
        pooling,
        dense,
        format: ModelFormat::Safetensors,
        quantization: None,
    };
    Ok(loaded.serving(root, info, threads, opts))
}

/// A Router's static route (`query`: a `SparseStaticEmbedding`). Its texts are tokenized by
/// the model's tokenizer; a module that saved another is said.
fn static_route(checkout: Checkout) -> Result<Option<StaticRoute>, EngineError> {
    let Some(modules) = checkout.modules else {
        return Ok(None);
    };
    let Some((name, dir)) = modules.static_route() else {
        return Ok(None);
    };
    let table = StaticSparse::load(dir)?;
    let own = std::fs::read(dir.join("tokenizer.json")).ok();
    let model = std::fs::read(checkout.model.join("tokenizer.json")).ok();
    if own.is_some() && own != model {
        tracing::warn!(
            route = name,
            "the static route saved a tokenizer of its own: its texts are tokenized by the \
             model's"
        );
    }
    Ok(Some(StaticRoute {
        name: name.to_string(),
        table,
        default: modules.default_route() == Some(name),
    }))
}

/// The `query` route of a checkout that keeps its query weights in an `idf.json` at its root
/// and no Router (opensearch's doc-only encoders as they first shipped: the masked LM encodes
/// documents, a query is weighed by the table). None without the file; a file beside a model
/// that makes no SPLADE vectors, or without a tokenizer, is said and left alone.
fn idf_route(
    root: &Path,
    tokenizer: Option<&Tokenizer>,
    splade: bool,
) -> Result<Option<StaticRoute>, EngineError> {
    let path = root.join(IDF_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let Some(tokenizer) = tokenizer.filter(|_| splade) else {
        tracing::warn!(
            path = %path.display(),
            "an idf.json beside a model that is no masked LM with a tokenizer: not served"
        );
        return Ok(None);
    };
    Ok(Some(StaticRoute {
        name: "query".into(),
        table: StaticSparse::from_idf_json(&path, tokenizer)?,
        default: false,
    }))
}

/// A GGUF of architecture `bert` or `nomic-bert` (llama.cpp's converter's: its tokenizer a
/// WordPiece vocabulary, or XLM-R's Unigram one; its pooling `<arch>.pooling_type`).
pub fn load_encoder_gguf(path: &Path, opts: &LoadOptions) -> Result<LoadedModel, EngineError> {
    check_options(opts)?;
    let gguf = GgufFile::open(path, true)?;
    let config = EncoderConfig::from_gguf(&gguf)?;
    let (device, info, threads) = encoder_device(&opts.backend, opts.threads)?;
    let tokenizer =
        Tokenizer::from_gguf_metadata(&gguf.take_tokenizer_metadata()).map_err(ModelError::from)?;
    if tokenizer.separator().is_none() {
        return Err(refused(
            "this GGUF's tokenizer is neither a WordPiece vocabulary (tokenizer model `bert`) \
             nor a SentencePiece Unigram one (`t5`), the two an encoder is served with",
        ));
    }
    let tokenizer = fitting(tokenizer, config.vocab_size)?;
    let (encoder, head) = candor_models::encoder::load_gguf(&config, &gguf, &device)?;
    let pooling = gguf
        .get_usize(&format!("{}.pooling_type", gguf.architecture()?))
        .and_then(|code| Pooling::from_gguf_code(code as u64));
    let loaded = Encoder {
        encoder,
        head,
        sparse: None,
        static_sparse: None,
        token_head: None,
        colbert: None,
        token_weights: None,
        tokenizer: Some(tokenizer),
        pooling,
        dense: None,
        format: ModelFormat::Gguf,
        quantization: gguf.file_type_name().map(str::to_string),
    };
    Ok(loaded.serving(path, info, threads, opts))
}

/// What the options may ask of an encoder: not what only a decoder has.
fn check_options(opts: &LoadOptions) -> Result<(), EngineError> {
    if !opts.lora.is_empty() {
        return Err(refused(
            "LoRA adapters run on decoders; this model is an encoder",
        ));
    }
    if !opts.classifier_tokens.is_empty() {
        return Err(refused(
            "--classifier-from-tokens picks rows of a language-model head; an encoder has none \
             (a `*ForSequenceClassification` checkout brings its own head)",
        ));
    }
    Ok(())
}

/// An encoder loaded from either format, before it becomes a runner.
struct Encoder {
    encoder: BertEncoder,
    head: Option<candor_models::classifier::Classifier>,
    /// Its sparse head (SPLADE's masked LM, BGE-M3's lexical layer).
    sparse: Option<SparseHead>,
    /// BGE-M3's ColBERT layer.
    colbert: Option<ColbertHead>,
    /// BGE-M3's lexical layer token by token.
    token_weights: Option<TokenWeights>,
    /// An inference-free SPLADE model's static query route.
    static_sparse: Option<StaticRoute>,
    /// A token classifier's head.
    token_head: Option<candor_models::classifier::Classifier>,
    tokenizer: Option<Tokenizer>,
    /// The pooling its files name (else `[CLS]`).
    pooling: Option<Pooling>,
    /// Its sentence-transformers `Dense` modules, run on the pooled vector.
    dense: Option<crate::engine::dense::DenseModules>,
    format: ModelFormat,
    quantization: Option<String>,
}

impl Encoder {
    fn serving(
        self,
        path: &Path,
        info: DeviceInfo,
        threads: Option<rayon::ThreadPool>,
        opts: &LoadOptions,
    ) -> LoadedModel {
        let separator = self.tokenizer.as_ref().and_then(Tokenizer::separator);
        let spec = self.encoder.config().spec();
        let blocks = opts.kv_tokens.div_ceil(BLOCK_SIZE).max(1);
        let sparse = self.sparse.is_some();
        let runner = EncoderRunner::new(
            self.encoder,
            self.sparse,
            info,
            separator,
            blocks,
            BLOCK_SIZE,
            threads,
        );
        LoadedModel {
            runner: Box::new(runner),
            tokenizer: self.tokenizer,
            chat_template: None,
            tool_use_template: None,
            spec,
            path: path.to_path_buf(),
            format: self.format,
            quantization: self.quantization,
            parameters: None,
            pooling: Some(self.pooling.unwrap_or(Pooling::Cls)),
            dense: self.dense,
            classifier: self.head,
            generates: false,
            sparse,
            colbert: self.colbert,
            token_weights: self.token_weights,
            static_sparse: self.static_sparse,
            token_classifier: self.token_head,
            generation: Ok(GenerationDefaults::default()),
        }
    }
}

fn refused(message: &str) -> EngineError {
    EngineError::Model(ModelError::Config(message.into()))
}

/// Where an encoder runs: candle's CPU (in a pool of `threads`) or a CUDA device. Device
/// plugins implement the decoder's ops (paged attention over a KV cache), not an encoder's.
fn encoder_device(
    choice: &BackendChoice,
    threads: usize,
) -> Result<(candle_core::Device, DeviceInfo, Option<rayon::ThreadPool>), EngineError> {
    match choice {
        BackendChoice::Cpu => {
            let info = crate::backend::cpu::CpuBackend::new(threads).info();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .thread_name(|i| format!("candor-encoder-{i}"))
                .build()
                .map_err(|e| EngineError::Backend(format!("encoder threads: {e}")))?;
            Ok((candle_core::Device::Cpu, info, Some(pool)))
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda(ordinal) => {
            let backend =
                crate::backend::cuda::CudaBackend::new(*ordinal, candle_core::DType::F32)?;
            Ok((backend.candle_device().clone(), backend.info(), None))
        }
        #[cfg(not(feature = "cuda"))]
        BackendChoice::Cuda(_) => Err(EngineError::Backend(
            crate::backend::cuda::CudaError::NotBuilt.to_string(),
        )),
        BackendChoice::Plugin(path) => Err(EngineError::Backend(format!(
            "{}: device plugins run decoders (paged attention over a KV cache); serve this \
             encoder on the CPU or CUDA backend",
            path.display()
        ))),
    }
}
