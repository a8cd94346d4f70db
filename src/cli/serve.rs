//! `candor serve`: the OpenAI-compatible HTTP server.
use crate::backend::cpu::configure_threads;
use crate::backend::BackendChoice;
use crate::engine::load::KvCacheDtype;
use crate::error::CliError;
use crate::pull;
use crate::server::{serve, ServeConfig};
use std::time::Duration;

/// How the switches read their `CANDOR_*` variables: 1/0, true/false, yes/no, on/off (clap's
/// default for a flag takes only true/false, so `CANDOR_CORS=1` was refused).
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model: a .gguf file (a split model's first part), a safetensors directory, a catalogue
    /// name or hf:ORG/REPO[:FILE|:TAG] (those two pulled if missing).
    #[arg(long, env = "CANDOR_MODEL", default_value = pull::DEFAULT_MODEL)]
    pub model: String,
    /// Name clients use in `model` (default: the catalogue name or file stem). Several names
    /// (vLLM's `--served-model-name a b`, or comma-separated) are all accepted and listed;
    /// answers carry the first.
    #[arg(
        long,
        env = "CANDOR_SERVED_MODEL_NAME",
        num_args = 1..,
        value_delimiter = ','
    )]
    pub served_model_name: Vec<String>,
    #[arg(long, env = "CANDOR_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "CANDOR_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` (or `x-api-key: KEY`) on the API routes; several
    /// keys as a comma-separated list or the flag repeated, any of them accepted (to rotate
    /// one without a restart of every client).
    #[arg(
        long,
        env = "CANDOR_API_KEY",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_key: Vec<String>,
    /// More API keys, one a line (blank lines and `#` comments skipped): llama-server's
    /// --api-key-file, keeping keys off the command line.
    #[arg(long, env = "CANDOR_API_KEY_FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first), beside
    /// --ssl-keyfile (vLLM's names; llama-server's --ssl-cert-file works too).
    #[arg(
        long,
        env = "CANDOR_SSL_CERTFILE",
        alias = "ssl-cert-file",
        requires = "ssl_keyfile"
    )]
    pub ssl_certfile: Option<std::path::PathBuf>,
    /// The PEM private key of --ssl-certfile (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "CANDOR_SSL_KEYFILE",
        alias = "ssl-key-file",
        requires = "ssl_certfile"
    )]
    pub ssl_keyfile: Option<std::path::PathBuf>,
    /// PEM CA certificates that client certificates are checked against (mutual TLS: only
    /// clients holding a certificate this CA issued get through, see --ssl-cert-reqs).
    #[arg(long, env = "CANDOR_SSL_CA_CERTS", requires = "ssl_certfile")]
    pub ssl_ca_certs: Option<std::path::PathBuf>,
    /// What is asked of clients with --ssl-ca-certs: none, optional (a certificate shown must
    /// be the CA's) or required (vLLM's numbers 0, 1, 2 too). Default: required, where vLLM's
    /// default (none) would serve anyone despite the CA given.
    #[arg(
        long,
        env = "CANDOR_SSL_CERT_REQS",
        value_enum,
        requires = "ssl_ca_certs"
    )]
    pub ssl_cert_reqs: Option<crate::server::tls_config::ClientCerts>,
    /// Read the certificate, key and CA files again when they change (checked at most once a
    /// second, as connections arrive): a renewed certificate is served without a restart,
    /// to new connections.
    #[arg(long, env = "CANDOR_ENABLE_SSL_REFRESH", value_parser = boolish(), requires = "ssl_certfile")]
    pub enable_ssl_refresh: bool,
    #[arg(long, env = "CANDOR_THREADS")]
    pub threads: Option<usize>,
    /// cpu, cuda[:N] or plugin:PATH.
    #[arg(long, env = "CANDOR_BACKEND", default_value = "cpu")]
    pub backend: BackendChoice,
    #[arg(long, env = "CANDOR_DEQUANTIZE", value_parser = boolish())]
    pub dequantize: bool,
    /// KV cache element type: auto (CPU, and plugins that keep f16 caches: f16 for quantized
    /// weights; CUDA: the activation dtype; other plugins: f32), f32, f16, q8_0 (CPU: blocks of
    /// 32 bytes and a scale, about half f16's memory). CUDA keeps its one type, and a plugin
    /// f32 or f16: another asked of them is an error.
    #[arg(long, env = "CANDOR_KV_CACHE_DTYPE", value_enum, default_value_t)]
    pub kv_cache_dtype: KvCacheDtype,
    /// Sequences in the running batch.
    #[arg(long, env = "CANDOR_MAX_NUM_SEQS", default_value_t = 32)]
    pub max_num_seqs: usize,
    /// Tokens per engine step (decode tokens + prefill chunks).
    #[arg(long, env = "CANDOR_MAX_NUM_BATCHED_TOKENS", default_value_t = 512)]
    pub max_num_batched_tokens: usize,
    /// Requests that may wait; beyond that, 429.
    #[arg(long, env = "CANDOR_MAX_WAITING", default_value_t = 256)]
    pub max_waiting: usize,
    /// Context per request (default: the model's, at most 4096).
    #[arg(long, env = "CANDOR_MAX_MODEL_LEN")]
    pub max_model_len: Option<usize>,
    /// Tokens the paged KV cache holds over all requests.
    #[arg(long, env = "CANDOR_KV_CACHE_TOKENS", default_value_t = 16384)]
    pub kv_cache_tokens: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "CANDOR_BODY_LIMIT", default_value_t = 4 << 20)]
    pub body_limit: usize,
    /// Largest `n`.
    #[arg(long, env = "CANDOR_MAX_N", default_value_t = 16)]
    pub max_n: usize,
    /// Memory for responses kept for `previous_response_id` and `GET /v1/responses/{id}`, in
    /// MiB of their JSON (the oldest dropped first; 0 keeps none).
    #[arg(long, env = "CANDOR_RESPONSES_STORE_MB", default_value_t = 64)]
    pub responses_store_mb: usize,
    /// `max_tokens` when a request gives none.
    #[arg(long, env = "CANDOR_DEFAULT_MAX_TOKENS", default_value_t = 1024)]
    pub default_max_tokens: usize,
    /// Seconds running requests get to finish after SIGTERM.
    #[arg(long, env = "CANDOR_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Do not share computed prompt blocks across requests (the prefix cache is on by default).
    #[arg(long, env = "CANDOR_NO_PREFIX_CACHING", value_parser = boolish())]
    pub no_prefix_caching: bool,
    /// Host memory in MiB for the recurrent states of cached prefixes, for a model whose
    /// sequences carry one (Qwen3-Next, Granite 4.0-H, Nemotron-H, Mamba, Jamba, Falcon-H1...):
    /// the prefix cache's blocks hold keys and values, not the state a sequence reached, so a
    /// request resumes a cached prefix where a state was kept (every step budget of a prompt,
    /// where prompts branch, where a sequence ended). At most what is left of half the host's
    /// available memory beside the running sequences' states; -1: that much; 0 turns prefix
    /// caching off for such a model. llama-server's `--cache-ram`, the same default.
    #[arg(
        long,
        env = "CANDOR_CACHE_RAM",
        default_value_t = 8192,
        allow_negative_numbers = true
    )]
    pub cache_ram: i64,
    /// Batch-invariant kernels (CPU backend): a request's logits, hence its answer for a seed,
    /// do not depend on the requests computed beside it, on its prompt's chunks or on what the
    /// prefix cache held; by default the kernels pick by row count and round a little
    /// otherwise. Costs prefill speed (no AMX tiles or attention blocks; no weight panels on
    /// CPUs without AVX-512 VNNI) and long-context decode of few sequences (no split over keys).
    #[arg(long, env = "CANDOR_BATCH_INVARIANT", value_parser = boolish())]
    pub batch_invariant: bool,
    /// Speculative decoding by prompt lookup: a decoding request drafts up to this many tokens
    /// per step by finding its last tokens earlier in its prompt or answer, and keeps those the
    /// model would have produced itself: the same answers, several tokens per forward pass
    /// where an answer repeats its input (code edits, quotes). A request drafts only as many
    /// as its acceptance so far and the batch's size make worth their compute. 0 turns it off.
    #[arg(long, env = "CANDOR_SPECULATIVE_TOKENS", default_value_t = 4)]
    pub speculative_tokens: usize,
    /// Chat template to use instead of the model's: a Jinja file, or the template itself
    /// (text with `{{` or `{%`). Gives a base model chat, or fixes a model's template.
    #[arg(long, env = "CANDOR_CHAT_TEMPLATE")]
    pub chat_template: Option<String>,
    /// The format tool calls are read in and held to, instead of the one the chat template
    /// shows the model (detected): hermes, mistral, mistral_v11, granite, apriel (or jamba),
    /// nemotron_json, llama3_json, qwen3_coder, seed_oss, glm45, kimi_k2, functionary_v3_1, command_r7b,
    /// deepseek_v3, deepseek_v31, lfm2, apertus, minimax_m2 (vLLM's names where vLLM has
    /// them). For a template candor cannot tell, or one written by hand.
    #[arg(long, env = "CANDOR_TOOL_CALL_PARSER")]
    pub tool_call_parser: Option<crate::server::tools::format::ToolFormat>,
    /// How `/v1/embeddings` pools a text's final hidden states into one vector: `last` (the
    /// last token's, as decoder embedding models are trained), `mean`, or `cls` (the first
    /// token's, as BERT-style encoders are trained); `none` keeps every token's
    /// (llama-server's `/embedding` answers a row per token; the APIs that want one vector
    /// refuse); `splade` makes the model's sparse vector over the vocabulary (a SPLADE
    /// masked LM's, BGE-M3's lexical weights; `/embed_sparse` answers it under any pooling).
    /// Default: what the model's files say (a GGUF's `pooling_type`, a sentence-transformers
    /// checkout's `1_Pooling/config.json`, a SparseEncoder's `1_SpladePooling`), else `cls`
    /// for an encoder and `last` for a decoder.
    #[arg(long, env = "CANDOR_POOLING")]
    pub pooling: Option<crate::engine::pooling::Pooling>,
    /// text-embeddings-inference's `--auto-truncate`: its endpoints (`/embed`, `/embed_sparse`,
    /// `/embed_all`, `/predict`, `/rerank`, `/similarity`) cut an input past the context to
    /// fit unless a request says `truncate: false`, where without it they refuse it unless a
    /// request says `truncate: true`.
    #[arg(long, env = "CANDOR_AUTO_TRUNCATE", value_parser = boolish())]
    pub auto_truncate: bool,
    /// Serve a classifier made of the LM head's rows for these vocabulary strings (vLLM's
    /// `classifier_from_token`): `no,yes` serves Qwen3-Reranker as a cross-encoder (the score
    /// is yes minus no: its sigmoid is P(yes) between the two) for `/score` and `/rerank`;
    /// one token scores its logit; more, one label each for `/classify`. The model still
    /// generates. A model whose file has a classification head (a
    /// `*ForSequenceClassification` checkout, a reranker GGUF) is served as one without it.
    #[arg(long, env = "CANDOR_CLASSIFIER_FROM_TOKENS", value_delimiter = ',', num_args = 1..)]
    pub classifier_from_tokens: Vec<String>,
    /// LoRA adapters to serve beside the model, each as a model of its own: `NAME=PATH`
    /// (a PEFT directory with adapter_config.json and adapter_model.safetensors, or a
    /// llama.cpp LoRA GGUF). Requests naming NAME in `model` run with that adapter, in the
    /// same batches as the base model's. Repeat or list several.
    #[arg(long = "lora", visible_alias = "lora-modules", num_args = 1.., env = "CANDOR_LORA", value_delimiter = ',')]
    pub lora: Vec<crate::server::adapters::ServedAdapter>,
    /// Let clients load and unload LoRA adapters while the server runs
    /// (`POST /v1/load_lora_adapter` with `lora_name` and `lora_path`, `POST
    /// /v1/unload_lora_adapter` with `lora_name`, as vLLM's): off by default, since a load
    /// reads any path the server can.
    #[arg(long, env = "CANDOR_ALLOW_RUNTIME_LORA", value_parser = boolish())]
    pub allow_runtime_lora: bool,
    /// Turn llama-server's `GET /slots` off (it lists the running requests' ids, progress and
    /// sampling to any client with the API key).
    #[arg(long, env = "CANDOR_NO_SLOTS", value_parser = boolish())]
    pub no_slots: bool,
    /// A directory for llama-server's slot actions (`POST /slots/{id}?action=save|restore|
    /// erase` with `{"filename"}`): a slot's last prompt and its K/V saved to a file there, and
    /// restored into the prefix cache later, after a restart too, so a long prompt is not
    /// computed again. Created if missing. Without it the actions are off.
    #[arg(long, env = "CANDOR_SLOT_SAVE_PATH", value_name = "DIR")]
    pub slot_save_path: Option<std::path::PathBuf>,
    /// Most LoRA adapters served at once, those of --lora included: a load past it is
    /// refused (409) until one is unloaded. Each adapter keeps its weights on the device and
    /// the host, and each load rebuilds the stacks of all.
    #[arg(long, env = "CANDOR_MAX_LORA_ADAPTERS", default_value_t = 16)]
    pub max_lora_adapters: usize,
    /// How waiting requests are ordered: `priority` (a request's `priority`, lower first, then
    /// arrival; a better one may take a running worse one's place) or `fcfs` (arrival only; a
    /// `priority` other than 0 is refused, as vLLM does, so no client jumps the queue).
    #[arg(long, env = "CANDOR_SCHEDULING_POLICY", value_enum, default_value_t)]
    pub scheduling_policy: crate::server::validate::SchedulingPolicy,
    /// Most tokens a thinking model may spend in a thought before its close is forced and it
    /// answers (-1: no limit; 0: an empty thought), for requests that set no budget of their
    /// own (`thinking_token_budget`, Anthropic's `thinking.budget_tokens`), as llama-server's.
    #[arg(long, env = "CANDOR_REASONING_BUDGET", default_value_t = -1, allow_negative_numbers = true)]
    pub reasoning_budget: i64,
    /// Text written into a thought before its forced close when a budget runs out (e.g.
    /// "... time is up, let me answer."), unless a request sets `thinking_budget_message`.
    #[arg(long, env = "CANDOR_REASONING_BUDGET_MESSAGE", default_value = "")]
    pub reasoning_budget_message: String,
    /// Sampling defaults of requests that leave a field out (temperature, top_p, top_k,
    /// min_p, repetition_penalty): `auto` takes the model's (its checkout's
    /// generation_config.json or its GGUF's `general.sampling.*` keys), as vLLM and
    /// llama-server do; `vllm` (or `none`) keeps the server's own (temperature 1, nothing
    /// truncated); a folder takes its generation_config.json.
    #[arg(long, env = "CANDOR_GENERATION_CONFIG", default_value = "auto")]
    pub generation_config: crate::server::generation_defaults::GenerationConfigSource,
    /// Sampling defaults set over those, as a JSON object of the same fields (e.g.
    /// '{"temperature": 0.6, "top_p": 0.95}').
    #[arg(long, env = "CANDOR_OVERRIDE_GENERATION_CONFIG")]
    pub override_generation_config: Option<String>,
    /// Allow cross-origin requests from any origin.
    #[arg(long, env = "CANDOR_CORS", value_parser = boolish())]
    pub cors: bool,
    #[arg(long)]
    pub offline: bool,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = config(args)?;
    runtime()?
        .block_on(serve(config))
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// The tokio runtime the server's handlers run on (the engine has threads of its own).
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Output)
}

