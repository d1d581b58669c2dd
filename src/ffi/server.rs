//! The server handle: creation, properties, Config and methods.

use std::ffi::{c_char, c_int};

use super::callbacks::{CallbackCell, Callbacks};
use super::macros::{free_handle, ref_from_ptr, to_handle, Handle, Out};
use super::{fail_with, rc, MLLP_OK};
use crate::error::code;
use crate::server::Server;

/// An MLLP server. Create with `mllp_server_new`, destroy with `mllp_server_free`.
pub struct mllp_server {
    pub(crate) server: Server,
    pub(crate) callbacks: CallbackCell,
}

impl Handle for mllp_server {}

/// Creates a server with the reference's defaults, not listening. Returns NULL only if memory
/// runs out. Free it with `mllp_server_free`. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_new() -> *mut mllp_server {
    ffi_panic_boundary! {
        to_handle(mllp_server { server: Server::new(), callbacks: CallbackCell::new(Callbacks::default()) })
    }
}

/// Shuts the server down (closing every connection, firing Disconnected for each: on the
/// reactor thread in thread mode; in DoEvents mode this call delivers them, and any other
/// queued notification, on the calling thread before it returns), stops its reactor
/// thread, releases the user pointer and frees the handle. NULL is accepted (returns
/// `MLLP_OK`). Safe in every state: never started, listening, with clients, after shutdown or
/// a failed start. Returns `MLLP_ERR_REENTRANT` and frees nothing when called from one of this
/// server's callbacks (or from inside its `mllp_server_do_events`). After `MLLP_OK` the handle
/// is invalid; no other call on it may be in progress or follow.
#[no_mangle]
pub extern "C" fn mllp_server_free(server: *mut mllp_server) -> c_int {
    ffi_panic_boundary! {
        let Some(s) = ref_from_ptr(server) else {
            return MLLP_OK;
        };
        try_mllp!(s.server.close());
        // SAFETY: the reactor has stopped; the handle came from mllp_server_new and the caller
        // gives it up (the header: no other call on it may be in progress or follow).
        unsafe { free_handle(server) };
        MLLP_OK
    }
}

/// DefaultTimeout: the Timeout (seconds) given to new connections; 0 = asynchronous sends.
///
/// Writes `*out` and returns `MLLP_OK`; `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_default_timeout(server: *const mllp_server, out: *mut u32) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.default_timeout())
    }
}

/// KeepAlive: 1 when SO_KEEPALIVE is set on accepted connections.
///
/// Writes `*out` and returns `MLLP_OK`; `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_keep_alive(server: *const mllp_server, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.keep_alive() as u8)
    }
}

/// Listening: 1 while the server accepts connections.
///
/// Writes `*out` and returns `MLLP_OK`; `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_listening(server: *const mllp_server, out: *mut u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.listening() as u8)
    }
}

/// LocalPort: while listening, the real port (also after setting 0); else the configured one.
///
/// Writes `*out` and returns `MLLP_OK`; `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_local_port(server: *const mllp_server, out: *mut u16) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.local_port())
    }
}

/// Version: the MLLP version, 1 or 2 (default 2).
///
/// Writes `*out` and returns `MLLP_OK`; `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_version(server: *const mllp_server, out: *mut c_int) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.version() as c_int)
    }
}

/// Number of open connections.
///
/// Writes `*out` and returns `MLLP_OK`; `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL.
/// Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_connection_count(server: *const mllp_server, out: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(s.connection_count())
    }
}

/// Sets DefaultTimeout (seconds). Returns `MLLP_OK` or `MLLP_ERR_INVALID_ARGUMENT`. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_default_timeout(server: *mut mllp_server, seconds: u32) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        s.set_default_timeout(seconds);
        MLLP_OK
    }
}

/// Sets KeepAlive (0 or 1) for connections accepted from now on. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_keep_alive(server: *mut mllp_server, keep_alive: u8) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        s.set_keep_alive(keep_alive != 0);
        MLLP_OK
    }
}

