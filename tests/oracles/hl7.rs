//! Oracle for `mllp::hl7`'s MSH reader and ACK builder: HL7 field access by plain splitting
//! (segments on CR/LF, fields on the field separator, components on MSH-2's first byte), and
//! the acknowledgement checked by reading it back the same way, unescaping the fields the
//! builder escapes.
//!
//! Shared by tests/fuzz_oracles.rs and fuzz/fuzz_targets/hl7.rs (included with `#[path]`).

#![allow(dead_code)]

use mllp::hl7::{self, AckCode};

/// A byte that may separate fields: not a letter, digit, CR or LF.
pub fn is_sep(b: u8) -> bool {
    !b.is_ascii_alphanumeric() && b != b'\r' && b != b'\n'
}

/// The non-empty segments of `msg`.
pub fn segments(msg: &[u8]) -> Vec<&[u8]> {
    msg.split(|&b| b == b'\r' || b == b'\n').filter(|s| !s.is_empty()).collect()
}

fn named(seg: &[u8], name: &[u8]) -> bool {
    seg.len() >= 4 && &seg[..3] == name && is_sep(seg[3])
}

/// The MSH segment: the first segment when it is an MSH, else (after an FHS or BHS first)
/// the first MSH.
pub fn msh_segment(msg: &[u8]) -> Option<&[u8]> {
    let segs = segments(msg);
    let first = *segs.first()?;
    if named(first, b"MSH") {
        Some(first)
    } else if named(first, b"FHS") || named(first, b"BHS") {
        segs.into_iter().find(|s| named(s, b"MSH"))
    } else {
        None
    }
}

/// MSH-n (n >= 2) of an MSH segment, empty when absent.
pub fn msh_field(seg: &[u8], n: usize) -> &[u8] {
    let fields: Vec<&[u8]> = seg[4..].split(|&b| b == seg[3]).collect();
    fields.get(n - 2).copied().unwrap_or(&[])
}

/// What the oracle reads from a message: every `Msh` field by its number.
#[derive(Debug, PartialEq, Eq)]
pub struct Fields<'a> {
    pub sep: u8,
    pub f: Vec<&'a [u8]>,
    pub component: u8,
    pub trigger: &'a [u8],
}

pub fn read(msg: &[u8]) -> Option<Fields<'_>> {
    let seg = msh_segment(msg)?;
    let f: Vec<&[u8]> = (2..=18).map(|n| msh_field(seg, n)).collect();
    let component = f[0].first().copied().unwrap_or(b'^');
    let trigger = f[7].split(|&b| b == component).nth(1).unwrap_or(&[]);
    Some(Fields { sep: seg[3], f, component, trigger })
}

/// Undoes HL7 escaping of a field value with escape byte `esc` and encoding characters
/// `enc` (\F\ \S\ \R\ \E\ \T\ \X0D\ \X0A\); None for an escape sequence it does not know.
pub fn unescape(v: &[u8], sep: u8, enc: &[u8], esc: u8) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if v[i] != esc {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let close = i + 1 + v[i + 1..].iter().position(|&b| b == esc)?;
        let b = match &v[i + 1..close] {
            b"F" => sep,
            b"S" => enc[0],
            b"R" => enc[1],
            b"E" => enc[2],
            b"T" => *enc.get(3)?,
            b"X0D" => b'\r',
            b"X0A" => b'\n',
            _ => return None,
        };
        out.push(b);
        i = close + 1;
    }
    Some(out)
}

/// The bytes that are special in a field of a message with field separator `sep` and
/// encoding characters `enc`.
pub fn special(b: u8, sep: u8, enc: &[u8]) -> bool {
    b == sep || b == b'\r' || b == b'\n' || enc.iter().take(4).any(|&e| e == b)
}

