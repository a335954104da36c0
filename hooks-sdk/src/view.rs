//! The event as a borrowed view: the parts of [`Event`], read from the bytes
//! the host wrote without copying them.
//!
//! Why: in a running server what a hook's call costs is mostly memory
//! traffic, and reading the owned `Event` allocates and copies every string,
//! builds a `BTreeMap` per map and a `Value` for the config and claims, on
//! every call. An `EventView` borrows strings from the input (a string the
//! host escaped is decoded into its own `String`), keeps maps as the pairs the
//! host wrote, and keeps the config and claims as checked JSON text that
//! [`Json::parse`] deserializes straight into the hook's own types.
//! Measurements and the design: docs/event-view.md.
//!
//! It reads exactly what [`Event`]'s reader reads (`EventView::to_event` of a
//! view equals the `Event` read from the same bytes, and both refuse the same
//! input: unit tests and the `sdk_event` fuzz target check it).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::reader::{ReadError, Reader, Result, Str};
use crate::wire::{
    ABI_VERSION, Api, Client, Event, HookError, RequestContext, Secrets, TokenState, Trigger,
};

/// A string of the event: borrowed from the input unless the host escaped
/// something in it.
pub type Text<'a> = Cow<'a, str>;

/// The event a hook is called with, borrowed (see the module docs). The same
/// parts as [`Event`]; a part the hook did not declare in `reads` is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct EventView<'a> {
    pub version: u32,
    pub trigger: Trigger,
    pub request_id: Text<'a>,
    pub client: ClientView<'a>,
    pub api: ApiView<'a>,
    pub requested_scopes: Vec<Text<'a>>,
    pub granted_scopes: Vec<Text<'a>>,
    pub context: ContextView<'a>,
    pub token: TokenView<'a>,
    /// This hook's config from the manifest (`null` if none).
    pub config: Json<'a>,
    pub secrets: SecretsView<'a>,
}

/// The defaults of [`Event`]'s parts (the contract version, empty parts).
impl Default for EventView<'_> {
    fn default() -> Self {
        EventView {
            version: ABI_VERSION,
            trigger: Trigger::default(),
            request_id: Text::default(),
            client: ClientView::default(),
            api: ApiView::default(),
            requested_scopes: Vec::new(),
            granted_scopes: Vec::new(),
            context: ContextView::default(),
            token: TokenView::default(),
            config: Json::default(),
            secrets: SecretsView::default(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientView<'a> {
    pub id: Text<'a>,
    pub name: Option<Text<'a>>,
    pub metadata: Pairs<'a>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiView<'a> {
    pub identifier: Text<'a>,
    pub scopes: Vec<Text<'a>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContextView<'a> {
    pub ip: Option<Text<'a>>,
    pub user_agent: Option<Text<'a>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenView<'a> {
    pub scopes: Vec<Text<'a>>,
    /// Custom claims set so far, each as JSON text.
    pub claims: Vec<(Text<'a>, Json<'a>)>,
}

/// A string map of the event (client metadata), in the order the host wrote
/// it (sorted by key). A key written twice keeps its last value, as in
/// [`Event`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pairs<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl<'a> Pairs<'a> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The secrets granted to this hook. `Debug` never prints a value.
#[derive(Clone, Default, PartialEq)]
pub struct SecretsView<'a>(pub Pairs<'a>);

impl SecretsView<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }
}

impl fmt::Debug for SecretsView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.0.iter().map(|(k, _)| k))
            .finish()
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

    /// Deserialize into the hook's own type; it may borrow strings from the
    /// event (`&'a str` fields) where the host wrote them without escapes.
    pub fn parse<T: Deserialize<'a>>(&self) -> std::result::Result<T, HookError> {
        serde_json::from_str(self.0)
            .map_err(|e| HookError::new(format!("invalid hook config: {e}")))
    }

    /// The value as a [`Value`] (allocates the whole tree).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0).expect("checked when the event was read")
    }
}

