//! OpenAI request bodies as clients send them. Fields candor does not use are accepted and
//! ignored (clients send `user`, `metadata`...), fields it uses are type-checked by serde and
//! range-checked in `validate.rs` (tool fields in `tools/`).
use serde::Deserialize;

/// `stop`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    /// vLLM's: with `include_usage`, the usage so far in every chunk.
    #[serde(default)]
    pub continuous_usage_stats: bool,
}

/// Sampling and length fields shared by both endpoints.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct CommonParams {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub seed: Option<i64>,
    pub n: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub ignore_eos: bool,
    /// OpenAI's object of token ids, or llama-server's forms (`server::logit_bias`).
    pub logit_bias: Option<super::logit_bias::LogitBias>,
    /// vLLM's sampling extensions: no end before `min_tokens`, more end tokens, the stop
    /// string kept in the answer, special tokens written out.
    pub min_tokens: Option<i64>,
    pub stop_token_ids: Option<Vec<i64>>,
    #[serde(default)]
    pub include_stop_str_in_output: bool,
    pub skip_special_tokens: Option<bool>,
    /// vLLM's and llama-server's structured outputs (`guide.rs`).
    pub structured_outputs: Option<serde_json::Value>,
    pub guided_json: Option<serde_json::Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<serde_json::Value>,
    pub guided_grammar: Option<String>,
    pub grammar: Option<String>,
    pub json_schema: Option<serde_json::Value>,
    /// OpenAI's Predicted Outputs: the expected answer, drafted from (`validate::prediction`).
    pub prediction: Option<serde_json::Value>,
    /// vLLM's scheduling priority: lower goes first, 0 by default.
    pub priority: Option<i64>,
    /// vLLM's left truncation: only the prompt's last this many tokens are run (-1: as many
    /// as the context holds beside one new token). `validate::truncate_prompt`.
    pub truncate_prompt_tokens: Option<i64>,
    /// vLLM's prefix-cache salt: cached blocks are shared only among requests sending the
    /// same one (`EngineRequest::cache_salt`).
    pub cache_salt: Option<String>,
    /// vLLM's `return_token_ids`: the prompt's token ids and each answer's beside the text
    /// (`respond::Meta::token_ids`).
    #[serde(default)]
    pub return_token_ids: bool,
    /// vLLM's `return_tokens_as_token_ids`: logprobs name tokens `token_id:N`.
    #[serde(default)]
    pub return_tokens_as_token_ids: bool,
    /// vLLM's `allowed_token_ids`: the only tokens the answer may hold.
    pub allowed_token_ids: Option<Vec<i64>>,
    /// vLLM's `bad_words`: words the answer never writes whole (`engine::banned`).
    pub bad_words: Option<Vec<String>>,
    /// vLLM's `prompt_logprobs`: the prompt tokens' logprobs with this many alternatives.
    pub prompt_logprobs: Option<i64>,
    #[serde(flatten)]
    pub samplers: LlamaSamplers,
    /// Whose reading of the sampling fields the endpoint follows where peers differ.
    #[serde(skip)]
    pub dialect: Dialect,
    /// A stream tells the prompt's progress as its chunks are computed (llama-server's
    /// `prompt_progress`: total, cache, processed, time_ms), before the answer.
    #[serde(default)]
    pub return_progress: bool,
    /// Every streamed chunk carries llama-server's `timings` so far (the last one always
    /// does, and a whole answer).
    #[serde(default)]
    pub timings_per_token: bool,
    /// The logprobs are those each token was drawn with, after every sampler (llama-server's
    /// `post_sampling_probs`, on its native endpoints), not the model's.
    #[serde(skip)]
    pub logprobs_after_sampling: bool,
}

/// Whose reading of the sampling fields a request gets where peers differ, by its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// vLLM's: penalties over the prompt (repetition) and the answer (presence,
    /// frequency); the temperature before the truncations.
    #[default]
    OpenAi,
    /// llama-server's: penalties over the last `repeat_last_n` tokens (64); the temperature
    /// after the truncations (its default `samplers`).
    LlamaServer,
    /// Ollama's: the penalties as llama-server's, the temperature first (its engine's order).
    Ollama,
}

