//! `candor report` on fixed result documents (copies of benches/results): report.md must match
//! the golden file byte for byte, and the CLI must write every output and reject bad input.
//! Regenerate after an intended change with `CANDOR_UPDATE_GOLDEN=1 cargo test --release --test report_golden`.
mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn report_markdown_matches_the_golden_file() {
    let rendered = candor::report::render(&candor::report::ReportRequest {
        results: common::report_results(),
        out_dir: PathBuf::from("unused"),
        reference: "h100".into(),
        specs: None,
        claims: None,
    })
    .unwrap();
    let golden = common::fixtures().join("report/expected/report.md");
    if std::env::var_os("CANDOR_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &rendered.markdown).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    if rendered.markdown != expected {
        let line = rendered
            .markdown
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or("(length)".to_string(), |i| (i + 1).to_string());
        panic!(
            "report.md differs from {} at line {line}; rerun with CANDOR_UPDATE_GOLDEN=1 if intended",
            golden.display()
        );
    }
    // The numbers the golden file pins, spelled out so a wrong golden file cannot hide them:
    // candor's qwen tg64 (~22 tok/s) is half of llama.cpp's (49.2) on the same machine.
    assert!(expected.contains(
        "| qwen2.5-coder-0.5b-instruct-q4_k_m | Q4_K_M | llama.cpp 0c1e570 | tg64 | 49.20 ± 0.91 |"
    ));
    // These fixtures are schema 1: no KV-cache shape and no server description, which the
    // report must say rather than guess.
    assert!(expected.contains(
        "Decode MBU counts the weights only for candor-bench-gemma3-270m-epyc-2t.json, candor-bench-qwen2.5-0.5b-epyc-2t.json"
    ));
    assert!(expected.contains("Server and load generator not described"));
    assert!(rendered.charts.len() >= 3);
}

#[test]
fn cli_writes_markdown_html_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(
        common::report_results()
            .iter()
            .map(|p| p.display().to_string()),
    );
    args.extend([
        "-o".into(),
        out.display().to_string(),
        "--reference".into(),
        "a100".into(),
    ]);
    let o = Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Reference device: **NVIDIA A100 SXM4 80GB**"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 3);
    assert!(!html.contains("<script") && !html.contains("http://www.w3.org/1999/xlink"));
    for chart in [
        "roofline",
        "prefill_by_device",
        "decode_by_device",
        "serving_throughput",
    ] {
        let svg = std::fs::read_to_string(out.join(format!("charts/{chart}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("class=\"mark\""),
            "{chart}"
        );
    }
}

#[test]
fn cli_rejects_unknown_references_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"hello": 1}"#).unwrap();
    let first = common::report_results()[0].display().to_string();
    for (args, needle) in [
        (vec![first.as_str(), "--reference", "h9000"], "h9000"),
        (vec![bad.to_str().unwrap()], "bad.json"),
        (
            vec![first.as_str(), "--specs", "/nonexistent.toml"],
            "nonexistent",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_candor"))
            .arg("report")
            .args(&args)
            .args(["-o", dir.path().join("o").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
    }
}
