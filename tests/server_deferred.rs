//! Deferred acknowledgement: AckOut leaves the decision open and the host acknowledges later,
//! from another thread; replies still leave in message order.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mllp::{AckOutEvent, ConnectionId, RejectCode, Verdict};

#[test]
fn deferred_ack_is_sent_only_when_acknowledged_and_in_order() {
    let seen: Arc<Mutex<Vec<(ConnectionId, u64)>>> = Arc::default();
    let s2 = seen.clone();
    let ctx = setup_with(&[], move |_| Hooks {
        ack_out: Some(Box::new(move |e: &mut AckOutEvent<'_>| {
            e.defer = true;
            s2.lock().unwrap().push((e.connection_id, e.message_seq));
        })),
        ..Hooks::default()
    });
    let mut c = ctx.connect();
    // Two messages pipelined: both wait for a decision.
    c.send_raw(&[frame(&hl7("M1")), frame(&hl7("M2"))].concat());
    assert!(wait_until(WAIT, || seen.lock().unwrap().len() == 2));
    c.expect_silence(Duration::from_millis(300));
    let (id, seq1) = seen.lock().unwrap()[0];
    let (_, seq2) = seen.lock().unwrap()[1];
    // Deciding the second first sends nothing: the first still holds the line.
    let s = ctx.server.clone();
    std::thread::spawn(move || s.acknowledge(id, seq2, Verdict::Reject(RejectCode::AE)).unwrap()).join().unwrap();
    c.expect_silence(Duration::from_millis(300));
    ctx.server.acknowledge(id, seq1, Verdict::Accept).unwrap();
    c.expect_ack();
    c.expect_nak();
    // A sequence number not awaiting a decision is ignored; a closed connection is an error.
    ctx.server.acknowledge(id, seq1, Verdict::Accept).unwrap();
    drop(c);
    assert!(wait_until(WAIT, || ctx.server.connection_count() == 0));
    assert_eq!(ctx.server.acknowledge(id, 99, Verdict::Accept).unwrap_err().code, mllp::code::NO_SUCH_CONNECTION);
}

#[test]
fn deferred_hl7_ack_uses_the_reject_code() {
    let seen: Arc<Mutex<Vec<(ConnectionId, u64)>>> = Arc::default();
    let s2 = seen.clone();
    let ctx = setup_with(&["AckMode=HL7"], move |_| Hooks {
        ack_out: Some(Box::new(move |e: &mut AckOutEvent<'_>| {
            e.defer = true;
            s2.lock().unwrap().push((e.connection_id, e.message_seq));
        })),
        ..Hooks::default()
    });
    let mut c = ctx.connect();
    c.send_msg(&hl7("R1"));
    assert!(wait_until(WAIT, || seen.lock().unwrap().len() == 1));
    let (id, seq) = seen.lock().unwrap()[0];
    ctx.server.acknowledge(id, seq, Verdict::Reject(RejectCode::AR)).unwrap();
    let reply = String::from_utf8_lossy(&c.read_frame()).to_string();
    assert!(reply.contains("MSA|AR|R1"), "{reply}");
}
