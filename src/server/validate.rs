//! Range checks of request fields and their translation into engine parameters.
use super::error::ApiError;
use super::openai::{CommonParams, Dialect};
use super::sampler_chain;
use crate::engine::sampler::SamplingParams;
use candor_models::generation_config::{ranges, FieldRange, GenerationDefaults};

/// Limits the server enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub context: usize,
    pub vocab: usize,
    pub max_n: usize,
    /// Most choices (prompts x `n`) one request may ask for: a batch of prompts may queue
    /// whole, as many as the queue holds.
    pub max_choices: usize,
    pub max_stop: usize,
    pub max_logprobs: usize,
    pub default_max_tokens: usize,
    /// How waiting requests are ordered (`--scheduling-policy`).
    pub scheduling: SchedulingPolicy,
    /// The thinking budget of requests that set none (`--reasoning-budget`).
    pub thinking: super::thinking::ThinkingDefaults,
    /// Sampling values of the fields a request leaves out (the model's, `--generation-config`).
    pub sampling: GenerationDefaults,
}

/// vLLM's `--scheduling-policy`: whether a request's `priority` orders the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SchedulingPolicy {
    /// Lower `priority` first, then arrival; a better request may take a worse one's place.
    #[default]
    Priority,
    /// Arrival order only: a `priority` other than 0 is refused (as vLLM refuses it), so no
    /// client can jump the queue.
    Fcfs,
}

/// A request's `priority` (0 when absent), refused under first-come-first-served scheduling.
pub fn priority(limits: &Limits, sent: Option<i64>) -> Result<i64, ApiError> {
    match (limits.scheduling, sent.unwrap_or(0)) {
        (SchedulingPolicy::Fcfs, p) if p != 0 => Err(ApiError::invalid(
            "priority",
            format!(
                "`priority` {p}: this server schedules first come, first served (start it with \
                 --scheduling-policy priority to order requests by priority)"
            ),
        )),
        (_, p) => Ok(p),
    }
}

/// What the engine needs for one request (all `n` choices).
#[derive(Debug, Clone)]
pub struct Plan {
    pub max_tokens: usize,
    /// Without DRY, which needs the prompt and the vocabulary (`dry`, `generation::start`).
    pub sampling: SamplingParams,
    pub dry: Option<super::dry::DryRequest>,
    /// llama.cpp's infill sampler, which needs the vocabulary's bytes (`generation::start`).
    pub infill: bool,
    pub stop: Vec<String>,
    /// A stop string that ends the answer stays in it (`include_stop_str_in_output`).
    pub include_stop: bool,
    /// Tokens that end the answer besides the model's end tokens (`stop_token_ids`).
    pub stop_token_ids: Vec<u32>,
    pub n: usize,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
    /// `respond::Meta::continuous_usage`.
    pub continuous_usage: bool,
    /// Decode special tokens into the text (tool-call markers that are special tokens).
    pub keep_special_tokens: bool,
    /// Special tokens left out of the text all the same (`reasoning::ANSWER_WRAPPERS`).
    pub hidden_special_tokens: Vec<u32>,
    /// The answer as the client expects it (`prediction`, OpenAI's Predicted Outputs).
    pub prediction: Option<String>,
    /// Lower goes first (vLLM's `priority`).
    pub priority: i64,
    /// The model the request named (the base model or one of its LoRA adapters; checked
    /// before the plan is made).
    pub model: Option<String>,
    /// `CommonParams::logprobs_after_sampling`.
    pub logprobs_after_sampling: bool,
    /// `CommonParams::return_progress`, for a stream.
    pub return_progress: bool,
    /// Biases named by a text: each of its tokens gets it (`generation::start` tokenizes).
    pub text_bias: Vec<(String, f32)>,
    /// `EngineRequest::cache_prompt`.
    pub cache_prompt: bool,
    /// `EngineRequest::cache_salt`.
    pub cache_salt: Option<std::sync::Arc<str>>,
    /// vLLM's `allowed_token_ids`, checked against the vocabulary.
    pub allowed_token_ids: Option<Vec<u32>>,
    /// vLLM's `bad_words`, tokenized by `generation::start` (`banned_words::banned`).
    pub bad_words: Vec<String>,
    /// vLLM's `prompt_logprobs`: alternatives per prompt token (`server::prompt_logprobs`).
    pub prompt_logprobs: Option<usize>,
    /// llama-server's `lora` list, checked as numbers (the ids against the served adapters
    /// when the request starts: `Ready::lora_of`).
    pub lora: Option<Vec<(u32, f32)>>,
}

