//! The OpenAI-compatible HTTP server (axum). The port opens at once; /health answers 503 until
//! the model is loaded and a first forward pass has worked.
pub mod access_log;
pub mod adapters;
pub mod answer;
pub mod answer_parts;
pub mod auth;
pub mod banned_words;
pub mod batch;
pub mod dry;
pub mod embedding_prompts;
pub mod embeddings;
pub mod error;
pub mod fingerprint;
pub mod gbnf;
pub mod generation;
pub mod generation_defaults;
pub mod guide;
pub mod harmony;
pub mod infill;
pub mod json;
pub mod llama_samplers;
pub mod logit_bias;
pub mod lora_list;
pub mod marker;
pub mod messages;
pub mod native_answer;
pub mod native_prompt;
pub mod ollama;
pub mod openai;
pub mod prediction;
pub mod prompt_end;
pub mod prompt_logprobs;
pub mod reasoning;
pub mod recipient;
pub mod request_id;
pub mod respond;
pub mod responses;
pub mod routes;
pub mod sampler_chain;
pub mod slot_file;
pub mod sparse_route;
pub mod state;
pub mod structured;
pub mod thinking;
pub mod timings;
pub mod tls;
pub mod tls_config;
pub mod token_classification;
pub mod tools;
pub mod truncation;
pub mod validate;

use crate::engine::load::{load_model, LoadOptions};
use crate::engine::scheduler::{self, SchedulerConfig};
use crate::engine::stats::EngineStats;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use candor_models::chat_template::ChatTemplate;
use candor_models::{Batch, LogitsWanted, SeqInput};
use state::{AppState, Ready, SharedState};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
pub use tls_config::TlsFiles;
use validate::Limits;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model_path: PathBuf,
    pub model_name: String,
    /// Other names requests may give the model (`--served-model-name a b`); answers carry
    /// `model_name`.
    pub model_aliases: Vec<String>,
    pub host: String,
    pub port: u16,
    /// The keys a request may give (none: no key asked for).
    pub api_keys: auth::ApiKeys,
    /// Serve HTTPS with these files (`--ssl-certfile`, `--ssl-keyfile`, `--ssl-ca-certs`);
    /// None: plain HTTP.
    pub tls: Option<TlsFiles>,
    pub threads: usize,
    pub backend: crate::backend::BackendChoice,
    pub dequantize: bool,
    pub kv_cache_dtype: crate::engine::load::KvCacheDtype,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_waiting: usize,
    pub max_model_len: Option<usize>,
    pub kv_cache_tokens: usize,
    pub body_limit: usize,
    pub max_n: usize,
    pub default_max_tokens: usize,
    /// Byte budget of the responses store (0: responses are not kept).
    pub responses_store_bytes: usize,
    pub shutdown_timeout: Duration,
    pub cors: bool,
    pub prefix_caching: bool,
    /// Most host memory the recurrent states of cached prefixes take (None: what the host's
    /// memory allows; `SchedulerConfig::state_cache_bytes`).
    pub state_cache_bytes: Option<u64>,
    /// Most tokens drafted per step by prompt lookup (0: no speculative decoding).
    pub speculative_tokens: usize,
    /// Replaces the model's chat template (`--chat-template`).
    pub chat_template: Option<String>,
    /// The tool-call format to read and hold calls to (`--tool-call-parser`); None: the
    /// chat template's, detected.
    pub tool_call_parser: Option<tools::format::ToolFormat>,
    /// How embeddings are pooled (`--pooling`; None: as the model's file says, else last).
    pub pooling: Option<crate::engine::pooling::Pooling>,
    /// TEI's endpoints cut an input past the context unless a request says not to
    /// (`--auto-truncate`).
    pub auto_truncate: bool,
    /// Vocabulary strings whose LM-head rows make the served classifier
    /// (`--classifier-from-tokens`); empty: the model file's classification head, if any.
    pub classifier_tokens: Vec<String>,
    /// LoRA adapters offered as models of their own (`--lora`), names checked apart.
    pub adapters: Vec<adapters::ServedAdapter>,
    /// Let `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` change them while serving.
    pub runtime_lora: bool,
    /// Offer `GET /slots` (`--no-slots` turns it off).
    pub slots: bool,
    /// Where slot actions save and restore prompt caches (`--slot-save-path`); none: off.
    pub slot_save_path: Option<std::path::PathBuf>,
    /// Most adapters served at once (`--max-lora-adapters`), those of `--lora` included.
    pub max_lora_adapters: usize,
    /// Whether requests' `priority` orders the queue (`--scheduling-policy`).
    pub scheduling: validate::SchedulingPolicy,
    /// The thinking budget of requests that set none (`--reasoning-budget`).
    pub thinking: thinking::ThinkingDefaults,
    /// Where the sampling defaults of requests come from (`--generation-config`).
    pub generation_config: generation_defaults::GenerationConfigSource,
    /// Sampling defaults set over those (`--override-generation-config`).
    pub generation_overrides: candor_models::generation_config::GenerationDefaults,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls_config::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

