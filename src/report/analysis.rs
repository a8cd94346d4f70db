//! From result documents and the spec database to the numbers a report shows: each measured
//! device with its roofs, MBU/MFU per test, ratios to the reference device, projections for
//! unmeasured devices, and the claim verdicts. Rendering lives in markdown.rs and charts.rs.
use super::input::{lists_amx, Input, LocalRun, PerplexityDoc, Phase, ServeRun, TestRow};
use crate::bench::claims::{self, Claim, ClaimsDb, Judgement, Regime, RoofRatio};
use crate::bench::kv_traffic::KvShape;
use crate::bench::projection::{self, Projection, Target, Workload};
use crate::bench::roofline;
use crate::bench::specs::{DeviceSpec, Dtype, Kind, SpecDb};

/// The number format a run's matrix products ran in. GGUF quantized weights are multiplied
/// against 8-bit quantized activations with integer dot products (candor's kernels, llama.cpp's
/// CPU and CUDA MMQ paths), so their roof is the int8 peak.
pub fn compute_dtype(quantization: Option<&str>) -> Dtype {
    match quantization.map(str::to_ascii_uppercase).as_deref() {
        Some("F16") => Dtype::Fp16,
        Some("BF16") => Dtype::Bf16,
        Some(q) if q.starts_with('Q') || q.starts_with("IQ") => Dtype::Int8,
        _ => Dtype::Fp32,
    }
}

/// The number format of a run's prefill products: bf16 where candor ran its AMX kernels (the
/// run's flags list `amx-bf16`; they take prefill chunks of `AMX_MIN_ROWS` rows or more), the
/// run's `compute_dtype` otherwise.
pub fn prefill_dtype(run_dtype: Dtype, isa: &[String]) -> Dtype {
    match run_dtype {
        Dtype::Int8 | Dtype::Bf16 if lists_amx(isa) => Dtype::Bf16,
        other => other,
    }
}

/// The dtype a test's products ran in: a prefill whose chunks reach the AMX kernels' row count
/// runs in the run's prefill dtype, anything else in its compute dtype.
fn test_dtype(run: &AnalyzedRun, t: &TestRow) -> Dtype {
    let amx_rows = candor_kernels::quant::AMX_MIN_ROWS;
    match t.phase {
        Phase::Prefill if t.n.min(t.ubatch) >= amx_rows => run.prefill_dtype,
        _ => run.dtype,
    }
}

/// A test of a measured run with its efficiency.
#[derive(Debug, Clone)]
pub struct Row {
    pub test: TestRow,
    pub mbu: Option<f64>,
    pub mfu: Option<f64>,
    /// FLOP per byte moved, and FLOP/s achieved (the roofline point).
    pub intensity: f64,
    pub achieved_flops: f64,
    /// This row's tok/s over the reference device's for the same model and test.
    pub vs_reference: Option<RefRatio>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefRatio {
    pub ratio: f64,
    /// The reference value is a projection, not a measurement.
    pub projected: bool,
}

#[derive(Debug, Clone)]
pub struct AnalyzedRun {
    pub run: LocalRun,
    pub dtype: Dtype,
    /// The dtype of its long prefills' products (`prefill_dtype`).
    pub prefill_dtype: Dtype,
    pub workload: Option<Workload>,
    pub rows: Vec<Row>,
}

/// One measured device (a spec-database entry plus, for CPUs, the threads used).
#[derive(Debug, Clone)]
pub struct System<'a> {
    pub label: String,
    pub spec: Option<&'a DeviceSpec>,
    pub threads: Option<usize>,
    pub bandwidth_gbs: Option<f64>,
    /// Where the bandwidth roof comes from.
    pub bandwidth_note: String,
    pub runs: Vec<AnalyzedRun>,
}

impl System<'_> {
    pub fn peak_flops(&self, dtype: Dtype) -> Option<f64> {
        self.spec
            .and_then(|s| s.peak_tflops(dtype, self.threads))
            .map(|t| t * 1e12)
    }
}

