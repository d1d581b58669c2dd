//! mllp-bench: a closed-loop MLLP load generator built on the crate's own sans-IO codec.
//!
//! ```text
//! mllp-bench [--host ADDR] [--port N] [--connections N] [--messages M] [--size BYTES]
//!            [--ack mllp|hl7|none] [--warmup SECSs|MSGS] [--duration SECS] [--deadline SECS]
//!            [--threads T] [--tls] [--tls-ca FILE] [--tls-server-name NAME]
//!            [--idle N --hold SECS [--idle-after BYTES]] [--sources K] [--server-pid PID]
//!            [--scenario NAME] [--json]
//! ```
//!
//! Load mode: N connections, each a closed loop (send one framed HL7 ADT^A01 message of the
//! given size, wait for the acknowledgement, send the next) for M measured messages, after a
//! warm-up (`--warmup 2s`: seconds; `--warmup 200`: messages per connection). Measurement starts
//! when every connection has finished its warm-up (a barrier), and ends when the last
//! connection is done (or `--duration` has elapsed: connections stop after their current
//! message). `--ack none` streams: frames back to back, no acknowledgement awaited; the
//! connection is then half-closed and the measurement ends when the server closes it (so the
//! server has read everything), or after 5 s.
//!
//! Whatever arrives as the acknowledgement is classified: an MLLP commit block (`0x06` ACK,
//! `0x15` NAK) or an HL7 ACK (MSA-1 AA/CA accepted, anything else a NAK), so servers that
//! always answer with HL7 ACKs can be measured in either mode.
//!
//! Idle mode (`--idle N`): opens N connections that send nothing, holds them `--hold` seconds
//! and reports the server's resident memory before and after (needs `--server-pid`). With
//! `--idle-after BYTES` each connection first sends one message of that size and waits for its
//! acknowledgement (one connection at a time), then is held idle like the others: what an idle
//! connection costs the server after traffic. (One warm-up message on a connection of its own
//! goes first, 1.5 s before the "before" sample, so what the server sets up once is not
//! counted per connection.)
//!
//! `--sources K` spreads connections over the source addresses 127.0.0.1 … 127.0.0.K (loopback
//! only), for more connections than one source address has ephemeral ports.
//!
//! Connections are spread over `--threads` worker threads (default: half the CPUs, leaving the
//! rest to the server), each driving its connections non-blockingly with a mio event loop,
//! so 1000 connections cost a few threads, not 1000. Everything is bounded by `--deadline`.
//!
//! Output: one JSON line with `--json` (otherwise a short human-readable summary):
//! scenario, connections, messages, size, seconds, msgs_per_sec, mb_per_sec, p50_us, p99_us,
//! p999_us, max_us, errors, naks, and extras (client CPU per message; with `--server-pid` the
//! server's CPU time per message and per MiB, its minor page faults per MiB and its resident
//! memory).

#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use mllp::codec::{encode_frame, DecodeEvent, Decoder, FrameChars};

/// println! that ignores a closed stdout (e.g. piped into `head`).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(io::stdout(), $($t)*);
    }};
}

// ---------------------------------------------------------------------------------------------
// Options

/// How the load generator waits for replies.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum AckMode {
    /// Wait for each acknowledgement (MLLP commit block or HL7 ACK, whichever arrives).
    Mllp,
    /// Same as mllp (kept so runs can be labelled by the server's mode).
    Hl7,
    /// Stream without waiting.
    None,
}

impl AckMode {
    fn name(self) -> &'static str {
        match self {
            AckMode::Mllp => "mllp",
            AckMode::Hl7 => "hl7",
            AckMode::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Warmup {
    Messages(u64),
    Seconds(f64),
}

/// '2s' = seconds, '200' = messages per connection.
fn parse_warmup(v: &str) -> Result<Warmup, String> {
    match v.strip_suffix('s') {
        Some(s) => s.parse().map(Warmup::Seconds).map_err(|_| format!("invalid seconds '{v}'")),
        None => v.parse().map(Warmup::Messages).map_err(|_| format!("invalid count '{v}'")),
    }
}

/// A closed-loop MLLP load generator (see the crate documentation for the modes and output).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "mllp-bench", version, args_override_self = true)]
struct Opts {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 2575)]
    port: u16,
    /// Concurrent connections, each a closed loop.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Measured messages per connection.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    messages: u64,
    /// Size of each HL7 message (ADT^A01 padded with an NTE segment): 1024, 4k, 4KiB, 16M.
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    size: usize,
    /// mllp | hl7: wait for each acknowledgement; none: stream without waiting.
    #[arg(long, value_enum, default_value_t = AckMode::Mllp)]
    ack: AckMode,
    /// '2s' = seconds, '200' = messages per connection, not measured.
    #[arg(long, default_value = "0", value_parser = parse_warmup)]
    warmup: Warmup,
    /// Stop measuring after SECS even if M messages are not done.
    #[arg(long)]
    duration: Option<f64>,
    /// Hard limit for the whole run; the result says deadline_hit.
    #[arg(long, default_value_t = 120.0)]
    deadline: f64,
    /// Worker threads, each an event loop over its share of the connections (0: half the CPUs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Connect with TLS (rustls, ring); without --tls-ca any server certificate is accepted
    /// (signatures are still verified).
    #[arg(long)]
    tls: bool,
    /// PEM CA certificates to verify the server with (implies --tls).
    #[arg(long)]
    tls_ca: Option<String>,
    /// Name to verify / send as SNI (default: --host).
    #[arg(long)]
    tls_server_name: Option<String>,
    /// Open N idle connections instead, hold them, report server memory.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// How long to hold idle connections, seconds.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// With --idle: each connection first sends one message of this size (and waits for its
    /// acknowledgement) before it is held idle.
    #[arg(long, value_parser = parse_size)]
    idle_after: Option<usize>,
    /// Spread connections over source addresses 127.0.0.1 .. 127.0.0.K (1: the system's choice).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Measure this process's CPU time and resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Label for the result line.
    #[arg(long)]
    scenario: Option<String>,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
    /// Send through the library's client (`mllp::client::Client`, one thread and one blocking
    /// send at a time per connection) instead of this generator's own loop.
    #[arg(long)]
    via_client: bool,
    /// Hold N connected clients of the library (each sent one message) and report this
    /// process's resident memory per client.
    #[arg(long, default_value_t = 0)]
    client_idle: usize,
}

