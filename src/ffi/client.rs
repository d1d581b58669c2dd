//! The client handle: a mechanical translation of [`crate::client::Client`].
//!
//! Threading: there is no client thread. I/O happens, and callbacks run, on the thread that
//! calls `mllp_client_connect`, `mllp_client_send`, `mllp_client_do_events` or
//! `mllp_client_disconnect`, inside that call, with no library lock held. From inside a
//! callback, `mllp_client_send_async`, properties and `mllp_client_config` work; the calls that
//! drive I/O (and `mllp_client_free`) return `MLLP_ERR_REENTRANT`.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};

use super::callbacks::{error, log, mllp_error_cb, mllp_log_cb, mllp_release_cb, mllp_status_cb, status, UserData};
use super::macros::{free_handle, ref_from_ptr, to_handle, Handle, Out};
use super::tls::{mllp_certificate, mllp_ssl_status_cb, mllp_ssl_status_event};
use super::{c_text, c_text_or_empty, fail, rc, MLLP_OK};
use crate::client::{AckInEvent, Client, ClientHandler, SendDoneEvent, SslServerAuthenticationEvent};
use crate::events::{ErrorEvent, LogEvent, SslStatusEvent, StatusEvent};

/// Ack kind (`mllp_send_result.ack_kind`, event `kind` fields): nothing expected or received.
pub const MLLP_ACK_NONE: c_int = -1;
/// Ack kind: the MLLP commit ACK byte (MSA-1 kinds are `MLLP_ACK_AA` 0 … `MLLP_ACK_CR` 5).
pub const MLLP_ACK_ACK: c_int = 6;
/// Ack kind: the MLLP commit NAK byte.
pub const MLLP_ACK_NAK: c_int = 7;

/// An MLLP client (sender). Create with `mllp_client_new`, destroy with `mllp_client_free`.
pub struct mllp_client {
    client: Client,
    callbacks: Mutex<ClientCallbacks>,
}

impl Handle for mllp_client {}

/// How a synchronous send ended (`mllp_client_send`).
#[repr(C)]
pub struct mllp_send_result {
    /// The message's id (as SendDone reports it).
    pub message_id: u64,
    /// The last acknowledgement's kind (`MLLP_ACK_*`), `MLLP_ACK_NONE` when none.
    pub ack_kind: c_int,
    /// Attempts made: 1 + resends (connect failures count).
    pub attempts: u32,
}

/// AckIn (client): an acknowledgement arrived.
#[repr(C)]
pub struct mllp_client_ack_in_event {
    /// The connection number (1 for the first connection, +1 per reconnect).
    pub connection_id: u64,
    /// The message it answered; 0 when it answered none (late, mismatched, unsolicited).
    pub message_id: u64,
    /// Its kind, `MLLP_ACK_AA` … `MLLP_ACK_NAK`.
    pub kind: c_int,
    /// MSA-2, NUL-terminated ("" for a commit ACK/NAK).
    pub control_id: *const c_char,
    /// MSA-3 and the ERR segments' text joined by "; ", NUL-terminated ("" when none).
    pub text: *const c_char,
    /// The acknowledgement as received, unframed (not NUL-terminated).
    pub data: *const u8,
    /// Length of `data`.
    pub len: usize,
    /// 1 when it answered an outstanding message, else 0.
    pub matched: u8,
}

/// Callback for the client's AckIn.
pub type mllp_client_ack_in_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_client_ack_in_event)>;

/// SendDone: a message is finished (acknowledged, refused after its retries, or failed).
#[repr(C)]
pub struct mllp_send_done_event {
    /// The connection number it ended on (0 when not connected).
    pub connection_id: u64,
    /// The id `mllp_client_send_async` (or `mllp_send_result`) gave it.
    pub message_id: u64,
    /// Its MSH-10, NUL-terminated ("" when it has none).
    pub control_id: *const c_char,
    /// 0 when positively acknowledged (or written, with AckMode None); else the error code
    /// (670, 2040, 2041, 2042, 1120, socket errors, 2021, 2023 …).
    pub result_code: c_int,
    /// "OK" or the reason, NUL-terminated.
    pub description: *const c_char,
    /// The last acknowledgement's kind, `MLLP_ACK_NONE` when none.
    pub ack_kind: c_int,
    /// Attempts made: 1 + resends.
    pub attempts: u32,
}

