//! The client's TLS: its SSL properties and Config settings, and the rustls client
//! configuration built from them at connect time.
//!
//! The server certificate is verified by rustls's WebPKI verifier (trust anchors from
//! SSLServerCACerts and SSLAcceptServerCertStore, else the system's; CRLs from SSLCRLFile),
//! and the result is then shown to the host (SSLServerAuthentication), which may override it.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::parse_bool;
use crate::error::{code, Error, Result};
use crate::tls::{parse_pem_certs, protocol_versions, provider, select_suites, Certificate, FileKeyLog};
use crate::tls::{PROTO_TLS12, PROTO_TLS13};

/// The client's SSL properties and Config settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientTlsSettings {
    /// SSLEnabled property.
    pub enabled: bool,
    /// SSLCert property: the client certificate (with its key) for mutual TLS.
    pub cert: Option<Arc<Certificate>>,
    /// SSLServerCACerts: PEM text of CA certificates trusted for the server certificate.
    pub server_ca_certs: String,
    /// SSLAcceptServerCertStore: path of a PEM file of trusted CA certificates.
    pub accept_store: String,
    /// SSLServerName: the name the server certificate must be valid for ("" = the RemoteHost).
    pub server_name: String,
    /// SSLCheckCRL: 0 = off; 1 = check, continue when the status cannot be determined;
    /// 2 = check, fail when it cannot.
    pub check_crl: u8,
    /// SSLCRLFile: path of a file with one or more CRLs (PEM, or DER).
    pub crl_file: String,
    /// SSLIncludeCertChain: SSLServerAuthentication shows the whole chain, not only the leaf.
    pub include_cert_chain: bool,
    /// SSLEnabledProtocols: the same bits as the server's (TLS 1.2 and 1.3 only).
    pub enabled_protocols: u32,
    /// SSLEnabledCipherSuites: `*` or a `;`/`,`-separated list of suite names.
    pub cipher_suites: String,
    /// SSLKeyLogFile: append session secrets here in NSS key log format ("" = off).
    pub key_log_file: String,
    /// ReuseSSLSession: offer session resumption.
    pub reuse_session: bool,
    /// LogSSLPackets: report TLS records read and written through SSLStatus.
    pub log_packets: bool,
}

impl Default for ClientTlsSettings {
    fn default() -> Self {
        ClientTlsSettings {
            enabled: false,
            cert: None,
            server_ca_certs: String::new(),
            accept_store: String::new(),
            server_name: String::new(),
            check_crl: 0,
            crl_file: String::new(),
            include_cert_chain: false,
            enabled_protocols: PROTO_TLS12 | PROTO_TLS13,
            cipher_suites: "*".into(),
            key_log_file: String::new(),
            reuse_session: true,
            log_packets: false,
        }
    }
}

impl ClientTlsSettings {
    /// Reads a TLS Config setting; `None` when `key` (any case) is not one of these settings.
    pub fn get(&self, key: &str) -> Option<Result<String>> {
        let tf = |b: bool| if b { "True" } else { "False" }.to_string();
        Some(Ok(match key.to_ascii_lowercase().as_str() {
            "sslenabled" => tf(self.enabled),
            "sslservercacerts" => self.server_ca_certs.clone(),
            "sslacceptservercertstore" => self.accept_store.clone(),
            "sslservername" => self.server_name.clone(),
            "sslcheckcrl" => self.check_crl.to_string(),
            "sslcrlfile" => self.crl_file.clone(),
            "sslincludecertchain" => tf(self.include_cert_chain),
            "sslenabledprotocols" => self.enabled_protocols.to_string(),
            "sslenabledciphersuites" => self.cipher_suites.clone(),
            "sslkeylogfile" => self.key_log_file.clone(),
            "reusesslsession" => tf(self.reuse_session),
            "logsslpackets" => tf(self.log_packets),
            _ => return None,
        }))
    }

