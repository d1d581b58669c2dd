//! Oracle for `mllp::hl7::split_batch`: the batch grammar
//! `[FHS] { BHS {message} BTS | message+ (only inside FHS) } [FTS]` read by recursive descent
//! over the segments (CR/LF-terminated), where a message is an MSH and the segments after it
//! up to the next header, trailer or MSH (a trailer may be its bare name). An FHS needs its
//! FTS, a BHS its BTS; BTS-1 and FTS-1, when valued (spaces trimmed), are counts that must
//! match; nothing may follow FTS.
//!
//! Shared by tests/fuzz_oracles.rs and fuzz/fuzz_targets/batch.rs (included with `#[path]`).

#![allow(dead_code)]

/// A segment: its bytes and where it starts in the frame.
#[derive(Clone, Copy, Debug)]
struct Seg<'a> {
    at: usize,
    bytes: &'a [u8],
}

impl Seg<'_> {
    /// The segment's name when it is one of the structural ones (name + a separator byte).
    fn kind(&self) -> Option<&[u8]> {
        let b = self.bytes;
        let sep = |c: u8| !c.is_ascii_alphanumeric();
        let name = b.get(..3)?;
        // A trailer may be its name alone (HL7 omits empty trailing fields); a header needs
        // its field separator.
        let bare_trailer = b.len() == 3 && (name == b"BTS" || name == b"FTS");
        let structural = [&b"FHS"[..], b"BHS", b"MSH", b"BTS", b"FTS"].contains(&name);
        (bare_trailer || b.len() >= 4 && sep(b[3]) && structural).then_some(name)
    }

    fn is(&self, name: &[u8]) -> bool {
        self.kind() == Some(name)
    }

    /// Field 1 of a trailer, spaces trimmed.
    fn count(&self) -> Result<Option<usize>, ()> {
        if self.bytes.len() < 4 {
            return Ok(None);
        }
        let f = self.bytes[4..].split(|&b| b == self.bytes[3]).next().unwrap_or(&[]);
        let s = String::from_utf8_lossy(f);
        let t = s.trim_matches(' ');
        if t.is_empty() {
            return Ok(None);
        }
        let digits = t.strip_prefix('+').unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(());
        }
        digits.parse::<usize>().map(Some).map_err(|_| ())
    }
}

/// One batch as the oracle reads it: its BHS (None inside an FHS without one) and messages.
pub type Group<'a> = (Option<&'a [u8]>, Vec<&'a [u8]>);

/// What the oracle reads: the FHS, and the batches.
#[derive(Debug, PartialEq, Eq)]
pub struct Split<'a> {
    pub fhs: Option<&'a [u8]>,
    pub groups: Vec<Group<'a>>,
}

struct P<'a> {
    frame: &'a [u8],
    segs: Vec<Seg<'a>>,
    i: usize,
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<Seg<'a>> {
        self.segs.get(self.i).copied()
    }

    fn at(&self, name: &[u8]) -> bool {
        self.peek().is_some_and(|s| s.is(name))
    }

    /// Where the segment at `i` starts (the frame's end past the last).
    fn start_of(&self, i: usize) -> usize {
        self.segs.get(i).map_or(self.frame.len(), |s| s.at)
    }

    /// One message: an MSH and the non-structural segments after it.
    fn message(&mut self) -> &'a [u8] {
        let first = self.i;
        self.i += 1;
        while self.peek().is_some_and(|s| s.kind().is_none()) {
            self.i += 1;
        }
        &self.frame[self.start_of(first)..self.start_of(self.i)]
    }
}

/// The oracle's reading of `frame`; None when it is not a well-formed batch.
pub fn split(frame: &[u8]) -> Option<Split<'_>> {
    let mut segs = Vec::new();
    let mut i = 0;
    for piece in frame.split(|&b| b == b'\r' || b == b'\n') {
        if !piece.is_empty() {
            segs.push(Seg { at: i, bytes: piece });
        }
        i += piece.len() + 1;
    }
    let mut p = P { frame, segs, i: 0 };
    let fhs = if p.at(b"FHS") {
        p.i += 1;
        Some(p.segs[0].bytes)
    } else {
        None
    };
    let mut groups = Vec::new();
    loop {
        if p.at(b"BHS") {
            let bhs = p.peek().expect("at BHS").bytes;
            p.i += 1;
            let mut msgs = Vec::new();
            while p.at(b"MSH") {
                msgs.push(p.message());
            }
            let bts = p.peek().filter(|s| s.is(b"BTS"))?;
            p.i += 1;
            if let Some(n) = bts.count().ok()? {
                if n != msgs.len() {
                    return None;
                }
            }
            groups.push((Some(bhs), msgs));
        } else if p.at(b"MSH") && fhs.is_some() {
            let mut msgs = Vec::new();
            while p.at(b"MSH") {
                msgs.push(p.message());
            }
            groups.push((None, msgs));
        } else {
            break;
        }
    }
    if fhs.is_some() {
        let fts = p.peek().filter(|s| s.is(b"FTS"))?;
        p.i += 1;
        if let Some(n) = fts.count().ok()? {
            if n != groups.len() {
                return None;
            }
        }
    }
    if p.i != p.segs.len() {
        return None;
    }
    Some(Split { fhs, groups })
}

