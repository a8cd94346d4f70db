//! Size + sha256 checks, with a stamp beside the file (`FILE.verified`) so that a verified file
//! is not re-hashed on every start: the stamp records the sha256, the size and the modification
//! time, and is trusted only while all three still match.
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

/// What a file should be; `None` where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expect<'a> {
    pub size: Option<u64>,
    pub sha256: Option<&'a str>,
}

impl Expect<'_> {
    /// Whether `got` is what was expected; the error says how it differs.
    pub fn check(&self, got: &Digest) -> Result<(), String> {
        if let Some(size) = self.size {
            if got.size != size {
                return Err(format!("got {} bytes, expected {size}", got.size));
            }
        }
        if let Some(sha) = self.sha256 {
            if !got.sha256.eq_ignore_ascii_case(sha) {
                return Err(format!("sha256 is {}, expected {sha}", got.sha256));
            }
        }
        Ok(())
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(digest_file(path)?.sha256)
}

pub fn digest_file(path: &Path) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(path)?;
    let mut w = HashingWriter::new(std::io::sink());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    Ok(w.finish().1)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    pub fn finish(self) -> (W, Digest) {
        let d = Digest {
            size: self.len,
            sha256: hex(&self.hasher.finalize()),
        };
        (self.inner, d)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn stamp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".verified")
}

fn stamp_text(path: &Path, sha: &str) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!(
        "{} {} {mtime}\n",
        sha.to_ascii_lowercase(),
        m.len()
    ))
}

/// Whether a stamp says `path` was verified against `sha` and the file has not changed since
/// (no hashing).
pub fn stamped(path: &Path, size: u64, sha: &str) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => {}
        _ => return false,
    }
    match (
        stamp_text(path, sha),
        std::fs::read_to_string(stamp_path(path)),
    ) {
        (Some(want), Ok(have)) => want == have,
        _ => false,
    }
}

/// Whether `path` has `size` bytes and hashes to `sha` (trusting a matching stamp, writing one
/// after a successful hash).
pub fn verified(path: &Path, size: u64, sha: &str) -> bool {
    if stamped(path, size, sha) {
        return true;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => {}
        _ => return false,
    }
    match sha256_file(path) {
        Ok(got) if got.eq_ignore_ascii_case(sha) => {
            write_stamp(path, sha);
            true
        }
        _ => false,
    }
}

pub fn write_stamp(path: &Path, sha: &str) {
    if let Some(text) = stamp_text(path, sha) {
        // A missing stamp only costs a re-hash next time.
        if let Err(e) = std::fs::write(stamp_path(path), text) {
            tracing::debug!("cannot write the stamp for {}: {e}", path.display());
        }
    }
}
