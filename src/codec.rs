//! Sans-IO MLLP framing: `<SB> content <EB><EOL>`.
//!
//! The [`Decoder`] turns a byte stream, fed in arbitrary chunks, into [`DecodeEvent`]s that
//! borrow the input; [`encode_frame`] and [`encode_commit`] produce frames. Nothing here knows
//! whether it runs on the receiving or the sending side of a connection, does I/O or reads a
//! clock, so the same code serves the server and a client.

/// The three framing bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameChars {
    /// Start block (SB), `0x0B` by default.
    pub start: u8,
    /// End block (EB), `0x1C` by default.
    pub end: u8,
    /// Byte that must follow the end block (EOL), `0x0D` by default.
    pub eol: u8,
}

impl Default for FrameChars {
    /// The standard MLLP bytes: SB `0x0B`, EB `0x1C`, EOL `0x0D`.
    fn default() -> Self {
        FrameChars { start: 0x0B, end: 0x1C, eol: 0x0D }
    }
}

/// Why a partial frame was thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// A start block arrived inside a frame: the partial frame is dropped and a new frame begins.
    Restarted,
    /// An end block was followed by a byte other than EOL.
    BadTrailer,
}

/// What the decoder found, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeEvent<'a> {
    /// A start block: a frame begins.
    Start,
    /// Content bytes of the current frame (a borrow of the input; may be split anywhere).
    Data(&'a [u8]),
    /// End block + EOL: the current frame is complete.
    End,
    /// The frame's content exceeded the maximum size: it is abandoned, nothing more of it is reported,
    /// and the decoder skips everything until the next start block.
    Oversize,
    /// The current frame was abandoned for the reason given (no End will follow for it).
    Aborted(AbortReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outside any frame: skipping (and counting) bytes until a start block.
    Idle,
    /// Inside a frame, reading content.
    Content,
    /// Inside a frame, the end block was the last byte seen: the next byte must be EOL.
    AfterEnd,
    /// Discarding the rest of an oversized frame (not counted as garbage).
    Discard,
    /// The oversized frame's end block was the last byte seen; an EOL next still belongs to it.
    DiscardEnd,
}

/// Incremental MLLP frame decoder (sans-IO).
///
/// Feed it whatever the transport delivered; it reports frame boundaries and content as
/// [`DecodeEvent`]s and keeps only a few words of state between feeds (it never buffers
/// content: the caller assembles [`DecodeEvent::Data`] slices as it sees fit).
#[derive(Clone, Debug)]
pub struct Decoder {
    chars: FrameChars,
    max_message_size: usize,
    state: State,
    /// Content bytes of the current frame so far (0 outside a frame).
    len: usize,
}

impl Decoder {
    /// Creates a decoder for frames delimited by `chars` whose content may be at most
    /// `max_message_size` bytes.
    pub fn new(chars: FrameChars, max_message_size: usize) -> Self {
        Decoder { chars, max_message_size, state: State::Idle, len: 0 }
    }

    /// The framing bytes in use.
    pub fn chars(&self) -> FrameChars {
        self.chars
    }

    /// Changes the framing bytes; applies to bytes fed from now on (a pending partial frame is
    /// kept). The three bytes should be distinct; if they are not, the end block takes
    /// precedence over the start block inside a frame.
    pub fn set_chars(&mut self, chars: FrameChars) {
        self.chars = chars;
    }

    /// The largest frame content, in bytes, that is accepted.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Changes the maximum content size; applies to bytes fed from now on (a pending frame that
    /// is already larger is reported as [`DecodeEvent::Oversize`] at its next content byte or end block).
    pub fn set_max_message_size(&mut self, max: usize) {
        self.max_message_size = max;
    }

    /// Feeds bytes; calls `f` for each event in order. Returns the number of bytes skipped
    /// outside any frame during this call (garbage between frames).
    ///
    /// The remainder of an oversized frame (up to its end block and EOL) is discarded but not
    /// counted: it is not garbage, and [`DecodeEvent::Oversize`] already reported it. Bytes
    /// after it are counted like any others outside a frame.
    pub fn feed<'a>(&mut self, input: &'a [u8], mut f: impl FnMut(DecodeEvent<'a>)) -> usize {
        let FrameChars { start, end, eol } = self.chars;
        let mut skipped = 0;
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            match self.state {
                State::Idle => match find1(start, rest) {
                    Some(p) => {
                        skipped += p;
                        i += p + 1;
                        self.begin_frame(&mut f);
                    }
                    None => {
                        skipped += rest.len();
                        i = input.len();
                    }
                },
                State::Discard => match find2(end, start, rest) {
                    Some(p) => {
                        i += p + 1;
                        if rest[p] == end {
                            self.state = State::DiscardEnd;
                        } else {
                            self.begin_frame(&mut f);
                        }
                    }
                    None => i = input.len(),
                },
                State::DiscardEnd => {
                    // The oversized frame is over: what follows is between frames again.
                    self.state = State::Idle;
                    if rest[0] == eol {
                        i += 1;
                    }
                }
                State::AfterEnd => {
                    self.len = 0;
                    self.state = State::Idle;
                    if rest[0] == eol {
                        i += 1;
                        f(DecodeEvent::End);
                    } else {
                        // Do not consume the byte: it is re-read as outside a frame, so a start
                        // block right after a bad trailer still opens the next frame.
                        f(DecodeEvent::Aborted(AbortReason::BadTrailer));
                    }
                }
                State::Content => {
                    if self.len == 0 && rest[0] == start && start != end {
                        // A run of start blocks (a storm, or a sender resynchronising): each
                        // restarts the empty frame. No search per byte; same events.
                        let run = rest.iter().take_while(|&&b| b == start).count();
                        for _ in 0..run {
                            f(DecodeEvent::Aborted(AbortReason::Restarted));
                            f(DecodeEvent::Start);
                        }
                        i += run;
                        continue;
                    }
                    let hit = find2(end, start, rest);
                    let run = hit.unwrap_or(rest.len());
                    if run > 0 {
                        if run > self.max_message_size.saturating_sub(self.len) {
                            // Nothing of the overflowing run is reported; Discard resumes at
                            // the delimiter (if any) that ended the run.
                            self.oversize(&mut f);
                            i += run;
                            continue;
                        }
                        self.len += run;
                        f(DecodeEvent::Data(&rest[..run]));
                    }
                    i += run;
                    if hit.is_some() {
                        let b = rest[run];
                        i += 1;
                        if b == end {
                            if self.len > self.max_message_size {
                                // Only after a lowered maximum; the EOL still belongs to it.
                                self.oversize(&mut f);
                                self.state = State::DiscardEnd;
                            } else {
                                self.state = State::AfterEnd;
                            }
                        } else {
                            f(DecodeEvent::Aborted(AbortReason::Restarted));
                            self.begin_frame(&mut f);
                        }
                    }
                }
            }
        }
        skipped
    }

    /// True while reading a frame's content (after its start block, before its end block).
    pub fn in_content(&self) -> bool {
        self.state == State::Content
    }

    /// Inside a frame's content, takes the leading run of `input` that is content (up to the
    /// first start or end block byte) as [`feed`](Self::feed) would, without reporting it: the
    /// caller already has those bytes where it wants them. Returns the run's length; 0 outside
    /// content, and 0 when the run would exceed the maximum size (feed those bytes instead, so
    /// that Oversize is reported). Feed the rest of `input` after the run as usual.
    pub fn consume_content(&mut self, input: &[u8]) -> usize {
        if self.state != State::Content {
            return 0;
        }
        let run = find2(self.chars.end, self.chars.start, input).unwrap_or(input.len());
        if run > self.max_message_size.saturating_sub(self.len) {
            return 0;
        }
        self.len += run;
        run
    }

    /// True between a Start and its End/Oversize/Aborted (i.e. a partial frame is pending).
    pub fn in_frame(&self) -> bool {
        matches!(self.state, State::Content | State::AfterEnd)
    }

    /// Content bytes of the current frame so far.
    pub fn frame_len(&self) -> usize {
        self.len
    }

    /// Discards any partial frame (used on ReceiveTimeout); the decoder then skips until the next start block.
    ///
    /// Bytes after the reset are outside any frame, so late-arriving content of the discarded
    /// frame counts as skipped.
    pub fn reset(&mut self) {
        self.state = State::Idle;
        self.len = 0;
    }

    fn begin_frame<'a>(&mut self, f: &mut impl FnMut(DecodeEvent<'a>)) {
        self.state = State::Content;
        self.len = 0;
        f(DecodeEvent::Start);
    }

    fn oversize<'a>(&mut self, f: &mut impl FnMut(DecodeEvent<'a>)) {
        self.state = State::Discard;
        self.len = 0;
        f(DecodeEvent::Oversize);
    }
}

