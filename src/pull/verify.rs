//! Size + sha256 checks, with a stamp beside the file so a verified file is not re-hashed on
//! every start (the stamp records size and modification time).
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".verified");
    PathBuf::from(p)
}

fn stamp_text(path: &Path, sha: &str) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{sha} {} {mtime}\n", m.len()))
}

/// Whether `path` has `size` bytes and hashes to `sha` (trusting a matching stamp).
pub fn verified(path: &Path, size: u64, sha: &str) -> bool {
    let Ok(m) = std::fs::metadata(path) else {
        return false;
    };
    if m.len() != size {
        return false;
    }
    if let (Some(want), Ok(have)) = (
        stamp_text(path, sha),
        std::fs::read_to_string(stamp_path(path)),
    ) {
        if want == have {
            return true;
        }
    }
    match sha256_file(path) {
        Ok(got) if got == sha => {
            write_stamp(path, sha);
            true
        }
        _ => false,
    }
}

pub fn write_stamp(path: &Path, sha: &str) {
    if let Some(text) = stamp_text(path, sha) {
        // A missing stamp only costs a re-hash next time.
        let _ = std::fs::write(stamp_path(path), text);
    }
}