    /// Sets a TLS Config setting; `None` when `key` (any case) is not one of these settings.
    /// Values are checked here (bad ones give `code::INVALID_VALUE`); files are only read
    /// when the configuration is built.
    pub fn set(&mut self, key: &str, value: &str) -> Option<Result<()>> {
        let invalid = |msg: String| Err(Error::new(code::INVALID_VALUE, msg));
        let r = match key.to_ascii_lowercase().as_str() {
            "sslenabled" => parse_bool(value).map(|v| self.enabled = v),
            "sslservercacerts" => {
                if value.trim().is_empty() {
                    self.server_ca_certs.clear();
                    Ok(())
                } else if !value.contains("-----BEGIN") {
                    invalid(
                        "SSLServerCACerts takes PEM certificates (-----BEGIN CERTIFICATE-----); \
                         for a file use SSLAcceptServerCertStore"
                            .into(),
                    )
                } else {
                    match parse_pem_certs(value, "SSLServerCACerts") {
                        Ok(_) => {
                            self.server_ca_certs = value.to_string();
                            Ok(())
                        }
                        Err(e) => invalid(e.message),
                    }
                }
            }
            "sslacceptservercertstore" => {
                self.accept_store = value.trim().to_string();
                Ok(())
            }
            "sslservername" => {
                let v = value.trim();
                if !v.is_empty() && parse_server_name(v).is_none() {
                    invalid(format!("SSLServerName: '{v}' is neither a DNS name nor an IP address"))
                } else {
                    self.server_name = v.to_string();
                    Ok(())
                }
            }
            "sslcheckcrl" => match value.trim().parse::<u8>() {
                Ok(v) if v <= 2 => {
                    self.check_crl = v;
                    Ok(())
                }
                _ => invalid(format!("SSLCheckCRL: '{value}' is not 0 (off), 1 (check if possible) or 2 (required)")),
            },
            "sslcrlfile" => {
                self.crl_file = value.trim().to_string();
                Ok(())
            }
            "sslincludecertchain" => parse_bool(value).map(|v| self.include_cert_chain = v),
            "sslenabledprotocols" => match value.trim().parse::<u32>() {
                Ok(v) => protocol_versions(v).map(|_| self.enabled_protocols = v),
                Err(_) => invalid(format!("'{value}' is not a protocol bit mask (e.g. 15360)")),
            },
            "sslenabledciphersuites" => {
                select_suites(&provider(), value).map(|_| self.cipher_suites = value.trim().to_string())
            }
            "sslkeylogfile" => {
                self.key_log_file = value.trim().to_string();
                Ok(())
            }
            "reusesslsession" => parse_bool(value).map(|v| self.reuse_session = v),
            "logsslpackets" => parse_bool(value).map(|v| self.log_packets = v),
            _ => return None,
        };
        Some(r)
    }
}

/// What the SSLServerAuthentication event shows and decides.
pub struct ServerAuth<'a> {
    /// The certificates the server sent, leaf first.
    pub chain: &'a [CertificateDer<'static>],
    /// The leaf's subject DN ("" if it cannot be parsed).
    pub subject: String,
    /// The leaf's issuer DN ("" if it cannot be parsed).
    pub issuer: String,
    /// "OK", or why verification failed (e.g. unknown issuer, name mismatch, revoked).
    pub status: String,
    /// Whether to continue: starts as the verification result; the hook may change it.
    pub accept: bool,
}

