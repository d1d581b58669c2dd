//! The byte pipe under a connection's protocol: plain TCP or TLS, with one read path and one
//! write path, so the reactor never asks which one it has.
//!
//! For TLS it also owns what belongs to the TLS layer: the ClientHello pause (the host may
//! choose a certificate), the handshake deadline, client authentication's pause and the
//! close_notify.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{code, Error};
use crate::metrics::TlsFailure;
use crate::tls::session::{Progress, TlsConn, TlsInfo};
use crate::tls::{Certificate, TlsContext};

/// What one [`Transport::read`] produced.
pub(crate) enum ReadOutcome {
    /// `n` bytes of application data in the buffer. `short`: a read shorter than the buffer
    /// from a socket that is drained on an edge (plain: the read itself; TLS: the plaintext
    /// rustls held, decrypted from a short socket read).
    Data { n: usize, short: bool },
    /// The peer closed its side.
    Closed,
    /// Nothing more for now.
    WouldBlock,
    /// A TLS ClientHello arrived; reads pause until [`Transport::choose_certificate`].
    ClientHello { suites: String, signature_schemes: String },
    /// The TLS handshake completed (see [`Transport::handshake_done`]).
    HandshakeDone,
}

/// What the client presented, for SSLClientAuthentication.
pub(crate) struct ClientAuth {
    pub ok: bool,
    pub status: String,
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
}

/// Plain or TLS.
pub(crate) enum Transport {
    Plain,
    Tls(Box<TlsPipe>),
}

pub(crate) struct TlsPipe {
    conn: TlsConn,
    /// Application data may flow: handshake done and the client accepted.
    ready: bool,
    handshake_deadline: Option<Instant>,
    /// LogSSLPackets lines not yet reported.
    status: Vec<String>,
    /// The last socket read returned less than rustls asked for: on an edge the socket is
    /// drained, as a short plain read says (see [`ReadOutcome::Data`]).
    sock_drained: bool,
}

/// A reader that notes whether its last read was short.
struct Probe<'a, R> {
    inner: &'a mut R,
    short: bool,
}

impl<R: Read> Read for Probe<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl Transport {
    /// A transport for a new connection: TLS when the listener has a context.
    pub fn new(ctx: Option<Arc<TlsContext>>, now: Instant) -> Self {
        match ctx {
            None => Transport::Plain,
            Some(ctx) => Transport::Tls(Box::new(TlsPipe {
                handshake_deadline: Some(now + ctx.handshake_timeout),
                conn: TlsConn::new(ctx),
                ready: false,
                status: Vec::new(),
                sock_drained: false,
            })),
        }
    }

    /// True when application data may flow.
    pub fn ready(&self) -> bool {
        match self {
            Transport::Plain => true,
            Transport::Tls(t) => t.ready,
        }
    }