fn die(msg: &str) -> ! {
    eprintln!("mllp-bench: {msg}");
    std::process::exit(2);
}

fn parse_opts() -> Opts {
    let mut o = <Opts as clap::Parser>::parse();
    // A CA to verify the server with only makes sense over TLS.
    o.tls |= o.tls_ca.is_some();
    if o.connections == 0 && o.idle == 0 {
        die("--connections must be at least 1");
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    if o.threads == 0 {
        // Half the CPUs: the other half is the server's (on 2 CPUs, one event-loop thread
        // measured faster than two, which contend with the server for the cores).
        o.threads = (cpus / 2).max(1);
    }
    o.threads = o.threads.clamp(1, o.connections.max(1));
    o
}

/// "1024", "4k", "4KiB", "16M", "16MiB" (k/M are binary here, as message sizes usually are).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.parse::<usize>().map(|n| n * mul).map_err(|_| format!("invalid size '{s}'"))
}

// ---------------------------------------------------------------------------------------------
// Messages

/// Width of the numeric part of MSH-10 (patched in place for every message sent).
const SEQ_DIGITS: usize = 10;

/// A framed HL7 v2.5.1 ADT^A01 message of (at least, for tiny sizes) `size` content bytes,
/// padded with an NTE segment, and the offset of the sequence digits of MSH-10 in the frame.
fn build_frame(size: usize, conn: usize) -> (Vec<u8>, usize) {
    let head =
        format!("MSH|^~\\&|MLLPBENCH|BENCHFAC|RECEIVER|RECVFAC|20260101120000||ADT^A01^ADT_A01|B{:05}", conn % 100_000);
    let seq_at = head.len();
    let mut msg = head.into_bytes();
    msg.extend_from_slice(&[b'0'; SEQ_DIGITS]);
    msg.extend_from_slice(
        b"|P|2.5.1\r\
          EVN|A01|20260101120000\r\
          PID|1||4711^^^HOSP^MR||DOE^JANE^Q||19700101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701\r\
          PV1|1|I|W^389^1^HOSP||||0042^SMITH^JOHN^A\r",
    );
    const NTE: &[u8] = b"NTE|1||";
    if size > msg.len() + NTE.len() + 1 {
        let pad = size - msg.len() - NTE.len() - 1;
        msg.extend_from_slice(NTE);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz0123456789.,";
        msg.extend((0..pad).map(|i| alphabet[(i * 7 + i / 61) % alphabet.len()]));
        msg.push(b'\r');
    }
    let mut frame = Vec::with_capacity(msg.len() + 3);
    encode_frame(FrameChars::default(), &msg, &mut frame);
    (frame, seq_at + 1)
}

#[inline]
fn patch_seq(frame: &mut [u8], at: usize, mut seq: u64) {
    for b in frame[at..at + SEQ_DIGITS].iter_mut().rev() {
        *b = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
}

// ---------------------------------------------------------------------------------------------
// Transport: plain TCP or rustls over a non-blocking socket

enum Transport {
    Plain,
    Tls(Box<rustls::ClientConnection>),
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Transport {
    /// Writes TLS records rustls has buffered; Ok(true) when everything went out.
    fn flush_tls(&mut self, sock: &mut TcpStream) -> io::Result<bool> {
        match self {
            Transport::Tls(tls) => flush_tls(tls, sock),
            Transport::Plain => Ok(true),
        }
    }

    fn write(&mut self, sock: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => sock.write(data),
            Transport::Tls(tls) => {
                let n = tls.writer().write(data)?;
                self.flush_tls(sock)?;
                if n == 0 {
                    // rustls' plaintext buffer is full (or the handshake is still going):
                    // progress comes with the next readable/writable event.
                    return Err(would_block());
                }
                Ok(n)
            }
        }
    }

    /// Plaintext read; Ok(0) at end of stream.
    fn read(&mut self, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => sock.read(buf),
            Transport::Tls(tls) => loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                match tls.read_tls(sock) {
                    Ok(0) => return Ok(0),
                    Ok(_) => {
                        tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        // Handshake messages, alerts or key updates may need sending.
                        flush_tls(tls, sock)?;
                    }
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

fn flush_tls(tls: &mut rustls::ClientConnection, sock: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

mod procstat;
mod via_client;

use procstat::{proc_cpu, proc_minflt, proc_rss_kb, self_cpu};

mod tls {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use std::sync::Arc;

    /// Accepts any server certificate (the benchmark's servers use throw-away self-signed
    /// ones) but still checks the handshake signatures, so the crypto work is real.
    #[derive(Debug)]
    struct AnyCert(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn config(ca: Option<&str>) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let cfg = match ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e}"))? {
                    let cert = cert.map_err(|e| format!("{path}: {e}"))?;
                    roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(format!("{path}: no certificates"));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert(provider))).with_no_client_auth()
            }
        };
        Ok(Arc::new(cfg))
    }

    pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
        ServerName::try_from(name.to_string()).map_err(|e| format!("server name '{name}': {e}"))
    }
}

