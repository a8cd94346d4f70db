//! LoRA adapters offered as models of their own (vLLM's `--lora-modules`, llama-server's
//! `--lora`): a request that names one in `model` runs with it; the base model's name (or no
//! name) runs without, unless it sends llama-server's `lora` list of adapters and scales or
//! `POST /lora-adapters` set scales for such requests. All run in the same batches over the
//! same base weights.
use crate::engine::stats::LoraInUse;
use candor_models::lora::LoraMix;
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

/// Adapters' names must differ from each other and from the base model's names (a name picks
/// one model), and their paths must exist (checked before the server listens, not after).
/// No more than `max` of them (`--max-lora-adapters`).
pub fn check(base: &[&str], adapters: &[ServedAdapter], max: usize) -> Result<(), String> {
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
        if base.contains(&a.name.as_str()) {
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
    /// By the engine's slot; None once unloaded (slots never move).
    served: Vec<Option<Slot>>,
    /// Names being loaded (not served yet, not to be taken by another load).
    loading: HashSet<String>,
}

/// A served adapter.
#[derive(Debug, Clone)]
struct Slot {
    adapter: ServedAdapter,
    /// The scale a request for the base model runs it at when it sends no `lora` list of its
    /// own (llama-server's global scales, `POST /lora-adapters`); 0 until set, so the base
    /// model answers as itself (vLLM's reading of `--lora`).
    base_scale: f32,
}

impl Slot {
    fn new(adapter: ServedAdapter) -> Self {
        Slot {
            adapter,
            base_scale: 0.0,
        }
    }
}

impl Adapters {
    pub fn new(initial: Vec<ServedAdapter>, max: usize) -> Self {
        Adapters {
            inner: RwLock::new(Slots {
                served: initial.into_iter().map(|a| Some(Slot::new(a))).collect(),
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
        self.read()
            .adapters()
            .map(|(_, s)| s.adapter.clone())
            .collect()
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
            .map(|s| s.adapter.name.clone())
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
        let slots = self.read();
        let (_, found) = slots.named(model)?;
        Some(found.adapter.clone())
    }

    /// The engine's slot of the adapter `model` names (None: the base model, or a name that
    /// is not an adapter's).
    pub fn slot_of(&self, model: Option<&str>) -> Option<u32> {
        let slots = self.read();
        slots.named(model?).map(|(slot, _)| slot)
    }

    /// Claim `name` for a load; refused while it is served or being loaded, and while as
    /// many adapters as the server serves are.
    pub fn begin_load(&self, name: &str) -> Result<(), LoadRefused> {
        let mut slots = self.write();
        if slots.named(name).is_some() || slots.loading.contains(name) {
            return Err(LoadRefused::Loaded(name.to_string()));
        }
        let taken = slots.adapters().count() + slots.loading.len();
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
            slots.served[at] = Some(Slot::new(adapter));
        }
    }

    /// Stop serving the adapter named `name`: its slot, or None when none is.
    pub fn remove(&self, name: &str) -> Option<u32> {
        let mut slots = self.write();
        let (slot, _) = slots.named(name)?;
        slots.served[slot as usize] = None;
        Some(slot)
    }

    /// The adapters served now with their slots and the scales base-model requests run them
    /// at (`GET /lora-adapters`).
    pub fn with_scales(&self) -> Vec<(u32, ServedAdapter, f32)> {
        let slots = self.read();
        slots
            .adapters()
            .map(|(slot, s)| (slot, s.adapter.clone(), s.base_scale))
            .collect()
    }

    /// llama-server's list of `(id, scale)` as the adapters it runs: every id must be a
    /// served adapter's slot; adapters not named are not run.
    pub fn mix_of(&self, list: &[(u32, f32)]) -> Result<LoraMix, UnknownAdapter> {
        self.read().check_served(list)?;
        Ok(LoraMix::scaled(list.iter().copied()))
    }

    /// Run base-model requests with the adapters of `list` at their scales from now on, the
    /// others at 0 (`POST /lora-adapters`); nothing changes if an id is not served.
    pub fn set_scales(&self, list: &[(u32, f32)]) -> Result<(), UnknownAdapter> {
        let mut slots = self.write();
        slots.check_served(list)?;
        for (slot, served) in slots.served.iter_mut().enumerate() {
            if let Some(served) = served {
                // The last entry naming a slot wins, as in a request's `lora` list.
                let named = list.iter().rev().find(|&&(id, _)| id as usize == slot);
                served.base_scale = named.map_or(0.0, |&(_, scale)| scale);
            }
        }
        Ok(())
    }

    /// What a base-model request without a `lora` list runs with (`set_scales`).
    pub fn base_mix(&self) -> LoraMix {
        let slots = self.read();
        LoraMix::scaled(slots.adapters().map(|(slot, s)| (slot, s.base_scale)))
    }
}

impl Slots {
    /// The adapters served, with their slots.
    fn adapters(&self) -> impl Iterator<Item = (u32, &Slot)> {
        (0u32..)
            .zip(&self.served)
            .filter_map(|(slot, s)| Some((slot, s.as_ref()?)))
    }

    /// The adapter served under `name`, with its slot.
    fn named(&self, name: &str) -> Option<(u32, &Slot)> {
        self.adapters().find(|(_, s)| s.adapter.name == name)
    }

    fn is_served(&self, slot: u32) -> bool {
        self.served.get(slot as usize).is_some_and(Option::is_some)
    }

    /// Every id of an `(id, scale)` list names an adapter served, or the first that does not.
    fn check_served(&self, list: &[(u32, f32)]) -> Result<(), UnknownAdapter> {
        match list.iter().position(|&(id, _)| !self.is_served(id)) {
            Some(entry) => Err(UnknownAdapter {
                entry,
                id: list[entry].0,
            }),
            None => Ok(()),
        }
    }
}

/// A LoRA adapter id that names no adapter served: the list's `entry` says `id`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("no LoRA adapter has id {id} (GET /lora-adapters lists those served)")]
pub struct UnknownAdapter {
    pub entry: usize,
    pub id: u32,
}

impl UnknownAdapter {
    /// The 400 naming the entry of the list sent at `at`.
    pub fn for_list(&self, at: crate::server::lora_list::ListAt) -> crate::server::error::ApiError {
        let why = format_args!(
            "is {}, which no adapter served has (GET /lora-adapters lists them)",
            self.id
        );
        at.invalid(self.entry, "id", why)
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
        assert!(check(&["base"], &[a("x"), a("y")], 2).is_ok());
        assert!(check(&["base"], &[a("x"), a("y")], 1)
            .unwrap_err()
            .contains("--max-lora-adapters 1"));
        assert!(check(&["base"], &[a("base")], 8)
            .unwrap_err()
            .contains("base model's name"));
        assert!(check(&["base", "alias"], &[a("alias")], 8)
            .unwrap_err()
            .contains("base model's name"));
        assert!(check(&["base"], &[a("x"), a("x")], 8)
            .unwrap_err()
            .contains("two adapters"));
        let missing = ServedAdapter {
            name: "m".into(),
            path: "/nowhere/m".into(),
        };
        assert!(check(&["base"], &[missing], 8)
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
    fn scales_for_the_base_model_name_served_adapters_only_and_leave_the_rest_at_0() {
        let a = |n: &str| ServedAdapter {
            name: n.into(),
            path: "/p".into(),
        };
        let served = Adapters::new(vec![a("x"), a("y")], 8);
        assert!(served.base_mix().is_base(), "off until set");
        served.set_scales(&[(1, 0.5)]).unwrap();
        assert_eq!(served.base_mix().scales(), &[(1, 0.5)]);
        served.set_scales(&[(0, 2.0), (0, -1.0)]).unwrap();
        assert_eq!(
            served.base_mix().scales(),
            &[(0, -1.0)],
            "the last one named"
        );
        assert_eq!(
            served.set_scales(&[(0, 1.0), (2, 1.0)]),
            Err(UnknownAdapter { entry: 1, id: 2 })
        );
        assert_eq!(
            served.base_mix().scales(),
            &[(0, -1.0)],
            "unchanged on error"
        );
        let listed: Vec<(u32, String, f32)> = served
            .with_scales()
            .into_iter()
            .map(|(id, a, scale)| (id, a.name, scale))
            .collect();
        assert_eq!(listed, [(0, "x".into(), -1.0), (1, "y".into(), 0.0)]);
        assert_eq!(
            served.mix_of(&[(1, 0.25), (0, 0.0)]).unwrap().scales(),
            &[(1, 0.25)]
        );
        assert_eq!(
            served.mix_of(&[(7, 1.0)]),
            Err(UnknownAdapter { entry: 0, id: 7 })
        );
        // An unloaded adapter is neither listed nor run, and a new one starts at 0.
        served.remove("x");
        assert!(served.base_mix().is_base());
        assert_eq!(
            served.mix_of(&[(0, 1.0)]),
            Err(UnknownAdapter { entry: 0, id: 0 })
        );
        served.begin_load("z").unwrap();
        served.end_load(a("z"), Some(2));
        assert_eq!(served.with_scales().len(), 2);
        assert!(served.base_mix().is_base());
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
