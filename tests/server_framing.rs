//! MLLP framing on the receiving side: garbage, splits, pipelining, oversize, timeouts,
//! custom framing bytes, version 1 and HL7 acknowledgements.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mllp::{code, RejectCode, Verdict};

/// Messages delivered so far (AckOut or EndTransfer order), as output by Transfer events.
fn delivered(rec: &Recorder) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    for e in rec.events() {
        match e {
            Ev::StartTransfer { .. } => cur = Some(Vec::new()),
            Ev::Transfer { data, .. } => cur.as_mut().expect("Transfer before Start").extend(data),
            Ev::EndTransfer { .. } => out.push(cur.take().expect("End without Start")),
            _ => {}
        }
    }
    out
}

fn wait_delivered(rec: &Recorder, n: usize) {
    assert!(
        rec.wait_count(n, WAIT, |e| matches!(e, Ev::EndTransfer { .. })),
        "expected {n} messages; events: {:?}",
        rec.events()
    );
}

#[test]
fn garbage_before_the_start_block_is_skipped() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let m = sample("adt_a01.hl7");
    let mut bytes = b"garbage \r\n\x1c\r noise".to_vec();
    bytes.extend(frame(&m));
    c.send_raw(&bytes);
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![m]);
}

#[test]
fn frame_split_at_every_byte_position() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let m = hl7("SPLIT");
    let f = frame(&m);
    for k in 1..f.len() {
        c.send_raw(&f[..k]);
        std::thread::sleep(Duration::from_millis(1));
        c.send_raw(&f[k..]);
        c.expect_ack();
    }
    let n = f.len() - 1;
    wait_delivered(&ctx.rec, n);
    let d = delivered(&ctx.rec);
    assert_eq!(d.len(), n);
    assert!(d.iter().all(|x| *x == m));
    assert!(ctx.rec.error_codes().is_empty(), "{:?}", ctx.rec.error_codes());
}

#[test]
fn frame_sent_one_byte_at_a_time() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let m = sample("oru_r01.hl7");
    let f = frame(&m);
    let t = Instant::now();
    for (i, b) in f.iter().enumerate() {
        c.send_raw(&[*b]);
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![m]);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn many_frames_in_one_write_are_all_acked_in_order() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let msgs: Vec<Vec<u8>> = (0..50).map(|i| hl7(&format!("P{i:03}"))).collect();
    let mut bytes = Vec::new();
    for m in &msgs {
        bytes.extend(frame(m));
    }
    c.send_raw(&bytes);
    for _ in 0..msgs.len() {
        c.expect_ack();
    }
    wait_delivered(&ctx.rec, msgs.len());
    assert_eq!(delivered(&ctx.rec), msgs);
    let seqs: Vec<u64> = ctx
        .rec
        .events()
        .iter()
        .filter_map(|e| match e {
            Ev::AckOut { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
}

#[test]
fn many_frames_in_one_write_hl7_acks_follow_message_order() {
    let ctx = setup(&["AckMode=HL7"]);
    let mut c = ctx.connect();
    let msgs: Vec<Vec<u8>> = (0..30).map(|i| hl7(&format!("Q{i:03}"))).collect();
    let mut bytes = Vec::new();
    for m in &msgs {
        bytes.extend(frame(m));
    }
    c.send_raw(&bytes);
    for i in 0..msgs.len() {
        let ack = c.read_frame();
        let msa = segment(&ack, "MSA").expect("MSA");
        assert_eq!(msa[1], "AA");
        assert_eq!(msa[2], format!("Q{i:03}"));
    }
}

#[test]
fn oversize_n_accepted_n_plus_1_refused_then_resync() {
    let ctx = setup(&["MaxMessageSize=100"]);
    let mut c = ctx.connect();
    let mut exact = b"MSH|^~\\&|".to_vec();
    exact.resize(100, b'a');
    let mut over = b"MSH|^~\\&|".to_vec();
    over.resize(101, b'b');
    c.send_msg(&exact);
    c.expect_ack();
    c.send_msg(&over);
    c.expect_nak();
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(code::INVALID_DATA))));
    let good = hl7("AFTER");
    c.send_msg(&good);
    c.expect_ack();
    // Oversize frame followed by a good one in the same write; a start block inside the
    // oversized remainder is where the connection resynchronises.
    let mut huge = b"MSH|".to_vec();
    huge.resize(500, b'c');
    let mut bytes = frame(&huge);
    bytes.extend(frame(&hl7("AFTER2")));
    c.send_raw(&bytes);
    c.expect_nak();
    c.expect_ack();
    wait_delivered(&ctx.rec, 3);
    assert_eq!(delivered(&ctx.rec), vec![exact, good, hl7("AFTER2")]);
    assert_eq!(ctx.rec.error_codes(), vec![code::INVALID_DATA, code::INVALID_DATA]);
    assert_eq!(ctx.server.config("MaxMessageSize").unwrap(), "100");
}

