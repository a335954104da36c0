//! A hook's output, as the host reads it from the sandbox (contract-v1
//! `HookOutput` JSON), applied by the host policy under capabilities and rules
//! that the input also chooses.
//!
//! Input: the output bytes, optionally followed by `0xFF` and setting bytes
//! (0xFF never occurs in UTF-8, so it cannot end a valid output early). Without
//! settings the rules are examples/manifest.toml's. The settings pick the
//! API's scopes, the grant, the hook's capabilities, the policy and the token
//! so far from small vocabularies, so that names in the output can match them.
//!
//! Invariants, checked independently of policy.rs: a deny anywhere wins; an
//! accepted change set never yields a reserved claim, a claim outside the
//! namespaces, a claim set or removed outside the hook's capabilities, a scope
//! added outside the API, the grant (when the policy says so) or the
//! capabilities, a scope removed outside the capabilities, a duplicate scope,
//! or more or larger claims than the policy allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tokenhook::manifest::Capabilities;
use tokenhook::policy::RESERVED_CLAIMS;
use tokenhook::policy::{Applied, Rules, apply};
use tokenhook_sdk::wire::{Command, HookOutput, TokenState};

const SCOPES: [&str; 8] = [
    "read:orders",
    "write:orders",
    "admin:orders",
    "read:status",
    "write:invoices",
    "read:invoices",
    "delete:orders",
    "write",
];
const SCOPE_PATTERNS: [&str; 8] = [
    "write:*",
    "read:status",
    "*",
    "read:*",
    "admin:orders",
    "write",
    "w*",
    "delete:orders",
];
const CLAIM_PREFIXES: [&str; 6] = [
    "https://example.com/",
    "https://example.com/client_sig",
    "https://",
    "urn:example:",
    "https://example.com/t",
    "http://other.example/",
];
const NAMESPACES: [&str; 4] = ["https://example.com/", "https://", "urn:", "http://"];
const CLAIMS: [&str; 6] = [
    "https://example.com/tenant",
    "https://example.com/plan",
    "https://example.com/client_sig",
    "urn:example:team",
    "http://other.example/x",
    "https://other.example/y",
];

struct Settings {
    api_scopes: Vec<String>,
    granted: Vec<String>,
    caps: Capabilities,
    namespaces: Vec<String>,
    within_grant: bool,
    max_claims: usize,
    max_claims_size: u64,
    token: TokenState,
}

fn pick(vocabulary: &[&str], mask: u8) -> Vec<String> {
    vocabulary
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Settings {
    /// examples/manifest.toml: the Orders API, demo-client's grant, the
    /// tenant-claims hook's capabilities, the default limits.
    fn example() -> Settings {
        Settings {
            api_scopes: strings(&["read:orders", "write:orders", "admin:orders", "read:status"]),
            granted: strings(&["read:orders", "write:orders", "read:status"]),
            caps: Capabilities {
                claims: strings(&["https://example.com/"]),
                scopes: strings(&["write:*"]),
            },
            namespaces: strings(&["https://example.com/"]),
            within_grant: true,
            max_claims: 32,
            max_claims_size: 4096,
            token: TokenState {
                scopes: strings(&["read:orders", "write:orders"]),
                claims: Map::new(),
            },
        }
    }

    fn from_bytes(b: &[u8]) -> Settings {
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        let api_scopes = pick(&SCOPES, byte(0));
        // The manifest check keeps grants within the API.
        let granted: Vec<String> = pick(&SCOPES, byte(1))
            .into_iter()
            .filter(|s| api_scopes.contains(s))
            .collect();
        let mut namespaces = pick(&NAMESPACES, byte(4));
        if namespaces.is_empty() {
            namespaces = strings(&["https://example.com/"]);
        }
        // The token so far: requested ∩ granted scopes, and claims that earlier
        // hooks could have set (in a namespace, never reserved).
        let scopes = pick(&SCOPES, byte(9))
            .into_iter()
            .filter(|s| granted.contains(s))
            .collect();
        // Within the policy's bounds, which earlier hooks were held to.
        let max_claims = byte(6) as usize;
        let max_claims_size = u16::from_le_bytes([byte(7), byte(8)]) as u64;
        let mut claims = Map::new();
        for (i, name) in CLAIMS.iter().enumerate() {
            if byte(10) & (1 << i) != 0 && namespaces.iter().any(|n| name.starts_with(n.as_str())) {
                claims.insert(name.to_string(), json!(i));
                let size = serde_json::to_vec(&claims).map_or(u64::MAX, |v| v.len() as u64);
                if claims.len() > max_claims || size > max_claims_size {
                    claims.remove(*name);
                }
            }
        }
        Settings {
            api_scopes,
            granted,
            caps: Capabilities {
                claims: pick(&CLAIM_PREFIXES, byte(3)),
                scopes: pick(&SCOPE_PATTERNS, byte(2)),
            },
            namespaces,
            within_grant: byte(5) & 1 == 0,
            max_claims,
            max_claims_size,
            token: TokenState { scopes, claims },
        }
    }
}

fn scope_allowed(caps: &Capabilities, scope: &str) -> bool {
    caps.scopes.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => scope.starts_with(prefix),
        None => p == scope,
    })
}

