//! text-generation-inference's native API over HTTP on the real Qwen2.5 model: `/generate`
//! answers what `/v1/completions` answers greedily, with TGI's `details` (each token, why it
//! ended); `/generate_stream` streams the same tokens, its last event carrying the whole text;
//! `POST /` answers a one-item list or a stream; `/info` says what runs; what TGI has and
//! candor does not run is a 400 naming the field.
mod common;

use common::server::Server;
use serde_json::{json, Value};

const PROMPT: &str = "1 2 3 4 5 1 2 3 4 5 1 2 3 4";

/// The data objects of a server-sent event stream.
fn events(body: &str) -> Vec<Value> {
    (body.lines())
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).expect("a JSON event"))
        .collect()
}

#[tokio::test]
async fn text_generation_inference_clients_are_answered_in_its_shapes() {
    // Batch-invariant kernels: the replay below must give the drawn answer's tokens exactly,
    // and by default a replay's steps may hold another number of drafted rows (their count
    // follows the server's recent acceptance), whose kernels round otherwise; a draw in the far
    // tail of a temperature-1.5 distribution then picks a neighbour (seed 11444406180840480583).
    let s = Server::start("qwen2.5-0.5b", &["--batch-invariant"]).await;
    let openai = json!({"prompt": PROMPT, "max_tokens": 6, "temperature": 0});
    let (_, v) = s.post("/v1/completions", &openai).await;
    let greedy = v["choices"][0]["text"].as_str().unwrap().to_string();

    // Greedy unless asked to sample, as TGI decides.
    let body = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 6, "details": true}});
    let (status, v) = s.post("/generate", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["generated_text"], greedy.as_str(), "{v}");
    let details = &v["details"];
    assert_eq!(details["finish_reason"], "length", "{v}");
    assert_eq!(details["generated_tokens"], 6, "{v}");
    assert_eq!(
        details["seed"],
        Value::Null,
        "a greedy answer draws no seed: {v}"
    );
    // A sampled answer without a seed reports the one drawn, which replays it.
    let sampled = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 8, "details": true,
                         "do_sample": true, "temperature": 1.5}});
    let (status, drawn) = s.post("/generate", &sampled).await;
    assert_eq!(status, 200, "{drawn}");
    let seed = drawn["details"]["seed"].as_u64().expect("the seed drawn");
    let mut replay = sampled.clone();
    replay["parameters"]["seed"] = json!(seed);
    let (_, again) = s.post("/generate", &replay).await;
    assert_eq!(
        again["generated_text"], drawn["generated_text"],
        "seed {seed}"
    );
    assert_eq!(again["details"]["seed"], seed, "{again}");
    let tokens = details["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 6, "{v}");
    let text: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(text, greedy);
    assert!(
        tokens.iter().all(|t| t["logprob"].as_f64().unwrap() <= 0.0),
        "{v}"
    );
    assert!(tokens.iter().all(|t| t["special"] == false), "{v}");

    // The stream: a token an event, the last with the whole text and why it ended.
    let (status, text) = s.post_for_text("/generate_stream", &body).await;
    assert_eq!(status, 200, "{text}");
    let streamed = events(&text);
    assert_eq!(streamed.len(), 6, "{text}");
    let pieces: String = (streamed.iter())
        .map(|e| e["token"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, greedy);
    let last = streamed.last().unwrap();
    assert_eq!(last["generated_text"], greedy.as_str(), "{text}");
    assert_eq!(last["details"]["finish_reason"], "length", "{text}");
    assert!(streamed[0]["generated_text"].is_null(), "{text}");

    // A stop sequence ends it there; `return_full_text` puts the prompt first.
    let stop = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 6, "stop": [" 1"],
                      "details": true, "return_full_text": true}});
    let (_, v) = s.post("/generate", &stop).await;
    assert_eq!(v["details"]["finish_reason"], "stop_sequence", "{v}");
    // TGI keeps the stop sequence in its text.
    let full = v["generated_text"].as_str().unwrap();
    assert!(full.starts_with(PROMPT) && full.ends_with(" 1"), "{v}");
    assert!(full.len() < PROMPT.len() + greedy.len(), "{v}");
    // An end token is listed last, special; `top_n_tokens` lists alternatives per token.
    let chat = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n";
    let eos = json!({"inputs": chat, "parameters": {"details": true, "max_new_tokens": 50,
                     "top_n_tokens": 2}});
    let (_, v) = s.post("/generate", &eos).await;
    let details = &v["details"];
    assert_eq!(details["finish_reason"], "eos_token", "{v}");
    let tokens = details["tokens"].as_array().unwrap();
    assert_eq!(tokens.last().unwrap()["special"], true, "{v}");
    assert_eq!(details["generated_tokens"], tokens.len(), "{v}");
    let tops = details["top_tokens"].as_array().unwrap();
    assert!(tops[0].as_array().unwrap().len() == 2, "{v}");
    assert!(v["details"]["tokens"][0].get("top_tokens").is_none(), "{v}");

    // `POST /`: a one-item list, or the stream.
    let (status, v) = s.post("/", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[0]["generated_text"], greedy.as_str(), "{v}");
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let (_, text) = s.post_for_text("/", &streaming).await;
    assert_eq!(events(&text).len(), 6, "{text}");
    // SageMaker's `/invocations` with Hugging Face's body runs the same.
    let (status, v) = s.post("/invocations", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[0]["generated_text"], greedy.as_str(), "{v}");

    // `decoder_input_details`: the prompt's tokens scored, as vLLM's `prompt_logprobs` scores
    // them; a stream does not carry them (TGI refuses too).
    let body = json!({"inputs": PROMPT, "parameters": {"max_new_tokens": 1, "details": true,
                      "decoder_input_details": true}});
    let (status, v) = s.post("/generate", &body).await;
    assert_eq!(status, 200, "{v}");
    let prefill = v["details"]["prefill"].as_array().unwrap();
    let vllm = json!({"prompt": PROMPT, "max_tokens": 1, "prompt_logprobs": 0});
    let (_, w) = s.post("/v1/completions", &vllm).await;
    let scored = w["choices"][0]["prompt_logprobs"].as_array().unwrap();
    assert_eq!(prefill.len(), scored.len(), "{v} {w}");
    assert!(prefill[0]["logprob"].is_null(), "{v}");
    for (token, place) in prefill.iter().zip(scored).skip(1) {
        let own = &place[token["id"].to_string()];
        assert_eq!(token["logprob"], own["logprob"], "{v} {w}");
        assert_eq!(token["text"], own["decoded_token"], "{v} {w}");
    }
    let (status, v) = s.post("/generate_stream", &body).await;
    assert_eq!(status, 400, "{v}");

    let (status, v) = s.get("/info").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model_pipeline_tag"], "text-generation", "{v}");
    assert_eq!(v["model_dtype"], "Q4_K_M", "{v}");
    assert!(v["max_total_tokens"].as_u64().unwrap() > 0, "{v}");

    for (parameters, field) in [
        (json!({"best_of": 2}), "best_of"),
        (json!({"watermark": true}), "watermark"),
        (json!({"max_new_tokens": -1}), "max_new_tokens"),
        (json!({"top_n_tokens": 1000}), "top_n_tokens"),
        (json!({"grammar": {"type": "xml", "value": "a"}}), "grammar"),
    ] {
        let body = json!({"inputs": PROMPT, "parameters": parameters});
        let (status, v) = s.post("/generate", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        let param = v["error"]["param"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) || param.contains(field),
            "{body}: {v}"
        );
    }
}
