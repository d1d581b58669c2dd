//! Oracle for the reply queue of `mllp::connection::Connection`: every frame that calls for a
//! reply takes a slot in frame order (a message, a batch answered as one, a frame the server
//! refuses on its own); a slot's reply is written once it and every slot before it are
//! decided, so replies leave in frame order however the host orders its decisions.
//!
//! The model knows what it sent (it builds the frames) and predicts, after every step, the
//! messages delivered, `decide`'s answer, the reply frames written so far (in MLLP mode the
//! ACK/NAK byte, in HL7 mode each MSA-1/MSA-2 read back by splitting) and how many replies
//! are still pending.
//!
//! Shared by tests/fuzz_oracles.rs and fuzz/fuzz_targets/connection.rs (`#[path]`).

#![allow(dead_code)]

use std::time::Instant;

use mllp::connection::{Config, Connection, Event, Time};
use mllp::events::{RejectCode, Verdict};
use mllp::AckMode;

/// The largest message the connection under test accepts.
pub const MAX: usize = 512;

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Op {
    /// An HL7 message with this control id number.
    Msg(u8),
    /// A frame without content (refused).
    Empty,
    /// A frame larger than [`MAX`] (refused).
    Oversize,
    /// An end block followed by a byte other than EOL (refused).
    BadTrailer,
    /// The start of a frame that the next start block abandons (no reply).
    Partial,
    /// A valid batch of this many messages (0 to 3), ids from the number given.
    Batch(u8, u8),
    /// A batch whose BTS count is wrong (refused whole; its first MSH has this id).
    BadBatch(u8),
    /// The host decides message `seq` (taken modulo the messages delivered + 2, so that
    /// unknown sequence numbers are tried too) with verdict 0 Accept, 1 AE, 2 AR.
    Decide(u64, u8),
}

fn msg(id: &str) -> String {
    format!("MSH|^~\\&|A|B|C|D|2026||ADT^A01|{id}|P|2.5\rPID|1||X\r")
}

fn frame(content: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0B];
    v.extend_from_slice(content);
    v.extend_from_slice(&[0x1C, 0x0D]);
    v
}

/// A slot of the model's queue.
#[derive(Debug)]
enum Slot {
    /// Messages (one, or the messages of a batch) by sequence number, with their control ids.
    Msgs { batch: bool, seqs: Vec<(u64, String)> },
    /// Refused by the server: the control id its HL7 ACK names ("" when none).
    Refused(String),
}

/// Expected MSA-1/MSA-2 pairs of a reply (HL7 mode), or its byte (MLLP mode).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Byte(u8),
    Msa { batch: bool, acks: Vec<(String, String)> },
}

/// Reads a reply frame's content the oracle's way.
fn read_reply(mode: AckMode, content: &[u8]) -> Reply {
    if mode == AckMode::Mllp {
        assert_eq!(content.len(), 1, "an MLLP reply is one byte: {content:?}");
        return Reply::Byte(content[0]);
    }
    let segs: Vec<&[u8]> = content.split(|&b| b == b'\r').filter(|s| !s.is_empty()).collect();
    let batch = segs.first().is_some_and(|s| s.starts_with(b"BHS") || s.starts_with(b"FHS"));
    let acks = segs
        .iter()
        .filter(|s| s.starts_with(b"MSA|"))
        .map(|s| {
            let f: Vec<&[u8]> = s[4..].split(|&b| b == b'|').collect();
            let at = |i: usize| String::from_utf8_lossy(f.get(i).copied().unwrap_or_default()).into_owned();
            (at(0), at(1))
        })
        .collect();
    Reply::Msa { batch, acks }
}

/// Splits the connection's output into frame contents (replies hold no framing byte).
fn frames(out: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        assert_eq!(rest[0], 0x0B, "output starts a frame: {rest:?}");
        let end = rest.iter().position(|&b| b == 0x1C).expect("end block");
        assert_eq!(rest.get(end + 1), Some(&0x0D), "EOL after the end block");
        v.push(rest[1..end].to_vec());
        rest = &rest[end + 2..];
    }
    v
}