struct TlsSetup {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

// ---------------------------------------------------------------------------------------------
// Process measurements: procstat.rs

/// Connects to `addr` from source address 127.0.0.(1 + n % sources) when `sources` > 1 and
/// `addr` is an IPv4 loopback address (else from the system's choice).
fn connect_from(addr: SocketAddr, n: usize, sources: u8, timeout: Duration) -> io::Result<StdTcpStream> {
    let loopback = matches!(addr, SocketAddr::V4(a) if a.ip().is_loopback());
    if sources <= 1 || !loopback {
        return StdTcpStream::connect_timeout(&addr, timeout);
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let src = std::net::Ipv4Addr::new(127, 0, 0, 1 + (n % sources as usize) as u8);
    sock.bind(&SocketAddr::from((src, 0)).into())?;
    sock.connect_timeout(&addr.into(), timeout)?;
    Ok(sock.into())
}

/// Sends one framed message of `size` bytes on `s` and reads until its acknowledgement frame
/// ends (blocking, bounded by `deadline`).
fn send_one(s: &mut StdTcpStream, size: usize, n: usize, deadline: Instant) -> io::Result<()> {
    let (frame, _) = build_frame(size, n);
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_write_timeout(Some(left))?;
    s.set_read_timeout(Some(left))?;
    s.write_all(&frame)?;
    let mut dec = Decoder::new(FrameChars::default(), 1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the acknowledgement"));
        }
        let mut done = false;
        dec.feed(&buf[..k], |e| done |= e == DecodeEvent::End);
        if done {
            s.set_read_timeout(None)?;
            s.set_write_timeout(None)?;
            return Ok(());
        }
    }
}

/// Raises the soft open-file limit towards `want` (up to the hard limit); returns the new limit.
fn raise_nofile(want: u64) -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if (rl.rlim_cur as u64) < want {
            rl.rlim_cur = (want as libc::rlim_t).min(rl.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        }
        rl.rlim_cur as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Shared run state

struct Shared {
    /// Connections that have not finished connecting + warming up yet.
    not_ready: AtomicUsize,
    /// Set once every connection is ready: the measured interval starts.
    start: OnceLock<Instant>,
    server_cpu_start: OnceLock<Option<f64>>,
    server_flt_start: OnceLock<Option<u64>>,
    client_cpu_start: OnceLock<f64>,
    /// Set when the deadline passes or the run cannot go on.
    abort: AtomicBool,
    deadline: Instant,
    server_pid: Option<u32>,
    end: Mutex<Option<Instant>>,
}

impl Shared {
    fn mark_ready(&self) {
        if self.not_ready.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.client_cpu_start.get_or_init(self_cpu);
            self.server_cpu_start.get_or_init(|| self.server_pid.and_then(proc_cpu));
            self.server_flt_start.get_or_init(|| self.server_pid.and_then(proc_minflt));
            self.start.get_or_init(Instant::now);
        }
    }

    fn note_end(&self, t: Instant) {
        let mut e = self.end.lock().unwrap();
        if e.is_none_or(|x| t > x) {
            *e = Some(t);
        }
    }
}

#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    measured: u64,
    warm: u64,
    bytes: u64,
    errors: u64,
    naks: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One connection's state machine

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Warmup,
    /// Warm-up finished; waiting for the other connections.
    Ready,
    Measure,
    /// --ack none: everything sent, write side shut, waiting for the server to close.
    Draining,
    Done,
}

struct Conn {
    sock: TcpStream,
    transport: Transport,
    /// The frame being sent (closed loop), or a batch of frames (streaming).
    out: Vec<u8>,
    /// Offsets of the sequence digits of each frame in `out`.
    seq_at: Vec<usize>,
    /// Frames in `out`.
    frames_in_out: u64,
    wpos: usize,
    /// A frame (or batch) is being written / awaiting its acknowledgement.
    in_flight: bool,
    written: bool,
    sent_at: Instant,
    dec: Decoder,
    ack: Vec<u8>,
    in_ack: bool,
    phase: Phase,
    seq: u64,
    warm_done: u64,
    measured: u64,
    drain_until: Option<Instant>,
}

struct Ctx<'a> {
    o: &'a Opts,
    shared: &'a Shared,
    msg_len: u64,
    warm_msgs: u64,
    warm_until: Option<Instant>,
}

impl Ctx<'_> {
    fn measure_over(&self, c: &Conn, now: Instant) -> bool {
        if c.measured >= self.o.messages {
            return true;
        }
        match (self.o.duration, self.shared.start.get()) {
            (Some(d), Some(s)) => now.duration_since(*s).as_secs_f64() >= d,
            _ => false,
        }
    }

    fn warm_over(&self, c: &Conn, now: Instant) -> bool {
        match self.warm_until {
            Some(t) => now >= t,
            None => c.warm_done >= self.warm_msgs,
        }
    }
}

