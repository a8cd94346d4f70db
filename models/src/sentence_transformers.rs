//! A sentence-transformers checkout's `modules.json`: the modules `SentenceTransformer` (or
//! `SparseEncoder`) runs in order, each a type (`sentence_transformers.models.Pooling`) and a
//! directory of its own (`1_Pooling/`, whose `config.json` says how it runs). Read once here
//! for the pooling, the Dense modules and SPLADE's pooling alike.
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Modules {
    dir: PathBuf,
    list: Vec<Value>,
}

impl Modules {
    /// The modules of checkout `dir`; None where it has no modules.json. Errors name the file.
    pub fn read(dir: &Path) -> Result<Option<Modules>, String> {
        let Some(listing) = read_json(&dir.join("modules.json"))? else {
            return Ok(None);
        };
        let list = match listing {
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        Ok(Some(Modules {
            dir: dir.to_path_buf(),
            list,
        }))
    }

    /// The directories of the modules whose type ends with `suffix` (`.Pooling`, `.Dense`), in
    /// the order they run.
    pub fn dirs_of(&self, suffix: &str) -> Vec<PathBuf> {
        (self.list.iter())
            .filter(|m| {
                (m.get("type").and_then(|t| t.as_str())).is_some_and(|t| t.ends_with(suffix))
            })
            .map(|m| {
                self.dir
                    .join(m.get("path").and_then(|p| p.as_str()).unwrap_or(""))
            })
            .collect()
    }

    /// The directory of the first module of that type, if there is one.
    pub fn dir_of(&self, suffix: &str) -> Option<PathBuf> {
        self.dirs_of(suffix).into_iter().next()
    }
}

/// A JSON file, or None where it does not exist; errors name the file.
pub fn read_json(path: &Path) -> Result<Option<Value>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_found_by_type_in_order() {
        let dir = std::env::temp_dir().join(format!("candor-st-modules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Modules::read(&dir).unwrap().is_none());
        let listing = r#"[{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
            {"idx": 3, "path": "3_Dense", "type": "sentence_transformers.models.Dense"}]"#;
        std::fs::write(dir.join("modules.json"), listing).unwrap();
        let modules = Modules::read(&dir).unwrap().unwrap();
        assert_eq!(modules.dir_of(".Pooling"), Some(dir.join("1_Pooling")));
        assert_eq!(
            modules.dirs_of(".Dense"),
            [dir.join("2_Dense"), dir.join("3_Dense")]
        );
        assert_eq!(modules.dir_of(".Router"), None);
        std::fs::write(dir.join("modules.json"), "{oops").unwrap();
        let e = Modules::read(&dir).err().expect("refused");
        assert!(e.contains("modules.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
