//! The per-connection protocol state machine, without sockets or clocks.
//!
//! Bytes read from the peer go in through [`Connection::receive`]; what the server must do about
//! them comes out as [`Inbound`] items (a complete message to hand to the host, a frame that was
//! refused, an acknowledgement of something the server sent). Replies are queued in message order
//! with [`Connection::push_pending`] and decided with [`Connection::decide`], possibly later and
//! from another thread's decision (DoEvents, deferred acknowledgement); only the decided prefix
//! is written, so acknowledgements always leave in the order the messages arrived. Outgoing
//! bytes accumulate in [`Connection::output`] for the reactor to write.

use std::collections::VecDeque;

use crate::codec::{self, AbortReason, DecodeEvent, Decoder, FrameChars};
use crate::config::AckMode;
use crate::hl7::{self, AckCode};

/// Why the server refused a frame on its own (no host decision is asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Content exceeded MaxMessageSize.
    Oversize,
    /// The frame had no content.
    Empty,
    /// An end block was not followed by the EOL byte.
    BadTrailer,
}

impl Refusal {
    /// A sentence for the Error event.
    pub fn describe(self, max: usize) -> String {
        match self {
            Refusal::Oversize => {
                format!("message larger than MaxMessageSize ({max} bytes) refused")
            }
            Refusal::Empty => "empty message refused".to_string(),
            Refusal::BadTrailer => "end block not followed by the EOL byte; frame refused".to_string(),
        }
    }
}

/// Something the reactor must act on after [`Connection::receive`].
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A complete message (the content between start and end block).
    Message(Vec<u8>),
    /// A frame refused by the server: answer negatively (error 671), deliver nothing.
    Refused(Refusal),
    /// A partial frame was abandoned because a new start block arrived (error 671, no reply).
    Restarted,
    /// The peer acknowledged data the server sent: ACK (true) or NAK (false).
    AckIn(bool),
    /// Bytes outside any frame were skipped (reported in the Log, not an error).
    Skipped(usize),
}

/// A reply waiting for its decision.
#[derive(Debug)]
struct Pending {
    seq: u64,
    /// `Some((accept, code when refused))` once decided.
    decision: Option<(bool, AckCode)>,
    /// In HL7 mode, the message's MSH segment (what the ACK is built from).
    msh: Vec<u8>,
}

/// Protocol state of one connection.
pub struct Connection {
    decoder: Decoder,
    /// The frame being assembled.
    msg: Vec<u8>,
    /// Buffers of delivered messages, kept to avoid an allocation per message.
    spare: Vec<Vec<u8>>,
    ack_char: u8,
    nak_char: u8,
    /// Replies not yet written, in message order.
    pending: VecDeque<Pending>,
    /// Messages delivered so far (the last sequence number given out).
    seq: u64,
    /// Data frames sent by the server and not yet acknowledged.
    awaiting_acks: u64,
    /// Bytes to write to the peer, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Frames started (so a timer can tell whether it still concerns the current frame).
    frames_started: u64,
    ack_serial: u64,
    /// Reused for HL7 acknowledgements: timestamp and control id, the ACK body, MSH copies.
    scratch: Vec<u8>,
    body: Vec<u8>,
    msh_pool: Vec<Vec<u8>>,
}

/// A buffer larger than this is not kept for reuse: one huge message should not pin its memory.
const SPARE_KEEP_LIMIT: usize = 1 << 20;
/// Largest message buffer kept for reuse.
const RECYCLE_LIMIT: usize = 16 << 20;

impl Connection {
    /// A connection with the given framing bytes, acknowledgement bytes and size limit.
    pub fn new(chars: FrameChars, ack_char: u8, nak_char: u8, max_message_size: usize) -> Self {
        Connection {
            decoder: Decoder::new(chars, max_message_size),
            msg: Vec::new(),
            spare: Vec::new(),
            ack_char,
            nak_char,
            pending: VecDeque::new(),
            seq: 0,
            awaiting_acks: 0,
            out: Vec::new(),
            out_pos: 0,
            frames_started: 0,
            ack_serial: 0,
            scratch: Vec::new(),
            body: Vec::new(),
            msh_pool: Vec::new(),
        }
    }

