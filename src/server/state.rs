//! Shared server state: configuration, and the loaded model once it is ready.
use super::adapters::Adapters;
use super::error::ApiError;
use super::lora_list::ListAt;
use super::validate::Limits;
use crate::engine::grammar::GrammarCompiler;
use crate::engine::scheduler::EngineHandle;
use crate::engine::stats::EngineStats;
use candor_models::chat_template::ChatTemplate;
use candor_models::lora::LoraMix;
use candor_models::tokenizer::Tokenizer;
use std::sync::{Arc, OnceLock};

pub struct Ready {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<Arc<ChatTemplate>>,
    /// The template a request with tools renders with, where the model keeps one apart
    /// (`tool_use` among its named templates, as transformers picks it: Command R, Hermes 2
    /// Pro); None: `template` serves those too.
    pub tool_template: Option<Arc<ChatTemplate>>,
    /// The call format `--tool-call-parser` names; None: the template's is detected.
    pub tool_format: Option<crate::server::tools::format::ToolFormat>,
    pub eos_ids: Vec<u32>,
    pub limits: Limits,
    pub stats: Arc<EngineStats>,
    /// Returned with every completion (`server::fingerprint`).
    pub system_fingerprint: String,
    /// Fill-in-the-middle tokens (prefix, suffix, middle), for `suffix` in completions.
    pub fim: Option<candor_models::tokenizer::Fim>,
    /// Built on the first constrained request (`structured::compiler`).
    pub grammar: OnceLock<Result<GrammarCompiler, String>>,
    /// Built on the first request that follows a thought (`thinking::thought`).
    pub thought_markers: OnceLock<Arc<crate::engine::thought::ThoughtMarkers>>,
    /// The chat template's thought tags, where the model thinks (told once, at load).
    pub think_tags: Option<crate::server::reasoning::ThinkTags>,
    /// Sequences one engine step runs (llama-server's "slots", for `/props`).
    pub max_num_seqs: usize,
    /// How `/v1/embeddings` pools a text's final hidden states.
    pub pooling: crate::engine::pooling::Pooling,
    /// The model's hidden size: the width of a token's state.
    pub hidden_size: usize,
    /// The sentence-transformers `Dense` modules every pooled embedding runs through.
    pub dense: Option<Arc<crate::engine::dense::DenseModules>>,
    /// The checkout's sentence-transformers prompts, put before embedded texts.
    pub prompts: crate::server::embedding_prompts::EmbeddingPrompts,
    /// The classification head `/classify`, `/score` and `/rerank` run (`server::classify`).
    pub classifier: Option<Arc<candor_models::classifier::Classifier>>,
    /// BGE-M3's ColBERT head: its vectors are a token's (`/pooling`'s `token_embed`).
    pub colbert: Option<Arc<candor_models::encoder::ColbertHead>>,
    /// BGE-M3's lexical layer token by token (`/pooling`'s `token_classify`).
    pub token_weights: Option<Arc<candor_models::encoder::TokenWeights>>,
    /// TEI's endpoints cut an input past the context where a request does not say
    /// (`--auto-truncate`).
    pub auto_truncate: bool,
    /// A token classifier's head (NER: `server::token_classification`), scoring every token.
    pub token_classifier: Option<Arc<candor_models::classifier::Classifier>>,
    /// An inference-free SPLADE model's static query route (`server::sparse_route`).
    pub static_sparse: Option<Arc<candor_models::encoder::StaticRoute>>,
    /// Whether the model makes sparse vectors over the vocabulary (`/embed_sparse`): a SPLADE
    /// masked LM's head or BGE-M3's lexical layer.
    pub sparse: bool,
    /// False for a model served for its classification head alone: generation is refused.
    pub generates: bool,
    /// An encoder (BERT-style): inputs fill the whole context and are cut at their tail,
    /// keeping `[CLS]` and the closing `[SEP]`.
    pub encoder: bool,
    /// Whether a text's tokens end with the tokenizer's special tokens that a cut keeps (an
    /// encoder's `[SEP]`); not a static embedding model's, whose texts have none.
    pub special_ends: bool,
    /// What the model is, for clients that list models with their details (Ollama's).
    pub facts: ModelFacts,
    /// The LoRA adapters served beside the model (the state's), by the engine's slot.
    pub adapters: Arc<Adapters>,
    /// DRY's sequence breakers as token sets, built on first use.
    pub dry_breakers: super::dry::BreakerSets,
}

impl Ready {
    /// Dimensions of a pooled embedding: the hidden size, or the last `Dense` module's; a
    /// SPLADE vector's, the vocabulary's.
    pub fn embedding_size(&self) -> usize {
        if self.pooling == crate::engine::pooling::Pooling::Sparse {
            return self.limits.vocab;
        }
        self.dense
            .as_ref()
            .map_or(self.hidden_size, |d| d.outputs())
    }

    /// The width of a token's vector (`routes::embeddings::token_vectors`): the ColBERT
    /// head's, or the hidden size.
    pub fn token_width(&self) -> usize {
        self.colbert
            .as_ref()
            .map_or(self.hidden_size, |c| c.width())
    }

