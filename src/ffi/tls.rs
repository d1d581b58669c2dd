//! TLS: certificates (the reference's Certificate type), the SSL properties, the SSL events
//! and the negotiated parameters of a connection.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::callbacks::{update, Callbacks};
use super::server::{mllp_server, with};
use super::{bytes, cstr, fail, fail_with, guard, put, put_bytes, put_str, MLLP_OK};
use crate::error::code;
use crate::events::{SslClientAuthenticationEvent, SslConnectionRequestEvent, SslStatusEvent};
use crate::tls::Certificate;

/// Certificate store type: PFX (PKCS#12) file; the store is its path.
pub const MLLP_CERT_PFX_FILE: c_int = 2;
/// Certificate store type: PFX (PKCS#12) data (binary or base64).
pub const MLLP_CERT_PFX_BLOB: c_int = 3;
/// Certificate store type: PEM file with a private key and optional certificates; the store is its path.
pub const MLLP_CERT_PEM_KEY_FILE: c_int = 6;
/// Certificate store type: PEM data with a private key and optional certificates.
pub const MLLP_CERT_PEM_KEY_BLOB: c_int = 7;
/// Certificate store type: file with a PEM or DER public certificate; the store is its path.
pub const MLLP_CERT_PUBLIC_KEY_FILE: c_int = 8;
/// Certificate store type: PEM or DER public certificate data.
pub const MLLP_CERT_PUBLIC_KEY_BLOB: c_int = 9;
/// Certificate store type: detect the format (a path if such a file exists, else data).
pub const MLLP_CERT_AUTO: c_int = 99;

/// Certificate field: the subject DN (string).
pub const MLLP_CERT_FIELD_SUBJECT: c_int = 1;
/// Certificate field: the issuer DN (string).
pub const MLLP_CERT_FIELD_ISSUER: c_int = 2;
/// Certificate field: the serial number, hexadecimal (string).
pub const MLLP_CERT_FIELD_SERIAL_NUMBER: c_int = 3;
/// Certificate field: not valid before, `23-Jan-2000 15:00:00` UTC (string).
pub const MLLP_CERT_FIELD_EFFECTIVE_DATE: c_int = 4;
/// Certificate field: not valid after, same format (string).
pub const MLLP_CERT_FIELD_EXPIRATION_DATE: c_int = 5;
/// Certificate field: SHA-1 thumbprint, lowercase hex (string).
pub const MLLP_CERT_FIELD_THUMBPRINT_SHA1: c_int = 6;
/// Certificate field: SHA-256 thumbprint, lowercase hex (string).
pub const MLLP_CERT_FIELD_THUMBPRINT_SHA256: c_int = 7;

/// A certificate, possibly with its private key. Create with `mllp_certificate_load`,
/// destroy with `mllp_certificate_free`. Immutable, so it may be shared between threads.
pub struct mllp_certificate {
    cert: Arc<Certificate>,
}

/// SSLClientAuthentication: a TLS client presented its certificate (or none).
#[repr(C)]
pub struct mllp_ssl_client_authentication_event {
    /// The connection.
    pub connection_id: u64,
    /// The client's certificate, DER (NULL/0 when it sent none).
    pub cert_encoded: *const u8,
    /// Length of `cert_encoded`.
    pub cert_encoded_len: usize,
    /// The certificate's subject DN (NUL-terminated).
    pub cert_subject: *const c_char,
    /// The certificate's issuer DN (NUL-terminated).
    pub cert_issuer: *const c_char,
    /// "OK", or why verification against SSLClientCACerts failed (NUL-terminated).
    pub status: *const c_char,
    /// Read-write: 1 keeps the connection, 0 closes it. Starts as the verification result,
    /// a recommendation the host may override either way.
    pub accept: u8,
}