impl Conn {
    /// Starts the next frame (or batch), or moves to the next phase. Returns false when the
    /// connection is finished.
    fn next(&mut self, cx: &Ctx, t: &mut Tally, now: Instant) -> bool {
        loop {
            match self.phase {
                Phase::Warmup if cx.warm_over(self, now) => {
                    self.phase = Phase::Ready;
                    cx.shared.mark_ready();
                }
                Phase::Ready => {
                    if cx.shared.start.get().is_none() {
                        return true; // resumed by the worker loop
                    }
                    self.phase = Phase::Measure;
                }
                Phase::Measure if cx.measure_over(self, now) => {
                    cx.shared.note_end(now);
                    if cx.o.ack == AckMode::None {
                        self.phase = Phase::Draining;
                        self.drain_until = Some(now + Duration::from_secs(5));
                        let _ = self.transport.flush_tls(&mut self.sock);
                        if let Transport::Tls(tls) = &mut self.transport {
                            tls.send_close_notify();
                            let _ = self.transport.flush_tls(&mut self.sock);
                        }
                        let _ = self.sock.shutdown(std::net::Shutdown::Write);
                        return true;
                    }
                    self.phase = Phase::Done;
                    return false;
                }
                Phase::Draining => return true,
                Phase::Done => return false,
                Phase::Warmup | Phase::Measure => {
                    self.start_send(cx, now);
                    return self.pump_write(t);
                }
            }
        }
    }

    fn start_send(&mut self, cx: &Ctx, now: Instant) {
        if cx.o.ack == AckMode::None {
            let left = match self.phase {
                Phase::Warmup if cx.warm_until.is_none() => cx.warm_msgs - self.warm_done,
                Phase::Measure => cx.o.messages - self.measured,
                _ => u64::MAX,
            };
            self.frames_in_out = (self.seq_at.len() as u64).min(left).max(1);
        } else {
            self.frames_in_out = 1;
        }
        for k in 0..self.frames_in_out as usize {
            self.seq += 1;
            patch_seq(&mut self.out, self.seq_at[k], self.seq);
        }
        self.wpos = 0;
        self.in_flight = true;
        self.written = false;
        self.sent_at = now;
    }

    fn out_len(&self) -> usize {
        if self.frames_in_out as usize == self.seq_at.len() {
            self.out.len()
        } else {
            self.out.len() / self.seq_at.len() * self.frames_in_out as usize
        }
    }