/// Sets LocalPort (0 = any free port). Returns `MLLP_ERR_CANNOT_CHANGE_LOCAL_PORT` (106) while
/// listening. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_local_port(server: *mut mllp_server, port: u16) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.set_local_port(port))
    }
}

/// Sets Version: 1 or 2 (`MLLP_ERR_INVALID_VALUE` otherwise). Version 1 sends no
/// acknowledgements unless the AckMode setting asks for HL7 ones. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_version(server: *mut mllp_server, version: c_int) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        if !(1..=2).contains(&version) {
            return fail_with(code::INVALID_VALUE, "Version must be 1 or 2");
        }
        rc(s.set_version(version as u8))
    }
}

/// LocalHost: the interface listened on (while listening, the bound address). Copies a
/// NUL-terminated string under the buffer rule: `*len` is the capacity in, the size needed
/// (with the NUL) out; `MLLP_ERR_BUFFER_TOO_SMALL` when `buf` is NULL or too small. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_local_host(server: *const mllp_server, buf: *mut c_char, len: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_str(&s.local_host())
    }
}

/// Sets LocalHost: an IP address, a host name, or "" for every interface (see UseIPv6).
/// Returns `MLLP_ERR_CANNOT_CHANGE_LOCAL_HOST` (107) while listening. Copies the string. Any
/// thread.
#[no_mangle]
pub extern "C" fn mllp_server_set_local_host(server: *mut mllp_server, host: *const c_char) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let host = try_str!(host);
        rc(s.set_local_host(host))
    }
}