impl<'a> EventView<'a> {
    /// Read the event the host wrote (missing parts take their defaults,
    /// unknown members are skipped), as [`Event`]'s reader does.
    pub fn read(input: &'a [u8]) -> std::result::Result<EventView<'a>, ReadError> {
        let mut r = Reader {
            bytes: input,
            pos: 0,
        };
        let mut event = EventView::default();
        r.object(|r, key| {
            match key {
                "version" => event.version = r.u32()?,
                "trigger" => event.trigger = r.trigger()?,
                "request_id" => event.request_id = text(r)?,
                "client" => event.client = client(r)?,
                "api" => event.api = api(r)?,
                "requested_scopes" => event.requested_scopes = texts(r)?,
                "granted_scopes" => event.granted_scopes = texts(r)?,
                "context" => event.context = context(r)?,
                "token" => event.token = token(r)?,
                "config" => event.config = json(r, 1)?,
                "secrets" => event.secrets = SecretsView(pairs(r)?),
                _ => json(r, 1).map(drop)?,
            }
            Ok(())
        })?;
        r.ws();
        if r.pos != input.len() {
            return Err(r.err("trailing characters"));
        }
        Ok(event)
    }

    /// The config deserialized into the hook's own type.
    pub fn config_as<T: Deserialize<'a>>(&self) -> std::result::Result<T, HookError> {
        self.config.parse()
    }

    /// A secret this hook was granted, or an error naming it.
    pub fn secret(&self, name: &str) -> std::result::Result<&str, HookError> {
        self.secrets
            .get(name)
            .ok_or_else(|| HookError::new(format!("secret `{name}` was not granted to this hook")))
    }

    /// The same event, owned (what [`Event`]'s reader gives for the same bytes).
    pub fn to_event(&self) -> Event {
        let string = |t: &Text<'_>| t.to_string();
        let strings = |v: &[Text<'_>]| v.iter().map(string).collect();
        let map = |p: &Pairs<'_>| {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        Event {
            version: self.version,
            trigger: self.trigger,
            request_id: string(&self.request_id),
            client: Client {
                id: string(&self.client.id),
                name: self.client.name.as_ref().map(string),
                metadata: map(&self.client.metadata),
            },
            api: Api {
                identifier: string(&self.api.identifier),
                scopes: strings(&self.api.scopes),
            },
            requested_scopes: strings(&self.requested_scopes),
            granted_scopes: strings(&self.granted_scopes),
            context: RequestContext {
                ip: self.context.ip.as_ref().map(string),
                user_agent: self.context.user_agent.as_ref().map(string),
            },
            token: TokenState {
                scopes: strings(&self.token.scopes),
                claims: self
                    .token
                    .claims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect::<Map<_, _>>(),
            },
            config: self.config.to_value(),
            secrets: Secrets(map(&self.secrets.0)),
        }
    }
}

fn text<'a>(r: &mut Reader<'a>) -> Result<Text<'a>> {
    Ok(match r.str()? {
        Str::Borrowed(s) => Cow::Borrowed(s),
        Str::Owned(s) => Cow::Owned(s),
    })
}

/// `null` or a string.
fn opt_text<'a>(r: &mut Reader<'a>) -> Result<Option<Text<'a>>> {
    if r.peek()? == b'n' {
        r.literal(b"null")?;
        Ok(None)
    } else {
        text(r).map(Some)
    }
}

fn texts<'a>(r: &mut Reader<'a>) -> Result<Vec<Text<'a>>> {
    let mut out = Vec::with_capacity(4);
    r.array(|r| {
        out.push(text(r)?);
        Ok(())
    })?;
    Ok(out)
}

fn key<'a>(key: Str<'a>) -> Text<'a> {
    match key {
        Str::Borrowed(s) => Cow::Borrowed(s),
        Str::Owned(s) => Cow::Owned(s),
    }
}

fn pairs<'a>(r: &mut Reader<'a>) -> Result<Pairs<'a>> {
    let mut out = Vec::with_capacity(4);
    r.object_keys(|r, k| {
        let value = text(r)?;
        out.push((key(k), value));
        Ok(())
    })?;
    Ok(Pairs(out))
}

fn client<'a>(r: &mut Reader<'a>) -> Result<ClientView<'a>> {
    let mut client = ClientView::default();
    let mut has_id = false;
    r.object(|r, key| {
        match key {
            "id" => {
                client.id = text(r)?;
                has_id = true;
            }
            "name" => client.name = opt_text(r)?,
            "metadata" => client.metadata = pairs(r)?,
            _ => json(r, 2).map(drop)?,
        }
        Ok(())
    })?;
    if !has_id {
        return Err(r.err("missing field `id` in `client`"));
    }
    Ok(client)
}

