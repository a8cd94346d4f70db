//! Renders report.html in headless Chromium and checks, from inside the page, that every chart
//! was laid out with its marks drawn, that nothing raised an error, and that the page fetched
//! nothing. Chromium is required (CI installs it); set CANDOR_SKIP_BROWSER_TESTS=1 to skip with
//! a printed reason where it cannot be installed.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
}

/// Runs before anything else on the page: records errors.
const PROBE_HEAD: &str = "<script>window.__errors=[];addEventListener('error',e=>__errors.push(String(e.message||e.type)),true);</script>";

/// Runs after the body is parsed: measures each chart and writes the findings into the DOM.
const PROBE_TAIL: &str = r#"<script>
const out = {errors: window.__errors, resources: performance.getEntriesByType('resource').map(r => r.name), charts: []};
for (const svg of document.querySelectorAll('svg.chart')) {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('.mark')];
  const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
  out.charts.push({id: svg.id, width: box.width, height: box.height, marks: marks.length, drawn: drawn.length,
                   texts: svg.querySelectorAll('text').length});
}
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"#;

/// Run to completion or kill after `limit`; returns (success, stdout, stderr). Output goes to
/// files, not pipes: a DOM larger than a pipe buffer would block the browser while we wait.
fn run_with_timeout(mut cmd: Command, dir: &Path, limit: Duration) -> (bool, String, String) {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = cmd
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (status.success(), read(&out), read(&err))
}

#[test]
fn report_html_draws_every_chart_in_headless_chromium() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CANDOR_SKIP_BROWSER_TESTS").is_some() {
            eprintln!("SKIPPED: chromium not found and CANDOR_SKIP_BROWSER_TESTS is set");
            return;
        }
        panic!("chromium not found: install it (apt-get install chromium), point CHROMIUM at it, or set CANDOR_SKIP_BROWSER_TESTS=1 to skip");
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    candor::report::write_report(&candor::report::ReportRequest {
        results: common::report_results(),
        out_dir: out.clone(),
        reference: "h100".into(),
        specs: None,
        claims: None,
    })
    .unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let probed = html
        .replacen("<head>", &format!("<head>{PROBE_HEAD}"), 1)
        .replacen("</body>", &format!("{PROBE_TAIL}</body>"), 1);
    let page = dir.path().join("probe.html");
    std::fs::write(&page, probed).unwrap();
    let profile = dir.path().join("profile");
    let mut cmd = Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--dump-dom")
    .arg(format!("file://{}", page.display()));
    let (ok, dom, stderr) = run_with_timeout(cmd, dir.path(), Duration::from_secs(120));
    assert!(ok, "chromium failed: {stderr}");
    let json = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no probe output in the DOM; stderr: {stderr}"))
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "page errors");
    assert_eq!(
        v["resources"],
        serde_json::json!([]),
        "the page fetched something"
    );
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let charts = v["charts"].as_array().unwrap();
    assert!(charts.len() >= 3, "{charts:?}");
    for c in charts {
        let id = &c["id"];
        assert!(c["width"].as_f64().unwrap() > 300.0, "{id}: not laid out");
        assert!(c["height"].as_f64().unwrap() > 150.0, "{id}: not laid out");
        let marks = c["marks"].as_u64().unwrap();
        assert!(marks >= 2, "{id}: {marks} marks");
        assert_eq!(
            c["drawn"].as_u64().unwrap(),
            marks,
            "{id}: marks without geometry"
        );
        assert!(c["texts"].as_u64().unwrap() > 5, "{id}: no axis labels");
    }
}
