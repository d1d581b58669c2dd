//! ProxyProtocol: connections that start with a PROXY protocol header (v1 text, v2 binary),
//! the client address they name in ConnectionRequest and RemoteHost/RemotePort, LOCAL
//! connections, refused headers (2050), the header deadline, and TLS behind the header.

mod common;
mod tls_util;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use mllp::code;

const V1_TCP4: &[u8] = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 2575\r\n";

/// A v2 header: `cmd` 0 LOCAL / 1 PROXY, family/protocol byte, payload.
fn v2(cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// v2 PROXY TCP4 from 198.51.100.9:50123 to 127.0.0.1:2575, with a NOOP TLV.
fn v2_tcp4() -> Vec<u8> {
    let mut p = vec![198, 51, 100, 9, 127, 0, 0, 1];
    p.extend_from_slice(&50123u16.to_be_bytes());
    p.extend_from_slice(&2575u16.to_be_bytes());
    p.extend_from_slice(&[0x04, 0, 2, 0, 0]);
    v2(1, 0x11, &p)
}

/// v2 PROXY TCP6 from [2001:db8::7]:443 to [::1]:2575.
fn v2_tcp6() -> Vec<u8> {
    let src: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let dst: std::net::Ipv6Addr = "::1".parse().unwrap();
    let mut p = src.octets().to_vec();
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&443u16.to_be_bytes());
    p.extend_from_slice(&2575u16.to_be_bytes());
    v2(1, 0x21, &p)
}

fn raw(ctx: &Ctx) -> Client {
    ctx.connect()
}

/// The address and port of the n-th ConnectionRequest.
fn request(ctx: &Ctx, n: usize) -> (String, u16) {
    assert!(
        ctx.rec.wait_count(n + 1, WAIT, |e| matches!(e, Ev::ConnectionRequest { .. })),
        "no ConnectionRequest #{n}: {:?}",
        ctx.rec.events()
    );
    ctx.rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::ConnectionRequest { address, port, .. } => Some((address, port)),
            _ => None,
        })
        .nth(n)
        .unwrap()
}

/// The messages of the 2050 errors among `evs`.
fn proxy_errors(evs: &[Ev]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e {
            Ev::Error { code: c, description, .. } if *c == code::PROXY_HEADER => Some(description.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn v1_header_and_frame_in_one_write() {
    let ctx = setup(&["ProxyProtocol=V1"]);
    let mut c = raw(&ctx);
    let mut bytes = V1_TCP4.to_vec();
    bytes.extend_from_slice(&frame(&hl7("P1")));
    c.send_raw(&bytes);
    c.expect_ack();
    assert_eq!(request(&ctx, 0), ("203.0.113.7".to_string(), 40000));
    let id = ctx.rec.connected_id(0);
    assert_eq!(ctx.server.remote_host(id).unwrap(), "203.0.113.7");
    assert_eq!(ctx.server.remote_port(id).unwrap(), 40000);
    // The frame behind the header arrived whole.
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::EndTransfer { .. })));
    assert_eq!(ctx.rec.transferred(id), hl7("P1"));
    assert!(ctx.rec.error_codes().is_empty(), "{:?}", ctx.rec.events());
}

#[test]
fn v2_header_byte_by_byte_then_messages() {
    let ctx = setup(&["ProxyProtocol=V2"]);
    let mut c = raw(&ctx);
    for b in v2_tcp4() {
        c.send_raw(&[b]);
    }
    c.send_msg(&hl7("P2"));
    c.expect_ack();
    c.send_msg(&hl7("P3"));
    c.expect_ack();
    assert_eq!(request(&ctx, 0), ("198.51.100.9".to_string(), 50123));
    let id = ctx.rec.connected_id(0);
    assert_eq!(ctx.server.remote_host(id).unwrap(), "198.51.100.9");
    assert_eq!(ctx.server.remote_port(id).unwrap(), 50123);
}

#[test]
fn v2_header_in_pieces_with_the_frame_behind_the_last_one() {
    let ctx = setup(&["ProxyProtocol=V2"]);
    let mut c = raw(&ctx);
    let h = v2_tcp6();
    c.send_raw(&h[..5]);
    c.send_raw(&h[5..20]);
    let mut rest = h[20..].to_vec();
    rest.extend_from_slice(&frame(&hl7("P4")));
    c.send_raw(&rest);
    c.expect_ack();
    assert_eq!(request(&ctx, 0), ("2001:db8::7".to_string(), 443));
    let id = ctx.rec.connected_id(0);
    assert_eq!(ctx.server.remote_host(id).unwrap(), "2001:db8::7");
}

