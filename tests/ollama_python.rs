//! The official `ollama` Python client talks to the real server's Ollama API (models listed
//! and shown, chat whole and streamed, a tool call and its result, structured output,
//! generate, embeddings, errors). The client is installed with pip into the target directory
//! when the system Python lacks it.
mod common;

use common::python::run_client;
use common::server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_ollama_python_client_works() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    tokio::task::block_in_place(|| {
        run_client(
            "ollama",
            "ollama_client.py",
            &[&s.base, "qwen2.5-0.5b"],
            "ollama client: ok",
        )
    });
}
