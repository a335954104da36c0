//! A hook's secrets as the hook chain uses them: the values the hook gets,
//! refreshed from Secrets Manager in the background ([`crate::cached`]), and
//! the [`Redactor`] that blanks those values out of everything the hook says
//! (log lines, failure causes, deny descriptions).
//!
//! Values from files and environment variables are read when the manifest
//! loads and stay until the next reload. Secrets Manager values are read again
//! once older than `hook_secret_ttl` (default 5 min), by a background task:
//! no request waits for Secrets Manager. A refresh reads all of the hook's
//! Secrets Manager secrets and succeeds or fails as a whole, so a hook never
//! sees a mix of old and new values. While refreshes fail, the values in use
//! keep serving for at most `hook_secret_max_stale` (default 1 h) after the
//! last successful read; after that the hook is not run: the call fails with
//! `secrets_unavailable`, handled by the hook's `on_error` (deny: the request
//! fails with `server_error`; skip: the request goes on without the hook). A
//! secret deleted in Secrets Manager therefore stops reaching the hook within
//! `hook_secret_max_stale`, however long the refreshes keep failing.

use std::sync::Arc;
use std::time::Duration;

use tokenhook_sdk::wire::{Command, Secrets};

use crate::cached::{Cached, Fetch, Messages};
use crate::engine::MAX_LOG_LINE_BYTES;
use crate::hooks::{FailureKind, HookCall, HookFailure};
use crate::secrets::SecretStore;

/// Default for `hook_secret_max_stale`: how long values may keep serving
/// while refreshes fail.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);

/// What replaces a secret value (or the part of one) in text.
pub const REDACTED: &str = "<redacted>";

/// The mark the engine appends to a log line it cut (`engine::host_log`).
pub const CUT_MARK: char = '…';

/// One generation of a hook's secrets: the values and what redacts them.
pub struct Snapshot {
    pub values: Secrets,
    pub redactor: Redactor,
}

const MESSAGES: Messages = Messages {
    serving_stale: "hook secret refresh failed; keeping the cached values",
    too_old: "hook secret refresh failed and the cached values are too old to use; the hook will not run",
};

/// A hook's secrets: fixed, or cached with a background refresh.
pub struct HookSecrets {
    source: Source,
}

enum Source {
    /// No Secrets Manager secrets: the values read at load.
    Fixed(Arc<Snapshot>),
    Cached(Cached<Snapshot>),
}

impl HookSecrets {
    /// `values` as read at load; `refreshed` names those (by secret name and
    /// Secrets Manager id) that are read again after `ttl`. With nothing to
    /// refresh or no store, the values are fixed.
    pub fn new(
        hook: &str,
        values: Secrets,
        refreshed: Vec<(String, String)>,
        store: Option<Arc<dyn SecretStore>>,
        ttl: Duration,
        max_stale: Duration,
    ) -> HookSecrets {
        let first = Arc::new(Snapshot {
            redactor: Redactor::new(values.0.values().cloned()),
            values,
        });
        let store = match store {
            Some(store) if !refreshed.is_empty() => store,
            _ => {
                return HookSecrets {
                    source: Source::Fixed(first),
                };
            }
        };
        let refreshed = Arc::new(refreshed);
        let fetch: Fetch<Snapshot> = Arc::new(move |previous| {
            let (store, refreshed) = (store.clone(), refreshed.clone());
            Box::pin(async move {
                let previous = previous.expect("the cache holds the values read at load");
                let mut values = previous.values.clone();
                for (name, id) in refreshed.iter() {
                    let value = store
                        .get_secret_string(id)
                        .await
                        .map_err(|e| format!("secret `{name}`: {e}"))?;
                    values.0.insert(name.clone(), value);
                }
                // Also redact the values just replaced: a call that started
                // before the swap may still be reporting them.
                let redactor =
                    Redactor::new(values.0.values().chain(previous.values.0.values()).cloned());
                Ok(Snapshot { values, redactor })
            })
        });
        let what = format!("secrets of hook `{hook}`");
        HookSecrets {
            source: Source::Cached(Cached::with_value(
                what, MESSAGES, ttl, max_stale, fetch, first,
            )),
        }
    }

    /// The values to give the hook now, or why it must not run. Never waits.
    pub fn current(&self) -> Result<Arc<Snapshot>, HookFailure> {
        match &self.source {
            Source::Fixed(snapshot) => Ok(snapshot.clone()),
            Source::Cached(cache) => cache
                .get_now()
                .map_err(|e| HookFailure::new(FailureKind::SecretsUnavailable, e.to_string())),
        }
    }

    /// The latest values, however old, for redacting text about the hook.
    pub fn latest(&self) -> Arc<Snapshot> {
        match &self.source {
            Source::Fixed(snapshot) => snapshot.clone(),
            Source::Cached(cache) => cache.last_value(),
        }
    }
}

