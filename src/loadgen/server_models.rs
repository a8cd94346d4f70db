//! What a server says it serves: the ids of `GET /v1/models`, so a load sweep's result names the
//! model behind the numbers (the server may be remote; its hardware is not ours to describe).
use serde::Deserialize;

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// The model ids of an OpenAI `/v1/models` answer.
pub fn parse_model_ids(body: &str) -> Result<Vec<String>, String> {
    let list: ModelList = serde_json::from_str(body)
        .map_err(|e| format!("not an OpenAI model list ({e}): {}", excerpt(body)))?;
    Ok(list.data.into_iter().map(|m| m.id).collect())
}

/// The start of an answer body, for an error message.
fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

/// Ask the server at base URL `url` for its model ids.
pub async fn served_model_ids(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut req = client.get(format!("{}/v1/models", url.trim_end_matches('/')));
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("GET /v1/models failed: {}", super::request::chain(&e)))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("GET /v1/models: {}", super::request::chain(&e)))?;
    if !status.is_success() {
        return Err(format!("GET /v1/models: HTTP {status}: {}", excerpt(&body)));
    }
    parse_model_ids(&body)
}

#[cfg(test)]
mod tests {
    use super::parse_model_ids;

    #[test]
    fn model_ids_come_from_the_openai_list() {
        // llama-server's answer carries extra fields; vLLM's and candor's have the same shape.
        let body = r#"{"object":"list","data":[
            {"id":"qwen2.5-0.5b","object":"model","owned_by":"candor","meta":{"n_params":1}},
            {"id":"gemma3-270m","object":"model"}]}"#;
        assert_eq!(
            parse_model_ids(body).unwrap(),
            ["qwen2.5-0.5b", "gemma3-270m"]
        );
        assert_eq!(
            parse_model_ids(r#"{"data":[]}"#).unwrap(),
            Vec::<String>::new()
        );
        let e = parse_model_ids("<html>404</html>").unwrap_err();
        assert!(
            e.contains("not an OpenAI model list") && e.contains("<html>"),
            "{e}"
        );
    }
}