/// Callback for SendDone.
pub type mllp_send_done_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_send_done_event)>;

/// SSLServerAuthentication: the server's certificate and the verification result.
#[repr(C)]
pub struct mllp_ssl_server_authentication_event {
    /// The connection number.
    pub connection_id: u64,
    /// The server's certificate, DER (with SSLIncludeCertChain=True the whole chain, leaf
    /// first, concatenated).
    pub cert_encoded: *const u8,
    /// Length of `cert_encoded`.
    pub cert_encoded_len: usize,
    /// The leaf's subject DN, NUL-terminated.
    pub cert_subject: *const c_char,
    /// The leaf's issuer DN, NUL-terminated.
    pub cert_issuer: *const c_char,
    /// "OK", or why verification failed (unknown issuer, name mismatch, expired, revoked),
    /// NUL-terminated.
    pub status: *const c_char,
    /// Read-write: 1 continues the handshake, 0 refuses the server (`MLLP_ERR_TLS_SERVER_REJECTED`).
    /// Starts as the verification result; the host may override it either way.
    pub accept: u8,
}

/// Callback for SSLServerAuthentication.
pub type mllp_ssl_server_authentication_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, event: *mut mllp_ssl_server_authentication_event)>;

/// The C callbacks registered on a client.
#[derive(Clone, Default)]
struct ClientCallbacks {
    user: Option<Arc<UserData>>,
    connected: mllp_status_cb,
    disconnected: mllp_status_cb,
    ack_in: mllp_client_ack_in_cb,
    send_done: mllp_send_done_cb,
    error: mllp_error_cb,
    log: mllp_log_cb,
    ssl_server_authentication: mllp_ssl_server_authentication_cb,
    ssl_status: mllp_ssl_status_cb,
}

impl ClientCallbacks {
    fn user(&self) -> *mut c_void {
        self.user.as_ref().map_or(std::ptr::null_mut(), |u| u.ptr)
    }
}

fn kind_c(k: Option<crate::client::AckKind>) -> c_int {
    k.map_or(MLLP_ACK_NONE, |k| k.to_c())
}

impl ClientHandler for ClientCallbacks {
    fn connected(&self, e: &StatusEvent<'_>) {
        status(self.connected, self.user(), e);
    }

    fn disconnected(&self, e: &StatusEvent<'_>) {
        status(self.disconnected, self.user(), e);
    }

    fn ack_in(&self, e: &AckInEvent<'_>) {
        let Some(f) = self.ack_in else { return };
        let (id, text) = (c_text_or_empty(e.control_id), c_text_or_empty(e.text));
        let ev = mllp_client_ack_in_event {
            connection_id: e.connection_id.raw(),
            message_id: e.message_id.unwrap_or(0),
            kind: e.kind.to_c(),
            control_id: id.as_ptr(),
            text: text.as_ptr(),
            data: e.data.as_ptr(),
            len: e.data.len(),
            matched: e.message_id.is_some() as u8,
        };
        // SAFETY: a host callback; the event and its data are valid for the call.
        unsafe { f(self.user(), &ev) };
    }

    fn send_done(&self, e: &SendDoneEvent<'_>) {
        let Some(f) = self.send_done else { return };
        let (result_code, description) = match e.result {
            Ok(()) => (MLLP_OK, c_text("OK")),
            Err(err) => (err.code, c_text(&err.message)),
        };
        let id = c_text_or_empty(e.control_id);
        let ev = mllp_send_done_event {
            connection_id: e.connection_id.raw(),
            message_id: e.message_id,
            control_id: id.as_ptr(),
            result_code,
            description: description.as_ptr(),
            ack_kind: kind_c(e.ack),
            attempts: e.attempts,
        };
        // SAFETY: a host callback; the event and its strings are valid for the call.
        unsafe { f(self.user(), &ev) };
    }

    fn error(&self, e: &ErrorEvent<'_>) {
        error(self.error, self.user(), e);
    }

    fn log(&self, e: &LogEvent<'_>) {
        log(self.log, self.user(), e);
    }

