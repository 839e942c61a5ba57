//! The worker context: who is calling, on whose behalf, and along which chain of calls.
//!
//! Nameko builds one `WorkerContext` per worker from the incoming message's headers. Every header
//! becomes context data (the `nameko.` prefix is stripped by the transport before it gets here);
//! the `call_id_stack` grows by this worker's own id and is capped at `parent_calls_tracked + 1`
//! entries, oldest dropped first, so a long chain of calls cannot grow headers without bound.
//! Outgoing calls and events made by the worker carry [`WorkerContext::context_data`] on, which is
//! how user ids and the call chain travel through a cluster.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::entrypoint::EntrypointInfo;
use crate::redact::redact;

/// Context data: what travels in `nameko.*` headers, keyed without the prefix.
pub type ContextData = Map<String, Value>;

/// Key of the call id stack in context data.
pub const CALL_ID_STACK: &str = "call_id_stack";
/// Key of the calling user's id.
pub const USER_ID: &str = "user_id";
/// Key of the caller's language.
pub const LANGUAGE: &str = "language";
/// Key of the caller's user agent.
pub const USER_AGENT: &str = "user_agent";
/// Key of the caller's auth token.
pub const AUTH_TOKEN: &str = "auth_token";

/// Everything a worker knows about the call it is handling.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    service_name: Arc<str>,
    entrypoint: Arc<EntrypointInfo>,
    /// Parents first, this worker's own id last (so never empty).
    call_id_stack: Vec<String>,
    /// Context data without the stack, which is kept typed above.
    data: ContextData,
    /// The call's arguments as the entrypoint saw them, for logging (redacted on the way out).
    args: Value,
}

impl WorkerContext {
    /// Builds the context for a new worker from the incoming context data.
    ///
    /// `parent_calls_tracked` caps how many parent ids are kept (Nameko's default is 10).
    pub fn new(
        service_name: Arc<str>,
        entrypoint: Arc<EntrypointInfo>,
        mut data: ContextData,
        args: Value,
        parent_calls_tracked: usize,
    ) -> Self {
        let call_id = new_call_id(&service_name, entrypoint.method_name());
        let mut call_id_stack = data
            .remove(CALL_ID_STACK)
            .map(stack_from_value)
            .unwrap_or_default();
        call_id_stack.push(call_id);
        let keep = parent_calls_tracked.saturating_add(1);
        if call_id_stack.len() > keep {
            call_id_stack.drain(..call_id_stack.len() - keep);
        }
        Self {
            service_name,
            entrypoint,
            call_id_stack,
            data,
            args,
        }
    }

    /// The service this worker belongs to.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// The entrypoint that started this worker.
    pub fn entrypoint(&self) -> &EntrypointInfo {
        &self.entrypoint
    }

    /// This worker's id: `<service>.<method>.<uuid>`.
    pub fn call_id(&self) -> &str {
        self.call_id_stack.last().map_or("", String::as_str)
    }

    /// The ids of the calls that led here, oldest first, ending with this worker's own id.
    pub fn call_id_stack(&self) -> &[String] {
        &self.call_id_stack
    }

    /// The first call in the chain, or `None` when this worker has no parent.
    pub fn origin_call_id(&self) -> Option<&str> {
        self.parents().first().map(String::as_str)
    }

    /// The call that made this one, or `None` when this worker has no parent.
    pub fn immediate_parent_call_id(&self) -> Option<&str> {
        self.parents().last().map(String::as_str)
    }

    fn parents(&self) -> &[String] {
        &self.call_id_stack[..self.call_id_stack.len() - 1]
    }

    /// The incoming context data, without the call id stack.
    pub fn data(&self) -> &ContextData {
        &self.data
    }

    /// One context value as a string, when it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }

