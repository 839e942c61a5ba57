//! `nameko call SERVICE.METHOD [JSON]`: one RPC call from the command line.
//!
//! The JSON argument follows the shape of a Nameko request: an array is the positional
//! arguments, an object the keyword arguments, nothing means no arguments. Anything else is
//! refused rather than guessed at (is `[1, 2]` one list or two numbers?). The result is printed
//! as one line of JSON on stdout, so a shell can pipe it on; a remote error goes to stderr with
//! its `exc_type` and the exit code is non-zero.

use std::io::Write;
use std::time::Duration;

use nameko_core::Config;
use nameko_rpc::{Args, ClusterRpcClient};
use serde_json::{Map, Value};

use crate::config::{amqp_uri, shown_broker};
use crate::error::CliError;

/// Positional and keyword arguments of one call.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CallArguments {
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
}

/// Splits `service.method` at its last dot (service names may contain dots, method names not).
pub(crate) fn parse_target(target: &str) -> Result<(&str, &str), CliError> {
    match target.rsplit_once('.') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            Ok((service, method))
        }
        _ => Err(CliError::Argument(format!(
            "expected SERVICE.METHOD such as `greeting_service.hello`, found `{target}`"
        ))),
    }
}

/// Reads the JSON argument of `call`.
pub(crate) fn parse_arguments(json: Option<&str>) -> Result<CallArguments, CliError> {
    let Some(json) = json else {
        return Ok(CallArguments::default());
    };
    let expected = "expected a JSON array of positional arguments (`[\"Matt\"]`) or an object \
                    of keyword arguments (`{\"name\": \"Matt\"}`)";
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(args)) => Ok(CallArguments {
            args,
            kwargs: Map::new(),
        }),
        Ok(Value::Object(kwargs)) => Ok(CallArguments {
            args: Vec::new(),
            kwargs,
        }),
        Ok(other) => Err(CliError::Argument(format!(
            "{expected}, found the JSON value `{other}`"
        ))),
        Err(err) => Err(CliError::Argument(format!(
            "{expected}, found `{json}`, which is not JSON ({err})"
        ))),
    }
}

/// Calls `target` with `arguments`, waiting at most `timeout` seconds, and prints the result.
pub(crate) async fn call(
    target: &str,
    arguments: Option<&str>,
    timeout: f64,
    config: Config,
) -> Result<(), CliError> {
    let (service, method) = parse_target(target)?;
    let arguments = parse_arguments(arguments)?;
    let timeout = parse_timeout(timeout)?;
    tracing::debug!(broker = %shown_broker(&amqp_uri(&config)), "calling {service}.{method}");
    let client = ClusterRpcClient::connect(&config)
        .await?
        .with_timeout(Some(timeout));
    let args = Args {
        args: arguments.args,
        kwargs: arguments.kwargs,
    };
    let outcome = client.call::<Value>(service, method, args).await;
    client.stop().await;
    let result = outcome?;
    // `Value`'s Display is compact JSON and cannot fail, unlike `to_string` on a serializer.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{result}")
        .and_then(|()| stdout.flush())
        .map_err(CliError::Print)
}

/// `--timeout` as a duration: a positive number of seconds.
fn parse_timeout(seconds: f64) -> Result<Duration, CliError> {
    match Duration::try_from_secs_f64(seconds) {
        Ok(timeout) if !timeout.is_zero() => Ok(timeout),
        _ => Err(CliError::Argument(format!(
            "expected --timeout to be a positive number of seconds, found `{seconds}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_target_is_service_dot_method() {
        assert_eq!(
            parse_target("greeting_service.hello").unwrap(),
            ("greeting_service", "hello")
        );
        assert_eq!(parse_target("a.b.c").unwrap(), ("a.b", "c"));
        for bad in ["hello", ".hello", "svc.", ""] {
            let err = parse_target(bad).unwrap_err().to_string();
            assert!(err.starts_with("expected SERVICE.METHOD"), "{err}");
            assert!(err.ends_with(&format!("found `{bad}`")), "{err}");
        }
    }

    #[test]
    fn arrays_are_positional_and_objects_keyword_arguments() {
        assert_eq!(
            parse_arguments(Some(r#"["Matt", 2]"#)).unwrap(),
            CallArguments {
                args: vec![json!("Matt"), json!(2)],
                kwargs: Map::new()
            }
        );
        let kwargs = parse_arguments(Some(r#"{"name": "Matt"}"#)).unwrap();
        assert!(kwargs.args.is_empty());
        assert_eq!(kwargs.kwargs["name"], json!("Matt"));
        assert_eq!(parse_arguments(None).unwrap(), CallArguments::default());
    }

    #[test]
    fn the_timeout_is_a_positive_number_of_seconds() {
        assert_eq!(parse_timeout(2.5).unwrap(), Duration::from_millis(2500));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = parse_timeout(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("expected --timeout to be a positive"),
                "{err}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_with_an_example() {
        let scalar = parse_arguments(Some("42")).unwrap_err().to_string();
        assert!(scalar.ends_with("found the JSON value `42`"), "{scalar}");
        let bare = parse_arguments(Some("Matt")).unwrap_err().to_string();
        assert!(bare.contains(r#"(`["Matt"]`)"#), "{bare}");
        assert!(bare.contains("found `Matt`, which is not JSON"), "{bare}");
    }
}
