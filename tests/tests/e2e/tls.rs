//! How a service authenticates to the broker and protects the connection: TLS (`amqps://`,
//! `AMQP_SSL`) and the SASL mechanism (`LOGIN_METHOD`).
//!
//! The test broker speaks plain AMQP, so TLS is tested through a TLS-terminating proxy run here:
//! it holds a certificate for `localhost` from a CA made for the test (with `rcgen`), and
//! forwards the decrypted stream to the broker. A service and a client reach the broker through
//! it with `amqps://localhost:<proxy port>` and `AMQP_SSL: {ca_certs: <the CA>}`; the proxy
//! counts the TLS sessions it accepted, so a call that works without them would not pass. Its
//! mutual-TLS variant only accepts clients that present a certificate from the test CA, which
//! is how `certfile` and `keyfile` are proved to be sent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nameko_amqp::{AmqpUri, Connection, ConnectionConfig};
use nameko_core::{Config, RemoteError, Service, ServiceContainer, Worker};
use nameko_rpc::{ClusterRpcClient, rpc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, RootCertStore, pki_types};
use tokio_util::task::AbortOnDropHandle;

use crate::support::{broker_uri, config, unique};

const WAIT: Duration = Duration::from_secs(20);

/// Certificates made for one test, in a directory removed when it is dropped.
struct Pki {
    dir: PathBuf,
    /// The CA that signed the proxy's and the client's certificates (PEM file).
    ca: PathBuf,
    /// A CA that signed nothing here (PEM file).
    other_ca: PathBuf,
    /// The client certificate and its key (PEM files).
    client_cert: PathBuf,
    client_key: PathBuf,
    ca_der: pki_types::CertificateDer<'static>,
    server_cert: pki_types::CertificateDer<'static>,
    server_key: pki_types::PrivateKeyDer<'static>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    purpose: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "nameko-rs test");
    params.extended_key_usages = vec![purpose];
    (params.signed_by(&key, issuer).unwrap(), key)
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(unique("nameko-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let authority = ca("nameko-rs test CA");
    let other = ca("nameko-rs unrelated CA");
    let (server, server_key) = leaf(
        &authority,
        vec!["localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(&authority, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", authority.pem()),
        other_ca: write("other-ca.pem", other.pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        ca_der: authority.der().clone(),
        server_cert: server.der().clone(),
        server_key: pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        dir,
    }
}

/// A TLS-terminating proxy in front of the broker.
struct TlsProxy {
    addr: SocketAddr,
    /// TLS sessions established, and handshakes that failed.
    accepted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    _accepting: AbortOnDropHandle<()>,
}

impl TlsProxy {
    /// `client_ca`: when set, only clients with a certificate from this CA are accepted.
    async fn start(pki: &Pki, broker: &str, client_ca: bool) -> Self {
        let broker = AmqpUri::parse(broker).unwrap();
        let upstream = (broker.host().to_owned(), broker.port());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_ca {
            let mut roots = RootCertStore::empty();
            roots.add(pki.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let server_config = builder
            .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (accepted_count, refused_count) = (accepted.clone(), refused.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                let (accepted, refused) = (accepted_count.clone(), refused_count.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut broker) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            refused,
            _accepting: AbortOnDropHandle::new(accepting),
        }
    }

    /// The broker URI through this proxy: same credentials and vhost, `amqps://localhost:<port>`.
    fn uri(&self, broker: &str) -> String {
        let (_, rest) = broker.split_once("://").unwrap();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let userinfo = authority
            .rsplit_once('@')
            .map(|(userinfo, _)| format!("{userinfo}@"))
            .unwrap_or_default();
        format!("amqps://{userinfo}localhost:{}{tail}", self.addr.port())
    }
}

/// The broker's password, when it is distinctive enough to look for in a message (not the user
/// name too, as `guest:guest` has it).
fn password_of(broker: &str) -> Option<String> {
    let (_, rest) = broker.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (password.len() >= 4 && password != user).then(|| password.to_owned())
}

fn tls_config(uri: &str, amqp_ssl: serde_json::Value) -> Config {
    let mut config = config(uri, &[]);
    config.set("AMQP_SSL", amqp_ssl);
    config
}

async fn hello(_: Worker, name: String) -> Result<String, RemoteError> {
    Ok(format!("Hello, {name}!"))
}

/// A service and a client, both over TLS, answer a call.
async fn call_over_tls(config: &Config) -> String {
    let service = unique("tls_service");
    let container = ServiceContainer::new(
        Service::new(service.as_str()).entrypoint(rpc("hello", hello)),
        config.clone(),
    )
    .unwrap();
    tokio::time::timeout(WAIT, container.start())
        .await
        .expect("service starts in time")
        .expect("service starts over tls");
    let client = tokio::time::timeout(WAIT, ClusterRpcClient::connect(config))
        .await
        .expect("client connects in time")
        .expect("client connects over tls");
    let reply: String = tokio::time::timeout(WAIT, client.call(&service, "hello", ("tls",)))
        .await
        .expect("reply in time")
        .expect("call succeeds");
    container.stop().await;
    if let Some(plain) = crate::support::broker_uri().await {
        crate::support::cleanup(&plain, &[format!("rpc-{service}")], &[]).await;
    }
    reply
}

#[tokio::test]
async fn rpc_works_over_tls_with_the_ca_from_amqp_ssl() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let pki = pki();
    let proxy = TlsProxy::start(&pki, &broker, false).await;
    let config = tls_config(
        &proxy.uri(&broker),
        json!({"ca_certs": pki.ca, "cert_reqs": 2}),
    );
    assert_eq!(call_over_tls(&config).await, "Hello, tls!");
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 1, "no tls session");
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn amqp_ssl_turns_tls_on_for_an_amqp_uri() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let pki = pki();
    let proxy = TlsProxy::start(&pki, &broker, false).await;
    // Python configs often keep `amqp://` and only add `AMQP_SSL`; the port is named, so it stays.
    let uri = proxy.uri(&broker).replacen("amqps://", "amqp://", 1);
    let config = tls_config(&uri, json!({"ca_certs": pki.ca}));
    let settings = ConnectionConfig::parse(&uri)
        .unwrap()
        .with_amqp_ssl(&json!({"ca_certs": pki.ca}))
        .unwrap();
    let connection = tokio::time::timeout(WAIT, Connection::connect(&settings))
        .await
        .expect("connects in time")
        .expect("connects over tls");
    assert!(connection.is_open());
    connection.close().await.unwrap();
    assert_eq!(call_over_tls(&config).await, "Hello, tls!");
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 2, "no tls session");
}

#[tokio::test]
async fn a_client_certificate_is_presented_from_certfile_and_keyfile() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let pki = pki();
    let proxy = TlsProxy::start(&pki, &broker, true).await;
    let uri = proxy.uri(&broker);
    let with_identity = tls_config(
        &uri,
        json!({"ca_certs": pki.ca, "certfile": pki.client_cert, "keyfile": pki.client_key}),
    );
    assert_eq!(call_over_tls(&with_identity).await, "Hello, tls!");

    // Without one, the proxy refuses the handshake and the client says so.
    let without = tls_config(&uri, json!({"ca_certs": pki.ca}));
    let refused_before = proxy.refused.load(Ordering::SeqCst);
    let error = tokio::time::timeout(WAIT, ClusterRpcClient::connect(&without))
        .await
        .expect("fails in time")
        .expect_err("a client without a certificate is refused");
    assert!(proxy.refused.load(Ordering::SeqCst) > refused_before);
    let text = error.to_string();
    assert!(
        text.contains("could not connect to the broker at amqps://"),
        "{text}"
    );
}

#[tokio::test]
async fn a_broker_certificate_from_another_ca_is_refused_clearly() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let pki = pki();
    let proxy = TlsProxy::start(&pki, &broker, false).await;
    let uri = proxy.uri(&broker);
    for amqp_ssl in [json!({"ca_certs": pki.other_ca}), json!(true)] {
        let config = tls_config(&uri, amqp_ssl.clone());
        let error = tokio::time::timeout(WAIT, ClusterRpcClient::connect(&config))
            .await
            .expect("fails in time")
            .expect_err("an untrusted broker certificate is refused");
        let text = error.to_string();
        assert!(
            text.contains("could not connect to the broker at amqps://")
                && text.contains("UnknownIssuer")
                && text.contains("name its CA file in `AMQP_SSL` as `ca_certs`"),
            "{amqp_ssl}: {text}"
        );
        if let Some(password) = password_of(&broker) {
            assert!(!text.contains(&password), "{text}");
        }
    }
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unusable_amqp_ssl_settings_fail_before_connecting() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let missing = tls_config(&broker, json!({"ca_certs": "/nonexistent/ca.pem"}));
    let error = ClusterRpcClient::connect(&missing).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot use the `AMQP_SSL` ca_certs file `/nonexistent/ca.pem`"),
        "{error}"
    );
    let no_verification = tls_config(&broker, json!({"cert_reqs": "CERT_NONE"}));
    let error = ClusterRpcClient::connect(&no_verification)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("`cert_reqs`"), "{error}");
}

