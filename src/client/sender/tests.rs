//! The sending rules driven without sockets: bytes and instants in, frames and outcomes out.

use super::*;

fn at(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

fn msg(id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|SND|FAC|RCV|FAC|20260101120000||ADT^A01|{id}|P|2.5\rPID|1||42\r").into_bytes()
}

fn hl7_ack(code: &str, id: &str, text: &str) -> Vec<u8> {
    let mut f = vec![0x0B];
    f.extend_from_slice(
        format!("MSH|^~\\&|RCV|FAC|SND|FAC|20260101120001||ACK|A{id}|P|2.5\rMSA|{code}|{id}|{text}\r").as_bytes(),
    );
    f.extend_from_slice(&[0x1C, 0x0D]);
    f
}

const ACK: &[u8] = &[0x0B, 0x06, 0x1C, 0x0D];
const NAK: &[u8] = &[0x0B, 0x15, 0x1C, 0x0D];

fn cfg(mode: AckMode) -> SenderConfig {
    SenderConfig {
        ack_mode: mode,
        timeout: Some(Duration::from_secs(1)),
        max_retries: 2,
        retry_delay: Duration::from_millis(100),
        retry_max_delay: Duration::from_millis(250),
        ..SenderConfig::default()
    }
}

/// Takes what the sender wants written, as frames' payloads.
fn written(s: &mut Sender, now: Instant) -> Vec<Vec<u8>> {
    let out = s.transmit().to_vec();
    s.consume_output(out.len(), now);
    out.split(|&b| b == 0x0B).filter(|f| !f.is_empty()).map(|f| f[..f.len() - 2].to_vec()).collect()
}

fn events(s: &mut Sender) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).filter(|e| !matches!(e, Event::Log { .. })).collect()
}

fn outcomes(evs: &[Event]) -> Vec<&Outcome> {
    evs.iter().filter_map(|e| if let Event::Done(o) = e { Some(o) } else { None }).collect()
}

#[test]
fn one_message_outstanding_and_commit_ack_completes_it() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Mllp));
    let a = s.queue(msg("M1"), t).unwrap();
    let b = s.queue(msg("M2"), t).unwrap();
    assert!(s.transmit().is_empty(), "nothing is written before the connection opens");
    assert!(s.wants_connect(t));
    s.on_connected(t);
    assert_eq!(written(&mut s, t), vec![msg("M1")], "window of one: M2 waits for M1's ACK");
    s.handle_input(ACK, at(t, 5));
    let evs = events(&mut s);
    let done = outcomes(&evs);
    assert_eq!((done[0].id, done[0].result.is_ok(), done[0].ack, done[0].attempts), (a, true, Some(AckKind::Ack), 1));
    assert_eq!(written(&mut s, t), vec![msg("M2")]);
    s.handle_input(ACK, at(t, 6));
    assert_eq!(outcomes(&events(&mut s))[0].id, b);
    assert_eq!(s.pending(), 0);
}

#[test]
fn nak_is_resent_after_the_backoff_then_acked() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Mllp));
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    s.handle_input(NAK, at(t, 1));
    assert!(outcomes(&events(&mut s)).is_empty(), "a NAK with retries left is not the outcome");
    assert!(s.transmit().is_empty(), "not resent before the backoff");
    assert_eq!(s.poll_timeout(), Some(at(t, 101)));
    s.handle_timeout(at(t, 101));
    assert_eq!(written(&mut s, t), vec![msg("M1")], "the same bytes again");
    s.handle_input(ACK, at(t, 102));
    let evs = events(&mut s);
    let o = outcomes(&evs)[0];
    assert_eq!((o.result.is_ok(), o.attempts), (true, 2));
}

#[test]
fn retries_are_bounded_and_the_backoff_doubles_up_to_its_cap() {
    let t = Instant::now();
    let mut s = Sender::new(SenderConfig { max_retries: 3, ..cfg(AckMode::Mllp) });
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    let mut now = t;
    let mut gaps = Vec::new();
    for _ in 0..3 {
        written(&mut s, now);
        s.handle_input(NAK, now);
        let next = s.poll_timeout().unwrap();
        gaps.push((next - now).as_millis());
        now = next;
        s.handle_timeout(now);
    }
    assert_eq!(gaps, vec![100, 200, 250]);
    written(&mut s, now);
    s.handle_input(NAK, now);
    let evs = events(&mut s);
    let o = outcomes(&evs)[0];
    assert_eq!(o.attempts, 4);
    assert_eq!(o.result.as_ref().unwrap_err().code, code::NAK_RECEIVED);
    assert!(s.transmit().is_empty() && s.pending() == 0);
}

