//! Redaction of `sensitive_arguments`, as Nameko's `get_redacted_args` does it.
//!
//! An entrypoint names the arguments that must never reach a log: a whole argument (`"password"`)
//! or a part of one (`"user.token"`, `"cards[0]"`). Redaction works on a copy so the worker still
//! gets the real values; paths that do not exist are ignored, because a caller may leave optional
//! arguments out.

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

fn parse_path(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].trim().parse() {
                steps.push(Step::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    steps
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
}
