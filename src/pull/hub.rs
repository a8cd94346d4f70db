//! The Hugging Face Hub source (hf-hub's blocking client; HF_HOME, HF_ENDPOINT and the token
//! file apply, HF_HUB_OFFLINE limits it to the local cache).
//!
//! Before downloading, the repository listing (`/api/models/ORG/REPO?blobs=true`) is asked for
//! the file's LFS sha256 and size, so that a different build of the same model is skipped
//! without downloading it; the downloaded bytes are always hashed again all the same.
use super::progress::{HubProgress, Meter};
use super::verify::{self, Digest, Expect};
use super::PullOptions;
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::Cache;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
struct RepoListing {
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
    #[serde(default)]
    size: Option<u64>,
}

/// What the listing says about one file.
enum Probe {
    /// Listed, with its size and sha256 where the Hub gives them.
    Found {
        size: Option<u64>,
        sha256: Option<String>,
    },
    /// The repository was listed and the file is not in it.
    Missing,
    /// The Hub answered but not with a usable listing (an error status, a mirror without the
    /// API): the download itself will tell.
    Unknown,
    /// The Hub could not be reached at all (DNS, connection, TLS): no point trying further.
    Down(String),
}

fn offline_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

fn cache(opts: &PullOptions) -> Cache {
    match &opts.hf_cache {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env(),
    }
}

/// The Hub's address, as hf-hub will use it.
fn endpoint(opts: &PullOptions) -> String {
    opts.hf_endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
}

fn api(opts: &PullOptions) -> Result<Api, String> {
    let mut b = ApiBuilder::from_env().with_progress(false);
    if let Some(e) = &opts.hf_endpoint {
        b = b.with_endpoint(e.trim_end_matches('/').to_string());
    }
    if let Some(dir) = &opts.hf_cache {
        b = b.with_cache_dir(dir.clone());
    }
    b.build().map_err(|e| e.to_string())
}

/// The listing of `repo`, or why there is none (`Err(true, _)`: the Hub is unreachable).
fn listing(api: &Api, opts: &PullOptions, repo: &str) -> Result<RepoListing, (bool, String)> {
    let req = api
        .model(repo.to_string())
        .info_request()
        .query("blobs", "true");
    match req.call() {
        Ok(resp) => {
            let body = resp
                .into_string()
                .map_err(|e| (false, format!("reading the listing of {repo}: {e}")))?;
            serde_json::from_str(&body)
                .map_err(|e| (false, format!("the listing of {repo} is not JSON: {e}")))
        }
        Err(e) => {
            let msg = e.to_string();
            // A transport error has no response; an HTTP error status has one.
            if e.into_response().is_some() {
                return Err((false, msg));
            }
            // ureq says "URL: Kind: detail"; the URL adds nothing but length.
            let detail = msg.split_once(": ").map_or(msg.as_str(), |(_, d)| d);
            Err((true, format!("cannot reach {}: {detail}", endpoint(opts))))
        }
    }
}

fn probe(api: &Api, opts: &PullOptions, repo: &str, file: &str) -> Probe {
    match listing(api, opts, repo) {
        Ok(l) => match l.siblings.into_iter().find(|s| s.rfilename == file) {
            Some(s) => Probe::Found {
                size: s.lfs.as_ref().and_then(|l| l.size).or(s.size),
                sha256: s.lfs.map(|l| l.sha256),
            },
            None => Probe::Missing,
        },
        Err((true, msg)) => Probe::Down(msg),
        Err((false, msg)) => {
            tracing::debug!("no listing for {repo}: {msg}");
            Probe::Unknown
        }
    }
}

/// Every file of `repo` (needs the network).
pub fn list_files(repo: &str, opts: &PullOptions) -> Result<Vec<String>, String> {
    if offline_env() {
        return Err("HF_HUB_OFFLINE is set".to_string());
    }
    let api = api(opts)?;
    let l = listing(&api, opts, repo).map_err(|(_, msg)| msg)?;
    Ok(l.siblings.into_iter().map(|s| s.rfilename).collect())
}

