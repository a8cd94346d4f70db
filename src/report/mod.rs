//! `candor report`: result documents in, report.md + a self-contained report.html (inline SVG
//! charts) + charts/*.svg out. The spec database, roofline, projection and claim arithmetic
//! live in `bench`; this module reads inputs, assembles the numbers and renders them.
pub mod accuracy;
pub mod analysis;
pub mod charts;
pub mod html;
pub mod input;
pub mod markdown;
pub mod svg;

use crate::bench::claims::{ClaimError, ClaimsDb};
use crate::bench::specs::{SpecDb, SpecError};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Specs(#[from] SpecError),
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error(transparent)]
    Analysis(#[from] analysis::AnalysisError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("no result files given")]
    NoInputs,
}

/// What to build a report from.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub results: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub reference: String,
    pub specs: Option<PathBuf>,
    pub claims: Option<PathBuf>,
}

/// The rendered report, before it is written.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub markdown: String,
    pub html: String,
    pub charts: Vec<charts::Chart>,
}

/// Read, analyse and render (no files written).
pub fn render(req: &ReportRequest) -> Result<Rendered, ReportError> {
    if req.results.is_empty() {
        return Err(ReportError::NoInputs);
    }
    let specs = match &req.specs {
        Some(p) => SpecDb::from_file(p)?,
        None => SpecDb::builtin()?,
    };
    let claims = match &req.claims {
        Some(p) => ClaimsDb::from_file(p)?,
        None => ClaimsDb::builtin()?,
    };
    let mut inputs = Vec::new();
    for p in &req.results {
        let name = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string());
        inputs.push((name, input::load(p)?));
    }
    let a = analysis::analyze(&specs, &claims, &req.reference, inputs)?;
    let charts = charts::all(&a);
    let markdown = markdown::render(&a, &specs, &charts);
    let html = html::render(&markdown, &charts, "candor hardware report");
    Ok(Rendered {
        markdown,
        html,
        charts,
    })
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Render and write report.md, report.html and charts/*.svg under `out_dir`; returns the paths.
pub fn write_report(req: &ReportRequest) -> Result<Vec<PathBuf>, ReportError> {
    let r = render(req)?;
    let charts_dir = req.out_dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|source| ReportError::Write {
        path: charts_dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    for c in &r.charts {
        let p = charts_dir.join(format!("{}.svg", c.name));
        write(&p, &format!("{}\n", c.svg))?;
        written.push(p);
    }
    let md = req.out_dir.join("report.md");
    write(&md, &r.markdown)?;
    let html = req.out_dir.join("report.html");
    write(&html, &r.html)?;
    written.push(md);
    written.push(html);
    Ok(written)
}
