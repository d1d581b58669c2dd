//! The event loop: one mio `Poll` on its own thread owns the listener and every socket. It is
//! a driver, not a protocol: bytes go from each socket through its [`Transport`] into its
//! sans-IO [`Connection`] and back, deadlines go into one timer heap, and whatever the
//! connection reports becomes a [`dispatch::Event`] on the one event path.
//!
//! Host threads talk to it through the command queue in [`Shared`] and a `Waker`. Readiness is
//! edge-triggered and drained; interest is recomputed after every event so that a connection
//! whose output is backed up (or whose replies await decisions) is not read from: a slow peer
//! costs only its own bounded buffers and never delays the others.
//!
//! Server-wide bounds live here too (README "Resource bounds"): the partial-message bytes of
//! all connections are summed after every read and kept within MaxBufferedBytes by closing
//! the connections holding the most (2013); with MaxConnections=0 accepting stops at the
//! descriptor limit less a reserve and resumes as connections close (and every 100 ms while
//! accept fails with EMFILE, since the listener is edge-triggered); IdleTimeout closes silent
//! connections; and the read budget charges a connection for the frames it decodes, so a
//! storm of bad frames is read in small pieces and never stalls the other connections.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::{EventMode, Settings};
use crate::connection::{self, Connection, Time};
use crate::dispatch::{self, guarded, Event, Reply};
use crate::error::{code, Error, Result};
use crate::events::{ConnectionId, EventHandler, LogLevel};
use crate::metrics::TlsFailure;
use crate::proxy::{self, ProxyMode};
use crate::shared::{lock, Command, ConnShared, ReactorHandle, Shared, Waiter, QUEUE_HIGH_WATER};
use crate::tls::Certificate;
use crate::transport::{ReadOutcome, Transport};

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);
/// Bytes read per read call.
const READ_CHUNK: usize = 256 * 1024;
/// Accepted connections waiting for their ConnectionRequest decision (DoEvents mode).
const MAX_HELD: usize = 1024;
/// Reads per readiness event before other connections get their turn (fairness).
const READ_BUDGET: usize = 16;
/// Refused or discarded frames (see `Connection::work`) that cost as much of the read budget
/// as one read: a chunk of bad frames ends the connection's turn early.
const WORK_PER_READ: u64 = 4096;
/// A read that found more work than this puts the connection in storm mode: it is then read
/// STORM_CHUNK bytes per turn until its reads are ordinary again (each turn's work stays small,
/// so other connections wait for it no more than a fraction of a millisecond).
const STORM_WORK: u64 = 1024;
/// Bytes read per turn from a connection in storm mode.
const STORM_CHUNK: usize = 16 * 1024;
/// How often accepting is retried while it fails for want of descriptors (EMFILE, ENFILE).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// A pause in accepting (limit reached, descriptors ran out) is reported at most this often.
const PAUSE_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Accepted connections still delivering their PROXY protocol header (ProxyProtocol); the
/// rest wait in the kernel's backlog.
const MAX_PROXY_PENDING: usize = 1024;
/// A quiescent connection (nothing buffered, nothing pending) quiet for this long gives its
/// buffers back. Not at once: a sender in a closed loop is quiescent between its messages, and
/// returning and re-making its buffers each time would cost more than the message.
const IDLE_RELEASE: Duration = Duration::from_millis(10);
/// Least time between two checks of the shared buffer pool for entries to expire.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// The allocator is asked to give freed memory back at most this often (`trim_heap`).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read at the start of a frame on a connection whose previous message was large: just
/// the start block and a little content, so that the rest is read straight into the frame's
/// buffer (`Connection::direct_input`) instead of being copied there.
const LEAD_READ: usize = 512;
/// The bit that marks the token of a connection still reading its PROXY header (connection
/// tokens are `generation << 32 | slot`, and no slot is reused 2^31 times).
const PROXY_TOKEN: usize = 1 << 63;

/// How to read a connection after a readiness event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadHow {
    /// Not readable.
    No,
    /// Readable (an edge): a short plain read means drained.
    Edge,
    /// Read until WouldBlock or end of stream (the peer closed, or a revisit).
    Drain,
}

struct Conn {
    shared: Arc<ConnShared>,
    stream: TcpStream,
    proto: Connection<Arc<Waiter>>,
    transport: Transport,
    registered: Option<Interest>,
    peer_closed: bool,
    /// The deadline this connection has in the timer heap (at most one live entry, so the
    /// heap stays bounded by the number of connections whatever the message rate).
    armed: Option<Instant>,
    /// Why the connection closes once its output is flushed (None: the peer closed; boxed,
    /// as it is rare and every connection pays for the field).
    closing: Option<Box<Error>>,
    /// An I/O failure met while applying a decision inline; the next settle closes.
    failed: Option<io::Error>,
    /// Bytes that arrived behind the PROXY protocol header in its last read: they are read
    /// (by TLS or MLLP) before the socket.
    prefix: Vec<u8>,
    /// Its PROXY header was a LOCAL command (the proxy's own connection, a health check) and
    /// no data came since: a reset is then logged, not reported as an error.
    local_idle: bool,
    /// Why its TLS handshake failed, once known (counted when the connection closes).
    tls_failure: Option<TlsFailure>,
    /// On the reactor's list of connections to give their buffers back once quiet.
    listed: bool,
    /// Its partial-message bytes as last counted in the server-wide total (MaxBufferedBytes).
    buffered: usize,
    /// The last time bytes were read from or written to it (IdleTimeout).
    last_io: Instant,
    /// Bytes read per read call: READ_CHUNK, or STORM_CHUNK while its input is a storm of
    /// bad frames.
    read_cap: usize,
}

/// An accepted connection reading its PROXY protocol header, before ConnectionRequest.
struct ProxyPending {
    stream: TcpStream,
    /// The socket's peer (the proxy).
    peer: SocketAddr,
    parser: proxy::Parser,
    deadline: Instant,
    /// ProxyHeaderTimeout when it was accepted.
    timeout_secs: u32,
}

/// An accepted socket waiting for its ConnectionRequest decision.
struct Held {
    stream: TcpStream,
    /// The client: the socket's peer, or the one its PROXY header names.
    addr: SocketAddr,
    /// Bytes read behind the PROXY header (see [`Conn::prefix`]).
    prefix: Vec<u8>,
    /// The PROXY header was a LOCAL command.
    local: bool,
}

/// A connection's socket, read after the bytes that came behind its PROXY header.
struct Input<'a> {
    prefix: &'a mut Vec<u8>,
    sock: &'a mut TcpStream,
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix.is_empty() {
            return self.sock.read(buf);
        }
        let n = buf.len().min(self.prefix.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.drain(..n);
        if self.prefix.is_empty() {
            *self.prefix = Vec::new();
        }
        Ok(n)
    }
}

