//! Shared helpers for the integration tests: a recording event handler, server setup and a
//! small blocking MLLP client over `std::net::TcpStream`.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use mllp::{
    AckInEvent, AckOutEvent, ConnectionId, ConnectionRequestEvent, ErrorEvent, EventHandler, LogEvent, Server,
    StatusEvent, TransferBoundaryEvent, TransferEvent,
};

pub const SB: u8 = 0x0B;
pub const EB: u8 = 0x1C;
pub const CR: u8 = 0x0D;
pub const ACK: u8 = 0x06;
pub const NAK: u8 = 0x15;

/// Default time a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    ConnectionRequest { address: String, port: u16, accept: bool },
    Connected { id: ConnectionId, code: i32, description: String },
    Disconnected { id: ConnectionId, code: i32, description: String },
    StartTransfer { id: ConnectionId, seq: u64 },
    Transfer { id: ConnectionId, bytes: u64, data: Vec<u8> },
    EndTransfer { id: ConnectionId, seq: u64 },
    AckOut { id: ConnectionId, seq: u64, accept: bool, message: Vec<u8> },
    AckIn { id: ConnectionId, accepted: bool },
    Error { id: ConnectionId, code: i32, description: String },
    Log { id: ConnectionId, level: u8, message: String, log_type: String },
}

impl Ev {
    pub fn is_error(&self, c: i32) -> bool {
        matches!(self, Ev::Error { code, .. } if *code == c)
    }
}

