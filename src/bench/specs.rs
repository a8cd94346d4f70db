//! The hardware spec database: peak dense TFLOPS per dtype, memory bandwidth and size, TDP and
//! interconnect of the devices reports compare, every number with its source. The default
//! database (src/bench/data/hardware.toml) is compiled in so the binary is self-contained;
//! `--specs FILE` replaces it.
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

const BUILTIN: &str = include_str!("data/hardware.toml");

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("cannot read the spec database {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("spec database {origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("spec database {origin}, device `{device}`: {problem}")]
    Invalid {
        origin: String,
        device: String,
        problem: String,
    },
}

/// Number formats a peak is quoted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dtype {
    Fp32,
    Bf16,
    Fp16,
    Fp8,
    Int8,
}

impl Dtype {
    pub const ALL: [Dtype; 5] = [
        Dtype::Fp32,
        Dtype::Bf16,
        Dtype::Fp16,
        Dtype::Fp8,
        Dtype::Int8,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Bf16 => "bf16",
            Dtype::Fp16 => "fp16",
            Dtype::Fp8 => "fp8",
            Dtype::Int8 => "int8",
        }
    }

    /// The unit of a peak in this format (integer formats count operations, not FLOPs).
    pub fn unit(self) -> &'static str {
        match self {
            Dtype::Int8 => "TOPS",
            _ => "TFLOPS",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Peaks per dtype (whole device: TFLOPS; per core: FLOP per cycle).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerDtype {
    pub fp32: Option<f64>,
    pub bf16: Option<f64>,
    pub fp16: Option<f64>,
    pub fp8: Option<f64>,
    pub int8: Option<f64>,
}

impl PerDtype {
    pub fn get(&self, d: Dtype) -> Option<f64> {
        match d {
            Dtype::Fp32 => self.fp32,
            Dtype::Bf16 => self.bf16,
            Dtype::Fp16 => self.fp16,
            Dtype::Fp8 => self.fp8,
            Dtype::Int8 => self.int8,
        }
    }
}

/// A CPU's peak: FLOP per cycle per core at an assumed clock, times the threads a run used.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerCore {
    pub assumed_clock_ghz: f64,
    pub flop_per_cycle: PerDtype,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Gpu,
    Npu,
    Cpu,
}

/// Why a device has no number for a field.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// The hardware has no such path (e.g. FP8 on an A100).
    Unsupported,
    /// The vendor never published it; no number is invented.
    Unpublished,
    /// Taken from the result document (a CPU's measured bandwidth).
    Measured,
    NotApplicable,
}

impl Missing {
    pub fn label(self) -> &'static str {
        match self {
            Missing::Unsupported => "no hw",
            Missing::Unpublished => "unpublished",
            Missing::Measured => "measured",
            Missing::NotApplicable => "n/a",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Vendor,
    Press,
    Estimate,
    Derived,
}

impl Confidence {
    pub fn label(self) -> &'static str {
        match self {
            Confidence::Vendor => "vendor",
            Confidence::Press => "press",
            Confidence::Estimate => "estimate",
            Confidence::Derived => "derived",
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The fields this source gives.
    pub fields: Vec<String>,
    pub title: String,
    pub url: Option<String>,
    pub date: String,
    pub confidence: Confidence,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub kind: Kind,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default, rename = "match")]
    pub matches: Vec<String>,
    #[serde(default)]
    pub requires_isa: Vec<String>,
    pub released: Option<String>,
    pub memory_gb: Option<f64>,
    pub memory_type: Option<String>,
    pub bandwidth_gbs: Option<f64>,
    pub tdp_w: Option<f64>,
    pub interconnect: Option<String>,
    /// Compute dies in the package (a "chip" of two dies compares differently per die).
    pub dies: Option<u32>,
    #[serde(default)]
    pub tflops: PerDtype,
    pub per_core: Option<PerCore>,
    #[serde(default)]
    pub missing: BTreeMap<String, Missing>,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

/// The fields every device must either give (with a source) or list in `missing`.
const CORE_FIELDS: [&str; 8] = [
    "fp32",
    "bf16",
    "fp16",
    "fp8",
    "int8",
    "memory_gb",
    "bandwidth_gbs",
    "tdp_w",
];

impl DeviceSpec {
    /// Peak in 1e12 operations/s at `dtype`; CPUs scale their per-core peak by `threads`.
    pub fn peak_tflops(&self, dtype: Dtype, threads: Option<usize>) -> Option<f64> {
        match &self.per_core {
            Some(pc) => {
                let per_cycle = pc.flop_per_cycle.get(dtype)?;
                Some(per_cycle * pc.assumed_clock_ghz * 1e9 * threads.unwrap_or(1) as f64 / 1e12)
            }
            None => self.tflops.get(dtype),
        }
    }

