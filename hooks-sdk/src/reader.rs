//! The guest's reader of the event JSON: a parser written for the [`Event`]
//! schema instead of serde_json's generic one.
//!
//! Why: in a hook, reading the event was most of the call's fuel (fuel counts
//! wasm operators). serde_json drives the derived `Deserialize` through
//! visitors and looks at string bytes one at a time, twice (escapes, then
//! UTF-8); this reader scans strings eight bytes per step, checks UTF-8 only
//! in strings that are not ASCII, matches field names as borrowed slices and
//! copies each string once. It produces the same `Event` as
//! `serde_json::from_slice` for every event the host writes (unit tests
//! compare the two on events with escapes, numbers, unknown fields and
//! whitespace); the host keeps using serde (`wire.rs` stays the one schema).
//! Figures: docs/performance.md, "The hooks' own work".
//!
//! Differences from serde_json, all on input the host never writes: a
//! duplicate field keeps its last value (serde refuses it), a struct written
//! as an array of its fields is refused (serde takes it), an unknown
//! member is read as a JSON value and must be one serde_json reads into a
//! `Value` (valid UTF-8, no lone surrogates, numbers in range, within
//! serde's nesting limit; serde skips it unchecked), and error
//! messages name the byte offset rather than line and column. Numbers inside
//! `config` and claims go through serde_json's own number parser, so they are
//! the same `Number`s.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::wire::{Api, Client, Event, RequestContext, Secrets, TokenState, Trigger};

/// serde_json's nesting limit, kept so a value refused there is refused here:
/// at most 127 arrays and objects nested, counted from the event object
/// itself (serde starts with 128 levels and fails on reaching 0).
pub(crate) const MAX_DEPTH: u32 = 127;