/// llama-server's samplers, under its names (it takes them on its OpenAI endpoints too, and
/// `/completion` here shares them): top-n-sigma, typical-p, XTC, DRY (`server/dry.rs`), the
/// penalties' window and mirostat.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct LlamaSamplers {
    pub top_n_sigma: Option<f64>,
    /// Locally typical sampling (transformers', TGI's, llama.cpp's `typical_p`; `typ_p`, the
    /// name of llama.cpp's setting, which its web UI sends).
    #[serde(alias = "typ_p")]
    pub typical_p: Option<f64>,
    pub xtc_probability: Option<f64>,
    pub xtc_threshold: Option<f64>,
    pub dry_multiplier: Option<f64>,
    pub dry_base: Option<f64>,
    pub dry_allowed_length: Option<i64>,
    pub dry_penalty_last_n: Option<i64>,
    pub dry_sequence_breakers: Option<Vec<String>>,
    /// The penalties count the last this many tokens of prompt and answer (-1: all of them,
    /// 0: none); absent on an OpenAI endpoint, vLLM's reading (`engine::penalties`).
    pub repeat_last_n: Option<i64>,
    /// 0: off, 1 or 2: mirostat's version (`engine::mirostat`), with its target surprise and
    /// learning rate.
    pub mirostat: Option<i64>,
    pub mirostat_tau: Option<f64>,
    /// Start from the prefix cache's K/V of the prompt (true, the default); false computes
    /// the whole prompt, so a seeded request repeats itself exactly (`EngineRequest::
    /// cache_prompt`).
    pub cache_prompt: Option<bool>,
    /// The LoRA adapters to run with and their scales, `[{"id", "scale"}]` (the others not
    /// at all), for a request naming the base model (`server::lora_list`).
    pub lora: Option<Vec<super::lora_list::LoraScale>>,
    pub mirostat_eta: Option<f64>,
    /// llama.cpp's dynamic temperature (`engine::temperature`): 0 is off.
    pub dynatemp_range: Option<f64>,
    pub dynatemp_exponent: Option<f64>,
    /// Which samplers run and where the temperature stands (`server::sampler_chain`).
    pub samplers: Option<serde_json::Value>,
    /// Typical-p, min-p, top-p and XTC leave at least this many tokens (llama.cpp's; 0 and 1:
    /// no floor).
    pub min_keep: Option<i64>,
}

/// Chat message content: a string or a list of parts (`{"type": "text", "text": ...}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
    /// Calls an earlier assistant turn made (checked in `tools::template_tool_calls`).
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// On a `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
    /// An assistant turn's thought sent back (vLLM's and DeepSeek's field; `reasoning` as
    /// some clients name it), shown to templates that render thoughts in the history.
    #[serde(alias = "reasoning")]
    pub reasoning_content: Option<String>,
}

impl Message {
    /// A message of `role` with text (or none: an assistant turn that only calls).
    pub fn new(role: &str, content: Option<String>) -> Self {
        Message {
            role: role.into(),
            content: content.map(Content::Text),
            tool_calls: None,
            tool_call_id: None,
            name: None,
            reasoning_content: None,
        }
    }
}

/// The function an earlier assistant turn called under `call_id` (a tool message's `name`,
/// which some templates print).
pub fn called_function(messages: &[Message], call_id: &str) -> Option<String> {
    messages
        .iter()
        .flat_map(|m| m.tool_calls.iter().flatten())
        .find(|c| c["id"] == call_id)
        .and_then(|c| c["function"]["name"].as_str())
        .map(str::to_string)
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub common: CommonParams,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<i64>,
    /// Function definitions, kept as sent: the template prints them (key order included).
    pub tools: Option<Vec<serde_json::Value>>,
    pub tool_choice: Option<serde_json::Value>,
    pub parallel_tool_calls: Option<bool>,
    /// `text`, `json_object` or `json_schema` (`structured.rs`).
    pub response_format: Option<serde_json::Value>,
    /// Extra chat-template variables (vLLM's extension), e.g. `{"enable_thinking": false}`.
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// `low` / `medium` / `high`...: passed to the chat template as `reasoning_effort` (as
    /// vLLM does; gpt-oss templates read it), unless `chat_template_kwargs` sets it.
    pub reasoning_effort: Option<String>,
    /// A budget on the thought of a thinking model (`thinking.rs`).
    #[serde(flatten)]
    pub thinking_budget: super::thinking::BudgetAsked,
    /// llama-server's `reasoning_format`: `auto` or `deepseek` (the thought in
    /// `reasoning_content`, the default) or `none` (the text as written, thought and all, in
    /// `content`).
    pub reasoning_format: Option<String>,
    /// Drop the oldest turns of a conversation that does not fit (`truncation.rs`; set by
    /// the Responses API's `truncation: "auto"`, not by chat clients).
    #[serde(skip)]
    pub truncate_oldest_turns: bool,
    /// How the prompt ends (vLLM's extensions, `prompt_end.rs`).
    pub add_generation_prompt: Option<bool>,
    #[serde(default)]
    pub continue_final_message: bool,
    /// Fields candor refuses rather than ignore (`routes::chat::refuse_unsupported`).
    pub functions: Option<serde_json::Value>,
    pub function_call: Option<serde_json::Value>,
    pub modalities: Option<Vec<String>>,
}

