//! Capture of hook events for `tokenhook replay`: per hook, sampled, written
//! off the request path.
//!
//! A sampled call hands the event (built without the hook's secrets) and the
//! hook's outcome to a bounded queue with `try_send`; a writer thread removes
//! the configured fields and appends one JSON line to the capture file, or,
//! on Lambda, writes a "hook event captured" log line. A full queue drops the
//! event and counts it: capturing never slows or fails a token request.
//! The file rotates at `max_size` (one previous file kept), so a capture left
//! on cannot fill the disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokenhook_sdk::wire::DenyCode;

use crate::engine::Limits;
use crate::hooks::Usage;
use crate::manifest::{Capabilities, CaptureConfig, HookConfig, Manifest};

/// Default `max_size`: 16 MiB per file, one previous file kept.
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;
/// Default `queue`: events waiting for the writer before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 1024;
/// Smallest `max_size`: a rotation per few events would only churn.
pub const MIN_MAX_SIZE: u64 = 64 << 10;

/// What a hook call came to, as a capture records it and as `replay`
/// compares it: the token after the hook, its deny, or its failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verdict {
    /// The hook's commands passed policy: the token as they left it.
    Applied {
        scopes: Vec<String>,
        claims: Map<String, Value>,
    },
    Denied {
        error: DenyCode,
        description: String,
    },
    /// `kind` is a [`crate::hooks::FailureKind`] name or `policy_violation`.
    Failed { kind: String, cause: String },
}

/// A call's resource use, in a capture line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordedUsage {
    pub fuel_used: u64,
    pub memory_peak: u64,
    pub time_us: u64,
}

impl From<Usage> for RecordedUsage {
    fn from(u: Usage) -> Self {
        RecordedUsage {
            fuel_used: u.fuel_used,
            memory_peak: u.memory_peak,
            time_us: u.wall_time.as_micros() as u64,
        }
    }
}

/// The hook's limits, capabilities and the manifest's policy when the event
/// was captured: replay judges outputs under the same rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedRules {
    pub capabilities: RecordedCapabilities,
    pub claim_namespaces: Vec<String>,
    pub added_scopes_within_grant: bool,
    pub max_claims: usize,
    pub max_claims_size: u64,
    pub limits: RecordedLimits,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecordedCapabilities {
    pub claims: Vec<String>,
    pub scopes: Vec<String>,
}

impl RecordedCapabilities {
    pub fn to_capabilities(&self) -> Capabilities {
        Capabilities {
            claims: self.claims.clone(),
            scopes: self.scopes.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RecordedLimits {
    pub fuel: u64,
    pub timeout_us: u64,
    pub memory: u64,
    pub stack: u64,
    pub table_elements: u64,
    pub max_input: u64,
    pub max_output: u64,
}

impl From<Limits> for RecordedLimits {
    fn from(l: Limits) -> Self {
        RecordedLimits {
            fuel: l.fuel,
            timeout_us: l.timeout.as_micros() as u64,
            memory: l.memory,
            stack: l.stack,
            table_elements: l.table_elements,
            max_input: l.max_input,
            max_output: l.max_output,
        }
    }
}

impl From<RecordedLimits> for Limits {
    fn from(l: RecordedLimits) -> Self {
        Limits {
            fuel: l.fuel,
            timeout: Duration::from_micros(l.timeout_us),
            memory: l.memory,
            stack: l.stack,
            table_elements: l.table_elements,
            max_input: l.max_input,
            max_output: l.max_output,
        }
    }
}

/// One line of a capture file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub hook: String,
    /// Milliseconds since the Unix epoch.
    pub captured_at: u64,
    pub mode: crate::manifest::HookMode,
    /// The event the hook got, without `secrets` and the `omit` fields.
    pub event: Value,
    pub outcome: Verdict,
    pub usage: RecordedUsage,
    pub rules: RecordedRules,
}

/// A sampled call on its way to the writer.
struct Pending {
    event: Vec<u8>,
    outcome: Verdict,
    usage: RecordedUsage,
    captured_at: u64,
}

/// One hook's capture: the sampling decision and the queue to its writer.
/// Dropping it (with its issuer, at a reload) lets the writer drain and stop.
pub struct Capture {
    /// A call is captured when a random u64 is below this.
    threshold: u64,
    always: bool,
    tx: SyncSender<Pending>,
    dropped: Arc<AtomicU64>,
    hook: String,
}

impl Capture {
    /// Start capturing for `hook`: open the file (or, on Lambda, the log)
    /// and start its writer. `cfg` was checked as the manifest was read; an
    /// error here is (field under `capture.`, message).
    pub fn open(
        manifest: &Manifest,
        hook: &HookConfig,
        cfg: &CaptureConfig,
        limits: Limits,
    ) -> Result<Capture, (String, String)> {
        let sink = if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            Sink::Log
        } else {
            let path = manifest.resolve(&cfg.file);
            let file = open_file(&path)
                .map_err(|e| ("file".to_string(), format!("{}: {e}", path.display())))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Sink::File {
                path,
                file,
                size,
                max_size: cfg.max_size,
            }
        };
        let rules = RecordedRules {
            capabilities: RecordedCapabilities {
                claims: hook.capabilities.claims.clone(),
                scopes: hook.capabilities.scopes.clone(),
            },
            claim_namespaces: manifest.policy.claim_namespaces.clone(),
            added_scopes_within_grant: manifest.policy.added_scopes_within_grant,
            max_claims: manifest.policy.max_claims,
            max_claims_size: manifest.policy.max_claims_size,
            limits: limits.into(),
        };
        let (tx, rx) = sync_channel(cfg.queue);
        let writer = Writer {
            hook: hook.name.clone(),
            mode: hook.mode,
            omit: cfg.omit.iter().map(|p| p.0.clone()).collect(),
            rules,
            sink,
            failures: 0,
        };
        std::thread::Builder::new()
            .name(format!("capture-{}", hook.name))
            .spawn(move || writer.run(rx))
            .map_err(|e| ("file".to_string(), format!("cannot start the writer: {e}")))?;
        Ok(Capture {
            threshold: (cfg.sample * u64::MAX as f64) as u64,
            always: cfg.sample >= 1.0,
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            hook: hook.name.clone(),
        })
    }

    /// Whether this call is captured.
    pub fn sampled(&self) -> bool {
        if self.always {
            return true;
        }
        let mut bytes = [0u8; 8];
        // No randomness: no capture (never a reason to fail a request).
        aws_lc_rs::rand::fill(&mut bytes).is_ok() && u64::from_le_bytes(bytes) < self.threshold
    }

    /// Queue a sampled call; never waits. `event` must hold no secrets.
    pub fn send(&self, event: Vec<u8>, outcome: Verdict, usage: Usage) {
        let pending = Pending {
            event,
            outcome,
            usage: usage.into(),
            captured_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        };
        match self.tx.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Powers of two: the count is visible without a line per drop.
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        hook = %self.hook,
                        dropped,
                        "hook event capture queue full; events dropped"
                    );
                }
            }
        }
    }

    /// Events dropped so far because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

