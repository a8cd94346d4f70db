//! The official `anthropic` Python client talks to the real server's Messages API (a message,
//! a stream, a tool call and its result, token counting, errors). The client is installed with
//! pip into the target directory when the system Python lacks it.
mod common;

use common::python::run_client;
use common::server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_python_client_works() {
    let s = Server::start("qwen2.5-0.5b", &["--api-key", "sk-ant-test"]).await;
    tokio::task::block_in_place(|| {
        run_client(
            "anthropic",
            "anthropic_client.py",
            &[&s.base, "qwen2.5-0.5b", "sk-ant-test"],
            "anthropic client: ok",
        )
    });
}
