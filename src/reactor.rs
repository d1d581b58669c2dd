//! The event loop: one mio `Poll` on its own thread owns the listener and every socket.
//!
//! Host threads talk to it through the command queue in [`Shared`] and a `Waker`. Readiness is
//! drained to `WouldBlock`; interest is recomputed after every event so that a connection whose
//! output is backed up (or whose replies await decisions) is not read from: a slow peer costs
//! only its own bounded buffers and never delays the others.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::{AckMode, EventMode, Settings};
use crate::connection::{Connection, Inbound};
use crate::delivery::{deliver, guarded, Decision};
use crate::error::{code, Error, Result};
use crate::events::{
    AckInEvent, ConnectionId, ConnectionRequestEvent, ErrorEvent, EventHandler, LogEvent, SslClientAuthenticationEvent,
    SslConnectionRequestEvent, SslStatusEvent, StatusEvent,
};
use crate::shared::{lock, Command, ConnShared, Queued, ReactorHandle, Shared, Waiter, QUEUE_HIGH_WATER};
use crate::tls::session::{Progress, TlsConn};
use crate::tls::{Certificate, TlsContext};

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);
/// Bytes read per read call.
const READ_CHUNK: usize = 256 * 1024;
/// Output queued past this stops reading from the peer until it drains.
const OUT_HIGH_WATER: usize = 1 << 20;
/// Undecided replies past this stop reading from the peer (pipelining senders).
const PENDING_HIGH_WATER: usize = 64;
/// Connections accepted in DoEvents mode and waiting for their ConnectionRequest decision.
const MAX_HELD: usize = 1024;
/// Reads per readiness event before other connections get their turn (fairness).
const READ_BUDGET: usize = 16;

/// How to read a connection after a readiness event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadHow {
    /// Not readable.
    No,
    /// Readable (an edge): a short read means drained.
    Edge,
    /// Read until WouldBlock or end of stream (the peer closed, or a revisit).
    Drain,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Receive,
    RateResume,
    Handshake,
}