/// The host's SSLServerAuthentication handler; it runs inside the handshake, on the thread
/// driving the connection.
pub type AuthHook = Arc<dyn Fn(&mut ServerAuth<'_>) + Send + Sync>;

/// Starts the text of the `rustls::Error::General` a refused server certificate fails the
/// handshake with (the reason follows); see [`rejection`].
pub const REJECTED_PREFIX: &str = "server certificate refused: ";

/// Why the server certificate was refused, when `e` is the handshake error of a refusal
/// (verification failed and the hook did not override it, or the hook refused): map it to
/// `TLS_SERVER_REJECTED`. `None` for other TLS errors.
pub fn rejection(e: &rustls::Error) -> Option<&str> {
    match e {
        rustls::Error::General(m) => m.strip_prefix(REJECTED_PREFIX),
        _ => None,
    }
}

/// Builds the client configuration, reading the CA store, CRL and key log files.
///
/// Trust anchors are the CAs of SSLServerCACerts plus those of the SSLAcceptServerCertStore
/// file; when both are empty, the system's trusted CAs. With SSLCheckCRL 1 or 2 the CRLs of
/// SSLCRLFile are checked for every certificate of the chain but the trust anchor; with 1 a
/// certificate no CRL covers passes, with 2 it fails, so 2 needs SSLCRLFile: CRLs are not
/// fetched from the certificates' distribution points (no HTTP client here), nor is OCSP
/// checked. Revocation status is only checked on full handshakes (a resumed session is not
/// re-authenticated, and the hook does not run for it).
///
/// Errors: `code::CERTIFICATE` for an unreadable or bad CA or CRL file, unusable CA
/// certificates, or a client certificate without (or with a mismatched) private key;
/// `code::INVALID_VALUE` for protocol or suite choices that leave nothing to negotiate and
/// for SSLCheckCRL=2 without SSLCRLFile; `code::CANNOT_OPEN_FILE` for the key log file.
pub fn client_config(s: &ClientTlsSettings, hook: AuthHook) -> Result<Arc<ClientConfig>> {
    let mut p = provider();
    p.cipher_suites = select_suites(&p, &s.cipher_suites)?;
    let provider = Arc::new(p);
    let versions = protocol_versions(s.enabled_protocols)?;
    if !provider.cipher_suites.iter().any(|cs| versions.iter().any(|v| cs.version() == *v)) {
        return Err(Error::new(code::INVALID_VALUE, "no enabled cipher suite fits the enabled protocols"));
    }
    let crls = match s.check_crl {
        0 => Vec::new(),
        2 if s.crl_file.is_empty() => {
            return Err(Error::new(
                code::INVALID_VALUE,
                "SSLCheckCRL=2 needs SSLCRLFile (CRLs are not downloaded from distribution points)",
            ))
        }
        _ if s.crl_file.is_empty() => Vec::new(),
        _ => crate::tls::crl::load_file(&s.crl_file, "SSLCRLFile")?,
    };
    let roots = load_roots(s)?;
    let inner = if roots.is_empty() {
        // Nothing to verify against: every certificate fails with that reason, and the
        // host may still accept it in SSLServerAuthentication.
        None
    } else {
        let mut b = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).with_crls(crls);
        if s.check_crl == 1 {
            b = b.allow_unknown_revocation_status();
        }
        Some(b.build().map_err(|e| Error::new(code::CERTIFICATE, format!("SSLCRLFile '{}': {e}", s.crl_file)))?)
    };
    let verifier = Arc::new(HookVerifier { inner, algs: provider.signature_verification_algorithms, hook });

    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| Error::new(code::INVALID_VALUE, format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match &s.cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let key = c.key().ok_or_else(|| {
                Error::new(code::CERTIFICATE, format!("the client certificate '{}' has no private key", c.subject()))
            })?;
            builder.with_client_auth_cert(c.chain().to_vec(), key.clone_key()).map_err(|e| {
                let msg = match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the private key does not match the client certificate".to_string()
                    }
                    e => format!("the client certificate's key cannot be used: {e}"),
                };
                Error::new(code::CERTIFICATE, msg)
            })?
        }
    };
    if !s.reuse_session {
        cfg.resumption = Resumption::disabled();
    }
    if !s.key_log_file.is_empty() {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.key_log_file)
            .map_err(|e| Error::new(code::CANNOT_OPEN_FILE, format!("SSLKeyLogFile '{}': {e}", s.key_log_file)))?;
        cfg.key_log = Arc::new(FileKeyLog(Mutex::new(f)));
    }
    Ok(Arc::new(cfg))
}

/// The name the server certificate is verified against: SSLServerName, else `remote_host`
/// (an IP address, also bracketed IPv6, becomes `ServerName::IpAddress`, sent without SNI).
pub fn server_name(s: &ClientTlsSettings, remote_host: &str) -> Result<ServerName<'static>> {
    let (name, what) = if s.server_name.is_empty() {
        (remote_host.trim(), "RemoteHost")
    } else {
        (s.server_name.trim(), "SSLServerName")
    };
    if name.is_empty() {
        return Err(Error::new(code::INVALID_VALUE, "no server name to verify: set RemoteHost or SSLServerName"));
    }
    parse_server_name(name).ok_or_else(|| {
        Error::new(code::INVALID_VALUE, format!("{what} '{name}' is neither a DNS name nor an IP address"))
    })
}

