//! Adds the caller's tenant and plan as claims, from its client metadata, and
//! takes write scopes away from clients on the free plan.
//!
//! Config (all optional): `{"namespace": "https://example.com/"}`, the prefix
//! of the claim names (default `https://example.com/`). It is read once, when
//! the hook loads (`config:` below).

use tokenhook_sdk::prelude::*;
use tokenhook_sdk::view::Json;

const DEFAULT_NAMESPACE: &str = "https://example.com/";

/// The claim names, made once from the config.
pub struct ClaimNames {
    tenant: String,
    plan: String,
}

/// Reads the config when the hook loads.
pub fn claim_names(config: Json<'_>) -> Result<ClaimNames, HookError> {
    let namespace = config.get("namespace").and_then(|n| n.as_text());
    let namespace = namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    Ok(ClaimNames {
        tenant: [namespace, "tenant"].concat(),
        plan: [namespace, "plan"].concat(),
    })
}

/// Takes the event as a lazy view: it reads only what it asks for.
pub fn tenant_claims(event: &EventView<'_>, names: &ClaimNames) -> Result<Decision, HookError> {
    let mut decision = Decision::new();
    let client = event.client();
    if let Some(tenant) = client.metadata_get("tenant") {
        decision.set_claim(names.tenant.as_str(), &*tenant);
    }
    if let Some(plan) = client.metadata_get("plan") {
        decision.set_claim(names.plan.as_str(), &*plan);
        if plan == "free" {
            for scope in event.token().scopes().filter(|s| s.starts_with("write:")) {
                // `concat` rather than `format!`: the formatting machinery
                // costs fuel on every call.
                log(LogLevel::Info, &["free plan: removing ", &scope].concat());
                decision.remove_scope(scope);
            }
        }
    }
    Ok(decision)
}

export_hook!(view: tenant_claims, config: claim_names, reads = [client, token]);

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhook_sdk::testing::{self, EventBuilder};

    fn run(event: &Event) -> Result<Decision, HookError> {
        let names = testing::prepare(&event.config, claim_names)?;
        testing::with_view(event, |e| tenant_claims(e, &names))
    }

    #[test]
    fn tenant_and_plan_become_claims() {
        let event = EventBuilder::new()
            .client_metadata("tenant", "acme")
            .client_metadata("plan", "pro")
            .build();
        let decision = run(&event).unwrap();
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
        let decision = run(&event).unwrap();
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
        let names = testing::prepare(&event.config, claim_names).unwrap();
        let out = testing::run_view_through_json(|e| tenant_claims(e, &names), &event);
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
        assert!(run(&EventBuilder::new().build()).unwrap().is_empty());
    }
}