/// Config: `"Name=Value"` sets a setting; `"Name"` reads one into `buf` under the buffer rule.
/// For a set, `buf` and `len` are ignored and may be NULL. Names are
/// case-insensitive. Returns `MLLP_ERR_UNKNOWN_SETTING` for an unknown name,
/// `MLLP_ERR_NOT_SUPPORTED` for a reference setting with no meaning for a server (the message
/// says why), `MLLP_ERR_INVALID_VALUE` for a bad value. Any thread, also inside callbacks.
///
/// HL7 delivery settings (all off by default; README "HL7 delivery semantics"):
/// - `DuplicateWindow=N` (0–10000000): remember the last N accepted messages (MSH-3, MSH-4,
///   MSH-10, a 128-bit hash of the message) across connections; a resend is answered with the
///   original acknowledgement byte for byte and not delivered (Duplicate event, Log line,
///   `DuplicateCount`). Acknowledgements over 4096 bytes are not remembered. Memory: about 100
///   bytes per message plus its HL7 acknowledgement.
/// - `DuplicateCount` (read-only): duplicates answered so far.
/// - `ProcessBatch=True`: FHS/BHS frames are split into their messages, each delivered on its
///   own; the frame gets one reply (ACK/NAK, or an HL7 batch acknowledgement). A malformed
///   batch is refused whole (`MLLP_ERR_BAD_BATCH`).
/// - `DefaultCharset=NAME`: the character set of messages whose MSH-18 is empty.
/// - `DecodeToUTF8=True`: messages are handed over converted to UTF-8; one that cannot be
///   converted is refused (`MLLP_ERR_CHARSET`).
///
/// Resource bounds (README "Resource bounds"):
/// - `MaxConnections=N`: 0 (default) derives the limit from the descriptor limit (soft
///   RLIMIT_NOFILE less max(64, limit/8)); connections beyond it wait in the backlog. Above
///   0, connections beyond N are refused (`MLLP_ERR_TOO_MANY_CONNECTIONS`).
/// - `MaxBufferedBytes=N` (default 1 GiB): partial-message bytes held across all
///   connections; past it the connections holding the most are closed
///   (`MLLP_ERR_MEMORY_BUDGET`). `BufferedBytes` (read-only): what is held now.
/// - `ConnectionLimit` (read-only): the limit in force (MaxConnections, or the derived one).
/// - `IdleTimeout=N` (seconds, default 0 = off): a connection without traffic for N seconds
///   is closed (Disconnected with `MLLP_ERR_TIMEOUT`).
///
/// Behind a load balancer (README "PROXY protocol"):
/// - `ProxyProtocol=None|V1|V2|Any`: every new connection must start with a PROXY protocol
///   header (before TLS and MLLP); ConnectionRequest, RemoteHost and RemotePort report the
///   original client it names. A connection without a valid header is closed with
///   `MLLP_ERR_PROXY_HEADER`.
/// - `ProxyHeaderTimeout=N` (seconds, at least 1, default 5): time a new connection has to
///   deliver its whole header.
///
/// TLS while listening (README "TLS"): setting a TLS setting (`SSLClientCACerts`,
/// `SSLClientCRLs`, `SSLCACerts`, `SSLEnabledProtocols`, ...; not `SSLEnabled`) while
/// listening with TLS rebuilds the TLS configuration, re-reading the files named (setting the
/// same path again reloads the file). It applies to connections accepted after the call
/// returns; established connections continue unaffected. A bad value returns an error and
/// the old configuration stays in use: `MLLP_ERR_CERTIFICATE` (2020) for a bad certificate,
/// CA list or CRL (also an unreadable CRL file), `MLLP_ERR_CANNOT_OPEN_FILE` (303) for an
/// unreadable `SSLClientCACerts`/`SSLCACerts` file or `SSLKeyLogFile`.
/// - `SSLClientCRLs=VALUE`: CRLs client certificates are checked against (needs
///   `SSLClientCACerts`). VALUE holding `-----BEGIN` is PEM text (one or more `X509 CRL`
///   blocks); otherwise the path of an existing file (PEM, or DER back to back); otherwise
///   base64 DER; "" clears it. Read and parsed when set (`MLLP_ERR_CERTIFICATE` if bad). A
///   listed client certificate is refused: SSLClientAuthentication sees accept 0 and status
///   "certificate revoked", and unless the host accepts it the connection closes with
///   `MLLP_ERR_TLS_CLIENT_REJECTED` (2022), "client certificate refused: certificate revoked".
///   A certificate no CRL covers passes. A CRL past its nextUpdate is reported with an Error
///   event (`MLLP_ERR_CERTIFICATE`) when loaded, and the certificates it covers are refused
///   (status "certificate revocation list expired: ...") until a current CRL is set.
#[no_mangle]
pub extern "C" fn mllp_server_config(
    server: *mut mllp_server,
    setting: *const c_char,
    buf: *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let setting = try_str!(setting);
        if setting.contains('=') {
            // A set: buf and len are ignored.
            return rc(s.config(setting));
        }
        let out = try_buf!(buf, len);
        out.put_str(&try_mllp!(s.config(setting)))
    }
}

/// StartListening: binds LocalHost:LocalPort (on the calling thread, so "address in use",
/// 10048, is returned here) and starts the reactor thread if needed. `MLLP_OK` if already
/// listening. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_start_listening(server: *mut mllp_server) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.start_listening())
    }
}

/// StopListening: stops accepting new connections; existing ones stay open. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_stop_listening(server: *mut mllp_server) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.stop_listening())
    }
}

/// Shutdown: StopListening, then disconnect every client (Disconnected fires for each). The
/// handle stays usable (StartListening again). Queued; returns at once. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_shutdown(server: *mut mllp_server) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.shutdown())
    }
}

/// Reset: Shutdown, then every property and setting back to its default. Callbacks and the
/// user pointer stay. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_reset(server: *mut mllp_server) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.reset())
    }
}

/// Disconnect: closes a connection (replies already queued are flushed first when the socket
/// allows). `MLLP_ERR_NO_SUCH_CONNECTION` for a closed or unknown id. Queued; any thread.
#[no_mangle]
pub extern "C" fn mllp_server_disconnect(server: *mut mllp_server, connection_id: u64) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.disconnect(connection_id.into()))
    }
}

/// Interrupt: a synchronous `mllp_server_send` waiting on this connection returns
/// `MLLP_ERR_SEND_INTERRUPTED` at once; the connection stays open. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_interrupt(server: *mut mllp_server, connection_id: u64) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.interrupt(connection_id.into()))
    }
}