    /// Writes as much of the current frame as the socket takes. Returns false on a failure.
    fn pump_write(&mut self, t: &mut Tally) -> bool {
        if let Err(e) = self.transport.flush_tls(&mut self.sock) {
            t.error(format!("write: {e}"));
            return false;
        }
        if !self.in_flight || self.written {
            return true;
        }
        let len = self.out_len();
        while self.wpos < len {
            match self.transport.write(&mut self.sock, &self.out[self.wpos..len]) {
                Ok(0) => {
                    t.error("write: connection closed".into());
                    return false;
                }
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    t.error(format!("write: {e}"));
                    return false;
                }
            }
        }
        self.written = true;
        true
    }

    /// One frame (closed loop) or batch (streaming) is complete.
    fn complete(&mut self, cx: &Ctx, t: &mut Tally, now: Instant) {
        self.in_flight = false;
        let n = self.frames_in_out;
        match self.phase {
            Phase::Warmup => {
                self.warm_done += n;
                t.warm += n;
            }
            Phase::Measure => {
                self.measured += n;
                t.measured += n;
                t.bytes += n * cx.msg_len;
                if cx.o.ack != AckMode::None {
                    t.latencies_ns.push(now.duration_since(self.sent_at).as_nanos() as u64);
                }
            }
            _ => {}
        }
    }

    fn classify_ack(&mut self, t: &mut Tally) {
        match self.ack.as_slice() {
            [0x06] => {}
            [0x15] => t.naks += 1,
            a => match mllp::hl7::ack_accepted(a) {
                Some(true) => {}
                Some(false) => t.naks += 1,
                None => t.error(format!("unexpected reply: {:?}", String::from_utf8_lossy(&a[..a.len().min(60)]))),
            },
        }
    }

    /// Reads what arrived; returns false when the connection is finished or failed.
    /// `closed`: the event said the peer closed (the end of stream must be read even after a
    /// short read, as no further edge will come).
    fn on_readable(&mut self, cx: &Ctx, t: &mut Tally, buf: &mut [u8], closed: bool) -> bool {
        loop {
            match self.transport.read(&mut self.sock, buf) {
                Ok(0) => {
                    if self.phase == Phase::Draining {
                        cx.shared.note_end(Instant::now());
                        self.phase = Phase::Done;
                    } else if self.phase != Phase::Done {
                        t.error("connection closed by the server".into());
                    }
                    return false;
                }
                Ok(n) => {
                    let plain = matches!(self.transport, Transport::Plain) && !closed;
                    if cx.o.ack == AckMode::None {
                        // Nothing is expected back; ignore whatever comes.
                        if plain && n < buf.len() {
                            return true;
                        }
                        continue;
                    }
                    let mut acks = 0u32;
                    let (ack, in_ack) = (&mut self.ack, &mut self.in_ack);
                    let mut aborted = false;
                    self.dec.feed(&buf[..n], |e| match e {
                        DecodeEvent::Start => {
                            ack.clear();
                            *in_ack = true;
                        }
                        DecodeEvent::Data(d) => {
                            if ack.len() < 64 * 1024 {
                                ack.extend_from_slice(d);
                            }
                        }
                        DecodeEvent::End => {
                            *in_ack = false;
                            acks += 1;
                        }
                        DecodeEvent::Oversize | DecodeEvent::Aborted(_) => {
                            *in_ack = false;
                            aborted = true;
                        }
                    });
                    if aborted {
                        t.error("malformed acknowledgement frame".into());
                    }
                    if acks > 0 {
                        if acks > 1 || !self.in_flight {
                            t.error("more acknowledgements than messages".into());
                        }
                        // Only the last ack's content is kept; with a closed loop there is one.
                        self.classify_ack(t);
                        let now = Instant::now();
                        if self.in_flight {
                            if !self.written {
                                // Answered before the whole message was sent (e.g. a size
                                // limit): count it and stop this connection.
                                t.error("acknowledged before the message was fully sent".into());
                                return false;
                            }
                            self.complete(cx, t, now);
                        }
                        if !self.next(cx, t, now) {
                            return false;
                        }
                    }
                    if plain && n < buf.len() {
                        // A short read drained the socket: edge-triggered readiness fires
                        // again for anything that arrives later. (Not so with TLS: rustls
                        // may leave bytes in the socket, so read until WouldBlock.)
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    t.error(format!("read: {e}"));
                    return false;
                }
            }
        }
    }

    /// Streaming (--ack none): after a batch is written it is complete.
    fn stream_progress(&mut self, cx: &Ctx, t: &mut Tally) -> bool {
        let mut rounds = 0;
        while cx.o.ack == AckMode::None && self.in_flight && self.written {
            let now = Instant::now();
            self.complete(cx, t, now);
            if !self.next(cx, t, now) {
                return false;
            }
            rounds += 1;
            if rounds >= 16 {
                break; // let other connections of this worker have a turn
            }
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Worker: a mio event loop over a set of connections

const STREAM_BATCH: usize = 64 * 1024;

fn connect(addr: SocketAddr, n: usize, sources: u8, shared: &Shared) -> io::Result<StdTcpStream> {
    let left = shared.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
    }
    let s = connect_from(addr, n, sources, left.min(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn worker(o: &Opts, addr: SocketAddr, ids: std::ops::Range<usize>, shared: &Shared, tls: Option<&TlsSetup>) -> Tally {
    let mut t = Tally::default();
    let (proto, seq_at0) = build_frame(o.size, 0);
    let msg_len = (proto.len() - 3) as u64;
    let warm_until = match o.warmup {
        Warmup::Seconds(s) if s > 0.0 => Some(Instant::now() + Duration::from_secs_f64(s)),
        _ => None,
    };
    let warm_msgs = match o.warmup {
        Warmup::Messages(n) => n,
        Warmup::Seconds(_) => 0,
    };
    let cx = Ctx { o, shared, msg_len, warm_msgs, warm_until };
    if o.ack != AckMode::None {
        let total = o.messages.saturating_mul(ids.len() as u64);
        t.latencies_ns.reserve(total.min(1 << 20) as usize);
    }

    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            t.error(format!("poll: {e}"));
            for _ in ids {
                shared.mark_ready();
            }
            return t;
        }
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(ids.len());
    for id in ids.clone() {
        let made = connect(addr, id, o.sources, shared).and_then(|s| {
            s.set_nonblocking(true)?;
            let mut sock = TcpStream::from_std(s);
            poll.registry().register(&mut sock, Token(conns.len()), Interest::READABLE | Interest::WRITABLE)?;
            Ok(sock)
        });
        match made {
            Ok(sock) => {
                let (mut out, mut seq_at) = if id == ids.start {
                    (proto.clone(), vec![seq_at0])
                } else {
                    let (f, s) = build_frame(o.size, id);
                    (f, vec![s])
                };
                if o.ack == AckMode::None && out.len() < STREAM_BATCH {
                    let one = out.clone();
                    let k = STREAM_BATCH / one.len();
                    for i in 1..k {
                        seq_at.push(seq_at[0] + i * one.len());
                        out.extend_from_slice(&one);
                    }
                }
                let transport = match tls {
                    Some(ts) => match rustls::ClientConnection::new(ts.config.clone(), ts.name.clone()) {
                        Ok(c) => Transport::Tls(Box::new(c)),
                        Err(e) => {
                            t.error(format!("tls: {e}"));
                            shared.mark_ready();
                            conns.push(None);
                            continue;
                        }
                    },
                    None => Transport::Plain,
                };
                conns.push(Some(Conn {
                    sock,
                    transport,
                    out,
                    seq_at,
                    frames_in_out: 1,
                    wpos: 0,
                    in_flight: false,
                    written: false,
                    sent_at: Instant::now(),
                    dec: Decoder::new(FrameChars::default(), 64 * 1024 * 1024),
                    ack: Vec::new(),
                    in_ack: false,
                    phase: Phase::Warmup,
                    seq: (id as u64) << 40,
                    warm_done: 0,
                    measured: 0,
                    drain_until: None,
                }));
            }
            Err(e) => {
                t.error(format!("connect {addr}: {e}"));
                shared.mark_ready();
                conns.push(None);
            }
        }
    }

    // Kick off every connection.
    let now = Instant::now();
    let mut live = 0usize;
    for slot in conns.iter_mut() {
        if let Some(c) = slot {
            if c.next(&cx, &mut t, now) && c.stream_progress(&cx, &mut t) {
                live += 1;
            } else {
                if c.phase == Phase::Warmup {
                    shared.mark_ready();
                }
                *slot = None;
            }
        }
    }

    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut waiting_ready = conns.iter().flatten().any(|c| c.phase == Phase::Ready);
    while live > 0 {
        let now = Instant::now();
        if now >= shared.deadline || shared.abort.load(Ordering::Relaxed) {
            shared.abort.store(true, Ordering::Relaxed);
            break;
        }
        let mut timeout = shared.deadline - now;
        if waiting_ready {
            timeout = timeout.min(Duration::from_millis(1));
        }
        if let Some(w) = warm_until {
            if w > now {
                timeout = timeout.min(w - now);
            }
        }
        if let (Some(d), Some(s)) = (o.duration, shared.start.get()) {
            let end = *s + Duration::from_secs_f64(d);
            if end > now {
                timeout = timeout.min(end - now + Duration::from_millis(1));
            }
        }
        if o.ack == AckMode::None {
            timeout = timeout.min(Duration::from_millis(50)); // draining timeouts
        }
        let start_was_unset = shared.start.get().is_none();
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            t.error(format!("poll: {e}"));
            break;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns[i].as_mut() else { continue };
            let mut ok = true;
            if ev.is_writable() || ev.is_write_closed() {
                ok = c.pump_write(&mut t) && c.stream_progress(&cx, &mut t);
            }
            if ok && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                let closed = ev.is_read_closed() || ev.is_error();
                ok = c.on_readable(&cx, &mut t, &mut buf, closed);
            }
            if ok && c.in_flight && !c.written && c.is_tls() {
                ok = c.pump_write(&mut t);
            }
            if !ok {
                if c.phase == Phase::Warmup {
                    shared.mark_ready();
                }
                conns[i] = None;
                live -= 1;
            }
        }
        // Time-driven transitions: the start barrier, draining timeouts, streaming connections
        // that are still writable. (Skipped in the steady closed loop: O(connections).)
        if !(waiting_ready || o.ack == AckMode::None || start_was_unset) {
            continue;
        }
        let now = Instant::now();
        waiting_ready = false;
        for slot in conns.iter_mut() {
            let Some(c) = slot else { continue };
            let mut ok = true;
            match c.phase {
                Phase::Ready => {
                    if shared.start.get().is_some() {
                        ok = c.next(&cx, &mut t, now) && c.stream_progress(&cx, &mut t);
                    } else {
                        waiting_ready = true;
                    }
                }
                Phase::Warmup if !c.in_flight => {
                    ok = c.next(&cx, &mut t, now) && c.stream_progress(&cx, &mut t);
                }
                Phase::Warmup | Phase::Measure if o.ack == AckMode::None => {
                    ok = c.stream_progress(&cx, &mut t);
                }
                Phase::Draining if c.drain_until.is_some_and(|d| now >= d) => {
                    cx.shared.note_end(now);
                    ok = false;
                }
                _ => {}
            }
            if !ok {
                *slot = None;
                live -= 1;
            }
        }
    }
    // Connections still open at the deadline: their unfinished messages are errors.
    for c in conns.iter().flatten() {
        if matches!(c.phase, Phase::Warmup | Phase::Measure | Phase::Ready) {
            t.error("deadline reached before the connection finished".into());
        }
    }
    t
}

impl Conn {
    fn is_tls(&self) -> bool {
        matches!(&self.transport, Transport::Tls(_))
    }
}

// ---------------------------------------------------------------------------------------------
// Idle connections (memory scenario)

fn run_idle(o: &Opts, addr: SocketAddr, tls: Option<&TlsSetup>) {
    let deadline = Instant::now() + Duration::from_secs_f64(o.deadline);
    let limit = raise_nofile(o.idle as u64 + 64);
    if let Some(size) = o.idle_after {
        // One message of that size on a connection of its own first, then a pause: what the
        // server sets up once (its read buffer, a pooled message buffer, which expires after a
        // second) is in the "before" sample, so the difference is what each idle connection costs.
        let warm =
            connect_from(addr, 0, 1, Duration::from_secs(10)).and_then(|mut s| send_one(&mut s, size, 0, deadline));
        if let Err(e) = warm {
            die(&format!("--idle-after warm-up message: {e}"));
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    let rss_before = o.server_pid.and_then(proc_rss_kb);
    let cpu_before = o.server_pid.and_then(proc_cpu);
    let t0 = Instant::now();
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::with_capacity(o.idle);
    let mut errors = 0u64;
    let mut first_error = None;
    if o.idle_after.is_some() && tls.is_some() {
        die("--idle-after is for plain connections");
    }
    for n in 0..o.idle {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            errors += 1;
            first_error.get_or_insert_with(|| "deadline while connecting".to_string());
            break;
        }
        let r = connect_from(addr, n, o.sources, left.min(Duration::from_secs(10))).and_then(
            |mut s| -> io::Result<Box<dyn std::any::Any>> {
                match tls {
                    None => {
                        if let Some(size) = o.idle_after {
                            send_one(&mut s, size, n, deadline)?;
                        }
                        Ok(Box::new(s))
                    }
                    Some(ts) => {
                        let mut conn = rustls::ClientConnection::new(ts.config.clone(), ts.name.clone())
                            .map_err(io::Error::other)?;
                        let mut s = s;
                        s.set_read_timeout(Some(Duration::from_secs(10)))?;
                        while conn.is_handshaking() {
                            conn.complete_io(&mut s)?;
                        }
                        Ok(Box::new((s, conn)))
                    }
                }
            },
        );
        match r {
            Ok(h) => held.push(h),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
                if held.len() + 64 >= limit as usize {
                    break;
                }
            }
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let hold_end = Instant::now() + Duration::from_secs_f64(o.hold);
    // Sample the server's RSS during the hold; report the last sample (it settles once the
    // server has accepted and set up every connection) and the peak.
    let mut rss_after = None;
    let mut rss_peak = 0u64;
    while Instant::now() < hold_end.min(deadline) {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(r) = o.server_pid.and_then(proc_rss_kb) {
            rss_after = Some(r);
            rss_peak = rss_peak.max(r);
        }
    }
    if rss_after.is_none() {
        rss_after = o.server_pid.and_then(proc_rss_kb);
    }
    let cpu_after = o.server_pid.and_then(proc_cpu);
    let opened = held.len();
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened > 0 => Some((a as f64 - b as f64) * 1024.0 / opened as f64),
        _ => None,
    };
    drop(held);
    let scenario = o.scenario.clone().unwrap_or_else(|| format!("idle-{}", o.idle));
    let j = json_line(&IdleResult {
        scenario: &scenario,
        connections: o.idle,
        opened,
        tls: o.tls,
        connect_seconds: connect_secs,
        hold_seconds: o.hold,
        server_rss_before_kb: rss_before,
        server_rss_after_kb: rss_after,
        server_rss_peak_kb: (rss_peak > 0).then_some(rss_peak),
        server_bytes_per_conn: per_conn,
        server_cpu_seconds: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
        idle_after: o.idle_after.unwrap_or(0),
        nofile_limit: limit,
        errors,
        first_error: first_error.as_deref(),
    });
    if o.json {
        out!("{j}");
    } else {
        out!(
            "{scenario}: {opened}/{} idle connections held {:.1}s; server RSS {} -> {} KiB ({} bytes/connection); errors {errors}",
            o.idle,
            o.hold,
            rss_before.map_or("?".into(), |v| v.to_string()),
            rss_after.map_or("?".into(), |v| v.to_string()),
            per_conn.map_or("?".into(), |v| format!("{v:.0}")),
        );
        if let Some(e) = first_error {
            out!("first error: {e}");
        }
    }
    std::process::exit(if errors > 0 { 1 } else { 0 });
}

// ---------------------------------------------------------------------------------------------
// Output

/// The result line of a load run (`--json`).
#[derive(serde::Serialize)]
struct LoadResult<'a> {
    scenario: &'a str,
    connections: usize,
    messages: u64,
    size: usize,
    ack: &'a str,
    tls: bool,
    seconds: f64,
    msgs_per_sec: f64,
    mb_per_sec: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    errors: u64,
    naks: u64,
    warmup_messages: u64,
    threads: usize,
    client_cpu_us_per_msg: Option<f64>,
    server_cpu_us_per_msg: Option<f64>,
    server_cpu_seconds: Option<f64>,
    /// Server CPU time per MiB of message content received.
    server_cpu_us_per_mib: Option<f64>,
    /// Server minor page faults per MiB of message content received.
    server_minflt_per_mib: Option<f64>,
    server_rss_kb: Option<u64>,
    deadline_hit: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<&'a str>,
}

/// The result line of an idle run (`--idle N --json`).
#[derive(serde::Serialize)]
struct IdleResult<'a> {
    scenario: &'a str,
    connections: usize,
    opened: usize,
    tls: bool,
    connect_seconds: f64,
    hold_seconds: f64,
    server_rss_before_kb: Option<u64>,
    server_rss_after_kb: Option<u64>,
    server_rss_peak_kb: Option<u64>,
    server_bytes_per_conn: Option<f64>,
    server_cpu_seconds: Option<f64>,
    /// The size of the one message each connection sent before it was held idle (0: none).
    idle_after: usize,
    nofile_limit: u64,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<&'a str>,
}

fn json_line(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("a result serialises")
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0)
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let o = parse_opts();
    let addr = match (o.host.as_str(), o.port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => die(&format!("cannot resolve {}:{}", o.host, o.port)),
    };
    let tls = if o.tls {
        let name = o.tls_server_name.clone().unwrap_or_else(|| o.host.clone());
        match (tls::config(o.tls_ca.as_deref()), tls::server_name(&name)) {
            (Ok(config), Ok(name)) => Some(TlsSetup { config, name }),
            (Err(e), _) | (_, Err(e)) => die(&e),
        }
    } else {
        None
    };
    if o.idle > 0 {
        run_idle(&o, addr, tls.as_ref());
    }
    if o.client_idle > 0 {
        via_client::idle(&o, o.client_idle);
    }
    if o.via_client {
        via_client::run(&o);
    }
    let nofile = raise_nofile(o.connections as u64 + 64);
    if nofile < o.connections as u64 + 16 {
        eprintln!("mllp-bench: open-file limit {nofile} is too low for {} connections", o.connections);
    }

    let t_begin = Instant::now();
    let shared = Shared {
        not_ready: AtomicUsize::new(o.connections),
        start: OnceLock::new(),
        server_cpu_start: OnceLock::new(),
        server_flt_start: OnceLock::new(),
        client_cpu_start: OnceLock::new(),
        abort: AtomicBool::new(false),
        deadline: t_begin + Duration::from_secs_f64(o.deadline),
        server_pid: o.server_pid,
        end: Mutex::new(None),
    };
    // Split connections evenly over the workers.
    let threads = o.threads;
    let mut tallies = Vec::new();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut from = 0;
        for w in 0..threads {
            let n = o.connections / threads + usize::from(w < o.connections % threads);
            let ids = from..from + n;
            from += n;
            let (o, shared, tls) = (&o, &shared, tls.as_ref());
            handles.push(s.spawn(move || worker(o, addr, ids, shared, tls)));
        }
        for h in handles {
            tallies.push(h.join().unwrap_or_else(|_| {
                let mut t = Tally::default();
                t.error("worker panicked".into());
                t
            }));
        }
    });
    let server_cpu_end = o.server_pid.and_then(proc_cpu);
    let server_flt_end = o.server_pid.and_then(proc_minflt);
    let client_cpu_end = self_cpu();
    let server_rss = o.server_pid.and_then(proc_rss_kb);
    let deadline_hit = shared.abort.load(Ordering::Relaxed);

    let mut all = Tally::default();
    for t in tallies.iter_mut() {
        all.latencies_ns.append(&mut t.latencies_ns);
        all.measured += t.measured;
        all.warm += t.warm;
        all.bytes += t.bytes;
        all.errors += t.errors;
        all.naks += t.naks;
        if all.first_error.is_none() {
            all.first_error = t.first_error.take();
        }
    }
    let start = shared.start.get().copied();
    let end = shared.end.lock().unwrap().unwrap_or_else(Instant::now);
    let end = if deadline_hit { Instant::now().min(shared.deadline) } else { end };
    let secs = start.map_or(0.0, |s| end.saturating_duration_since(s).as_secs_f64());
    let lat = &mut all.latencies_ns;
    lat.sort_unstable();
    let (msg_len, ..) = {
        let (f, a) = build_frame(o.size, 0);
        (f.len() - 3, a)
    };
    let mps = if secs > 0.0 { all.measured as f64 / secs } else { 0.0 };
    let mbps = if secs > 0.0 { all.bytes as f64 / secs / 1e6 } else { 0.0 };
    let server_cpu = match (shared.server_cpu_start.get().copied().flatten(), server_cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let client_cpu = shared.client_cpu_start.get().map(|a| client_cpu_end - a);
    let mib = all.bytes as f64 / (1024.0 * 1024.0);
    let per_mib = |v: Option<f64>| v.filter(|_| mib > 0.0).map(|v| v / mib);
    let server_faults = match (shared.server_flt_start.get().copied().flatten(), server_flt_end) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
        _ => None,
    };
    let per_msg_us = |cpu: Option<f64>| cpu.filter(|_| all.measured > 0).map(|c| c * 1e6 / all.measured as f64);
    let scenario = o.scenario.clone().unwrap_or_else(|| format!("c{}-s{}-{}", o.connections, msg_len, o.ack.name()));

    let j = json_line(&LoadResult {
        scenario: &scenario,
        connections: o.connections,
        messages: all.measured,
        size: msg_len,
        ack: o.ack.name(),
        tls: o.tls,
        seconds: secs,
        msgs_per_sec: mps,
        mb_per_sec: mbps,
        p50_us: percentile(lat, 50.0),
        p99_us: percentile(lat, 99.0),
        p999_us: percentile(lat, 99.9),
        max_us: lat.last().map(|&v| v as f64 / 1000.0),
        errors: all.errors,
        naks: all.naks,
        warmup_messages: all.warm,
        threads,
        client_cpu_us_per_msg: per_msg_us(client_cpu),
        server_cpu_us_per_msg: per_msg_us(server_cpu),
        server_cpu_seconds: server_cpu,
        server_cpu_us_per_mib: per_mib(server_cpu.map(|c| c * 1e6)),
        server_minflt_per_mib: per_mib(server_faults),
        server_rss_kb: server_rss,
        deadline_hit,
        first_error: all.first_error.as_deref(),
    });
    if o.json {
        out!("{j}");
    } else {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        out!(
            "{scenario}: {} messages of {} bytes on {} connection(s) in {:.3}s: {:.0} msg/s, {:.2} MB/s",
            all.measured,
            msg_len,
            o.connections,
            secs,
            mps,
            mbps
        );
        out!(
            "latency us: p50 {} p99 {} p99.9 {} max {}",
            f(percentile(lat, 50.0)),
            f(percentile(lat, 99.0)),
            f(percentile(lat, 99.9)),
            f(lat.last().map(|&v| v as f64 / 1000.0))
        );
        out!(
            "errors {} naks {} warm-up {}{}; client CPU {} us/msg; server CPU {} us/msg",
            all.errors,
            all.naks,
            all.warm,
            if deadline_hit { " (DEADLINE HIT)" } else { "" },
            f(per_msg_us(client_cpu)),
            f(per_msg_us(server_cpu))
        );
        if let Some(e) = &all.first_error {
            out!("first error: {e}");
        }
    }
    std::process::exit(if all.errors > 0 || deadline_hit { 1 } else { 0 });
}
