//! The shards a checkout's index names (`model.safetensors.index.json`,
//! `pytorch_model.bin.index.json`): its `weight_map`'s files, sorted, each once, each a plain
//! file name of the checkout (a name out of its directory is refused, not joined to it).
use crate::error::{ModelError, Result};
use std::path::Path;

pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let bad = |reason: String| ModelError::BadSafetensors {
        path: index.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.display().to_string(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    if let Some(f) = files.iter().find(|f| !is_plain_file_name(f)) {
        return Err(bad(format!("`{f}` is not a file name of the checkout")));
    }
    if files.is_empty() {
        return Err(bad("the index lists no files".into()));
    }
    Ok(files)
}

fn is_plain_file_name(f: &str) -> bool {
    !f.is_empty() && !f.contains(['/', '\\']) && f != "." && f != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_names_its_shards_once_and_none_out_of_the_checkout() {
        let dir = std::env::temp_dir().join(format!("candor-shard-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let index = dir.join("model.safetensors.index.json");
        let write = |map: serde_json::Value| {
            std::fs::write(&index, serde_json::json!({ "weight_map": map }).to_string()).unwrap()
        };
        for outside in ["../elsewhere.bin", "/etc/passwd", "sub/a.safetensors", ".."] {
            write(serde_json::json!({ "a.weight": outside }));
            let e = shard_names(&index).unwrap_err().to_string();
            assert!(e.contains("not a file name"), "{outside}: {e}");
        }
        write(serde_json::json!({}));
        assert!(shard_names(&index).is_err());
        write(
            serde_json::json!({"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors"}),
        );
        assert_eq!(
            shard_names(&index).unwrap(),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        std::fs::write(&index, "{").unwrap();
        assert!(shard_names(&index).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
