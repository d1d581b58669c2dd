//! TLS with rustls: the SSL properties and settings, and the server configuration built from
//! them when listening starts (so a wrong password, a key that does not match, an expired
//! certificate or an unreadable file fail StartListening, not the first connection) and
//! again whenever a TLS setting changes while listening (new connections get the new
//! configuration; a bad value is refused by the setter and the old configuration stays).

pub mod cert;
pub(crate) mod crl;
pub(crate) mod session;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

pub use cert::Certificate;

use crate::config::parse_bool;
use crate::error::{code, Error, Result};

/// SSLEnabledProtocols bit for TLS 1.3 (the reference's value).
pub const PROTO_TLS13: u32 = 0x3000;
/// SSLEnabledProtocols bit for TLS 1.2.
pub const PROTO_TLS12: u32 = 0x0C00;

/// The SSL properties and Config settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSettings {
    /// SSLEnabled property.
    pub enabled: bool,
    /// SSLAuthenticateClients property: ask clients for a certificate.
    pub authenticate_clients: bool,
    /// SSLCert property.
    pub cert: Option<Arc<Certificate>>,
    /// SSLCACerts: PEM certificates sent after SSLCert (its chain).
    pub ca_certs: String,
    /// SSLClientCACerts: PEM CA certificates that client certificates are verified against.
    pub client_ca_certs: String,
    /// SSLClientCRLs: CRLs client certificates are checked against: PEM text (it holds
    /// `-----BEGIN`), else the path of a PEM or DER file, else base64 DER ("" = none).
    pub client_crls: String,
    /// SSLEnabledProtocols: the reference's bit values; TLS 1.2 and 1.3 only.
    pub enabled_protocols: u32,
    /// SSLEnabledCipherSuites: `*` or a `;`/`,`-separated list of suite names.
    pub cipher_suites: String,
    /// ReuseSSLSession: session resumption (tickets and a session cache).
    pub reuse_session: bool,
    /// SSLKeyLogFile: append per-session secrets here in NSS key log format ("" = off).
    pub key_log_file: String,
    /// LogSSLPackets: report TLS records read and written through SSLStatus.
    pub log_packets: bool,
    /// SSLHandshakeTimeout: seconds a client has to complete the handshake.
    pub handshake_timeout: u32,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            enabled: false,
            authenticate_clients: false,
            cert: None,
            ca_certs: String::new(),
            client_ca_certs: String::new(),
            client_crls: String::new(),
            enabled_protocols: PROTO_TLS12 | PROTO_TLS13,
            cipher_suites: "*".into(),
            reuse_session: true,
            key_log_file: String::new(),
            log_packets: false,
            handshake_timeout: 30,
        }
    }
}

/// Names of the per-connection negotiated values (read with a connection id).
pub const NEGOTIATED: &[&str] = &[
    "SSLNegotiatedCipher",
    "SSLNegotiatedCipherStrength",
    "SSLNegotiatedCipherSuite",
    "SSLNegotiatedKeyExchange",
    "SSLNegotiatedKeyExchangeStrength",
    "SSLNegotiatedVersion",
];

impl TlsSettings {
    /// Reads a TLS Config setting; `None` when the name is not a TLS setting.
    pub fn get(&self, key: &str) -> Option<Result<String>> {
        let tf = |b: bool| if b { "True" } else { "False" }.to_string();
        Some(Ok(match key.to_ascii_lowercase().as_str() {
            "sslenabled" => tf(self.enabled),
            "sslauthenticateclients" => tf(self.authenticate_clients),
            "sslcacerts" => self.ca_certs.clone(),
            "sslclientcacerts" => self.client_ca_certs.clone(),
            "sslclientcrls" => self.client_crls.clone(),
            "sslenabledprotocols" => self.enabled_protocols.to_string(),
            "sslenabledciphersuites" => self.cipher_suites.clone(),
            "reusesslsession" => tf(self.reuse_session),
            "sslkeylogfile" => self.key_log_file.clone(),
            "logsslpackets" => tf(self.log_packets),
            "sslhandshaketimeout" => self.handshake_timeout.to_string(),
            k if NEGOTIATED.iter().any(|n| n.eq_ignore_ascii_case(k)) => {
                return Some(Err(Error::new(
                    code::INVALID_VALUE,
                    format!("{key} is per connection: read it as {key}[<connection id>]"),
                )))
            }
            _ => return None,
        }))
    }