/// Why the event could not be read, and where.
#[derive(Debug)]
pub struct ReadError {
    pub(crate) what: &'static str,
    pub(crate) at: usize,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub(crate) type Result<T> = std::result::Result<T, ReadError>;

/// Read the event JSON in `input` (missing members take their defaults,
/// unknown members are skipped).
pub fn read_event(input: &[u8]) -> Result<Event> {
    let mut r = Reader {
        bytes: input,
        pos: 0,
    };
    let mut event = Event::default();
    r.object(|r, key| {
        match key {
            "version" => event.version = r.u32()?,
            "trigger" => event.trigger = r.trigger()?,
            "request_id" => event.request_id = r.string()?,
            "client" => event.client = r.client()?,
            "api" => event.api = r.api()?,
            "requested_scopes" => event.requested_scopes = r.strings()?,
            "granted_scopes" => event.granted_scopes = r.strings()?,
            "context" => event.context = r.context()?,
            "token" => event.token = r.token()?,
            "config" => event.config = r.value(1)?,
            "secrets" => event.secrets = Secrets(r.string_map()?),
            _ => r.skip(1)?,
        }
        Ok(())
    })?;
    r.ws();
    if r.pos != r.bytes.len() {
        return Err(r.err("trailing characters"));
    }
    Ok(event)
}

fn trigger_named(name: &str, at: usize) -> Result<Trigger> {
    match name {
        "client_credentials" => Ok(Trigger::ClientCredentials),
        _ => Err(ReadError {
            what: "unknown trigger",
            at,
        }),
    }
}

#[derive(Clone)]
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

/// A string as read: borrowed from the input unless it had escapes.
pub(crate) enum Str<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Str<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Str::Borrowed(s) => s,
            Str::Owned(s) => s,
        }
    }

    pub(crate) fn into_string(self) -> String {
        match self {
            Str::Borrowed(s) => s.to_owned(),
            Str::Owned(s) => s,
        }
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn err(&self, what: &'static str) -> ReadError {
        ReadError { what, at: self.pos }
    }

    #[inline(always)]
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next significant byte, not consumed.
    #[inline(always)]
    pub(crate) fn peek(&mut self) -> Result<u8> {
        self.ws();
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end of input"))
    }

    #[inline(always)]
    pub(crate) fn expect(&mut self, byte: u8, what: &'static str) -> Result<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// An object: `member` is called with each key, positioned at its value,
    /// and must consume the value.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &str) -> Result<()>,
    ) -> Result<()> {
        self.object_keys(|r, key| member(r, key.as_str()))
    }

    /// [`Reader::object`], with each key as read (borrowed from the input
    /// unless it had escapes), for callers that keep the keys.
    #[inline(always)]
    pub(crate) fn object_keys(
        &mut self,
        mut member: impl FnMut(&mut Self, Str<'a>) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'{', "expected an object")?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek()? != b'"' {
                return Err(self.err("expected a member name"));
            }
            let key = self.str()?;
            self.expect(b':', "expected `:`")?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected `,` or `}`")),
            }
        }
    }

    /// An array: `element` is called positioned at each element.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect(b'[', "expected an array")?;
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected `,` or `]`")),
            }
        }
    }

    /// A string, with its escapes decoded. Inlined, with the escapes out of
    /// line: in wasm every call and every value passed through memory costs
    /// fuel, and this runs for every string of the event.
    #[inline(always)]
    pub(crate) fn str(&mut self) -> Result<Str<'a>> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        // The common case: no escape, the string is a slice of the input.
        match self.run()? {
            (b'"', ascii) => {
                let s = self.slice(start, ascii)?;
                self.pos += 1;
                Ok(Str::Borrowed(s))
            }
            (_, ascii) => self.escaped(start, ascii),
        }
    }

    /// The rest of a string from its first backslash (at `self.pos`).
    #[inline(never)]
    fn escaped(&mut self, start: usize, ascii: bool) -> Result<Str<'a>> {
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(self.slice(start, ascii)?);
        loop {
            // At a backslash.
            self.pos += 1;
            let escaped = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| self.err("unterminated string"))?;
            self.pos += 1;
            let c = match escaped {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => {
                    self.pos -= 1;
                    return Err(self.err("invalid escape"));
                }
            };
            out.push(c);
            let run = self.pos;
            let (end, ascii) = self.run()?;
            out.push_str(self.slice(run, ascii)?);
            if end == b'"' {
                self.pos += 1;
                return Ok(Str::Owned(out));
            }
        }
    }

    /// Advance over string content up to the next `"` or `\\`; returns that
    /// byte and whether the content passed was all ASCII. Eight bytes per
    /// step: a byte at a time was most of a hook's fuel.
    #[inline(always)]
    fn run(&mut self) -> Result<(u8, bool)> {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let mut ascii = true;
        loop {
            if let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
                let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                let quote = x ^ (LO * b'"' as u64);
                let backslash = x ^ (LO * b'\\' as u64);
                // A high bit per byte that is `"`, `\\`, a control character
                // or not ASCII; the lowest one is exact (the borrow of the
                // subtraction only marks bytes above a true one).
                let special = ((quote.wrapping_sub(LO) & !quote)
                    | (backslash.wrapping_sub(LO) & !backslash)
                    | (x.wrapping_sub(LO * 0x20) & !x)
                    | x)
                    & HI;
                if special == 0 {
                    self.pos += 8;
                    continue;
                }
                self.pos += (special.trailing_zeros() / 8) as usize;
            }
            match self.bytes.get(self.pos) {
                Some(&b @ (b'"' | b'\\')) => return Ok((b, ascii)),
                Some(&b) if b < 0x20 => return Err(self.err("control character in a string")),
                Some(&b) => {
                    ascii &= b < 0x80;
                    self.pos += 1;
                }
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    /// The string content `start..self.pos`, checked for UTF-8 unless `ascii`.
    #[inline(always)]
    fn slice(&self, start: usize, ascii: bool) -> Result<&'a str> {
        let bytes = &self.bytes[start..self.pos];
        if ascii {
            // SAFETY: every byte is below 0x80 (`run` checked), so ASCII.
            Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
        } else {
            std::str::from_utf8(bytes).map_err(|e| ReadError {
                what: "invalid UTF-8",
                at: start + e.valid_up_to(),
            })
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.err("lone leading surrogate"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.err("invalid surrogate pair"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.err("lone trailing surrogate")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid unicode escape"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("unterminated unicode escape"))?;
        let mut code = 0;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid unicode escape"))?;
            code = code * 16 + v;
        }
        self.pos += 4;
        Ok(code)
    }

    #[inline(always)]
    fn string(&mut self) -> Result<String> {
        Ok(self.str()?.into_string())
    }

    /// `null` or a string.
    #[inline(always)]
    fn opt_string(&mut self) -> Result<Option<String>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    fn strings(&mut self) -> Result<Vec<String>> {
        // Room for a typical scope list up front: growing from empty is a
        // call into the allocator's slow path.
        let mut out = Vec::with_capacity(4);
        self.array(|r| {
            out.push(r.string()?);
            Ok(())
        })?;
        Ok(out)
    }

    fn string_map(&mut self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        self.object(|r, key| {
            let value = r.string()?;
            out.insert(key.to_owned(), value);
            Ok(())
        })?;
        Ok(out)
    }

    pub(crate) fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    /// The extent of a number, checked against JSON's grammar.
    pub(crate) fn number_text(&mut self) -> Result<&'a str> {
        let start = self.pos;
        let digits = |r: &mut Self| {
            let from = r.pos;
            while r.bytes.get(r.pos).is_some_and(u8::is_ascii_digit) {
                r.pos += 1;
            }
            r.pos > from
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        if !digits(self) {
            return Err(self.err("invalid number"));
        }
        if self.bytes[int_start] == b'0' && self.pos - int_start > 1 {
            return Err(self.err("invalid number"));
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.err("invalid number"));
            }
        }
        // SAFETY: the bytes were just checked to be ASCII digits and signs.
        Ok(unsafe { std::str::from_utf8_unchecked(&self.bytes[start..self.pos]) })
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        self.peek()?;
        let at = self.pos;
        let text = self.number_text()?;
        text.parse().map_err(|_| ReadError {
            what: "expected an unsigned 32-bit integer",
            at,
        })
    }

    pub(crate) fn trigger(&mut self) -> Result<Trigger> {
        let at = self.pos;
        match self.str() {
            Ok(name) => trigger_named(name.as_str(), at),
            // serde_json also takes a unit variant written as a one-member
            // object, `{"client_credentials": null}`; tried only once a
            // string is ruled out, so the usual event pays nothing for it.
            Err(_) if self.bytes.get(self.pos) == Some(&b'{') => self.trigger_in_object(),
            Err(e) => Err(e),
        }
    }

    /// `{"<trigger>": null}`, at its `{`: exactly one member, as serde_json
    /// reads an externally tagged unit variant.
    #[inline(never)]
    fn trigger_in_object(&mut self) -> Result<Trigger> {
        self.pos += 1;
        let at = self.pos;
        let trigger = trigger_named(self.str()?.as_str(), at)?;
        self.expect(b':', "expected `:`")?;
        self.ws();
        self.literal(b"null")?;
        self.expect(b'}', "expected `}`")?;
        Ok(trigger)
    }

    fn client(&mut self) -> Result<Client> {
        let mut client = Client::default();
        let mut has_id = false;
        self.object(|r, key| {
            match key {
                "id" => {
                    client.id = r.string()?;
                    has_id = true;
                }
                "name" => client.name = r.opt_string()?,
                "metadata" => client.metadata = r.string_map()?,
                _ => r.skip(2)?,
            }
            Ok(())
        })?;
        if !has_id {
            return Err(self.err("missing field `id` in `client`"));
        }
        Ok(client)
    }

    fn api(&mut self) -> Result<Api> {
        let mut api = Api::default();
        let mut has_identifier = false;
        self.object(|r, key| {
            match key {
                "identifier" => {
                    api.identifier = r.string()?;
                    has_identifier = true;
                }
                "scopes" => api.scopes = r.strings()?,
                _ => r.skip(2)?,
            }
            Ok(())
        })?;
        if !has_identifier {
            return Err(self.err("missing field `identifier` in `api`"));
        }
        Ok(api)
    }

    fn context(&mut self) -> Result<RequestContext> {
        let mut context = RequestContext::default();
        self.object(|r, key| {
            match key {
                "ip" => context.ip = r.opt_string()?,
                "user_agent" => context.user_agent = r.opt_string()?,
                _ => r.skip(2)?,
            }
            Ok(())
        })?;
        Ok(context)
    }

    fn token(&mut self) -> Result<TokenState> {
        let mut token = TokenState::default();
        self.object(|r, key| {
            match key {
                "scopes" => token.scopes = r.strings()?,
                "claims" => token.claims = r.value_map(2)?,
                _ => r.skip(2)?,
            }
            Ok(())
        })?;
        Ok(token)
    }

    /// Any JSON value inside `depth` arrays and objects (the event's own
    /// object counts, as in serde_json).
    fn value(&mut self, depth: u32) -> Result<Value> {
        match self.peek()? {
            b'"' => self.string().map(Value::String),
            b'{' => self.value_map(depth).map(Value::Object),
            b'[' => {
                let depth = self.deeper(depth)?;
                let mut items = Vec::new();
                self.array(|r| {
                    items.push(r.value(depth)?);
                    Ok(())
                })?;
                Ok(Value::Array(items))
            }
            b't' => self.literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => {
                let at = self.pos;
                let text = self.number_text()?;
                // serde_json's own parser, so the Number is the one it makes.
                text.parse::<Number>()
                    .map(Value::Number)
                    .map_err(|_| ReadError {
                        what: "number out of range",
                        at,
                    })
            }
            _ => Err(self.err("expected a JSON value")),
        }
    }

    fn value_map(&mut self, depth: u32) -> Result<Map<String, Value>> {
        let depth = self.deeper(depth)?;
        let mut map = Map::new();
        self.object(|r, key| {
            let key = key.to_owned();
            let value = r.value(depth)?;
            map.insert(key, value);
            Ok(())
        })?;
        Ok(map)
    }

    pub(crate) fn deeper(&self, depth: u32) -> Result<u32> {
        if depth >= MAX_DEPTH {
            Err(self.err("recursion limit exceeded"))
        } else {
            Ok(depth + 1)
        }
    }

    /// Skip a value of a member this reader does not know: read as a
    /// `Value` and dropped. A skipper that builds nothing measured slower on
    /// the events the host writes (which have no unknown members): it
    /// changed how the hot paths were inlined.
    fn skip(&mut self, depth: u32) -> Result<()> {
        self.value(depth).map(drop)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::EventBuilder;
    use serde_json::json;

    /// The reader and serde_json agree on `text`.
    fn same(text: &str) -> Event {
        let ours = read_event(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        let serde: Event = serde_json::from_str(text).unwrap();
        assert_eq!(ours, serde, "{text}");
        ours
    }

    /// An event with something of every kind: escapes, non-ASCII and
    /// control characters, numbers at the edges, nested claims, a secret.
    pub(crate) fn sample_event() -> Event {
        let mut event = EventBuilder::new()
            .client_id("c-1")
            .client_name("Client \"one\" \\ ü 🦀")
            .client_metadata("tenant", "acme\n\t\u{1}")
            .client_metadata("plan", "free")
            .requested_scopes(["read:orders"])
            .scopes(["read:orders", "write:orders"])
            .claim(
                "https://x/n",
                json!([
                    1,
                    -2,
                    3.5,
                    1e300,
                    18446744073709551615u64,
                    -9223372036854775808i64,
                    0.1
                ]),
            )
            .claim(
                "https://x/o",
                json!({"a": {"b": [true, false, null, "é"]}, "": ""}),
            )
            .ip("2001:db8::1")
            .user_agent("curl/8")
            .config(json!({"namespace": "https://example.com/", "n": [0, -0.0, 12e-3]}))
            .build();
        event.secrets.0.insert("key".into(), "s3cr\u{0}t".into());
        event
    }

    #[test]
    fn reads_what_serde_reads() {
        let event = sample_event();
        same(&serde_json::to_string(&event).unwrap());
        same(&serde_json::to_string_pretty(&event).unwrap());
    }

    #[test]
    fn escapes_and_unknown_members() {
        same(
            r#"{"request_id":"a\u00e9\ud83e\udd80\/\b\f\n\r\t\"\\","future":{"x":[1,{"y":null}]},"client":{"id":"\u0041","name":null,"extra":1},"context":{"ip":null},"config":"x"}"#,
        );
        same(" { } ");
        same(
            r#"{"version":1,"trigger":"client_credentials","config":null,"token":{"claims":{"a":1,"a":2}}}"#,
        );
    }

    #[test]
    fn every_position_of_a_special_byte_in_a_string() {
        // The eight-byte steps of `run`: a quote, escape, control or
        // non-ASCII character at each offset, in strings of many lengths.
        for len in 0..20 {
            for at in 0..len {
                for special in ["\"", "\\", "\n", "\u{1f}", "é", "🦀", "\u{7f}"] {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz"[..len].into();
                    s.insert_str(at, special);
                    let event = EventBuilder::new().client_id(&s).build();
                    let read = same(&serde_json::to_string(&event).unwrap());
                    assert_eq!(read.client.id, s);
                }
            }
        }
        let end = format!(r#"{{"request_id":"{}"#, "x".repeat(13));
        assert!(read_event(end.as_bytes()).is_err());
    }

    /// Random edits of real events: whenever serde_json reads one, this
    /// reader reads the same `Event`; whenever this reader reads one, so does
    /// serde_json (or serde refuses a duplicate field, a documented
    /// difference). Deterministic (a fixed xorshift seed).
    #[test]
    fn agrees_with_serde_on_edited_events() {
        let seeds = [
            serde_json::to_string(
                &EventBuilder::new()
                    .client_metadata("tenant", "acme")
                    .claim("https://x/c", json!({"a": [1, -2.5e3, true, null, "é\n"]}))
                    .ip("203.0.113.9")
                    .config(json!({"clients": ["retired"], "ips": ["10.0.0.0/8"]}))
                    .build(),
            )
            .unwrap(),
            r#"{"config":{"a":"\u00e9\ud83e\udd80"},"x":{"y":[0.1,1e400]},"version":1}"#.into(),
        ];
        let alphabet: &[u8] = b"{}[]\":,\\ntrue-0123456789.eE+u\x00\x1f\xc3\xa9 abf/";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        let mut both = 0;
        for i in 0..20_000 {
            let mut bytes = seeds[i % seeds.len()].clone().into_bytes();
            for _ in 0..1 + next() % 3 {
                let at = next() % (bytes.len() + 1);
                let byte = alphabet[next() % alphabet.len()];
                match next() % 3 {
                    0 if at < bytes.len() => drop(bytes.remove(at)),
                    1 if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.insert(at, byte),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            match (read_event(&bytes), serde_json::from_slice::<Event>(&bytes)) {
                (Ok(ours), Ok(serde)) => {
                    assert_eq!(ours, serde, "{text}");
                    both += 1;
                }
                (Ok(_), Err(e)) => {
                    assert!(e.to_string().contains("duplicate field"), "{e}: {text}")
                }
                _ => {}
            }
        }
        assert!(both > 2_000, "only {both} edited events were valid");
    }

    /// Found writing the `sdk_event` fuzz target (its seed
    /// `trigger_as_object.json` fails the old reader): serde_json also reads
    /// a unit variant written as `{"name": null}`.
    #[test]
    fn trigger_as_a_one_member_object() {
        same(r#"{"trigger":{"client_credentials":null}}"#);
        same(r#"{"trigger" : { "client_credentials" : null } ,"version":1}"#);
        for bad in [
            r#"{"trigger":{}}"#,
            r#"{"trigger":{"password":null}}"#,
            r#"{"trigger":{"client_credentials":1}}"#,
            r#"{"trigger":{"client_credentials":null,"x":null}}"#,
            r#"{"trigger":{{"client_credentials":null}:null}}"#,
        ] {
            assert!(read_event(bad.as_bytes()).is_err(), "{bad}");
            assert!(serde_json::from_str::<Event>(bad).is_err(), "serde: {bad}");
        }
    }

    /// Found writing the `sdk_event` fuzz target: the nesting limit counts
    /// from the event object, as serde_json counts it, at every place a value
    /// can nest (it counted from the value: two or three levels more than
    /// serde allows).
    #[test]
    fn nesting_limit_is_serdes_at_every_place() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let places: [fn(&str) -> String; 5] = [
            |v| format!(r#"{{"config":{v}}}"#),
            |v| format!(r#"{{"token":{{"claims":{{"a":{v}}}}}}}"#),
            |v| format!(r#"{{"unknown":{v}}}"#),
            |v| format!(r#"{{"client":{{"id":"c","unknown":{v}}}}}"#),
            |v| format!(r#"{{"token":{{"unknown":{v}}}}}"#),
        ];
        for place in places {
            for n in 120..130 {
                let text = place(&nest(n));
                // Unknown members: the limit of reading them as a `Value`.
                let serde_ok = serde_json::from_str::<Event>(&text).is_ok()
                    && serde_json::from_str::<Value>(&text).is_ok();
                assert_eq!(read_event(text.as_bytes()).is_ok(), serde_ok, "{n}: {text}");
            }
        }
    }

    #[test]
    fn refuses_what_serde_refuses() {
        for bad in [
            "",
            "{",
            r#"{"version":-1}"#,
            r#"{"version":1.0}"#,
            r#"{"version":4294967296}"#,
            r#"{"trigger":"password"}"#,
            r#"{"client":{}}"#,
            r#"{"api":{"scopes":[]}}"#,
            r#"{"request_id":null}"#,
            r#"{"requested_scopes":["a",]}"#,
            r#"{"config":01}"#,
            r#"{"config":"\x"}"#,
            r#"{"config":"\ud800"}"#,
            "{\"config\":\"a\u{1}\"}",
            r#"{"config":tru}"#,
            r#"{} x"#,
            r#"{"a":1,}"#,
        ] {
            assert!(read_event(bad.as_bytes()).is_err(), "{bad}");
            assert!(serde_json::from_str::<Event>(bad).is_err(), "serde: {bad}");
        }
        assert!(read_event(b"{\"request_id\":\"\xff\"}").is_err());
        // serde also takes a struct as an array of its fields; the host
        // never writes one, and this reader refuses it.
        assert!(read_event(b"[]").is_err());
        let deep = format!("{{\"config\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(read_event(deep.as_bytes()).is_err());
        assert!(serde_json::from_str::<Event>(&deep).is_err());
    }
}
