//! The reference's events and the handler trait that receives them.
//!
//! Payload borrows are valid only during the call. In the default thread mode handlers run on
//! the reactor thread, one at a time, with no library lock held, so a handler may call back into
//! the server (send, disconnect, config reads) freely.

use std::fmt;

/// A connection id: slot in the low 32 bits, generation in the high 32 bits. Never reused
/// while the server lives, so a stale id answers "no such connection". 0 means "no connection"
/// (server-wide events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The id of server-wide events (no connection).
    pub const NONE: ConnectionId = ConnectionId(0);

    /// An id from its slot and generation (generation 0 is never given out).
    pub fn new(slot: u32, generation: u32) -> Self {
        ConnectionId(((generation as u64) << 32) | slot as u64)
    }

    /// An id from its 64-bit form, as the C ABI and the bindings carry it.
    pub const fn from_raw(raw: u64) -> Self {
        ConnectionId(raw)
    }

    /// The 64-bit form.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Index in the connection table.
    pub fn slot(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    /// Generation of the slot when the id was given out.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl From<u64> for ConnectionId {
    fn from(raw: u64) -> Self {
        ConnectionId(raw)
    }
}

impl From<ConnectionId> for u64 {
    fn from(id: ConnectionId) -> Self {
        id.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for ConnectionId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>().map(ConnectionId)
    }
}

/// The level of a Log line (the LogLevel setting: 0 logs nothing, 3 everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 1: connections and refusals.
    Info = 1,
    /// 2: every message and reply.
    Verbose = 2,
    /// 3: every read.
    Debug = 3,
}

impl LogLevel {
    /// The number (1, 2 or 3).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// "INFO", "VERBOSE" or "DEBUG".
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Info => "INFO",
            LogLevel::Verbose => "VERBOSE",
            LogLevel::Debug => "DEBUG",
        }
    }
}

/// The MSA-1 code of a negative HL7 acknowledgement. Only these two exist, so an accept
/// code can never be sent as a rejection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// Application Error (the default): something in the message was wrong.
    #[default]
    AE,
    /// Application Reject: refused for another reason (unsupported type, receiver failure).
    AR,
}

impl RejectCode {
    /// The MSA-1 code.
    pub fn ack_code(self) -> crate::hl7::AckCode {
        match self {
            RejectCode::AE => crate::hl7::AckCode::AE,
            RejectCode::AR => crate::hl7::AckCode::AR,
        }
    }

    /// The one normalisation of reject codes from the C ABI and the bindings:
    /// `MLLP_REJECT_AR` (2) is AR, anything else AE.
    pub fn from_c(code: i32) -> Self {
        if code == 2 {
            RejectCode::AR
        } else {
            RejectCode::AE
        }
    }

    /// The C ABI's number: `MLLP_REJECT_AE` (1) or `MLLP_REJECT_AR` (2).
    pub fn to_c(self) -> i32 {
        match self {
            RejectCode::AE => 1,
            RejectCode::AR => 2,
        }
    }
}

/// The host's decision on a received message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Positive acknowledgement (ACK, MSA-1 AA).
    #[default]
    Accept,
    /// Negative acknowledgement (NAK; in HL7 mode MSA-1 with this code).
    Reject(RejectCode),
}

impl Verdict {
    /// True for [`Verdict::Accept`].
    pub fn is_accept(self) -> bool {
        self == Verdict::Accept
    }

    /// A verdict from the C ABI's pair (`accept` non-zero, else `reject_code`).
    pub fn from_c(accept: bool, reject_code: i32) -> Self {
        if accept {
            Verdict::Accept
        } else {
            Verdict::Reject(RejectCode::from_c(reject_code))
        }
    }
}

/// ConnectionRequest: a client asks to connect. Set `accept` to false to refuse it.
#[derive(Debug)]
pub struct ConnectionRequestEvent<'a> {
    /// The client's address.
    pub address: &'a str,
    /// The client's port.
    pub port: u16,
    /// Read-write: whether the connection is accepted (default true).
    pub accept: bool,
}