/// Projections of one model's measured efficiency onto every unmeasured device.
#[derive(Debug, Clone)]
pub struct ModelProjection<'a> {
    pub model: String,
    pub basis_system: String,
    pub basis_file: String,
    pub dtype: Dtype,
    /// The measured tests projected, with the efficiency carried over (MFU for prefill, MBU
    /// for decode).
    pub tests: Vec<(TestRow, Option<f64>)>,
    /// The prefill MFU that caps large-batch decode.
    pub mfu_cap: Option<f64>,
    /// The batch-1 decode MBU that caps short prefills.
    pub mbu_decode: Option<f64>,
    pub devices: Vec<(&'a DeviceSpec, Vec<Projection>)>,
}

impl ModelProjection<'_> {
    pub fn value(&self, device_id: &str, test: &str) -> Option<f64> {
        let i = self.tests.iter().position(|(t, _)| t.test == test)?;
        let (_, p) = self.devices.iter().find(|(d, _)| d.id == device_id)?;
        p.get(i)?.tok_s()
    }
}

#[derive(Debug, Clone)]
pub struct ClaimVerdict<'a> {
    pub claim: &'a Claim,
    pub subject: &'a DeviceSpec,
    pub baseline: &'a DeviceSpec,
    pub regimes: Vec<(Regime, RoofRatio, Judgement)>,
    pub best_precision: RoofRatio,
    /// Lines on what the results measured on either device.
    pub measured: Vec<String>,
    /// Lines on what was projected for both.
    pub projected: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Analysis<'a> {
    pub reference: &'a DeviceSpec,
    pub systems: Vec<System<'a>>,
    pub serve: Vec<ServeRun>,
    /// Perplexities measured alone (`candor perplexity`), beside those of the runs.
    pub perplexities: Vec<PerplexityDoc>,
    pub projections: Vec<ModelProjection<'a>>,
    pub claims: Vec<ClaimVerdict<'a>>,
    pub inputs: Vec<String>,
}

fn system_label(run: &LocalRun) -> String {
    match (run.is_cpu, run.threads) {
        (true, Some(t)) => format!("{} ({} threads)", run.device_name, t),
        _ => format!("{} ({})", run.device_name, run.backend),
    }
}

fn workload(run: &LocalRun) -> Option<Workload> {
    let p = run.model.parameters? as f64;
    Some(Workload::of_model(
        run.model.size_bytes as f64,
        p,
        run.model.experts,
    ))
}

/// Bytes one token of test `t` reads: for decode the weights (shared by the batch) and each
/// sequence's mean KV read when the result records the cache's shape (else the weights only);
/// for prefill the weights once per chunk.
fn bytes_per_token(w: &Workload, kv: Option<&KvShape>, t: &TestRow) -> f64 {
    match t.phase {
        Phase::Prefill => {
            let chunk = t.n.min(t.ubatch);
            roofline::prefill_bytes_per_token(w.weight_bytes_read(chunk), chunk)
        }
        Phase::Decode => {
            let kv_bytes = kv.map_or(0.0, |k| k.decode_bytes_per_sequence(t.depth, t.n));
            roofline::decode_bytes_per_token(w.weight_bytes_read(t.batch), kv_bytes, t.batch)
        }
    }
}

fn analyze_run(
    run: LocalRun,
    bw_gbs: Option<f64>,
    peak: impl Fn(Dtype) -> Option<f64>,
) -> AnalyzedRun {
    let dtype = compute_dtype(run.model.quantization.as_deref());
    let mut analyzed = AnalyzedRun {
        prefill_dtype: prefill_dtype(dtype, &run.isa),
        dtype,
        workload: workload(&run),
        rows: Vec::new(),
        run,
    };
    let w = analyzed.workload;
    let run = &analyzed.run;
    let rows = run
        .tests
        .iter()
        .map(|t| {
            let (mbu, mfu, intensity, achieved) = match &w {
                Some(w) => {
                    let bytes = bytes_per_token(w, run.kv.as_ref(), t);
                    let peak = peak(test_dtype(&analyzed, t));
                    (
                        bw_gbs.map(|bw| roofline::mbu(t.tok_s_mean, bytes, bw * 1e9)),
                        peak.map(|p| roofline::mfu(t.tok_s_mean, w.flops_per_token, p)),
                        roofline::intensity(w.flops_per_token, bytes),
                        t.tok_s_mean * w.flops_per_token,
                    )
                }
                None => (None, None, f64::NAN, f64::NAN),
            };
            Row {
                test: t.clone(),
                mbu,
                mfu,
                intensity,
                achieved_flops: achieved,
                vs_reference: None,
            }
        })
        .collect();
    analyzed.rows = rows;
    analyzed
}

