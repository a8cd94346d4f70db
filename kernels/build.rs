//! Under feature `cuda`: compile every `cuda/*.cu` for each target architecture, to PTX with
//! nvcc and from that PTX to machine code (a cubin) with ptxas, and write
//! `$OUT_DIR/cuda_ptx.rs` embedding both (see `src/cuda_ptx.rs`). Without the feature this does
//! nothing, so the default build never needs a CUDA toolchain.
//!
//! Why both: a GPU of a compiled architecture (A100, H100/H200) loads the cubin as it is, with
//! nothing to compile at start-up (the driver's JIT takes seconds for the larger kernels);
//! the PTX runs on every newer GPU (the driver JIT-compiles it once) and is the fallback
//! should a cubin not load.
//!
//! nvcc: `$NVCC`, else `$CUDA_HOME/bin/nvcc`, else `nvcc` on PATH; ptxas: `$PTXAS`, else the one
//! beside nvcc, else `ptxas` on PATH. Jobs run in parallel, one per core.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Architectures compiled for: Ampere (A100, sm_80) and Hopper (H100/H200, sm_90). The backend
/// picks the cubin the device runs, else the highest PTX it supports (`cuda_ptx`).
const ARCHS: [u32; 2] = [80, 90];

/// `$VAR`, else `name` in `$CUDA_HOME/bin` (or beside `beside`), else `name` on PATH.
fn tool(var: &str, name: &str, beside: Option<&Path>) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("CUDA_HOME").or_else(|| std::env::var_os("CUDA_PATH")) {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Some(dir) = beside.and_then(Path::parent) {
        dirs.push(dir.to_path_buf());
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run(mut cmd: Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} ({e}): the `cuda` feature needs nvcc and ptxas \
             (see docs/cuda.md: shared/tools/cuda-toolchain.sh install)",
            cmd.get_program()
        )
    });
    assert!(status.success(), "{what} failed");
}

/// One source for one architecture: PTX, then the cubin from it.
struct Job {
    src: PathBuf,
    stem: String,
    arch: u32,
}

fn compile(job: &Job, out: &Path, nvcc: &Path, ptxas: &Path) {
    let (ptx, cubin) = outputs(job, out);
    let mut c = Command::new(nvcc);
    c.args(["--ptx", "-O3", "-std=c++17", "--expt-relaxed-constexpr"])
        .arg(format!("-arch=sm_{}", job.arch))
        .arg("-o")
        .arg(&ptx)
        .arg(&job.src);
    run(
        c,
        &format!("nvcc on {} for sm_{}", job.src.display(), job.arch),
    );
    let mut c = Command::new(ptxas);
    c.args(["-O3"])
        .arg(format!("-arch=sm_{}", job.arch))
        .arg("-o")
        .arg(&cubin)
        .arg(&ptx);
    run(
        c,
        &format!("ptxas on {} for sm_{}", ptx.display(), job.arch),
    );
}

/// One of a job's `outputs`.
type PickOutput = fn((PathBuf, PathBuf)) -> PathBuf;

/// A job's PTX and cubin files.
fn outputs(job: &Job, out: &Path) -> (PathBuf, PathBuf) {
    (
        out.join(format!("{}.sm{}.ptx", job.stem, job.arch)),
        out.join(format!("{}.sm{}.cubin", job.stem, job.arch)),
    )
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=cuda");
    for var in ["NVCC", "PTXAS", "CUDA_HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut sources: Vec<PathBuf> = std::fs::read_dir("cuda")
        .expect("kernels/cuda is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    let nvcc = tool("NVCC", "nvcc", None);
    let ptxas = tool("PTXAS", "ptxas", Some(&nvcc));
    let jobs: Vec<Job> = sources
        .iter()
        .flat_map(|src| {
            let stem = src
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a .cu file name is UTF-8")
                .to_string();
            ARCHS.map(|arch| Job {
                src: src.clone(),
                stem: stem.clone(),
                arch,
            })
        })
        .collect();
    // nvcc and ptxas are single-threaded: one job per core (each takes a few hundred MB).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = Mutex::new(jobs.iter());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let job = next.lock().unwrap_or_else(|p| p.into_inner()).next();
                match job {
                    Some(job) => compile(job, &out, &nvcc, &ptxas),
                    None => break,
                }
            });
        }
    });

    let mut table = String::from(
        "// Generated by kernels/build.rs: each kernels/cuda/*.cu per architecture, as PTX and as\n\
         // a cubin.\n\
         pub const MODULES: &[PtxModule] = &[\n",
    );
    for src_jobs in jobs.chunks(ARCHS.len()) {
        table.push_str(&format!("    PtxModule {{ name: {:?},", src_jobs[0].stem));
        // Each field: one (architecture, file) pair per job, embedded by `include`.
        let fields: [(&str, &str, PickOutput); 2] = [
            ("per_arch", "include_str", |(ptx, _)| ptx),
            ("cubins", "include_bytes", |(_, cubin)| cubin),
        ];
        for (field, include, file) in fields {
            table.push_str(&format!(" {field}: &[\n"));
            for job in src_jobs {
                let path = file(outputs(job, &out)).display().to_string();
                table.push_str(&format!("        ({}, {include}!({path:?})),\n", job.arch));
            }
            table.push_str("    ],");
        }
        table.push_str(" },\n");
    }
    table.push_str("];\n");
    std::fs::write(out.join("cuda_ptx.rs"), table).expect("OUT_DIR is writable");
}