/// Checks that field `got` carries `want`: with an escape character it unescapes to `want`;
/// without one, every special byte of `want` was replaced by a byte that is not special.
fn check_value(what: &str, got: &[u8], want: &[u8], sep: u8, enc: &[u8]) {
    match enc.get(2) {
        // A letter or digit as the escape character makes escape sequences ambiguous (`F` as
        // the escape: is `FFF` one sequence?): only the structure is checked then (the field
        // holds no separator, CR or LF, or the field counts checked by the caller would differ).
        Some(&esc) if esc.is_ascii_alphanumeric() => {
            assert!(!got.iter().any(|&b| b == sep || b == b'\r' || b == b'\n'), "{what}: {got:?}");
        }
        Some(&esc) => {
            let back = unescape(got, sep, enc, esc);
            assert_eq!(back.as_deref(), Some(want), "{what}: {got:?} does not unescape to {want:?}");
        }
        None => {
            assert_eq!(got.len(), want.len(), "{what}: {got:?} for {want:?}");
            for (&g, &w) in got.iter().zip(want) {
                if special(w, sep, enc) {
                    assert!(!special(g, sep, enc), "{what}: special byte {w:#x} replaced by special {g:#x}");
                } else {
                    assert_eq!(g, w, "{what}: {got:?} for {want:?}");
                }
            }
        }
    }
}