fn group_systems<'a>(specs: &'a SpecDb, runs: Vec<LocalRun>) -> Vec<System<'a>> {
    let mut systems: Vec<System> = Vec::new();
    for run in &runs {
        let label = system_label(run);
        let siblings = || runs.iter().filter(|r| r.device_name == run.device_name);
        // llama-bench records no ISA flags: a CPU takes the spec a sibling run (same machine
        // label) identified from its flags.
        let spec = if run.is_cpu && run.isa.is_empty() {
            siblings()
                .filter(|r| !r.isa.is_empty())
                .find_map(|r| specs.identify(true, &r.device_name, &r.isa))
                .or_else(|| specs.identify(true, &run.device_name, &run.isa))
        } else {
            specs.identify(run.is_cpu, &run.device_name, &run.isa)
        };
        // One bandwidth roof per machine: the spec sheet's, else the best of the probes candor
        // bench ran there (a probe is noisy on a shared machine; its best pass is the closest to
        // what the memory can do): the host's STREAM-like triad for a CPU, the device copy for
        // an accelerator (never the host's: the weights live in device memory).
        let (probe_kind, probe_of): (&str, fn(&LocalRun) -> Option<f64>) = if run.is_cpu {
            ("STREAM-like", |r| r.host_bandwidth_gbs)
        } else {
            ("device copy", |r| r.device_bandwidth_gbs)
        };
        let probes: Vec<(f64, &str)> = siblings()
            .filter_map(|r| probe_of(r).map(|b| (b, r.file.as_str())))
            .collect();
        let best = probes.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0));
        let (bandwidth_gbs, bandwidth_note) = match (spec.and_then(|s| s.bandwidth_gbs), best) {
            (Some(bw), _) => (Some(bw), "spec database".to_string()),
            (None, Some((bw, file))) => {
                let all: Vec<String> = probes.iter().map(|p| format!("{:.1}", p.0)).collect();
                (
                    Some(bw),
                    format!(
                        "best {probe_kind} probe, from {file}; probes: {} GB/s",
                        all.join(", ")
                    ),
                )
            }
            (None, None) => (None, "unknown: no probe and no spec".to_string()),
        };
        let peak = |d: Dtype| {
            spec.and_then(|s| s.peak_tflops(d, run.threads))
                .map(|t| t * 1e12)
        };
        let analyzed = analyze_run(run.clone(), bandwidth_gbs, peak);
        match systems.iter_mut().find(|s| s.label == label) {
            Some(s) => {
                // The machine's most specific entry (its runs may list fewer flags: AMX
                // turned off, or llama-bench's none) names its roofs.
                let specificity = |d: Option<&DeviceSpec>| d.map_or(0, |d| d.requires_isa.len());
                if specificity(spec) > specificity(s.spec) {
                    s.spec = spec;
                }
                s.runs.push(analyzed)
            }
            None => systems.push(System {
                label,
                spec,
                threads: run.threads,
                bandwidth_gbs,
                bandwidth_note,
                runs: vec![analyzed],
            }),
        }
    }
    systems
}

