//! The `nameko` binary: the command line of [`nameko_cli::Cli`] with the examples of Nameko's
//! documentation registered, so `nameko run http` runs what the documentation shows.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    nameko_cli::examples::cli().run().await
}