    /// Sets a TLS Config setting; `None` when the name is not a TLS setting. Values are
    /// checked here (SSLClientCRLs is read and parsed here too); certificates and CA lists
    /// are checked when the configuration is built (StartListening, or the change itself
    /// while listening).
    pub fn set(&mut self, key: &str, value: &str) -> Option<Result<()>> {
        let r = (|| {
            match key.to_ascii_lowercase().as_str() {
                "sslenabled" => self.enabled = parse_bool(value)?,
                "sslauthenticateclients" => self.authenticate_clients = parse_bool(value)?,
                "sslcacerts" => self.ca_certs = value.to_string(),
                "sslclientcacerts" => self.client_ca_certs = value.to_string(),
                "sslclientcrls" => {
                    crl::load_value(value, "SSLClientCRLs")?;
                    self.client_crls = value.to_string();
                }
                "sslenabledprotocols" => {
                    let v: u32 = value.trim().parse().map_err(|_| {
                        Error::new(code::INVALID_VALUE, format!("'{value}' is not a protocol bit mask (e.g. 15360)"))
                    })?;
                    protocol_versions(v)?;
                    self.enabled_protocols = v;
                }
                "sslenabledciphersuites" => {
                    select_suites(&provider(), value)?;
                    self.cipher_suites = value.trim().to_string();
                }
                "reusesslsession" => self.reuse_session = parse_bool(value)?,
                "sslkeylogfile" => self.key_log_file = value.trim().to_string(),
                "logsslpackets" => self.log_packets = parse_bool(value)?,
                "sslhandshaketimeout" => {
                    self.handshake_timeout = value
                        .trim()
                        .parse()
                        .map_err(|_| Error::new(code::INVALID_VALUE, format!("'{value}' is not a number of seconds")))?
                }
                k if NEGOTIATED.iter().any(|n| n.eq_ignore_ascii_case(k)) => {
                    return Err(Error::new(code::INVALID_VALUE, format!("{key} is read-only")))
                }
                _ => return Err(Error::new(code::UNKNOWN_SETTING, String::new())),
            }
            Ok(())
        })();
        match r {
            Err(e) if e.code == code::UNKNOWN_SETTING && e.message.is_empty() => None,
            r => Some(r),
        }
    }
}

/// The crypto provider: ring.
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

pub(crate) fn protocol_versions(bits: u32) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    if bits & !(PROTO_TLS12 | PROTO_TLS13) != 0 {
        return Err(Error::new(
            code::INVALID_VALUE,
            "SSLEnabledProtocols: SSL 2/3 and TLS 1.0/1.1 are not supported; use TLS 1.2 (3072) and/or TLS 1.3 (12288)",
        ));
    }
    let mut v = Vec::new();
    if bits & PROTO_TLS13 != 0 {
        v.push(&rustls::version::TLS13);
    }
    if bits & PROTO_TLS12 != 0 {
        v.push(&rustls::version::TLS12);
    }
    if v.is_empty() {
        return Err(Error::new(code::INVALID_VALUE, "SSLEnabledProtocols enables no protocol"));
    }
    Ok(v)
}

/// The IANA name of a suite (rustls spells TLS 1.3 suites `TLS13_…`).
pub(crate) fn suite_name(s: rustls::CipherSuite) -> String {
    let n = format!("{s:?}");
    match n.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => n,
    }
}

/// True for the SSLEnabledCipherSuites value that enables every suite.
fn is_all(list: &str) -> bool {
    matches!(list.trim(), "" | "*")
}

