//! The client over real sockets: against this library's server, against scripted servers that
//! misbehave (NAK first, no acknowledgement, the wrong control id, a dropped connection) and
//! over TLS (server verification, the host's override, mutual TLS).

mod common;
mod tls_util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{hl7, setup, wait_until, WAIT};
use mllp::client::{AckInEvent, AckKind, Client, ClientHandler, SendDoneEvent, SslServerAuthenticationEvent};
use mllp::{code, AckCode, ErrorEvent, StatusEvent};

/// What a client saw.
#[derive(Default)]
struct Seen {
    acks: Vec<(Option<u64>, AckKind, String, String)>,
    done: Vec<(u64, String, i32, Option<AckKind>, u32)>,
    errors: Vec<i32>,
    connected: usize,
    disconnected: usize,
    auth: Vec<(String, bool)>,
    ssl_status: Vec<String>,
}

#[derive(Default)]
struct H {
    seen: Mutex<Seen>,
    /// SSLServerAuthentication sets accept to this when Some.
    override_accept: Option<bool>,
    /// A client to call back into from SendDone.
    reenter: Mutex<Option<Arc<Client>>>,
    reentry: Mutex<Vec<i32>>,
}

impl ClientHandler for H {
    fn connected(&self, _e: &StatusEvent<'_>) {
        self.seen.lock().unwrap().connected += 1;
    }
    fn disconnected(&self, _e: &StatusEvent<'_>) {
        self.seen.lock().unwrap().disconnected += 1;
    }
    fn ack_in(&self, e: &AckInEvent<'_>) {
        self.seen.lock().unwrap().acks.push((e.message_id, e.kind, e.control_id.into(), e.text.into()));
    }
    fn send_done(&self, e: &SendDoneEvent<'_>) {
        let code = e.result.as_ref().err().map_or(0, |e| e.code);
        self.seen.lock().unwrap().done.push((e.message_id, e.control_id.into(), code, e.ack, e.attempts));
        if let Some(c) = self.reenter.lock().unwrap().take() {
            let r = c.send(&hl7("INNER")).err().map_or(0, |e| e.code);
            let a = c.send_async(&hl7("QUEUED")).err().map_or(0, |e| e.code);
            self.reentry.lock().unwrap().extend([r, a]);
        }
    }
    fn error(&self, e: &ErrorEvent<'_>) {
        self.seen.lock().unwrap().errors.push(e.error_code);
    }
    fn ssl_status(&self, e: &mllp::SslStatusEvent<'_>) {
        self.seen.lock().unwrap().ssl_status.push(e.message.to_string());
    }
    fn ssl_server_authentication(&self, e: &mut SslServerAuthenticationEvent<'_, '_>) {
        self.seen.lock().unwrap().auth.push((e.auth.status.clone(), e.auth.accept));
        if let Some(a) = self.override_accept {
            e.auth.accept = a;
        }
    }
}

fn client(port: u16, configs: &[&str]) -> (Arc<Client>, Arc<H>) {
    client_with(port, configs, H::default())
}

fn client_with(port: u16, configs: &[&str], h: H) -> (Arc<Client>, Arc<H>) {
    let c = Arc::new(Client::new().unwrap());
    c.update(|s| {
        s.remote_port = port;
        s.timeout = 5;
        s.retry_delay = 20;
        Ok(())
    })
    .unwrap();
    for cfg in configs {
        c.config(cfg).unwrap_or_else(|e| panic!("{cfg}: {e}"));
    }
    let h = Arc::new(h);
    c.set_handler(h.clone());
    (c, h)
}

const ACK: &[u8] = &[0x0B, 0x06, 0x1C, 0x0D];
const NAK: &[u8] = &[0x0B, 0x15, 0x1C, 0x0D];

fn hl7_ack(code: &str, id: &str) -> Vec<u8> {
    let mut f = vec![0x0B];
    f.extend_from_slice(
        format!("MSH|^~\\&|R|F|S|F|20260101||ACK|Z{id}|P|2.5\rMSA|{code}|{id}|text for {id}\r").as_bytes(),
    );
    f.extend_from_slice(&[0x1C, 0x0D]);
    f
}

