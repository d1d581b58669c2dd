//! Event structs and callback registration.
//!
//! Every callback receives the server's user pointer first and a pointer to an event struct
//! that is valid only during the call. Fields marked read-write (`accept`, `reject_code`) are
//! read back when the callback returns.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};

use super::server::mllp_server;
use super::{c_text, c_text_or_empty, MLLP_OK};
use crate::events::{
    AckInEvent, AckOutEvent, ConnectionRequestEvent, DuplicateEvent, ErrorEvent, EventHandler, LogEvent, MessageEvent,
    StatusEvent, TransferBoundaryEvent, TransferEvent,
};
use crate::events::{RejectCode, Verdict};

/// HL7 reject code for `mllp_ack_out_event.reject_code`: MSA-1 `AE` (application error).
pub const MLLP_REJECT_AE: c_int = 1;
const _: () = assert!(MLLP_REJECT_AE == 1 && MLLP_REJECT_AR == 2);
/// HL7 reject code for `mllp_ack_out_event.reject_code`: MSA-1 `AR` (application reject).
pub const MLLP_REJECT_AR: c_int = 2;

/// ConnectionRequest: a client asks to connect.
#[repr(C)]
pub struct mllp_connection_request_event {
    /// The client's IP address (NUL-terminated).
    pub address: *const c_char,
    /// The client's port.
    pub port: u16,
    /// Read-write: 1 accepts the connection (the default), 0 refuses it.
    pub accept: u8,
}

/// Connected / Disconnected.
#[repr(C)]
pub struct mllp_status_event {
    /// The connection.
    pub connection_id: u64,
    /// 0 when normal, else the error code.
    pub status_code: c_int,
    /// "OK" or a description of the code (NUL-terminated).
    pub description: *const c_char,
}

/// HL7 acknowledgement code for `mllp_hl7_build_ack` and `mllp_server_send_app_ack`: MSA-1 `AA`.
pub const MLLP_ACK_AA: c_int = 0;
/// MSA-1 `AE` (the same number as `MLLP_REJECT_AE`).
pub const MLLP_ACK_AE: c_int = 1;
/// MSA-1 `AR` (the same number as `MLLP_REJECT_AR`).
pub const MLLP_ACK_AR: c_int = 2;
/// MSA-1 `CA` (enhanced mode: commit accept).
pub const MLLP_ACK_CA: c_int = 3;
/// MSA-1 `CE` (enhanced mode: commit error).
pub const MLLP_ACK_CE: c_int = 4;
/// MSA-1 `CR` (enhanced mode: commit reject).
pub const MLLP_ACK_CR: c_int = 5;
const _: () = assert!(MLLP_ACK_AE == MLLP_REJECT_AE && MLLP_ACK_AR == MLLP_REJECT_AR);

/// StartTransfer / EndTransfer.
#[repr(C)]
pub struct mllp_transfer_boundary_event {
    /// The connection.
    pub connection_id: u64,
    /// Sequence number of the message on its connection (1 for the first).
    pub message_seq: u64,
    /// MSH-18 as sent (every repetition), NUL-terminated ("" when empty).
    pub charset: *const c_char,
    /// The normalised character set name ("ASCII", "8859/1", "UNICODE UTF-8" …) of MSH-18's
    /// first repetition, else of the DefaultCharset setting; "" when neither names a known
    /// set. NUL-terminated.
    pub encoding: *const c_char,
}

/// Message: a received message, whole (after EndTransfer, before AckOut).
#[repr(C)]
pub struct mllp_message_event {
    /// The connection.
    pub connection_id: u64,
    /// Sequence number of the message on its connection.
    pub message_seq: u64,
    /// The whole message (not NUL-terminated; UTF-8 when `decoded`).
    pub data: *const u8,
    /// Length of `data`.
    pub len: usize,
    /// MSH-18 as sent, NUL-terminated ("" when empty).
    pub charset: *const c_char,
    /// The normalised character set name, NUL-terminated ("" when unknown).
    pub encoding: *const c_char,
    /// 1 when `data` was converted to UTF-8 (the DecodeToUTF8 setting), else 0.
    pub decoded: u8,
}

/// Duplicate: a resent message (the DuplicateWindow setting) was answered with its original's
/// acknowledgement and not delivered again.
#[repr(C)]
pub struct mllp_duplicate_event {
    /// The connection it arrived on.
    pub connection_id: u64,
    /// The message as received (not NUL-terminated).
    pub message: *const u8,
    /// Length of `message`.
    pub message_len: usize,
    /// Its MSH-10, NUL-terminated.
    pub control_id: *const c_char,
    /// The acknowledgement sent again (unframed; empty when the original got none).
    pub reply: *const u8,
    /// Length of `reply`.
    pub reply_len: usize,
}