/// True when the CPU has AES and carry-less multiply instructions (ring then runs AES-GCM in
/// hardware; without them ChaCha20-Poly1305 is the faster cipher).
pub fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Orders every suite the server enables by the cost of its bulk cipher, cheapest first (the
/// server picks by its own order, see `make_config`): AES-128-GCM (10 rounds against
/// AES-256's 14) before AES-256-GCM before ChaCha20-Poly1305 where AES runs in hardware,
/// ChaCha20-Poly1305 first where it does not. Every suite stays enabled; a client that
/// offers only one of them still gets it. Public so that a benchmark's bare rustls responder
/// can use the same order.
pub fn prefer_cheapest(suites: &mut [rustls::SupportedCipherSuite]) {
    let hw = aes_in_hardware();
    suites.sort_by_key(|s| {
        let name = suite_name(s.suite());
        let (aes128, aes256, chacha) =
            (name.contains("AES_128_GCM"), name.contains("AES_256_GCM"), name.contains("CHACHA20"));
        match (hw, aes128, aes256, chacha) {
            (true, true, ..) => 0,
            (true, _, true, _) => 1,
            (false, _, _, true) => 0,
            (false, true, ..) => 1,
            _ => 2,
        }
    });
}

pub(crate) fn select_suites(p: &CryptoProvider, list: &str) -> Result<Vec<rustls::SupportedCipherSuite>> {
    let list = list.trim();
    if list.is_empty() || list == "*" {
        return Ok(p.cipher_suites.clone());
    }
    let mut out = Vec::new();
    for name in list.split([';', ',']).map(str::trim).filter(|n| !n.is_empty()) {
        let found = p.cipher_suites.iter().find(|s| suite_name(s.suite()).eq_ignore_ascii_case(name));
        match found {
            Some(s) => out.push(*s),
            None => {
                let offered: Vec<String> = p.cipher_suites.iter().map(|s| suite_name(s.suite())).collect();
                return Err(Error::new(
                    code::INVALID_VALUE,
                    format!("cipher suite '{name}' is not supported; available: {}", offered.join(", ")),
                ));
            }
        }
    }
    Ok(out)
}

pub(crate) fn parse_pem_certs(text: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    // PEM text, or else the path of a PEM file.
    let data = if text.contains("-----BEGIN") {
        text.as_bytes().to_vec()
    } else {
        std::fs::read(text.trim())
            .map_err(|e| Error::new(code::CANNOT_OPEN_FILE, format!("{what}: could not read '{}': {e}", text.trim())))?
    };
    let mut v = Vec::new();
    for c in CertificateDer::pem_slice_iter(&data) {
        v.push(c.map_err(|e| Error::new(code::CERTIFICATE, format!("{what}: bad PEM certificate: {e:?}")))?);
    }
    if v.is_empty() {
        return Err(Error::new(code::CERTIFICATE, format!("{what}: no PEM certificate found")));
    }
    Ok(v)
}

/// Offers client authentication and checks the handshake signature, but leaves the decision
/// on the certificate to the server: it verifies the chain after the handshake and lets the
/// host confirm or override the result in SSLClientAuthentication, as the reference requires.
#[derive(Debug)]
struct OfferClientAuth {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for OfferClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Appends TLS secrets to a file in NSS key log format.
#[derive(Debug)]
pub(crate) struct FileKeyLog(pub(crate) Mutex<std::fs::File>);

impl rustls::KeyLog for FileKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let _ = crate::shared::lock(&self.0).write_all(line.as_bytes());
    }
}