/// What a scripted server does with a frame.
enum Act {
    Reply(Vec<u8>),
    Silent,
    Close,
}

/// A server that answers frame `n` (counted across connections, from 0) of connection `c` as
/// `script(c, n, frame)` says. Returns its port and the number of connections accepted.
fn scripted(script: impl Fn(usize, usize, &[u8]) -> Act + Send + Sync + 'static) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let frames = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(script);
    let c2 = conns.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let c = c2.fetch_add(1, Ordering::SeqCst);
            let (frames, script) = (frames.clone(), script.clone());
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
                        let frame: Vec<u8> = buf.drain(..end + 2).collect();
                        let payload = &frame[1..frame.len() - 2];
                        match script(c, frames.fetch_add(1, Ordering::SeqCst), payload) {
                            Act::Reply(b) => s.write_all(&b).unwrap(),
                            Act::Silent => {}
                            Act::Close => return,
                        }
                    }
                }
            });
        }
    });
    (port, conns)
}

fn control_id(frame: &[u8]) -> String {
    let msh = String::from_utf8_lossy(frame).split('\r').next().unwrap_or_default().to_string();
    msh.split('|').nth(9).unwrap_or_default().to_string()
}

#[test]
fn send_is_acknowledged_by_this_librarys_server() {
    let ctx = setup(&[]);
    let (c, h) = client(ctx.port, &[]);
    let r = c.send(&hl7("C1")).unwrap();
    assert_eq!((r.ack, r.attempts), (Some(AckKind::Ack), 1));
    assert!(c.connected());
    let s = h.seen.lock().unwrap();
    assert_eq!(s.connected, 1);
    assert_eq!(s.done, vec![(r.message_id, "C1".into(), 0, Some(AckKind::Ack), 1)]);
}

#[test]
fn hl7_mode_matches_the_servers_aa_by_control_id() {
    let ctx = setup(&["AckMode=HL7"]);
    let (c, h) = client(ctx.port, &["AckMode=HL7"]);
    for id in ["H1", "H2", "H3"] {
        let r = c.send(&hl7(id)).unwrap();
        assert_eq!(r.ack, Some(AckKind::Hl7(AckCode::AA)));
    }
    let s = h.seen.lock().unwrap();
    let ids: Vec<&str> = s.acks.iter().map(|a| a.2.as_str()).collect();
    assert_eq!(ids, ["H1", "H2", "H3"]);
    assert!(s.acks.iter().all(|a| a.0.is_some()));
}

#[test]
fn a_nak_is_resent_and_the_ack_that_follows_ends_it() {
    let (port, _) = scripted(|_, n, _| Act::Reply(if n == 0 { NAK.to_vec() } else { ACK.to_vec() }));
    let (c, _) = client(port, &[]);
    let r = c.send(&hl7("N1")).unwrap();
    assert_eq!((r.ack, r.attempts), (Some(AckKind::Ack), 2));
}

#[test]
fn naks_after_the_retries_fail_with_670() {
    let (port, _) = scripted(|_, _, _| Act::Reply(NAK.to_vec()));
    let (c, h) = client(port, &["MaxRetries=2"]);
    let e = c.send(&hl7("N2")).unwrap_err();
    assert_eq!(e.code, code::NAK_RECEIVED);
    assert_eq!(h.seen.lock().unwrap().done[0].4, 3);
}

#[test]
fn an_ack_that_never_comes_times_out_on_a_fresh_connection_each_attempt() {
    let (port, conns) = scripted(|_, _, _| Act::Silent);
    let (c, h) = client(port, &["Timeout=1", "MaxRetries=1"]);
    let e = c.send(&hl7("T1")).unwrap_err();
    assert_eq!(e.code, code::ACK_TIMEOUT, "{e}");
    assert_eq!(h.seen.lock().unwrap().done[0].4, 2);
    assert_eq!(conns.load(Ordering::SeqCst), 2, "the resend goes on a new connection");
}

