//! Resident memory of this process, for speed/memory reports, and the host's memory.

/// The host's (MemTotal, MemAvailable) in bytes from /proc/meminfo, where there is one.
pub fn host_memory() -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// Peak resident set size in bytes (Linux `VmHWM`), or None where unavailable.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size in bytes (Linux `VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Start a new peak: the next `peak_rss_bytes` counts only what is resident from now on
/// (Linux: writing 5 to `clear_refs` resets `VmHWM`). Used after `candor bench`'s bandwidth
/// probe, whose buffers are freed before the model loads. False where unsupported.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Give the heap pages freed so far back to the OS (glibc keeps freed small allocations in its
/// arenas). Loading a GGUF frees tens of MB of them (the metadata's per-token strings, parse
/// buffers); without this they stay resident beside the weights for the life of the process.
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    /// One test: a reset of the peak would race with any other test reading it.
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_the_peak_and_can_restart_it() {
        // Current first: the peak read after it covers it.
        let cur = super::current_rss_bytes().unwrap();
        let peak = super::peak_rss_bytes().unwrap();
        assert!(peak >= cur && cur > 0);
        // 64 MiB touched then freed raises the peak; after a reset it is far below that.
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        let before = super::peak_rss_bytes().unwrap();
        assert!(super::reset_peak());
        let after = super::peak_rss_bytes().unwrap();
        assert!(after + (32 << 20) < before, "{after} vs {before}");
    }
}
