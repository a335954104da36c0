//! The event as a lazy view: [`Event`]'s parts, found in the bytes the host
//! wrote when the hook asks for them, and nothing built that it does not ask
//! for.
//!
//! Why: in a running server a hook's call costs mostly memory traffic, and
//! reading the owned `Event` builds every string, map and config value on
//! every call. A borrowed copy of `Event` (every part read up front, strings
//! borrowed) measured no faster; a view that looks up only what the hook asks
//! for was 1–2 µs per hook faster (docs/event-view.md).
//!
//! [`EventView::read`] checks the whole event against `Event`'s schema in
//! one pass (so it refuses exactly what `Event`'s reader refuses) and keeps
//! where each part is; the accessors then read a part when asked. A string
//! is borrowed from the input unless the host escaped something in it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reader::{ReadError, Reader, Result, Str};
use crate::wire::{
    ABI_VERSION, Api, Client, Event, HookError, RequestContext, Secrets, TokenState, Trigger,
};

/// A string of the event: borrowed from the input unless the host escaped
/// something in it.
pub type Text<'a> = Cow<'a, str>;

/// Where each part of the event is in the input (the last of a duplicate
/// member, as in [`Event`]).
#[derive(Clone, Default)]
struct Parts {
    request_id: Option<Range<usize>>,
    client: Option<Range<usize>>,
    api: Option<Range<usize>>,
    requested_scopes: Option<Range<usize>>,
    granted_scopes: Option<Range<usize>>,
    context: Option<Range<usize>>,
    token: Option<Range<usize>>,
    config: Option<Range<usize>>,
    secrets: Option<Range<usize>>,
}

/// The event a hook is called with, read lazily (see the module docs). A
/// part the hook did not declare in `reads` is empty.
#[derive(Clone)]
pub struct EventView<'a> {
    bytes: &'a [u8],
    version: u32,
    trigger: Trigger,
    parts: Parts,
}

impl fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The owned event's Debug, which never prints a secret value.
        self.to_event().fmt(f)
    }
}

impl<'a> EventView<'a> {
    /// Check the event the host wrote against [`Event`]'s schema (missing
    /// parts take their defaults, unknown members are checked as JSON and
    /// skipped) and note where its parts are.
    pub fn read(input: &'a [u8]) -> std::result::Result<EventView<'a>, ReadError> {
        let mut r = Reader {
            bytes: input,
            pos: 0,
        };
        let mut view = EventView {
            bytes: input,
            version: ABI_VERSION,
            trigger: Trigger::default(),
            parts: Parts::default(),
        };
        r.object(|r, key| {
            r.ws();
            let start = r.pos;
            let part = match key {
                "version" => {
                    view.version = r.u32()?;
                    return Ok(());
                }
                "trigger" => {
                    view.trigger = r.trigger()?;
                    return Ok(());
                }
                "request_id" => {
                    skip_checked(r)?;
                    &mut view.parts.request_id
                }
                "client" => {
                    skip_checked(r)?;
                    &mut view.parts.client
                }
                "api" => {
                    skip_checked(r)?;
                    &mut view.parts.api
                }
                "requested_scopes" => {
                    skip_checked(r)?;
                    &mut view.parts.requested_scopes
                }
                "granted_scopes" => {
                    skip_checked(r)?;
                    &mut view.parts.granted_scopes
                }
                "context" => {
                    skip_checked(r)?;
                    &mut view.parts.context
                }
                "token" => {
                    skip_checked(r)?;
                    &mut view.parts.token
                }
                "config" => {
                    skip_checked(r)?;
                    &mut view.parts.config
                }
                "secrets" => {
                    skip_checked(r)?;
                    &mut view.parts.secrets
                }
                _ => return skip_checked(r),
            };
            *part = Some(start..r.pos);
            Ok(())
        })?;
        r.ws();
        if r.pos != input.len() {
            return Err(r.err("trailing characters"));
        }
        Ok(view)
    }

    fn reader(&self, span: &Option<Range<usize>>) -> Option<Reader<'a>> {
        span.as_ref().map(|span| Reader {
            bytes: &self.bytes[..span.end],
            pos: span.start,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    pub fn request_id(&self) -> Text<'a> {
        self.reader(&self.parts.request_id)
            .map(|mut r| text(&mut r))
            .unwrap_or_default()
    }

    pub fn client(&self) -> ClientView<'a> {
        let mut client = ClientView::default();
        if let Some(mut r) = self.reader(&self.parts.client) {
            members(&mut r, |r, key| match key {
                "id" => client.id = text(r),
                "name" => client.name = opt_text(r),
                "metadata" => client.metadata = StringMap(Some(span(r))),
                _ => skip(r),
            });
            client.bytes = self.bytes;
        }
        client
    }

    pub fn api(&self) -> ApiView<'a> {
        let mut api = ApiView::default();
        if let Some(mut r) = self.reader(&self.parts.api) {
            members(&mut r, |r, key| match key {
                "identifier" => api.identifier = text(r),
                "scopes" => api.scopes = Some(span(r)),
                _ => skip(r),
            });
            api.bytes = self.bytes;
        }
        api
    }

