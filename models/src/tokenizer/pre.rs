//! How a GGUF byte-level BPE vocabulary splits text before its merges, by
//! `tokenizer.ggml.pre`: the splitting patterns of the models' own `tokenizer.json`s (as
//! llama.cpp's converter names them), and whether whole pieces found in the vocabulary skip
//! the merges (`ignore_merges`, as Llama 3's and Tekken's tokenizer.json say).
//!
//! A name this table does not know is refused rather than split with GPT-2's pattern: a
//! Mistral Nemo vocabulary (`tekken`) split as GPT-2 would feed the model token sequences it
//! never saw, silently (llama.cpp refuses unknown names too).
use super::TokenizerError;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken (Nemo, Small 3, Ministral): words split at case changes, single digits.
pub(super) const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// o200k's: Tekken's case split with contractions, digits by three.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// ByteDance Seed's (Seed-Coder, Seed-OSS): Qwen2's, digits alone, without line breaks kept on
/// a punctuation run.
const SEED_CODER: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s*[\r\n]+|\s+(?!\S)|\s+";
/// StarCoder's family: every digit alone, then GPT-2's pattern.
const DIGIT: &str = r"\p{N}";
/// DeepSeek-Coder (llama architecture; its FIM tokens are known, `Tokenizer::fim_tokens`):
/// line breaks alone, words with one leading space, punctuation runs likewise, CJK runs, then
/// digits one by one (its tokenizer.json's split sequence).
const DEEPSEEK_CODER: [&str; 5] = [
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    DIGIT,
];