/// Blanks secret values out of text.
///
/// Every byte of every occurrence of any value is masked, overlapping and
/// nested occurrences included (a value containing another is masked whole,
/// whatever the order), and runs of masked bytes become one [`REDACTED`].
/// Text the engine cut (ending in [`CUT_MARK`]) also has a trailing piece
/// that begins a value masked, so a value across the cut cannot leak partly.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Non-empty, distinct values.
    values: Vec<String>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_unstable();
        values.dedup();
        Redactor { values }
    }

    /// `text` with every secret value masked.
    pub fn redact(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        let (body, cut) = match text.strip_suffix(CUT_MARK) {
            Some(body) => (body, true),
            None => (text, false),
        };
        let mut spans = Vec::new();
        for value in &self.values {
            let mut from = 0;
            while let Some(at) = body[from..].find(value.as_str()) {
                let start = from + at;
                spans.push((start, start + value.len()));
                // Next search one character on: overlapping occurrences count.
                from = start + value.chars().next().map_or(1, char::len_utf8);
            }
            if cut {
                let k = prefix_at_end(body.as_bytes(), value.as_bytes());
                if k > 0 {
                    spans.push((body.len() - k, body.len()));
                }
            }
        }
        if spans.is_empty() {
            return text.to_string();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(body.len());
        // Each run of touching or overlapping spans becomes one mark.
        let (mut written, mut i) = (0, 0);
        while i < spans.len() {
            let (start, mut end) = spans[i];
            i += 1;
            while i < spans.len() && spans[i].0 <= end {
                end = end.max(spans[i].1);
                i += 1;
            }
            out.push_str(&body[written..start]);
            out.push_str(REDACTED);
            written = end;
        }
        out.push_str(&body[written..]);
        if cut {
            out.push(CUT_MARK);
        }
        out
    }

    /// A hook's log line as it may be logged: redacted, then cut to
    /// [`MAX_LOG_LINE_BYTES`] (at a character boundary, marked with
    /// [`CUT_MARK`]). Redacting first means the cut can never fall inside a
    /// value and leave part of it.
    pub fn log_line(&self, line: &str) -> String {
        let mut out = self.redact(line);
        if out.len() > MAX_LOG_LINE_BYTES {
            let mut end = MAX_LOG_LINE_BYTES;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push(CUT_MARK);
        }
        out
    }

    /// Redact what a hook call reports: its log lines (cut after redaction),
    /// its failure cause and its deny descriptions (which reach the client).
    pub fn redact_call(&self, call: &mut HookCall) {
        for line in &mut call.logs {
            line.message = self.log_line(&line.message);
        }
        if self.values.is_empty() {
            return;
        }
        match &mut call.outcome {
            Ok(commands) => {
                for command in commands {
                    if let Command::Deny(deny) = command {
                        deny.description = self.redact(&deny.description);
                    }
                }
            }
            Err(failure) => failure.message = self.redact(&failure.message),
        }
    }
}