/// Transfer: a piece of a received message.
#[repr(C)]
pub struct mllp_transfer_event {
    /// The connection.
    pub connection_id: u64,
    /// Bytes of this message delivered so far, including this piece.
    pub bytes_transferred: u64,
    /// The piece (not NUL-terminated; HL7 may be in any character set).
    pub data: *const u8,
    /// Length of `data`.
    pub len: usize,
}

/// AckOut: an acknowledgement is about to be sent for a received message.
#[repr(C)]
pub struct mllp_ack_out_event {
    /// The connection.
    pub connection_id: u64,
    /// Sequence number of the message.
    pub message_seq: u64,
    /// Read-write: 1 sends a positive acknowledgement (the default), 0 a negative one.
    pub accept: u8,
    /// Read-write: in HL7 ack mode, the MSA-1 code used when `accept` is 0:
    /// `MLLP_REJECT_AE` (the default) or `MLLP_REJECT_AR`.
    pub reject_code: c_int,
    /// The complete message being acknowledged.
    pub message: *const u8,
    /// Length of `message`.
    pub message_len: usize,
    /// Read-write: 1 leaves the decision open: nothing is sent for this message until the
    /// host calls `mllp_server_acknowledge(server, connection_id, message_seq, …)`, from any
    /// thread (for instance after a group commit). Replies still leave in message order.
    pub defer: u8,
    /// MSH-18 as sent, NUL-terminated ("" when empty).
    pub charset: *const c_char,
    /// The normalised character set name, NUL-terminated ("" when unknown).
    pub encoding: *const c_char,
    /// Read-write: NULL (the default) lets the library build the reply from `accept` and
    /// `reject_code`. Set it to send exactly `reply_len` bytes at `reply` as the
    /// acknowledgement instead (HL7 mode: an unframed HL7 ACK; MLLP mode: the ACK or NAK
    /// byte), e.g. the original acknowledgement of a message the host's store has seen
    /// before; zero bytes send nothing for this message. Copied when the callback returns, so
    /// the bytes must stay valid until then.
    pub reply: *const u8,
    /// Read-write: length of `reply`.
    pub reply_len: usize,
}

/// AckIn: a client acknowledged data the server sent.
#[repr(C)]
pub struct mllp_ack_in_event {
    /// The connection.
    pub connection_id: u64,
    /// 1 for ACK, 0 for NAK.
    pub accepted: u8,
}

/// Error: something went wrong on a connection (connection_id 0: on the server).
#[repr(C)]
pub struct mllp_error_event {
    /// The connection, or 0.
    pub connection_id: u64,
    /// The error code (670, 671, 672, socket errors …).
    pub error_code: c_int,
    /// A description (NUL-terminated).
    pub description: *const c_char,
}

/// Log: a log line.
#[repr(C)]
pub struct mllp_log_event {
    /// The connection, or 0.
    pub connection_id: u64,
    /// 1 Info, 2 Verbose, 3 Debug.
    pub log_level: c_int,
    /// The text (NUL-terminated).
    pub message: *const c_char,
    /// "INFO", "VERBOSE" or "DEBUG".
    pub log_type: *const c_char,
}

/// Callback for ConnectionRequest.
pub type mllp_connection_request_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, event: *mut mllp_connection_request_event)>;
/// Callback for Connected and Disconnected.
pub type mllp_status_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_status_event)>;
/// Callback for StartTransfer and EndTransfer.
pub type mllp_transfer_boundary_cb =
    Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_transfer_boundary_event)>;
/// Callback for Transfer.
pub type mllp_transfer_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_transfer_event)>;
/// Callback for Message.
pub type mllp_message_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_message_event)>;
/// Callback for Duplicate.
pub type mllp_duplicate_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_duplicate_event)>;
/// Callback for AckOut.
pub type mllp_ack_out_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *mut mllp_ack_out_event)>;
/// Callback for AckIn.
pub type mllp_ack_in_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_ack_in_event)>;
/// Callback for Error.
pub type mllp_error_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_error_event)>;
/// Callback for Log.
pub type mllp_log_cb = Option<unsafe extern "C" fn(user: *mut c_void, event: *const mllp_log_event)>;
/// Thread start/stop hook: runs on the reactor thread when it starts and before it ends.
pub type mllp_thread_cb = Option<unsafe extern "C" fn(user: *mut c_void)>;
/// Releases a user pointer handed to the library.
pub type mllp_release_cb = Option<unsafe extern "C" fn(user: *mut c_void)>;

