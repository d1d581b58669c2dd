//! The safe Rust API: an MLLP server with the reference component's properties, methods and
//! events. The C ABI in `ffi` is a mechanical translation of this type.
//!
//! Thread model: every method may be called from any thread, including from inside an event
//! handler. Methods that would wait for the reactor (a synchronous [`Server::send`], dropping
//! the server) answer [`code::REENTRANT`] when called on the reactor thread instead of
//! deadlocking.

use std::cell::RefCell;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{split_config, EventMode, Settings};
use crate::dispatch::{self, Event};
use crate::error::{code, Error, Result};
use crate::events::{ConnectionId, EventHandler, Verdict};
use crate::reactor;
use crate::shared::{lock, Command, ConnShared, Shared, Waiter};

/// Output queued on a connection past which an asynchronous Send answers "would block".
const SEND_QUEUE_LIMIT: usize = 16 << 20;

thread_local! {
    /// Servers whose events this thread is delivering inside `do_events`.
    static DISPATCHING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// An MLLP server (the reference's MLLPServer).
pub struct Server {
    shared: Arc<Shared>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with default properties, not listening.
    pub fn new() -> Self {
        Server { shared: Arc::new(Shared::new()) }
    }

    /// Sets the handler that receives events (replacing the previous one).
    pub fn set_handler(&self, handler: Arc<dyn EventHandler>) {
        let old = std::mem::replace(&mut *lock(&self.shared.handler), handler);
        self.shared.handler_gen.fetch_add(1, Ordering::Release);
        // Wake the reactor so it lets go of the old handler now, not at its next event.
        if let Some(h) = lock(&self.shared.reactor).as_ref() {
            let _ = h.waker.wake();
        }
        // Dropping a handler may run host code (a C release callback): never under the lock.
        drop(old);
    }

    /// True when the calling thread is delivering this server's events (the reactor thread, or
    /// a thread inside [`Server::do_events`]): calls that wait for the reactor are refused there.
    pub fn in_callback(&self) -> bool {
        let me = Arc::as_ptr(&self.shared) as usize;
        self.shared.on_reactor_thread() || DISPATCHING.with(|d| d.borrow().contains(&me))
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        lock(&self.shared.settings)
    }

    /// Applies a settings change.
    fn update(&self, f: impl FnOnce(&mut Settings) -> Result<()>) -> Result<()> {
        self.update_with(false, f)
    }

    /// Applies a change to a TLS setting. While listening with TLS the TLS configuration is
    /// rebuilt first, re-reading the files it names even when the value is the same (so
    /// setting a path again reloads it): when that fails (bad certificate, CA list or CRL)
    /// the error is returned and nothing changes; otherwise connections accepted from now on
    /// use the new configuration and established ones keep theirs.
    fn update_tls(&self, f: impl FnOnce(&mut Settings) -> Result<()>) -> Result<()> {
        self.update_with(true, f)
    }

    fn update_with(&self, tls: bool, f: impl FnOnce(&mut Settings) -> Result<()>) -> Result<()> {
        let mut s = self.settings();
        let mut next = s.clone();
        f(&mut next)?;
        let changed = tls || tls_changed(&s.tls, &next.tls);
        let rebuilt = if changed && self.listening() && lock(&self.shared.tls_ctx).is_some() {
            Some(crate::tls::TlsContext::build(&next.tls)?)
        } else {
            None
        };
        self.shared.dups.set_capacity(next.duplicate_window as usize);
        *s = next;
        if let Some(ctx) = rebuilt {
            self.report_expired_crls(&ctx);
            *lock(&self.shared.tls_ctx) = Some(ctx);
        }
        drop(s);
        self.shared.bump_settings();
        Ok(())
    }

    /// An Error event (`code::CERTIFICATE`) per SSLClientCRLs entry past its nextUpdate.
    fn report_expired_crls(&self, ctx: &crate::tls::TlsContext) {
        for c in &ctx.expired_crls {
            let msg = format!(
                "SSLClientCRLs: the CRL of {c} has expired; client certificates it covers are refused \
                 until a current CRL is set"
            );
            let _ = self.shared.command(Command::Report(Error::new(code::CERTIFICATE, msg)));
        }
    }

    // ----- properties -----

    /// DefaultTimeout: the Timeout given to new connections, in seconds (0 = asynchronous sends).
    pub fn default_timeout(&self) -> u32 {
        self.settings().default_timeout
    }

    /// Sets DefaultTimeout.
    pub fn set_default_timeout(&self, secs: u32) {
        let _ = self.update(|s| {
            s.default_timeout = secs;
            Ok(())
        });
    }

    /// KeepAlive: SO_KEEPALIVE on connections accepted from now on.
    pub fn keep_alive(&self) -> bool {
        self.settings().keep_alive
    }

    /// Sets KeepAlive.
    pub fn set_keep_alive(&self, on: bool) {
        let _ = self.update(|s| {
            s.keep_alive = on;
            Ok(())
        });
    }

    /// Listening: whether the server accepts connections.
    pub fn listening(&self) -> bool {
        self.shared.listening.load(Ordering::Acquire)
    }

    /// LocalHost: the interface listened on ("" = all).
    pub fn local_host(&self) -> String {
        if self.listening() {
            return lock(&self.shared.bound_host).clone();
        }
        self.settings().local_host.clone()
    }

    /// Sets LocalHost; error 107 while listening.
    pub fn set_local_host(&self, host: &str) -> Result<()> {
        if self.listening() {
            return Err(Error::new(code::CANNOT_CHANGE_LOCAL_HOST, "cannot change LocalHost while listening"));
        }
        self.update(|s| {
            s.local_host = host.trim().to_string();
            Ok(())
        })
    }

    /// LocalPort: the port listened on; while listening, the real port (useful after setting 0).
    pub fn local_port(&self) -> u16 {
        if self.listening() {
            return self.shared.bound_port.load(Ordering::Acquire);
        }
        self.settings().local_port
    }

    /// Sets LocalPort; error 106 while listening.
    pub fn set_local_port(&self, port: u16) -> Result<()> {
        if self.listening() {
            return Err(Error::new(code::CANNOT_CHANGE_LOCAL_PORT, "cannot change LocalPort while listening"));
        }
        self.update(|s| {
            s.local_port = port;
            Ok(())
        })
    }

    /// Version: MLLP version 1 or 2.
    pub fn version(&self) -> u8 {
        self.settings().version
    }

    /// Sets Version (1 or 2).
    pub fn set_version(&self, v: u8) -> Result<()> {
        if v != 1 && v != 2 {
            return Err(Error::new(code::INVALID_VALUE, "Version must be 1 or 2"));
        }
        self.update(|s| {
            s.version = v;
            Ok(())
        })
    }

    /// Config: `"NAME=VALUE"` sets a setting and returns ""; `"NAME"` returns its value.
    pub fn config(&self, cmd: &str) -> Result<String> {
        let (key, value) = split_config(cmd);
        if key.is_empty() {
            return Err(Error::new(code::INVALID_VALUE, "empty setting name"));
        }
        let Some(value) = value else {
            if let Some((name, id)) = key.strip_suffix(']').and_then(|k| k.split_once('[')) {
                let id: ConnectionId = id
                    .trim()
                    .parse()
                    .map_err(|_| Error::new(code::INVALID_VALUE, format!("'{id}' is not a connection id")))?;
                return self.ssl_negotiated(id, name);
            }
            let k = key.to_ascii_lowercase();
            if k == "localport" {
                return Ok(self.local_port().to_string());
            }
            if k == "localhost" {
                return Ok(self.local_host());
            }
            if k == "duplicatecount" {
                return Ok(self.duplicate_count().to_string());
            }
            if k == "bufferedbytes" {
                return Ok(self.buffered_bytes().to_string());
            }
            if k == "connectionlimit" {
                return Ok(self.connection_limit().to_string());
            }
            return self.settings().get(key);
        };
        let k = key.to_ascii_lowercase();
        match k.as_str() {
            "localhost" | "localport" | "useipv6" if self.listening() => {
                let c = if k == "localport" { code::CANNOT_CHANGE_LOCAL_PORT } else { code::CANNOT_CHANGE_LOCAL_HOST };
                return Err(Error::new(c, format!("cannot change {key} while listening")));
            }
            "eventmode" if self.listening() || lock(&self.shared.conns).count > 0 => {
                return Err(Error::new(
                    code::BAD_STATE,
                    "EventMode can only change while not listening and with no connections open",
                ));
            }
            _ => {}
        }
        if is_tls_setting(key) {
            self.update_tls(|s| s.set(key, value))?;
        } else {
            self.update(|s| s.set(key, value))?;
        }
        Ok(String::new())
    }

    // ----- methods -----

    /// StartListening: binds LocalHost:LocalPort and starts accepting. Binding happens on the
    /// calling thread, so "address in use" (10048) is returned here.
    pub fn start_listening(&self) -> Result<()> {
        if self.listening() {
            return Ok(());
        }
        let (host, port, ipv6, rcvbuf, sndbuf) = {
            let s = self.settings();
            (s.local_host.clone(), s.local_port, s.use_ipv6, s.in_buffer_size, s.out_buffer_size)
        };
        let addr = resolve(&host, port, ipv6)?;
        // TLS problems (certificate, key, password, expiry, CA lists) fail here, not later.
        let tls_settings = self.settings().tls.clone();
        let tls = if tls_settings.enabled { Some(crate::tls::TlsContext::build(&tls_settings)?) } else { None };
        let listener = bind(addr, ipv6, rcvbuf, sndbuf)?;
        let bound = listener.local_addr().map_err(|e| Error::from_io(&e, "local address"))?;
        self.ensure_reactor()?;
        *lock(&self.shared.bound_host) = bound.ip().to_string();
        self.shared.bound_port.store(bound.port(), Ordering::Release);
        if let Some(ctx) = &tls {
            self.report_expired_crls(ctx);
        }
        *lock(&self.shared.tls_ctx) = tls;
        self.shared.command(Command::Listen(listener))?;
        self.shared.listening.store(true, Ordering::Release);
        Ok(())
    }

    fn ensure_reactor(&self) -> Result<()> {
        let mut r = lock(&self.shared.reactor);
        if r.is_none() {
            *r = Some(reactor::spawn(&self.shared)?);
        }
        Ok(())
    }

    /// StopListening: stops accepting; existing connections stay.
    pub fn stop_listening(&self) -> Result<()> {
        if !self.listening() {
            return Ok(());
        }
        self.shared.listening.store(false, Ordering::Release);
        self.close_listener()
    }

    /// Has the reactor close the listening socket and, unless called from a callback, waits
    /// for it, so a client connecting afterwards is refused.
    fn close_listener(&self) -> Result<()> {
        if self.in_callback() {
            return self.shared.command(Command::StopListening(None));
        }
        let w = Waiter::new();
        self.shared.command(Command::StopListening(Some(w.clone())))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        w.wait(|| deadline).unwrap_or(Ok(()))
    }

    /// Shutdown: StopListening, then Disconnect every connection.
    pub fn shutdown(&self) -> Result<()> {
        self.shared.listening.store(false, Ordering::Release);
        if lock(&self.shared.reactor).is_none() {
            return Ok(());
        }
        self.close_listener()?;
        self.shared.command(Command::DisconnectAll)
    }

    /// Reset: Shutdown, then every property and setting back to its default (handlers stay).
    pub fn reset(&self) -> Result<()> {
        self.shutdown()?;
        *self.settings() = Settings::default();
        self.shared.bump_settings();
        let mut q = lock(&self.shared.queue);
        q.items.clear();
        q.bytes = 0;
        Ok(())
    }

    /// Disconnect: closes the connection (queued replies are flushed first when possible).
    pub fn disconnect(&self, id: ConnectionId) -> Result<()> {
        self.shared.conn(id)?;
        self.shared.command(Command::Disconnect(id))
    }

    /// Interrupt: makes a synchronous Send on this connection return at once with
    /// [`code::SEND_INTERRUPTED`]. The connection stays open.
    pub fn interrupt(&self, id: ConnectionId) -> Result<()> {
        let c = self.shared.conn(id)?;
        c.fail_waiters(&Error::new(code::SEND_INTERRUPTED, "synchronous send interrupted"));
        Ok(())
    }

    /// Send: sends the connection's input (InputStream, else InputFileName, else InputData)
    /// framed in MLLP. With Timeout 0 it returns once queued; with Timeout > 0 it waits for the
    /// client's acknowledgement (version 2) or for the data to be written (version 1), and
    /// returns 670 on a NAK, 201 on timeout, [`code::SEND_INTERRUPTED`] after Interrupt.
    pub fn send(&self, id: ConnectionId) -> Result<()> {
        let c = self.shared.conn(id)?;
        let close = self.settings().close_stream_after_transfer;
        // Refuse before the input is consumed: a refused Send must not use up the stream.
        let timeout = lock(&c.fields).timeout;
        self.check_send(&c, timeout)?;
        let (payload, timeout) = take_input(&c, close)?;
        self.send_payload(&c, payload, timeout)
    }

    /// Sends `data` on the connection without touching its InputData (a convenience for hosts
    /// that keep their own buffers). Same waiting rules as [`Server::send`].
    pub fn send_bytes(&self, id: ConnectionId, data: &[u8]) -> Result<()> {
        let c = self.shared.conn(id)?;
        let timeout = lock(&c.fields).timeout;
        self.send_payload(&c, data.to_vec(), timeout)
    }

    /// The checks a Send can fail before its data is taken: a synchronous send inside a
    /// callback, or a full output queue for an asynchronous one.
    fn check_send(&self, c: &ConnShared, timeout: u32) -> Result<()> {
        if timeout > 0 && self.in_callback() {
            return Err(Error::new(
                code::REENTRANT,
                "a synchronous Send (Timeout > 0) cannot wait inside a callback; set Timeout to 0 there",
            ));
        }
        if timeout == 0 && c.queued_out.load(Ordering::Relaxed) > SEND_QUEUE_LIMIT {
            return Err(Error::new(code::WOULD_BLOCK, "the connection's output queue is full; try again later"));
        }
        Ok(())
    }

    fn send_payload(&self, c: &Arc<ConnShared>, payload: Vec<u8>, timeout: u32) -> Result<()> {
        let (chars, absolute) = {
            let s = self.settings();
            (s.chars, s.absolute_timeout)
        };
        if payload.is_empty() {
            return Err(Error::new(
                code::INVALID_VALUE,
                "nothing to send: InputData, InputFileName and the input stream are empty",
            ));
        }
        if !crate::codec::can_frame(chars, &payload) {
            return Err(Error::new(
                code::INVALID_DATA,
                "data contains the StartBlockChar or EndBlockChar and cannot be framed",
            ));
        }
        self.check_send(c, timeout)?;
        if timeout == 0 {
            return self.shared.command(Command::Send { id: c.id, payload, waiter: None });
        }
        let w = Waiter::new();
        lock(&c.waiters).push(w.clone());
        if let Err(e) = self.shared.command(Command::Send { id: c.id, payload, waiter: Some(w.clone()) }) {
            lock(&c.waiters).retain(|x| !Arc::ptr_eq(x, &w));
            return Err(e);
        }
        let start = Instant::now();
        let limit = Duration::from_secs(timeout as u64);
        let epoch = self.shared.epoch;
        let r = w.wait(|| {
            if absolute {
                start + limit
            } else {
                let last = epoch + Duration::from_millis(c.activity_ms.load(Ordering::Relaxed));
                start.max(last) + limit
            }
        });
        lock(&c.waiters).retain(|x| !Arc::ptr_eq(x, &w));
        r.unwrap_or_else(|| Err(Error::new(code::TIMEOUT, format!("no acknowledgement within {timeout} s"))))
    }

    /// DoEvents: in EventMode=DoEvents, delivers queued events on the calling thread, waiting
    /// up to `timeout_ms` for the first one. Returns how many were delivered. In thread mode
    /// events are delivered by the reactor, and this only waits `timeout_ms`.
    pub fn do_events(&self, timeout_ms: u32) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
        if self.settings().event_mode == EventMode::Thread {
            std::thread::sleep(Duration::from_millis(timeout_ms as u64));
            return Ok(0);
        }
        let (items, resume) = {
            let mut q = lock(&self.shared.queue);
            while q.items.is_empty() {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(0);
                }
                q = self.shared.queue_cv.wait_timeout(q, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            let items: Vec<Event> = q.items.drain(..).collect();
            q.bytes = 0;
            let resume = q.reads_paused;
            q.reads_paused = false;
            (items, resume)
        };
        if resume {
            let _ = self.shared.command(Command::ResumeReads);
        }
        let n = items.len();
        self.dispatching(|| {
            let handler = lock(&self.shared.handler).clone();
            for item in items {
                let d = dispatch::deliver(&*handler, &self.shared, item);
                if let Some(buf) = d.reusable {
                    // Large buffers go back to the pool for the reactor to reuse.
                    self.shared.pool.give(buf, Instant::now());
                }
                if let Some(r) = d.reply {
                    let _ = self.shared.command(Command::Apply(r));
                }
            }
        });
        Ok(n)
    }

    /// Runs `f` marked as delivering this server's events on the calling thread.
    fn dispatching(&self, f: impl FnOnce()) {
        let me = Arc::as_ptr(&self.shared) as usize;
        DISPATCHING.with(|d| d.borrow_mut().push(me));
        f();
        DISPATCHING.with(|d| {
            let mut d = d.borrow_mut();
            if let Some(p) = d.iter().rposition(|&x| x == me) {
                d.remove(p);
            }
        });
    }

    /// Acknowledges message `seq` of a connection whose AckOut set `defer`, with `verdict`
    /// (ACK, or NAK with its MSA-1 code in HL7 mode). Replies leave in message order: an
    /// earlier message still undecided holds this one back. Queued; any thread, also inside
    /// callbacks. A `seq` that is not awaiting a decision is ignored.
    pub fn acknowledge(&self, id: ConnectionId, seq: u64, verdict: Verdict) -> Result<()> {
        self.shared.conn(id)?;
        self.shared.command(Command::Apply(dispatch::Reply::Ack { id, seq, verdict }))
    }

    /// Acknowledges message `seq` of a connection whose AckOut set `defer` with exactly
    /// `reply` (unframed: an HL7 ACK, or in MLLP mode the ACK or NAK byte), for instance the
    /// original acknowledgement of a message the host's own store has seen before. Same
    /// ordering rules as [`Server::acknowledge`]; a positive reply is remembered by
    /// DuplicateWindow.
    pub fn acknowledge_with(&self, id: ConnectionId, seq: u64, reply: &[u8]) -> Result<()> {
        self.shared.conn(id)?;
        self.shared.command(Command::Apply(dispatch::Reply::AckWith { id, seq, reply: reply.to_vec() }))
    }

    /// Sends an HL7 application acknowledgement (`code` AA, AE or AR) for `message`, a message
    /// received on connection `id`, as a message of its own built from its MSH — when its
    /// MSH-16 asks for one (AL always, ER only for AE/AR, SU only for AA, NE or empty never).
    /// Returns whether it was sent. Asynchronous (queued as with Timeout 0).
    pub fn send_app_ack(
        &self,
        id: ConnectionId,
        message: &[u8],
        code: crate::hl7::AckCode,
        text: Option<&str>,
    ) -> Result<bool> {
        use crate::hl7::AckCode;
        if !matches!(code, AckCode::AA | AckCode::AE | AckCode::AR) {
            return Err(Error::new(code::INVALID_VALUE, "an application acknowledgement is AA, AE or AR"));
        }
        let c = self.shared.conn(id)?;
        let Some(msh) = crate::hl7::parse_msh(message) else {
            return Err(Error::new(code::INVALID_VALUE, "the message has no MSH segment to acknowledge"));
        };
        let t = msh.app_ack_type;
        if t.is_empty() || !crate::hl7::ack_wanted(t, code.is_accept()) {
            return Ok(false);
        }
        let ack = crate::hl7::build_ack_now(message, code, text.map(str::as_bytes));
        // send_payload makes the checks a send can fail (framing, a full queue).
        self.send_payload(&c, ack, 0)?;
        Ok(true)
    }

    /// The server's metrics now: connections, messages, bytes, acknowledgements, errors, TLS
    /// handshakes and the acknowledgement latency histogram (see [`crate::metrics`] for what
    /// is counted where). Counted since the server was created (Reset does not clear them).
    /// Cheap: a relaxed load per counter, no lock.
    pub fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// [`Server::metrics`] in the Prometheus text exposition format (0.0.4), for a `/metrics`
    /// endpoint: every family with `# HELP` and `# TYPE`, errors one series per code seen.
    pub fn metrics_text(&self) -> String {
        self.metrics().to_prometheus()
    }

    /// Heap bytes the server holds for its connections' messages: the capacities of every open
    /// connection's buffers and queues (as of the reactor's last turn on each), each one's
    /// OutputData (the last message, unless KeepOutputData is False) and the shared pool of
    /// message buffers. An idle connection gives its buffers back within a second of going
    /// quiet (nothing buffered, nothing pending), so with KeepOutputData=False and only idle
    /// connections this falls to zero once the pool's entries expire (a second later). Fixed
    /// per-connection state (the connection's structs) and TLS buffers are not counted.
    pub fn retained_bytes(&self) -> usize {
        let conns: Vec<Arc<ConnShared>> = {
            let t = lock(&self.shared.conns);
            t.ids().into_iter().filter_map(|id| t.get(id).cloned()).collect()
        };
        let held: usize = conns
            .iter()
            .map(|c| {
                c.retained.load(Ordering::Relaxed) + lock(&c.fields).output_data.as_ref().map_or(0, |d| d.capacity())
            })
            .sum();
        held + self.shared.pool.bytes()
    }

    /// Partial-message bytes buffered across all connections now (the read-only
    /// BufferedBytes setting; MaxBufferedBytes bounds it).
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.buffered_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The connection limit in force (the read-only ConnectionLimit setting): MaxConnections,
    /// or when it is 0 the limit derived from the descriptor limit (soft RLIMIT_NOFILE less
    /// max(64, limit/8)).
    pub fn connection_limit(&self) -> u64 {
        match self.settings().max_connections {
            0 => crate::reactor::derived_connection_limit() as u64,
            n => u64::from(n),
        }
    }

    /// Duplicates answered from the DuplicateWindow so far (the DuplicateCount setting).
    pub fn duplicate_count(&self) -> u64 {
        self.shared.dups.count()
    }

    // ----- TLS -----

    /// SSLEnabled: whether connections accepted from the next StartListening use TLS.
    pub fn ssl_enabled(&self) -> bool {
        self.settings().tls.enabled
    }

    /// Sets SSLEnabled; takes effect at the next StartListening.
    pub fn set_ssl_enabled(&self, on: bool) {
        let _ = self.update(|s| {
            s.tls.enabled = on;
            Ok(())
        });
    }

    /// SSLAuthenticateClients: ask clients for a certificate (see SSLClientAuthentication).
    pub fn ssl_authenticate_clients(&self) -> bool {
        self.settings().tls.authenticate_clients
    }

    /// Sets SSLAuthenticateClients. While listening with TLS it applies to connections
    /// accepted from now on (the TLS configuration is rebuilt; an error from that rebuild,
    /// e.g. an SSLClientCACerts file gone bad, is returned and nothing changes).
    pub fn set_ssl_authenticate_clients(&self, on: bool) -> Result<()> {
        self.update_tls(|s| {
            s.tls.authenticate_clients = on;
            Ok(())
        })
    }

    /// SSLCert: the certificate presented to clients.
    pub fn ssl_cert(&self) -> Option<Arc<crate::tls::Certificate>> {
        self.settings().tls.cert.clone()
    }

    /// Sets SSLCert (None clears it). Not listening: checked at the next StartListening.
    /// While listening with TLS: checked now (no private key, key mismatch, expired, or None
    /// give `code::CERTIFICATE`, and the old certificate stays in use); once this returns
    /// `Ok`, connections accepted from then on are presented the new certificate, while
    /// established ones continue with the one they were accepted with.
    pub fn set_ssl_cert(&self, cert: Option<Arc<crate::tls::Certificate>>) -> Result<()> {
        self.update_tls(|s| {
            s.tls.cert = cert;
            Ok(())
        })
    }

    /// A negotiated TLS value of a connection by its Config name (SSLNegotiatedCipher,
    /// SSLNegotiatedCipherStrength, SSLNegotiatedCipherSuite, SSLNegotiatedKeyExchange,
    /// SSLNegotiatedKeyExchangeStrength, SSLNegotiatedVersion); "" before the handshake or
    /// for a plain connection.
    pub fn ssl_negotiated(&self, id: ConnectionId, name: &str) -> Result<String> {
        let c = self.shared.conn(id)?;
        if !crate::tls::NEGOTIATED.iter().any(|n| n.eq_ignore_ascii_case(name.trim())) {
            return Err(Error::new(code::UNKNOWN_SETTING, format!("'{name}' is not a negotiated TLS value")));
        }
        let info = lock(&c.tls_info);
        Ok(info.as_ref().and_then(|i| i.get(name.trim())).unwrap_or_default())
    }

    // ----- connections -----

    /// Connections: ids of the open connections.
    pub fn connections(&self) -> Vec<ConnectionId> {
        lock(&self.shared.conns).ids()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.conns).count
    }

    /// Connected: true while the connection is open (false for a stale or unknown id).
    pub fn connected(&self, id: ConnectionId) -> bool {
        self.shared.conn(id).map(|c| c.connected.load(Ordering::Acquire)).unwrap_or(false)
    }

    /// Receiving: true while a message is partly received on the connection (start block
    /// seen, end block not yet). A host draining before shutdown waits for these and closes
    /// the others.
    pub fn receiving(&self, id: ConnectionId) -> Result<bool> {
        Ok(self.shared.conn(id)?.receiving.load(Ordering::Relaxed))
    }

    /// RemoteHost of a connection.
    pub fn remote_host(&self, id: ConnectionId) -> Result<String> {
        Ok(self.shared.conn(id)?.remote.ip().to_string())
    }

    /// RemotePort of a connection.
    pub fn remote_port(&self, id: ConnectionId) -> Result<u16> {
        Ok(self.shared.conn(id)?.remote.port())
    }

    /// LocalAddress of a connection: the local interface it arrived on.
    pub fn local_address(&self, id: ConnectionId) -> Result<String> {
        Ok(self.shared.conn(id)?.local.ip().to_string())
    }

    /// Timeout of a connection, seconds.
    pub fn timeout(&self, id: ConnectionId) -> Result<u32> {
        Ok(lock(&self.shared.conn(id)?.fields).timeout)
    }

    /// Sets a connection's Timeout.
    pub fn set_timeout(&self, id: ConnectionId, secs: u32) -> Result<()> {
        lock(&self.shared.conn(id)?.fields).timeout = secs;
        Ok(())
    }

    /// InputData of a connection (a copy).
    pub fn input_data(&self, id: ConnectionId) -> Result<Vec<u8>> {
        Ok(lock(&self.shared.conn(id)?.fields).input_data.clone())
    }

    /// Sets InputData (copied).
    pub fn set_input_data(&self, id: ConnectionId, data: &[u8]) -> Result<()> {
        let c = self.shared.conn(id)?;
        let mut f = lock(&c.fields);
        f.input_data.clear();
        f.input_data.extend_from_slice(data);
        Ok(())
    }

    /// InputFileName of a connection.
    pub fn input_file_name(&self, id: ConnectionId) -> Result<String> {
        Ok(lock(&self.shared.conn(id)?.fields).input_file.clone())
    }

    /// Sets InputFileName ("" clears it).
    pub fn set_input_file_name(&self, id: ConnectionId, path: &str) -> Result<()> {
        lock(&self.shared.conn(id)?.fields).input_file = path.to_string();
        Ok(())
    }

    /// Sets (or clears) the input stream Send reads from first. The previous stream is dropped.
    pub fn set_input_stream(&self, id: ConnectionId, s: Option<Box<dyn Read + Send>>) -> Result<()> {
        let c = self.shared.conn(id)?;
        let old = std::mem::replace(&mut lock(&c.fields).input_stream, s);
        drop(old);
        Ok(())
    }

    /// OutputData: the last message received on the connection (when no output stream or file
    /// took it; empty with KeepOutputData=False). Shared, not copied.
    pub fn output_data(&self, id: ConnectionId) -> Result<Arc<Vec<u8>>> {
        Ok(lock(&self.shared.conn(id)?.fields).output_data.clone().unwrap_or_default())
    }

    /// OutputFileName of a connection.
    pub fn output_file_name(&self, id: ConnectionId) -> Result<String> {
        Ok(lock(&self.shared.conn(id)?.fields).output_file.clone())
    }

    /// Sets OutputFileName: each message received is written to this file and fsynced before
    /// it is acknowledged ("" clears it).
    pub fn set_output_file_name(&self, id: ConnectionId, path: &str) -> Result<()> {
        lock(&self.shared.conn(id)?.fields).output_file = path.to_string();
        Ok(())
    }

    /// Sets (or clears) the output stream received messages are written to. The previous
    /// stream is dropped.
    pub fn set_output_stream(&self, id: ConnectionId, s: Option<Box<dyn Write + Send>>) -> Result<()> {
        let c = self.shared.conn(id)?;
        let old = std::mem::replace(&mut lock(&c.fields).output_stream, s);
        drop(old);
        Ok(())
    }

    /// Stops the reactor thread and waits for it, closing every connection: Disconnected
    /// fires for each. In DoEvents mode those events (and every other notification still
    /// queued) are delivered by this call, on the calling thread; decisions still queued
    /// (messages, connection requests) are dropped, their connections being closed.
    /// Refused on the reactor thread and inside `do_events`.
    pub fn close(&self) -> Result<()> {
        if self.in_callback() {
            return Err(Error::new(code::REENTRANT, "the server cannot be freed from inside its own callback"));
        }
        self.shared.listening.store(false, Ordering::Release);
        let handle = lock(&self.shared.reactor).take();
        if let Some(mut h) = handle {
            lock(&self.shared.cmds).push(Command::Exit);
            let _ = h.waker.wake();
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
        let items: Vec<Event> = {
            let mut q = lock(&self.shared.queue);
            q.bytes = 0;
            q.items.drain(..).collect()
        };
        if !items.is_empty() {
            self.dispatching(|| {
                let handler = lock(&self.shared.handler).clone();
                for item in items.into_iter().filter(Event::is_notification) {
                    dispatch::deliver(&*handler, &self.shared, item);
                }
            });
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.close().is_err() {
            // Dropped on its own reactor thread: let the thread finish on its own.
            if let Some(h) = lock(&self.shared.reactor).take() {
                lock(&self.shared.cmds).push(Command::Exit);
                let _ = h.waker.wake();
            }
        }
    }
}

/// Whether `key` names a TLS setting (its change rebuilds a running listener's configuration).
fn is_tls_setting(key: &str) -> bool {
    !key.eq_ignore_ascii_case("SSLEnabled") && crate::tls::TlsSettings::default().get(key).is_some_and(|r| r.is_ok())
}

/// Whether a change from `a` to `b` alters the TLS configuration of a running listener
/// (SSLEnabled itself only matters at the next StartListening).
fn tls_changed(a: &crate::tls::TlsSettings, b: &crate::tls::TlsSettings) -> bool {
    let mut b = b.clone();
    b.enabled = a.enabled;
    *a != b
}

/// Reads what Send sends: the input stream, else InputFileName, else InputData.
fn take_input(c: &ConnShared, close_stream: bool) -> Result<(Vec<u8>, u32)> {
    let (stream, file, data, timeout) = {
        let mut f = lock(&c.fields);
        let stream = f.input_stream.take();
        let file = if stream.is_none() { f.input_file.clone() } else { String::new() };
        let data = if stream.is_none() && file.is_empty() { f.input_data.clone() } else { Vec::new() };
        (stream, file, data, f.timeout)
    };
    if let Some(mut s) = stream {
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        if close_stream {
            drop(s);
        } else {
            // Kept for the next Send, unless the host set another stream meanwhile.
            let mut f = lock(&c.fields);
            if f.input_stream.is_none() {
                f.input_stream = Some(s);
            }
        }
        r.map_err(|e| Error::new(code::IO, format!("input stream read failed: {e}")))?;
        return Ok((buf, timeout));
    }
    if !file.is_empty() {
        let buf = fs::read(&file)
            .map_err(|e| Error::new(code::CANNOT_OPEN_FILE, format!("could not read InputFileName '{file}': {e}")))?;
        return Ok((buf, timeout));
    }
    Ok((data, timeout))
}

/// Resolves LocalHost and the UseIPv6 preference to an address to bind.
fn resolve(host: &str, port: u16, ipv6: u8) -> Result<SocketAddr> {
    if host.is_empty() {
        let ip = if ipv6 == 0 { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        return Ok(SocketAddr::new(ip, port));
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (h, port)
        .to_socket_addrs()
        .map_err(|e| Error::new(11001, format!("LocalHost '{host}' not found: {e}")))?
        .collect();
    let prefer_v6 = ipv6 != 0;
    addrs
        .iter()
        .find(|a| a.is_ipv6() == prefer_v6)
        .or_else(|| if ipv6 == 1 { None } else { addrs.first() })
        .copied()
        .ok_or_else(|| Error::new(11001, format!("LocalHost '{host}' has no usable address")))
}

/// Binds and listens. Socket buffer sizes go on the listener so that accepted sockets inherit
/// them before the handshake fixes the TCP window scale.
fn bind(addr: SocketAddr, ipv6: u8, rcvbuf: u32, sndbuf: u32) -> Result<mio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let ctx = |e: std::io::Error| Error::from_io(&e, &format!("listen on {addr}"));
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(ctx)?;
    sock.set_reuse_address(true).map_err(ctx)?;
    if addr.is_ipv6() {
        // UseIPv6=2 on the wildcard address also accepts IPv4 (mapped) clients.
        sock.set_only_v6(!(ipv6 == 2 && addr.ip().is_unspecified())).map_err(ctx)?;
    }
    if rcvbuf > 0 {
        sock.set_recv_buffer_size(rcvbuf as usize).map_err(ctx)?;
    }
    if sndbuf > 0 {
        sock.set_send_buffer_size(sndbuf as usize).map_err(ctx)?;
    }
    sock.bind(&addr.into()).map_err(ctx)?;
    sock.listen(1024).map_err(ctx)?;
    sock.set_nonblocking(true).map_err(ctx)?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_use_ipv6() {
        assert_eq!(resolve("", 5, 0).unwrap(), "0.0.0.0:5".parse().unwrap());
        assert_eq!(resolve("", 5, 1).unwrap(), "[::]:5".parse().unwrap());
        assert_eq!(resolve("127.0.0.1", 5, 0).unwrap(), "127.0.0.1:5".parse().unwrap());
        assert_eq!(resolve("[::1]", 5, 0).unwrap(), "[::1]:5".parse().unwrap());
        assert!(resolve("localhost", 5, 0).unwrap().ip().is_loopback());
    }

    #[test]
    fn local_port_is_read_back_after_listening() {
        let s = Server::new();
        s.set_local_host("127.0.0.1").unwrap();
        s.start_listening().unwrap();
        assert!(s.listening());
        assert_ne!(s.local_port(), 0);
        assert_eq!(s.set_local_port(1).unwrap_err().code, code::CANNOT_CHANGE_LOCAL_PORT);
        s.stop_listening().unwrap();
        assert!(!s.listening());
    }
}