/// What the reactor needs for TLS connections, built at StartListening and rebuilt when a TLS
/// setting changes while listening. A connection keeps the context it was accepted with.
pub(crate) struct TlsContext {
    parts: Parts,
    /// The configuration presenting SSLCert.
    pub config: Arc<ServerConfig>,
    /// Verifies client chains after the handshake; None when SSLClientCACerts is empty.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub authenticate_clients: bool,
    pub handshake_timeout: Duration,
    pub log_packets: bool,
    /// SSLClientCRLs past their nextUpdate when the context was built, described (client
    /// certificates they cover are refused until a fresh CRL is set).
    pub expired_crls: Vec<String>,
    per_cert: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

/// Everything a server configuration is made of, apart from the certificate.
struct Parts {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    offer: Option<Arc<OfferClientAuth>>,
    extra_chain: Vec<CertificateDer<'static>>,
    reuse: bool,
    key_log: Option<Arc<dyn rustls::KeyLog>>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl TlsContext {
    /// Checks the settings and builds the server configuration.
    pub fn build(s: &TlsSettings) -> Result<Arc<TlsContext>> {
        let mut p = provider();
        p.cipher_suites = select_suites(&p, &s.cipher_suites)?;
        if is_all(&s.cipher_suites) {
            prefer_cheapest(&mut p.cipher_suites);
        }
        let provider = Arc::new(p);
        let versions = protocol_versions(s.enabled_protocols)?;
        if !provider.cipher_suites.iter().any(|cs| versions.iter().any(|v| cs.version() == *v)) {
            return Err(Error::new(code::INVALID_VALUE, "no enabled cipher suite fits the enabled protocols"));
        }
        let mut roots = RootCertStore::empty();
        for c in parse_pem_certs(&s.client_ca_certs, "SSLClientCACerts")? {
            roots.add(c).map_err(|e| {
                Error::new(code::CERTIFICATE, format!("SSLClientCACerts: unusable CA certificate: {e}"))
            })?;
        }
        let crls = crl::load_value(&s.client_crls, "SSLClientCRLs")?;
        if !crls.is_empty() && roots.is_empty() {
            return Err(Error::new(
                code::CERTIFICATE,
                "SSLClientCRLs needs SSLClientCACerts (the CAs whose certificates the CRLs revoke)",
            ));
        }
        let expired_crls = crl::expired(&crls, unix_now());
        // With no client CAs, client authentication still runs: every certificate is
        // recommended for refusal and the host decides in SSLClientAuthentication.
        // CRLs: a listed certificate is revoked; one no CRL covers passes; a CRL past its
        // nextUpdate fails the certificates it covers.
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
                    .allow_unauthenticated()
                    .with_crls(crls)
                    .allow_unknown_revocation_status()
                    .enforce_revocation_expiration()
                    .build()
                    .map_err(|e| Error::new(code::CERTIFICATE, format!("SSLClientCACerts/SSLClientCRLs: {e}")))?,
            )
        };
        let offer =
            Arc::new(OfferClientAuth { hints: roots.subjects(), algs: provider.signature_verification_algorithms });
        let key_log: Option<Arc<dyn rustls::KeyLog>> = if s.key_log_file.is_empty() {
            None
        } else {
            let f =
                std::fs::OpenOptions::new().create(true).append(true).open(&s.key_log_file).map_err(|e| {
                    Error::new(code::CANNOT_OPEN_FILE, format!("SSLKeyLogFile '{}': {e}", s.key_log_file))
                })?;
            Some(Arc::new(FileKeyLog(Mutex::new(f))))
        };
        let (sessions, ticketer): (Arc<dyn rustls::server::StoresServerSessions>, _) = if s.reuse_session {
            let t = rustls::crypto::ring::Ticketer::new()
                .map_err(|e| Error::new(code::TLS_HANDSHAKE, format!("session tickets: {e}")))?;
            (ServerSessionMemoryCache::new(1024), Some(t))
        } else {
            (Arc::new(NoServerSessionStorage {}), None)
        };
        let cert =
            s.cert.clone().ok_or_else(|| Error::new(code::CERTIFICATE, "SSLEnabled is set but SSLCert is not"))?;
        let parts = Parts {
            provider,
            versions,
            offer: s.authenticate_clients.then_some(offer),
            extra_chain: parse_pem_certs(&s.ca_certs, "SSLCACerts")?,
            reuse: s.reuse_session,
            key_log,
            sessions,
            ticketer,
        };
        Ok(Arc::new(TlsContext {
            config: parts.make_config(&cert)?,
            parts,
            verifier,
            authenticate_clients: s.authenticate_clients,
            handshake_timeout: Duration::from_secs(s.handshake_timeout.max(1) as u64),
            log_packets: s.log_packets,
            expired_crls,
            per_cert: Mutex::new(HashMap::new()),
        }))
    }

    /// A server configuration presenting `cert` (cached per certificate, for
    /// SSLConnectionRequest choosing another certificate).
    pub fn config_for(&self, cert: &Certificate) -> Result<Arc<ServerConfig>> {
        let key = cert.thumbprint_sha256().to_string();
        if let Some(c) = crate::shared::lock(&self.per_cert).get(&key) {
            return Ok(c.clone());
        }
        let c = self.parts.make_config(cert)?;
        crate::shared::lock(&self.per_cert).insert(key, c.clone());
        Ok(c)
    }

    /// Verifies a client's chain against SSLClientCACerts: "OK" or why it failed.
    pub fn verify_client(&self, chain: Option<&[CertificateDer<'static>]>) -> (bool, String) {
        let Some(chain) = chain.filter(|c| !c.is_empty()) else {
            return (false, "the client sent no certificate".into());
        };
        let Some(v) = &self.verifier else {
            return (false, "no SSLClientCACerts configured to verify the client certificate".into());
        };
        match v.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()) {
            Ok(_) => (true, "OK".into()),
            Err(e) => (false, crl::describe(&e, "SSLClientCRLs")),
        }
    }
}

