//! HTTP handlers.
pub mod chat;
pub mod completions;
pub mod infill;
pub mod llama_completion;
pub mod messages;
pub mod misc;
pub mod responses;
