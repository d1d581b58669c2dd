//! The client's byte pipe: one TCP connection (TLS on rustls when SSLEnabled), opened with the
//! TCP settings and read and written without blocking once open. It knows nothing of MLLP:
//! the [`super::sender::Sender`] decides what to write and what the bytes read mean.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};

use super::settings::ClientSettings;
use crate::error::{code, Error, Result};
use crate::tls::session::TlsInfo;

/// What one read produced.
pub(crate) enum Read_ {
    /// `n` application bytes at the start of the buffer (0: progress without data, read again).
    Data(usize),
    /// `n` bytes, and the socket is drained for now.
    Drained(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The server closed the connection.
    Closed,
}

/// An open connection.
pub(crate) struct Io {
    pub sock: TcpStream,
    /// Registered for writable readiness too (only while output waits).
    pub write_interest: bool,
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Io {
    /// Resolves RemoteHost, connects (bounded by `deadline`), applies the socket options and,
    /// for TLS, completes the handshake before returning.
    pub fn open(
        s: &ClientSettings,
        tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
        deadline: Option<Instant>,
    ) -> Result<(Io, Option<TlsInfo>)> {
        if s.remote_port == 0 {
            return Err(Error::new(code::INVALID_ARGUMENT, "RemotePort is not set"));
        }
        let addrs: Vec<SocketAddr> = (s.remote_host.as_str(), s.remote_port)
            .to_socket_addrs()
            .map_err(|e| Error::new(11001, format!("cannot resolve '{}': {e}", s.remote_host)))?
            .collect();
        let mut last = Error::new(11001, format!("'{}' resolves to no address", s.remote_host));
        for addr in addrs {
            match connect_one(s, addr, deadline) {
                Ok(sock) => return finish_open(sock, tls, deadline),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Reads plaintext into `buf`: `Data(n)` (n > 0), `Drained(n)` (a short plain read: the
    /// socket has nothing more now, so no second read is needed), `WouldBlock` or `Closed`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Read_> {
        match &mut self.tls {
            None => match self.sock.read(buf) {
                Ok(0) => Ok(Read_::Closed),
                Ok(n) if n < buf.len() => Ok(Read_::Drained(n)),
                Ok(n) => Ok(Read_::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Read_::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Read_::Data(0)),
                Err(e) => Err(e),
            },
            Some(tls) => {
                // Plaintext rustls already holds comes first.
                match tls.reader().read(buf) {
                    Ok(n) if n > 0 => return Ok(Read_::Data(n)),
                    Ok(_) => return Ok(Read_::Closed),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Read_::Closed),
                    Err(e) => return Err(e),
                }
                let n = match tls.read_tls(&mut self.sock) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read_::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Read_::Data(0)),
                    Err(e) => return Err(e),
                };
                let state = tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let closed = n == 0 || state.peer_has_closed();
                // Alerts or key updates may want an answer.
                self.flush_tls()?;
                if closed && state.plaintext_bytes_to_read() == 0 {
                    return Ok(Read_::Closed);
                }
                Ok(Read_::Data(0))
            }
        }
    }

    /// True when TLS records wait for the socket.
    pub fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes as much of `data` as the socket (or TLS) takes now; the count taken.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            // Nothing new: only TLS records still waiting for the socket.
            self.flush_tls()?;
            return Ok(0);
        }
        match &mut self.tls {
            None => match self.sock.write(data) {
                Ok(n) => Ok(n),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
                Err(e) => Err(e),
            },
            Some(tls) => {
                // rustls buffers at most its buffer limit of records; the rest waits for the socket.
                let n = tls.writer().write(data)?;
                self.flush_tls()?;
                Ok(n)
            }
        }
    }