/// The effort names OpenAI's and Anthropic's APIs use.
const EFFORTS: [&str; 7] = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

impl ChatRequest {
    /// The chat template's extra variables: `chat_template_kwargs`, and `reasoning_effort`
    /// where those leave it unset.
    pub fn template_kwargs(
        &self,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, super::error::ApiError> {
        let Some(effort) = &self.reasoning_effort else {
            return Ok(self.chat_template_kwargs.clone());
        };
        if !EFFORTS.contains(&effort.as_str()) {
            return Err(super::error::ApiError::invalid(
                "reasoning_effort",
                format!("`reasoning_effort` must be one of {}", EFFORTS.join(", ")),
            ));
        }
        let mut kwargs = self.chat_template_kwargs.clone().unwrap_or_default();
        kwargs
            .entry("reasoning_effort")
            .or_insert_with(|| serde_json::Value::String(effort.clone()));
        Ok(Some(kwargs))
    }
}

/// `prompt`: text, token ids, or a list of either; or in llama-server's forms, texts and ids
/// mixed in one prompt or a list of such (`server::native_prompt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<i64>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<i64>>),
    Mixed(Vec<serde_json::Value>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub common: CommonParams,
    pub logprobs: Option<i64>,
    #[serde(default)]
    pub echo: bool,
    /// Refused unless it equals `n` (nothing to choose from then).
    pub best_of: Option<i64>,
    /// Text after the insertion point: fill-in-the-middle for code models.
    pub suffix: Option<String>,
    pub response_format: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<Message>>,
    /// With `messages`: counted as a chat request with these tools would be.
    pub tools: Option<Vec<serde_json::Value>>,
    pub chat_template_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    pub add_generation_prompt: Option<bool>,
    #[serde(default)]
    pub continue_final_message: bool,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    /// llama-server's form: a text, or a list of texts and token ids, tokenized without the
    /// model's special tokens unless `add_special`.
    pub content: Option<serde_json::Value>,
    #[serde(default)]
    pub add_special: bool,
    /// Special tokens written in `prompt` or `content` are read as themselves (llama-server's
    /// default), or with false as their characters. A chat template's are always tokens.
    pub parse_special: Option<bool>,
    /// Each token as `{"id", "piece"}`, the piece its text (or its bytes where they are not
    /// UTF-8 on their own), as llama-server answers.
    #[serde(default)]
    pub with_pieces: bool,
    /// vLLM's: each token's vocabulary string too (`token_strs`, as the tokenizer's
    /// `convert_ids_to_tokens` writes them: `Ġhello` for a byte-level BPE).
    #[serde(default)]
    pub return_token_strs: bool,
    /// text-embeddings-inference's form (`routes::tei_tokens`): a text or texts, each
    /// answered as its tokens with their bytes of the text.
    pub inputs: Option<serde_json::Value>,
    /// TEI's: the checkout's sentence-transformers prompt put before each of `inputs`.
    pub prompt_name: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::ChatRequest;
    use serde_json::json;

    fn chat(extra: serde_json::Value) -> ChatRequest {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn reasoning_effort_reaches_the_template_unless_kwargs_set_it() {
        let kwargs = chat(json!({"reasoning_effort": "low"}))
            .template_kwargs()
            .unwrap()
            .unwrap();
        assert_eq!(kwargs["reasoning_effort"], "low");
        let kwargs = chat(json!({"reasoning_effort": "low",
                                 "chat_template_kwargs": {"reasoning_effort": "high", "x": 1}}))
        .template_kwargs()
        .unwrap()
        .unwrap();
        assert_eq!(kwargs["reasoning_effort"], "high");
        assert_eq!(chat(json!({})).template_kwargs().unwrap(), None);
        let e = chat(json!({"reasoning_effort": "extreme"}))
            .template_kwargs()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }
}
