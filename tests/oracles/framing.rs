//! Oracle for `mllp::codec::Decoder`: MLLP framing re-implemented plainly from its
//! specification, one byte at a time, with settings (framing bytes, maximum size) that may
//! change between any two pieces of input, and a checker that runs the real decoder beside it.
//!
//! Shared by the stable property tests (tests/fuzz_oracles.rs) and the `decoder` fuzz target
//! (fuzz/fuzz_targets/decoder.rs), which include this file with `#[path]`.
//!
//! The rules, as documented by the decoder:
//! - outside a frame every byte is skipped (and counted) until a start block (SB);
//! - inside a frame, an end block (EB) ends the content (the end block wins when EB == SB),
//!   a start block abandons the frame (Restarted) and opens a new one, anything else is
//!   content;
//! - after an end block, the EOL byte completes the frame; any other byte abandons it
//!   (BadTrailer) and is then read again as a byte outside a frame;
//! - content beyond the maximum abandons the frame (Oversize) as soon as the first byte too
//!   many is seen; the rest of it, up to its end block and an EOL right after, is dropped
//!   without being counted; a start block in that rest opens a new frame; an end block seen
//!   when the content is already over the maximum (after the maximum was lowered) is also
//!   Oversize, and its EOL still belongs to it;
//! - `reset` abandons a partial frame silently.

#![allow(dead_code)]

use mllp::codec::{AbortReason, DecodeEvent, Decoder, FrameChars};

/// What became of one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Complete, with this content.
    Message(Vec<u8>),
    /// Abandoned: too large.
    Oversize,
    /// Abandoned: a start block inside it.
    Restarted,
    /// Abandoned: its end block not followed by EOL.
    BadTrailer,
}

/// One step of a test script.
#[derive(Clone, Debug)]
pub enum Op {
    /// Feed these bytes.
    Feed(Vec<u8>),
    /// Change the framing bytes (start, end, eol).
    SetChars(u8, u8, u8),
    /// Change the maximum content size.
    SetMax(usize),
    /// Abandon a partial frame.
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Outside,
    Inside,
    SawEnd,
    Dropping,
    DroppingSawEnd,
}

/// The model decoder.
pub struct Model {
    pub start: u8,
    pub end: u8,
    pub eol: u8,
    pub max: usize,
    st: St,
    content: Vec<u8>,
    /// Every frame's outcome so far, in order.
    pub outcomes: Vec<Outcome>,
    /// Bytes skipped outside frames so far.
    pub skipped: usize,
}

impl Model {
    pub fn new(start: u8, end: u8, eol: u8, max: usize) -> Self {
        Model { start, end, eol, max, st: St::Outside, content: Vec::new(), outcomes: Vec::new(), skipped: 0 }
    }

    pub fn in_frame(&self) -> bool {
        matches!(self.st, St::Inside | St::SawEnd)
    }

    pub fn frame_len(&self) -> usize {
        if self.in_frame() {
            self.content.len()
        } else {
            0
        }
    }

    pub fn reset(&mut self) {
        self.st = St::Outside;
        self.content.clear();
    }

    fn open(&mut self) {
        self.st = St::Inside;
        self.content.clear();
    }

    fn abandon(&mut self, why: Outcome, next: St) {
        self.outcomes.push(why);
        self.content.clear();
        self.st = next;
    }

    pub fn byte(&mut self, b: u8) {
        match self.st {
            St::Outside => {
                if b == self.start {
                    self.open();
                } else {
                    self.skipped += 1;
                }
            }
            St::Inside => {
                if b == self.end {
                    if self.content.len() > self.max {
                        self.abandon(Outcome::Oversize, St::DroppingSawEnd);
                    } else {
                        self.st = St::SawEnd;
                    }
                } else if b == self.start {
                    self.abandon(Outcome::Restarted, St::Outside);
                    self.open();
                } else if self.content.len() + 1 > self.max {
                    self.abandon(Outcome::Oversize, St::Dropping);
                } else {
                    self.content.push(b);
                }
            }
            St::SawEnd => {
                if b == self.eol {
                    let m = std::mem::take(&mut self.content);
                    self.outcomes.push(Outcome::Message(m));
                    self.st = St::Outside;
                } else {
                    self.abandon(Outcome::BadTrailer, St::Outside);
                    self.byte(b);
                }
            }
            St::Dropping => {
                if b == self.end {
                    self.st = St::DroppingSawEnd;
                } else if b == self.start {
                    self.open();
                }
            }
            St::DroppingSawEnd => {
                self.st = St::Outside;
                if b != self.eol {
                    self.byte(b);
                }
            }
        }
    }
}