/// The host's user pointer; its release callback runs exactly once, when the last handler
/// that could pass it to a callback is gone.
pub(crate) struct UserData {
    pub(crate) ptr: *mut c_void,
    pub(crate) release: mllp_release_cb,
}

// SAFETY: the pointer is only handed back to the host's callbacks, which the header documents
// as running on the reactor thread (or in do_events); the host owns its thread-safety.
unsafe impl Send for UserData {}
// SAFETY: as above; the library never dereferences the pointer.
unsafe impl Sync for UserData {}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(f) = self.release {
            // SAFETY: the host registered `release` for this pointer; it runs exactly once here.
            unsafe { f(self.ptr) };
        }
    }
}

/// The C callbacks registered on a server.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub user: Option<Arc<UserData>>,
    pub connection_request: mllp_connection_request_cb,
    pub connected: mllp_status_cb,
    pub disconnected: mllp_status_cb,
    pub start_transfer: mllp_transfer_boundary_cb,
    pub transfer: mllp_transfer_cb,
    pub end_transfer: mllp_transfer_boundary_cb,
    pub message: mllp_message_cb,
    pub duplicate: mllp_duplicate_cb,
    pub ack_out: mllp_ack_out_cb,
    pub ack_in: mllp_ack_in_cb,
    pub error: mllp_error_cb,
    pub log: mllp_log_cb,
    pub thread_start: mllp_thread_cb,
    pub thread_stop: mllp_thread_cb,
    pub ssl_client_authentication: super::tls::mllp_ssl_client_authentication_cb,
    pub ssl_connection_request: super::tls::mllp_ssl_connection_request_cb,
    pub ssl_status: super::tls::mllp_ssl_status_cb,
}

impl Callbacks {
    pub(crate) fn user(&self) -> *mut c_void {
        self.user.as_ref().map_or(std::ptr::null_mut(), |u| u.ptr)
    }
}

impl EventHandler for Callbacks {
    fn connection_request(&self, e: &mut ConnectionRequestEvent<'_>) {
        let Some(f) = self.connection_request else {
            return;
        };
        let addr = c_text(e.address);
        let mut ev = mllp_connection_request_event { address: addr.as_ptr(), port: e.port, accept: e.accept as u8 };
        // SAFETY: a host callback with its own user pointer and an event valid for the call.
        unsafe { f(self.user(), &mut ev) };
        e.accept = ev.accept != 0;
    }

    fn connected(&self, e: &StatusEvent<'_>) {
        status(self.connected, self.user(), e);
    }

    fn disconnected(&self, e: &StatusEvent<'_>) {
        status(self.disconnected, self.user(), e);
    }

    fn start_transfer(&self, e: &TransferBoundaryEvent) {
        boundary(self.start_transfer, self.user(), e);
    }

    fn transfer(&self, e: &TransferEvent<'_>) {
        let Some(f) = self.transfer else { return };
        let ev = mllp_transfer_event {
            connection_id: e.connection_id.raw(),
            bytes_transferred: e.bytes_transferred,
            data: e.data.as_ptr(),
            len: e.data.len(),
        };
        // SAFETY: a host callback; the event and its data are valid for the call.
        unsafe { f(self.user(), &ev) };
    }

    fn end_transfer(&self, e: &TransferBoundaryEvent) {
        boundary(self.end_transfer, self.user(), e);
    }

    fn ack_out(&self, e: &mut AckOutEvent<'_>) {
        let Some(f) = self.ack_out else { return };
        let (cs, enc) = (c_text_or_empty(e.charset), c_text_or_empty(e.encoding));
        let mut ev = mllp_ack_out_event {
            connection_id: e.connection_id.raw(),
            message_seq: e.message_seq,
            accept: e.verdict.is_accept() as u8,
            reject_code: match e.verdict {
                Verdict::Reject(r) => r.to_c(),
                Verdict::Accept => RejectCode::default().to_c(),
            },
            message: e.message.as_ptr(),
            message_len: e.message.len(),
            defer: e.defer as u8,
            charset: cs.as_ptr(),
            encoding: enc.as_ptr(),
            reply: std::ptr::null(),
            reply_len: 0,
        };
        // SAFETY: a host callback; the event and the message are valid for the call.
        unsafe { f(self.user(), &mut ev) };
        e.verdict = Verdict::from_c(ev.accept != 0, ev.reject_code);
        e.defer = ev.defer != 0;
        if !ev.reply.is_null() {
            // SAFETY: the header asks the host to point `reply` at `reply_len` readable bytes
            // that stay valid until its callback returns, which it has just done on this thread
            // (the bytes are the host's, not freed before we copy them).
            e.reply = Some(unsafe { std::slice::from_raw_parts(ev.reply, ev.reply_len) }.to_vec());
        }
    }

