//! A scope policy: write scopes only for qualifying clients, plus scopes every
//! token for this API should carry.
//!
//! Config:
//! ```json
//! { "write_requires": { "metadata_key": "tier", "values": ["gold", "platinum"] },
//!   "add_scopes": ["read:status"] }
//! ```
//! Every `write:*` scope is removed unless the client's metadata value for
//! `metadata_key` is one of `values` (no `write_requires`: writes are kept).
//! Each of `add_scopes` is added if the API defines it and the client was
//! granted it (the host refuses anything else): one the API does not define
//! is skipped with a warning in the log, one not granted with an info line.
//! No config at all changes nothing. Every removal and addition is logged.
//! The config is read once, when the hook loads (`config:` below): a
//! malformed one stops the load with the reason.

use serde::Deserialize;
use tokenhook_sdk::prelude::*;
use tokenhook_sdk::view::Json;

/// The policy, prepared once from the config. Parsed with serde, strictly
/// (a misspelt field is refused): it runs once, at load, so its cost is not
/// paid per request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub write_requires: Option<Condition>,
    #[serde(default)]
    pub add_scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub metadata_key: String,
    pub values: Vec<String>,
}

/// Reads the config when the hook loads (no config: a policy that changes
/// nothing).
pub fn policy(config: Json<'_>) -> Result<Policy, HookError> {
    if config.is_null() {
        return Ok(Policy::default());
    }
    config.parse()
}

/// Takes the event as a lazy view (it reads only what it asks for) and the
/// policy prepared at load.
pub fn scope_policy(event: &EventView<'_>, policy: &Policy) -> Result<Decision, HookError> {
    let mut decision = Decision::new();
    if let Some(Condition {
        metadata_key: key,
        values,
    }) = &policy.write_requires
    {
        let qualifies = event
            .client()
            .metadata_get(key)
            .is_some_and(|v| values.iter().any(|q| *q == v));
        if !qualifies {
            for scope in event.token().scopes().filter(|s| s.starts_with("write:")) {
                log(
                    LogLevel::Info,
                    &format!("{key} not in {values:?}: removing {scope}"),
                );
                decision.remove_scope(scope);
            }
        }
    }
    if !policy.add_scopes.is_empty() {
        // Looked up per scope to add (usually one or two): scanning the
        // event's short lists again costs less than collecting them.
        let api = event.api();
        let token = event.token();
        for scope in &policy.add_scopes {
            if !api.scopes().any(|s| s == **scope) {
                log(
                    LogLevel::Warn,
                    &format!("the API does not define {scope}; not adding it"),
                );
            } else if !event.granted_scopes().any(|s| s == **scope) {
                log(
                    LogLevel::Info,
                    &format!("{scope} is not granted to this client; not adding it"),
                );
            } else if !token.scopes().any(|s| s == **scope) {
                log(LogLevel::Info, &format!("adding {scope}"));
                decision.add_scope(scope.as_str());
            }
        }
    }
    Ok(decision)
}

export_hook!(
    view: scope_policy,
    config: policy,
    reads = [client, api, granted_scopes, token]
);

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhook_sdk::testing::{self, EventBuilder};

    fn run(event: &Event) -> Result<Decision, HookError> {
        let policy = testing::prepare(&event.config, policy)?;
        testing::with_view(event, |e| scope_policy(e, &policy))
    }

    fn config() -> Value {
        json!({"write_requires": {"metadata_key": "tier", "values": ["gold"]}, "add_scopes": ["read:status", "read:unknown"]})
    }

    fn event(tier: Option<&str>) -> Event {
        let mut b = EventBuilder::new()
            .api(
                "https://api.example.com",
                [
                    "read:orders",
                    "write:orders",
                    "write:refunds",
                    "read:status",
                ],
            )
            .scopes(["read:orders", "write:orders", "write:refunds"])
            .granted_scopes([
                "read:orders",
                "write:orders",
                "write:refunds",
                "read:status",
            ])
            .config(config());
        if let Some(t) = tier {
            b = b.client_metadata("tier", t);
        }
        b.build()
    }

    #[test]
    fn non_qualifying_clients_lose_every_write_scope() {
        let d = run(&event(Some("silver"))).unwrap();
        assert!(d.removes_scope("write:orders") && d.removes_scope("write:refunds"));
        assert!(!d.removes_scope("read:orders"));
        let d = run(&event(None)).unwrap();
        assert!(d.removes_scope("write:orders"));
    }

    #[test]
    fn qualifying_clients_keep_writes() {
        let d = run(&event(Some("gold"))).unwrap();
        assert!(!d.removes_scope("write:orders"));
    }

    #[test]
    fn adds_only_scopes_the_api_defines() {
        testing::take_logs();
        let d = run(&event(Some("gold"))).unwrap();
        assert!(d.adds_scope("read:status"));
        assert!(!d.adds_scope("read:unknown"));
        let logs = testing::take_logs();
        assert!(
            logs.iter()
                .any(|l| l.level == LogLevel::Warn && l.message.contains("read:unknown"))
        );
        assert!(
            logs.iter()
                .any(|l| l.level == LogLevel::Info && l.message == "adding read:status")
        );
    }

    #[test]
    fn never_adds_a_scope_the_client_was_not_granted() {
        let mut e = event(Some("gold"));
        e.granted_scopes.retain(|s| s != "read:status");
        assert!(!run(&e).unwrap().adds_scope("read:status"));
    }

    #[test]
    fn no_config_changes_nothing() {
        assert!(run(&EventBuilder::new().build()).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_config_is_an_error_not_a_guess() {
        let e = EventBuilder::new()
            .config(json!({"write_requires": "gold"}))
            .build();
        assert!(run(&e).unwrap_err().message.contains("invalid hook config"));
        let e = EventBuilder::new()
            .config(json!({"add_scope": ["read:status"]}))
            .build();
        assert!(run(&e).unwrap_err().message.contains("unknown field"));
    }

    #[test]
    fn round_trips_through_json() {
        let policy = testing::prepare(&config(), policy).unwrap();
        let out = testing::run_view_through_json(|e| scope_policy(e, &policy), &event(None));
        let tokenhook_sdk::HookOutput::Commands(cmds) = out else {
            panic!("{out:?}")
        };
        assert!(cmds.contains(&Command::AddScope("read:status".into())));
    }
}
