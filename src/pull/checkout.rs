//! Whole safetensors checkouts from the Hub (`hf:ORG/REPO` of a repository without a GGUF):
//! the files a model needs (config, tokenizer, weights, sentence-transformers pooling, chat
//! template) land in `DIR/hf/ORG/REPO/`, each checked against the Hub's listed sha256 as a
//! single file is, and a marker written last says the checkout is whole. READMEs, ONNX and
//! PyTorch copies of the weights, and training leftovers are not fetched; a repository whose
//! weights are PyTorch checkpoints alone (OPT's) has those fetched, rewritten as safetensors
//! (`candor_models::weights::pytorch`) and removed before the marker is written.
use super::{fetch_hub_file, io_err, lock_for, one_line, PullError, PullOptions};
use candor_models::weights::pytorch;
use std::path::{Path, PathBuf};

/// Written into a checkout directory once every file is in place (the files, one a line).
pub const MARKER: &str = ".candor-checkout";

/// Files at the top of a checkout that a model may need.
const NAMED: [&str; 14] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "added_tokens.json",
    // BGE-M3's lexical and ColBERT layers (PyTorch's format, read without running code).
    "sparse_linear.pt",
    "colbert_linear.pt",
];

/// The files of a repository listing that make a servable checkout: config.json, the
/// top-level `*.safetensors` and the named extras, a sentence-transformers pooling module's
/// config (`1_Pooling/config.json`; a sparse encoder's `1_SpladePooling/config.json`) and its
/// Dense modules' config and weights (`2_Dense/`; every `*_Dense*` directory, since which of
/// several stella's modules.json runs is only known once it is read). A sentence-transformers
/// Router (inference-free SPLADE) keeps each module in a directory named by its route, its
/// place and its type (`document_0_MLMTransformer/`, `query_0_SparseStaticEmbedding/`): their
/// named files and weights come too, with `router_config.json`, and the model's config.json may
/// be in one of them; a doc-only one without a Router keeps its query weights in `idf.json`.
/// A static embedding model's table may be in `0_StaticEmbedding/`, beside its tokenizer.
/// Named chat templates beside the default come from `additional_chat_templates/*.jinja`.
/// Where the top level has no safetensors weights, its PyTorch checkpoints are the weights
/// (`pytorch_model.bin`, or the shards of `pytorch_model.bin.index.json`); where it has no
/// `tokenizer.json`, a slow tokenizer's `vocab.json` and `merges.txt`, its SentencePiece
/// `tokenizer.model`, or Mistral's `tekken.json` (Devstral's, Magistral's) with the
/// `SYSTEM_PROMPT.txt` candor's template for it writes, come instead.
/// Empty where the listing is no such checkout (neither config.json nor modules.json, or no
/// weights).
///
/// Mistral's repositories (Ministral 3, Mistral Small 3.x, Devstral, Magistral) keep the same
/// weights twice: transformers' shards and Mistral's own `consolidated.safetensors`, which
/// transformers does not read: where both are listed, the consolidated file is left behind
/// (it would double the download: 48 GB more for Mistral Small 24B).
pub fn checkout_files(listed: &[String]) -> Vec<String> {
    let consolidated = |f: &str| f.starts_with("consolidated") && f.ends_with(".safetensors");
    let has_transformers_weights = listed.iter().any(|f| {
        !f.contains('/')
            && f.ends_with(".safetensors")
            && !consolidated(f)
            && f != "adapter_model.safetensors"
    });
    let has_safetensors = listed.iter().any(|f| {
        !f.contains('/') && f.ends_with(".safetensors") && f != "adapter_model.safetensors"
    });
    let has_fast_tokenizer = listed.iter().any(|f| f == "tokenizer.json");
    let wanted_here = |f: &str| {
        NAMED.contains(&f)
            || f.ends_with(".safetensors")
                && f != "adapter_model.safetensors"
                && !(has_transformers_weights && consolidated(f))
            || !has_fast_tokenizer
                && matches!(
                    f,
                    "vocab.json"
                        | "merges.txt"
                        | "tokenizer.model"
                        | "tekken.json"
                        | "SYSTEM_PROMPT.txt"
                )
    };
    let pytorch_weights = |f: &str| !has_safetensors && pytorch::is_checkpoint_file(f);
    // A doc-only sparse encoder without a Router keeps its query table in idf.json (a Router
    // keeps it in its static module's weights, which are fetched instead).
    let routed = listed.iter().any(|f| f == "router_config.json");
    let wanted = |f: &str| match f.split_once('/') {
        None => {
            wanted_here(f)
                || pytorch_weights(f)
                || f == "router_config.json"
                || f == "idf.json" && !routed
        }
        Some((dir, rest)) => {
            dir.ends_with("Pooling") && rest == "config.json"
                || dir == "additional_chat_templates" && rest.ends_with(".jinja")
                || dir.contains("_Dense") && matches!(rest, "config.json" | "model.safetensors")
                || (is_route_module(dir) || dir.ends_with("_StaticEmbedding"))
                    && !rest.contains('/')
                    && wanted_here(rest)
        }
    };
    let files: Vec<String> = listed.iter().filter(|f| wanted(f)).cloned().collect();
    // A static embedding model (sentence-transformers' `StaticEmbedding`) has no config.json:
    // its modules.json says what it is.
    let described = |f: &String| f == "config.json" || f.ends_with("/config.json");
    let complete = files.iter().any(|f| described(f) || f == "modules.json")
        && files
            .iter()
            .any(|f| f.ends_with(".safetensors") || pytorch_weights(f) && f.ends_with(".bin"));
    match complete {
        true => files,
        false => Vec::new(),
    }
}

