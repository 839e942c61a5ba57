//! [`Cli`]: the `nameko` command as a library, so a user's own binary gets the same commands and
//! options for its own services.
//!
//! Python's `nameko run module[:Class]` imports services by name at run time; Rust has no such
//! import, so a binary registers each runnable thing under a name instead, with a function that
//! builds its services from the effective [`Config`]. One name may stand for several services
//! (the documentation's `rpc` example runs `service_x` and `service_y`), and `NAME:SERVICE`
//! picks one of them, as `module:Class` does. The built-in `nameko` binary is this same `Cli` with the examples
//! registered.

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use nameko_core::{AnyService, Config, Service};

use crate::args::{Args, Command};
use crate::error::CliError;
use crate::logging::Verbosity;

/// Builds the services registered under one name, from the effective configuration.
type Build = Arc<dyn Fn(&Config) -> Vec<AnyService> + Send + Sync>;

/// Something `run` can start: a name and the services it stands for.
#[derive(Clone)]
struct Target {
    name: String,
    build: Build,
}

/// The `nameko` command line over a set of registered services.
///
/// ```no_run
/// use std::process::ExitCode;
/// use std::time::Duration;
///
/// use nameko_cli::Cli;
/// use nameko_core::{Service, Worker};
/// use nameko_timer::timer;
///
/// async fn tick(_: Worker) {
///     println!("tick");
/// }
///
/// #[tokio::main]
/// async fn main() -> ExitCode {
///     // `my-binary run clock`, `my-binary show-config --config prod.yaml`, ...
///     Cli::new()
///         .service("clock", |_config| {
///             Service::new("clock").entrypoint(timer(Duration::from_secs(5), "tick", tick))
///         })
///         .run()
///         .await
/// }
/// ```
#[derive(Clone, Default)]
pub struct Cli {
    targets: Vec<Target>,
}

impl Cli {
    /// A command line with nothing registered to run yet; `call`, `dispatch` and `show-config`
    /// work regardless.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one service under `name`: `run <name>` starts what `build` returns.
    ///
    /// `build` gets the effective configuration (file, overrides, broker). It should only
    /// declare the service: it is also called to list the services in `run --help`, and
    /// everything that connects or binds belongs in the extensions' `setup` and `start`.
    pub fn service<F, S>(self, name: impl Into<String>, build: F) -> Self
    where
        F: Fn(&Config) -> Service<S> + Send + Sync + 'static,
        S: Send + Sync + 'static,
    {
        self.services(name, move |config| [AnyService::from(build(config))])
    }

    /// Registers several services under one `name`: `run <name>` starts them all in one
    /// process, `run <name>:<service>` only one of them. Services with different states go in
    /// one list as [`AnyService`]s (`service.into()`).
    pub fn services<F, I>(mut self, name: impl Into<String>, build: F) -> Self
    where
        F: Fn(&Config) -> I + Send + Sync + 'static,
        I: IntoIterator,
        I::Item: Into<AnyService>,
    {
        let name = name.into();
        self.targets.retain(|t| t.name != name);
        self.targets.push(Target {
            name,
            build: Arc::new(move |config| build(config).into_iter().map(Into::into).collect()),
        });
        self
    }

