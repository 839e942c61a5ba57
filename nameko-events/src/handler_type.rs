//! `HandlerType`: who among the listening services and instances receives an event.
//!
//! Nameko expresses this entirely through queue names (reference §3.3): instances that declare
//! the same queue compete for its messages, instances with queues of their own each get a copy.
//! So a handler type is nothing but a rule for naming the queue, plus, for broadcast, the
//! identifier that tells instances apart.
//!
//! Nameko's default broadcast identifier is a fresh uuid at every start. Its queue is
//! therefore new at every start, which cannot hold events while an instance is down:
//! combined with reliable delivery it is a configuration error (see
//! [`BroadcastIdentifier::PerStart`]).

use nameko_core::Config;

use crate::error::{Error, Result};
use crate::names;

/// Nameko's constant for [`HandlerType::ServicePool`].
pub const SERVICE_POOL: &str = "service_pool";
/// Nameko's constant for [`HandlerType::Singleton`].
pub const SINGLETON: &str = "singleton";
/// Nameko's constant for [`HandlerType::Broadcast`].
pub const BROADCAST: &str = "broadcast";

/// How an event is shared out among the services and instances that handle it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HandlerType {
    /// One instance of each (service, method) handles each event; instances of a service
    /// share a queue. Nameko's default.
    #[default]
    ServicePool,
    /// Exactly one handler among all listening services handles each event: every service
    /// shares one queue.
    Singleton,
    /// Every running instance handles each event: each instance has a queue of its own, named
    /// with its broadcast identifier.
    Broadcast(BroadcastIdentifier),
}

impl HandlerType {
    /// Broadcast with Nameko's default identifier, a fresh uuid at every start. Needs
    /// `reliable_delivery(false)`.
    #[must_use]
    pub fn broadcast() -> Self {
        Self::Broadcast(BroadcastIdentifier::PerStart)
    }

    /// Broadcast with a fixed identifier that survives restarts (a hostname, a pod name), so
    /// the instance's queue can keep events while it is down.
    #[must_use]
    pub fn broadcast_with(identifier: impl Into<String>) -> Self {
        Self::Broadcast(BroadcastIdentifier::Fixed(identifier.into()))
    }

    /// Nameko's name for this handler type: `service_pool`, `singleton` or `broadcast`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ServicePool => SERVICE_POOL,
            Self::Singleton => SINGLETON,
            Self::Broadcast(_) => BROADCAST,
        }
    }
}

/// What tells the instances of a broadcast handler apart; it ends the queue's name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BroadcastIdentifier {
    /// A fresh uuid (hex, no dashes) every time the service starts, as Nameko does. Events sent
    /// while an instance is down are lost with its old queue, so this cannot be combined with
    /// reliable delivery.
    #[default]
    PerStart,
    /// This value, for example the host's name when one instance runs per host.
    Fixed(String),
    /// The value of this configuration key, read when the service starts (a string or a
    /// number), as Nameko's documentation suggests for `SERVICE_IDENTIFIER`.
    Config(String),
}

impl BroadcastIdentifier {
    /// Whether the identifier stays the same across restarts.
    #[must_use]
    pub fn is_stable(&self) -> bool {
        !matches!(self, Self::PerStart)
    }

    /// The identifier for one start of an instance.
    pub(crate) fn resolve(&self, config: &Config) -> Result<String> {
        let identifier = match self {
            Self::PerStart => uuid::Uuid::new_v4().simple().to_string(),
            Self::Fixed(value) => value.clone(),
            Self::Config(key) => match config.get(key) {
                Some(serde_json::Value::String(value)) => value.clone(),
                Some(serde_json::Value::Number(value)) => value.to_string(),
                other => {
                    return Err(Error::BroadcastIdentifierConfig {
                        key: key.clone(),
                        found: match other {
                            None | Some(serde_json::Value::Null) => "nothing".to_owned(),
                            Some(value) => value.to_string(),
                        },
                    });
                }
            },
        };
        if identifier.is_empty() {
            return Err(Error::EmptyBroadcastIdentifier);
        }
        Ok(identifier)
    }
}

/// Where one handler consumes from, resolved for one start of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandlerQueue {
    pub(crate) name: String,
    pub(crate) exclusive: bool,
    pub(crate) auto_delete: bool,
}

