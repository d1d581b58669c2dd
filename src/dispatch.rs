//! The one event path: every event the reactor raises is an [`Event`], delivered to the host's
//! [`EventHandler`] by [`deliver`], on the reactor thread in thread mode or inside
//! `Server::do_events` in DoEvents mode. Whatever the host decided comes back as a [`Reply`]
//! that the reactor applies with the same functions in both modes.
//!
//! Delivering a message also stores it where the host asked (output stream, OutputFileName
//! written and fsynced, or OutputData) before AckOut runs, so no acknowledgement can leave
//! before the message is where the host said it would be. No lock is held while host code runs.

use std::fs;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::connection::CharsetInfo;
use crate::error::{code, Error};
use crate::events::{
    AckInEvent, AckOutEvent, ConnectionId, ConnectionRequestEvent, DuplicateEvent, ErrorEvent, EventHandler, LogEvent,
    LogLevel, MessageEvent, RejectCode, SslClientAuthenticationEvent, SslConnectionRequestEvent, SslStatusEvent,
    StatusEvent, TransferBoundaryEvent, TransferEvent, Verdict,
};
use crate::shared::{lock, ConnShared, Shared};
use crate::tls::Certificate;

/// Largest piece of a message given to one Transfer event.
pub(crate) const TRANSFER_CHUNK: usize = 1 << 20;

