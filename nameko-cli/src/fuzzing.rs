//! Fuzz targets for the text this crate reads: config files with their `${VAR}` substitution
//! and `--define` overrides.
//!
//! A target panics only when an invariant breaks: a config file refused with an error is a
//! defined outcome, never a failure. Driven by libFuzzer from the workspace's `fuzz/` directory
//! and, on stable Rust, by this module's tests, which replay `fuzz/corpus/<target>/` and run a
//! short randomized search. The module only exists with the `fuzzing` feature or in tests, so it
//! is no part of the crate's API.

use std::path::Path;

use crate::config_file::{define, from_yaml_with, to_yaml};

/// The environment of [`config_text`]: a few variables, one of which refers to itself.
fn environment(name: &str) -> Option<String> {
    let value = match name {
        "HOST" => "rabbit",
        "PORT" => "5672",
        "LIST" => "[1, 2]",
        "EMPTY" => "",
        "NESTED" => "${HOST}",
        "TAGGED" => "!env_var \"${TAGGED}\"",
        "MAPPING" => "{a: ${HOST}}",
        _ => return None,
    };
    Some(value.to_owned())
}

/// A config file: reading it gives a config or an error, never a panic, and every typed key of a
/// config read can be asked for. Each line is also tried as a `--define` override.
/// A config file: reading it gives a config or an error, never a panic, and every extension's
/// settings of a config read can be asked for. Each line is also tried as a `--define` override.
pub fn config_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut config) = from_yaml_with(&text, Path::new("fuzz.yaml"), &environment) {
        // Every extension's reading of its keys gives settings or an error.
        let _ = nameko_amqp::AmqpSettings::from_config(&config);
        let _ = nameko_http::server::ServerConfig::from_config(&config);
        let _ = config.max_workers();
        let _ = config.parent_calls_tracked();
        // What `show-config` prints reads back as the same values.
        let printed = to_yaml(&config);
        if let Ok(again) = from_yaml_with(&printed, Path::new("again.yaml"), &|_| None) {
            for (key, value) in config.values() {
                if !printed.contains("${") {
                    assert_eq!(again.get(key), Some(value), "`{key}` in {printed}");
                }
            }
        }
        for line in text.lines() {
            let _ = define(&mut config, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use nameko_core::fuzzing::replay::{config, corpus, soup};
    use proptest::prelude::*;

    use super::*;

    const YAML_TOKENS: &[&str] = &[
        "AMQP_URI: ",
        "max_workers: ",
        "HEARTBEAT: ",
        "AMQP_SSL: ",
        "WEB_SERVER_ADDRESS: ",
        "LOGGING:\n",
        "  ",
        "- ",
        ": ",
        "${",
        "}",
        "${HOST}",
        "${PORT:8000}",
        "${NOPE:",
        "${LIST}",
        "${TAGGED}",
        "${NESTED}",
        "${MAPPING}",
        "${EMPTY:x}",
        ":",
        "\"",
        "'",
        "!env_var ",
        "!raw_env_var ",
        "#",
        "|",
        ">",
        "[",
        "]",
        "{",
        "}",
        ",",
        "\n",
        "10",
        "-1",
        "true",
        "null",
        "1.5",
        "&a ",
        "*a",
        "? ",
        "---\n",
        "\u{e9}",
    ];

    #[test]
    fn config_text_corpus() {
        for input in corpus("config_text") {
            config_text(&input);
        }
    }

    proptest! {
        #![proptest_config(config(2000))]

        #[test]
        fn config_text_random(data in soup(YAML_TOKENS, 40)) {
            config_text(&data);
        }
    }
}