    /// Reads the next piece of application data into `buf`, advancing the TLS handshake on
    /// the way. `app_paused`: the protocol takes no input now (handshake records still flow).
    pub fn read(&mut self, sock: &mut impl Read, buf: &mut [u8], app_paused: bool) -> io::Result<ReadOutcome> {
        match self {
            Transport::Plain if app_paused => Ok(ReadOutcome::WouldBlock),
            Transport::Plain => loop {
                match sock.read(buf) {
                    Ok(0) => return Ok(ReadOutcome::Closed),
                    Ok(n) => return Ok(ReadOutcome::Data { n, short: n < buf.len() }),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(t) => t.read(sock, buf, app_paused),
        }
    }

    /// Writes application data; returns how much was taken (0 when the socket or TLS buffer
    /// is full, or TLS is not ready).
    pub fn write(&mut self, sock: &mut impl Write, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => loop {
                match sock.write(data) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(t) if t.ready => {
                // Records already encrypted go first: rustls takes new data only when they left.
                t.flush(sock)?;
                let n = t.conn.write_plain(data)?;
                t.flush(sock)?;
                Ok(n)
            }
            Transport::Tls(t) => {
                t.flush(sock)?;
                Ok(0)
            }
        }
    }

    /// Writes pending TLS records (handshake, alerts, close_notify). Plain: nothing to do.
    pub fn flush(&mut self, sock: &mut impl Write) -> io::Result<()> {
        match self {
            Transport::Plain => Ok(()),
            Transport::Tls(t) => t.flush(sock).map(|_| ()),
        }
    }

    /// True for a TLS connection whose data may not flow yet (handshake or client
    /// authentication pending): closing it now is a failed handshake.
    pub fn handshake_pending(&self) -> bool {
        matches!(self, Transport::Tls(t) if !t.ready)
    }

    /// Why an I/O failure during the handshake failed it: a refused or unusable certificate
    /// (ours, the client's, or one chosen in SSLConnectionRequest), another TLS protocol
    /// error, or the socket (other).
    pub fn failure_reason(e: &io::Error) -> TlsFailure {
        if e.kind() != io::ErrorKind::InvalidData {
            return TlsFailure::Other;
        }
        let Some(tls) = e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) else {
            // The only InvalidData that is not rustls's: the SSLConnectionRequest certificate.
            return TlsFailure::Certificate;
        };
        use rustls::AlertDescription as A;
        match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_) => TlsFailure::Certificate,
            rustls::Error::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::AccessDenied,
            ) => TlsFailure::Certificate,
            _ => TlsFailure::Protocol,
        }
    }

    /// True when TLS records wait to be written.
    pub fn has_pending_records(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.conn.wants_write())
    }

    /// Which readiness to ask for, given whether the protocol takes input and has output.
    pub fn interest(&self, app_read: bool, app_write: bool) -> (bool, bool) {
        match self {
            Transport::Plain => (app_read, app_write),
            Transport::Tls(t) => {
                let established = t.conn.established();
                // Handshake records are read even while application data is paused; while
                // client authentication is pending nothing is read, so rustls's bounded
                // plaintext buffer never overflows.
                let read = t.conn.wants_read() && if t.ready { app_read } else { !established };
                (read, t.conn.wants_write() || (t.ready && app_write))
            }
        }
    }

    /// The handshake deadline, while the handshake runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Transport::Tls(t) if !t.conn.established() => t.handshake_deadline,
            _ => None,
        }
    }

    /// Fails a handshake that missed its deadline (2021).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if let Transport::Tls(t) = self {
            if !t.conn.established() && t.handshake_deadline.is_some_and(|d| d <= now) {
                let secs = t.conn.ctx.handshake_timeout.as_secs();
                return Err(Error::new(code::TLS_HANDSHAKE, format!("TLS handshake not completed within {secs} s")));
            }
        }
        Ok(())
    }

    /// Continues the handshake after SSLConnectionRequest with the host's certificate (None:
    /// SSLCert). Ignored unless a ClientHello awaits the decision.
    pub fn choose_certificate(&mut self, cert: Option<Arc<Certificate>>) -> io::Result<Option<ReadOutcome>> {
        let Transport::Tls(t) = self else { return Ok(None) };
        if !t.conn.deciding() {
            return Ok(None);
        }
        let config = match cert {
            None => t.conn.ctx.config.clone(),
            Some(cert) => t.conn.ctx.config_for(&cert).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("certificate chosen in SSLConnectionRequest: {}", e.message),
                )
            })?,
        };
        t.conn.start(config)?;
        // The ClientHello may have arrived with more records behind it.
        Ok(match t.conn.process()? {
            Progress::HandshakeDone => Some(ReadOutcome::HandshakeDone),
            _ => None,
        })
    }

    /// After the handshake: the negotiated values, and what client authentication must decide
    /// (None: clients are not authenticated, data flows now).
    pub fn handshake_done(&mut self) -> (Option<TlsInfo>, Option<ClientAuth>) {
        let Transport::Tls(t) = self else { return (None, None) };
        let info = t.conn.info();
        let ctx = t.conn.ctx.clone();
        if !ctx.authenticate_clients {
            t.ready = true;
            return (info, None);
        }
        let chain = t.conn.peer_certificates();
        let (ok, status) = ctx.verify_client(chain.as_deref());
        let parsed = chain.as_ref().and_then(|ch| Certificate::from_der(ch.clone(), None).ok());
        let der = chain.as_ref().and_then(|ch| ch.first()).map(|d| d.as_ref().to_vec()).unwrap_or_default();
        let subject = parsed.as_ref().map(|p| p.subject().to_string()).unwrap_or_default();
        let issuer = parsed.as_ref().map(|p| p.issuer().to_string()).unwrap_or_default();
        (info, Some(ClientAuth { ok, status, der, subject, issuer }))
    }

    /// True while the host's SSLClientAuthentication decision is awaited.
    pub fn awaiting_client_decision(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.conn.established() && !t.ready)
    }

    /// SSLClientAuthentication decided: data flows, or a close_notify is queued and the
    /// refusal returned (2022).
    pub fn client_decided(&mut self, accept: bool, status: &str) -> Result<(), Error> {
        let Transport::Tls(t) = self else { return Ok(()) };
        if accept {
            t.ready = true;
            return Ok(());
        }
        t.conn.send_close_notify();
        Err(Error::new(code::TLS_CLIENT_REJECTED, format!("client certificate refused: {status}")))
    }

    /// Classifies an I/O failure: TLS protocol errors are 2021, others socket errors.
    pub fn error(&self, e: &io::Error) -> Error {
        match self {
            Transport::Tls(t) if e.kind() == io::ErrorKind::InvalidData => {
                let what = if t.ready { "TLS error" } else { "TLS handshake failed" };
                Error::new(code::TLS_HANDSHAKE, format!("{what}: {e}"))
            }
            _ => Error::from_io(e, "connection"),
        }
    }

    /// LogSSLPackets lines gathered since the last call.
    pub fn take_status(&mut self) -> Vec<String> {
        match self {
            Transport::Tls(t) if !t.status.is_empty() => std::mem::take(&mut t.status),
            _ => Vec::new(),
        }
    }

    /// Before the socket closes: a close_notify when the close is orderly, then a best-effort
    /// write of what TLS still holds (an alert, say).
    pub fn shutdown(&mut self, sock: &mut impl Write, orderly: bool) {
        if let Transport::Tls(t) = self {
            if orderly {
                t.conn.send_close_notify();
            }
            for _ in 0..4 {
                if !t.conn.wants_write() || t.conn.write_tls(sock).is_err() {
                    break;
                }
            }
        }
    }
}

