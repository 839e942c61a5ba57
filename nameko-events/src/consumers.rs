//! The event-handler consumers of one container, closed after its workers have drained.
//!
//! A graceful stop has two halves that happen at different moments: the handler cancels its
//! consumer when the container stops its entrypoints (no new events), but the channel must stay
//! open until the running workers have acked what they hold. The container stops shared
//! extensions after workers drain, so this shared extension, one per container, closes the
//! channels then. On kill it closes them at once and the broker requeues whatever was not
//! acked. Its `closing` flag also tells the consumer loops that their stream ending is expected,
//! not a failure that should kill the container.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use nameko_amqp::RecoveringHandle;
use nameko_core::{Extension, SharedExtension};

/// The key the container shares this extension under.
pub(crate) const SHARING_KEY: &str = "nameko-events/handler-consumers";

#[derive(Debug, Default)]
pub(crate) struct HandlerConsumers {
    /// A std mutex is enough: it is held only to push or take the list.
    handles: Mutex<Vec<RecoveringHandle>>,
    closing: AtomicBool,
}

impl HandlerConsumers {
    pub(crate) fn register(&self, handle: RecoveringHandle) {
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
    }

    /// Whether the container is closing its consumers (stopping or killed).
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    async fn close_all(&self) {
        self.closing.store(true, Ordering::Release);
        let handles =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
        for handle in handles {
            if let Err(error) = handle.close().await {
                tracing::debug!(%error, "closing an event consumer channel failed");
            }
        }
    }
}

impl Extension for HandlerConsumers {
    async fn stop(&self) {
        self.close_all().await;
    }

    async fn kill(&self) {
        self.close_all().await;
    }
}

impl SharedExtension for HandlerConsumers {}
