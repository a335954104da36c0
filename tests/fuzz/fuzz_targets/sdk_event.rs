//! The SDK's hand-written event reader and output writer (hooks-sdk
//! `reader.rs`, `writer.rs`), against serde_json on the same wire types.
//!
//! Input: any bytes, read as an event. Both are reached through
//! `tokenhook_sdk::guest::run_json`, the (hidden) function a hook's
//! `tokenhook_run` export calls: it reads the event with the reader, runs the
//! hook, writes its output with the writer. So the target needs no API of its
//! own and fuzzes exactly what runs in a hook. Whether the reader accepted the
//! input is whether the hook ran (on a refusal `run_json` writes an error).
//!
//! Invariants, besides "no panic":
//! - serde_json reads the input as an `Event` ⇒ the reader reads the same
//!   `Event`, unless `Mirror` (below: the reader's documented grammar,
//!   written with serde) refuses it too, i.e. a struct is written as an array
//!   or an unknown member is not a valid JSON value (reader.rs's documented
//!   differences).
//! - the reader reads it ⇒ the input is a JSON value, and serde_json reads it
//!   as the same `Event` either directly or, when serde refuses a duplicate
//!   struct field (the one documented difference this way), from that value
//!   (where, as in the reader, the last duplicate wins).
//! - `Mirror` reads it ⇒ the reader reads the same `Event`; the reader reads
//!   it ⇒ `Mirror` reads the same `Event` or refuses a duplicate field.
//! - serde_json's own serialization of an accepted event reads back the same
//!   in both.
//! - the lazy `EventView` reads the same event as the reader wherever the
//!   reader reads one; elsewhere it may read something but never panics, nor
//!   do its config accessors.
//! - the writer writes byte for byte what `serde_json::to_vec` writes, for
//!   output built from the strings and values of the event the reader read,
//!   for the input itself when it is a `HookOutput`, and for a hook error.
//!   (No read-back check: serde_json's own output of a deeply nested claim
//!   exceeds its nesting limit when read, so same bytes is the contract.)
#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokenhook_sdk::{Decision, EventView};
use tokenhook_sdk::guest::run_json;
use tokenhook_sdk::wire::{
    Api, Client, Command, DenyCode, Event, HookError, HookOutput, RequestContext, Secrets,
    TokenState, Trigger,
};

/// The event grammar reader.rs documents, written with serde: the same schema
/// as `Event`, but every struct only as an object (`flatten` takes maps
/// only), and unknown members read as `Value`s (so they must be valid JSON
/// values within serde_json's limits) rather than skipped. It refuses
/// duplicate fields, where the reader keeps the last one.
#[derive(Deserialize)]
#[serde(default)]
struct Mirror {
    version: u32,
    trigger: Trigger,
    request_id: String,
    client: MirrorClient,
    api: MirrorApi,
    requested_scopes: Vec<String>,
    granted_scopes: Vec<String>,
    context: MirrorContext,
    token: MirrorToken,
    config: Value,
    secrets: BTreeMap<String, String>,
    #[serde(flatten)]
    _unknown: Map<String, Value>,
}

impl Default for Mirror {
    fn default() -> Self {
        let e = Event::default();
        Mirror {
            version: e.version,
            trigger: e.trigger,
            request_id: e.request_id,
            client: MirrorClient::default(),
            api: MirrorApi::default(),
            requested_scopes: e.requested_scopes,
            granted_scopes: e.granted_scopes,
            context: MirrorContext::default(),
            token: MirrorToken::default(),
            config: e.config,
            secrets: e.secrets.0,
            _unknown: Map::new(),
        }
    }
}

#[derive(Deserialize, Default)]
struct MirrorClient {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(flatten)]
    _unknown: Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct MirrorApi {
    identifier: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(flatten)]
    _unknown: Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct MirrorContext {
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(flatten)]
    _unknown: Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct MirrorToken {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(flatten)]
    _unknown: Map<String, Value>,
}

impl From<Mirror> for Event {
    fn from(m: Mirror) -> Event {
        Event {
            version: m.version,
            trigger: m.trigger,
            request_id: m.request_id,
            client: Client {
                id: m.client.id,
                name: m.client.name,
                metadata: m.client.metadata,
            },
            api: Api {
                identifier: m.api.identifier,
                scopes: m.api.scopes,
            },
            requested_scopes: m.requested_scopes,
            granted_scopes: m.granted_scopes,
            context: RequestContext {
                ip: m.context.ip,
                user_agent: m.context.user_agent,
            },
            token: TokenState {
                scopes: m.token.scopes,
                claims: m.token.claims,
            },
            config: m.config,
            secrets: Secrets(m.secrets),
        }
    }
}

/// The SDK reader's result for `input`: the event, or the error it wrote.
fn read(input: &[u8]) -> Result<Event, String> {
    let seen = RefCell::new(None);
    let out = run_json(input, |event| {
        *seen.borrow_mut() = Some(event.clone());
        Ok(Decision::new())
    });
    match seen.into_inner() {
        Some(event) => {
            assert_eq!(out, b"{\"commands\":[]}", "no decision, no commands");
            Ok(event)
        }
        None => match serde_json::from_slice::<HookOutput>(&out) {
            Ok(HookOutput::Error(e)) if e.message.starts_with("cannot read event: ") => {
                Err(e.message)
            }
            other => panic!("a refused event must give a hook error, not {other:?}"),
        },
    }
}

