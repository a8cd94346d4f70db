//! The official `openai` Python client talks to the real server (chat, chat stream,
//! completions, responses, errors). The client is installed with pip into the target
//! directory when the system Python lacks it.
mod common;

use common::python::run_client;
use common::server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_client_works() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    tokio::task::block_in_place(|| {
        run_client(
            "openai",
            "openai_client.py",
            &[&s.base, "qwen2.5-0.5b"],
            "openai client: ok",
        )
    });
}
