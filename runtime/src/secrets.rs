//! Where hook secrets and stored key sets are read from: the [`SecretStore`]
//! trait (AWS Secrets Manager in production, any store in tests).

use std::future::Future;
use std::pin::Pin;

pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Reads secret strings by id. Errors are messages safe to log: they never
/// contain secret values.
pub trait SecretStore: Send + Sync {
    fn get_secret_string<'a>(&'a self, id: &'a str) -> SecretFuture<'a>;
}