struct Conn {
    shared: Arc<ConnShared>,
    stream: TcpStream,
    proto: Connection,
    registered: Option<Interest>,
    /// One entry per data frame awaiting an acknowledgement, oldest first.
    ack_waiters: VecDeque<Option<Arc<Waiter>>>,
    /// Version 1 synchronous sends: complete when `written` reaches the offset.
    write_waiters: VecDeque<(u64, Arc<Waiter>)>,
    written: u64,
    peer_closed: bool,
    /// The frame whose ReceiveTimeout runs, and when it started.
    timed_frame: u64,
    frame_started: Instant,
    /// A Receive timer for this connection is in the heap (at most one, so the heap stays
    /// bounded by the number of connections whatever the message rate).
    receive_timer: bool,
    rate_window: Instant,
    rate_bytes: u64,
    rate_blocked: bool,
    /// TLS state; None for plain connections.
    tls: Option<TlsConn>,
    /// Application data may flow: always for plain connections; for TLS once the handshake
    /// is done and the client was accepted.
    ready: bool,
    /// Why the connection is being closed once its output is flushed (None: peer closed).
    closing: Option<Error>,
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
    conns: Vec<Option<Conn>>,
    settings: Settings,
    settings_gen: u64,
    handler: Arc<dyn EventHandler>,
    handler_gen: u64,
    timers: BinaryHeap<Reverse<(Instant, ConnectionId, u64, TimerKind)>>,
    buf: Vec<u8>,
    found: Vec<Inbound>,
    held: HashMap<u64, (TcpStream, SocketAddr)>,
    next_hold: u64,
    /// Connections that used up their read budget with data possibly left in the socket;
    /// readiness is edge-triggered, so they are revisited explicitly.
    backlog: Vec<ConnectionId>,
    /// TLS configuration of the current listener (None: plain).
    tls_ctx: Option<Arc<TlsContext>>,
    exit: bool,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn slot(id: ConnectionId) -> usize {
    (id & 0xFFFF_FFFF) as usize
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
            settings,
            handler,
            timers: BinaryHeap::new(),
            buf: vec![0; READ_CHUNK],
            found: Vec::new(),
            held: HashMap::new(),
            next_hold: 1,
            backlog: Vec::new(),
            tls_ctx: None,
            exit: false,
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
            let timeout = self.timers.peek().map(|Reverse((t, ..))| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.error(0, &Error::from_io(&e, "poll"));
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            self.refresh();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept_all(),
                    Token(t) => {
                        let read = if ev.is_read_closed() || ev.is_error() {
                            ReadHow::Drain
                        } else if ev.is_readable() {
                            ReadHow::Edge
                        } else {
                            ReadHow::No
                        };
                        self.on_ready(t as ConnectionId, read, ev.is_writable() || ev.is_error());
                    }
                }
            }
            for id in std::mem::take(&mut self.backlog) {
                self.on_ready(id, ReadHow::Drain, false);
            }
            self.run_commands();
            self.run_timers();
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
            let s = &self.settings;
            for c in self.conns.iter_mut().flatten() {
                c.proto.reconfigure(s.chars, s.ack_char, s.nak_char, s.max_message_size);
            }
        }
        let g = self.shared.handler_gen.load(Ordering::Acquire);
        if g != self.handler_gen {
            self.handler_gen = g;
            self.handler = lock(&self.shared.handler).clone();
        }
    }

    fn queued_mode(&self) -> bool {
        self.settings.event_mode == EventMode::DoEvents
    }

    fn enqueue(&self, q: Queued) {
        let mut g = lock(&self.shared.queue);
        g.bytes += q.size();
        g.items.push_back(q);
        if g.bytes > QUEUE_HIGH_WATER {
            g.reads_paused = true;
        }
        self.shared.queue_cv.notify_all();
    }

    // ----- events -----

    fn error(&self, id: ConnectionId, e: &Error) {
        if self.queued_mode() {
            self.enqueue(Queued::Error { id, code: e.code, description: e.message.clone() });
        } else {
            let h = &self.handler;
            guarded(|| h.error(&ErrorEvent { connection_id: id, error_code: e.code, description: &e.message }));
        }
    }

    fn log(&self, id: ConnectionId, level: u8, msg: impl FnOnce() -> String) {
        if self.settings.log_level < level {
            return;
        }
        let message = msg();
        if self.queued_mode() {
            self.enqueue(Queued::Log { id, level, message });
        } else {
            let h = &self.handler;
            let log_type = log_type(level);
            guarded(|| h.log(&LogEvent { connection_id: id, log_level: level, message: &message, log_type }));
        }
    }

    fn status(&self, id: ConnectionId, connected: bool, code: i32, description: &str) {
        if self.queued_mode() {
            let description = description.to_string();
            self.enqueue(if connected {
                Queued::Connected { id, code, description }
            } else {
                Queued::Disconnected { id, code, description }
            });
        } else {
            let h = &self.handler;
            let ev = StatusEvent { connection_id: id, status_code: code, description };
            guarded(|| if connected { h.connected(&ev) } else { h.disconnected(&ev) });
        }
    }

    // ----- accepting -----

    fn accept_all(&mut self) {
        // StopListening may be queued behind this readiness event: honour it now.
        if !self.shared.listening.load(Ordering::Acquire) {
            return;
        }
        loop {
            // DoEvents: connections waiting for ConnectionRequest are bounded; the rest wait
            // in the kernel's backlog until the host catches up (see Command::Admit).
            if self.held.len() >= MAX_HELD {
                return;
            }
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((stream, addr)) => self.on_accept(stream, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: report and retry at the next readiness or command.
                    self.error(0, &Error::from_io(&e, "accept"));
                    return;
                }
            }
        }
    }

    fn on_accept(&mut self, stream: TcpStream, addr: SocketAddr) {
        let max = self.settings.max_connections as usize;
        if max > 0 && lock(&self.shared.conns).count + self.held.len() >= max {
            self.error(
                0,
                &Error::new(
                    code::TOO_MANY_CONNECTIONS,
                    format!("connection from {addr} refused: MaxConnections ({max}) reached"),
                ),
            );
            return;
        }
        let address = addr.ip().to_string();
        if self.queued_mode() {
            let token = self.next_hold;
            self.next_hold += 1;
            self.held.insert(token, (stream, addr));
            self.enqueue(Queued::ConnectionRequest { token, address, port: addr.port() });
            return;
        }
        let mut ev = ConnectionRequestEvent { address: &address, port: addr.port(), accept: true };
        let h = &self.handler;
        guarded(|| h.connection_request(&mut ev));
        if ev.accept {
            self.admit(stream, addr);
        } else {
            self.log(0, 1, || format!("connection from {addr} refused by ConnectionRequest"));
        }
    }

    fn admit(&mut self, stream: TcpStream, addr: SocketAddr) {
        let s = &self.settings;
        apply_socket_options(&stream, s);
        let local = stream.local_addr().unwrap_or(addr);
        let id = lock(&self.shared.conns).reserve();
        let shared = Arc::new(ConnShared::new(id, addr, local, s.default_timeout));
        let mut conn = Conn {
            shared: shared.clone(),
            stream,
            proto: Connection::new(s.chars, s.ack_char, s.nak_char, s.max_message_size),
            registered: None,
            ack_waiters: VecDeque::new(),
            write_waiters: VecDeque::new(),
            written: 0,
            peer_closed: false,
            timed_frame: 0,
            frame_started: Instant::now(),
            receive_timer: false,
            rate_window: Instant::now(),
            rate_bytes: 0,
            rate_blocked: false,
            tls: self.tls_ctx.clone().map(TlsConn::new),
            ready: self.tls_ctx.is_none(),
            closing: None,
        };
        if let Err(e) = self.poll.registry().register(&mut conn.stream, Token(id as usize), Interest::READABLE) {
            lock(&self.shared.conns).release(id);
            self.error(0, &Error::from_io(&e, "register connection"));
            return;
        }
        conn.registered = Some(Interest::READABLE);
        lock(&self.shared.conns).insert(shared);
        let i = slot(id);
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        if let Some(ctx) = &self.tls_ctx {
            let at = Instant::now() + ctx.handshake_timeout;
            self.timers.push(Reverse((at, id, 0, TimerKind::Handshake)));
        }
        self.conns[i] = Some(conn);
        self.status(id, true, 0, "OK");
        self.log(id, 1, || format!("connection {id} from {addr} accepted"));
    }

    // ----- connection I/O -----

    fn take(&mut self, id: ConnectionId) -> Option<Conn> {
        let c = self.conns.get_mut(slot(id))?;
        match c {
            Some(conn) if conn.shared.id == id => c.take(),
            _ => None,
        }
    }

    fn put(&mut self, conn: Conn) {
        let i = slot(conn.shared.id);
        self.conns[i] = Some(conn);
    }

    fn on_ready(&mut self, id: ConnectionId, read: ReadHow, writable: bool) {
        let Some(mut c) = self.take(id) else { return };
        let mut result = Ok(());
        if writable {
            result = self.flush(&mut c);
        }
        if read != ReadHow::No && result.is_ok() {
            result = self.read(&mut c, read);
        }
        self.settle(c, result);
    }

    /// After I/O: flush replies, then close the connection or update its interest.
    fn settle(&mut self, mut c: Conn, mut result: io::Result<()>) {
        if result.is_ok() {
            result = self.flush(&mut c);
        }
        match result {
            Err(e) => {
                let err = if c.tls.is_some() && e.kind() == io::ErrorKind::InvalidData {
                    let what = if c.ready { "TLS error" } else { "TLS handshake failed" };
                    Error::new(code::TLS_HANDSHAKE, format!("{what}: {e}"))
                } else {
                    Error::from_io(&e, "connection")
                };
                self.error(c.shared.id, &err);
                self.close(c, err.code, &err.message);
            }
            Ok(())
                if c.peer_closed
                    && c.proto.output().is_empty()
                    && c.proto.pending_len() == 0
                    && !c.tls.as_ref().is_some_and(|t| t.wants_write()) =>
            {
                match c.closing.take() {
                    Some(e) => self.close(c, e.code, &e.message),
                    None => self.close(c, 0, "OK"),
                }
            }
            Ok(()) => {
                self.update_interest(&mut c);
                self.put(c);
            }
        }
    }

    fn reads_paused(&self, c: &Conn) -> bool {
        c.peer_closed
            || c.proto.output().len() > OUT_HIGH_WATER
            || c.proto.pending_len() >= PENDING_HIGH_WATER
            || (self.queued_mode() && lock(&self.shared.queue).reads_paused)
    }

    fn update_interest(&mut self, c: &mut Conn) {
        let (read, write) = match &c.tls {
            None => (!self.reads_paused(c), !c.proto.output().is_empty() && !c.rate_blocked),
            Some(t) => (
                // Handshake records are read even while application data is paused.
                t.wants_read() && if c.ready { !self.reads_paused(c) } else { !t.established() } && !c.peer_closed,
                t.wants_write() || (c.ready && !c.proto.output().is_empty() && !c.rate_blocked),
            ),
        };
        let want = match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        };
        if want == c.registered {
            return;
        }
        let token = Token(c.shared.id as usize);
        let reg = self.poll.registry();
        let r = match (c.registered, want) {
            (Some(_), Some(w)) => reg.reregister(&mut c.stream, token, w),
            (None, Some(w)) => reg.register(&mut c.stream, token, w),
            (Some(_), None) => reg.deregister(&mut c.stream),
            (None, None) => Ok(()),
        };
        if r.is_ok() {
            c.registered = want;
        }
    }

    fn read(&mut self, c: &mut Conn, how: ReadHow) -> io::Result<()> {
        if c.tls.is_some() {
            return self.read_tls(c);
        }
        let mut budget = READ_BUDGET;
        while !self.reads_paused(c) {
            if budget == 0 {
                self.backlog.push(c.shared.id);
                break;
            }
            budget -= 1;
            match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    c.peer_closed = true;
                    break;
                }
                Ok(n) => {
                    self.consume(c, n);
                    // A short read that completed the message at hand is the request/response
                    // case: the client now waits for our reply, so the read that would only say
                    // WouldBlock is skipped (a third of the syscalls per message). Mid-message
                    // (large messages arriving in many segments), or once the peer closed (that
                    // edge was this one, and EOF must be seen), read on until WouldBlock.
                    if n < self.buf.len() && how == ReadHow::Edge && !c.proto.in_frame() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Feeds `self.buf[..n]` (bytes from the peer, decrypted if TLS) to the protocol.
    fn consume(&mut self, c: &mut Conn, n: usize) {
        c.shared.activity_ms.store(self.shared.now_ms(), Ordering::Relaxed);
        self.log(c.shared.id, 3, || format!("read {n} bytes"));
        let mut found = std::mem::take(&mut self.found);
        c.proto.receive(&self.buf[..n], &mut found);
        self.arm_receive_timer(c);
        for item in found.drain(..) {
            self.on_inbound(c, item);
        }
        self.found = found;
    }

    /// Reads TLS records, advances the handshake and delivers decrypted data.
    fn read_tls(&mut self, c: &mut Conn) -> io::Result<()> {
        let mut budget = READ_BUDGET;
        loop {
            let established = c.tls.as_ref().is_some_and(|t| t.established());
            // Waiting for SSLClientAuthentication (DoEvents): read nothing more, so rustls's
            // bounded plaintext buffer never overflows.
            if (c.ready && self.reads_paused(c)) || (established && !c.ready) {
                break;
            }
            if budget == 0 {
                self.backlog.push(c.shared.id);
                break;
            }
            budget -= 1;
            let tls = c.tls.as_mut().expect("TLS connection");
            match tls.read_tls(&mut c.stream) {
                Ok(0) => {
                    c.peer_closed = true;
                }
                Ok(n) => {
                    if tls.ctx.log_packets {
                        let id = c.shared.id;
                        self.ssl_status(id, &format!("received {n} bytes of TLS records"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let progress = c.tls.as_mut().expect("TLS connection").process()?;
            match progress {
                Progress::None => {}
                Progress::ClientHello { suites, signature_schemes } => {
                    self.on_client_hello(c, suites, signature_schemes)?;
                }
                Progress::HandshakeDone => self.on_handshake_done(c),
            }
            self.drain_plaintext(c)?;
            if c.peer_closed {
                break;
            }
        }
        Ok(())
    }

    /// Moves decrypted application data into the protocol.
    fn drain_plaintext(&mut self, c: &mut Conn) -> io::Result<()> {
        while c.ready && !self.reads_paused(c) {
            let tls = c.tls.as_mut().expect("TLS connection");
            match tls.read_plain(&mut self.buf) {
                Ok(0) => {
                    c.peer_closed = true;
                    break;
                }
                Ok(n) => self.consume(c, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    c.peer_closed = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn ssl_status(&self, id: ConnectionId, message: &str) {
        if self.queued_mode() {
            self.enqueue(Queued::SslStatus { id, message: message.to_string() });
        } else {
            let h = &self.handler;
            guarded(|| h.ssl_status(&SslStatusEvent { connection_id: id, message }));
        }
    }

    /// SSLConnectionRequest: the host may pick another certificate for this connection.
    fn on_client_hello(&mut self, c: &mut Conn, suites: String, sigs: String) -> io::Result<()> {
        let id = c.shared.id;
        self.ssl_status(id, "ClientHello received");
        if self.queued_mode() {
            self.enqueue(Queued::SslConnectionRequest { id, suites, signature_schemes: sigs });
            return Ok(());
        }
        let mut ev = SslConnectionRequestEvent {
            connection_id: id,
            supported_cipher_suites: &suites,
            supported_signature_algs: &sigs,
            certificate: None,
        };
        let h = &self.handler;
        guarded(|| h.ssl_connection_request(&mut ev));
        self.start_handshake(c, ev.certificate)
    }

    fn start_handshake(&mut self, c: &mut Conn, cert: Option<Arc<Certificate>>) -> io::Result<()> {
        let tls = c.tls.as_mut().expect("TLS connection");
        let config = match cert {
            None => tls.ctx.config.clone(),
            Some(cert) => tls.ctx.config_for(&cert).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("certificate chosen in SSLConnectionRequest: {}", e.message),
                )
            })?,
        };
        tls.start(config)?;
        // The ClientHello may have arrived with more records behind it.
        if let Progress::HandshakeDone = tls.process()? {
            self.on_handshake_done(c);
        }
        Ok(())
    }

    /// Records the negotiated parameters and runs client authentication.
    fn on_handshake_done(&mut self, c: &mut Conn) {
        let id = c.shared.id;
        let tls = c.tls.as_ref().expect("TLS connection");
        let info = tls.info();
        if let Some(i) = &info {
            let resumed = if i.resumed { ", session resumed" } else { "" };
            self.ssl_status(
                id,
                &format!("handshake complete: {} {} {}{resumed}", i.version, i.cipher_suite, i.key_exchange),
            );
        }
        *lock(&c.shared.tls_info) = info;
        let ctx = tls.ctx.clone();
        if !ctx.authenticate_clients {
            c.ready = true;
            return;
        }
        let chain = tls.peer_certificates();
        let (ok, status) = ctx.verify_client(chain.as_deref());
        let parsed = chain.as_ref().and_then(|ch| Certificate::from_der(ch.clone(), None).ok());
        let der = chain.as_ref().and_then(|ch| ch.first()).map(|d| d.as_ref().to_vec()).unwrap_or_default();
        let subject = parsed.as_ref().map(|p| p.subject().to_string()).unwrap_or_default();
        let issuer = parsed.as_ref().map(|p| p.issuer().to_string()).unwrap_or_default();
        if self.queued_mode() {
            self.enqueue(Queued::SslClientAuth { id, der, subject, issuer, status, accept: ok });
            return;
        }
        let mut ev = SslClientAuthenticationEvent {
            connection_id: id,
            cert_encoded: &der,
            cert_subject: &subject,
            cert_issuer: &issuer,
            status: &status,
            accept: ok,
        };
        let h = &self.handler;
        guarded(|| h.ssl_client_authentication(&mut ev));
        let accept = ev.accept;
        self.client_decided(c, accept, &status);
    }

    fn client_decided(&mut self, c: &mut Conn, accept: bool, status: &str) {
        if accept {
            c.ready = true;
            return;
        }
        let e = Error::new(code::TLS_CLIENT_REJECTED, format!("client certificate refused: {status}"));
        self.error(c.shared.id, &e);
        if let Some(t) = c.tls.as_mut() {
            t.send_close_notify();
        }
        // Closed once the close_notify is written (see `settle`).
        c.peer_closed = true;
        c.closing = Some(e);
    }

    fn arm_receive_timer(&mut self, c: &mut Conn) {
        let secs = self.settings.receive_timeout;
        if secs == 0 || !c.proto.in_frame() {
            return;
        }
        if c.proto.frames_started() != c.timed_frame {
            c.timed_frame = c.proto.frames_started();
            c.frame_started = Instant::now();
        }
        if !c.receive_timer {
            c.receive_timer = true;
            let at = c.frame_started + Duration::from_secs(secs as u64);
            self.timers.push(Reverse((at, c.shared.id, c.timed_frame, TimerKind::Receive)));
        }
    }

    fn on_inbound(&mut self, c: &mut Conn, item: Inbound) {
        let id = c.shared.id;
        let mode = self.settings.effective_ack_mode();
        match item {
            Inbound::Message(msg) => self.on_message(c, msg, mode),
            Inbound::Refused(r) => {
                let e = Error::new(code::INVALID_DATA, r.describe(self.settings.max_message_size));
                self.error(id, &e);
                c.proto.refuse(mode, unix_now());
            }
            Inbound::Restarted => {
                self.error(id, &Error::new(code::INVALID_DATA, "start block inside a frame: partial message discarded"))
            }
            Inbound::Skipped(n) => self.log(id, 2, || format!("{n} bytes outside a frame skipped")),
            Inbound::AckIn(accepted) => {
                let result = if accepted {
                    Ok(())
                } else {
                    Err(Error::new(code::NAK_RECEIVED, "the client answered with a negative acknowledgement"))
                };
                if let Some(Some(w)) = c.ack_waiters.pop_front() {
                    w.complete(result.clone());
                    lock(&c.shared.waiters).retain(|x| !Arc::ptr_eq(x, &w));
                }
                if self.settings.version == 1 {
                    return;
                }
                if self.queued_mode() {
                    self.enqueue(Queued::AckIn { id, accepted });
                } else {
                    let h = &self.handler;
                    guarded(|| h.ack_in(&AckInEvent { connection_id: id, accepted }));
                }
                if let Err(e) = result {
                    self.error(id, &e);
                }
            }
        }
    }

    fn on_message(&mut self, c: &mut Conn, msg: Vec<u8>, mode: AckMode) {
        let seq = c.proto.next_seq();
        let id = c.shared.id;
        let ack = mode != AckMode::None;
        let len = msg.len();
        self.log(id, 2, || format!("message {seq} received ({len} bytes)"));
        if ack {
            c.proto.push_pending(seq, mode, &msg);
        }
        let data = Arc::new(msg);
        if self.queued_mode() {
            self.enqueue(Queued::Message { id, seq, data, ack });
            return;
        }
        let close = self.settings.close_stream_after_transfer;
        let d = deliver(&*self.handler, &c.shared, seq, data, ack, close);
        if let Some(Decision::Now(accept, code)) = d.decision {
            c.proto.decide(seq, accept, code, mode, unix_now());
            let verdict = if accept { "ACK" } else { "NAK" };
            self.log(id, 2, || format!("message {seq} answered with {verdict}"));
        }
        if let Some(buf) = d.reusable {
            c.proto.recycle(buf);
        }
    }

    /// How many output bytes MaxTransferRate allows now (None: wait for the next window).
    fn allowance(&mut self, c: &mut Conn) -> Option<usize> {
        let rate = self.settings.max_transfer_rate;
        if rate == 0 {
            return Some(usize::MAX);
        }
        let now = Instant::now();
        if now >= c.rate_window + Duration::from_secs(1) {
            c.rate_window = now;
            c.rate_bytes = 0;
        }
        let allowance = rate.saturating_sub(c.rate_bytes) as usize;
        if allowance == 0 {
            c.rate_blocked = true;
            let at = c.rate_window + Duration::from_secs(1);
            self.timers.push(Reverse((at, c.shared.id, 0, TimerKind::RateResume)));
            return None;
        }
        Some(allowance)
    }

    /// Marks `n` output bytes as written (handed to TLS, for TLS connections).
    fn wrote(&mut self, c: &mut Conn, n: usize) {
        c.proto.consume_output(n);
        c.rate_bytes += n as u64;
        c.written += n as u64;
        c.shared.activity_ms.store(self.shared.now_ms(), Ordering::Relaxed);
        while c.write_waiters.front().is_some_and(|(end, _)| *end <= c.written) {
            let (_, w) = c.write_waiters.pop_front().expect("front exists");
            w.complete(Ok(()));
            lock(&c.shared.waiters).retain(|x| !Arc::ptr_eq(x, &w));
        }
    }

    fn flush(&mut self, c: &mut Conn) -> io::Result<()> {
        let r = if c.tls.is_some() { self.flush_tls(c) } else { self.flush_plain(c) };
        c.shared.queued_out.store(c.proto.output().len(), Ordering::Relaxed);
        r
    }

    fn flush_plain(&mut self, c: &mut Conn) -> io::Result<()> {
        while !c.proto.output().is_empty() && !c.rate_blocked {
            let Some(allow) = self.allowance(c) else { break };
            let out = c.proto.output();
            match c.stream.write(&out[..out.len().min(allow)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wrote(c, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush_tls(&mut self, c: &mut Conn) -> io::Result<()> {
        loop {
            let mut progressed = false;
            if c.ready && !c.proto.output().is_empty() && !c.rate_blocked {
                if let Some(allow) = self.allowance(c) {
                    let out = c.proto.output();
                    let out = &out[..out.len().min(allow)];
                    let n = c.tls.as_mut().expect("TLS connection").write_plain(out)?;
                    if n > 0 {
                        self.wrote(c, n);
                        progressed = true;
                    }
                }
            }
            let tls = c.tls.as_mut().expect("TLS connection");
            if tls.wants_write() {
                match tls.write_tls(&mut c.stream) {
                    Ok(0) => {}
                    Ok(n) => {
                        progressed = true;
                        if tls.ctx.log_packets {
                            let id = c.shared.id;
                            self.ssl_status(id, &format!("sent {n} bytes of TLS records"));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Closes a connection: a partial message is discarded (error 672), waiting sends fail,
    /// the host's streams are released and Disconnected fires.
    fn close(&mut self, mut c: Conn, status: i32, description: &str) {
        let id = c.shared.id;
        if c.proto.in_frame() && c.proto.partial_len() > 0 {
            let n = c.proto.partial_len();
            let e = Error::new(
                code::INTERRUPTED,
                format!("connection closed while receiving a message: {n} bytes discarded, nothing delivered"),
            );
            self.error(id, &e);
        }
        if let Some(t) = c.tls.as_mut() {
            // Best effort: a close_notify (or a pending alert) goes out before the socket closes.
            if status == 0 {
                t.send_close_notify();
            }
            for _ in 0..4 {
                if !t.wants_write() || t.write_tls(&mut c.stream).is_err() {
                    break;
                }
            }
        }
        if c.registered.is_some() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        let lost = Error::new(code::INTERRUPTED, "connection closed before the send completed");
        for w in c.ack_waiters.drain(..).flatten().chain(c.write_waiters.drain(..).map(|(_, w)| w)) {
            w.complete(Err(lost.clone()));
        }
        c.shared.fail_waiters(&lost);
        c.shared.connected.store(false, Ordering::Release);
        lock(&self.shared.conns).release(id);
        drop(c.stream);
        // Streams call host code when released: drop them outside the lock.
        let (input, output) = {
            let mut f = lock(&c.shared.fields);
            (f.input_stream.take(), f.output_stream.take())
        };
        drop((input, output));
        self.status(id, false, status, description);
        self.log(id, 1, || format!("connection {id} closed: {description}"));
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
    }

    // ----- commands and timers -----

    fn run_commands(&mut self) {
        let cmds = std::mem::take(&mut *lock(&self.shared.cmds));
        for cmd in cmds {
            self.run_command(cmd);
        }
    }

    fn run_command(&mut self, cmd: Command) {
        match cmd {
            Command::Listen(mut l, tls) => {
                self.tls_ctx = tls;
                if let Err(e) = self.poll.registry().register(&mut l, LISTENER, Interest::READABLE) {
                    self.error(0, &Error::from_io(&e, "register listener"));
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
                let expect_ack = self.settings.version == 2;
                c.proto.send_frame(&payload, expect_ack);
                if expect_ack {
                    c.ack_waiters.push_back(waiter);
                } else if let Some(w) = waiter {
                    c.write_waiters.push_back((c.written + c.proto.output().len() as u64, w));
                }
                let len = payload.len();
                self.log(id, 2, || format!("sending {len} bytes"));
                self.settle(c, Ok(()));
            }
            Command::Disconnect(id) => {
                if let Some(mut c) = self.take(id) {
                    let _ = self.flush(&mut c);
                    self.close(c, 0, "OK");
                }
            }
            Command::Decide { id, seq, accept, code } => {
                if let Some(mut c) = self.take(id) {
                    c.proto.decide(seq, accept, code, self.settings.effective_ack_mode(), unix_now());
                    self.settle(c, Ok(()));
                }
            }
            Command::Admit { token, accept } => {
                if let Some((stream, addr)) = self.held.remove(&token) {
                    if accept {
                        self.admit(stream, addr);
                    } else {
                        self.log(0, 1, || format!("connection from {addr} refused by ConnectionRequest"));
                    }
                    if self.held.len() + 1 == MAX_HELD {
                        self.accept_all();
                    }
                }
            }
            Command::DisconnectAll => self.close_all(),
            Command::SslCert { id, cert } => {
                if let Some(mut c) = self.take(id) {
                    let r = if c.tls.as_ref().is_some_and(|t| t.deciding()) {
                        self.start_handshake(&mut c, cert)
                    } else {
                        Ok(())
                    };
                    self.settle(c, r);
                }
            }
            Command::SslAuth { id, accept } => {
                if let Some(mut c) = self.take(id) {
                    if !c.ready && c.tls.as_ref().is_some_and(|t| t.established()) {
                        self.client_decided(&mut c, accept, "refused by SSLClientAuthentication");
                    }
                    // Data that arrived while waiting is decrypted now.
                    let r = self.drain_plaintext(&mut c);
                    self.settle(c, r);
                }
            }
            Command::ResumeReads => {
                let ids: Vec<ConnectionId> = self.conns.iter().flatten().map(|c| c.shared.id).collect();
                for id in ids {
                    self.on_ready(id, ReadHow::Drain, false);
                }
            }
            Command::Exit => self.exit = true,
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id, frame, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(mut c) = self.take(id) else { continue };
            match kind {
                TimerKind::Receive => {
                    c.receive_timer = false;
                    // Whatever the socket holds counts before the deadline is declared missed.
                    if c.proto.in_frame() && c.tls.is_none() {
                        if let Err(e) = self.read(&mut c, ReadHow::Drain) {
                            self.settle(c, Err(e));
                            continue;
                        }
                    }
                    if c.proto.in_frame() && c.proto.frames_started() != frame {
                        // A later frame is in progress: its own deadline applies.
                        self.arm_receive_timer(&mut c);
                    } else if c.proto.in_frame() {
                        let n = c.proto.partial_len();
                        c.proto.discard_partial();
                        let secs = self.settings.receive_timeout;
                        let e = Error::new(
                            code::INVALID_DATA,
                            format!("ReceiveTimeout: no end block within {secs} s; {n} bytes discarded"),
                        );
                        self.error(id, &e);
                    }
                }
                TimerKind::RateResume => c.rate_blocked = false,
                TimerKind::Handshake => {
                    if !c.tls.as_ref().is_some_and(|t| t.established()) {
                        let secs = self.tls_ctx.as_ref().map_or(0, |t| t.handshake_timeout.as_secs());
                        let e = Error::new(code::TLS_HANDSHAKE, format!("TLS handshake not completed within {secs} s"));
                        self.error(id, &e);
                        self.close(c, e.code, &e.message);
                        continue;
                    }
                }
            }
            self.settle(c, Ok(()));
        }
    }
}

fn log_type(level: u8) -> &'static str {
    match level {
        1 => "INFO",
        2 => "VERBOSE",
        _ => "DEBUG",
    }
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