impl HandlerQueue {
    /// The queue and its flags, exactly as Nameko's `EventHandler.setup` declares them: durable
    /// always, auto-delete without reliable delivery, exclusive for broadcast without reliable
    /// delivery (an exclusive queue would vanish with its connection whatever `auto_delete`
    /// says).
    pub(crate) fn resolve(
        handler_type: &HandlerType,
        reliable_delivery: bool,
        source_service: &str,
        event_type: &str,
        service_name: &str,
        method_name: &str,
        config: &Config,
    ) -> Result<Self> {
        let name = match handler_type {
            HandlerType::ServicePool => {
                names::service_pool_queue(source_service, event_type, service_name, method_name)
            }
            HandlerType::Singleton => names::singleton_queue(source_service, event_type),
            HandlerType::Broadcast(identifier) => names::broadcast_queue(
                source_service,
                event_type,
                service_name,
                method_name,
                &identifier.resolve(config)?,
            ),
        };
        Ok(Self {
            name,
            exclusive: matches!(handler_type, HandlerType::Broadcast(_)) && !reliable_delivery,
            auto_delete: !reliable_delivery,
        })
    }

    pub(crate) fn spec(&self) -> nameko_amqp::QueueSpec {
        nameko_amqp::QueueSpec::durable(self.name.clone())
            .exclusive(self.exclusive)
            .auto_delete(self.auto_delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(handler_type: &HandlerType, reliable: bool) -> HandlerQueue {
        HandlerQueue::resolve(
            handler_type,
            reliable,
            "src",
            "thing",
            "svc",
            "on_thing",
            &Config::new(),
        )
        .unwrap()
    }

    /// Reference §3.3, row by row.
    #[test]
    fn queues_and_flags_follow_nameko() {
        let pool = resolve(&HandlerType::ServicePool, true);
        assert_eq!(pool.name, "evt-src-thing--svc.on_thing");
        assert!(!pool.exclusive && !pool.auto_delete);
        let pool = resolve(&HandlerType::ServicePool, false);
        assert!(!pool.exclusive && pool.auto_delete);

        let single = resolve(&HandlerType::Singleton, true);
        assert_eq!(single.name, "evt-src-thing");
        assert!(!single.exclusive && !single.auto_delete);
        assert!(resolve(&HandlerType::Singleton, false).auto_delete);

        let fixed = resolve(&HandlerType::broadcast_with("host-1"), true);
        assert_eq!(fixed.name, "evt-src-thing--svc.on_thing-host-1");
        assert!(!fixed.exclusive && !fixed.auto_delete);

        let per_start = resolve(&HandlerType::broadcast(), false);
        assert!(per_start.exclusive && per_start.auto_delete);
        let identifier = per_start.name.rsplit('-').next().unwrap();
        assert_eq!(identifier.len(), 32, "uuid4().hex");
        assert!(identifier.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            per_start,
            resolve(&HandlerType::broadcast(), false),
            "fresh per start"
        );

        for queue in [pool, single, fixed, per_start] {
            assert!(
                queue.spec().durable,
                "Nameko declares every handler queue durable"
            );
        }
    }

    #[test]
    fn identifiers_from_config() {
        let mut config = Config::new();
        config.set("SERVICE_IDENTIFIER", "node-7");
        config.set("NUMERIC_ID", 42);
        let from = |key: &str| BroadcastIdentifier::Config(key.into()).resolve(&config);
        assert_eq!(from("SERVICE_IDENTIFIER").unwrap(), "node-7");
        assert_eq!(from("NUMERIC_ID").unwrap(), "42");
        let missing = from("NOPE").unwrap_err().to_string();
        assert_eq!(
            missing,
            "broadcast identifier config key `NOPE` must hold a string or a number, found nothing"
        );
        assert!(matches!(
            BroadcastIdentifier::Fixed(String::new()).resolve(&config),
            Err(Error::EmptyBroadcastIdentifier)
        ));
    }

    #[test]
    fn constants_are_nameko_s() {
        assert_eq!(HandlerType::default().as_str(), "service_pool");
        assert_eq!(HandlerType::Singleton.as_str(), "singleton");
        assert_eq!(HandlerType::broadcast().as_str(), "broadcast");
        assert!(!BroadcastIdentifier::PerStart.is_stable());
        assert!(BroadcastIdentifier::Config("K".into()).is_stable());
    }
}