/// SSLConnectionRequest: a ClientHello arrived; set `certificate` to present another
/// certificate on this connection.
#[repr(C)]
pub struct mllp_ssl_connection_request_event {
    /// The connection.
    pub connection_id: u64,
    /// Comma-separated cipher suites the client supports (NUL-terminated).
    pub supported_cipher_suites: *const c_char,
    /// Comma-separated signature schemes the client supports (NUL-terminated).
    pub supported_signature_algs: *const c_char,
    /// Read-write: NULL presents SSLCert; a certificate handle presents that one. The handle
    /// must stay valid until the callback has returned (the library takes its own reference
    /// then; a garbage-collected binding must keep its certificate object alive past the end
    /// of the host's handler). The host may free its handle afterwards.
    pub certificate: *const mllp_certificate,
}

/// SSLStatus: progress of a secure connection.
#[repr(C)]
pub struct mllp_ssl_status_event {
    /// The connection.
    pub connection_id: u64,
    /// The text (NUL-terminated).
    pub message: *const c_char,
}

/// Callback for SSLClientAuthentication.
pub type mllp_ssl_client_authentication_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, event: *mut mllp_ssl_client_authentication_event)>;
/// Callback for SSLConnectionRequest.
pub type mllp_ssl_connection_request_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, event: *mut mllp_ssl_connection_request_event)>;
/// Callback for SSLStatus.
pub type mllp_ssl_status_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_ssl_status_event)>;

fn text(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s.replace('\0', " ")).unwrap_or_default()
}

impl Callbacks {
    pub(crate) fn ssl_client_authentication_impl(&self, e: &mut SslClientAuthenticationEvent<'_>) {
        let Some(f) = self.ssl_client_authentication else { return };
        let (s, i, st) = (text(e.cert_subject), text(e.cert_issuer), text(e.status));
        let mut ev = mllp_ssl_client_authentication_event {
            connection_id: e.connection_id.raw(),
            cert_encoded: if e.cert_encoded.is_empty() { std::ptr::null() } else { e.cert_encoded.as_ptr() },
            cert_encoded_len: e.cert_encoded.len(),
            cert_subject: s.as_ptr(),
            cert_issuer: i.as_ptr(),
            status: st.as_ptr(),
            accept: e.accept as u8,
        };
        // SAFETY: a host callback; the event and its strings are valid for the call.
        unsafe { f(self.user(), &mut ev) };
        e.accept = ev.accept != 0;
    }

    pub(crate) fn ssl_connection_request_impl(&self, e: &mut SslConnectionRequestEvent<'_>) {
        let Some(f) = self.ssl_connection_request else { return };
        let (suites, sigs) = (text(e.supported_cipher_suites), text(e.supported_signature_algs));
        let mut ev = mllp_ssl_connection_request_event {
            connection_id: e.connection_id.raw(),
            supported_cipher_suites: suites.as_ptr(),
            supported_signature_algs: sigs.as_ptr(),
            certificate: std::ptr::null(),
        };
        // SAFETY: a host callback; the event and its strings are valid for the call.
        unsafe { f(self.user(), &mut ev) };
        if !ev.certificate.is_null() {
            // SAFETY: the host set a handle from mllp_certificate_load, alive during the callback.
            e.certificate = Some(unsafe { &*ev.certificate }.cert.clone());
        }
    }

    pub(crate) fn ssl_status_impl(&self, e: &SslStatusEvent<'_>) {
        let Some(f) = self.ssl_status else { return };
        let m = text(e.message);
        let ev = mllp_ssl_status_event { connection_id: e.connection_id.raw(), message: m.as_ptr() };
        // SAFETY: a host callback; the event and its string are valid for the call.
        unsafe { f(self.user(), &ev) };
    }
}