    /// The registered names, in the order they were registered.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.name.as_str())
    }

    /// Parses the process's arguments, runs the command and returns its exit code: 0 on success
    /// (a run that was stopped cleanly), 2 for a usage error, 1 for anything else, after printing
    /// `error: ...` to stderr.
    pub async fn run(self) -> ExitCode {
        self.run_from(std::env::args_os()).await
    }

    /// As [`Cli::run`], with the given arguments (the first is the program name).
    pub async fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = match self.parse(args) {
            Ok(command) => command,
            Err(err) => {
                // Help and version are "errors" to clap too; print() sends them to stdout.
                let _ = err.print();
                return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
            }
        };
        crate::logging::init(match command {
            Command::Call { .. } | Command::Dispatch { .. } => Verbosity::Warn,
            Command::Run { .. } | Command::ShowConfig { .. } => Verbosity::Info,
        });
        match self.execute(command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        }
    }

    /// Parses arguments, with the registered names listed in `run --help`.
    pub(crate) fn parse<I, T>(&self, args: I) -> Result<Command, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let listing = self.listing();
        let clap_command = Args::command().mut_subcommand("run", |run| {
            let help = run
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            run.after_help(format!("{listing}\n\n{help}"))
        });
        let matches = clap_command.try_get_matches_from(args)?;
        Args::from_arg_matches(&matches).map(|args| args.command)
    }

    /// `Available to run:` and one line per name with the services it starts.
    fn listing(&self) -> String {
        if self.targets.is_empty() {
            return "Nothing is registered to run.".to_owned();
        }
        let width = self.names().map(str::len).max().unwrap_or(0);
        let mut text = "Available to run:".to_owned();
        for target in &self.targets {
            let services = (target.build)(&Config::new());
            let names: Vec<&str> = services.iter().map(AnyService::name).collect();
            text.push_str(&format!("\n  {:width$}  {}", target.name, names.join(", ")));
        }
        text
    }

    async fn execute(&self, command: Command) -> Result<(), CliError> {
        let config = command.config().resolve()?;
        match command {
            Command::Run { names, .. } => {
                let services = self.select(&names, &config)?;
                crate::run::run(services, config).await
            }
            Command::Call {
                target,
                arguments,
                timeout,
                ..
            } => crate::call::call(&target, arguments.as_deref(), timeout, config).await,
            Command::Dispatch {
                source_service,
                event_type,
                payload,
                ..
            } => {
                crate::dispatch::dispatch(&source_service, &event_type, payload.as_deref(), config)
                    .await
            }
            Command::ShowConfig { .. } => {
                print!("{}", crate::config_file::to_yaml(&config));
                Ok(())
            }
        }
    }

    /// The services `run` starts for `names` (each `NAME` or `NAME:SERVICE`), in order.
    pub(crate) fn select(
        &self,
        names: &[String],
        config: &Config,
    ) -> Result<Vec<AnyService>, CliError> {
        let mut selected = Vec::new();
        for requested in names {
            let (name, service) = match requested.split_once(':') {
                Some((name, service)) => (name, Some(service)),
                None => (requested.as_str(), None),
            };
            let target = self
                .targets
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| CliError::UnknownName {
                    name: name.to_owned(),
                    known: self.known_names(),
                })?;
            let services = (target.build)(config);
            match service {
                None => selected.extend(services),
                Some(wanted) => {
                    let known = join(services.iter().map(AnyService::name));
                    let one = services
                        .into_iter()
                        .find(|s| s.name() == wanted)
                        .ok_or_else(|| CliError::UnknownService {
                            name: name.to_owned(),
                            service: wanted.to_owned(),
                            known,
                        })?;
                    selected.push(one);
                }
            }
        }
        Ok(selected)
    }

    fn known_names(&self) -> String {
        if self.targets.is_empty() {
            "a registered name (this binary registers none)".to_owned()
        } else {
            join(self.names())
        }
    }
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Debug for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cli")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use nameko_core::testing::dummy;
    use nameko_core::{DirectCall, Worker};

    use super::*;

    async fn noop(_: Worker, _: DirectCall) {}

    fn cli() -> Cli {
        Cli::new()
            .service("one", |_| {
                Service::new("alpha").entrypoint(dummy("m", noop))
            })
            .services("pair", |config| {
                let suffix = config
                    .get("SUFFIX")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned();
                vec![
                    Service::new(format!("x{suffix}")).entrypoint(dummy("m", noop)),
                    Service::new(format!("y{suffix}")).entrypoint(dummy("m", noop)),
                ]
            })
    }

    fn selected(cli: &Cli, names: &[&str], config: &Config) -> Result<Vec<String>, CliError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        cli.select(&names, config)
            .map(|services| services.iter().map(|s| s.name().to_owned()).collect())
    }

    #[test]
    fn names_select_every_service_or_one_of_a_group() {
        let cli = cli();
        let config = Config::new();
        assert_eq!(
            selected(&cli, &["one", "pair"], &config).unwrap(),
            ["alpha", "x", "y"]
        );
        assert_eq!(selected(&cli, &["pair:y"], &config).unwrap(), ["y"]);
    }

    #[test]
    fn services_are_built_from_the_effective_config() {
        let mut config = Config::new();
        config.set("SUFFIX", "_2");
        assert_eq!(
            selected(&cli(), &["pair"], &config).unwrap(),
            ["x_2", "y_2"]
        );
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let cli = cli();
        let config = Config::new();
        assert_eq!(
            selected(&cli, &["nope"], &config).unwrap_err().to_string(),
            "nothing to run is called `nope`: expected one of `one`, `pair`"
        );
        assert_eq!(
            selected(&cli, &["pair:z"], &config)
                .unwrap_err()
                .to_string(),
            "`pair` has no service called `z`: expected one of `x`, `y`"
        );
        assert!(
            selected(&Cli::new(), &["x"], &config)
                .unwrap_err()
                .to_string()
                .contains("registers none")
        );
    }

    #[test]
    fn registering_a_name_again_replaces_it() {
        let cli = cli().service("one", |_| Service::new("beta"));
        assert_eq!(cli.names().collect::<Vec<_>>(), ["pair", "one"]);
        assert_eq!(selected(&cli, &["one"], &Config::new()).unwrap(), ["beta"]);
    }

    #[test]
    fn run_help_lists_what_can_be_run() {
        let err = cli().parse(["nameko", "run", "--help"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Available to run:"), "{text}");
        assert!(text.contains("  one   alpha"), "{text}");
        assert!(text.contains("  pair  x, y"), "{text}");
        assert!(text.contains("AMQP_URI"), "{text}");
    }

    #[tokio::test]
    async fn exit_codes_tell_usage_errors_from_failures() {
        assert_eq!(cli().run_from(["nameko", "run"]).await, ExitCode::from(2));
        assert_eq!(
            cli().run_from(["nameko", "run", "nope"]).await,
            ExitCode::FAILURE
        );
        assert_eq!(
            cli()
                .run_from(["nameko", "show-config", "--define", "DEBUG"])
                .await,
            ExitCode::SUCCESS
        );
    }
}
