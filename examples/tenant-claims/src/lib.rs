//! Adds the caller's tenant and plan as claims, from its client metadata, and
//! takes write scopes away from clients on the free plan.
//!
//! Config (all optional): `{"namespace": "https://example.com/"}`, the prefix
//! of the claim names (default `https://example.com/`).

use tokenhook_sdk::prelude::*;

const DEFAULT_NAMESPACE: &str = "https://example.com/";

/// Takes the event as a lazy view: it reads only what it asks for.
pub fn tenant_claims(event: &EventView<'_>) -> Result<Decision, HookError> {
    let namespace = event.config().get("namespace").and_then(|n| n.as_text());
    let namespace = namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    let mut decision = Decision::new();
    let client = event.client();
    if let Some(tenant) = client.metadata_get("tenant") {
        // `concat` rather than `format!`: the formatting machinery costs fuel
        // on every call.
        decision.set_claim([namespace, "tenant"].concat(), &*tenant);
    }
    if let Some(plan) = client.metadata_get("plan") {
        decision.set_claim([namespace, "plan"].concat(), &*plan);
        if plan == "free" {
            for scope in event.token().scopes().filter(|s| s.starts_with("write:")) {
                log(LogLevel::Info, &["free plan: removing ", &scope].concat());
                decision.remove_scope(scope);
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
