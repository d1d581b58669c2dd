//! handshakes: TLS connection-setup load for mllp's benchmarks, and idle TLS memory.
//!
//! ```text
//! handshakes --new-connection-per-message [--no-resume] [--host ADDR] [--port N]
//!            [--connections N] [--duration SECS] [--warmup SECS] [--size BYTES]
//!            [--server-pid PID] [--scenario NAME] [--json]
//! handshakes --idle N --idle-message [--hold SECS] [--server-pid PID] ... [--json]
//! ```
//!
//! `--new-connection-per-message`: N threads, each a closed loop of: connect, TLS handshake,
//! one framed HL7 message, wait for its acknowledgement, close_notify, close. Resumed
//! handshakes by default (the client keeps the tickets the server sent; the first connection
//! of each thread is a full handshake); `--no-resume`: every handshake is a full one. Reports
//! handshakes (= messages) per second, the share resumed, latency of the whole
//! connect-to-acknowledgement, and with `--server-pid` the server's CPU per handshake.
//!
//! `--idle N --idle-message`: opens N TLS connections that each complete the handshake and one
//! message round trip (so every buffer a connection in use has was touched), holds them
//! `--hold` seconds and reports the server's resident memory per connection (needs
//! `--server-pid`). Without `--idle-message` the connections only handshake.
//!
//! The client is rustls (ring), accepting any server certificate but verifying signatures.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code)] // proc_minflt is mllp-bench's alone
#[path = "../procstat.rs"]
mod procstat;
use procstat::{proc_cpu, proc_rss_kb, self_cpu};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme};

/// TLS connection-setup load and idle TLS memory (see the module documentation).
#[derive(clap::Parser)]
#[command(name = "handshakes")]
struct Opts {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 2575)]
    port: u16,
    /// A new connection (and TLS handshake) for every message.
    #[arg(long)]
    new_connection_per_message: bool,
    /// No session resumption: every handshake is a full one.
    #[arg(long)]
    no_resume: bool,
    /// Concurrent closed loops (threads).
    #[arg(long, short = 'c', default_value_t = 4)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Size of each message in bytes (an HL7 ADT^A01 padded with an NTE segment).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Open N TLS connections and hold them (memory).
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// With --idle: each connection sends one message (and gets its acknowledgement) first.
    #[arg(long)]
    idle_message: bool,
    /// With --idle: seconds to hold the connections.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
    /// Measure this process's CPU time and resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Label for the result line.
    #[arg(long)]
    scenario: Option<String>,
    /// Hard limit for the whole run, seconds.
    #[arg(long, default_value_t = 120.0)]
    deadline: f64,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

fn die(msg: &str) -> ! {
    eprintln!("handshakes: {msg}");
    std::process::exit(2);
}

/// Accepts any server certificate (the benchmarks use throw-away self-signed ones) but checks
/// the handshake signatures, so the crypto work is real.
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

fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| die(&e.to_string()))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    if !resume {
        cfg.resumption = Resumption::disabled();
    }
    Arc::new(cfg)
}

/// One framed HL7 ADT^A01 message of about `size` bytes.
fn message(size: usize) -> Vec<u8> {
    let mut m = b"MSH|^~\\&|BENCH|FAC|MLLP|FAC|20261202120000||ADT^A01|0000000001|P|2.5\rEVN|A01|20261202120000\r\
PID|1||12345^^^HOSP^MR||DOE^JOHN||19700101|M\rNTE|1||"
        .to_vec();
    while m.len() + 1 < size {
        m.push(b'x');
    }
    m.push(b'\r');
    let mut f = Vec::with_capacity(m.len() + 3);
    f.push(0x0B);
    f.extend_from_slice(&m);
    f.extend_from_slice(&[0x1C, 0x0D]);
    f
}

/// Reads until a complete MLLP frame (the acknowledgement) arrived.
fn read_ack(s: &mut impl Read) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut last = 0u8;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for &b in &buf[..n] {
            if last == 0x1C && b == 0x0D {
                return Ok(());
            }
            last = b;
        }
    }
}