enum Sink {
    File {
        path: PathBuf,
        file: std::fs::File,
        size: u64,
        max_size: u64,
    },
    Log,
}

struct Writer {
    hook: String,
    mode: crate::manifest::HookMode,
    omit: Vec<String>,
    rules: RecordedRules,
    sink: Sink,
    failures: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Pending>) {
        while let Ok(pending) = rx.recv() {
            let Some(line) = self.line(pending) else {
                continue;
            };
            if let Err(e) = self.write(&line) {
                self.failures += 1;
                if self.failures.is_power_of_two() {
                    tracing::warn!(hook = %self.hook, error = %e, failures = self.failures, "hook event capture could not be written");
                }
            }
        }
    }

    /// The record as one JSON line, with the omitted fields removed.
    fn line(&self, pending: Pending) -> Option<String> {
        let mut event: Value = serde_json::from_slice(&pending.event).ok()?;
        let mut outcome = pending.outcome;
        if let Some(obj) = event.as_object_mut() {
            // Built without secrets already; removed again in case that changes.
            obj.remove("secrets");
        }
        for pointer in &self.omit {
            remove_pointer(&mut event, pointer);
            if let (Some(rest), Verdict::Applied { scopes, claims }) =
                (pointer.strip_prefix("/token"), &mut outcome)
            {
                let mut token = serde_json::json!({ "scopes": scopes, "claims": claims });
                remove_pointer(&mut token, rest);
                if let Ok(t) = serde_json::from_value::<tokenhook_sdk::wire::TokenState>(token) {
                    *scopes = t.scopes;
                    *claims = t.claims;
                }
            }
        }
        let record = Record {
            hook: self.hook.clone(),
            captured_at: pending.captured_at,
            mode: self.mode,
            event,
            outcome,
            usage: pending.usage,
            rules: self.rules.clone(),
        };
        serde_json::to_string(&record).ok()
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Log => {
                tracing::info!(hook = %self.hook, record = %line, "hook event captured");
                Ok(())
            }
            Sink::File {
                path,
                file,
                size,
                max_size,
            } => {
                let bytes = line.len() as u64 + 1;
                if *size > 0 && *size + bytes > *max_size {
                    let mut old = path.as_os_str().to_owned();
                    old.push(".1");
                    std::fs::rename(&*path, &old)?;
                    *file = open_file(path)?;
                    *size = 0;
                }
                // One write per line, so a reader never sees half a line
                // from this writer.
                let mut buf = Vec::with_capacity(line.len() + 1);
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                file.write_all(&buf)?;
                *size += bytes;
                Ok(())
            }
        }
    }
}

/// Open (create) a capture file for appending: mode 0600, never through a
/// symbolic link; its directory is created (0700) if missing.
fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Remove the member or element a JSON Pointer (RFC 6901) names, if present.
pub fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_remove_fields_with_escapes() {
        let mut v = json!({"client": {"metadata": {"email": "a@b", "tenant": "t"}},
            "token": {"claims": {"https://x/e": 1, "https://x/k": 2}}, "list": [1, 2]});
        remove_pointer(&mut v, "/client/metadata/email");
        remove_pointer(&mut v, "/token/claims/https:~1~1x~1e");
        remove_pointer(&mut v, "/list/0");
        remove_pointer(&mut v, "/nothing/here");
        assert_eq!(
            v,
            json!({"client": {"metadata": {"tenant": "t"}},
                "token": {"claims": {"https://x/k": 2}}, "list": [2]})
        );
    }
}
