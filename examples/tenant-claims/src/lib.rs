//! Adds the caller's tenant and plan as claims, from its client metadata, and
//! takes write scopes away from clients on the free plan.
//!
//! Config (all optional): `{"namespace": "https://example.com/"}`, the prefix
//! of the claim names (default `https://example.com/`).

use std::borrow::Cow;

use serde::Deserialize;
use tokenhook_sdk::prelude::*;

const DEFAULT_NAMESPACE: &str = "https://example.com/";

/// `{"namespace": "https://example.com/"}`; no config at all takes that default.
#[derive(Debug, Default, Deserialize)]
pub struct Config<'a> {
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
}

/// Takes the event as a borrowed view: nothing of it is copied.
pub fn tenant_claims(event: &EventView<'_>) -> Result<Decision, HookError> {
    let config: Config<'_> = if event.config.is_null() {
        Config::default()
    } else {
        event.config_as()?
    };
    let namespace = config.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    let mut decision = Decision::new();
    let metadata = &event.client.metadata;
    if let Some(tenant) = metadata.get("tenant") {
        // `concat` rather than `format!`: the formatting machinery costs fuel
        // on every call.
        decision.set_claim([namespace, "tenant"].concat(), tenant);
    }
    if let Some(plan) = metadata.get("plan") {
        decision.set_claim([namespace, "plan"].concat(), plan);
        if plan == "free" {
            for scope in event
                .token
                .scopes
                .iter()
                .filter(|s| s.starts_with("write:"))
            {
                log(LogLevel::Info, &["free plan: removing ", scope].concat());
                decision.remove_scope(scope.as_ref());
            }
        }
    }
    Ok(decision)
}

export_hook!(view: tenant_claims, reads = [client, token, config]);

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhook_sdk::testing::{self, EventBuilder};

    #[test]
    fn tenant_and_plan_become_claims() {
        let event = EventBuilder::new()
            .client_metadata("tenant", "acme")
            .client_metadata("plan", "pro")
            .build();
        let decision = testing::with_view(&event, tenant_claims).unwrap();
        assert_eq!(
            decision.claim("https://example.com/tenant"),
            Some(&json!("acme"))
        );
        assert_eq!(
            decision.claim("https://example.com/plan"),
            Some(&json!("pro"))
        );
        assert!(!decision.removes_scope("write:orders"));
    }

    #[test]
    fn free_plan_loses_write_scopes_and_says_so() {
        let event = EventBuilder::new()
            .client_metadata("plan", "free")
            .scopes(["read:orders", "write:orders"])
            .build();
        let decision = testing::with_view(&event, tenant_claims).unwrap();
        assert!(decision.removes_scope("write:orders"));
        assert!(!decision.removes_scope("read:orders"));
        let logs = testing::take_logs();
        assert!(logs.iter().any(|l| l.message.contains("write:orders")));
    }

    #[test]
    fn namespace_comes_from_config() {
        let event = EventBuilder::new()
            .client_metadata("tenant", "acme")
            .config(json!({"namespace": "https://acme.test/"}))
            .build();
        let out = testing::run_view_through_json(tenant_claims, &event);
        assert_eq!(
            out,
            tokenhook_sdk::HookOutput::Commands(vec![Command::SetClaim {
                name: "https://acme.test/tenant".into(),
                value: json!("acme"),
            }])
        );
    }

    #[test]
    fn no_metadata_no_changes() {
        assert!(
            testing::with_view(&EventBuilder::new().build(), tenant_claims)
                .unwrap()
                .is_empty()
        );
    }
}