/// Connects, handshakes, sends `msg` and waits for its acknowledgement. Returns the
/// connection (still open) and whether the handshake was a resumed one.
fn one(
    addr: &SocketAddr,
    cfg: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    msg: Option<&[u8]>,
) -> io::Result<(TcpStream, ClientConnection, bool)> {
    let mut sock = TcpStream::connect_timeout(addr, Duration::from_secs(10))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut conn = ClientConnection::new(cfg.clone(), name.clone()).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    if let Some(m) = msg {
        let mut s = rustls::Stream::new(&mut conn, &mut sock);
        s.write_all(m)?;
        read_ack(&mut s)?;
    }
    Ok((sock, conn, resumed))
}

#[derive(Default)]
struct Tally {
    handshakes: u64,
    resumed: u64,
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// The result line of a handshake run.
#[derive(serde::Serialize)]
struct HandshakeResult<'a> {
    scenario: &'a str,
    connections: usize,
    resume: bool,
    size: usize,
    seconds: f64,
    handshakes: u64,
    handshakes_per_sec: f64,
    resumed_share: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    server_cpu_us_per_handshake: Option<f64>,
    client_cpu_us_per_handshake: Option<f64>,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<&'a str>,
}

/// The result line of an idle run.
#[derive(serde::Serialize)]
struct IdleResult<'a> {
    scenario: &'a str,
    connections: usize,
    opened: usize,
    idle_message: bool,
    server_rss_before_kb: Option<u64>,
    server_rss_after_kb: Option<u64>,
    server_bytes_per_conn: Option<f64>,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<&'a str>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