    /// Why `field` has no value, when the database says.
    pub fn missing(&self, field: &str) -> Option<Missing> {
        self.missing.get(field).copied()
    }

    fn has(&self, field: &str) -> bool {
        let dtype = Dtype::ALL.iter().find(|d| d.key() == field);
        match field {
            "memory_gb" => self.memory_gb.is_some(),
            "bandwidth_gbs" => self.bandwidth_gbs.is_some(),
            "tdp_w" => self.tdp_w.is_some(),
            "interconnect" => self.interconnect.is_some(),
            "dies" => self.dies.is_some(),
            _ => dtype.is_some_and(|&d| self.peak_tflops(d, Some(1)).is_some()),
        }
    }

    /// The source of `field`, if any.
    pub fn source_of(&self, field: &str) -> Option<&Source> {
        self.sources
            .iter()
            .find(|s| s.fields.iter().any(|f| f == field))
    }

    /// Does a result measured on `device_name` (with `isa` flags) run on this device?
    pub fn matches_name(&self, device_name: &str, isa: &[String]) -> bool {
        let name = device_name.to_lowercase();
        self.matches
            .iter()
            .any(|m| name.contains(&m.to_lowercase()))
            && self
                .requires_isa
                .iter()
                .all(|f| isa.iter().any(|i| i.eq_ignore_ascii_case(f)))
    }