pub fn router(state: SharedState, body_limit: usize, cors: bool) -> Router {
    let mut r = Router::new()
        .route("/v1/chat/completions", post(routes::chat::chat_completions))
        .route("/v1/completions", post(routes::completions::completions))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/classify", post(routes::classify::classify))
        .route("/v1/classify", post(routes::classify::classify))
        .route("/pooling", post(routes::pooling::pooling))
        .route("/embed", post(routes::tei::embed))
        .route("/embed_all", post(routes::tei::embed_all))
        .route("/embed_sparse", post(routes::tei::embed_sparse))
        .route("/predict", post(routes::tei_predict::predict))
        .route("/similarity", post(routes::tei::similarity))
        .route("/generate", post(routes::tgi::generate))
        .route("/info", get(routes::info::info))
        .route("/generate_stream", post(routes::tgi::generate_stream))
        .route("/score", post(routes::similarity::score))
        .route("/v1/score", post(routes::similarity::score))
        .route("/rerank", post(routes::similarity::rerank))
        .route("/v1/rerank", post(routes::similarity::rerank))
        .route("/v2/rerank", post(routes::similarity::rerank))
        .route("/api/chat", post(routes::ollama::chat))
        .route("/api/generate", post(routes::ollama::generate))
        .route("/api/embed", post(routes::ollama::embed))
        .route("/api/embeddings", post(routes::ollama::embeddings))
        .route("/api/tags", get(routes::ollama::tags))
        .route("/api/show", post(routes::ollama::show))
        .route("/api/ps", get(routes::ollama::ps))
        .route("/api/version", get(routes::ollama::version))
        .route("/v1/load_lora_adapter", post(routes::lora::load))
        .route("/v1/unload_lora_adapter", post(routes::lora::unload))
        .route(
            "/lora-adapters",
            get(routes::lora_adapters::list).post(routes::lora_adapters::set_scales),
        )
        .route(
            "/reset_prefix_cache",
            post(routes::cache::reset_prefix_cache),
        )
        .route("/v1/responses", post(routes::responses::responses))
        .route("/v1/messages", post(routes::messages::messages))
        .route("/infill", post(routes::infill::infill))
        .route("/props", get(routes::misc::props))
        .route("/slots", get(routes::slots::slots))
        .route("/slots/{id}", post(routes::slot_actions::slot_action))
        .route("/completion", post(routes::llama_completion::completion))
        .route(
            "/v1/messages/count_tokens",
            post(routes::messages::count_tokens),
        )
        .route(
            "/v1/responses/{id}",
            get(routes::responses::retrieve).delete(routes::responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(routes::responses::input_items),
        )
        .route("/v1/responses/{id}/cancel", post(routes::responses::cancel))
        .route("/v1/conversations", post(routes::conversations::create))
        .route(
            "/v1/conversations/{id}",
            get(routes::conversations::retrieve)
                .post(routes::conversations::update)
                .delete(routes::conversations::delete),
        )
        .route(
            "/v1/conversations/{id}/items",
            get(routes::conversations::list_items).post(routes::conversations::add_items),
        )
        .route(
            "/v1/conversations/{id}/items/{item_id}",
            get(routes::conversations::retrieve_item).delete(routes::conversations::delete_item),
        )
        .route("/v1/models", get(routes::misc::models))
        .route("/v1/models/{*id}", get(routes::misc::model))
        .route("/", get(routes::misc::root).post(routes::tgi::compat))
        .route("/health", get(routes::misc::health))
        .route(
            "/ping",
            get(routes::sagemaker::ping).post(routes::sagemaker::ping),
        )
        .route("/invocations", post(routes::sagemaker::invocations))
        .route("/version", get(routes::sagemaker::version))
        .route("/metrics", get(routes::misc::metrics))
        .route("/tokenize", post(routes::tokens::tokenize))
        .route("/detokenize", post(routes::tokens::detokenize))
        .route("/decode", post(routes::tei_tokens::decode))
        .route("/apply-template", post(routes::tokens::apply_template))
        // llama-server's other names for the same endpoints.
        .route("/v1/health", get(routes::misc::health))
        .route("/models", get(routes::misc::models))
        .route("/completions", post(routes::llama_completion::completion))
        .route("/chat/completions", post(routes::chat::chat_completions))
        .route("/responses", post(routes::responses::responses))
        .route("/reranking", post(routes::similarity::rerank))
        .route("/embedding", post(routes::embeddings::llama_embeddings))
        .route("/embeddings", post(routes::embeddings::llama_embeddings))
        .route("/v1/reranking", post(routes::similarity::rerank))
        .route(
            "/v1/chat/completions/input_tokens",
            post(routes::chat::input_tokens),
        )
        .route(
            "/chat/completions/input_tokens",
            post(routes::chat::input_tokens),
        )
        .route(
            "/v1/responses/input_tokens",
            post(routes::responses::input_tokens),
        )
        .route(
            "/responses/input_tokens",
            post(routes::responses::input_tokens),
        )
        .fallback(routes::misc::not_found)
        .method_not_allowed_fallback(routes::misc::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // A handler that panics (a bug) answers a 500 in the error JSON, logged like every
        // failure, instead of a dropped connection; the server serves on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(axum::middleware::from_fn(access_log::log_failures))
        // Outermost: every answer, a refusal too, carries the request's id.
        .layer(axum::middleware::from_fn(request_id::tag));
    if cors {
        r = r.layer(tower_http::cors::CorsLayer::permissive());
    }
    r.with_state(state)
}

/// The server's state before its model is loaded (`load` fills `ready`).
fn new_state(config: &ServeConfig) -> SharedState {
    Arc::new(AppState {
        model_name: config.model_name.clone(),
        model_aliases: config.model_aliases.clone(),
        adapters: Arc::new(adapters::Adapters::new(
            config.adapters.clone(),
            config.max_lora_adapters,
        )),
        runtime_lora: config.runtime_lora,
        slots: config.slots,
        slot_save_path: config.slot_save_path.clone(),
        api_keys: config.api_keys.clone(),
        created: state::unix_now(),
        ready: OnceLock::new(),
        load_error: OnceLock::new(),
        responses: Arc::new(responses::store::ResponseStore::new(
            config.responses_store_bytes,
        )),
        conversations: Arc::new(responses::conversations::ConversationStore::new(
            config.responses_store_bytes,
        )),
    })
}

/// Load the model, start the engine, and run one forward pass; fills `state.ready`.
fn load(config: &ServeConfig, state: &AppState) -> Result<(), String> {
    let lora = config
        .adapters
        .iter()
        .map(|a| {
            candor_models::lora::read_adapter(&a.path)
                .map_err(|e| format!("adapter `{}`: {e}", a.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opts = LoadOptions {
        lora,
        dequantize: config.dequantize,
        kv_cache_dtype: config.kv_cache_dtype,
        op_profiler: None,
        threads: config.threads,
        kv_tokens: config.kv_cache_tokens,
        backend: config.backend.clone(),
        classifier_tokens: config.classifier_tokens.clone(),
    };
    let mut model = load_model(&config.model_path, &opts).map_err(|e| e.to_string())?;
    let tokenizer = model
        .tokenizer
        .take()
        .ok_or("the model has no tokenizer (tokenizer.json); the server needs one")?;
    // A first forward pass proves the model runs before /health says so.
    let warm = Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: vec![model.spec.bos_token_id.unwrap_or(0)],
            start_pos: 0,
            block_table: vec![0],
            // An encoder has no language-model head: its first pass brings back a state.
            logits: match model.runner.whole_prompts() {
                true => LogitsWanted::HiddenFirst,
                false => LogitsWanted::Last,
            },
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    model
        .runner
        .forward(&warm)
        .map_err(|e| format!("first forward pass failed: {e}"))?;
    let fallbacks = model.runner.fallback_ops();
    if !fallbacks.is_empty() {
        let ops = crate::backend::plugin::fallback_summary(&fallbacks);
        tracing::info!(ops = %ops, "ops on the CPU fallback in the first forward pass");
        eprintln!("candor: ops on the CPU fallback in the first forward pass: {ops}");
    }
    let compile = |what: &str, source: Option<&str>| match source {
        Some(src) => ChatTemplate::new(
            src,
            tokenizer.bos_token().as_deref(),
            tokenizer.eos_token().as_deref(),
        )
        .map(|t| Some(Arc::new(t)))
        .map_err(|e| format!("{what}: {e}")),
        None => Ok(None),
    };
    let template = compile(
        "chat template",
        config
            .chat_template
            .as_deref()
            .or(model.chat_template.as_deref()),
    )?;
    // The operator's `--chat-template` replaces the model's templates, the tool one too.
    let tool_template = compile(
        "tool_use chat template",
        model
            .tool_use_template
            .as_deref()
            .filter(|_| config.chat_template.is_none()),
    )?;
    let sampling = generation_defaults::resolve(
        &config.generation_config,
        &model,
        &config.generation_overrides,
    )?;
    if !sampling.is_empty() {
        let shown = generation_defaults::describe(&sampling);
        tracing::info!(defaults = %shown, "sampling defaults for fields a request leaves out");
        eprintln!("candor: sampling defaults for fields a request leaves out: {shown} (--generation-config vllm: none)");
    }
    let eos_ids = tokenizer.generation_end_ids(&model.spec.eos_token_ids);
    let kv_tokens = model.runner.num_blocks() * model.runner.block_size();
    let context = config
        .max_model_len
        .unwrap_or(4096)
        .min(model.spec.max_position)
        .min(kv_tokens);
    // The warm-up pass above wrote position 0 only, where every rotation is the identity.
    model.runner.use_context(context);
    let limits = Limits {
        context,
        vocab: model.spec.vocab_size,
        max_n: config.max_n,
        max_choices: config.max_waiting.max(config.max_n),
        max_stop: 4,
        max_logprobs: 20,
        default_max_tokens: config.default_max_tokens,
        scheduling: config.scheduling,
        thinking: config.thinking.clone(),
        sampling,
    };
    let stats = Arc::new(EngineStats::new(model.runner.num_blocks()).map_err(|e| e.to_string())?);
    let sched = SchedulerConfig {
        max_num_seqs: config.max_num_seqs,
        max_num_batched_tokens: config.max_num_batched_tokens,
        max_waiting: config.max_waiting,
        // An encoder's blocks hold nothing a later prompt could start from.
        prefix_caching: config.prefix_caching && !model.runner.whole_prompts(),
        speculative_tokens: config.speculative_tokens,
        state_cache_bytes: config.state_cache_bytes,
    };
    let system_fingerprint = fingerprint::system_fingerprint(
        &model.path,
        &model.runner.device(),
        model.runner.kv_bytes_per_value(),
        config.speculative_tokens,
    );
    let hidden_size = model.spec.output_width();
    let mut prompts = embedding_prompts::EmbeddingPrompts::from_dir(&model.path)?;
    if let Some(route) = &model.static_sparse {
        // The name that takes the static route is a prompt name, with or without a text.
        prompts.name_without_text(&route.name);
    }
    let metadata = std::fs::metadata(&model.path).ok();
    let facts = state::ModelFacts {
        arch: model.spec.arch.name(),
        format: match model.format {
            candor_models::loader::ModelFormat::Gguf => "gguf",
            candor_models::loader::ModelFormat::Safetensors => "safetensors",
            candor_models::loader::ModelFormat::Dummy => "dummy",
        },
        // A split GGUF's parts together.
        size_bytes: candor_models::weights::split::model_files(&model.path)
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum(),
        modified: metadata.and_then(|m| m.modified().ok()),
        quantization: model.quantization.clone(),
        parameters: model.parameters,
        trained_context: model.spec.max_position,
        device_kind: model.runner.device().kind,
    };
    let pooling = config
        .pooling
        .or(model.pooling)
        .unwrap_or(crate::engine::pooling::Pooling::Last);
    if pooling == crate::engine::pooling::Pooling::Sparse && !model.sparse {
        return Err(
            "--pooling splade makes sparse vectors over the vocabulary, from a BERT, \
                    RoBERTa, DistilBERT, ModernBERT or GTE `*ForMaskedLM` checkout's head (a \
                    SPLADE model such as naver/splade-v3) or BGE-M3's `sparse_linear.pt`: this \
                    model has neither"
                .into(),
        );
    }
    if model.spec.arch == candor_models::spec::Arch::StaticEmbedding
        && pooling != crate::engine::pooling::Pooling::Mean
    {
        return Err(format!(
            "--pooling {pooling}: a static embedding model's vector is the mean of its tokens' \
             rows (--pooling mean), the only pooling it has"
        ));
    }
    let encoder = model.runner.whole_prompts();
    let (engine, _thread) = scheduler::spawn(model.runner, sched, stats.clone());
    // The vocabulary's bytes (~60 ms for 150k tokens) and llama.cpp's default DRY breakers
    // are built here, while loading, not by the first request that needs them.
    let dry_breakers = dry::BreakerSets::default();
    dry::warm_up(&dry_breakers, &tokenizer);
    // So is the tokenizer that reads control tokens' text as text, which every `/infill`
    // uses, on a model that fills in the middle.
    if tokenizer.fim_tokens().is_some() {
        let _ = tokenizer.encode_text("", false);
    }
    let thought_markers = OnceLock::new();
    let think_tags = template
        .as_ref()
        .and_then(|t| reasoning::template_thinks(t.source()));
    if let Some(tags) = think_tags {
        let _ = thought_markers.set(thinking::markers(&tokenizer, tags));
    }
    let _ = state.ready.set(Ready {
        engine,
        fim: tokenizer.fim_tokens(),
        tokenizer: Arc::new(tokenizer),
        template,
        tool_template,
        tool_format: config.tool_call_parser,
        eos_ids,
        limits,
        stats,
        system_fingerprint,
        grammar: OnceLock::new(),
        thought_markers,
        think_tags,
        max_num_seqs: config.max_num_seqs,
        pooling,
        hidden_size,
        dense: model.dense.take().map(Arc::new),
        prompts,
        classifier: model.classifier.take().map(Arc::new),
        sparse: model.sparse,
        colbert: model.colbert.take().map(Arc::new),
        token_weights: model.token_weights.take().map(Arc::new),
        static_sparse: model.static_sparse.take().map(Arc::new),
        token_classifier: model.token_classifier.take().map(Arc::new),
        auto_truncate: config.auto_truncate,
        special_ends: model.spec.arch != candor_models::spec::Arch::StaticEmbedding,
        generates: model.generates,
        encoder,
        facts,
        adapters: state.adapters.clone(),
        dry_breakers,
    });
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serve until SIGTERM/Ctrl-C: then stop accepting, let running requests finish within the
/// deadline, and return.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    // The certificate is read before anything listens: a typo fails at once, not per client.
    let acceptor = match &config.tls {
        Some(files) => Some(tls_config::CurrentAcceptor::new(files.clone())?),
        None => None,
    };
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    let state = new_state(&config);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    eprintln!(
        "candor: listening on {scheme}://{local} (model `{}` loading)",
        config.model_name
    );
    {
        let state = state.clone();
        let config = config.clone();
        std::thread::spawn(move || match load(&config, &state) {
            Ok(()) => {
                tracing::info!(model = %config.model_name, "model ready");
                eprintln!("candor: model `{}` ready", config.model_name);
            }
            Err(e) => {
                tracing::error!(error = %e, "model failed to load");
                eprintln!("candor: model failed to load: {e}");
                let _ = state.load_error.set(e);
            }
        });
    }
    let app = router(state.clone(), config.body_limit, config.cors);
    let deadline = config.shutdown_timeout;
    let engine_state = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        eprintln!(
            "candor: shutting down (finishing running requests, up to {}s)",
            deadline.as_secs()
        );
        if let Some(r) = engine_state.ready.get() {
            r.engine.shutdown();
        }
        // Past the deadline, leave anyway: streams still open are cut.
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            eprintln!("candor: shutdown deadline reached");
            std::process::exit(0);
        });
    };
    match acceptor {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor)?, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    // Background responses belong to no connection: the server waits for them as for a
    // stream (the deadline above still holds).
    let running = state.responses.running_count();
    if running > 0 {
        eprintln!("candor: finishing {running} background response(s)");
        state.responses.until_idle().await;
    }
    Ok(())
}
