//! [`Decision`]: the builder a hook returns, and queries for its unit tests.

use serde::Serialize;
use serde_json::Value;

use crate::wire::{Command, Deny, DenyCode};

/// The changes a hook asks for, in order. The host applies them to the token
/// and checks each against its policy; nothing is dropped silently.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    commands: Vec<Command>,
}

impl Decision {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a scope the API defines.
    pub fn add_scope(&mut self, scope: impl Into<String>) -> &mut Self {
        self.commands.push(Command::AddScope(scope.into()));
        self
    }

    /// Remove a scope from the token.
    pub fn remove_scope(&mut self, scope: impl Into<String>) -> &mut Self {
        self.commands.push(Command::RemoveScope(scope.into()));
        self
    }

    /// Set a custom claim to any JSON value. A value that does not serialize
    /// becomes `null`.
    pub fn set_claim(&mut self, name: impl Into<String>, value: impl Serialize) -> &mut Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.commands.push(Command::SetClaim {
            name: name.into(),
            value,
        });
        self
    }

    /// Remove a custom claim an earlier hook set.
    pub fn remove_claim(&mut self, name: impl Into<String>) -> &mut Self {
        self.commands.push(Command::RemoveClaim(name.into()));
        self
    }

    /// Deny the request with `access_denied` and this description.
    pub fn deny(&mut self, description: impl Into<String>) -> &mut Self {
        self.deny_with(DenyCode::AccessDenied, description)
    }

    /// Deny the request with a chosen OAuth error code.
    pub fn deny_with(&mut self, error: DenyCode, description: impl Into<String>) -> &mut Self {
        self.commands.push(Command::Deny(Deny {
            error,
            description: description.into(),
        }));
        self
    }

    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    pub fn into_commands(self) -> Vec<Command> {
        self.commands
    }

    pub fn adds_scope(&self, scope: &str) -> bool {
        self.commands
            .iter()
            .any(|c| matches!(c, Command::AddScope(s) if s == scope))
    }

    pub fn removes_scope(&self, scope: &str) -> bool {
        self.commands
            .iter()
            .any(|c| matches!(c, Command::RemoveScope(s) if s == scope))
    }

    /// The value the last `set_claim` for `name` sets, if any.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.commands.iter().rev().find_map(|c| match c {
            Command::SetClaim { name: n, value } if n == name => Some(value),
            _ => None,
        })
    }

    pub fn removes_claim(&self, name: &str) -> bool {
        self.commands
            .iter()
            .any(|c| matches!(c, Command::RemoveClaim(n) if n == name))
    }

    /// The deny, if the hook denies the request.
    pub fn denial(&self) -> Option<&Deny> {
        self.commands.iter().find_map(|c| match c {
            Command::Deny(d) => Some(d),
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

impl From<Decision> for Vec<Command> {
    fn from(d: Decision) -> Self {
        d.commands
    }
}
