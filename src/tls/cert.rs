//! The reference's Certificate type: loading from PEM, PFX/PKCS#12 and DER stores, selecting
//! by subject or thumbprint, and the read-only fields a host inspects.

use std::fmt::Write as _;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{code, Error, Result};

/// Certificate store types of the reference that this library reads.
pub mod store_type {
    /// A PFX (PKCS#12) file; the store is its path.
    pub const PFX_FILE: i32 = 2;
    /// A PFX (PKCS#12) blob (binary or base64).
    pub const PFX_BLOB: i32 = 3;
    /// A PEM file with a private key and optional certificates; the store is its path.
    pub const PEM_KEY_FILE: i32 = 6;
    /// A PEM blob with a private key and optional certificates.
    pub const PEM_KEY_BLOB: i32 = 7;
    /// A file with a PEM or DER public certificate; the store is its path.
    pub const PUBLIC_KEY_FILE: i32 = 8;
    /// A PEM or DER public certificate blob.
    pub const PUBLIC_KEY_BLOB: i32 = 9;
    /// Detect the format from the data; the store is a path if such a file exists, else a blob.
    pub const AUTO: i32 = 99;
}

/// A certificate (and, when the store had one, its private key).
pub struct Certificate {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    subject: String,
    issuer: String,
    serial: String,
    not_before: i64,
    not_after: i64,
    sha1: String,
    sha256: String,
}

impl Clone for Certificate {
    fn clone(&self) -> Self {
        Certificate {
            chain: self.chain.clone(),
            key: self.key.as_ref().map(|k| k.clone_key()),
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            serial: self.serial.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            sha1: self.sha1.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain
            && self.key.as_ref().map(|k| k.secret_der()) == other.key.as_ref().map(|k| k.secret_der())
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("subject", &self.subject).field("sha256", &self.sha256).finish()
    }
}

fn cert_err(msg: impl Into<String>) -> Error {
    Error::new(code::CERTIFICATE, msg)
}

/// One certificate found in a store, with the key that belongs to it, if any.
struct Candidate {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
}

impl Certificate {
    /// Loads a certificate as the reference's `Certificate(storeType, store, storePassword,
    /// subject)` does. `store` is a path for the file types and the data for the blob types.
    /// `subject` selects among several certificates: `*` (or "") takes the first, otherwise an
    /// exact or substring match of the subject DN, or `Thumbprint=<hex SHA-1 or SHA-256>`.
    pub fn load(store_type: i32, store: &[u8], password: &str, subject: &str) -> Result<Certificate> {
        use store_type::*;
        let (data, kind) = match store_type {
            PFX_FILE | PEM_KEY_FILE | PUBLIC_KEY_FILE => (read_file(store)?, store_type),
            PFX_BLOB | PEM_KEY_BLOB | PUBLIC_KEY_BLOB => (decode_blob(store), store_type),
            AUTO => {
                let path =
                    std::str::from_utf8(store).ok().filter(|p| !p.contains('\n') && std::path::Path::new(p).is_file());
                let data = match path {
                    Some(p) => read_file(p.as_bytes())?,
                    None => decode_blob(store),
                };
                let kind = detect(&data);
                (data, kind)
            }
            0 | 1 => {
                return Err(Error::new(
                    code::NOT_SUPPORTED,
                    "Windows certificate stores (cstUser, cstMachine) do not exist on this platform",
                ))
            }
            4 | 5 | 21 | 22 => {
                return Err(Error::new(
                    code::NOT_SUPPORTED,
                    "Java key stores (JKS, BCFKS) are not supported; convert to PFX or PEM",
                ))
            }
            t => {
                return Err(Error::new(
                    code::NOT_SUPPORTED,
                    format!(
                    "certificate store type {t} is not supported (use 2/3 PFX, 6/7 PEM, 8/9 public key, or 99 auto)"
                ),
                ))
            }
        };
        let candidates = match kind {
            PFX_FILE | PFX_BLOB => from_pfx(&data, password)?,
            PUBLIC_KEY_FILE | PUBLIC_KEY_BLOB if !looks_pem(&data) => {
                vec![Candidate { chain: vec![CertificateDer::from(data.clone())], key: None }]
            }
            _ => from_pem(&data)?,
        };
        select(candidates, subject)
    }