/// What `args` ask of the server: the model resolved (pulled if missing and allowed), the
/// compute threads fixed, every option checked.
pub fn config(args: ServeArgs) -> Result<ServeConfig, CliError> {
    let threads = configure_threads(args.threads);
    if args.batch_invariant {
        if args.backend != BackendChoice::Cpu {
            return Err(CliError::Usage(
                "--batch-invariant is a mode of the CPU backend's kernels".into(),
            ));
        }
        // Before any kernel runs: the first product fixes the mode for the process.
        if !candor_kernels::set_batch_invariant(true) {
            return Err(CliError::Usage(
                "batch-invariant mode was asked for after the kernels started".into(),
            ));
        }
    }
    let path = pull::resolve_model(&args.model, !args.offline)?;
    let mut names = args.served_model_name.clone().into_iter();
    let model_name = names.next().unwrap_or_else(|| {
        if pull::find(&args.model).is_some() {
            args.model.clone()
        } else {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| args.model.clone())
        }
    });
    if args.max_num_seqs == 0 || args.max_num_batched_tokens == 0 || args.kv_cache_tokens == 0 {
        return Err(CliError::Usage(
            "--max-num-seqs, --max-num-batched-tokens and --kv-cache-tokens must be positive"
                .into(),
        ));
    }
    let model_aliases: Vec<String> = names.collect();
    let served_names: Vec<&str> = std::iter::once(model_name.as_str())
        .chain(model_aliases.iter().map(String::as_str))
        .collect();
    check_names(&served_names)?;
    crate::server::adapters::check(&served_names, &args.lora, args.max_lora_adapters)
        .map_err(CliError::Usage)?;
    let thinking = crate::server::thinking::ThinkingDefaults {
        budget: crate::server::thinking::parse_default_budget(args.reasoning_budget)
            .map_err(CliError::Usage)?,
        message: args.reasoning_budget_message.clone(),
    };
    let generation_overrides = match &args.override_generation_config {
        Some(json) => {
            crate::server::generation_defaults::parse_overrides(json).map_err(CliError::Usage)?
        }
        None => Default::default(),
    };
    let chat_template = args
        .chat_template
        .as_deref()
        .map(read_chat_template)
        .transpose()?;
    let config = ServeConfig {
        model_path: path,
        model_name,
        model_aliases,
        host: args.host,
        port: args.port,
        api_keys: crate::server::auth::ApiKeys::new(args.api_key, args.api_key_file.as_deref())
            .map_err(CliError::Usage)?,
        tls: args
            .ssl_certfile
            .zip(args.ssl_keyfile)
            .map(|(cert, key)| crate::server::TlsFiles {
                cert,
                key,
                client_ca: args.ssl_ca_certs.map(|ca| {
                    let asked = args.ssl_cert_reqs;
                    (
                        ca,
                        asked.unwrap_or(crate::server::tls_config::ClientCerts::Required),
                    )
                }),
                refresh: args.enable_ssl_refresh,
            }),
        threads,
        backend: args.backend,
        dequantize: args.dequantize,
        kv_cache_dtype: args.kv_cache_dtype,
        max_num_seqs: args.max_num_seqs,
        max_num_batched_tokens: args.max_num_batched_tokens,
        max_waiting: args.max_waiting,
        max_model_len: args.max_model_len,
        kv_cache_tokens: args.kv_cache_tokens,
        body_limit: args.body_limit,
        max_n: args.max_n.max(1),
        default_max_tokens: args.default_max_tokens.max(1),
        responses_store_bytes: args.responses_store_mb.saturating_mul(1 << 20),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        cors: args.cors,
        prefix_caching: !args.no_prefix_caching,
        state_cache_bytes: match args.cache_ram {
            mib if mib < 0 => None,
            mib => Some((mib as u64).saturating_mul(1 << 20)),
        },
        speculative_tokens: args.speculative_tokens,
        chat_template,
        tool_call_parser: args.tool_call_parser,
        pooling: args.pooling,
        auto_truncate: args.auto_truncate,
        classifier_tokens: args.classifier_from_tokens,
        adapters: args.lora,
        runtime_lora: args.allow_runtime_lora,
        slots: !args.no_slots,
        slot_save_path: args.slot_save_path.clone(),
        max_lora_adapters: args.max_lora_adapters,
        scheduling: args.scheduling_policy,
        thinking,
        generation_config: args.generation_config,
        generation_overrides,
    };
    Ok(config)
}

/// The served names are not empty and not given twice.
fn check_names(all: &[&str]) -> Result<(), CliError> {
    for (i, name) in all.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(CliError::Usage(
                "--served-model-name: a name cannot be empty".into(),
            ));
        }
        if all[..i].contains(name) {
            return Err(CliError::Usage(format!(
                "--served-model-name: `{name}` is given twice"
            )));
        }
    }
    Ok(())
}

/// `--chat-template`: a file's contents, or the argument itself when it is a template.
fn read_chat_template(arg: &str) -> Result<String, CliError> {
    match std::fs::read_to_string(arg) {
        Ok(text) => Ok(text),
        Err(_) if arg.contains("{{") || arg.contains("{%") => Ok(arg.to_string()),
        Err(e) => Err(CliError::Usage(format!(
            "--chat-template {arg}: not a readable file ({e}) nor a Jinja template"
        ))),
    }
}