/// Connected or Disconnected: a connection completed or closed.
#[derive(Debug)]
pub struct StatusEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// 0 when normal, else the error code.
    pub status_code: i32,
    /// "OK" or a description of the code.
    pub description: &'a str,
}

/// StartTransfer or EndTransfer: a received message begins or ends delivery.
#[derive(Debug)]
pub struct TransferBoundaryEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Sequence number of the message on this connection (1 for the first).
    pub message_seq: u64,
    /// MSH-18 as sent ("" when empty).
    pub charset: &'a str,
    /// The normalised character set name ("ASCII", "8859/1", "UNICODE UTF-8" …) of MSH-18,
    /// else of DefaultCharset; "" when neither names a known set.
    pub encoding: &'a str,
}

/// Message: a received message, whole, after EndTransfer and before AckOut.
#[derive(Debug)]
pub struct MessageEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Sequence number of the message on this connection.
    pub message_seq: u64,
    /// The whole message (UTF-8 when DecodeToUTF8 converted it).
    pub data: &'a [u8],
    /// MSH-18 as sent ("" when empty).
    pub charset: &'a str,
    /// The normalised character set name ("" when unknown).
    pub encoding: &'a str,
    /// `data` was converted to UTF-8 (DecodeToUTF8).
    pub decoded: bool,
}

/// Duplicate: a resent message (DuplicateWindow) was answered with its original's
/// acknowledgement and was not delivered again.
#[derive(Debug)]
pub struct DuplicateEvent<'a> {
    /// The connection it arrived on.
    pub connection_id: ConnectionId,
    /// The message as received.
    pub message: &'a [u8],
    /// Its MSH-10.
    pub control_id: &'a str,
    /// The acknowledgement sent again (unframed; empty when the original got none).
    pub reply: &'a [u8],
}

/// Transfer: a piece of a received message.
#[derive(Debug)]
pub struct TransferEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Bytes of this message delivered so far, including `data`.
    pub bytes_transferred: u64,
    /// The piece being delivered now.
    pub data: &'a [u8],
}

/// AckOut: an acknowledgement is about to be sent. Set `accept` to false to send a NAK.
#[derive(Debug)]
pub struct AckOutEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Sequence number of the message being acknowledged.
    pub message_seq: u64,
    /// Read-write: ACK ([`Verdict::Accept`], the default) or NAK ([`Verdict::Reject`] with
    /// the MSA-1 code used in HL7 mode).
    pub verdict: Verdict,
    /// The complete message being acknowledged (empty when it was not delivered).
    pub message: &'a [u8],
    /// Read-write: true leaves the decision open: nothing is sent until the host calls
    /// `Server::acknowledge` for this connection and `message_seq` (for instance after a
    /// group commit on another thread). Replies still leave in message order.
    pub defer: bool,
    /// MSH-18 as sent ("" when empty).
    pub charset: &'a str,
    /// The normalised character set name ("" when unknown).
    pub encoding: &'a str,
    /// Read-write: Some sends exactly these bytes as the acknowledgement instead of the one
    /// `verdict` would build (HL7 mode: an unframed HL7 ACK; MLLP mode: the ACK or NAK byte),
    /// e.g. the original acknowledgement of a message the host's own store has seen before.
    pub reply: Option<Vec<u8>>,
}

/// AckIn: a client acknowledged data the server sent.
#[derive(Debug)]
pub struct AckInEvent {
    /// The connection.
    pub connection_id: ConnectionId,
    /// ACK (true) or NAK (false).
    pub accepted: bool,
}

/// Error: something went wrong on a connection (or on the server, id 0).
#[derive(Debug)]
pub struct ErrorEvent<'a> {
    /// The connection, or 0.
    pub connection_id: ConnectionId,
    /// The error code (670, 671, 672, socket errors …).
    pub error_code: i32,
    /// What went wrong.
    pub description: &'a str,
}

