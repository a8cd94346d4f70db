//! `candor devices --conformance PATH`: checks a device plugin op by op against the CPU backend
//! (normalised MSE per op, as ggml's test-backend-ops does), then whole models end to end, and
//! reports one row per case: ok, unsupported (the op ran on the CPU fallback), or FAIL.
mod cases;
mod inputs;
mod model;

use super::{ffi, Plugin, PluginBackend, PluginError};
use crate::backend::cpu::CpuBackend;
use cases::Case;
use inputs::nmse;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Ok {
        nmse: f64,
        bound: f64,
    },
    /// The plugin does not run this op (or dtype/shape): candor uses the CPU for it.
    Unsupported,
    Fail {
        error: String,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub op: String,
    pub dtype: String,
    pub shape: String,
    #[serde(flatten)]
    pub status: Status,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub plugin: String,
    pub device: String,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.status, Status::Fail { .. }))
            .count()
    }

    /// A fixed-width table: op, dtype, shapes, status, NMSE / bound or the error.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "op".to_string(),
            "dtype".into(),
            "shapes".into(),
            "status".into(),
            "detail".into(),
        ]];
        for r in &self.rows {
            let (status, detail) = match &r.status {
                Status::Ok { nmse, bound } => {
                    ("ok".to_string(), format!("nmse {nmse:.2e} ≤ {bound:.0e}"))
                }
                Status::Unsupported => {
                    ("unsupported".to_string(), "runs on the CPU fallback".into())
                }
                Status::Fail { error } => ("FAIL".to_string(), error.clone()),
            };
            rows.push([
                r.op.clone(),
                r.dtype.clone(),
                r.shape.clone(),
                status,
                detail,
            ]);
        }
        let widths: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!("conformance of {} ({})\n", self.device, self.plugin);
        for r in &rows {
            for (c, w) in widths.iter().enumerate() {
                out.push_str(&format!("{:<w$}  ", r[c], w = *w));
            }
            out.push_str(&r[4]);
            out.push('\n');
        }
        let (ok, unsupported) = (
            self.rows
                .iter()
                .filter(|r| matches!(r.status, Status::Ok { .. }))
                .count(),
            self.rows
                .iter()
                .filter(|r| r.status == Status::Unsupported)
                .count(),
        );
        out.push_str(&format!(
            "{ok} ok, {unsupported} unsupported (CPU fallback), {} FAIL\n",
            self.failures()
        ));
        out
    }
}

pub struct Options {
    /// A model from disk to compare end to end, beside the built-in synthetic ones.
    pub model: Option<PathBuf>,
    pub threads: usize,
}

fn judge(
    got: candor_models::Result<Vec<f32>>,
    want: &[f32],
    bound: f64,
    fell_back: bool,
) -> Status {
    match got {
        Err(e) => Status::Fail {
            error: e.to_string(),
        },
        Ok(_) if fell_back => Status::Unsupported,
        Ok(got) => {
            let e = nmse(&got, want);
            if e <= bound {
                Status::Ok { nmse: e, bound }
            } else {
                Status::Fail {
                    error: format!("nmse {e:.3e} exceeds {bound:.0e}"),
                }
            }
        }
    }
}

fn run_case(plugin: &PluginBackend, cpu: &CpuBackend, case: &Case, seed: u64) -> Row {
    let op = case.op();
    let status = match case.run(cpu, seed) {
        // A case the CPU reference cannot run is a bug of the suite, reported as such.
        Err(e) => Status::Fail {
            error: format!("CPU reference failed: {e}"),
        },
        Ok(want) => {
            let before = plugin.fallback_counts().get(op);
            let got = case.run(plugin, seed);
            let fell_back = plugin.fallback_counts().get(op) > before;
            judge(got, &want, case.bound(), fell_back)
        }
    };
    Row {
        op: op.name().into(),
        dtype: case.dtype(),
        shape: case.shape(),
        status,
    }
}

/// The KV write and attention cases again over an F16 cache (ABI 1.1), against the CPU's f16
/// cache; `unsupported` rows where the plugin keeps none.
fn f16_cache_rows(plugin: &PluginBackend, cpu: &CpuBackend) -> Vec<Row> {
    // `with_kv_cache` refuses only a cache the plugin does not keep: unsupported rows.
    let on_f16 = plugin.clone().with_kv_cache(ffi::DTYPE_F16).ok();
    let cpu = cpu.clone().with_kv_dtype(crate::backend::cpu::KvDtype::F16);
    cases::all_cases()
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Case::KvWrite { .. } | Case::Attention(_)))
        .map(|(i, case)| {
            let status = match &on_f16 {
                Some(b) => run_case(b, &cpu, case, i as u64).status,
                None => Status::Unsupported,
            };
            Row {
                op: case.op().name().into(),
                dtype: "F16 cache".into(),
                shape: case.shape(),
                status,
            }
        })
        .collect()
}