/// Compares `mllp::hl7::split_batch` with the oracle on `frame`: both refuse it, or both
/// return the same headers and the same messages (the same byte ranges of the frame). For
/// an accepted batch, also checks `is_batch`, `len` and `shape`, and that the batch
/// acknowledgement built from it has one BTS per BHS with the count of acknowledgements given.
pub fn check(frame: &[u8]) {
    let got = mllp::hl7::split_batch(frame);
    let want = split(frame);
    match (&got, &want) {
        (Err(_), None) => {}
        (Ok(b), Some(w)) => {
            assert_eq!(b.fhs, w.fhs, "FHS");
            let groups: Vec<Group> = b.groups.iter().map(|g| (g.bhs, g.messages.clone())).collect();
            assert_eq!(groups, w.groups, "batches and messages");
            for m in b.messages() {
                let off = m.as_ptr() as usize - frame.as_ptr() as usize;
                assert!(off + m.len() <= frame.len(), "a message is a slice of the frame");
            }
            let n: usize = w.groups.iter().map(|g| g.1.len()).sum();
            assert_eq!(b.len(), n);
            let shape = b.shape();
            assert_eq!(shape.groups.len(), w.groups.len());
            // Every other message gets an acknowledgement ("A\r"), the rest none.
            let acks: Vec<Vec<u8>> = (0..n).map(|k| if k % 2 == 0 { b"A\r".to_vec() } else { Vec::new() }).collect();
            let mut out = Vec::new();
            mllp::hl7::build_batch_ack(&shape, &acks, b"20260101000000", &mut out);
            let segs: Vec<&[u8]> = out.split(|&c| c == b'\r').filter(|s| !s.is_empty()).collect();
            let mut k = 0;
            let mut si = segs.iter();
            if let Some(fhs) = w.fhs {
                let s = si.next().expect("FHS ack");
                assert!(s.starts_with(b"FHS") && s[3] == fhs[3]);
            }
            for (bhs, msgs) in &w.groups {
                if let Some(bhs) = bhs {
                    let s = si.next().expect("BHS ack");
                    assert!(s.starts_with(b"BHS") && s[3] == bhs[3]);
                }
                let mut given = 0;
                for _ in msgs {
                    if k % 2 == 0 {
                        assert_eq!(si.next(), Some(&&b"A"[..]), "acknowledgements in order");
                        given += 1;
                    }
                    k += 1;
                }
                if let Some(bhs) = bhs {
                    let mut want = b"BTS".to_vec();
                    want.push(bhs[3]);
                    want.extend_from_slice(given.to_string().as_bytes());
                    assert_eq!(si.next(), Some(&&want[..]), "BTS counts the acknowledgements");
                }
            }
            if let Some(fhs) = w.fhs {
                let mut want = b"FTS".to_vec();
                want.push(fhs[3]);
                want.extend_from_slice(w.groups.len().to_string().as_bytes());
                assert_eq!(si.next(), Some(&&want[..]), "FTS counts the batches");
            }
            assert_eq!(si.next(), None, "nothing else in the batch acknowledgement");
        }
        _ => panic!("split_batch {got:?}, oracle {want:?} for {:?}", String::from_utf8_lossy(frame)),
    }
}

/// A batch-like frame from fuzzer bytes: each byte picks a segment from a small vocabulary
/// (headers, trailers with right or wrong counts, messages, other segments, blank lines), so
/// that most inputs are near-batches rather than noise.
pub fn frame_from_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = data.iter().copied();
    while let Some(b) = it.next() {
        let arg = it.next().unwrap_or(0);
        let piece: Vec<u8> = match b % 12 {
            0 => b"FHS|^~\\&|S|F".to_vec(),
            1 => b"BHS|^~\\&|S|F".to_vec(),
            2 => format!("MSH|^~\\&|A|B|C|D|2026||ADT^A01|{arg}|P|2.5").into_bytes(),
            3 => b"PID|1||X".to_vec(),
            4 => format!("BTS|{}", arg % 5).into_bytes(),
            5 => format!("FTS|{}", arg % 4).into_bytes(),
            6 => b"BTS".to_vec(),
            7 => match arg % 6 {
                0 => b"BTS| +2 ".to_vec(),
                1 => b"FTS|".to_vec(),
                2 => b"BTS|x".to_vec(),
                3 => b"MSH".to_vec(),
                4 => b"FTS#1".to_vec(),
                _ => b"BTS|99999999999999999999999".to_vec(),
            },
            8 => vec![arg],
            _ => {
                // Raw bytes up to the next terminator.
                let n = usize::from(arg % 8);
                (&mut it).take(n).collect()
            }
        };
        out.extend_from_slice(&piece);
        out.extend_from_slice(match arg % 7 {
            0 => b"\r\n",
            1 => b"\n",
            2 => b"\r\r",
            _ => b"\r",
        });
    }
    out
}