/// Send: frames and sends the connection's input: its input stream if set, else
/// InputFileName, else InputData. With the connection's Timeout 0, returns once queued
/// (`MLLP_ERR_WOULD_BLOCK` when the output queue is full). With Timeout > 0 it waits for the
/// client's acknowledgement (version 2; `MLLP_ERR_NAK_RECEIVED` on a NAK) or for the bytes to be
/// written (version 1), up to Timeout seconds (`MLLP_ERR_TIMEOUT`), and can be interrupted by
/// `mllp_server_interrupt`; such a wait returns `MLLP_ERR_REENTRANT` on the reactor thread.
#[no_mangle]
pub extern "C" fn mllp_server_send(server: *mut mllp_server, connection_id: u64) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        rc(s.send(connection_id.into()))
    }
}

/// Sends `len` bytes at `data` (copied) to a connection, as Send does but without touching
/// its InputData. Same waiting rules and codes as `mllp_server_send`.
#[no_mangle]
pub extern "C" fn mllp_server_send_bytes(
    server: *mut mllp_server,
    connection_id: u64,
    data: *const u8,
    len: usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let data = try_slice!(data, len);
        rc(s.send_bytes(connection_id.into(), data))
    }
}

/// DoEvents: with the EventMode setting "DoEvents", delivers queued events on the calling
/// thread, waiting up to `timeout_ms` for the first; writes how many were delivered to
/// `*delivered` (may be NULL). In the default thread mode events arrive on the reactor thread
/// and this call only waits. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_do_events(server: *mut mllp_server, timeout_ms: u32, delivered: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        // Optional: may be NULL.
        let delivered = Out::new(delivered);
        let n = try_mllp!(s.do_events(timeout_ms));
        delivered.map_or(MLLP_OK, |out| out.set(n))
    }
}

/// Connections: copies the ids of the open connections into `ids` (capacity `*len`
/// entries); `*len` is set to the number of open connections. `MLLP_ERR_BUFFER_TOO_SMALL` when
/// `ids` is NULL or too small. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_connections(server: *const mllp_server, ids: *mut u64, len: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(ids, len);
        let ids: Vec<u64> = s.connections().into_iter().map(|id| id.raw()).collect();
        out.put_slice(&ids)
    }
}

/// Acknowledges a message whose AckOut callback set `defer`: `accept` 1 sends ACK (HL7 mode:
/// MSA-1 AA), 0 sends NAK (HL7 mode: `reject_code`, `MLLP_REJECT_AE` or `MLLP_REJECT_AR`).
/// Replies leave in message order, so an earlier undecided message holds this one back. A
/// `message_seq` that is not awaiting a decision is ignored. `MLLP_ERR_NO_SUCH_CONNECTION` when
/// the connection has closed (the message was never acknowledged). Queued; any thread, also
/// inside callbacks.
#[no_mangle]
pub extern "C" fn mllp_server_acknowledge(
    server: *mut mllp_server,
    connection_id: u64,
    message_seq: u64,
    accept: u8,
    reject_code: c_int,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let verdict = crate::events::Verdict::from_c(accept != 0, reject_code);
        rc(s.acknowledge(connection_id.into(), message_seq, verdict))
    }
}

/// Acknowledges a message whose AckOut callback set `defer` with exactly `reply_len` bytes at
/// `reply` (copied; unframed: an HL7 ACK in HL7 mode, the ACK or NAK byte in MLLP mode), e.g.
/// the original acknowledgement of a message the host's own store has seen before. Same
/// ordering rules and codes as `mllp_server_acknowledge`. A positive reply (the ACK byte, MSA-1
/// AA or CA) is remembered by the DuplicateWindow setting. An empty reply sends nothing for
/// that message (as MSH-15 NE does). Queued; any thread.
#[no_mangle]
pub extern "C" fn mllp_server_acknowledge_with(
    server: *mut mllp_server,
    connection_id: u64,
    message_seq: u64,
    reply: *const u8,
    reply_len: usize,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let reply = try_slice!(reply, reply_len);
        rc(s.acknowledge_with(connection_id.into(), message_seq, reply))
    }
}

