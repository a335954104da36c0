//! tokenhook: an OAuth 2.0 client-credentials token issuer whose tokens are
//! customised by sandboxed WebAssembly hooks.

pub mod cli;
pub mod engine;
pub mod units;
