//! Host policy: applies one hook's commands to the token under rules the hook
//! cannot bypass. All or nothing: a single violation rejects the hook's whole
//! change set, and it is reported, never dropped silently.

use std::collections::HashSet;

use serde_json::{Map, Value};
use tokenhook_sdk::wire::{Command, Deny, TokenState};

use crate::manifest::Capabilities;

/// Claims the host sets itself; hooks can neither set nor remove them, and
/// the manifest cannot grant them as a capability.
pub const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "client_id",
    "azp",
    "gty",
    "typ",
    "auth_time",
    "acr",
    "amr",
    "cnf",
    "act",
    "may_act",
    "sid",
    "nonce",
];

/// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ). Requests,
/// the manifest's APIs and the registry CLI all hold scopes to this.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

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
///
/// A deny anywhere in the output wins: the first `deny` is returned whatever
/// else the output holds, even commands the policy would reject (a hook that
/// says "refuse" is obeyed before its other commands are judged, so a bad
/// command next to a deny can never turn the deny into a skipped failure
/// under `on_error = "skip"`).
///
/// The cost is linear in the number of commands: each is checked against the
/// manifest's lists (fixed size), the claim count is checked as each claim is
/// set (so the map never holds more than `max_claims + 1`), and the change
/// lists are deduplicated through sets rather than by searching themselves.
pub fn apply(
    token: &TokenState,
    mut commands: Vec<Command>,
    caps: &Capabilities,
    rules: &Rules<'_>,
) -> Result<Applied, String> {
    if let Some(at) = commands.iter().position(|c| matches!(c, Command::Deny(_))) {
        let Command::Deny(deny) = commands.swap_remove(at) else {
            unreachable!("position found a deny")
        };
        return Ok(Applied::Denied(deny));
    }
    let mut scopes = token.scopes.clone();
    let mut claims: Map<String, Value> = token.claims.clone();
    let mut changes = Changes::default();
    // Names already listed in `changes`, so each list names a claim once.
    let (mut listed_set, mut listed_removed) = (HashSet::new(), HashSet::new());
    for command in commands {
        match command {
            Command::Deny(_) => unreachable!("denies were handled above"),
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
                // `scopes` and the change lists hold API scopes only (or the
                // token's own), so these searches are bounded by the manifest.
                if !scopes.contains(&scope) {
                    scopes.push(scope.clone());
                    if !changes.scopes_added.contains(&scope) {
                        changes.scopes_added.push(scope);
                    }
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
                    if !changes.scopes_removed.contains(&scope) {
                        changes.scopes_removed.push(scope);
                    }
                }
            }
            Command::SetClaim { name, value } => {
                check_claim_name(&name, caps, rules, "set_claim")?;
                claims.insert(name.clone(), value);
                if claims.len() > rules.max_claims {
                    return Err(format!(
                        "set_claim `{name}`: the token would carry more than {} custom claims, which the policy allows",
                        rules.max_claims
                    ));
                }
                if listed_set.insert(name.clone()) {
                    changes.claims_set.push(name);
                }
            }
            Command::RemoveClaim(name) => {
                check_claim_name(&name, caps, rules, "remove_claim")?;
                if claims.remove(&name).is_some() && listed_removed.insert(name.clone()) {
                    changes.claims_removed.push(name);
                }
            }
        }
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

    /// A deny after a command the policy rejects is still honoured: under
    /// `on_error = "skip"` the rejection alone would let the request through.
    #[test]
    fn a_deny_wins_over_a_rejected_command_before_it() {
        let deny = |d: &str| {
            Command::Deny(Deny {
                error: Default::default(),
                description: d.into(),
            })
        };
        let out = run(vec![
            Command::AddScope("delete:a".into()),
            Command::SetClaim {
                name: "sub".into(),
                value: json!("x"),
            },
            deny("first"),
            deny("second"),
        ]);
        match out {
            Ok(Applied::Denied(d)) => assert_eq!(d.description, "first"),
            other => panic!("the deny must win: {other:?}"),
        }
    }

    /// The claim count is checked as each claim is set, so the check names
    /// the claim that went over and never walks a list of earlier names.
    #[test]
    fn the_claim_count_is_checked_as_claims_are_set() {
        let many: Vec<Command> = (0..100_000)
            .map(|i| Command::SetClaim {
                name: format!("https://x/{i}"),
                value: json!(i),
            })
            .collect();
        let err = run(many).unwrap_err();
        assert!(
            err.starts_with("set_claim `https://x/2`:") && err.contains("more than 2"),
            "{err}"
        );
        // Setting and removing the same names over and over lists each once.
        let churn = (0..1000)
            .flat_map(|i| {
                let name = format!("https://x/{}", i % 2);
                [
                    Command::SetClaim {
                        name: name.clone(),
                        value: json!(i),
                    },
                    Command::RemoveClaim(name),
                ]
            })
            .collect();
        let Ok(Applied::Changed(token, changes)) = run(churn) else {
            panic!("expected changes")
        };
        assert!(token.claims.is_empty());
        assert_eq!(changes.claims_set, s(&["https://x/0", "https://x/1"]));
        assert_eq!(changes.claims_removed, s(&["https://x/0", "https://x/1"]));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const API: &[&str] = &["read:a", "write:a", "admin:a", "read:b"];
        const GRANTED: &[&str] = &["read:a", "write:a", "admin:a"];
        /// Scopes hooks try: the API's and some it does not define.
        const SCOPES: &[&str] = &[
            "read:a", "write:a", "admin:a", "read:b", "read:zz", "delete:a",
        ];
        /// Claim names hooks try: reserved, outside the namespaces, outside
        /// the capabilities, and allowed ones.
        const CLAIMS: &[&str] = &[
            "sub",
            "scope",
            "iss",
            "client_id",
            "jti",
            "tenant",
            "https://y/t",
            "https://x/",
            "https://x/a",
            "https://x/b",
            "https://x/c",
            "urn:x",
        ];

        fn command() -> impl Strategy<Value = Command> {
            prop_oneof![
                4 => proptest::sample::select(SCOPES).prop_map(|s| Command::AddScope(s.into())),
                4 => proptest::sample::select(SCOPES).prop_map(|s| Command::RemoveScope(s.into())),
                4 => (proptest::sample::select(CLAIMS), 0..1000u32).prop_map(|(n, v)| {
                    Command::SetClaim {
                        name: n.into(),
                        value: json!(v),
                    }
                }),
                4 => proptest::sample::select(CLAIMS).prop_map(|n| Command::RemoveClaim(n.into())),
                1 => Just(Command::Deny(Deny {
                    error: Default::default(),
                    description: "no".into(),
                })),
            ]
        }

        proptest! {
            /// Whatever sequence of hooks and commands: the token never gets
            /// a reserved claim, a claim outside the namespaces or the hook's
            /// capabilities, a scope outside the API, the grant or the
            /// capabilities, or more claims than the policy allows; a deny
            /// anywhere in an output wins; a refused output changes nothing.
            #[test]
            fn no_sequence_of_commands_escapes_the_policy(
                hooks in proptest::collection::vec(proptest::collection::vec(command(), 0..12), 1..6),
                within_grant in any::<bool>(),
            ) {
                let (api, granted, ns) = (s(API), s(GRANTED), s(&["https://", "urn:"]));
                let mut rules = rules(&api, &granted, &ns);
                rules.added_scopes_within_grant = within_grant;
                rules.max_claims_size = 64;
                let caps = caps();
                let start = s(&["read:a"]);
                let mut token = TokenState { scopes: start.clone(), claims: Map::new() };
                for commands in hooks {
                    let denies = commands.iter().any(|c| matches!(c, Command::Deny(_)));
                    match apply(&token, commands, &caps, &rules) {
                        Ok(Applied::Denied(_)) => prop_assert!(denies),
                        Ok(Applied::Changed(next, _)) => {
                            prop_assert!(!denies, "a deny must win");
                            token = next;
                        }
                        Err(_) => prop_assert!(!denies, "a deny must win"),
                    }
                    for name in token.claims.keys() {
                        prop_assert!(!RESERVED_CLAIMS.contains(&name.as_str()), "{name}");
                        prop_assert!(name.starts_with("https://x/"), "{name}");
                    }
                    prop_assert!(token.claims.len() <= rules.max_claims);
                    prop_assert!(serde_json::to_vec(&token.claims).unwrap().len() as u64 <= rules.max_claims_size);
                    for scope in &token.scopes {
                        if !start.contains(scope) {
                            prop_assert!(api.contains(scope), "{scope} outside the API");
                            prop_assert!(scope_allowed(&caps, scope), "{scope} outside the capabilities");
                            if within_grant {
                                prop_assert!(granted.contains(scope), "{scope} outside the grant");
                            }
                        }
                    }
                    let mut unique = token.scopes.clone();
                    unique.sort();
                    unique.dedup();
                    prop_assert_eq!(unique.len(), token.scopes.len(), "no duplicate scopes");
                }
            }

            /// A hook without capabilities may only deny: any other command
            /// fails it, and the token is unchanged.
            #[test]
            fn no_capabilities_no_changes(commands in proptest::collection::vec(command(), 1..12)) {
                let (api, granted, ns) = (s(API), s(GRANTED), s(&["https://"]));
                let token = TokenState { scopes: s(&["read:a"]), claims: Map::new() };
                let none = Capabilities { claims: vec![], scopes: vec![] };
                let denies = commands.iter().any(|c| matches!(c, Command::Deny(_)));
                match apply(&token, commands, &none, &rules(&api, &granted, &ns)) {
                    Ok(Applied::Denied(_)) => prop_assert!(denies),
                    Ok(Applied::Changed(next, _)) => {
                        prop_assert_eq!(next.scopes, token.scopes);
                        prop_assert!(next.claims.is_empty());
                    }
                    Err(_) => {}
                }
            }
        }
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