    /// Builds a certificate from DER parts (for certificates seen on the wire).
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: Option<PrivateKeyDer<'static>>) -> Result<Certificate> {
        let first = chain.first().ok_or_else(|| cert_err("no certificate"))?;
        let (_, x) = x509_parser::parse_x509_certificate(first.as_ref())
            .map_err(|e| cert_err(format!("certificate could not be parsed: {e}")))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, first.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, first.as_ref());
        Ok(Certificate {
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            serial: hex_upper(x.raw_serial()),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
            sha1: hex_lower(sha1.as_ref()),
            sha256: hex_lower(sha256.as_ref()),
            chain,
            key,
        })
    }

    /// The subject DN, e.g. `CN=server.example, O=Example`.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The issuer DN.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The serial number as hexadecimal digits.
    pub fn serial_number(&self) -> &str {
        &self.serial
    }
    /// Not valid before, formatted as the reference does (`23-Jan-2000 15:00:00`, UTC).
    pub fn effective_date(&self) -> String {
        format_date(self.not_before)
    }
    /// Not valid after, formatted as the reference does (UTC).
    pub fn expiration_date(&self) -> String {
        format_date(self.not_after)
    }
    /// Not valid after, UNIX seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
    /// Not valid before, UNIX seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }
    /// SHA-1 thumbprint, lowercase hex.
    pub fn thumbprint_sha1(&self) -> &str {
        &self.sha1
    }
    /// SHA-256 thumbprint, lowercase hex.
    pub fn thumbprint_sha256(&self) -> &str {
        &self.sha256
    }
    /// The end-entity certificate, DER.
    pub fn encoded(&self) -> &[u8] {
        self.chain[0].as_ref()
    }
    /// True when the store held the private key of this certificate.
    pub fn private_key_available(&self) -> bool {
        self.key.is_some()
    }
    /// The chain, end-entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    /// The private key, if the store had it.
    pub fn key(&self) -> Option<&PrivateKeyDer<'static>> {
        self.key.as_ref()
    }
}

fn read_file(path: &[u8]) -> Result<Vec<u8>> {
    let p =
        std::str::from_utf8(path).map_err(|_| Error::new(code::INVALID_ARGUMENT, "certificate path is not UTF-8"))?;
    std::fs::read(p)
        .map_err(|e| Error::new(code::CANNOT_OPEN_FILE, format!("could not read certificate store '{p}': {e}")))
}

fn looks_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Blobs may be binary or base64 (the reference accepts both).
fn decode_blob(store: &[u8]) -> Vec<u8> {
    if looks_pem(store) || store.first() == Some(&0x30) {
        return store.to_vec();
    }
    base64_decode(store).unwrap_or_else(|| store.to_vec())
}

fn detect(data: &[u8]) -> i32 {
    if looks_pem(data) {
        return store_type::PEM_KEY_BLOB;
    }
    if x509_parser::parse_x509_certificate(data).is_ok() {
        return store_type::PUBLIC_KEY_BLOB;
    }
    store_type::PFX_BLOB
}

fn from_pem(data: &[u8]) -> Result<Vec<Candidate>> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(data) {
        certs.push(c.map_err(|e| cert_err(format!("bad PEM certificate: {e:?}")))?);
    }
    let key = match PrivateKeyDer::from_pem_slice(data) {
        Ok(k) => Some(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => None,
        Err(e) => return Err(cert_err(format!("bad PEM private key: {e:?}"))),
    };
    if certs.is_empty() {
        return Err(cert_err(if key.is_some() {
            "the PEM store has a private key but no certificate"
        } else {
            "no certificate found in the PEM data"
        }));
    }
    // A PEM key store holds one key: it belongs to the first certificate; the rest is its chain.
    Ok(vec![Candidate { chain: certs, key }])
}

fn from_pfx(data: &[u8], password: &str) -> Result<Vec<Candidate>> {
    let ks = p12_keystore::KeyStore::from_pkcs12(data, password).map_err(|e| {
        let s = e.to_string();
        if s.to_ascii_lowercase().contains("mac") {
            cert_err("wrong password for the PFX store (MAC verification failed)")
        } else {
            cert_err(format!("PFX store could not be read: {s}"))
        }
    })?;
    let mut out = Vec::new();
    let mut extra = Vec::new();
    for (_, entry) in ks.entries() {
        match entry {
            p12_keystore::KeyStoreEntry::PrivateKeyChain(pkc) => {
                let chain: Vec<CertificateDer<'static>> =
                    pkc.chain().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
                if chain.is_empty() {
                    continue;
                }
                let key = PrivateKeyDer::try_from(pkc.key().to_vec())
                    .map_err(|e| cert_err(format!("PFX private key could not be read: {e}")))?;
                // The issuers in the chain are certificates of the store too (selectable by
                // subject or thumbprint, without a key).
                for i in 1..chain.len() {
                    extra.push(Candidate { chain: chain[i..].to_vec(), key: None });
                }
                out.push(Candidate { chain, key: Some(key) });
            }
            p12_keystore::KeyStoreEntry::Certificate(c) => {
                out.push(Candidate { chain: vec![CertificateDer::from(c.as_der().to_vec())], key: None })
            }
            _ => {}
        }
    }
    out.extend(extra);
    if out.is_empty() {
        return Err(cert_err(
            "the PFX store holds no certificate with a private key (certificates-only PFX stores are not \
             supported: use a PEM or DER public key store, types 8/9)",
        ));
    }
    // Entries with a key first: a server needs one.
    out.sort_by_key(|c| c.key.is_none());
    Ok(out)
}