fn parse_server_name(name: &str) -> Option<ServerName<'static>> {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    ServerName::try_from(bare.to_string()).ok()
}

fn cert_err(msg: String) -> Error {
    Error::new(code::CERTIFICATE, msg)
}

/// The trust anchors: the configured CAs, else the system's.
fn load_roots(s: &ClientTlsSettings) -> Result<RootCertStore> {
    let mut certs = parse_pem_certs(&s.server_ca_certs, "SSLServerCACerts").map_err(|e| cert_err(e.message))?;
    if !s.accept_store.is_empty() {
        let what = format!("SSLAcceptServerCertStore '{}'", s.accept_store);
        let data = std::fs::read(&s.accept_store).map_err(|e| cert_err(format!("{what}: {e}")))?;
        let text = String::from_utf8(data)
            .ok()
            .filter(|t| t.contains("-----BEGIN"))
            .ok_or_else(|| cert_err(format!("{what}: not a PEM file of certificates")))?;
        certs.extend(parse_pem_certs(&text, &what)?);
    }
    let mut roots = RootCertStore::empty();
    if certs.is_empty() {
        // Unparsable entries in the system bundle are skipped, as every TLS client does.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    } else {
        for c in certs {
            roots.add(c).map_err(|e| cert_err(format!("unusable CA certificate: {e}")))?;
        }
    }
    Ok(roots)
}

const NO_ROOTS: &str = "no trusted CA certificates (set SSLServerCACerts or SSLAcceptServerCertStore; \
                        no system CA certificates were found)";

/// A verification failure in words.
fn describe(e: &rustls::Error) -> String {
    crate::tls::crl::describe(e, "SSLCRLFile")
}

/// rustls's WebPKI verification, then the host's say (SSLServerAuthentication).
struct HookVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    algs: WebPkiSupportedAlgorithms,
    hook: AuthHook,
}

