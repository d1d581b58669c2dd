//! One connection's TLS state: reading the ClientHello (so the host may pick a certificate
//! per connection in SSLConnectionRequest), the handshake, then encrypted application data.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::{Accepted, Acceptor};
use rustls::{HandshakeKind, ServerConfig, ServerConnection};
use rustls_pki_types::CertificateDer;

use super::{suite_name, TlsContext};

enum State {
    /// Waiting for the complete ClientHello.
    Accepting(Box<Acceptor>),
    /// ClientHello read; waiting for the certificate decision.
    Deciding(Box<Accepted>),
    /// Handshaking or established.
    Active(Box<ServerConnection>),
    /// Failed; only a pending alert remains to be written.
    Failed,
}

/// What a read of TLS bytes produced that the server must act on.
pub(crate) enum Progress {
    /// Nothing new.
    None,
    /// A ClientHello: comma-separated cipher suites and signature schemes the client offers.
    ClientHello { suites: String, signature_schemes: String },
    /// The handshake just completed.
    HandshakeDone,
}

/// The negotiated parameters of an established connection.
#[derive(Clone, Debug, Default)]
pub struct TlsInfo {
    /// SSLNegotiatedVersion, e.g. "TLS1.3".
    pub version: String,
    /// SSLNegotiatedCipherSuite, e.g. "TLS_AES_256_GCM_SHA384".
    pub cipher_suite: String,
    /// SSLNegotiatedCipher, e.g. "AES_256_GCM".
    pub cipher: String,
    /// SSLNegotiatedCipherStrength in bits.
    pub cipher_strength: u32,
    /// SSLNegotiatedKeyExchange, e.g. "ECDHE_X25519".
    pub key_exchange: String,
    /// SSLNegotiatedKeyExchangeStrength in bits.
    pub key_exchange_strength: u32,
    /// The session was resumed.
    pub resumed: bool,
}

impl TlsInfo {
    /// A negotiated value by its Config name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sslnegotiatedcipher" => self.cipher.clone(),
            "sslnegotiatedcipherstrength" => self.cipher_strength.to_string(),
            "sslnegotiatedciphersuite" => self.cipher_suite.clone(),
            "sslnegotiatedkeyexchange" => self.key_exchange.clone(),
            "sslnegotiatedkeyexchangestrength" => self.key_exchange_strength.to_string(),
            "sslnegotiatedversion" => self.version.clone(),
            _ => return None,
        })
    }
}