    /// Applies changed settings; a frame in progress keeps its framing.
    pub fn reconfigure(&mut self, chars: FrameChars, ack_char: u8, nak_char: u8, max_message_size: usize) {
        if self.decoder.chars() != chars && !self.decoder.in_frame() {
            self.decoder.set_chars(chars);
        }
        self.decoder.set_max_message_size(max_message_size);
        self.ack_char = ack_char;
        self.nak_char = nak_char;
    }

    /// Feeds bytes from the peer; appends what the server must act on to `found`.
    pub fn receive(&mut self, data: &[u8], found: &mut Vec<Inbound>) {
        let msg = &mut self.msg;
        let spare = &mut self.spare;
        let started = &mut self.frames_started;
        let (ack, nak) = (self.ack_char, self.nak_char);
        let awaiting = &mut self.awaiting_acks;
        let skipped = self.decoder.feed(data, |ev| match ev {
            DecodeEvent::Start => {
                msg.clear();
                *started += 1;
            }
            DecodeEvent::Data(d) => msg.extend_from_slice(d),
            DecodeEvent::End => {
                if msg.is_empty() {
                    found.push(Inbound::Refused(Refusal::Empty));
                } else if msg.len() == 1 && (msg[0] == ack || msg[0] == nak) {
                    // A commit acknowledgement of something we sent, not a message.
                    *awaiting = awaiting.saturating_sub(1);
                    found.push(Inbound::AckIn(msg[0] == ack));
                    msg.clear();
                } else if *awaiting > 0 && hl7::is_ack_message(msg) {
                    // An HL7 application ACK answering our Send.
                    *awaiting -= 1;
                    found.push(Inbound::AckIn(hl7::ack_accepted(msg).unwrap_or(false)));
                    msg.clear();
                } else {
                    let next = spare.pop().unwrap_or_default();
                    found.push(Inbound::Message(std::mem::replace(msg, next)));
                }
            }
            DecodeEvent::Oversize => {
                msg.clear();
                found.push(Inbound::Refused(Refusal::Oversize));
            }
            DecodeEvent::Aborted(AbortReason::Restarted) => {
                msg.clear();
                found.push(Inbound::Restarted);
            }
            DecodeEvent::Aborted(AbortReason::BadTrailer) => {
                msg.clear();
                found.push(Inbound::Refused(Refusal::BadTrailer));
            }
        });
        if skipped > 0 {
            found.push(Inbound::Skipped(skipped));
        }
    }