#[test]
fn an_ack_for_another_control_id_is_reported_and_not_taken() {
    let (port, _) = scripted(|_, _, f| {
        let id = control_id(f);
        let mut b = hl7_ack("AA", "SOMETHING-ELSE");
        b.extend_from_slice(&hl7_ack("AA", &id));
        Act::Reply(b)
    });
    let (c, h) = client(port, &["AckMode=HL7"]);
    let r = c.send(&hl7("W1")).unwrap();
    assert_eq!(r.attempts, 1);
    let s = h.seen.lock().unwrap();
    assert_eq!(s.errors, vec![code::ACK_MISMATCH]);
    assert_eq!(s.acks[0].0, None, "the wrong one matched no message");
    assert_eq!(s.acks[1].0, Some(r.message_id));
}

#[test]
fn only_wrong_acks_end_in_a_timeout() {
    let (port, _) = scripted(|_, _, _| Act::Reply(hl7_ack("AA", "NOT-MINE")));
    let (c, h) = client(port, &["AckMode=HL7", "Timeout=1", "MaxRetries=0"]);
    assert_eq!(c.send(&hl7("W2")).unwrap_err().code, code::ACK_TIMEOUT);
    assert!(h.seen.lock().unwrap().errors.contains(&code::ACK_MISMATCH));
}

#[test]
fn a_connection_dropped_before_the_ack_is_reopened_and_the_message_resent() {
    let (port, conns) = scripted(|c, _, _| if c == 0 { Act::Close } else { Act::Reply(ACK.to_vec()) });
    let (c, h) = client(port, &[]);
    let r = c.send(&hl7("D1")).unwrap();
    assert_eq!(r.attempts, 2);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    let s = h.seen.lock().unwrap();
    assert_eq!((s.connected, s.disconnected), (2, 1));
}

#[test]
fn ae_and_ar_carry_their_codes_and_text() {
    let (port, _) = scripted(|_, _, f| {
        let id = control_id(f);
        Act::Reply(hl7_ack(if id == "E1" { "AE" } else { "AR" }, &id))
    });
    let (c, h) = client(port, &["AckMode=HL7", "RetryOnNegative=False"]);
    let e = c.send(&hl7("E1")).unwrap_err();
    assert_eq!(e.code, code::APP_ERROR);
    assert!(e.message.contains("text for E1"), "{}", e.message);
    assert_eq!(c.send(&hl7("E2")).unwrap_err().code, code::APP_REJECT);
    assert_eq!(h.seen.lock().unwrap().acks[0].3, "text for E1");
}

#[test]
fn connect_refused_has_its_socket_code() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (c, h) = client(port, &["MaxRetries=1"]);
    assert_eq!(c.connect().unwrap_err().code, 10061);
    let e = c.send(&hl7("R1")).unwrap_err();
    assert_eq!(e.code, 10061);
    assert_eq!(h.seen.lock().unwrap().done[0].4, 2, "connect failures are attempts too");
}

#[test]
fn async_sends_finish_in_order_inside_do_events() {
    let ctx = setup(&["AckMode=HL7"]);
    let (c, h) = client(ctx.port, &["AckMode=HL7"]);
    let ids: Vec<u64> = (0..20).map(|i| c.send_async(&hl7(&format!("A{i}"))).unwrap()).collect();
    assert_eq!(c.pending(), 20);
    assert!(wait_until(WAIT * 2, || c.do_events(100).unwrap() == 0));
    let s = h.seen.lock().unwrap();
    let done: Vec<u64> = s.done.iter().map(|d| d.0).collect();
    assert_eq!(done, ids);
    assert!(s.done.iter().all(|d| d.2 == 0));
    assert_eq!(ctx.server.connections().len(), 1);
}

