//! OpenAI's Responses API (`POST /v1/responses`), stateless: a request is translated into the
//! chat request it means (`request`), runs on the chat path, and is answered as output items
//! (`items`) in a response object or its event stream (`reply`).
pub mod budgeted;
pub mod conversations;
pub mod event_log;
pub mod items;
pub mod reply;
pub mod request;
pub mod store;
