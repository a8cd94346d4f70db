//! How a model family writes tool calls, told from its chat template, and how to read them
//! back from generated text.
//!
//! Each template that takes `tools` also shows the model how to answer with a call; the
//! conventions below cover the families candor loads (the names are vLLM's parser names):
//! - `hermes`: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, any number of
//!   them after optional text (Qwen2.5, Qwen3, Hermes, Granite 4).
//! - `mistral`: `[TOOL_CALLS]` then a JSON list of `{"name", "arguments"}` to the end;
//!   `granite`: the same list after `<|tool_call|>` (Granite 3.x); `apriel`: the same list
//!   in `<tool_calls>` ... `</tool_calls>` (Apriel 1.5; Jamba 1.5-1.7, whose markers are
//!   special tokens: vLLM's `jamba`, accepted as a name of it); `nemotron_json`: the same list
//!   in `<TOOLCALL>` ... `</TOOLCALL>` (Nemotron Nano 2; NVIDIA's parser name); `minimax`:
//!   `{"name", "arguments"}` objects a line each in `<tool_calls>` ... `</tool_calls>`
//!   (MiniMax-M1, MiniMax-Text-01).
//! - `mistral` since Mistral's v11 tokenizer: `[TOOL_CALLS]NAME[ARGS]{...}` per call
//!   (Mistral Small 3.2, Devstral, Magistral, Ministral 3; `mistral_args`).
//! - `kimi_k2`: a section of calls between special tokens, each `functions.NAME:INDEX` then the
//!   arguments' JSON (Kimi K2; `kimi`).
//! - `functionary_v3_1`: `<function=NAME>{...}</function>` blocks (`functionary`).
//! - `functionary_v3_2`: messages `>>>RECIPIENT\n...`, text to `all`, a call's arguments to
//!   its function, the first `>>>` in the prompt (`functionary_v32`; llama.cpp's name).
//! - `deepseek_v3` / `deepseek_v31`: a section of calls between special tokens, the name
//!   before a separator token, the arguments fenced (V3, R1) or bare (V3.1; `deepseek`).
//! - `command_r7b`: `<|START_ACTION|>` then a JSON list of `{"tool_call_id", "tool_name",
//!   "parameters"}` then `<|END_ACTION|>` (Command R7B, Command A; the markers are special
//!   tokens).
//! - `llama3_json`: the whole answer is `{"name": ..., "parameters": {...}}`, several joined
//!   by `;` (Llama 3.1-3.3; `<|python_tag|>` before it is a special token, dropped in decoding).
//! - `qwen3_coder`: `<tool_call>` blocks of `<function=NAME>` and `<parameter=KEY>` tags
//!   (Qwen3-Coder, Qwen3.5, Nemotron 3, Step 3.5); `seed_oss`: the same tags in
//!   `<seed:tool_call>` blocks; `glm45`: `<tool_call>NAME` then `<arg_key>` / `<arg_value>`
//!   pairs (GLM-4.5 to 4.7); `minimax_m2`: `<minimax:tool_call>` blocks of `<invoke name=...>`
//!   and `<parameter name=...>` tags (MiniMax-M2 / M2.1); `minicpm5`: `<function name=...>`
//!   calls of `<param name=...>` tags, no block around them (MiniCPM5); `hy_v3`:
//!   `<tool_calls:opensource>` blocks of calls with GLM's pairs in `:opensource`-suffixed
//!   tags (Tencent Hy3); `deepseek_v32` / `deepseek_v4`: `<｜DSML｜function_calls>` /
//!   `<｜DSML｜tool_calls>` blocks of MiniMax's invocations in DSML tags, each parameter
//!   saying whether its value is text (DeepSeek V3.2, V4). Their values are typed by the
//!   functions' schemas (`tagged`). `minimax_m3`: the invocations behind M3's namespace marker,
//!   values as nested elements, typed by the schemas too (MiniMax-M3; `minimax_m3`).
//! - `gemma4`: `<|tool_call>call:NAME{key:value,...}<tool_call|>` per call, in Gemma's own
//!   object syntax (bare sorted keys, strings between `<|"|>` marks; Gemma 4; `gemma4`);
//!   `functiongemma`: the same between `<start_function_call>` and `<end_function_call>`,
//!   strings between `<escape>` marks (FunctionGemma).
//! - `lfm2`: `<|tool_call_start|>` then a Python list of calls with keyword arguments, then
//!   `<|tool_call_end|>` (LFM2, LFM2.5; `python_calls`). `pythonic`: the same list as the
//!   whole answer (Llama 3.2, Llama 4, ToolACE, Gemma 3 under vLLM's pythonic templates;
//!   vLLM's `llama4_pythonic` too); `olmo3`: a call a line between `<function_calls>` and
//!   `</function_calls>` (OLMo 3).
//! - `apertus`: `<|tools_prefix|>` then a JSON list of `{"NAME": {...}}` objects, then
//!   `<|tools_suffix|>` (Apertus; `apertus`).
//! - `solar_open`: `<|tool_calls|>` then calls of an id, a name and the arguments' JSON
//!   between special tokens, then `<|calls|>` (Solar Open; `solar`).
//! - `firefunction_v2`: ` functools[` then a JSON list of `{"name", "arguments"}` to the end,
//!   after the answer's text (FireFunction v2; llama.cpp's name); `phi4_mini_json`: the same
//!   list after `functools[`, no space before it (Phi-4-mini); `xlam`: the same list as the
//!   whole answer (Salesforce xLAM-2).
//! - `granite-20b-fc`: `<function_call> {"name", "arguments"}` per call, to the end of the
//!   answer (Granite 20B Function Calling; its `no_function` pseudo-call is no call).
//! - `gigachat3`: a `function call` turn after the assistant's, its body one
//!   `{"name", "arguments"}` object (GigaChat 3.0); `gigachat3_1`: the same object after
//!   `<|function_call|>` in the assistant's turn (GigaChat 3.1; `gigachat`). vLLM's
//!   `gigachat3` reads both.
use super::apertus;
use super::deepseek::{self, Layout};
use super::functionary;
use super::functionary_v32;
use super::gemma4::{self, FUNCTION_GEMMA, GEMMA4};
use super::gigachat::{self, Version};
use super::kimi;
use super::lfm2;
use super::minimax_m3;
use super::mistral_args;
use super::python_calls::{self, Layout as PyLayout};
use super::solar;
use super::tag_grammar::TagGrammar;
use super::tagged::{self, Style};
use serde_json::Value;
use std::fmt;

/// MiniMax-M2's call block tags (plain text in its vocabulary).
const MINIMAX_OPEN: &str = "<minimax:tool_call>";
const MINIMAX_CLOSE: &str = "</minimax:tool_call>";
/// MiniMax-M3's namespace marker, as its template names it in a variable.
const MINIMAX_M3_NAMESPACE: &str = "]<]minimax[>[";
/// How MiniMax-M1's template shows its calls: the block's tag, then an object a line (the
/// template's text, its newline escaped in the source or not).
const MINIMAX_M1_LAYOUT: [&str; 2] = ["<tool_calls>\\n{\"name\"", "<tool_calls>\n{\"name\""];
/// DeepSeek V3.2's and V4's DSML block tags.
const DSML_V32_BLOCK: (&str, &str) = ("<｜DSML｜function_calls>", "</｜DSML｜function_calls>");
const DSML_V4_BLOCK: (&str, &str) = ("<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>");
const DSML: &str = "｜DSML｜";
/// Hy3's block tags (special tokens), and how its template spells them (its `HYTK` suffix
/// added by `format`).
const HY3_BLOCK: (&str, &str) = ("<tool_calls:opensource>", "</tool_calls:opensource>");
const HY3_TEMPLATE_TAGS: [&str; 2] = ["'<tool_calls{}>'.format(", "':opensource'"];
/// MiniCPM5's call tags: each call is a block of its own, its opening up to the name.
const MINICPM5_BLOCK: (&str, &str) = tagged::FUNCTION_PARAM_BLOCK;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Mistral,
    Granite,
    Llama3Json,
    Qwen3Coder,
    SeedOss,
    Glm45,
    KimiK2,
    MistralArgs,
    Apriel,
    NemotronJson,
    /// MiniMax-M1: `<tool_calls>` then a `{"name", "arguments"}` object a line, then
    /// `</tool_calls>`.
    MinimaxM1,
    Functionary,
    FunctionaryV32,
    CommandR7b,
    /// Command R / R+ (c4ai-command-r-v01, -plus, -08-2024): `Action:` then a ```json fence
    /// around a list of `tool_name` / `parameters` objects, to the end of the answer.
    CommandR,
    DeepseekV3,
    DeepseekV31,
    Lfm2,
    /// vLLM's `pythonic`: the answer is a Python list of calls.
    Pythonic,
    /// OLMo 3: a Python call a line in `<function_calls>`.
    Olmo3,
    Apertus,
    MinimaxM2,
    MinimaxM3,
    MiniCpm5,
    HyV3,
    DeepseekV32,
    DeepseekV4,
    Gemma4,
    /// FunctionGemma: Gemma 4's call syntax in its own blocks, `<escape>` around strings.
    FunctionGemma,
    SolarOpen,
    GigaChat3,
    GigaChat31,
    Firefunction,
    /// xLAM: the answer is a JSON list of `{"name", "arguments"}` objects.
    Xlam,
    /// Granite 20B Function Calling: `<function_call> {...}` per call.
    Granite20bFc,
    /// Phi-4-mini: `functools[` then a JSON list of calls, to the end.
    Phi4Mini,
}

impl std::str::FromStr for ToolFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        if let Some((_, format)) = VLLM_ALIASES.iter().find(|(alias, _)| *alias == name) {
            return Ok(*format);
        }
        ToolFormat::ALL
            .into_iter()
            .find(|f| f.parser_name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown tool-call parser `{name}` (known: {})",
                    ToolFormat::parser_names()
                )
            })
    }
}

/// vLLM's other names for formats candor reads under one: Jamba's and Hunyuan-A13B's calls
/// are Apriel's `<tool_calls>` list, `qwen3_xml` reads Qwen3-Coder's tags, `llama4_json`
/// Llama 3's JSON calls, `llama4_pythonic` the pythonic list (Llama 4's code tokens around it
/// are special, left out of the text), ERNIE 4.5's calls are Hermes' `<tool_call>` objects.
const VLLM_ALIASES: [(&str, ToolFormat); 6] = [
    ("jamba", ToolFormat::Apriel),
    ("hunyuan_a13b", ToolFormat::Apriel),
    ("qwen3_xml", ToolFormat::Qwen3Coder),
    ("llama4_json", ToolFormat::Llama3Json),
    ("llama4_pythonic", ToolFormat::Pythonic),
    ("ernie45", ToolFormat::Hermes),
];