#[tokio::test]
async fn tls_to_a_plain_port_says_so() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let uri = AmqpUri::parse(&broker).unwrap();
    let settings = ConnectionConfig::parse(&format!("amqp://{}:{}/", uri.host(), uri.port()))
        .unwrap()
        .with_amqp_ssl(&json!(true))
        .unwrap();
    assert_eq!(settings.uri().port(), uri.port(), "an explicit port stays");
    let error = tokio::time::timeout(WAIT, Connection::connect(&settings))
        .await
        .expect("fails in time")
        .expect_err("a plain AMQP port does not speak tls");
    assert!(error.to_string().contains("does not speak tls"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// LOGIN_METHOD

#[tokio::test]
async fn plain_and_amqplain_log_in() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    for method in ["PLAIN", "AMQPLAIN"] {
        let mut config = config(&broker, &[]);
        config.set("LOGIN_METHOD", method);
        let service = unique("login_service");
        let container = ServiceContainer::new(
            Service::new(service.as_str()).entrypoint(rpc("hello", hello)),
            config.clone(),
        )
        .unwrap();
        tokio::time::timeout(WAIT, container.start())
            .await
            .expect("service starts in time")
            .unwrap_or_else(|error| panic!("{method}: {error}"));
        let client = ClusterRpcClient::connect(&config).await.unwrap();
        let reply: String = client.call(&service, "hello", (method,)).await.unwrap();
        assert_eq!(reply, format!("Hello, {method}!"));
        container.stop().await;
        crate::support::cleanup(&broker, &[format!("rpc-{service}")], &[]).await;
    }
}

#[tokio::test]
async fn external_login_refused_by_the_broker_is_a_clear_error() {
    let Some(broker) = broker_uri().await else {
        return;
    };
    let mut config = config(&broker, &[]);
    config.set("LOGIN_METHOD", "EXTERNAL");
    let error = tokio::time::timeout(WAIT, ClusterRpcClient::connect(&config))
        .await
        .expect("fails in time")
        .expect_err("the test broker offers no EXTERNAL login");
    let text = error.to_string();
    assert!(text.contains("could not connect to the broker"), "{text}");
    assert!(
        text.contains("expected it to offer the EXTERNAL mechanism"),
        "{text}"
    );
    if let Some(password) = password_of(&broker) {
        assert!(!text.contains(&password), "{text}");
    }
}
