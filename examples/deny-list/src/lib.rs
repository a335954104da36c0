//! Denies requests from listed clients or source addresses.
//!
//! Config:
//! ```json
//! { "clients": ["retired-client"], "ips": ["192.0.2.7", "10.0.0.0/8", "2001:db8::/32"],
//!   "description": "access from this client or network is blocked" }
//! ```
//! A listed client id, or a source IP equal to an entry or inside a CIDR
//! range, gets `access_denied`. A request without an IP is denied when IP
//! rules are configured: the rules cannot be checked, and letting it through
//! would make them optional (fail closed). With client rules only, no IP is
//! needed. A config that cannot be read stops the hook from loading (fail
//! closed): it is read once, at load (`config:` below).

use std::net::IpAddr;

use serde::Deserialize;
use tokenhook_sdk::prelude::*;
use tokenhook_sdk::view::Json;

/// The config as written. Parsed with serde, strictly: a misspelt field
/// (`ip` for `ips`) would otherwise leave a deny list silently empty. It
/// runs once, at load, so its cost is not paid per request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub clients: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// An address or a CIDR range.
#[derive(Debug, PartialEq)]
pub struct Net {
    addr: IpAddr,
    prefix: u32,
}

impl Net {
    pub fn parse(text: &str) -> Result<Net, HookError> {
        let bad = || HookError::new(format!("`{text}` is not an IP address or CIDR range"));
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u32>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u32, width: u32) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net) as u128, self.prefix, 32)
                    == masked(u32::from(ip) as u128, self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            // An IPv4-mapped IPv6 peer is matched as IPv4.
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            _ => false,
        }
    }
}

/// The deny list, prepared once from the config.
#[derive(Debug)]
pub struct Rules {
    clients: Vec<String>,
    nets: Vec<Net>,
    description: String,
}

/// Reads the config when the hook loads: a list that cannot be read stops
/// the load, so a broken deny list never runs (fail closed).
pub fn rules(config: Json<'_>) -> Result<Rules, HookError> {
    if config.is_null() {
        return Err(HookError::new(
            "deny-list needs a config with `clients` and/or `ips`",
        ));
    }
    let config: Config = config.parse()?;
    let nets = config
        .ips
        .iter()
        .map(|s| Net::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rules {
        clients: config.clients,
        nets,
        description: config
            .description
            .unwrap_or_else(|| "access from this client or network is blocked".into()),
    })
}

/// Takes the event as a lazy view (it reads only what it asks for) and the
/// rules prepared at load.
pub fn deny_list(event: &EventView<'_>, rules: &Rules) -> Result<Decision, HookError> {
    let description = rules.description.as_str();
    let client_id = event.client().id;
    let mut decision = Decision::new();
    if rules.clients.iter().any(|c| *c == client_id) {
        log(
            LogLevel::Info,
            &format!("client {client_id} is on the deny list"),
        );
        decision.deny(description);
        return Ok(decision);
    }
    if rules.nets.is_empty() {
        return Ok(decision);
    }
    let Some(ip) = event.context().ip else {
        log(
            LogLevel::Warn,
            "IP rules are configured but the request has no IP; denied",
        );
        decision.deny(description);
        return Ok(decision);
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| HookError::new(format!("request IP `{ip}` is not an address")))?;
    if let Some(net) = rules.nets.iter().find(|n| n.contains(ip)) {
        log(
            LogLevel::Info,
            &format!("source {ip} is inside {}/{}", net.addr, net.prefix),
        );
        decision.deny(description);
    }
    Ok(decision)
}

export_hook!(view: deny_list, config: rules, reads = [client, context]);

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhook_sdk::testing::{self, EventBuilder};

    fn run(event: &Event) -> Result<Decision, HookError> {
        let rules = testing::prepare(&event.config, rules)?;
        testing::with_view(event, |e| deny_list(e, &rules))
    }

    fn config() -> Value {
        json!({"clients": ["retired"], "ips": ["192.0.2.7", "10.0.0.0/8", "2001:db8::/32"]})
    }

    #[test]
    fn listed_clients_are_denied() {
        let e = EventBuilder::new()
            .client_id("retired")
            .config(config())
            .build();
        let d = run(&e).unwrap();
        assert_eq!(d.denial().unwrap().error, DenyCode::AccessDenied);
    }

    #[test]
    fn exact_ips_and_ranges_of_both_families_are_denied() {
        for ip in ["192.0.2.7", "10.1.2.3", "2001:db8::1", "::ffff:10.9.9.9"] {
            let e = EventBuilder::new().ip(ip).config(config()).build();
            assert!(run(&e).unwrap().denial().is_some(), "{ip}");
        }
        for ip in ["192.0.2.8", "11.0.0.1", "2001:db9::1"] {
            let e = EventBuilder::new().ip(ip).config(config()).build();
            assert!(run(&e).unwrap().is_empty(), "{ip}");
        }
    }

    #[test]
    fn no_ip_is_denied_when_ip_rules_are_configured() {
        let e = EventBuilder::new().config(config()).build();
        assert_eq!(
            run(&e).unwrap().denial().unwrap().error,
            DenyCode::AccessDenied
        );
    }

    #[test]
    fn without_ip_rules_no_ip_is_needed() {
        let e = EventBuilder::new()
            .config(json!({"clients": ["retired"]}))
            .build();
        assert!(run(&e).unwrap().is_empty());
    }

    #[test]
    fn a_missing_or_broken_config_fails_closed() {
        assert!(run(&EventBuilder::new().build()).is_err());
        let e = EventBuilder::new()
            .config(json!({"ips": ["10.0.0.0/33"]}))
            .build();
        assert!(run(&e).unwrap_err().message.contains("10.0.0.0/33"));
        // A misspelt field must not leave the list silently empty.
        let e = EventBuilder::new()
            .config(json!({"ip": ["10.0.0.0/8"]}))
            .build();
        assert!(run(&e).unwrap_err().message.contains("unknown field `ip`"));
        let e = EventBuilder::new().config(json!(["10.0.0.0/8"])).build();
        assert!(run(&e).is_err());
    }

    #[test]
    fn prefix_zero_matches_everything_of_its_family() {
        let any4 = Net::parse("0.0.0.0/0").unwrap();
        assert!(any4.contains("203.0.113.1".parse().unwrap()));
        assert!(!any4.contains("2001:db8::1".parse().unwrap()));
    }
}
