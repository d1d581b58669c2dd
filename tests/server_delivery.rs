//! HL7 delivery semantics over real sockets: duplicates answered with the original
//! acknowledgement (also after reconnecting), the whole-message event, batches, character
//! sets, host-supplied replies and application acknowledgements, in both event modes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mllp::{
    AckCode, AckOutEvent, ConnectionId, DuplicateEvent, EventHandler, MessageEvent, Server, TransferBoundaryEvent,
};

#[derive(Default)]
struct Seen {
    messages: Vec<(ConnectionId, u64, Vec<u8>, String, String, bool)>,
    duplicates: Vec<(ConnectionId, Vec<u8>, String, Vec<u8>)>,
    starts: Vec<(String, String)>,
    ack_outs: Vec<(u64, String)>,
    errors: Vec<i32>,
}

/// Records the new events; `defer` leaves every AckOut open, `reply` answers with own bytes.
#[derive(Default)]
struct H {
    seen: Mutex<Seen>,
    defer: bool,
    reply: Option<Vec<u8>>,
}

impl EventHandler for H {
    fn start_transfer(&self, e: &TransferBoundaryEvent<'_>) {
        self.seen.lock().unwrap().starts.push((e.charset.to_string(), e.encoding.to_string()));
    }
    fn message(&self, e: &MessageEvent<'_>) {
        self.seen.lock().unwrap().messages.push((
            e.connection_id,
            e.message_seq,
            e.data.to_vec(),
            e.charset.to_string(),
            e.encoding.to_string(),
            e.decoded,
        ));
    }
    fn duplicate(&self, e: &DuplicateEvent<'_>) {
        self.seen.lock().unwrap().duplicates.push((
            e.connection_id,
            e.message.to_vec(),
            e.control_id.to_string(),
            e.reply.to_vec(),
        ));
    }
    fn ack_out(&self, e: &mut AckOutEvent<'_>) {
        self.seen.lock().unwrap().ack_outs.push((e.message_seq, e.encoding.to_string()));
        e.defer = self.defer;
        e.reply = self.reply.clone();
    }
    fn error(&self, e: &mllp::ErrorEvent<'_>) {
        self.seen.lock().unwrap().errors.push(e.error_code);
    }
}