/// Runs `ops` through the real decoder and the model side by side and panics at the first
/// difference: the outcomes of frames, the skipped count, `in_frame` and `frame_len` after
/// every step, and the grammar of the decoder's events (Data only inside a frame, never empty,
/// never beyond the maximum in force).
pub fn check(initial: (u8, u8, u8, usize), ops: &[Op]) {
    let (s, e, l, max) = initial;
    let mut model = Model::new(s, e, l, max);
    let mut dec = Decoder::new(FrameChars { start: s, end: e, eol: l }, max);
    let mut got: Vec<Outcome> = Vec::new();
    let mut skipped = 0usize;
    // The frame being assembled from the decoder's events.
    let mut cur: Option<Vec<u8>> = None;
    for (k, op) in ops.iter().enumerate() {
        match op {
            Op::Feed(bytes) => {
                for &b in bytes {
                    model.byte(b);
                }
                let max_now = dec.max_message_size();
                skipped += dec.feed(bytes, |ev| match ev {
                    DecodeEvent::Start => {
                        assert!(cur.is_none(), "step {k}: Start inside a frame");
                        cur = Some(Vec::new());
                    }
                    DecodeEvent::Data(d) => {
                        assert!(!d.is_empty(), "step {k}: empty Data");
                        let c = cur.as_mut().unwrap_or_else(|| panic!("step {k}: Data outside a frame"));
                        c.extend_from_slice(d);
                        assert!(c.len() <= max_now, "step {k}: Data beyond the maximum");
                    }
                    DecodeEvent::End => {
                        let c = cur.take().unwrap_or_else(|| panic!("step {k}: End outside a frame"));
                        got.push(Outcome::Message(c));
                    }
                    DecodeEvent::Oversize => {
                        cur.take().unwrap_or_else(|| panic!("step {k}: Oversize outside a frame"));
                        got.push(Outcome::Oversize);
                    }
                    DecodeEvent::Aborted(r) => {
                        cur.take().unwrap_or_else(|| panic!("step {k}: Aborted outside a frame"));
                        got.push(match r {
                            AbortReason::Restarted => Outcome::Restarted,
                            AbortReason::BadTrailer => Outcome::BadTrailer,
                        });
                    }
                });
            }
            Op::SetChars(s, e, l) => {
                (model.start, model.end, model.eol) = (*s, *e, *l);
                dec.set_chars(FrameChars { start: *s, end: *e, eol: *l });
            }
            Op::SetMax(m) => {
                model.max = *m;
                dec.set_max_message_size(*m);
            }
            Op::Reset => {
                model.reset();
                dec.reset();
                cur = None;
            }
        }
        assert_eq!(got, model.outcomes, "step {k} ({op:?}): frame outcomes differ");
        assert_eq!(skipped, model.skipped, "step {k} ({op:?}): skipped counts differ");
        assert_eq!(dec.in_frame(), model.in_frame(), "step {k} ({op:?}): in_frame differs");
        assert_eq!(dec.frame_len(), model.frame_len(), "step {k} ({op:?}): frame_len differs");
        if dec.in_frame() {
            assert_eq!(cur.as_ref().map(Vec::len), Some(dec.frame_len()), "step {k}: Data does not add up");
        }
    }
}

/// A script from unstructured bytes (what a fuzzer gives): the initial settings, then
/// operations. Framing bytes are drawn from a small alphabet most of the time, and bytes
/// 0xF0-0xFE of the data fed stand for that alphabet, so that the two meet.
pub fn script_from_bytes(data: &[u8]) -> ((u8, u8, u8, usize), Vec<Op>) {
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let ch = |b: u8| if b & 0x80 == 0 { b"\x0b\x1c\x0dabAB<>\n|\x00\xff\r^~&"[usize::from(b & 0x0f)] } else { b };
    let size = |b: u8| if b == 0xff { usize::MAX } else { usize::from(b % 48) };
    let init = (
        ch(next().unwrap_or(0x00)),
        ch(next().unwrap_or(0x01)),
        ch(next().unwrap_or(0x02)),
        size(next().unwrap_or(0xff)),
    );
    let mut ops = Vec::new();
    while let Some(tag) = next() {
        match tag % 16 {
            0 => {
                let (s, e, l) = (next().unwrap_or(0), next().unwrap_or(1), next().unwrap_or(2));
                ops.push(Op::SetChars(ch(s), ch(e), ch(l)));
            }
            1 => ops.push(Op::SetMax(size(next().unwrap_or(0xff)))),
            2 => ops.push(Op::Reset),
            _ => {
                let n = usize::from(tag >> 4) * 3 + 1;
                let mut chunk = Vec::with_capacity(n);
                for _ in 0..n {
                    match next() {
                        // Bytes 0xF0-0xFE stand for the framing alphabet (0xFF for itself).
                        Some(b) if (0xf0..0xff).contains(&b) => chunk.push(ch(b & 0x0f)),
                        Some(b) => chunk.push(b),
                        None => break,
                    }
                }
                ops.push(Op::Feed(chunk));
            }
        }
    }
    (init, ops)
}
