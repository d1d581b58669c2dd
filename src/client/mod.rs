//! The MLLP client (sender): the safe Rust API over the sans-IO [`sender::Sender`] and the
//! connection in `driver`.
//!
//! There is no client thread. I/O happens on the thread that calls [`Client::connect`],
//! [`Client::send`], [`Client::do_events`] or [`Client::disconnect`], and events are delivered
//! there, inside those calls, with no library lock held. An asynchronous send
//! ([`Client::send_async`]) progresses inside `do_events` (or a later blocking call); a send
//! queued from another thread while one thread drives wakes it. From inside an event handler,
//! `send_async`, settings and properties may be used; the calls that drive I/O return
//! `REENTRANT`.

mod driver;
pub mod sender;
pub mod settings;
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use self::driver::{Io, Read_};
pub use self::sender::AckKind;
use self::sender::{Ack, Event as SenderEvent, Outcome, Sender};
pub use self::settings::ClientSettings;
pub use self::tls::ServerAuth;
use crate::dispatch::guarded;
use crate::error::{code, Error, Result};
use crate::events::{ConnectionId, ErrorEvent, LogEvent, LogLevel, SslStatusEvent, StatusEvent};
use crate::tls::session::TlsInfo;
use crate::tls::Certificate;

const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);
/// Bytes read per read call (acknowledgements are small; TLS records are at most 16 KiB).
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The read buffer of the driving thread: one per thread, not per client, so that a
    /// thousand idle clients do not hold a thousand buffers.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// AckIn: an acknowledgement arrived.
#[derive(Debug)]
pub struct AckInEvent<'a> {
    /// The connection number (1 for the first connection, +1 per reconnect).
    pub connection_id: ConnectionId,
    /// The message it answered (None: it answered none — late, mismatched, unsolicited).
    pub message_id: Option<u64>,
    /// Its kind.
    pub kind: AckKind,
    /// MSA-2 ("" for a commit ACK/NAK).
    pub control_id: &'a str,
    /// MSA-3 and ERR text ("" when none).
    pub text: &'a str,
    /// The acknowledgement as received, unframed.
    pub data: &'a [u8],
}

/// SendDone: a message is finished (acknowledged, refused after its retries, or failed).
#[derive(Debug)]
pub struct SendDoneEvent<'a> {
    /// The connection number it ended on (0 when not connected).
    pub connection_id: ConnectionId,
    /// The id `send`/`send_async` gave it.
    pub message_id: u64,
    /// Its MSH-10 ("" when none).
    pub control_id: &'a str,
    /// Ok, or why not.
    pub result: &'a Result<()>,
    /// The kind of the last acknowledgement, if any.
    pub ack: Option<AckKind>,
    /// Attempts made (1 + resends).
    pub attempts: u32,
}

/// SSLServerAuthentication: the server's certificate was verified; `accept` starts as the
/// result and the handler may override it either way.
pub struct SslServerAuthenticationEvent<'a, 'b> {
    /// The connection number.
    pub connection_id: ConnectionId,
    /// SSLIncludeCertChain: the whole chain is shown, not only the leaf.
    pub include_chain: bool,
    /// The certificate, its names, the verification status and the decision.
    pub auth: &'a mut ServerAuth<'b>,
}

