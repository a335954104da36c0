//! The event as a lazy view: [`Event`]'s parts, found in the text the host
//! wrote when the hook asks for them, and nothing built that it does not ask
//! for.
//!
//! Why: in a running server a hook's call costs mostly memory traffic, and
//! reading the owned `Event` builds every string, map and config value on
//! every call. A borrowed copy of `Event` (every part read up front, strings
//! borrowed) measured no faster, and neither did a lazy view that checked
//! the event's schema up front; a view that only scans, and looks up only
//! what the hook asks for, was 1–2 µs per hook faster (docs/event-view.md).
//!
//! [`EventView::read`] checks that the event is an object and notes where
//! each top-level part is. Nothing else is checked up front: the host wrote
//! the event with serde_json, so its shape is trusted, and a string is
//! checked (escapes, UTF-8) when the hook reads it. On any other
//! input the view reads *something* (a part of the wrong type reads as
//! empty) and never panics. Where the owned reader reads an event, the view
//! reads the same one (tested on 20,000 edited events, and by the fuzz
//! target `sdk_event`). A string is borrowed from the input unless the host
//! escaped something in it.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reader::{ReadError, Reader, Str};
use crate::wire::{
    ABI_VERSION, Api, Client, Event, HookError, RequestContext, Secrets, TokenState, Trigger,
};

/// A string of the event: borrowed from the input unless the host escaped
/// something in it.
pub type Text<'a> = Cow<'a, str>;

/// Each top-level part of the event as JSON text (the last of a duplicate
/// member, as in [`Event`]); `None` if the host did not send it.
#[derive(Clone, Copy, Default)]
struct Parts<'a> {
    request_id: Option<Json<'a>>,
    client: Option<Json<'a>>,
    api: Option<Json<'a>>,
    requested_scopes: Option<Json<'a>>,
    granted_scopes: Option<Json<'a>>,
    context: Option<Json<'a>>,
    token: Option<Json<'a>>,
    config: Option<Json<'a>>,
    secrets: Option<Json<'a>>,
}

/// The event a hook is called with, read lazily (see the module docs). A
/// part the hook did not declare in `reads` is empty.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    version: u32,
    trigger: Trigger,
    parts: Parts<'a>,
}

impl fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The owned event's Debug, which never prints a secret value.
        self.to_event().fmt(f)
    }
}

impl<'a> EventView<'a> {
    /// Note where the event's parts are (see the module docs for what is
    /// checked): one scan of the top-level object, nothing built.
    pub fn read(input: &'a [u8]) -> Result<EventView<'a>, ReadError> {
        let mut view = EventView {
            version: ABI_VERSION,
            trigger: Trigger::default(),
            parts: Parts::default(),
        };
        let root = Json(input.trim_ascii_start());
        if !root.is_object() {
            return Err(ReadError {
                what: "expected an object",
                at: input.len() - root.0.len(),
            });
        }
        for (key, value) in root.members() {
            let parts = &mut view.parts;
            let part = match &*key {
                "version" => {
                    view.version = scalar(value, |r| r.u32())?;
                    continue;
                }
                "trigger" => {
                    view.trigger = scalar(value, |r| r.trigger())?;
                    continue;
                }
                "request_id" => &mut parts.request_id,
                "client" => &mut parts.client,
                "api" => &mut parts.api,
                "requested_scopes" => &mut parts.requested_scopes,
                "granted_scopes" => &mut parts.granted_scopes,
                "context" => &mut parts.context,
                "token" => &mut parts.token,
                "config" => &mut parts.config,
                "secrets" => &mut parts.secrets,
                _ => continue,
            };
            *part = Some(value);
        }
        Ok(view)
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    pub fn request_id(&self) -> Text<'a> {
        self.parts
            .request_id
            .and_then(|id| id.as_text())
            .unwrap_or_default()
    }

    pub fn client(&self) -> ClientView<'a> {
        let mut client = ClientView::default();
        for (key, value) in self.parts.client.iter().flat_map(Json::members) {
            match &*key {
                "id" => client.id = value.as_text().unwrap_or_default(),
                "name" => client.name = value.as_text(),
                "metadata" => client.metadata = value,
                _ => {}
            }
        }
        client
    }