    fn ssl_server_authentication(&self, e: &mut SslServerAuthenticationEvent<'_, '_>) {
        let Some(f) = self.ssl_server_authentication else { return };
        let der: Vec<u8> = if e.include_chain {
            e.auth.chain.iter().flat_map(|c| c.as_ref().iter().copied()).collect()
        } else {
            e.auth.chain.first().map(|c| c.as_ref().to_vec()).unwrap_or_default()
        };
        let (subject, issuer, status) = (c_text(&e.auth.subject), c_text(&e.auth.issuer), c_text(&e.auth.status));
        let mut ev = mllp_ssl_server_authentication_event {
            connection_id: e.connection_id.raw(),
            cert_encoded: der.as_ptr(),
            cert_encoded_len: der.len(),
            cert_subject: subject.as_ptr(),
            cert_issuer: issuer.as_ptr(),
            status: status.as_ptr(),
            accept: e.auth.accept as u8,
        };
        // SAFETY: a host callback; the event and its data are valid for the call.
        unsafe { f(self.user(), &mut ev) };
        e.auth.accept = ev.accept != 0;
    }

    fn ssl_status(&self, e: &SslStatusEvent<'_>) {
        let Some(f) = self.ssl_status else { return };
        let m = c_text(e.message);
        let ev = mllp_ssl_status_event { connection_id: e.connection_id.raw(), message: m.as_ptr() };
        // SAFETY: a host callback; the event and its string are valid for the call.
        unsafe { f(self.user(), &ev) };
    }
}

/// Updates the registered callbacks and installs them as the client's handler.
fn update(c: &mllp_client, f: impl FnOnce(&mut ClientCallbacks)) -> c_int {
    let mut cbs = c.callbacks.lock().unwrap_or_else(|e| e.into_inner());
    let old = cbs.clone();
    f(&mut cbs);
    c.client.set_handler(Arc::new(cbs.clone()));
    drop(cbs);
    // A replaced user pointer is released here, outside the lock (its release runs host code).
    drop(old);
    MLLP_OK
}

/// Creates a client with default settings (RemoteHost 127.0.0.1, Version 2, Timeout 10 s,
/// MaxRetries 3), not connected. Returns NULL only if the system refuses an event queue
/// (see `mllp_last_error_message`). Free it with `mllp_client_free`. Any thread.
#[no_mangle]
pub extern "C" fn mllp_client_new() -> *mut mllp_client {
    ffi_panic_boundary! {
        match Client::new() {
            Ok(client) => to_handle(mllp_client { client, callbacks: Mutex::new(ClientCallbacks::default()) }),
            Err(e) => {
                fail(e);
                std::ptr::null_mut()
            }
        }
    }
}

/// Closes the connection (Disconnected) and ends every message not yet finished with a
/// SendDone event carrying `MLLP_ERR_INTERRUPTED`, on the calling thread before it returns
/// (from those callbacks, calls that drive I/O return `MLLP_ERR_REENTRANT`); then releases the
/// user pointer and frees the handle. NULL is accepted (returns `MLLP_OK`).
/// Returns `MLLP_ERR_REENTRANT` and frees nothing when called from one of this client's
/// callbacks. After `MLLP_OK` the handle is invalid; no other call on it may be in progress or
/// follow.
#[no_mangle]
pub extern "C" fn mllp_client_free(client: *mut mllp_client) -> c_int {
    ffi_panic_boundary! {
        let Some(c) = ref_from_ptr(client) else {
            return MLLP_OK;
        };
        // Unfinished messages get their SendDone while the handle is still whole; from one of
        // this client's callbacks this is REENTRANT and nothing is freed.
        try_mllp!(c.client.close());
        // SAFETY: the handle came from mllp_client_new, no callback of it is running on this
        // thread, and the caller gives it up (no other call may be in progress or follow).
        unsafe { free_handle(client) };
        MLLP_OK
    }
}

/// Sets the user pointer passed to every callback of this client. `release`, if not NULL, is
/// called exactly once with `user`: when another user pointer replaces it or the client is
/// freed. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when `client` is NULL (then
/// `release` is not called).
#[no_mangle]
pub extern "C" fn mllp_client_set_user_data(
    client: *mut mllp_client,
    user: *mut c_void,
    release: mllp_release_cb,
) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.user = Some(Arc::new(UserData { ptr: user, release })))
    }
}

/// RemoteHost: the server's name or address, under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_client_get_remote_host(client: *const mllp_client, buf: *mut c_char, len: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_buf!(buf, len);
        out.put_str(&c.settings().remote_host)
    }
}

