//! TLS handshakes against mllp::Server with rustls's client: negotiated values, protocol and
//! cipher suite restrictions, failed and stalled handshakes, many connections, session
//! resumption, SSLKeyLogFile and LogSSLPackets.

mod tls_util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mllp::code;
use rustls::crypto::ring::cipher_suite as cs;
use rustls::version::{TLS12, TLS13};
use tls_util::*;

fn setup(configs: &[&str]) -> (Ca, Arc<Rec>, mllp::Server, u16) {
    let ca = Ca::new("Test Root CA");
    let leaf = ca.issue("localhost", false);
    let rec = Rec::new();
    let s = listening(&leaf, configs, &rec);
    let port = s.local_port();
    (ca, rec, s, port)
}

fn opts<'a>(ca: &Ca, versions: &'a [&'static rustls::SupportedProtocolVersion]) -> ClientOpts<'a> {
    ClientOpts { versions, ..ClientOpts::trusting(vec![ca.der()]) }
}

#[test]
fn every_negotiated_value_tls13() {
    let (ca, rec, s, port) = setup(&[]);
    let cfg = client_config(ClientOpts { suites: Some(vec![cs::TLS13_AES_128_GCM_SHA256]), ..opts(&ca, &[&TLS13]) });
    let mut c = Client::connect(port, &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    let id = s.connections()[0];
    let v = |n: &str| s.ssl_negotiated(id, n).unwrap();
    assert_eq!(v("SSLNegotiatedVersion"), "TLS1.3");
    assert_eq!(v("SSLNegotiatedCipherSuite"), "TLS_AES_128_GCM_SHA256");
    assert_eq!(v("SSLNegotiatedCipher"), "AES_128_GCM");
    assert_eq!(v("SSLNegotiatedCipherStrength"), "128");
    // rustls's client offers X25519 first.
    let group = format!("{:?}", c.conn.negotiated_key_exchange_group().unwrap().name());
    assert_eq!(group, "X25519");
    assert_eq!(v("SSLNegotiatedKeyExchange"), "ECDHE_X25519");
    assert_eq!(v("SSLNegotiatedKeyExchangeStrength"), "255");
    // The same through Config("<name>[<id>]"), case-insensitively.
    for n in mllp::tls::NEGOTIATED {
        assert_eq!(s.config(&format!("{n}[{id}]")).unwrap(), v(n), "{n}");
        assert_eq!(s.ssl_negotiated(id, &n.to_ascii_lowercase()).unwrap(), v(n), "{n}");
    }
    // Without an id, read-only, unknown names, unknown ids.
    assert_eq!(s.config("SSLNegotiatedVersion").unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.config("SSLNegotiatedVersion=TLS1.3").unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.ssl_negotiated(id, "SSLNegotiatedNothing").unwrap_err().code, code::UNKNOWN_SETTING);
    assert_eq!(
        s.ssl_negotiated(mllp::ConnectionId::from_raw(id.raw() + (7 << 32)), "SSLNegotiatedVersion").unwrap_err().code,
        code::NO_SUCH_CONNECTION
    );
    assert!(rec.statuses(id).iter().any(|m| m.contains("handshake complete: TLS1.3 TLS_AES_128_GCM_SHA256")));
}

#[test]
fn every_negotiated_value_tls12() {
    let (ca, _rec, s, port) = setup(&[]);
    // rcgen's default key is ECDSA P-256.
    let cfg = client_config(ClientOpts {
        suites: Some(vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]),
        ..opts(&ca, &[&TLS12])
    });
    let mut c = Client::connect(port, &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    let id = s.connections()[0];
    let v = |n: &str| s.ssl_negotiated(id, n).unwrap();
    assert_eq!(v("SSLNegotiatedVersion"), "TLS1.2");
    assert_eq!(v("SSLNegotiatedCipherSuite"), "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
    assert_eq!(v("SSLNegotiatedCipher"), "CHACHA20_POLY1305");
    assert_eq!(v("SSLNegotiatedCipherStrength"), "256");
    assert_eq!(v("SSLNegotiatedKeyExchange"), "ECDHE_X25519");
    assert_eq!(v("SSLNegotiatedKeyExchangeStrength"), "255");
}

#[test]
fn negotiated_values_are_empty_before_the_handshake_and_on_plain_servers() {
    let (_ca, rec, s, port) = setup(&[]);
    let _idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(rec.wait_for(WAIT, |e| e.iter().any(|e| matches!(e, Ev::Connected(_)))));
    let id = s.connections()[0];
    assert_eq!(s.ssl_negotiated(id, "SSLNegotiatedVersion").unwrap(), "");

    let plain = mllp::Server::new();
    plain.set_local_host("127.0.0.1").unwrap();
    plain.start_listening().unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", plain.local_port())).unwrap();
    c.write_all(&frame(MSG)).unwrap();
    let deadline = Instant::now() + WAIT;
    while plain.connections().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = plain.connections()[0];
    for n in mllp::tls::NEGOTIATED {
        assert_eq!(plain.ssl_negotiated(pid, n).unwrap(), "", "{n}");
    }
}

#[test]
fn tls12_only_refuses_a_tls13_only_client() {
    let (ca, rec, s, port) = setup(&["SSLEnabledProtocols=3072"]);
    assert_eq!(s.config("SSLEnabledProtocols").unwrap(), "3072");
    let r = try_round_trip(port, &client_config(opts(&ca, &[&TLS13])));
    assert!(r.is_err(), "a TLS 1.3-only client got {r:?}");
    let (_, why, dcode) = rec.wait_error_and_disconnect(code::TLS_HANDSHAKE);
    assert!(why.contains("TLS handshake failed"), "{why}");
    assert_eq!(dcode, code::TLS_HANDSHAKE);
    // TLS 1.2 still works, and a client offering both gets 1.2.
    assert_eq!(try_round_trip(port, &client_config(opts(&ca, &[&TLS12]))).unwrap(), ACK_FRAME);
    let mut c = Client::connect(port, &client_config(opts(&ca, &[&TLS13, &TLS12])));
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
}

#[test]
fn tls13_only_refuses_a_tls12_only_client() {
    let (ca, rec, _s, port) = setup(&["SSLEnabledProtocols=12288"]);
    let r = try_round_trip(port, &client_config(opts(&ca, &[&TLS12])));
    assert!(r.is_err(), "a TLS 1.2-only client got {r:?}");
    rec.wait_error_and_disconnect(code::TLS_HANDSHAKE);
    let mut c = Client::connect(port, &client_config(opts(&ca, &[&TLS13, &TLS12])));
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn old_protocols_are_refused_with_a_clear_error() {
    let s = mllp::Server::new();
    assert_eq!(s.config("SSLEnabledProtocols").unwrap(), "15360"); // TLS1.2|TLS1.3
                                                                   // SSL2 (12), SSL3 (48), TLS1.0 (192), TLS1.1 (768), and any of them with TLS1.2.
    for v in ["12", "48", "192", "768", "960", "4032", "16383"] {
        let e = s.config(&format!("SSLEnabledProtocols={v}")).unwrap_err();
        assert_eq!(e.code, code::INVALID_VALUE, "{v}");
        assert!(e.message.contains("TLS 1.0/1.1 are not supported"), "{v}: {}", e.message);
    }
    assert_eq!(s.config("SSLEnabledProtocols=0").unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.config("SSLEnabledProtocols=tls12").unwrap_err().code, code::INVALID_VALUE);
    assert_eq!(s.config("SSLEnabledProtocols").unwrap(), "15360", "a refused value changes nothing");
    for v in ["3072", "12288", "15360"] {
        s.config(&format!("SSLEnabledProtocols={v}")).unwrap();
    }
}

#[test]
fn cipher_suite_restriction_and_the_negotiated_suite() {
    let (ca, rec, s, port) =
        setup(&["SSLEnabledCipherSuites=TLS_AES_256_GCM_SHA384; TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]);
    // A client offering everything gets the one TLS 1.3 suite allowed ...
    let mut c = Client::connect(port, &client_config(opts(&ca, &[&TLS13])));
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    let id = s.connections()[0];
    assert_eq!(s.ssl_negotiated(id, "SSLNegotiatedCipherSuite").unwrap(), "TLS_AES_256_GCM_SHA384");
    assert_eq!(s.ssl_negotiated(id, "SSLNegotiatedCipherStrength").unwrap(), "256");
    // ... and the TLS 1.2 one.
    let mut c2 = Client::connect(port, &client_config(opts(&ca, &[&TLS12])));
    assert_eq!(c2.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(
        c2.conn.negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    // A client offering only suites that are not allowed is refused.
    let cfg = client_config(ClientOpts {
        suites: Some(vec![cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_CHACHA20_POLY1305_SHA256]),
        ..opts(&ca, &[&TLS13])
    });
    assert!(try_round_trip(port, &cfg).is_err());
    rec.wait_error_and_disconnect(code::TLS_HANDSHAKE);
}

#[test]
fn the_server_picks_the_cheapest_suite_whatever_the_client_order() {
    let (ca, _rec, s, port) = setup(&[]);
    let (tls13, tls12) = if mllp::tls::aes_in_hardware() {
        (rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    } else {
        (
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        )
    };
    // rustls's client lists AES-256-GCM first; the server's order wins.
    for versions in [&[&TLS13][..], &[&TLS12][..]] {
        let mut c = Client::connect(port, &client_config(opts(&ca, versions)));
        assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
        let want = if versions[0] == &TLS13 { tls13 } else { tls12 };
        assert_eq!(c.conn.negotiated_cipher_suite().unwrap().suite(), want);
    }
    // A client offering only AES-256-GCM still gets it.
    let cfg = client_config(ClientOpts { suites: Some(vec![cs::TLS13_AES_256_GCM_SHA384]), ..opts(&ca, &[&TLS13]) });
    let mut c = Client::connect(port, &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
    // A listed order is the server's order too: AES-256-GCM before AES-128-GCM here.
    s.config("SSLEnabledCipherSuites=TLS_AES_256_GCM_SHA384;TLS_AES_128_GCM_SHA256").unwrap();
    let mut c = Client::connect(
        port,
        &client_config(ClientOpts {
            suites: Some(vec![cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384]),
            ..opts(&ca, &[&TLS13])
        }),
    );
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(c.conn.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
}

#[test]
fn cipher_suite_settings_are_checked() {
    let s = mllp::Server::new();
    assert_eq!(s.config("SSLEnabledCipherSuites").unwrap(), "*");
    let e = s.config("SSLEnabledCipherSuites=TLS_RSA_WITH_RC4_128_SHA").unwrap_err();
    assert_eq!(e.code, code::INVALID_VALUE);
    assert!(e.message.contains("TLS_RSA_WITH_RC4_128_SHA") && e.message.contains("not supported"), "{}", e.message);
    assert!(e.message.contains("TLS_AES_128_GCM_SHA256"), "the message lists what is available: {}", e.message);
    assert_eq!(s.config("SSLEnabledCipherSuites").unwrap(), "*");
    s.config("SSLEnabledCipherSuites=tls_aes_128_gcm_sha256").unwrap();
    s.config("SSLEnabledCipherSuites=*").unwrap();
    // Suites that fit none of the enabled protocols fail at StartListening.
    let ca = Ca::new("CA");
    let leaf = ca.issue("localhost", false);
    let rec = Rec::new();
    let s = server(&leaf, &["SSLEnabledProtocols=3072", "SSLEnabledCipherSuites=TLS_AES_128_GCM_SHA256"], &rec);
    let e = s.start_listening().unwrap_err();
    assert_eq!(e.code, code::INVALID_VALUE);
    assert!(e.message.contains("no enabled cipher suite fits the enabled protocols"), "{}", e.message);
    assert!(!s.listening());
}

#[test]
fn failed_handshakes_fire_error_and_disconnected_and_leave_others_alone() {
    let (ca, rec, s, port) = setup(&[]);
    let good_cfg = client_config(opts(&ca, &[&TLS13]));
    let mut good = Client::connect(port, &good_cfg);
    assert_eq!(good.round_trip(MSG).unwrap(), ACK_FRAME);

    // 1. A plaintext MLLP client: no ACK, Error 2021, Disconnected 2021.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain.write_all(&frame(MSG)).unwrap();
    let (id, why, dcode) = rec.wait_error_and_disconnect(code::TLS_HANDSHAKE);
    assert!(why.contains("TLS handshake failed"), "{why}");
    assert_eq!(dcode, code::TLS_HANDSHAKE);
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut got);
    assert!(!got.windows(2).any(|w| w == b"\x1c\r"), "a plaintext client got an MLLP frame: {got:?}");
    assert!(!s.connections().contains(&id));

    // 2. A client that does not trust the server's certificate aborts with an alert.
    let other = Ca::new("Other CA");
    let r = try_round_trip(port, &client_config(opts(&other, &[&TLS13])));
    assert!(r.is_err());
    assert!(rec.wait_for(WAIT, |evs| evs
        .iter()
        .filter(|e| matches!(e, Ev::Disconnected { code: c, .. } if *c == code::TLS_HANDSHAKE))
        .count()
        >= 2));

    // The established connection is unaffected; new ones work.
    assert_eq!(good.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(try_round_trip(port, &good_cfg).unwrap(), ACK_FRAME);
    assert!(rec
        .events()
        .iter()
        .all(|e| !matches!(e, Ev::Error { id, .. } | Ev::Disconnected { id, .. } if *id == s.connections()[0])));
}

#[test]
fn a_handshake_is_bounded_in_time() {
    let (ca, rec, s, port) = setup(&["SSLHandshakeTimeout=1"]);
    assert_eq!(s.config("SSLHandshakeTimeout").unwrap(), "1");
    let good_cfg = client_config(opts(&ca, &[&TLS13]));
    let mut good = Client::connect(port, &good_cfg);
    assert_eq!(good.round_trip(MSG).unwrap(), ACK_FRAME);

    let t0 = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // And one that sends half a ClientHello.
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut hello = Vec::new();
    {
        let mut cc = rustls::ClientConnection::new(good_cfg.clone(), "localhost".try_into().unwrap()).unwrap();
        cc.write_tls(&mut hello).unwrap();
    }
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    for sock in [&mut silent, &mut half] {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let r = std::io::Read::read(sock, &mut buf);
        assert!(
            matches!(r, Ok(0)) || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{r:?}"
        );
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "dropped after {took:?}");
    assert!(rec.wait_for(WAIT, |evs| evs
        .iter()
        .filter(|e| matches!(e, Ev::Error { code: c, description, .. }
            if *c == code::TLS_HANDSHAKE && description.contains("not completed within 1 s")))
        .count()
        == 2));
    assert!(rec.wait_for(WAIT, |evs| evs
        .iter()
        .filter(|e| matches!(e, Ev::Disconnected { code: c, .. } if *c == code::TLS_HANDSHAKE))
        .count()
        == 2));
    // The established connection outlives the timeout.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(good.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(s.connection_count(), 1);
    assert_eq!(s.config("SSLHandshakeTimeout=x").unwrap_err().code, code::INVALID_VALUE);
}

#[test]
fn hundred_concurrent_tls_connections() {
    let (ca, rec, s, port) = setup(&[]);
    let cfg = client_config(opts(&ca, &[&TLS13, &TLS12]));
    let start = Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let cfg = cfg.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port, &cfg);
                start.wait();
                let m = format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C{i}|P|2.5\r");
                let r1 = c.round_trip(m.as_bytes()).unwrap();
                let r2 = c.round_trip(m.as_bytes()).unwrap();
                (r1, r2, c)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for t in threads {
        let (r1, r2, c) = t.join().unwrap();
        assert_eq!(r1, ACK_FRAME);
        assert_eq!(r2, ACK_FRAME);
        clients.push(c);
    }
    assert_eq!(s.connection_count(), 100);
    assert_eq!(rec.count(|e| matches!(e, Ev::AckOut(_))), 200);
    assert_eq!(rec.count(|e| matches!(e, Ev::Error { .. })), 0, "{:?}", rec.events());
    for id in s.connections() {
        assert_eq!(s.ssl_negotiated(id, "SSLNegotiatedVersion").unwrap(), "TLS1.3");
    }
}

fn resumption(version: &'static rustls::SupportedProtocolVersion, reuse: bool) {
    let cfgs: &[&str] = if reuse { &[] } else { &["ReuseSSLSession=False"] };
    let (ca, rec, s, port) = setup(cfgs);
    assert_eq!(s.config("ReuseSSLSession").unwrap(), if reuse { "True" } else { "False" });
    // One client configuration: its session cache carries the ticket to the second connection.
    let vs = [version];
    let cfg = client_config(opts(&ca, &vs));
    let mut first = Client::connect(port, &cfg);
    assert_eq!(first.round_trip(MSG).unwrap(), ACK_FRAME);
    assert_eq!(first.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    let id1 = s.connections()[0];
    let mut second = Client::connect(port, &cfg);
    assert_eq!(second.round_trip(MSG).unwrap(), ACK_FRAME);
    let id2 = *s.connections().iter().find(|&&i| i != id1).unwrap();
    let want = if reuse { rustls::HandshakeKind::Resumed } else { rustls::HandshakeKind::Full };
    assert_eq!(second.conn.handshake_kind(), Some(want));
    let resumed_status = |id| rec.statuses(id).iter().any(|m| m.contains("session resumed"));
    assert!(!resumed_status(id1));
    assert_eq!(resumed_status(id2), reuse, "{:?}", rec.statuses(id2));
}

#[test]
fn session_resumption_tls13() {
    resumption(&TLS13, true);
}

#[test]
fn session_resumption_tls12() {
    resumption(&TLS12, true);
}

#[test]
fn no_session_resumption_when_reuse_is_off() {
    resumption(&TLS13, false);
    resumption(&TLS12, false);
}

fn key_log(version: &'static rustls::SupportedProtocolVersion, labels: &[&str]) {
    let dir = temp_dir("keylog");
    let path = dir.join("keys.log");
    let (ca, _rec, s, port) = setup(&[&format!("SSLKeyLogFile={}", path.display())]);
    assert_eq!(s.config("SSLKeyLogFile").unwrap(), path.display().to_string());
    let mine = Arc::new(MemKeyLog::default());
    let vs = [version];
    let cfg = client_config(ClientOpts { key_log: Some(mine.clone()), ..opts(&ca, &vs) });
    let mut c = Client::connect(port, &cfg);
    assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
    s.shutdown().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 3, "NSS key log lines are 'LABEL <client random> <secret>': {l}");
        assert_eq!(parts[1].len(), 64, "{l}");
        assert!(parts[1..].iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit())), "{l}");
    }
    for label in labels {
        assert!(lines.iter().any(|l| l.starts_with(&format!("{label} "))), "no {label} line in {text}");
    }
    // The server wrote exactly the secrets the client derived.
    let mut server_lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    let mut client_lines = mine.0.lock().unwrap().clone();
    server_lines.sort();
    client_lines.sort();
    assert_eq!(server_lines, client_lines);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn key_log_file_tls13() {
    key_log(
        &TLS13,
        &[
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
            "EXPORTER_SECRET",
        ],
    );
}

#[test]
fn key_log_file_tls12() {
    key_log(&TLS12, &["CLIENT_RANDOM"]);
}

#[test]
fn key_log_file_that_cannot_be_opened_fails_start_listening() {
    let ca = Ca::new("CA");
    let leaf = ca.issue("localhost", false);
    let rec = Rec::new();
    let s = server(&leaf, &["SSLKeyLogFile=/nonexistent-dir/keys.log"], &rec);
    let e = s.start_listening().unwrap_err();
    assert_eq!(e.code, code::CANNOT_OPEN_FILE);
    assert!(e.message.contains("SSLKeyLogFile") && e.message.contains("/nonexistent-dir/keys.log"), "{}", e.message);
}

#[test]
fn ssl_status_and_log_ssl_packets() {
    for log_packets in [false, true] {
        let cfgs: &[&str] = if log_packets { &["LogSSLPackets=True"] } else { &[] };
        let (ca, rec, s, port) = setup(cfgs);
        let mut c = Client::connect(port, &client_config(opts(&ca, &[&TLS13])));
        assert_eq!(c.round_trip(MSG).unwrap(), ACK_FRAME);
        let id = s.connections()[0];
        let st = rec.statuses(id);
        assert!(st.iter().any(|m| m == "ClientHello received"), "{st:?}");
        assert!(st.iter().any(|m| m.starts_with("handshake complete: TLS1.3 ")), "{st:?}");
        let received = st.iter().filter(|m| m.starts_with("received ") && m.ends_with(" bytes of TLS records")).count();
        let sent = st.iter().filter(|m| m.starts_with("sent ") && m.ends_with(" bytes of TLS records")).count();
        if log_packets {
            assert!(received >= 2 && sent >= 2, "{st:?}");
        } else {
            assert_eq!(received + sent, 0, "{st:?}");
        }
        assert_eq!(s.config("LogSSLPackets").unwrap(), if log_packets { "True" } else { "False" });
    }
}

#[test]
fn a_message_and_close_notify_in_one_segment_get_the_ack_and_the_close() {
    use std::io::Read;
    let (ca, rec, _s, port) = setup(&[]);
    let mut c = Client::connect(port, &client_config(opts(&ca, &[&TLS13])));
    c.handshake().unwrap();
    // One write of both records, the socket left open: the server learns of the close only
    // from the close_notify read with the message (no end of stream, no further readiness).
    c.conn.writer().write_all(&frame(MSG)).unwrap();
    c.conn.send_close_notify();
    let mut out = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut out).unwrap();
    }
    c.sock.write_all(&out).unwrap();
    let mut ack = [0u8; 4];
    rustls::Stream::new(&mut c.conn, &mut c.sock).read_exact(&mut ack).unwrap();
    assert_eq!(ack.to_vec(), ACK_FRAME);
    assert!(c.closed_by_server(), "the server answers the close_notify by closing");
    assert!(rec.wait_for(WAIT, |evs| evs.iter().any(|e| matches!(e, Ev::Disconnected { code: 0, .. }))));
}
