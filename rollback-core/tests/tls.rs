//! The HTTP verifier over TLS, against a local rustls server whose certificate is
//! issued by a CA made at test time: trusted only through `ca_file`, refused by the
//! system's roots, by another CA, when expired and when issued for another host name,
//! each refusal said to be a certificate problem.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rollback_core::verify::{HttpCheck, HttpVerifier, register_builtin_verifiers};
use rollback_core::{ErrorKind, Outcome, Registry, Spec, Verifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA of the test's own.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// An HTTPS server on 127.0.0.1 with a certificate for `127.0.0.1` and `localhost`
/// issued by `ca`, answering every request `200 ok`; stops when the test's runtime ends.
async fn https_server(ca: &CertifiedIssuer<'static, KeyPair>) -> String {
    https_server_with(ca, CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap()).await
}

/// [`https_server`] with a certificate made from `params`.
async fn https_server_with(ca: &CertifiedIssuer<'static, KeyPair>, params: CertificateParams) -> String {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to answer.
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://{addr}/health")
}

fn check(url: &str, ca_file: Option<&std::path::Path>) -> HttpCheck {
    HttpCheck { ca_file: ca_file.map(Into::into), ..HttpCheck::get(url) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_ca_file_verifies_the_server() {
    let ca = ca("rollback test CA");
    let url = https_server(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let v = HttpVerifier::new("health", check(&url, Some(&ca_file))).unwrap();
    let result = v.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Pass, "{}", result.detail);
    assert_eq!(result.measurements["status"], 200.0);

    // The same from a plan's spec.
    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    let spec = Spec::new("http", "health", serde_json::json!({ "url": url, "ca_file": ca_file }));
    let built = registry.verifier("health", &[spec]).await.unwrap();
    assert_eq!(built.check().await.unwrap().outcome, Outcome::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_system_roots_refuse_a_private_ca_and_say_it_is_the_certificate() {
    let ca = ca("rollback test CA");
    let url = https_server(&ca).await;
    let v = HttpVerifier::new("health", check(&url, None)).unwrap();
    let result = v.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail, "{}", result.detail);
    let detail = &result.detail;
    eprintln!("system roots: {detail}");
    assert!(detail.contains("TLS certificate of https://127.0.0.1:"), "{detail}");
    assert!(detail.contains("does not verify against the system's roots"), "{detail}");
    assert!(detail.contains("invalid peer certificate"), "rustls's cause is kept: {detail}");
    assert!(!detail.contains("cannot connect"), "not a generic connection failure: {detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_file_fails_with_a_certificate_error() {
    let (right, wrong) = (ca("rollback test CA"), ca("some other CA"));
    let url = https_server(&right).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, wrong.pem()).unwrap();
    let v = HttpVerifier::new("health", check(&url, Some(&ca_file))).unwrap();
    let result = v.check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail, "{}", result.detail);
    let detail = &result.detail;
    eprintln!("wrong CA file: {detail}");
    assert!(detail.contains("does not verify against the CA file"), "{detail}");
    assert!(detail.contains("invalid peer certificate: UnknownIssuer"), "{detail}");
}

/// The CA's PEM in a temporary directory (kept while the returned guard lives).
fn ca_file(ca: &CertifiedIssuer<'static, KeyPair>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails_with_a_certificate_error() {
    let ca = ca("rollback test CA");
    let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let url = https_server_with(&ca, params).await;
    let (_dir, ca_file) = ca_file(&ca);
    let result = HttpVerifier::new("health", check(&url, Some(&ca_file))).unwrap().check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail, "{}", result.detail);
    let detail = &result.detail;
    eprintln!("expired: {detail}");
    assert!(detail.contains("TLS certificate of https://127.0.0.1:"), "{detail}");
    assert!(detail.contains("does not verify against the CA file"), "{detail}");
    assert!(detail.to_lowercase().contains("expired"), "rustls's cause is kept: {detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_fails_with_a_certificate_error() {
    let ca = ca("rollback test CA");
    let params = CertificateParams::new(vec!["health.example.internal".into()]).unwrap();
    let url = https_server_with(&ca, params).await;
    let (_dir, ca_file) = ca_file(&ca);
    let result = HttpVerifier::new("health", check(&url, Some(&ca_file))).unwrap().check().await.unwrap();
    assert_eq!(result.outcome, Outcome::Fail, "{}", result.detail);
    let detail = &result.detail;
    eprintln!("wrong host: {detail}");
    assert!(detail.contains("TLS certificate of https://127.0.0.1:"), "{detail}");
    assert!(detail.contains("not valid for name \"127.0.0.1\""), "rustls's cause is kept: {detail}");
}

#[tokio::test]
async fn a_missing_or_non_pem_ca_file_is_refused_when_the_verifier_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://127.0.0.1:1/health";
    let missing = dir.path().join("absent.pem");
    let err = HttpVerifier::new("health", check(url, Some(&missing))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("`ca_file`") && err.to_string().contains("cannot be read"), "{err}");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let err = HttpVerifier::new("health", check(url, Some(&text))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("`ca_file`") && err.to_string().contains("no PEM certificate"), "{err}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n").unwrap();
    let err = HttpVerifier::new("health", check(url, Some(&junk))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("`ca_file`"), "{err}");
    eprintln!("junk PEM: {err}");

    // From a plan: the build names the verifier and the field.
    let mut registry = Registry::new();
    register_builtin_verifiers(&mut registry);
    let spec = Spec::new("http", "health", serde_json::json!({ "url": url, "ca_file": missing }));
    let err = registry.verifier("health", &[spec]).await.err().expect("refused at build").to_string();
    assert!(err.contains("`ca_file`") && err.contains("absent.pem"), "{err}");
}