/// Loads a certificate as the reference's `Certificate(storeType, store, storePassword,
/// subject)`: `store` is a path (for the *_FILE types; need not be NUL-terminated) or the data
/// (for the *_BLOB types), `store_len` bytes long. `password` (may be NULL = "") opens PFX
/// stores. `subject` (may be NULL = "*") selects the certificate: `*` the first, an exact or
/// substring match of the subject DN, or `Thumbprint=<hex SHA-1 or SHA-256>`. On success
/// writes a new handle to `*out` (free it with `mllp_certificate_free`). Errors:
/// `MLLP_ERR_CERTIFICATE` (wrong password, bad data, no match), `MLLP_ERR_CANNOT_OPEN_FILE`,
/// `MLLP_ERR_NOT_SUPPORTED` (Windows/Java store types), `MLLP_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn mllp_certificate_load(
    store_type: c_int,
    store: *const u8,
    store_len: usize,
    password: *const c_char,
    subject: *const c_char,
    out: *mut *mut mllp_certificate,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return fail_with(code::INVALID_ARGUMENT, "out is NULL");
        }
        let store = match bytes(store, store_len, "store") {
            Ok(s) => s,
            Err(rc) => return rc,
        };
        let password = if password.is_null() {
            ""
        } else {
            match cstr(password, "password") {
                Ok(p) => p,
                Err(rc) => return rc,
            }
        };
        let subject = if subject.is_null() {
            "*"
        } else {
            match cstr(subject, "subject") {
                Ok(p) => p,
                Err(rc) => return rc,
            }
        };
        match Certificate::load(store_type, store, password, subject) {
            Ok(c) => put(out, Box::into_raw(Box::new(mllp_certificate { cert: Arc::new(c) }))),
            Err(e) => fail(e),
        }
    })
}

/// Frees a certificate handle. NULL is accepted. A server that was given the certificate
/// keeps its own reference.
#[no_mangle]
pub extern "C" fn mllp_certificate_free(cert: *mut mllp_certificate) {
    if cert.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the handle came from Box::into_raw in this module and is not used again.
        drop(unsafe { Box::from_raw(cert) });
    });
}

fn cert_ref<'a>(p: *const mllp_certificate) -> Result<&'a Certificate, c_int> {
    if p.is_null() {
        return Err(fail_with(code::INVALID_ARGUMENT, "certificate is NULL"));
    }
    // SAFETY: non-NULL handles come from mllp_certificate_load and live until freed.
    Ok(&unsafe { &*p }.cert)
}

/// Reads a text field of a certificate (`MLLP_CERT_FIELD_*`) under the buffer rule.
/// `MLLP_ERR_INVALID_VALUE` for an unknown field.
#[no_mangle]
pub extern "C" fn mllp_certificate_get_field(
    cert: *const mllp_certificate,
    field: c_int,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let c = match cert_ref(cert) {
            Ok(c) => c,
            Err(rc) => return rc,
        };
        let v = match field {
            MLLP_CERT_FIELD_SUBJECT => c.subject().to_string(),
            MLLP_CERT_FIELD_ISSUER => c.issuer().to_string(),
            MLLP_CERT_FIELD_SERIAL_NUMBER => c.serial_number().to_string(),
            MLLP_CERT_FIELD_EFFECTIVE_DATE => c.effective_date(),
            MLLP_CERT_FIELD_EXPIRATION_DATE => c.expiration_date(),
            MLLP_CERT_FIELD_THUMBPRINT_SHA1 => c.thumbprint_sha1().to_string(),
            MLLP_CERT_FIELD_THUMBPRINT_SHA256 => c.thumbprint_sha256().to_string(),
            f => return fail_with(code::INVALID_VALUE, &format!("unknown certificate field {f}")),
        };
        put_str(&v, buf, len)
    })
}

/// The certificate's DER encoding (Encoded / EncodedB) under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_certificate_get_encoded(cert: *const mllp_certificate, buf: *mut u8, len: *mut usize) -> c_int {
    guard(|| match cert_ref(cert) {
        Ok(c) => put_bytes(c.encoded(), buf, len),
        Err(rc) => rc,
    })
}

/// PrivateKeyAvailable: writes 1 when the store held the certificate's private key.
#[no_mangle]
pub extern "C" fn mllp_certificate_get_private_key_available(cert: *const mllp_certificate, out: *mut u8) -> c_int {
    guard(|| match cert_ref(cert) {
        Ok(c) => put(out, c.private_key_available() as u8),
        Err(rc) => rc,
    })
}

/// Sets SSLCert (NULL clears it). The server keeps its own reference; the caller still frees
/// its handle. Checked at the next StartListening (no key, key mismatch, expired → error
/// there).
#[no_mangle]
pub extern "C" fn mllp_server_set_ssl_cert(server: *mut mllp_server, cert: *const mllp_certificate) -> c_int {
    with(server, |s| {
        // SAFETY: a non-NULL handle from mllp_certificate_load.
        let c = if cert.is_null() { None } else { Some(unsafe { &*cert }.cert.clone()) };
        s.set_ssl_cert(c);
        MLLP_OK
    })
}