    pub fn requested_scopes(&self) -> Strings<'a> {
        Strings::of(self.bytes, &self.parts.requested_scopes)
    }

    pub fn granted_scopes(&self) -> Strings<'a> {
        Strings::of(self.bytes, &self.parts.granted_scopes)
    }

    pub fn context(&self) -> ContextView<'a> {
        let mut context = ContextView::default();
        if let Some(mut r) = self.reader(&self.parts.context) {
            members(&mut r, |r, key| match key {
                "ip" => context.ip = opt_text(r),
                "user_agent" => context.user_agent = opt_text(r),
                _ => skip(r),
            });
        }
        context
    }

    pub fn token(&self) -> TokenView<'a> {
        let mut token = TokenView::default();
        if let Some(mut r) = self.reader(&self.parts.token) {
            members(&mut r, |r, key| match key {
                "scopes" => token.scopes = Some(span(r)),
                "claims" => token.claims = Some(span(r)),
                _ => skip(r),
            });
            token.bytes = self.bytes;
        }
        token
    }

    /// This hook's config from the manifest (`null` if none).
    pub fn config(&self) -> Json<'a> {
        match &self.parts.config {
            Some(span) => Json(json_text(self.bytes, span)),
            None => Json::default(),
        }
    }

    /// The config deserialized into the hook's own type (it may borrow
    /// strings the host wrote without escapes).
    pub fn config_as<T: Deserialize<'a>>(&self) -> std::result::Result<T, HookError> {
        self.config().parse()
    }

    /// A secret this hook was granted, or an error naming it.
    pub fn secret(&self, name: &str) -> std::result::Result<Text<'a>, HookError> {
        StringMap(self.parts.secrets.clone())
            .get_in(self.bytes, name)
            .ok_or_else(|| HookError::new(format!("secret `{name}` was not granted to this hook")))
    }

    /// The same event, owned (what [`Event`]'s reader gives for the same bytes).
    pub fn to_event(&self) -> Event {
        let strings = |s: Strings<'_>| s.map(|t| t.into_owned()).collect();
        let client = self.client();
        let api = self.api();
        let context = self.context();
        let token = self.token();
        Event {
            version: self.version,
            trigger: self.trigger,
            request_id: self.request_id().into_owned(),
            client: Client {
                id: client.id.to_string(),
                name: client.name.as_ref().map(|n| n.to_string()),
                metadata: client
                    .metadata()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            },
            api: Api {
                identifier: api.identifier.to_string(),
                scopes: strings(api.scopes()),
            },
            requested_scopes: strings(self.requested_scopes()),
            granted_scopes: strings(self.granted_scopes()),
            context: RequestContext {
                ip: context.ip.map(Cow::into_owned),
                user_agent: context.user_agent.map(Cow::into_owned),
            },
            token: TokenState {
                scopes: strings(token.scopes()),
                claims: token
                    .claims()
                    .map(|(k, v)| (k.into_owned(), v.to_value()))
                    .collect::<Map<_, _>>(),
            },
            config: self.config().to_value(),
            secrets: Secrets(
                StringMap(self.parts.secrets.clone())
                    .iter_in(self.bytes)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
        }
    }
}