/// `v` (or `default`) as an f32 within `range`; out of it a 400 naming `param`.
pub(super) fn range(
    param: &str,
    v: Option<f64>,
    range: FieldRange,
    default: f64,
) -> Result<f32, ApiError> {
    match v {
        None => Ok(default as f32),
        Some(x) if range.contains(x) => Ok(x as f32),
        Some(x) => Err(ApiError::invalid(
            param,
            format!("`{param}` must be {range}, got {x}"),
        )),
    }
}

/// vLLM's `truncate_prompt_tokens`: keep the prompt's last `k` tokens (-1: the context less
/// one, room for a token of answer). Returns whether tokens were dropped.
pub fn truncate_prompt(
    ids: &mut Vec<u32>,
    k: Option<i64>,
    limits: &Limits,
) -> Result<bool, ApiError> {
    let Some(keep) = kept_tokens(k, limits, limits.context.saturating_sub(1))? else {
        return Ok(false);
    };
    if ids.len() <= keep {
        return Ok(false);
    }
    ids.drain(..ids.len() - keep);
    Ok(true)
}

/// `truncate_prompt_tokens` of an encoder's input: its first `k` tokens, the last of them its
/// closing special token (`[SEP]`) where it has one (`closed`), as the tokenizer truncates
/// (-1: the whole context, an encoder answers no token). Cutting its head instead would drop
/// `[CLS]`, whose state many encoders pool. Returns whether tokens were dropped.
pub fn truncate_encoder_input(
    ids: &mut Vec<u32>,
    k: Option<i64>,
    limits: &Limits,
    closed: bool,
) -> Result<bool, ApiError> {
    let Some(keep) = kept_tokens(k, limits, limits.context)? else {
        return Ok(false);
    };
    if !closed {
        let cut = ids.len() > keep;
        ids.truncate(keep);
        return Ok(cut);
    }
    Ok(cut_encoder_input(ids, keep))
}

/// An encoder's input cut to its first `keep` tokens, its last token (the closing `[SEP]`)
/// kept last. Returns whether tokens were dropped.
pub fn cut_encoder_input(ids: &mut Vec<u32>, keep: usize) -> bool {
    if ids.len() <= keep {
        return false;
    }
    let last = ids[ids.len() - 1];
    ids.truncate(keep.saturating_sub(1).max(1));
    if keep >= 2 {
        ids.push(last);
    }
    true
}

/// An encoder's input cut to `keep` tokens from its tail: its first token (`[CLS]`) then its
/// last `keep - 1` (the closing `[SEP]` among them), as a tokenizer truncating from the left
/// cuts a text between its special tokens. Returns whether tokens were dropped.
pub fn cut_encoder_input_head(ids: &mut Vec<u32>, keep: usize) -> bool {
    if ids.len() <= keep {
        return false;
    }
    let tail = keep.saturating_sub(1);
    ids.drain(1..ids.len() - tail);
    true
}

/// How many tokens `truncate_prompt_tokens` keeps (None: no truncation asked); -1 keeps
/// `whole`.
fn kept_tokens(k: Option<i64>, limits: &Limits, whole: usize) -> Result<Option<usize>, ApiError> {
    match k {
        None => Ok(None),
        Some(-1) => Ok(Some(whole)),
        Some(k) if k >= 1 && k as u64 <= limits.context as u64 => Ok(Some(k as usize)),
        Some(k) => Err(ApiError::invalid(
            "truncate_prompt_tokens",
            format!(
                "`truncate_prompt_tokens` must be -1 or in [1, {}] (the context), got {k}",
                limits.context
            ),
        )),
    }
}