fn claim_allowed(caps: &Capabilities, name: &str) -> bool {
    caps.claims.iter().any(|p| name.starts_with(p.as_str()))
}

fuzz_target!(|data: &[u8]| {
    let (output, settings) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], Settings::from_bytes(&data[at + 1..])),
        None => (data, Settings::example()),
    };
    // As the engine reads it (runtime/src/engine/mod.rs).
    let commands = match serde_json::from_slice::<HookOutput>(output) {
        Ok(HookOutput::Commands(commands)) => commands,
        Ok(HookOutput::Error(_)) | Err(_) => return,
    };
    let has_deny = commands.iter().any(|c| matches!(c, Command::Deny(_)));
    let s = &settings;
    let rules = Rules {
        claim_namespaces: &s.namespaces,
        added_scopes_within_grant: s.within_grant,
        max_claims: s.max_claims,
        max_claims_size: s.max_claims_size,
        api_scopes: &s.api_scopes,
        granted_scopes: &s.granted,
    };
    let before = &s.token;
    match apply(before, commands, &s.caps, &rules) {
        Ok(Applied::Denied(_)) => assert!(has_deny, "denied without a deny command"),
        Err(violation) => {
            assert!(!has_deny, "a deny must win over any violation: {violation}");
            assert!(!violation.is_empty());
        }
        Ok(Applied::Changed(after, _changes)) => {
            assert!(!has_deny, "a deny command was not applied");
            for (name, value) in &after.claims {
                assert!(
                    !RESERVED_CLAIMS.contains(&name.as_str()),
                    "reserved claim `{name}`"
                );
                assert!(
                    s.namespaces.iter().any(|n| name.starts_with(n.as_str())),
                    "claim `{name}` outside the namespaces"
                );
                if before.claims.get(name) != Some(value) {
                    assert!(
                        claim_allowed(&s.caps, name),
                        "claim `{name}` set outside capabilities"
                    );
                }
            }
            for name in before.claims.keys() {
                if !after.claims.contains_key(name) {
                    assert!(
                        claim_allowed(&s.caps, name),
                        "claim `{name}` removed outside capabilities"
                    );
                }
            }
            for scope in &after.scopes {
                if !before.scopes.contains(scope) {
                    assert!(
                        s.api_scopes.contains(scope),
                        "scope `{scope}` outside the API"
                    );
                    assert!(
                        !s.within_grant || s.granted.contains(scope),
                        "scope `{scope}` outside the grant"
                    );
                    assert!(
                        scope_allowed(&s.caps, scope),
                        "scope `{scope}` added outside capabilities"
                    );
                }
            }
            for scope in &before.scopes {
                if !after.scopes.contains(scope) {
                    assert!(
                        scope_allowed(&s.caps, scope),
                        "scope `{scope}` removed outside capabilities"
                    );
                }
            }
            let mut sorted = after.scopes.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                after.scopes.len(),
                "duplicate scopes: {:?}",
                after.scopes
            );
            assert!(
                after.claims.len() <= s.max_claims,
                "more claims than the policy allows"
            );
            let size = serde_json::to_vec(&Value::Object(after.claims.clone()))
                .unwrap()
                .len() as u64;
            assert!(
                size <= s.max_claims_size,
                "claims larger than the policy allows"
            );
        }
    }
});