    pub fn api(&self) -> ApiView<'a> {
        let mut api = ApiView::default();
        for (key, value) in self.parts.api.iter().flat_map(Json::members) {
            match &*key {
                "identifier" => api.identifier = value.as_text().unwrap_or_default(),
                "scopes" => api.scopes = value,
                _ => {}
            }
        }
        api
    }

    pub fn requested_scopes(&self) -> Strings<'a> {
        Strings::of(self.parts.requested_scopes.unwrap_or_default())
    }

    pub fn granted_scopes(&self) -> Strings<'a> {
        Strings::of(self.parts.granted_scopes.unwrap_or_default())
    }

    pub fn context(&self) -> ContextView<'a> {
        let mut context = ContextView::default();
        for (key, value) in self.parts.context.iter().flat_map(Json::members) {
            match &*key {
                "ip" => context.ip = value.as_text(),
                "user_agent" => context.user_agent = value.as_text(),
                _ => {}
            }
        }
        context
    }

    pub fn token(&self) -> TokenView<'a> {
        let mut token = TokenView::default();
        for (key, value) in self.parts.token.iter().flat_map(Json::members) {
            match &*key {
                "scopes" => token.scopes = value,
                "claims" => token.claims = value,
                _ => {}
            }
        }
        token
    }

    /// This hook's config from the manifest (`null` if none).
    pub fn config(&self) -> Json<'a> {
        self.parts.config.unwrap_or_default()
    }

    /// The config deserialized into the hook's own type (it may borrow
    /// strings the host wrote without escapes).
    pub fn config_as<T: Deserialize<'a>>(&self) -> Result<T, HookError> {
        self.config().parse()
    }

    /// A secret this hook was granted, or an error naming it.
    pub fn secret(&self, name: &str) -> Result<Text<'a>, HookError> {
        self.parts
            .secrets
            .and_then(|secrets| secrets.get(name))
            .and_then(|value| value.as_text())
            .ok_or_else(|| HookError::new(format!("secret `{name}` was not granted to this hook")))
    }

    /// The same event, owned (what [`Event`]'s reader gives for the same bytes).
    pub fn to_event(&self) -> Event {
        let strings = |s: Strings<'_>| s.map(Cow::into_owned).collect();
        let pairs = |map: Option<Json<'_>>| {
            map.iter()
                .flat_map(Json::members)
                .map(|(k, v)| (k.into_owned(), v.as_text().unwrap_or_default().into_owned()))
                .collect()
        };
        let client = self.client();
        let api = self.api();
        let context = self.context();
        let token = self.token();
        Event {
            version: self.version,
            trigger: self.trigger,
            request_id: self.request_id().into_owned(),
            client: Client {
                id: client.id.into_owned(),
                name: client.name.map(Cow::into_owned),
                metadata: pairs(Some(client.metadata)),
            },
            api: Api {
                identifier: api.identifier.into_owned(),
                scopes: strings(Strings::of(api.scopes)),
            },
            requested_scopes: strings(self.requested_scopes()),
            granted_scopes: strings(self.granted_scopes()),
            context: RequestContext {
                ip: context.ip.map(Cow::into_owned),
                user_agent: context.user_agent.map(Cow::into_owned),
            },
            token: TokenState {
                scopes: strings(Strings::of(token.scopes)),
                claims: token
                    .claims()
                    .map(|(k, v)| (k.into_owned(), v.to_value()))
                    .collect::<Map<_, _>>(),
            },
            config: self.config().to_value(),
            secrets: Secrets(pairs(self.parts.secrets)),
        }
    }
}

/// Read a scalar part with the owned reader's rules (`version`, `trigger`).
fn scalar<'a, T>(
    value: Json<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, ReadError>,
) -> Result<T, ReadError> {
    read(&mut Reader {
        bytes: value.0,
        pos: 0,
    })
}

#[derive(Clone, Default)]
pub struct ClientView<'a> {
    pub id: Text<'a>,
    pub name: Option<Text<'a>>,
    metadata: Json<'a>,
}

