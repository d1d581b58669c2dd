//! The reference's events and the handler trait that receives them.
//!
//! Payload borrows are valid only during the call. In the default thread mode handlers run on
//! the reactor thread, one at a time, with no library lock held, so a handler may call back into
//! the server (send, disconnect, config reads) freely.

/// A connection id: slot in the low 32 bits, generation in the high 32 bits. Never reused
/// while the server lives, so a stale id answers "no such connection".
pub type ConnectionId = u64;

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
pub struct TransferBoundaryEvent {
    /// The connection.
    pub connection_id: ConnectionId,
    /// Sequence number of the message on this connection (1 for the first).
    pub message_seq: u64,
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
    /// Read-write: ACK (true, the default) or NAK (false).
    pub accept: bool,
    /// Read-write: in HL7 mode, the MSA-1 code sent when `accept` is false: AE (the default)
    /// or AR.
    pub reject_code: crate::hl7::AckCode,
    /// The complete message being acknowledged (empty when it was not delivered).
    pub message: &'a [u8],
    /// Read-write: true leaves the decision open: nothing is sent until the host calls
    /// `Server::acknowledge` for this connection and `message_seq` (for instance after a
    /// group commit on another thread). Replies still leave in message order.
    pub defer: bool,
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
    /// 1, 2 or 3.
    pub log_level: u8,
    /// The text.
    pub message: &'a str,
    /// "INFO", "VERBOSE" or "DEBUG".
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
    fn start_transfer(&self, _e: &TransferBoundaryEvent) {}
    /// Transfer.
    fn transfer(&self, _e: &TransferEvent<'_>) {}
    /// EndTransfer.
    fn end_transfer(&self, _e: &TransferBoundaryEvent) {}
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