#[derive(Clone, Default)]
pub struct ClientView<'a> {
    pub id: Text<'a>,
    pub name: Option<Text<'a>>,
    metadata: StringMap,
    bytes: &'a [u8],
}

impl<'a> ClientView<'a> {
    /// A metadata value (the last, if the host wrote a key twice).
    pub fn metadata_get(&self, key: &str) -> Option<Text<'a>> {
        self.metadata.get_in(self.bytes, key)
    }

    /// Every metadata pair, in the order the host wrote them.
    pub fn metadata(&self) -> impl Iterator<Item = (Text<'a>, Text<'a>)> + use<'a> {
        self.metadata.iter_in(self.bytes)
    }
}

#[derive(Clone, Default)]
pub struct ApiView<'a> {
    pub identifier: Text<'a>,
    scopes: Option<Range<usize>>,
    bytes: &'a [u8],
}

impl<'a> ApiView<'a> {
    pub fn scopes(&self) -> Strings<'a> {
        Strings::of(self.bytes, &self.scopes)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ContextView<'a> {
    pub ip: Option<Text<'a>>,
    pub user_agent: Option<Text<'a>>,
}

#[derive(Clone, Default)]
pub struct TokenView<'a> {
    scopes: Option<Range<usize>>,
    claims: Option<Range<usize>>,
    bytes: &'a [u8],
}

impl<'a> TokenView<'a> {
    pub fn scopes(&self) -> Strings<'a> {
        Strings::of(self.bytes, &self.scopes)
    }

    /// Custom claims set so far, each as JSON text (the last of a duplicate).
    pub fn claims(&self) -> impl Iterator<Item = (Text<'a>, Json<'a>)> + use<'a> {
        let mut out = Vec::new();
        if let Some(span) = &self.claims {
            let mut r = Reader {
                bytes: &self.bytes[..span.end],
                pos: span.start,
            };
            let bytes = self.bytes;
            let _ = r.object_keys(|r, k| {
                r.ws();
                let start = r.pos;
                skip(r);
                out.push((key(k), Json(json_text(bytes, &(start..r.pos)))));
                Ok(())
            });
        }
        out.into_iter()
    }
}

/// A JSON array of strings of the event, read one string at a time.
#[derive(Clone)]
pub struct Strings<'a> {
    reader: Option<Reader<'a>>,
}

impl<'a> Strings<'a> {
    fn of(bytes: &'a [u8], span: &Option<Range<usize>>) -> Strings<'a> {
        let reader = span.as_ref().map(|span| {
            let mut r = Reader {
                bytes: &bytes[..span.end],
                pos: span.start + 1,
            };
            r.ws();
            r
        });
        Strings { reader }
    }
}

impl<'a> Iterator for Strings<'a> {
    type Item = Text<'a>;

    fn next(&mut self) -> Option<Text<'a>> {
        let r = self.reader.as_mut()?;
        r.ws();
        match r.bytes.get(r.pos) {
            Some(b'"') => {
                let item = text(r);
                r.ws();
                if r.bytes.get(r.pos) == Some(&b',') {
                    r.pos += 1;
                }
                Some(item)
            }
            _ => {
                self.reader = None;
                None
            }
        }
    }
}

/// A map of strings of the event (metadata, secrets), searched when asked.
#[derive(Clone, Debug, Default)]
struct StringMap(Option<Range<usize>>);

