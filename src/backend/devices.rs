//! The devices candor can run on, one row each, for `candor devices`. This is the one place
//! backends contribute rows: the CPU always; each device plugin given on the command line or in
//! `CANDOR_PLUGINS`; each CUDA GPU when built with CUDA (a CPU-only build shows one `cuda` row
//! saying how to build with it; a CUDA build with no usable driver says why).
use super::cpu::CpuBackend;
use super::plugin::Plugin;
use candor_models::backend::Backend;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceRow {
    /// `cpu`, `cuda:N`, `plugin:PATH`: what `--backend` takes to use it.
    pub backend: String,
    pub name: String,
    pub vendor: String,
    pub memory_total_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
    /// Weight storage types (or ISA features for the CPU).
    pub details: Vec<String>,
    /// None when usable; else why not (e.g. a plugin that fails its checks).
    pub error: Option<String>,
}

/// Plugin paths from `--plugin` flags, then from `CANDOR_PLUGINS` (colon-separated).
pub fn plugin_paths(flags: &[PathBuf], env: Option<&str>) -> Vec<PathBuf> {
    let mut paths = flags.to_vec();
    for p in env.unwrap_or("").split(':').filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

pub fn list_devices(threads: usize, plugins: &[PathBuf]) -> Vec<DeviceRow> {
    let mut rows = vec![cpu_row(threads)];
    rows.extend(cuda_rows());
    rows.extend(plugins.iter().map(|p| plugin_row(p)));
    rows
}

fn cuda_rows() -> Vec<DeviceRow> {
    match super::cuda::list_devices() {
        Ok(gpus) => gpus
            .into_iter()
            .map(|g| DeviceRow {
                backend: format!("cuda:{}", g.ordinal),
                name: g.name,
                vendor: "NVIDIA".into(),
                memory_total_bytes: Some(g.memory_total_bytes),
                memory_free_bytes: Some(g.memory_free_bytes),
                details: vec![
                    format!("sm_{}{}", g.compute_capability.0, g.compute_capability.1),
                    format!("{} SMs", g.multiprocessors),
                    format!("driver CUDA {}", g.driver_version),
                ],
                error: None,
            })
            .collect(),
        Err(e) => vec![DeviceRow {
            backend: "cuda".into(),
            name: String::new(),
            vendor: "NVIDIA".into(),
            memory_total_bytes: None,
            memory_free_bytes: None,
            details: Vec::new(),
            error: Some(e.to_string()),
        }],
    }
}

fn cpu_row(threads: usize) -> DeviceRow {
    let info = CpuBackend::new(threads).info();
    let (total, free) = crate::rss::host_memory();
    DeviceRow {
        backend: "cpu".into(),
        name: info.name,
        vendor: String::new(),
        memory_total_bytes: total,
        memory_free_bytes: free,
        details: info.features,
        error: None,
    }
}

fn plugin_row(path: &Path) -> DeviceRow {
    let backend = format!("plugin:{}", path.display());
    match Plugin::load(path) {
        Ok(p) => {
            let memory = p.memory();
            let details = p.features();
            DeviceRow {
                backend,
                name: p.name().to_string(),
                vendor: p.vendor().to_string(),
                memory_total_bytes: memory.map(|m| m.0),
                memory_free_bytes: memory.map(|m| m.1),
                details,
                error: None,
            }
        }
        Err(e) => DeviceRow {
            backend,
            name: String::new(),
            vendor: String::new(),
            memory_total_bytes: None,
            memory_free_bytes: None,
            details: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_paths_join_flags_and_env_without_repeats() {
        let flags = vec![PathBuf::from("/a.so")];
        assert_eq!(
            plugin_paths(&flags, Some("/b.so::/a.so:/c.so")),
            vec![
                PathBuf::from("/a.so"),
                PathBuf::from("/b.so"),
                PathBuf::from("/c.so")
            ]
        );
        assert_eq!(plugin_paths(&[], None), Vec::<PathBuf>::new());
    }

    #[test]
    fn the_cpu_is_always_listed_and_a_missing_plugin_is_an_error_row() {
        let rows = list_devices(1, &[PathBuf::from("/no/such/plugin.so")]);
        assert_eq!(rows[0].backend, "cpu");
        assert!(rows[0].error.is_none());
        // CPU-only builds list CUDA as a row that says how to get it.
        #[cfg(not(feature = "cuda"))]
        assert!(
            rows[1].backend == "cuda"
                && rows[1]
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("--features cuda"))
        );
        let plugin = rows
            .iter()
            .find(|r| r.backend.starts_with("plugin:"))
            .unwrap();
        let err = plugin.error.as_deref().unwrap_or("");
        assert!(err.contains("no such file"), "{err}");
    }
}
