//! Shared helpers for the TLS integration tests (tests/tls_*.rs): certificates generated with
//! rcgen at test time (no key is ever committed), a handler recording every event including
//! the SSL ones (with hooks for the read-write ones), a TLS server and a rustls client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mllp::tls::cert::store_type;
use mllp::tls::Certificate;
use mllp::{
    AckOutEvent, ConnectionId, ErrorEvent, EventHandler, Server, SslClientAuthenticationEvent,
    SslConnectionRequestEvent, SslStatusEvent, StatusEvent,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const WAIT: Duration = Duration::from_secs(5);
pub const MSG: &[u8] = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|TLS1|P|2.5\r";
pub const ACK_FRAME: &[u8] = b"\x0b\x06\x1c\r";

pub fn frame(m: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0b];
    v.extend_from_slice(m);
    v.extend_from_slice(b"\x1c\r");
    v
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority made at test time.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub cert: rcgen::Certificate,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::OrganizationName, "mllp tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { params, key, cert }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf for `cn` (server: SAN localhost + 127.0.0.1, serverAuth; client: clientAuth).
    pub fn issue(&self, cn: &str, client: bool) -> Leaf {
        self.issue_with(cn, client, |_| {})
    }

    pub fn issue_with(&self, cn: &str, client: bool, tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let sans = if client { vec![] } else { vec!["localhost".to_string(), "127.0.0.1".to_string()] };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        tweak(&mut params);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A leaf with a chosen serial number (to revoke it in a CRL).
    pub fn issue_serial(&self, cn: &str, client: bool, serial: u64) -> Leaf {
        self.issue_with(cn, client, |p| p.serial_number = Some(rcgen::SerialNumber::from(serial)))
    }

    /// A CRL (PEM) of this CA revoking `serials`, valid until `next_update` (year, month, day).
    pub fn crl(&self, serials: &[u64], next_update: (i32, u8, u8)) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2000, 1, 1),
            next_update: rcgen::date_time_ymd(next_update.0, next_update.1, next_update.2),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2000, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&Issuer::from_params(&self.params, &self.key)).unwrap().pem().unwrap()
    }

    /// An expired leaf (valid 2000–2001).
    pub fn issue_expired(&self, cn: &str, client: bool) -> Leaf {
        self.issue_with(cn, client, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }
}

