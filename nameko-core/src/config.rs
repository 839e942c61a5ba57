//! Configuration: Nameko's YAML files, environment substitution, overrides and typed keys.
//!
//! Nameko reads a YAML file in which plain (unquoted) scalars may contain `${VAR}` or
//! `${VAR:default}`; the substituted text is read again as YAML, so `${PORT:8000}` is the number
//! 8000 and `${HOSTS:[a, b]}` a list. A quoted `"${VAR}"` is left alone unless tagged `!env_var`;
//! `!raw_env_var` substitutes but keeps a string. Unlike Nameko, nested defaults
//! (`${A:${B:x}}`) work without extra modules. `--define KEY=VALUE` overrides are read as YAML too.
//!
//! YAML parsers do not report whether a scalar was quoted, so substitution marks every `${` that
//! stands outside quotes before parsing (a small scanner that knows YAML's quoting and comments)
//! and substitutes those marks afterwards. Block scalars (`|`, `>`) count as plain here.
//!
//! Typed accessors cover the keys the reference lists; a value of the wrong kind is an error that
//! names the file, the key, what was expected and what was found.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ConfigError;

/// Marks a `${` that stood in a plain scalar (a private-use character nobody writes in config).
const MARK: char = '\u{F8FF}';

/// How deeply substitutions may nest: `${A:${B:...}}` defaults, and values that bring in more
/// substitutions when read again (`!env_var` in a variable's value). Real files use two or three
/// levels; the bound turns a variable that refers to itself into an error instead of endless
/// recursion.
const MAX_SUBSTITUTION_DEPTH: usize = 32;

/// The default broker URI, as Nameko 3 has it.
pub const DEFAULT_AMQP_URI: &str = "amqp://guest:guest@localhost";
/// The default HTTP bind address.
pub const DEFAULT_WEB_SERVER_ADDRESS: &str = "0.0.0.0:8000";
/// The default RPC exchange.
pub const DEFAULT_RPC_EXCHANGE: &str = "nameko-rpc";
/// The default number of concurrent workers per service.
pub const DEFAULT_MAX_WORKERS: usize = 10;
/// The default number of parent call ids kept in `call_id_stack`.
pub const DEFAULT_PARENT_CALLS_TRACKED: usize = 10;
/// The default AMQP heartbeat, in seconds.
pub const DEFAULT_HEARTBEAT: u16 = 60;