fn start(configs: &[&str], h: Arc<H>) -> (Arc<Server>, u16) {
    let s = new_server();
    for c in configs {
        s.config(c).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    s.set_handler(h);
    s.start_listening().unwrap();
    let port = s.local_port();
    (s, port)
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    assert!(wait_until(Duration::from_secs(10), f), "timed out waiting for {what}");
}

#[test]
fn a_resend_after_reconnecting_gets_the_original_ack_and_is_not_delivered() {
    for mode in ["Thread", "DoEvents"] {
        let h = Arc::new(H::default());
        let (s, port) = start(&["AckMode=HL7", "DuplicateWindow=1000", &format!("EventMode={mode}")], h.clone());
        let pump = |s: &Server| {
            if mode == "DoEvents" {
                s.do_events(20).unwrap();
            }
        };
        let msg = sample("adt_a01.hl7");
        let mut c = Client::connect(port);
        c.send_msg(&msg);
        let first = loop {
            pump(&s);
            if let Ok(f) = c.read_frame_within(Duration::from_millis(50)) {
                break f;
            }
        };
        drop(c);
        // The sender timed out, reconnects and resends the same bytes.
        let mut c = Client::connect(port);
        c.send_msg(&msg);
        let again = loop {
            pump(&s);
            if let Ok(f) = c.read_frame_within(Duration::from_millis(50)) {
                break f;
            }
        };
        assert_eq!(again, first, "{mode}: the same acknowledgement, byte for byte");
        wait("the Duplicate event", || {
            pump(&s);
            !h.seen.lock().unwrap().duplicates.is_empty()
        });
        let seen = h.seen.lock().unwrap();
        assert_eq!(seen.messages.len(), 1, "{mode}: delivered once");
        assert_eq!(seen.ack_outs.len(), 1);
        let (_, dmsg, ctl, reply) = &seen.duplicates[0];
        assert_eq!((dmsg, ctl.as_str(), reply), (&msg, "MSG00001", &first));
        assert_eq!(s.duplicate_count(), 1);
        assert_eq!(s.config("DuplicateCount").unwrap(), "1");
        drop(seen);
        // A reused control id with other content is delivered.
        let mut other = msg.clone();
        other.extend_from_slice(b"NTE|1||changed\r");
        c.send_msg(&other);
        loop {
            pump(&s);
            if c.read_frame_within(Duration::from_millis(50)).is_ok() {
                break;
            }
        }
        assert_eq!(h.seen.lock().unwrap().messages.len(), 2, "{mode}");
        s.close().unwrap();
    }
}

#[test]
fn duplicates_are_delivered_when_the_window_is_off() {
    let h = Arc::new(H::default());
    let (s, port) = start(&[], h.clone());
    let mut c = Client::connect(port);
    for _ in 0..2 {
        c.send_msg(&hl7("SAME"));
        c.expect_ack();
    }
    wait("two messages", || h.seen.lock().unwrap().messages.len() == 2);
    assert_eq!(s.duplicate_count(), 0);
    assert_eq!(s.config("DuplicateWindow").unwrap(), "0");
    assert!(s.config("DuplicateWindow=10000001").is_err());
}

#[test]
fn batches_are_split_into_messages_with_one_reply() {
    let h = Arc::new(H::default());
    let (s, port) = start(&["ProcessBatch=True", "AckMode=HL7"], h.clone());
    assert_eq!(s.config("ProcessBatch").unwrap(), "True");
    let mut c = Client::connect(port);
    c.send_msg(&sample("batch_adt.hl7"));
    let reply = c.read_frame();
    let segs = segments(&reply);
    let names: Vec<&str> = segs.iter().map(|s| &s[..3]).collect();
    assert_eq!(names, ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "MSH", "MSA", "BTS", "FTS"]);
    assert_eq!(segs[3], "MSA|AA|B00000");
    let seen = h.seen.lock().unwrap();
    let seqs: Vec<u64> = seen.messages.iter().map(|m| m.1).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(seen.messages.iter().all(|m| m.2.starts_with(b"MSH|")));
    assert_eq!(seen.ack_outs.len(), 3);
    drop(seen);
    // A malformed batch is refused whole.
    c.send_msg(b"BHS|^~\\&|A\rMSH|^~\\&|A||||||ADT^A01|X|P|2.5\r");
    let nak = c.read_frame();
    assert!(String::from_utf8_lossy(&nak).contains("MSA|AR|X"), "{}", String::from_utf8_lossy(&nak));
    wait("error 2030", || h.seen.lock().unwrap().errors.contains(&mllp::code::BAD_BATCH));
    assert_eq!(h.seen.lock().unwrap().messages.len(), 3);
}