#[test]
fn any_takes_both_versions() {
    let ctx = setup(&["ProxyProtocol=any"]);
    let mut a = raw(&ctx);
    a.send_raw(V1_TCP4);
    a.send_msg(&hl7("A1"));
    a.expect_ack();
    let mut b = raw(&ctx);
    b.send_raw(&v2_tcp4());
    b.send_msg(&hl7("A2"));
    b.expect_ack();
    let mut got = vec![request(&ctx, 0), request(&ctx, 1)];
    got.sort();
    assert_eq!(got, vec![("198.51.100.9".to_string(), 50123), ("203.0.113.7".to_string(), 40000)]);
}

#[test]
fn local_and_unknown_use_the_socket_peer() {
    let ctx = setup(&["ProxyProtocol=Any"]);
    let mut a = raw(&ctx);
    a.send_raw(&v2(0, 0x00, &[]));
    a.send_msg(&hl7("L1"));
    a.expect_ack();
    assert_eq!(request(&ctx, 0), ("127.0.0.1".to_string(), a.local_port()));
    let mut b = raw(&ctx);
    b.send_raw(b"PROXY UNKNOWN\r\n");
    b.send_msg(&hl7("L2"));
    b.expect_ack();
    assert_eq!(request(&ctx, 1), ("127.0.0.1".to_string(), b.local_port()));
    assert!(ctx.rec.error_codes().is_empty(), "{:?}", ctx.rec.events());
}

#[test]
fn a_health_check_that_sends_nothing_is_only_logged() {
    let ctx = setup(&["ProxyProtocol=V2"]);
    // Closed orderly, and closed with a reset (as HAProxy closes its checks).
    drop(TcpStream::connect(("127.0.0.1", ctx.port)).unwrap());
    let s = TcpStream::connect(("127.0.0.1", ctx.port)).unwrap();
    socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(s);
    let logged =
        |e: &Ev| matches!(e, Ev::Log { message, .. } if message.contains("closed before sending a PROXY header"));
    assert!(ctx.rec.wait_count(2, WAIT, logged), "{:?}", ctx.rec.events());
    // A LOCAL header, then a reset (HAProxy's check with send-proxy-v2): a normal connection
    // whose reset is logged.
    let mut s = TcpStream::connect(("127.0.0.1", ctx.port)).unwrap();
    s.write_all(&v2(0, 0x00, &[])).unwrap();
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Connected { .. })), "{:?}", ctx.rec.events());
    socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(s);
    assert!(ctx.rec.wait_count(1, WAIT, |e| matches!(e, Ev::Disconnected { .. })), "{:?}", ctx.rec.events());
    let reset = |e: &Ev| matches!(e, Ev::Log { message, .. } if message.contains("(PROXY LOCAL) reset"));
    assert_eq!(ctx.rec.count(reset), 1, "{:?}", ctx.rec.events());
    // A real connection still works, and nothing was reported as an error.
    let mut c = raw(&ctx);
    c.send_raw(&v2_tcp4());
    c.send_msg(&hl7("H1"));
    c.expect_ack();
    assert!(ctx.rec.error_codes().is_empty(), "{:?}", ctx.rec.events());
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::ConnectionRequest { .. })), 2);
}

#[test]
fn invalid_headers_are_refused_with_2050_and_others_go_on() {
    let ctx = setup(&["ProxyProtocol=Any"]);
    // A good connection opened first, used after the bad ones.
    let mut good = raw(&ctx);
    good.send_raw(V1_TCP4);
    good.send_msg(&hl7("G1"));
    good.expect_ack();
    let mut too_long = v2(1, 0x11, &[]);
    too_long[14..16].copy_from_slice(&5000u16.to_be_bytes());
    let mut bad_sig = v2_tcp4();
    bad_sig[4] = b'X';
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (frame(&hl7("NOHEADER")), "0x0B"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n".to_vec(), "v1"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2".iter().copied().chain(std::iter::repeat(b'9').take(100)).collect(), "107"),
        (bad_sig, "signature"),
        (too_long, "5000"),
    ];
    for (i, (bytes, why)) in cases.iter().enumerate() {
        let mut c = raw(&ctx);
        // The server may close before all is written.
        let _ = c.stream.write_all(bytes);
        assert!(c.closed_within(WAIT), "case {i} not closed");
        assert!(ctx.rec.wait_for(WAIT, |evs| proxy_errors(evs).len() > i), "case {i}: {:?}", ctx.rec.events());
        let e = &proxy_errors(&ctx.rec.events())[i];
        assert!(e.contains(why) && e.contains("127.0.0.1"), "case {i}: {e}");
    }
    good.send_msg(&hl7("G2"));
    good.expect_ack();
    // Refused connections never became connections.
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::ConnectionRequest { .. })), 1);
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Connected { .. })), 1);
}

