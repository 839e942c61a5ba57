//! `TlsOptions`: TLS to the broker, as Nameko's `AMQP_SSL` setting describes it.
//!
//! Nameko hands `AMQP_SSL` to kombu and py-amqp: `True` turns TLS on, a mapping turns it on with
//! `ssl.wrap_socket` options, of which broker setups use `ca_certs` (the CA file to trust),
//! `certfile` and `keyfile` (a client certificate, as the `EXTERNAL` login needs) and
//! `cert_reqs`. An `amqps://` URI turns TLS on too, and TLS moves the default port to 5671.
//!
//! One deliberate difference: py-amqp does not verify the broker's certificate unless
//! `cert_reqs` asks for it, so `AMQP_SSL: True` there encrypts without authenticating. Here the
//! certificate is always verified, against the CA in `ca_certs` and the Mozilla root set bundled
//! with the build (not the operating system's store, which slim container images lack), and for
//! the URI's host name. `cert_reqs: CERT_NONE` is refused rather than honoured: a private broker
//! CA belongs in `ca_certs`. Options py-amqp has and this crate cannot apply (`ciphers`,
//! `ssl_version`...) are ignored with a warning, as they only narrow what the TLS library
//! negotiates.
//!
//! Files are read when a connection is opened, off the async runtime, so that a renewed
//! certificate is picked up by the next reconnect and a missing file is an error that names it.

use std::path::{Path, PathBuf};

use lapin::ConnectionProperties;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use serde_json::Value;

use crate::error::{Error, Result};

/// How to set up TLS to the broker: which CA to trust beyond the bundled roots, and which client
/// certificate to present.
///
/// ```
/// use nameko_amqp::TlsOptions;
/// use serde_json::json;
///
/// let options = TlsOptions::from_amqp_ssl(&json!({"ca_certs": "/etc/rabbitmq/ca.pem", "cert_reqs": 2}))
///     .unwrap()
///     .unwrap();
/// assert_eq!(options.ca_certs().unwrap().to_str(), Some("/etc/rabbitmq/ca.pem"));
/// assert_eq!(TlsOptions::from_amqp_ssl(&json!(false)).unwrap(), None);
/// assert_eq!(TlsOptions::from_amqp_ssl(&json!(true)).unwrap(), Some(TlsOptions::new()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// A PEM file of CA certificates trusted on top of the bundled roots (py-amqp's `ca_certs`).
    ca_certs: Option<PathBuf>,
    /// A PEM file with the client certificate, and its key unless `keyfile` is given.
    certfile: Option<PathBuf>,
    /// A PEM file with the client certificate's private key.
    keyfile: Option<PathBuf>,
}

impl TlsOptions {
    /// TLS that trusts the bundled roots and presents no client certificate (`AMQP_SSL: True`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trust the CA certificates in this PEM file.
    #[must_use]
    pub fn with_ca_certs(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_certs = Some(path.into());
        self
    }

    /// Present this client certificate: `certfile` holds the certificate chain (PEM) and, when
    /// `keyfile` is `None`, the private key too.
    #[must_use]
    pub fn with_client_certificate(
        mut self,
        certfile: impl Into<PathBuf>,
        keyfile: Option<PathBuf>,
    ) -> Self {
        self.certfile = Some(certfile.into());
        self.keyfile = keyfile;
        self
    }

    /// The extra CA file, if any.
    #[must_use]
    pub fn ca_certs(&self) -> Option<&Path> {
        self.ca_certs.as_deref()
    }

    /// The client certificate file, if any.
    #[must_use]
    pub fn certfile(&self) -> Option<&Path> {
        self.certfile.as_deref()
    }

    /// The client key file, if it is not the certificate file.
    #[must_use]
    pub fn keyfile(&self) -> Option<&Path> {
        self.keyfile.as_deref()
    }

