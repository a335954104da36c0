//! Native test harness: build events and run hooks in `cargo test`, no wasm needed.

use std::cell::RefCell;

use serde::Serialize;
use serde_json::Value;

use crate::Decision;
use crate::wire::{
    ABI_VERSION, Api, Client, Event, HookError, HookOutput, LogLevel, LogLine, RequestContext,
    TokenState,
};

thread_local! {
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGS.with(|l| {
        l.borrow_mut().push(LogLine {
            level,
            message: message.to_owned(),
        })
    });
}

/// The lines this thread's hook code logged since the last call.
pub fn take_logs() -> Vec<LogLine> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Run a hook through the same JSON exchange the wasm export uses, so a native
/// test also covers (de)serialization of the event and the output.
pub fn run_through_json(
    hook: impl FnOnce(&Event) -> Result<Decision, HookError>,
    event: &Event,
) -> HookOutput {
    let input = serde_json::to_vec(event).expect("event serializes");
    let output = crate::guest::run_json(&input, hook);
    serde_json::from_slice(&output).expect("hook output is valid JSON")
}

/// Call `f` with `event` as the [`EventView`](crate::EventView) a hook gets:
/// serialized as the host writes it, then read. For unit tests of hooks that
/// take the view: `testing::with_view(&event, my_hook)`.
pub fn with_view<R>(event: &Event, f: impl FnOnce(&crate::EventView<'_>) -> R) -> R {
    let input = serde_json::to_vec(event).expect("event serializes");
    let view = crate::EventView::read(&input).expect("the view reads what the host writes");
    f(&view)
}

/// Run a hook written against [`EventView`](crate::EventView) on `event`, the
/// way the wasm export runs it: the event serialized as the host writes it,
/// read as a view, the output through JSON.
pub fn run_view_through_json(
    hook: impl FnOnce(&crate::EventView<'_>) -> Result<Decision, HookError>,
    event: &Event,
) -> HookOutput {
    let input = serde_json::to_vec(event).expect("event serializes");
    let output = crate::guest::run_json_view(&input, hook);
    serde_json::from_slice(&output).expect("hook output is valid JSON")
}

/// Prepare a config the way the host does for a hook exported with
/// `config:` (its function called once on the config as JSON), for unit
/// tests: `let rules = testing::prepare(&json!({...}), rules)?;`.
pub fn prepare<T>(
    config: &Value,
    prepare: impl FnOnce(crate::view::Json<'_>) -> Result<T, HookError>,
) -> Result<T, HookError> {
    let text = serde_json::to_vec(config).expect("config serializes");
    prepare(crate::view::Json::new(&text))
}

/// Builds an [`Event`] with sensible defaults: client `test-client`, API
/// `https://api.example.com` with scopes `read:orders write:orders`, all granted.
pub struct EventBuilder {
    event: Event,
}

impl Default for EventBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBuilder {
    pub fn new() -> Self {
        let scopes: Vec<String> = vec!["read:orders".into(), "write:orders".into()];
        EventBuilder {
            event: Event {
                version: ABI_VERSION,
                request_id: "test-request".into(),
                client: Client {
                    id: "test-client".into(),
                    ..Client::default()
                },
                api: Api {
                    identifier: "https://api.example.com".into(),
                    scopes: scopes.clone(),
                },
                granted_scopes: scopes.clone(),
                token: TokenState {
                    scopes,
                    ..TokenState::default()
                },
                ..Event::default()
            },
        }
    }

    pub fn client_id(mut self, id: &str) -> Self {
        self.event.client.id = id.into();
        self
    }

    pub fn client_name(mut self, name: &str) -> Self {
        self.event.client.name = Some(name.into());
        self
    }

    pub fn client_metadata(mut self, key: &str, value: &str) -> Self {
        self.event.client.metadata.insert(key.into(), value.into());
        self
    }

    pub fn api(mut self, identifier: &str, scopes: impl IntoIterator<Item = &'static str>) -> Self {
        self.event.api = Api {
            identifier: identifier.into(),
            scopes: scopes.into_iter().map(String::from).collect(),
        };
        self
    }

    pub fn requested_scopes(mut self, scopes: impl IntoIterator<Item = &'static str>) -> Self {
        self.event.requested_scopes = scopes.into_iter().map(String::from).collect();
        self
    }

    pub fn granted_scopes(mut self, scopes: impl IntoIterator<Item = &'static str>) -> Self {
        self.event.granted_scopes = scopes.into_iter().map(String::from).collect();
        self
    }

    /// The token's current scopes (what the hook may add to or remove from).
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = &'static str>) -> Self {
        self.event.token.scopes = scopes.into_iter().map(String::from).collect();
        self
    }

    pub fn claim(mut self, name: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).expect("claim serializes");
        self.event.token.claims.insert(name.into(), value);
        self
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.event.context = RequestContext {
            ip: Some(ip.into()),
            ..self.event.context
        };
        self
    }

    pub fn user_agent(mut self, ua: &str) -> Self {
        self.event.context.user_agent = Some(ua.into());
        self
    }

    pub fn config(mut self, config: Value) -> Self {
        self.event.config = config;
        self
    }

    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.event.secrets.0.insert(name.into(), value.into());
        self
    }

    pub fn build(self) -> Event {
        self.event
    }
}