fn select(candidates: Vec<Candidate>, subject: &str) -> Result<Certificate> {
    let subject = subject.trim();
    let mut parsed = Vec::new();
    for c in candidates {
        parsed.push(Certificate::from_der(c.chain, c.key)?);
    }
    if subject.is_empty() || subject == "*" {
        return Ok(parsed.swap_remove(0));
    }
    if let Some(tp) = subject.strip_prefix("Thumbprint=").or_else(|| subject.strip_prefix("thumbprint=")) {
        let want: String = tp.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_lowercase();
        return parsed
            .into_iter()
            .find(|c| c.sha1 == want || c.sha256 == want)
            .ok_or_else(|| cert_err(format!("no certificate with thumbprint {tp} in the store")));
    }
    if let Some(i) = parsed.iter().position(|c| c.subject.eq_ignore_ascii_case(subject)) {
        return Ok(parsed.swap_remove(i));
    }
    let lower = subject.to_ascii_lowercase();
    parsed
        .into_iter()
        .find(|c| c.subject.to_ascii_lowercase().contains(&lower))
        .ok_or_else(|| cert_err(format!("no certificate matching subject '{subject}' in the store")))
}

fn hex_lower(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn hex_upper(b: &[u8]) -> String {
    hex_lower(b).to_ascii_uppercase()
}

/// `23-Jan-2000 15:00:00` in UTC.
pub(crate) fn format_date(unix: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{:02}-{}-{} {:02}:{:02}:{:02}", d, MONTHS[(m - 1) as usize], y, secs / 3600, secs % 3600 / 60, secs % 60)
}

pub(crate) fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_formatted_like_the_reference() {
        assert_eq!(format_date(948_639_600), "23-Jan-2000 15:00:00");
        assert_eq!(format_date(0), "01-Jan-1970 00:00:00");
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert!(base64_decode(b"not*base64").is_none());
    }

    #[test]
    fn pem_store_with_key_and_chain_loads_and_selects() {
        let ck = rcgen::generate_simple_self_signed(vec!["server.test".into()]).unwrap();
        let pem = format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem());
        let c = Certificate::load(store_type::PEM_KEY_BLOB, pem.as_bytes(), "", "*").unwrap();
        assert!(c.private_key_available());
        assert!(c.subject().contains("rcgen"), "{}", c.subject());
        assert_eq!(c.thumbprint_sha256().len(), 64);
        let by_tp = format!("Thumbprint={}", c.thumbprint_sha1());
        assert!(Certificate::load(store_type::PEM_KEY_BLOB, pem.as_bytes(), "", &by_tp).is_ok());
        assert!(Certificate::load(store_type::PEM_KEY_BLOB, pem.as_bytes(), "", "CN=nobody").is_err());
        let auto = Certificate::load(store_type::AUTO, pem.as_bytes(), "", "rcgen").unwrap();
        assert_eq!(auto, c);
        let public = Certificate::load(store_type::PUBLIC_KEY_BLOB, ck.cert.der(), "", "*").unwrap();
        assert!(!public.private_key_available());
        assert_eq!(public.encoded(), c.encoded());
    }

    #[test]
    fn unsupported_store_types_say_why() {
        assert_eq!(Certificate::load(0, b"MY", "", "*").unwrap_err().code, code::NOT_SUPPORTED);
        assert_eq!(Certificate::load(4, b"x.jks", "", "*").unwrap_err().code, code::NOT_SUPPORTED);
        assert_eq!(Certificate::load(6, b"/nonexistent.pem", "", "*").unwrap_err().code, code::CANNOT_OPEN_FILE);
    }
}
