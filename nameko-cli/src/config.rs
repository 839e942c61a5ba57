//! The configuration options every command shares, and the one place their precedence is decided.
//!
//! Nameko reads its configuration from a YAML file (`--config`), lets single keys be overridden
//! (`--define KEY=VALUE`), and takes the broker from `--broker`. nameko-rs also reads `AMQP_URI`
//! from the environment, so a process in a container needs no file at all. For the broker
//! address, the most specific source wins:
//!
//! 1. `--define AMQP_URI=...`
//! 2. `--broker URI`
//! 3. `AMQP_URI` in the `--config` file (which may itself say `${AMQP_URI:...}`)
//! 4. the `AMQP_URI` environment variable
//! 5. `amqp://guest:guest@localhost`
//!
//! A file named on the command line beats the ambient environment because it is the more
//! deliberate choice, and it can still defer to the environment with `${AMQP_URI}`. Nameko 3
//! instead ignores `--broker` once a file sets `AMQP_URI`; a flag typed on the command line that
//! silently does nothing is a trap, so here it always wins over the file.
//!
//! Resolution takes the environment as an argument so the precedence is tested without touching
//! the process environment.

use std::path::PathBuf;

use nameko_amqp::DEFAULT_AMQP_URI;
use nameko_core::Config;

use crate::config_file;

use crate::error::CliError;

/// What `--help` says about where the broker address comes from.
pub(crate) const PRECEDENCE_HELP: &str = "\
Broker address (AMQP_URI), first match wins:
  1. --define AMQP_URI=URI
  2. --broker URI
  3. AMQP_URI in the --config file (which may say ${AMQP_URI:default})
  4. the AMQP_URI environment variable
  5. amqp://guest:guest@localhost

Logging: RUST_LOG sets the filter (default: info for run, warn for call and dispatch); logs go
to stderr and never show a password.

Exit status: 0 on success (a run stopped by SIGTERM or Ctrl-C included), 2 for a usage error,
1 for any other error.";

/// `--config`, `--define` and `--broker`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub(crate) struct ConfigArgs {
    /// A YAML config file; `${VAR}` and `${VAR:default}` in unquoted values come from the
    /// environment
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Sets a config key, overriding the file; the value is read as YAML and a bare KEY means
    /// true (repeatable)
    #[arg(long = "define", value_name = "KEY=VALUE")]
    pub(crate) defines: Vec<String>,
    /// The broker URI; sets AMQP_URI (see the precedence below)
    #[arg(long, value_name = "URI")]
    pub(crate) broker: Option<String>,
}

impl ConfigArgs {
    /// The effective configuration, with the process's `AMQP_URI` as the environment.
    pub(crate) fn resolve(&self) -> Result<Config, CliError> {
        self.resolve_with(std::env::var("AMQP_URI").ok())
    }

    /// The effective configuration, given the environment's `AMQP_URI`. The result always holds
    /// `AMQP_URI`, so `show-config` shows which broker a command would use.
    pub(crate) fn resolve_with(&self, env_amqp_uri: Option<String>) -> Result<Config, CliError> {
        let mut config = match &self.config {
            Some(path) => config_file::load(path)?,
            None => Config::new(),
        };
        let from_file = config.get("AMQP_URI").is_some_and(|v| !v.is_null());
        let uri = match (&self.broker, from_file) {
            (Some(broker), _) => Some(broker.clone()),
            (None, true) => None,
            (None, false) => Some(
                env_amqp_uri
                    .filter(|uri| !uri.is_empty())
                    .unwrap_or_else(|| DEFAULT_AMQP_URI.to_owned()),
            ),
        };
        if let Some(uri) = uri {
            config.set("AMQP_URI", uri);
        }
        for definition in &self.defines {
            config_file::define(&mut config, definition)?;
        }
        Ok(config)
    }
}

/// The broker a config names, as written (for logs, through [`shown_broker`]).
pub(crate) fn amqp_uri(config: &Config) -> String {
    config
        .get("AMQP_URI")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(DEFAULT_AMQP_URI)
        .to_owned()
}

