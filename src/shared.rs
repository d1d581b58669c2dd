//! State shared between the host's threads and the reactor thread.
//!
//! Locks here are held only for short copies, never while host code runs, so a callback may
//! call into the server without deadlock.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::config::Settings;
use crate::dispatch::{Event, Reply};
use crate::error::{code, Error, Result};
use crate::events::{ConnectionId, EventHandler, NoHandler};

/// Locks a mutex, recovering the data if a thread panicked while holding it: every critical
/// section here leaves the data consistent, and a poisoned lock must not take the server down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Host-settable fields of a connection (the reference's MLLPConnection).
pub(crate) struct ConnFields {
    pub timeout: u32,
    pub input_data: Vec<u8>,
    pub input_file: String,
    pub input_stream: Option<Box<dyn Read + Send>>,
    /// OutputData (None until a message is kept: no allocation per connection).
    pub output_data: Option<Arc<Vec<u8>>>,
    pub output_file: String,
    pub output_stream: Option<Box<dyn Write + Send>>,
}

/// One connection as the host sees it.
pub(crate) struct ConnShared {
    pub id: ConnectionId,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub connected: AtomicBool,
    pub fields: Mutex<ConnFields>,
    /// Synchronous sends waiting on this connection (for Interrupt and disconnects).
    pub waiters: Mutex<Vec<Arc<Waiter>>>,
    /// Bytes queued for writing and not yet written (for the would-block check).
    pub queued_out: AtomicUsize,
    /// Milliseconds since the server's epoch of the last read or write progress.
    pub activity_ms: AtomicU64,
    /// A message is partly received (its start block came, its end block not yet): set by
    /// the reactor after each turn on the connection, for hosts draining before shutdown.
    pub receiving: AtomicBool,
    /// Negotiated TLS parameters, once the handshake completed (boxed: a plain connection
    /// pays one pointer for them).
    pub tls_info: Mutex<Option<Box<crate::tls::session::TlsInfo>>>,
    /// Heap bytes its protocol state holds (buffer and queue capacities), published by the
    /// reactor after each turn on the connection (`Server::retained_bytes`).
    pub retained: AtomicUsize,
}

impl ConnShared {
    pub fn new(id: ConnectionId, remote: SocketAddr, local: SocketAddr, timeout: u32) -> Self {
        ConnShared {
            id,
            remote,
            local,
            connected: AtomicBool::new(true),
            fields: Mutex::new(ConnFields {
                timeout,
                input_data: Vec::new(),
                input_file: String::new(),
                input_stream: None,
                output_data: None,
                output_file: String::new(),
                output_stream: None,
            }),
            waiters: Mutex::new(Vec::new()),
            queued_out: AtomicUsize::new(0),
            activity_ms: AtomicU64::new(0),
            receiving: AtomicBool::new(false),
            tls_info: Mutex::new(None),
            retained: AtomicUsize::new(0),
        }
    }

    /// Completes every waiting synchronous send with `result`.
    pub fn fail_waiters(&self, err: &Error) {
        for w in lock(&self.waiters).drain(..) {
            w.complete(Err(err.clone()));
        }
    }
}

/// A synchronous send waiting for its acknowledgement (or, in version 1, for its last byte to
/// be written).
pub(crate) struct Waiter {
    result: Mutex<Option<Result<()>>>,
    cv: Condvar,
}

impl Waiter {
    pub fn new() -> Arc<Self> {
        Arc::new(Waiter { result: Mutex::new(None), cv: Condvar::new() })
    }

    /// Sets the result unless one is set already.
    pub fn complete(&self, r: Result<()>) {
        let mut g = lock(&self.result);
        if g.is_none() {
            *g = Some(r);
            self.cv.notify_all();
        }
    }