#[test]
fn hl7_ack_matches_by_msa2_and_a_wrong_one_is_never_taken_for_the_next() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Hl7));
    let a = s.queue(msg("M1"), t).unwrap();
    s.queue(msg("M2"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    s.handle_input(&hl7_ack("AA", "M0", ""), at(t, 1));
    let evs = events(&mut s);
    assert!(matches!(&evs[0], Event::AckIn { message: None, .. }));
    assert!(matches!(&evs[1], Event::Error(e) if e.code == code::ACK_MISMATCH));
    assert!(outcomes(&evs).is_empty());
    assert!(s.transmit().is_empty(), "M2 is not sent: M1 still awaits its own ACK");
    s.handle_input(&hl7_ack("AA", "M1", ""), at(t, 2));
    let evs = events(&mut s);
    assert!(matches!(&evs[0], Event::AckIn { message: Some(id), ack } if *id == a && ack.control_id == "M1"));
    assert_eq!(outcomes(&evs)[0].ack, Some(AckKind::Hl7(AckCode::AA)));
    assert_eq!(written(&mut s, t), vec![msg("M2")]);
}

#[test]
fn ae_reports_its_text_and_ends_without_retry_when_asked() {
    let t = Instant::now();
    let mut s = Sender::new(SenderConfig { retry_on_negative: false, ..cfg(AckMode::Hl7) });
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    s.handle_input(&hl7_ack("AE", "M1", "Unknown patient"), t);
    let evs = events(&mut s);
    let o = outcomes(&evs)[0];
    let e = o.result.as_ref().unwrap_err();
    assert_eq!((e.code, o.attempts), (code::APP_ERROR, 1));
    assert!(e.message.contains("Unknown patient"), "{}", e.message);
    assert!(matches!(&evs[0], Event::AckIn { ack, .. } if ack.text == "Unknown patient"));
}

#[test]
fn ar_and_cr_are_rejects_ce_is_an_error() {
    for (code_text, want) in [("AR", code::APP_REJECT), ("CR", code::APP_REJECT), ("CE", code::APP_ERROR)] {
        let t = Instant::now();
        let mut s = Sender::new(SenderConfig { max_retries: 0, ..cfg(AckMode::Hl7) });
        s.queue(msg("M1"), t).unwrap();
        s.on_connected(t);
        written(&mut s, t);
        s.handle_input(&hl7_ack(code_text, "M1", ""), t);
        let evs = events(&mut s);
        assert_eq!(outcomes(&evs)[0].result.as_ref().unwrap_err().code, want, "{code_text}");
    }
}

#[test]
fn timeout_closes_the_connection_and_resends_on_the_next_one() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Mllp));
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    assert_eq!(s.poll_timeout(), Some(at(t, 1000)));
    s.handle_timeout(at(t, 1000));
    let close = s.take_close().expect("the connection is closed after a timeout");
    assert_eq!(close.code, code::ACK_TIMEOUT);
    s.on_disconnected(close, at(t, 1000));
    assert!(!s.wants_connect(at(t, 1050)), "backoff before reconnecting");
    assert!(s.wants_connect(at(t, 1100)));
    s.on_connected(at(t, 1100));
    assert_eq!(written(&mut s, at(t, 1100)), vec![msg("M1")]);
    // A late ACK of the first attempt now arrives: it answers M1 (the same message), never a later one.
    s.handle_input(ACK, at(t, 1101));
    assert_eq!(outcomes(&events(&mut s))[0].attempts, 2);
}

#[test]
fn timeouts_after_the_retries_fail_with_ack_timeout() {
    let t = Instant::now();
    let mut s = Sender::new(SenderConfig { max_retries: 1, ..cfg(AckMode::Mllp) });
    s.queue(msg("M1"), t).unwrap();
    let mut now = t;
    for _ in 0..2 {
        assert!(s.wants_connect(now));
        s.on_connected(now);
        written(&mut s, now);
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        if let Some(e) = s.take_close() {
            s.on_disconnected(e, now);
        }
        if let Some(next) = s.poll_timeout() {
            now = next;
        }
    }
    let evs = events(&mut s);
    let o = outcomes(&evs)[0];
    assert_eq!((o.result.as_ref().unwrap_err().code, o.attempts), (code::ACK_TIMEOUT, 2));
}

#[test]
fn a_dropped_connection_resends_the_outstanding_message() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Mllp));
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    s.on_disconnected(Error::new(code::DROPPED, "peer closed"), at(t, 10));
    assert!(outcomes(&events(&mut s)).is_empty());
    let next = s.poll_timeout().unwrap();
    assert!(s.wants_connect(next));
    s.on_connected(next);
    assert_eq!(written(&mut s, next), vec![msg("M1")]);
    s.handle_input(ACK, next);
    assert_eq!(outcomes(&events(&mut s))[0].attempts, 2);
}