    /// Writes pending TLS records until the socket would block.
    fn flush_tls(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Closes the connection (close_notify first for TLS).
    pub fn close(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
        }
        let _ = self.flush_tls();
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>> {
    match deadline {
        None => Ok(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(r) if !r.is_zero() => Ok(Some(r)),
            _ => Err(Error::new(10060, "connect timed out (Timeout)")),
        },
    }
}

fn connect_one(s: &ClientSettings, addr: SocketAddr, deadline: Option<Instant>) -> Result<StdStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| Error::from_io(&e, "create socket"))?;
    let _ = sock.set_nodelay(s.tcp_no_delay);
    if s.keep_alive {
        let mut ka = TcpKeepalive::new();
        if s.keep_alive_time > 0 {
            ka = ka.with_time(Duration::from_millis(s.keep_alive_time as u64));
        }
        if s.keep_alive_interval > 0 {
            ka = ka.with_interval(Duration::from_millis(s.keep_alive_interval as u64));
        }
        let _ = sock.set_tcp_keepalive(&ka);
    }
    if s.in_buffer_size > 0 {
        let _ = sock.set_recv_buffer_size(s.in_buffer_size as usize);
    }
    if s.out_buffer_size > 0 {
        let _ = sock.set_send_buffer_size(s.out_buffer_size as usize);
    }
    if s.linger && s.linger_time > 0 {
        let _ = sock.set_linger(Some(Duration::from_secs(s.linger_time as u64)));
    } else if !s.linger {
        let _ = sock.set_linger(Some(Duration::ZERO));
    }
    if !s.local_host.is_empty() || s.local_port != 0 {
        let host = if s.local_host.is_empty() {
            if addr.is_ipv4() {
                "0.0.0.0"
            } else {
                "::"
            }
        } else {
            s.local_host.as_str()
        };
        let local = (host, s.local_port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(|a| a.is_ipv4() == addr.is_ipv4()))
            .ok_or_else(|| Error::new(code::INVALID_VALUE, format!("LocalHost '{host}' is not a usable address")))?;
        sock.bind(&SockAddr::from(local)).map_err(|e| Error::from_io(&e, &format!("bind to {local}")))?;
    }
    let target = SockAddr::from(addr);
    let r = match remaining(deadline)? {
        Some(t) => sock.connect_timeout(&target, t),
        None => sock.connect(&target),
    };
    r.map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
            Error::new(10060, format!("connect to {addr} timed out (Timeout)"))
        } else {
            Error::from_io(&e, &format!("connect to {addr}"))
        }
    })?;
    Ok(sock.into())
}

fn finish_open(
    mut sock: StdStream,
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    deadline: Option<Instant>,
) -> Result<(Io, Option<TlsInfo>)> {
    let mut session = None;
    let mut info = None;
    if let Some((config, name)) = tls {
        let mut c = rustls::ClientConnection::new(config, name)
            .map_err(|e| Error::new(code::TLS_HANDSHAKE, format!("TLS setup: {e}")))?;
        while c.is_handshaking() {
            let left = remaining(deadline).map_err(|_| handshake_timeout())?;
            let _ = sock.set_read_timeout(left);
            let _ = sock.set_write_timeout(left);
            match c.complete_io(&mut sock) {
                Ok((0, 0)) if c.is_handshaking() && !c.wants_write() => {
                    return Err(Error::new(
                        code::TLS_HANDSHAKE,
                        "the server closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(handshake_timeout())
                }
                Err(e) => {
                    // Send the alert that says why, then report it.
                    let _ = c.write_tls(&mut sock);
                    let refused =
                        e.get_ref().and_then(|r| r.downcast_ref::<rustls::Error>()).and_then(super::tls::rejection);
                    return Err(match refused {
                        Some(why) => {
                            Error::new(code::TLS_SERVER_REJECTED, format!("server certificate refused: {why}"))
                        }
                        None => Error::new(code::TLS_HANDSHAKE, format!("TLS handshake failed: {e}")),
                    });
                }
            }
        }
        info = TlsInfo::of(&c);
        session = Some(Box::new(c));
    }
    sock.set_read_timeout(None).ok();
    sock.set_write_timeout(None).ok();
    sock.set_nonblocking(true).map_err(|e| Error::from_io(&e, "set non-blocking"))?;
    Ok((Io { sock: TcpStream::from_std(sock), write_interest: false, tls: session }, info))
}

fn handshake_timeout() -> Error {
    Error::new(code::TLS_HANDSHAKE, "the TLS handshake did not finish within Timeout")
}
