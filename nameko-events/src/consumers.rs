//! The event-handler queues of one container, drained and closed after its workers.
//!
//! A graceful stop has two halves that happen at different moments: the handler stops consuming
//! when the container stops its entrypoints (no new events), but the channel must stay open until
//! the running workers have acked what they hold. The container stops shared extensions after
//! its workers drain, so this shared extension, one per container, drains each served queue's
//! remaining tasks (settlements after a worker) and closes the channels then. On kill it closes
//! them at once and the broker requeues whatever was not acked. A closed queue counts as stopped,
//! so the end of its stream is expected, not a failure that should kill the container.

use std::sync::{Mutex, PoisonError};

use nameko_amqp::ServedQueue;
use nameko_core::{Extension, SharedExtension};

/// The key under which the container keeps its one instance.
pub(crate) const SHARING_KEY: &str = "nameko-events/handler-consumers";

#[derive(Debug, Default)]
pub(crate) struct HandlerConsumers {
    /// Every queue the container's handlers serve, in start order.
    served: Mutex<Vec<ServedQueue>>,
}

impl HandlerConsumers {
    pub(crate) fn register(&self, served: ServedQueue) {
        self.held().push(served);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<ServedQueue>> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<ServedQueue> {
        std::mem::take(&mut *self.held())
    }
}

impl Extension for HandlerConsumers {
    async fn stop(&self) {
        for served in self.take() {
            served.stop_consuming().await;
            served.drain().await;
            served.close().await;
        }
    }

    async fn kill(&self) {
        for served in self.take() {
            served.kill().await;
        }
    }
}

impl SharedExtension for HandlerConsumers {}