/// Sends an HL7 application acknowledgement for `message` (`message_len` bytes, a message
/// received on that connection) as a message of its own, built from its MSH: `code`
/// `MLLP_ACK_AA`, `MLLP_ACK_AE` or `MLLP_ACK_AR`; `text` an optional MSA-3 (NULL: none). It is
/// sent only when the message's MSH-16 asks for it: AL always, ER only for AE/AR, SU only for
/// AA, NE or empty never. Writes 1 to `*sent` (may be NULL) when it was sent, 0 when MSH-16
/// said no. Queued (asynchronous); `MLLP_ERR_INVALID_VALUE` for another code or a message
/// without MSH, `MLLP_ERR_NO_SUCH_CONNECTION`. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_send_app_ack(
    server: *mut mllp_server,
    connection_id: u64,
    message: *const u8,
    message_len: usize,
    code: c_int,
    text: *const c_char,
    sent: *mut u8,
) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let message = try_slice!(message, message_len);
        let text = try_opt_str!(text);
        let Some(code) = crate::hl7::AckCode::from_c(code) else {
            return rc::<()>(Err(crate::Error::new(crate::code::INVALID_VALUE, "code must be MLLP_ACK_AA, MLLP_ACK_AE or MLLP_ACK_AR")));
        };
        let was_sent = try_mllp!(s.send_app_ack(connection_id.into(), message, code, text));
        if !sent.is_null() {
            let out = try_out!(sent);
            out.set(was_sent as u8);
        }
        MLLP_OK
    }
}

/// Writes the number of duplicates answered from the DuplicateWindow so far to `*count`.
/// Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when a pointer is NULL. Any thread.
#[no_mangle]
pub extern "C" fn mllp_server_get_duplicate_count(server: *const mllp_server, count: *mut u64) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(count);
        out.set(s.duplicate_count())
    }
}

/// Builds an HL7 acknowledgement for `message` (`message_len` bytes): MSA-1 `code`
/// (`MLLP_ACK_AA` … `MLLP_ACK_CR`), MSA-2 its MSH-10, MSA-3 `text` (NULL: none), MSH-7 now
/// and an MSH-10 unique across connections, servers and restarts; the same rules as the
/// acknowledgements the server builds (see AckMode=HL7). Buffer rule: when `out` is NULL or
/// `*out_len` is too small, returns `MLLP_ERR_BUFFER_TOO_SMALL` with the size needed in
/// `*out_len` (every call makes a new control id). `MLLP_ERR_INVALID_VALUE` for an unknown
/// code. Any thread.
#[no_mangle]
pub extern "C" fn mllp_hl7_build_ack(
    message: *const u8,
    message_len: usize,
    code: c_int,
    text: *const c_char,
    out: *mut u8,
    out_len: *mut usize,
) -> c_int {
    ffi_panic_boundary! {
        let message = try_slice!(message, message_len);
        let text = try_opt_str!(text);
        let buf = try_buf!(out, out_len);
        let Some(code) = crate::hl7::AckCode::from_c(code) else {
            return rc::<()>(Err(crate::Error::new(crate::code::INVALID_VALUE, "code must be one of MLLP_ACK_AA … MLLP_ACK_CR")));
        };
        buf.put_slice(&crate::hl7::build_ack_now(message, code, text.map(str::as_bytes)))
    }
}