    /// Gives a delivered message's buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        // One spare buffer of any size up to RECYCLE_LIMIT: a connection that keeps sending
        // large messages then reuses memory instead of faulting in fresh pages per message.
        if buf.capacity() <= RECYCLE_LIMIT && self.spare.is_empty() {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// True while a frame is partly received.
    pub fn in_frame(&self) -> bool {
        self.decoder.in_frame()
    }

    /// How many frames have started; a ReceiveTimeout timer remembers it to know whether it
    /// still concerns the frame in progress.
    pub fn frames_started(&self) -> u64 {
        self.frames_started
    }

    /// Content bytes of the partial frame.
    pub fn partial_len(&self) -> usize {
        self.decoder.frame_len()
    }

    /// Drops the partial frame (ReceiveTimeout); data is skipped until the next start block.
    pub fn discard_partial(&mut self) {
        self.decoder.reset();
        self.msg.clear();
    }

    /// Gives the next message sequence number (1 for the first message).
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Queues a reply slot for message `seq`. In HL7 mode `msg` supplies the MSH to answer.
    pub fn push_pending(&mut self, seq: u64, mode: AckMode, msg: &[u8]) {
        let mut msh = Vec::new();
        if mode == AckMode::Hl7 {
            msh = self.msh_pool.pop().unwrap_or_default();
            msh.extend_from_slice(msh_segment(msg));
        }
        self.pending.push_back(Pending { seq, decision: None, msh });
    }

    /// Number of replies queued but not yet written.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Records the decision for message `seq` and writes every decided reply at the head of the
    /// queue. Returns false when no reply for `seq` is pending. `now_unix` stamps HL7 ACKs.
    pub fn decide(&mut self, seq: u64, accept: bool, code: AckCode, mode: AckMode, now_unix: u64) -> bool {
        let Some(p) = self.pending.iter_mut().find(|p| p.seq == seq && p.decision.is_none()) else {
            return false;
        };
        p.decision = Some((accept, code));
        while let Some(Pending { decision: Some(_), .. }) = self.pending.front() {
            let mut p = self.pending.pop_front().expect("front exists");
            let (accept, code) = p.decision.expect("decided");
            self.write_reply(mode, accept, code, &p.msh, now_unix);
            if p.msh.capacity() > 0 && p.msh.capacity() <= 4096 && self.msh_pool.len() < 4 {
                p.msh.clear();
                self.msh_pool.push(p.msh);
            }
        }
        true
    }

    /// Appends a refusal for a frame the server refused on its own; it is queued behind
    /// undecided replies so the order of answers still follows the order of frames.
    pub fn refuse(&mut self, mode: AckMode, now_unix: u64) {
        if self.pending.is_empty() {
            self.write_reply(mode, false, AckCode::AR, &[], now_unix);
        } else {
            let seq = u64::MAX - self.pending.len() as u64;
            self.pending.push_back(Pending { seq, decision: Some((false, AckCode::AR)), msh: Vec::new() });
        }
    }

    fn write_reply(&mut self, mode: AckMode, accept: bool, code: AckCode, msh: &[u8], now_unix: u64) {
        let chars = self.decoder.chars();
        match mode {
            AckMode::None => {}
            AckMode::Mllp => {
                let b = if accept { self.ack_char } else { self.nak_char };
                codec::encode_commit(chars, b, &mut self.out);
            }
            AckMode::Hl7 => {
                use std::io::Write as _;
                let code = if accept { AckCode::AA } else { code };
                // Scratch buffers are reused: no allocation per acknowledgement.
                let s = &mut self.scratch;
                s.clear();
                hl7::format_timestamp(now_unix, s);
                let ts_end = s.len();
                self.ack_serial += 1;
                let _ = write!(s, "{}{:06}", now_unix, self.ack_serial % 1_000_000);
                let ctl_end = s.len();
                let (ts, control) = (&s[..ts_end], &s[ts_end..ctl_end]);
                self.body.clear();
                hl7::build_ack(msh, code, ts, control, None, &mut self.body);
                codec::encode_frame(chars, &self.body, &mut self.out);
            }
        }
    }

    /// Queues a data frame from the server to the peer; `expect_ack` when an acknowledgement
    /// will come back (version 2).
    pub fn send_frame(&mut self, payload: &[u8], expect_ack: bool) {
        codec::encode_frame(self.decoder.chars(), payload, &mut self.out);
        if expect_ack {
            self.awaiting_acks += 1;
        }
    }

    /// Data frames sent and not yet acknowledged.
    pub fn awaiting_acks(&self) -> u64 {
        self.awaiting_acks
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// Marks `n` bytes of [`output`](Self::output) as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > SPARE_KEEP_LIMIT {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.out_pos > 64 * 1024 && self.out_pos * 2 > self.out.len() {
            // Keep the buffer from growing when the peer reads slowly but steadily.
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }
}

/// The MSH segment of a message (through its segment terminator), or the whole message when
/// it has none; an HL7 ACK needs nothing else.
fn msh_segment(msg: &[u8]) -> &[u8] {
    let start = if msg.starts_with(b"MSH") {
        Some(0)
    } else {
        msg.windows(4).position(|w| (w[0] == b'\r' || w[0] == b'\n') && &w[1..] == b"MSH").map(|p| p + 1)
    };
    match start {
        Some(s) => {
            let rest = &msg[s..];
            let end = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
            &rest[..end]
        }
        None => &msg[..msg.len().min(1024)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection::new(FrameChars::default(), 0x06, 0x15, 100)
    }

    fn frame(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        codec::encode_frame(FrameChars::default(), p, &mut v);
        v
    }

    #[test]
    fn message_then_ack_in_order() {
        let mut c = conn();
        let mut found = Vec::new();
        let mut bytes = frame(b"MSH|^~\\&|A");
        bytes.extend(frame(b"MSH|^~\\&|B"));
        c.receive(&bytes, &mut found);
        assert_eq!(found.len(), 2);
        let s1 = c.next_seq();
        let s2 = c.next_seq();
        c.push_pending(s1, AckMode::Mllp, b"");
        c.push_pending(s2, AckMode::Mllp, b"");
        // The second decision alone writes nothing: replies keep message order.
        assert!(c.decide(s2, false, AckCode::AE, AckMode::Mllp, 0));
        assert!(c.output().is_empty());
        assert!(c.decide(s1, true, AckCode::AE, AckMode::Mllp, 0));
        assert_eq!(c.output(), b"\x0b\x06\x1c\r\x0b\x15\x1c\r");
        assert!(!c.decide(s1, true, AckCode::AE, AckMode::Mllp, 0));
    }

    #[test]
    fn refusals_and_acks_are_classified() {
        let mut c = conn();
        let mut found = Vec::new();
        c.receive(b"\x0b\x1c\r", &mut found);
        c.receive(&frame(&[b'x'; 101]), &mut found);
        c.send_frame(b"MSH|out", true);
        c.receive(b"\x0b\x06\x1c\r\x0b\x15\x1c\r", &mut found);
        c.receive(b"\x0babc\x1cX", &mut found);
        c.receive(b"\x0bpartial\x0bnew", &mut found);
        assert_eq!(
            found,
            vec![
                Inbound::Refused(Refusal::Empty),
                Inbound::Refused(Refusal::Oversize),
                Inbound::AckIn(true),
                Inbound::AckIn(false),
                Inbound::Refused(Refusal::BadTrailer),
                Inbound::Skipped(1),
                Inbound::Restarted,
            ]
        );
        assert!(c.in_frame());
        c.discard_partial();
        assert!(!c.in_frame());
    }

    #[test]
    fn hl7_ack_answers_with_msa() {
        let mut c = conn();
        let msg = b"MSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|MSG1|P|2.5\rPID|1";
        c.push_pending(1, AckMode::Hl7, msg);
        c.decide(1, true, AckCode::AE, AckMode::Hl7, 0);
        let out = String::from_utf8_lossy(c.output()).to_string();
        assert!(out.starts_with("\x0bMSH|^~\\&|RCV|RF|SND|SF|19700101000000||ACK^A01^ACK|"), "{out}");
        assert!(out.contains("\rMSA|AA|MSG1"), "{out}");
        assert!(out.ends_with("\x1c\r"));
    }

    #[test]
    fn server_refusal_queues_behind_pending() {
        let mut c = conn();
        c.push_pending(1, AckMode::Mllp, b"");
        c.refuse(AckMode::Mllp, 0);
        assert!(c.output().is_empty());
        c.decide(1, true, AckCode::AE, AckMode::Mllp, 0);
        assert_eq!(c.output(), b"\x0b\x06\x1c\r\x0b\x15\x1c\r");
        c.consume_output(4);
        assert_eq!(c.output(), b"\x0b\x15\x1c\r");
        c.consume_output(4);
        assert!(c.output().is_empty());
    }

    #[test]
    fn msh_segment_is_found_in_batches() {
        assert_eq!(msh_segment(b"FHS|x\rBHS|y\rMSH|z|w\rPID"), b"MSH|z|w");
        assert_eq!(msh_segment(b"MSH|a\rPID"), b"MSH|a");
        assert_eq!(msh_segment(b"junk"), b"junk");
    }
}