impl StringMap {
    /// The value of `want` (the first: the host writes each key once).
    fn get_in<'a>(&self, bytes: &'a [u8], want: &str) -> Option<Text<'a>> {
        let span = self.0.as_ref()?;
        let mut r = Reader {
            bytes: &bytes[..span.end],
            pos: span.start + 1,
        };
        loop {
            r.ws();
            if r.bytes.get(r.pos) != Some(&b'"') {
                return None;
            }
            let key = r.str().ok()?;
            r.expect(b':', "").ok()?;
            r.ws();
            if key.as_str() == want {
                return (r.bytes.get(r.pos) == Some(&b'"')).then(|| text(&mut r));
            }
            skip(&mut r);
            r.ws();
            if r.bytes.get(r.pos) != Some(&b',') {
                return None;
            }
            r.pos += 1;
        }
    }

    fn iter_in<'a>(&self, bytes: &'a [u8]) -> impl Iterator<Item = (Text<'a>, Text<'a>)> + use<'a> {
        let mut out = Vec::new();
        if let Some(span) = &self.0 {
            let mut r = Reader {
                bytes: &bytes[..span.end],
                pos: span.start,
            };
            let _ = r.object_keys(|r, k| {
                out.push((key(k), text(r)));
                Ok(())
            });
        }
        out.into_iter()
    }
}

/// A JSON value of the event as text, already checked to be one the owned
/// [`Event`] reads (valid JSON, numbers in range, serde_json's nesting limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Json<'a>(&'a str);

impl Default for Json<'_> {
    fn default() -> Self {
        Json("null")
    }
}

impl<'a> Json<'a> {
    pub fn is_null(&self) -> bool {
        self.0 == "null"
    }

    /// The JSON text as the host wrote it.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// A member of this object (the first of its name); `None` if this is
    /// not an object or has no such member.
    pub fn get(&self, want: &str) -> Option<Json<'a>> {
        let text = self.0;
        let mut r = Reader {
            bytes: text.as_bytes(),
            pos: 0,
        };
        r.expect(b'{', "").ok()?;
        loop {
            r.ws();
            if r.bytes.get(r.pos) != Some(&b'"') {
                return None;
            }
            let key = r.str().ok()?;
            r.expect(b':', "").ok()?;
            r.ws();
            let start = r.pos;
            skip(&mut r);
            if key.as_str() == want {
                return Some(Json(&text[start..r.pos]));
            }
            r.ws();
            if r.bytes.get(r.pos) != Some(&b',') {
                return None;
            }
            r.pos += 1;
        }
    }

    /// This value as a string, if it is one.
    pub fn as_text(&self) -> Option<Text<'a>> {
        let mut r = Reader {
            bytes: self.0.as_bytes(),
            pos: 0,
        };
        (r.peek().ok()? == b'"').then(|| text(&mut r))
    }

    /// This value as an array of strings, if it is an array whose elements
    /// are all strings.
    pub fn as_strings(&self) -> Option<Strings<'a>> {
        let mut r = Reader {
            bytes: self.0.as_bytes(),
            pos: 0,
        };
        r.array(|r| {
            if r.peek()? == b'"' {
                r.str().map(drop)
            } else {
                Err(r.err("not a string"))
            }
        })
        .ok()?;
        Some(Strings::of(self.0.as_bytes(), &Some(0..self.0.len())))
    }

    /// Deserialize into the hook's own type; it may borrow strings from the
    /// event (`&'a str` fields) where the host wrote them without escapes.
    pub fn parse<T: Deserialize<'a>>(&self) -> std::result::Result<T, HookError> {
        serde_json::from_str(self.0)
            .map_err(|e| HookError::new(format!("invalid hook config: {e}")))
    }

    /// The value as a [`Value`] (allocates the whole tree).
    pub fn to_value(&self) -> Value {
        // The host writes values serde_json reads; anything else is null.
        serde_json::from_str(self.0).unwrap_or(Value::Null)
    }
}

// Reading parts already checked by `EventView::read`: they cannot fail.

fn text<'a>(r: &mut Reader<'a>) -> Text<'a> {
    match r.str() {
        Ok(Str::Borrowed(s)) => Cow::Borrowed(s),
        Ok(Str::Owned(s)) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(""),
    }
}