impl std::fmt::Debug for HookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookVerifier").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl ServerCertVerifier for HookVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| describe(&e)),
            None => Err(NO_ROOTS.to_string()),
        };
        let chain: Vec<CertificateDer<'static>> =
            std::iter::once(end_entity).chain(intermediates).map(|c| c.clone().into_owned()).collect();
        let (subject, issuer) = match x509_parser::parse_x509_certificate(end_entity.as_ref()) {
            Ok((_, x)) => (x.subject().to_string(), x.issuer().to_string()),
            Err(_) => (String::new(), String::new()),
        };
        let mut auth = ServerAuth {
            chain: &chain,
            subject,
            issuer,
            status: verdict.clone().err().unwrap_or_else(|| "OK".into()),
            accept: verdict.is_ok(),
        };
        (self.hook)(&mut auth);
        if auth.accept {
            return Ok(ServerCertVerified::assertion());
        }
        let why = verdict.err().unwrap_or_else(|| "refused by the host".into());
        Err(rustls::Error::General(format!("{REJECTED_PREFIX}{why}")))
    }

    // The handshake signatures are checked whatever the host decided about the chain.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(v) => v.verify_tls12_signature(message, cert, dss),
            None => rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(v) => v.verify_tls13_signature(message, cert, dss),
            None => rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.inner {
            Some(v) => v.supported_verify_schemes(),
            None => self.algs.supported_schemes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert::store_type;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
    };
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConnection, ServerConfig, ServerConnection};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        cert: rcgen::Certificate,
    }

    struct Leaf {
        pem: String,
        der: CertificateDer<'static>,
        key: KeyPair,
    }

    impl Ca {
        fn new(cn: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Ca { params, key, cert }
        }

        fn issue(&self, cn: &str, serial: u64, client: bool) -> Leaf {
            let sans = if client { vec![] } else { vec!["localhost".to_string()] };
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.serial_number = Some(SerialNumber::from(serial));
            params.extended_key_usages =
                vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).unwrap();
            Leaf { pem: cert.pem(), der: cert.der().clone(), key }
        }

        /// A CRL revoking `serials`.
        fn crl(&self, serials: &[u64]) -> String {
            let params = CertificateRevocationListParams {
                this_update: rcgen::date_time_ymd(2020, 1, 1),
                next_update: rcgen::date_time_ymd(2100, 1, 1),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: serials
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from(*s),
                        revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                        reason_code: None,
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            params.signed_by(&Issuer::from_params(&self.params, &self.key)).unwrap().pem().unwrap()
        }
    }

    impl Leaf {
        fn key_der(&self) -> PrivateKeyDer<'static> {
            PrivateKeyDer::try_from(self.key.serialize_der()).unwrap()
        }

        fn certificate(&self) -> Arc<Certificate> {
            let pem = format!("{}{}", self.pem, self.key.serialize_pem());
            Arc::new(Certificate::load(store_type::PEM_KEY_BLOB, pem.as_bytes(), "", "*").unwrap())
        }
    }

    fn temp_file(tag: &str, data: &[u8]) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "mllp-client-tls-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, data).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
        let p = Arc::new(provider());
        let b = ServerConfig::builder_with_provider(p.clone()).with_safe_default_protocol_versions().unwrap();
        let b = match client_ca {
            None => b.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.cert.der().clone()).unwrap();
                b.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(roots.into(), p).build().unwrap(),
                )
            }
        };
        Arc::new(b.with_single_cert(vec![leaf.der.clone()], leaf.key_der()).unwrap())
    }

    /// What the hook saw: (subject, issuer, status, accept, chain length).
    type Seen = Arc<Mutex<Vec<(String, String, String, bool, usize)>>>;

    /// A hook recording what it saw and then setting `accept` to `force` if given.
    fn recorder(force: Option<bool>) -> (AuthHook, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let hook: AuthHook = Arc::new(move |a: &mut ServerAuth<'_>| {
            s.lock().unwrap().push((a.subject.clone(), a.issuer.clone(), a.status.clone(), a.accept, a.chain.len()));
            if let Some(f) = force {
                a.accept = f;
            }
        });
        (hook, seen)
    }

    /// Runs a handshake in memory; Err names the side that failed and why.
    fn handshake(c: &mut ClientConnection, s: &mut ServerConnection) -> std::result::Result<(), String> {
        loop {
            let mut moved = false;
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                moved = true;
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    s.read_tls(&mut rd).unwrap();
                }
                s.process_new_packets().map_err(|e| format!("server: {e}"))?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                moved = true;
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    c.read_tls(&mut rd).unwrap();
                }
                c.process_new_packets().map_err(|e| format!("client: {e}"))?;
            }
            if !moved {
                return if c.is_handshaking() || s.is_handshaking() { Err("stalled".into()) } else { Ok(()) };
            }
        }
    }

    fn connect(
        s: &ClientTlsSettings,
        hook: AuthHook,
        server: &Arc<ServerConfig>,
    ) -> std::result::Result<ClientConnection, String> {
        let cfg = client_config(s, hook).unwrap();
        connect_with(&cfg, s, server)
    }

    fn connect_with(
        cfg: &Arc<ClientConfig>,
        s: &ClientTlsSettings,
        server: &Arc<ServerConfig>,
    ) -> std::result::Result<ClientConnection, String> {
        let mut c = ClientConnection::new(cfg.clone(), server_name(s, "localhost").unwrap()).unwrap();
        let mut srv = ServerConnection::new(server.clone()).unwrap();
        handshake(&mut c, &mut srv).map(|_| c)
    }

    fn trusting(ca: &Ca) -> ClientTlsSettings {
        ClientTlsSettings { enabled: true, server_ca_certs: ca.cert.pem(), ..Default::default() }
    }

    #[test]
    fn trusted_ca_and_right_name_complete() {
        let ca = Ca::new("CA A");
        let srv = server_config(&ca.issue("localhost", 10, false), None);
        let (hook, seen) = recorder(None);
        connect(&trusting(&ca), hook, &srv).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (subject, issuer, status, accept, n) = &seen[0];
        assert_eq!((status.as_str(), *accept, *n), ("OK", true, 1));
        assert!(subject.contains("CN=localhost") && issuer.contains("CN=CA A"), "{subject} / {issuer}");
    }

    #[test]
    fn other_ca_fails_unless_the_hook_accepts() {
        let (a, b) = (Ca::new("CA A"), Ca::new("CA B"));
        let srv = server_config(&b.issue("localhost", 11, false), None);
        let (hook, seen) = recorder(None);
        let e = connect(&trusting(&a), hook, &srv).unwrap_err();
        assert!(e.starts_with("client: ") && e.contains(REJECTED_PREFIX), "{e}");
        let (_, _, status, accept, _) = seen.lock().unwrap()[0].clone();
        assert!(!accept && status.contains("issuer"), "{status}");

        // The host overrides the verdict.
        let (hook, seen) = recorder(Some(true));
        connect(&trusting(&a), hook, &srv).unwrap();
        assert!(!seen.lock().unwrap()[0].3);
    }

    #[test]
    fn the_error_is_recognisable() {
        let (a, b) = (Ca::new("CA A"), Ca::new("CA B"));
        let srv = server_config(&b.issue("localhost", 12, false), None);
        let cfg = client_config(&trusting(&a), recorder(None).0).unwrap();
        let mut c = ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
        let mut s = ServerConnection::new(srv.clone()).unwrap();
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        let e = c.process_new_packets().unwrap_err();
        assert!(rejection(&e).unwrap().starts_with("unknown issuer"), "{e}");
        assert_eq!(rejection(&rustls::Error::General("other".into())), None);

        // A host refusing a good certificate.
        let srv = server_config(&a.issue("localhost", 13, false), None);
        let e = connect(&trusting(&a), recorder(Some(false)).0, &srv).unwrap_err();
        assert!(e.ends_with("refused by the host"), "{e}");
    }

    #[test]
    fn wrong_name_fails() {
        let ca = Ca::new("CA A");
        let srv = server_config(&ca.issue("localhost", 14, false), None);
        let s = ClientTlsSettings { server_name: "other.example".into(), ..trusting(&ca) };
        let (hook, seen) = recorder(None);
        let e = connect(&s, hook, &srv).unwrap_err();
        assert!(e.contains(REJECTED_PREFIX), "{e}");
        let (_, _, status, accept, _) = seen.lock().unwrap()[0].clone();
        assert!(!accept && status.contains("other.example"), "{status}");
    }

    #[test]
    fn crl_revocation() {
        let (a, b) = (Ca::new("CA A"), Ca::new("CA B"));
        let srv = server_config(&a.issue("localhost", 42, false), None);
        let revoking = temp_file("crl-revoking.pem", a.crl(&[7, 42]).as_bytes());
        let s = ClientTlsSettings { check_crl: 2, crl_file: revoking.clone(), ..trusting(&a) };
        let (hook, seen) = recorder(None);
        let e = connect(&s, hook, &srv).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        assert_eq!(seen.lock().unwrap()[0].2, "certificate revoked");

        // The same CRL as DER is read too.
        let der =
            <rustls::pki_types::CertificateRevocationListDer as rustls::pki_types::pem::PemObject>::from_pem_file(
                &revoking,
            )
            .unwrap();
        let der_file = temp_file("crl.der", der.as_ref());
        let s = ClientTlsSettings { check_crl: 1, crl_file: der_file.clone(), ..trusting(&a) };
        assert!(connect(&s, recorder(None).0, &srv).unwrap_err().contains("revoked"));

        // A CRL that does not cover the certificate: 1 continues, 2 fails.
        let other = temp_file("crl-other.pem", b.crl(&[42]).as_bytes());
        let s = ClientTlsSettings { check_crl: 1, crl_file: other.clone(), ..trusting(&a) };
        connect(&s, recorder(None).0, &srv).unwrap();
        let s = ClientTlsSettings { check_crl: 2, ..s };
        let (hook, seen) = recorder(None);
        assert!(connect(&s, hook, &srv).is_err());
        assert!(seen.lock().unwrap()[0].2.contains("revocation status unknown"));

        // The CA's CRL not listing it: accepted with 2; 0 ignores the CRL file.
        let clean = temp_file("crl-clean.pem", a.crl(&[7]).as_bytes());
        let s = ClientTlsSettings { check_crl: 2, crl_file: clean.clone(), ..trusting(&a) };
        connect(&s, recorder(None).0, &srv).unwrap();
        let s = ClientTlsSettings { check_crl: 0, crl_file: revoking.clone(), ..trusting(&a) };
        connect(&s, recorder(None).0, &srv).unwrap();
        for f in [revoking, der_file, other, clean] {
            let _ = std::fs::remove_file(f);
        }
    }

    #[test]
    fn mutual_tls() {
        let ca = Ca::new("CA A");
        let srv = server_config(&ca.issue("localhost", 20, false), Some(&ca));
        let client = ca.issue("client one", 21, true);
        // Without a client certificate the server refuses.
        assert!(connect(&trusting(&ca), recorder(None).0, &srv).unwrap_err().starts_with("server: "));
        let s = ClientTlsSettings { cert: Some(client.certificate()), ..trusting(&ca) };
        connect(&s, recorder(None).0, &srv).unwrap();

        // A certificate without its key cannot be used.
        let no_key = Certificate::from_der(vec![client.der.clone()], None).unwrap();
        let s = ClientTlsSettings { cert: Some(Arc::new(no_key)), ..trusting(&ca) };
        let e = client_config(&s, recorder(None).0).unwrap_err();
        assert_eq!(e.code, code::CERTIFICATE);
        assert!(e.message.contains("no private key"), "{}", e.message);
    }

    #[test]
    fn accept_store_file_and_system_roots() {
        let ca = Ca::new("CA A");
        let srv = server_config(&ca.issue("localhost", 30, false), None);
        let store = temp_file("store.pem", ca.cert.pem().as_bytes());
        let s = ClientTlsSettings { accept_store: store.clone(), ..Default::default() };
        connect(&s, recorder(None).0, &srv).unwrap();
        let _ = std::fs::remove_file(store);

        // Neither set: the system's CAs, which do not know the test CA.
        let (hook, seen) = recorder(None);
        assert!(connect(&ClientTlsSettings::default(), hook, &srv).is_err());
        let status = seen.lock().unwrap()[0].2.clone();
        assert!(status.contains("issuer") || status.contains("no trusted CA"), "{status}");
    }

    #[test]
    fn build_errors() {
        let ca = Ca::new("CA A");
        let hook = || recorder(None).0;
        let err = |s: &ClientTlsSettings| client_config(s, hook()).unwrap_err();
        let missing = std::env::temp_dir().join("mllp-client-tls-no-such-file").to_string_lossy().into_owned();

        let e = err(&ClientTlsSettings { check_crl: 2, ..trusting(&ca) });
        assert_eq!(e.code, code::INVALID_VALUE);
        assert!(e.message.contains("SSLCheckCRL=2 needs SSLCRLFile"), "{}", e.message);
        assert_eq!(
            err(&ClientTlsSettings { check_crl: 1, crl_file: missing.clone(), ..trusting(&ca) }).code,
            code::CERTIFICATE
        );
        let junk = temp_file("junk", b"not a CRL");
        assert_eq!(
            err(&ClientTlsSettings { check_crl: 1, crl_file: junk.clone(), ..trusting(&ca) }).code,
            code::CERTIFICATE
        );
        assert_eq!(err(&ClientTlsSettings { accept_store: missing, ..Default::default() }).code, code::CERTIFICATE);
        assert_eq!(
            err(&ClientTlsSettings { accept_store: junk.clone(), ..Default::default() }).code,
            code::CERTIFICATE
        );
        let _ = std::fs::remove_file(junk);

        // TLS 1.2 only with TLS 1.3 suites only.
        let e = err(&ClientTlsSettings {
            enabled_protocols: PROTO_TLS12,
            cipher_suites: "TLS_AES_128_GCM_SHA256".into(),
            ..trusting(&ca)
        });
        assert_eq!(e.code, code::INVALID_VALUE);
    }

    #[test]
    fn key_log_and_resumption() {
        let ca = Ca::new("CA A");
        let srv = server_config(&ca.issue("localhost", 40, false), None);
        let log = temp_file("keys.log", b"");
        let s = ClientTlsSettings { key_log_file: log.clone(), ..trusting(&ca) };
        let cfg = client_config(&s, recorder(None).0).unwrap();
        let first = connect_with(&cfg, &s, &srv).unwrap();
        assert_eq!(first.handshake_kind(), Some(rustls::HandshakeKind::Full));
        let lines = std::fs::read_to_string(&log).unwrap();
        assert!(lines.lines().any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")), "{lines}");
        let _ = std::fs::remove_file(log);

        let second = connect_with(&cfg, &s, &srv).unwrap();
        assert_eq!(second.handshake_kind(), Some(rustls::HandshakeKind::Resumed));

        let s = ClientTlsSettings { reuse_session: false, ..trusting(&ca) };
        let cfg = client_config(&s, recorder(None).0).unwrap();
        connect_with(&cfg, &s, &srv).unwrap();
        assert_eq!(connect_with(&cfg, &s, &srv).unwrap().handshake_kind(), Some(rustls::HandshakeKind::Full));
    }

    #[test]
    fn server_names() {
        let mut s = ClientTlsSettings::default();
        assert_eq!(server_name(&s, "localhost").unwrap(), ServerName::try_from("localhost").unwrap());
        assert!(matches!(server_name(&s, "127.0.0.1").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name(&s, "[::1]").unwrap(), ServerName::IpAddress(_)));
        assert_eq!(server_name(&s, "").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(server_name(&s, "bad name").unwrap_err().code, code::INVALID_VALUE);
        s.server_name = "mllp.example".into();
        assert_eq!(server_name(&s, "10.0.0.1").unwrap(), ServerName::try_from("mllp.example").unwrap());
    }

    #[test]
    fn get_set_round_trip_and_invalid_values() {
        let mut s = ClientTlsSettings::default();
        assert_eq!(s.get("SSLEnabledProtocols").unwrap().unwrap(), "15360");
        assert_eq!(s.get("reusesslsession").unwrap().unwrap(), "True");
        assert_eq!(s.get("SSLCheckCRL").unwrap().unwrap(), "0");
        let pem = Ca::new("CA A").cert.pem();
        for (k, v) in [
            ("SSLEnabled", "True"),
            ("SSLServerCACerts", pem.as_str()),
            ("SSLAcceptServerCertStore", "/etc/mllp/cas.pem"),
            ("SSLServerName", "mllp.example"),
            ("SSLCheckCRL", "2"),
            ("SSLCRLFile", "/etc/mllp/crl.pem"),
            ("SSLIncludeCertChain", "True"),
            ("SSLEnabledProtocols", "12288"),
            ("SSLEnabledCipherSuites", "TLS_AES_256_GCM_SHA384"),
            ("SSLKeyLogFile", "/tmp/keys.log"),
            ("ReuseSSLSession", "False"),
            ("LogSSLPackets", "True"),
        ] {
            s.set(k, v).unwrap().unwrap_or_else(|e| panic!("{k}={v}: {}", e.message));
            assert_eq!(s.get(&k.to_uppercase()).unwrap().unwrap(), v, "{k}");
        }
        assert!(s.enabled && s.include_cert_chain && !s.reuse_session && s.log_packets && s.check_crl == 2);
        s.set("SSLServerName", "").unwrap().unwrap();
        assert_eq!(s.server_name, "");

        let before = s.clone();
        for (k, v) in [
            ("SSLEnabled", "maybe"),
            ("SSLServerCACerts", "/path/to/cas.pem"),
            ("SSLServerCACerts", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
            ("SSLServerName", "not a name"),
            ("SSLCheckCRL", "3"),
            ("SSLCheckCRL", "yes"),
            ("SSLIncludeCertChain", "2"),
            ("SSLEnabledProtocols", "192"),
            ("SSLEnabledProtocols", "tls"),
            ("SSLEnabledCipherSuites", "SSL_RSA_WITH_RC4_128_SHA"),
            ("ReuseSSLSession", ""),
        ] {
            let e = s.set(k, v).unwrap().unwrap_err();
            assert_eq!(e.code, code::INVALID_VALUE, "{k}={v}");
            assert!(!e.message.is_empty(), "{k}={v}");
        }
        assert_eq!(s, before);
        assert!(s.get("RemoteHost").is_none() && s.set("NoSuch", "1").is_none());
    }
}