    fn message(&self, e: &MessageEvent<'_>) {
        let Some(f) = self.message else { return };
        let (cs, enc) = (c_text_or_empty(e.charset), c_text_or_empty(e.encoding));
        let ev = mllp_message_event {
            connection_id: e.connection_id.raw(),
            message_seq: e.message_seq,
            data: e.data.as_ptr(),
            len: e.data.len(),
            charset: cs.as_ptr(),
            encoding: enc.as_ptr(),
            decoded: e.decoded as u8,
        };
        // SAFETY: a host callback; the event and its data are valid for the call.
        unsafe { f(self.user(), &ev) };
    }

    fn duplicate(&self, e: &DuplicateEvent<'_>) {
        let Some(f) = self.duplicate else { return };
        let id = c_text(e.control_id);
        let ev = mllp_duplicate_event {
            connection_id: e.connection_id.raw(),
            message: e.message.as_ptr(),
            message_len: e.message.len(),
            control_id: id.as_ptr(),
            reply: e.reply.as_ptr(),
            reply_len: e.reply.len(),
        };
        // SAFETY: a host callback; the event and its data are valid for the call.
        unsafe { f(self.user(), &ev) };
    }

    fn ack_in(&self, e: &AckInEvent) {
        let Some(f) = self.ack_in else { return };
        let ev = mllp_ack_in_event { connection_id: e.connection_id.raw(), accepted: e.accepted as u8 };
        // SAFETY: a host callback; the event is valid for the call.
        unsafe { f(self.user(), &ev) };
    }

    fn error(&self, e: &ErrorEvent<'_>) {
        error(self.error, self.user(), e);
    }

    fn log(&self, e: &LogEvent<'_>) {
        log(self.log, self.user(), e);
    }

    fn ssl_client_authentication(&self, e: &mut crate::events::SslClientAuthenticationEvent<'_>) {
        self.ssl_client_authentication_impl(e);
    }

    fn ssl_connection_request(&self, e: &mut crate::events::SslConnectionRequestEvent<'_>) {
        self.ssl_connection_request_impl(e);
    }

    fn ssl_status(&self, e: &crate::events::SslStatusEvent<'_>) {
        self.ssl_status_impl(e);
    }

    fn thread_start(&self) {
        if let Some(f) = self.thread_start {
            // SAFETY: a host hook with its own user pointer.
            unsafe { f(self.user()) };
        }
    }

    fn thread_stop(&self) {
        if let Some(f) = self.thread_stop {
            // SAFETY: a host hook with its own user pointer.
            unsafe { f(self.user()) };
        }
    }
}

/// Calls a Connected/Disconnected callback (server or client) with `e`.
pub(crate) fn status(f: mllp_status_cb, user: *mut c_void, e: &StatusEvent<'_>) {
    let Some(f) = f else { return };
    let d = c_text(e.description);
    let ev =
        mllp_status_event { connection_id: e.connection_id.raw(), status_code: e.status_code, description: d.as_ptr() };
    // SAFETY: a host callback; the event and its string are valid for the call.
    unsafe { f(user, &ev) };
}

/// Calls an Error callback (server or client) with `e`.
pub(crate) fn error(f: mllp_error_cb, user: *mut c_void, e: &ErrorEvent<'_>) {
    let Some(f) = f else { return };
    let d = c_text(e.description);
    let ev =
        mllp_error_event { connection_id: e.connection_id.raw(), error_code: e.error_code, description: d.as_ptr() };
    // SAFETY: a host callback; the event and its string are valid for the call.
    unsafe { f(user, &ev) };
}

/// Calls a Log callback (server or client) with `e`.
pub(crate) fn log(f: mllp_log_cb, user: *mut c_void, e: &LogEvent<'_>) {
    let Some(f) = f else { return };
    let (m, t) = (c_text(e.message), c_text(e.log_type));
    let ev = mllp_log_event {
        connection_id: e.connection_id.raw(),
        log_level: e.log_level as c_int,
        message: m.as_ptr(),
        log_type: t.as_ptr(),
    };
    // SAFETY: a host callback; the event and its strings are valid for the call.
    unsafe { f(user, &ev) };
}