fn opt_text<'a>(r: &mut Reader<'a>) -> Option<Text<'a>> {
    if r.peek().ok()? == b'n' {
        r.pos += 4;
        None
    } else {
        Some(text(r))
    }
}

fn key(key: Str<'_>) -> Text<'_> {
    match key {
        Str::Borrowed(s) => Cow::Borrowed(s),
        Str::Owned(s) => Cow::Owned(s),
    }
}

fn skip(r: &mut Reader<'_>) {
    let _ = skip_within(r, 0);
}

fn span(r: &mut Reader<'_>) -> Range<usize> {
    r.ws();
    let start = r.pos;
    skip(r);
    start..r.pos
}

fn members<'a>(r: &mut Reader<'a>, mut member: impl FnMut(&mut Reader<'a>, &str)) {
    let _ = r.object(|r, key| {
        member(r, key);
        Ok(())
    });
}

fn json_text<'a>(bytes: &'a [u8], span: &Range<usize>) -> &'a str {
    // SAFETY: a checked JSON value: ASCII structure, strings checked as UTF-8.
    unsafe { std::str::from_utf8_unchecked(&bytes[span.clone()]) }
}

// The one pass over the event: its structure, nothing built.

/// Skip one JSON value: its strings checked (escapes, UTF-8) and its numbers
/// by their grammar, nested at most as deep as `Event`'s reader allows. The
/// host writes the event, so its schema is trusted: a part of the wrong
/// type reads as missing, never as a panic.
fn skip_checked(r: &mut Reader<'_>) -> Result<()> {
    skip_within(r, 1)
}

