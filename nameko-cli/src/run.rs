//! `nameko run`: start services in one runner, announce them, serve until a signal.
//!
//! `starting services: <names>` goes to stdout (and is flushed) only once every container has
//! started, so a script or a test can wait for that line instead of guessing how long start-up
//! takes. After that the runner's own signal handling applies: SIGTERM or Ctrl-C stops
//! gracefully, a second Ctrl-C kills. A signal that arrives while services are still starting
//! (a broker that does not answer, say) kills them and exits non-zero rather than waiting.

use std::io::Write;

use nameko_core::{AnyService, Config, ServiceRunner};

use crate::config::{amqp_uri, shown_broker};
use crate::error::CliError;

/// Runs `services` with `config` until SIGTERM, Ctrl-C or a service failure.
pub(crate) async fn run(services: Vec<AnyService>, config: Config) -> Result<(), CliError> {
    let broker = amqp_uri(&config);
    let mut runner = ServiceRunner::new(config);
    for service in services {
        runner.add_service(service)?;
    }
    let names = runner.service_names().join(", ");
    // Services with only HTTP or timer entrypoints never connect; the broker is shown anyway
    // so a wrong address is easy to spot before something does.
    tracing::info!(services = %names, broker = %shown_broker(&broker), "starting services");
    // One listener covers start-up and lives until the runner's own listeners exist, so no
    // SIGTERM or Ctrl-C falls between the two.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    tokio::select! {
        started = runner.start() => started?,
        () = &mut signal => {
            runner.kill().await;
            return Err(CliError::Interrupted);
        }
    }
    // The runner listens for signals from its first poll on: poll it once before announcing,
    // so a SIGTERM sent the moment `starting services:` appears is not lost.
    let serving = runner.run_until_signal();
    tokio::pin!(serving);
    if let Some(result) = now_or_never(&mut serving).await {
        result?;
        return Ok(());
    }
    if now_or_never(&mut signal).await.is_some() {
        tracing::info!("stopping services");
        runner.stop().await;
    } else {
        announce(&names);
    }
    serving.await?;
    tracing::info!("services stopped");
    Ok(())
}

/// Polls `future` once: its output if it is ready, `None` if it is not.
async fn now_or_never<F: Future + Unpin>(future: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        output = future => Some(output),
        () = std::future::ready(()) => None,
    }
}

/// Prints `starting services: <names>` to stdout, flushed. A closed stdout (the reader went
/// away) must not stop services that are serving others, so write errors are ignored.
fn announce(names: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "starting services: {names}").and_then(|()| stdout.flush());
}

/// Resolves on Ctrl-C or SIGTERM. A signal that cannot be listened for never resolves, rather
/// than passing for one that arrived.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