/// Compares `hl7::parse_msh`, `msh_identity`, `msh_charset`, `is_hl7_v2` with the oracle's
/// reading of `msg`, then builds an ACK and reads it back: MSH-1/2 sensible (MSH-2 holds no
/// field separator, CR or LF), the applications and facilities swapped, MSH-7, MSH-10 and
/// MSA-3 carrying the values given, MSH-9 `ACK[^trigger^ACK]`, MSH-11, MSH-12, MSH-18, and
/// MSA-1/MSA-2, in exactly two segments.
pub fn check(msg: &[u8], code: AckCode, timestamp: &[u8], control_id: &[u8], text: Option<&[u8]>) {
    let want = read(msg);
    let got = hl7::parse_msh(msg);
    assert_eq!(got.is_some(), want.is_some(), "parse_msh found an MSH where the oracle did not, or the other way");
    assert_eq!(hl7::msh_segment(msg), msh_segment(msg));
    assert_eq!(
        hl7::is_hl7_v2(msg),
        msg.len() >= 4 && [&b"MSH"[..], b"FHS", b"BHS"].contains(&&msg[..3]) && is_sep(msg[3])
    );
    if let (Some(m), Some(w)) = (&got, &want) {
        let f = &w.f;
        assert_eq!(m.field_sep, w.sep);
        let fields = [
            (m.encoding, 2),
            (m.sending_application, 3),
            (m.sending_facility, 4),
            (m.receiving_application, 5),
            (m.receiving_facility, 6),
            (m.message_type, 9),
            (m.control_id, 10),
            (m.processing_id, 11),
            (m.version_id, 12),
            (m.accept_ack_type, 15),
            (m.app_ack_type, 16),
            (m.charset, 18),
        ];
        for (value, n) in fields {
            assert_eq!(value, f[n - 2], "MSH-{n}");
        }
        assert_eq!(m.component_sep, w.component);
        assert_eq!(m.trigger_event, w.trigger);
        assert_eq!(hl7::msh_identity(msg), Some([f[1], f[2], f[8]]));
        assert_eq!(hl7::msh_charset(msg), (f[16], f[0].get(1).copied().unwrap_or(b'~')));
    } else {
        assert_eq!(hl7::msh_identity(msg), None);
        assert_eq!(hl7::msh_charset(msg).0, b"");
    }

    let mut ack = Vec::new();
    hl7::build_ack(msg, code, timestamp, control_id, text, &mut ack);
    assert!(ack.ends_with(b"\r"), "the ACK ends with a segment terminator");
    let segs: Vec<&[u8]> = ack[..ack.len() - 1].split(|&b| b == b'\r').collect();
    assert_eq!(segs.len(), 2, "the ACK has exactly MSH and MSA: {ack:?}");
    let (msh, msa) = (segs[0], segs[1]);
    assert!(!msh.contains(&b'\n') && !msa.contains(&b'\n'), "no LF in the ACK");
    assert!(msh.starts_with(b"MSH") && msh.len() > 4);
    let sep = msh[3];
    assert_eq!(sep, want.as_ref().map_or(b'|', |w| w.sep), "MSH-1 is the message's field separator");
    let af: Vec<&[u8]> = msh[4..].split(|&b| b == sep).collect();
    let enc = af[0];
    assert!(!enc.is_empty() && !enc.contains(&sep), "MSH-2 {enc:?} is valued and holds no field separator");
    match &want {
        Some(w) if !w.f[0].is_empty() => assert_eq!(enc, w.f[0], "MSH-2 copied as received"),
        _ => {
            // The ACK's own encoding characters: four distinct separator bytes.
            let distinct = enc.iter().enumerate().all(|(i, a)| !enc[..i].contains(a));
            assert!(enc.len() == 4 && distinct && enc.iter().all(|&b| is_sep(b)), "default MSH-2 {enc:?}");
        }
    }
    let empty: &[u8] = b"";
    let field = |n: usize| af.get(n - 2).copied().unwrap_or(empty);
    let (s3, s4, s5, s6, trig, ctl, proc_, ver, cs) = match &want {
        Some(w) => (w.f[3], w.f[4], w.f[1], w.f[2], w.trigger, w.f[8], w.f[9], w.f[10], w.f[16]),
        None => (empty, empty, empty, empty, empty, empty, empty, &b"2.5"[..], empty),
    };
    assert_eq!([field(3), field(4), field(5), field(6)], [s3, s4, s5, s6], "MSH-3..6 swapped");
    check_value("MSH-7", field(7), timestamp, sep, enc);
    assert_eq!(field(8), b"");
    let mut msh9 = b"ACK".to_vec();
    if !trig.is_empty() {
        msh9.push(enc[0]);
        msh9.extend_from_slice(trig);
        msh9.push(enc[0]);
        msh9.extend_from_slice(b"ACK");
    }
    assert_eq!(field(9), &msh9[..], "MSH-9");
    check_value("MSH-10", field(10), control_id, sep, enc);
    assert_eq!(field(11), if proc_.is_empty() { &b"P"[..] } else { proc_ }, "MSH-11");
    assert_eq!(field(12), ver, "MSH-12");
    if cs.is_empty() {
        assert_eq!(af.len(), 11, "MSH ends at MSH-12");
    } else {
        assert_eq!(af.len(), 17, "MSH ends at MSH-18");
        assert_eq!(field(18), cs, "MSH-18");
    }
    assert!(msa.starts_with(b"MSA") && msa.len() > 4 && msa[3] == sep);
    let mf: Vec<&[u8]> = msa[4..].split(|&b| b == sep).collect();
    assert_eq!(mf.len(), if text.is_some() { 3 } else { 2 }, "MSA field count: {msa:?}");
    assert_eq!(mf[0], code.as_bytes());
    assert_eq!(mf[1], ctl, "MSA-2 is the message's MSH-10");
    if let Some(t) = text {
        check_value("MSA-3", mf[2], t, sep, enc);
    }
}

/// A case for [`check`]: message, code, timestamp, control id, text.
pub type Case = (Vec<u8>, AckCode, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Splits fuzzer bytes into a message and the builder's other inputs: the first byte picks
/// the code and whether there is a text; the next three are lengths of timestamp, control id
/// and text taken from the end of the data.
pub fn case_from_bytes(data: &[u8]) -> Case {
    let get = |i: usize| data.get(i).copied().unwrap_or(0);
    let codes = [AckCode::AA, AckCode::AE, AckCode::AR, AckCode::CA, AckCode::CE, AckCode::CR];
    let code = codes[usize::from(get(0) % 6)];
    let with_text = get(0) & 0x80 != 0;
    let mut rest = data.get(4..).unwrap_or_default();
    let mut take = |n: u8| {
        let n = usize::from(n % 16).min(rest.len());
        let (v, r) = rest.split_at(rest.len() - n);
        rest = v;
        r.to_vec()
    };
    let ts = take(get(1));
    let ctl = take(get(2));
    let text = take(get(3));
    (rest.to_vec(), code, ts, ctl, with_text.then_some(text))
}
