//! Oracle for `mllp::proxy::Parser`: the PROXY protocol header (HAProxy's specification,
//! versions 1 and 2) read from the whole input at once, written from the specification
//! without the `ppp` crate, and a checker that feeds the real parser in pieces.
//!
//! Version 1: `PROXY ` then `TCP4 <ipv4> <ipv4> <port> <port>`, `TCP6 <ipv6> <ipv6> <port>
//! <port>` or `UNKNOWN` (anything up to the CRLF ignored), single spaces, ports decimal
//! 0-65535 without leading zeros, at most 107 bytes with the CRLF, printable ASCII only.
//! Version 2: the 12-byte signature, version 2, command LOCAL (0) or PROXY (1), a family and
//! protocol byte, a 16-bit length (at most 4096 accepted here), then that many bytes: for
//! PROXY over TCP (protocol STREAM) on INET/INET6 the addresses (12 / 36 bytes at least);
//! UNIX (216 bytes at least), DGRAM and UNSPEC carry no client address.
//!
//! Shared by tests/fuzz_oracles.rs and fuzz/fuzz_targets/proxy.rs (included with `#[path]`).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mllp::proxy::{Addresses, Parser, Progress, ProxyMode, Version};

/// The oracle's verdict on a whole input.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    NeedMore,
    Invalid,
    /// Version, addresses, header length.
    Done(Version, Addresses, usize),
}

const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn port(s: &str) -> Option<u16> {
    let ok =
        !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse::<u32>().ok()).flatten().and_then(|p| u16::try_from(p).ok())
}

/// A dotted quad: four decimal numbers 0-255 without leading zeros.
fn ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (k, p) in parts.iter().enumerate() {
        let ok = !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (*p == "0" || !p.starts_with('0'));
        o[k] = if ok { p.parse::<u16>().ok().and_then(|v| u8::try_from(v).ok())? } else { return None };
    }
    Some(Ipv4Addr::from(o))
}

fn v1(line: &[u8]) -> Option<Addresses> {
    // Checked by the caller: starts with "PROXY ", ends with CRLF, printable in between.
    let body = std::str::from_utf8(&line[6..line.len() - 2]).ok()?;
    if body == "UNKNOWN" || body.starts_with("UNKNOWN ") {
        return Some(Addresses::Unknown);
    }
    let f: Vec<&str> = body.split(' ').collect();
    if f.len() != 5 {
        return None;
    }
    let (src, dst): (IpAddr, IpAddr) = match f[0] {
        "TCP4" => (ipv4(f[1])?.into(), ipv4(f[2])?.into()),
        "TCP6" => (f[1].parse::<Ipv6Addr>().ok()?.into(), f[2].parse::<Ipv6Addr>().ok()?.into()),
        _ => return None,
    };
    Some(Addresses::Proxy { source: SocketAddr::new(src, port(f[3])?), destination: SocketAddr::new(dst, port(f[4])?) })
}

fn oracle_v1(data: &[u8]) -> Verdict {
    let window = &data[..data.len().min(107)];
    let printable = |b: &u8| (0x20..=0x7E).contains(b);
    match window.iter().position(|&b| b == b'\n') {
        None => {
            let prefix_ok = window.iter().zip(b"PROXY ").all(|(a, b)| a == b);
            let body = window.strip_suffix(b"\r").unwrap_or(window);
            if window.len() >= 107 || !prefix_ok || !body.iter().all(printable) {
                Verdict::Invalid
            } else {
                Verdict::NeedMore
            }
        }
        Some(i) => {
            let line = &window[..=i];
            let ok =
                line.starts_with(b"PROXY ") && line.ends_with(b"\r\n") && line[..line.len() - 2].iter().all(printable);
            match ok.then(|| v1(line)).flatten() {
                Some(a) => Verdict::Done(Version::V1, a, line.len()),
                None => Verdict::Invalid,
            }
        }
    }
}

fn oracle_v2(data: &[u8]) -> Verdict {
    let n = data.len().min(12);
    if data[..n] != SIG[..n] {
        return Verdict::Invalid;
    }
    if data.len() < 16 {
        return Verdict::NeedMore;
    }
    let (ver, cmd) = (data[12] >> 4, data[12] & 0x0F);
    let len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    if ver != 2 || cmd > 1 || len > 4096 {
        return Verdict::Invalid;
    }
    if data.len() < 16 + len {
        return Verdict::NeedMore;
    }
    let payload = &data[16..16 + len];
    let (family, proto) = (data[13] >> 4, data[13] & 0x0F);
    let need = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Verdict::Invalid,
    };
    if proto > 2 || payload.len() < need {
        return Verdict::Invalid;
    }
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let addresses = if cmd == 0 {
        Addresses::Local
    } else if proto == 1 && family == 1 {
        let a = |o: usize| Ipv4Addr::new(payload[o], payload[o + 1], payload[o + 2], payload[o + 3]);
        Addresses::Proxy {
            source: SocketAddr::new(a(0).into(), be16(&payload[8..])),
            destination: SocketAddr::new(a(4).into(), be16(&payload[10..])),
        }
    } else if proto == 1 && family == 2 {
        let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&payload[o..o + 16]).expect("16 bytes"));
        Addresses::Proxy {
            source: SocketAddr::new(a(0).into(), be16(&payload[32..])),
            destination: SocketAddr::new(a(16).into(), be16(&payload[34..])),
        }
    } else {
        Addresses::Unknown
    };
    Verdict::Done(Version::V2, addresses, 16 + len)
}

