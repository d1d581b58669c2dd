//! The PROXY protocol (HAProxy's specification, versions 1 and 2) in front of a connection,
//! sans-IO: a [`Parser`] is fed the first bytes of a connection, in pieces of any size, and
//! tells when the header is complete, what it says and how many bytes of the last piece it
//! took (the rest belongs to TLS or MLLP), or why the bytes are not a valid header.
//!
//! The header formats themselves are read by the `ppp` crate; this module owns what a server
//! needs around it: choosing the version from the first byte (`Any`), buffering a header that
//! arrives in pieces, the bounds (a v1 line is at most [`V1_MAX`] bytes as the specification
//! says; a v2 header at most 16 + [`V2_MAX_PAYLOAD`] bytes, TLVs included), never reading past
//! the header, and what the addresses mean (LOCAL and UNKNOWN: the socket's own peer).
//!
//! Once [`Parser::feed`] returned [`Progress::Done`] or [`Progress::Invalid`] the parser keeps
//! that verdict: feeding it more returns the same verdict and takes no byte.

use std::net::{IpAddr, SocketAddr};

/// The longest version 1 header, CRLF included (the specification's 107 bytes).
pub const V1_MAX: usize = 107;
/// The fixed part of a version 2 header: signature, version/command, family/protocol, length.
pub const V2_FIXED: usize = 16;
/// The most bytes a version 2 header may carry after its fixed part (addresses and TLVs);
/// a header announcing more is refused rather than buffered.
pub const V2_MAX_PAYLOAD: usize = 4096;
/// The most bytes a parser ever buffers.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_PAYLOAD;
/// How a version 1 header starts.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The version 2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Which PROXY protocol headers a listener requires (the ProxyProtocol setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No header: connections start with TLS or MLLP (the default).
    #[default]
    None,
    /// Every connection starts with a version 1 (text) header.
    V1,
    /// Every connection starts with a version 2 (binary) header.
    V2,
    /// Every connection starts with a version 1 or 2 header, told apart by the first byte.
    Any,
}

impl ProxyMode {
    /// The setting's value as printed by Config: `None`, `V1`, `V2` or `Any`.
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::None => "None",
            ProxyMode::V1 => "V1",
            ProxyMode::V2 => "V2",
            ProxyMode::Any => "Any",
        }
    }

    /// Parses the setting's value (any case).
    pub fn parse(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ProxyMode::None),
            "v1" => Some(ProxyMode::V1),
            "v2" => Some(ProxyMode::V2),
            "any" => Some(ProxyMode::Any),
            _ => None,
        }
    }
}

/// The header's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Text: `PROXY TCP4 … \r\n`.
    V1,
    /// Binary, starting with [`V2_SIGNATURE`].
    V2,
}

/// What the header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// A relayed connection: the original client (`source`) and the address it connected to.
    Proxy {
        /// The original client.
        source: SocketAddr,
        /// The address the client connected to (the proxy's front end).
        destination: SocketAddr,
    },
    /// A v2 LOCAL command: the proxy speaks for itself (health checks); the socket's peer is
    /// the peer.
    Local,
    /// v1 UNKNOWN, v2 UNSPEC, or a family or protocol other than TCP over IPv4/IPv6: the
    /// socket's peer is the peer.
    Unknown,
}

/// A complete, valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its version.
    pub version: Version,
    /// What it says.
    pub addresses: Addresses,
    /// Its length in bytes.
    pub len: usize,
}

impl Header {
    /// The client the connection speaks for: the header's source, or `peer` (the socket's
    /// peer) for LOCAL and UNKNOWN.
    pub fn client(&self, peer: SocketAddr) -> SocketAddr {
        match self.addresses {
            Addresses::Proxy { source, .. } => source,
            Addresses::Local | Addresses::Unknown => peer,
        }
    }
}

/// What [`Parser::feed`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The header is not complete yet; every byte fed was taken.
    NeedMore,
    /// The header is complete. `consumed`: how many bytes of the last piece belonged to it;
    /// the bytes after them belong to the next layer and must be kept.
    Done {
        /// The header.
        header: Header,
        /// Bytes of the last piece that were part of the header.
        consumed: usize,
    },
    /// The bytes are not a header the parser accepts; the reason says why.
    Invalid(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Undecided,
    V1,
    V2,
}

