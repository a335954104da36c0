//! # tokenhook-sdk
//!
//! Write a tokenhook hook as a plain Rust function from the token request
//! ([`Event`]) to a [`Decision`], export it with [`export_hook!`], unit-test it
//! natively with [`testing::EventBuilder`], and build it with
//! `cargo build --target wasm32-unknown-unknown`.
//!
//! ```
//! use tokenhook_sdk::prelude::*;
//!
//! /// Adds the caller's tenant from its client metadata.
//! fn tenant_claims(event: &Event) -> Result<Decision, HookError> {
//!     let mut decision = Decision::new();
//!     if let Some(tenant) = event.client.metadata.get("tenant") {
//!         decision.set_claim("https://example.com/tenant", tenant);
//!     }
//!     Ok(decision)
//! }
//! export_hook!(tenant_claims);
//!
//! let event = testing::EventBuilder::new().client_metadata("tenant", "acme").build();
//! assert_eq!(tenant_claims(&event).unwrap().claim("https://example.com/tenant"), Some(&"acme".into()));
//! ```
//!
//! The same types are the host's wire types: the tokenhook runtime depends on
//! this crate, so the contract is defined in exactly one place.

#[doc(hidden)]
pub mod alloc;
mod decision;
#[doc(hidden)]
pub mod guest;
mod reader;
pub mod testing;
pub mod view;
pub mod wire;
mod writer;

pub use decision::Decision;
pub use view::EventView;

/// Hooks allocate with a bump allocator: each call's instance is discarded.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: alloc::BumpAlloc = alloc::BumpAlloc::new();
pub use guest::log;
pub use wire::*;

impl Event {
    /// This hook's configuration, deserialized into the hook's own type.
    pub fn config_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, HookError> {
        // From the borrowed value: no copy of the config tree first.
        T::deserialize(&self.config)
            .map_err(|e| HookError::new(format!("invalid hook config: {e}")))
    }

    /// A secret this hook was granted, or an error naming it.
    pub fn secret(&self, name: &str) -> Result<&str, HookError> {
        self.secrets
            .get(name)
            .ok_or_else(|| HookError::new(format!("secret `{name}` was not granted to this hook")))
    }
}

/// Everything a hook needs: `use tokenhook_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::export_hook;
    pub use crate::testing;
    pub use crate::wire::{Command, DenyCode, Event, HookError, LogLevel};
    pub use crate::{Decision, EventView, log};
    pub use serde_json::{Value, json};
}