/// `cast` is in the ABI but not in the Backend trait: checked directly as f32 → T → f32 round
/// trips against `half`'s conversions.
fn cast_rows(plugin: &Arc<Plugin>) -> Vec<Row> {
    let values: Vec<f32> = inputs::Inputs::new(77)
        .values(1000, 70000.0)
        .into_iter()
        .chain([0.0, -0.0, 1e-7, 6e-8, 65504.0, 1e38, f32::INFINITY])
        .collect();
    [(ffi::DTYPE_F16, "F16"), (ffi::DTYPE_BF16, "BF16")]
        .iter()
        .map(|&(dtype, name)| {
            let want: Vec<f32> = values
                .iter()
                .map(|&v| {
                    if dtype == ffi::DTYPE_F16 {
                        half::f16::from_f32(v).to_f32()
                    } else {
                        half::bf16::from_f32(v).to_f32()
                    }
                })
                .collect();
            let status = match cast_round_trip(plugin, &values, dtype) {
                Ok(None) => Status::Unsupported,
                Ok(Some(got))
                    if got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()) =>
                {
                    Status::Ok {
                        nmse: 0.0,
                        bound: 0.0,
                    }
                }
                Ok(Some(got)) => {
                    let bad = got
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a.to_bits() != b.to_bits())
                        .unwrap_or(0);
                    Status::Fail {
                        error: format!(
                            "{} → {} → {} instead of {}",
                            values[bad], name, got[bad], want[bad]
                        ),
                    }
                }
                Err(e) => Status::Fail {
                    error: e.to_string(),
                },
            };
            Row {
                op: "cast".into(),
                dtype: format!("F32→{name}→F32"),
                shape: format!("[{}] incl. inf, subnormals", values.len()),
                status,
            }
        })
        .collect()
}

fn cast_round_trip(
    plugin: &Arc<Plugin>,
    values: &[f32],
    dtype: ffi::CandorDtype,
) -> Result<Option<Vec<f32>>, PluginError> {
    let Some(cast) = plugin.api().cast else {
        return Ok(None);
    };
    let n = values.len();
    let mut desc = ffi::CandorOpDesc {
        op: ffi::OP_CAST,
        dtype: ffi::DTYPE_F32,
        dtype_out: dtype,
        ..Default::default()
    };
    desc.dims[0] = n as i64;
    let mut back = desc;
    back.dtype = dtype;
    back.dtype_out = ffi::DTYPE_F32;
    if !plugin.supports(&desc) || !plugin.supports(&back) {
        return Ok(None);
    }
    let src = super::DeviceBuffer::alloc(plugin, n as u64 * 4)?;
    let mid = super::DeviceBuffer::alloc(plugin, n as u64 * 2)?;
    let dst = super::DeviceBuffer::alloc(plugin, n as u64 * 4)?;
    src.write(
        0,
        &values
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let (s, m, d) = (
        src.tensor(ffi::DTYPE_F32, &[n]),
        mid.tensor(dtype, &[n]),
        dst.tensor(ffi::DTYPE_F32, &[n]),
    );
    // SAFETY: descriptors of live buffers of the right sizes.
    plugin.call("cast", |_| unsafe { cast(&s, &m) })?;
    plugin.call("cast", |_| unsafe { cast(&m, &d) })?;
    let mut bytes = vec![0u8; n * 4];
    dst.read(0, &mut bytes)?;
    Ok(Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

fn model_row(
    name: String,
    dtype: String,
    shape: String,
    result: Result<(Vec<f32>, Vec<f32>), crate::engine::EngineError>,
    bound: f64,
) -> Row {
    let status = match result {
        Err(e) => Status::Fail {
            error: e.to_string(),
        },
        Ok((got, want)) => judge(Ok(got), &want, bound, false),
    };
    Row {
        op: name,
        dtype,
        shape,
        status,
    }
}

/// Run the whole suite against the plugin at `path`.
pub fn run(path: &Path, opts: &Options) -> Result<Report, PluginError> {
    let plugin = Arc::new(Plugin::load(path)?);
    let cpu = CpuBackend::new(opts.threads);
    let backend = PluginBackend::new(plugin.clone(), cpu.clone());
    let mut rows: Vec<Row> = cases::all_cases()
        .iter()
        .enumerate()
        .map(|(i, case)| run_case(&backend, &cpu, case, i as u64))
        .collect();
    rows.extend(f16_cache_rows(&backend, &cpu));
    rows.extend(cast_rows(&plugin));
    for m in model::synthetic_models() {
        let src = m.source();
        let shape = format!(
            "{} layers, h{}, prefill 24+5, 3 decode steps",
            m.spec.num_layers, m.spec.hidden_size
        );
        let result = model::compare_runners(&backend, &cpu, &m.spec, &src);
        rows.push(model_row(
            format!("model {}", m.name),
            m.dtype.to_string(),
            shape,
            result,
            model::model_bound(m.dtype),
        ));
    }
    if let Some(p) = &opts.model {
        use candor_models::backend::WeightDtype;
        use candor_models::loader::ModelFormat;
        let opened = candor_models::loader::open_model(p, false);
        // GGUF files hold quantized weights (the quantized bound); safetensors are floats.
        let stored = match &opened {
            Ok(o) if o.format == ModelFormat::Gguf => WeightDtype::Q8_0,
            _ => WeightDtype::F32,
        };
        let result = opened
            .map_err(crate::engine::EngineError::from)
            .and_then(|o| model::compare_runners(&backend, &cpu, &o.spec, o.source.as_ref()));
        let dtype = if stored == WeightDtype::F32 {
            "float"
        } else {
            "quantized"
        };
        rows.push(model_row(
            format!("model {}", p.display()),
            dtype.into(),
            "prefill 24+5, 3 decode steps".into(),
            result,
            model::model_bound(stored),
        ));
    }
    Ok(Report {
        plugin: path.display().to_string(),
        device: plugin.name().to_string(),
        rows,
    })
}