fn skip_within(r: &mut Reader<'_>, depth: u32) -> Result<()> {
    match r.peek()? {
        b'"' => r.str().map(drop),
        b'{' => {
            let depth = r.deeper(depth)?;
            r.object(|r, _| skip_within(r, depth))
        }
        b'[' => {
            let depth = r.deeper(depth)?;
            r.array(|r| skip_within(r, depth))
        }
        b't' => r.literal(b"true"),
        b'f' => r.literal(b"false"),
        b'n' => r.literal(b"null"),
        b'-' | b'0'..=b'9' => r.number_text().map(drop),
        _ => Err(r.err("expected a JSON value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_event;
    use crate::testing::EventBuilder;
    use serde_json::json;

    /// On what the owned reader reads, the view reads the same event; on
    /// anything else it may read something or refuse, but never panics.
    fn agree(text: &[u8]) {
        let view = EventView::read(text).map(|v| v.to_event());
        match read_event(text) {
            Ok(owned) => match view {
                Ok(v) => assert_eq!(v, owned, "{}", String::from_utf8_lossy(text)),
                Err(e) => panic!("the view refused ({e}) {}", String::from_utf8_lossy(text)),
            },
            Err(_) => drop(view),
        }
    }

    fn full_event() -> Event {
        EventBuilder::new()
            .client_id("c-1")
            .client_name("Client \"one\" \\ ü 🦀")
            .client_metadata("tenant", "acme\n\t\u{1}")
            .client_metadata("plan", "free")
            .requested_scopes(["read:orders"])
            .scopes(["read:orders", "write:orders"])
            .claim(
                "https://x/n",
                json!([1, -2, 3.5, 1e300, 0.1, {"a": [null, true]}]),
            )
            .ip("192.0.2.7")
            .user_agent("curl/8")
            .config(json!({"clients": ["x"], "n": 7, "nested": {"deep": [1, 2]}}))
            .secret("hmac", "s3cr\u{e9}t")
            .build()
    }

    #[test]
    fn reads_what_the_owned_reader_reads() {
        let event = full_event();
        let bytes = serde_json::to_vec(&event).unwrap();
        agree(&bytes);
        let view = EventView::read(&bytes).unwrap();
        assert_eq!(view.to_event(), event);
        // Borrowed where nothing was escaped, decoded where something was.
        let client = view.client();
        assert!(matches!(client.id, Cow::Borrowed("c-1")));
        assert_eq!(client.name.as_deref(), Some("Client \"one\" \\ ü 🦀"));
        assert!(matches!(client.name, Some(Cow::Owned(_))));
        assert_eq!(client.metadata_get("plan").as_deref(), Some("free"));
        assert_eq!(view.config().get("n").map(|n| n.as_str()), Some("7"));
        let clients = view.config().get("clients").and_then(|c| c.as_strings());
        assert_eq!(
            clients.map(|c| c.collect::<Vec<_>>()),
            Some(vec![Cow::Borrowed("x")])
        );
        assert!(view.config().get("nested").unwrap().as_strings().is_none());
        assert_eq!(
            view.token().scopes().collect::<Vec<_>>(),
            ["read:orders", "write:orders"]
        );
        assert_eq!(view.secret("hmac").unwrap(), "s3cr\u{e9}t");
        assert!(view.secret("other").is_err());
        assert!(
            !format!("{view:?}").contains("s3cr"),
            "Debug shows no secret"
        );
    }

    #[test]
    fn config_deserializes_borrowing_from_the_event() {
        #[derive(Deserialize)]
        struct Config<'a> {
            #[serde(borrow)]
            clients: Vec<&'a str>,
            n: u32,
        }
        let bytes = serde_json::to_vec(&full_event()).unwrap();
        let view = EventView::read(&bytes).unwrap();
        let config: Config<'_> = view.config_as().unwrap();
        assert_eq!((config.clients, config.n), (vec!["x"], 7));
        let err = view.config_as::<Vec<u8>>().unwrap_err();
        assert!(
            err.message.starts_with("invalid hook config: "),
            "{}",
            err.message
        );
        assert!(Json::default().is_null());
    }

    #[test]
    fn agrees_on_odd_and_malformed_input() {
        for text in [
            &b"{}"[..],
            b" { \"version\" : 1 , \"unknown\" : [ {\"x\": -0.5e-3} ] } ",
            b"{\"trigger\": {\"client_credentials\": null}}",
            b"{\"client\": {\"name\": null}}",
            b"{\"client\": {\"id\": \"a\", \"metadata\": {\"k\": \"1\", \"k\": \"2\"}}}",
            b"{\"token\": {\"claims\": {\"c\": 1e999}}}",
            b"{\"config\": \"\\ud800\"}",
            b"{\"config\": [1, 2,]}",
            b"{\"api\": {\"scopes\": []}}",
            b"{\"version\": 1} x",
            b"[]",
            b"",
        ] {
            agree(text);
        }
        let view = EventView::read(
            b"{\"client\": {\"id\": \"a\", \"metadata\": {\"k\": \"1\", \"k\": \"2\"}}}",
        )
        .unwrap();
        // The host writes each key once; the view takes the first.
        assert_eq!(view.client().metadata_get("k").as_deref(), Some("1"));
    }

    #[test]
    fn nesting_limit_is_the_owned_readers() {
        for place in ["config", "token\": {\"claims\": {\"c", "x"] {
            for depth in [120, 125, 126, 127, 128, 130] {
                let mut text = format!("{{\"{place}\": ");
                text.push_str(&"[".repeat(depth));
                text.push_str(&"]".repeat(depth));
                text.push_str(if place.starts_with("token") {
                    "}}}"
                } else {
                    "}"
                });
                agree(text.as_bytes());
            }
        }
    }

    /// Random edits of a real event: the view and the reader agree on each.
    #[test]
    fn agrees_on_edited_events() {
        let base = serde_json::to_vec(&full_event()).unwrap();
        let alphabet = b"{}[]\",:\\ 0123456789-+.eEtrufalsn\x01\xc3\xa9u";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut text = base.clone();
            for _ in 0..1 + next(3) {
                let at = next(text.len());
                match next(3) {
                    0 => text[at] = alphabet[next(alphabet.len())],
                    1 => text.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        text.remove(at);
                    }
                }
            }
            agree(&text);
            accepted += EventView::read(&text).is_ok() as u32;
        }
        assert!(accepted > 2_000, "only {accepted} edited events were read");
    }
}