#[test]
fn a_window_of_outstanding_messages_is_kept_full() {
    let ctx = setup(&["AckMode=HL7"]);
    let (c, h) = client(ctx.port, &["AckMode=HL7", "MaxOutstanding=8"]);
    for i in 0..50 {
        c.send_async(&hl7(&format!("P{i}"))).unwrap();
    }
    assert!(wait_until(WAIT * 2, || c.do_events(100).unwrap() == 0));
    let s = h.seen.lock().unwrap();
    assert_eq!(s.done.len(), 50);
    assert!(s.done.iter().all(|d| d.2 == 0 && d.4 == 1));
}

#[test]
fn version_1_without_acks_is_done_once_written() {
    let ctx = setup(&["Version=1"]);
    let (c, _) = client(ctx.port, &["Version=1"]);
    let r = c.send(&hl7("V1")).unwrap();
    assert_eq!((r.ack, r.attempts), (None, 1));
    assert!(wait_until(WAIT, || ctx.rec.events().iter().any(|e| matches!(e, common::Ev::EndTransfer { .. }))));
}

#[test]
fn blocking_calls_from_inside_a_handler_are_refused_and_queueing_works() {
    let ctx = setup(&[]);
    let (c, h) = client(ctx.port, &[]);
    *h.reenter.lock().unwrap() = Some(c.clone());
    c.send(&hl7("O1")).unwrap();
    assert_eq!(*h.reentry.lock().unwrap(), vec![code::REENTRANT, 0]);
    assert!(wait_until(WAIT, || c.do_events(100).unwrap() == 0));
    assert_eq!(h.seen.lock().unwrap().done.len(), 2);
    // Break the cycle client -> handler -> client.
    h.reenter.lock().unwrap().take();
}

#[test]
fn bad_messages_are_refused_before_anything_is_sent() {
    let (c, _) = client(1, &["AckMode=HL7"]);
    assert_eq!(c.send(b"").unwrap_err().code, code::INVALID_ARGUMENT);
    assert_eq!(c.send(b"PID|1\r").unwrap_err().code, code::INVALID_ARGUMENT);
    assert_eq!(c.pending(), 0);
}

// ---------------------------------------------------------------------------------------------
// TLS

use tls_util::{Ca, Leaf, Rec};

fn tls_server(leaf: &Leaf, configs: &[&str]) -> mllp::Server {
    tls_util::listening(leaf, configs, &Arc::new(Rec::default()))
}

fn tls_client(port: u16, ca_pem: &str, h: H) -> (Arc<Client>, Arc<H>) {
    let (c, h) = client_with(port, &["SSLEnabled=True", "Timeout=3", "MaxRetries=0"], h);
    c.update(|s| {
        s.tls.enabled = true;
        s.tls.server_ca_certs = ca_pem.to_string();
        s.remote_host = "localhost".into();
        Ok(())
    })
    .unwrap();
    (c, h)
}

#[test]
fn tls_verified_against_the_ca_list() {
    let ca = Ca::new("client test CA");
    let srv = tls_server(&ca.issue("localhost", false), &[]);
    let (c, h) = tls_client(srv.local_port(), &ca.pem(), H::default());
    c.config("LogSSLPackets=True").unwrap();
    let r = c.send(&hl7("S1")).unwrap();
    assert_eq!(r.ack, Some(AckKind::Ack));
    let s = h.seen.lock().unwrap();
    assert_eq!(s.auth, vec![("OK".to_string(), true)]);
    assert!(s.ssl_status[0].starts_with("TLS handshake complete: TLS1."), "{:?}", s.ssl_status);
    assert!(s.ssl_status.iter().any(|l| l.starts_with("sent ") && l.ends_with("bytes of TLS records")));
    assert!(s.ssl_status.iter().any(|l| l.starts_with("received ")));
    drop(s);
    assert!(c.config("SSLNegotiatedVersion").unwrap().starts_with("TLS1."));
}

