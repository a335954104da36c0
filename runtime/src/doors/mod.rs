//! The front doors: each turns its transport into [`crate::oauth::TokenRequest`]s
//! for the pipeline and its answers back, with no logic of its own.
//!
//! - [`http`]: the axum router (local server and Lambda HTTP events);
//! - [`lambda`]: the Lambda runtime loop (HTTP events and direct invokes);
//! - [`server`]: the local server (bind, serve, reload, shut down).

pub mod http;
pub mod lambda;
pub mod server;
