//! Metrics over sockets: known traffic (ACKed, NAKed by the host, refused by the library,
//! duplicates answered from DuplicateWindow), refused connections (MaxConnections,
//! ConnectionRequest, PROXY header) and TLS handshakes, every counter compared exactly.
//!
//! Counters move on the reactor thread just after the event a test observes (an ACK is
//! counted once its write call returned), so each check first waits until the last expected
//! count is reached, then compares everything.

mod common;
mod tls_util;

use std::io::Write;
use std::net::TcpStream;

use common::*;
use mllp::metrics::TlsFailure;
use mllp::{code, MetricsSnapshot, RejectCode, Verdict};

fn wait_metrics(s: &mllp::Server, what: &str, f: impl Fn(&MetricsSnapshot) -> bool) -> MetricsSnapshot {
    assert!(wait_until(WAIT, || f(&s.metrics())), "{what}: {:#?}", s.metrics());
    s.metrics()
}

#[test]
fn message_counters_are_exact() {
    let ctx = setup_with(&["DuplicateWindow=100", "MaxMessageSize=200"], |_| Hooks {
        ack_out: Some(Box::new(|e| {
            if e.message.windows(5).any(|w| w == b"NAKME") {
                e.verdict = Verdict::Reject(RejectCode::AE);
            }
        })),
        ..Hooks::default()
    });
    let s = &ctx.server;
    assert_eq!(s.metrics(), MetricsSnapshot::default(), "a new server counts nothing");
    let mut c = ctx.connect();
    let frames = [
        (frame(&hl7("M1")), ACK),
        (frame(&hl7("M2")), ACK),
        // A resend of M1: answered from the window with M1's ACK, not delivered.
        (frame(&hl7("M1")), ACK),
        (frame(&hl7("NAKME")), NAK),
        // Refused by the library: larger than MaxMessageSize, and empty (671 each).
        (frame(&[b'x'; 300]), NAK),
        (frame(b""), NAK),
    ];
    let mut bytes_in = 0;
    for (f, reply) in &frames {
        c.send_raw(f);
        bytes_in += f.len() as u64;
        assert_eq!(c.read_frame(), [*reply], "reply to {:?}", String::from_utf8_lossy(f));
    }
    let m = wait_metrics(s, "six replies written", |m| m.acks_sent + m.naks_sent == 6);
    assert_eq!(m.connections_accepted, 1);
    assert_eq!(m.connections_refused, 0);
    assert_eq!(m.connections_open, 1);
    assert_eq!(m.messages_received, 6);
    assert_eq!(m.messages_accepted, 2);
    assert_eq!(m.messages_refused, 3);
    assert_eq!(m.messages_duplicate, 1);
    assert_eq!(m.messages_duplicate, s.duplicate_count());
    assert_eq!(m.bytes_in, bytes_in);
    assert_eq!(m.bytes_out, 6 * 4, "six 4-byte commit acknowledgement frames");
    assert_eq!((m.acks_sent, m.naks_sent), (3, 3));
    assert_eq!(m.errors, 2);
    assert_eq!(m.errors_by_code, vec![(Some(code::INVALID_DATA), 2)]);
    assert_eq!((m.tls_handshakes_completed, m.tls_handshakes_failed), (0, 0));
    assert_eq!(m.ack_latency.count, 6);
    assert_eq!(m.ack_latency.cumulative(16), 6);
    assert!(m.ack_latency.sum_seconds > 0.0);

    // The text form carries the same numbers.
    let text = s.metrics_text();
    for line in [
        "mllp_connections_accepted_total 1",
        "mllp_connections_open 1",
        "mllp_messages_received_total 6",
        "mllp_messages_total{result=\"accepted\"} 2",
        "mllp_messages_total{result=\"refused\"} 3",
        "mllp_messages_total{result=\"duplicate\"} 1",
        &format!("mllp_bytes_received_total {bytes_in}"),
        "mllp_bytes_sent_total 24",
        "mllp_acks_sent_total{kind=\"ack\"} 3",
        "mllp_acks_sent_total{kind=\"nak\"} 3",
        "mllp_errors_total{code=\"671\"} 2",
        "mllp_ack_latency_seconds_bucket{le=\"+Inf\"} 6",
        "mllp_ack_latency_seconds_count 6",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }

    // Closing: the gauge goes back to 0; the counters stay.
    c.shutdown();
    let m = wait_metrics(s, "connection closed", |m| m.connections_open == 0);
    assert_eq!((m.connections_accepted, m.messages_received), (1, 6));
}

#[test]
fn hl7_acknowledgements_count_as_ack_and_nak_by_msa1() {
    let ctx = setup_with(&["AckMode=HL7"], |_| Hooks {
        ack_out: Some(Box::new(|e| {
            if e.message.windows(2).any(|w| w == b"AR") {
                e.verdict = Verdict::Reject(RejectCode::AR);
            }
        })),
        ..Hooks::default()
    });
    let mut c = ctx.connect();
    let mut out = 0;
    for id in ["H1", "AR1", "H2"] {
        c.send_msg(&hl7(id));
        out += c.read_frame().len() as u64 + 3;
    }
    let m = wait_metrics(&ctx.server, "three HL7 ACKs", |m| m.acks_sent + m.naks_sent == 3);
    assert_eq!((m.messages_received, m.messages_accepted, m.messages_refused), (3, 2, 1));
    assert_eq!((m.acks_sent, m.naks_sent), (2, 1));
    assert_eq!(m.bytes_out, out);
    assert_eq!(m.errors, 0);
}

