//! `candor bench --lora`: every measured sequence runs with the adapter, and the result says so
//! (in the table, `model.lora` and `config.lora`), so it is never read as the base model's.
use super::common::fixtures;
use super::files::{Lora, ALL_MODULES};

fn bench(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bench_measures_with_an_adapter_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixtures().join("tiny").join("llama");
    let peft = Lora::random(&base, &ALL_MODULES, 4, 8.0, 9).write_peft(&dir.path().join("sql"));
    let json = dir.path().join("result.json");
    let (model, lora) = (base.to_str().unwrap(), peft.to_str().unwrap());
    let out = bench(&[
        "--offline",
        "-m",
        model,
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-b",
        "1,2",
        "-t",
        "2",
        "--lora",
        lora,
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("+ LoRA {lora} |")), "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["model"]["lora"], lora);
    assert_eq!(doc["config"]["lora"], lora);
    assert_eq!(doc["results"].as_array().unwrap().len(), 3);

    // Perplexity is the base model's: not recorded under an adapter's name.
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "t5 t6 t7 t8").unwrap();
    let out = bench(&[
        "--offline",
        "-m",
        model,
        "--lora",
        lora,
        "--perplexity",
        text.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lora"), "{err}");
    // An adapter that is not one is named.
    let out = bench(&[
        "--offline",
        "-m",
        model,
        "-p",
        "8",
        "-n",
        "0",
        "--lora",
        model,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lora"), "{err}");
}