/// How a format writes its calls, where it differs from the others by more than its markers.
enum Family {
    /// `{"name": ..., "arguments": {...}}` objects: hermes, the lists, llama 3.
    Json,
    /// Key/value tags (`tagged`).
    Tags(Style),
    Kimi,
    /// Kimi's sections with an id and the name apart (Solar Open).
    Solar,
    Deepseek(Layout),
    MistralArgs,
    Functionary,
    /// Messages addressed to a recipient, text or a call (functionary v3.2).
    Recipients,
    /// Python calls with keyword arguments (LFM2's, vLLM's `pythonic`, OLMo 3's).
    Pythonic(PyLayout),
    /// Objects keyed by the function's name (Apertus).
    NameKeyed,
    /// Invocations whose values are nested elements (MiniMax-M3).
    NestedXml,
    /// Gemma's object syntax (Gemma 4, FunctionGemma).
    GemmaObjects(gemma4::Marks),
}

/// Why a template cannot be asked for tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// The template never reads `tools`: the model would not see them.
    NoTools,
    /// It reads `tools`, but in none of the conventions above.
    UnknownFormat,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::NoTools => {
                write!(f, "this model's chat template does not take tools")
            }
            Unsupported::UnknownFormat => write!(
                f,
                "this model's chat template takes tools, but writes calls in a format candor \
                 cannot tell; `--tool-call-parser` names one of {}",
                ToolFormat::parser_names()
            ),
        }
    }
}

/// How every call object opens, in the JSON formats but Command R7B's (the name comes first).
const CALL_OBJECT_OPENING: &str = "{\"name\": ";
/// How Command R7B's call objects open: an id (the calls' count in the conversation), then
/// the name.
const R7B_OBJECT_OPENING: &str = "{\"tool_call_id\": \"0\", \"tool_name\": ";
/// Nemotron Nano 2's markers around its list of calls (special tokens of its vocabulary).
const NEMOTRON_CALLS: (&str, &str) = ("<TOOLCALL>", "</TOOLCALL>");
/// What opens FireFunction v2's list of calls after the answer's text (plain text: its
/// template writes it after the content, a space before it); the `[` is the list's own.
const FIREFUNCTION_CALLS: &str = " functools[";
/// Phi-4-mini's: the same marker, the answer opening with it (no space before it).
const PHI4_MINI_CALLS: &str = "functools[";
/// How a Phi-4-mini tool template (vLLM's, FireFunction's instructions in Phi's turns) names
/// the marker to the model, and Phi's assistant turn.
const PHI4_MINI_INSTRUCTION: &str = "functools marker";
const PHI3_ASSISTANT: &str = "<|assistant|>";
/// How xLAM's templates show the model its calls: the answer a JSON list.
const XLAM_INSTRUCTION: &str = "make calls in a single JSON array";
/// What commits an xLAM answer to its list: the list's and the first call's opening.
const XLAM_LIST_OPENING: &str = "[{\"name\"";
/// Command R7B's markers around its list of calls (special tokens of its vocabulary).
const R7B_ACTION: (&str, &str) = ("<|START_ACTION|>", "<|END_ACTION|>");
/// What opens Command R / R+'s calls (plain text), and the fence around their list.
const COMMAND_R_ACTION: &str = "Action:";
const COMMAND_R_FENCE: (&str, &str) = ("```json", "```");
/// How Command R / R+'s call objects open: the name first.
const COMMAND_R_OBJECT_OPENING: &str = "{\"tool_name\": ";
/// The pseudo-tool Command R's template tells the model to call when no tool is needed
/// (either spelling): not a call of the request's unless it defines one by that name.
const DIRECTLY_ANSWER: [&str; 2] = ["directly-answer", "directly_answer"];

/// Granite 20B Function Calling's markers: what opens each call, where its template lists the
/// functions, and the pseudo-call it is told to make when none fits (no call of the request's
/// unless it defines one by that name).
struct Granite20b {
    call: &'static str,
    library: &'static str,
    no_function: &'static str,
}
const GRANITE_20B: Granite20b = Granite20b {
    call: "<function_call>",
    library: "<|function_call_library|>",
    no_function: "no_function",
};

/// The grammars of a call under `tool_choice: "auto"` (`ToolFormat::lazy_call_grammar`).
#[derive(Debug, Clone)]
pub struct LazyCall {
    /// What follows the call's opening token (`ToolFormat::trigger_text`), to the end of
    /// its block.
    pub after_trigger: Option<String>,
    /// A whole answer that is bare call objects (`ToolFormat::bare_call_marker`).
    pub bare: Option<String>,
    /// Whether the text is free again after a triggered call.
    pub rearm: bool,
    /// Whether the prompt ends with the trigger's text: `after_trigger` holds the answer from
    /// its first token (functionary v3.2's first `>>>`).
    pub at_start: bool,
}

/// One call read from the output: the function's name and its arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    pub arguments: String,
}

impl ParsedCall {
    pub fn new(name: &str, arguments: &str) -> Self {
        ParsedCall {
            name: name.to_string(),
            arguments: arguments.to_string(),
        }
    }
}

impl ToolFormat {
    pub const ALL: [ToolFormat; 37] = [
        ToolFormat::Hermes,
        ToolFormat::Mistral,
        ToolFormat::Granite,
        ToolFormat::Llama3Json,
        ToolFormat::Qwen3Coder,
        ToolFormat::SeedOss,
        ToolFormat::Glm45,
        ToolFormat::KimiK2,
        ToolFormat::MistralArgs,
        ToolFormat::Apriel,
        ToolFormat::NemotronJson,
        ToolFormat::MinimaxM1,
        ToolFormat::Functionary,
        ToolFormat::FunctionaryV32,
        ToolFormat::CommandR7b,
        ToolFormat::CommandR,
        ToolFormat::DeepseekV3,
        ToolFormat::DeepseekV31,
        ToolFormat::Lfm2,
        ToolFormat::Pythonic,
        ToolFormat::Olmo3,
        ToolFormat::Apertus,
        ToolFormat::MinimaxM2,
        ToolFormat::MinimaxM3,
        ToolFormat::MiniCpm5,
        ToolFormat::HyV3,
        ToolFormat::DeepseekV32,
        ToolFormat::DeepseekV4,
        ToolFormat::Gemma4,
        ToolFormat::FunctionGemma,
        ToolFormat::SolarOpen,
        ToolFormat::GigaChat3,
        ToolFormat::GigaChat31,
        ToolFormat::Firefunction,
        ToolFormat::Phi4Mini,
        ToolFormat::Xlam,
        ToolFormat::Granite20bFc,
    ];

