//! LoRA adapters offered as models of their own (vLLM's `--lora-modules`, llama-server's
//! `--lora`): a request that names one in `model` runs with it; the base model's name (or no
//! name) runs without. All run in the same batches over the same base weights.
use crate::engine::stats::LoraInUse;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::RwLock;

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
/// No more than `max` of them (`--max-lora-adapters`).
pub fn check(base: &str, adapters: &[ServedAdapter], max: usize) -> Result<(), String> {
    if adapters.len() > max {
        return Err(format!(
            "{} LoRA adapters named, more than --max-lora-adapters {max}",
            adapters.len()
        ));
    }
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

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The adapters served, by the engine's slot (`EngineRequest::adapter`): those of `--lora`
/// first, then those loaded while serving; an unloaded one leaves its slot empty.
#[derive(Debug, Default)]
pub struct Adapters {
    inner: RwLock<Slots>,
    /// Most adapters served or loading at once (`--max-lora-adapters`): each keeps its
    /// weights on the device and on the host, and every load rebuilds the stacks of all.
    max: usize,
}

/// Why a load cannot begin.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadRefused {
    #[error("the LoRA adapter `{0}` is already loaded")]
    Loaded(String),
    #[error(
        "{0} LoRA adapters are loaded, the most this server serves (--max-lora-adapters): \
         unload one first"
    )]
    Full(usize),
}

#[derive(Debug, Default)]
struct Slots {
    served: Vec<Option<ServedAdapter>>,
    /// Names being loaded (not served yet, not to be taken by another load).
    loading: HashSet<String>,
}

impl Adapters {
    pub fn new(initial: Vec<ServedAdapter>, max: usize) -> Self {
        Adapters {
            inner: RwLock::new(Slots {
                served: initial.into_iter().map(Some).collect(),
                loading: HashSet::new(),
            }),
            max,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The adapters served now, in slot order.
    pub fn served(&self) -> Vec<ServedAdapter> {
        self.read().served.iter().flatten().cloned().collect()
    }

    /// The most served at once (`--max-lora-adapters`).
    pub fn max(&self) -> usize {
        self.max
    }

    /// The name of the adapter in `slot` (None once unloaded).
    pub fn name_of(&self, slot: u32) -> Option<String> {
        self.read()
            .served
            .get(slot as usize)?
            .as_ref()
            .map(|a| a.name.clone())
    }

    /// vLLM's `lora_requests_info` gauge, as its production-stack router reads it to send a
    /// request where its adapter is served: labels naming the adapters of running and waiting
    /// requests (comma-separated) and the most served, valued at the time it was taken.
    pub fn requests_info(&self, in_use: &LoraInUse, now_s: f64) -> String {
        let names = |slots: &[u32]| -> String {
            let named: Vec<String> = slots.iter().filter_map(|&s| self.name_of(s)).collect();
            escape_label(&named.join(","))
        };
        format!(
            "# HELP candor:lora_requests_info Running stats on LoRA requests.\n\
             # TYPE candor:lora_requests_info gauge\n\
             candor:lora_requests_info{{max_lora=\"{}\",running_lora_adapters=\"{}\",\
             waiting_lora_adapters=\"{}\"}} {now_s}\n",
            self.max,
            names(&in_use.running),
            names(&in_use.waiting),
        )
    }

    /// The adapter `model` names, if it names one.
    pub fn get(&self, model: &str) -> Option<ServedAdapter> {
        self.read()
            .served
            .iter()
            .flatten()
            .find(|a| a.name == model)
            .cloned()
    }

    /// The engine's slot of the adapter `model` names (None: the base model, or a name that
    /// is not an adapter's).
    pub fn slot_of(&self, model: Option<&str>) -> Option<u32> {
        let model = model?;
        let slots = self.read();
        let i = slots
            .served
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.name == model))?;
        u32::try_from(i).ok()
    }

    /// Claim `name` for a load; refused while it is served or being loaded, and while as
    /// many adapters as the server serves are.
    pub fn begin_load(&self, name: &str) -> Result<(), LoadRefused> {
        let mut slots = self.write();
        let served = slots.served.iter().flatten().any(|a| a.name == name);
        if served || slots.loading.contains(name) {
            return Err(LoadRefused::Loaded(name.to_string()));
        }
        let taken = slots.served.iter().flatten().count() + slots.loading.len();
        if taken >= self.max {
            return Err(LoadRefused::Full(taken));
        }
        slots.loading.insert(name.to_string());
        Ok(())
    }