/// Receives a client's events; every method has an empty default.
pub trait ClientHandler: Send + Sync {
    /// Connected.
    fn connected(&self, _e: &StatusEvent<'_>) {}
    /// Disconnected.
    fn disconnected(&self, _e: &StatusEvent<'_>) {}
    /// AckIn.
    fn ack_in(&self, _e: &AckInEvent<'_>) {}
    /// SendDone.
    fn send_done(&self, _e: &SendDoneEvent<'_>) {}
    /// Error.
    fn error(&self, _e: &ErrorEvent<'_>) {}
    /// Log.
    fn log(&self, _e: &LogEvent<'_>) {}
    /// SSLServerAuthentication.
    fn ssl_server_authentication(&self, _e: &mut SslServerAuthenticationEvent<'_, '_>) {}
    /// SSLStatus.
    fn ssl_status(&self, _e: &SslStatusEvent<'_>) {}
}

struct NoHandler;
impl ClientHandler for NoHandler {}

/// What a finished send reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// The message's id.
    pub message_id: u64,
    /// The last acknowledgement's kind (None with AckMode None).
    pub ack: Option<AckKind>,
    /// Attempts made.
    pub attempts: u32,
}

/// What a blocking send learns of its message's end.
struct Finished {
    result: Result<()>,
    ack: Option<AckKind>,
    attempts: u32,
}

/// An event waiting to be delivered (owned, so no lock is held while the host runs).
enum Pending {
    Connected(u64),
    Disconnected(u64, Error),
    AckIn(u64, Option<u64>, Ack),
    Done(u64, Outcome),
    Error(u64, Error),
    Log(u64, LogLevel, String),
    SslStatus(u64, String),
}

struct State {
    settings: ClientSettings,
    sender: Sender,
    /// The current connection's number (0 before the first).
    conn_no: u64,
    connected: bool,
    tls_info: Option<TlsInfo>,
    /// Built client TLS configuration and the settings it was built from (kept: it holds the
    /// session cache).
    tls_config: Option<(tls::ClientTlsSettings, Arc<rustls::ClientConfig>)>,
    /// Blocking sends in progress and, once known, their outcomes (one per thread blocked in
    /// `send`, so a short list).
    waiting: Vec<(u64, Option<Finished>)>,
    /// The delivery queue's spare buffer (kept to avoid an allocation per turn).
    spare: Vec<Pending>,
    queue: Vec<Pending>,
}

struct Drive {
    poll: Poll,
    events: Events,
    io: Option<Io>,
}

/// An MLLP client: one connection to one server, messages sent in order with reliable-delivery
/// rules (see [`sender`]). Every method may be called from any thread.
pub struct Client {
    state: Mutex<State>,
    drive: Mutex<Drive>,
    waker: Waker,
    handler: Arc<Mutex<Arc<dyn ClientHandler>>>,
    /// The thread driving I/O now (for the REENTRANT check).
    driver: Mutex<Option<ThreadId>>,
    /// The number of the connection being opened or open (SSLServerAuthentication reads it
    /// inside the handshake).
    conn_no: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// A client with default settings, not connected.
    pub fn new() -> Result<Self> {
        let poll = Poll::new().map_err(|e| Error::from_io(&e, "create poll"))?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(|e| Error::from_io(&e, "create waker"))?;
        let settings = ClientSettings::default();
        Ok(Client {
            state: Mutex::new(State {
                sender: Sender::new(settings.sender_config()),
                settings,
                conn_no: 0,
                connected: false,
                tls_info: None,
                tls_config: None,
                waiting: Vec::new(),
                spare: Vec::new(),
                queue: Vec::new(),
            }),
            drive: Mutex::new(Drive { poll, events: Events::with_capacity(8), io: None }),
            waker,
            handler: Arc::new(Mutex::new(Arc::new(NoHandler))),
            driver: Mutex::new(None),
            conn_no: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sets the event handler.
    pub fn set_handler(&self, handler: Arc<dyn ClientHandler>) {
        *lock(&self.handler) = handler;
    }

    fn handler(&self) -> Arc<dyn ClientHandler> {
        lock(&self.handler).clone()
    }

    /// A copy of the settings.
    pub fn settings(&self) -> ClientSettings {
        lock(&self.state).settings.clone()
    }

    /// Changes settings; the sending rules apply from the next message on, connection settings
    /// from the next connection.
    pub fn update(&self, f: impl FnOnce(&mut ClientSettings) -> Result<()>) -> Result<()> {
        let mut st = lock(&self.state);
        let mut s = st.settings.clone();
        f(&mut s)?;
        let cfg = s.sender_config();
        st.sender.reconfigure(cfg);
        st.settings = s;
        Ok(())
    }

    /// Reads (`"Name"`) or writes (`"Name=Value"`, returning "") a Config setting.
    pub fn config(&self, cmd: &str) -> Result<String> {
        let (key, value) = crate::config::split_config(cmd);
        match value {
            Some(v) => {
                let k = key.trim().to_ascii_lowercase();
                if ["pendingcount", "connected"].contains(&k.as_str())
                    || crate::tls::NEGOTIATED.iter().any(|n| n.eq_ignore_ascii_case(&k))
                {
                    return Err(Error::new(code::INVALID_VALUE, format!("{} is read-only", key.trim())));
                }
                self.update(|s| s.set(key, v)).map(|_| String::new())
            }
            None => {
                let st = lock(&self.state);
                let k = key.trim();
                if k.eq_ignore_ascii_case("PendingCount") {
                    return Ok(st.sender.pending().to_string());
                }
                if let Some(n) = crate::tls::NEGOTIATED.iter().find(|n| n.eq_ignore_ascii_case(k)) {
                    return Ok(st.tls_info.as_ref().and_then(|i| i.get(n)).unwrap_or_default());
                }
                st.settings.get(k)
            }
        }
    }

    /// Sets SSLCert: the certificate presented for mutual TLS (None: none).
    pub fn set_ssl_cert(&self, cert: Option<Arc<Certificate>>) {
        let _ = self.update(|s| {
            s.tls.cert = cert;
            Ok(())
        });
    }

    /// True while connected.
    pub fn connected(&self) -> bool {
        lock(&self.state).connected
    }

    /// Messages queued or awaiting an acknowledgement.
    pub fn pending(&self) -> usize {
        lock(&self.state).sender.pending()
    }

    fn check_not_reentrant(&self) -> Result<()> {
        if *lock(&self.driver) == Some(std::thread::current().id()) {
            return Err(Error::new(
                code::REENTRANT,
                "this call drives the client's I/O and cannot be made from inside one of its event handlers",
            ));
        }
        Ok(())
    }

    /// Takes the right to drive I/O (one thread at a time).
    fn begin(&self) -> Result<MutexGuard<'_, Drive>> {
        self.check_not_reentrant()?;
        let g = lock(&self.drive);
        *lock(&self.driver) = Some(std::thread::current().id());
        Ok(g)
    }

    fn end(&self, g: MutexGuard<'_, Drive>) {
        *lock(&self.driver) = None;
        drop(g);
    }

    /// Opens the connection (TLS handshake included), bounded by Timeout. Already connected: Ok.
    pub fn connect(&self) -> Result<()> {
        let mut d = self.begin()?;
        let r = if d.io.is_some() { Ok(()) } else { self.open(&mut d) };
        self.deliver();
        self.end(d);
        r
    }

    /// Closes the connection. Messages awaiting an acknowledgement stay queued (their attempt
    /// counts as failed) and are sent on the next connection.
    pub fn disconnect(&self) -> Result<()> {
        let mut d = self.begin()?;
        self.close_io(&mut d, Error::new(code::OK, "disconnected by the host"));
        self.deliver();
        self.end(d);
        Ok(())
    }

    /// Closes the connection (Disconnected) and ends every message not yet finished with a
    /// SendDone carrying 672 (INTERRUPTED): the host hears of every message it queued, unsent
    /// ones included. The handler runs on the calling thread before this returns. The client
    /// stays usable: a later send connects again. Dropping the client does this too.
    pub fn close(&self) -> Result<()> {
        let mut d = self.begin()?;
        self.close_io(&mut d, Error::new(code::OK, "the client was closed"));
        {
            let mut st = lock(&self.state);
            if st.sender.pending() > 0 {
                let why = Error::new(code::INTERRUPTED, "the client was closed before the send completed");
                st.sender.abandon(why);
                Self::collect(&mut st);
            }
        }
        self.deliver();
        self.end(d);
        Ok(())
    }

    /// Sends a message and waits for its outcome: Ok once positively acknowledged (or written,
    /// with AckMode None); Err with the last failure after the retries. Connects when needed.
    pub fn send(&self, data: &[u8]) -> Result<SendResult> {
        let (r, o) = self.send_outcome(data);
        r.and_then(|()| o.ok_or_else(|| Error::new(code::BAD_STATE, "the send ended without an outcome")))
    }

    /// As [`send`](Self::send), with the outcome's details also when it failed (None only when
    /// the message was never accepted for sending).
    pub fn send_outcome(&self, data: &[u8]) -> (Result<()>, Option<SendResult>) {
        let mut d = match self.begin() {
            Ok(d) => d,
            Err(e) => return (Err(e), None),
        };
        let queued = {
            let mut st = lock(&self.state);
            let q = st.sender.queue(data.to_vec(), Instant::now());
            if let Ok(id) = q {
                st.waiting.push((id, None));
            }
            q
        };
        let id = match queued {
            Ok(id) => id,
            Err(e) => {
                self.end(d);
                return (Err(e), None);
            }
        };
        self.run(&mut d, None, |st| st.waiting.iter().any(|(w, o)| *w == id && o.is_some()));
        let outcome = {
            let mut st = lock(&self.state);
            let at = st.waiting.iter().position(|(w, _)| *w == id);
            at.and_then(|i| st.waiting.swap_remove(i).1)
        };
        self.end(d);
        match outcome {
            Some(Finished { result, ack, attempts }) => (result, Some(SendResult { message_id: id, ack, attempts })),
            None => (Err(Error::new(code::BAD_STATE, "the send ended without an outcome")), None),
        }
    }

    /// Queues a message and returns its id at once; its SendDone event comes from
    /// [`do_events`](Self::do_events) (or a later blocking call).
    pub fn send_async(&self, data: &[u8]) -> Result<u64> {
        let id = lock(&self.state).sender.queue(data.to_vec(), Instant::now())?;
        let _ = self.waker.wake();
        Ok(id)
    }

    /// Drives I/O and delivers events on the calling thread until nothing is queued or in
    /// flight, or `timeout_ms` passed. Returns the messages still pending.
    pub fn do_events(&self, timeout_ms: u32) -> Result<usize> {
        let mut d = self.begin()?;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
        self.run(&mut d, Some(deadline), |st| st.sender.pending() == 0);
        self.end(d);
        Ok(self.pending())
    }

    fn push(st: &mut State, p: Pending) {
        st.queue.push(p);
    }

    /// Moves the sender's events to the delivery queue.
    fn collect(st: &mut State) {
        let conn = if st.connected { st.conn_no } else { 0 };
        while let Some(ev) = st.sender.poll_event() {
            let p = match ev {
                SenderEvent::AckIn { message, ack } => Pending::AckIn(conn, message, ack),
                SenderEvent::Done(o) => {
                    if let Some((_, slot)) = st.waiting.iter_mut().find(|(w, _)| *w == o.id) {
                        *slot = Some(Finished { result: o.result.clone(), ack: o.ack, attempts: o.attempts });
                    }
                    Pending::Done(conn, o)
                }
                SenderEvent::Error(e) => Pending::Error(conn, e),
                SenderEvent::Log { level, message } => Pending::Log(conn, level, message),
            };
            st.queue.push(p);
        }
    }

    /// Delivers queued events to the handler, with no lock held.
    fn deliver(&self) {
        let mut evs = {
            let mut st = lock(&self.state);
            if st.queue.is_empty() {
                return;
            }
            let spare = std::mem::take(&mut st.spare);
            std::mem::replace(&mut st.queue, spare)
        };
        let h = self.handler();
        for ev in evs.drain(..) {
            guarded(|| match ev {
                Pending::Connected(c) => {
                    h.connected(&StatusEvent { connection_id: c.into(), status_code: 0, description: "OK" })
                }
                Pending::Disconnected(c, e) => h.disconnected(&StatusEvent {
                    connection_id: c.into(),
                    status_code: e.code,
                    description: if e.code == 0 { "OK" } else { &e.message },
                }),
                Pending::AckIn(c, message_id, a) => h.ack_in(&AckInEvent {
                    connection_id: c.into(),
                    message_id,
                    kind: a.kind,
                    control_id: &a.control_id,
                    text: &a.text,
                    data: &a.data,
                }),
                Pending::Done(c, o) => h.send_done(&SendDoneEvent {
                    connection_id: c.into(),
                    message_id: o.id,
                    control_id: &o.control_id,
                    result: &o.result,
                    ack: o.ack,
                    attempts: o.attempts,
                }),
                Pending::Error(c, e) => {
                    h.error(&ErrorEvent { connection_id: c.into(), error_code: e.code, description: &e.message })
                }
                Pending::Log(c, level, m) => {
                    h.log(&LogEvent { connection_id: c.into(), log_level: level, message: &m, log_type: level.name() })
                }
                Pending::SslStatus(c, m) => h.ssl_status(&SslStatusEvent { connection_id: c.into(), message: &m }),
            });
        }
        lock(&self.state).spare = evs;
    }

    /// The TLS configuration for the current settings (built once per change of them).
    fn tls_config(&self, st: &mut State) -> Result<Option<Arc<rustls::ClientConfig>>> {
        let s = &st.settings.tls;
        if !s.enabled {
            return Ok(None);
        }
        if let Some((built_from, c)) = &st.tls_config {
            if built_from == s {
                return Ok(Some(c.clone()));
            }
        }
        let handler = self.handler.clone();
        let include_chain = s.include_cert_chain;
        // The hook runs inside the handshake on the driving thread, with no lock of ours held.
        let conn = self.conn_no.clone();
        let hook: tls::AuthHook = Arc::new(move |auth: &mut ServerAuth<'_>| {
            let h = lock(&handler).clone();
            let connection_id = conn.load(Ordering::Relaxed).into();
            guarded(|| {
                h.ssl_server_authentication(&mut SslServerAuthenticationEvent { connection_id, include_chain, auth })
            });
        });
        let c = tls::client_config(s, hook)?;
        st.tls_config = Some((s.clone(), c.clone()));
        Ok(Some(c))
    }

    /// Opens the connection; on failure the error is also reported as an Error event.
    fn open(&self, d: &mut Drive) -> Result<()> {
        let (settings, tls) = {
            let mut st = lock(&self.state);
            let tls = self.tls_config(&mut st)?;
            self.conn_no.store(st.conn_no + 1, Ordering::Relaxed);
            (st.settings.clone(), tls)
        };
        let tls = match tls {
            None => None,
            Some(c) => Some((c, tls::server_name(&settings.tls, &settings.remote_host)?)),
        };
        let secure = tls.is_some();
        let deadline = settings.timeout().map(|t| Instant::now() + t);
        let opened = Io::open(&settings, tls, deadline);
        let mut st = lock(&self.state);
        match opened {
            Ok((mut io, info)) => {
                io.log_packets = settings.tls.log_packets;
                if let Err(e) = d.poll.registry().register(&mut io.sock, SOCKET, Interest::READABLE) {
                    return Err(Error::from_io(&e, "register socket"));
                }
                st.conn_no += 1;
                st.connected = true;
                let c = st.conn_no;
                if let Some(i) = &info {
                    let m = format!(
                        "TLS handshake complete: {} {}{}",
                        i.version,
                        i.cipher_suite,
                        if i.resumed { " (session resumed)" } else { "" }
                    );
                    Self::push(&mut st, Pending::SslStatus(c, m));
                }
                st.tls_info = info;
                if settings.log_level >= 1 {
                    let what = if secure { "TLS connection" } else { "connection" };
                    let m = format!("{what} to {}:{} open", settings.remote_host, settings.remote_port);
                    Self::push(&mut st, Pending::Log(c, LogLevel::Info, m));
                }
                Self::push(&mut st, Pending::Connected(c));
                st.sender.on_connected(Instant::now());
                d.io = Some(io);
                Self::collect(&mut st);
                Ok(())
            }
            Err(e) => {
                Self::push(&mut st, Pending::Error(0, e.clone()));
                Err(e)
            }
        }
    }

    fn close_io(&self, d: &mut Drive, why: Error) {
        let Some(mut io) = d.io.take() else { return };
        let _ = d.poll.registry().deregister(&mut io.sock);
        io.close();
        let mut st = lock(&self.state);
        let c = st.conn_no;
        st.connected = false;
        st.tls_info = None;
        st.sender.on_disconnected(why.clone(), Instant::now());
        Self::push(&mut st, Pending::Disconnected(c, why));
        Self::collect(&mut st);
    }

    /// The I/O loop: runs until `done` holds (checked after every step) or `deadline` passes.
    fn run(&self, d: &mut Drive, deadline: Option<Instant>, done: impl Fn(&State) -> bool) {
        loop {
            let now = Instant::now();
            let (finished, want_connect, next, close) = {
                let mut st = lock(&self.state);
                st.sender.handle_timeout(now);
                let close = st.sender.take_close();
                if close.is_none() {
                    let Drive { poll, io, .. } = &mut *d;
                    if let Some(io) = io {
                        if let Err(e) = write_out(io, &mut st.sender, now) {
                            drop(st);
                            self.close_io(d, Error::from_io(&e, "write"));
                            self.deliver();
                            continue;
                        }
                        // Writable readiness only while output waits: edge-triggered EPOLLOUT
                        // would otherwise wake the loop on every TCP acknowledgement.
                        let c = st.conn_no;
                        st.queue.extend(io.status.drain(..).map(|m| Pending::SslStatus(c, m)));
                        let want = !st.sender.transmit().is_empty() || io.tls_pending();
                        if want != io.write_interest {
                            let i = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                            if poll.registry().reregister(&mut io.sock, SOCKET, i).is_ok() {
                                io.write_interest = want;
                            }
                        }
                    }
                }
                Self::collect(&mut st);
                (done(&st), st.sender.wants_connect(now), st.sender.poll_timeout(), close)
            };
            if let Some(why) = close {
                self.close_io(d, why);
                self.deliver();
                continue;
            }
            self.deliver();
            if finished || deadline.is_some_and(|t| t <= now) {
                return;
            }
            if want_connect && d.io.is_none() {
                if let Err(e) = self.open(d) {
                    // A setting, certificate or key that cannot be used fails the same way on
                    // every attempt: no retries for it.
                    let permanent =
                        [code::CERTIFICATE, code::INVALID_VALUE, code::INVALID_ARGUMENT, code::CANNOT_OPEN_FILE]
                            .contains(&e.code);
                    let mut st = lock(&self.state);
                    st.sender.on_connect_failed(e, Instant::now(), permanent);
                    Self::collect(&mut st);
                }
                self.deliver();
                continue;
            }
            let wake = [next, deadline].into_iter().flatten().min();
            let wait = wake.map(|t| t.saturating_duration_since(now));
            // Nothing to wait for (an idle client without a deadline): done.
            if wait.is_none() && d.io.is_none() {
                return;
            }
            let Drive { poll, events, .. } = &mut *d;
            if let Err(e) = poll.poll(events, wait) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    let mut st = lock(&self.state);
                    Self::push(&mut st, Pending::Error(0, Error::from_io(&e, "poll")));
                }
                continue;
            }
            let readable =
                d.events.iter().any(|e| e.token() == SOCKET && (e.is_readable() || e.is_read_closed() || e.is_error()));
            if readable {
                self.read_all(d);
            }
        }
    }

    /// Reads until the socket would block; the connection's end closes it.
    fn read_all(&self, d: &mut Drive) {
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < READ_CHUNK {
                buf.resize(READ_CHUNK, 0);
            }
            loop {
                let Some(io) = &mut d.io else { return };
                let (n, more) = match io.read(&mut buf) {
                    Ok(Read_::Data(n)) => (n, true),
                    Ok(Read_::Drained(n)) => (n, false),
                    Ok(Read_::WouldBlock) => return,
                    Ok(Read_::Closed) => {
                        return self.close_io(d, Error::new(code::DROPPED, "the server closed the connection"))
                    }
                    Err(e) => return self.close_io(d, Error::from_io(&e, "read")),
                };
                let lines = std::mem::take(&mut io.status);
                if n > 0 || !lines.is_empty() {
                    let mut st = lock(&self.state);
                    let c = st.conn_no;
                    st.queue.extend(lines.into_iter().map(|m| Pending::SslStatus(c, m)));
                    if n > 0 {
                        st.sender.handle_input(&buf[..n], Instant::now());
                    }
                    Self::collect(&mut st);
                }
                if !more {
                    return;
                }
            }
        })
    }
}

/// Writes the sender's output until done or the socket would block.
fn write_out(io: &mut Io, sender: &mut Sender, now: Instant) -> std::io::Result<()> {
    loop {
        let out = sender.transmit();
        if out.is_empty() {
            // TLS may still hold records.
            io.write(&[])?;
            return Ok(());
        }
        let n = io.write(out)?;
        if n == 0 {
            return Ok(());
        }
        sender.consume_output(n, now);
    }
}

impl Drop for Client {
    /// As [`close`](Client::close) (skipped when dropped from inside one of its own handlers).
    fn drop(&mut self) {
        let _ = self.close();
    }
}