    /// Waits until completed or until `deadline()` (re-read after each wake, so an inactivity
    /// timeout can move it) passes.
    pub fn wait(&self, mut deadline: impl FnMut() -> Instant) -> Option<Result<()>> {
        let mut g = lock(&self.result);
        loop {
            if let Some(r) = g.take() {
                return Some(r);
            }
            let now = Instant::now();
            let d = deadline();
            if now >= d {
                return None;
            }
            let wait = (d - now).min(Duration::from_millis(200));
            g = self.cv.wait_timeout(g, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// Slots of the connection table: generation per slot so ids are never reused.
#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<(u32, Option<Arc<ConnShared>>)>,
    free: Vec<u32>,
    pub count: usize,
}

impl ConnTable {
    /// Reserves an id for a new connection.
    pub fn reserve(&mut self) -> ConnectionId {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let e = &mut self.slots[slot as usize];
        e.0 = e.0.wrapping_add(1).max(1);
        ConnectionId::new(slot, e.0)
    }

    /// Puts a connection in its reserved slot.
    pub fn insert(&mut self, c: Arc<ConnShared>) {
        let slot = c.id.slot();
        self.slots[slot].1 = Some(c);
        self.count += 1;
    }

    /// Frees a reserved slot that never got a connection.
    pub fn release(&mut self, id: ConnectionId) {
        if let Some(e) = self.slots.get_mut(id.slot()) {
            if e.0 == id.generation() {
                if e.1.take().is_some() {
                    self.count -= 1;
                }
                self.free.push(id.slot() as u32);
            }
        }
    }

    /// The connection with this id, if it is still open.
    pub fn get(&self, id: ConnectionId) -> Option<&Arc<ConnShared>> {
        match self.slots.get(id.slot()) {
            Some((g, Some(c))) if *g == id.generation() => Some(c),
            _ => None,
        }
    }

    /// Ids of open connections, in slot order.
    pub fn ids(&self) -> Vec<ConnectionId> {
        self.slots.iter().filter_map(|(_, c)| c.as_ref().map(|c| c.id)).collect()
    }
}

/// An instruction from a host thread to the reactor.
pub(crate) enum Command {
    /// Accept on this listener (TLS or not: see `Shared::tls_ctx`).
    Listen(mio::net::TcpListener),
    /// Report an error that belongs to no connection through the Error event.
    Report(Error),
    /// Drop the listener; the waiter (if any) completes once it is closed.
    StopListening(Option<Arc<Waiter>>),
    Send {
        id: ConnectionId,
        payload: Vec<u8>,
        waiter: Option<Arc<Waiter>>,
    },
    Disconnect(ConnectionId),
    DisconnectAll,
    /// A host decision made outside the reactor thread (DoEvents, deferred acknowledgement).
    Apply(Reply),
    ResumeReads,
    Exit,
}

/// Events queued for DoEvents, bounded in bytes: past the bound the reactor stops reading.
#[derive(Default)]
pub(crate) struct EventQueue {
    pub items: VecDeque<Event>,
    pub bytes: usize,
    pub reads_paused: bool,
}

/// Queued bytes past which the reactor stops reading until `do_events` catches up.
pub(crate) const QUEUE_HIGH_WATER: usize = 64 * 1024 * 1024;

/// The running reactor thread.
pub(crate) struct ReactorHandle {
    pub waker: Arc<Waker>,
    pub thread: Option<JoinHandle<()>>,
    pub thread_id: ThreadId,
}

/// Everything the host and the reactor share.
pub(crate) struct Shared {
    pub settings: Mutex<Settings>,
    pub settings_gen: AtomicU64,
    /// CloseStreamAfterTransfer, readable without the settings lock on every message.
    pub close_streams: AtomicBool,
    /// KeepOutputData, likewise.
    pub keep_output: AtomicBool,
    pub handler: Mutex<Arc<dyn EventHandler>>,
    pub handler_gen: AtomicU64,
    pub conns: Mutex<ConnTable>,
    pub cmds: Mutex<Vec<Command>>,
    pub reactor: Mutex<Option<ReactorHandle>>,
    pub listening: AtomicBool,
    pub bound_port: std::sync::atomic::AtomicU16,
    pub bound_host: Mutex<String>,
    /// The TLS configuration for connections accepted from now on (None: plain). Set at
    /// StartListening, replaced when a TLS setting changes while listening; the reactor reads
    /// it at each accept, so a connection accepted after the setter returned gets the new one.
    pub tls_ctx: Mutex<Option<Arc<crate::tls::TlsContext>>>,
    pub queue: Mutex<EventQueue>,
    pub queue_cv: Condvar,
    pub epoch: Instant,
    /// The duplicate window every connection shares (DuplicateWindow).
    pub dups: Arc<crate::dedupe::Duplicates>,
    /// The server's counters (shared with every connection's protocol).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Message buffers shared by the connections (see `bufpool`).
    pub pool: Arc<crate::bufpool::BufPool>,
    /// Partial-message bytes buffered across all connections (the BufferedBytes setting;
    /// bounded by MaxBufferedBytes), kept by the reactor.
    pub buffered_bytes: AtomicU64,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            settings: Mutex::new(Settings::default()),
            settings_gen: AtomicU64::new(1),
            close_streams: AtomicBool::new(Settings::default().close_stream_after_transfer),
            keep_output: AtomicBool::new(Settings::default().keep_output_data),
            handler: Mutex::new(Arc::new(NoHandler)),
            handler_gen: AtomicU64::new(1),
            conns: Mutex::new(ConnTable::default()),
            cmds: Mutex::new(Vec::new()),
            reactor: Mutex::new(None),
            listening: AtomicBool::new(false),
            bound_port: std::sync::atomic::AtomicU16::new(0),
            bound_host: Mutex::new(String::new()),
            tls_ctx: Mutex::new(None),
            queue: Mutex::new(EventQueue::default()),
            queue_cv: Condvar::new(),
            epoch: Instant::now(),
            dups: Arc::new(crate::dedupe::Duplicates::new(0)),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            pool: Arc::new(crate::bufpool::BufPool::new()),
            buffered_bytes: AtomicU64::new(0),
        }
    }

    /// Queues a command and wakes the reactor. Fails when no reactor runs.
    pub fn command(&self, c: Command) -> Result<()> {
        let r = lock(&self.reactor);
        let Some(h) = r.as_ref() else {
            return Err(Error::new(code::BAD_STATE, "the server is not running (call StartListening first)"));
        };
        lock(&self.cmds).push(c);
        h.waker.wake().map_err(|e| Error::from_io(&e, "wake reactor"))
    }

    /// True when the calling thread is this server's reactor thread.
    pub fn on_reactor_thread(&self) -> bool {
        lock(&self.reactor).as_ref().is_some_and(|h| h.thread_id == std::thread::current().id())
    }

    /// Milliseconds from the server's epoch to `t`.
    pub fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub fn conn(&self, id: ConnectionId) -> Result<Arc<ConnShared>> {
        lock(&self.conns)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::new(code::NO_SUCH_CONNECTION, format!("no connection with id {id}")))
    }

    pub fn bump_settings(&self) {
        let (close, keep) = {
            let s = lock(&self.settings);
            (s.close_stream_after_transfer, s.keep_output_data)
        };
        self.close_streams.store(close, Ordering::Relaxed);
        self.keep_output.store(keep, Ordering::Relaxed);
        self.settings_gen.fetch_add(1, Ordering::Release);
    }
}
