//! Many clients, a client that never reads, and MaxConnections.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use mllp::code;

#[test]
fn two_hundred_concurrent_clients_each_get_all_their_acks() {
    const CLIENTS: usize = 200;
    const MSGS: usize = 5;
    let ctx = setup(&["AckMode=HL7", "LogLevel=0"]);
    let port = ctx.port;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let t = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                b.wait();
                for j in 0..MSGS {
                    let ctl = format!("C{i}M{j}");
                    let ack = c.round_trip(&hl7(&ctl));
                    let msa = segment(&ack, "MSA").expect("MSA");
                    assert_eq!(msa[1], "AA");
                    assert_eq!(msa[2], ctl, "ACK answers this client's message");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert!(ctx.rec.wait_count(CLIENTS * MSGS, WAIT, |e| matches!(e, Ev::AckOut { .. })));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Connected { .. })), CLIENTS);
    assert!(ctx.rec.error_codes().is_empty(), "{:?}", ctx.rec.error_codes());
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(wait_until(WAIT, || ctx.server.connection_count() == 0));
}

#[test]
fn client_that_never_reads_does_not_stall_others() {
    // Large HL7 ACKs and small server-side send buffers fill the silent client's path quickly.
    let ctx = setup(&["AckMode=HL7", "LogLevel=0", "OutBufferSize=4096"]);
    let hog = TcpStream::connect(("127.0.0.1", ctx.port)).unwrap();
    socket2::SockRef::from(&hog).set_recv_buffer_size(4096).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let hog_ctl = hog.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut hog = hog;
        let mut batch = Vec::new();
        for i in 0..64 {
            batch.extend(frame(&hl7(&format!("HOG{i:05}"))));
        }
        let start = Instant::now();
        let mut sent = 0usize;
        // Write until the server stops reading (a write times out) or 6 s pass.
        while start.elapsed() < Duration::from_secs(6) {
            match hog.write_all(&batch) {
                Ok(()) => sent += 64,
                Err(_) => return (sent, true),
            }
        }
        (sent, false)
    });

    let mut c = ctx.connect();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_millis(1500) || n < 20 {
        let ack = c.round_trip(&hl7(&format!("FAST{n}")));
        assert_eq!(segment(&ack, "MSA").unwrap()[2], format!("FAST{n}"));
        n += 1;
        if n > 2000 {
            break;
        }
    }
    let (sent, blocked) = writer.join().unwrap();
    // After the hog is blocked, others still go through (each within the read bound: a
    // liveness check, not a latency figure — those are BENCHMARKS.md's).
    for k in 0..20 {
        c.send_msg(&hl7(&format!("LATE{k}")));
        let ack = c.read_frame_within(Duration::from_secs(2)).expect("ACK while hog blocked");
        assert_eq!(segment(&ack, "MSA").unwrap()[2], format!("LATE{k}"));
    }
    let _ = hog_ctl.shutdown(std::net::Shutdown::Both);
    assert!(blocked, "the server kept reading from a client that never reads its ACKs ({sent} messages)");
}

#[test]
fn max_connections_two_refuses_the_third() {
    let ctx = setup(&["MaxConnections=2"]);
    let mut a = ctx.connect();
    let mut b = ctx.connect();
    ctx.rec.connected_id(1);
    let mut c = ctx.connect();
    assert!(c.closed_within(WAIT), "third connection not closed");
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(code::TOO_MANY_CONNECTIONS))));
    assert_eq!(ctx.server.connection_count(), 2);
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Connected { .. })), 2);
    a.send_msg(&hl7("A"));
    a.expect_ack();
    b.send_msg(&hl7("B"));
    b.expect_ack();
    // A slot freed is usable again.
    drop(a);
    assert!(wait_until(WAIT, || ctx.server.connection_count() == 1));
    let mut d = ctx.connect();
    d.send_msg(&hl7("D"));
    d.expect_ack();
}