#[test]
fn connect_failures_count_as_attempts() {
    let t = Instant::now();
    let mut s = Sender::new(SenderConfig { max_retries: 1, ..cfg(AckMode::Mllp) });
    s.queue(msg("M1"), t).unwrap();
    s.queue(msg("M2"), t).unwrap();
    s.on_connect_failed(Error::new(10061, "refused"), t, false);
    assert!(!s.wants_connect(t));
    let next = s.poll_timeout().unwrap();
    s.on_connect_failed(Error::new(10061, "refused"), next, false);
    let evs = events(&mut s);
    let o = outcomes(&evs);
    assert_eq!((o.len(), o[0].result.as_ref().unwrap_err().code, o[0].attempts), (1, 10061, 2));
    assert_eq!(s.pending(), 1, "M2 still waits");
}

#[test]
fn ack_mode_none_completes_once_written() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::None));
    let a = s.queue(msg("M1"), t).unwrap();
    let b = s.queue(msg("M2"), t).unwrap();
    s.on_connected(t);
    let out = s.transmit().len();
    s.consume_output(out - 1, t);
    let evs = events(&mut s);
    assert!(outcomes(&evs).is_empty(), "not done before its last byte is written");
    s.consume_output(1, t);
    let mut all = outcomes(&events(&mut s)).into_iter().map(|o| (o.id, o.ack)).collect::<Vec<_>>();
    written(&mut s, t);
    all.extend(outcomes(&events(&mut s)).into_iter().map(|o| (o.id, o.ack)));
    assert_eq!(all, vec![(a, None), (b, None)]);
    assert_eq!(s.poll_timeout(), None, "no acknowledgement deadline");
}

#[test]
fn a_window_keeps_several_outstanding_and_matches_out_of_order() {
    let t = Instant::now();
    let mut s = Sender::new(SenderConfig { max_outstanding: 3, ..cfg(AckMode::Hl7) });
    for i in 1..=4 {
        s.queue(msg(&format!("M{i}")), t).unwrap();
    }
    s.on_connected(t);
    assert_eq!(written(&mut s, t).len(), 3);
    s.handle_input(&hl7_ack("AA", "M2", ""), t);
    let evs = events(&mut s);
    assert_eq!(outcomes(&evs)[0].control_id, "M2");
    assert_eq!(written(&mut s, t), vec![msg("M4")]);
}

#[test]
fn messages_that_cannot_be_sent_are_refused_up_front() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Hl7));
    assert_eq!(s.queue(Vec::new(), t).unwrap_err().code, code::INVALID_ARGUMENT);
    assert_eq!(s.queue(b"MSH|^~\\&|A\x1C|B\r".to_vec(), t).unwrap_err().code, code::INVALID_ARGUMENT);
    assert_eq!(s.queue(b"PID|1\r".to_vec(), t).unwrap_err().code, code::INVALID_ARGUMENT, "HL7 mode needs MSH-10");
    let mut s = Sender::new(cfg(AckMode::Mllp));
    assert!(s.queue(b"not hl7 at all".to_vec(), t).is_ok(), "commit mode frames any bytes");
}

#[test]
fn frames_that_are_not_acknowledgements_are_reported_and_ignored() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Hl7));
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    let mut f = vec![0x0B];
    f.extend_from_slice(&msg("X"));
    f.extend_from_slice(&[0x1C, 0x0D]);
    s.handle_input(&f, t);
    let evs = events(&mut s);
    assert!(matches!(&evs[..], [Event::Error(e)] if e.code == code::INVALID_DATA));
    assert_eq!(s.pending(), 1);
}

#[test]
fn a_permanent_connect_failure_ends_every_queued_message_at_once() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Mllp));
    s.queue(msg("M1"), t).unwrap();
    s.queue(msg("M2"), t).unwrap();
    s.on_connect_failed(Error::new(code::CERTIFICATE, "key does not match"), t, true);
    let evs = events(&mut s);
    let o = outcomes(&evs);
    assert_eq!(o.len(), 2);
    assert!(o.iter().all(|o| o.attempts == 1 && o.result.as_ref().unwrap_err().code == code::CERTIFICATE));
    assert!(!s.wants_connect(t) && s.pending() == 0);
}

#[test]
fn hl7_mode_never_takes_a_commit_block_for_a_message() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Hl7));
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    s.handle_input(ACK, t);
    let evs = events(&mut s);
    assert!(matches!(&evs[0], Event::AckIn { message: None, .. }));
    assert!(matches!(&evs[1], Event::Error(e) if e.code == code::ACK_MISMATCH));
    assert_eq!(s.pending(), 1);
}

#[test]
fn commit_mode_takes_an_hl7_ack_only_when_it_names_the_message() {
    let t = Instant::now();
    let mut s = Sender::new(cfg(AckMode::Mllp));
    s.queue(msg("M1"), t).unwrap();
    s.on_connected(t);
    written(&mut s, t);
    s.handle_input(&hl7_ack("AA", "OTHER", ""), t);
    assert!(outcomes(&events(&mut s)).is_empty());
    s.handle_input(&hl7_ack("AA", "M1", ""), t);
    assert_eq!(outcomes(&events(&mut s))[0].ack, Some(AckKind::Hl7(AckCode::AA)));
}
