//! Ollama's API, for the desktop apps, editor plugins and libraries written against Ollama:
//! `/api/chat` and `/api/generate` run on the chat and completion paths and answer as Ollama
//! does (NDJSON lines, streamed unless `stream: false`), `/api/embed` and `/api/embeddings`
//! on the embedding path, and `/api/tags`, `/api/show`, `/api/ps`, `/api/version` describe the
//! one model served. Model management (`pull`, `create`, `copy`, `delete`, `push`) is not
//! offered: candor serves the model it was started with.
pub mod reply;
pub mod request;