/// Spawns the reactor thread for `shared`.
pub(crate) fn spawn(shared: &Arc<Shared>) -> Result<ReactorHandle> {
    let poll = Poll::new().map_err(|e| Error::from_io(&e, "create poll"))?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| Error::from_io(&e, "create waker"))?);
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("mllp-reactor".into())
        .spawn(move || Reactor::new(s, poll).run())
        .map_err(|e| Error::from_io(&e, "spawn reactor thread"))?;
    let thread_id = thread.thread().id();
    Ok(ReactorHandle { waker, thread: Some(thread), thread_id })
}

struct Reactor {
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    /// Boxed: a slot is a pointer, so the table's spare capacity costs 8 bytes per slot and
    /// taking a connection out for a turn moves no struct.
    conns: Vec<Option<Box<Conn>>>,
    settings: Settings,
    /// The protocol settings every connection shares.
    proto_cfg: Arc<connection::Config>,
    settings_gen: u64,
    handler: Arc<dyn EventHandler>,
    handler_gen: u64,
    timers: BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    buf: Vec<u8>,
    /// Accepted sockets waiting for their ConnectionRequest decision.
    held: HashMap<u64, Held>,
    next_hold: u64,
    /// Accepted sockets reading their PROXY header (keys from `next_hold`), and their
    /// deadlines (one entry each, removed with the connection).
    proxied: HashMap<u64, ProxyPending>,
    proxy_timers: BTreeSet<(Instant, u64)>,
    /// A bound on held or proxied connections stopped accepting and room was made since:
    /// accept again at the end of the turn.
    accept_again: bool,
    /// Connections to read again (read budget used up, or a decision unpaused them);
    /// readiness is edge-triggered, so they are revisited explicitly.
    backlog: Vec<ConnectionId>,
    exit: bool,
    /// The time of the current turn (one clock read per connection turn, not per call).
    now: Time,
    clock: Clock,
    /// Connections holding buffers: checked each IDLE_RELEASE, they give them back once
    /// quiescent and quiet that long.
    sweep_list: Vec<ConnectionId>,
    /// When the list and the shared buffer pool are next checked (None: both are empty).
    next_sweep: Option<Instant>,
    /// Buffers were freed since the allocator last gave free memory back (see `trim_heap`).
    freed_since_trim: bool,
    last_trim: Option<Instant>,
    /// Partial-message bytes of every connection (the server-wide MaxBufferedBytes budget).
    buffered_total: u64,
    /// The connection limit when MaxConnections is 0: the descriptor limit less a reserve.
    fd_cap: usize,
    /// Accepting stopped at the connection limit derived from the descriptor limit (or for
    /// want of descriptors): resumed when a connection closes or at `accept_retry`.
    accept_paused: bool,
    /// When accepting is tried again after it failed for want of descriptors.
    accept_retry: Option<Instant>,
    /// When a pause in accepting was last reported.
    pause_reported: Option<Instant>,
}

/// The connection limit for MaxConnections=0: RLIMIT_NOFILE's soft limit less a reserve of
/// max(64, limit/8) descriptors, so that the host's files, database connections and metrics
/// endpoint keep working with every connection in use.
pub(crate) fn derived_connection_limit() -> usize {
    let soft = nofile_limit();
    soft.saturating_sub(fd_reserve(soft)).max(1)
}

/// Descriptors kept out of the connection limit derived from a descriptor limit of `soft`.
fn fd_reserve(soft: usize) -> usize {
    (soft / 8).max(64)
}

#[cfg(unix)]
fn nofile_limit() -> usize {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `r`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return 1 << 20;
    }
    usize::try_from(r.rlim_cur).unwrap_or(1 << 20)
}

#[cfg(not(unix))]
fn nofile_limit() -> usize {
    // No per-process descriptor limit to derive from (Windows' socket limit is far higher).
    1 << 16
}

/// Reads the clocks cheaply: the monotonic clock each time; the wall clock (only needed in
/// whole seconds, for HL7 timestamps) is re-read once a second by [`Clock::refresh`] and
/// derived from the monotonic clock in between.
struct Clock {
    wall_ref: (Instant, std::time::SystemTime),
}

impl Clock {
    fn new() -> Self {
        Clock { wall_ref: (Instant::now(), std::time::SystemTime::now()) }
    }

    /// Once per loop turn: a wall-clock reference older than a second is read again.
    fn refresh(&mut self) {
        let mono = Instant::now();
        if mono.saturating_duration_since(self.wall_ref.0) >= Duration::from_secs(1) {
            self.wall_ref = (mono, std::time::SystemTime::now());
        }
    }

    fn now(&self) -> Time {
        Time::with_wall_ref(Instant::now(), self.wall_ref)
    }
}

impl Reactor {
    fn new(shared: Arc<Shared>, poll: Poll) -> Self {
        let settings = lock(&shared.settings).clone();
        let handler = lock(&shared.handler).clone();
        Reactor {
            settings_gen: shared.settings_gen.load(Ordering::Acquire),
            handler_gen: shared.handler_gen.load(Ordering::Acquire),
            shared,
            poll,
            listener: None,
            conns: Vec::new(),
            proto_cfg: Arc::new(connection::Config::from_settings(&settings)),
            settings,
            handler,
            timers: BinaryHeap::new(),
            buf: vec![0; READ_CHUNK],
            held: HashMap::new(),
            next_hold: 1,
            proxied: HashMap::new(),
            proxy_timers: BTreeSet::new(),
            accept_again: false,
            backlog: Vec::new(),
            exit: false,
            now: Time::now(),
            clock: Clock::new(),
            sweep_list: Vec::new(),
            next_sweep: None,
            freed_since_trim: false,
            last_trim: None,
            buffered_total: 0,
            fd_cap: derived_connection_limit(),
            accept_paused: false,
            accept_retry: None,
            pause_reported: None,
        }
    }

