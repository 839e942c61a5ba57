//! Redaction of `sensitive_arguments`, as Nameko's `get_redacted_args` does it.
//!
//! An entrypoint names the arguments that must never reach a log: a whole argument (`"password"`)
//! or a part of one (`"user.token"`, `"cards[0]"`). Redaction works on a copy so the worker still
//! gets the real values; paths that do not exist are ignored, because a caller may leave optional
//! arguments out. Paths are read with Nameko's rule, so any text is a path: runs of word
//! characters are keys, `[n]` is a list index, and everything else separates them.

use serde_json::Value;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "********";

/// Returns `args` with every value named by `sensitive` replaced by [`REDACTED`].
///
/// `args` is normally an object of argument name to value; paths use `.` for keys and `[n]` for
/// list indexes.
pub fn redact(args: &Value, sensitive: &[String]) -> Value {
    let mut out = args.clone();
    for path in sensitive {
        let steps = parse_path(path);
        if let Some(target) = walk(&mut out, &steps) {
            *target = Value::String(REDACTED.to_owned());
        }
    }
    out
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Reads a path as Nameko does, with `re.findall(r"(\w+)|\[(\d+)\]", path)`: a run of word
/// characters is a key, digits in brackets are a list index, anything else only separates them.
/// A path with no step at all names the whole arguments.
fn parse_path(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut rest = path;
    while let Some(first) = rest.chars().next() {
        if is_word(first) {
            let end = rest.find(|c| !is_word(c)).unwrap_or(rest.len());
            steps.push(Step::Key(&rest[..end]));
            rest = &rest[end..];
        } else if let Some((index, len)) = bracketed_index(rest) {
            steps.push(Step::Index(index));
            rest = &rest[len..];
        } else {
            rest = &rest[first.len_utf8()..];
        }
    }
    steps
}

/// Python's `\w`: letters, digits and the underscore, in any script.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `[digits]` at the start of `text`: the index and the length of the whole. An index too big for
/// any list still names one, which then never exists.
fn bracketed_index(text: &str) -> Option<(usize, usize)> {
    let digits = text.strip_prefix('[')?;
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    if end == 0 || !digits[end..].starts_with(']') {
        return None;
    }
    Some((digits[..end].parse().unwrap_or(usize::MAX), end + 2))
}

fn walk<'v>(value: &'v mut Value, steps: &[Step<'_>]) -> Option<&'v mut Value> {
    let mut current = value;
    for step in steps {
        current = match step {
            Step::Key(k) => current.get_mut(*k)?,
            Step::Index(i) => current.get_mut(*i)?,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_whole_and_partial_arguments_without_touching_the_original() {
        let args = json!({"user": "matt", "password": "secret", "card": {"numbers": [1, 2]}});
        let out = redact(
            &args,
            &[
                "password".into(),
                "card.numbers[1]".into(),
                "missing.x".into(),
            ],
        );
        assert_eq!(
            out,
            json!({"user": "matt", "password": REDACTED, "card": {"numbers": [1, REDACTED]}})
        );
        assert_eq!(args["password"], "secret");
    }

    #[test]
    fn paths_read_as_nameko_reads_them() {
        let args = json!({"a": [1, {"b": 2}], "c_d": {"\u{e9}": 3}, "x": [0]});
        let steps = |path| {
            parse_path(path)
                .into_iter()
                .map(|step| match step {
                    Step::Key(key) => key.to_owned(),
                    Step::Index(index) => format!("[{index}]"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(steps("a[1].b"), ["a", "[1]", "b"]);
        assert_eq!(steps("a[1]b"), ["a", "[1]", "b"]);
        assert_eq!(steps("c_d.\u{e9}"), ["c_d", "\u{e9}"]);
        // Brackets that hold no index are separators; the words in them are keys.
        assert_eq!(steps("a[ 0 ]"), ["a", "0"]);
        assert_eq!(steps("a[x]"), ["a", "x"]);
        assert_eq!(
            steps("a[99999999999999999999999]"),
            ["a", &format!("[{}]", usize::MAX)]
        );
        // These used to slice strings in the middle of a character, or backwards, and panic.
        assert_eq!(steps("x[0]]"), ["x", "[0]"]);
        assert_eq!(steps("x[0]\u{e9}]"), ["x", "[0]", "\u{e9}"]);
        assert_eq!(
            redact(
                &args,
                &["x[0]]".into(), "a[1].b".into(), "c_d.\u{e9}".into()]
            ),
            json!({"a": [1, {"b": REDACTED}], "c_d": {"\u{e9}": REDACTED}, "x": [REDACTED]})
        );
        assert_eq!(redact(&args, &["x[5]".into(), "nope".into()]), args);
    }
}