    /// Read Nameko's `AMQP_SSL` value: `None` when TLS is not asked for (absent, `null`,
    /// `false`), the defaults for `true`, and the options of a mapping.
    ///
    /// Mapping keys: `ca_certs`, `certfile` and `keyfile` (paths), `cert_reqs` (`CERT_REQUIRED`
    /// or 2, `CERT_OPTIONAL` or 1, which a client treats the same; `CERT_NONE` or 0 is refused)
    /// and `check_hostname` (only `true`). Other keys are ignored with a warning.
    pub fn from_amqp_ssl(value: &Value) -> Result<Option<Self>> {
        let options = match value {
            Value::Null | Value::Bool(false) => return Ok(None),
            Value::Bool(true) => return Ok(Some(Self::new())),
            Value::Object(options) => options,
            other => {
                return Err(invalid(
                    "AMQP_SSL",
                    "true, false or a mapping of tls options",
                    other,
                ));
            }
        };
        let mut tls = Self::new();
        for (key, value) in options {
            match key.as_str() {
                "ca_certs" => tls.ca_certs = path(key, value)?,
                "certfile" => tls.certfile = path(key, value)?,
                "keyfile" => tls.keyfile = path(key, value)?,
                "cert_reqs" => check_cert_reqs(value)?,
                "check_hostname" => {
                    if value != &Value::Bool(true) {
                        return Err(invalid(
                            key,
                            "true: the broker's host name is always checked",
                            value,
                        ));
                    }
                }
                _ => {
                    tracing::warn!(option = %key, "ignoring an AMQP_SSL option this client cannot apply")
                }
            }
        }
        if tls.keyfile.is_some() && tls.certfile.is_none() {
            return Err(Error::TlsOption {
                option: "keyfile".to_owned(),
                expected: "a `certfile` alongside it",
                found: "a key without a certificate".to_owned(),
            });
        }
        Ok(Some(tls))
    }

    /// What lapin needs to open the connection: the files read and checked, off the runtime.
    pub(crate) async fn load(&self) -> Result<OwnedTLSConfig> {
        let options = self.clone();
        match tokio::task::spawn_blocking(move || options.load_blocking()).await {
            Ok(loaded) => loaded,
            Err(_) => Err(Error::Closed {
                what: "runtime reading the AMQP_SSL files",
            }),
        }
    }

    fn load_blocking(&self) -> Result<OwnedTLSConfig> {
        let cert_chain = match &self.ca_certs {
            Some(path) => {
                let pem = read("ca_certs", path)?;
                require_pem("ca_certs", path, &pem, "CERTIFICATE")?;
                Some(String::from_utf8(pem).map_err(|_| Error::TlsFile {
                    option: "ca_certs",
                    path: path.display().to_string(),
                    reason: "expected PEM text, found bytes that are not utf-8".to_owned(),
                })?)
            }
            None => None,
        };
        let identity = match &self.certfile {
            Some(certfile) => {
                let pem = read("certfile", certfile)?;
                require_pem("certfile", certfile, &pem, "CERTIFICATE")?;
                let (key, option, path) = match &self.keyfile {
                    Some(keyfile) => (read("keyfile", keyfile)?, "keyfile", keyfile),
                    None => (pem.clone(), "certfile", certfile),
                };
                require_pem(option, path, &key, "PRIVATE KEY")?;
                Some(OwnedIdentity::PKCS8 { pem, key })
            }
            None => None,
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }
}

/// lapin's connect, over TLS when `uri` is `amqps`, with the trust and client identity of
/// `tls`. Like lapin's own `connect_uri`, it uses the tokio runtime it runs on.
pub(crate) async fn connect(
    uri: AMQPUri,
    properties: ConnectionProperties,
    tls: OwnedTLSConfig,
) -> lapin::Result<lapin::Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    lapin::Connection::connect_uri_with_config(uri, properties, tls, runtime).await
}

fn invalid(option: &str, expected: &'static str, found: &Value) -> Error {
    Error::TlsOption {
        option: option.to_owned(),
        expected,
        found: found.to_string().chars().take(64).collect(),
    }
}

fn path(option: &str, value: &Value) -> Result<Option<PathBuf>> {
    match value {
        Value::Null => Ok(None),
        Value::String(path) if !path.is_empty() => Ok(Some(PathBuf::from(path))),
        other => Err(invalid(option, "the path of a PEM file", other)),
    }
}

/// `cert_reqs` as Python's `ssl` constants or their values, with or without the `ssl.` prefix.
fn check_cert_reqs(value: &Value) -> Result<()> {
    let level = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(name) => {
            let name = name.trim();
            let name = name.strip_prefix("ssl.").unwrap_or(name);
            match name.to_ascii_uppercase().as_str() {
                "CERT_NONE" => Some(0),
                "CERT_OPTIONAL" => Some(1),
                "CERT_REQUIRED" => Some(2),
                _ => None,
            }
        }
        _ => None,
    };
    match level {
        Some(1 | 2) => Ok(()),
        Some(0) => Err(invalid(
            "cert_reqs",
            "CERT_REQUIRED: the broker's certificate is always verified (put a private CA in `ca_certs`)",
            value,
        )),
        _ => Err(invalid(
            "cert_reqs",
            "CERT_REQUIRED (2) or CERT_OPTIONAL (1)",
            value,
        )),
    }
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::TlsFile {
        option,
        path: path.display().to_string(),
        reason: error.to_string(),
    })
}