    fn run(mut self) {
        {
            // Scoped: the reactor must not keep the first handler (and its user data) alive.
            let h = self.handler.clone();
            guarded(|| h.thread_start());
        }
        let mut events = Events::with_capacity(1024);
        while !self.exit {
            self.refresh();
            let timeout = if self.backlog.is_empty() {
                let conn = self.timers.peek().map(|Reverse((t, _))| *t);
                let proxy = self.proxy_timers.first().map(|(t, _)| *t);
                [conn, proxy, self.next_sweep, self.accept_retry]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| t.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.notify(Event::Error { id: ConnectionId::NONE, error: Error::from_io(&e, "poll") });
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            self.refresh();
            self.clock.refresh();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept_all(),
                    Token(t) if t & PROXY_TOKEN != 0 => self.on_proxy_ready((t & !PROXY_TOKEN) as u64),
                    Token(t) => {
                        let read = if ev.is_read_closed() || ev.is_error() {
                            ReadHow::Drain
                        } else if ev.is_readable() {
                            ReadHow::Edge
                        } else {
                            ReadHow::No
                        };
                        self.on_ready(ConnectionId::from_raw(t as u64), read, ev.is_writable() || ev.is_error());
                    }
                }
            }
            for id in std::mem::take(&mut self.backlog) {
                self.on_ready(id, ReadHow::Drain, false);
            }
            self.run_commands();
            self.run_timers();
            if self.accept_retry.is_some_and(|t| t <= Instant::now()) {
                self.accept_retry = None;
                self.accept_again = true;
            }
            if std::mem::take(&mut self.accept_again) {
                self.accept_all();
            }
        }
        self.listener = None;
        self.close_all();
        let h = self.handler.clone();
        guarded(|| h.thread_stop());
    }

    /// Picks up changed settings and handlers (an atomic load each; locks only on change).
    fn refresh(&mut self) {
        let g = self.shared.settings_gen.load(Ordering::Acquire);
        if g != self.settings_gen {
            self.settings_gen = g;
            self.settings = lock(&self.shared.settings).clone();
            self.proto_cfg = Arc::new(connection::Config::from_settings(&self.settings));
            for c in self.conns.iter_mut().flatten() {
                c.proto.reconfigure(self.proto_cfg.clone());
            }
        }
        let g = self.shared.handler_gen.load(Ordering::Acquire);
        if g != self.handler_gen {
            self.handler_gen = g;
            self.handler = lock(&self.shared.handler).clone();
        }
    }

    // ----- the event path -----

    fn queued_mode(&self) -> bool {
        self.settings.event_mode == EventMode::DoEvents
    }

    fn enqueue(&self, ev: Event) {
        let mut g = lock(&self.shared.queue);
        g.bytes += ev.size();
        g.items.push_back(ev);
        if g.bytes > QUEUE_HIGH_WATER {
            g.reads_paused = true;
        }
        self.shared.queue_cv.notify_all();
    }

    /// Raises an event that asks for a decision; in thread mode the decision is applied at
    /// once (to `c` when it concerns the connection at hand), in DoEvents mode it comes back
    /// as `Command::Apply` and goes through the same [`Reactor::apply`].
    fn emit(&mut self, mut c: Option<&mut Conn>, ev: Event) {
        if let Event::Error { error, .. } = &ev {
            self.shared.metrics.error(error.code);
        }
        if self.queued_mode() {
            self.enqueue(ev);
            return;
        }
        let d = dispatch::deliver(&*self.handler, &self.shared, ev);
        if let (Some(c), Some(buf)) = (c.as_deref_mut(), d.reusable) {
            c.proto.recycle(buf, self.now.mono);
        }
        if let Some(r) = d.reply {
            self.apply(c, r);
        }
    }

    /// Raises an event that asks for no decision.
    fn notify(&mut self, ev: Event) {
        self.emit(None, ev);
    }

    fn log(&mut self, id: ConnectionId, level: LogLevel, msg: impl FnOnce() -> String) {
        if self.settings.log_level >= level.as_u8() {
            self.notify(Event::Log { id, level, message: msg() });
        }
    }

    fn error(&mut self, id: ConnectionId, error: Error) {
        self.notify(Event::Error { id, error });
    }

    /// Applies a host decision. `c` is the connection at hand (the caller settles it); any
    /// other connection is looked up and settled here.
    fn apply(&mut self, c: Option<&mut Conn>, r: Reply) {
        match r {
            Reply::Admit { token, accept } => {
                if let Some(held) = self.held.remove(&token) {
                    let addr = held.addr;
                    if accept {
                        self.admit(held);
                    } else {
                        self.shared.metrics.connection_refused();
                        self.log(ConnectionId::NONE, LogLevel::Info, || {
                            format!("connection from {addr} refused by ConnectionRequest")
                        });
                    }
                    if self.held.len() + 1 == MAX_HELD || (self.accept_paused && !accept) {
                        self.accept_again = true;
                    }
                }
            }
            Reply::Ack { id, seq, verdict } => self.with_conn(c, id, |this, c| {
                c.proto.decide(seq, verdict, this.now);
                Ok(())
            }),
            Reply::AckWith { id, seq, reply } => self.with_conn(c, id, |this, c| {
                c.proto.decide_with(seq, reply, this.now);
                Ok(())
            }),
            Reply::SslCert { id, cert } => self.with_conn(c, id, |this, c| this.choose_certificate(c, cert)),
            Reply::SslAuth { id, accept, status } => self.with_conn(c, id, |this, c| {
                if c.transport.awaiting_client_decision() {
                    if let Err(e) = c.transport.client_decided(accept, &status) {
                        c.tls_failure = Some(TlsFailure::ClientRejected);
                        this.error(c.shared.id, e.clone());
                        // Closed once the close_notify is written (see `settle`).
                        c.peer_closed = true;
                        c.closing = Some(Box::new(e));
                    } else {
                        this.shared.metrics.tls_completed();
                    }
                    // Data that arrived meanwhile is read now.
                    this.backlog.push(c.shared.id);
                }
                Ok(())
            }),
        }
    }

    fn with_conn(
        &mut self,
        c: Option<&mut Conn>,
        id: ConnectionId,
        f: impl FnOnce(&mut Self, &mut Conn) -> io::Result<()>,
    ) {
        match c {
            Some(c) if c.shared.id == id => {
                // The caller drains what this produces (no recursion per pipelined message).
                if let Err(e) = f(self, c) {
                    c.failed = Some(e);
                }
            }
            _ => {
                let Some(mut c) = self.take(id) else { return };
                let r = f(self, &mut c);
                self.settle(c, r);
            }
        }
    }

    /// Turns what the connection reports into events.
    fn drain_proto(&mut self, c: &mut Conn) {
        let id = c.shared.id;
        while let Some(ev) = c.proto.poll_event() {
            match ev {
                connection::Event::Message { seq, data, ack, charset } => {
                    let conn = c.shared.clone();
                    self.emit(Some(c), Event::Message { conn, seq, data: Arc::new(data), ack, charset })
                }
                connection::Event::Duplicate { data, control_id, reply } => {
                    self.notify(Event::Duplicate { id, data, control_id, reply })
                }
                connection::Event::AckIn { accepted } => self.notify(Event::AckIn { id, accepted }),
                connection::Event::SendDone { waiter, result } => {
                    waiter.complete(result);
                    lock(&c.shared.waiters).retain(|x| !Arc::ptr_eq(x, &waiter));
                }
                connection::Event::Error(error) => self.error(id, error),
                connection::Event::Log { level, message } => self.notify(Event::Log { id, level, message }),
            }
        }
        for message in c.transport.take_status() {
            self.notify(Event::SslStatus { id, message });
        }
    }

    // ----- accepting -----

    fn accept_all(&mut self) {
        // StopListening may be queued behind this readiness event: honour it now.
        if !self.shared.listening.load(Ordering::Acquire) {
            return;
        }
        self.now = self.clock.now();
        loop {
            // Connections waiting for ConnectionRequest are bounded; the rest wait in the
            // kernel's backlog until the host catches up (see Reply::Admit).
            if self.held.len() >= MAX_HELD || self.proxied.len() >= MAX_PROXY_PENDING {
                return;
            }
            // MaxConnections=0: at the limit derived from the descriptor limit the rest wait
            // in the backlog (accepting resumes when a connection closes).
            if self.settings.max_connections == 0 && self.open_count() >= self.fd_cap {
                self.pause_accepting(None);
                return;
            }
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((stream, addr)) => {
                    self.accept_paused = false;
                    self.on_accept(stream, addr)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) =>
                {
                    // Out of descriptors: the listener is edge-triggered, so the backlog is
                    // retried on a timer and after every close, not at the next arrival.
                    self.pause_accepting(Some(e));
                    return;
                }
                Err(e) => {
                    self.error(ConnectionId::NONE, Error::from_io(&e, "accept"));
                    return;
                }
            }
        }
    }

    /// Connections open or being admitted (what the derived connection limit bounds).
    fn open_count(&self) -> usize {
        lock(&self.shared.conns).count + self.held.len() + self.proxied.len()
    }

    /// Stops accepting until a connection closes; `failure` (descriptors ran out) also
    /// retries every ACCEPT_RETRY. Reported at most once per PAUSE_REPORT_INTERVAL, not per
    /// retry or per connection let in.
    fn pause_accepting(&mut self, failure: Option<io::Error>) {
        let now = Instant::now();
        if failure.is_some() {
            self.accept_retry = Some(now + ACCEPT_RETRY);
        }
        self.accept_paused = true;
        if self.pause_reported.is_some_and(|t| now < t + PAUSE_REPORT_INTERVAL) {
            return;
        }
        self.pause_reported = Some(now);
        match failure {
            Some(e) => self.error(ConnectionId::NONE, Error::from_io(&e, "accept (retried every 100 ms)")),
            None => {
                let (cap, soft) = (self.fd_cap, nofile_limit());
                self.log(ConnectionId::NONE, LogLevel::Info, || {
                    format!("connection limit {cap} reached (descriptor limit {soft} less a reserve of {}): new connections wait until one closes", fd_reserve(soft))
                });
            }
        }
    }

    fn on_accept(&mut self, stream: TcpStream, addr: SocketAddr) {
        let max = self.settings.max_connections as usize;
        if max > 0 && lock(&self.shared.conns).count + self.held.len() + self.proxied.len() >= max {
            let e = Error::new(
                code::TOO_MANY_CONNECTIONS,
                format!("connection from {addr} refused: MaxConnections ({max}) reached"),
            );
            self.shared.metrics.connection_refused();
            self.error(ConnectionId::NONE, e);
            return;
        }
        if self.settings.proxy_protocol != ProxyMode::None {
            self.start_proxy(stream, addr);
            return;
        }
        self.request(Held { stream, addr, prefix: Vec::new(), local: false });
    }

    /// Holds an accepted socket and asks the host (ConnectionRequest) whether to admit it.
    fn request(&mut self, held: Held) {
        let token = self.next_hold;
        self.next_hold += 1;
        let (address, port) = (held.addr.ip().to_string(), held.addr.port());
        self.held.insert(token, held);
        self.emit(None, Event::ConnectionRequest { token, address, port });
    }

    // ----- the PROXY protocol header -----

    /// ProxyProtocol: the connection first delivers its header, within ProxyHeaderTimeout.
    fn start_proxy(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let key = self.next_hold;
        self.next_hold += 1;
        let tok = Token(PROXY_TOKEN | key as usize);
        if let Err(e) = self.poll.registry().register(&mut stream, tok, Interest::READABLE) {
            self.error(ConnectionId::NONE, Error::from_io(&e, "register connection"));
            return;
        }
        let timeout_secs = self.settings.proxy_header_timeout.max(1);
        let deadline = self.now.mono + Duration::from_secs(timeout_secs as u64);
        let parser = proxy::Parser::new(self.settings.proxy_protocol);
        self.proxy_timers.insert((deadline, key));
        self.proxied.insert(key, ProxyPending { stream, peer, parser, deadline, timeout_secs });
        // The header may be there already.
        self.on_proxy_ready(key);
    }

    /// Reads what the header still needs (never more than a v2 header's announced length, so
    /// at most a v1 line's worth of bytes behind it is read here and kept).
    fn on_proxy_ready(&mut self, key: u64) {
        let Some(mut p) = self.proxied.remove(&key) else { return };
        self.now = self.clock.now();
        // Each pass takes at least one byte and the parser decides within MAX_HEADER bytes.
        loop {
            let want = p.parser.max_read().clamp(1, proxy::MAX_HEADER);
            match p.stream.read(&mut self.buf[..want]) {
                Ok(0) => return self.proxy_failed(key, p, None),
                Ok(n) => match p.parser.feed(&self.buf[..n]) {
                    proxy::Progress::NeedMore => {}
                    proxy::Progress::Done { header, consumed } => {
                        let prefix = self.buf[consumed..n].to_vec();
                        return self.proxy_done(key, p, header, prefix);
                    }
                    proxy::Progress::Invalid(reason) => return self.proxy_failed(key, p, Some(reason)),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if p.parser.buffered() == 0 && is_reset(&e) => return self.proxy_failed(key, p, None),
                Err(e) => return self.proxy_failed(key, p, Some(format!("read failed: {e}"))),
            }
        }
        self.proxied.insert(key, p);
    }

    /// The connection leaves the PROXY stage: its deadline and registration go.
    fn proxy_leave(&mut self, key: u64, p: &mut ProxyPending) {
        self.proxy_timers.remove(&(p.deadline, key));
        let _ = self.poll.registry().deregister(&mut p.stream);
        if self.proxied.len() + 1 == MAX_PROXY_PENDING || self.accept_paused {
            self.accept_again = true;
        }
    }

    fn proxy_done(&mut self, key: u64, mut p: ProxyPending, header: proxy::Header, prefix: Vec<u8>) {
        self.proxy_leave(key, &mut p);
        let peer = p.peer;
        let v = match header.version {
            proxy::Version::V1 => 1,
            proxy::Version::V2 => 2,
        };
        self.log(ConnectionId::NONE, LogLevel::Verbose, || match header.addresses {
            proxy::Addresses::Proxy { source, destination } => {
                format!("PROXY v{v} header from {peer}: client {source}, destination {destination}")
            }
            proxy::Addresses::Local => format!("PROXY v{v} LOCAL header from {peer}: the proxy's own connection"),
            proxy::Addresses::Unknown => format!("PROXY v{v} header from {peer} without a TCP client address"),
        });
        let local = header.addresses == proxy::Addresses::Local;
        self.request(Held { stream: p.stream, addr: header.client(peer), prefix, local });
    }

    /// Closes a connection that sent no valid header (`reason`), or closed before sending a
    /// byte (None: a health check, say — a Log line, not an error).
    fn proxy_failed(&mut self, key: u64, mut p: ProxyPending, reason: Option<String>) {
        self.proxy_leave(key, &mut p);
        let peer = p.peer;
        let reason = match reason {
            Some(r) => r,
            None if p.parser.buffered() == 0 => {
                self.log(ConnectionId::NONE, LogLevel::Info, || {
                    format!("connection from {peer} closed before sending a PROXY header")
                });
                return;
            }
            None => format!("closed after {} bytes of a PROXY header", p.parser.buffered()),
        };
        let e = Error::new(code::PROXY_HEADER, format!("connection from {peer} closed: {reason}"));
        self.shared.metrics.connection_refused();
        self.error(ConnectionId::NONE, e);
    }

    fn admit(&mut self, held: Held) {
        let Held { stream, addr, prefix, local: proxy_local } = held;
        let s = &self.settings;
        apply_socket_options(&stream, s);
        let local = stream.local_addr().unwrap_or(addr);
        let id = lock(&self.shared.conns).reserve();
        let shared = Arc::new(ConnShared::new(id, addr, local, s.default_timeout));
        let mut conn = Box::new(Conn {
            shared: shared.clone(),
            stream,
            proto: Connection::new(self.proto_cfg.clone()),
            transport: Transport::new(lock(&self.shared.tls_ctx).clone(), self.now.mono),
            registered: None,
            peer_closed: false,
            armed: None,
            closing: None,
            failed: None,
            local_idle: proxy_local && prefix.is_empty(),
            prefix,
            tls_failure: None,
            listed: false,
            buffered: 0,
            last_io: self.now.mono,
            read_cap: READ_CHUNK,
        });
        conn.proto.set_pool(self.shared.pool.clone());
        conn.proto.set_duplicates(self.shared.dups.clone());
        conn.proto.set_metrics(self.shared.metrics.clone());
        if let Err(e) = self.poll.registry().register(&mut conn.stream, token(id), Interest::READABLE) {
            lock(&self.shared.conns).release(id);
            self.error(ConnectionId::NONE, Error::from_io(&e, "register connection"));
            return;
        }
        conn.registered = Some(Interest::READABLE);
        lock(&self.shared.conns).insert(shared);
        self.shared.metrics.connection_accepted();
        let i = id.slot();
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.arm_timer(&mut conn);
        if !conn.prefix.is_empty() {
            // Bytes behind the PROXY header: read them without waiting for readiness.
            self.backlog.push(id);
        }
        self.conns[i] = Some(conn);
        self.notify(Event::Connected { id });
        self.log(id, LogLevel::Info, || format!("connection {id} from {addr} accepted"));
    }

    // ----- connection I/O -----

    fn take(&mut self, id: ConnectionId) -> Option<Box<Conn>> {
        let c = self.conns.get_mut(id.slot())?;
        match c {
            Some(conn) if conn.shared.id == id => c.take(),
            _ => None,
        }
    }

    fn put(&mut self, conn: Box<Conn>) {
        let i = conn.shared.id.slot();
        self.conns[i] = Some(conn);
    }

    fn on_ready(&mut self, id: ConnectionId, read: ReadHow, writable: bool) {
        let Some(mut c) = self.take(id) else { return };
        self.now = self.clock.now();
        let mut result = Ok(());
        if writable {
            result = self.flush(&mut c);
        }
        if read != ReadHow::No && result.is_ok() {
            result = self.read(&mut c, read);
        }
        self.settle(c, result);
    }

    /// After I/O: flush replies, then close the connection or update its interest and timer.
    /// Either path turns what the connection reported into events (flush and close drain it).
    fn settle(&mut self, mut c: Box<Conn>, mut result: io::Result<()>) {
        if let Some(e) = c.failed.take() {
            result = Err(e);
        }
        if self.buffered_total > self.settings.max_buffered_bytes && self.enforce_budget(&c) {
            let _ = self.flush(&mut c);
            return self.evict(c);
        }
        if result.is_ok() {
            result = self.flush(&mut c);
        }
        match result {
            Err(e) if c.local_idle && is_reset(&e) => {
                // HAProxy resets its health-check connections: not an error.
                let id = c.shared.id;
                self.log(id, LogLevel::Info, || format!("connection {id} (PROXY LOCAL) reset by the proxy"));
                let err = Error::from_io(&e, "connection");
                self.close(c, err.code, &err.message);
            }
            Err(e) => {
                let err = c.transport.error(&e);
                if c.transport.handshake_pending() && c.tls_failure.is_none() {
                    c.tls_failure = Some(Transport::failure_reason(&e));
                }
                self.error(c.shared.id, err.clone());
                self.close(c, err.code, &err.message);
            }
            Ok(()) if c.peer_closed && c.proto.is_idle() && !c.transport.has_pending_records() => {
                match c.closing.take() {
                    Some(e) => self.close(c, e.code, &e.message),
                    None => self.close(c, 0, "OK"),
                }
            }
            Ok(()) => {
                c.shared.receiving.store(c.proto.in_frame(), Ordering::Relaxed);
                self.update_interest(&mut c);
                self.arm_timer(&mut c);
                self.note_retained(&mut c);
                self.put(c);
            }
        }
    }

    /// After a turn on a connection: publishes what it holds (`Server::retained_bytes`) and
    /// lists a connection holding buffers, so that it gives them back once it is quiescent and
    /// quiet for IDLE_RELEASE (see `sweep`).
    fn note_retained(&mut self, c: &mut Conn) {
        let held = c.proto.retained_bytes();
        c.shared.retained.store(held, Ordering::Relaxed);
        if held > 0 && !c.listed {
            c.listed = true;
            self.sweep_list.push(c.shared.id);
        }
        let due = self.now.mono + IDLE_RELEASE;
        if self.next_sweep.map_or(true, |t| t > due) && (c.listed || self.shared.pool.bytes() > 0) {
            self.next_sweep = Some(due);
        }
    }

    /// When due: listed connections that are quiescent (nothing buffered, nothing pending) and
    /// were quiet for IDLE_RELEASE give their buffers back, message buffers to the shared pool
    /// where the next message of any connection takes them (so an idle connection holds none,
    /// and memory in use follows the messages in flight, not the connections); pooled buffers
    /// unused for `bufpool::EXPIRY` are freed.
    fn sweep(&mut self) {
        let now = self.now.mono;
        if self.next_sweep.map_or(true, |t| now < t) {
            return;
        }
        let quiet_ms = self.shared.ms_at(now).saturating_sub(IDLE_RELEASE.as_millis() as u64);
        let mut list = std::mem::take(&mut self.sweep_list);
        list.retain(|&id| {
            let Some(c) = self.conns.get_mut(id.slot()).and_then(|c| c.as_mut()).filter(|c| c.shared.id == id) else {
                return false;
            };
            if c.shared.activity_ms.load(Ordering::Relaxed) > quiet_ms || !c.proto.release_idle(now) {
                return true;
            }
            c.shared.retained.store(c.proto.retained_bytes(), Ordering::Relaxed);
            c.listed = false;
            self.freed_since_trim = true;
            false
        });
        self.sweep_list = list;
        let pooled = self.shared.pool.bytes();
        let pool_next = self.shared.pool.expire(now).map(|t| t.max(now + SWEEP_INTERVAL));
        self.freed_since_trim |= self.shared.pool.bytes() < pooled;
        self.trim_heap(now);
        self.next_sweep = if self.sweep_list.is_empty() { pool_next } else { Some(now + IDLE_RELEASE) };
    }

    /// After buffers were freed, at most once per TRIM_INTERVAL: asks glibc's allocator to
    /// give free pages inside its heap back to the system. Freed message buffers below the
    /// mmap threshold stay resident otherwise, and idle connections that once sent large
    /// messages would go on costing their memory.
    fn trim_heap(&mut self, now: Instant) {
        if !self.freed_since_trim || self.last_trim.is_some_and(|t| now < t + TRIM_INTERVAL) {
            return;
        }
        self.freed_since_trim = false;
        self.last_trim = Some(now);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim takes no pointers; it only returns free heap pages to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    fn reads_paused(&self, c: &Conn) -> bool {
        c.peer_closed || !c.proto.wants_read() || (self.queued_mode() && lock(&self.shared.queue).reads_paused)
    }

    fn update_interest(&mut self, c: &mut Conn) {
        let (read, write) = c.transport.interest(!self.reads_paused(c), c.proto.wants_write());
        let read = read && !c.peer_closed;
        let want = match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        };
        if want == c.registered {
            return;
        }
        let reg = self.poll.registry();
        let r = match (c.registered, want) {
            (Some(_), Some(w)) => reg.reregister(&mut c.stream, token(c.shared.id), w),
            (None, Some(w)) => reg.register(&mut c.stream, token(c.shared.id), w),
            (Some(_), None) => reg.deregister(&mut c.stream),
            (None, None) => Ok(()),
        };
        if r.is_ok() {
            c.registered = want;
        }
    }

    /// Puts the connection's next deadline (protocol, TLS handshake or IdleTimeout) in the
    /// timer heap unless an entry at or before it is there already.
    fn arm_timer(&mut self, c: &mut Conn) {
        let next =
            [c.proto.poll_timeout(), c.transport.poll_timeout(), self.idle_deadline(c)].into_iter().flatten().min();
        if let Some(t) = next {
            if c.armed.map_or(true, |a| t < a) {
                c.armed = Some(t);
                self.timers.push(Reverse((t, c.shared.id)));
            }
        }
    }

    /// When the connection counts as idle (IdleTimeout): no traffic since, and nothing
    /// awaits the host or the peer (undecided replies, unwritten output).
    fn idle_deadline(&self, c: &Conn) -> Option<Instant> {
        let t = self.settings.idle_timeout;
        let busy = c.proto.pending_replies() > 0 || c.proto.queued_output() > 0;
        (t > 0 && !busy).then(|| c.last_io + Duration::from_secs(t as u64))
    }

    /// Brings the server-wide total of partial-message bytes up to date with `c`'s.
    fn count_buffered(&mut self, c: &mut Conn) {
        let now = c.proto.partial_len();
        if now != c.buffered {
            self.buffered_total = self.buffered_total + now as u64 - c.buffered as u64;
            c.buffered = now;
            self.shared.buffered_bytes.store(self.buffered_total, Ordering::Relaxed);
        }
    }

    /// Over MaxBufferedBytes: closes the connections holding the most partial-message data
    /// (error 2013) until the total is within the budget again. Returns true when `c`, the
    /// connection at hand, is the one to close (the caller closes it).
    fn enforce_budget(&mut self, c: &Conn) -> bool {
        let max = self.settings.max_buffered_bytes;
        while self.buffered_total > max {
            let other = self.conns.iter().flatten().max_by_key(|o| o.buffered).map(|o| (o.shared.id, o.buffered));
            match other {
                Some((id, n)) if n > c.buffered => {
                    let Some(o) = self.take(id) else { return false };
                    self.evict(o);
                }
                _ => return c.buffered > 0,
            }
        }
        false
    }

    /// Closes a connection for the buffered-input budget (error 2013).
    fn evict(&mut self, c: Box<Conn>) {
        let (n, max) = (c.buffered, self.settings.max_buffered_bytes);
        let e = Error::new(
            code::MEMORY_BUDGET,
            format!("connection closed: MaxBufferedBytes ({max}) spent and it held the most partial-message data ({n} bytes)"),
        );
        self.error(c.shared.id, e.clone());
        self.close(c, e.code, &e.message);
    }

    fn read(&mut self, c: &mut Conn, how: ReadHow) -> io::Result<()> {
        // The budget counts reads and the decoding work they caused (see WORK_PER_READ).
        let mut budget = READ_BUDGET as u64;
        loop {
            if budget == 0 {
                self.backlog.push(c.shared.id);
                break;
            }
            budget -= 1;
            let paused = self.reads_paused(c);
            if !paused && c.prefix.is_empty() && matches!(c.transport, Transport::Plain) {
                // The middle of a large message: read straight into its buffer.
                if let Some(buf) = c.proto.direct_input(READ_CHUNK) {
                    let from = buf.len();
                    let room = (buf.capacity() - from).min(READ_CHUNK);
                    match recv_append(&c.stream, buf, room) {
                        Ok(0) => {
                            c.peer_closed = true;
                            break;
                        }
                        Ok(n) => {
                            c.last_io = self.now.mono;
                            self.shared.metrics.bytes_in(n);
                            c.shared.activity_ms.store(self.shared.ms_at(self.now.mono), Ordering::Relaxed);
                            c.proto.direct_input_done(from, self.now);
                            self.count_buffered(c);
                            self.drain_proto(c);
                            if self.buffered_total > self.settings.max_buffered_bytes {
                                // Over the budget: as for a read through the transport.
                                self.backlog.push(c.shared.id);
                                break;
                            }
                            if n < room && how == ReadHow::Edge && !c.proto.in_frame() {
                                break;
                            }
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            // A large message is expected: read only its start, the rest goes straight to its
            // buffer on the next pass.
            let chunk = if c.proto.expects_large() { LEAD_READ } else { READ_CHUNK };
            let mut input = Input { prefix: &mut c.prefix, sock: &mut c.stream };
            let cap = c.read_cap.min(self.buf.len()).min(chunk);
            match c.transport.read(&mut input, &mut self.buf[..cap], paused)? {
                ReadOutcome::Data { n, short } => {
                    c.local_idle = false;
                    c.last_io = self.now.mono;
                    self.shared.metrics.bytes_in(n);
                    c.shared.activity_ms.store(self.shared.ms_at(self.now.mono), Ordering::Relaxed);
                    let work = c.proto.work();
                    c.proto.handle_input(&self.buf[..n], self.now);
                    let work = c.proto.work() - work;
                    self.count_buffered(c);
                    self.drain_proto(c);
                    // A storm of bad frames (or start blocks) is read in small pieces and
                    // ends the turn, so other connections never wait long for it.
                    c.read_cap = if work > STORM_WORK { STORM_CHUNK } else { READ_CHUNK };
                    budget = budget.saturating_sub(work / WORK_PER_READ);
                    if work > STORM_WORK {
                        budget = 0;
                    }
                    if self.buffered_total > self.settings.max_buffered_bytes {
                        // Over the budget: settle decides who is closed; if this connection
                        // survives it is read again (readiness is edge-triggered).
                        self.backlog.push(c.shared.id);
                        break;
                    }
                    // A short read that completed the message at hand is the request/response
                    // case: the client now waits for our reply, so the read that would only
                    // say WouldBlock is skipped (a third of the syscalls per message).
                    // Mid-message, or once the peer closed, read on until WouldBlock.
                    if short && how == ReadHow::Edge && !c.proto.in_frame() {
                        break;
                    }
                }
                ReadOutcome::Closed => {
                    c.peer_closed = true;
                    break;
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::ClientHello { suites, signature_schemes } => {
                    let id = c.shared.id;
                    self.notify(Event::SslStatus { id, message: "ClientHello received".into() });
                    // SSLConnectionRequest: the host may pick another certificate.
                    self.emit(Some(c), Event::SslConnectionRequest { id, suites, signature_schemes });
                    if let Some(e) = c.failed.take() {
                        return Err(e);
                    }
                }
                ReadOutcome::HandshakeDone => self.on_handshake_done(c),
            }
        }
        // What else this turn produced (TLS status lines) is drained by the caller's settle.
        Ok(())
    }

    fn choose_certificate(&mut self, c: &mut Conn, cert: Option<Arc<Certificate>>) -> io::Result<()> {
        if let Some(ReadOutcome::HandshakeDone) = c.transport.choose_certificate(cert)? {
            self.on_handshake_done(c);
        }
        // Records behind the ClientHello are read now.
        self.backlog.push(c.shared.id);
        Ok(())
    }

    /// Records the negotiated parameters and runs client authentication.
    fn on_handshake_done(&mut self, c: &mut Conn) {
        let id = c.shared.id;
        let (info, auth) = c.transport.handshake_done();
        if auth.is_none() {
            self.shared.metrics.tls_completed();
        }
        if let Some(i) = &info {
            let resumed = if i.resumed { ", session resumed" } else { "" };
            let message = format!("handshake complete: {} {} {}{resumed}", i.version, i.cipher_suite, i.key_exchange);
            self.notify(Event::SslStatus { id, message });
        }
        *lock(&c.shared.tls_info) = info.map(Box::new);
        if let Some(a) = auth {
            let ev = Event::SslClientAuth {
                id,
                der: a.der,
                subject: a.subject,
                issuer: a.issuer,
                status: a.status,
                accept: a.ok,
            };
            self.emit(Some(c), ev);
        }
    }

    fn flush(&mut self, c: &mut Conn) -> io::Result<()> {
        let now = self.now.mono;
        let mut result = Ok(());
        while c.transport.ready() {
            let out = c.proto.transmit(now);
            if out.is_empty() {
                break;
            }
            match c.transport.write(&mut c.stream, out) {
                Ok(0) => break,
                Ok(n) => {
                    // The instant the reply bytes were handed to the transport: the end of
                    // the acknowledgement latency (one clock read per write call).
                    let written = Instant::now();
                    c.last_io = written;
                    self.shared.metrics.bytes_out(n);
                    c.proto.consume_output(n, written);
                    c.shared.activity_ms.store(self.shared.ms_at(written), Ordering::Relaxed);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = c.transport.flush(&mut c.stream);
        }
        c.shared.queued_out.store(c.proto.queued_output(), Ordering::Relaxed);
        self.drain_proto(c);
        result
    }

    /// Closes a connection: a partial message is discarded (error 672), waiting sends fail,
    /// the host's streams are released and Disconnected fires.
    fn close(&mut self, mut c: Box<Conn>, status: i32, description: &str) {
        let id = c.shared.id;
        c.proto.close();
        self.count_buffered(&mut c);
        if self.accept_paused {
            // A descriptor and a connection slot are free: the backlog is accepted now.
            self.accept_again = true;
        }
        self.drain_proto(&mut c);
        let m = &self.shared.metrics;
        m.connection_closed();
        if c.transport.handshake_pending() {
            m.tls_failed(c.tls_failure.unwrap_or(TlsFailure::Other));
        }
        // Best effort: a close_notify (or a pending alert) goes out before the socket closes.
        c.transport.shutdown(&mut c.stream, status == 0);
        if c.registered.is_some() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        c.shared.fail_waiters(&Error::new(code::INTERRUPTED, "connection closed before the send completed"));
        c.shared.connected.store(false, Ordering::Release);
        lock(&self.shared.conns).release(id);
        drop(c.stream);
        // Streams call host code when released: drop them outside the lock.
        let (input, output) = {
            let mut f = lock(&c.shared.fields);
            (f.input_stream.take(), f.output_stream.take())
        };
        drop((input, output));
        self.notify(Event::Disconnected { id, code: status, description: description.to_string() });
        self.log(id, LogLevel::Info, || format!("connection {id} closed: {description}"));
    }

    fn close_all(&mut self) {
        let ids: Vec<ConnectionId> = self.conns.iter().flatten().map(|c| c.shared.id).collect();
        for id in ids {
            if let Some(mut c) = self.take(id) {
                let _ = self.flush(&mut c);
                self.close(c, 0, "OK");
            }
        }
        self.held.clear();
        self.proxied.clear();
        self.proxy_timers.clear();
    }

    // ----- commands and timers -----

    fn run_commands(&mut self) {
        let cmds = std::mem::take(&mut *lock(&self.shared.cmds));
        if !cmds.is_empty() {
            self.now = self.clock.now();
        }
        for cmd in cmds {
            self.run_command(cmd);
        }
    }

    fn run_command(&mut self, cmd: Command) {
        match cmd {
            Command::Report(e) => self.error(ConnectionId::NONE, e),
            Command::Listen(mut l) => {
                if let Err(e) = self.poll.registry().register(&mut l, LISTENER, Interest::READABLE) {
                    self.error(ConnectionId::NONE, Error::from_io(&e, "register listener"));
                    return;
                }
                if let Some(mut old) = self.listener.replace(l) {
                    let _ = self.poll.registry().deregister(&mut old);
                }
                self.accept_all();
            }
            Command::StopListening(waiter) => {
                if let Some(mut l) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                if let Some(w) = waiter {
                    w.complete(Ok(()));
                }
            }
            Command::Send { id, payload, waiter } => {
                let Some(mut c) = self.take(id) else {
                    if let Some(w) = waiter {
                        w.complete(Err(Error::new(code::NO_SUCH_CONNECTION, format!("no connection with id {id}"))));
                    }
                    return;
                };
                if let Err((e, w)) = c.proto.send(&payload, waiter) {
                    match w {
                        Some(w) => w.complete(Err(e)),
                        None => self.error(id, e),
                    }
                }
                self.settle(c, Ok(()));
            }
            Command::Disconnect(id) => {
                if let Some(mut c) = self.take(id) {
                    let _ = self.flush(&mut c);
                    self.close(c, 0, "OK");
                }
            }
            Command::DisconnectAll => self.close_all(),
            Command::Apply(r) => self.apply(None, r),
            Command::ResumeReads => {
                let ids: Vec<ConnectionId> = self.conns.iter().flatten().map(|c| c.shared.id).collect();
                self.backlog.extend(ids);
            }
            Command::Exit => self.exit = true,
        }
    }

    fn run_timers(&mut self) {
        self.now = self.clock.now();
        self.sweep();
        let now = self.now.mono;
        while let Some(&(at, key)) = self.proxy_timers.first() {
            if at > now {
                break;
            }
            self.proxy_timers.pop_first();
            // Whatever the socket holds counts before the deadline is declared missed.
            self.on_proxy_ready(key);
            if let Some(p) = self.proxied.remove(&key) {
                let why = match p.parser.buffered() {
                    0 => "nothing received".to_string(),
                    n => format!("{n} bytes received"),
                };
                let reason = format!("no complete PROXY header within {} s ({why})", p.timeout_secs);
                self.proxy_failed(key, p, Some(reason));
            }
        }
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(mut c) = self.take(id) else { continue };
            if c.armed != Some(at) {
                // Superseded by an earlier deadline that already fired.
                self.put(c);
                continue;
            }
            c.armed = None;
            // Whatever the socket holds counts before a deadline is declared missed.
            if c.proto.in_frame() {
                if let Err(e) = self.read(&mut c, ReadHow::Drain) {
                    self.settle(c, Err(e));
                    continue;
                }
            }
            if let Err(e) = c.transport.handle_timeout(now) {
                c.tls_failure = Some(TlsFailure::Timeout);
                self.error(id, e.clone());
                self.close(c, e.code, &e.message);
                continue;
            }
            c.proto.handle_timeout(self.now);
            self.count_buffered(&mut c);
            if self.idle_deadline(&c).is_some_and(|t| t <= now) {
                let secs = self.settings.idle_timeout;
                let why = format!("IdleTimeout: no traffic for {secs} s");
                self.close(c, code::TIMEOUT, &why);
                continue;
            }
            self.settle(c, Ok(()));
        }
    }
}

/// Reads at most `max` bytes from `sock` into the spare capacity of `buf` (which must have
/// that much), appending them: no intermediate buffer, no copy.
fn recv_append(sock: &TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let len = buf.len();
    let spare = &mut buf.spare_capacity_mut()[..max];
    let n = socket2::SockRef::from(sock).recv(spare)?;
    debug_assert!(n <= max);
    // SAFETY: recv(2) wrote the first n bytes of `spare`, the capacity right after the
    // initialised `len` bytes, and n <= max <= the spare capacity: len + n bytes are initialised.
    unsafe { buf.set_len(len + n.min(max)) };
    Ok(n)
}

/// A peer that reset the connection (HAProxy closes its health checks with a reset).
fn is_reset(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}

fn token(id: ConnectionId) -> Token {
    Token(id.raw() as usize)
}

/// Applies the TCP settings to an accepted socket. Failures are not fatal: the reference
/// notes that stacks may ignore buffer sizes and keep-alive timing.
fn apply_socket_options(stream: &TcpStream, s: &Settings) {
    let sock = socket2::SockRef::from(stream);
    let _ = sock.set_nodelay(s.tcp_no_delay);
    if s.keep_alive {
        let mut ka = socket2::TcpKeepalive::new();
        if s.keep_alive_time > 0 {
            ka = ka.with_time(Duration::from_millis(s.keep_alive_time as u64));
        }
        if s.keep_alive_interval > 0 {
            ka = ka.with_interval(Duration::from_millis(s.keep_alive_interval as u64));
        }
        let _ = sock.set_tcp_keepalive(&ka);
    }
    if !s.linger {
        // Linger=False: close at once, discarding unsent data (RST).
        let _ = sock.set_linger(Some(Duration::ZERO));
    } else if s.linger_time > 0 {
        let _ = sock.set_linger(Some(Duration::from_secs(s.linger_time as u64)));
    }
    // InBufferSize/OutBufferSize are set on the listening socket (see `server::bind`): accepted
    // sockets inherit them, and SO_RCVBUF set after the handshake would not match the window
    // scale already agreed, throttling large messages.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_reserve_is_max_64_and_an_eighth() {
        assert_eq!(fd_reserve(256), 64);
        assert_eq!(fd_reserve(1024), 128);
        assert_eq!(fd_reserve(20000), 2500);
        let soft = nofile_limit();
        assert_eq!(derived_connection_limit(), soft.saturating_sub(fd_reserve(soft)).max(1));
    }

    #[test]
    fn clock_gives_the_wall_clock_second() {
        let mut c = Clock::new();
        let sys = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(sys().abs_diff(c.now().unix_secs()) <= 1);
        // A reference older than a second is read again, so the derived second never drifts.
        c.wall_ref =
            (Instant::now() - Duration::from_secs(5), std::time::SystemTime::now() - Duration::from_secs(3600));
        c.refresh();
        let t = c.now();
        assert!(sys().abs_diff(t.unix_secs()) <= 1);
    }
}
