//! `candor generate`: one prompt, streamed to stdout, speed and memory on stderr (or one JSON
//! object as the last stdout line).
use super::model_args::ModelArgs;
use super::sampling_args::SamplingArgs;
use crate::engine::generate::{generate, GenerateRequest};
use crate::error::CliError;
use candor_models::chat_template::{ChatMessage, ChatTemplate};
use candor_models::tokenizer::StreamDecoder;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text.
    #[arg(
        long,
        conflicts_with = "prompt_tokens",
        required_unless_present = "prompt_tokens"
    )]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids (no tokenization, no template).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["chat", "system"])]
    pub prompt_tokens: Option<Vec<u32>>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// System message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub fn run(args: GenerateArgs) -> Result<(), CliError> {
    let threads = args.model.configure_threads();
    let path = args.model.resolve()?;
    let sampling = args.sampling.params()?;
    sampling.validate()?;
    // The KV cache holds the request: the prompt is known only after tokenizing, so size it for
    // the model's context bound after loading the tokenizer (cheap) via a first pass.
    let probe = candor_models::loader::open_model(&path, false)?;
    let probe_tokenizer = crate::engine::load::load_tokenizer(&probe)?;
    let context = probe.spec.max_position;
    drop(probe);
    let need_tokenizer = || {
        probe_tokenizer.as_ref().ok_or_else(|| {
            CliError::Usage(format!(
                "{} has no tokenizer.json: give the prompt as --prompt-tokens",
                path.display()
            ))
        })
    };

    // gpt-oss's answers are harmony messages: their channel markers are special tokens, shown
    // (as llama.cpp renders them) so the thought and the answer stay apart in the output.
    let mut keep_special = false;
    let prompt_ids = match (&args.prompt_tokens, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) if args.chat => {
            let tokenizer = need_tokenizer()?;
            keep_special = tokenizer
                .chat_template()
                .is_some_and(|t| crate::server::harmony::template_harmony(&t));
            let template = ChatTemplate::from_optional(
                tokenizer.chat_template().as_deref(),
                tokenizer.bos_token().as_deref(),
                tokenizer.eos_token().as_deref(),
            )
            .map_err(candor_models::ModelError::from)?;
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::text("system", system));
            }
            messages.push(ChatMessage::text("user", text));
            let rendered = template
                .render(&messages, true)
                .map_err(candor_models::ModelError::from)?;
            // The template writes BOS itself where the model wants it.
            tokenizer
                .encode(&rendered, false)
                .map_err(candor_models::ModelError::from)?
        }
        (None, Some(text)) => need_tokenizer()?
            .encode(text, true)
            .map_err(candor_models::ModelError::from)?,
        (None, None) => return Err(CliError::Usage("give --prompt or --prompt-tokens".into())),
    };
    if prompt_ids.len() + args.max_tokens > context {
        return Err(crate::engine::EngineError::ContextTooLong {
            prompt: prompt_ids.len(),
            max_new: args.max_tokens,
            context,
        }
        .into());
    }
    let mut model = args
        .model
        .load(&path, prompt_ids.len() + args.max_tokens, threads)?;
    // The request is the whole context (LongRoPE picks its factors by it).
    model.runner.use_context(prompt_ids.len() + args.max_tokens);
    let eos_ids = match &model.tokenizer {
        Some(t) => t.generation_end_ids(&model.spec.eos_token_ids),
        None => model.spec.eos_token_ids.clone(),
    };
    let req = GenerateRequest {
        prompt_ids: prompt_ids.clone(),
        max_tokens: args.max_tokens,
        sampling,
        eos_ids,
        ignore_eos: args.ignore_eos,
        prefill_chunk: 512,
        lora: args.model.lora.mix()?,
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut stream = model.tokenizer.as_ref().map(|t| match keep_special {
        true => StreamDecoder::new(t).with_special_tokens(),
        false => StreamDecoder::new(t),
    });
    let mut text = String::new();
    let mut write_err = None;
    let result = generate(model.runner.as_mut(), &req, |id| {
        let piece = match stream.as_mut() {
            Some(s) => s.push(id).unwrap_or_default(),
            None => String::new(),
        };
        text.push_str(&piece);
        if args.format == OutputFormat::Text {
            if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                write_err = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let tail = match stream.as_mut() {
        Some(s) => s.flush().unwrap_or_default(),
        None => String::new(),
    };
    text.push_str(&tail);
    let prefill = result.prefill_tok_s(prompt_ids.len());
    let decode = result.decode_tok_s();
    let peak = crate::rss::peak_rss_bytes();
    let fallbacks = model.runner.fallback_ops();
    match args.format {
        OutputFormat::Text => {
            writeln!(out, "{tail}")?;
            eprintln!(
                "[{} prompt tokens: {prefill:.1} tok/s prefill; {} generated: {decode:.1} tok/s decode; finish: {:?}; peak RSS {} MiB; {threads} threads]",
                prompt_ids.len(),
                result.generated_ids.len(),
                result.finish_reason,
                peak.map(|b| b / (1 << 20)).unwrap_or(0)
            );
            if !fallbacks.is_empty() {
                eprintln!(
                    "[ops run on the CPU fallback: {}]",
                    crate::backend::plugin::fallback_summary(&fallbacks)
                );
            }
        }
        OutputFormat::Json => {
            let obj = serde_json::json!({
                "model": model.path.display().to_string(),
                "prompt_ids": prompt_ids,
                "generated_ids": result.generated_ids,
                "text": text,
                "finish_reason": result.finish_reason,
                "prompt_tokens": prompt_ids.len(),
                "generated_tokens": result.generated_ids.len(),
                "prefill_seconds": result.prefill_seconds,
                "decode_seconds": result.decode_seconds,
                "prefill_tok_s": prefill,
                "decode_tok_s": decode,
                "peak_rss_bytes": peak,
                "threads": threads,
                "dequantize": args.model.dequantize,
                "fallback_ops": fallbacks.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            });
            writeln!(out, "{obj}")?;
        }
    }
    Ok(())
}