/// The writer's bytes for `output`, through the hook path (`run_json` on an
/// empty event, the hook returning `output`).
fn write(output: &HookOutput) -> Vec<u8> {
    run_json(b"{}", |_| match output {
        HookOutput::Error(e) => Err(e.clone()),
        HookOutput::Commands(commands) => {
            let mut d = Decision::new();
            for c in commands {
                match c {
                    Command::AddScope(s) => d.add_scope(s),
                    Command::RemoveScope(s) => d.remove_scope(s),
                    Command::SetClaim { name, value } => d.set_claim(name, value),
                    Command::RemoveClaim(n) => d.remove_claim(n),
                    Command::Deny(deny) => d.deny_with(deny.error, &deny.description),
                };
            }
            Ok(d)
        }
    })
}

/// The writer writes what serde_json writes, and the host can read it.
fn check_writer(output: &HookOutput) {
    let ours = write(output);
    let serde = serde_json::to_vec(output).expect("a HookOutput serializes");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&serde),
        "writer differs from serde_json for {output:?}"
    );
    assert_eq!(ours, serde);
}

/// An output using every string and value of `event`.
fn output_from(event: &Event) -> HookOutput {
    let codes = [
        DenyCode::AccessDenied,
        DenyCode::InvalidScope,
        DenyCode::UnauthorizedClient,
    ];
    let mut d = Decision::new();
    d.deny_with(codes[event.client.id.len() % 3], &event.client.id);
    if let Some(name) = &event.client.name {
        d.remove_claim(name);
    }
    for (k, v) in event.client.metadata.iter().chain(&event.secrets.0) {
        d.set_claim(k, v);
    }
    for (k, v) in &event.token.claims {
        d.set_claim(k, v);
    }
    d.set_claim(&event.api.identifier, &event.config);
    for s in event.requested_scopes.iter().chain(&event.api.scopes) {
        d.add_scope(s);
    }
    for s in event.granted_scopes.iter().chain(&event.token.scopes) {
        d.remove_scope(s);
    }
    for s in [&event.context.ip, &event.context.user_agent]
        .into_iter()
        .flatten()
    {
        d.deny(s);
    }
    HookOutput::Commands(d.into_commands())
}

fn is_duplicate(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("duplicate field")
}

/// The lazy view reads what the reader reads: the same event, or both refuse.
/// Its config accessors never panic on what it accepted.
fn check_view(data: &[u8], ours: &Result<Event, String>) {
    let view = EventView::read(data);
    match (&view, ours) {
        (Ok(v), Ok(r)) => assert_eq!(&v.to_event(), r, "view and reader differ"),
        (Err(e), Ok(_)) => panic!("the view refused ({e}) an event the reader read"),
        // The view trusts the host's schema: it may read what the reader
        // refuses, but must not panic on it.
        (Ok(v), Err(_)) => drop(v.to_event()),
        (Err(_), Err(_)) => {}
    }
    if let Ok(view) = &view {
        let config = view.config();
        for name in ["clients", "ips", "namespace", ""] {
            if let Some(value) = config.get(name) {
                let _ = value.as_text();
                let _ = value.as_strings().map(Iterator::count);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = read(data);
    check_view(data, &ours);
    let serde = serde_json::from_slice::<Event>(data);
    let mirror = serde_json::from_slice::<Mirror>(data).map(Event::from);

    match (&ours, &serde) {
        (Ok(r), Ok(s)) => assert_eq!(r, s, "reader and serde_json read different events"),
        (Err(why), Ok(s)) => assert!(
            mirror.is_err(),
            "the reader refused ({why}) an event serde_json reads, for no documented reason: {s:?}"
        ),
        (Ok(r), Err(e)) => {
            assert!(
                is_duplicate(e),
                "the reader read an event serde_json refuses ({e}), not for a duplicate field"
            );
            // The duplicate's last value is the one the reader kept.
            let value: Value = serde_json::from_slice(data).expect("a duplicate field is JSON");
            let last: Event = serde_json::from_value(value).expect("no duplicate in a Value");
            assert_eq!(
                r, &last,
                "the reader kept other values than the last duplicates"
            );
        }
        (Err(_), Err(_)) => {}
    }
    match (&ours, &mirror) {
        (Ok(r), Ok(m)) => assert_eq!(r, m, "reader and its serde mirror differ"),
        (Err(why), Ok(m)) => {
            panic!("the reader refused ({why}) an event of its own grammar: {m:?}")
        }
        (Ok(_), Err(e)) => assert!(
            is_duplicate(e),
            "the reader read an event outside its documented grammar ({e})"
        ),
        (Err(_), Err(_)) => {}
    }
    if ours.is_ok() {
        // What the reader accepts is JSON (unknown members included).
        assert!(serde_json::from_slice::<Value>(data).is_ok());
    }

    // The event as the host writes it (serde), read back by both.
    if let Some(event) = serde.as_ref().ok().or(ours.as_ref().ok()) {
        let canonical = serde_json::to_vec(event).expect("an Event serializes");
        let back: Event = serde_json::from_slice(&canonical).expect("serde reads its own");
        assert_eq!(
            read(&canonical).as_ref(),
            Ok(&back),
            "reader on serde's output"
        );
    }

    // The writer.
    if let Ok(event) = &ours {
        check_writer(&output_from(event));
        check_writer(&HookOutput::Error(HookError::new(event.request_id.clone())));
    }
    if let Ok(output) = serde_json::from_slice::<HookOutput>(data) {
        check_writer(&output);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_writer(&HookOutput::Error(HookError::new(text)));
    }
});