/// An incremental PROXY protocol header parser (see the module documentation).
pub struct Parser {
    mode: ProxyMode,
    kind: Kind,
    /// The header's bytes so far (at most [`MAX_HEADER`]).
    buf: Vec<u8>,
    verdict: Option<Progress>,
}

impl Parser {
    /// A parser accepting what `mode` asks for (`ProxyMode::None` refuses every byte).
    pub fn new(mode: ProxyMode) -> Self {
        let kind = match mode {
            ProxyMode::V1 => Kind::V1,
            ProxyMode::V2 => Kind::V2,
            ProxyMode::None | ProxyMode::Any => Kind::Undecided,
        };
        Parser { mode, kind, buf: Vec::new(), verdict: None }
    }

    /// Bytes buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// At most how many more bytes the header can need: reading no more than this never takes
    /// bytes of a v2 header's successor from the socket (a v1 line's end is only known when
    /// it arrives, so up to [`V1_MAX`] bytes may be read past it). At least 1 until a verdict.
    pub fn max_read(&self) -> usize {
        if self.verdict.is_some() {
            return 0;
        }
        let have = self.buf.len();
        match self.kind {
            Kind::V1 => V1_MAX - have,
            Kind::Undecided => V2_FIXED,
            Kind::V2 if have < V2_FIXED => V2_FIXED - have,
            Kind::V2 => V2_FIXED + v2_len(&self.buf) - have,
        }
    }

    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Progress {
        if let Some(v) = &self.verdict {
            return match v {
                Progress::Done { header, .. } => Progress::Done { header: *header, consumed: 0 },
                other => other.clone(),
            };
        }
        let p = self.step(bytes);
        if p != Progress::NeedMore {
            self.verdict = Some(p.clone());
            self.buf = Vec::new();
        }
        p
    }

    fn step(&mut self, bytes: &[u8]) -> Progress {
        if bytes.is_empty() {
            return Progress::NeedMore;
        }
        if self.kind == Kind::Undecided {
            self.kind = match (self.mode, bytes[0]) {
                (ProxyMode::None, _) => return Progress::Invalid("PROXY protocol is not enabled".into()),
                (_, b'P') => Kind::V1,
                (_, b'\r') => Kind::V2,
                (_, b) => {
                    return Progress::Invalid(format!(
                        "expected a PROXY protocol v1 or v2 header, got {} as the first byte",
                        show_byte(b)
                    ))
                }
            };
        }
        match self.kind {
            Kind::V1 => self.step_v1(bytes),
            _ => self.step_v2(bytes),
        }
    }