#[test]
fn a_slow_header_times_out_without_stalling_others() {
    let ctx = setup(&["ProxyProtocol=V1", "ProxyHeaderTimeout=1"]);
    let mut slow = raw(&ctx);
    slow.send_raw(b"PROXY TCP4 10.0.0.1");
    let silent = raw(&ctx);
    // While both wait for their deadline, another connection is served.
    let mut c = raw(&ctx);
    c.send_raw(V1_TCP4);
    c.send_msg(&hl7("S1"));
    c.expect_ack();
    assert!(slow.closed_within(WAIT * 2), "slow header not closed");
    let mut silent = Client::from_stream(silent.stream);
    assert!(silent.closed_within(WAIT * 2), "silent connection not closed");
    assert!(ctx.rec.wait_for(WAIT, |evs| proxy_errors(evs).len() == 2), "{:?}", ctx.rec.events());
    let errs = proxy_errors(&ctx.rec.events());
    assert!(errs.iter().all(|e| e.contains("within 1 s")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("19 bytes received")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("nothing received")), "{errs:?}");
    c.send_msg(&hl7("S2"));
    c.expect_ack();
}

#[test]
fn the_setting_applies_to_new_connections() {
    let ctx = setup(&[]);
    let mut old = raw(&ctx);
    old.send_msg(&hl7("N1"));
    old.expect_ack();
    ctx.server.config("ProxyProtocol=V1").unwrap();
    assert_eq!(ctx.server.config("ProxyProtocol").unwrap(), "V1");
    let mut new = raw(&ctx);
    new.send_raw(V1_TCP4);
    new.send_msg(&hl7("N2"));
    new.expect_ack();
    assert_eq!(request(&ctx, 1), ("203.0.113.7".to_string(), 40000));
    // The connection opened before still speaks plain MLLP.
    old.send_msg(&hl7("N3"));
    old.expect_ack();
    assert_eq!(ctx.server.config("ProxyHeaderTimeout=0").unwrap_err().code, code::INVALID_VALUE);
}

#[test]
fn refused_by_connection_request_names_the_proxied_client() {
    let ctx = setup_with(&["ProxyProtocol=V2", "LogLevel=2"], |_| Hooks {
        connection_request: Some(Box::new(|e| e.accept = e.address != "198.51.100.9")),
        ..Hooks::default()
    });
    let mut c = raw(&ctx);
    c.send_raw(&v2_tcp4());
    assert!(c.closed_within(WAIT));
    let refused = |e: &Ev| matches!(e, Ev::Log { message, .. } if message.contains("198.51.100.9:50123 refused by ConnectionRequest"));
    assert!(ctx.rec.wait_count(1, WAIT, refused), "{:?}", ctx.rec.events());
    let header = |e: &Ev| matches!(e, Ev::Log { message, .. } if message.contains("client 198.51.100.9:50123"));
    assert_eq!(ctx.rec.count(header), 1);
}

/// TLS behind the header: the PROXY header in plain bytes, then the TLS handshake — here the
/// ClientHello in the same write as the header.
#[test]
fn tls_behind_the_proxy_header() {
    let ca = tls_util::Ca::new("Proxy Test CA");
    let leaf = ca.issue("localhost", false);
    let server = new_server();
    server.set_ssl_cert(Some(leaf.certificate())).unwrap();
    server.set_ssl_enabled(true);
    server.config("ProxyProtocol=V2").unwrap();
    let rec = Recorder::new();
    server.set_handler(rec.clone());
    server.start_listening().unwrap();
    let ctx = Ctx { port: server.local_port(), server, rec };

    let cfg = tls_util::client_config(tls_util::ClientOpts::trusting(vec![ca.der()]));
    let mut conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", ctx.port)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut first = v2_tcp4();
    conn.write_tls(&mut first).unwrap();
    sock.write_all(&first).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(&frame(&hl7("T1"))).unwrap();
    let mut ack = [0u8; 3];
    tls.read_exact(&mut ack).unwrap();
    assert_eq!(&ack, &[SB, ACK, EB]);
    assert_eq!(request(&ctx, 0), ("198.51.100.9".to_string(), 50123));
    let id = ctx.rec.connected_id(0);
    assert_eq!(ctx.server.remote_host(id).unwrap(), "198.51.100.9");
    assert_eq!(ctx.server.ssl_negotiated(id, "SSLNegotiatedVersion").unwrap(), "TLS1.3");

    // A TLS client that sends no header is refused at its ClientHello.
    let cfg = tls_util::client_config(tls_util::ClientOpts::trusting(vec![ca.der()]));
    let mut c = tls_util::Client::connect(ctx.port, &cfg);
    assert!(c.handshake().is_err());
    assert!(
        ctx.rec.wait_for(WAIT, |evs| proxy_errors(evs).iter().any(|e| e.contains("signature, got \"\\x16"))),
        "{:?}",
        ctx.rec.events()
    );
}