    /// The load of `adapter` ended: served from `slot` when it succeeded (Some).
    pub fn end_load(&self, adapter: ServedAdapter, slot: Option<u32>) {
        let mut slots = self.write();
        slots.loading.remove(&adapter.name);
        if let Some(slot) = slot {
            let at = slot as usize;
            if slots.served.len() <= at {
                slots.served.resize(at + 1, None);
            }
            slots.served[at] = Some(adapter);
        }
    }

    /// Stop serving the adapter named `name`: its slot, or None when none is.
    pub fn remove(&self, name: &str) -> Option<u32> {
        let mut slots = self.write();
        let i = slots
            .served
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.name == name))?;
        slots.served[i] = None;
        u32::try_from(i).ok()
    }
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
        assert!(check("base", &[a("x"), a("y")], 2).is_ok());
        assert!(check("base", &[a("x"), a("y")], 1)
            .unwrap_err()
            .contains("--max-lora-adapters 1"));
        assert!(check("base", &[a("base")], 8)
            .unwrap_err()
            .contains("base model's name"));
        assert!(check("base", &[a("x"), a("x")], 8)
            .unwrap_err()
            .contains("two adapters"));
        let missing = ServedAdapter {
            name: "m".into(),
            path: "/nowhere/m".into(),
        };
        assert!(check("base", &[missing], 8)
            .unwrap_err()
            .contains("/nowhere/m"));
        let served = Adapters::new(vec![a("x"), a("y")], 8);
        assert_eq!(served.slot_of(Some("y")), Some(1));
        assert_eq!(served.slot_of(Some("base")), None);
        assert_eq!(served.slot_of(None), None);
    }

    #[test]
    fn loads_take_new_slots_and_unloads_leave_theirs_empty() {
        let a = |n: &str| ServedAdapter {
            name: n.into(),
            path: "/p".into(),
        };
        let served = Adapters::new(vec![a("x")], 8);
        assert!(served.begin_load("x").is_err());
        served.begin_load("y").unwrap();
        assert!(
            served.begin_load("y").is_err(),
            "one load of a name at a time"
        );
        assert_eq!(served.slot_of(Some("y")), None, "not served while loading");
        served.end_load(a("y"), Some(1));
        assert_eq!(served.slot_of(Some("y")), Some(1));
        assert_eq!(served.remove("x"), Some(0));
        assert_eq!(served.remove("x"), None);
        assert_eq!(served.slot_of(Some("y")), Some(1), "slots never move");
        served.begin_load("z").unwrap();
        served.end_load(a("z"), None);
        assert!(served.get("z").is_none());
        served.begin_load("z").unwrap();
        let names: Vec<String> = served.served().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["y"]);
    }

    #[test]
    fn requests_info_names_the_adapters_in_use_as_vllm_does() {
        let a = |n: &str| ServedAdapter {
            name: n.into(),
            path: "/p".into(),
        };
        let served = Adapters::new(vec![a("sql"), a("chat"), a("odd\"name")], 4);
        served.remove("chat");
        let in_use = LoraInUse {
            running: vec![0, 1, 2],
            waiting: vec![],
        };
        let text = served.requests_info(&in_use, 12.5);
        assert!(
            text.contains("# TYPE candor:lora_requests_info gauge\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "candor:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"sql,odd\\\"name\",\
                 waiting_lora_adapters=\"\"} 12.5\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn loads_stop_at_the_most_served_counting_those_under_way() {
        let a = |n: &str| ServedAdapter {
            name: n.into(),
            path: "/p".into(),
        };
        let served = Adapters::new(vec![a("x")], 3);
        served.begin_load("y").unwrap();
        served.begin_load("z").unwrap();
        assert_eq!(served.begin_load("w"), Err(LoadRefused::Full(3)));
        served.end_load(a("z"), None); // a load that failed frees its place
        served.begin_load("w").unwrap();
        assert_eq!(served.remove("x"), Some(0));
        served.end_load(a("y"), Some(1));
        served.end_load(a("w"), Some(2));
        served.begin_load("v").unwrap();
        assert_eq!(served.begin_load("u"), Err(LoadRefused::Full(3)));
    }
}