/// Log: a log line at the given level (1 Info, 2 Verbose, 3 Debug).
#[derive(Debug)]
pub struct LogEvent<'a> {
    /// The connection, or 0.
    pub connection_id: ConnectionId,
    /// Info, Verbose or Debug.
    pub log_level: LogLevel,
    /// The text.
    pub message: &'a str,
    /// "INFO", "VERBOSE" or "DEBUG" (the level's name).
    pub log_type: &'a str,
}

/// SSLClientAuthentication: a TLS client presented its certificate (or none). `accept` starts
/// as the verification result against SSLClientCACerts; it is a recommendation the host may
/// override either way.
#[derive(Debug)]
pub struct SslClientAuthenticationEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// The client's certificate, DER (empty when it sent none).
    pub cert_encoded: &'a [u8],
    /// The certificate's subject DN.
    pub cert_subject: &'a str,
    /// The certificate's issuer DN.
    pub cert_issuer: &'a str,
    /// "OK", or why verification failed.
    pub status: &'a str,
    /// Read-write: keep (true) or close (false) the connection.
    pub accept: bool,
}

/// SSLConnectionRequest: a TLS ClientHello arrived; the host may choose another certificate for
/// this connection from what the client offers.
#[derive(Debug)]
pub struct SslConnectionRequestEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Comma-separated cipher suites the client supports.
    pub supported_cipher_suites: &'a str,
    /// Comma-separated signature schemes the client supports.
    pub supported_signature_algs: &'a str,
    /// Read-write: the certificate to present (None = SSLCert).
    pub certificate: Option<std::sync::Arc<crate::tls::Certificate>>,
}

/// SSLStatus: progress of a secure connection (and, with LogSSLPackets, its records).
#[derive(Debug)]
pub struct SslStatusEvent<'a> {
    /// The connection.
    pub connection_id: ConnectionId,
    /// The text.
    pub message: &'a str,
}

/// Receives a server's events. Every method has an empty default.
pub trait EventHandler: Send + Sync {
    /// ConnectionRequest.
    fn connection_request(&self, _e: &mut ConnectionRequestEvent<'_>) {}
    /// Connected.
    fn connected(&self, _e: &StatusEvent<'_>) {}
    /// Disconnected.
    fn disconnected(&self, _e: &StatusEvent<'_>) {}
    /// StartTransfer.
    fn start_transfer(&self, _e: &TransferBoundaryEvent<'_>) {}
    /// Transfer.
    fn transfer(&self, _e: &TransferEvent<'_>) {}
    /// EndTransfer.
    fn end_transfer(&self, _e: &TransferBoundaryEvent<'_>) {}
    /// Message: the whole message, after EndTransfer.
    fn message(&self, _e: &MessageEvent<'_>) {}
    /// Duplicate: a resend answered from the duplicate window.
    fn duplicate(&self, _e: &DuplicateEvent<'_>) {}
    /// AckOut.
    fn ack_out(&self, _e: &mut AckOutEvent<'_>) {}
    /// AckIn.
    fn ack_in(&self, _e: &AckInEvent) {}
    /// Error.
    fn error(&self, _e: &ErrorEvent<'_>) {}
    /// Log.
    fn log(&self, _e: &LogEvent<'_>) {}
    /// SSLClientAuthentication.
    fn ssl_client_authentication(&self, _e: &mut SslClientAuthenticationEvent<'_>) {}
    /// SSLConnectionRequest.
    fn ssl_connection_request(&self, _e: &mut SslConnectionRequestEvent<'_>) {}
    /// SSLStatus.
    fn ssl_status(&self, _e: &SslStatusEvent<'_>) {}
    /// Called once on the reactor thread when it starts, before any event (bindings attach
    /// the thread to their runtime here).
    fn thread_start(&self) {}
    /// Called once on the reactor thread just before it exits.
    fn thread_stop(&self) {}
}

/// A handler that ignores everything.
pub struct NoHandler;
impl EventHandler for NoHandler {}