/// The plan of a chat request (its prompt is `messages`).
pub fn plan(p: &CommonParams, prompt_len: usize, limits: &Limits) -> Result<Plan, ApiError> {
    plan_with(p, prompt_len, limits, 1, "messages")
}

/// The plan of a text completion (its prompt is `prompt`). One that echoes its prompt (`echo`)
/// may ask for no new tokens at all, to have the prompt scored only, as evaluation harnesses do;
/// so may llama-server's `/completion`, whose `n_predict: 0` only computes the prompt into the
/// cache (llama.vim warms it so with the text around the cursor).
pub fn completion_plan(
    p: &CommonParams,
    prompt_len: usize,
    limits: &Limits,
    echo: bool,
) -> Result<Plan, ApiError> {
    let prompt_only = echo || p.dialect == Dialect::LlamaServer;
    plan_with(p, prompt_len, limits, i64::from(!prompt_only), "prompt")
}

fn plan_with(
    p: &CommonParams,
    prompt_len: usize,
    limits: &Limits,
    least: i64,
    prompt_param: &str,
) -> Result<Plan, ApiError> {
    if prompt_len == 0 {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    if prompt_len >= limits.context {
        return Err(ApiError::invalid(
            prompt_param,
            format!(
                "the prompt has {prompt_len} tokens; this model's context is {} tokens",
                limits.context
            ),
        )
        .with_code("context_length_exceeded"));
    }
    let (param, requested) = match (p.max_completion_tokens, p.max_tokens) {
        (Some(v), _) => ("max_completion_tokens", Some(v)),
        (None, v) => ("max_tokens", v),
    };
    let room = limits.context - prompt_len;
    let max_tokens = match requested {
        None => limits.default_max_tokens.min(room),
        Some(v) if v < least => return Err(ApiError::invalid(param, format!("`{param}` must be at least {least}, got {v}"))),
        Some(v) if v as u64 > room as u64 => {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` is {v}, but the prompt has {prompt_len} tokens and the context is {} tokens (at most {room} new tokens)", limits.context),
            )
            .with_code("context_length_exceeded"))
        }
        Some(v) => v as usize,
    };
    let n = match p.n {
        None => 1,
        Some(v) if v >= 1 && v as u64 <= limits.max_n as u64 => v as usize,
        Some(v) => {
            return Err(ApiError::invalid(
                "n",
                format!("`n` must be in [1, {}], got {v}", limits.max_n),
            ))
        }
    };
    let stop = p.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > limits.max_stop {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "at most {} stop sequences, got {}",
                limits.max_stop,
                stop.len()
            ),
        ));
    }
    if stop.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid(
            "stop",
            "stop sequences must not be empty",
        ));
    }
    let defaults = super::generation_defaults::applied(&limits.sampling);
    let top_k = match p.top_k {
        None => defaults.top_k,
        Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => {
            return Err(ApiError::invalid(
                "top_k",
                format!("`top_k` must be -1 (off) or positive, got {k}"),
            ))
        }
    };
    let bias = match &p.logit_bias {
        Some(bias) => bias.split(limits.vocab)?,
        None => Default::default(),
    };
    let (logit_bias, text_bias) = (bias.by_id, bias.by_text);
    let min_tokens = match p.min_tokens {
        None => 0,
        Some(m) if m >= 0 && m as u64 <= max_tokens as u64 => m as usize,
        Some(m) => {
            return Err(ApiError::invalid(
                "min_tokens",
                format!(
                "`min_tokens` must be in [0, {max_tokens}] (the answer's length limit), got {m}"
            ),
            ))
        }
    };
    let stop_token_ids = vocab_ids(
        "stop_token_ids",
        p.stop_token_ids.as_deref().unwrap_or_default(),
        limits.vocab,
    )?;
    let mut sampling = SamplingParams {
        temperature: range(
            "temperature",
            p.temperature,
            ranges::TEMPERATURE,
            defaults.temperature,
        )?,
        top_p: range("top_p", p.top_p, ranges::TOP_P, defaults.top_p)?,
        top_k,
        min_p: range("min_p", p.min_p, ranges::MIN_P, defaults.min_p)?,
        penalties: super::llama_samplers::penalties(p, &defaults)?,
        seed: p.seed.map(|s| s as u64),
        logit_bias,
        min_tokens,
        // Set by `generation::start` with the tokenizer (`banned_words::banned`).
        banned: None,
        // llama.cpp's -1 (or any value <= 0) is off.
        top_n_sigma: match p.samplers.top_n_sigma {
            Some(n) if n > 0.0 && n <= 1e6 => n as f32,
            Some(n) if n <= 0.0 && n.is_finite() => 0.0,
            Some(n) => {
                return Err(ApiError::invalid(
                    "top_n_sigma",
                    format!("`top_n_sigma` must be at most 1e6 (-1 or 0: off), got {n}"),
                ))
            }
            None => 0.0,
        },
        typical_p: match p.samplers.typical_p {
            None => 1.0,
            // Small enough to round to 0 in f32 is 0.
            Some(x) if (x as f32) > 0.0 && x <= 1.0 => x as f32,
            Some(x) => {
                return Err(ApiError::invalid(
                    "typical_p",
                    format!("`typical_p` must be in (0, 1], got {x}"),
                ))
            }
        },
        xtc_probability: range(
            "xtc_probability",
            p.samplers.xtc_probability,
            ranges::XTC_PROBABILITY,
            defaults.xtc_probability,
        )?,
        xtc_threshold: range(
            "xtc_threshold",
            p.samplers.xtc_threshold,
            ranges::XTC_THRESHOLD,
            defaults.xtc_threshold,
        )?,
        dry: None,
        mirostat: super::llama_samplers::mirostat(p, &defaults)?,
        temperature_last: false,
        dynamic_temperature: super::llama_samplers::dynamic_temperature(p)?,
        // Built with the vocabulary at the start (`generation::start`).
        infill: None,
        min_keep: match p.samplers.min_keep {
            None => 0,
            // More than the vocabulary keeps it all.
            Some(n) if n >= 0 => (n as u64).min(limits.vocab as u64) as usize,
            Some(n) => {
                return Err(ApiError::invalid(
                    "min_keep",
                    format!("`min_keep` must be 0 or more, got {n}"),
                ))
            }
        },
        // Set by the request's `samplers` where the fixed order cannot follow it.
        order: None,
    };
    let mut dry = super::dry::dry_request(&p.samplers)?;
    let chain = match sampler_chain::chain(p.samplers.samplers.as_ref())? {
        None if p.dialect == Dialect::LlamaServer => Some(sampler_chain::Chain::llama_cpp()),
        chain => chain,
    };
    let mut infill = false;
    if let Some(chain) = chain {
        let needs = chain.apply(&mut sampling)?;
        infill = needs.infill;
        if !needs.dry {
            dry = None;
        }
    }
    Ok(Plan {
        max_tokens,
        sampling,
        dry,
        infill,
        stop,
        include_stop: p.include_stop_str_in_output,
        stop_token_ids,
        n,
        ignore_eos: p.ignore_eos,
        stream: p.stream,
        include_usage: p.stream_options.as_ref().is_some_and(|o| o.include_usage),
        continuous_usage: p
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage && o.continuous_usage_stats),
        keep_special_tokens: p.skip_special_tokens == Some(false),
        hidden_special_tokens: Vec::new(),
        prediction: prediction(p.prediction.as_ref())?,
        priority: priority(limits, p.priority)?,
        model: p.model.clone(),
        logprobs_after_sampling: p.logprobs_after_sampling,
        return_progress: p.return_progress && p.stream,
        text_bias,
        cache_prompt: p.samplers.cache_prompt.unwrap_or(true),
        cache_salt: cache_salt(p.cache_salt.as_deref())?,
        allowed_token_ids: super::banned_words::allowed_ids(
            p.allowed_token_ids.as_deref(),
            limits.vocab,
        )?,
        bad_words: super::banned_words::bad_words(p.bad_words.as_deref())?,
        prompt_logprobs: prompt_logprobs(limits, p.prompt_logprobs, p.stream)?,
        lora: p
            .samplers
            .lora
            .as_deref()
            .map(|list| super::lora_list::checked(super::lora_list::ListAt::Field("lora"), list))
            .transpose()?,
    })
}

/// Token ids sent as `param`, each checked against a vocabulary of `vocab` tokens.
pub fn vocab_ids(param: &str, ids: &[i64], vocab: usize) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .map(|&t| {
            u32::try_from(t)
                .ok()
                .filter(|&id| (id as usize) < vocab)
                .ok_or_else(|| {
                    ApiError::invalid(
                        param,
                        format!("token id {t} is out of the vocabulary ({vocab})"),
                    )
                })
        })
        .collect()
}

/// vLLM's `cache_salt`: any non-empty string (a random one of 256 bits, as vLLM advises, is
/// what keeps tenants apart).
fn cache_salt(salt: Option<&str>) -> Result<Option<std::sync::Arc<str>>, ApiError> {
    match salt {
        Some("") => Err(ApiError::invalid(
            "cache_salt",
            "`cache_salt` must be a non-empty string (leave it out for the shared cache)",
        )),
        other => Ok(other.map(std::sync::Arc::from)),
    }
}

/// vLLM's `prompt_logprobs`: 0 to the most logprobs (-1, vLLM's "all", is refused: a 150k
/// vocabulary per prompt token), and not in a stream, as vLLM refuses it there.
fn prompt_logprobs(
    limits: &Limits,
    sent: Option<i64>,
    stream: bool,
) -> Result<Option<usize>, ApiError> {
    let Some(k) = sent else {
        return Ok(None);
    };
    if k < 0 || k as u64 > limits.max_logprobs as u64 {
        return Err(ApiError::invalid(
            "prompt_logprobs",
            format!("`prompt_logprobs` must be in [0, {}]", limits.max_logprobs),
        ));
    }
    if stream {
        return Err(ApiError::invalid(
            "prompt_logprobs",
            "`prompt_logprobs` are not available with `stream: true`",
        ));
    }
    Ok(Some(k as usize))
}

/// How many top alternatives each answer token reports: `top_logprobs` (0 by default) when
/// `logprobs` asks for logprobs at all, else none.
pub fn top_logprobs(
    limits: &Limits,
    logprobs: bool,
    top: Option<i64>,
) -> Result<Option<usize>, ApiError> {
    match (logprobs, top) {
        (_, Some(k)) if k < 0 || k as u64 > limits.max_logprobs as u64 => Err(ApiError::invalid(
            "top_logprobs",
            format!("`top_logprobs` must be in [0, {}]", limits.max_logprobs),
        )),
        (false, Some(k)) if k > 0 => Err(ApiError::invalid(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        )),
        (true, k) => Ok(Some(k.unwrap_or(0) as usize)),
        (false, _) => Ok(None),
    }
}

/// `prediction`: `{"type": "content", "content": TEXT or [text parts]}`.
fn prediction(p: Option<&serde_json::Value>) -> Result<Option<String>, ApiError> {
    let Some(p) = p.filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid(
            "prediction",
            "`prediction` must be `{\"type\": \"content\", \"content\": TEXT}` (or text parts)",
        )
    };
    if p.get("type").and_then(|t| t.as_str()) != Some("content") {
        return Err(bad());
    }
    let text = match p.get("content") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .map(|part| part.get("text").and_then(|t| t.as_str()).ok_or_else(bad))
            .collect::<Result<String, _>>()?,
        _ => return Err(bad()),
    };
    no_nul("prediction", &text)?;
    Ok(Some(text))
}

/// `v[key]` as a string; its absence or another type is a 400 naming `param.key` (the
/// hand-read items of the Responses and Messages APIs).
pub fn string_field<'a>(
    v: &'a serde_json::Value,
    key: &str,
    param: &str,
) -> Result<&'a str, ApiError> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid(
                &format!("{param}.{key}"),
                format!("`{key}` must be a string"),
            )
        })
}