/// A service configuration: a YAML mapping with typed access to Nameko's keys.
///
/// Its `Debug` output hides the password of every URL in it (`amqp://user:***@host`), so a
/// config can be logged; [`Config::to_yaml`] shows it as written.
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

    /// Reads a YAML file, substituting environment variables.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut config = Self::from_yaml_with(&text, path, &|name| std::env::var(name).ok())?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Reads YAML text, substituting environment variables.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_with(text, Path::new("<inline>"), &|name| {
            std::env::var(name).ok()
        })
    }

    /// Reads YAML text with variables looked up by `env` (tests use a map instead of the process
    /// environment).
    pub fn from_yaml_with(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let marked = mark_plain_substitutions(text);
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&marked).map_err(|e| parse_error(e.to_string()))?;
        let value = resolve(yaml, env).map_err(parse_error)?;
        match value {
            Value::Object(values) => Ok(Self {
                values,
                source: Some(path.to_owned()),
            }),
            Value::Null => Ok(Self {
                values: Map::new(),
                source: Some(path.to_owned()),
            }),
            other => Err(parse_error(format!(
                "expected a mapping of keys at the top, found {}",
                describe(&other)
            ))),
        }
    }

    /// Applies a `KEY=VALUE` override; the value is read as YAML and a bare `KEY` means `true`.
    pub fn define(&mut self, definition: &str) -> Result<(), ConfigError> {
        let (key, value) = match definition.split_once('=') {
            Some((key, raw)) => {
                let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(raw)
                    .map_err(|_| ConfigError::Override(hide_passwords(definition)))?;
                let value = resolve(yaml, &|_| None)
                    .map_err(|_| ConfigError::Override(hide_passwords(definition)))?;
                (key.trim(), value)
            }
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

    fn invalid(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
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

    /// `AMQP_URI`: the broker, default `amqp://guest:guest@localhost`.
    pub fn amqp_uri(&self) -> Result<String, ConfigError> {
        Ok(self
            .get_as::<String>("AMQP_URI", "a broker URI string")?
            .unwrap_or_else(|| DEFAULT_AMQP_URI.to_owned()))
    }

    /// `WEB_SERVER_ADDRESS`: `[address:]port`, default `0.0.0.0:8000` (a bare port number counts).
    pub fn web_server_address(&self) -> Result<String, ConfigError> {
        match self.values.get("WEB_SERVER_ADDRESS") {
            None | Some(Value::Null) => Ok(DEFAULT_WEB_SERVER_ADDRESS.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
            Some(other) => Err(self.invalid("WEB_SERVER_ADDRESS", "`[address:]port`", other)),
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

    /// `rpc_exchange`: the RPC exchange's name, default `nameko-rpc`.
    pub fn rpc_exchange(&self) -> Result<String, ConfigError> {
        Ok(self
            .get_as::<String>("rpc_exchange", "an exchange name")?
            .unwrap_or_else(|| DEFAULT_RPC_EXCHANGE.to_owned()))
    }

    /// `HEARTBEAT`: AMQP heartbeat in seconds, default 60 (0 turns heartbeats off).
    pub fn heartbeat(&self) -> Result<u16, ConfigError> {
        Ok(self
            .get_as::<u16>("HEARTBEAT", "a number of seconds from 0 to 65535")?
            .unwrap_or(DEFAULT_HEARTBEAT))
    }

    /// `PREFETCH_COUNT`: messages a consumer may hold unacknowledged. Defaults to `max_workers`,
    /// so a service holds no more work than it can start.
    pub fn prefetch_count(&self) -> Result<u16, ConfigError> {
        match self.get_as::<u16>("PREFETCH_COUNT", "an integer from 1 to 65535")? {
            Some(0) => Err(self.invalid(
                "PREFETCH_COUNT",
                "an integer from 1 to 65535",
                &Value::from(0),
            )),
            Some(n) => Ok(n),
            None => Ok(u16::try_from(self.max_workers()?).unwrap_or(u16::MAX)),
        }
    }

    /// `serializer`: only `json` is supported; anything else is an error naming the key.
    pub fn serializer(&self) -> Result<String, ConfigError> {
        let name = self
            .get_as::<String>("serializer", "a serializer name")?
            .unwrap_or_else(|| "json".to_owned());
        if name != "json" {
            return Err(self.invalid("serializer", "`json`", &Value::String(name)));
        }
        Ok(name)
    }

    /// `AMQP_SSL`: `true` or a mapping of TLS options, or `None`.
    pub fn amqp_ssl(&self) -> Result<Option<Value>, ConfigError> {
        match self.values.get("AMQP_SSL") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
            Some(v @ (Value::Bool(true) | Value::Object(_))) => Ok(Some(v.clone())),
            Some(other) => Err(self.invalid("AMQP_SSL", "true or a mapping of TLS options", other)),
        }
    }

    /// `LOGIN_METHOD`: the AMQP SASL mechanism (`PLAIN`, `AMQPLAIN`, `EXTERNAL`), if set.
    pub fn login_method(&self) -> Result<Option<String>, ConfigError> {
        self.get_as::<String>("LOGIN_METHOD", "a SASL mechanism name")
    }

    /// `AUTO_DELETE_EVENT_EXCHANGES`: declare event exchanges auto-delete (default false).
    pub fn auto_delete_event_exchanges(&self) -> bool {
        self.values
            .get("AUTO_DELETE_EVENT_EXCHANGES")
            .is_some_and(truthy)
    }

    /// `DECLARE_EVENT_EXCHANGES`: unless explicitly `false`, event exchanges are declared.
    pub fn declare_event_exchanges(&self) -> bool {
        self.values.get("DECLARE_EVENT_EXCHANGES") != Some(&Value::Bool(false))
    }

    /// The configuration as YAML, as `nameko show-config` prints it: every value as written,
    /// passwords in URLs included (Nameko's `show-config` prints them too, and the command exists
    /// to show what a service would be given). Not for logs: log [`Config`]'s `Debug` instead.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.values).unwrap_or_default()
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
pub(crate) fn hide_passwords(text: &str) -> String {
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

/// Replaces the `$` of every `${` outside quoted scalars and comments with [`MARK`].
fn mark_plain_substitutions(text: &str) -> String {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut out = String::with_capacity(text.len());
    let mut quote = Quote::None;
    for line in text.split_inclusive('\n') {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        // A quote opens a quoted scalar only where a scalar can begin.
        let mut scalar_start = true;
        let mut in_tag = false;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Quote::Single => {
                    if c == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            out.push_str("''");
                            i += 2;
                            continue;
                        }
                        quote = Quote::None;
                    }
                    out.push(c);
                }
                Quote::Double => {
                    if c == '\\' {
                        out.push(c);
                        if let Some(next) = chars.get(i + 1) {
                            out.push(*next);
                        }
                        i += 2;
                        continue;
                    }
                    if c == '"' {
                        quote = Quote::None;
                    }
                    out.push(c);
                }
                Quote::None => {
                    if c == '#' && (i == 0 || chars[i - 1].is_whitespace()) {
                        out.extend(&chars[i..]);
                        break;
                    }
                    if scalar_start && c == '\'' {
                        quote = Quote::Single;
                    } else if scalar_start && c == '"' {
                        quote = Quote::Double;
                    }
                    if c == '$' && chars.get(i + 1) == Some(&'{') {
                        out.push(MARK);
                    } else {
                        out.push(c);
                    }
                    if in_tag {
                        if c.is_whitespace() {
                            in_tag = false;
                            scalar_start = true;
                        }
                    } else if scalar_start && c == '!' {
                        in_tag = true;
                    } else if !c.is_whitespace() {
                        scalar_start = matches!(c, ':' | '-' | '[' | '{' | ',' | '?');
                    }
                }
            }
            i += 1;
        }
    }
    out
}

/// Converts parsed YAML to JSON values, substituting variables where marked or tagged.
fn resolve(
    value: serde_yaml_ng::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    resolve_at(value, env, 0)
}

/// [`resolve`] for YAML read from a substitution's result `depth` levels down.
fn resolve_at(
    value: serde_yaml_ng::Value,
    env: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) if s.contains(MARK) => {
            let restored = s.replace(MARK, "$");
            reparse(&substitute(&restored, env, depth)?, env, depth)?
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(|v| resolve_at(v, env, depth))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match resolve_at(k, env, depth)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, resolve_at(v, env, depth)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let inner = resolve_at(tagged.value, env, depth)?;
            match (tag.trim_start_matches('!'), inner) {
                ("env_var", Value::String(s)) => reparse(&substitute(&s, env, depth)?, env, depth)?,
                ("raw_env_var", Value::String(s)) => Value::String(substitute(&s, env, depth)?),
                (_, other) => other,
            }
        }
    })
}