/// SSLCert: writes a new handle to `*out` (free it with `mllp_certificate_free`), or NULL when
/// none is set.
#[no_mangle]
pub extern "C" fn mllp_server_get_ssl_cert(server: *const mllp_server, out: *mut *mut mllp_certificate) -> c_int {
    with(server, |s| {
        let v = s.ssl_cert().map_or(std::ptr::null_mut(), |cert| Box::into_raw(Box::new(mllp_certificate { cert })));
        if out.is_null() && !v.is_null() {
            // SAFETY: just created above, never shared.
            drop(unsafe { Box::from_raw(v) });
        }
        put(out, v)
    })
}

/// SSLEnabled: writes 1 when TLS is enabled.
#[no_mangle]
pub extern "C" fn mllp_server_get_ssl_enabled(server: *const mllp_server, out: *mut u8) -> c_int {
    with(server, |s| put(out, s.ssl_enabled() as u8))
}

/// Sets SSLEnabled (0 or 1); takes effect at the next StartListening.
#[no_mangle]
pub extern "C" fn mllp_server_set_ssl_enabled(server: *mut mllp_server, enabled: u8) -> c_int {
    with(server, |s| {
        s.set_ssl_enabled(enabled != 0);
        MLLP_OK
    })
}

/// SSLAuthenticateClients: writes 1 when clients are asked for a certificate.
#[no_mangle]
pub extern "C" fn mllp_server_get_ssl_authenticate_clients(server: *const mllp_server, out: *mut u8) -> c_int {
    with(server, |s| put(out, s.ssl_authenticate_clients() as u8))
}

/// Sets SSLAuthenticateClients (0 or 1); takes effect at the next StartListening.
#[no_mangle]
pub extern "C" fn mllp_server_set_ssl_authenticate_clients(server: *mut mllp_server, on: u8) -> c_int {
    with(server, |s| {
        s.set_ssl_authenticate_clients(on != 0);
        MLLP_OK
    })
}

/// A negotiated TLS value of a connection: `name` is SSLNegotiatedCipher,
/// SSLNegotiatedCipherStrength, SSLNegotiatedCipherSuite, SSLNegotiatedKeyExchange,
/// SSLNegotiatedKeyExchangeStrength or SSLNegotiatedVersion; "" before the handshake completes
/// or on a plain connection. Under the buffer rule. (Also readable as
/// `mllp_server_config(s, "SSLNegotiatedVersion[<id>]", …)`.)
#[no_mangle]
pub extern "C" fn mllp_connection_get_ssl_negotiated(
    server: *const mllp_server,
    connection_id: u64,
    name: *const c_char,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    with(server, |s| {
        let n = match cstr(name, "name") {
            Ok(n) => n,
            Err(rc) => return rc,
        };
        match s.ssl_negotiated(connection_id.into(), n) {
            Ok(v) => put_str(&v, buf, len),
            Err(e) => fail(e),
        }
    })
}

/// Registers the SSLClientAuthentication callback (set `event->accept` to override the
/// verification result). Pass NULL to remove it. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_on_ssl_client_authentication(
    server: *mut mllp_server,
    cb: mllp_ssl_client_authentication_cb,
) -> c_int {
    update(server, |c| c.ssl_client_authentication = cb)
}

/// Registers the SSLConnectionRequest callback (set `event->certificate` to present another
/// certificate). Pass NULL to remove it. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_on_ssl_connection_request(
    server: *mut mllp_server,
    cb: mllp_ssl_connection_request_cb,
) -> c_int {
    update(server, |c| c.ssl_connection_request = cb)
}

/// Registers the SSLStatus callback. Pass NULL to remove it. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_on_ssl_status(server: *mut mllp_server, cb: mllp_ssl_status_cb) -> c_int {
    update(server, |c| c.ssl_status = cb)
}