/// Calls host code, keeping a panic in a Rust handler from unwinding through the reactor.
pub(crate) fn guarded(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// An event for the host, with owned data so that it can wait in the DoEvents queue.
pub(crate) enum Event {
    /// A client asks to connect; `token` names the held socket.
    ConnectionRequest {
        token: u64,
        address: String,
        port: u16,
    },
    Connected {
        id: ConnectionId,
    },
    Disconnected {
        id: ConnectionId,
        code: i32,
        description: String,
    },
    /// A complete message: StartTransfer, Transfer, storage, EndTransfer, Message and (when
    /// `ack`) AckOut.
    Message {
        conn: Arc<ConnShared>,
        seq: u64,
        data: Arc<Vec<u8>>,
        ack: bool,
        charset: CharsetInfo,
    },
    Duplicate {
        id: ConnectionId,
        data: Vec<u8>,
        control_id: String,
        reply: Vec<u8>,
    },
    AckIn {
        id: ConnectionId,
        accepted: bool,
    },
    Error {
        id: ConnectionId,
        error: Error,
    },
    Log {
        id: ConnectionId,
        level: LogLevel,
        message: String,
    },
    SslConnectionRequest {
        id: ConnectionId,
        suites: String,
        signature_schemes: String,
    },
    SslClientAuth {
        id: ConnectionId,
        der: Vec<u8>,
        subject: String,
        issuer: String,
        status: String,
        accept: bool,
    },
    SslStatus {
        id: ConnectionId,
        message: String,
    },
}

impl Event {
    /// True for events that ask the host for no decision (deliverable after the reactor is gone).
    pub fn is_notification(&self) -> bool {
        !matches!(
            self,
            Event::ConnectionRequest { .. }
                | Event::Message { .. }
                | Event::SslConnectionRequest { .. }
                | Event::SslClientAuth { .. }
        )
    }

    /// Bytes the event holds, for the DoEvents queue bound.
    pub fn size(&self) -> usize {
        match self {
            Event::Message { data, .. } => data.len() + 64,
            Event::Duplicate { data, reply, .. } => data.len() + reply.len() + 64,
            _ => 64,
        }
    }
}

/// A host decision for the reactor to apply.
pub(crate) enum Reply {
    /// ConnectionRequest decided.
    Admit { token: u64, accept: bool },
    /// AckOut decided (or `Server::acknowledge` after a deferred AckOut).
    Ack { id: ConnectionId, seq: u64, verdict: Verdict },
    /// AckOut answered with the host's own bytes (or `Server::acknowledge_with`).
    AckWith { id: ConnectionId, seq: u64, reply: Vec<u8> },
    /// SSLConnectionRequest decided: the certificate to present (None: SSLCert).
    SslCert { id: ConnectionId, cert: Option<Arc<Certificate>> },
    /// SSLClientAuthentication decided.
    SslAuth { id: ConnectionId, accept: bool, status: String },
}

/// What delivering an event left for the reactor.
#[derive(Default)]
pub(crate) struct Delivered {
    /// The decision the event asked for, if any (a deferred AckOut has none:
    /// `Server::acknowledge` brings it later).
    pub reply: Option<Reply>,
    /// A message buffer nothing references any more, for reuse.
    pub reusable: Option<Vec<u8>>,
}

/// Delivers `ev` to `h`.
pub(crate) fn deliver(h: &dyn EventHandler, shared: &Shared, ev: Event) -> Delivered {
    if let Event::Message { conn, seq, data, ack, charset } = ev {
        // A connection closed before its message was delivered (DoEvents) gets no events.
        if !conn.connected.load(Ordering::Acquire) {
            return Delivered::default();
        }
        let close_streams = shared.close_streams.load(Ordering::Relaxed);
        let keep = shared.keep_output.load(Ordering::Relaxed);
        let (reply, reusable) = deliver_message(h, shared, &conn, seq, data, ack, &charset, close_streams, keep);
        return Delivered { reply, reusable };
    }
    Delivered { reply: deliver_other(h, ev), reusable: None }
}

fn deliver_other(h: &dyn EventHandler, ev: Event) -> Option<Reply> {
    match ev {
        Event::ConnectionRequest { token, address, port } => {
            let mut e = ConnectionRequestEvent { address: &address, port, accept: true };
            guarded(|| h.connection_request(&mut e));
            Some(Reply::Admit { token, accept: e.accept })
        }
        Event::Connected { id } => {
            guarded(|| h.connected(&StatusEvent { connection_id: id, status_code: 0, description: "OK" }));
            None
        }
        Event::Disconnected { id, code, description } => {
            guarded(|| {
                h.disconnected(&StatusEvent { connection_id: id, status_code: code, description: &description })
            });
            None
        }
        Event::Message { .. } => None,
        Event::Duplicate { id, data, control_id, reply } => {
            guarded(|| {
                h.duplicate(&DuplicateEvent {
                    connection_id: id,
                    message: &data,
                    control_id: &control_id,
                    reply: &reply,
                })
            });
            None
        }
        Event::AckIn { id, accepted } => {
            guarded(|| h.ack_in(&AckInEvent { connection_id: id, accepted }));
            None
        }
        Event::Error { id, error } => {
            guarded(|| h.error(&ErrorEvent { connection_id: id, error_code: error.code, description: &error.message }));
            None
        }
        Event::Log { id, level, message } => {
            guarded(|| {
                h.log(&LogEvent { connection_id: id, log_level: level, message: &message, log_type: level.name() })
            });
            None
        }
        Event::SslConnectionRequest { id, suites, signature_schemes } => {
            let mut e = SslConnectionRequestEvent {
                connection_id: id,
                supported_cipher_suites: &suites,
                supported_signature_algs: &signature_schemes,
                certificate: None,
            };
            guarded(|| h.ssl_connection_request(&mut e));
            Some(Reply::SslCert { id, cert: e.certificate })
        }
        Event::SslClientAuth { id, der, subject, issuer, status, accept } => {
            let mut e = SslClientAuthenticationEvent {
                connection_id: id,
                cert_encoded: &der,
                cert_subject: &subject,
                cert_issuer: &issuer,
                status: &status,
                accept,
            };
            guarded(|| h.ssl_client_authentication(&mut e));
            let accept = e.accept;
            Some(Reply::SslAuth { id, accept, status })
        }
        Event::SslStatus { id, message } => {
            guarded(|| h.ssl_status(&SslStatusEvent { connection_id: id, message: &message }));
            None
        }
    }
}

/// Delivers message `seq` of `conn`: StartTransfer, Transfer pieces, storage, EndTransfer,
/// Message, then AckOut when `ack`. Returns the host's answer (None when none is due or it
/// was deferred) and a buffer free for reuse.
#[allow(clippy::too_many_arguments)]
fn deliver_message(
    h: &dyn EventHandler,
    shared: &Shared,
    conn: &ConnShared,
    seq: u64,
    data: Arc<Vec<u8>>,
    ack: bool,
    cs: &CharsetInfo,
    close_streams: bool,
    keep_output: bool,
) -> (Option<Reply>, Option<Vec<u8>>) {
    let id = conn.id;
    let (charset, encoding) = (cs.raw.as_str(), cs.encoding);
    let boundary = TransferBoundaryEvent { connection_id: id, message_seq: seq, charset, encoding };
    guarded(|| h.start_transfer(&boundary));
    let mut sent = 0u64;
    for piece in data.chunks(TRANSFER_CHUNK) {
        sent += piece.len() as u64;
        guarded(|| h.transfer(&TransferEvent { connection_id: id, bytes_transferred: sent, data: piece }));
    }
    let (stored, displaced) = store(conn, &data, close_streams, keep_output);
    if let Err(e) = &stored {
        shared.metrics.error(e.code);
        guarded(|| h.error(&ErrorEvent { connection_id: id, error_code: e.code, description: &e.message }));
    }
    guarded(|| h.end_transfer(&boundary));
    guarded(|| {
        h.message(&MessageEvent {
            connection_id: id,
            message_seq: seq,
            data: &data,
            charset,
            encoding,
            decoded: cs.decoded,
        })
    });
    let verdict = if !ack {
        None
    } else if stored.is_err() {
        // The host asked for durable output and it failed: never acknowledge.
        Some(Reply::Ack { id, seq, verdict: Verdict::Reject(RejectCode::AR) })
    } else {
        let mut e = AckOutEvent {
            connection_id: id,
            message_seq: seq,
            verdict: Verdict::Accept,
            message: &data,
            defer: false,
            charset,
            encoding,
            reply: None,
        };
        guarded(|| h.ack_out(&mut e));
        match (e.defer, e.reply) {
            (true, _) => None,
            (false, Some(reply)) => Some(Reply::AckWith { id, seq, reply }),
            (false, None) => Some(Reply::Ack { id, seq, verdict: e.verdict }),
        }
    };
    let reusable = match displaced {
        Some(old) => Arc::try_unwrap(old).ok(),
        None => Arc::try_unwrap(data).ok(),
    };
    (verdict, reusable)
}

/// Stores the message where the host asked: the output stream, else OutputFileName (written
/// and fsynced), else OutputData (unless KeepOutputData is False). Returns the previous
/// OutputData when it was replaced.
fn store(
    conn: &ConnShared,
    data: &Arc<Vec<u8>>,
    close_streams: bool,
    keep_output: bool,
) -> (Result<(), Error>, Option<Arc<Vec<u8>>>) {
    let (stream, file) = {
        let mut f = lock(&conn.fields);
        match f.output_stream.take() {
            Some(s) => (Some(s), String::new()),
            None if !f.output_file.is_empty() => (None, f.output_file.clone()),
            None if keep_output => {
                let old = f.output_data.replace(data.clone());
                return (Ok(()), Some(old.unwrap_or_default()));
            }
            None => {
                // Not kept: the message's own buffer is reused (a value kept before the
                // setting changed is dropped).
                let old = f.output_data.take();
                drop(f);
                drop(old);
                return (Ok(()), None);
            }
        }
    };
    if let Some(mut s) = stream {
        // The host's stream runs outside the lock: its callback may call back into the server.
        let r = s.write_all(data).and_then(|_| s.flush());
        if !close_streams {
            let mut f = lock(&conn.fields);
            if f.output_stream.is_none() {
                f.output_stream = Some(s);
            }
        }
        return (r.map_err(|e| Error::new(code::IO, format!("output stream write failed: {e}"))), None);
    }
    (write_durably(&file, data), None)
}

/// Writes `data` to `path` and fsyncs it before returning.
fn write_durably(path: &str, data: &[u8]) -> Result<(), Error> {
    let mut f = fs::File::create(path)
        .map_err(|e| Error::new(code::CANNOT_OPEN_FILE, format!("could not open OutputFileName '{path}': {e}")))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::new(code::IO, format!("could not write OutputFileName '{path}': {e}")))
}