impl Leaf {
    /// Certificate then key, one PEM text.
    pub fn pem_blob(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// Loaded through the library (store type 7, PEM key blob).
    pub fn certificate(&self) -> Arc<Certificate> {
        Arc::new(Certificate::load(store_type::PEM_KEY_BLOB, self.pem_blob().as_bytes(), "", "*").unwrap())
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_der.clone()).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Recording handler

#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    Connected(ConnectionId),
    Disconnected { id: ConnectionId, code: i32, description: String },
    Error { id: ConnectionId, code: i32, description: String },
    AckOut(ConnectionId),
    SslStatus { id: ConnectionId, message: String },
    SslConnectionRequest { id: ConnectionId, suites: String, sigs: String },
    SslClientAuth { id: ConnectionId, der: Vec<u8>, subject: String, issuer: String, status: String, accept: bool },
}

type AuthHook = Box<dyn Fn(&mut SslClientAuthenticationEvent<'_>) + Send + Sync>;
type ReqHook = Box<dyn Fn(&mut SslConnectionRequestEvent<'_>) + Send + Sync>;

/// Records events with the thread they arrived on; hooks decide the read-write SSL events.
#[derive(Default)]
pub struct Rec {
    events: Mutex<Vec<(Ev, std::thread::ThreadId)>>,
    cv: Condvar,
    pub client_auth: Mutex<Option<AuthHook>>,
    pub conn_request: Mutex<Option<ReqHook>>,
}

impl Rec {
    pub fn new() -> Arc<Rec> {
        Arc::new(Rec::default())
    }

    pub fn on_client_auth(&self, f: impl Fn(&mut SslClientAuthenticationEvent<'_>) + Send + Sync + 'static) {
        *self.client_auth.lock().unwrap() = Some(Box::new(f));
    }

    pub fn on_conn_request(&self, f: impl Fn(&mut SslConnectionRequestEvent<'_>) + Send + Sync + 'static) {
        *self.conn_request.lock().unwrap() = Some(Box::new(f));
    }

    fn push(&self, e: Ev) {
        self.events.lock().unwrap().push((e, std::thread::current().id()));
        self.cv.notify_all();
    }

    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().iter().map(|(e, _)| e.clone()).collect()
    }

    pub fn threads(&self) -> Vec<(Ev, std::thread::ThreadId)> {
        self.events.lock().unwrap().clone()
    }

    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Ev]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.events.lock().unwrap();
        loop {
            let evs: Vec<Ev> = g.iter().map(|(e, _)| e.clone()).collect();
            if pred(&evs) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self.cv.wait_timeout(g, (deadline - now).min(Duration::from_millis(50))).unwrap().0;
        }
    }

    pub fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }

    /// Waits for an Error with `code` and then a Disconnected of the same connection; returns
    /// (id, error description, disconnected code).
    pub fn wait_error_and_disconnect(&self, code: i32) -> (ConnectionId, String, i32) {
        let found = |evs: &[Ev]| -> Option<(ConnectionId, String, i32)> {
            for e in evs {
                if let Ev::Error { id, code: c, description } = e {
                    if *c == code && *id != ConnectionId::NONE {
                        for d in evs {
                            if let Ev::Disconnected { id: did, code: dc, .. } = d {
                                if did == id {
                                    return Some((*id, description.clone(), *dc));
                                }
                            }
                        }
                    }
                }
            }
            None
        };
        assert!(
            self.wait_for(WAIT, |evs| found(evs).is_some()),
            "no Error {code} followed by Disconnected; events: {:#?}",
            self.events()
        );
        found(&self.events()).unwrap()
    }

    pub fn statuses(&self, id: ConnectionId) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::SslStatus { id: i, message } if i == id => Some(message),
                _ => None,
            })
            .collect()
    }

    pub fn client_auths(&self) -> Vec<Ev> {
        self.events().into_iter().filter(|e| matches!(e, Ev::SslClientAuth { .. })).collect()
    }
}