    fn validate(&self) -> Result<(), String> {
        let numbers = [
            self.memory_gb,
            self.bandwidth_gbs,
            self.tdp_w,
            self.tflops.fp32,
            self.tflops.bf16,
            self.tflops.fp16,
            self.tflops.fp8,
            self.tflops.int8,
        ];
        if numbers
            .iter()
            .flatten()
            .any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err("every number must be finite and above 0".into());
        }
        if self.per_core.is_some() && self.tflops != PerDtype::default() {
            return Err("give either `tflops` or `per_core`, not both".into());
        }
        if let Some(pc) = &self.per_core {
            if !(pc.assumed_clock_ghz.is_finite() && pc.assumed_clock_ghz > 0.0) {
                return Err("per_core.assumed_clock_ghz must be above 0".into());
            }
        }
        if self.sources.is_empty() {
            return Err("no source".into());
        }
        for s in &self.sources {
            if s.title.trim().is_empty() || s.date.trim().is_empty() {
                return Err("every source needs a title and a date".into());
            }
        }
        for field in CORE_FIELDS.iter().chain(&["interconnect", "dies"]) {
            let given = self.has(field);
            let missing = self.missing.contains_key(*field);
            if given && missing {
                return Err(format!("`{field}` is both given and listed as missing"));
            }
            if given && self.source_of(field).is_none() {
                return Err(format!("`{field}` has no source naming it"));
            }
            if !given && !missing && CORE_FIELDS.contains(field) {
                return Err(format!(
                    "`{field}` is neither given nor listed in `missing` (say why it is absent)"
                ));
            }
        }
        if let Some(bad) = self
            .missing
            .keys()
            .find(|k| !CORE_FIELDS.contains(&k.as_str()))
        {
            return Err(format!("`missing` names an unknown field `{bad}`"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecDb {
    #[serde(rename = "device")]
    pub devices: Vec<DeviceSpec>,
}

impl SpecDb {
    /// The database compiled into candor.
    pub fn builtin() -> Result<SpecDb, SpecError> {
        SpecDb::parse(BUILTIN, "(built in)")
    }

    pub fn from_file(path: &std::path::Path) -> Result<SpecDb, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SpecDb::parse(&text, &path.display().to_string())
    }

    /// Parse and check: unique ids and aliases, every number sourced, every gap explained.
    pub fn parse(text: &str, origin: &str) -> Result<SpecDb, SpecError> {
        let db: SpecDb = toml::from_str(text).map_err(|e| SpecError::Parse {
            origin: origin.to_string(),
            source: Box::new(e),
        })?;
        let invalid = |device: &str, problem: String| SpecError::Invalid {
            origin: origin.to_string(),
            device: device.to_string(),
            problem,
        };
        let mut names = std::collections::HashSet::new();
        for d in &db.devices {
            d.validate().map_err(|p| invalid(&d.id, p))?;
            for n in std::iter::once(&d.id).chain(&d.aliases) {
                if !names.insert(n.to_lowercase()) {
                    return Err(invalid(&d.id, format!("id or alias `{n}` is used twice")));
                }
            }
        }
        Ok(db)
    }

    /// A device by id or alias, case-insensitive.
    pub fn find(&self, name: &str) -> Option<&DeviceSpec> {
        self.devices.iter().find(|d| {
            d.id.eq_ignore_ascii_case(name)
                || d.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    /// The device a result ran on: accelerators by device name, CPUs by CPU model and ISA.
    pub fn identify(&self, cpu: bool, device_name: &str, isa: &[String]) -> Option<&DeviceSpec> {
        self.devices
            .iter()
            .filter(|d| (d.kind == Kind::Cpu) == cpu)
            .find(|d| d.matches_name(device_name, isa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isa(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builtin_database_is_complete_and_sourced() {
        let db = SpecDb::builtin().unwrap();
        for id in [
            "h100-sxm",
            "h100-pcie",
            "h200",
            "h20",
            "a100-sxm",
            "l40s",
            "rtx-4090",
            "mi300x",
            "ascend-910b",
            "ascend-910c",
            "mlu590",
            "br100",
            "br104",
            "mtt-s4000",
            "cpu-epyc-zen4",
        ] {
            assert!(db.find(id).is_some(), "{id} missing");
        }
        let h100 = db.find("h100").unwrap();
        assert_eq!(h100.id, "h100-sxm");
        // Dense, not the datasheet's sparse 1979.
        assert_eq!(h100.peak_tflops(Dtype::Bf16, None), Some(989.5));
        assert_eq!(
            db.find("a100").unwrap().missing("fp8"),
            Some(Missing::Unsupported)
        );
        assert_eq!(
            db.find("mlu590").unwrap().missing("bandwidth_gbs"),
            Some(Missing::Unpublished)
        );
    }

    #[test]
    fn cpu_peak_scales_with_threads_and_results_find_their_device() {
        let db = SpecDb::builtin().unwrap();
        let epyc = db
            .identify(true, "AMD EPYC", &isa(&["avx2", "fma", "avx512f"]))
            .unwrap();
        assert_eq!(epyc.id, "cpu-epyc-zen4");
        // 128 int8 ops/cycle x 3 GHz x 2 threads.
        let p = epyc.peak_tflops(Dtype::Int8, Some(2)).unwrap();
        assert!((p - 0.768).abs() < 1e-12, "{p}");
        assert_eq!(
            db.identify(true, "AMD EPYC 7B12", &isa(&["avx2", "fma"]))
                .unwrap()
                .id,
            "cpu-x86-avx2"
        );
        assert_eq!(db.identify(true, "riscv", &[]).unwrap().id, "cpu-generic");
        assert_eq!(
            db.identify(false, "NVIDIA H100 80GB HBM3", &[]).unwrap().id,
            "h100-sxm"
        );
        // "H20" is a prefix of "H200": file order keeps each on its own entry.
        assert_eq!(db.identify(false, "NVIDIA H200", &[]).unwrap().id, "h200");
        assert_eq!(db.identify(false, "NVIDIA H20", &[]).unwrap().id, "h20");
        assert_eq!(
            db.identify(false, "NVIDIA H100 PCIe", &[]).unwrap().id,
            "h100-pcie"
        );
        assert!(db.identify(false, "Some new accelerator", &[]).is_none());
    }

    #[test]
    fn unsourced_or_unexplained_numbers_are_rejected() {
        let base = r#"
[[device]]
id = "x"
name = "X"
vendor = "V"
kind = "gpu"
memory_gb = 10
bandwidth_gbs = 100
tdp_w = 50
tflops = { fp32 = 1.0, bf16 = 2.0, fp16 = 2.0, int8 = 4.0 }
missing = { fp8 = "unsupported" }
[[device.source]]
fields = ["fp32", "bf16", "fp16", "int8", "memory_gb", "bandwidth_gbs", "tdp_w"]
title = "T"
date = "2024"
confidence = "vendor"
"#;
        assert!(SpecDb::parse(base, "t").is_ok());
        let unsourced = base.replace("\"tdp_w\"]", "]");
        let e = SpecDb::parse(&unsourced, "t").unwrap_err().to_string();
        assert!(e.contains("`tdp_w` has no source"), "{e}");
        let unexplained = base.replace("missing = { fp8 = \"unsupported\" }", "");
        let e = SpecDb::parse(&unexplained, "t").unwrap_err().to_string();
        assert!(e.contains("`fp8` is neither given nor listed"), "{e}");
        let negative = base.replace("tdp_w = 50", "tdp_w = -5");
        assert!(SpecDb::parse(&negative, "t").is_err());
        let twice = format!("{base}{base}");
        let e = SpecDb::parse(&twice, "t").unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
        assert!(SpecDb::parse("device = 3", "t").is_err());
    }
}