#[test]
fn oversize_detected_across_reads_and_resync_without_end_block() {
    let ctx = setup(&["MaxMessageSize=64"]);
    let mut c = ctx.connect();
    // Exactly N bytes arriving in pieces: accepted.
    let mut exact = b"MSH|".to_vec();
    exact.resize(64, b'e');
    let f = frame(&exact);
    c.send_raw(&f[..40]);
    std::thread::sleep(Duration::from_millis(20));
    c.send_raw(&f[40..65]);
    std::thread::sleep(Duration::from_millis(20));
    c.send_raw(&f[65..]);
    c.expect_ack();
    // N bytes, then the (N+1)th in a later read: refused.
    let mut over = b"MSH|".to_vec();
    over.resize(65, b'o');
    let f = frame(&over);
    c.send_raw(&f[..65]);
    std::thread::sleep(Duration::from_millis(20));
    c.send_raw(&f[65..]);
    c.expect_nak();
    // An oversized frame that never ends: the next start block resynchronises.
    let mut bytes = vec![SB];
    bytes.extend(std::iter::repeat(b'z').take(300));
    let short = b"MSH|^~\\&|RESYNC".to_vec();
    bytes.extend(frame(&short));
    c.send_raw(&bytes);
    c.expect_nak();
    c.expect_ack();
    wait_delivered(&ctx.rec, 2);
    assert_eq!(delivered(&ctx.rec), vec![exact, short]);
    assert_eq!(ctx.rec.error_codes(), vec![671, 671]);
}

#[test]
fn default_max_message_size_is_64_mib_and_enforced() {
    let ctx = setup(&[]);
    assert_eq!(ctx.server.config("MaxMessageSize").unwrap(), (64 * 1024 * 1024).to_string());
    let mut c = ctx.connect();
    let mut over = b"MSH|^~\\&|".to_vec();
    over.resize(64 * 1024 * 1024 + 1, b'x');
    let f = frame(&over);
    drop(over);
    c.send_raw(&f);
    c.expect_nak();
    c.send_msg(&hl7("OK"));
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![hl7("OK")]);
    assert_eq!(ctx.rec.error_codes(), vec![code::INVALID_DATA]);
}

#[test]
fn empty_message_is_refused_with_671() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    c.send_raw(&[SB, EB, CR]);
    c.expect_nak();
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(671))));
    c.send_msg(&hl7("E2"));
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![hl7("E2")]);
}

#[test]
fn bad_trailer_is_refused_with_671() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let mut bytes = vec![SB];
    bytes.extend(hl7("BT"));
    bytes.extend([EB, b'X']);
    c.send_raw(&bytes);
    c.expect_nak();
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(671))));
    c.send_msg(&hl7("BT2"));
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![hl7("BT2")]);
}

#[test]
fn start_block_inside_a_frame_restarts_it() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    let mut bytes = vec![SB];
    bytes.extend(b"MSH|partial");
    bytes.extend(frame(&hl7("RS")));
    c.send_raw(&bytes);
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![hl7("RS")]);
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(671))));
}