/// A broker URI fit for a log line: the password replaced by `***`, even in a URI that does not
/// parse.
pub(crate) fn shown_broker(uri: &str) -> String {
    match nameko_amqp::AmqpUri::parse(uri) {
        Ok(parsed) => parsed.redacted(),
        Err(_) => mask_password(uri),
    }
}

/// Replaces what stands between `user:` and the last `@` before any query with `***`, so a
/// password holding an unescaped `/` or `@` is still hidden whole.
fn mask_password(uri: &str) -> String {
    let (scheme, rest) = match uri.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), uri),
    };
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    match rest[..before_query].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}{user}:***{}", &rest[at..])
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn args(config: Option<PathBuf>, defines: &[&str], broker: Option<&str>) -> ConfigArgs {
        ConfigArgs {
            config,
            defines: defines.iter().map(|d| (*d).to_owned()).collect(),
            broker: broker.map(str::to_owned),
        }
    }

    /// A config file in the temporary directory, unique to the calling test.
    fn file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("nameko-cli-{}-{name}.yaml", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        path
    }

    fn broker_of(args: &ConfigArgs, env: Option<&str>) -> String {
        amqp_uri(&args.resolve_with(env.map(str::to_owned)).unwrap())
    }

    #[test]
    fn the_broker_comes_from_the_most_specific_source() {
        let with_file = Some(file("precedence", "AMQP_URI: amqp://file\n"));
        let env = Some("amqp://env");

        assert_eq!(broker_of(&args(None, &[], None), None), DEFAULT_AMQP_URI);
        assert_eq!(
            broker_of(&args(None, &[], None), Some("")),
            DEFAULT_AMQP_URI
        );
        assert_eq!(broker_of(&args(None, &[], None), env), "amqp://env");
        assert_eq!(
            broker_of(&args(with_file.clone(), &[], None), env),
            "amqp://file"
        );
        assert_eq!(
            broker_of(&args(with_file.clone(), &[], Some("amqp://flag")), env),
            "amqp://flag"
        );
        assert_eq!(
            broker_of(
                &args(with_file, &["AMQP_URI=amqp://define"], Some("amqp://flag")),
                env
            ),
            "amqp://define"
        );
    }

    #[test]
    fn a_file_without_a_broker_falls_back_to_the_environment() {
        let path = file(
            "no-broker",
            "WEB_SERVER_ADDRESS: 127.0.0.1:9000\nAMQP_URI:\n",
        );
        let config = args(Some(path), &[], None)
            .resolve_with(Some("amqp://env".to_owned()))
            .unwrap();
        assert_eq!(amqp_uri(&config), "amqp://env");
        assert_eq!(
            config.get("WEB_SERVER_ADDRESS"),
            Some(&json!("127.0.0.1:9000"))
        );
    }

    #[test]
    fn defines_override_the_file_and_are_read_as_yaml() {
        let path = file("defines", "max_workers: 3\nrpc_exchange: from-file\n");
        let config = args(Some(path), &["max_workers=7", "DEBUG"], None)
            .resolve_with(None)
            .unwrap();
        assert_eq!(config.max_workers().unwrap(), 7);
        assert_eq!(config.get("rpc_exchange"), Some(&json!("from-file")));
        assert_eq!(config.get("DEBUG"), Some(&json!(true)));
    }

    #[test]
    fn a_missing_file_and_a_bad_define_are_errors_that_say_so() {
        let missing = args(Some(PathBuf::from("/nonexistent/nameko.yaml")), &[], None)
            .resolve_with(None)
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("cannot read config file /nonexistent/nameko.yaml"),
            "{missing}"
        );
        let bad = args(None, &["=1"], None)
            .resolve_with(None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            bad,
            "override `=1` must be KEY=VALUE (or a bare KEY for true)"
        );
    }

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            shown_broker("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            mask_password("weird://user:secret@host/x"),
            "weird://user:***@host/x"
        );
        assert_eq!(shown_broker("user:secret@host"), "user:***@host");
        assert_eq!(
            mask_password("weird://user:pa/ss@wo@host/x?y=@"),
            "weird://user:***@host/x?y=@"
        );
        assert_eq!(mask_password("no-authority"), "no-authority");
    }
}
