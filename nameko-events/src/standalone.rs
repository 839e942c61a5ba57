//! `StandaloneDispatcher`: dispatching events from code that is not a service (a script, a
//! web app, a test), claiming to be a given source service; Nameko's
//! `nameko.standalone.events.event_dispatcher`.
//!
//! As Nameko's, it sends no context headers at all (an empty header table, as kombu sends), so
//! handlers start a fresh `call_id_stack`. Unlike Nameko's, it declares the source's exchange
//! before its first dispatch (unless `DECLARE_EVENT_EXCHANGES` is `false`): Nameko's fails with
//! a 404 when no service or handler of that source has declared the exchange yet. Nothing
//! connects until the first dispatch.

use std::fmt;

use nameko_amqp::FieldTable;
use nameko_core::Config;
use serde::Serialize;

use crate::dispatcher::{EventSender, encode_payload};
use crate::error::Result;

/// Dispatches events on behalf of any service, from outside a service.
///
/// ```no_run
/// use nameko_core::Config;
/// use nameko_events::StandaloneDispatcher;
///
/// # async fn example() -> nameko_events::Result<()> {
/// let mut config = Config::new();
/// config.set("AMQP_URI", "amqp://guest:guest@localhost");
/// let dispatch = StandaloneDispatcher::new(&config)?;
/// dispatch
///     .dispatch("orders", "order_created", &serde_json::json!({"id": 7}))
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct StandaloneDispatcher {
    sender: EventSender,
}

impl StandaloneDispatcher {
    /// A dispatcher for the broker and exchange settings of `config` (`AMQP_URI`,
    /// `HEARTBEAT`, `LOGIN_METHOD`, `AMQP_SSL`, `DECLARE_EVENT_EXCHANGES`, `AUTO_DELETE_EVENT_EXCHANGES`).
    pub fn new(config: &Config) -> Result<Self> {
        Ok(Self {
            sender: EventSender::new(config)?,
        })
    }

    /// A dispatcher for the broker at `amqp_uri`, with every other setting at its default.
    pub fn from_uri(amqp_uri: &str) -> Result<Self> {
        let mut config = Config::new();
        config.set("AMQP_URI", amqp_uri);
        Self::new(&config)
    }

    /// Dispatches `payload` as an event of `event_type` from `source_service`, and waits until
    /// the broker has confirmed it.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        source_service: &str,
        event_type: &str,
        payload: &T,
    ) -> Result<()> {
        let body = encode_payload(event_type, payload)?;
        self.sender
            .send(source_service, event_type, &body, FieldTable::default())
            .await
    }
}

impl fmt::Debug for StandaloneDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandaloneDispatcher")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_uri_is_found_before_connecting() {
        let error = StandaloneDispatcher::from_uri("redis://localhost").unwrap_err();
        assert!(
            error.to_string().contains("unsupported uri scheme `redis`"),
            "{error}"
        );
        assert!(StandaloneDispatcher::from_uri("pyamqp://guest:guest@localhost").is_ok());
    }
}
