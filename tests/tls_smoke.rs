//! TLS smoke test: a rustls client does a round trip with the server over TLS 1.3 and 1.2.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use mllp::tls::cert::store_type;
use mllp::tls::Certificate;
use mllp::Server;

fn server_cert() -> (Arc<Certificate>, rustls::pki_types::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem());
    let c = Certificate::load(store_type::PEM_KEY_BLOB, pem.as_bytes(), "", "*").unwrap();
    (Arc::new(c), ck.cert.der().clone())
}

fn round_trip(version: &'static rustls::SupportedProtocolVersion, expect: &str) {
    let (cert, der) = server_cert();
    let s = Server::new();
    s.set_local_host("127.0.0.1").unwrap();
    s.set_ssl_cert(Some(cert)).unwrap();
    s.set_ssl_enabled(true);
    s.start_listening().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", s.local_port())).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"\x0bMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r\x1c\r").unwrap();
    let mut ack = [0u8; 4];
    tls.read_exact(&mut ack).unwrap();
    assert_eq!(&ack, b"\x0b\x06\x1c\r");
    let id = s.connections()[0];
    assert_eq!(s.ssl_negotiated(id, "SSLNegotiatedVersion").unwrap(), expect);
    assert!(!s.ssl_negotiated(id, "SSLNegotiatedCipherSuite").unwrap().is_empty());
    assert_eq!(s.config(&format!("SSLNegotiatedVersion[{id}]")).unwrap(), expect);
}

#[test]
fn tls13_round_trip() {
    round_trip(&rustls::version::TLS13, "TLS1.3");
}

#[test]
fn tls12_round_trip() {
    round_trip(&rustls::version::TLS12, "TLS1.2");
}
