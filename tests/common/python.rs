//! A Python that can import a client package: the system's, or the package installed with
//! pip into the target directory when the system Python lacks it.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python command and the PYTHONPATH (if any) under which `import module` works.
pub fn python_with(module: &str) -> (String, Option<PathBuf>) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has = |pythonpath: Option<&Path>| {
        let mut c = Command::new(&python);
        c.args(["-c", &format!("import {module}")]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    if has(None) {
        return (python, None);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{module}-python"));
    if !has(Some(&dir)) {
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg(module)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python} -m pip: {e}"));
        assert!(
            out.status.success(),
            "pip install {module} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (python, Some(dir))
}

/// Run a client script from tests/python against a server; its stdout, after checking it
/// exited well and printed `ok_line`.
pub fn run_client(module: &str, script: &str, args: &[&str], ok_line: &str) -> String {
    let (python, pythonpath) = python_with(module);
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = Command::new(&python);
    cmd.arg(&script).args(args);
    if let Some(p) = &pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("run the client script");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains(ok_line),
        "{} failed:\nstdout:\n{stdout}\nstderr:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