fn project_model<'a>(
    basis_system: &System,
    basis: &AnalyzedRun,
    targets: &[&'a DeviceSpec],
) -> Option<ModelProjection<'a>> {
    let w = basis.workload?;
    let mfu_cap = basis
        .rows
        .iter()
        .find(|r| r.test.phase == Phase::Prefill)
        .and_then(|r| r.mfu);
    // The bandwidth efficiency batch-1 decode reached: prefill at short prompts can be
    // bandwidth-bound on accelerators with a high ridge, so it caps prefill too.
    let mbu_decode = basis
        .rows
        .iter()
        .find(|r| r.test.phase == Phase::Decode && r.test.batch == 1)
        .and_then(|r| r.mbu);
    let tests: Vec<(TestRow, Option<f64>)> = basis
        .rows
        .iter()
        .map(|r| {
            let e = match r.test.phase {
                Phase::Prefill => r.mfu,
                Phase::Decode => r.mbu,
            };
            (r.test.clone(), e)
        })
        .collect();
    let devices = targets
        .iter()
        .map(|&d| {
            let target = Target {
                bandwidth_bytes_s: d.bandwidth_gbs.map(|b| b * 1e9),
                // The prefill MFU carried over (and capping decode) is of the prefill dtype.
                peak_flops: d.peak_tflops(basis.prefill_dtype, None).map(|t| t * 1e12),
                memory_bytes: d.memory_gb.map(|m| m * 1e9),
            };
            let ps = tests
                .iter()
                .map(|(t, e)| match (t.phase, e) {
                    (_, None) => Projection::NoRoof("a measured efficiency"),
                    (Phase::Prefill, Some(mfu)) => {
                        let chunk = t.n.min(t.ubatch);
                        projection::prefill(&w, chunk, *mfu, mbu_decode, &target)
                    }
                    (Phase::Decode, Some(mbu)) => {
                        let bytes = bytes_per_token(&w, basis.run.kv.as_ref(), t);
                        projection::decode(&w, bytes, *mbu, mfu_cap, &target)
                    }
                })
                .collect();
            (d, ps)
        })
        .collect();
    Some(ModelProjection {
        model: basis.run.model.key.clone(),
        basis_system: basis_system.label.clone(),
        basis_file: basis.run.file.clone(),
        dtype: basis.prefill_dtype,
        tests,
        mfu_cap,
        mbu_decode,
        devices,
    })
}

/// Pick, per model, the run projections start from: candor's own first, else any.
fn projection_bases<'s, 'a>(systems: &'s [System<'a>]) -> Vec<(&'s System<'a>, &'s AnalyzedRun)> {
    let mut models: Vec<&str> = Vec::new();
    for s in systems {
        for r in &s.runs {
            if !models.contains(&r.run.model.key.as_str()) {
                models.push(&r.run.model.key);
            }
        }
    }
    models
        .iter()
        .filter_map(|m| {
            let all = systems
                .iter()
                .flat_map(|s| s.runs.iter().map(move |r| (s, r)))
                .filter(|(_, r)| r.run.model.key == *m && r.workload.is_some());
            let mut all: Vec<_> = all.collect();
            all.sort_by_key(|(_, r)| !r.run.software.starts_with("candor"));
            all.into_iter().next()
        })
        .collect()
}

fn reference_value(
    systems: &[System],
    projections: &[ModelProjection],
    reference: &DeviceSpec,
    run: &LocalRun,
    test: &str,
) -> Option<(f64, bool)> {
    let measured = systems
        .iter()
        .filter(|s| s.spec.is_some_and(|d| d.id == reference.id))
        .flat_map(|s| &s.runs)
        .filter(|r| r.run.model.key == run.model.key)
        .flat_map(|r| &r.rows)
        .find(|r| r.test.test == test);
    if let Some(r) = measured {
        return Some((r.test.tok_s_mean, false));
    }
    projections
        .iter()
        .find(|p| p.model == run.model.key)
        .and_then(|p| p.value(&reference.id, test))
        .map(|v| (v, true))
}

