//! Batch-invariant mode: every kernel computes a row the same way whatever else shares its
//! batch, so a request's logits do not depend on the other requests of a step, on how its
//! prompt was split into chunks, or on what the prefix cache held (vLLM's
//! `VLLM_BATCH_INVARIANT`, SGLang's deterministic inference).
//!
//! By default the kernels pick by row count: VNNI CPUs repack weights into panels from a few
//! rows on and AMX CPUs multiply 32 rows or more on bf16 tiles; prefill attention runs in
//! blocks of rows and long decode rows are split over their keys. Each rounds otherwise than
//! the one-row kernels, by little, but enough to tip a near tie. In this mode a row is computed
//! the same way alone or among any others: on VNNI CPUs the quantized products take the panel
//! kernels' arithmetic at every count (repacked panels from a few rows on, the same operations
//! straight from the weight blocks below: `quant::x86::panel_rows`), elsewhere the row kernels;
//! the half-precision products keep the vector kernels; attention attends row by row over all
//! of a row's keys in one task. It costs prefill speed (no AMX tiles, no attention blocks; on
//! VNNI prefill runs at the panels' speed, elsewhere at the row tiles'), a little decode speed
//! on VNNI (the panel arithmetic sums each block across lanes) and long-context decode with few
//! sequences (no key split).
use std::sync::OnceLock;

static MODE: OnceLock<bool> = OnceLock::new();

/// Turn the mode on or off for this process: before the first product (the first call, or
/// `CANDOR_BATCH_INVARIANT` read at first use, wins). Returns the mode in force.
pub fn set_batch_invariant(on: bool) -> bool {
    *MODE.get_or_init(|| on)
}

/// Whether the kernels run batch-invariant: `set_batch_invariant`, else `CANDOR_BATCH_INVARIANT`
/// (`1`, `y`, `yes`, `on`, `true`, in any case: what `serve` reads it as).
pub fn batch_invariant() -> bool {
    #[cfg(test)]
    if FORCED.with(|f| f.get()) {
        return true;
    }
    *MODE.get_or_init(|| {
        std::env::var("CANDOR_BATCH_INVARIANT").is_ok_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            matches!(v.as_str(), "1" | "y" | "yes" | "on" | "true")
        })
    })
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Batch-invariant mode on the calling thread, for a test, until the guard drops (the kernels
/// decide how to run a call on the thread that makes it).
#[cfg(test)]
pub(crate) fn forced() -> impl Drop {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            FORCED.with(|f| f.set(false));
        }
    }
    FORCED.with(|f| f.set(true));
    Guard
}
