//! A sentence-transformers checkout's `modules.json`: the modules `SentenceTransformer` (or
//! `SparseEncoder`) runs in order, each a type (`sentence_transformers.models.Pooling`) and a
//! directory of its own (`1_Pooling/`, whose `config.json` says how it runs). Read once here
//! for the pooling, the Dense modules and SPLADE's pooling alike.
//!
//! A `Router` module (inference-free SPLADE: opensearch's doc-only neural sparse encoders)
//! runs one list of modules per task, each module in a directory named by its id
//! (`document_0_MLMTransformer/`), as its `router_config.json` says. Its modules are read as
//! the list of the one route whose first module is a transformer (the encoder); a route that
//! is one `SparseStaticEmbedding` (a weight per vocabulary entry, queries weighed without the
//! encoder) is kept beside it, by name.
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Modules {
    dir: PathBuf,
    /// Each module's type and directory, in the order they run.
    list: Vec<(String, PathBuf)>,
    /// Whether the list is a Router's route.
    routed: bool,
    /// A Router's route that weighs tokens by a static table: its name and directory.
    static_route: Option<(String, PathBuf)>,
    /// The route a Router takes for a text whose task is not named.
    default_route: Option<String>,
}

impl Modules {
    /// The modules of checkout `dir`; None where it has no modules.json. Errors name the file.
    pub fn read(dir: &Path) -> Result<Option<Modules>, String> {
        let Some(listing) = read_json(&dir.join("modules.json"))? else {
            return Ok(None);
        };
        let list: Vec<(String, PathBuf)> = match listing {
            Value::Array(list) => (list.iter())
                .map(|m| {
                    let kind = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
                    let path = m.get("path").and_then(|p| p.as_str()).unwrap_or("");
                    (kind.to_string(), dir.join(path))
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut modules = Modules {
            dir: dir.to_path_buf(),
            list,
            routed: false,
            static_route: None,
            default_route: None,
        };
        if let Some(router) = modules.dir_of(".Router") {
            modules.follow_router(&router)?;
        }
        Ok(Some(modules))
    }

    /// Read the Router in `router`'s directory: its encoder route becomes the module list.
    fn follow_router(&mut self, router: &Path) -> Result<(), String> {
        // `router_config.json`; sentence-transformers' first Routers wrote `config.json`.
        let config = match read_json(&router.join("router_config.json"))? {
            Some(config) => config,
            None => read_json(&router.join("config.json"))?.unwrap_or(Value::Null),
        };
        let shown = router.join("router_config.json").display().to_string();
        let (Some(types), Some(structure)) = (
            config.get("types").and_then(|t| t.as_object()),
            config.get("structure").and_then(|s| s.as_object()),
        ) else {
            return Err(format!(
                "{shown}: a Router's `types` and `structure` are missing"
            ));
        };
        let route = |ids: &Value| -> Result<Vec<(String, PathBuf)>, String> {
            let ids = ids.as_array().map(Vec::as_slice).unwrap_or_default();
            (ids.iter())
                .map(|id| {
                    let id = id.as_str().unwrap_or_default();
                    match types.get(id).and_then(|t| t.as_str()) {
                        Some(kind) => Ok((kind.to_string(), router.join(id))),
                        None => Err(format!("{shown}: module `{id}` has no type")),
                    }
                })
                .collect()
        };
        self.default_route = (config.pointer("/parameters/default_route"))
            .and_then(|d| d.as_str())
            .map(str::to_string);
        let mut encoder: Option<(&str, Vec<(String, PathBuf)>)> = None;
        for (name, ids) in structure {
            let modules = route(ids)?;
            match modules.as_slice() {
                [(kind, dir)] if kind.ends_with(".SparseStaticEmbedding") => {
                    self.static_route = Some((name.clone(), dir.clone()));
                }
                [(kind, _), ..] if kind.ends_with("Transformer") => {
                    // Two encoders (an asymmetric dense model) would be two models to serve.
                    if let Some((first, _)) = &encoder {
                        return Err(format!(
                            "{shown}: routes `{first}` and `{name}` each run a transformer; \
                             one model is served per server"
                        ));
                    }
                    encoder = Some((name, modules));
                }
                _ => {
                    return Err(format!(
                        "{shown}: route `{name}` is neither a transformer's modules nor one \
                         SparseStaticEmbedding, the routes served"
                    ))
                }
            }
        }
        let Some((_, list)) = encoder else {
            return Err(format!("{shown}: no route runs a transformer"));
        };
        self.list = list;
        self.routed = true;
        Ok(())
    }

    /// The directories of the modules whose type ends with `suffix` (`.Pooling`, `.Dense`), in
    /// the order they run.
    pub fn dirs_of(&self, suffix: &str) -> Vec<PathBuf> {
        (self.list.iter())
            .filter(|(kind, _)| kind.ends_with(suffix))
            .map(|(_, dir)| dir.clone())
            .collect()
    }

    /// The directory of the module that runs first, where its type ends with `suffix` (a
    /// `StaticEmbedding` that replaces the transformer).
    pub fn first_if(&self, suffix: &str) -> Option<PathBuf> {
        (self.list.first())
            .filter(|(kind, _)| kind.ends_with(suffix))
            .map(|(_, dir)| dir.clone())
    }

    /// The directory of the first module of that type, if there is one.
    pub fn dir_of(&self, suffix: &str) -> Option<PathBuf> {
        self.dirs_of(suffix).into_iter().next()
    }

    /// Where the model's own files (config.json, weights, tokenizer) are: a Router's encoder
    /// module's directory, else the checkout itself.
    pub fn model_dir(&self) -> PathBuf {
        match self.routed {
            true => (self.list.first()).map_or_else(|| self.dir.clone(), |(_, dir)| dir.clone()),
            false => self.dir.clone(),
        }
    }

    /// A Router's route that weighs tokens by a static table (`query`), and its directory.
    pub fn static_route(&self) -> Option<(&str, &Path)> {
        (self.static_route.as_ref()).map(|(name, dir)| (name.as_str(), dir.as_path()))
    }

    /// A Router's default route (`document`), where its config names one.
    pub fn default_route(&self) -> Option<&str> {
        self.default_route.as_deref()
    }
}

/// A JSON file, or None where it does not exist; errors name the file.
pub fn read_json(path: &Path) -> Result<Option<Value>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => crate::config_json::parse(&text)
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

    #[test]
    fn a_router_is_read_as_its_encoder_route_with_its_static_route_beside() {
        let dir = std::env::temp_dir().join(format!("candor-st-router-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let router = r#"[{"idx": 0, "path": "", "type": "sentence_transformers.models.Router"}]"#;
        std::fs::write(dir.join("modules.json"), router).unwrap();
        let models = "sentence_transformers.sparse_encoder.models";
        let config = format!(
            r#"{{"types": {{"query_0_SparseStaticEmbedding": "{models}.SparseStaticEmbedding",
                "document_0_MLMTransformer": "{models}.MLMTransformer",
                "document_1_SpladePooling": "{models}.SpladePooling"}},
              "structure": {{"query": ["query_0_SparseStaticEmbedding"],
                "document": ["document_0_MLMTransformer", "document_1_SpladePooling"]}},
              "parameters": {{"default_route": "document", "allow_empty_key": true}}}}"#
        );
        std::fs::write(dir.join("router_config.json"), &config).unwrap();
        let modules = Modules::read(&dir).unwrap().unwrap();
        assert_eq!(modules.model_dir(), dir.join("document_0_MLMTransformer"));
        assert_eq!(
            modules.dir_of(".SpladePooling"),
            Some(dir.join("document_1_SpladePooling"))
        );
        assert_eq!(modules.dir_of(".Router"), None);
        let query = dir.join("query_0_SparseStaticEmbedding");
        assert_eq!(modules.static_route(), Some(("query", query.as_path())));
        assert_eq!(modules.default_route(), Some("document"));
        // A route of anything else is refused, naming the file.
        let odd = config.replace(r#"["query_0_SparseStaticEmbedding"]"#, "[]");
        std::fs::write(dir.join("router_config.json"), odd).unwrap();
        let e = Modules::read(&dir).err().expect("refused");
        assert!(
            e.contains("router_config.json") && e.contains("`query`"),
            "{e}"
        );
        std::fs::remove_file(dir.join("router_config.json")).unwrap();
        assert!(Modules::read(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