type ReqHook = Box<dyn Fn(&mut ConnectionRequestEvent<'_>) + Send + Sync>;
type StatusHook = Box<dyn Fn(&StatusEvent<'_>) + Send + Sync>;
type BoundaryHook = Box<dyn Fn(&TransferBoundaryEvent) + Send + Sync>;
type TransferHook = Box<dyn Fn(&TransferEvent<'_>) + Send + Sync>;
type AckOutHook = Box<dyn Fn(&mut AckOutEvent<'_>) + Send + Sync>;
type AckInHook = Box<dyn Fn(&AckInEvent) + Send + Sync>;
type ErrorHook = Box<dyn Fn(&ErrorEvent<'_>) + Send + Sync>;

/// Optional behaviour run inside the handler before the event is recorded.
#[derive(Default)]
pub struct Hooks {
    pub connection_request: Option<ReqHook>,
    pub connected: Option<StatusHook>,
    pub disconnected: Option<StatusHook>,
    pub start_transfer: Option<BoundaryHook>,
    pub transfer: Option<TransferHook>,
    pub end_transfer: Option<BoundaryHook>,
    pub ack_out: Option<AckOutHook>,
    pub ack_in: Option<AckInHook>,
    pub error: Option<ErrorHook>,
}

/// A recorded event, the thread it was delivered on and when the handler finished.
#[derive(Clone, Debug)]
pub struct Rec {
    pub ev: Ev,
    pub thread: ThreadId,
    pub at: Instant,
}

/// An event handler that records every event (and runs optional hooks first).
pub struct Recorder {
    events: Mutex<Vec<Rec>>,
    cv: Condvar,
    hooks: Hooks,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Self::with_hooks(Hooks::default())
    }

    pub fn with_hooks(hooks: Hooks) -> Arc<Recorder> {
        Arc::new(Recorder { events: Mutex::new(Vec::new()), cv: Condvar::new(), hooks })
    }

    fn push(&self, ev: Ev) {
        let mut g = self.events.lock().unwrap();
        g.push(Rec { ev, thread: std::thread::current().id(), at: Instant::now() });
        self.cv.notify_all();
    }

    /// All events so far.
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().iter().map(|r| r.ev.clone()).collect()
    }

    /// All events with their thread and time.
    pub fn records(&self) -> Vec<Rec> {
        self.events.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.events.lock().unwrap().clear();
    }

    /// Waits until `pred` holds for the events recorded so far, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Ev]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.events.lock().unwrap();
        loop {
            let evs: Vec<Ev> = g.iter().map(|r| r.ev.clone()).collect();
            if pred(&evs) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self.cv.wait_timeout(g, (deadline - now).min(Duration::from_millis(50))).unwrap().0;
        }
    }

    /// Waits until at least `n` events match `f`.
    pub fn wait_count(&self, n: usize, timeout: Duration, f: impl Fn(&Ev) -> bool) -> bool {
        self.wait_for(timeout, |evs| evs.iter().filter(|e| f(e)).count() >= n)
    }

    pub fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }

    /// Codes of the Error events so far.
    pub fn error_codes(&self) -> Vec<i32> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Ev::Error { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    /// The connection id of the n-th Connected event (waiting for it).
    pub fn connected_id(&self, n: usize) -> ConnectionId {
        assert!(
            self.wait_count(n + 1, WAIT, |e| matches!(e, Ev::Connected { .. })),
            "Connected #{n} never fired; events: {:?}",
            self.events()
        );
        self.events()
            .iter()
            .filter_map(|e| match e {
                Ev::Connected { id, .. } => Some(*id),
                _ => None,
            })
            .nth(n)
            .unwrap()
    }

    /// Concatenated Transfer data of connection `id`.
    pub fn transferred(&self, id: ConnectionId) -> Vec<u8> {
        let mut v = Vec::new();
        for e in self.events() {
            if let Ev::Transfer { id: i, data, .. } = e {
                if i == id {
                    v.extend_from_slice(&data);
                }
            }
        }
        v
    }
}

impl EventHandler for Recorder {
    fn connection_request(&self, e: &mut ConnectionRequestEvent<'_>) {
        if let Some(h) = &self.hooks.connection_request {
            h(e);
        }
        self.push(Ev::ConnectionRequest { address: e.address.to_string(), port: e.port, accept: e.accept });
    }
    fn connected(&self, e: &StatusEvent<'_>) {
        if let Some(h) = &self.hooks.connected {
            h(e);
        }
        self.push(Ev::Connected { id: e.connection_id, code: e.status_code, description: e.description.to_string() });
    }
    fn disconnected(&self, e: &StatusEvent<'_>) {
        if let Some(h) = &self.hooks.disconnected {
            h(e);
        }
        self.push(Ev::Disconnected {
            id: e.connection_id,
            code: e.status_code,
            description: e.description.to_string(),
        });
    }
    fn start_transfer(&self, e: &TransferBoundaryEvent) {
        if let Some(h) = &self.hooks.start_transfer {
            h(e);
        }
        self.push(Ev::StartTransfer { id: e.connection_id, seq: e.message_seq });
    }
    fn transfer(&self, e: &TransferEvent<'_>) {
        if let Some(h) = &self.hooks.transfer {
            h(e);
        }
        self.push(Ev::Transfer { id: e.connection_id, bytes: e.bytes_transferred, data: e.data.to_vec() });
    }
    fn end_transfer(&self, e: &TransferBoundaryEvent) {
        if let Some(h) = &self.hooks.end_transfer {
            h(e);
        }
        self.push(Ev::EndTransfer { id: e.connection_id, seq: e.message_seq });
    }
    fn ack_out(&self, e: &mut AckOutEvent<'_>) {
        if let Some(h) = &self.hooks.ack_out {
            h(e);
        }
        self.push(Ev::AckOut {
            id: e.connection_id,
            seq: e.message_seq,
            accept: e.verdict.is_accept(),
            message: e.message.to_vec(),
        });
    }
    fn ack_in(&self, e: &AckInEvent) {
        if let Some(h) = &self.hooks.ack_in {
            h(e);
        }
        self.push(Ev::AckIn { id: e.connection_id, accepted: e.accepted });
    }
    fn error(&self, e: &ErrorEvent<'_>) {
        if let Some(h) = &self.hooks.error {
            h(e);
        }
        self.push(Ev::Error { id: e.connection_id, code: e.error_code, description: e.description.to_string() });
    }
    fn log(&self, e: &LogEvent<'_>) {
        self.push(Ev::Log {
            id: e.connection_id,
            level: e.log_level.as_u8(),
            message: e.message.to_string(),
            log_type: e.log_type.to_string(),
        });
    }
}

/// A server with its recorder, listening on 127.0.0.1 (port chosen by the OS).
pub struct Ctx {
    pub server: Arc<Server>,
    pub rec: Arc<Recorder>,
    pub port: u16,
}

impl Ctx {
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }
}

/// A server bound to 127.0.0.1:0, not listening, with no handler.
pub fn new_server() -> Arc<Server> {
    let s = Arc::new(Server::new());
    s.set_local_host("127.0.0.1").unwrap();
    s.set_local_port(0).unwrap();
    s
}

/// Server + recorder (hooks built from a weak reference to the server), the given Config
/// settings applied, listening.
pub fn setup_with(configs: &[&str], hooks: impl FnOnce(Weak<Server>) -> Hooks) -> Ctx {
    let server = new_server();
    for c in configs {
        server.config(c).unwrap_or_else(|e| panic!("config {c}: {e}"));
    }
    let rec = Recorder::with_hooks(hooks(Arc::downgrade(&server)));
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let port = server.local_port();
    assert_ne!(port, 0);
    Ctx { server, rec, port }
}

pub fn setup(configs: &[&str]) -> Ctx {
    setup_with(configs, |_| Hooks::default())
}

/// Reads a sample message from the repository's tests/data.
pub fn sample(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A small HL7 message with a given control id.
pub fn hl7(control: &str) -> Vec<u8> {
    format!("MSH|^~\\&|SND|SFAC|RCV|RFAC|20260101120000||ADT^A01^ADT_A01|{control}|P|2.5.1\rPID|1||{control}\r")
        .into_bytes()
}

/// `<SB> payload <EB><CR>`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    frame_with(payload, SB, EB, CR)
}

pub fn frame_with(payload: &[u8], sb: u8, eb: u8, eol: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 3);
    v.push(sb);
    v.extend_from_slice(payload);
    v.push(eb);
    v.push(eol);
    v
}