/// True when `payload` can be framed with `chars`: it holds no start or end block byte (MLLP
/// has no escaping, so such a payload would split or corrupt the frame).
pub fn can_frame(chars: FrameChars, payload: &[u8]) -> bool {
    memchr::memchr2(chars.start, chars.end, payload).is_none()
}

/// Appends `<SB> payload <EB><EOL>` to `out`.
pub fn encode_frame(chars: FrameChars, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 3);
    out.push(chars.start);
    out.extend_from_slice(payload);
    out.push(chars.end);
    out.push(chars.eol);
}

/// Appends an MLLP commit acknowledgement block `<SB><ack_byte><EB><EOL>` to `out`.
///
/// The MLLP release 2 commit bytes are ACK `0x06` and NAK `0x15`.
pub fn encode_commit(chars: FrameChars, ack_byte: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[chars.start, ack_byte, chars.end, chars.eol]);
}

// The decoder's hot path is scanning content for the end (and start) block: memchr's SIMD
// search does it at memory bandwidth, several times faster than a byte or word loop.

/// Position of the first `a` in `hay`.
#[inline]
fn find1(a: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(a, hay)
}

/// Position of the first `a` or `b` in `hay`.
#[inline]
fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr2(a, b, hay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SB: u8 = 0x0B;
    const EB: u8 = 0x1C;
    const CR: u8 = 0x0D;

    /// Owned copy of a [`DecodeEvent`].
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Start,
        Data(Vec<u8>),
        End,
        Oversize,
        Aborted(AbortReason),
    }

    fn own(e: DecodeEvent<'_>) -> Ev {
        match e {
            DecodeEvent::Start => Ev::Start,
            DecodeEvent::Data(d) => Ev::Data(d.to_vec()),
            DecodeEvent::End => Ev::End,
            DecodeEvent::Oversize => Ev::Oversize,
            DecodeEvent::Aborted(r) => Ev::Aborted(r),
        }
    }

    fn events(d: &mut Decoder, input: &[u8]) -> (Vec<Ev>, usize) {
        let mut v = Vec::new();
        let skipped = d.feed(input, |e| v.push(own(e)));
        (v, skipped)
    }

    fn dec(max: usize) -> Decoder {
        Decoder::new(FrameChars::default(), max)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame(FrameChars::default(), payload, &mut v);
        v
    }

    /// Feeds `chunks` in order and returns the complete messages, the non-Data events, the
    /// total skipped count, and checks event grammar and size invariants along the way.
    fn reassemble(d: &mut Decoder, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Ev>, usize) {
        let max = d.max_message_size();
        let mut msgs = Vec::new();
        let mut others = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        let mut skipped = 0;
        for chunk in chunks {
            let mut last_was_data = false;
            skipped += d.feed(chunk, |e| {
                match e {
                    DecodeEvent::Start => {
                        assert!(cur.is_none(), "Start inside a frame without Aborted");
                        cur = Some(Vec::new());
                    }
                    DecodeEvent::Data(b) => {
                        assert!(!b.is_empty(), "empty Data event");
                        assert!(!last_was_data, "two Data events in a row in one feed");
                        let c = cur.as_mut().expect("Data outside a frame");
                        c.extend_from_slice(b);
                        assert!(c.len() <= max, "Data beyond max size");
                    }
                    DecodeEvent::End => {
                        let m = cur.take().expect("End outside a frame");
                        assert!(m.len() <= max);
                        msgs.push(m);
                    }
                    DecodeEvent::Oversize | DecodeEvent::Aborted(_) => {
                        assert!(cur.take().is_some(), "abandon outside a frame");
                    }
                }
                last_was_data = matches!(e, DecodeEvent::Data(_));
                if !last_was_data {
                    others.push(own(e));
                }
            });
            assert_eq!(d.in_frame(), cur.is_some());
            assert_eq!(d.frame_len(), cur.as_ref().map_or(0, Vec::len));
        }
        (msgs, others, skipped)
    }

    #[test]
    fn a_run_of_start_blocks_restarts_the_frame_at_each() {
        let mut d = dec(100);
        let (ev, _) = events(&mut d, b"\x0bab\x0b\x0b\x0bcd\x1c\x0d");
        let r = Ev::Aborted(AbortReason::Restarted);
        assert_eq!(
            ev,
            [
                Ev::Start,
                Ev::Data(b"ab".to_vec()),
                r.clone(),
                Ev::Start,
                r.clone(),
                Ev::Start,
                r,
                Ev::Start,
                Ev::Data(b"cd".to_vec()),
                Ev::End
            ]
        );
        // Across feeds too.
        let (ev, _) = events(&mut d, b"\x0b");
        assert_eq!(ev, [Ev::Start]);
        let (ev, _) = events(&mut d, b"\x0b\x0b");
        assert_eq!(ev.len(), 4);
        assert!(d.in_frame() && d.frame_len() == 0);
    }

    #[test]
    fn default_chars() {
        let c = FrameChars::default();
        assert_eq!((c.start, c.end, c.eol), (0x0B, 0x1C, 0x0D));
    }

    #[test]
    fn consume_content_takes_the_run_feed_would_report() {
        let mut d = dec(10);
        assert_eq!(d.consume_content(b"abc"), 0, "outside a frame");
        let (ev, _) = events(&mut d, b"\x0bab");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"ab".to_vec())]);
        assert!(d.in_content());
        assert_eq!(d.consume_content(b"cdef\x1c\x0d"), 4);
        assert_eq!(d.frame_len(), 6);
        // The rest is fed as usual.
        let (ev, _) = events(&mut d, b"\x1c\x0d");
        assert_eq!(ev, [Ev::End]);
        // A run past the maximum is left for feed, which reports Oversize.
        let _ = events(&mut d, b"\x0b12345678");
        assert_eq!(d.consume_content(b"abc"), 0);
        assert_eq!(d.frame_len(), 8);
        let (ev, _) = events(&mut d, b"abc");
        assert_eq!(ev, [Ev::Oversize]);
    }

    #[test]
    fn single_frame() {
        let mut d = dec(100);
        let (ev, skipped) = events(&mut d, b"\x0bMSH|x\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"MSH|x".to_vec()), Ev::End]);
        assert_eq!(skipped, 0);
        assert!(!d.in_frame());
    }

    #[test]
    fn data_borrows_input() {
        let input = b"\x0babc\x1c\x0d";
        let mut d = dec(100);
        let mut ptr = None;
        d.feed(input, |e| {
            if let DecodeEvent::Data(b) = e {
                ptr = Some(b.as_ptr());
            }
        });
        assert_eq!(ptr, Some(input[1..].as_ptr()));
    }

    #[test]
    fn garbage_before_start_is_skipped_and_counted() {
        let mut d = dec(100);
        let (ev, skipped) = events(&mut d, b"junk\r\n\x1c\x0babc\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"abc".to_vec()), Ev::End]);
        assert_eq!(skipped, 7);
        // Garbage after a frame and across feeds.
        let (ev, skipped) = events(&mut d, b"xyz");
        assert!(ev.is_empty());
        assert_eq!(skipped, 3);
    }

    #[test]
    fn several_frames_in_one_feed() {
        let mut input = frame(b"one");
        input.extend_from_slice(b"\r\n");
        input.extend(frame(b"two"));
        input.extend(frame(b"three"));
        let mut d = dec(100);
        let (ev, skipped) = events(&mut d, &input);
        assert_eq!(
            ev,
            [
                Ev::Start,
                Ev::Data(b"one".to_vec()),
                Ev::End,
                Ev::Start,
                Ev::Data(b"two".to_vec()),
                Ev::End,
                Ev::Start,
                Ev::Data(b"three".to_vec()),
                Ev::End,
            ]
        );
        assert_eq!(skipped, 2);
    }

    #[test]
    fn empty_frame() {
        let mut d = dec(100);
        let (ev, _) = events(&mut d, b"\x0b\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::End]);
        // Even with a zero maximum.
        let mut d = dec(0);
        let (ev, _) = events(&mut d, b"\x0b\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::End]);
    }

    #[test]
    fn end_block_without_eol_is_bad_trailer() {
        let mut d = dec(100);
        let (ev, skipped) = events(&mut d, b"\x0babc\x1cXdef");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"abc".to_vec()), Ev::Aborted(AbortReason::BadTrailer)]);
        // The byte after EB is then outside a frame, like what follows it.
        assert_eq!(skipped, 4);
        assert!(!d.in_frame());
    }

    #[test]
    fn start_block_after_end_block_starts_new_frame() {
        let mut d = dec(100);
        let (ev, skipped) = events(&mut d, b"\x0babc\x1c\x0bdef\x1c\x0d");
        assert_eq!(
            ev,
            [
                Ev::Start,
                Ev::Data(b"abc".to_vec()),
                Ev::Aborted(AbortReason::BadTrailer),
                Ev::Start,
                Ev::Data(b"def".to_vec()),
                Ev::End,
            ]
        );
        assert_eq!(skipped, 0);
    }

    #[test]
    fn end_block_at_chunk_end_is_remembered() {
        let mut d = dec(100);
        let (ev, _) = events(&mut d, b"\x0babc\x1c");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"abc".to_vec())]);
        assert!(d.in_frame());
        assert_eq!(d.frame_len(), 3);
        let (ev, _) = events(&mut d, b"\x0d");
        assert_eq!(ev, [Ev::End]);
        assert!(!d.in_frame());
        assert_eq!(d.frame_len(), 0);

        let (_, _) = events(&mut d, b"\x0babc\x1c");
        let (ev, skipped) = events(&mut d, b"Q");
        assert_eq!(ev, [Ev::Aborted(AbortReason::BadTrailer)]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn start_block_inside_frame_restarts() {
        let mut d = dec(100);
        let (ev, _) = events(&mut d, b"\x0babc\x0bdef\x1c\x0d");
        assert_eq!(
            ev,
            [
                Ev::Start,
                Ev::Data(b"abc".to_vec()),
                Ev::Aborted(AbortReason::Restarted),
                Ev::Start,
                Ev::Data(b"def".to_vec()),
                Ev::End,
            ]
        );
        // Across feeds, and with no content yet.
        let mut d = dec(100);
        let (ev, _) = events(&mut d, b"\x0b");
        assert_eq!(ev, [Ev::Start]);
        let (ev, _) = events(&mut d, b"\x0bx\x1c\x0d");
        assert_eq!(ev, [Ev::Aborted(AbortReason::Restarted), Ev::Start, Ev::Data(b"x".to_vec()), Ev::End]);
    }

    #[test]
    fn max_size_exactly_is_accepted() {
        let mut d = dec(5);
        let (ev, _) = events(&mut d, &frame(b"12345"));
        assert_eq!(ev, [Ev::Start, Ev::Data(b"12345".to_vec()), Ev::End]);
        // Split across feeds, still exactly at the limit.
        let (ev, _) = events(&mut d, b"\x0b123");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"123".to_vec())]);
        let (ev, _) = events(&mut d, b"45\x1c\x0d");
        assert_eq!(ev, [Ev::Data(b"45".to_vec()), Ev::End]);
    }

    #[test]
    fn oversize_is_reported_once_and_skipped() {
        let mut d = dec(5);
        let mut input = frame(b"123456789");
        input.extend(frame(b"ok"));
        let (ev, skipped) = events(&mut d, &input);
        assert_eq!(ev, [Ev::Start, Ev::Oversize, Ev::Start, Ev::Data(b"ok".to_vec()), Ev::End]);
        assert_eq!(skipped, 0, "the oversized remainder is not garbage");
    }

    #[test]
    fn oversize_across_feeds() {
        let mut d = dec(5);
        let (ev, _) = events(&mut d, b"\x0b1234");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"1234".to_vec())]);
        // The sixth byte overflows: Oversize as soon as it is seen, before any end block.
        let (ev, _) = events(&mut d, b"56");
        assert_eq!(ev, [Ev::Oversize]);
        assert!(!d.in_frame());
        assert_eq!(d.frame_len(), 0);
        let (ev, skipped) = events(&mut d, b"789\x1c");
        assert!(ev.is_empty());
        assert_eq!(skipped, 0);
        // The rest of the oversized frame is not garbage; what follows it is.
        let (ev, skipped) = events(&mut d, b"\x0d\x1cjunk");
        assert!(ev.is_empty());
        assert_eq!(skipped, 5);
        // A start block during the skip starts a new frame normally.
        let (ev, _) = events(&mut d, b"more\x0bok\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"ok".to_vec()), Ev::End]);
    }

    #[test]
    fn oversize_then_start_block_in_same_run() {
        let mut d = dec(2);
        let (ev, _) = events(&mut d, b"\x0babcdef\x0bxy\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::Oversize, Ev::Start, Ev::Data(b"xy".to_vec()), Ev::End]);
    }

    #[test]
    fn lowering_max_mid_frame() {
        let mut d = dec(10);
        events(&mut d, b"\x0b12345");
        d.set_max_message_size(3);
        assert_eq!(d.max_message_size(), 3);
        let (ev, skipped) = events(&mut d, b"\x1c\x0dxy");
        assert_eq!(ev, [Ev::Oversize]);
        assert_eq!(skipped, 2);
    }

    #[test]
    fn reset_discards_partial_frame() {
        let mut d = dec(100);
        events(&mut d, b"\x0bpartial");
        assert!(d.in_frame());
        d.reset();
        assert!(!d.in_frame());
        assert_eq!(d.frame_len(), 0);
        let (ev, skipped) = events(&mut d, b"rest\x1c\x0d\x0bnew\x1c\x0d");
        assert_eq!(ev, [Ev::Start, Ev::Data(b"new".to_vec()), Ev::End]);
        assert_eq!(skipped, 6);
    }

    #[test]
    fn custom_chars() {
        let chars = FrameChars { start: b'<', end: b'>', eol: b'\n' };
        let mut d = Decoder::new(chars, 100);
        assert_eq!(d.chars(), chars);
        let mut input = b"..".to_vec();
        encode_frame(chars, b"hello \x0b\x1c\x0d", &mut input);
        assert_eq!(input, b"..<hello \x0b\x1c\x0d>\n");
        let (ev, skipped) = events(&mut d, &input);
        assert_eq!(ev, [Ev::Start, Ev::Data(b"hello \x0b\x1c\x0d".to_vec()), Ev::End]);
        assert_eq!(skipped, 2);

        d.set_chars(FrameChars::default());
        let (ev, _) = events(&mut d, &frame(b"<x>"));
        assert_eq!(ev, [Ev::Start, Ev::Data(b"<x>".to_vec()), Ev::End]);
    }

    #[test]
    fn encodings() {
        let mut out = b"pre".to_vec();
        encode_frame(FrameChars::default(), b"MSH|", &mut out);
        assert_eq!(out, b"pre\x0bMSH|\x1c\x0d");
        let mut out = Vec::new();
        encode_commit(FrameChars::default(), 0x06, &mut out);
        assert_eq!(out, [SB, 0x06, EB, CR]);
        let chars = FrameChars { start: 1, end: 2, eol: 3 };
        out.clear();
        encode_commit(chars, 0x15, &mut out);
        assert_eq!(out, [1, 0x15, 2, 3]);
        // A commit block decodes as a one-byte frame.
        let mut d = Decoder::new(chars, 10);
        let (ev, _) = events(&mut d, &out);
        assert_eq!(ev, [Ev::Start, Ev::Data(vec![0x15]), Ev::End]);
    }

    #[test]
    fn long_content_uses_one_data_event() {
        // Exercises the word-at-a-time scan with delimiters at many offsets.
        for n in 0..70 {
            let payload: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut input = vec![b'g'; n % 19];
            input.extend(frame(&payload));
            let mut d = dec(1000);
            let (ev, skipped) = events(&mut d, &input);
            let mut want = vec![Ev::Start];
            if n > 0 {
                want.push(Ev::Data(payload.clone()));
            }
            want.push(Ev::End);
            assert_eq!(ev, want);
            assert_eq!(skipped, n % 19);
        }
    }

    #[test]
    fn find_helpers_match_naive() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8).collect();
        for start in 0..hay.len() {
            let h = &hay[start..];
            for a in [0u8, 1, 7, 0x0B, 0x1C, 0x80, 0xFF] {
                assert_eq!(find1(a, h), h.iter().position(|&x| x == a));
                for b in [0u8, 0x0D, 0x7F, 0xFE] {
                    assert_eq!(find2(a, b, h), h.iter().position(|&x| x == a || x == b));
                }
            }
        }
    }

    /// Bytes that are neither SB nor EB.
    fn content_byte() -> impl Strategy<Value = u8> {
        any::<u8>().prop_filter("no SB/EB", |&b| b != SB && b != EB)
    }

    /// Bytes that are not SB, biased towards EB and CR to exercise stray delimiters.
    fn garbage_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => any::<u8>().prop_filter("no SB", |&b| b != SB),
            1 => Just(EB),
            1 => Just(CR),
        ]
    }

    /// Bytes biased towards the three framing bytes.
    fn noisy_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            6 => any::<u8>(),
            1 => Just(SB),
            1 => Just(EB),
            1 => Just(CR),
        ]
    }

    /// Splits `input` at the (sorted, deduplicated) positions `cuts % (len + 1)`.
    fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in at {
            chunks.push(&input[prev..c]);
            prev = c;
        }
        chunks.push(&input[prev..]);
        chunks
    }

    /// Three distinct framing bytes, often from a small alphabet that collides with content.
    fn distinct_chars() -> impl Strategy<Value = FrameChars> {
        let c =
            || prop_oneof![2 => prop::sample::select(vec![SB, EB, CR, b'<', b'>', b'\n', 0, 0xFF]), 1 => any::<u8>()];
        (c(), c(), c())
            .prop_filter("distinct", |(s, e, l)| s != e && s != l && e != l)
            .prop_map(|(start, end, eol)| FrameChars { start, end, eol })
    }

    /// Feeds `bytes`, collecting complete messages (as `Ev::Data`) and abandoned frames into
    /// `got`; `cur` is the frame in progress across calls. Returns the bytes skipped.
    fn collect(d: &mut Decoder, bytes: &[u8], got: &mut Vec<Ev>, cur: &mut Option<Vec<u8>>) -> usize {
        d.feed(bytes, |e| match e {
            DecodeEvent::Start => *cur = Some(Vec::new()),
            DecodeEvent::Data(b) => cur.as_mut().expect("Data inside a frame").extend_from_slice(b),
            DecodeEvent::End => got.push(Ev::Data(cur.take().expect("End inside a frame"))),
            other => {
                cur.take().expect("abandoned inside a frame");
                got.push(own(other));
            }
        })
    }

    proptest! {
        /// Oracle: frames built with their own framing bytes and maximum (changed on the
        /// decoder between frames), some switching to other framing bytes halfway through their
        /// content, come back as exactly their payloads (or Oversize) whatever the split, and
        /// only the bytes between frames count as skipped.
        #[test]
        fn prop_settings_changed_mid_stream(
            frames in prop::collection::vec(
                (distinct_chars(),
                 prop::option::of((distinct_chars(), any::<usize>())),
                 prop::collection::vec(any::<u8>(), 0..6),
                 prop::collection::vec(noisy_byte(), 0..40),
                 prop_oneof![Just(usize::MAX), 0usize..48],
                 any::<usize>()),
                0..8),
        ) {
            let mut d = Decoder::new(FrameChars::default(), usize::MAX);
            let (mut want, mut got, mut cur) = (Vec::new(), Vec::new(), None);
            let (mut garbage, mut skipped) = (0, 0);
            for (chars, switch, junk, payload, max, cut) in &frames {
                let (chars, max) = (*chars, *max);
                d.set_chars(chars);
                d.set_max_message_size(max);
                prop_assert_eq!(d.chars(), chars);
                let junk: Vec<u8> = junk.iter().copied().filter(|&b| b != chars.start).collect();
                let banned = |b: u8, c: FrameChars| b == c.start || b == c.end;
                let mut payload: Vec<u8> = payload.iter().copied().filter(|&b| !banned(b, chars)).collect();
                // The bytes fed before the switch of framing bytes (if any) and after it.
                let mut first = junk.clone();
                first.push(chars.start);
                let mut second = Vec::new();
                let mut end = chars;
                if let Some((other, at)) = switch {
                    payload.retain(|&b| !banned(b, *other));
                    let at = at % (payload.len() + 1);
                    first.extend_from_slice(&payload[..at]);
                    second.extend_from_slice(&payload[at..]);
                    end = *other;
                } else {
                    first.extend_from_slice(&payload);
                }
                second.extend_from_slice(&[end.end, end.eol]);
                garbage += junk.len();
                want.push(if payload.len() <= max { Ev::Data(payload.clone()) } else { Ev::Oversize });
                let cut = cut % (first.len() + 1);
                skipped += collect(&mut d, &first[..cut], &mut got, &mut cur);
                skipped += collect(&mut d, &first[cut..], &mut got, &mut cur);
                d.set_chars(end);
                skipped += collect(&mut d, &second, &mut got, &mut cur);
                prop_assert!(!d.in_frame());
                prop_assert_eq!(&got, &want);
            }
            prop_assert_eq!(skipped, garbage);
        }

        #[test]
        fn prop_split_feeding_matches_whole(
            frames in prop::collection::vec(
                (prop::collection::vec(garbage_byte(), 0..8),
                 prop::collection::vec(content_byte(), 0..60)),
                0..8),
            tail in prop::collection::vec(garbage_byte(), 0..8),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            max in prop_oneof![Just(usize::MAX), 0usize..64],
        ) {
            let mut stream = Vec::new();
            let mut garbage = 0;
            for (g, p) in &frames {
                stream.extend_from_slice(g);
                garbage += g.len();
                encode_frame(FrameChars::default(), p, &mut stream);
            }
            stream.extend_from_slice(&tail);
            garbage += tail.len();

            let whole = reassemble(&mut dec(max), &[&stream]);
            let parts = reassemble(&mut dec(max), &split(&stream, &cuts));
            prop_assert_eq!(&whole, &parts);

            let expected: Vec<Vec<u8>> = frames
                .iter()
                .map(|(_, p)| p.clone())
                .filter(|p| p.len() <= max)
                .collect();
            prop_assert_eq!(&whole.0, &expected);
            let oversize = whole.1.iter().filter(|e| **e == Ev::Oversize).count();
            prop_assert_eq!(oversize, frames.len() - expected.len());
            prop_assert!(!whole.1.iter().any(|e| matches!(e, Ev::Aborted(_))));
            prop_assert_eq!(whole.2, garbage);
        }

        #[test]
        fn prop_frame_split_at_every_position(
            prefix in prop::collection::vec(garbage_byte(), 0..6),
            payload in prop::collection::vec(content_byte(), 0..80),
        ) {
            let mut stream = prefix.clone();
            encode_frame(FrameChars::default(), &payload, &mut stream);
            for at in 0..=stream.len() {
                let (a, b) = stream.split_at(at);
                let (msgs, others, skipped) = reassemble(&mut dec(80), &[a, b]);
                prop_assert_eq!(&msgs, &vec![payload.clone()], "split at {}", at);
                prop_assert_eq!(&others, &vec![Ev::Start, Ev::End]);
                prop_assert_eq!(skipped, prefix.len());
            }
        }

        #[test]
        fn prop_random_input_never_panics(
            input in prop::collection::vec(noisy_byte(), 0..400),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
            max in 0usize..40,
        ) {
            // reassemble() asserts the event grammar and that nothing exceeds `max`.
            let whole = reassemble(&mut dec(max), &[&input]);
            let parts = reassemble(&mut dec(max), &split(&input, &cuts));
            prop_assert_eq!(&whole, &parts);
            for m in &whole.0 {
                prop_assert!(m.len() <= max);
            }
        }
    }
}
