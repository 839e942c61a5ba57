//! What the `nameko` command can fail with, one variant per thing a user can get wrong or meet.
//!
//! Every message is printed after `error: ` and ends the process with a non-zero exit code, so
//! each one says what was expected and what was found, in words a user of the command reads.

use nameko_core::{ConfigError, RemoteError, RunnerError};

/// Why a `nameko` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration file or a `--define` could not be read.
    #[error(transparent)]
    ConfigFile(#[from] crate::config_file::ConfigFileError),
    /// A configuration key has a value of the wrong kind.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `nameko run` was given a name nothing is registered under.
    #[error("nothing to run is called `{name}`: expected one of {known}")]
    UnknownName {
        /// The name given.
        name: String,
        /// The registered names, comma separated.
        known: String,
    },
    /// `nameko run <name>:<service>` named a service the group does not have.
    #[error("`{name}` has no service called `{service}`: expected one of {known}")]
    UnknownService {
        /// The registered name.
        name: String,
        /// The service asked for.
        service: String,
        /// The services `name` runs, comma separated.
        known: String,
    },
    /// The services could not be assembled, or one of them failed.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// SIGTERM or Ctrl-C arrived before every service had started.
    #[error("interrupted while the services were starting")]
    Interrupted,
    /// A command-line argument could not be read.
    #[error("{0}")]
    Argument(String),
    /// The remote method failed; its caller sees Nameko's error fields.
    #[error("{target} raised {}: {}", error.exc_type, error.value)]
    Remote {
        /// `service.method`.
        target: String,
        /// The error as it came over the wire.
        error: RemoteError,
    },
    /// An RPC call failed other than remotely: no such service, no reply in time, no broker.
    #[error(transparent)]
    Rpc(Box<nameko_rpc::RpcError>),
    /// Dispatching an event failed.
    #[error(transparent)]
    Events(Box<nameko_events::Error>),
    /// The result could not be written to stdout.
    #[error("cannot print the result: {0}")]
    Print(#[source] std::io::Error),
}

impl From<nameko_events::Error> for CliError {
    fn from(error: nameko_events::Error) -> Self {
        Self::Events(Box::new(error))
    }
}

impl From<nameko_rpc::RpcError> for CliError {
    /// A remote failure keeps its wire fields, so they can be shown as the remote side sent
    /// them; anything else stays an RPC error.
    fn from(error: nameko_rpc::RpcError) -> Self {
        match error {
            nameko_rpc::RpcError::Remote { call, error } => Self::Remote {
                target: call,
                error,
            },
            other => Self::Rpc(Box::new(other)),
        }
    }
}
