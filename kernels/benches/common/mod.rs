//! What the kernel benchmarks share: criterion's timing, shortened by `CANDOR_BENCH_QUICK=1`.
use criterion::Criterion;
use std::time::Duration;

pub fn config() -> Criterion {
    let c = Criterion::default();
    if std::env::var("CANDOR_BENCH_QUICK").is_ok_and(|v| v != "0") {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(400))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    }
}