fn run_handshakes(o: &Opts, addr: SocketAddr, name: ServerName<'static>) {
    let cfg = client_config(!o.no_resume);
    let msg = message(o.size);
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(false);
    let hard_end = Instant::now() + Duration::from_secs_f64(o.deadline);
    let tallies: Vec<Tally> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..o.connections.max(1))
            .map(|_| {
                let (cfg, name, msg, stop, measuring) = (&cfg, &name, &msg, &stop, &measuring);
                sc.spawn(move || {
                    let mut t = Tally::default();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < hard_end {
                        let t0 = Instant::now();
                        match one(&addr, cfg, name, Some(msg.as_slice())) {
                            Ok((mut sock, mut conn, resumed)) => {
                                conn.send_close_notify();
                                let _ = conn.write_tls(&mut sock);
                                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                                    t.handshakes += 1;
                                    t.resumed += resumed as u64;
                                    t.latencies_ns.push(t0.elapsed().as_nanos() as u64);
                                }
                            }
                            Err(e) => {
                                t.errors += 1;
                                t.first_error.get_or_insert_with(|| e.to_string());
                                if t.errors > 100 {
                                    break;
                                }
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(o.warmup));
        let server0 = o.server_pid.and_then(proc_cpu);
        let client0 = self_cpu();
        let t0 = Instant::now();
        measuring.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs_f64(o.duration));
        stop.store(true, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let server1 = o.server_pid.and_then(proc_cpu);
        let client1 = self_cpu();
        let tallies: Vec<Tally> = workers.into_iter().map(|w| w.join().unwrap_or_default()).collect();
        report(o, &tallies, secs, server0.zip(server1).map(|(a, b)| b - a), client1 - client0);
        tallies
    });
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    std::process::exit(if errors > 0 { 1 } else { 0 });
}

fn report(o: &Opts, tallies: &[Tally], secs: f64, server_cpu: Option<f64>, client_cpu: f64) {
    let n: u64 = tallies.iter().map(|t| t.handshakes).sum();
    let resumed: u64 = tallies.iter().map(|t| t.resumed).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let first_error = tallies.iter().find_map(|t| t.first_error.as_deref());
    let mut lat: Vec<u64> = tallies.iter().flat_map(|t| t.latencies_ns.iter().copied()).collect();
    lat.sort_unstable();
    let per = |cpu: f64| (n > 0).then(|| cpu * 1e6 / n as f64);
    let scenario = o.scenario.clone().unwrap_or_else(|| {
        format!("new-connection-per-message-{}-c{}", if o.no_resume { "full" } else { "resumed" }, o.connections)
    });
    let r = HandshakeResult {
        scenario: &scenario,
        connections: o.connections,
        resume: !o.no_resume,
        size: o.size,
        seconds: secs,
        handshakes: n,
        handshakes_per_sec: n as f64 / secs,
        resumed_share: if n > 0 { resumed as f64 / n as f64 } else { 0.0 },
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        server_cpu_us_per_handshake: server_cpu.and_then(per),
        client_cpu_us_per_handshake: per(client_cpu),
        errors,
        first_error,
    };
    if o.json {
        println!("{}", serde_json::to_string(&r).expect("a result serialises"));
    } else {
        println!(
            "{scenario}: {n} handshakes in {secs:.2}s = {:.0}/s ({:.0}% resumed), p50 {} µs, server CPU {} µs/handshake, errors {errors}",
            r.handshakes_per_sec,
            r.resumed_share * 100.0,
            r.p50_us.map_or("?".into(), |v| format!("{v:.0}")),
            r.server_cpu_us_per_handshake.map_or("?".into(), |v| format!("{v:.1}")),
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
    }
}

fn run_idle(o: &Opts, addr: SocketAddr, name: ServerName<'static>) {
    let cfg = client_config(!o.no_resume);
    let msg = message(o.size);
    let deadline = Instant::now() + Duration::from_secs_f64(o.deadline);
    let rss_before = o.server_pid.and_then(proc_rss_kb);
    let mut held = Vec::with_capacity(o.idle);
    let (mut errors, mut first_error) = (0u64, None);
    for _ in 0..o.idle {
        if Instant::now() >= deadline {
            errors += 1;
            first_error.get_or_insert_with(|| "deadline while connecting".to_string());
            break;
        }
        match one(&addr, &cfg, &name, o.idle_message.then_some(&msg[..])) {
            Ok(h) => held.push(h),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
                if errors > 100 {
                    break;
                }
            }
        }
    }
    let hold_end = Instant::now() + Duration::from_secs_f64(o.hold);
    let mut rss_after = None;
    while Instant::now() < hold_end.min(deadline) {
        std::thread::sleep(Duration::from_millis(200));
        rss_after = o.server_pid.and_then(proc_rss_kb).or(rss_after);
    }
    let opened = held.len();
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened > 0 => Some((a as f64 - b as f64) * 1024.0 / opened as f64),
        _ => None,
    };
    drop(held);
    let scenario = o
        .scenario
        .clone()
        .unwrap_or_else(|| format!("idle-tls-{}{}", o.idle, if o.idle_message { "-after-message" } else { "" }));
    let r = IdleResult {
        scenario: &scenario,
        connections: o.idle,
        opened,
        idle_message: o.idle_message,
        server_rss_before_kb: rss_before,
        server_rss_after_kb: rss_after,
        server_bytes_per_conn: per_conn,
        errors,
        first_error: first_error.as_deref(),
    };
    if o.json {
        println!("{}", serde_json::to_string(&r).expect("a result serialises"));
    } else {
        println!(
            "{scenario}: {opened}/{} TLS connections held; server RSS {:?} -> {:?} KiB ({} bytes/connection); errors {errors}",
            o.idle,
            rss_before,
            rss_after,
            per_conn.map_or("?".into(), |v| format!("{v:.0}")),
        );
    }
    std::process::exit(if errors > 0 { 1 } else { 0 });
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    let addr = (o.host.as_str(), o.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| die(&format!("cannot resolve {}", o.host)));
    let name = ServerName::try_from(o.host.clone()).unwrap_or_else(|e| die(&format!("server name: {e}")));
    if o.idle > 0 {
        if o.server_pid.is_none() {
            die("--idle needs --server-pid");
        }
        run_idle(&o, addr, name);
    } else if o.new_connection_per_message {
        run_handshakes(&o, addr, name);
    } else {
        die("give --new-connection-per-message or --idle N");
    }
}