/// Sets RemoteHost (a name or an IP address; default "127.0.0.1"); used at the next connect.
#[no_mangle]
pub extern "C" fn mllp_client_set_remote_host(client: *mut mllp_client, host: *const c_char) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let host = try_str!(host).trim().to_string();
        rc(c.update(|s| {
            s.remote_host = host;
            Ok(())
        }))
    }
}

/// RemotePort: the server's port (0 until set).
#[no_mangle]
pub extern "C" fn mllp_client_get_remote_port(client: *const mllp_client, out: *mut u16) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.settings().remote_port)
    }
}

/// Sets RemotePort; used at the next connect.
#[no_mangle]
pub extern "C" fn mllp_client_set_remote_port(client: *mut mllp_client, port: u16) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        rc(c.update(|s| {
            s.remote_port = port;
            Ok(())
        }))
    }
}

/// LocalHost: the local address connections are made from ("" = any), under the buffer rule.
#[no_mangle]
pub extern "C" fn mllp_client_get_local_host(client: *const mllp_client, buf: *mut c_char, len: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_buf!(buf, len);
        out.put_str(&c.settings().local_host)
    }
}

/// Sets LocalHost; used at the next connect.
#[no_mangle]
pub extern "C" fn mllp_client_set_local_host(client: *mut mllp_client, host: *const c_char) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let host = try_str!(host).trim().to_string();
        rc(c.update(|s| {
            s.local_host = host;
            Ok(())
        }))
    }
}

/// Version: the MLLP version, 1 or 2 (default 2).
#[no_mangle]
pub extern "C" fn mllp_client_get_version(client: *const mllp_client, out: *mut c_int) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.settings().version as c_int)
    }
}

/// Sets Version (1 or 2, else `MLLP_ERR_INVALID_VALUE`). Without an AckMode setting, version 2
/// expects the commit block and version 1 nothing.
#[no_mangle]
pub extern "C" fn mllp_client_set_version(client: *mut mllp_client, version: c_int) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        rc(c.config(&format!("Version={version}")))
    }
}

/// Timeout, seconds: bounds connecting, the TLS handshake and each attempt's wait for its
/// acknowledgement (default 10; 0 = no limit).
#[no_mangle]
pub extern "C" fn mllp_client_get_timeout(client: *const mllp_client, out: *mut u32) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.settings().timeout)
    }
}

/// Sets Timeout (seconds).
#[no_mangle]
pub extern "C" fn mllp_client_set_timeout(client: *mut mllp_client, seconds: u32) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        rc(c.update(|s| {
            s.timeout = seconds;
            Ok(())
        }))
    }
}

/// KeepAlive: writes 1 when SO_KEEPALIVE is set on the connection.
#[no_mangle]
pub extern "C" fn mllp_client_get_keep_alive(client: *const mllp_client, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.settings().keep_alive as u8)
    }
}

/// Sets KeepAlive (0 or 1); used at the next connect.
#[no_mangle]
pub extern "C" fn mllp_client_set_keep_alive(client: *mut mllp_client, on: u8) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        rc(c.update(|s| {
            s.keep_alive = on != 0;
            Ok(())
        }))
    }
}

/// Connected: writes 1 while the connection is open.
#[no_mangle]
pub extern "C" fn mllp_client_get_connected(client: *const mllp_client, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.connected() as u8)
    }
}

/// SSLEnabled: writes 1 when connections use TLS.
#[no_mangle]
pub extern "C" fn mllp_client_get_ssl_enabled(client: *const mllp_client, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.settings().tls.enabled as u8)
    }
}

/// Sets SSLEnabled (0 or 1); used at the next connect. The server's certificate is verified
/// against SSLServerCACerts and SSLAcceptServerCertStore, or the system's CAs when neither is
/// set, and against SSLServerName (default RemoteHost).
#[no_mangle]
pub extern "C" fn mllp_client_set_ssl_enabled(client: *mut mllp_client, on: u8) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        rc(c.update(|s| {
            s.tls.enabled = on != 0;
            Ok(())
        }))
    }
}

/// Sets SSLCert: the client certificate presented for mutual TLS (NULL clears it). The client
/// keeps its own reference; the caller still frees its handle.
#[no_mangle]
pub extern "C" fn mllp_client_set_ssl_cert(client: *mut mllp_client, cert: *const mllp_certificate) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        c.set_ssl_cert(ref_from_ptr(cert).map(|cert| cert.cert.clone()));
        MLLP_OK
    }
}

