//! llama-server's slot actions over HTTP (`POST /slots/{id}?action=save|restore|erase`,
//! `--slot-save-path`): a prompt cache saved by one server is restored by another after a
//! restart, whose next request with that prompt computes only its last token and answers as
//! the first did; erase drops it; bad names, slots, actions and files are refused clearly.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use serde_json::{json, Value};

fn completion(prompt: &str) -> Value {
    json!({"model": "tiny", "prompt": prompt, "max_tokens": 4, "temperature": 0, "ignore_eos": true})
}

/// The answer's text and its cached prompt tokens.
async fn complete(server: &Server, prompt: &str) -> (String, u64, u64) {
    let (status, answer) = server.post("/v1/completions", &completion(prompt)).await;
    assert_eq!(status, 200, "{answer}");
    let usage = &answer["usage"];
    (
        answer["choices"][0]["text"].as_str().unwrap().to_string(),
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_prompt_cache_is_restored_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let saves = dir.path().join("slots");
    let args = ["--slot-save-path", saves.to_str().unwrap()];
    let prompt: Vec<String> = (0..40).map(|i| format!("t{}", 5 + i)).collect();
    let prompt = prompt.join(" ");

    let first = Server::start_path(&model, "tiny", &args).await;
    let (text, prompt_tokens, cached) = complete(&first, &prompt).await;
    assert_eq!(cached, 0);
    let save = json!({"filename": "chat-1.bin"});
    let (status, saved) = first.post("/slots/0?action=save", &save).await;
    assert_eq!(status, 200, "{saved}");
    // The prompt and the answer but its last token, whose K/V were never computed.
    assert_eq!(saved["n_saved"], prompt_tokens + 3, "{saved}");
    assert_eq!(saved["id_slot"], 0);
    let written = saved["n_written"].as_u64().unwrap();
    assert_eq!(
        std::fs::metadata(saves.join("chat-1.bin")).unwrap().len(),
        written
    );
    for (path, body, want, says) in [
        (
            "/slots/0?action=save",
            json!({"filename": "../x"}),
            400,
            "invalid filename",
        ),
        (
            "/slots/0?action=save",
            json!({}),
            400,
            "`filename` is required",
        ),
        (
            "/slots/1?action=save",
            save.clone(),
            400,
            "slot 1 has no prompt",
        ),
        ("/slots/99?action=save", save.clone(), 400, "no slot `99`"),
        ("/slots/x?action=erase", json!({}), 400, "no slot `x`"),
        (
            "/slots/0?action=copy",
            save.clone(),
            400,
            "unknown action `copy`",
        ),
        ("/slots/0", save.clone(), 400, "`action` is required"),
        (
            "/slots/0?action=restore",
            json!({"filename": "none.bin"}),
            404,
            "none.bin",
        ),
        (
            "/slots/0?action=save",
            json!({"file": "a"}),
            400,
            "unknown field",
        ),
    ] {
        let (status, answer) = first.post(path, &body).await;
        assert_eq!(status, want, "{path} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message}");
    }
    drop(first);

    let second = Server::start_path(&model, "tiny", &args).await;
    let (status, restored) = second
        .post(
            "/slots/0?action=restore",
            &json!({"filename": "chat-1.bin"}),
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["n_restored"], saved["n_saved"]);
    assert_eq!(restored["n_read"], written);
    let (again, _, cached) = complete(&second, &prompt).await;
    assert_eq!(cached, prompt_tokens - 1, "all but the last prompt token");
    assert_eq!(again, text);
    let (status, erased) = second.post("/slots/0?action=erase", &json!({})).await;
    assert_eq!(status, 200, "{erased}");
    assert!(erased["n_erased"].as_u64().unwrap() >= 32, "{erased}");
    assert_eq!(complete(&second, &prompt).await.2, 0, "erased");
    // A file that is no prompt cache is refused as such.
    std::fs::write(saves.join("junk.bin"), b"{}").unwrap();
    let (status, answer) = second
        .post("/slots/0?action=restore", &json!({"filename": "junk.bin"}))
        .await;
    assert_eq!(status, 400, "{answer}");

    // Without --slot-save-path the actions are off.
    let plain = Server::start_path(&model, "tiny", &[]).await;
    let (status, answer) = plain.post("/slots/0?action=erase", &json!({})).await;
    assert_eq!(status, 501, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--slot-save-path"));
}