fn boundary(f: mllp_transfer_boundary_cb, user: *mut c_void, e: &TransferBoundaryEvent<'_>) {
    let Some(f) = f else { return };
    let (cs, enc) = (c_text_or_empty(e.charset), c_text_or_empty(e.encoding));
    let ev = mllp_transfer_boundary_event {
        connection_id: e.connection_id.raw(),
        message_seq: e.message_seq,
        charset: cs.as_ptr(),
        encoding: enc.as_ptr(),
    };
    // SAFETY: a host callback; the event is valid for the call.
    unsafe { f(user, &ev) };
}

/// Updates the registered callbacks and installs them as the server's handler.
pub(crate) fn update(s: &mllp_server, f: impl FnOnce(&mut Callbacks)) -> c_int {
    let mut cbs = crate::shared::lock(&s.callbacks);
    let old = cbs.clone();
    f(&mut cbs);
    // Installed under the lock so concurrent updates land in order; `old` keeps a replaced
    // user pointer alive until the lock is released, so its release callback (host code)
    // never runs under it.
    s.server.set_handler(Arc::new(cbs.clone()));
    drop(cbs);
    drop(old);
    MLLP_OK
}

/// Storage for a server's callbacks.
pub(crate) type CallbackCell = Mutex<Callbacks>;

/// Registers the ConnectionRequest callback (set `event->accept` to 0 to refuse).
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_connection_request(server: *mut mllp_server, cb: mllp_connection_request_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.connection_request = cb)
    }
}

/// Registers the Connected callback.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_connected(server: *mut mllp_server, cb: mllp_status_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.connected = cb)
    }
}

/// Registers the Disconnected callback.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_disconnected(server: *mut mllp_server, cb: mllp_status_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.disconnected = cb)
    }
}

/// Registers the StartTransfer callback.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_start_transfer(server: *mut mllp_server, cb: mllp_transfer_boundary_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.start_transfer = cb)
    }
}

/// Registers the Transfer callback (the message's bytes, in one or more pieces).
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_transfer(server: *mut mllp_server, cb: mllp_transfer_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.transfer = cb)
    }
}

/// Registers the EndTransfer callback.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_end_transfer(server: *mut mllp_server, cb: mllp_transfer_boundary_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.end_transfer = cb)
    }
}

/// Registers the Message callback: each received message whole, after EndTransfer and before
/// AckOut (for hosts that do not want Transfer pieces).
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_message(server: *mut mllp_server, cb: mllp_message_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.message = cb)
    }
}

/// Registers the Duplicate callback (the DuplicateWindow setting): a resent message was
/// answered with its original's acknowledgement and not delivered again.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_duplicate(server: *mut mllp_server, cb: mllp_duplicate_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.duplicate = cb)
    }
}

/// Registers the AckOut callback (set `event->accept` to 0 to send a negative acknowledgement).
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_ack_out(server: *mut mllp_server, cb: mllp_ack_out_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.ack_out = cb)
    }
}

/// Registers the AckIn callback.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_ack_in(server: *mut mllp_server, cb: mllp_ack_in_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.ack_in = cb)
    }
}

/// Registers the Error callback.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_error(server: *mut mllp_server, cb: mllp_error_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.error = cb)
    }
}

/// Registers the Log callback (see the LogLevel setting).
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_log(server: *mut mllp_server, cb: mllp_log_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.log = cb)
    }
}

/// Registers a hook run on the reactor thread once when it starts, before any event
/// (bindings attach the thread to their runtime here). Set it before StartListening.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_thread_start(server: *mut mllp_server, cb: mllp_thread_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.thread_start = cb)
    }
}

/// Registers a hook run on the reactor thread once just before it ends.
///
/// Pass NULL to remove the callback. Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when
/// `server` is NULL. Any thread; takes effect for the next event.
#[no_mangle]
pub extern "C" fn mllp_server_on_thread_stop(server: *mut mllp_server, cb: mllp_thread_cb) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.thread_stop = cb)
    }
}

/// Sets the user pointer passed to every callback of this server. `release`, if not NULL, is
/// called exactly once with `user`: when another user pointer replaces it or the server is
/// freed, after the last callback that could receive it has returned (on whichever thread
/// drops it last). Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when `server` is NULL
/// (then `release` is not called). Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_user_data(
    server: *mut mllp_server,
    user: *mut c_void,
    release: mllp_release_cb,
) -> c_int {
    ffi_panic_boundary! {
        update(try_ref_from_ptr!(server), |c| c.user = Some(Arc::new(UserData { ptr: user, release })))
    }
}