#[test]
fn receive_timeout_discards_partial_frame_and_keeps_connection() {
    let ctx = setup(&["ReceiveTimeout=1"]);
    assert_eq!(ctx.server.config("ReceiveTimeout").unwrap(), "1");
    let mut c = ctx.connect();
    let id = ctx.rec.connected_id(0);
    let m = hl7("RT");
    let f = frame(&m);
    c.send_raw(&f[..f.len() / 2]);
    let t = Instant::now();
    assert!(
        ctx.rec.wait_for(Duration::from_secs(3), |evs| evs.iter().any(|e| e.is_error(671))),
        "no Error 671 after ReceiveTimeout"
    );
    let el = t.elapsed();
    assert!(el >= Duration::from_millis(800), "timed out too early: {el:?}");
    // The rest of the abandoned frame is ignored (up to the next start block).
    c.send_raw(&f[f.len() / 2..]);
    c.expect_silence(Duration::from_millis(200));
    c.send_msg(&hl7("RT2"));
    c.expect_ack();
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![hl7("RT2")]);
    assert!(ctx.server.connected(id));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Disconnected { .. })), 0);
}

#[test]
fn custom_framing_and_ack_chars() {
    let ctx = setup_with(
        &["StartBlockChar=0x02", "EndBlockChar=0x03", "EOLChar=0x0A", "ACKChar=0x41", "NAKChar=0x4E"],
        |_| Hooks {
            ack_out: Some(Box::new(|e| {
                if e.message_seq == 2 {
                    e.verdict = Verdict::Reject(RejectCode::AE)
                }
            })),
            ..Default::default()
        },
    );
    for (k, v) in [
        ("StartBlockChar", "0x02"),
        ("EndBlockChar", "0x03"),
        ("EOLChar", "0x0A"),
        ("ACKChar", "0x41"),
        ("NAKChar", "0x4E"),
    ] {
        assert_eq!(ctx.server.config(k).unwrap(), v);
    }
    let mut c = ctx.connect();
    c.sb = 0x02;
    c.eb = 0x03;
    c.eol = 0x0A;
    // The standard bytes are now ordinary content.
    let m = b"MSH|^~\\&|\x0bVT\x1cFS\rPID|1\r".to_vec();
    c.send_msg(&m);
    let mut raw = [0u8; 4];
    std::io::Read::read_exact(&mut c.stream, &mut raw).unwrap();
    assert_eq!(raw, [0x02, 0x41, 0x03, 0x0A]);
    c.send_msg(&hl7("C2"));
    std::io::Read::read_exact(&mut c.stream, &mut raw).unwrap();
    assert_eq!(raw, [0x02, 0x4E, 0x03, 0x0A]);
    wait_delivered(&ctx.rec, 2);
    assert_eq!(delivered(&ctx.rec), vec![m, hl7("C2")]);
    // A standard frame is just garbage now.
    c.send_raw(&frame(&hl7("STD")));
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn version_1_sends_nothing_back() {
    let ctx = setup(&["Version=1"]);
    assert_eq!(ctx.server.version(), 1);
    assert_eq!(ctx.server.config("AckMode").unwrap(), "None");
    let mut c = ctx.connect();
    c.send_msg(&hl7("V1"));
    c.send_raw(&[SB, EB, CR]); // even a refused frame gets no answer
    c.expect_silence(Duration::from_millis(400));
    wait_delivered(&ctx.rec, 1);
    assert_eq!(delivered(&ctx.rec), vec![hl7("V1")]);
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::AckOut { .. } | Ev::AckIn { .. })), 0);
}

#[test]
fn ack_mode_none_sends_nothing_back() {
    let ctx = setup(&["AckMode=None"]);
    let mut c = ctx.connect();
    c.send_msg(&hl7("AN"));
    c.expect_silence(Duration::from_millis(300));
    wait_delivered(&ctx.rec, 1);
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::AckOut { .. })), 0);
}

