//! Handing a complete message to the host: StartTransfer, Transfer, storage (output stream,
//! OutputFileName or OutputData), EndTransfer and the AckOut decision.
//!
//! Runs on whichever thread delivers events: the reactor thread in thread mode, the host's
//! thread inside `do_events` otherwise. No lock is held while host code runs.

use std::fs;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::{code, Error};
use crate::events::{AckOutEvent, ErrorEvent, EventHandler, TransferBoundaryEvent, TransferEvent};
use crate::hl7::AckCode;
use crate::shared::{lock, ConnShared};

/// Largest piece of a message given to one Transfer event.
pub(crate) const TRANSFER_CHUNK: usize = 1 << 20;

/// Calls host code, keeping a panic in a Rust handler from unwinding through the reactor.
pub(crate) fn guarded(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// The AckOut decision.
pub(crate) enum Decision {
    /// Accept or refuse now (with the MSA-1 code for a refusal in HL7 mode).
    Now(bool, AckCode),
    /// The host will decide later through `Server::acknowledge`.
    Deferred,
}

/// What became of a delivered message.
pub(crate) struct Delivered {
    /// The acknowledgement decision, when one is due.
    pub decision: Option<Decision>,
    /// A message buffer no longer referenced, for reuse.
    pub reusable: Option<Vec<u8>>,
}

/// Delivers message `seq` of `conn` to `handler`. `ack` says whether an acknowledgement
/// follows (AckOut fires only then).
pub(crate) fn deliver(
    handler: &dyn EventHandler,
    conn: &ConnShared,
    seq: u64,
    data: Arc<Vec<u8>>,
    ack: bool,
    close_streams: bool,
) -> Delivered {
    let id = conn.id;
    guarded(|| handler.start_transfer(&TransferBoundaryEvent { connection_id: id, message_seq: seq }));
    let mut sent = 0u64;
    for piece in data.chunks(TRANSFER_CHUNK) {
        sent += piece.len() as u64;
        guarded(|| handler.transfer(&TransferEvent { connection_id: id, bytes_transferred: sent, data: piece }));
    }
    let (stored, displaced) = store(conn, &data, close_streams);
    if let Err(e) = &stored {
        guarded(|| handler.error(&ErrorEvent { connection_id: id, error_code: e.code, description: &e.message }));
    }
    guarded(|| handler.end_transfer(&TransferBoundaryEvent { connection_id: id, message_seq: seq }));
    let decision = ack.then(|| {
        if stored.is_err() {
            // The host asked for durable output and it failed: never acknowledge.
            return Decision::Now(false, AckCode::AR);
        }
        let mut ev = AckOutEvent {
            connection_id: id,
            message_seq: seq,
            accept: true,
            reject_code: AckCode::AE,
            message: &data,
            defer: false,
        };
        guarded(|| handler.ack_out(&mut ev));
        if ev.defer {
            return Decision::Deferred;
        }
        let code = if ev.reject_code == AckCode::AA { AckCode::AE } else { ev.reject_code };
        Decision::Now(ev.accept, code)
    });
    let reusable = match displaced {
        Some(old) => Arc::try_unwrap(old).ok(),
        None => Arc::try_unwrap(data).ok(),
    };
    Delivered { decision, reusable }
}

/// Stores the message where the host asked: the output stream, else OutputFileName (written
/// and fsynced), else OutputData. Returns the previous OutputData when it was replaced.
fn store(conn: &ConnShared, data: &Arc<Vec<u8>>, close_streams: bool) -> (Result<(), Error>, Option<Arc<Vec<u8>>>) {
    let (stream, file) = {
        let mut f = lock(&conn.fields);
        match f.output_stream.take() {
            Some(s) => (Some(s), String::new()),
            None if !f.output_file.is_empty() => (None, f.output_file.clone()),
            None => return (Ok(()), Some(std::mem::replace(&mut f.output_data, data.clone()))),
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
