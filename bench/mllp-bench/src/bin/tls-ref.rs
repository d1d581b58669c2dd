//! tls-ref: the TLS baseline of mllp's benchmarks — a bare rustls responder on one mio event
//! loop (one thread, as mllp's reactor), with no features: it answers every complete MLLP frame
//! (`<SB> ... <EB><CR>`) with the commit acknowledgement `<SB><ACK><EB><CR>` and keeps nothing.
//!
//! ```text
//! tls-ref --cert FILE --key FILE [--host ADDR] [--port N] [--no-resume]
//! ```
//!
//! The rustls configuration is the one mllp's server builds with its defaults: ring, TLS 1.2
//! and 1.3, the server's order of cipher suites (AES-128-GCM first where AES runs in hardware),
//! session resumption with tickets and a 1024-entry cache (`--no-resume`: neither), no client
//! authentication. So what mllp-listen costs beyond this is mllp's, not TLS's.
//!
//! Per connection: the socket, the rustls `ServerConnection` (its buffers) and two bytes of
//! framing state. Reads: edge-triggered, and a socket read shorter than rustls asked for means
//! the socket is drained (no read that would only say WouldBlock). Acknowledgements decoded in
//! one read go out as one record and, normally, one write.
//!
//! Prints "listening on HOST:PORT" on stdout, then runs until killed.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::{ServerConfig, ServerConnection};

const SB: u8 = 0x0B;
const EB: u8 = 0x1C;
const CR: u8 = 0x0D;
const ACK: [u8; 4] = [SB, 0x06, EB, CR];
const LISTENER: Token = Token(usize::MAX);

/// A bare rustls MLLP responder: the TLS baseline.
#[derive(clap::Parser)]
#[command(name = "tls-ref")]
struct Opts {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// PEM certificate (and chain).
    #[arg(long)]
    cert: String,
    /// PEM private key.
    #[arg(long)]
    key: String,
    /// No session resumption (no tickets, no session cache).
    #[arg(long)]
    no_resume: bool,
}

fn die(msg: &str) -> ! {
    eprintln!("tls-ref: {msg}");
    std::process::exit(2);
}

fn config(o: &Opts) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&o.cert)
        .map_err(|e| format!("{}: {e}", o.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", o.cert))?;
    let key = PrivateKeyDer::from_pem_file(&o.key).map_err(|e| format!("{}: {e}", o.key))?;
    let mut provider = rustls::crypto::ring::default_provider();
    // The order mllp's server uses with SSLEnabledCipherSuites=* (cheapest cipher first).
    mllp::tls::prefer_cheapest(&mut provider.cipher_suites);
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.ignore_client_order = true;
    if o.no_resume {
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    } else {
        cfg.session_storage = ServerSessionMemoryCache::new(1024);
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    }
    Ok(Arc::new(cfg))
}

/// A reader that notes whether its last read was short.
struct Probe<'a> {
    inner: &'a mut TcpStream,
    short: bool,
}

impl Read for Probe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

struct Conn {
    sock: TcpStream,
    tls: ServerConnection,
    /// Framing: 0 outside a frame, 1 in its content, 2 right after its end block.
    state: u8,
    writable: bool,
}

impl Conn {
    /// Counts the frames `data` completes.
    fn frames(&mut self, data: &[u8]) -> usize {
        let mut done = 0;
        let mut p = 0;
        while p < data.len() {
            match self.state {
                1 => match data[p..].iter().position(|&b| b == EB) {
                    Some(i) => {
                        p += i + 1;
                        self.state = 2;
                    }
                    None => break,
                },
                2 => {
                    self.state = match data[p] {
                        CR => {
                            done += 1;
                            0
                        }
                        SB => 1,
                        _ => 0,
                    };
                    p += 1;
                }
                _ => match data[p..].iter().position(|&b| b == SB) {
                    Some(i) => {
                        p += i + 1;
                        self.state = 1;
                    }
                    None => break,
                },
            }
        }
        done
    }

    /// Reads what the socket holds, answers complete frames. Err: close the connection.
    fn on_readable(&mut self, buf: &mut [u8], acks: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let mut probe = Probe { inner: &mut self.sock, short: false };
            let n = match self.tls.read_tls(&mut probe) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let drained = probe.short;
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.tls.write_tls(&mut self.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            let mut frames = 0;
            loop {
                match self.tls.reader().read(buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(k) => frames += self.frames(&buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if frames > 0 {
                acks.clear();
                for _ in 0..frames {
                    acks.extend_from_slice(&ACK);
                }
                self.tls.writer().write_all(acks)?;
            }
            self.flush()?;
            if drained && n > 0 {
                return Ok(());
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    let cfg = config(&o).unwrap_or_else(|e| die(&e));
    let addr: SocketAddr = format!("{}:{}", o.host, o.port).parse().unwrap_or_else(|e| die(&format!("address: {e}")));
    let mut listener = TcpListener::bind(addr).unwrap_or_else(|e| die(&format!("bind {addr}: {e}")));
    let local = listener.local_addr().unwrap_or(addr);
    let mut poll = Poll::new().unwrap_or_else(|e| die(&format!("poll: {e}")));
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap_or_else(|e| die(&format!("register: {e}")));
    println!("listening on {local}");
    let _ = io::stdout().flush();

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut acks = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            die(&format!("poll: {e}"));
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let Ok(tls) = ServerConnection::new(cfg.clone()) else { continue };
                            let i = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            if poll.registry().register(&mut sock, Token(i), Interest::READABLE).is_err() {
                                free.push(i);
                                continue;
                            }
                            conns[i] = Some(Conn { sock, tls, state: 0, writable: false });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("tls-ref: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).and_then(|c| c.as_mut()) else { continue };
            let mut r = Ok(());
            if ev.is_writable() {
                r = c.flush();
            }
            if r.is_ok() && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                r = c.on_readable(&mut buf, &mut acks);
            }
            if r.is_ok() && c.tls.wants_write() != c.writable {
                c.writable = c.tls.wants_write();
                let interest = if c.writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                r = poll.registry().reregister(&mut c.sock, Token(i), interest);
            }
            if r.is_err() {
                if let Some(mut c) = conns[i].take() {
                    let _ = poll.registry().deregister(&mut c.sock);
                }
                free.push(i);
            }
        }
    }
}