impl TlsPipe {
    fn read(&mut self, sock: &mut impl Read, buf: &mut [u8], app_paused: bool) -> io::Result<ReadOutcome> {
        loop {
            // Plaintext rustls already decrypted comes first.
            if self.ready {
                if app_paused {
                    return Ok(ReadOutcome::WouldBlock);
                }
                match self.conn.read_plain(buf) {
                    Ok(0) => return Ok(ReadOutcome::Closed),
                    // Less than asked for: rustls holds no more plaintext, and if the socket
                    // read behind it was short too, the next read would only say WouldBlock
                    // (unless a close_notify came with the data: the next read reports it).
                    Ok(n) => {
                        let short = n < buf.len() && self.sock_drained && !self.conn.peer_closed();
                        return Ok(ReadOutcome::Data { n, short });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(ReadOutcome::Closed),
                    Err(e) => return Err(e),
                }
            } else if self.conn.established() {
                // Waiting for SSLClientAuthentication.
                return Ok(ReadOutcome::WouldBlock);
            }
            let mut probe = Probe { inner: sock, short: false };
            let read = self.conn.read_tls(&mut probe);
            self.sock_drained = probe.short;
            match read {
                Ok(0) => {
                    // Plaintext that came with the close is still delivered first.
                    self.conn.process()?;
                    if self.ready {
                        if let Ok(n @ 1..) = self.conn.read_plain(buf) {
                            return Ok(ReadOutcome::Data { n, short: false });
                        }
                    }
                    return Ok(ReadOutcome::Closed);
                }
                Ok(n) => {
                    if self.conn.ctx.log_packets {
                        self.status.push(format!("received {n} bytes of TLS records"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            match self.conn.process()? {
                Progress::None => {}
                Progress::ClientHello { suites, signature_schemes } => {
                    return Ok(ReadOutcome::ClientHello { suites, signature_schemes })
                }
                Progress::HandshakeDone => return Ok(ReadOutcome::HandshakeDone),
            }
        }
    }

    /// Writes pending records until the socket is full; returns bytes written.
    fn flush(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    if self.conn.ctx.log_packets {
                        self.status.push(format!("sent {n} bytes of TLS records"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}