    /// The format's name for `--tool-call-parser` (vLLM's parser names where vLLM has the
    /// format; `mistral_v11` for Mistral's `[ARGS]` calls, which vLLM's `mistral` reads too).
    pub fn parser_name(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "hermes",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Granite => "granite",
            ToolFormat::Llama3Json => "llama3_json",
            ToolFormat::Qwen3Coder => "qwen3_coder",
            ToolFormat::SeedOss => "seed_oss",
            ToolFormat::Glm45 => "glm45",
            ToolFormat::KimiK2 => "kimi_k2",
            ToolFormat::MistralArgs => "mistral_v11",
            ToolFormat::Apriel => "apriel",
            ToolFormat::NemotronJson => "nemotron_json",
            ToolFormat::MinimaxM1 => "minimax",
            ToolFormat::Functionary => "functionary_v3_1",
            ToolFormat::FunctionaryV32 => "functionary_v3_2",
            ToolFormat::CommandR7b => "command_r7b",
            ToolFormat::CommandR => "command_r",
            ToolFormat::DeepseekV3 => "deepseek_v3",
            ToolFormat::DeepseekV31 => "deepseek_v31",
            ToolFormat::Lfm2 => "lfm2",
            ToolFormat::Pythonic => "pythonic",
            ToolFormat::Olmo3 => "olmo3",
            ToolFormat::Apertus => "apertus",
            ToolFormat::MinimaxM2 => "minimax_m2",
            ToolFormat::MinimaxM3 => "minimax_m3",
            ToolFormat::MiniCpm5 => "minicpm5",
            ToolFormat::HyV3 => "hy_v3",
            ToolFormat::DeepseekV32 => "deepseek_v32",
            ToolFormat::DeepseekV4 => "deepseek_v4",
            ToolFormat::Gemma4 => "gemma4",
            ToolFormat::FunctionGemma => "functiongemma",
            ToolFormat::SolarOpen => "solar_open",
            ToolFormat::GigaChat3 => "gigachat3",
            ToolFormat::GigaChat31 => "gigachat3_1",
            ToolFormat::Firefunction => "firefunction_v2",
            ToolFormat::Phi4Mini => "phi4_mini_json",
            ToolFormat::Xlam => "xlam",
            ToolFormat::Granite20bFc => "granite-20b-fc",
        }
    }

    /// Every format's `parser_name`, for messages.
    fn parser_names() -> String {
        let names: Vec<&str> = ToolFormat::ALL.iter().map(|f| f.parser_name()).collect();
        names.join(", ")
    }

    pub fn detect(template: &str) -> Result<ToolFormat, Unsupported> {
        // The tag formats' templates write `<tool_call>` too: they are told apart first.
        let function_tags = template.contains("<function=") && template.contains("<parameter=");
        // DeepSeek's templates join `｜DSML｜` to each tag in a variable.
        let dsml = template.contains(DSML);
        if dsml && template.contains("function_calls>") {
            Ok(ToolFormat::DeepseekV32)
        } else if dsml && template.contains("tool_calls>") {
            Ok(ToolFormat::DeepseekV4)
        } else if template.contains(GEMMA4.open) && template.contains(GEMMA4.close) {
            Ok(ToolFormat::Gemma4)
        } else if template.contains(FUNCTION_GEMMA.open) {
            Ok(ToolFormat::FunctionGemma)
        } else if template.contains(kimi::SECTION_BEGIN) {
            Ok(ToolFormat::KimiK2)
        } else if template.contains(solar::SECTION_BEGIN) && template.contains(solar::SECTION_END) {
            Ok(ToolFormat::SolarOpen)
        } else if template.contains(deepseek::SECTION_BEGIN) && template.contains("tools") {
            // DeepSeek's own templates write calls into the history but never show the model
            // `tools` (V3.1's): those stay without (NoTools, below); llama.cpp's R1 template does.
            Ok(match Layout::of_template(template) {
                Layout::Fenced => ToolFormat::DeepseekV3,
                Layout::Bare => ToolFormat::DeepseekV31,
            })
        } else if template.contains(apertus::OPEN) {
            Ok(ToolFormat::Apertus)
        } else if template.contains(R7B_ACTION.0) {
            Ok(ToolFormat::CommandR7b)
        } else if template.contains(COMMAND_R_ACTION)
            && template.contains(COMMAND_R_FENCE.0)
            && template.contains("tool_name")
        {
            Ok(ToolFormat::CommandR)
        } else if template.contains(lfm2::TOOL_LIST) || template.contains(lfm2::LFM25_TOOL_LIST) {
            Ok(ToolFormat::Lfm2)
        } else if template.contains(python_calls::LINES_BLOCK.0) && template.contains("<functions>")
        {
            Ok(ToolFormat::Olmo3)
        } else if template.contains(MINIMAX_M3_NAMESPACE) && template.contains("<invoke name=") {
            Ok(ToolFormat::MinimaxM3)
        } else if template.contains(MINIMAX_OPEN) && template.contains("<parameter name=") {
            Ok(ToolFormat::MinimaxM2)
        } else if template.contains(HY3_BLOCK.0)
            || HY3_TEMPLATE_TAGS.iter().all(|t| template.contains(t))
        {
            Ok(ToolFormat::HyV3)
        } else if template.contains(MINICPM5_BLOCK.0) && template.contains("<param name=") {
            Ok(ToolFormat::MiniCpm5)
        } else if template.contains("<invoke name=") {
            // Invocations in a block candor does not know: not Hermes JSON.
            Err(Unsupported::UnknownFormat)
        } else if template.contains(GRANITE_20B.library) && template.contains(GRANITE_20B.call) {
            Ok(ToolFormat::Granite20bFc)
        } else if template.contains(XLAM_INSTRUCTION) {
            Ok(ToolFormat::Xlam)
        } else if template.contains(PHI4_MINI_INSTRUCTION) && template.contains(PHI3_ASSISTANT) {
            Ok(ToolFormat::Phi4Mini)
        } else if template.contains(FIREFUNCTION_CALLS) {
            Ok(ToolFormat::Firefunction)
        } else if let Some(version) = gigachat::of_template(template) {
            Ok(match version {
                Version::V30 => ToolFormat::GigaChat3,
                Version::V31 => ToolFormat::GigaChat31,
            })
        } else if template.contains(NEMOTRON_CALLS.0) && template.contains(NEMOTRON_CALLS.1) {
            Ok(ToolFormat::NemotronJson)
        } else if MINIMAX_M1_LAYOUT.iter().any(|l| template.contains(l)) {
            Ok(ToolFormat::MinimaxM1)
        } else if template.contains("<tool_calls>[")
            || (template.contains("\"<tool_calls>\"") && template.contains("<tool_definitions>"))
        {
            // Jamba's template names its markers in variables and writes the list after them.
            Ok(ToolFormat::Apriel)
        } else if template.contains("<arg_key>") && template.contains("<tool_call>") {
            Ok(ToolFormat::Glm45)
        } else if function_tags && template.contains("<seed:tool_call>") {
            Ok(ToolFormat::SeedOss)
        } else if function_tags && template.contains("<tool_call>") {
            Ok(ToolFormat::Qwen3Coder)
        } else if template.contains(functionary::OPEN) && template.contains(functionary::CLOSE) {
            Ok(ToolFormat::Functionary)
        } else if functionary_v32::of_template(template) {
            Ok(ToolFormat::FunctionaryV32)
        } else if template.contains("<tool_call>") {
            Ok(ToolFormat::Hermes)
        } else if template.contains("<|tool_call|>") {
            Ok(ToolFormat::Granite)
        } else if template.contains(mistral_args::ARGS)
            && template.contains(mistral_args::TOOL_CALLS)
        {
            Ok(ToolFormat::MistralArgs)
        } else if template.contains("[TOOL_CALLS]") {
            Ok(ToolFormat::Mistral)
        } else if template.contains(python_calls::LIST_TEMPLATE_EXAMPLE) {
            Ok(ToolFormat::Pythonic)
        } else if template.contains("<|python_tag|>")
            || template.contains("\"parameters\": dictionary of argument name")
        {
            Ok(ToolFormat::Llama3Json)
        } else if template.contains("tools") {
            Err(Unsupported::UnknownFormat)
        } else {
            Err(Unsupported::NoTools)
        }
    }

    /// Text that opens a call block.
    pub fn call_start(self) -> &'static str {
        match self {
            ToolFormat::Hermes | ToolFormat::Qwen3Coder | ToolFormat::Glm45 => "<tool_call>",
            ToolFormat::SeedOss => "<seed:tool_call>",
            ToolFormat::Mistral | ToolFormat::MistralArgs => mistral_args::TOOL_CALLS,
            ToolFormat::Apriel | ToolFormat::MinimaxM1 => "<tool_calls>",
            ToolFormat::NemotronJson => NEMOTRON_CALLS.0,
            ToolFormat::Functionary => functionary::OPEN,
            ToolFormat::FunctionaryV32 => functionary_v32::MESSAGE,
            ToolFormat::Granite => "<|tool_call|>",
            ToolFormat::KimiK2 => kimi::SECTION_BEGIN,
            ToolFormat::SolarOpen => solar::SECTION_BEGIN,
            ToolFormat::CommandR7b => R7B_ACTION.0,
            ToolFormat::CommandR => COMMAND_R_ACTION,
            ToolFormat::DeepseekV3 | ToolFormat::DeepseekV31 => deepseek::SECTION_BEGIN,
            ToolFormat::Lfm2 => lfm2::OPEN,
            ToolFormat::Pythonic => "[",
            ToolFormat::Olmo3 => python_calls::LINES_BLOCK.0,
            ToolFormat::Apertus => apertus::OPEN,
            ToolFormat::MinimaxM2 => MINIMAX_OPEN,
            ToolFormat::MinimaxM3 => minimax_m3::OPEN,
            ToolFormat::MiniCpm5 => MINICPM5_BLOCK.0,
            ToolFormat::HyV3 => HY3_BLOCK.0,
            ToolFormat::DeepseekV32 => DSML_V32_BLOCK.0,
            ToolFormat::DeepseekV4 => DSML_V4_BLOCK.0,
            ToolFormat::Gemma4 => GEMMA4.open,
            ToolFormat::FunctionGemma => FUNCTION_GEMMA.open,
            ToolFormat::GigaChat3 => gigachat::FUNCTION_CALL_TURN,
            ToolFormat::GigaChat31 => gigachat::FUNCTION_CALL,
            ToolFormat::Firefunction => FIREFUNCTION_CALLS,
            ToolFormat::Phi4Mini => PHI4_MINI_CALLS,
            ToolFormat::Xlam => "[",
            ToolFormat::Granite20bFc => GRANITE_20B.call,
            ToolFormat::Llama3Json => "{",
        }
    }

    /// Text that closes one call block; `None`: the block runs to the end of the output.
    pub fn call_end(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes | ToolFormat::Qwen3Coder | ToolFormat::Glm45 => Some("</tool_call>"),
            ToolFormat::SeedOss => Some("</seed:tool_call>"),
            ToolFormat::KimiK2 => Some(kimi::SECTION_END),
            ToolFormat::SolarOpen => Some(solar::SECTION_END),
            ToolFormat::Apriel | ToolFormat::MinimaxM1 => Some("</tool_calls>"),
            ToolFormat::NemotronJson => Some(NEMOTRON_CALLS.1),
            ToolFormat::Functionary => Some(functionary::CLOSE),
            ToolFormat::CommandR7b => Some(R7B_ACTION.1),
            ToolFormat::DeepseekV3 | ToolFormat::DeepseekV31 => Some(deepseek::SECTION_END),
            ToolFormat::Lfm2 => Some(lfm2::CLOSE),
            ToolFormat::Olmo3 => Some(python_calls::LINES_BLOCK.1),
            // The list is the answer.
            ToolFormat::Pythonic => None,
            ToolFormat::Apertus => Some(apertus::CLOSE),
            ToolFormat::MinimaxM2 => Some(MINIMAX_CLOSE),
            ToolFormat::MinimaxM3 => Some(minimax_m3::CLOSE),
            ToolFormat::MiniCpm5 => Some(MINICPM5_BLOCK.1),
            ToolFormat::HyV3 => Some(HY3_BLOCK.1),
            ToolFormat::DeepseekV32 => Some(DSML_V32_BLOCK.1),
            ToolFormat::DeepseekV4 => Some(DSML_V4_BLOCK.1),
            ToolFormat::Gemma4 => Some(GEMMA4.close),
            ToolFormat::FunctionGemma => Some(FUNCTION_GEMMA.close),
            ToolFormat::Mistral | ToolFormat::MistralArgs | ToolFormat::Firefunction => None,
            ToolFormat::Phi4Mini | ToolFormat::Xlam | ToolFormat::Granite20bFc => None,
            // The fence's close is no end: the list's own fence opens with it.
            ToolFormat::CommandR => None,
            ToolFormat::Granite | ToolFormat::Llama3Json => None,
            // A message ends where the next opens (`functionary_v32::message_end`).
            ToolFormat::FunctionaryV32 => None,
            // One call, to the end of the answer (the turn's end is left out in decoding).
            ToolFormat::GigaChat3 | ToolFormat::GigaChat31 => None,
        }
    }

    fn family(self) -> Family {
        match self {
            ToolFormat::Qwen3Coder | ToolFormat::SeedOss => Family::Tags(Style::Function),
            ToolFormat::Glm45 => Family::Tags(Style::ArgPairs),
            ToolFormat::MinimaxM2 => Family::Tags(Style::Invoke),
            ToolFormat::MiniCpm5 => Family::Tags(Style::FunctionParam),
            ToolFormat::HyV3 => Family::Tags(Style::Hy3),
            ToolFormat::DeepseekV32 | ToolFormat::DeepseekV4 => Family::Tags(Style::Dsml),
            ToolFormat::KimiK2 => Family::Kimi,
            ToolFormat::SolarOpen => Family::Solar,
            ToolFormat::DeepseekV3 => Family::Deepseek(Layout::Fenced),
            ToolFormat::DeepseekV31 => Family::Deepseek(Layout::Bare),
            ToolFormat::MistralArgs => Family::MistralArgs,
            ToolFormat::Functionary => Family::Functionary,
            ToolFormat::FunctionaryV32 => Family::Recipients,
            ToolFormat::Lfm2 => Family::Pythonic(PyLayout::Lfm2),
            ToolFormat::Pythonic => Family::Pythonic(PyLayout::List),
            ToolFormat::Olmo3 => Family::Pythonic(PyLayout::Lines),
            ToolFormat::Apertus => Family::NameKeyed,
            ToolFormat::MinimaxM3 => Family::NestedXml,
            ToolFormat::Gemma4 => Family::GemmaObjects(GEMMA4),
            ToolFormat::FunctionGemma => Family::GemmaObjects(FUNCTION_GEMMA),
            ToolFormat::Hermes | ToolFormat::Mistral | ToolFormat::Granite => Family::Json,
            ToolFormat::Apriel | ToolFormat::NemotronJson => Family::Json,
            ToolFormat::Llama3Json | ToolFormat::CommandR7b => Family::Json,
            ToolFormat::CommandR => Family::Json,
            ToolFormat::GigaChat3 | ToolFormat::GigaChat31 => Family::Json,
            ToolFormat::Firefunction | ToolFormat::MinimaxM1 => Family::Json,
            ToolFormat::Phi4Mini | ToolFormat::Xlam | ToolFormat::Granite20bFc => Family::Json,
        }
    }

    /// Whether the calls come as one JSON list after the marker, to the end (`[{...}, ...]`).
    fn is_call_list(self) -> bool {
        matches!(
            self,
            ToolFormat::Mistral
                | ToolFormat::Granite
                | ToolFormat::Apriel
                | ToolFormat::NemotronJson
                | ToolFormat::CommandR7b
                | ToolFormat::CommandR
                | ToolFormat::Firefunction
                | ToolFormat::Phi4Mini
                | ToolFormat::Xlam
        )
    }

    /// Whether a block may only open the output (after whitespace); otherwise it is text.
    pub fn only_at_start(self) -> bool {
        matches!(
            self,
            ToolFormat::Llama3Json | ToolFormat::Pythonic | ToolFormat::Xlam
        )
    }

    /// Whether the start text belongs to the block's body (llama 3's `{`, FireFunction's and
    /// the pythonic list's `[`).
    pub fn start_in_body(self) -> bool {
        matches!(
            self,
            ToolFormat::Llama3Json
                | ToolFormat::Firefunction
                | ToolFormat::Phi4Mini
                | ToolFormat::Xlam
                | ToolFormat::Pythonic
        )
    }

    /// How an answer opens that is a call without its block marker (hermes models, small ones
    /// especially, sometimes answer with the bare call object, pretty-printed or in a ```json
    /// fence, as llama.cpp's hermes parser also accepts); it then runs to the end.
    pub fn bare_call_start(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes => Some(self.bare_call_marker()),
            // Llama 3's calls are read at the answer's start anyway (`only_at_start`); the
            // others' models write their markers.
            _ => None,
        }
    }

    /// Whether the start marker may be a special token the decoder must keep (Mistral's,
    /// Granite's and Seed-OSS's are; GLM's and some of the `<function=` families' vocabularies
    /// mark `<tool_call>` special too, Qwen's does not).
    pub fn needs_special_tokens(self) -> bool {
        !matches!(
            self,
            ToolFormat::Hermes
                | ToolFormat::Llama3Json
                | ToolFormat::Pythonic
                | ToolFormat::FunctionaryV32
                | ToolFormat::CommandR
        )
    }

    /// Whether the answer is a run of messages to recipients (`functionary_v32`), its first
    /// opened by the prompt.
    pub fn addresses_recipients(self) -> bool {
        self == ToolFormat::FunctionaryV32
    }

    /// Special tokens left out of the text all the same where the server keeps them to read
    /// the calls (GigaChat's turn end: neither part of an answer nor of a call).
    pub fn hidden_tokens(self) -> &'static [&'static str] {
        match self {
            ToolFormat::GigaChat3 | ToolFormat::GigaChat31 => &gigachat::HIDDEN,
            _ => &[],
        }
    }

    /// `text` without `hidden_tokens` (a forced opening that writes one, read with the answer).
    pub fn without_hidden(self, text: &str) -> String {
        let mut text = text.to_string();
        for token in self.hidden_tokens() {
            text = text.replace(token, "");
        }
        text
    }

    /// Whether an answer holds one call at most (GigaChat's templates write only a turn's
    /// first call).
    pub fn single_call(self) -> bool {
        matches!(self, ToolFormat::GigaChat3 | ToolFormat::GigaChat31)
    }

    /// The calls in one block's body, or `None` when it is not well-formed (then the block is
    /// returned as text, as vLLM's parsers do). `functions` (names, parameter schemas) type
    /// the tag formats' values.
    pub fn parse_block(self, body: &str, functions: &[(String, Value)]) -> Option<Vec<ParsedCall>> {
        match self.family() {
            Family::Tags(style) => style.parse(body, functions),
            Family::Kimi => kimi::parse(body),
            Family::Solar => solar::parse(body),
            Family::Deepseek(layout) => layout.parse(body),
            Family::MistralArgs => mistral_args::parse(body),
            Family::Functionary => functionary::parse(body),
            Family::Recipients => functionary_v32::parse(body),
            Family::Pythonic(layout) => layout.parse(body),
            Family::NameKeyed => apertus::parse(body),
            Family::NestedXml => minimax_m3::parse(body, functions),
            Family::GemmaObjects(marks) => marks.parse(body),
            // FireFunction's and Phi-4-mini's marker ends with the list's `[`, kept in the body.
            Family::Json if matches!(self, ToolFormat::Firefunction | ToolFormat::Phi4Mini) => {
                let list = body.trim_start().strip_prefix(PHI4_MINI_CALLS)?;
                call_list(&format!("[{list}"))
            }
            Family::Json if self == ToolFormat::CommandR => {
                let list = command_r_list(body)?;
                let calls = call_list(list)?;
                let defined = |name: &str| functions.iter().any(|(f, _)| f == name);
                Some(
                    calls
                        .into_iter()
                        .filter(|c| defined(&c.name) || !DIRECTLY_ANSWER.contains(&&*c.name))
                        .collect(),
                )
            }
            Family::Json if self.is_call_list() => call_list(body),
            Family::Json if self == ToolFormat::Granite20bFc => {
                let defined = |name: &str| functions.iter().any(|(f, _)| f == name);
                let mut calls = Vec::new();
                for object in body.split(GRANITE_20B.call) {
                    let call = call_object(&serde_json::from_str(object.trim()).ok()?)?;
                    if defined(&call.name) || call.name != GRANITE_20B.no_function {
                        calls.push(call);
                    }
                }
                Some(calls)
            }
            Family::Json if matches!(self, ToolFormat::Llama3Json | ToolFormat::MinimaxM1) => {
                json_sequence(body)?.iter().map(call_object).collect()
            }
            Family::Json if self.single_call() => gigachat::parse(body),
            Family::Json => Some(vec![call_object(&serde_json::from_str(body.trim()).ok()?)?]),
        }
    }

    /// The calls of a bare-call answer (`bare_call_start`, its fence removed): one or more
    /// call objects one after the other; `None` if anything else is there.
    pub fn parse_bare(self, body: &str) -> Option<Vec<ParsedCall>> {
        json_sequence(body)?.iter().map(call_object).collect()
    }

    /// The key a call's arguments go under.
    fn arguments_key(self) -> &'static str {
        match self {
            ToolFormat::Llama3Json | ToolFormat::CommandR7b | ToolFormat::CommandR => "parameters",
            _ => "arguments",
        }
    }

    /// What closes a JSON call after its arguments object, as lark items (a closing marker
    /// that is a special token named as the token).
    fn call_tail(self, special: &dyn Fn(&str) -> bool) -> String {
        match self {
            ToolFormat::Hermes => literal("}\n</tool_call>"),
            ToolFormat::Mistral | ToolFormat::Granite => literal("}]"),
            ToolFormat::Firefunction | ToolFormat::Phi4Mini | ToolFormat::Xlam => literal("}]"),
            // Jamba's closing tag is a special token of its vocabulary, Apriel's text.
            ToolFormat::Apriel => format!("{} {}", literal("}]"), marker("</tool_calls>", special)),
            ToolFormat::NemotronJson => {
                format!("{} {}", literal("}]"), marker(NEMOTRON_CALLS.1, special))
            }
            // One object a line, then the block's end.
            ToolFormat::MinimaxM1 => {
                format!("{} {}", literal("}\n"), marker("</tool_calls>", special))
            }
            // The template's layout: the list's items on lines of their own.
            ToolFormat::CommandR7b => {
                format!("{} {}", literal("}\n]"), marker(R7B_ACTION.1, special))
            }
            // Its template's layout: the list closed, then the fence.
            ToolFormat::CommandR => literal(&format!("}}\n]{}", COMMAND_R_FENCE.1)),
            _ => literal("}"),
        }
    }

    /// How this format's call objects open, up to the function's name.
    fn call_object_opening(self) -> &'static str {
        match self {
            ToolFormat::CommandR7b => R7B_OBJECT_OPENING,
            ToolFormat::CommandR => COMMAND_R_OBJECT_OPENING,
            _ => CALL_OBJECT_OPENING,
        }
    }

    /// The lark grammar of what follows `forced_prefix(function)`: the rest of one call, to
    /// `function` or to any of `functions` (name, parameters schema), its arguments following
    /// the function's schema. With it a demanded call always parses and names a known function.
    /// `special` says which texts are one special token of the vocabulary (the tag formats'
    /// markers are named as tokens where they are).
    pub fn call_grammar(
        self,
        functions: &[(String, Value)],
        function: Option<&str>,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        match self.family() {
            Family::Tags(style) => {
                let end = self.call_end().unwrap_or_default();
                return TagGrammar { style, special }.call_grammar(functions, function, end);
            }
            Family::Kimi => return kimi::call_grammar(functions, function, special),
            Family::Solar => return solar::call_grammar(functions, function, special),
            Family::Deepseek(layout) => return layout.call_grammar(functions, function, special),
            Family::MistralArgs => return mistral_args::call_grammar(functions, function, special),
            Family::Functionary => return functionary::call_grammar(functions, function),
            Family::Recipients => return functionary_v32::call_grammar(functions, function),
            Family::Pythonic(layout) => return layout.call_grammar(functions, function, special),
            Family::NameKeyed => return apertus::call_grammar(functions, function, special),
            Family::NestedXml => return minimax_m3::call_grammar(functions, function),
            Family::GemmaObjects(marks) => return marks.call_grammar(functions, function, special),
            Family::Json => {}
        }
        let tail = self.call_tail(special);
        match function {
            Some(name) => arguments_grammar(functions, name, &format!(" {tail}")),
            // The prefix has opened the call object and its "name" key.
            None => Ok(format!(
                "start: call {tail}\n{}",
                self.call_rules(functions, false)?
            )),
        }
    }

    /// For `tool_choice: "auto"`: the lark grammars of a call the model opens, for lazy
    /// grammars: after a token that opens a call (`trigger_text`), and of an answer that
    /// opens as bare call objects (hermes models that leave the marker out, llama 3's plain
    /// JSON calls). With them a call the model starts always parses, as with llama.cpp's lazy
    /// tool grammars; the text around calls stays free. `special` as for `call_grammar`.
    pub fn lazy_call_grammar(
        self,
        functions: &[(String, Value)],
        parallel: bool,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<LazyCall, String> {
        // The formats of their own: one grammar after their opening token, and whether the
        // text is free again after it (Mistral's `[ARGS]` calls run to the end of the answer).
        let own = match self.family() {
            Family::Tags(style) => {
                let end = self.call_end().unwrap_or_default();
                let grammar =
                    TagGrammar { style, special }.block_grammar(functions, end, parallel)?;
                Some((grammar, parallel))
            }
            Family::Kimi => Some((
                kimi::section_grammar(functions, parallel, special)?,
                parallel,
            )),
            Family::Solar => Some((
                solar::section_grammar(functions, parallel, special)?,
                parallel,
            )),
            Family::Deepseek(layout) => Some((
                layout.section_grammar(functions, parallel, special)?,
                parallel,
            )),
            Family::Functionary => Some((functionary::call_grammar(functions, None)?, parallel)),
            // Every message opens the same way, the first in the prompt; a message to the user
            // or a `>>>` in text frees the text, so the grammar always lets go (a second call
            // under `parallel_tool_calls: false` is dropped as in every format).
            Family::Recipients => {
                return Ok(LazyCall {
                    after_trigger: Some(functionary_v32::message_grammar(functions)?),
                    bare: None,
                    rearm: true,
                    at_start: true,
                })
            }
            // The answer's list runs to its end; the blocks close.
            Family::Pythonic(layout) => {
                return Ok(LazyCall {
                    after_trigger: Some(layout.block_grammar(functions, parallel, special)?),
                    bare: layout.bare_grammar(functions, parallel)?,
                    rearm: parallel && self.call_end().is_some(),
                    at_start: false,
                })
            }
            Family::MistralArgs => Some((
                mistral_args::lazy_grammar(functions, parallel, special)?,
                false,
            )),
            Family::NameKeyed => Some((
                apertus::lazy_grammar(functions, parallel, special)?,
                parallel,
            )),
            Family::NestedXml => Some((minimax_m3::block_grammar(functions, parallel)?, parallel)),
            Family::GemmaObjects(marks) => {
                Some((marks.block_grammar(functions, special)?, parallel))
            }
            Family::Json => None,
        };
        if let Some((grammar, rearm)) = own {
            return Ok(LazyCall {
                after_trigger: Some(grammar),
                bare: None,
                rearm,
                at_start: false,
            });
        }
        let rules = self.call_rules(functions, true)?;
        let tail = self.call_tail(special);
        // Call objects one after the other (llama 3 joins them with `;`), the whole answer;
        // one only under `parallel_tool_calls: false`.
        let objects = |separator: &str| {
            let more = if parallel {
                format!(" (WS? {separator} one)*")
            } else {
                String::new()
            };
            format!(
                "start: WS? one{more}\none: call \"}}\"\n\
                 WS: /[ \\t\\n]{{1,4}}/\n{rules}"
            )
        };
        let list_more = if parallel { " (\",\" WS? one)*" } else { "" };
        let (after_trigger, bare) = match self {
            // One call to the end of the answer: 3.0's header ends with a newline after its
            // one token, the trigger.
            ToolFormat::GigaChat3 => (Some(format!("start: \"\\n\" call \"}}\"\n{rules}")), None),
            ToolFormat::GigaChat31 => (Some(format!("start: call \"}}\"\n{rules}")), None),
            // An object a line, as the template writes them, to the block's end.
            ToolFormat::MinimaxM1 => {
                let more = if parallel { " (\"\\n\" one)*" } else { "" };
                (
                    Some(format!(
                        "start: \"\\n\" one{more} \"\\n\" {}\none: call \"}}\"\n{rules}",
                        marker("</tool_calls>", special)
                    )),
                    None,
                )
            }
            ToolFormat::Hermes => (
                Some(format!("start: \"\\n\" call {tail}\n{rules}")),
                Some(objects("")),
            ),
            // Calls one after the other, each after its marker, to the end of the answer.
            ToolFormat::Granite20bFc => (
                Some(objects(&format!(
                    "{} WS?",
                    marker(GRANITE_20B.call, special)
                ))),
                None,
            ),
            // Mistral's and Granite's calls are one list, running to the end of the answer;
            // Apriel's closes with its tag.
            _ if self.is_call_list() => {
                let close = match self {
                    ToolFormat::CommandR => format!("WS? {}", literal(COMMAND_R_FENCE.1)),
                    _ => self
                        .call_end()
                        .map(|end| marker(end, special))
                        .unwrap_or_default(),
                };
                // FireFunction's trigger opened the list; Command R's fences it.
                let open = match self {
                    ToolFormat::Firefunction | ToolFormat::Phi4Mini => String::new(),
                    ToolFormat::CommandR => {
                        format!("WS? {} WS? \"[\" ", literal(COMMAND_R_FENCE.0))
                    }
                    // xLAM's list is the whole answer, whitespace before it.
                    ToolFormat::Xlam => "WS? \"[\" ".to_string(),
                    _ => "\"[\" ".to_string(),
                };
                let list = format!(
                    "start: {open}WS? one{list_more} WS? \"]\" {close}\none: call \"}}\"\n\
                     WS: /[ \\t\\n]{{1,8}}/\n{rules}"
                );
                match self {
                    // xLAM's list is opened by text: no trigger, a bare opening.
                    ToolFormat::Xlam => (None, Some(list)),
                    _ => (Some(list), None),
                }
            }
            // Llama 3 calls open the answer, after `<|python_tag|>` or not.
            _ => (Some(objects("\";\" WS?")), Some(objects("\";\" WS?"))),
        };
        Ok(LazyCall {
            after_trigger,
            bare,
            // After a hermes call the text is free again (and may hold more calls), unless
            // one call is all the request takes: then only the end may follow. Calls that run
            // to the end (lists, GigaChat's one call) have no end to rearm after.
            rearm: parallel && self.call_end().is_some(),
            at_start: false,
        })
    }

    /// The token text that opens a call anywhere in the answer, for a lazy grammar's trigger.
    pub fn trigger_text(self) -> &'static str {
        match self {
            // Llama 3's block start (`{`) is text; the tag before its calls is a token.
            ToolFormat::Llama3Json => "<|python_tag|>",
            ToolFormat::GigaChat3 => gigachat::ROLE_SEP,
            // The list opens with text (`[`); Llama 4's token before it is a trigger.
            ToolFormat::Pythonic => python_calls::PYTHON_START,
            _ => self.call_start(),
        }
    }

    /// The text (after whitespace) that commits an answer to its bare-call grammar: the call
    /// object's opening up to its first key, `{"name"`; the pythonic list's `[` (the answer
    /// is the list or text, by its template's instructions).
    pub fn bare_call_marker(self) -> &'static str {
        match self {
            ToolFormat::Pythonic => "[",
            ToolFormat::Xlam => XLAM_LIST_OPENING,
            _ => CALL_OBJECT_OPENING.trim_end_matches([':', ' ']),
        }
    }

    /// Lark rule `call`: the call object's opening where `opened` (else a prefix has written
    /// it), then one function's name and arguments (its schema's JSON), for any of
    /// `functions`; the call object's closing brace is left to the caller.
    fn call_rules(self, functions: &[(String, Value)], opened: bool) -> Result<String, String> {
        let opening = match (opened, self) {
            (false, _) => String::new(),
            // Command R7B numbers its calls: any number where the object opens.
            (true, ToolFormat::CommandR7b) => format!(
                "{} /[0-9]{{1,4}}/ {} ",
                literal("{\"tool_call_id\": \""),
                literal("\", \"tool_name\": ")
            ),
            (true, _) => format!("{} ", literal(self.call_object_opening())),
        };
        call_alternatives(functions, |i, name, params| {
            Ok(format!(
                "call_{i}: {opening}{} args_{i}\n{}",
                literal(&self.name_then_arguments(name)),
                args_rule(i, params)?
            ))
        })
    }

    /// Text the answer is made to begin with, when the request demands a call
    /// (`tool_choice: "required"` or a named function): the model then continues a call.
    pub fn forced_prefix(self, function: Option<&str>) -> String {
        match self.family() {
            Family::Kimi => return kimi::forced_prefix(function),
            Family::Solar => return solar::forced_prefix(function),
            Family::Deepseek(layout) => return layout.forced_prefix(function),
            Family::MistralArgs => return mistral_args::forced_prefix(function),
            Family::Functionary => return functionary::forced_prefix(function),
            Family::Recipients => return functionary_v32::forced_prefix(function),
            Family::Pythonic(layout) => return layout.forced_prefix(function),
            Family::NameKeyed => return apertus::forced_prefix(function),
            Family::NestedXml => return minimax_m3::forced_prefix(function),
            Family::GemmaObjects(marks) => return marks.forced_prefix(function),
            Family::Tags(style) => {
                let head = function.map(|f| style.head(f)).unwrap_or_default();
                return format!("{}{}{head}", self.call_start(), style.block_opening());
            }
            Family::Json => {}
        }
        let opening = match self {
            ToolFormat::Hermes => "<tool_call>\n",
            ToolFormat::Mistral => "[TOOL_CALLS][",
            ToolFormat::Granite => "<|tool_call|>[",
            ToolFormat::Apriel => "<tool_calls>[",
            ToolFormat::MinimaxM1 => "<tool_calls>\n",
            ToolFormat::NemotronJson => "<TOOLCALL>[",
            ToolFormat::CommandR7b => "<|START_ACTION|>[\n    ",
            ToolFormat::CommandR => "Action:\n```json\n[\n    ",
            ToolFormat::GigaChat3 => gigachat::CALL_ONLY_OPENING,
            ToolFormat::GigaChat31 => gigachat::FUNCTION_CALL,
            ToolFormat::Firefunction => FIREFUNCTION_CALLS,
            ToolFormat::Phi4Mini => PHI4_MINI_CALLS,
            ToolFormat::Xlam => "[",
            ToolFormat::Granite20bFc => "<function_call> ",
            _ => "",
        };
        let named = function.map(|f| self.name_then_arguments(f));
        format!(
            "{opening}{}{}",
            self.call_object_opening(),
            named.unwrap_or_default()
        )
    }

    /// Variables the format's template reads that transformers does not pass, as llama.cpp
    /// passes them: FireFunction v2's `functions` (the tools' JSON, indented by two; empty
    /// without tools: its template reads them in every prompt) and `datetime` (`now`, as
    /// "Dec 07 2026 09:45:00 GMT").
    pub fn template_variables(
        self,
        tools: Option<&Value>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(&'static str, Value)> {
        match self {
            ToolFormat::Firefunction => {
                let functions = tools
                    .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                    .and_then(|t| serde_json::to_string_pretty(t).ok())
                    .unwrap_or_default();
                let datetime = now.format("%b %d %Y %H:%M:%S GMT").to_string();
                vec![
                    ("functions", functions.into()),
                    ("datetime", datetime.into()),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// An earlier assistant turn's calls (`tool_calls` as templates get them) in the model's
    /// own syntax, for the formats whose templates print an assistant turn's content only
    /// (LFM2's); `None` for the others, whose templates write the calls themselves.
    pub fn history_text(self, calls: &[Value]) -> Option<String> {
        match self.family() {
            Family::Pythonic(PyLayout::Lfm2) => lfm2::history_text(calls),
            _ => None,
        }
    }

    /// A call's text from its name to its arguments: `"f", "arguments": `.
    fn name_then_arguments(self, name: &str) -> String {
        let name = serde_json::to_string(name).unwrap_or_default();
        format!("{name}, \"{}\": ", self.arguments_key())
    }
}

/// The lark grammar of function `name`'s arguments (its schema's JSON), then `tail` (lark
/// items after `args`): what follows a prefix that has named the function.
pub fn arguments_grammar(
    functions: &[(String, Value)],
    name: &str,
    tail: &str,
) -> Result<String, String> {
    let params = &functions[function_index(functions, name)?].1;
    Ok(format!(
        "start: args{tail}\nargs: %json {}\n",
        schema_text(params)?
    ))
}

/// Where function `name` is among `functions`.
pub(crate) fn function_index(functions: &[(String, Value)], name: &str) -> Result<usize, String> {
    functions
        .iter()
        .position(|(n, _)| n == name)
        .ok_or_else(|| format!("no function `{name}`"))
}

/// A call format's marker as a lark item: the special token it is in the vocabulary (which
/// plain text can never spell under a grammar), else its text.
pub(crate) fn marker(text: &str, special: &dyn Fn(&str) -> bool) -> String {
    if special(text) {
        text.to_string()
    } else {
        literal(text)
    }
}

/// Lark rules of members written in order, `separator` (lark items) only between those
/// present: `members` are each member's rule and whether it is required; `{first}{j}` is the
/// members from j on with none written yet, `{first}0` the whole list, `{rest}{j}` the same
/// after one was written (each with its separator). Python calls' keyword arguments and
/// Gemma's object members are such lists.
pub(crate) fn separated_members(
    first: &str,
    rest: &str,
    members: &[(String, bool)],
    separator: &str,
) -> String {
    let mut rules = String::new();
    for (j, (member, required)) in members.iter().enumerate() {
        let next = j + 1;
        let (none_yet, after_one) = match required {
            true => (
                format!("{member} {rest}{next}"),
                format!("{separator} {member} {rest}{next}"),
            ),
            false => (
                format!("{member} {rest}{next} | {first}{next}"),
                format!("({separator} {member})? {rest}{next}"),
            ),
        };
        rules.push_str(&format!("{first}{j}: {none_yet}\n{rest}{j}: {after_one}\n"));
    }
    let n = members.len();
    rules.push_str(&format!("{first}{n}: \"\"\n{rest}{n}: \"\"\n"));
    rules
}

/// Lark rule `call: call_0 | call_1 | ...`, one alternative per function, then each
/// function's rules as `rules(i, name, params)` writes them (its `call_i` among them).
pub(crate) fn call_alternatives(
    functions: &[(String, Value)],
    rules: impl Fn(usize, &str, &Value) -> Result<String, String>,
) -> Result<String, String> {
    let names: Vec<String> = (0..functions.len()).map(|i| format!("call_{i}")).collect();
    let mut lark = format!("call: {}\n", names.join(" | "));
    for (i, (name, params)) in functions.iter().enumerate() {
        lark.push_str(&rules(i, name, params)?);
    }
    Ok(lark)
}

/// The calls of a section's body that is nothing but `call_begin` HEAD `separator` CALL
/// `call_end` blocks (Kimi's, DeepSeek's; the last may stop before its `call_end`: a model
/// that stops right after the arguments still made the call). `read` takes a block's head and
/// call to the function's name and its arguments' JSON text; `None` unless every block reads
/// as a plausible name and a JSON object.
pub(crate) fn section_calls<'a>(
    body: &'a str,
    (call_begin, separator, call_end): (&str, &str, &str),
    read: impl Fn(&'a str, &'a str) -> Option<(&'a str, &'a str)>,
) -> Option<Vec<ParsedCall>> {
    let mut calls = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (head, after) = rest.strip_prefix(call_begin)?.split_once(separator)?;
        let (call, after) = after.split_once(call_end).unwrap_or((after, ""));
        let (name, arguments) = read(head, call)?;
        let arguments: Value = serde_json::from_str(arguments.trim()).ok()?;
        if name.is_empty() || name.contains(['<', '>', '\n', ' ']) || !arguments.is_object() {
            return None;
        }
        calls.push(ParsedCall {
            name: name.to_string(),
            arguments: serde_json::to_string(&arguments).ok()?,
        });
        rest = after.trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// Lark's optional whitespace between a section's calls and markers.
pub(crate) const WS_RULE: &str = "WS: /[ \\t\\n]{1,4}/\n";

/// A section of calls' markers as lark items (Kimi's, Solar Open's): each call opens with
/// `call_head` (its opening marker and what precedes the function's name), runs through the
/// `call` rules and closes with `call_end`; the section closes with `section_end`.
pub(crate) struct SectionGrammar {
    pub call_head: String,
    pub call_end: String,
    pub section_end: String,
}

impl SectionGrammar {
    /// After a demanded call's prefix (which opened the section and a call up to the name,
    /// or through the arguments' marker when `function` is named): the rest of that call and
    /// the section's end; `rules` writes the `call` rules.
    pub fn after_prefix(
        &self,
        functions: &[(String, Value)],
        function: Option<&str>,
        rules: impl FnOnce() -> Result<String, String>,
    ) -> Result<String, String> {
        let end = format!("{} WS? {}", self.call_end, self.section_end);
        name_first_call_grammar(functions, function, &end, WS_RULE, rules)
    }

    /// After the section's opening token (a lazy grammar's trigger): its calls (one only
    /// unless `parallel`), then its end; `rules` are the `call` rules and any others the
    /// head names.
    pub fn section(&self, parallel: bool, rules: &str) -> String {
        let more = if parallel { " one*" } else { "" };
        format!(
            "start: one{more} WS? {}\none: WS? {} call {}\n{rules}{WS_RULE}",
            self.section_end, self.call_head, self.call_end
        )
    }
}

/// The grammar after a demanded call's prefix, for the formats that write the name before
/// the arguments (Kimi's, DeepSeek's, Mistral's `[ARGS]`, functionary's): the arguments of
/// `function` (the prefix named it) or one call to any of `functions` (the `call` rules
/// `rules` writes), then `end` (lark items, maybe none); `extra` rules go with both.
pub(crate) fn name_first_call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
    end: &str,
    extra: &str,
    rules: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    match function {
        Some(name) => {
            let i = function_index(functions, name)?;
            let args = args_rule(i, &functions[i].1)?;
            Ok(format!("start: args_{i} {end}\n{args}{extra}"))
        }
        None => Ok(format!("start: call {end}\n{}{extra}", rules()?)),
    }
}

/// Rules `call` (a function's name, `between` (lark items), its arguments) and `args_i`.
pub(crate) fn name_then_args_rules(
    functions: &[(String, Value)],
    between: &str,
) -> Result<String, String> {
    call_alternatives(functions, |i, name, params| {
        Ok(format!(
            "call_{i}: {} {between} args_{i}\n{}",
            literal(name),
            args_rule(i, params)?
        ))
    })
}

/// A parameters schema's properties in its order, each with whether it is required.
pub(crate) fn schema_properties(params: &Value) -> Vec<(&String, &Value, bool)> {
    let required = |key: &str| {
        params
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(key)))
    };
    let properties = params.get("properties").and_then(Value::as_object);
    properties
        .into_iter()
        .flatten()
        .map(|(key, schema)| (key, schema, required(key)))
        .collect()
}

/// Lark rule `args_i`: arguments following `params`, a function's parameters schema.
pub(crate) fn args_rule(i: usize, params: &Value) -> Result<String, String> {
    Ok(format!("args_{i}: %json {}\n", schema_text(params)?))
}

/// `text` as a lark string literal (JSON string syntax).
pub(crate) fn literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// A parameters schema for `%json`, whitespace bounded as in response formats.
pub(crate) fn schema_text(params: &Value) -> Result<String, String> {
    let bounded = crate::engine::grammar::bounded_whitespace(params.clone())?;
    serde_json::to_string(&bounded).map_err(|e| e.to_string())
}

/// `{"name": "f", "arguments": {...}}` (or `"tool_name"`, `"parameters"`) as a call; arguments given as a
/// JSON string are taken as they are.
fn call_object(v: &Value) -> Option<ParsedCall> {
    // Command R7B's objects name the function `tool_name`.
    let name = v
        .get("name")
        .or_else(|| v.get("tool_name"))?
        .as_str()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let arguments = match v.get("arguments").or_else(|| v.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(args @ Value::Object(_)) => serde_json::to_string(args).ok()?,
        Some(_) => return None,
    };
    Some(ParsedCall { name, arguments })
}

/// Command R's list inside its fence (` ```json [...] ``` `, as its template writes it; a
/// model leaving the fence out is read too).
fn command_r_list(body: &str) -> Option<&str> {
    let body = body.trim();
    let body = body.strip_prefix(COMMAND_R_FENCE.0).unwrap_or(body);
    Some(body.strip_suffix(COMMAND_R_FENCE.1).unwrap_or(body))
}

/// The calls of a JSON list of call objects (or of one object alone): the list formats' body.
fn call_list(body: &str) -> Option<Vec<ParsedCall>> {
    match serde_json::from_str(body.trim()).ok()? {
        Value::Array(items) => items.iter().map(call_object).collect(),
        one => Some(vec![call_object(&one)?]),
    }
}

/// JSON values one after another, separated by whitespace or `;`; `None` unless the whole
/// text is such a sequence.
fn json_sequence(text: &str) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        values.push(stream.next()?.ok()?);
        rest = rest[stream.byte_offset()..].trim_start();
        if let Some(after) = rest.strip_prefix(';') {
            rest = after.trim_start();
        }
    }
    (!values.is_empty()).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall::new(name, arguments)
    }

    /// The vendors' templates (`tests/fixtures/chat_tools`, `chat_templates`) name their
    /// formats; GLM's, Qwen3-Coder's and Seed-OSS's tags are not read as Hermes JSON.
    #[test]
    fn formats_are_told_from_templates() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let template = |file: &str| {
            let text = std::fs::read_to_string(format!("{fixtures}/{file}")).unwrap();
            let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
            golden["chat_template"].as_str().unwrap().to_string()
        };
        for (name, format) in [
            ("qwen2.5-0.5b", ToolFormat::Hermes),
            ("Qwen3-Coder", ToolFormat::Qwen3Coder),
            (
                "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
                ToolFormat::Qwen3Coder,
            ),
            ("ByteDance-Seed-OSS", ToolFormat::SeedOss),
            ("GLM-4.6", ToolFormat::Glm45),
            ("GLM-4.7-Flash", ToolFormat::Glm45),
            ("ibm-granite-granite-3.3-2B-Instruct", ToolFormat::Granite),
            ("moonshotai-Kimi-K2", ToolFormat::KimiK2),
        ] {
            let source = template(&format!("chat_tools/{name}.json"));
            assert_eq!(ToolFormat::detect(&source), Ok(format), "{name}");
        }
        let families: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixtures}/chat_templates/families.json")).unwrap(),
        )
        .unwrap();
        let detected: Vec<_> = families["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| ToolFormat::detect(f["chat_template"].as_str().unwrap()))
            .collect();
        assert_eq!(
            detected,
            [
                Ok(ToolFormat::SeedOss),
                Ok(ToolFormat::Glm45),
                Ok(ToolFormat::Granite)
            ]
        );
        assert_eq!(
            ToolFormat::detect("{{ '[AVAILABLE_TOOLS]' }}{{ '[TOOL_CALLS]' }}"),
            Ok(ToolFormat::Mistral)
        );
        assert_eq!(
            ToolFormat::detect("{% if tools %}{{ '<|python_tag|>' }}{% endif %}"),
            Ok(ToolFormat::Llama3Json)
        );
        assert_eq!(
            ToolFormat::detect("{% if tools %}{{ '<|START_ACTION|>' }}{% endif %}"),
            Ok(ToolFormat::CommandR7b)
        );
        // Jamba 1.5-1.7's markers in variables, the list opened after them.
        let jamba = "{% set tool_definitions_prefix = \"<tool_definitions>\" %}\
                     {% set tool_calls_prefix = \"<tool_calls>\" %}\
                     {% macro handle_tool_calls(tool_calls) %}\
                     {{- tool_calls_prefix + \"[\\n\" -}}{% endmacro %}";
        assert_eq!(ToolFormat::detect(jamba), Ok(ToolFormat::Apriel));
        // LFM2's tool list between its tokens, LFM2.5's without them.
        for lfm2 in [
            "{% if tools %}{{ 'List of tools: <|tool_list_start|>[' }}{% endif %}",
            "{% if tools %}{{ 'List of tools: [' }}{% endif %}",
        ] {
            assert_eq!(ToolFormat::detect(lfm2), Ok(ToolFormat::Lfm2), "{lfm2}");
        }
        // vLLM's pythonic templates (Llama 3.2's, Llama 4's, ToolACE's, Gemma 3's) show the
        // list; OLMo 3's shows its block beside the functions' tag.
        let pythonic = "{% if tools %}{{- 'Respond in the format [func_name1(params_name1=\
                        params_value1, params_name2=params_value2...), func_name2(params)] ' }}\
                        {% endif %}";
        assert_eq!(ToolFormat::detect(pythonic), Ok(ToolFormat::Pythonic));
        let olmo3 =
            "{{- \"\\n<function_calls>\\nget_weather(city='New York')\\n</function_calls>\" }}\
                     {{- \"\\n\\nHere are the available functions:\\n<functions>\\n\" }}";
        assert_eq!(ToolFormat::detect(olmo3), Ok(ToolFormat::Olmo3));
        // Phi-4-mini's marker named in words (vLLM's template), its list shown after it with a
        // space, as FireFunction's template shows its own.
        let phi4 = "{%- if tools %}  * prefix function calls with functools marker (no closing \
                    marker required)\n  * ... formatted as functools[{\"name\": [function name]}]\
                    {%- endif %}<|end|><|assistant|>";
        assert_eq!(ToolFormat::detect(phi4), Ok(ToolFormat::Phi4Mini));
        // Granite 20B Function Calling's library and calls.
        let granite =
            "<|function_call_library|>{% for tool in tools %}{{ tool|tojson }}{% endfor %}\
                       please output \\\"<function_call> {\\\"name\\\": \\\"no_function\\\"}";
        assert_eq!(ToolFormat::detect(granite), Ok(ToolFormat::Granite20bFc));
        // FunctionGemma's call block.
        let function_gemma =
            "{%- if tools %}{{- '<start_function_call>call:' + name -}}{% endif %}";
        assert_eq!(
            ToolFormat::detect(function_gemma),
            Ok(ToolFormat::FunctionGemma)
        );
        // DeepSeek's sections: read where the template shows the model its tools, in the
        // layout its history's calls take; V3.1's own template takes no tools.
        let corpus: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixtures}/chat_templates/corpus.json")).unwrap(),
        )
        .unwrap();
        let of_corpus = |name: &str| {
            let templates = corpus["templates"].as_array().unwrap();
            let t = templates.iter().find(|t| t["name"] == name).unwrap();
            ToolFormat::detect(t["chat_template"].as_str().unwrap())
        };
        assert_eq!(
            of_corpus("llama-cpp-deepseek-r1"),
            Ok(ToolFormat::DeepseekV3)
        );
        assert_eq!(
            of_corpus("NVIDIA-Nemotron-Nano-v2"),
            Ok(ToolFormat::NemotronJson)
        );
        assert_eq!(
            of_corpus("upstage-Solar-Open-100B"),
            Ok(ToolFormat::SolarOpen)
        );
        assert_eq!(
            of_corpus("deepseek-ai-DeepSeek-V3.1"),
            Err(Unsupported::NoTools)
        );
        assert_eq!(of_corpus("GigaChat3-10B-A1.8B"), Ok(ToolFormat::GigaChat3));
        assert_eq!(
            of_corpus("vllm-tool_chat_template_xlam_qwen"),
            Ok(ToolFormat::Xlam)
        );
        assert_eq!(
            of_corpus("vllm-tool_chat_template_olmo3"),
            Ok(ToolFormat::Olmo3)
        );
        assert_eq!(
            of_corpus("fireworks-ai-llama-3-firefunction-v2"),
            Ok(ToolFormat::Firefunction)
        );
        assert_eq!(
            of_corpus("GigaChat3.1-10B-A1.8B"),
            Ok(ToolFormat::GigaChat31)
        );
        assert_eq!(
            of_corpus("meetkai-functionary-medium-v3.2"),
            Ok(ToolFormat::FunctionaryV32)
        );
        assert_eq!(
            of_corpus("CohereForAI-c4ai-command-r-plus-tool_use"),
            Ok(ToolFormat::CommandR)
        );
        assert_eq!(
            of_corpus("CohereForAI-c4ai-command-r7b-12-2024-tool_use"),
            Ok(ToolFormat::CommandR7b)
        );
        assert_eq!(of_corpus("MiniMax-M1"), Ok(ToolFormat::MinimaxM1));
        for gemma4 in ["google-gemma-4-31B-it", "google-gemma-4-31B-it-interleaved"] {
            assert_eq!(of_corpus(gemma4), Ok(ToolFormat::Gemma4), "{gemma4}");
        }
        assert_eq!(of_corpus("tencent-Hy3"), Ok(ToolFormat::HyV3));
        assert_eq!(
            of_corpus("deepseek-ai-DeepSeek-V3.2"),
            Ok(ToolFormat::DeepseekV32)
        );
        for v4 in [
            "deepseek-ai-DeepSeek-V4",
            "deepseek-ai-DeepSeek-V4-Flash-0731",
        ] {
            assert_eq!(of_corpus(v4), Ok(ToolFormat::DeepseekV4), "{v4}");
        }
        assert_eq!(of_corpus("openbmb-MiniCPM5-1B"), Ok(ToolFormat::MiniCpm5));
        // MiniMax-M3's nested values are not M2's nor M1's.
        assert_eq!(of_corpus("MiniMax-M3"), Ok(ToolFormat::MinimaxM3));
        assert_eq!(
            ToolFormat::detect(
                "{% if tools %}{{ '<｜tool▁calls▁begin｜>' + name + '<｜tool▁sep｜>' }}{% endif %}"
            ),
            Ok(ToolFormat::DeepseekV31)
        );
        assert_eq!(
            ToolFormat::detect("{% if tools %}{{ tools | tojson }}{% endif %}"),
            Err(Unsupported::UnknownFormat)
        );
        assert_eq!(
            ToolFormat::detect("{% for m in messages %}{{ m.content }}{% endfor %}"),
            Err(Unsupported::NoTools)
        );
    }

    /// Every template of the corpus that takes tools is told but the few whose formats candor
    /// does not read yet (their calls would stay text): a template that falls out of its
    /// format shows here.
    #[test]
    fn the_corpus_templates_with_unknown_formats_are_few() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/chat_templates/corpus.json"
        );
        let corpus: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let unknown: Vec<&str> = corpus["templates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                ToolFormat::detect(t["chat_template"].as_str().unwrap())
                    == Err(Unsupported::UnknownFormat)
            })
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        // Kimi K3's channels, Muse Glimmer's recipients; gpt-oss' harmony messages are read apart (`harmony`).
        assert_eq!(unknown, ["Kimi-K3", "muse-glimmer", "openai-gpt-oss-120b"]);
    }

    #[test]
    fn parser_names_name_every_format_once() {
        for format in ToolFormat::ALL {
            assert_eq!(format.parser_name().parse(), Ok(format));
        }
        assert_eq!("jamba".parse(), Ok(ToolFormat::Apriel));
        assert_eq!("hunyuan_a13b".parse(), Ok(ToolFormat::Apriel));
        assert_eq!("qwen3_xml".parse(), Ok(ToolFormat::Qwen3Coder));
        assert_eq!("llama4_json".parse(), Ok(ToolFormat::Llama3Json));
        assert_eq!("llama4_pythonic".parse(), Ok(ToolFormat::Pythonic));
        assert_eq!("ernie45".parse(), Ok(ToolFormat::Hermes));
        let err = "internlm".parse::<ToolFormat>().unwrap_err();
        assert!(err.contains("known: hermes, mistral,"), "{err}");
    }

    #[test]
    fn blocks_parse_per_format() {
        let hermes = ToolFormat::Hermes;
        assert_eq!(
            hermes.parse_block(
                "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": 2}}\n",
                &[]
            ),
            Some(vec![call("get_weather", "{\"city\":\"Paris\",\"n\":2}")])
        );
        assert_eq!(
            hermes.parse_block("{\"name\": \"now\"}", &[]),
            Some(vec![call("now", "{}")])
        );
        assert_eq!(
            hermes.parse_block("{\"name\": \"f\", \"arguments\": {", &[]),
            None
        );
        assert_eq!(hermes.parse_block("{\"arguments\": {}}", &[]), None);
        assert_eq!(hermes.parse_block("[1, 2]", &[]), None);
        assert_eq!(
            ToolFormat::Mistral.parse_block(
                " [{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": \"{}\"}]"
            , &[]),
            Some(vec![call("a", "{\"x\":1}"), call("b", "{}")])
        );
        assert_eq!(
            ToolFormat::Llama3Json.parse_block(
                "{\"name\": \"a\", \"parameters\": {\"q\": \"x;y\"}}; {\"name\": \"b\", \"parameters\": {}}"
            , &[]),
            Some(vec![call("a", "{\"q\":\"x;y\"}"), call("b", "{}")])
        );
        assert_eq!(
            ToolFormat::Llama3Json.parse_block("{\"name\": \"a\"} and then text", &[]),
            None
        );
        // Jamba's list as its template lays it out.
        assert_eq!(
            ToolFormat::Apriel.parse_block(
                "[\n{\"name\": \"a\", \"arguments\": {\"x\": 1}},{\"name\": \"b\", \"arguments\": {}}\n]",
                &[]
            ),
            Some(vec![call("a", "{\"x\":1}"), call("b", "{}")])
        );
        // MiniMax-M1's objects a line each; anything else in the block is no call.
        let m1 = ToolFormat::MinimaxM1;
        assert_eq!(
            m1.parse_block(
                "\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n{\"name\": \"b\", \"arguments\": {}}\n",
                &[]
            ),
            Some(vec![call("a", "{\"x\":1}"), call("b", "{}")])
        );
        assert_eq!(
            m1.parse_block("\n{\"name\": \"a\"}\nsome text\n", &[]),
            None
        );
        assert_eq!(m1.parse_block("\n[{\"name\": \"a\"}]\n", &[]), None);
        // Command R7B's list as its template lays it out, ids counting the conversation's calls.
        assert_eq!(
            ToolFormat::CommandR7b.parse_block(
                "[\n    {\"tool_call_id\": \"3\", \"tool_name\": \"a\", \"parameters\": {\"x\": 1}},\n    \
                 {\"tool_call_id\": \"4\", \"tool_name\": \"b\", \"parameters\": {}}\n]",
                &[]
            ),
            Some(vec![call("a", "{\"x\":1}"), call("b", "{}")])
        );
    }

    /// Command R / R+'s list in its fence as its template lays it out (pretty-printed objects),
    /// or without the fence; its `directly-answer` pseudo-call is no call unless the request
    /// defines a tool of that name.
    #[test]
    fn command_r_actions_parse_and_drop_the_direct_answer() {
        let r = ToolFormat::CommandR;
        let listed = " ```json\n[\n    {\n        \"tool_name\": \"a\",\n        \"parameters\": {\n            \"x\": 1\n        }\n    },\n    {\n        \"tool_name\": \"b\",\n        \"parameters\": {}\n    }\n]```";
        let both = Some(vec![call("a", "{\"x\":1}"), call("b", "{}")]);
        assert_eq!(r.parse_block(listed, &[]), both);
        assert_eq!(
            r.parse_block(
                "\n[{\"tool_name\": \"a\", \"parameters\": {\"x\": 1}}]",
                &[]
            ),
            Some(vec![call("a", "{\"x\":1}")])
        );
        let direct = "\n```json\n[{\"tool_name\": \"directly-answer\", \"parameters\": {}}]\n```";
        assert_eq!(r.parse_block(direct, &[]), Some(vec![]));
        let defined = [("directly-answer".to_string(), serde_json::json!({}))];
        assert_eq!(
            r.parse_block(direct, &defined),
            Some(vec![call("directly-answer", "{}")])
        );
        assert_eq!(r.parse_block(" none needed", &[]), None);
    }

    #[test]
    fn forced_prefixes_continue_into_parsable_calls() {
        let functions = [(
            "get_weather".to_string(),
            serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )];
        for format in ToolFormat::ALL {
            let named = format.forced_prefix(Some("get_weather"));
            let open = format.forced_prefix(None);
            let (named_tail, open_tail) = match format {
                ToolFormat::Hermes => (
                    "{\"city\": \"Oslo\"}}",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
                ),
                ToolFormat::Mistral
                | ToolFormat::Granite
                | ToolFormat::Firefunction
                | ToolFormat::Phi4Mini
                | ToolFormat::Xlam => (
                    "{\"city\": \"Oslo\"}}]",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
                ),
                ToolFormat::Llama3Json => (
                    "{\"city\": \"Oslo\"}}",
                    "\"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
                ),
                ToolFormat::Granite20bFc => (
                    "{\"city\": \"Oslo\"}}",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
                ),
                ToolFormat::Qwen3Coder | ToolFormat::SeedOss => (
                    "\n<parameter=city>\nOslo\n</parameter>\n</function>\n",
                    "<function=get_weather>\n<parameter=city>Oslo</parameter>\n</function>",
                ),
                ToolFormat::MinimaxM2 => (
                    "\n<parameter name=\"city\">Oslo</parameter>\n</invoke>\n",
                    "<invoke name=\"get_weather\">\n<parameter name=\"city\">Oslo</parameter>\n</invoke>",
                ),
                ToolFormat::DeepseekV32 | ToolFormat::DeepseekV4 => (
                    "\n<｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n\
                     </｜DSML｜invoke>\n",
                    "<｜DSML｜invoke name=\"get_weather\">\n\
                     <｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n\
                     </｜DSML｜invoke>",
                ),
                ToolFormat::MinimaxM3 => (
                    "]<]minimax[>[<city>Oslo]<]minimax[>[</city>]<]minimax[>[</invoke>\n",
                    "\n]<]minimax[>[<invoke name=\"get_weather\">]<]minimax[>[<city>Oslo\
                     ]<]minimax[>[</city>]<]minimax[>[</invoke>",
                ),
                ToolFormat::Gemma4 => (
                    "city:<|\"|>Oslo<|\"|>}",
                    "get_weather{city:<|\"|>Oslo<|\"|>}",
                ),
                ToolFormat::FunctionGemma => (
                    "city:<escape>Oslo<escape>}",
                    "get_weather{city:<escape>Oslo<escape>}",
                ),
                ToolFormat::HyV3 => (
                    "\n<arg_key:opensource>city</arg_key:opensource>\n\
                     <arg_value:opensource>Oslo</arg_value:opensource>\n</tool_call:opensource>\n",
                    "<tool_call:opensource>get_weather<tool_sep:opensource>\
                     <arg_key:opensource>city</arg_key:opensource>\
                     <arg_value:opensource>Oslo</arg_value:opensource></tool_call:opensource>",
                ),
                ToolFormat::MiniCpm5 => (
                    "<param name=\"city\">Oslo</param></function>",
                    "get_weather\"><param name=\"city\"><![CDATA[Oslo]]></param>",
                ),
                ToolFormat::Glm45 => (
                    "<arg_key>city</arg_key><arg_value>Oslo</arg_value>",
                    "get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n",
                ),
                ToolFormat::Apriel | ToolFormat::NemotronJson => (
                    "{\"city\": \"Oslo\"}}]",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
                ),
                ToolFormat::MinimaxM1 => (
                    "{\"city\": \"Oslo\"}}\n",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n",
                ),
                ToolFormat::DeepseekV3 => (
                    "{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜>",
                    "get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜>",
                ),
                ToolFormat::DeepseekV31 => (
                    "{\"city\": \"Oslo\"}<｜tool▁call▁end｜>",
                    "get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}<｜tool▁call▁end｜>",
                ),
                ToolFormat::CommandR7b => (
                    "{\"city\": \"Oslo\"}}\n]",
                    "\"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}\n]",
                ),
                ToolFormat::CommandR => (
                    "{\"city\": \"Oslo\"}}\n]```",
                    "\"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}\n]```",
                ),
                ToolFormat::MistralArgs => (
                    "{\"city\": \"Oslo\"}",
                    "get_weather[ARGS]{\"city\": \"Oslo\"}",
                ),
                ToolFormat::Functionary => (
                    "{\"city\": \"Oslo\"}",
                    "get_weather>{\"city\": \"Oslo\"}",
                ),
                ToolFormat::FunctionaryV32 => (
                    "{\"city\": \"Oslo\"}",
                    "get_weather\n{\"city\": \"Oslo\"}",
                ),
                ToolFormat::Lfm2 | ToolFormat::Pythonic => (
                    "city=\"Oslo\")]",
                    "get_weather(city=\"Oslo\")]",
                ),
                ToolFormat::Olmo3 => ("city='Oslo')\n", "get_weather(city=\"Oslo\")\n"),
                ToolFormat::Apertus => (
                    "{\"city\": \"Oslo\"}}]",
                    "\"get_weather\": {\"city\": \"Oslo\"}}]",
                ),
                ToolFormat::SolarOpen => (
                    "{\"city\": \"Oslo\"}<|tool_call:end|>",
                    "get_weather<|tool_call:args|>{\"city\": \"Oslo\"}<|tool_call:end|>",
                ),
                ToolFormat::GigaChat3 | ToolFormat::GigaChat31 => (
                    "{\"city\": \"Oslo\"}}",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
                ),
                ToolFormat::KimiK2 => (
                    "{\"city\": \"Oslo\"}<|tool_call_end|>",
                    "get_weather:0<|tool_call_argument_begin|>{\"city\": \"Oslo\"}<|tool_call_end|>",
                ),
            };
            for text in [named + named_tail, open + open_tail] {
                // As the answer is read: GigaChat 3.0's prefix closes the assistant's turn.
                let text = format.without_hidden(&text);
                // The prompt opened functionary v3.2's message: the answer is its body.
                let start = match format.addresses_recipients() {
                    true => text.len() - text.trim_start().len(),
                    false => text.find(format.call_start()).unwrap(),
                };
                let body = match format.addresses_recipients() {
                    true => &text[start..],
                    false => &text[start + format.call_start().len()..],
                };
                let body = if format.start_in_body() {
                    text.as_str()
                } else {
                    body
                };
                assert!(text[..start].trim().is_empty(), "{format:?}: {text}");
                assert_eq!(
                    format.parse_block(body, &functions),
                    Some(vec![call("get_weather", "{\"city\":\"Oslo\"}")]),
                    "{format:?}: {text}"
                );
            }
        }
    }
}
