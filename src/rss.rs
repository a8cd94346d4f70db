//! Resident memory of this process, for speed/memory reports.

/// Peak resident set size in bytes (Linux `VmHWM`), or None where unavailable.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size in bytes (Linux `VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_rss_on_linux() {
        let peak = super::peak_rss_bytes().unwrap();
        let cur = super::current_rss_bytes().unwrap();
        assert!(peak >= cur && cur > 0);
    }
}