/// Checks an HL7 ACK against the message it answers.
fn check_hl7_ack(ack: &[u8], msg: &[u8], code: &str) {
    let ack_s = String::from_utf8_lossy(ack).to_string();
    let msh = segment(ack, "MSH").unwrap_or_else(|| panic!("no MSH in {ack_s:?}"));
    let msa = segment(ack, "MSA").unwrap_or_else(|| panic!("no MSA in {ack_s:?}"));
    assert_eq!(msa[1], code, "MSA-1 in {ack_s:?}");
    match segment(msg, "MSH") {
        Some(orig) => {
            assert_eq!(msh[2], orig[2], "MSH-2");
            assert_eq!(msh[3], orig[5], "MSH-3 = received MSH-5: {ack_s:?}");
            assert_eq!(msh[4], orig[6], "MSH-4 = received MSH-6");
            assert_eq!(msh[5], orig[3], "MSH-5 = received MSH-3");
            assert_eq!(msh[6], orig[4], "MSH-6 = received MSH-4");
            let trigger = orig[9].split('^').nth(1).unwrap_or("");
            assert_eq!(msh[9], format!("ACK^{trigger}^ACK"), "MSH-9");
            assert_eq!(msh[11], orig[11], "MSH-11");
            assert_eq!(msh[12], orig[12], "MSH-12");
            assert_eq!(msa[2], orig[10], "MSA-2 = received MSH-10");
        }
        None => {
            assert_eq!(msh[9], "ACK");
            assert_eq!(msh[12], "2.5");
            assert_eq!(msa.get(2).map(String::as_str).unwrap_or(""), "");
        }
    }
    assert!(!msh[10].is_empty(), "MSH-10 control id");
    assert!(msh[7].len() >= 14 && msh[7].bytes().all(|b| b.is_ascii_digit()));
}

#[test]
fn hl7_ack_mode_with_every_sample() {
    let ctx = setup(&["AckMode=HL7"]);
    assert_eq!(ctx.server.config("AckMode").unwrap(), "HL7");
    let mut c = ctx.connect();
    for name in [
        "adt_a01.hl7",
        "adt_a08_utf8.hl7",
        "oru_r01.hl7",
        "batch_adt.hl7",
        "ack_aa.hl7",
        "not_hl7.txt",
        "oru_r01_1mib_ed.hl7",
    ] {
        let m = sample(name);
        c.send_msg(&m);
        let ack = c.read_frame();
        // A batch is answered from its first MSH (ProcessBatch is off). The UTF-8 sample has
        // MSH-15 AL: enhanced mode, so a commit accept.
        let code = if name == "adt_a08_utf8.hl7" { "CA" } else { "AA" };
        check_hl7_ack(&ack, &m, code);
    }
    wait_delivered(&ctx.rec, 7);
}

#[test]
fn hl7_ack_mode_reject_codes() {
    let ctx = setup_with(&["AckMode=HL7"], |_| Hooks {
        ack_out: Some(Box::new(|e| match e.message_seq {
            1 => e.verdict = Verdict::Reject(RejectCode::AE),
            2 => {
                e.verdict = Verdict::Reject(RejectCode::AR);
            }
            _ => {}
        })),
        ..Default::default()
    });
    let mut c = ctx.connect();
    let m = sample("adt_a01.hl7");
    c.send_msg(&m);
    check_hl7_ack(&c.read_frame(), &m, "AE");
    c.send_msg(&m);
    let ack = c.read_frame();
    check_hl7_ack(&ack, &m, "AR");
    assert!(String::from_utf8_lossy(&ack).contains("\rMSA|AR|MSG00001"));
    c.send_msg(&m);
    check_hl7_ack(&c.read_frame(), &m, "AA");
}

#[test]
fn hl7_ack_mode_oversize_is_negative() {
    let ctx = setup(&["AckMode=HL7", "MaxMessageSize=50"]);
    let mut c = ctx.connect();
    c.send_msg(&sample("adt_a01.hl7"));
    let ack = c.read_frame();
    let msa = segment(&ack, "MSA").expect("MSA");
    assert_ne!(msa[1], "AA");
    assert!(ctx.rec.wait_for(WAIT, |evs| evs.iter().any(|e| e.is_error(671))));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::StartTransfer { .. })), 0);
}

#[test]
fn version_1_with_hl7_ack_mode_sends_hl7_acks() {
    let ctx = setup(&["Version=1", "AckMode=HL7"]);
    let mut c = ctx.connect();
    let m = sample("oru_r01.hl7");
    c.send_msg(&m);
    check_hl7_ack(&c.read_frame(), &m, "AA");
}
