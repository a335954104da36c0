//! Host policy: applies one hook's commands to the token under rules the hook
//! cannot bypass. All or nothing: a single violation rejects the hook's whole
//! change set, and it is reported, never dropped silently.

use serde_json::{Map, Value};
use tokenhook_sdk::wire::{Command, Deny, TokenState};

use crate::manifest::{Capabilities, RESERVED_CLAIMS};

/// The rules from the manifest's `[policy]`, plus the request's API and grant.
pub struct Rules<'a> {
    pub claim_namespaces: &'a [String],
    pub added_scopes_within_grant: bool,
    pub max_claims: usize,
    pub max_claims_size: u64,
    pub api_scopes: &'a [String],
    pub granted_scopes: &'a [String],
}

/// What one hook changed, for the log (claim names only, never values).
#[derive(Debug, Default, serde::Serialize)]
pub struct Changes {
    pub scopes_added: Vec<String>,
    pub scopes_removed: Vec<String>,
    pub claims_set: Vec<String>,
    pub claims_removed: Vec<String>,
}

#[derive(Debug)]
pub enum Applied {
    Changed(TokenState, Changes),
    Denied(Deny),
}

/// Apply `commands` to a copy of `token`. `Err` explains the first violation.
pub fn apply(
    token: &TokenState,
    commands: Vec<Command>,
    caps: &Capabilities,
    rules: &Rules<'_>,
) -> Result<Applied, String> {
    let mut scopes = token.scopes.clone();
    let mut claims: Map<String, Value> = token.claims.clone();
    let mut changes = Changes::default();
    for command in commands {
        match command {
            Command::Deny(deny) => return Ok(Applied::Denied(deny)),
            Command::AddScope(scope) => {
                if !rules.api_scopes.contains(&scope) {
                    return Err(format!(
                        "add_scope `{scope}`: the API does not define this scope"
                    ));
                }
                if rules.added_scopes_within_grant && !rules.granted_scopes.contains(&scope) {
                    return Err(format!(
                        "add_scope `{scope}`: the client was not granted this scope"
                    ));
                }
                if !scope_allowed(caps, &scope) {
                    return Err(format!(
                        "add_scope `{scope}`: not in the hook's capabilities.scopes"
                    ));
                }
                if !scopes.contains(&scope) {
                    scopes.push(scope.clone());
                    changes.scopes_added.push(scope);
                }
            }
            Command::RemoveScope(scope) => {
                if !scope_allowed(caps, &scope) {
                    return Err(format!(
                        "remove_scope `{scope}`: not in the hook's capabilities.scopes"
                    ));
                }
                if let Some(pos) = scopes.iter().position(|s| *s == scope) {
                    scopes.remove(pos);
                    changes.scopes_removed.push(scope);
                }
            }
            Command::SetClaim { name, value } => {
                check_claim_name(&name, caps, rules, "set_claim")?;
                claims.insert(name.clone(), value);
                if !changes.claims_set.contains(&name) {
                    changes.claims_set.push(name);
                }
            }
            Command::RemoveClaim(name) => {
                check_claim_name(&name, caps, rules, "remove_claim")?;
                if claims.remove(&name).is_some() {
                    changes.claims_removed.push(name);
                }
            }
        }
    }
    if claims.len() > rules.max_claims {
        return Err(format!(
            "the token would carry {} custom claims; the policy allows {}",
            claims.len(),
            rules.max_claims
        ));
    }
    let size = serde_json::to_vec(&claims)
        .map(|v| v.len())
        .unwrap_or(usize::MAX) as u64;
    if size > rules.max_claims_size {
        return Err(format!(
            "custom claims would take {size} bytes; the policy allows {}",
            rules.max_claims_size
        ));
    }
    Ok(Applied::Changed(TokenState { scopes, claims }, changes))
}

fn scope_allowed(caps: &Capabilities, scope: &str) -> bool {
    caps.scopes
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => scope.starts_with(prefix),
            None => pattern == scope,
        })
}

