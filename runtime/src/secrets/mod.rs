//! Where hook secrets and stored key sets are read from: the [`SecretStore`]
//! trait (AWS Secrets Manager in production, any store in tests), its AWS
//! implementation ([`aws`]) and hook secrets as the hook chain uses them
//! ([`hooks`]).

use std::future::Future;
use std::pin::Pin;

pub mod aws;
pub mod hooks;

pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Reads secret strings by id. Errors are messages safe to log: they never
/// contain secret values.
pub trait SecretStore: Send + Sync {
    fn get_secret_string<'a>(&'a self, id: &'a str) -> SecretFuture<'a>;
}
