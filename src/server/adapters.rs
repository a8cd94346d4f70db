//! LoRA adapters offered as models of their own (vLLM's `--lora-modules`, llama-server's
//! `--lora`): a request that names one in `model` runs with it; the base model's name (or no
//! name) runs without. All run in the same batches over the same base weights.
use std::path::PathBuf;

/// One adapter the server offers: the name requests use, the file or PEFT directory it was
/// read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedAdapter {
    pub name: String,
    pub path: PathBuf,
}

impl std::str::FromStr for ServedAdapter {
    type Err = String;

    /// `NAME=PATH`, or `PATH` alone (named after the file's stem or the directory).
    fn from_str(arg: &str) -> Result<Self, String> {
        let (name, path) = match arg.split_once('=') {
            Some((name, path)) => (name.trim().to_string(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(arg);
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                (stem.unwrap_or_default(), path)
            }
        };
        if name.is_empty() || path.as_os_str().is_empty() {
            return Err(format!(
                "`{arg}`: give an adapter as NAME=PATH (a PEFT directory or a LoRA GGUF file)"
            ));
        }
        Ok(ServedAdapter { name, path })
    }
}

/// Adapters' names must differ from each other and from the base model's (a name picks one
/// model), and their paths must exist (checked before the server listens, not after).
pub fn check(base: &str, adapters: &[ServedAdapter]) -> Result<(), String> {
    for (i, a) in adapters.iter().enumerate() {
        if !a.path.exists() {
            return Err(format!(
                "the adapter `{}`: {} does not exist",
                a.name,
                a.path.display()
            ));
        }
        if a.name == base {
            return Err(format!(
                "the adapter `{}` has the base model's name; name it apart (NAME=PATH)",
                a.name
            ));
        }
        if adapters[..i].iter().any(|b| b.name == a.name) {
            return Err(format!("two adapters are named `{}`", a.name));
        }
    }
    Ok(())
}

/// The index of the adapter `model` names among `adapters` (None: the base model, or a name
/// that is not an adapter's).
pub fn index_of(adapters: &[ServedAdapter], model: Option<&str>) -> Option<u32> {
    let model = model?;
    adapters
        .iter()
        .position(|a| a.name == model)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_path_and_path_alone() {
        let a: ServedAdapter = "sql=/x/sql-lora".parse().unwrap();
        assert_eq!(
            (a.name.as_str(), a.path.to_str()),
            ("sql", Some("/x/sql-lora"))
        );
        let b: ServedAdapter = "/x/chat-lora.gguf".parse().unwrap();
        assert_eq!(b.name, "chat-lora");
        assert!("=/x".parse::<ServedAdapter>().is_err());
        assert!("sql=".parse::<ServedAdapter>().is_err());
    }

    #[test]
    fn names_are_unique_and_not_the_base() {
        let a = |n: &str| ServedAdapter {
            name: n.into(),
            path: std::env::temp_dir(),
        };
        assert!(check("base", &[a("x"), a("y")]).is_ok());
        assert!(check("base", &[a("base")])
            .unwrap_err()
            .contains("base model's name"));
        assert!(check("base", &[a("x"), a("x")])
            .unwrap_err()
            .contains("two adapters"));
        let missing = ServedAdapter {
            name: "m".into(),
            path: "/nowhere/m".into(),
        };
        assert!(check("base", &[missing])
            .unwrap_err()
            .contains("/nowhere/m"));
        assert_eq!(index_of(&[a("x"), a("y")], Some("y")), Some(1));
        assert_eq!(index_of(&[a("x")], Some("base")), None);
        assert_eq!(index_of(&[a("x")], None), None);
    }
}
