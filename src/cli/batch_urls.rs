//! `run-batch`'s files over HTTP, as vLLM's takes them: an `http(s)://` input is fetched (GET)
//! into a temporary file before the model loads, and an `http(s)://` output gets the results
//! (PUT) once all are written to a temporary file. The batch itself runs over local files
//! either way, so a network failure midway never leaves half a result at the URL, and the
//! input's requests are counted for the progress bar as a local file's are.
use crate::error::CliError;
use crate::loadgen::chain;
use futures::StreamExt;
use std::io::Write;
use std::path::Path;

/// Whether `s` names a file over HTTP rather than a path.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

pub fn client() -> Result<reqwest::Client, CliError> {
    crate::loadgen::http_client(reqwest::Client::builder).map_err(CliError::Usage)
}

/// The body of `url` (a 2xx answer to GET), streamed into a temporary file.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<tempfile::NamedTempFile, CliError> {
    let failed =
        |why: String| CliError::Usage(format!("cannot read the requests from {url}: {why}"));
    let answer = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(chain(&e)))?;
    if !answer.status().is_success() {
        return Err(failed(format!("the server answered {}", answer.status())));
    }
    let mut file = tempfile::NamedTempFile::new().map_err(|e| failed(e.to_string()))?;
    let mut body = answer.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(chain(&e)))?;
        file.write_all(&chunk).map_err(|e| failed(e.to_string()))?;
    }
    file.flush().map_err(|e| failed(e.to_string()))?;
    Ok(file)
}

/// The results file `path` sent to `url` with PUT (a 2xx answer expected).
pub async fn upload(client: &reqwest::Client, path: &Path, url: &str) -> Result<(), CliError> {
    let failed = |why: String| {
        CliError::Usage(format!(
            "cannot send the results to {url}: {why} (they are in {})",
            path.display()
        ))
    };
    // Sent whole, with its length: presigned object-store URLs refuse a chunked body (vLLM's
    // run-batch reads the file into memory too).
    let body = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let answer = client
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, "application/jsonl")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(chain(&e)))?;
    match answer.status().is_success() {
        true => Ok(()),
        false => Err(failed(format!("the server answered {}", answer.status()))),
    }
}
