//! `nameko dispatch SOURCE_SERVICE EVENT_TYPE [JSON]`: one event from the command line.
//!
//! The event goes out exactly as a service called `SOURCE_SERVICE` would dispatch it, so every
//! handler bound to that source and type receives it, Rust or Python. The payload is any JSON
//! value; left out, it is `null`.

use nameko_core::Config;
use nameko_events::StandaloneDispatcher;
use serde_json::Value;

use crate::config::{amqp_uri, shown_broker};
use crate::error::CliError;

/// Reads the payload argument of `dispatch`.
pub(crate) fn parse_payload(json: Option<&str>) -> Result<Value, CliError> {
    match json {
        None => Ok(Value::Null),
        Some(json) => serde_json::from_str(json).map_err(|err| {
            CliError::Argument(format!(
                "expected the event payload as JSON (`\"hello\"`, `{{\"id\": 1}}`), found `{json}` ({err})"
            ))
        }),
    }
}

/// Dispatches one event.
pub(crate) async fn dispatch(
    source_service: &str,
    event_type: &str,
    payload: Option<&str>,
    config: Config,
) -> Result<(), CliError> {
    let payload = parse_payload(payload)?;
    tracing::debug!(
        broker = %shown_broker(&amqp_uri(&config)),
        "dispatching {event_type} from {source_service}"
    );
    let dispatcher = StandaloneDispatcher::new(&config)?;
    dispatcher
        .dispatch(source_service, event_type, &payload)
        .await?;
    tracing::debug!("dispatched `{event_type}` from `{source_service}`");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_payload_is_any_json_or_null() {
        assert_eq!(parse_payload(None).unwrap(), Value::Null);
        assert_eq!(parse_payload(Some(r#""hi""#)).unwrap(), json!("hi"));
        assert_eq!(
            parse_payload(Some(r#"{"id": 1}"#)).unwrap(),
            json!({"id": 1})
        );
        let err = parse_payload(Some("hi")).unwrap_err().to_string();
        assert!(
            err.starts_with("expected the event payload as JSON"),
            "{err}"
        );
        assert!(err.contains("found `hi`"), "{err}");
    }
}