/// A unique temporary file path.
pub fn temp_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "mllp-test-{}-{tag}-{n}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ))
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A blocking MLLP client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub sb: u8,
    pub eb: u8,
    pub eol: u8,
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        Self::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Client { stream, buf: Vec::new(), sb: SB, eb: EB, eol: CR }
    }

    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("client write");
        self.stream.flush().unwrap();
    }

    pub fn send_msg(&mut self, payload: &[u8]) {
        let f = frame_with(payload, self.sb, self.eb, self.eol);
        self.send_raw(&f);
    }

    /// Takes one complete frame from the buffer, if there is one (bytes before SB skipped).
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        let s = self.buf.iter().position(|&b| b == self.sb)?;
        let rel = self.buf[s + 1..].iter().position(|&b| b == self.eb)?;
        let e = s + 1 + rel;
        if self.buf.len() < e + 2 {
            return None;
        }
        assert_eq!(self.buf[e + 1], self.eol, "server frame not terminated by EOL");
        let content = self.buf[s + 1..e].to_vec();
        self.buf.drain(..e + 2);
        Some(content)
    }

    /// Reads one frame's content, waiting up to `timeout`.
    pub fn read_frame_within(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.take_frame() {
                return Ok(f);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
            let mut tmp = [0u8; 65536];
            let r = self.stream.read(&mut tmp);
            self.stream.set_read_timeout(Some(WAIT))?;
            match r {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn read_frame(&mut self) -> Vec<u8> {
        self.read_frame_within(WAIT).expect("reading a frame")
    }

    /// Reads one frame and asserts it is the MLLP commit ACK.
    pub fn expect_ack(&mut self) {
        let f = self.read_frame();
        assert_eq!(f, vec![ACK], "expected ACK commit block, got {f:?}");
    }

    pub fn expect_nak(&mut self) {
        let f = self.read_frame();
        assert_eq!(f, vec![NAK], "expected NAK commit block, got {f:?}");
    }

    /// Asserts that nothing at all arrives for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        assert!(self.buf.is_empty(), "unexpected buffered bytes: {:?}", self.buf);
        self.stream.set_read_timeout(Some(d)).unwrap();
        let mut tmp = [0u8; 1024];
        let r = self.stream.read(&mut tmp);
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        match r {
            Err(e) if is_timeout(&e) => {}
            Ok(n) => panic!("expected silence, got {n} bytes: {:?}", &tmp[..n]),
            Err(e) => panic!("expected silence, got error {e}"),
        }
    }

    /// True when the server closed the connection (EOF or reset) within `d`. Data received
    /// before the close is ignored.
    pub fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut tmp = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.stream.set_read_timeout(Some((deadline - now).max(Duration::from_millis(1)))).unwrap();
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Sends a message and returns the reply frame content.
    pub fn round_trip(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send_msg(payload);
        self.read_frame()
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// HL7 fields of a segment: for MSH, `fields[n]` is MSH-n (MSH-1 is the separator);
/// for other segments `fields[n]` is SEG-n.
pub fn seg_fields(segment: &str) -> Vec<String> {
    let mut parts: Vec<String> = segment.split('|').map(str::to_string).collect();
    if segment.starts_with("MSH") {
        parts.insert(1, "|".to_string());
    }
    parts
}

/// The segments (CR separated) of an HL7 message as strings.
pub fn segments(msg: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(msg).split('\r').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Fields of the first segment named `name`.
pub fn segment(msg: &[u8], name: &str) -> Option<Vec<String>> {
    segments(msg).into_iter().find(|s| s.starts_with(name)).map(|s| seg_fields(&s))
}