impl Parts {
    fn make_config(&self, cert: &Certificate) -> Result<Arc<ServerConfig>> {
        let key = cert.key().ok_or_else(|| {
            Error::new(code::CERTIFICATE, format!("the certificate '{}' has no private key", cert.subject()))
        })?;
        let now = unix_now();
        if cert.not_after() < now {
            return Err(Error::new(
                code::CERTIFICATE,
                format!("the certificate '{}' expired on {}", cert.subject(), cert.expiration_date()),
            ));
        }
        if cert.not_before() > now {
            return Err(Error::new(
                code::CERTIFICATE,
                format!("the certificate '{}' is not valid before {}", cert.subject(), cert.effective_date()),
            ));
        }
        let mut chain = cert.chain().to_vec();
        for c in &self.extra_chain {
            if !chain.contains(c) {
                chain.push(c.clone());
            }
        }
        let ck = rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &self.provider).map_err(|e| {
            let msg = match e {
                rustls::Error::InconsistentKeys(_) => "the private key does not match the certificate".to_string(),
                e => format!("the private key cannot be used: {e}"),
            };
            Error::new(code::CERTIFICATE, msg)
        })?;
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| Error::new(code::INVALID_VALUE, format!("TLS configuration: {e}")))?;
        let builder = match &self.offer {
            Some(o) => builder.with_client_cert_verifier(o.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(Single(Arc::new(ck))));
        // The server's order of suites decides (the cheapest first with `*`, else the order
        // of SSLEnabledCipherSuites): rustls clients, for one, list AES-256-GCM first.
        cfg.ignore_client_order = true;
        cfg.session_storage = self.sessions.clone();
        if let Some(t) = &self.ticketer {
            cfg.ticketer = t.clone();
        }
        if !self.reuse {
            cfg.send_tls13_tickets = 0;
        }
        if let Some(k) = &self.key_log {
            cfg.key_log = k.clone();
        }
        Ok(Arc::new(cfg))
    }
}

/// Always presents one certificate.
#[derive(Debug)]
struct Single(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Single {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_suites_are_checked() {
        let mut s = TlsSettings::default();
        assert_eq!(s.get("SSLEnabledProtocols").unwrap().unwrap(), "15360");
        assert!(s.set("SSLEnabledProtocols", "3072").unwrap().is_ok());
        assert_eq!(s.set("SSLEnabledProtocols", "192").unwrap().unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("SSLEnabledProtocols", "0").unwrap().unwrap_err().code, code::INVALID_VALUE);
        assert!(s
            .set("SSLEnabledCipherSuites", "TLS_AES_128_GCM_SHA256;TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
            .unwrap()
            .is_ok());
        let e = s.set("SSLEnabledCipherSuites", "SSL_RSA_WITH_RC4_128_SHA").unwrap().unwrap_err();
        assert!(e.message.contains("not supported"), "{}", e.message);
        assert!(s.set("NoSuch", "1").is_none());
        assert_eq!(s.set("SSLNegotiatedCipher", "x").unwrap().unwrap_err().code, code::INVALID_VALUE);
    }

    #[test]
    fn every_suite_stays_enabled_cheapest_first() {
        let mut suites = provider().cipher_suites;
        let before = suites.len();
        prefer_cheapest(&mut suites);
        assert_eq!(suites.len(), before);
        let names: Vec<String> = suites.iter().map(|s| suite_name(s.suite())).collect();
        let first = if aes_in_hardware() { "AES_128_GCM" } else { "CHACHA20" };
        let pos = |v: &str, what: &str| names.iter().position(|n| n.starts_with(v) && n.contains(what)).unwrap();
        // Per protocol (TLS 1.3 names have no _WITH_), the preferred cipher comes first.
        assert!(names.iter().find(|n| !n.contains("_WITH_")).unwrap().contains(first), "{names:?}");
        assert!(names.iter().find(|n| n.contains("_WITH_")).unwrap().contains(first), "{names:?}");
        if aes_in_hardware() {
            assert!(pos("TLS_AES", "AES_128") < pos("TLS_AES", "AES_256"), "{names:?}");
            assert!(pos("TLS_AES", "AES_256") < pos("TLS_CHACHA", "CHACHA20"), "{names:?}");
        }
        assert!(is_all("*") && is_all(" ") && !is_all("TLS_AES_128_GCM_SHA256"));
    }

    fn pem_cert(not_after_past: bool) -> Arc<Certificate> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        if not_after_past {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        Arc::new(Certificate::load(cert::store_type::PEM_KEY_BLOB, pem.as_bytes(), "", "*").unwrap())
    }

    #[test]
    fn build_fails_early_and_clearly() {
        let mut s = TlsSettings { enabled: true, ..Default::default() };
        assert!(TlsContext::build(&s).err().unwrap().message.contains("SSLCert"));
        s.cert = Some(pem_cert(true));
        assert!(TlsContext::build(&s).err().unwrap().message.contains("expired"));
        s.cert = Some(pem_cert(false));
        assert!(TlsContext::build(&s).is_ok());
        // A key from another certificate.
        let other = pem_cert(false);
        let c = s.cert.as_ref().unwrap();
        let mismatched = Certificate::from_der(c.chain().to_vec(), other.key().map(|k| k.clone_key())).unwrap();
        s.cert = Some(Arc::new(mismatched));
        assert!(TlsContext::build(&s).err().unwrap().message.contains("does not match"));
    }
}
