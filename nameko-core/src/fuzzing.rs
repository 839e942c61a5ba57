//! Fuzz targets for the text this crate reads: the `sensitive_arguments` paths that redact what
//! a worker logs. (Config files are read, and fuzzed, in `nameko-cli`.)
//!
//! Each target panics only when an invariant breaks: input refused with an error is a
//! defined outcome, never a failure. The targets are driven by libFuzzer from the workspace's
//! `fuzz/` directory and, on stable Rust, by this module's tests, which replay
//! `fuzz/corpus/<target>/` and run a short randomized search. The module only exists with the
//! `fuzzing` feature or in tests, so it is no part of the crate's API.

use serde_json::Value;

use crate::redact::{REDACTED, redact};

/// `sensitive_arguments` paths applied to arguments from the wire.
///
/// The input's first line holds the paths (separated by spaces); the rest is the arguments as
/// JSON. Redaction never panics, never touches the arguments it is given, replaces values with
/// `********` and nothing else, and redacting twice changes nothing more.
pub fn redaction(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (paths, args) = text.split_once('\n').unwrap_or((&text, ""));
    let paths: Vec<String> = paths.split(' ').map(str::to_owned).collect();
    let args: Value = serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.into()));
    let original = args.clone();

    let redacted = redact(&args, &paths);
    assert_eq!(
        args, original,
        "redaction changed the arguments it was given"
    );
    assert_only_redacted(&args, &redacted);
    assert_eq!(
        redact(&redacted, &paths),
        redacted,
        "redacting twice differs"
    );
}

/// `after` is `before` with some values replaced by [`REDACTED`].
fn assert_only_redacted(before: &Value, after: &Value) {
    if after == before || *after == Value::String(REDACTED.to_owned()) {
        return;
    }
    match (before, after) {
        (Value::Array(old), Value::Array(new)) => {
            assert_eq!(old.len(), new.len());
            for (old, new) in old.iter().zip(new) {
                assert_only_redacted(old, new);
            }
        }
        (Value::Object(old), Value::Object(new)) => {
            assert!(old.keys().eq(new.keys()), "keys changed");
            for (old, new) in old.values().zip(new.values()) {
                assert_only_redacted(old, new);
            }
        }
        _ => panic!("{before} became {after}"),
    }
}

/// What every crate's fuzz tests share: the kept corpus and a proptest search over token soups.
pub mod replay {
    use std::path::PathBuf;

    use proptest::prelude::*;
    use proptest::test_runner::Config;

    /// Every input kept in `fuzz/corpus/<target>/`; there is always some.
    pub fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
        let inputs: Vec<Vec<u8>> = entries
            .map(|entry| {
                let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .collect();
        assert!(!inputs.is_empty(), "{} is empty", dir.display());
        inputs
    }

    /// A short, reproducible search: `cases` inputs, nothing persisted.
    pub fn config(cases: u32) -> Config {
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// Byte strings made of `tokens` and stray bytes: mostly well-formed enough to get past the
    /// first check, as random bytes alone would not.
    pub fn soup(tokens: &'static [&'static str], pieces: usize) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => prop::sample::select(tokens).prop_map(|token| token.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..3),
        ];
        prop::collection::vec(piece, 0..pieces).prop_map(|pieces| pieces.concat())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::replay::{config, corpus, soup};

    const REDACT_TOKENS: &[&str] = &[
        "password",
        "card",
        ".",
        "[",
        "]",
        "0",
        "1",
        " ",
        "\u{e9}",
        "x",
        "\n",
        "{",
        "}",
        "\"password\": ",
        "\"card\": ",
        "[1, 2]",
        "\"secret\"",
        "{\"x\": [",
        ",",
        "]",
        "}",
    ];

    #[test]
    fn redaction_corpus() {
        for input in corpus("redaction") {
            redaction(&input);
        }
    }

    proptest! {
        #![proptest_config(config(2000))]

        #[test]
        fn redaction_random(data in soup(REDACT_TOKENS, 30)) {
            redaction(&data);
        }
    }
}