impl<'a> ClientView<'a> {
    /// A metadata value (the first, if the host wrote a key twice; it
    /// writes each once).
    pub fn metadata_get(&self, key: &str) -> Option<Text<'a>> {
        self.metadata.get(key).and_then(|v| v.as_text())
    }

    /// Every metadata pair, in the order the host wrote them.
    pub fn metadata(&self) -> impl Iterator<Item = (Text<'a>, Text<'a>)> + use<'a> {
        self.metadata
            .members()
            .filter_map(|(k, v)| Some((k, v.as_text()?)))
    }
}

#[derive(Clone, Default)]
pub struct ApiView<'a> {
    pub identifier: Text<'a>,
    scopes: Json<'a>,
}

impl<'a> ApiView<'a> {
    pub fn scopes(&self) -> Strings<'a> {
        Strings::of(self.scopes)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ContextView<'a> {
    pub ip: Option<Text<'a>>,
    pub user_agent: Option<Text<'a>>,
}

#[derive(Clone, Copy, Default)]
pub struct TokenView<'a> {
    scopes: Json<'a>,
    claims: Json<'a>,
}

impl<'a> TokenView<'a> {
    pub fn scopes(&self) -> Strings<'a> {
        Strings::of(self.scopes)
    }

    /// Custom claims set so far, each as JSON text, in the host's order.
    pub fn claims(&self) -> Members<'a> {
        self.claims.members()
    }
}

/// A JSON array of strings of the event, read one string at a time (it ends
/// at the first element that is not a string).
#[derive(Clone)]
pub struct Strings<'a> {
    cursor: Option<Cursor<'a>>,
}

impl<'a> Strings<'a> {
    fn of(array: Json<'a>) -> Strings<'a> {
        let mut cursor = Cursor::new(array.0);
        Strings {
            cursor: cursor.eat(b'[').then_some(cursor),
        }
    }
}

impl<'a> Iterator for Strings<'a> {
    type Item = Text<'a>;

    fn next(&mut self) -> Option<Text<'a>> {
        let cursor = self.cursor.as_mut()?;
        let item = cursor.string();
        if item.is_none() || !cursor.eat(b',') {
            self.cursor = None;
        }
        item
    }
}

/// An object's members in the order written: each key and its value.
#[derive(Clone)]
pub struct Members<'a> {
    cursor: Option<Cursor<'a>>,
}

impl<'a> Iterator for Members<'a> {
    type Item = (Text<'a>, Json<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let cursor = self.cursor.as_mut()?;
        let member = cursor
            .string()
            .filter(|_| cursor.eat(b':'))
            .map(|key| (key, cursor.value()));
        if member.is_none() || !cursor.eat(b',') {
            self.cursor = None;
        }
        member
    }
}

/// A JSON value of the event as the host wrote it.
#[derive(Clone, Copy, PartialEq)]
pub struct Json<'a>(&'a [u8]);

impl Default for Json<'_> {
    fn default() -> Self {
        Json(b"null")
    }
}

impl fmt::Debug for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

impl<'a> Json<'a> {
    /// The JSON value in `text` (as the host wrote it; not checked here).
    pub fn new(text: &'a [u8]) -> Json<'a> {
        Json(text.trim_ascii())
    }

    pub fn is_null(&self) -> bool {
        self.0 == b"null"
    }

    pub fn is_object(&self) -> bool {
        self.0.first() == Some(&b'{')
    }

    /// The JSON text as the host wrote it (`None` if it is not UTF-8).
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.0).ok()
    }

    /// A member of this object (the first of its name); `None` if this is
    /// not an object or has no such member. Stops at the member it finds.
    pub fn get(&self, want: &str) -> Option<Json<'a>> {
        self.members()
            .find_map(|(key, value)| (key == want).then_some(value))
    }

    /// This object's members in the order written (none if it is not an
    /// object).
    pub fn members(&self) -> Members<'a> {
        let mut cursor = Cursor::new(self.0);
        Members {
            cursor: cursor.eat(b'{').then_some(cursor),
        }
    }

    /// This value as a string, if it is one.
    pub fn as_text(&self) -> Option<Text<'a>> {
        Cursor::new(self.0).string()
    }

    /// This value as an array of strings, if it is an array whose elements
    /// are all strings.
    pub fn as_strings(&self) -> Option<Strings<'a>> {
        let mut cursor = Cursor::new(self.0);
        if !cursor.eat(b'[') {
            return None;
        }
        if !cursor.eat(b']') {
            loop {
                if cursor.peek() != Some(b'"') {
                    return None;
                }
                cursor.value();
                if cursor.eat(b']') {
                    break;
                }
                if !cursor.eat(b',') {
                    return None;
                }
            }
        }
        Some(Strings::of(*self))
    }

    /// Deserialize into the hook's own type; it may borrow strings from the
    /// event (`&'a str` fields) where the host wrote them without escapes.
    pub fn parse<T: Deserialize<'a>>(&self) -> Result<T, HookError> {
        serde_json::from_slice(self.0)
            .map_err(|e| HookError::new(format!("invalid hook config: {e}")))
    }

    /// The value as a [`Value`] (allocates the whole tree).
    pub fn to_value(&self) -> Value {
        // The host writes values serde_json reads; anything else is null.
        serde_json::from_slice(self.0).unwrap_or(Value::Null)
    }
}

