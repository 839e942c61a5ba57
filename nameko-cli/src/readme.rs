//! Checks that keep `README.md` true: every `cargo run -p nameko-cli -- ...` command it shows
//! parses and names something the binary can run, and the own-binary example it shows is
//! `examples/greeter.rs` verbatim (which compiles and has a test of its own).
//!
//! The Rust code blocks of the README are compiled as doc tests (see the end of `lib.rs`); the
//! end-to-end tests in `tests/tests/e2e/cli.rs` run the commands against a real binary. This
//! module catches the cheap mistakes in between: a renamed example, a misspelt option, a README
//! that shows a greeter the repository no longer has.

use nameko_core::Config;

use crate::args::Command;
use crate::examples;

const README: &str = include_str!("../../README.md");
const GREETER: &str = include_str!("../examples/greeter.rs");
const PREFIX: &str = "cargo run -p nameko-cli -- ";

/// Splits a shell command line into words, honouring single and double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Every `nameko` command line the README shows, from console blocks (`$ cargo run ...`) and
/// from inline code (`` `cargo run ...` ``), without the `cargo run` prefix.
fn readme_commands() -> Vec<String> {
    let mut commands = Vec::new();
    for line in README.lines() {
        if let Some(rest) = line
            .trim()
            .strip_prefix("$ ")
            .and_then(|l| l.strip_prefix(PREFIX))
        {
            commands.push(rest.to_owned());
        }
        for (index, span) in line.split('`').enumerate() {
            if index % 2 == 1
                && let Some(rest) = span.strip_prefix(PREFIX)
            {
                commands.push(rest.to_owned());
            }
        }
    }
    commands
}

#[test]
fn the_shell_splitter_honours_quotes() {
    assert_eq!(
        shell_words(r#"call svc.m '["Matt"]' --timeout 2"#),
        ["call", "svc.m", r#"["Matt"]"#, "--timeout", "2"]
    );
    assert_eq!(
        shell_words(r#"dispatch a b '"hi"' "x y""#),
        ["dispatch", "a", "b", r#""hi""#, "x y"]
    );
}

#[test]
fn every_readme_command_parses_and_names_what_exists() {
    let commands = readme_commands();
    assert!(commands.len() >= 10, "found only {commands:?}");
    let cli = examples::cli();
    for command in &commands {
        let words = shell_words(command);
        let parsed = cli
            .parse(std::iter::once("nameko".to_owned()).chain(words))
            .unwrap_or_else(|err| panic!("README command `{command}` does not parse:\n{err}"));
        if let Command::Run { names, .. } = parsed
            && let Err(err) = cli.select(&names, &Config::new())
        {
            panic!("README command `{command}`: {err}");
        }
    }
}

#[test]
fn every_example_is_shown_in_the_readme() {
    let commands = readme_commands();
    for name in examples::cli().names() {
        let run = format!("run {name}");
        assert!(
            commands
                .iter()
                .any(|c| c == &run || c.starts_with(&format!("{run} "))),
            "the README never shows `{PREFIX}{run}`"
        );
    }
}

#[test]
fn the_readme_shows_the_greeter_example_verbatim() {
    let block = format!("```rust,no_run\n{GREETER}```");
    assert!(
        README.contains(&block),
        "README.md must show examples/greeter.rs verbatim in a ```rust,no_run block"
    );
}
