//! Config files: Nameko's YAML with environment substitution, and `--define` overrides.
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
//! This lives at the edge, in the CLI, rather than in `nameko-core`: a service built into its
//! own binary can fill a [`Config`] any way it likes, and one that never reads a file links no
//! YAML parser. [`load`] is public for binaries that want Nameko's file format anyway.

use std::path::Path;

use nameko_core::{Config, ConfigError, hide_passwords};
use serde_json::{Map, Value};

/// Marks a `${` that stood in a plain scalar (a private-use character nobody writes in config).
const MARK: char = '\u{F8FF}';

/// How deeply substitutions may nest: `${A:${B:...}}` defaults, and values that bring in more
/// substitutions when read again (`!env_var` in a variable's value). Real files use two or three
/// levels; the bound turns a variable that refers to itself into an error instead of endless
/// recursion.
const MAX_SUBSTITUTION_DEPTH: usize = 32;

/// A config file that cannot be read, or an override that cannot be applied.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {}: {message}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        message: String,
    },
    /// The file is not valid YAML, or not a mapping at the top.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file (or `<inline>` for text).
        path: std::path::PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A `--define` override is not `KEY=VALUE`.
    #[error(transparent)]
    Override(#[from] ConfigError),
}

/// Reads a YAML file, substituting environment variables.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigFileError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    from_yaml_with(&text, path, &|name| std::env::var(name).ok())
}

/// Reads YAML text, substituting environment variables.
pub fn from_yaml(text: &str) -> Result<Config, ConfigFileError> {
    from_yaml_with(text, Path::new("<inline>"), &|name| {
        std::env::var(name).ok()
    })
}

/// Reads YAML text with variables looked up by `env` (tests use a map instead of the process
/// environment); `path` is named in errors, and in the errors of keys read later.
pub fn from_yaml_with(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigFileError> {
    let parse_error = |message: String| ConfigFileError::Parse {
        path: path.to_owned(),
        message,
    };
    let marked = mark_plain_substitutions(text);
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&marked).map_err(|e| parse_error(e.to_string()))?;
    let values = match resolve(yaml, env).map_err(parse_error)? {
        Value::Object(values) => values,
        Value::Null => Map::new(),
        other => {
            return Err(parse_error(format!(
                "expected a mapping of keys at the top, found {}",
                describe(&other)
            )));
        }
    };
    Ok(Config::from_map(values).with_source(path))
}

/// Applies a `KEY=VALUE` override; the value is read as YAML and a bare `KEY` means `true`.
pub fn define(config: &mut Config, definition: &str) -> Result<(), ConfigFileError> {
    let Some((key, raw)) = definition.split_once('=') else {
        return Ok(config.define(definition)?);
    };
    let refused = || ConfigError::Override(hide_passwords(definition));
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(raw).map_err(|_| refused())?;
    let value = resolve(yaml, &|_| None).map_err(|_| refused())?;
    let key = key.trim();
    if key.is_empty() {
        return Err(refused().into());
    }
    config.set(key, value);
    Ok(())
}

/// The configuration as YAML, as `nameko show-config` prints it: every value as written,
/// passwords in URLs included (Nameko's `show-config` prints them too, and the command exists
/// to show what a service would be given). Not for logs: log [`Config`]'s `Debug` instead.
pub fn to_yaml(config: &Config) -> String {
    serde_yaml_ng::to_string(config.values()).unwrap_or_default()
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
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

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigFileError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_yaml_with(text, Path::new("test.yaml"), &|n| vars.get(n).cloned())
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
    fn keys_read_later_name_the_file() {
        let bad = load("max_workers: lots\n", &[]).unwrap();
        assert_eq!(bad.source(), Some(Path::new("test.yaml")));
        let err = bad.max_workers().unwrap_err().to_string();
        assert_eq!(
            err,
            "config test.yaml: key `max_workers` must be a positive integer, found the string `lots`"
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
    fn passwords_stay_out_of_errors_but_show_config_shows_them() {
        let config = load("AMQP_URI: amqp://guest:s3cret@rabbit/%2f\n", &[]).unwrap();
        // `show-config` shows the file as written.
        assert!(to_yaml(&config).contains("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"));

        let mut config = Config::new();
        let error = define(&mut config, "AMQP_URI=[amqp://u:s3cret@h").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = load("AMQP_URI: amqp://u:s3cret@h/${VHOST\n", &[]).unwrap_err();
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
        define(&mut config, "max_workers=7").unwrap();
        define(&mut config, "DEBUG").unwrap();
        define(&mut config, "WEB_SERVER_ADDRESS=127.0.0.1:9000").unwrap();
        define(&mut config, "HOSTS=[a, b]").unwrap();
        assert_eq!(config.max_workers().unwrap(), 7);
        assert_eq!(config.get("DEBUG"), Some(&json!(true)));
        assert_eq!(
            config.get("WEB_SERVER_ADDRESS"),
            Some(&json!("127.0.0.1:9000"))
        );
        assert_eq!(config.get("HOSTS"), Some(&json!(["a", "b"])));
        assert!(define(&mut config, "=1").is_err());
    }
}