/// Messages queued or awaiting their acknowledgement.
#[no_mangle]
pub extern "C" fn mllp_client_get_pending(client: *const mllp_client, out: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let out = try_out!(out);
        out.set(c.pending())
    }
}

/// Config: `"Name=Value"` sets a setting (`buf`, `len` ignored, may be NULL); `"Name"` reads one
/// under the buffer rule. Case-insensitive names; `MLLP_ERR_UNKNOWN_SETTING`,
/// `MLLP_ERR_NOT_SUPPORTED`, `MLLP_ERR_INVALID_VALUE` as for the server. Any thread, also
/// inside callbacks.
///
/// Sending: `AckMode=MLLP|HL7|None` (default from Version: 2 → MLLP, 1 → None; HL7 matches
/// MSA-2 with MSH-10), `MaxRetries` (3: resends after the first attempt), `RetryDelay` (500 ms,
/// doubling per resend), `RetryMaxDelay` (8000 ms), `RetryOnNegative` (True: NAK/AE/AR/CE/CR
/// are resent like timeouts), `MaxOutstanding` (1: messages awaiting an acknowledgement at
/// once), `MaxMessageSize` (largest acknowledgement), `PendingCount` (read-only), the framing
/// characters, `LogLevel`. Connection: `RemoteHost`, `RemotePort`, `LocalHost`, `LocalPort`,
/// `Timeout`, `TCPKeepAlive`, `KeepAliveTime`, `KeepAliveInterval`, `TcpNoDelay`,
/// `InBufferSize`, `OutBufferSize`, `Linger`, `LingerTime`. TLS: `SSLEnabled`,
/// `SSLServerCACerts` (PEM text), `SSLAcceptServerCertStore` (PEM file of trusted CAs),
/// `SSLServerName`, `SSLCheckCRL` (0/1/2) with `SSLCRLFile`, `SSLIncludeCertChain`,
/// `SSLEnabledProtocols`, `SSLEnabledCipherSuites`, `SSLKeyLogFile`, `ReuseSSLSession`,
/// `LogSSLPackets`, `SSLNegotiated*` (read-only).
#[no_mangle]
pub extern "C" fn mllp_client_config(
    client: *mut mllp_client,
    setting: *const c_char,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let setting = try_str!(setting);
        if setting.contains('=') {
            return rc(c.config(setting));
        }
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(c.config(setting)))
    }
}

/// Connect: opens the connection (TLS handshake included) on the calling thread, bounded by
/// Timeout; Connected fires before it returns. `MLLP_OK` when already connected. Errors:
/// socket codes (10061 refused, 10060 timed out, 11001 unknown host), `MLLP_ERR_TLS_HANDSHAKE`,
/// `MLLP_ERR_TLS_SERVER_REJECTED`, `MLLP_ERR_CERTIFICATE`, `MLLP_ERR_REENTRANT` from a callback.
#[no_mangle]
pub extern "C" fn mllp_client_connect(client: *mut mllp_client) -> c_int {
    ffi_panic_boundary! {
        rc(try_ref_from_ptr!(client).client.connect())
    }
}

/// Disconnect: closes the connection (Disconnected fires before it returns). Messages awaiting
/// an acknowledgement stay queued, their attempt counted as failed, and are sent again on the
/// next connection. `MLLP_ERR_REENTRANT` from a callback.
#[no_mangle]
pub extern "C" fn mllp_client_disconnect(client: *mut mllp_client) -> c_int {
    ffi_panic_boundary! {
        rc(try_ref_from_ptr!(client).client.disconnect())
    }
}