fn check_claim_name(
    name: &str,
    caps: &Capabilities,
    rules: &Rules<'_>,
    what: &str,
) -> Result<(), String> {
    if RESERVED_CLAIMS.contains(&name) {
        return Err(format!(
            "{what} `{name}`: reserved claim, set only by the host"
        ));
    }
    if !rules
        .claim_namespaces
        .iter()
        .any(|ns| name.starts_with(ns.as_str()))
    {
        return Err(format!(
            "{what} `{name}`: claim names must start with one of {:?}",
            rules.claim_namespaces
        ));
    }
    if !caps
        .claims
        .iter()
        .any(|prefix| name.starts_with(prefix.as_str()))
    {
        return Err(format!(
            "{what} `{name}`: not in the hook's capabilities.claims"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules<'a>(api: &'a [String], granted: &'a [String], ns: &'a [String]) -> Rules<'a> {
        Rules {
            claim_namespaces: ns,
            added_scopes_within_grant: true,
            max_claims: 2,
            max_claims_size: 100,
            api_scopes: api,
            granted_scopes: granted,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn caps() -> Capabilities {
        Capabilities {
            claims: s(&["https://x/"]),
            scopes: s(&["read:*", "write:a"]),
        }
    }

    fn run(cmds: Vec<Command>) -> Result<Applied, String> {
        let api = s(&["read:a", "write:a", "admin:a", "read:b"]);
        let granted = s(&["read:a", "write:a", "admin:a"]);
        let ns = s(&["https://"]);
        let token = TokenState {
            scopes: s(&["read:a", "write:a"]),
            claims: Map::new(),
        };
        apply(&token, cmds, &caps(), &rules(&api, &granted, &ns))
    }

    #[test]
    fn allowed_changes_apply_and_are_listed() {
        let Ok(Applied::Changed(token, changes)) = run(vec![
            Command::RemoveScope("write:a".into()),
            Command::SetClaim {
                name: "https://x/t".into(),
                value: json!("acme"),
            },
        ]) else {
            panic!("expected changes")
        };
        assert_eq!(token.scopes, s(&["read:a"]));
        assert_eq!(token.claims["https://x/t"], json!("acme"));
        assert_eq!(changes.scopes_removed, s(&["write:a"]));
        assert_eq!(changes.claims_set, s(&["https://x/t"]));
    }

    #[test]
    fn violations_are_named() {
        let cases = [
            (
                Command::SetClaim {
                    name: "sub".into(),
                    value: json!(1),
                },
                "reserved",
            ),
            (Command::RemoveClaim("scope".into()), "reserved"),
            (
                Command::SetClaim {
                    name: "tenant".into(),
                    value: json!(1),
                },
                "must start with",
            ),
            (
                Command::SetClaim {
                    name: "https://y/t".into(),
                    value: json!(1),
                },
                "capabilities.claims",
            ),
            (Command::AddScope("delete:a".into()), "does not define"),
            (Command::AddScope("read:b".into()), "not granted"),
            (Command::AddScope("admin:a".into()), "capabilities.scopes"),
        ];
        for (cmd, expected) in cases {
            match run(vec![cmd.clone()]) {
                Err(msg) => assert!(msg.contains(expected), "{cmd:?}: {msg}"),
                Ok(_) => panic!("{cmd:?} should be refused"),
            }
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let many = (0..3)
            .map(|i| Command::SetClaim {
                name: format!("https://x/{i}"),
                value: json!(i),
            })
            .collect();
        assert!(run(many).unwrap_err().contains("custom claims"));
        let big = vec![Command::SetClaim {
            name: "https://x/big".into(),
            value: json!("x".repeat(200)),
        }];
        assert!(run(big).unwrap_err().contains("bytes"));
    }

    #[test]
    fn deny_wins() {
        let out = run(vec![Command::Deny(Deny {
            error: Default::default(),
            description: "no".into(),
        })]);
        assert!(matches!(out, Ok(Applied::Denied(_))));
    }
}
