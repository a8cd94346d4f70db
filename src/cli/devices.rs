//! `candor devices`: the devices candor can run on (CPU, CUDA when built with it, device
//! plugins), or with `--conformance PATH` the conformance suite of one plugin.
use crate::backend::cpu::configure_threads;
use crate::backend::devices::{list_devices, plugin_paths, DeviceRow};
use crate::backend::plugin::conformance;
use crate::error::CliError;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// A device plugin to list (repeatable); `CANDOR_PLUGINS` adds more (colon-separated).
    #[arg(long = "plugin", value_name = "PATH")]
    pub plugins: Vec<PathBuf>,
    /// Check this plugin op by op and end to end against the CPU backend; exits non-zero on any
    /// failure.
    #[arg(long, value_name = "PATH")]
    pub conformance: Option<PathBuf>,
    /// With --conformance: also compare this model (a tiny fixture, or any model) end to end.
    #[arg(long, requires = "conformance")]
    pub model: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute threads of the CPU backend (default: all cores).
    #[arg(long, env = "CANDOR_THREADS")]
    pub threads: Option<usize>,
}

pub fn run(args: DevicesArgs) -> Result<(), CliError> {
    let threads = configure_threads(args.threads);
    if let Some(path) = &args.conformance {
        let opts = conformance::Options {
            model: args.model.clone(),
            threads,
        };
        let report = conformance::run(path, &opts).map_err(|e| CliError::Failed(e.to_string()))?;
        if args.json {
            println!("{}", to_json(&report)?);
        } else {
            print!("{}", report.table());
        }
        return match report.failures() {
            0 => Ok(()),
            n => Err(CliError::Failed(format!(
                "{n} conformance case(s) failed for {}",
                path.display()
            ))),
        };
    }
    let env = std::env::var("CANDOR_PLUGINS").ok();
    let rows = list_devices(threads, &plugin_paths(&args.plugins, env.as_deref()));
    if args.json {
        println!("{}", to_json(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    let broken: Vec<&str> = rows.iter().filter_map(|r| r.error.as_deref()).collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(broken.join("; ")))
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(v).map_err(|e| CliError::Failed(format!("JSON: {e}")))
}

fn gib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

fn table(rows: &[DeviceRow]) -> String {
    let mut cells = vec![[
        "backend".to_string(),
        "name".into(),
        "vendor".into(),
        "memory total/free".into(),
        "details".into(),
    ]];
    for r in rows {
        cells.push([
            r.backend.clone(),
            r.name.clone(),
            r.vendor.clone(),
            format!(
                "{} / {}",
                gib(r.memory_total_bytes),
                gib(r.memory_free_bytes)
            ),
            match &r.error {
                Some(e) => format!("ERROR: {e}"),
                None => r.details.join(" "),
            },
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &cells {
        for (c, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", r[c], w = *w));
        }
        out.push_str(&r[4]);
        out.push('\n');
    }
    out
}