/// A position in JSON text the host wrote. It scans and trusts: strings are
/// found by their quotes, containers by counting brackets, nothing is
/// checked but the strings a hook asks for (escapes, UTF-8, by the owned
/// reader's code), and no input makes it panic or loop (every step either
/// consumes a byte or ends the scan).
#[derive(Clone, Copy)]
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8]) -> Cursor<'a> {
        Cursor { text, pos: 0 }
    }

    fn byte(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.byte() {
            self.pos += 1;
        }
        self.byte()
    }

    /// Consume `byte` if it is next (after whitespace).
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += found as usize;
        found
    }

    /// Past the string whose opening quote is at the cursor. Eight bytes
    /// per step, as the owned reader's strings: a byte at a time was most
    /// of a hook's fuel.
    fn skip_string(&mut self) {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let mut at = self.pos + 1;
        loop {
            if let Some(chunk) = self.text.get(at..at + 8) {
                let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                let quote = x ^ (LO * b'"' as u64);
                let backslash = x ^ (LO * b'\\' as u64);
                // A high bit per byte that is `"` or `\\`; the lowest is exact.
                let special = ((quote.wrapping_sub(LO) & !quote)
                    | (backslash.wrapping_sub(LO) & !backslash))
                    & HI;
                if special == 0 {
                    at += 8;
                    continue;
                }
                at += (special.trailing_zeros() / 8) as usize;
            }
            match self.text.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return;
                }
                Some(b'\\') => at += 2,
                Some(_) => at += 1,
                None => {
                    self.pos = self.text.len();
                    return;
                }
            }
        }
    }

    /// The next value, skipped.
    fn value(&mut self) -> Json<'a> {
        let start = match self.peek() {
            Some(_) => self.pos,
            None => return Json::default(),
        };
        match self.byte() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(byte) = self.byte() {
                    match byte {
                        b'"' => {
                            self.skip_string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
            }
            _ => {
                while !matches!(
                    self.byte(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\t' | b'\r')
                ) {
                    self.pos += 1;
                }
            }
        }
        Json(self.text.get(start..self.pos).unwrap_or(b"null"))
    }

    /// The next value if it is a string, decoded by the owned reader's code
    /// (borrowed unless escaped; `""` if it is not a valid string); `None`,
    /// nothing consumed, if it is not a string.
    fn string(&mut self) -> Option<Text<'a>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let mut reader = Reader {
            bytes: self.text,
            pos: self.pos,
        };
        Some(match reader.str() {
            Ok(text) => {
                self.pos = reader.pos;
                match text {
                    Str::Borrowed(s) => Cow::Borrowed(s),
                    Str::Owned(s) => Cow::Owned(s),
                }
            }
            Err(_) => {
                self.skip_string();
                Cow::Borrowed("")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_event;
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
        let mut event = crate::reader::tests::sample_event();
        event.config = json!({"clients": ["x"], "n": 7, "nested": {"deep": [1, 2]}});
        event.secrets.0.insert("hmac".into(), "s3cr\u{e9}t".into());
        event
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
        assert_eq!(view.config().get("n").and_then(|n| n.as_str()), Some("7"));
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