/// Runs `ops` against a connection in `mode` (MLLP or HL7 acknowledgements, ProcessBatch on)
/// and panics at the first difference from the model. `cuts[k]` splits frame k's bytes in
/// two pieces (at the position modulo its length).
pub fn check(mode: AckMode, ops: &[Op], cuts: &[usize]) {
    let cfg = Config { max_message_size: MAX, log_level: 0, ack_mode: mode, process_batch: true, ..Config::default() };
    let mut c = Connection::<u32>::new(cfg);
    let now = Time::at(Instant::now(), 1_800_000_000);
    let mut slots: Vec<Slot> = Vec::new();
    let mut written = 0usize; // slots whose reply was written
    let mut decided: std::collections::HashMap<u64, Verdict> = std::collections::HashMap::new();
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut expected: Vec<Reply> = Vec::new();
    let mut cut = cuts.iter().copied().cycle();
    for (k, op) in ops.iter().enumerate() {
        let mut deliver: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut next_msg = |id: String, seq: &mut u64| {
            *seq += 1;
            deliver.push((*seq, msg(&id).into_bytes()));
            (*seq, id)
        };
        let bytes: Option<Vec<u8>> = match op {
            Op::Msg(id) => {
                let s = next_msg(format!("M{id}"), &mut seq);
                slots.push(Slot::Msgs { batch: false, seqs: vec![s] });
                Some(frame(msg(&format!("M{id}")).as_bytes()))
            }
            Op::Empty => {
                slots.push(Slot::Refused(String::new()));
                Some(frame(b""))
            }
            Op::Oversize => {
                slots.push(Slot::Refused(String::new()));
                Some(frame(&[b'x'; MAX + 1]))
            }
            Op::BadTrailer => {
                slots.push(Slot::Refused(String::new()));
                Some(b"\x0bMSH|^~\\&|T\x1cX".to_vec())
            }
            Op::Partial => Some(b"\x0bMSH|^~\\&|partial".to_vec()),
            Op::Batch(n, id) => {
                let n = n % 4;
                let mut content = b"BHS|^~\\&|S\r".to_vec();
                let mut seqs = Vec::new();
                for j in 0..n {
                    let cid = format!("B{id}x{j}");
                    content.extend_from_slice(msg(&cid).as_bytes());
                    seqs.push(next_msg(cid, &mut seq));
                }
                content.extend_from_slice(format!("BTS|{n}\r").as_bytes());
                slots.push(Slot::Msgs { batch: true, seqs });
                Some(frame(&content))
            }
            Op::BadBatch(id) => {
                let cid = format!("Z{id}");
                let content = format!("BHS|^~\\&|S\r{}BTS|7\r", msg(&cid));
                slots.push(Slot::Refused(cid));
                Some(frame(content.as_bytes()))
            }
            Op::Decide(s, v) => {
                let s = s % (seq + 2);
                let verdict = match v % 3 {
                    0 => Verdict::Accept,
                    1 => Verdict::Reject(RejectCode::AE),
                    _ => Verdict::Reject(RejectCode::AR),
                };
                let known = s >= 1 && s <= seq && !decided.contains_key(&s);
                assert_eq!(c.decide(s, verdict, now), known, "step {k}: decide({s}) answer");
                if known {
                    decided.insert(s, verdict);
                }
                None
            }
        };
        if let Some(b) = bytes {
            let at = cut.next().unwrap_or(0) % (b.len() + 1);
            c.handle_input(&b[..at], now);
            c.handle_input(&b[at..], now);
        }
        // Messages delivered, in order, with their sequence numbers.
        let got: Vec<(u64, Vec<u8>)> = std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                Event::Message { seq, data, ack, .. } => {
                    assert!(ack, "a reply is due for every message");
                    Some((seq, data))
                }
                Event::Duplicate { .. } | Event::AckIn { .. } | Event::SendDone { .. } => {
                    panic!("step {k}: unexpected event")
                }
                _ => None,
            })
            .collect();
        assert_eq!(got, deliver, "step {k} ({op:?}): messages delivered");
        // The replies of the decided prefix.
        while written < slots.len() {
            let reply = match &slots[written] {
                Slot::Refused(id) => match mode {
                    AckMode::Mllp => Reply::Byte(0x15),
                    _ => Reply::Msa { batch: false, acks: vec![("AR".into(), id.clone())] },
                },
                Slot::Msgs { batch, seqs } => {
                    let Some(vs) = seqs.iter().map(|(s, _)| decided.get(s).copied()).collect::<Option<Vec<_>>>() else {
                        break;
                    };
                    match mode {
                        AckMode::Mllp => Reply::Byte(if vs.iter().all(|v| v.is_accept()) { 0x06 } else { 0x15 }),
                        _ => Reply::Msa {
                            batch: *batch,
                            acks: seqs
                                .iter()
                                .zip(&vs)
                                .map(|((_, id), v)| {
                                    let code = match v {
                                        Verdict::Accept => "AA",
                                        Verdict::Reject(RejectCode::AE) => "AE",
                                        Verdict::Reject(RejectCode::AR) => "AR",
                                    };
                                    (code.to_string(), id.clone())
                                })
                                .collect(),
                        },
                    }
                }
            };
            expected.push(reply);
            written += 1;
        }
        let t = c.transmit(now.mono).to_vec();
        c.consume_output(t.len(), now.mono);
        out.extend_from_slice(&t);
        let replies: Vec<Reply> = frames(&out).iter().map(|f| read_reply(mode, f)).collect();
        assert_eq!(replies, expected, "step {k} ({op:?}): replies written");
        assert_eq!(c.pending_replies(), slots.len() - written, "step {k}: replies pending");
        assert_eq!(c.is_idle(), slots.len() == written, "step {k}: idle");
    }
}

/// A script from fuzzer bytes: the first byte picks the acknowledgement mode, then each byte
/// an operation (its argument from the next byte); cut positions come from the same bytes.
pub fn script_from_bytes(data: &[u8]) -> (AckMode, Vec<Op>, Vec<usize>) {
    let mode = if data.first().is_some_and(|b| b & 1 == 1) { AckMode::Hl7 } else { AckMode::Mllp };
    let mut ops = Vec::new();
    let mut cuts = Vec::new();
    let mut it = data.iter().skip(1).copied();
    while let Some(b) = it.next() {
        let a = it.next().unwrap_or(0);
        cuts.push(usize::from(a) * 3 + usize::from(b));
        ops.push(match b % 12 {
            0 | 1 => Op::Msg(a),
            2 => Op::Empty,
            3 => Op::Oversize,
            4 => Op::BadTrailer,
            5 => Op::Partial,
            6 => Op::Batch(a % 4, a),
            7 => Op::BadBatch(a),
            _ => Op::Decide(u64::from(a), b >> 4),
        });
    }
    (mode, ops, cuts)
}
