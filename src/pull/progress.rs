//! Progress reporting for a pull: a bar on a terminal, percentage lines when progress was asked
//! for but stderr is not a terminal, and otherwise only the few plain log lines (`note`).
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Meter {
    bar: Option<ProgressBar>,
    /// Percentage lines (progress asked for, stderr not a terminal).
    lines: bool,
    what: String,
    total: u64,
    done: u64,
    /// The next tenth (1..=10) to report in `lines` mode.
    next_tenth: u64,
}

impl Meter {
    pub fn new(progress: bool, what: &str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (progress && tty).then(|| {
            let b = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Meter {
            bar,
            lines: progress && !tty,
            what: what.to_string(),
            total: 0,
            done: 0,
            next_tenth: 1,
        }
    }

    /// Whether progress is drawn as a bar (so per-step log lines are not needed).
    pub fn has_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Start counting towards `total` bytes.
    pub fn start(&mut self, total: u64) {
        self.total = total;
        self.done = 0;
        self.next_tenth = 1;
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(0);
        }
    }

    pub fn set_message(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        } else if self.lines && self.total > 0 {
            while self.next_tenth <= 10 && self.done * 10 >= self.total * self.next_tenth {
                eprintln!(
                    "{}: {}% ({:.1}/{:.1} MB)",
                    self.what,
                    self.next_tenth * 10,
                    self.done as f64 / 1e6,
                    self.total as f64 / 1e6
                );
                self.next_tenth += 1;
            }
        }
    }

    /// A plain log line (printed above the bar, if any).
    pub fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{msg}")),
            None => eprintln!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// hf-hub reports its download through this.
pub struct HubProgress<'a>(pub &'a mut Meter);

impl hf_hub::api::Progress for HubProgress<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.0.start(size as u64);
    }

    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }

    fn finish(&mut self) {}
}