#[test]
fn character_sets_are_reported_and_converted() {
    let h = Arc::new(H::default());
    let (s, port) = start(&["DecodeToUTF8=True", "AckMode=HL7"], h.clone());
    let msg = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|L1|P|2.5||||||ISO-8859-1\rPID|1||Jos\xE9\r".to_vec();
    let mut c = Client::connect(port);
    // Sent in two writes, split right before the non-ASCII byte.
    let f = frame(&msg);
    let cut = f.iter().position(|&b| b == 0xE9).unwrap();
    c.send_raw(&f[..cut]);
    std::thread::sleep(Duration::from_millis(50));
    c.send_raw(&f[cut..]);
    let ack = c.read_frame();
    assert!(ack.ends_with(b"MSA|AA|L1\r"));
    // The ACK declares the message's character set in MSH-18.
    assert_eq!(seg_fields(&segments(&ack)[0])[18], "ISO-8859-1");
    let seen = h.seen.lock().unwrap();
    let (_, _, data, charset, encoding, decoded) = &seen.messages[0];
    assert!(data.ends_with("José\r".as_bytes()));
    assert_eq!((charset.as_str(), encoding.as_str(), *decoded), ("ISO-8859-1", "8859/1", true));
    assert_eq!(seen.starts[0], ("ISO-8859-1".to_string(), "8859/1".to_string()));
    assert_eq!(seen.ack_outs[0].1, "8859/1");
    drop(seen);
    // Unmappable bytes: refused (AE), not delivered.
    c.send_msg(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|A1|P|2.5||||||ASCII\rPID|1||Jos\xE9\r");
    assert!(c.read_frame().ends_with(b"MSA|AE|A1\r"));
    wait("error 2031", || h.seen.lock().unwrap().errors.contains(&mllp::code::CHARSET));
    assert_eq!(h.seen.lock().unwrap().messages.len(), 1);
    assert!(s.config("DefaultCharset=KLINGON").is_err());
    s.config("DefaultCharset=latin1").unwrap();
    assert_eq!(s.config("DefaultCharset").unwrap(), "8859/1");
}

#[test]
fn host_replies_and_application_acknowledgements() {
    let h = Arc::new(H { defer: true, ..H::default() });
    let (s, port) = start(&["AckMode=HL7", "DuplicateWindow=10"], h.clone());
    let mut c = Client::connect(port);
    let msg = hl7("D1");
    c.send_msg(&msg);
    wait("AckOut", || !h.seen.lock().unwrap().messages.is_empty());
    let (id, seq) = {
        let seen = h.seen.lock().unwrap();
        (seen.messages[0].0, seen.messages[0].1)
    };
    let mine = mllp::hl7::build_ack_now(&msg, AckCode::AA, None);
    s.acknowledge_with(id, seq, &mine).unwrap();
    assert_eq!(c.read_frame(), mine);
    // The host's own positive reply is what a resend gets.
    c.send_msg(&msg);
    assert_eq!(c.read_frame(), mine);

    // Enhanced mode: MSH-15 AL, MSH-16 AL: the commit accept, then the application ACK.
    let enhanced = b"MSH|^~\\&|SND|SF|RCV|RF|2024||ADT^A01|E1|P|2.5|||AL|AL\rPID|1\r".to_vec();
    c.send_msg(&enhanced);
    wait("second message", || h.seen.lock().unwrap().messages.len() == 2);
    let seq = h.seen.lock().unwrap().messages[1].1;
    s.acknowledge(id, seq, mllp::Verdict::Accept).unwrap();
    let ca = c.read_frame();
    assert!(ca.ends_with(b"MSA|CA|E1\r"), "{}", String::from_utf8_lossy(&ca));
    assert!(s.send_app_ack(id, &enhanced, AckCode::AA, Some("stored")).unwrap());
    let aa = c.read_frame();
    assert!(aa.ends_with(b"MSA|AA|E1|stored\r"), "{}", String::from_utf8_lossy(&aa));
    assert_ne!(segments(&aa)[0], segments(&ca)[0], "its own control id");
    // MSH-16 ER: no application ACK for a success; NE: never.
    let er = b"MSH|^~\\&|SND|SF|RCV|RF|2024||ADT^A01|E2|P|2.5|||AL|ER\r".to_vec();
    assert!(!s.send_app_ack(id, &er, AckCode::AA, None).unwrap());
    assert!(s.send_app_ack(id, &er, AckCode::AE, None).unwrap());
    assert!(c.read_frame().ends_with(b"MSA|AE|E2\r"));
    assert!(!s.send_app_ack(id, &hl7("O1"), AckCode::AA, None).unwrap(), "original mode: none");
    assert!(s.send_app_ack(id, &er, AckCode::CA, None).is_err());
}