/// Whether a repository listing holds Mistral's own format (`params.json` and
/// `consolidated*.safetensors`) without transformers' config.
pub fn is_mistral_format_only(listed: &[String]) -> bool {
    let has = |f: &str| listed.iter().any(|l| l == f);
    has("params.json")
        && !has("config.json")
        && listed
            .iter()
            .any(|f| f.starts_with("consolidated") && f.ends_with(".safetensors"))
}

/// Whether a directory is named as a Router saves its modules: `<route>_<index>_<Type>`.
fn is_route_module(dir: &str) -> bool {
    let mut parts = dir.rsplitn(3, '_');
    let (Some(kind), Some(index), Some(route)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !route.is_empty()
        && !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && kind.starts_with(|c: char| c.is_ascii_uppercase())
}

/// A checkout already whole in `dir` (its marker written).
pub fn is_whole(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// A pulled checkout's PyTorch checkpoints rewritten as safetensors now (once, rather than at
/// its first load), and removed: the cache keeps the weights once.
fn rewrite_checkpoints(spec: &str, dir: &Path) -> Result<(), PullError> {
    pytorch::convert_checkout(dir).map_err(|e| PullError::Failed {
        name: spec.to_string(),
        reasons: format!("rewriting its PyTorch checkpoints as safetensors: {e}"),
    })?;
    let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(pytorch::is_checkpoint_file) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Fetch `files` of `repo` into `dir` (those already there from an interrupted pull are
/// kept), then write the marker.
pub fn pull_checkout(
    spec: &str,
    repo: &str,
    files: &[String],
    dir: &Path,
    opts: &PullOptions,
) -> Result<PathBuf, PullError> {
    let failed = |reasons: String| PullError::Failed {
        name: spec.to_string(),
        reasons,
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let _lock = lock_for(&dir.join(MARKER), spec)?;
    if is_whole(dir) {
        return Ok(dir.to_path_buf());
    }
    eprintln!(
        "pulling the checkout {repo} ({} files) into {}",
        files.len(),
        dir.display()
    );
    // PyTorch checkpoints already rewritten (a pull cut short after that) are not fetched again.
    let converted = pytorch::has_safetensors(dir);
    for file in files {
        let dest = dir.join(file);
        if dest.is_file() || converted && pytorch::is_checkpoint_file(file) {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fetch_hub_file(repo, file, &dest, opts)?
            .map_err(|r| failed(format!("Hugging Face: {}", one_line(&r))))?;
    }
    if files.iter().any(|f| pytorch::is_checkpoint_file(f)) {
        rewrite_checkpoints(spec, dir)?;
    }
    let marker = dir.join(MARKER);
    std::fs::write(&marker, files.join("\n") + "\n").map_err(io_err(&marker))?;
    eprintln!("pulled {spec} -> {}", dir.display());
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::{checkout_files, is_mistral_format_only};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Ministral 3's listing: transformers' shards, not Mistral's consolidated copy of them;
    /// a repository with the consolidated file alone keeps it (whatever it is, candor says so
    /// at load rather than fetching nothing).
    #[test]
    fn mistrals_consolidated_weights_are_left_beside_transformers_shards() {
        let listed = names(&[
            "config.json",
            "consolidated.safetensors",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "params.json",
            "tekken.json",
            "tokenizer.json",
        ]);
        let got = checkout_files(&listed);
        assert!(
            !got.iter().any(|f| f.starts_with("consolidated")),
            "{got:?}"
        );
        assert!(got.contains(&"model-00002-of-00002.safetensors".to_string()));
        assert!(!got.contains(&"tekken.json".to_string()), "{got:?}");
        let alone = names(&["config.json", "consolidated.safetensors"]);
        assert_eq!(checkout_files(&alone), alone);
    }

    /// Pixtral 12B's listing: Mistral's format only, told apart from a transformers checkout.
    #[test]
    fn mistral_format_only_listings_are_told() {
        let mistral = names(&["consolidated.safetensors", "params.json", "tekken.json"]);
        assert!(is_mistral_format_only(&mistral));
        assert!(checkout_files(&mistral).is_empty());
        let both = names(&["config.json", "consolidated.safetensors", "params.json"]);
        assert!(!is_mistral_format_only(&both));
    }

    /// Devstral Small 2507's listing: no tokenizer.json, so Mistral's tekken.json is the
    /// tokenizer and comes with the system prompt (its consolidated weights still do not).
    #[test]
    fn a_checkout_without_tokenizer_json_brings_tekken_json() {
        let listed = names(&[
            "SYSTEM_PROMPT.txt",
            "config.json",
            "consolidated.safetensors",
            "generation_config.json",
            "model-00001-of-00010.safetensors",
            "model.safetensors.index.json",
            "params.json",
            "tekken.json",
        ]);
        assert_eq!(
            checkout_files(&listed),
            names(&[
                "SYSTEM_PROMPT.txt",
                "config.json",
                "generation_config.json",
                "model-00001-of-00010.safetensors",
                "model.safetensors.index.json",
                "tekken.json",
            ])
        );
    }

    /// facebook/opt-125m's listing: PyTorch weights and a slow tokenizer, nothing else; a
    /// sharded one brings its index; safetensors beside them win, as a tokenizer.json does.
    #[test]
    fn a_pytorch_checkout_brings_its_checkpoints_and_slow_tokenizer() {
        let listed = names(&[
            ".gitattributes",
            "LICENSE.md",
            "README.md",
            "config.json",
            "flax_model.msgpack",
            "generation_config.json",
            "merges.txt",
            "pytorch_model.bin",
            "special_tokens_map.json",
            "tf_model.h5",
            "tokenizer_config.json",
            "vocab.json",
        ]);
        assert_eq!(
            checkout_files(&listed),
            names(&[
                "config.json",
                "generation_config.json",
                "merges.txt",
                "pytorch_model.bin",
                "special_tokens_map.json",
                "tokenizer_config.json",
                "vocab.json",
            ])
        );
        let sharded = names(&[
            "config.json",
            "pytorch_model-00001-of-00002.bin",
            "pytorch_model-00002-of-00002.bin",
            "pytorch_model.bin.index.json",
            "tokenizer.json",
            "vocab.json",
            "merges.txt",
        ]);
        assert_eq!(
            checkout_files(&sharded),
            names(&[
                "config.json",
                "pytorch_model-00001-of-00002.bin",
                "pytorch_model-00002-of-00002.bin",
                "pytorch_model.bin.index.json",
                "tokenizer.json",
            ])
        );
        // A Llama-2-era fine-tune: SentencePiece's model alone, or beside a tokenizer.json.
        let spm = names(&["config.json", "model.safetensors", "tokenizer.model"]);
        assert_eq!(checkout_files(&spm), spm);
        let mut fast = spm.clone();
        fast.push("tokenizer.json".into());
        assert!(!checkout_files(&fast).contains(&"tokenizer.model".to_string()));
        let mut both = listed.clone();
        both.push("model.safetensors".into());
        let got = checkout_files(&both);
        assert!(got.contains(&"model.safetensors".to_string()), "{got:?}");
        assert!(!got.iter().any(|f| f.ends_with(".bin")), "{got:?}");
        assert!(checkout_files(&names(&["config.json", "tf_model.h5"])).is_empty());
    }

    #[test]
    fn a_checkout_is_its_config_weights_tokenizer_and_pooling() {
        let listed = names(&[
            "README.md",
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "onnx/model.onnx",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
            "modules.json",
            "1_Pooling/config.json",
            "2_Dense/config.json",
            "2_Dense/model.safetensors",
            "2_Dense/pytorch_model.bin",
            "3_Normalize/config.json",
            "sparse_linear.pt",
            "colbert_linear.pt",
            "adapter_model.safetensors",
            "chat_template.jinja",
            "additional_chat_templates/tool_use.jinja",
            "additional_chat_templates/notes.txt",
        ]);
        assert_eq!(
            checkout_files(&listed),
            names(&[
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
                "modules.json",
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "2_Dense/model.safetensors",
                "sparse_linear.pt",
                "colbert_linear.pt",
                "chat_template.jinja",
                "additional_chat_templates/tool_use.jinja",
            ])
        );
        // A SPLADE sparse encoder's pooling (sentence-transformers' `SparseEncoder`).
        let sparse = names(&[
            "config.json",
            "model.safetensors",
            "modules.json",
            "1_SpladePooling/config.json",
        ]);
        assert_eq!(checkout_files(&sparse), sparse);
        // An inference-free one: a Router whose routes keep their modules apart.
        let routed = names(&[
            "modules.json",
            "router_config.json",
            "config_sentence_transformers.json",
            "document_0_MLMTransformer/config.json",
            "document_0_MLMTransformer/model.safetensors",
            "document_0_MLMTransformer/tokenizer.json",
            "document_1_SpladePooling/config.json",
            "query_0_SparseStaticEmbedding/config.json",
            "query_0_SparseStaticEmbedding/model.safetensors",
            "query_0_SparseStaticEmbedding/tokenizer.json",
        ]);
        let mut listed = routed.clone();
        listed.extend(names(&[
            "idf.json",
            "document_0_MLMTransformer/pytorch_model.bin",
            "query_0_SparseStaticEmbedding/onnx/model.onnx",
            "notes_v2/config.json",
        ]));
        assert_eq!(checkout_files(&listed), routed);
        // A doc-only one as first shipped: the masked LM, and its query table in idf.json.
        let doc_only = names(&[
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "idf.json",
        ]);
        let mut listed = doc_only.clone();
        listed.extend(names(&["pytorch_model.bin", "README.md"]));
        assert_eq!(checkout_files(&listed), doc_only);
        // A static embedding model keeps its table and tokenizer in its module's directory.
        let table = names(&[
            "modules.json",
            "config_sentence_transformers.json",
            "0_StaticEmbedding/model.safetensors",
            "0_StaticEmbedding/tokenizer.json",
        ]);
        assert_eq!(checkout_files(&table), table);
        // PyTorch weights alone are the weights (a_pytorch_checkout_brings_...).
        let pytorch = names(&["config.json", "pytorch_model.bin"]);
        assert_eq!(checkout_files(&pytorch), pytorch);
        assert!(checkout_files(&names(&["model.safetensors"])).is_empty());
    }
}