/// Send: sends `len` bytes at `data` (copied; one HL7 message, segments ending in CR) and
/// waits, driving I/O and delivering events on the calling thread, until it is finished.
/// Connects when needed. Returns `MLLP_OK` once positively acknowledged (ACK, AA, CA; with
/// AckMode None, once written), else the last failure after the retries: 670 (NAK), 2041
/// (AE/CE), 2042 (AR/CR), 2040 (no acknowledgement in time), 1120 (connection lost), socket or
/// TLS codes. `result` (may be NULL) is written for every outcome once the message was
/// accepted for sending, also when the code is an error; not for argument errors
/// (`MLLP_ERR_INVALID_ARGUMENT`: empty, holding a framing byte, no MSH-10 with AckMode HL7) or
/// `MLLP_ERR_REENTRANT` (from a callback).
#[no_mangle]
pub extern "C" fn mllp_client_send(
    client: *mut mllp_client,
    data: *const u8,
    len: usize,
    result: *mut mllp_send_result,
) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let data = try_slice!(data, len);
        let (r, o) = c.send_outcome(data);
        if let (Some(o), Some(out)) = (o, Out::new(result)) {
            out.set(mllp_send_result { message_id: o.message_id, ack_kind: kind_c(o.ack), attempts: o.attempts });
        }
        rc(r)
    }
}

/// SendAsync: queues a message (copied) and returns at once, writing its id to `*message_id`
/// (may be NULL). It is sent, and its SendDone event delivered, inside
/// `mllp_client_do_events` (or a later blocking call). Allowed inside callbacks. Errors as
/// `mllp_client_send`'s argument errors.
#[no_mangle]
pub extern "C" fn mllp_client_send_async(
    client: *mut mllp_client,
    data: *const u8,
    len: usize,
    message_id: *mut u64,
) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let data = try_slice!(data, len);
        let id = try_mllp!(c.send_async(data));
        if let Some(out) = Out::new(message_id) {
            out.set(id);
        }
        MLLP_OK
    }
}

/// DoEvents: drives I/O and delivers events on the calling thread until nothing is queued or
/// in flight, or `timeout_ms` passed; writes the messages still pending to `*pending` (may be
/// NULL). `MLLP_ERR_REENTRANT` from a callback.
#[no_mangle]
pub extern "C" fn mllp_client_do_events(client: *mut mllp_client, timeout_ms: u32, pending: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let c = &try_ref_from_ptr!(client).client;
        let n = try_mllp!(c.do_events(timeout_ms));
        if let Some(out) = Out::new(pending) {
            out.set(n);
        }
        MLLP_OK
    }
}

/// Registers the Connected callback (NULL removes it). Returns `MLLP_OK`, or
/// `MLLP_ERR_INVALID_ARGUMENT` when `client` is NULL.
#[no_mangle]
pub extern "C" fn mllp_client_on_connected(client: *mut mllp_client, cb: mllp_status_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.connected = cb)
    }
}

/// Registers the Disconnected callback (status_code 0 when the host disconnected, else why).
#[no_mangle]
pub extern "C" fn mllp_client_on_disconnected(client: *mut mllp_client, cb: mllp_status_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.disconnected = cb)
    }
}

/// Registers the AckIn callback: every acknowledgement received, matched or not.
#[no_mangle]
pub extern "C" fn mllp_client_on_ack_in(client: *mut mllp_client, cb: mllp_client_ack_in_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.ack_in = cb)
    }
}

/// Registers the SendDone callback: one per message, synchronous or not.
#[no_mangle]
pub extern "C" fn mllp_client_on_send_done(client: *mut mllp_client, cb: mllp_send_done_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.send_done = cb)
    }
}

/// Registers the Error callback (a mismatched acknowledgement, 2043; a frame that is not an
/// acknowledgement, 671; a failed connect …).
#[no_mangle]
pub extern "C" fn mllp_client_on_error(client: *mut mllp_client, cb: mllp_error_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.error = cb)
    }
}

/// Registers the Log callback (LogLevel: 1 connections and retries, 2 every message).
#[no_mangle]
pub extern "C" fn mllp_client_on_log(client: *mut mllp_client, cb: mllp_log_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.log = cb)
    }
}

/// Registers the SSLServerAuthentication callback (set `event->accept` to override the
/// verification result). It runs inside the TLS handshake, on the connecting thread.
#[no_mangle]
pub extern "C" fn mllp_client_on_ssl_server_authentication(
    client: *mut mllp_client,
    cb: mllp_ssl_server_authentication_cb,
) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.ssl_server_authentication = cb)
    }
}

/// Registers the SSLStatus callback (the negotiated protocol and suite once connected).
#[no_mangle]
pub extern "C" fn mllp_client_on_ssl_status(client: *mut mllp_client, cb: mllp_ssl_status_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(client), |c| c.ssl_status = cb)
    }
}