/// DeepSeek LLM and V2 (`deepseek-llm`): line breaks alone, words (its tokenizer.json's own
/// letter class) and ASCII/fullwidth punctuation with one leading space, trailing spaces, CJK
/// runs, digit runs.
const DEEPSEEK_LLM: [&str; 6] = [
    r"[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u{1f7d}ᾀ-ᾴᾶ-ᾼ\u{1fbe}ῂ-ῄῆ-ῌῐ-\u{1fd3}ῖ-\u{1fdb}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u{2126}ℨ\u{212a}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    r"\p{N}+",
];
/// DeepSeek-V3 and R1 (`deepseek-v3`): digits by three, CJK and kana runs, then words that
/// may start with one ASCII punctuation mark, punctuation runs, spaces.
const DEEPSEEK_V3: [&str; 3] = [
    r"\p{N}{1,3}",
    "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

/// A vocabulary's pre-tokenizer: its patterns, applied in order, and its BPE options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreTokenizer {
    patterns: &'static [&'static str],
    /// Whole pieces found in the vocabulary are taken as they are.
    pub ignore_merges: bool,
    /// NFC normalization before splitting (Qwen's tokenizer.json has it).
    pub nfc: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer `tokenizer.ggml.pre` names (`None`: the key is missing, GPT-2's, as
    /// llama.cpp's default).
    pub fn named(pre: Option<&str>) -> Result<Self, TokenizerError> {
        let of = |patterns, ignore_merges, nfc| PreTokenizer {
            patterns,
            ignore_merges,
            nfc,
        };
        Ok(match pre.unwrap_or("default") {
            "default" | "gpt2" | "gpt-2" | "phi-2" | "olmo" | "mpt" | "jais" => {
                of(&[GPT2], false, false)
            }
            "qwen2" => of(&[QWEN2], false, true),
            "deepseek-r1-qwen" | "stablelm2" => of(&[QWEN2], false, false),
            // LFM2's vocabulary splits as Llama 3's (llama.cpp's LLAMA3 pre-tokenizer for it).
            "llama-bpe" | "llama3" | "llama-v3" | "lfm2" => of(&[LLAMA3], true, false),
            // GLM-4 and GLM-4.5 split as Llama 3 does (llama.cpp's CHATGLM4 pre-tokenizer).
            "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => of(&[LLAMA3], false, false),
            "tekken" => of(&[TEKKEN], true, false),
            "seed-coder" => of(&[SEED_CODER], false, false),
            "gpt-4o" => of(&[GPT4O], false, false),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" => {
                of(&[DIGIT, GPT2], false, false)
            }
            "deepseek-coder" => of(&DEEPSEEK_CODER, false, false),
            "deepseek-llm" => of(&DEEPSEEK_LLM, false, false),
            // Hunyuan dense splits as DeepSeek-V3 (llama.cpp's patterns are the same three).
            "deepseek-v3" | "hunyuan-dense" => of(&DEEPSEEK_V3, false, false),
            other => {
                return Err(TokenizerError::Backend(format!(
                    "unknown pre-tokenizer `{other}` (tokenizer.ggml.pre): its text splitting \
                     is not known to candor, and splitting it otherwise would give the model \
                     token sequences it was not trained on"
                )))
            }
        })
    }

    /// The splits, in order, each isolating its matches.
    pub fn splits(&self) -> Result<Vec<PreTokenizerWrapper>, TokenizerError> {
        self.patterns
            .iter()
            .map(|p| {
                Split::new(
                    SplitPattern::Regex((*p).into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map(PreTokenizerWrapper::Split)
                .map_err(|e| TokenizerError::Backend(format!("pre-tokenizer regex: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let p = PreTokenizer::named(Some(pre)).unwrap();
        let mut s = PreTokenizedString::from(text);
        for split in p.splits().unwrap() {
            split.pre_tokenize(&mut s).unwrap();
        }
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.to_string())
            .collect()
    }

    #[test]
    fn each_family_splits_as_its_tokenizer_json_does() {
        // Tekken splits at case changes and takes digits one by one; GPT-2 does neither.
        assert_eq!(
            pieces("tekken", "HelloWorld 2025"),
            ["Hello", "World", " ", "2", "0", "2", "5"]
        );
        assert_eq!(pieces("gpt2", "HelloWorld 2025"), ["HelloWorld", " 2025"]);
        // Llama 3 takes digits by three, Qwen one by one.
        assert_eq!(pieces("llama-bpe", "x 12345"), ["x", " ", "123", "45"]);
        assert_eq!(pieces("lfm2", "x 12345"), ["x", " ", "123", "45"]);
        assert_eq!(pieces("qwen2", "12"), ["1", "2"]);
        // o200k keeps a contraction on its word.
        assert_eq!(pieces("gpt-4o", "Don't"), ["Don't"]);
        // StarCoder's family: digits alone first.
        assert_eq!(pieces("starcoder", "a12"), ["a", "1", "2"]);
        // DeepSeek-Coder: line breaks alone, a space kept on its word or punctuation.
        assert_eq!(
            pieces("deepseek-coder", "int x=12;\n  y"),
            ["int", " x", "=", "1", "2", ";", "\n", " ", " y"]
        );
        // DeepSeek LLM: digit runs whole, a space kept on punctuation.
        assert_eq!(
            pieces("deepseek-llm", "Hi, 2025!"),
            ["Hi", ",", " ", "2025", "!"]
        );
        // Seed: digits alone; a line break after punctuation is a piece of its own (Qwen2
        // keeps it on the punctuation).
        assert_eq!(
            pieces("seed-coder", "x 123;\nDon't"),
            ["x", " ", "1", "2", "3", ";", "\n", "Don", "'t"]
        );
        assert_eq!(pieces("qwen2", ";\nA"), [";\n", "A"]);
        // DeepSeek-V3: digits by three, a dot kept on the word after it.
        assert_eq!(
            pieces("deepseek-v3", "x.py 12345"),
            ["x", ".py", " ", "123", "45"]
        );
    }

    #[test]
    fn unknown_names_are_refused_and_a_missing_one_is_gpt2() {
        let e = PreTokenizer::named(Some("viking")).unwrap_err();
        assert!(e.to_string().contains("`viking`"), "{e}");
        assert_eq!(
            PreTokenizer::named(None).unwrap(),
            PreTokenizer::named(Some("gpt2")).unwrap()
        );
        assert!(
            PreTokenizer::named(Some("llama-bpe"))
                .unwrap()
                .ignore_merges
        );
        assert!(PreTokenizer::named(Some("tekken")).unwrap().ignore_merges);
        assert_eq!(
            PreTokenizer::named(Some("hunyuan-dense")).unwrap(),
            PreTokenizer::named(Some("deepseek-v3")).unwrap()
        );
        assert!(!PreTokenizer::named(Some("qwen2")).unwrap().ignore_merges);
    }
}