    fn step_v1(&mut self, bytes: &[u8]) -> Progress {
        let room = V1_MAX - self.buf.len();
        let window = &bytes[..bytes.len().min(room)];
        let (take, complete) = match memchr::memchr(b'\n', window) {
            Some(i) => (i + 1, true),
            None => (window.len(), false),
        };
        let start = self.buf.len();
        self.buf.extend_from_slice(&window[..take]);
        if !complete {
            if self.buf.len() >= V1_MAX {
                return Progress::Invalid(format!("PROXY v1 header without CRLF in its first {V1_MAX} bytes"));
            }
            // Refuse early what no further byte could make valid: another start than
            // "PROXY ", or a byte no header line contains. (The fields are checked once the
            // line is complete: ppp's verdict on a partial line is not reliable.)
            let n = self.buf.len().min(V1_PREFIX.len());
            if self.buf[..n] != V1_PREFIX[..n] {
                return Progress::Invalid(v1_reason(&self.buf, "does not start with \"PROXY \""));
            }
            let body = &self.buf[..self.buf.len() - usize::from(self.buf.ends_with(b"\r"))];
            if let Some(b) = body.iter().find(|b| !(0x20..=0x7E).contains(*b)) {
                return Progress::Invalid(v1_reason(&self.buf, &format!("unexpected byte {}", show_byte(*b))));
            }
            return Progress::NeedMore;
        }
        let line = &self.buf[..];
        if !line.ends_with(b"\r\n") || line[..line.len() - 2].contains(&b'\r') {
            return Progress::Invalid(v1_reason(line, "line not ended by CRLF"));
        }
        // The same bytes are refused in a complete line as in a partial one: whether a NUL
        // (or any control byte) is accepted must not depend on how the line was cut.
        if let Some(b) = line[..line.len() - 2].iter().find(|b| !(0x20..=0x7E).contains(*b)) {
            return Progress::Invalid(v1_reason(line, &format!("unexpected byte {}", show_byte(*b))));
        }
        let consumed = self.buf.len() - start;
        let header = |addresses| Progress::Done {
            header: Header { version: Version::V1, addresses, len: line.len() },
            consumed,
        };
        match ppp::v1::Header::try_from(line) {
            Ok(h) if !matches!(h.addresses, ppp::v1::Addresses::Unknown) && !v1_ports_are_digits(line) => {
                Progress::Invalid(v1_reason(line, "a port is not a decimal number"))
            }
            Ok(h) => match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => header(Addresses::Proxy {
                    source: SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
                    destination: SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
                }),
                ppp::v1::Addresses::Tcp6(a) => header(Addresses::Proxy {
                    source: SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
                    destination: SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
                }),
                ppp::v1::Addresses::Unknown => header(Addresses::Unknown),
            },
            // The specification: after UNKNOWN, anything up to the CRLF is ignored (ppp only
            // accepts a few fields there).
            Err(_) if line.starts_with(b"PROXY UNKNOWN") && matches!(line[13], b' ' | b'\r') => {
                header(Addresses::Unknown)
            }
            Err(e) => Progress::Invalid(v1_reason(line, &e.to_string())),
        }
    }

    fn step_v2(&mut self, bytes: &[u8]) -> Progress {
        let mut bytes = bytes;
        let start = self.buf.len();
        if self.buf.len() < V2_FIXED {
            let take = bytes.len().min(V2_FIXED - self.buf.len());
            let have = self.buf.len();
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let sig = self.buf.len().min(V2_SIGNATURE.len());
            if self.buf[have.min(sig)..sig] != V2_SIGNATURE[have.min(sig)..sig] {
                return Progress::Invalid(format!(
                    "expected the PROXY v2 signature, got {}",
                    show_bytes(&self.buf[..sig])
                ));
            }
            if self.buf.len() < V2_FIXED {
                return Progress::NeedMore;
            }
            let ver_cmd = self.buf[12];
            if ver_cmd >> 4 != 2 {
                return Progress::Invalid(format!("PROXY v2 header with version {} (expected 2)", ver_cmd >> 4));
            }
            if ver_cmd & 0x0F > 1 {
                return Progress::Invalid(format!(
                    "PROXY v2 header with command {} (expected LOCAL or PROXY)",
                    ver_cmd & 0x0F
                ));
            }
            let len = v2_len(&self.buf);
            if len > V2_MAX_PAYLOAD {
                return Progress::Invalid(format!(
                    "PROXY v2 header announces {len} bytes of addresses and TLVs (at most {V2_MAX_PAYLOAD} accepted)"
                ));
            }
        }
        let total = V2_FIXED + v2_len(&self.buf);
        let take = bytes.len().min(total - self.buf.len());
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() < total {
            return Progress::NeedMore;
        }
        let consumed = self.buf.len() - start;
        let h = match ppp::v2::Header::try_from(&self.buf[..]) {
            Ok(h) => h,
            Err(e) => return Progress::Invalid(format!("invalid PROXY v2 header: {e}")),
        };
        let addresses = match (h.command, h.protocol, h.addresses) {
            (ppp::v2::Command::Local, _, _) => Addresses::Local,
            (_, ppp::v2::Protocol::Stream, ppp::v2::Addresses::IPv4(a)) => Addresses::Proxy {
                source: SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
                destination: SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
            },
            (_, ppp::v2::Protocol::Stream, ppp::v2::Addresses::IPv6(a)) => Addresses::Proxy {
                source: SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
                destination: SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
            },
            _ => Addresses::Unknown,
        };
        Progress::Done { header: Header { version: Version::V2, addresses, len: total }, consumed }
    }
}