/// The length of the longest proper prefix of `value` that `text` ends with
/// (0 if none): Knuth–Morris–Pratt over the last `value.len() - 1` bytes of
/// `text`, so linear in the value's length.
fn prefix_at_end(text: &[u8], value: &[u8]) -> usize {
    if value.len() < 2 {
        return 0;
    }
    // failure[i]: length of the longest proper border of value[..=i].
    let mut failure = vec![0usize; value.len()];
    let mut k = 0;
    for i in 1..value.len() {
        while k > 0 && value[i] != value[k] {
            k = failure[k - 1];
        }
        if value[i] == value[k] {
            k += 1;
        }
        failure[i] = k;
    }
    // Fewer bytes than the value: `k` never reaches a whole value (a whole
    // one at the end is masked as an occurrence anyway).
    let tail = &text[text.len().saturating_sub(value.len() - 1)..];
    let mut k = 0;
    for &b in tail {
        while k > 0 && b != value[k] {
            k = failure[k - 1];
        }
        if b == value[k] {
            k += 1;
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenhook_sdk::wire::{Deny, LogLevel, LogLine};

    fn redactor(values: &[&str]) -> Redactor {
        Redactor::new(values.iter().map(|v| v.to_string()))
    }

    #[test]
    fn every_occurrence_is_masked_whatever_the_order_of_values() {
        let r = redactor(&["abc", "xxabcxx", "bcd"]);
        assert_eq!(r.redact("1 xxabcxx 2"), "1 <redacted> 2");
        // Overlapping occurrences of different values: masked together.
        assert_eq!(r.redact("[abcd]"), "[<redacted>]");
        // Overlapping occurrences of one value.
        assert_eq!(redactor(&["aa"]).redact("-aaa-"), "-<redacted>-");
        assert_eq!(r.redact("abc abc"), "<redacted> <redacted>");
        assert_eq!(r.redact("nothing"), "nothing");
        assert_eq!(redactor(&[]).redact("abc"), "abc");
        assert_eq!(redactor(&["é"]).redact("aéb"), "a<redacted>b");
    }

    #[test]
    fn a_value_across_the_engine_cut_is_masked() {
        let r = redactor(&["s3cr3t-value", "zz"]);
        assert_eq!(r.redact("token s3cr…"), "token <redacted>…");
        assert_eq!(r.redact("token s…"), "token <redacted>…");
        // Without the mark the text was not cut: a prefix is just text.
        assert_eq!(r.redact("token s3cr"), "token s3cr");
        // A whole value before the mark.
        assert_eq!(r.redact("s3cr3t-value…"), "<redacted>…");
        // Value with a repeated start: the longest piece is found.
        let r = redactor(&["abab-x"]);
        assert_eq!(r.redact("abababab…"), "abab<redacted>…");
    }

    #[test]
    fn log_lines_are_redacted_before_they_are_cut() {
        let secret = "S".repeat(40);
        let r = redactor(&[&secret]);
        // The secret straddles the 1 KiB cut.
        let line = format!("{}{secret}tail", "x".repeat(MAX_LOG_LINE_BYTES - 20));
        let out = r.log_line(&line);
        assert!(!out.contains('S'), "{out}");
        assert!(out.contains(REDACTED) && out.ends_with("tail"), "{out}");
        // A long line is cut after redaction, marked.
        let long = format!("{secret}{}", "y".repeat(3 * MAX_LOG_LINE_BYTES));
        let out = r.log_line(&long);
        assert!(
            out.starts_with(REDACTED) && out.ends_with(CUT_MARK),
            "{out}"
        );
        assert!(out.len() <= MAX_LOG_LINE_BYTES + CUT_MARK.len_utf8());
        // Cut at a character boundary.
        let wide = "é".repeat(MAX_LOG_LINE_BYTES);
        let out = redactor(&[]).log_line(&wide);
        assert!(out.ends_with(CUT_MARK));
    }

    /// A secret store in memory whose one value can be changed or deleted.
    struct OneSecret(std::sync::Mutex<Option<String>>);

    impl SecretStore for OneSecret {
        fn get_secret_string<'a>(&'a self, id: &'a str) -> crate::secrets::SecretFuture<'a> {
            let value = self.0.lock().unwrap().clone();
            Box::pin(async move {
                value.ok_or_else(|| format!("ResourceNotFoundException: `{id}` was deleted"))
            })
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// A deleted secret reaches the hook for at most `max_stale`, then the
    /// hook fails closed; the old value is still redacted.
    #[tokio::test(start_paused = true)]
    async fn a_deleted_secret_stops_reaching_the_hook_after_max_stale() {
        let store = Arc::new(OneSecret(std::sync::Mutex::new(Some("v1".into()))));
        let mut values = Secrets::default();
        values.0.insert("api_key".into(), "v1".into());
        values.0.insert("fixed".into(), "from-a-file".into());
        let (ttl, max_stale) = (Duration::from_secs(60), Duration::from_secs(600));
        let secrets = HookSecrets::new(
            "h",
            values,
            vec![("api_key".into(), "sm/id".into())],
            Some(store.clone()),
            ttl,
            max_stale,
        );
        *store.0.lock().unwrap() = Some("v2".into());
        tokio::time::advance(ttl).await;
        assert_eq!(secrets.current().unwrap().values.0["api_key"], "v1");
        settle().await;
        let now = secrets.current().unwrap();
        assert_eq!(now.values.0["api_key"], "v2", "refreshed in the background");
        assert_eq!(now.values.0["fixed"], "from-a-file");
        assert_eq!(now.redactor.redact("v1 v2"), "<redacted> <redacted>");

        *store.0.lock().unwrap() = None;
        tokio::time::advance(ttl).await;
        secrets.current().unwrap();
        settle().await;
        assert_eq!(
            secrets.current().unwrap().values.0["api_key"],
            "v2",
            "within max_stale"
        );
        tokio::time::advance(max_stale).await;
        let failure = match secrets.current() {
            Err(failure) => failure,
            Ok(_) => panic!("a value unread for max_stale must not reach the hook"),
        };
        assert_eq!(failure.kind, FailureKind::SecretsUnavailable);
        assert!(failure.message.contains("deleted"), "{failure}");
        assert!(!failure.message.contains("v2"), "{failure}");
        assert_eq!(secrets.latest().redactor.redact("v2"), "<redacted>");
    }

    #[test]
    fn a_call_is_redacted_throughout() {
        let r = redactor(&["hunter2"]);
        let mut call = HookCall::not_run(HookFailure::new(FailureKind::HookError, "bad hunter2"));
        call.logs.push(LogLine {
            level: LogLevel::Info,
            message: "key=hunter2".into(),
        });
        r.redact_call(&mut call);
        assert_eq!(call.logs[0].message, "key=<redacted>");
        assert_eq!(call.outcome.unwrap_err().message, "bad <redacted>");
        let mut call = HookCall::not_run(HookFailure::new(FailureKind::HookError, ""));
        call.outcome = Ok(vec![Command::Deny(Deny {
            error: Default::default(),
            description: "no hunter2".into(),
        })]);
        r.redact_call(&mut call);
        let Ok(commands) = call.outcome else { panic!() };
        let Command::Deny(deny) = &commands[0] else {
            panic!()
        };
        assert_eq!(deny.description, "no <redacted>");
    }
}
