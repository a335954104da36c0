//! AWS Secrets Manager as the [`SecretStore`], configured by the standard AWS
//! chain (environment, profile, instance role), so `AWS_ENDPOINT_URL` and
//! `AWS_REGION` let an emulator stand in for tests.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::secrets::{SecretFuture, SecretStore};

/// Each Secrets Manager call gives up after this long (retries included).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    pub async fn from_env() -> Self {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        SecretsManagerStore {
            client: Client::new(&config),
        }
    }
}

impl SecretStore for SecretsManagerStore {
    fn get_secret_string<'a>(&'a self, id: &'a str) -> SecretFuture<'a> {
        Box::pin(async move {
            let out = self
                .client
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "Secrets Manager secret `{id}` cannot be read: {}",
                        DisplayErrorContext(&e)
                    )
                })?;
            out.secret_string()
                .map(str::to_string)
                .ok_or_else(|| format!("Secrets Manager secret `{id}` has no string value"))
        })
    }
}