/// TLS state of one connection.
pub(crate) struct TlsConn {
    state: State,
    pub ctx: Arc<TlsContext>,
    /// Alert bytes to send before closing after a failure.
    alert: Vec<u8>,
    handshake_done: bool,
    /// The peer's close_notify was processed (its plaintext may still be unread).
    peer_closed: bool,
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsConn {
    pub fn new(ctx: Arc<TlsContext>) -> Self {
        TlsConn {
            state: State::Accepting(Box::default()),
            ctx,
            alert: Vec::new(),
            handshake_done: false,
            peer_closed: false,
        }
    }

    /// True once the handshake completed.
    pub fn established(&self) -> bool {
        self.handshake_done
    }

    /// True once the peer's close_notify was processed: a read of plaintext ends with
    /// end of stream, whatever the socket says.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// True while waiting for the host's certificate decision.
    pub fn deciding(&self) -> bool {
        matches!(self.state, State::Deciding(_))
    }

    /// Reads TLS records from the socket. `Ok(0)` is end of stream.
    pub fn read_tls(&mut self, rd: &mut dyn Read) -> io::Result<usize> {
        match &mut self.state {
            State::Accepting(a) => a.read_tls(rd),
            State::Active(c) => c.read_tls(rd),
            State::Deciding(_) | State::Failed => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Processes what was read. An error leaves an alert to send (see `write_tls`).
    pub fn process(&mut self) -> io::Result<Progress> {
        match &mut self.state {
            State::Accepting(a) => match a.accept() {
                Ok(None) => Ok(Progress::None),
                Ok(Some(accepted)) => {
                    let hello = accepted.client_hello();
                    let suites = hello.cipher_suites().iter().map(|s| suite_name(*s)).collect::<Vec<_>>().join(",");
                    let signature_schemes =
                        hello.signature_schemes().iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",");
                    self.state = State::Deciding(Box::new(accepted));
                    Ok(Progress::ClientHello { suites, signature_schemes })
                }
                Err((e, mut alert)) => {
                    let _ = alert.write_all(&mut self.alert);
                    self.state = State::Failed;
                    Err(tls_err(e))
                }
            },
            State::Active(c) => {
                match c.process_new_packets() {
                    Ok(io) => self.peer_closed = io.peer_has_closed(),
                    // rustls queued an alert; write_tls sends it.
                    Err(e) => return Err(tls_err(e)),
                }
                if !self.handshake_done && !c.is_handshaking() {
                    self.handshake_done = true;
                    return Ok(Progress::HandshakeDone);
                }
                Ok(Progress::None)
            }
            State::Deciding(_) | State::Failed => Ok(Progress::None),
        }
    }

    /// Continues the handshake with `config` after the ClientHello.
    pub fn start(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Deciding(accepted) => match accepted.into_connection(config) {
                Ok(c) => {
                    self.state = State::Active(Box::new(c));
                    Ok(())
                }
                Err((e, mut alert)) => {
                    let _ = alert.write_all(&mut self.alert);
                    Err(tls_err(e))
                }
            },
            other => {
                self.state = other;
                Ok(())
            }
        }
    }

    /// Reads decrypted application data. `Ok(0)` means the peer sent close_notify;
    /// `WouldBlock` means no more plaintext for now.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.state {
            State::Active(c) if self.handshake_done => c.reader().read(buf),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Encrypts application data; returns how much was taken (0 when rustls's buffer is
    /// full or the handshake is not done).
    pub fn write_plain(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            // Keep at most one buffer-load of records pending, so a slow reader is paused
            // here rather than buffered without bound.
            State::Active(c) if self.handshake_done && !c.wants_write() => c.writer().write(data),
            _ => Ok(0),
        }
    }

    /// Writes pending TLS records (or a pending alert) to the socket.
    pub fn write_tls(&mut self, wr: &mut dyn Write) -> io::Result<usize> {
        if !self.alert.is_empty() {
            let n = wr.write(&self.alert)?;
            self.alert.drain(..n);
            return Ok(n);
        }
        match &mut self.state {
            State::Active(c) => c.write_tls(wr),
            _ => Ok(0),
        }
    }

    /// True when TLS records (or an alert) wait to be written.
    pub fn wants_write(&self) -> bool {
        !self.alert.is_empty() || matches!(&self.state, State::Active(c) if c.wants_write())
    }

    /// True when the connection can use more TLS input.
    pub fn wants_read(&self) -> bool {
        match &self.state {
            State::Accepting(_) => true,
            State::Active(c) => c.wants_read(),
            _ => false,
        }
    }

    /// Queues close_notify.
    pub fn send_close_notify(&mut self) {
        if let State::Active(c) = &mut self.state {
            c.send_close_notify();
        }
    }

    /// The client's certificate chain, once established.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match &self.state {
            State::Active(c) => c.peer_certificates().map(|v| v.iter().map(|c| c.clone().into_owned()).collect()),
            _ => None,
        }
    }

    /// The negotiated parameters, once established.
    pub fn info(&self) -> Option<TlsInfo> {
        let State::Active(c) = &self.state else { return None };
        TlsInfo::of(c)
    }
}

impl TlsInfo {
    /// The negotiated parameters of a TLS connection (either side), once established.
    pub fn of(c: &rustls::CommonState) -> Option<TlsInfo> {
        let suite = c.negotiated_cipher_suite()?;
        let suite_full = suite_name(suite.suite());
        let version = match c.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLS1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLS1.2".to_string(),
            v => format!("{v:?}"),
        };
        let cipher = bulk_cipher(&suite_full);
        let cipher_strength = if cipher.contains("256") || cipher.contains("CHACHA20") { 256 } else { 128 };
        let (key_exchange, key_exchange_strength) = match c.negotiated_key_exchange_group() {
            Some(g) => {
                let name = format!("{:?}", g.name());
                let bits = match name.as_str() {
                    "X25519" => 255,
                    "secp256r1" => 256,
                    "secp384r1" => 384,
                    "secp521r1" => 521,
                    "X448" => 448,
                    _ => 0,
                };
                (format!("ECDHE_{}", name.to_ascii_uppercase()), bits)
            }
            None => (String::new(), 0),
        };
        Some(TlsInfo {
            version,
            cipher_suite: suite_full,
            cipher,
            cipher_strength,
            key_exchange,
            key_exchange_strength,
            resumed: c.handshake_kind() == Some(HandshakeKind::Resumed),
        })
    }
}

/// The bulk cipher of a suite name: `TLS_AES_128_GCM_SHA256` → `AES_128_GCM`,
/// `TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256` → `CHACHA20_POLY1305`.
fn bulk_cipher(suite: &str) -> String {
    let rest = suite.split_once("_WITH_").map(|(_, r)| r).or_else(|| suite.strip_prefix("TLS_")).unwrap_or(suite);
    match rest.rfind("_SHA") {
        Some(i) => rest[..i].to_string(),
        None => rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::bulk_cipher;

    #[test]
    fn bulk_cipher_names() {
        assert_eq!(bulk_cipher("TLS_AES_128_GCM_SHA256"), "AES_128_GCM");
        assert_eq!(bulk_cipher("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"), "CHACHA20_POLY1305");
        assert_eq!(bulk_cipher("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"), "AES_256_GCM");
    }
}
