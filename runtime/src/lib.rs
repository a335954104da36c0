//! tokenhook: an OAuth 2.0 client-credentials token issuer whose tokens are
//! customised by sandboxed WebAssembly hooks.

pub mod audit;
pub mod cached;
pub mod capture;
pub mod cli;
pub mod clients;
pub mod doors;
pub mod engine;
pub mod explain;
pub mod hooks;
pub mod keys;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod oauth;
pub mod pipeline;
pub mod playground;
pub mod policy;
pub mod reload;
pub mod revocation;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod units;