/// Put the file at `src` (a path in the Hub cache, usually a symlink to a blob) at `dest`: a
/// hard link where possible (no second copy on disk), else a copy.
fn place(src: &Path, dest: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(dest);
    let real = std::fs::canonicalize(src).map_err(|e| format!("{}: {e}", src.display()))?;
    if std::fs::hard_link(&real, dest).is_ok() {
        return Ok(());
    }
    std::fs::copy(&real, dest)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", real.display(), dest.display()))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Fetch the first of `candidates` (repo, file) whose bytes match `expect` into `dest`, from the
/// Hub cache or the network, and return their digest. Errors are one line.
pub fn fetch(
    candidates: &[(&str, &str)],
    expect: Expect<'_>,
    dest: &Path,
    opts: &PullOptions,
    meter: &mut Meter,
) -> Result<Digest, String> {
    let mut reasons: Vec<String> = Vec::new();
    let check = |dest: &Path, want: Expect<'_>| -> Result<Digest, String> {
        let got = verify::digest_file(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        want.check(&got)?;
        Ok(got)
    };

    // Already in the Hub cache: no network needed.
    let cache = cache(opts);
    for (repo, file) in candidates {
        if let Some(cached) = cache.model(repo.to_string()).get(file) {
            let r = place(&cached, dest).and_then(|_| check(dest, expect));
            match r {
                Ok(d) => return Ok(d),
                Err(r) => reasons.push(format!("cached {repo}/{file}: {r}")),
            }
            let _ = std::fs::remove_file(dest);
        }
    }
    if offline_env() {
        reasons.push("HF_HUB_OFFLINE is set".to_string());
        return Err(reasons.join(", "));
    }

    let api = api(opts)?;
    for (repo, file) in candidates {
        let mut want = expect;
        let listed;
        match probe(&api, opts, repo, file) {
            Probe::Down(msg) => {
                reasons.push(msg);
                break;
            }
            Probe::Missing => {
                reasons.push(format!("{repo} has no file {file}"));
                continue;
            }
            Probe::Found { size, sha256 } => {
                listed = sha256;
                let hub = Expect {
                    size,
                    sha256: listed.as_deref(),
                };
                if let (Some(w), Some(h)) = (expect.sha256, hub.sha256) {
                    if !w.eq_ignore_ascii_case(h) {
                        reasons.push(format!(
                            "{repo}/{file} is another build (sha256 {}…, expected {}…)",
                            short(h),
                            short(w)
                        ));
                        continue;
                    }
                }
                if let (Some(w), Some(h)) = (expect.size, hub.size) {
                    if w != h {
                        reasons.push(format!(
                            "{repo}/{file} is another build ({h} bytes, expected {w})"
                        ));
                        continue;
                    }
                }
                want.size = want.size.or(hub.size);
                want.sha256 = want.sha256.or(hub.sha256);
            }
            Probe::Unknown => {}
        }
        if !meter.has_bar() {
            meter.note(&format!("downloading {repo}/{file} from Hugging Face ..."));
        }
        meter.set_message(format!("{repo}/{file}"));
        let repo_api = api.model(repo.to_string());
        // hf-hub asserts on a few server answers; a panic there must not take the caller down.
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            repo_api.download_with_progress(file, HubProgress(meter))
        }));
        let path = match got {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                reasons.push(format!("{repo}/{file}: {e}"));
                continue;
            }
            Err(_) => {
                reasons.push(format!("{repo}/{file}: the Hub client failed"));
                continue;
            }
        };
        match place(&path, dest).and_then(|_| check(dest, want)) {
            Ok(d) => return Ok(d),
            Err(r) => reasons.push(format!("{repo}/{file}: {r}")),
        }
        let _ = std::fs::remove_file(dest);
    }
    if reasons.is_empty() {
        reasons.push("no Hugging Face file is known for it".to_string());
    }
    Err(reasons.join(", "))
}