impl EventHandler for Rec {
    fn connected(&self, e: &StatusEvent<'_>) {
        self.push(Ev::Connected(e.connection_id));
    }
    fn disconnected(&self, e: &StatusEvent<'_>) {
        self.push(Ev::Disconnected { id: e.connection_id, code: e.status_code, description: e.description.into() });
    }
    fn error(&self, e: &ErrorEvent<'_>) {
        self.push(Ev::Error { id: e.connection_id, code: e.error_code, description: e.description.into() });
    }
    fn ack_out(&self, e: &mut AckOutEvent<'_>) {
        self.push(Ev::AckOut(e.connection_id));
    }
    fn ssl_status(&self, e: &SslStatusEvent<'_>) {
        self.push(Ev::SslStatus { id: e.connection_id, message: e.message.into() });
    }
    fn ssl_connection_request(&self, e: &mut SslConnectionRequestEvent<'_>) {
        if let Some(h) = &*self.conn_request.lock().unwrap() {
            h(e);
        }
        self.push(Ev::SslConnectionRequest {
            id: e.connection_id,
            suites: e.supported_cipher_suites.into(),
            sigs: e.supported_signature_algs.into(),
        });
    }
    fn ssl_client_authentication(&self, e: &mut SslClientAuthenticationEvent<'_>) {
        // Recorded with the library's recommendation, before the hook may change it.
        let ev = Ev::SslClientAuth {
            id: e.connection_id,
            der: e.cert_encoded.to_vec(),
            subject: e.cert_subject.into(),
            issuer: e.cert_issuer.into(),
            status: e.status.into(),
            accept: e.accept,
        };
        if let Some(h) = &*self.client_auth.lock().unwrap() {
            h(e);
        }
        self.push(ev);
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// A server on 127.0.0.1 (any port) presenting `cert`, with `configs` applied, not yet listening.
pub fn server(cert: &Leaf, configs: &[&str], rec: &Arc<Rec>) -> Server {
    let s = Server::new();
    s.set_handler(rec.clone());
    s.set_local_host("127.0.0.1").unwrap();
    s.set_ssl_cert(Some(cert.certificate())).unwrap();
    s.set_ssl_enabled(true);
    for c in configs {
        s.config(c).unwrap_or_else(|e| panic!("config {c}: {e:?}"));
    }
    s
}

/// `server` and start_listening.
pub fn listening(cert: &Leaf, configs: &[&str], rec: &Arc<Rec>) -> Server {
    let s = server(cert, configs, rec);
    s.start_listening().unwrap();
    s
}

// ---------------------------------------------------------------------------------------------
// rustls client

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub static BOTH: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

pub struct ClientOpts<'a> {
    pub roots: Vec<CertificateDer<'static>>,
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    pub suites: Option<Vec<rustls::SupportedCipherSuite>>,
    pub client_cert: Option<&'a Leaf>,
    pub key_log: Option<Arc<dyn rustls::KeyLog>>,
}

impl<'a> ClientOpts<'a> {
    pub fn trusting(roots: Vec<CertificateDer<'static>>) -> Self {
        ClientOpts { roots, versions: BOTH, suites: None, client_cert: None, key_log: None }
    }
}

pub fn client_config(o: ClientOpts<'_>) -> Arc<rustls::ClientConfig> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(s) = o.suites {
        p.cipher_suites = s;
    }
    let mut roots = rustls::RootCertStore::empty();
    for r in o.roots {
        roots.add(r).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(o.versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match o.client_cert {
        Some(l) => b.with_client_auth_cert(vec![l.der.clone()], l.key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    if let Some(k) = o.key_log {
        cfg.key_log = k;
    }
    Arc::new(cfg)
}

/// A TLS client connection over a blocking socket with a read timeout.
pub struct Client {
    pub conn: rustls::ClientConnection,
    pub sock: TcpStream,
}

impl Client {
    pub fn connect(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Client {
        let conn = rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().unwrap()).unwrap();
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock.set_write_timeout(Some(WAIT)).unwrap();
        Client { conn, sock }
    }

    /// Runs the handshake to completion (client side).
    pub fn handshake(&mut self) -> std::io::Result<()> {
        while self.conn.is_handshaking() {
            self.conn.complete_io(&mut self.sock)?;
        }
        Ok(())
    }

    /// Sends one framed message and reads the 4-byte ACK block.
    pub fn round_trip(&mut self, m: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        s.write_all(&frame(m))?;
        s.flush()?;
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack)?;
        Ok(ack.to_vec())
    }

    /// True when the server closes the connection (close_notify, EOF, alert or reset) within
    /// WAIT; false when data arrives or nothing happens.
    pub fn closed_by_server(&mut self) -> bool {
        let mut s = rustls::Stream::new(&mut self.conn, &mut self.sock);
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// One full client session: connect, handshake, round trip. The client's result.
pub fn try_round_trip(port: u16, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Vec<u8>> {
    let mut c = Client::connect(port, cfg);
    c.round_trip(MSG)
}

/// Collects NSS key log lines (the client's own view, to compare with the server's file).
#[derive(Debug, Default)]
pub struct MemKeyLog(pub Mutex<Vec<String>>);

impl rustls::KeyLog for MemKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        self.0.lock().unwrap().push(format!("{label} {} {}", hex(client_random), hex(secret)));
    }
}

/// A fresh temporary directory under the system temp dir (removed by the caller if wanted).
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mllp-tls-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the `openssl` command line tool (needed for PFX files made the way users make them).
pub fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line tool is needed by this test (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
