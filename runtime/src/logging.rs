//! Log lines: one JSON object per line on stderr, in the shape of
//! tracing-subscriber's JSON format (`timestamp`, `level`, `fields`, `target`),
//! written by a formatter made for the request path.
//!
//! Why not tracing-subscriber's own `json()`: it gathers an event's fields
//! into a map of `serde_json::Value`s and writes through a serializer that
//! checks UTF-8 on every piece, ≈ 2.5 µs per line here; a token request with
//! three hooks logs five lines. [`JsonLines`] writes each field straight into
//! the line buffer. And [`batched`] hands a request's lines to the kernel in
//! one `write(2)` instead of one each. `docs/performance.md` has the A/B.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Structured JSON logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_env_filter(filter)
        .with_writer(StderrLines)
        .try_init();
}

/// The event formatter: `{"timestamp":…,"level":…,"fields":{…},"target":…}`,
/// fields in the order the call site names them, strings escaped as JSON.
/// Spans are not printed (the issuer logs request ids as fields).
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write!(
            writer,
            "{}",
            humantime::format_rfc3339_micros(SystemTime::now())
        )?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(level_name(meta.level()))?;
        writer.write_str("\",\"fields\":{")?;
        let mut fields = JsonFields {
            out: &mut writer,
            first: true,
            scratch: String::new(),
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("},\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// Writes an event's fields as JSON members: strings and `Debug`/`Display`
/// values as JSON strings, integers, floats and booleans as JSON values (as
/// tracing-serde does).
struct JsonFields<'w, 'b> {
    out: &'w mut Writer<'b>,
    first: bool,
    /// For `Debug` values, which are formatted before they are escaped.
    scratch: String,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            ","
        };
        self.result = self
            .out
            .write_str(separator)
            .and_then(|()| write_json_str(self.out, field.name()))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| value(self.out));
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_json_str(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if write!(scratch, "{value:?}").is_err() {
            self.result = Err(fmt::Error);
        }
        self.member(field, |out| write_json_str(out, &scratch));
        self.scratch = scratch;
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities: null, as serde_json writes them.
        self.member(field, |out| match value.is_finite() {
            true => write!(out, "{value:?}"),
            false => out.write_str("null"),
        });
    }
}

/// `value` as a JSON string: quotes, backslashes and control characters
/// escaped, everything else as is (what serde_json writes).
fn write_json_str(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    let mut plain = 0;
    for (at, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.write_str(&value[plain..at])?;
        match escape {
            "" => write!(out, "\\u{byte:04x}")?,
            escape => out.write_str(escape)?,
        }
        plain = at + 1;
    }
    out.write_str(&value[plain..])?;
    out.write_char('"')
}

/// A request's lines never wait in memory beyond this many bytes: past it,
/// what was collected is written, then the line.
const MAX_BATCH: usize = 64 << 10;

tokio::task_local! {
    /// The lines of the request this task is serving (see [`batched`]).
    static REQUEST_LINES: RefCell<Vec<u8>>;
}

/// Run one request's work with its log lines collected and written in one
/// `write(2)` when it ends (or is dropped, or panics), instead of one per
/// line: a token request with three hooks logs five. The lines stay in the
/// request's task, so they follow it across threads; lines from other tasks
/// and threads are written at once. The cost: a request's lines appear when
/// it ends (its deadlines bound that), and a crash of the whole process
/// loses the lines of the requests in flight.
pub async fn batched<F: Future>(work: F) -> F::Output {
    REQUEST_LINES
        .scope(RefCell::new(Vec::new()), async move {
            let _flush = FlushOnDrop;
            work.await
        })
        .await
}

/// Writes the request's lines; dropped inside [`batched`]'s scope, also when
/// the request's future is dropped early (tokio drops it in the scope).
struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let _ = REQUEST_LINES.try_with(|lines| {
            if let Ok(mut lines) = lines.try_borrow_mut() {
                write_out(&mut lines);
            }
        });
    }
}

fn write_out(lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        let _ = io::stderr().write_all(lines);
        lines.clear();
    }
}

/// The writer of every line: into the current request's lines (see
/// [`batched`]), else straight to stderr (unbuffered: one `write(2)` each).
pub struct StderrLines;

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = LineSink;

    fn make_writer(&'a self) -> LineSink {
        LineSink
    }
}

/// One formatted line on its way out (see [`StderrLines`]).
pub struct LineSink;

impl io::Write for LineSink {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let kept = REQUEST_LINES.try_with(|lines| {
            let Ok(mut lines) = lines.try_borrow_mut() else {
                return false;
            };
            if lines.len() + line.len() > MAX_BATCH {
                write_out(&mut lines);
            }
            if line.len() > MAX_BATCH {
                return false;
            }
            lines.extend_from_slice(line);
            true
        });
        match kept {
            Ok(true) => Ok(line.len()),
            _ => io::stderr().write(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &str) -> String {
        let mut out = String::new();
        write_json_str(&mut out, value).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for value in [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "lines\n\r\ttab",
            "controls \u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "unicode é ✓ 🦀",
        ] {
            assert_eq!(
                json(value),
                serde_json::to_string(value).unwrap(),
                "{value:?}"
            );
        }
    }

    /// A line through the formatter parses as JSON with the fields of the
    /// call site, in its order, typed as tracing-serde types them.
    #[test]
    fn lines_have_the_tracing_json_shape() {
        let lines = capture(|| {
            tracing::info!(
                request_id = "r\"1",
                duration_us = 14u64,
                delta = -3i64,
                ok = true,
                ratio = 0.5f64,
                nan = f64::NAN,
                shown = %"a b",
                debugged = ?Some(1),
                "hook applied"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], module_path!());
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{timestamp}");
        assert_eq!(
            line["fields"],
            serde_json::json!({
                "message": "hook applied", "request_id": "r\"1", "duration_us": 14,
                "delta": -3, "ok": true, "ratio": 0.5, "nan": null,
                "shown": "a b", "debugged": "Some(1)"
            })
        );
        // In call-site order (serde_json's map would sort them).
        let at = |key: &str| lines[0].find(&format!("\"{key}\":")).unwrap();
        assert!(at("message") < at("request_id") && at("request_id") < at("debugged"));
    }

    /// Inside [`batched`] lines are held until the work ends, in order;
    /// outside, nothing is held.
    #[tokio::test]
    async fn a_request_holds_its_lines_until_it_ends() {
        let held = batched(async {
            LineSink.write_all(b"one\n").unwrap();
            tokio::task::yield_now().await;
            LineSink.write_all(b"two\n").unwrap();
            REQUEST_LINES.with(|lines| lines.borrow().clone())
        })
        .await;
        assert_eq!(held, b"one\ntwo\n");
        assert!(REQUEST_LINES.try_with(|_| ()).is_err(), "no scope outside");
    }

    /// Format `f`'s events with [`JsonLines`] into strings.
    fn capture(f: impl FnOnce()) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }
}