/// A cheap check that a file is what its option says, so that a wrong path reads as such
/// rather than as a handshake failure.
fn require_pem(option: &'static str, path: &Path, pem: &[u8], label: &str) -> Result<()> {
    let marker = format!("{label}-----");
    let found = pem
        .windows(marker.len())
        .any(|window| window == marker.as_bytes());
    if found {
        Ok(())
    } else {
        Err(Error::TlsFile {
            option,
            path: path.display().to_string(),
            reason: format!("expected a PEM `{label}`, found none"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    #[test]
    fn amqp_ssl_values_read_like_nameko() {
        assert_eq!(TlsOptions::from_amqp_ssl(&json!(null)).unwrap(), None);
        assert_eq!(TlsOptions::from_amqp_ssl(&json!(false)).unwrap(), None);
        assert_eq!(
            TlsOptions::from_amqp_ssl(&json!(true)).unwrap(),
            Some(TlsOptions::new())
        );
        let options = TlsOptions::from_amqp_ssl(&json!({
            "ca_certs": "/ca.pem",
            "certfile": "/client.pem",
            "keyfile": "/client.key",
            "cert_reqs": "ssl.CERT_REQUIRED",
            "check_hostname": true,
            "ciphers": "HIGH",
        }))
        .unwrap()
        .unwrap();
        assert_eq!(
            options,
            TlsOptions::new()
                .with_ca_certs("/ca.pem")
                .with_client_certificate("/client.pem", Some("/client.key".into()))
        );
        for cert_reqs in [
            json!(1),
            json!(2),
            json!("CERT_OPTIONAL"),
            json!("cert_required"),
        ] {
            assert!(TlsOptions::from_amqp_ssl(&json!({ "cert_reqs": cert_reqs })).is_ok());
        }
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_clearly() {
        let error = TlsOptions::from_amqp_ssl(&json!({"cert_reqs": 0})).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid `AMQP_SSL` option `cert_reqs`: expected CERT_REQUIRED"),
            "{error}"
        );
        assert!(TlsOptions::from_amqp_ssl(&json!({"cert_reqs": "CERT_NONE"})).is_err());
        assert!(TlsOptions::from_amqp_ssl(&json!({"cert_reqs": 7})).is_err());
        assert!(TlsOptions::from_amqp_ssl(&json!({"check_hostname": false})).is_err());
        assert!(TlsOptions::from_amqp_ssl(&json!({"ca_certs": 5})).is_err());
        assert!(TlsOptions::from_amqp_ssl(&json!({"ca_certs": ""})).is_err());
        assert!(TlsOptions::from_amqp_ssl(&json!({"keyfile": "/k.pem"})).is_err());
        let error = TlsOptions::from_amqp_ssl(&json!("yes")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid `AMQP_SSL` option `AMQP_SSL`: expected true, false or a mapping of tls options, found \"yes\""
        );
    }

    #[tokio::test]
    async fn files_are_checked_when_loaded() {
        let missing = TlsOptions::new().with_ca_certs("/nonexistent/ca.pem");
        let error = missing.load().await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot use the `AMQP_SSL` ca_certs file `/nonexistent/ca.pem`: "),
            "{error}"
        );

        let dir = std::env::temp_dir().join(format!("nameko-amqp-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let error = TlsOptions::new()
            .with_ca_certs(&not_pem)
            .load()
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("expected a PEM `CERTIFICATE`, found none"),
            "{error}"
        );

        let cert = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n";
        let both = dir.join("client.pem");
        std::fs::write(&both, format!("{cert}{key}")).unwrap();
        let loaded = TlsOptions::new()
            .with_ca_certs(&both)
            .with_client_certificate(&both, None)
            .load()
            .await
            .unwrap();
        assert!(loaded.cert_chain.unwrap().contains("BEGIN CERTIFICATE"));
        assert!(matches!(loaded.identity, Some(OwnedIdentity::PKCS8 { .. })));

        let cert_only = dir.join("cert.pem");
        std::fs::write(&cert_only, cert).unwrap();
        let error = TlsOptions::new()
            .with_client_certificate(&cert_only, None)
            .load()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("certfile"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