fn fmt_ratio(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

fn claim_verdict<'a>(
    claim: &'a Claim,
    specs: &'a SpecDb,
    systems: &[System],
    projections: &[ModelProjection],
) -> Option<ClaimVerdict<'a>> {
    let subject = specs.find(&claim.subject)?;
    let baseline = specs.find(&claim.baseline)?;
    let regimes = Regime::ALL
        .iter()
        .map(|&r| {
            let ratio = claims::roof_ratio(r, subject, baseline);
            let j = claims::judge(claim.claimed_ratio, ratio.ratio);
            (r, ratio, j)
        })
        .collect();
    let mut measured: Vec<String> = systems
        .iter()
        .filter(|s| {
            s.spec
                .is_some_and(|d| d.id == subject.id || d.id == baseline.id)
        })
        .map(|s| {
            let tests: Vec<String> = s
                .runs
                .iter()
                .flat_map(|r| r.rows.iter().map(move |row| (r, row)))
                .map(|(r, row)| {
                    format!(
                        "{} {} {:.1} tok/s",
                        r.run.model.key, row.test.test, row.test.tok_s_mean
                    )
                })
                .collect();
            format!("{}: {}", s.label, tests.join("; "))
        })
        .collect();
    if measured.is_empty() {
        measured.push(format!(
            "Nothing: no result in this report ran on the {} or the {}. Measure both with the same model file and `candor bench` (the {} through a plugin built on its SDK) to turn the projections below into measurements.",
            subject.name, baseline.name, subject.name
        ));
    }
    let projected = projections
        .iter()
        .flat_map(|p| {
            p.tests.iter().filter_map(move |(t, _)| {
                let s = p.value(&subject.id, &t.test)?;
                let b = p.value(&baseline.id, &t.test)?;
                Some(format!(
                    "{} {}: {} {:.0} tok/s vs {} {:.0} tok/s = {} (both at the efficiency measured on {})",
                    p.model,
                    t.test,
                    subject.id,
                    s,
                    baseline.id,
                    b,
                    fmt_ratio(s / b),
                    p.basis_system
                ))
            })
        })
        .collect();
    Some(ClaimVerdict {
        claim,
        subject,
        baseline,
        regimes,
        best_precision: claims::best_precision_ratio(subject, baseline),
        measured,
        projected,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("--reference `{0}` is not in the spec database (use an id or alias from its table)")]
    UnknownReference(String),
    #[error("claim `{claim}` names `{device}`, which is not in the spec database")]
    UnknownClaimDevice { claim: String, device: String },
}