/// Text fields may not carry NUL bytes (they would reach the tokenizer and templates).
pub fn no_nul(param: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(ApiError::invalid(
            param,
            format!("`{param}` contains a NUL character"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            context: 100,
            vocab: 50,
            max_n: 4,
            max_choices: 8,
            max_stop: 4,
            max_logprobs: 20,
            default_max_tokens: 16,
            scheduling: SchedulingPolicy::Priority,
            thinking: Default::default(),
            sampling: Default::default(),
        }
    }

    #[test]
    fn truncation_keeps_the_prompt_s_end() {
        let l = limits();
        let mut ids: Vec<u32> = (0..10).collect();
        assert!(!truncate_prompt(&mut ids, None, &l).unwrap());
        assert!(truncate_prompt(&mut ids, Some(3), &l).unwrap());
        assert_eq!(ids, [7, 8, 9]);
        assert!(
            !truncate_prompt(&mut ids, Some(5), &l).unwrap(),
            "already shorter"
        );
        let mut long: Vec<u32> = (0..150).collect();
        assert!(truncate_prompt(&mut long, Some(-1), &l).unwrap());
        assert_eq!(
            (long.len(), long[0]),
            (99, 51),
            "the context (100) less one"
        );
        for bad in [0, -2, 101] {
            let e = truncate_prompt(&mut ids, Some(bad), &l).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("truncate_prompt_tokens"));
        }
    }

    #[test]
    fn an_encoder_input_keeps_its_head_and_its_closing_token() {
        let l = limits();
        // [CLS]=2 t t t t [SEP]=3
        let mut ids = vec![2, 10, 11, 12, 13, 3];
        assert!(truncate_encoder_input(&mut ids, Some(4), &l, true).unwrap());
        assert_eq!(ids, [2, 10, 11, 3]);
        assert!(!truncate_encoder_input(&mut ids, Some(4), &l, true).unwrap());
        let mut long: Vec<u32> = (0..150).collect();
        assert!(truncate_encoder_input(&mut long, Some(-1), &l, true).unwrap());
        assert_eq!(
            (long.len(), long[0], long[99]),
            (100, 0, 149),
            "the whole context"
        );
        let mut one = vec![2, 10, 3];
        assert!(cut_encoder_input(&mut one, 1));
        assert_eq!(one, [2]);
        // From the left (text-embeddings-inference's `truncation_direction: left`).
        let mut tail = vec![2, 10, 11, 12, 13, 3];
        assert!(cut_encoder_input_head(&mut tail, 4));
        assert_eq!(tail, [2, 12, 13, 3]);
        assert!(!cut_encoder_input_head(&mut tail, 4));
        assert!(cut_encoder_input_head(&mut tail, 1));
        assert_eq!(tail, [2]);
        assert!(truncate_encoder_input(&mut ids, Some(0), &l, true).is_err());
        // Without its special tokens (`add_special_tokens: false`) the text's first tokens.
        let mut text = vec![10, 11, 12, 13];
        assert!(truncate_encoder_input(&mut text, Some(2), &l, false).unwrap());
        assert_eq!(text, [10, 11]);
    }

    /// The model's defaults fill the fields a request leaves out; a field sent wins, and
    /// `top_k: -1` turns the model's top-k off.
    #[test]
    fn model_defaults_fill_what_a_request_leaves_out() {
        let qwen = Limits {
            sampling: GenerationDefaults {
                temperature: Some(0.7),
                top_p: Some(0.8),
                top_k: Some(20),
                min_p: None,
                repetition_penalty: Some(1.05),
                ..Default::default()
            },
            ..limits()
        };
        let s = plan(&CommonParams::default(), 10, &qwen).unwrap().sampling;
        assert_eq!(
            (
                s.temperature,
                s.top_p,
                s.top_k,
                s.min_p,
                s.penalties.repetition
            ),
            (0.7, 0.8, 20, 0.0, 1.05)
        );
        let sent = CommonParams {
            temperature: Some(0.0),
            top_k: Some(-1),
            repetition_penalty: Some(1.0),
            min_p: Some(0.1),
            ..Default::default()
        };
        let s = plan(&sent, 10, &qwen).unwrap().sampling;
        assert_eq!(
            (
                s.temperature,
                s.top_p,
                s.top_k,
                s.min_p,
                s.penalties.repetition
            ),
            (0.0, 0.8, 0, 0.1, 1.0)
        );
        let plain = plan(&CommonParams::default(), 10, &limits())
            .unwrap()
            .sampling;
        assert_eq!((plain.temperature, plain.top_p, plain.top_k), (1.0, 1.0, 0));
    }

    #[test]
    fn priority_is_refused_under_first_come_first_served() {
        let fcfs = Limits {
            scheduling: SchedulingPolicy::Fcfs,
            ..limits()
        };
        assert_eq!(priority(&limits(), Some(-5)).unwrap(), -5);
        assert_eq!(priority(&fcfs, None).unwrap(), 0);
        assert_eq!(priority(&fcfs, Some(0)).unwrap(), 0);
        let e = priority(&fcfs, Some(3)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("priority"));
        let hurried = CommonParams {
            priority: Some(-1),
            ..Default::default()
        };
        assert!(plan(&hurried, 10, &fcfs).is_err());
        assert_eq!(plan(&hurried, 10, &limits()).unwrap().priority, -1);
    }

    #[test]
    fn defaults_and_ranges() {
        let p = plan(&CommonParams::default(), 10, &limits()).unwrap();
        assert_eq!((p.max_tokens, p.n), (16, 1));
        let bad = CommonParams {
            temperature: Some(3.0),
            ..Default::default()
        };
        assert_eq!(
            plan(&bad, 10, &limits()).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        let long = CommonParams {
            max_tokens: Some(95),
            ..Default::default()
        };
        assert!(plan(&long, 10, &limits()).is_err());
        let zero = CommonParams {
            max_tokens: Some(0),
            ..Default::default()
        };
        assert!(plan(&zero, 10, &limits()).is_err());
        assert_eq!(
            completion_plan(&zero, 10, &limits(), true)
                .unwrap()
                .max_tokens,
            0
        );
        assert!(completion_plan(&zero, 10, &limits(), false).is_err());
        let negative = CommonParams {
            max_tokens: Some(-1),
            ..Default::default()
        };
        assert!(completion_plan(&negative, 10, &limits(), true).is_err());
        // Too long a prompt names the field that holds it.
        let param = |e: ApiError| e.param;
        assert_eq!(
            plan(&CommonParams::default(), 100, &limits())
                .map_err(param)
                .err(),
            Some(Some("messages".into()))
        );
        assert_eq!(
            completion_plan(&CommonParams::default(), 100, &limits(), false)
                .map_err(param)
                .err(),
            Some(Some("prompt".into()))
        );
        let bias = CommonParams {
            logit_bias: serde_json::from_value(serde_json::json!({"60": 1.0})).ok(),
            ..Default::default()
        };
        assert!(plan(&bias, 10, &limits()).is_err());
    }
}
