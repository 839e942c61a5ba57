//! Configuration: the keys and values a service is given, and typed access to them.
//!
//! A [`Config`] is a JSON object of keys, as Nameko's YAML file holds them. Core reads only the
//! keys of the container itself (`max_workers`, `parent_calls_tracked`); each extension crate
//! owns its keys and reads them with [`Config::get_as`], so the broker's keys live in
//! `nameko-amqp`, the events' in `nameko-events` and the web server's in `nameko-http`. Reading
//! files and substituting `${VAR}` is the CLI's job (`nameko_cli::config_file`): a service
//! that never reads a file needs no YAML parser.
//!
//! A value of the wrong kind is an error that names the file (or "defaults and overrides"), the
//! key, what was expected and what was found, with any password in it hidden.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ConfigError;

/// The default number of concurrent workers per service.
pub const DEFAULT_MAX_WORKERS: usize = 10;
/// The default number of parent call ids kept in `call_id_stack`.
pub const DEFAULT_PARENT_CALLS_TRACKED: usize = 10;

/// A service configuration: a mapping of keys to JSON values.
///
/// Its `Debug` output hides the password of every URL in it (`amqp://user:***@host`), so a
/// config can be logged.
#[derive(Clone, Default, PartialEq)]
pub struct Config {
    values: Map<String, Value>,
    source: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values: Map<String, Value> = self
            .values
            .iter()
            .map(|(key, value)| (key.clone(), hide_passwords_in(value)))
            .collect();
        f.debug_struct("Config")
            .field("values", &values)
            .field("source", &self.source)
            .finish()
    }
}

impl Config {
    /// An empty configuration: every key has its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// A configuration from a JSON object of keys and values.
    pub fn from_map(values: Map<String, Value>) -> Self {
        Self {
            values,
            source: None,
        }
    }

    /// The same configuration, saying it was read from `path` (errors name the file).
    pub fn with_source(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Some(path.into());
        self
    }

    /// Applies a `KEY=VALUE` override; the value is read as JSON (`3`, `true`, `[1, 2]`) and
    /// kept as text when it is not JSON, and a bare `KEY` means `true`. The `nameko` command's
    /// `--define` reads the value as YAML instead, as Nameko does.
    pub fn define(&mut self, definition: &str) -> Result<(), ConfigError> {
        let (key, value) = match definition.split_once('=') {
            Some((key, raw)) => (
                key.trim(),
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
            ),
            None => (definition.trim(), Value::Bool(true)),
        };
        if key.is_empty() {
            return Err(ConfigError::Override(hide_passwords(definition)));
        }
        self.values.insert(key.to_owned(), value);
        Ok(())
    }

