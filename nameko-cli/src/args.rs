//! The command line, declared with clap's derive: four subcommands sharing the config options.
//!
//! Kept apart from what the commands do so that parsing is tested on its own, on plain argument
//! lists. The names a `run` accepts are only known at run time (they are whatever the binary
//! registered), so they are checked after parsing, not by clap.

use clap::{Parser, Subcommand};

use crate::config::{ConfigArgs, PRECEDENCE_HELP};

/// Run Nameko services, call them and dispatch events.
#[derive(Debug, Parser)]
#[command(name = "nameko", version, after_help = PRECEDENCE_HELP)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// One `nameko` subcommand.
#[derive(Debug, PartialEq, Subcommand)]
pub(crate) enum Command {
    /// Run services until SIGTERM or Ctrl-C; a second Ctrl-C kills them
    #[command(after_help = PRECEDENCE_HELP)]
    Run {
        /// What to run: a registered name, or NAME:SERVICE for one service of it
        #[arg(required = true, value_name = "NAME[:SERVICE]")]
        names: Vec<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Call one RPC method and print its result as JSON
    #[command(after_help = PRECEDENCE_HELP)]
    Call {
        /// The method to call, as SERVICE.METHOD
        #[arg(value_name = "SERVICE.METHOD")]
        target: String,
        /// The arguments: a JSON array (positional) or object (keyword); none if left out
        #[arg(value_name = "JSON")]
        arguments: Option<String>,
        /// Seconds to wait for the reply
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
        timeout: f64,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Dispatch one event, as a service called SOURCE_SERVICE would
    #[command(after_help = PRECEDENCE_HELP)]
    Dispatch {
        /// The service the event comes from
        source_service: String,
        /// The event's type
        event_type: String,
        /// The payload, as JSON; null if left out
        #[arg(value_name = "JSON")]
        payload: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the effective configuration as YAML, after substitution and overrides
    #[command(after_help = PRECEDENCE_HELP)]
    ShowConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

impl Command {
    /// The config options of whichever command this is.
    pub(crate) fn config(&self) -> &ConfigArgs {
        match self {
            Self::Run { config, .. }
            | Self::Call { config, .. }
            | Self::Dispatch { config, .. }
            | Self::ShowConfig { config } => config,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Args::try_parse_from(std::iter::once("nameko").chain(args.iter().copied()))
            .map(|a| a.command)
    }

    #[test]
    fn run_takes_names_and_config_options_in_any_order() {
        let command = parse(&[
            "run",
            "--config",
            "c.yaml",
            "rpc:service_y",
            "http",
            "--define",
            "max_workers=3",
            "--define",
            "WEB_SERVER_ADDRESS=127.0.0.1:9000",
            "--broker",
            "amqp://rabbit",
        ])
        .unwrap();
        assert_eq!(
            command,
            Command::Run {
                names: vec!["rpc:service_y".into(), "http".into()],
                config: ConfigArgs {
                    config: Some(PathBuf::from("c.yaml")),
                    defines: vec![
                        "max_workers=3".into(),
                        "WEB_SERVER_ADDRESS=127.0.0.1:9000".into()
                    ],
                    broker: Some("amqp://rabbit".into()),
                },
            }
        );
    }

    #[test]
    fn run_needs_at_least_one_name() {
        let err = parse(&["run"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn call_takes_a_target_optional_json_and_a_timeout() {
        assert_eq!(
            parse(&["call", "greeting_service.hello", r#"["Matt"]"#]).unwrap(),
            Command::Call {
                target: "greeting_service.hello".into(),
                arguments: Some(r#"["Matt"]"#.into()),
                timeout: 30.0,
                config: ConfigArgs::default(),
            }
        );
        let Command::Call {
            arguments, timeout, ..
        } = parse(&["call", "svc.m", "--timeout", "2.5"]).unwrap()
        else {
            panic!("expected call");
        };
        assert_eq!((arguments, timeout), (None, 2.5));
    }

    #[test]
    fn dispatch_takes_source_type_and_optional_payload() {
        assert_eq!(
            parse(&["dispatch", "monitor", "ping", "{}", "--broker", "amqp://x"]).unwrap(),
            Command::Dispatch {
                source_service: "monitor".into(),
                event_type: "ping".into(),
                payload: Some("{}".into()),
                config: ConfigArgs {
                    broker: Some("amqp://x".into()),
                    ..ConfigArgs::default()
                },
            }
        );
        assert_eq!(
            parse(&["dispatch", "monitor"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn show_config_takes_only_config_options() {
        assert_eq!(
            parse(&["show-config", "--define", "DEBUG"]).unwrap(),
            Command::ShowConfig {
                config: ConfigArgs {
                    defines: vec!["DEBUG".into()],
                    ..ConfigArgs::default()
                }
            }
        );
        assert_eq!(
            parse(&["show-config", "extra"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
    }

    #[test]
    fn help_explains_the_broker_precedence() {
        let help = parse(&["run", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        let text = help.to_string();
        assert!(text.contains("1. --define AMQP_URI=URI"), "{text}");
        assert!(text.contains("RUST_LOG"), "{text}");
    }

    #[test]
    fn the_declaration_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