#[test]
fn refused_connections_are_counted() {
    // MaxConnections: the second client is refused (2012).
    let ctx = setup(&["MaxConnections=1"]);
    let s = &ctx.server;
    let mut a = ctx.connect();
    a.round_trip(&hl7("A"));
    let _b = ctx.connect();
    let m = wait_metrics(s, "MaxConnections refusal", |m| m.connections_refused == 1);
    assert_eq!((m.connections_accepted, m.connections_open), (1, 1));
    assert_eq!(m.errors_by_code, vec![(Some(code::TOO_MANY_CONNECTIONS), 1)]);

    // ConnectionRequest refusing every client.
    let ctx =
        setup_with(&[], |_| Hooks { connection_request: Some(Box::new(|e| e.accept = false)), ..Hooks::default() });
    let mut c = ctx.connect();
    assert!(c.closed_within(WAIT));
    let m = wait_metrics(&ctx.server, "ConnectionRequest refusal", |m| m.connections_refused == 1);
    assert_eq!((m.connections_accepted, m.connections_open, m.errors), (0, 0, 0));

    // ProxyProtocol: a connection without a PROXY header (2050).
    let ctx = setup(&["ProxyProtocol=V1"]);
    let mut c = ctx.connect();
    c.send_raw(&frame(&hl7("P")));
    assert!(c.closed_within(WAIT));
    let m = wait_metrics(&ctx.server, "PROXY refusal", |m| m.connections_refused == 1);
    assert_eq!((m.connections_accepted, m.messages_received), (0, 0));
    assert_eq!(m.errors_by_code, vec![(Some(code::PROXY_HEADER), 1)]);
}

#[test]
fn tls_handshakes_completed_and_failed() {
    use tls_util::{client_config, listening, try_round_trip, Ca, ClientOpts, Rec, ACK_FRAME, MSG};
    let ca = Ca::new("Metrics CA");
    let rec = Rec::new();
    let s = listening(&ca.issue("localhost", false), &[], &rec);
    let port = s.local_port();
    let cfg = client_config(ClientOpts::trusting(vec![ca.der()]));
    assert_eq!(try_round_trip(port, &cfg).unwrap(), ACK_FRAME);
    let m = wait_metrics(&s, "one handshake", |m| m.tls_handshakes_completed == 1 && m.acks_sent == 1);
    assert_eq!(m.bytes_in, tls_util::frame(MSG).len() as u64, "application bytes, decrypted");
    assert_eq!(m.bytes_out, 4);

    // A plaintext client on the TLS port: a protocol failure (2021).
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.write_all(&frame(MSG)).unwrap();
    let m = wait_metrics(&s, "protocol failure", |m| m.tls_handshakes_failed == 1);
    assert_eq!(m.tls_failures_for(TlsFailure::Protocol), 1);

    // A client that does not trust the server's certificate aborts with a certificate alert.
    let other = client_config(ClientOpts::trusting(vec![Ca::new("Other CA").der()]));
    assert!(try_round_trip(port, &other).is_err());
    let m = wait_metrics(&s, "certificate failure", |m| m.tls_handshakes_failed == 2);
    assert_eq!(m.tls_failures_for(TlsFailure::Certificate), 1);

    // A client that connects and leaves before its ClientHello.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let m = wait_metrics(&s, "other failure", |m| m.tls_handshakes_failed == 3);
    assert_eq!(m.tls_failures_for(TlsFailure::Other), 1);
    assert_eq!(m.tls_handshakes_completed, 1);
    assert_eq!(m.connections_accepted, 4, "TLS connections are admitted before the handshake");
    assert_eq!(m.connections_refused, 3, "each failed handshake refuses its connection");
    assert_eq!(m.errors_with(code::TLS_HANDSHAKE), 2);
    let text = s.metrics_text();
    for line in [
        "mllp_tls_handshakes_total{result=\"completed\"} 1",
        "mllp_tls_handshakes_total{result=\"failed\"} 3",
        "mllp_tls_handshake_failures_total{reason=\"protocol\"} 1",
        "mllp_tls_handshake_failures_total{reason=\"certificate\"} 1",
        "mllp_tls_handshake_failures_total{reason=\"other\"} 1",
        "mllp_tls_handshake_failures_total{reason=\"timeout\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[test]
fn tls_handshake_timeout_and_client_rejected() {
    use tls_util::{client_config, listening, server, try_round_trip, Ca, ClientOpts, Rec};
    let ca = Ca::new("Metrics CA");
    let rec = Rec::new();
    let s = listening(&ca.issue("localhost", false), &["SSLHandshakeTimeout=1"], &rec);
    // Connects and sends nothing: the handshake deadline passes.
    let _idle = TcpStream::connect(("127.0.0.1", s.local_port())).unwrap();
    let m = wait_metrics(&s, "timeout failure", |m| m.tls_handshakes_failed == 1);
    assert_eq!(m.tls_failures_for(TlsFailure::Timeout), 1);

    // SSLAuthenticateClients with a handler that refuses every client.
    let rec = Rec::new();
    rec.on_client_auth(|e| e.accept = false);
    let s = server(&ca.issue("localhost", false), &[], &rec);
    s.set_ssl_authenticate_clients(true).unwrap();
    s.start_listening().unwrap();
    let leaf = ca.issue("client", true);
    let cfg = client_config(ClientOpts { client_cert: Some(&leaf), ..ClientOpts::trusting(vec![ca.der()]) });
    assert!(try_round_trip(s.local_port(), &cfg).is_err());
    let m = wait_metrics(&s, "client rejected", |m| m.tls_handshakes_failed == 1);
    assert_eq!(m.tls_failures_for(TlsFailure::ClientRejected), 1);
    assert_eq!(m.tls_handshakes_completed, 0);
    assert_eq!(m.errors_with(code::TLS_CLIENT_REJECTED), 1);
}