/// True when the two ports of a complete TCP4/TCP6 line (its 5th and 6th fields) are decimal
/// digits only: ppp reads them with `u16::from_str`, which also takes a leading `+`.
fn v1_ports_are_digits(line: &[u8]) -> bool {
    line[..line.len() - 2].split(|&b| b == b' ').skip(4).all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
}

/// The length field of a v2 header's fixed part.
fn v2_len(fixed: &[u8]) -> usize {
    u16::from_be_bytes([fixed[14], fixed[15]]) as usize
}

fn v1_reason(line: &[u8], why: &str) -> String {
    format!("invalid PROXY v1 header {}: {why}", show_bytes(line))
}

fn show_byte(b: u8) -> String {
    match b {
        0x20..=0x7E => format!("'{}'", b as char),
        _ => format!("0x{b:02X}"),
    }
}

/// A short, printable rendering of untrusted bytes for an error message.
fn show_bytes(b: &[u8]) -> String {
    let shown: String = b.iter().take(64).flat_map(|&c| std::ascii::escape_default(c)).map(char::from).collect();
    let more = if b.len() > 64 { "…" } else { "" };
    format!("\"{shown}{more}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v2(cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn v2_tcp4() -> Vec<u8> {
        v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0x04, 0x57, 0x08, 0xAE])
    }

    fn whole(mode: ProxyMode, bytes: &[u8]) -> Progress {
        Parser::new(mode).feed(bytes)
    }

    fn done(p: Progress) -> (Header, usize) {
        match p {
            Progress::Done { header, consumed } => (header, consumed),
            other => panic!("not done: {other:?}"),
        }
    }

    fn invalid(p: Progress) -> String {
        match p {
            Progress::Invalid(r) => r,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn v1_tcp4() {
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n";
        let (h, n) = done(whole(ProxyMode::V1, line));
        assert_eq!(n, line.len());
        assert_eq!(h.len, line.len());
        assert_eq!(h.version, Version::V1);
        assert_eq!(h.addresses, Addresses::Proxy { source: sa("1.2.3.4:1111"), destination: sa("5.6.7.8:2222") });
        assert_eq!(h.client(sa("127.0.0.1:9")), sa("1.2.3.4:1111"));
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let (h, _) = done(whole(ProxyMode::V1, b"PROXY TCP6 2001:db8::1 ::1 65535 1\r\n"));
        assert_eq!(h.addresses, Addresses::Proxy { source: sa("[2001:db8::1]:65535"), destination: sa("[::1]:1") });
        let (h, n) = done(whole(ProxyMode::V1, b"PROXY UNKNOWN\r\n"));
        assert_eq!((h.addresses, n), (Addresses::Unknown, 15));
        assert_eq!(h.client(sa("127.0.0.1:9")), sa("127.0.0.1:9"));
        // Anything after UNKNOWN up to the CRLF is ignored.
        let (h, _) = done(whole(ProxyMode::V1, b"PROXY UNKNOWN a b c d e f g\r\n"));
        assert_eq!(h.addresses, Addresses::Unknown);
    }

    #[test]
    fn bytes_after_the_header_are_not_consumed() {
        let mut data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n".to_vec();
        data.extend_from_slice(b"\x0bMSH|...\x1c\r");
        let (_, n) = done(whole(ProxyMode::Any, &data));
        assert_eq!(&data[n..], b"\x0bMSH|...\x1c\r");
        let mut data = v2_tcp4();
        let len = data.len();
        data.extend_from_slice(b"\x16\x03\x01");
        let (h, n) = done(whole(ProxyMode::Any, &data));
        assert_eq!((h.version, n, h.len), (Version::V2, len, len));
    }

    #[test]
    fn v1_invalid() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n"[..],
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 99999\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx\r\n",
            b"PROXZ",
            b"proxy TCP4",
        ] {
            let r = invalid(whole(ProxyMode::V1, bad));
            assert!(r.contains("v1"), "{r}");
        }
        // An MLLP frame where a header was expected is refused at its first byte.
        let r = invalid(whole(ProxyMode::Any, b"\x0bMSH|"));
        assert!(r.contains("0x0B"), "{r}");
        assert!(invalid(whole(ProxyMode::V1, b"\x0b")).contains("v1"));
    }

    #[test]
    fn v1_refuses_control_bytes_however_the_line_is_cut() {
        // Found by the proxy fuzz target's oracle: a NUL after UNKNOWN was refused when the
        // line came in pieces but accepted when it came whole.
        for line in [
            &b"PROXY UNKNOWN \0\r\n"[..],
            b"PROXY UNKNOWN a\tb\r\n",
            b"PROXY UNKNOWN \x7f\r\n",
            b"PROXY UNKNOWN \xc3\xa9\r\n",
        ] {
            assert!(invalid(whole(ProxyMode::V1, line)).contains("unexpected byte"), "{line:?}");
            let mut p = Parser::new(ProxyMode::Any);
            let r = line.iter().map(|b| p.feed(std::slice::from_ref(b))).find(|r| *r != Progress::NeedMore);
            assert!(matches!(r, Some(Progress::Invalid(_))), "{line:?} byte by byte: {r:?}");
        }
        done(whole(ProxyMode::V1, b"PROXY UNKNOWN ~ !\r\n"));
    }

    #[test]
    fn v1_ports_are_decimal_digits_only() {
        // Found by the proxy oracle: "+5" was read as port 5.
        for line in [&b"PROXY TCP4 1.2.3.4 5.6.7.8 +5 6\r\n"[..], b"PROXY TCP6 ::1 ::2 5 +6\r\n"] {
            assert!(invalid(whole(ProxyMode::V1, line)).contains("port"), "{line:?}");
        }
        let (h, _) = done(whole(ProxyMode::V1, b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"));
        assert_eq!(h.addresses, Addresses::Proxy { source: sa("1.2.3.4:0"), destination: sa("5.6.7.8:65535") });
    }

    #[test]
    fn v1_too_long() {
        let mut line = b"PROXY TCP6 ".to_vec();
        line.resize(200, b'1');
        let mut p = Parser::new(ProxyMode::V1);
        let r = p.feed(&line);
        assert!(invalid(r).contains("107"));
        // The longest valid line is accepted.
        let max = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(max.len(), 104);
        done(whole(ProxyMode::V1, max));
        let mut unknown = b"PROXY UNKNOWN ".to_vec();
        unknown.resize(V1_MAX - 2, b'x');
        unknown.extend_from_slice(b"\r\n");
        done(whole(ProxyMode::V1, &unknown));
        unknown.insert(20, b'x');
        invalid(whole(ProxyMode::V1, &unknown));
    }

    #[test]
    fn v2_proxy_local_unspec() {
        let (h, _) = done(whole(ProxyMode::V2, &v2_tcp4()));
        assert_eq!(h.addresses, Addresses::Proxy { source: sa("1.2.3.4:1111"), destination: sa("5.6.7.8:2222") });
        let mut six = [0u8; 36];
        six[15] = 1;
        six[31] = 2;
        six[32..].copy_from_slice(&[0, 80, 1, 187]);
        let (h, _) = done(whole(ProxyMode::V2, &v2(1, 0x21, &six)));
        assert_eq!(h.addresses, Addresses::Proxy { source: sa("[::1]:80"), destination: sa("[::2]:443") });
        let (h, n) = done(whole(ProxyMode::V2, &v2(0, 0x00, &[])));
        assert_eq!((h.addresses, n), (Addresses::Local, 16));
        // LOCAL may carry addresses; they are not the client's.
        let (h, _) = done(whole(ProxyMode::V2, &v2(0, 0x11, &[1; 12])));
        assert_eq!(h.addresses, Addresses::Local);
        let (h, _) = done(whole(ProxyMode::V2, &v2(1, 0x00, &[])));
        assert_eq!(h.addresses, Addresses::Unknown);
        // UDP and UNIX sockets are not the client's TCP address.
        let (h, _) = done(whole(ProxyMode::V2, &v2(1, 0x12, &[1; 12])));
        assert_eq!(h.addresses, Addresses::Unknown);
        let (h, _) = done(whole(ProxyMode::V2, &v2(1, 0x31, &[0; 216])));
        assert_eq!(h.addresses, Addresses::Unknown);
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut payload = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        payload.extend_from_slice(&[0x01, 0, 2, b'h', b'2']); // ALPN
        payload.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]); // NOOP
        let data = v2(1, 0x11, &payload);
        let (h, n) = done(whole(ProxyMode::V2, &data));
        assert_eq!((n, h.len), (data.len(), data.len()));
        assert_eq!(h.client(sa("127.0.0.1:1")), sa("1.2.3.4:1"));
    }

    #[test]
    fn v2_invalid() {
        let mut bad_sig = v2_tcp4();
        bad_sig[5] = b'X';
        assert!(invalid(whole(ProxyMode::V2, &bad_sig)).contains("signature"));
        // Refused as soon as a byte differs, without waiting for more.
        assert!(invalid(whole(ProxyMode::V2, b"\r\n\r\nX")).contains("signature"));
        let mut bad_ver = v2_tcp4();
        bad_ver[12] = 0x11;
        assert!(invalid(whole(ProxyMode::V2, &bad_ver)).contains("version"));
        let mut bad_cmd = v2_tcp4();
        bad_cmd[12] = 0x22;
        assert!(invalid(whole(ProxyMode::V2, &bad_cmd)).contains("command"));
        // Too short for its addresses.
        invalid(whole(ProxyMode::V2, &v2(1, 0x11, &[1; 8])));
        invalid(whole(ProxyMode::V2, &v2(1, 0x21, &[1; 12])));
        // Unknown family.
        invalid(whole(ProxyMode::V2, &v2(1, 0x41, &[1; 12])));
        // A v1 header where v2 is required, and the other way round.
        invalid(whole(ProxyMode::V2, b"PROXY UNKNOWN\r\n"));
        invalid(whole(ProxyMode::V1, &v2_tcp4()));
        invalid(whole(ProxyMode::None, &v2_tcp4()));
    }

    #[test]
    fn v2_length_is_capped() {
        let mut p = Parser::new(ProxyMode::V2);
        let mut fixed = v2(1, 0x11, &[]);
        fixed[14..16].copy_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
        assert!(invalid(p.feed(&fixed)).contains("4097"));
        let data = v2(1, 0x11, &vec![7; V2_MAX_PAYLOAD]);
        let (h, _) = done(whole(ProxyMode::V2, &data));
        assert_eq!(h.len, MAX_HEADER);
    }

    #[test]
    fn byte_by_byte_and_max_read() {
        for data in [v2_tcp4(), b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n".to_vec()] {
            let mut p = Parser::new(ProxyMode::Any);
            for (i, b) in data.iter().enumerate() {
                assert!(p.max_read() >= 1);
                let r = p.feed(std::slice::from_ref(b));
                if i + 1 < data.len() {
                    assert_eq!(r, Progress::NeedMore, "at byte {i}");
                } else {
                    assert_eq!(done(r).1, 1);
                }
            }
            assert_eq!(p.max_read(), 0);
        }
        // v2: max_read never reaches past the header.
        let mut p = Parser::new(ProxyMode::V2);
        assert_eq!(p.max_read(), 16);
        p.feed(&v2_tcp4()[..16]);
        assert_eq!(p.max_read(), 12);
    }

    #[test]
    fn the_verdict_sticks() {
        let mut p = Parser::new(ProxyMode::V1);
        let (h, _) = done(p.feed(b"PROXY UNKNOWN\r\nmore"));
        assert_eq!(p.feed(b"anything"), Progress::Done { header: h, consumed: 0 });
        let mut p = Parser::new(ProxyMode::V1);
        let r = p.feed(b"X");
        assert_eq!(p.feed(b"PROXY UNKNOWN\r\n"), r);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!(ProxyMode::parse("any"), Some(ProxyMode::Any));
        assert_eq!(ProxyMode::parse(" v2 "), Some(ProxyMode::V2));
        assert_eq!(ProxyMode::parse("NONE"), Some(ProxyMode::None));
        assert_eq!(ProxyMode::parse("v3"), None);
        assert_eq!(ProxyMode::V1.name(), "V1");
    }

    /// Feeds `data` in pieces cut at `cuts` (positions modulo the length).
    fn chunked(mode: ProxyMode, data: &[u8], cuts: &[usize]) -> (Progress, usize) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        points.dedup();
        let mut p = Parser::new(mode);
        for w in points.windows(2) {
            let piece = &data[w[0]..w[1]];
            let r = p.feed(piece);
            assert!(p.buffered() <= MAX_HEADER);
            match r {
                Progress::NeedMore => {}
                Progress::Done { header, consumed } => {
                    return (Progress::Done { header, consumed: w[0] + consumed }, w[0] + consumed)
                }
                other => return (other, w[1]),
            }
        }
        (Progress::NeedMore, data.len())
    }

    fn valid_header() -> impl Strategy<Value = Vec<u8>> {
        let v4 = (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<u16>(), any::<u16>());
        let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u16>(), any::<u16>());
        prop_oneof![
            v4.prop_map(|(s, d, sp, dp)| format!(
                "PROXY TCP4 {} {} {sp} {dp}\r\n",
                std::net::Ipv4Addr::from(s),
                std::net::Ipv4Addr::from(d)
            )
            .into_bytes()),
            v6.prop_map(|(s, d, sp, dp)| format!(
                "PROXY TCP6 {} {} {sp} {dp}\r\n",
                std::net::Ipv6Addr::from(s),
                std::net::Ipv6Addr::from(d)
            )
            .into_bytes()),
            Just(b"PROXY UNKNOWN\r\n".to_vec()),
            "[ -~]{0,90}".prop_map(|s| format!("PROXY UNKNOWN {s}\r\n").into_bytes()),
            (any::<[u8; 12]>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(a, tlv)| {
                let mut p = a.to_vec();
                p.extend_from_slice(&tlv);
                v2(1, 0x11, &p)
            }),
            (any::<[u8; 36]>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(a, tlv)| {
                let mut p = a.to_vec();
                p.extend_from_slice(&tlv);
                v2(1, 0x21, &p)
            }),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|p| v2(0, 0x00, &p)),
        ]
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_result(
            h in valid_header(),
            tail in proptest::collection::vec(any::<u8>(), 0..32),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut data = h.clone();
            data.extend_from_slice(&tail);
            let (want, n) = chunked(ProxyMode::Any, &data, &[]);
            prop_assert!(matches!(want, Progress::Done { .. }), "{:?}", want);
            prop_assert_eq!(n, h.len());
            let (got, m) = chunked(ProxyMode::Any, &data, &cuts);
            prop_assert_eq!(got, want);
            prop_assert_eq!(m, n);
        }

        #[test]
        fn arbitrary_bytes_stay_bounded(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            sig in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            mode in prop_oneof![Just(ProxyMode::V1), Just(ProxyMode::V2), Just(ProxyMode::Any)],
        ) {
            let mut data = data;
            if sig {
                // Reach the length and TLV paths too.
                let mut d = V2_SIGNATURE.to_vec();
                d.extend_from_slice(&data);
                data = d;
            }
            let (r, _) = chunked(mode, &data, &cuts);
            if let Progress::Done { header, consumed } = r {
                prop_assert!(consumed <= data.len());
                let bound = if header.version == Version::V1 { V1_MAX } else { MAX_HEADER };
                prop_assert!(header.len <= bound);
            }
        }

        #[test]
        fn prefixed_v1_bytes_stay_bounded(data in "PROXY [ -~\r\n]{0,200}", cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            let (r, n) = chunked(ProxyMode::V1, data.as_bytes(), &cuts);
            if let Progress::Done { header, .. } = r {
                prop_assert!(header.len <= V1_MAX);
            }
            prop_assert!(n <= data.len());
        }
    }
}