    /// The dimensions a request's embeddings keep (`dimensions`; all where it asks none). A
    /// SPLADE vector is a weight per vocabulary entry, not a Matryoshka embedding: its first
    /// entries are no shorter version of it, so it is not cut.
    pub fn embedding_dimensions(&self, asked: Option<i64>) -> Result<usize, ApiError> {
        let all = self.embedding_size();
        match asked {
            Some(d)
                if self.pooling == crate::engine::pooling::Pooling::Sparse && d != all as i64 =>
            {
                Err(ApiError::invalid(
                    "dimensions",
                    format!(
                        "this model's vectors are SPLADE's, a weight for each of the {all} \
                         vocabulary entries: `dimensions` cannot shorten them"
                    ),
                ))
            }
            _ => crate::server::embeddings::dimensions(asked, all),
        }
    }

    /// The adapters a request runs with: the one its `model` names, at its own scale; for
    /// the base model, those of its `lora` list (llama-server's), else those `POST
    /// /lora-adapters` set for it (none unless set).
    pub fn lora_of(
        &self,
        model: Option<&str>,
        list: Option<&[(u32, f32)]>,
    ) -> Result<LoraMix, ApiError> {
        match (self.adapters.slot_of(model), list) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "lora",
                "`lora` lists adapters to run over the base model: send it with the base \
                 model's name in `model` (or none), or name the adapter in `model` alone",
            )),
            (Some(slot), None) => Ok(LoraMix::one(slot)),
            (None, Some(list)) => self
                .adapters
                .mix_of(list)
                .map_err(|e| e.for_list(ListAt::Field("lora"))),
            (None, None) => Ok(self.adapters.base_mix()),
        }
    }
}

/// The served model as a file: what Ollama's `/api/tags` and `/api/show` describe.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    pub arch: &'static str,
    /// `gguf` or `safetensors`.
    pub format: &'static str,
    pub size_bytes: u64,
    pub modified: Option<std::time::SystemTime>,
    pub quantization: Option<String>,
    pub parameters: Option<u64>,
    /// The model's own context length (the server's may be shorter).
    pub trained_context: usize,
    /// Where the weights live: `cpu`, `cuda`, a plugin's kind.
    pub device_kind: String,
}

pub struct AppState {
    pub model_name: String,
    /// The model's other names (`--served-model-name a b`): accepted and listed, answered as
    /// `model_name`.
    pub model_aliases: Vec<String>,
    /// LoRA adapters requests may name instead of the base model (`--lora`, and those
    /// loaded while serving).
    pub adapters: Arc<Adapters>,
    /// Whether `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` may change them
    /// (`--allow-runtime-lora`).
    pub runtime_lora: bool,
    /// Whether `GET /slots` answers (`--no-slots`).
    pub slots: bool,
    /// Where slot actions keep their files (`--slot-save-path`); none: they are off.
    pub slot_save_path: Option<std::path::PathBuf>,
    /// The keys a request may give (none: no key asked for).
    pub api_keys: super::auth::ApiKeys,
    pub created: u64,
    pub ready: OnceLock<Ready>,
    /// Why loading failed, for /health.
    pub load_error: OnceLock<String>,
    /// Responses kept for `previous_response_id` and `/v1/responses/{id}`.
    pub responses: Arc<crate::server::responses::store::ResponseStore>,
    /// Conversations responses continue and join (`/v1/conversations`).
    pub conversations: Arc<crate::server::responses::conversations::ConversationStore>,
}

impl AppState {
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        match (self.ready.get(), self.load_error.get()) {
            (Some(r), _) => Ok(r),
            (None, Some(e)) => Err(ApiError::unavailable(format!(
                "the model failed to load: {e}"
            ))),
            (None, None) => Err(ApiError::unavailable("the model is still loading")),
        }
    }

    /// Requests name the served model or one of its adapters (or leave it out).
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            None => Ok(()),
            Some(m) if self.names_base_model(m) => Ok(()),
            Some(m) if self.adapters.get(m).is_some() => Ok(()),
            Some(m) => Err(ApiError::not_found(format!(
                "the model `{m}` does not exist; this server serves {}",
                self.model_names()
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_code("model_not_found")),
        }
    }

    /// Whether `name` is one of the base model's names.
    pub fn names_base_model(&self, name: &str) -> bool {
        name == self.model_name || self.model_aliases.iter().any(|a| a == name)
    }

    /// The base model's names, then its adapters'.
    pub fn model_names(&self) -> Vec<String> {
        std::iter::once(self.model_name.clone())
            .chain(self.model_aliases.iter().cloned())
            .chain(self.adapters.served().into_iter().map(|a| a.name))
            .collect()
    }

    /// The model an answer names: the adapter the request named, else the base model.
    pub fn answering_model(&self, sent: Option<&str>) -> String {
        match sent {
            Some(m) if self.adapters.get(m).is_some() => m.to_string(),
            _ => self.model_name.clone(),
        }
    }
}

pub type SharedState = Arc<AppState>;

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A response id such as `chatcmpl-5f0c...`.
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("{prefix}-{n:032x}")
}

/// An id in the underscore style of OpenAI's calls and response items: `call_5f0c...`,
/// `resp_...`, `msg_...`.
pub fn new_item_id(prefix: &str) -> String {
    new_id(prefix).replacen('-', "_", 1)
}