/// The oracle's verdict on `data` as a whole under `mode`.
pub fn oracle(mode: ProxyMode, data: &[u8]) -> Verdict {
    if data.is_empty() {
        return Verdict::NeedMore;
    }
    match (mode, data[0]) {
        (ProxyMode::None, _) => Verdict::Invalid,
        (ProxyMode::V1, _) | (ProxyMode::Any, b'P') => oracle_v1(data),
        (ProxyMode::V2, _) | (ProxyMode::Any, b'\r') => oracle_v2(data),
        (ProxyMode::Any, _) => Verdict::Invalid,
    }
}

/// Feeds `data` to a real parser in the pieces `cuts` gives (positions, taken modulo the
/// length) and compares its verdict, header and the bytes it consumed with the oracle's
/// reading of the whole; checks the bounds (`buffered`, `max_read`) on the way and that the
/// verdict sticks.
pub fn check(mode: ProxyMode, data: &[u8], cuts: &[usize]) {
    let want = oracle(mode, data);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.extend([0, data.len()]);
    points.sort_unstable();
    points.dedup();
    let mut p = Parser::new(mode);
    let mut got = Verdict::NeedMore;
    for w in points.windows(2) {
        assert!(p.max_read() >= 1, "max_read is at least 1 before a verdict");
        let piece = &data[w[0]..w[1]];
        let r = p.feed(piece);
        assert!(p.buffered() <= mllp::proxy::MAX_HEADER);
        match r {
            Progress::NeedMore => {}
            Progress::Done { header, consumed } => {
                assert!(consumed <= piece.len());
                assert_eq!(header.len, w[0] + consumed, "the header ends where the parser stopped taking bytes");
                got = Verdict::Done(header.version, header.addresses, header.len);
                break;
            }
            Progress::Invalid(_) => {
                got = Verdict::Invalid;
                break;
            }
        }
    }
    assert_eq!(got, want, "input {:?} in pieces at {points:?}", String::from_utf8_lossy(data));
    if got != Verdict::NeedMore {
        assert_eq!(p.max_read(), 0);
        let again = p.feed(b"PROXY UNKNOWN\r\n");
        match (&got, again) {
            (Verdict::Done(..), Progress::Done { consumed: 0, .. }) | (Verdict::Invalid, Progress::Invalid(_)) => {}
            (g, a) => panic!("the verdict {g:?} did not stick: {a:?}"),
        }
    }
    // As a driver reads: never more than max_read at a time. The verdict is the same, and a
    // v2 header's last piece is all header (nothing of what follows was read).
    let mut p = Parser::new(mode);
    let mut at = 0;
    let mut paced = Verdict::NeedMore;
    while at < data.len() {
        assert!(p.max_read() >= 1, "max_read is at least 1 before a verdict");
        let piece = &data[at..data.len().min(at + p.max_read())];
        match p.feed(piece) {
            Progress::NeedMore => at += piece.len(),
            Progress::Done { header, consumed } => {
                if header.version == Version::V2 {
                    assert_eq!(consumed, piece.len(), "a v2 header is never read past");
                }
                paced = Verdict::Done(header.version, header.addresses, header.len);
                break;
            }
            Progress::Invalid(_) => {
                paced = Verdict::Invalid;
                break;
            }
        }
    }
    assert_eq!(paced, want, "read max_read at a time");
}

/// A case from fuzzer bytes: mode and cut positions from the first bytes, then the input;
/// the second byte may prefix the input with a v1 start or the v2 signature so that both
/// grammars are reached.
pub fn case_from_bytes(data: &[u8]) -> (ProxyMode, Vec<u8>, Vec<usize>) {
    let get = |i: usize| data.get(i).copied().unwrap_or(0);
    let mode = [ProxyMode::Any, ProxyMode::V1, ProxyMode::V2, ProxyMode::None][usize::from(get(0) & 3)];
    let cuts: Vec<usize> = (0..usize::from(get(0) >> 2 & 7)).map(|k| usize::from(get(2 + k)) * 7).collect();
    let mut input = match get(1) % 8 {
        0 => b"PROXY ".to_vec(),
        1 => b"PROXY TCP4 ".to_vec(),
        2 => b"PROXY TCP6 ".to_vec(),
        3 => b"PROXY UNKNOWN".to_vec(),
        4 | 5 => SIG.to_vec(),
        _ => Vec::new(),
    };
    input.extend_from_slice(data.get(10..).unwrap_or_default());
    (mode, input, cuts)
}