    /// The caller's `user_id`, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.get_str(USER_ID)
    }

    /// The caller's `language`, if any.
    pub fn language(&self) -> Option<&str> {
        self.get_str(LANGUAGE)
    }

    /// The caller's `user_agent`, if any.
    pub fn user_agent(&self) -> Option<&str> {
        self.get_str(USER_AGENT)
    }

    /// The caller's `auth_token`, if any.
    pub fn auth_token(&self) -> Option<&str> {
        self.get_str(AUTH_TOKEN)
    }

    /// What outgoing calls and events carry on: the data plus the call id stack.
    pub fn context_data(&self) -> ContextData {
        let mut out = self.data.clone();
        out.insert(
            CALL_ID_STACK.to_owned(),
            Value::Array(
                self.call_id_stack
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
        out
    }

    /// The call's arguments as received, unredacted. Prefer [`Self::redacted_args`] for logs.
    pub fn args(&self) -> &Value {
        &self.args
    }

    /// The arguments with the entrypoint's `sensitive_arguments` replaced by `********`.
    pub fn redacted_args(&self) -> Value {
        redact(&self.args, self.entrypoint.sensitive_arguments())
    }
}

/// `<service>.<method>.<uuid>`, written straight into a string of the right size: every
/// worker makes one, so it skips the formatting machinery.
fn new_call_id(service_name: &str, method_name: &str) -> String {
    let mut uuid = uuid::Uuid::encode_buffer();
    let uuid = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid);
    let mut call_id =
        String::with_capacity(service_name.len() + method_name.len() + uuid.len() + 2);
    for part in [service_name, ".", method_name, ".", uuid] {
        call_id.push_str(part);
    }
    call_id
}

/// Reads a `call_id_stack` leniently: an array of strings as Nameko sends it, a lone string as one
/// entry (never split into characters as Python would), other values by their text.
fn stack_from_value(value: Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => vec![s],
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> Arc<EntrypointInfo> {
        Arc::new(EntrypointInfo::new("rpc", "method"))
    }

    fn data(value: Value) -> ContextData {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_worker_without_parents_has_only_its_own_id() {
        let cx = WorkerContext::new("svc".into(), info(), ContextData::new(), json!(null), 10);
        let uuid = cx.call_id().strip_prefix("svc.method.").unwrap();
        // Nameko's form: a lowercase hyphenated uuid4.
        let parsed = uuid::Uuid::parse_str(uuid).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.hyphenated().to_string(), uuid);
        assert_eq!(cx.call_id_stack(), [cx.call_id().to_owned()]);
        assert_eq!(cx.origin_call_id(), None);
        assert_eq!(cx.immediate_parent_call_id(), None);
    }

    #[test]
    fn the_stack_grows_and_is_capped() {
        let parents: Vec<String> = (0..15).map(|i| format!("p.m.{i}")).collect();
        let cx = WorkerContext::new(
            "svc".into(),
            info(),
            data(json!({"call_id_stack": parents, "user_id": "u-1", "custom": "c"})),
            json!(null),
            10,
        );
        assert_eq!(cx.call_id_stack().len(), 11);
        assert_eq!(cx.origin_call_id(), Some("p.m.5"));
        assert_eq!(cx.immediate_parent_call_id(), Some("p.m.14"));
        assert_eq!(cx.user_id(), Some("u-1"));
        let out = cx.context_data();
        assert_eq!(out["custom"], "c");
        assert_eq!(out["call_id_stack"].as_array().unwrap().len(), 11);
        assert_eq!(
            out["call_id_stack"][10].as_str(),
            Some(cx.call_id()),
            "own id is last"
        );
    }

    #[test]
    fn a_string_stack_is_one_entry_not_characters() {
        let cx = WorkerContext::new(
            "svc".into(),
            info(),
            data(json!({"call_id_stack": "abc"})),
            json!(null),
            10,
        );
        assert_eq!(cx.call_id_stack().len(), 2);
        assert_eq!(cx.origin_call_id(), Some("abc"));
    }
}
