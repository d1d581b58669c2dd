//! TLS: certificates (the reference's Certificate type), the SSL properties, the SSL events
//! and the negotiated parameters of a connection.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::callbacks::{update, Callbacks};
use super::macros::{free_handle, ref_from_ptr, to_handle, Handle};
use super::server::mllp_server;
use super::{c_text as text, fail_with, rc, MLLP_OK};
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
    pub(crate) cert: Arc<Certificate>,
}

impl Handle for mllp_certificate {}

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
        // The host set NULL or a handle from mllp_certificate_load, alive during the callback.
        if let Some(c) = ref_from_ptr(ev.certificate) {
            e.certificate = Some(c.cert.clone());
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
    ffi_panic_boundary! {
        let out = try_out!(out);
        let store = try_slice!(store, store_len);
        let password = try_opt_str!(password).unwrap_or("");
        let subject = try_opt_str!(subject).unwrap_or("*");
        let cert = try_mllp!(Certificate::load(store_type, store, password, subject));
        out.set(to_handle(mllp_certificate { cert: Arc::new(cert) }))
    }
}

/// Frees a certificate handle. NULL is accepted. A server that was given the certificate
/// keeps its own reference.
#[no_mangle]
pub extern "C" fn mllp_certificate_free(cert: *mut mllp_certificate) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a handle from mllp_certificate_load / mllp_server_get_ssl_cert that
        // the caller gives up here.
        unsafe { free_handle(cert) }
    }
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
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(cert).cert;
        let out = try_buf!(buf, len);
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
        out.put_str(&v)
    }
}

/// The certificate's DER encoding (Encoded / EncodedB) under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_certificate_get_encoded(cert: *const mllp_certificate, buf: *mut u8, len: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(cert).cert;
        let out = try_buf!(buf, len);
        out.put_slice(c.encoded())
    }
}

/// PrivateKeyAvailable: writes 1 when the store held the certificate's private key.
#[no_mangle]
pub extern "C" fn mllp_certificate_get_private_key_available(cert: *const mllp_certificate, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(cert).cert;
        let out = try_out!(out);
        out.set(c.private_key_available() as u8)
    }
}

/// Sets SSLCert (NULL clears it). The server keeps its own reference; the caller still frees
/// its handle. Not listening: checked at the next StartListening (no key, key mismatch,
/// expired → error there). While listening with TLS: checked now, and a bad certificate (or
/// NULL) returns `MLLP_ERR_CERTIFICATE` (2020) with the old certificate still in use; on
/// `MLLP_OK`, connections accepted from then on get the new certificate, established ones
/// continue unaffected. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_ssl_cert(server: *mut mllp_server, cert: *const mllp_certificate) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        // Optional: NULL clears SSLCert.
        rc(s.set_ssl_cert(ref_from_ptr(cert).map(|c| c.cert.clone())))
    }
}

/// SSLCert: writes a new handle to `*out` (free it with `mllp_certificate_free`), or NULL when
/// none is set.
#[no_mangle]
pub extern "C" fn mllp_server_get_ssl_cert(server: *const mllp_server, out: *mut *mut mllp_certificate) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.ssl_cert().map_or(std::ptr::null_mut(), |cert| to_handle(mllp_certificate { cert })))
    }
}

/// SSLEnabled: writes 1 when TLS is enabled.
#[no_mangle]
pub extern "C" fn mllp_server_get_ssl_enabled(server: *const mllp_server, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.ssl_enabled() as u8)
    }
}

/// Sets SSLEnabled (0 or 1); takes effect at the next StartListening.
#[no_mangle]
pub extern "C" fn mllp_server_set_ssl_enabled(server: *mut mllp_server, enabled: u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        s.set_ssl_enabled(enabled != 0);
        MLLP_OK
    }
}

/// SSLAuthenticateClients: writes 1 when clients are asked for a certificate.
#[no_mangle]
pub extern "C" fn mllp_server_get_ssl_authenticate_clients(server: *const mllp_server, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.ssl_authenticate_clients() as u8)
    }
}

/// Sets SSLAuthenticateClients (0 or 1). While listening with TLS it applies to connections
/// accepted from then on (the TLS configuration is rebuilt; `MLLP_ERR_CERTIFICATE` if that
/// fails, nothing changed); otherwise at the next StartListening.
#[no_mangle]
pub extern "C" fn mllp_server_set_ssl_authenticate_clients(server: *mut mllp_server, on: u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.set_ssl_authenticate_clients(on != 0))
    }
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
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let name = try_str!(name);
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(s.ssl_negotiated(connection_id.into(), name)))
    }
}

/// Registers the SSLClientAuthentication callback (set `event->accept` to override the
/// verification result). Pass NULL to remove it. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_on_ssl_client_authentication(
    server: *mut mllp_server,
    cb: mllp_ssl_client_authentication_cb,
) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.ssl_client_authentication = cb)
    }
}

/// Registers the SSLConnectionRequest callback (set `event->certificate` to present another
/// certificate). Pass NULL to remove it. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_on_ssl_connection_request(
    server: *mut mllp_server,
    cb: mllp_ssl_connection_request_cb,
) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.ssl_connection_request = cb)
    }
}

/// Registers the SSLStatus callback. Pass NULL to remove it. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_on_ssl_status(server: *mut mllp_server, cb: mllp_ssl_status_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.ssl_status = cb)
    }
}