/// A server's metrics at one moment (`mllp_server_get_metrics`). Counts run from the server's
/// creation (Reset does not clear them). `mllp_server_get_metrics_text` gives the same
/// numbers, with errors per code, TLS failures per reason and the latency histogram's
/// buckets, in the Prometheus text format.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct mllp_metrics {
    /// Connections accepted and admitted (Connected fired).
    pub connections_accepted: u64,
    /// Connections refused: by ConnectionRequest, MaxConnections (2012), a missing or invalid
    /// PROXY header (2050), or a failed TLS handshake (such a connection was admitted first,
    /// so it counts in `connections_accepted` too).
    pub connections_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Complete messages (frames) received, refused ones included (a batch is one frame);
    /// acknowledgements of the server's own sends are not messages.
    pub messages_received: u64,
    /// Messages answered positively (ACK, MSA-1 AA or CA).
    pub messages_accepted: u64,
    /// Messages answered negatively (NAK, MSA-1 AE, AR, CE or CR) or refused by the library
    /// (empty, larger than MaxMessageSize, no EOL, charset, batch).
    pub messages_refused: u64,
    /// Messages answered from the duplicate window (DuplicateWindow), not delivered.
    pub messages_duplicate: u64,
    /// Application bytes received (decrypted, for TLS).
    pub bytes_in: u64,
    /// Application bytes sent: acknowledgements and the server's own sends.
    pub bytes_out: u64,
    /// Positive acknowledgements written to the transport.
    pub acks_sent: u64,
    /// Negative acknowledgements written to the transport.
    pub naks_sent: u64,
    /// Error events, all codes (per code: in the text form).
    pub errors: u64,
    /// TLS handshakes completed: data may flow (with SSLAuthenticateClients, the client was
    /// accepted too).
    pub tls_handshakes_completed: u64,
    /// TLS connections closed before data could flow (per reason: in the text form).
    pub tls_handshakes_failed: u64,
    /// Acknowledgements whose latency was measured (every reply frame written).
    pub ack_latency_count: u64,
    /// Sum of those latencies, seconds: from the reactor turn that read the message's end
    /// block to the write call that took the acknowledgement's last byte.
    pub ack_latency_sum_seconds: f64,
}

impl From<&crate::metrics::MetricsSnapshot> for mllp_metrics {
    fn from(m: &crate::metrics::MetricsSnapshot) -> Self {
        mllp_metrics {
            connections_accepted: m.connections_accepted,
            connections_refused: m.connections_refused,
            connections_open: m.connections_open,
            messages_received: m.messages_received,
            messages_accepted: m.messages_accepted,
            messages_refused: m.messages_refused,
            messages_duplicate: m.messages_duplicate,
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            acks_sent: m.acks_sent,
            naks_sent: m.naks_sent,
            errors: m.errors,
            tls_handshakes_completed: m.tls_handshakes_completed,
            tls_handshakes_failed: m.tls_handshakes_failed,
            ack_latency_count: m.ack_latency.count,
            ack_latency_sum_seconds: m.ack_latency.sum_seconds,
        }
    }
}

/// Writes the server's metrics now to `*out` (always on; reading costs a relaxed load per
/// counter and takes no lock). Returns `MLLP_OK`, or `MLLP_ERR_INVALID_ARGUMENT` when a
/// pointer is NULL. Any thread, also inside callbacks.
#[no_mangle]
pub extern "C" fn mllp_server_get_metrics(server: *const mllp_server, out: *mut mllp_metrics) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_out!(out);
        out.set(mllp_metrics::from(&s.metrics()))
    }
}

/// The server's metrics in the Prometheus text exposition format 0.0.4 (for a `/metrics`
/// endpoint: `text/plain; version=0.0.4`): every family with `# HELP` and `# TYPE`, errors
/// per code, TLS failures per reason, the acknowledgement latency histogram. NUL-terminated,
/// under the buffer rule: `*len` is the capacity in, the size needed (with the NUL) out;
/// `MLLP_ERR_BUFFER_TOO_SMALL` when `buf` is NULL or too small. The text can grow between two
/// calls (a new error code, longer numbers): on `MLLP_ERR_BUFFER_TOO_SMALL` call again with
/// the size returned. Any thread, also inside callbacks.
#[no_mangle]
pub extern "C" fn mllp_server_get_metrics_text(server: *const mllp_server, buf: *mut c_char, len: *mut usize) -> c_int {
    ffi_panic_boundary! {
        let s = &try_ref_from_ptr!(server).server;
        let out = try_buf!(buf, len);
        out.put_str(&s.metrics_text())
    }
}
