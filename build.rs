//! Build script of the `candor` package:
//! - records the git commit the binary was built from, for benchmark result documents;
//! - builds the reference device plugin (kernels/plugins/reference, plain C) as a shared library
//!   with the `cc` crate's compiler and flags, plus the test-only fault variants of the same
//!   source and the ABI layout probe. The reference plugin is copied beside the candor binary so
//!   `--backend plugin:target/release/libcandor_reference.so` works for users.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    record_git_commit();
    build_plugins();
}

/// The commit, with `-dirty` when tracked files differ from it: a result document must not
/// credit a commit with numbers measured on code that was never committed. The sources are
/// watched as well as HEAD so an edit (or its undoing) reruns this.
fn record_git_commit() {
    for watched in [
        ".git/HEAD",
        ".git/refs/heads",
        ".git/index",
        "src",
        "kernels/src",
        "kernels/cuda",
        "models/src",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let git = |args: &[&str]| Command::new("git").args(args).output().ok();
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    // `git diff --quiet HEAD` exits 1 when a tracked file differs (staged or not).
    let dirty = git(&["diff", "--quiet", "HEAD", "--"]).is_some_and(|o| o.status.code() == Some(1));
    if let Some(c) = commit {
        let suffix = if dirty { "-dirty" } else { "" };
        println!("cargo:rustc-env=CANDOR_GIT_COMMIT={c}{suffix}");
    }
}

/// A shared library built from C sources with extra defines.
struct PluginBuild {
    name: &'static str,
    sources: &'static [&'static str],
    defines: &'static [&'static str],
}

const REFERENCE_SOURCES: &[&str] = &[
    "kernels/plugins/reference/device.c",
    "kernels/plugins/reference/ops.c",
    "kernels/plugins/reference/dtypes.c",
];

/// The reference plugin, then the test variants (see the list at the top of device.c).
const PLUGINS: &[PluginBuild] = &[
    PluginBuild {
        name: "candor_reference",
        sources: REFERENCE_SOURCES,
        defines: &[],
    },
    PluginBuild {
        name: "candor_fault_wrong_major",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_WRONG_MAJOR"],
    },
    PluginBuild {
        name: "candor_fault_no_entry",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_NO_ENTRY"],
    },
    PluginBuild {
        name: "candor_fault_null_table",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_NULL_TABLE"],
    },
    PluginBuild {
        name: "candor_fault_small_struct",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_SMALL_STRUCT"],
    },
    // The 5th rms_norm call fails: for the tiny 2-layer fixtures (3 calls per forward) that is
    // the first decode step of `generate`, and the first request after `serve`'s warm-up pass.
    PluginBuild {
        name: "candor_fault_fail_at_call",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_FAIL_AT_CALL=5"],
    },
    PluginBuild {
        name: "candor_fault_claims_all",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_CLAIMS_ALL"],
    },
    PluginBuild {
        name: "candor_fault_wrong_glu",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_FAULT_WRONG_GLU"],
    },
    // A plugin written against ABI 1.0, for the tests that a newer candor keeps it correct.
    PluginBuild {
        name: "candor_reference_abi_1_0",
        sources: REFERENCE_SOURCES,
        defines: &["CANDOR_REFERENCE_ABI_1_0"],
    },
    PluginBuild {
        name: "candor_layout_probe",
        sources: &["kernels/include/layout_probe.c"],
        defines: &[],
    },
];

fn build_plugins() {
    for dir in ["kernels/include", "kernels/plugins/reference"] {
        println!("cargo:rerun-if-changed={dir}");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "windows" {
        // The plugin sources use POSIX calls; Windows builds run without the reference plugin.
        println!("cargo:warning=the reference device plugin is not built on Windows");
        return;
    }
    let (prefix, suffix) = if os == "macos" {
        ("lib", ".dylib")
    } else {
        ("lib", ".so")
    };
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let plugin_dir = out_dir.join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("create the plugin output directory");
    // The cc crate knows the target's C compiler and its flags (CC, CFLAGS, cross toolchains).
    let compiler = cc::Build::new()
        .opt_level(2)
        .pic(true)
        .warnings(true)
        .get_compiler();
    // macOS hides sysconf's memory queries under strict POSIX unless Darwin extensions are on.
    let extra: &[&str] = if os == "macos" {
        &["-D_DARWIN_C_SOURCE"]
    } else {
        &[]
    };
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = PLUGINS
            .iter()
            .map(|p| {
                let out = plugin_dir.join(format!("{prefix}{}{suffix}", p.name));
                let compiler = &compiler;
                scope.spawn(move || link_shared(compiler, p, extra, &out))
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| Err("compiler thread panicked".into()))
            })
            .collect()
    });
    for r in results {
        if let Err(e) = r {
            panic!("building the reference device plugin failed: {e}");
        }
    }
    let reference = plugin_dir.join(format!("{prefix}candor_reference{suffix}"));
    println!(
        "cargo:rustc-env=CANDOR_REFERENCE_PLUGIN={}",
        reference.display()
    );
    println!(
        "cargo:rustc-env=CANDOR_TEST_PLUGIN_DIR={}",
        plugin_dir.display()
    );
    // OUT_DIR is target/<profile>/build/candor-<hash>/out: the binary lives three levels up.
    if let Some(bin_dir) = out_dir.ancestors().nth(3) {
        let _ = std::fs::copy(
            &reference,
            bin_dir.join(reference.file_name().unwrap_or_default()),
        );
    }
}

fn link_shared(
    compiler: &cc::Tool,
    p: &PluginBuild,
    extra: &[&str],
    out: &Path,
) -> Result<(), String> {
    let mut cmd = compiler.to_command();
    cmd.args(extra);
    cmd.args([
        "-std=c99",
        "-D_POSIX_C_SOURCE=200809L",
        "-fvisibility=hidden",
        "-shared",
    ])
    .arg("-Ikernels/include");
    for d in p.defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.args(p.sources).arg("-o").arg(out).arg("-lm");
    let output = cmd
        .output()
        .map_err(|e| format!("{}: cannot run the C compiler: {e}", p.name))?;
    if !output.status.success() {
        return Err(format!(
            "{}: {:?} failed:\n{}",
            p.name,
            cmd,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}
