//! `candor bench --lora`: every measured sequence runs with the adapter, and the result says so
//! (in the table, `model.lora` and `config.lora`), so it is never read as the base model's.
use super::common::fixtures;
use super::files::{tuned_tiny, tuned_tiny_lora, Lora, ALL_MODULES};
use std::path::Path;

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

fn candor(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn generate_and_perplexity_run_with_the_adapter_as_the_merged_model() {
    let dir = tempfile::tempdir().unwrap();
    let (base, peft, merged) = tuned_tiny(dir.path(), 13);
    let text = dir.path().join("text.txt");
    let words: Vec<String> = (0..80)
        .map(|i| format!("t{}", 5 + (i * 37) % 400))
        .collect();
    std::fs::write(&text, words.join(" ")).unwrap();
    let ppl = |model: &Path, lora: &[&str]| -> (f64, String) {
        let mut args = vec![
            "perplexity",
            "--offline",
            "--model",
            model.to_str().unwrap(),
        ];
        args.extend(["-f", text.to_str().unwrap(), "-c", "16", "--format", "json"]);
        args.extend(lora);
        let doc: serde_json::Value = serde_json::from_str(&candor(&args)).unwrap();
        (
            doc["ppl"].as_f64().unwrap(),
            doc["model_key"].as_str().unwrap().to_string(),
        )
    };
    let peft_arg = peft.to_str().unwrap();
    let (tuned, key) = ppl(&base, &["--lora", peft_arg]);
    let (expected, _) = ppl(&merged, &[]);
    let (plain, plain_key) = ppl(&base, &[]);
    let close = |got: f64, want: f64| (got - want).abs() < 1e-3 * want;
    assert!(close(tuned, expected), "{tuned} vs {expected}");
    assert!(
        (tuned - plain).abs() > 1e-2 * plain,
        "the adapter changes the perplexity"
    );
    assert_eq!(
        (key.as_str(), plain_key.as_str()),
        ("llama + LoRA tuned", "llama")
    );

    // llama.cpp's --lora-scaled, beside --lora: both run, each at its scale, as the model
    // merged with both.
    let second = tuned_tiny_lora(&base, 14);
    let second_peft = second.write_peft(&dir.path().join("second"));
    let both_merged = second
        .scaled(-0.5)
        .write_merged(&merged, &dir.path().join("both"));
    let (blend, blend_key) = ppl(
        &base,
        &[
            "--lora",
            peft_arg,
            "--lora-scaled",
            second_peft.to_str().unwrap(),
            "-0.5",
        ],
    );
    let (expected, _) = ppl(&both_merged, &[]);
    assert!(close(blend, expected), "{blend} vs {expected}");
    assert_eq!(blend_key, "llama + LoRA tuned + second@-0.5");

    let generate = |model: &Path, lora: &[&str]| {
        let mut args = vec!["generate", "--offline", "--model", model.to_str().unwrap()];
        args.extend([
            "--prompt",
            "t5 t6 t7 t8",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ]);
        args.push("--ignore-eos");
        args.extend(lora);
        candor(&args)
    };
    assert_eq!(
        generate(&base, &["--lora", peft_arg]),
        generate(&merged, &[])
    );
    let half_merged = tuned_tiny_lora(&base, 13)
        .scaled(0.5)
        .write_merged(&base, &dir.path().join("half"));
    assert_eq!(
        generate(&base, &["--lora-scaled", peft_arg, "0.5"]),
        generate(&half_merged, &[])
    );
}