pub fn analyze<'a>(
    specs: &'a SpecDb,
    claims_db: &'a ClaimsDb,
    reference: &str,
    inputs: Vec<(String, Input)>,
) -> Result<Analysis<'a>, AnalysisError> {
    let reference = specs
        .find(reference)
        .ok_or_else(|| AnalysisError::UnknownReference(reference.to_string()))?;
    for c in &claims_db.claims {
        for d in [&c.subject, &c.baseline] {
            if specs.find(d).is_none() {
                return Err(AnalysisError::UnknownClaimDevice {
                    claim: c.id.clone(),
                    device: d.clone(),
                });
            }
        }
    }
    let names = inputs.iter().map(|(n, _)| n.clone()).collect();
    let mut local = Vec::new();
    let mut serve = Vec::new();
    let mut perplexities = Vec::new();
    for (_, i) in inputs {
        match i {
            Input::Local(r) => local.push(r),
            Input::Serve(s) => serve.push(s),
            Input::Perplexity(p) => perplexities.push(p),
        }
    }
    let mut systems = group_systems(specs, local);
    let measured_ids: Vec<&str> = systems
        .iter()
        .filter_map(|s| s.spec.map(|d| d.id.as_str()))
        .collect();
    let targets: Vec<&DeviceSpec> = specs
        .devices
        .iter()
        .filter(|d| d.kind != Kind::Cpu && !measured_ids.contains(&d.id.as_str()))
        .collect();
    let projections: Vec<ModelProjection> = projection_bases(&systems)
        .into_iter()
        .filter_map(|(s, r)| project_model(s, r, &targets))
        .collect();
    // Reference values are looked up in a snapshot while the rows are filled in.
    let snapshot = systems.clone();
    for s in systems.iter_mut() {
        for r in s.runs.iter_mut() {
            for row in r.rows.iter_mut() {
                let v = reference_value(&snapshot, &projections, reference, &r.run, &row.test.test);
                row.vs_reference = v.map(|(value, projected)| RefRatio {
                    ratio: row.test.tok_s_mean / value,
                    projected,
                });
            }
        }
    }
    let claims = claims_db
        .claims
        .iter()
        .filter_map(|c| claim_verdict(c, specs, &systems, &projections))
        .collect();
    Ok(Analysis {
        reference,
        systems,
        serve,
        perplexities,
        projections,
        claims,
        inputs: names,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::input::ModelRef;

    pub(crate) fn cpu_run(software: &str, tests: Vec<TestRow>) -> LocalRun {
        LocalRun {
            file: format!("{software}.json"),
            software: software.into(),
            date: None,
            model: ModelRef {
                key: "m".into(),
                quantization: Some("Q4_K_M".into()),
                parameters: Some(500_000_000),
                size_bytes: 400_000_000,
                experts: None,
            },
            backend: "cpu".into(),
            device_name: "AMD EPYC".into(),
            is_cpu: true,
            threads: Some(2),
            isa: vec!["avx2".into(), "avx512f".into()],
            host_bandwidth_gbs: Some(40.0),
            device_bandwidth_gbs: None,
            accelerator: None,
            kv: None,
            tests,
            op_profile: Vec::new(),
            perplexity: None,
        }
    }

    pub(crate) fn row(test: &str, phase: Phase, n: usize, tok_s: f64) -> TestRow {
        TestRow {
            test: test.into(),
            phase,
            n,
            batch: 1,
            depth: 0,
            ubatch: 512,
            tok_s_mean: tok_s,
            tok_s_sd: 0.0,
            repetitions: 3,
        }
    }

    /// A mixture of experts' decode reads the experts its tokens chose: at batch 1 the active
    /// share of the weights, more at batch 8; its FLOPs count the active parameters.
    #[test]
    fn mixtures_of_experts_count_the_experts_their_tokens_ran() {
        let experts = crate::bench::experts::ExpertShape {
            experts: 64,
            per_token: 4,
            layers: 10,
            parameters_per_expert: 1_000_000,
        };
        let (total, bytes) = (1.0e9, 5.0e8);
        let w = Workload::of_model(bytes, total, Some(experts));
        // 10 layers × 60 skipped experts × 1M parameters: 0.6 of the model unread at batch 1.
        assert!((w.flops_per_token - 2.0 * 0.4e9).abs() < 1.0);
        let tg = row("tg128", Phase::Decode, 128, 10.0);
        assert!((bytes_per_token(&w, None, &tg) - 0.4 * bytes).abs() < 1.0);
        let batch8 = TestRow { batch: 8, ..tg };
        assert!(bytes_per_token(&w, None, &batch8) * 8.0 > 0.4 * bytes);
        let dense = Workload::of_model(bytes, total, None);
        assert_eq!(
            bytes_per_token(&dense, None, &row("tg128", Phase::Decode, 128, 10.0)),
            bytes
        );
    }

    /// A Xeon run whose flags list amx-bf16 (candor's AMX prefill kernels ran): its long
    /// prefills are measured against the AMX bf16 peak, a short one and decode against int8;
    /// the same machine's run without AMX (and llama-bench's, without flags) against int8, and
    /// the machine's roofs are named by the AMX entry.
    #[test]
    fn amx_prefills_run_on_the_bf16_tile_roof() {
        let specs = SpecDb::builtin().unwrap();
        let claims = ClaimsDb::builtin().unwrap();
        let xeon = |software: &str, isa: &[&str]| {
            let mut r = cpu_run(
                software,
                vec![
                    row("pp512", Phase::Prefill, 512, 100.0),
                    row("pp16", Phase::Prefill, 16, 100.0),
                    row("tg64", Phase::Decode, 64, 50.0),
                ],
            );
            r.device_name = "Intel(R) Xeon(R) Processor".into();
            r.isa = isa.iter().map(|s| s.to_string()).collect();
            r
        };
        let runs = vec![
            (
                "a".into(),
                Input::Local(xeon("candor no-amx", &["avx2", "avx512f"])),
            ),
            (
                "b".into(),
                Input::Local(xeon("candor amx", &["avx2", "avx512f", "amx-bf16"])),
            ),
            ("c".into(), Input::Local(xeon("llama.cpp x", &[]))),
        ];
        let a = analyze(&specs, &claims, "h100", runs).unwrap();
        let sys = &a.systems[0];
        assert_eq!(sys.spec.unwrap().id, "cpu-xeon-amx");
        // 100 tok/s × 1 GFLOP: int8 1.28 TOPS, AMX bf16 5.12 TFLOPS (2 threads, 2.5 GHz).
        let (int8, bf16) = (1e11 / 1.28e12, 1e11 / 5.12e12);
        for r in &sys.runs {
            let amx = lists_amx(&r.run.isa);
            let mfu = |i: usize| r.rows[i].mfu.unwrap();
            let want = if amx { bf16 } else { int8 };
            assert!(
                (mfu(0) - want).abs() < 1e-12,
                "{}: {}",
                r.run.software,
                mfu(0)
            );
            assert!(
                (mfu(1) - int8).abs() < 1e-12,
                "{}: {}",
                r.run.software,
                mfu(1)
            );
            assert_eq!(r.prefill_dtype, if amx { Dtype::Bf16 } else { Dtype::Int8 });
        }
    }

    #[test]
    fn efficiency_projection_and_reference_ratio_follow_the_roofs() {
        let specs = SpecDb::builtin().unwrap();
        let claims = ClaimsDb::builtin().unwrap();
        let run = cpu_run(
            "candor abc",
            vec![
                row("pp128", Phase::Prefill, 128, 100.0),
                row("tg64", Phase::Decode, 64, 50.0),
            ],
        );
        let a = analyze(
            &specs,
            &claims,
            "h100",
            vec![("c".into(), Input::Local(run))],
        )
        .unwrap();
        let sys = &a.systems[0];
        assert_eq!(sys.spec.unwrap().id, "cpu-epyc-zen4");
        let tg = &sys.runs[0].rows[1];
        // 50 tok/s × 0.4 GB over 40 GB/s.
        assert!((tg.mbu.unwrap() - 0.5).abs() < 1e-12);
        let pp = &sys.runs[0].rows[0];
        // 100 tok/s × 1 GFLOP over 0.768 TOPS (int8, 2 threads at the assumed clock).
        assert!((pp.mfu.unwrap() - 1e11 / 0.768e12).abs() < 1e-12);
        // H100 decode projection: 0.5 × 3350 GB/s / 0.4 GB.
        let p = &a.projections[0];
        let h = p.value("h100-sxm", "tg64").unwrap();
        assert!((h - 0.5 * 3350e9 / 0.4e9).abs() < 1e-6, "{h}");
        let r = tg.vs_reference.unwrap();
        assert!(r.projected);
        assert!((r.ratio - 50.0 / h).abs() < 1e-12);
        // The CPU itself is measured, so it is not projected.
        assert!(p.devices.iter().all(|(d, _)| d.kind != Kind::Cpu));
        // Claims: projections for 910C vs H100 at equal efficiency equal the bandwidth ratio.
        let c = &a.claims[0];
        assert!(
            c.projected
                .iter()
                .any(|l| l.contains("tg64") && l.contains("96%")),
            "{:?}",
            c.projected
        );
        assert!(c.measured[0].starts_with("Nothing"));
    }

    #[test]
    fn llama_bench_runs_borrow_the_probe_of_their_machine() {
        let specs = SpecDb::builtin().unwrap();
        let claims = ClaimsDb::builtin().unwrap();
        let candor = cpu_run("candor abc", vec![row("tg64", Phase::Decode, 64, 50.0)]);
        let mut llama = cpu_run("llama.cpp def", vec![row("tg64", Phase::Decode, 64, 60.0)]);
        llama.isa.clear();
        llama.host_bandwidth_gbs = None;
        let a = analyze(
            &specs,
            &claims,
            "h100",
            vec![
                ("a".into(), Input::Local(candor)),
                ("b".into(), Input::Local(llama)),
            ],
        )
        .unwrap();
        assert_eq!(a.systems.len(), 1);
        let runs = &a.systems[0].runs;
        assert!((runs[1].rows[0].mbu.unwrap() - 0.6).abs() < 1e-12);
        // Projections start from candor's run.
        assert_eq!(a.projections[0].basis_file, "candor abc.json");
        assert!(analyze(&specs, &claims, "nope", vec![]).is_err());
    }

    #[test]
    fn decode_mbu_counts_the_kv_cache_when_the_result_records_it() {
        let specs = SpecDb::builtin().unwrap();
        let claims = ClaimsDb::builtin().unwrap();
        let mut deep = row("tg128", Phase::Decode, 128, 50.0);
        deep.depth = 4096;
        let mut with_kv = cpu_run("candor abc", vec![deep.clone()]);
        let kv = KvShape {
            layers: 24,
            kv_heads: 2,
            head_dim: 64,
            element_bytes: 4.0,
            layer_windows: Vec::new(),
        };
        with_kv.kv = Some(kv.clone());
        let without = cpu_run("candor old", vec![deep]);
        let a = analyze(
            &specs,
            &claims,
            "h100",
            vec![
                ("a".into(), Input::Local(with_kv)),
                ("b".into(), Input::Local(without)),
            ],
        )
        .unwrap();
        let runs = &a.systems[0].runs;
        // 4096 + 64.5 positions × 24 layers × 1 KiB = 102.3 MB on top of 0.4 GB of weights.
        let kv_bytes = (4096.0 + 64.5) * 24.0 * 1024.0;
        let mbu = runs[0].rows[0].mbu.unwrap();
        assert!(
            (mbu - 50.0 * (0.4e9 + kv_bytes) / 40e9).abs() < 1e-12,
            "{mbu}"
        );
        // The old result falls back to the weights.
        assert!((runs[1].rows[0].mbu.unwrap() - 0.5).abs() < 1e-12);
        // The projection divides by the same bytes the MBU was measured with.
        let h = a.projections[0].value("h100-sxm", "tg128").unwrap();
        assert!((h - mbu * 3350e9 / (0.4e9 + kv_bytes)).abs() < 1e-6, "{h}");
    }

    #[test]
    fn an_unlisted_gpu_takes_its_device_copy_probe_as_roof_never_the_hosts() {
        let specs = SpecDb::builtin().unwrap();
        let claims = ClaimsDb::builtin().unwrap();
        let mut gpu = cpu_run("candor abc", vec![row("tg64", Phase::Decode, 64, 500.0)]);
        gpu.backend = "cuda".into();
        gpu.device_name = "Imaginary GPU 9000".into();
        gpu.is_cpu = false;
        gpu.threads = None;
        gpu.device_bandwidth_gbs = Some(800.0);
        let a = analyze(
            &specs,
            &claims,
            "h100",
            vec![("g".into(), Input::Local(gpu.clone()))],
        )
        .unwrap();
        let s = &a.systems[0];
        assert!(s.spec.is_none());
        assert_eq!(s.bandwidth_gbs, Some(800.0));
        assert!(
            s.bandwidth_note.contains("device copy"),
            "{}",
            s.bandwidth_note
        );
        // 500 tok/s × 0.4 GB over 800 GB/s.
        assert!((s.runs[0].rows[0].mbu.unwrap() - 0.25).abs() < 1e-12);
        gpu.device_bandwidth_gbs = None;
        let a = analyze(
            &specs,
            &claims,
            "h100",
            vec![("g".into(), Input::Local(gpu))],
        )
        .unwrap();
        assert_eq!(a.systems[0].bandwidth_gbs, None);
    }

    #[test]
    fn quantized_weights_run_on_the_int8_roof() {
        assert_eq!(compute_dtype(Some("Q4_K_M")), Dtype::Int8);
        assert_eq!(compute_dtype(Some("IQ4_XS")), Dtype::Int8);
        assert_eq!(compute_dtype(Some("BF16")), Dtype::Bf16);
        assert_eq!(compute_dtype(Some("F16")), Dtype::Fp16);
        assert_eq!(compute_dtype(None), Dtype::Fp32);
    }
}