fn api<'a>(r: &mut Reader<'a>) -> Result<ApiView<'a>> {
    let mut api = ApiView::default();
    let mut has_identifier = false;
    r.object(|r, key| {
        match key {
            "identifier" => {
                api.identifier = text(r)?;
                has_identifier = true;
            }
            "scopes" => api.scopes = texts(r)?,
            _ => json(r, 2).map(drop)?,
        }
        Ok(())
    })?;
    if !has_identifier {
        return Err(r.err("missing field `identifier` in `api`"));
    }
    Ok(api)
}

fn context<'a>(r: &mut Reader<'a>) -> Result<ContextView<'a>> {
    let mut context = ContextView::default();
    r.object(|r, key| {
        match key {
            "ip" => context.ip = opt_text(r)?,
            "user_agent" => context.user_agent = opt_text(r)?,
            _ => json(r, 2).map(drop)?,
        }
        Ok(())
    })?;
    Ok(context)
}

fn token<'a>(r: &mut Reader<'a>) -> Result<TokenView<'a>> {
    let mut token = TokenView::default();
    r.object(|r, name| {
        match name {
            "scopes" => token.scopes = texts(r)?,
            "claims" => {
                // Read as an object of values inside the event and `token`.
                let depth = r.deeper(2)?;
                let mut claims = Vec::new();
                r.object_keys(|r, k| {
                    claims.push((key(k), json(r, depth)?));
                    Ok(())
                })?;
                token.claims = claims;
            }
            _ => json(r, 2).map(drop)?,
        }
        Ok(())
    })?;
    Ok(token)
}

/// A JSON value inside `depth` arrays and objects, checked as `Event`'s
/// reader checks it but not built: its text.
fn json<'a>(r: &mut Reader<'a>, depth: u32) -> Result<Json<'a>> {
    r.ws();
    let start = r.pos;
    check_value(r, depth)?;
    // SAFETY: a checked JSON value: ASCII structure, strings checked as UTF-8.
    Ok(Json(unsafe {
        std::str::from_utf8_unchecked(&r.bytes[start..r.pos])
    }))
}

fn check_value(r: &mut Reader<'_>, depth: u32) -> Result<()> {
    match r.peek()? {
        b'"' => r.str().map(drop),
        b'{' => {
            let depth = r.deeper(depth)?;
            r.object(|r, _| check_value(r, depth))
        }
        b'[' => {
            let depth = r.deeper(depth)?;
            r.array(|r| check_value(r, depth))
        }
        b't' => r.literal(b"true"),
        b'f' => r.literal(b"false"),
        b'n' => r.literal(b"null"),
        b'-' | b'0'..=b'9' => {
            let at = r.pos;
            // serde_json's own parser decides what is in range.
            r.number_text()?
                .parse::<Number>()
                .map(drop)
                .map_err(|_| ReadError {
                    what: "number out of range",
                    at,
                })
        }
        _ => Err(r.err("expected a JSON value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_event;
    use crate::testing::EventBuilder;
    use serde_json::json;

    /// The view and the owned reader agree on `text`: the same event, or both
    /// refuse it.
    fn agree(text: &[u8]) {
        let view = EventView::read(text).map(|v| v.to_event());
        let owned = read_event(text);
        match (&view, &owned) {
            (Ok(v), Ok(o)) => assert_eq!(v, o, "{}", String::from_utf8_lossy(text)),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "view {:?} and reader {:?} differ on {}",
                view.as_ref().map(drop).map_err(|e| e.to_string()),
                owned.as_ref().map(drop).map_err(|e| e.to_string()),
                String::from_utf8_lossy(text)
            ),
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
        assert!(matches!(view.client.id, Cow::Borrowed("c-1")));
        assert_eq!(view.client.name.as_deref(), Some("Client \"one\" \\ ü 🦀"));
        assert!(matches!(view.client.name, Some(Cow::Owned(_))));
        assert_eq!(view.client.metadata.get("plan"), Some("free"));
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
        assert!(EventView::default().config.is_null());
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
        assert_eq!(
            view.client.metadata.get("k"),
            Some("2"),
            "the last duplicate wins"
        );
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
