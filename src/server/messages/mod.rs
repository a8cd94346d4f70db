//! Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`), for clients
//! written against it: a request is translated into the chat request it means (`request`),
//! runs on the chat path, and is answered as content blocks (`blocks`) in a message or its
//! event stream (`reply`), errors in Anthropic's shape.
pub mod blocks;
pub mod reply;
pub mod request;