fn reparse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    if depth >= MAX_SUBSTITUTION_DEPTH {
        return Err(too_deep(text));
    }
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(yaml) => resolve_at(yaml, env, depth + 1),
        // Text YAML cannot read (`a: b: c`) stays a string, as Python keeps the scalar.
        Err(_) => Ok(Value::String(text.to_owned())),
    }
}

fn too_deep(text: &str) -> String {
    let start: String = hide_passwords(text).chars().take(40).collect();
    format!(
        "substitutions nest more than {MAX_SUBSTITUTION_DEPTH} levels deep at `{start}`: expected \
         fewer (is there a variable that refers to itself?)"
    )
}

/// Substitutes every `${NAME}` and `${NAME:default}` in `text`; defaults may nest.
fn substitute(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    nesting: usize,
) -> Result<String, String> {
    if nesting >= MAX_SUBSTITUTION_DEPTH {
        return Err(too_deep(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let body = &rest[start + 2..];
        let mut depth = 1usize;
        let mut end = None;
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
                depth += 1;
                i += 2;
                continue;
            }
            if bytes[i] == b'}' {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            i += 1;
        }
        let Some(end) = end else {
            return Err(format!("unclosed `${{` in `{}`", hide_passwords(text)));
        };
        let inner = &body[..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(format!("bad variable name in `${{{inner}}}`"));
        }
        match env(name) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&substitute(default.unwrap_or(""), env, nesting + 1)?),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_yaml_with(text, Path::new("test.yaml"), &|n| vars.get(n).cloned())
    }

    #[test]
    fn substitutes_plain_scalars_and_reads_the_result_as_yaml() {
        let config = load(
            "AMQP_URI: pyamqp://${U:guest}:pw@${H:localhost}/\n\
             PORT: ${PORT:8000}\n\
             LIST: ${L:[1, 2]}\n\
             MISSING: ${NOPE}\n\
             FROM_ENV: ${SET}\n\
             NESTED: ${A:${B:deep}}\n",
            &[("SET", "true"), ("H", "rabbit")],
        )
        .unwrap();
        assert_eq!(
            config.get("AMQP_URI"),
            Some(&json!("pyamqp://guest:pw@rabbit/"))
        );
        assert_eq!(config.get("PORT"), Some(&json!(8000)));
        assert_eq!(config.get("LIST"), Some(&json!([1, 2])));
        assert_eq!(config.get("MISSING"), Some(&Value::Null));
        assert_eq!(config.get("FROM_ENV"), Some(&json!(true)));
        assert_eq!(config.get("NESTED"), Some(&json!("deep")));
    }

    #[test]
    fn quoted_scalars_are_left_alone_unless_tagged() {
        let config = load(
            "QUOTED: \"${X:1}\"\nSINGLE: '${X:1}'\nTAGGED: !env_var \"${X:1}\"\nRAW: !raw_env_var \"${X:1}\"\n# ${IN_COMMENT}\nPLAIN: it's ${X:2}\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.get("QUOTED"), Some(&json!("${X:1}")));
        assert_eq!(config.get("SINGLE"), Some(&json!("${X:1}")));
        assert_eq!(config.get("TAGGED"), Some(&json!(1)));
        assert_eq!(config.get("RAW"), Some(&json!("1")));
        assert_eq!(config.get("PLAIN"), Some(&json!("it's 2")));
    }

    #[test]
    fn typed_keys_have_defaults_and_clear_errors() {
        let config = Config::new();
        assert_eq!(config.max_workers().unwrap(), 10);
        assert_eq!(config.parent_calls_tracked().unwrap(), 10);
        assert_eq!(config.rpc_exchange().unwrap(), "nameko-rpc");
        assert_eq!(config.heartbeat().unwrap(), 60);
        assert_eq!(config.amqp_uri().unwrap(), "amqp://guest:guest@localhost");
        assert_eq!(config.web_server_address().unwrap(), "0.0.0.0:8000");

        let bad = load("max_workers: lots\n", &[]).unwrap();
        let err = bad.max_workers().unwrap_err().to_string();
        assert_eq!(
            err,
            "config test.yaml: key `max_workers` must be a positive integer, found the string `lots`"
        );
        assert!(
            load("max_workers: 0\n", &[])
                .unwrap()
                .max_workers()
                .is_err()
        );
    }

    #[test]
    fn substitutions_that_never_end_are_errors() {
        // A variable whose value substitutes itself again, and defaults nested beyond reason,
        // used to recurse until the stack overflowed.
        let err = load("X: ${SELF}\n", &[("SELF", "!env_var \"${SELF}\"")]).unwrap_err();
        assert!(err.to_string().contains("nest more than"), "{err}");
        let deep = format!("X: {}x{}\n", "${A:".repeat(5000), "}".repeat(5000));
        let err = load(&deep, &[]).unwrap_err();
        assert!(err.to_string().contains("nest more than"), "{err}");
        let fine = format!("X: {}x{}\n", "${A:".repeat(8), "}".repeat(8));
        assert_eq!(load(&fine, &[]).unwrap().get("X"), Some(&json!("x")));
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

        let config = load(
            "AMQP_URI: amqp://guest:s3cret@rabbit/%2f\nDB: {url: 'postgres://u:s3cret@db'}\n",
            &[],
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("amqp://guest:***@rabbit/%2f"), "{debug}");
        // `show-config` shows the file as written.
        assert!(config.to_yaml().contains("s3cret"));

        let mut config = Config::new();
        let error = config.define("AMQP_URI=[amqp://u:s3cret@h").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = load("AMQP_URI: amqp://u:s3cret@h/${VHOST\n", &[]).unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = load("max_workers: amqp://u:s3cret@h\n", &[])
            .unwrap()
            .max_workers()
            .unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_mapping_names_the_file() {
        let err = load("- a\n- b\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("config file test.yaml:"), "{err}");
        assert!(err.contains("mapping"), "{err}");
    }

    #[test]
    fn overrides_are_yaml_and_bare_keys_are_true() {
        let mut config = load("max_workers: 3\n", &[]).unwrap();
        config.define("max_workers=7").unwrap();
        config.define("DEBUG").unwrap();
        config.define("WEB_SERVER_ADDRESS=127.0.0.1:9000").unwrap();
        assert_eq!(config.max_workers().unwrap(), 7);
        assert_eq!(config.get("DEBUG"), Some(&json!(true)));
        assert_eq!(config.web_server_address().unwrap(), "127.0.0.1:9000");
        assert!(config.define("=1").is_err());
    }
}