    /// Sets a key.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.values.insert(key.into(), value.into());
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// All keys and values.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// The file this configuration was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// A key read as `T`, or `None` when absent or null; a value of another kind is an error
    /// that says what was `expected`.
    pub fn get_as<T: DeserializeOwned>(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|_| self.invalid(key, expected, value)),
        }
    }

    /// The error for `key` holding `found` where `expected` was wanted, naming where this
    /// configuration came from. Extensions use it for checks [`Config::get_as`] cannot make.
    pub fn invalid(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError::Invalid {
            origin: self
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "defaults and overrides".to_owned()),
            key: key.to_owned(),
            expected: expected.to_owned(),
            found: describe(found),
        }
    }

    fn positive(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.get_as::<usize>(key, "a positive integer")? {
            None => Ok(default),
            Some(0) => Err(self.invalid(key, "a positive integer", &Value::from(0))),
            Some(n) => Ok(n),
        }
    }

    /// `max_workers`: concurrent workers per service, default 10.
    pub fn max_workers(&self) -> Result<usize, ConfigError> {
        self.positive("max_workers", DEFAULT_MAX_WORKERS)
    }

    /// `parent_calls_tracked`: parent call ids kept, default 10.
    pub fn parent_calls_tracked(&self) -> Result<usize, ConfigError> {
        Ok(self
            .get_as::<usize>("parent_calls_tracked", "a non-negative integer")?
            .unwrap_or(DEFAULT_PARENT_CALLS_TRACKED))
    }

    /// A flag: `true` unless absent, `null`, `false`, zero or empty, as Python reads a value in
    /// a condition.
    pub fn truthy(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(truthy)
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the string `{}`", hide_passwords(s)),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// `value` with [`hide_passwords`] applied to every string in it.
fn hide_passwords_in(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(hide_passwords(text)),
        Value::Array(items) => Value::Array(items.iter().map(hide_passwords_in).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(key, member)| (key.clone(), hide_passwords_in(member)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `text` with the password of every URL in it replaced by `***`: in each `scheme://` up to the
/// next blank or quote, what stands between the user name's `:` and the last `@` (a password
/// may hold an unescaped `/` or `@`). Configs hold broker and database URLs, and any message
/// that quotes a config value goes through here.
pub fn hide_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        let userinfo_end = url[..url.find(['?', '#']).unwrap_or(url.len())].rfind('@');
        match userinfo_end.and_then(|at| url[..at].find(':').map(|colon| (colon, at))) {
            Some((colon, at)) => {
                out.push_str(&url[..=colon]);
                out.push_str("***");
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_keys_have_defaults_and_clear_errors() {
        let config = Config::new();
        assert_eq!(config.max_workers().unwrap(), 10);
        assert_eq!(config.parent_calls_tracked().unwrap(), 10);

        let mut bad = Config::new().with_source("test.yaml");
        bad.set("max_workers", "lots");
        let err = bad.max_workers().unwrap_err().to_string();
        assert_eq!(
            err,
            "config test.yaml: key `max_workers` must be a positive integer, found the string `lots`"
        );
        bad.set("max_workers", 0);
        assert!(bad.max_workers().is_err());
    }

    #[test]
    fn passwords_in_urls_are_hidden_from_debug_and_errors() {
        assert_eq!(
            hide_passwords("amqp://guest:s3cret@rabbit/%2f and redis://:pw@r"),
            "amqp://guest:***@rabbit/%2f and redis://:***@r"
        );
        assert_eq!(hide_passwords("amqp://u:pa/ss@w@h/v"), "amqp://u:***@h/v");
        assert_eq!(hide_passwords("amqp://h/v?x=a@b"), "amqp://h/v?x=a@b");
        assert_eq!(hide_passwords("amqp://user@h"), "amqp://user@h");
        assert_eq!(hide_passwords("no url: a:b@c"), "no url: a:b@c");
        assert_eq!(hide_passwords("é://é:é@é"), "é://é:***@é");

        let mut config = Config::new();
        config.set("AMQP_URI", "amqp://guest:s3cret@rabbit/%2f");
        config.set("DB", json!({"url": "postgres://u:s3cret@db"}));
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("amqp://guest:***@rabbit/%2f"), "{debug}");

        config.set("max_workers", "amqp://u:s3cret@h");
        let error = config.max_workers().unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = config.define("=amqp://u:s3cret@h").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn overrides_are_json_or_text_and_bare_keys_are_true() {
        let mut config = Config::new();
        config.define("max_workers=7").unwrap();
        config.define("DEBUG").unwrap();
        config.define("WEB_SERVER_ADDRESS=127.0.0.1:9000").unwrap();
        assert_eq!(config.max_workers().unwrap(), 7);
        assert_eq!(config.get("DEBUG"), Some(&json!(true)));
        assert_eq!(
            config.get("WEB_SERVER_ADDRESS"),
            Some(&json!("127.0.0.1:9000"))
        );
        assert!(config.truthy("DEBUG"));
        assert!(!config.truthy("ABSENT"));
        assert!(config.define("=1").is_err());
    }
}