#[test]
fn tls_server_from_another_ca_is_refused_unless_the_host_overrides() {
    let ca = Ca::new("trusted CA");
    let other = Ca::new("other CA");
    let srv = tls_server(&other.issue("localhost", false), &[]);
    let (c, h) = tls_client(srv.local_port(), &ca.pem(), H::default());
    let e = c.send(&hl7("S2")).unwrap_err();
    assert_eq!(e.code, code::TLS_SERVER_REJECTED, "{e}");
    assert!(!h.seen.lock().unwrap().auth[0].1);
    let (c, _) = tls_client(srv.local_port(), &ca.pem(), H { override_accept: Some(true), ..H::default() });
    assert!(c.send(&hl7("S3")).is_ok());
}

#[test]
fn tls_server_name_must_match() {
    let ca = Ca::new("name CA");
    let srv = tls_server(&ca.issue("localhost", false), &[]);
    let (c, _) = tls_client(srv.local_port(), &ca.pem(), H::default());
    c.config("SSLServerName=other.example").unwrap();
    assert_eq!(c.send(&hl7("S4")).unwrap_err().code, code::TLS_SERVER_REJECTED);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let ca = Ca::new("mutual CA");
    let srv = tls_server(
        &ca.issue("localhost", false),
        &["SSLAuthenticateClients=True", &format!("SSLClientCACerts={}", ca.pem())],
    );
    let (c, _) = tls_client(srv.local_port(), &ca.pem(), H::default());
    // Without a client certificate the server refuses the connection.
    assert!(c.send(&hl7("M0")).is_err());
    c.set_ssl_cert(Some(ca.issue("sender", true).certificate()));
    assert_eq!(c.send(&hl7("M1")).unwrap().ack, Some(AckKind::Ack));
}

#[test]
fn a_plain_client_against_a_tls_server_fails_cleanly() {
    let ca = Ca::new("plain CA");
    let srv = tls_server(&ca.issue("localhost", false), &[]);
    let (c, _) = client(srv.local_port(), &["Timeout=1", "MaxRetries=0"]);
    let e = c.send(&hl7("X1")).unwrap_err();
    assert!([code::ACK_TIMEOUT, code::DROPPED].contains(&e.code), "{e}");
    let _ = TcpStream::connect(("127.0.0.1", srv.local_port()));
}

#[test]
fn dropping_the_client_ends_every_unfinished_message_with_672() {
    // A server that reads and never answers: the first message is in flight, the rest queued.
    let (port, conns) = scripted(|_, _, _| Act::Silent);
    let (c, h) = client(port, &["MaxOutstanding=1"]);
    let ids: Vec<u64> = (0..3).map(|i| c.send_async(&hl7(&format!("D{i}"))).unwrap()).collect();
    c.do_events(300).unwrap();
    assert!(wait_until(WAIT, || conns.load(Ordering::SeqCst) == 1));
    assert_eq!(c.pending(), 3);
    drop(c);
    let s = h.seen.lock().unwrap();
    let done: Vec<(u64, i32)> = s.done.iter().map(|d| (d.0, d.2)).collect();
    assert_eq!(done, ids.iter().map(|&id| (id, code::INTERRUPTED)).collect::<Vec<_>>());
    assert_eq!((s.connected, s.disconnected), (1, 1));
}

#[test]
fn close_keeps_the_client_usable() {
    let ctx = setup(&[]);
    let (c, h) = client(ctx.port, &[]);
    let queued = c.send_async(&hl7("Q1")).unwrap();
    c.close().unwrap();
    assert_eq!(c.pending(), 0);
    assert_eq!(h.seen.lock().unwrap().done, vec![(queued, "Q1".to_string(), code::INTERRUPTED, None, 0)]);
    // Never connected: no Disconnected. A later send connects and is acknowledged.
    assert_eq!(h.seen.lock().unwrap().disconnected, 0);
    c.send(&hl7("Q2")).unwrap();
    assert_eq!(h.seen.lock().unwrap().done.last().unwrap().2, 0);
}
