//! Certificate revocation lists: the one loader behind the client's SSLCRLFile and the
//! server's SSLClientCRLs, and the words a verification failure is reported in.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::CertificateError;

use crate::error::{code, Error, Result};

/// A parsed CRL, owned.
pub(crate) type Crl = CertificateRevocationListDer<'static>;

fn crl_err(msg: String) -> Error {
    Error::new(code::CERTIFICATE, msg)
}

/// Reads a CRL file (PEM or DER, see [`parse`]). `what` names the setting in messages.
pub(crate) fn load_file(path: &str, what: &str) -> Result<Vec<Crl>> {
    let what = format!("{what} '{path}'");
    let data = std::fs::read(path).map_err(|e| crl_err(format!("{what}: {e}")))?;
    parse(&data, &what)
}

/// Reads a CRL setting value, told apart as the certificate store types are: text holding
/// `-----BEGIN` is PEM data; otherwise the path of an existing file (PEM or DER); otherwise
/// base64 of DER data. "" gives no CRL.
pub(crate) fn load_value(value: &str, what: &str) -> Result<Vec<Crl>> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    if value.contains("-----BEGIN") {
        return parse(value.as_bytes(), what);
    }
    let v = value.trim();
    if std::path::Path::new(v).is_file() {
        return load_file(v, what);
    }
    match super::cert::base64_decode(v.as_bytes()) {
        Some(der) if der.first() == Some(&0x30) => parse(&der, what),
        _ => {
            Err(crl_err(format!("{what}: '{v}' is neither PEM CRL data, nor a readable file, nor base64 DER CRL data")))
        }
    }
}

/// CRL data: PEM (any number of `X509 CRL` blocks) or DER (one or more, back to back). Each
/// CRL is checked to parse, so a bad one is refused when it is set, not at a handshake.
pub(crate) fn parse(data: &[u8], what: &str) -> Result<Vec<Crl>> {
    let crls: Vec<Crl> = if data.windows(10).any(|w| w == b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(data)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| crl_err(format!("{what}: bad PEM CRL: {e:?}")))?
    } else {
        split_der(data).ok_or_else(|| crl_err(format!("{what}: neither PEM nor DER CRLs")))?
    };
    if crls.is_empty() {
        return Err(crl_err(format!("{what}: no CRL found")));
    }
    for c in &crls {
        x509_parser::parse_x509_crl(c.as_ref())
            .map_err(|e| crl_err(format!("{what}: a CRL could not be parsed: {e}")))?;
    }
    Ok(crls)
}

/// The CRLs whose nextUpdate is before `now` (Unix seconds), described: "<issuer> (nextUpdate
/// <date>)".
pub(crate) fn expired(crls: &[Crl], now: i64) -> Vec<String> {
    crls.iter()
        .filter_map(|c| {
            let (_, x) = x509_parser::parse_x509_crl(c.as_ref()).ok()?;
            let next = x.next_update()?;
            (next.timestamp() < now).then(|| format!("{} (nextUpdate {next})", x.issuer()))
        })
        .collect()
}

/// Splits concatenated DER SEQUENCEs; `None` unless the data is exactly that.
fn split_der(mut data: &[u8]) -> Option<Vec<Crl>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 2 || data[0] != 0x30 {
            return None;
        }
        let (len, head) = match data[1] {
            n if n < 0x80 => (n as usize, 2),
            n @ 0x81..=0x84 => {
                let k = (n & 0x7f) as usize;
                let bytes = data.get(2..2 + k)?;
                (bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize), 2 + k)
            }
            _ => return None,
        };
        let end = head.checked_add(len).filter(|e| *e <= data.len())?;
        out.push(CertificateRevocationListDer::from(data[..end].to_vec()));
        data = &data[end..];
    }
    Some(out)
}

/// A certificate verification failure in words; `crl_setting` names where CRLs come from.
pub(crate) fn describe(e: &rustls::Error, crl_setting: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "unknown issuer: no trusted CA issued this certificate".into(),
            CertificateError::Revoked => "certificate revoked".into(),
            CertificateError::UnknownRevocationStatus => {
                format!("revocation status unknown: no CRL in {crl_setting} covers this certificate")
            }
            CertificateError::ExpiredRevocationList | CertificateError::ExpiredRevocationListContext { .. } => {
                format!("certificate revocation list expired: a CRL in {crl_setting} is past its nextUpdate")
            }
            CertificateError::BadSignature => "bad signature on the certificate".into(),
            CertificateError::NotValidForName => "certificate not valid for the server name".into(),
            c => c.to_string(),
        },
        e => e.to_string(),
    }
}
