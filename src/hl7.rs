//! Just enough HL7 v2 to acknowledge a message: recognise it, read its MSH segment, build an
//! ACK, and read MSA-1 of an ACK received in reply.
//!
//! Sans-IO and allocation-free: parsing borrows the message, and builders append to a
//! caller-supplied `Vec`. The caller supplies timestamps (see [`format_timestamp`]).

/// True for a byte that can separate HL7 fields: anything but a letter, a digit, CR or LF.
fn is_separator(b: u8) -> bool {
    !b.is_ascii_alphanumeric() && b != b'\r' && b != b'\n'
}

/// True when `msg` begins with `MSH`, `FHS` or `BHS` followed by a field separator byte
/// (any byte that is not a letter/digit/CR/LF; in practice usually '|').
pub fn is_hl7_v2(msg: &[u8]) -> bool {
    msg.len() >= 4 && matches!(&msg[..3], b"MSH" | b"FHS" | b"BHS") && is_separator(msg[3])
}

/// `s` without leading and trailing spaces (a hand-rolled `trim_ascii`, which needs Rust 1.80).
fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

/// Segments of `msg`, without terminators. CR, LF and CRLF all end a segment, so empty
/// pieces (the LF of a CRLF, blank lines) are skipped.
fn segments(msg: &[u8]) -> impl Iterator<Item = &[u8]> {
    msg.split(|&b| b == b'\r' || b == b'\n').filter(|s| !s.is_empty())
}

/// The field separator of `seg` when it is a `name` segment (`name` then a separator byte).
fn segment_sep(seg: &[u8], name: &[u8; 3]) -> Option<u8> {
    (seg.len() >= 4 && &seg[..3] == name && is_separator(seg[3])).then(|| seg[3])
}

/// The MSH fields an acknowledgement needs, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msh<'a> {
    /// MSH-1, the field separator (usually `|`).
    pub field_sep: u8,
    /// MSH-2 encoding characters (usually `^~\&`), as received.
    pub encoding: &'a [u8],
    /// The component separator: first byte of MSH-2, `^` if MSH-2 is empty.
    pub component_sep: u8,
    /// MSH-3 sending application, raw.
    pub sending_application: &'a [u8],
    /// MSH-4 sending facility, raw.
    pub sending_facility: &'a [u8],
    /// MSH-5 receiving application, raw.
    pub receiving_application: &'a [u8],
    /// MSH-6 receiving facility, raw.
    pub receiving_facility: &'a [u8],
    /// MSH-9 message type, raw, e.g. `ADT^A01^ADT_A01`.
    pub message_type: &'a [u8],
    /// MSH-9 component 2, e.g. `A01` (empty if none).
    pub trigger_event: &'a [u8],
    /// MSH-10 message control ID.
    pub control_id: &'a [u8],
    /// MSH-11 processing ID, raw.
    pub processing_id: &'a [u8],
    /// MSH-12 version ID, raw.
    pub version_id: &'a [u8],
    /// MSH-15 accept acknowledgement type (AL, NE, ER, SU; empty when not valued).
    pub accept_ack_type: &'a [u8],
    /// MSH-16 application acknowledgement type (AL, NE, ER, SU; empty when not valued).
    pub app_ack_type: &'a [u8],
    /// MSH-18 character set, raw (repetitions included; empty when not valued).
    pub charset: &'a [u8],
}

/// Finds the first MSH segment (the message's first segment, or for a batch starting with FHS/BHS the
/// first segment that starts with "MSH") and parses it. Segments end in CR (also tolerate LF / CRLF).
/// Returns None when there is no parseable MSH. Note MSH-1 is the field separator itself, so MSH-2 is the
/// first field after "MSH|", MSH-3 the next, and so on.
///
/// Missing trailing fields read as empty; anything after MSH-18 is ignored. Blank lines before
/// the first segment are tolerated here (unlike [`is_hl7_v2`], which looks at the first byte).
pub fn parse_msh(msg: &[u8]) -> Option<Msh<'_>> {
    let seg = msh_segment(msg)?;
    let field_sep = seg[3];
    let f = msh_fields(seg, 17);
    let encoding = f[0];
    let component_sep = encoding.first().copied().unwrap_or(b'^');
    let message_type = f[7];
    let trigger_event = message_type.split(|&b| b == component_sep).nth(1).unwrap_or(&[]);
    Some(Msh {
        field_sep,
        encoding,
        component_sep,
        sending_application: f[1],
        sending_facility: f[2],
        receiving_application: f[3],
        receiving_facility: f[4],
        message_type,
        trigger_event,
        control_id: f[8],
        processing_id: f[9],
        version_id: f[10],
        accept_ack_type: f[13],
        app_ack_type: f[14],
        charset: f[16],
    })
}

/// The fields MSH-2 to MSH-(n+1) of an MSH segment: `f[0]` is MSH-2, `f[k - 2]` is MSH-k;
/// fields past `n` (or missing) are empty. memchr finds the separators: this runs for every
/// message received, so it should not cost a closure call per byte.
fn msh_fields(seg: &[u8], n: usize) -> [&[u8]; 17] {
    let mut f: [&[u8]; 17] = [&[]; 17];
    let fields = &seg[4..];
    let mut start = 0;
    let mut ends = memchr::memchr_iter(seg[3], fields).chain(std::iter::once(fields.len()));
    for slot in f.iter_mut().take(n) {
        let Some(end) = ends.next() else { break };
        *slot = &fields[start..end];
        start = end + 1;
    }
    f
}

/// MSH-3, MSH-4 and MSH-10 of `msg` (what identifies a message for duplicate detection),
/// reading no further than MSH-10.
pub fn msh_identity(msg: &[u8]) -> Option<[&[u8]; 3]> {
    let f = msh_fields(msh_segment(msg)?, 9);
    Some([f[1], f[2], f[8]])
}

/// MSH-18 (character set) of `msg` as sent, and the repetition separator (second byte of
/// MSH-2, `~` when absent); empty when not valued. One pass over the MSH segment: this runs for
/// every message received.
pub fn msh_charset(msg: &[u8]) -> (&[u8], u8) {
    let Some(seg) = msh_segment(msg) else { return (&[], b'~') };
    let fields = &seg[4..];
    // memchr jumps from separator to separator instead of testing every byte.
    let mut seps = memchr::memchr_iter(seg[3], fields);
    let Some(end2) = seps.next() else { return (&[], fields.get(1).copied().unwrap_or(b'~')) };
    let rep = fields[..end2].get(1).copied().unwrap_or(b'~');
    // The 16th separator opens MSH-18, the 17th (or the end) closes it.
    match seps.nth(14) {
        Some(start) => (&fields[start + 1..seps.next().unwrap_or(fields.len())], rep),
        None => (&[], rep),
    }
}

/// The MSH segment of `msg` (without its terminator), found by the same rules as
/// [`parse_msh`]: the first segment, or the first MSH after an FHS/BHS batch header.
pub fn msh_segment(msg: &[u8]) -> Option<&[u8]> {
    // The first segment, found with memchr (blank lines before it are skipped).
    let lead = msg.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let m = &msg[lead..];
    let first = &m[..memchr::memchr2(b'\r', b'\n', m).unwrap_or(m.len())];
    if segment_sep(first, b"MSH").is_some() {
        Some(first)
    } else if segment_sep(first, b"FHS").is_some() || segment_sep(first, b"BHS").is_some() {
        segments(m).find(|s| segment_sep(s, b"MSH").is_some())
    } else {
        None
    }
}

/// MSA-1 acknowledgement codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckCode {
    /// Application Accept: the message was processed.
    AA,
    /// Application Error: the message was rejected because of an error in it.
    AE,
    /// Application Reject: the message was rejected for another reason (e.g. unsupported type
    /// or version, or a receiver-side failure).
    AR,
    /// Commit Accept (enhanced mode): the message was committed to safe storage.
    CA,
    /// Commit Error (enhanced mode): the message could not be committed because of an error in it.
    CE,
    /// Commit Reject (enhanced mode): the message was refused for another reason.
    CR,
}

impl AckCode {
    /// The code as written in MSA-1, e.g. `b"AA"`.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            AckCode::AA => b"AA",
            AckCode::AE => b"AE",
            AckCode::AR => b"AR",
            AckCode::CA => b"CA",
            AckCode::CE => b"CE",
            AckCode::CR => b"CR",
        }
    }

    /// True for AA and CA.
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }

    /// The code from the C ABI's number (`MLLP_ACK_AA` 0 … `MLLP_ACK_CR` 5).
    pub fn from_c(code: i32) -> Option<AckCode> {
        Some(match code {
            0 => AckCode::AA,
            1 => AckCode::AE,
            2 => AckCode::AR,
            3 => AckCode::CA,
            4 => AckCode::CE,
            5 => AckCode::CR,
            _ => return None,
        })
    }
}

/// When an acknowledgement type (MSH-15 or MSH-16) asks for an acknowledgement: AL (and an
/// empty or unknown value) always, NE never, ER only for a negative one, SU only for a positive one.
pub fn ack_wanted(ack_type: &[u8], positive: bool) -> bool {
    let t = trim_spaces(ack_type);
    if t.eq_ignore_ascii_case(b"NE") {
        false
    } else if t.eq_ignore_ascii_case(b"ER") {
        !positive
    } else if t.eq_ignore_ascii_case(b"SU") {
        positive
    } else {
        true
    }
}

const DEFAULT_ENCODING: [u8; 4] = *b"^~\\&";

/// The encoding characters of an acknowledgement whose message has an empty MSH-2: `^~\&`,
/// with `#` in place of the one that is the field separator `sep` (when one is): MSH-2 must
/// not hold the field separator, or every field after it would shift.
fn default_encoding(sep: u8) -> [u8; 4] {
    DEFAULT_ENCODING.map(|e| if e == sep { b'#' } else { e })
}

/// Appends `value` to `out`, escaping the bytes that would otherwise end or split the field:
/// the separators as `\F\ \S\ \R\ \E\ \T\` and CR/LF as `\X0D\` / `\X0A\` (with the message's
/// own escape character). Without an escape character in `encoding` they become spaces.
fn push_escaped(out: &mut Vec<u8>, value: &[u8], field_sep: u8, encoding: &[u8]) {
    let esc = encoding.get(2).copied();
    // Without an escape character a special byte becomes a space, or when a space is itself a
    // separator the first of `_ . -` that is not (one is: there are at most three separators).
    let special = |c: u8| c == field_sep || encoding.iter().take(4).any(|&e| e == c);
    let blank = match esc {
        Some(_) => b' ',
        None => [b' ', b'_', b'.', b'-'].into_iter().find(|&c| !special(c)).unwrap_or(b'_'),
    };
    for &b in value {
        let code: Option<&[u8]> = if b == field_sep {
            Some(b"F")
        } else if b == b'\r' {
            Some(b"X0D")
        } else if b == b'\n' {
            Some(b"X0A")
        } else {
            match encoding.iter().position(|&e| e == b) {
                Some(0) => Some(b"S"),
                Some(1) => Some(b"R"),
                Some(2) => Some(b"E"),
                Some(3) => Some(b"T"),
                // Bytes beyond the standard four (e.g. the v2.7 truncation character) are
                // only special in some fields; leave them as they are.
                _ => None,
            }
        };
        match (code, esc) {
            (None, _) => out.push(b),
            (Some(code), Some(esc)) => {
                out.push(esc);
                out.extend_from_slice(code);
                out.push(esc);
            }
            (Some(_), None) => out.push(blank),
        }
    }
}

/// Appends an HL7 v2 application acknowledgement for `msg` to `out` (unframed; the caller frames it).
/// `timestamp` is MSH-7 (YYYYMMDDHHMMSS, supplied by the caller: no clock here), `control_id` the ACK's own
/// fresh MSH-10, `text` an optional MSA-3 text message (e.g. why it was rejected; escape separators in it).
/// Rules: MSH with the message's own field separator and encoding characters; MSH-3/4 = received MSH-5/6 and
/// MSH-5/6 = received MSH-3/4 (swapped); MSH-7 = timestamp; MSH-9 = `ACK^<trigger>^ACK` using the message's
/// component separator (just `ACK` when there is no trigger); MSH-10 = control_id; MSH-11 = received MSH-11
/// (or `P` if empty); MSH-12 = received MSH-12 as received; MSH-18 = received MSH-18 when it is
/// valued (MSH-13 to MSH-17 empty); then segment `MSA|<code>|<received MSH-10>` (+ `|text`).
/// Segments end in CR. When `msg` has no parseable MSH, build the ACK with default `|^~\&`, empty
/// applications/facilities, MSH-9 `ACK`, MSH-11 `P`, MSH-12 `2.5`, and MSA-2 empty.
///
/// `timestamp`, `control_id` and `text` are escaped; fields copied from `msg` are already in its
/// encoding and are copied verbatim. An empty received MSH-2 is replaced by `^~\&` (with `#`
/// for the one that is the message's field separator, if any), since an ACK without encoding
/// characters would not be valid.
pub fn build_ack(
    msg: &[u8],
    code: AckCode,
    timestamp: &[u8],
    control_id: &[u8],
    text: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let msh = parse_msh(msg);
    let sep = msh.as_ref().map_or(b'|', |m| m.field_sep);
    let fallback = default_encoding(sep);
    let encoding: &[u8] = match &msh {
        Some(m) if !m.encoding.is_empty() => m.encoding,
        _ => &fallback,
    };
    let empty: &[u8] = &[];
    let charset = msh.as_ref().map_or(&[][..], |m| m.charset);
    let (send_app, send_fac, recv_app, recv_fac, trigger, recv_control, processing, version) = match &msh {
        Some(m) => (
            m.receiving_application,
            m.receiving_facility,
            m.sending_application,
            m.sending_facility,
            m.trigger_event,
            m.control_id,
            m.processing_id,
            m.version_id,
        ),
        None => (empty, empty, empty, empty, empty, empty, empty, &b"2.5"[..]),
    };
    let component = encoding[0];
    let processing: &[u8] = if processing.is_empty() { b"P" } else { processing };

    out.extend_from_slice(b"MSH");
    out.push(sep);
    out.extend_from_slice(encoding);
    for field in [send_app, send_fac, recv_app, recv_fac] {
        out.push(sep);
        out.extend_from_slice(field);
    }
    out.push(sep);
    push_escaped(out, timestamp, sep, encoding);
    out.push(sep); // MSH-8 security: empty
    out.push(sep);
    out.extend_from_slice(b"ACK");
    if !trigger.is_empty() {
        out.push(component);
        out.extend_from_slice(trigger);
        out.push(component);
        out.extend_from_slice(b"ACK");
    }
    out.push(sep);
    push_escaped(out, control_id, sep, encoding);
    out.push(sep);
    out.extend_from_slice(processing);
    out.push(sep);
    out.extend_from_slice(version);
    if !charset.is_empty() {
        // MSH-13 to MSH-17 empty, then the message's own MSH-18: the ACK declares the
        // character set it shares with the message (its copied fields are in that set).
        for _ in 13..=18 {
            out.push(sep);
        }
        out.extend_from_slice(charset);
    }
    out.push(b'\r');

    out.extend_from_slice(b"MSA");
    out.push(sep);
    out.extend_from_slice(code.as_bytes());
    out.push(sep);
    out.extend_from_slice(recv_control);
    if let Some(text) = text {
        out.push(sep);
        push_escaped(out, text, sep, encoding);
    }
    out.push(b'\r');
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_num(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let start = i.min(buf.len() - width);
    out.extend_from_slice(&buf[start..]);
}

/// Formats a UNIX time (seconds since 1970, UTC) as HL7 DTM `YYYYMMDDHHMMSS` (civil-from-days
/// arithmetic; no chrono), appended to `out`.
///
/// Years past 9999 get more digits rather than wrapping.
pub fn format_timestamp(unix_secs: u64, out: &mut Vec<u8>) {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0 (so all arithmetic is unsigned). Eras are
    // 400-year cycles starting on 0000-03-01, which puts the leap day at the end of each year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    push_num(out, year, 4);
    push_num(out, month, 2);
    push_num(out, day, 2);
    push_num(out, secs / 3_600, 2);
    push_num(out, secs / 60 % 60, 2);
    push_num(out, secs % 60, 2);
}

/// Reads MSA-1 of an acknowledgement message: Some(true) for AA/CA, Some(false) for AE/AR/CE/CR, None if
/// `msg` has no MSA segment. (Used when a client answers our Send with an HL7 ACK.)
///
/// Codes compare case-insensitively after trimming spaces; any other (or an empty) MSA-1 counts
/// as not accepted, `Some(false)`.
pub fn ack_accepted(msg: &[u8]) -> Option<bool> {
    parse_ack(msg).map(|a| a.code.is_some_and(AckCode::is_accept))
}

/// What an HL7 acknowledgement says: MSA-1, MSA-2 and the text of MSA-3 and ERR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckFields<'a> {
    /// MSA-1 (None when it is none of AA/AE/AR/CA/CE/CR).
    pub code: Option<AckCode>,
    /// MSA-2: the control id of the message acknowledged (spaces trimmed).
    pub control_id: &'a [u8],
    /// MSA-3 and, per ERR segment, its user message (ERR-8), diagnostic (ERR-7), the text of
    /// its error code (ERR-3.2) or ERR-1 (HL7 2.3), joined by "; " (lossily UTF-8).
    pub text: String,
}

/// Reads the MSA (and ERR) segments of an acknowledgement; None when `msg` has no MSA segment.
/// The one MSA parser: the server's AckIn and the client's matching both use it.
pub fn parse_ack(msg: &[u8]) -> Option<AckFields<'_>> {
    let seg = segments(msg).find(|s| segment_sep(s, b"MSA").is_some())?;
    let sep = seg[3];
    let mut fields = seg[4..].split(|&b| b == sep);
    let raw_code = trim_spaces(fields.next().unwrap_or_default());
    let code = [AckCode::AA, AckCode::AE, AckCode::AR, AckCode::CA, AckCode::CE, AckCode::CR]
        .into_iter()
        .find(|c| raw_code.eq_ignore_ascii_case(c.as_bytes()));
    let control_id = trim_spaces(fields.next().unwrap_or_default());
    let mut texts: Vec<String> = Vec::new();
    let msa3 = trim_spaces(fields.next().unwrap_or_default());
    if !msa3.is_empty() {
        texts.push(String::from_utf8_lossy(msa3).into_owned());
    }
    let component = parse_msh(msg).map_or(b'^', |m| m.component_sep);
    for err in segments(msg).filter(|s| segment_sep(s, b"ERR").is_some()) {
        let f: Vec<&[u8]> = err[4..].split(|&b| b == err[3]).collect();
        let at = |i: usize| f.get(i - 1).map(|v| trim_spaces(v)).filter(|v| !v.is_empty());
        let code_text = at(3).and_then(|c| c.split(|&b| b == component).nth(1)).filter(|v| !v.is_empty());
        if let Some(t) = at(8).or(at(7)).or(code_text).or(at(1)) {
            texts.push(String::from_utf8_lossy(t).into_owned());
        }
    }
    Some(AckFields { code, control_id, text: texts.join("; ") })
}

/// True when MSH-9's first component is `ACK`.
///
/// Compares case-insensitively after trimming spaces.
pub fn is_ack_message(msg: &[u8]) -> bool {
    parse_msh(msg).is_some_and(|m| {
        let first = m.message_type.split(|&b| b == m.component_sep).next().unwrap_or(&[]);
        trim_spaces(first).eq_ignore_ascii_case(b"ACK")
    })
}

/// Process-wide source of acknowledgement control ids (MSH-10 of every ACK the library builds).
struct ControlIds {
    /// The process's start time in microseconds and three random base-36 digits, fixed width:
    /// no two processes (or restarts) share it unless they start in the same microsecond and
    /// draw the same 1 in 46,656.
    prefix: [u8; 13],
    counter: std::sync::atomic::AtomicU64,
}

static CONTROL_IDS: std::sync::OnceLock<ControlIds> = std::sync::OnceLock::new();

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Appends `n` in base 36, at least `width` digits.
fn push_base36(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 13];
    let mut i = buf.len();
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = BASE36[(n % 36) as usize];
        n /= 36;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a fresh acknowledgement control id: unique across connections and servers of this
/// process (one counter) and across restarts and processes (the prefix), at most 20 characters
/// (MSH-10's length in HL7 2.5) for the first 2 billion ids of a process.
pub fn push_control_id(out: &mut Vec<u8>) {
    use ring::rand::SecureRandom;
    use std::sync::atomic::Ordering;
    let ids = CONTROL_IDS.get_or_init(|| {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut r = [0u8; 2];
        // Without randomness the time alone still separates restarts.
        let _ = ring::rand::SystemRandom::new().fill(&mut r);
        let mut p = Vec::with_capacity(13);
        push_base36(&mut p, micros % 36u64.pow(10), 10);
        push_base36(&mut p, u64::from(u16::from_le_bytes(r)) % 46_656, 3);
        let mut prefix = [0u8; 13];
        prefix.copy_from_slice(&p);
        ControlIds { prefix, counter: std::sync::atomic::AtomicU64::new(0) }
    });
    let n = ids.counter.fetch_add(1, Ordering::Relaxed) + 1;
    out.extend_from_slice(&ids.prefix);
    push_base36(out, n, 1);
}

/// An acknowledgement for `msg` ([`build_ack`]) with a fresh control id ([`push_control_id`])
/// and the current time, for hosts that build acknowledgements themselves.
pub fn build_ack_now(msg: &[u8], code: AckCode, text: Option<&[u8]>) -> Vec<u8> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut out = Vec::with_capacity(128);
    build_ack_at(msg, code, secs, text, &mut Vec::with_capacity(40), &mut out);
    out
}

/// Appends an acknowledgement for `msg` ([`build_ack`]) stamped `unix_secs` with a fresh control
/// id ([`push_control_id`]); `scratch` holds both meanwhile (reused by callers that build many).
pub fn build_ack_at(
    msg: &[u8],
    code: AckCode,
    unix_secs: u64,
    text: Option<&[u8]>,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    format_timestamp(unix_secs, scratch);
    let ts_end = scratch.len();
    push_control_id(scratch);
    let (ts, control) = scratch.split_at(ts_end);
    build_ack(msg, code, ts, control, text, out);
}

/// True when `frame` is an HL7 batch: its first segment is FHS or BHS.
pub fn is_batch(frame: &[u8]) -> bool {
    frame.len() >= 4 && matches!(&frame[..3], b"FHS" | b"BHS") && is_separator(frame[3])
}

/// One batch (BHS … BTS) of a batch frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchGroup<'a> {
    /// The BHS segment (without terminator); None for messages directly inside FHS … FTS.
    pub bhs: Option<&'a [u8]>,
    /// Each message, from its MSH to the end of its last segment's terminator.
    pub messages: Vec<&'a [u8]>,
}

/// An HL7 batch frame split into its messages ([`split_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The FHS segment, when the frame is a file batch.
    pub fhs: Option<&'a [u8]>,
    /// The batches, in order.
    pub groups: Vec<BatchGroup<'a>>,
}

/// The headers of a batch and how many messages each batch held: what its acknowledgement
/// is built from ([`build_batch_ack`]), owned so that it can wait for the host's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// The FHS segment, when there was one.
    pub fhs: Option<Vec<u8>>,
    /// Each batch's BHS segment (when it had one) and its number of messages.
    pub groups: Vec<(Option<Vec<u8>>, usize)>,
}

impl Batch<'_> {
    /// The headers and counts, owned.
    pub fn shape(&self) -> BatchShape {
        BatchShape {
            fhs: self.fhs.map(<[u8]>::to_vec),
            groups: self.groups.iter().map(|g| (g.bhs.map(<[u8]>::to_vec), g.messages.len())).collect(),
        }
    }

    /// Every message of every batch, in order.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.groups.iter().flat_map(|g| g.messages.iter().copied())
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.messages.len()).sum()
    }

    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Field `n` (1-based: 1 is the first field after the name) of a segment.
fn seg_field(seg: &[u8], n: usize) -> &[u8] {
    if seg.len() < 4 {
        return &[];
    }
    seg[4..].split(|&b| b == seg[3]).nth(n - 1).unwrap_or(&[])
}

/// A count field (BTS-1, FTS-1): None when empty, Err when it is not a number.
fn count_field(seg: &[u8], name: &str) -> Result<Option<usize>, String> {
    let v = trim_spaces(seg_field(seg, 1));
    if v.is_empty() {
        return Ok(None);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| format!("{name}-1 '{}' is not a count", String::from_utf8_lossy(v)))
}

/// Splits a batch frame — `[FHS] {[BHS] {MSH …} [BTS]} [FTS]` — into its messages and checks
/// it: a BHS needs its BTS, an FHS its FTS (a trailer may be its bare name), BTS-1 and FTS-1
/// (when valued) must equal the number of messages and of batches, and nothing but messages
/// may stand between the headers. Err with the reason for anything else: a malformed batch is
/// refused whole.
pub fn split_batch(frame: &[u8]) -> Result<Batch<'_>, String> {
    // (start of segment, end of segment content, end including terminators)
    let mut segs = Vec::new();
    let mut i = 0;
    while i < frame.len() {
        let start = i;
        while i < frame.len() && frame[i] != b'\r' && frame[i] != b'\n' {
            i += 1;
        }
        let end = i;
        while i < frame.len() && (frame[i] == b'\r' || frame[i] == b'\n') {
            i += 1;
        }
        if end > start {
            segs.push((start, end, i));
        }
    }
    // A trailer may also be just its name: HL7 omits empty trailing fields, so `BTS` alone is
    // a BTS without a count.
    let name = |s: &(usize, usize, usize)| -> Option<&[u8; 3]> {
        let seg = &frame[s.0..s.1];
        let bare_trailer = seg == b"BTS" || seg == b"FTS";
        (bare_trailer || seg.len() >= 4 && is_separator(seg[3])).then(|| seg[..3].try_into().expect("three bytes"))
    };
    let mut batch = Batch { fhs: None, groups: Vec::new() };
    let mut fts_seen = false;
    // The group being filled (its BHS still open when `open_bhs`), and the message in progress.
    let mut open_bhs = false;
    let mut msg_start: Option<usize> = None;
    fn close_msg<'a>(frame: &'a [u8], batch: &mut Batch<'a>, msg_start: &mut Option<usize>, at: usize) {
        if let Some(s) = msg_start.take() {
            batch.groups.last_mut().expect("a message is in a group").messages.push(&frame[s..at]);
        }
    }
    for (k, s) in segs.iter().enumerate() {
        let seg = &frame[s.0..s.1];
        if fts_seen {
            return Err("segments after FTS".into());
        }
        match name(s) {
            Some(b"FHS") if k == 0 => batch.fhs = Some(seg),
            Some(b"FHS") => return Err("FHS not at the start of the batch".into()),
            Some(b"BHS") => {
                close_msg(frame, &mut batch, &mut msg_start, s.0);
                if open_bhs {
                    return Err("BHS before the previous batch's BTS".into());
                }
                open_bhs = true;
                batch.groups.push(BatchGroup { bhs: Some(seg), messages: Vec::new() });
            }
            Some(b"MSH") => {
                close_msg(frame, &mut batch, &mut msg_start, s.0);
                if !open_bhs && batch.groups.last().map_or(true, |g| g.bhs.is_some()) {
                    if batch.fhs.is_none() {
                        return Err("MSH after BTS outside a file batch".into());
                    }
                    batch.groups.push(BatchGroup { bhs: None, messages: Vec::new() });
                }
                msg_start = Some(s.0);
            }
            Some(b"BTS") => {
                close_msg(frame, &mut batch, &mut msg_start, s.0);
                if !open_bhs {
                    return Err("BTS without BHS".into());
                }
                open_bhs = false;
                let n = batch.groups.last().map_or(0, |g| g.messages.len());
                if let Some(c) = count_field(seg, "BTS")? {
                    if c != n {
                        return Err(format!("BTS-1 says {c} messages, the batch holds {n}"));
                    }
                }
            }
            Some(b"FTS") => {
                close_msg(frame, &mut batch, &mut msg_start, s.0);
                if batch.fhs.is_none() {
                    return Err("FTS without FHS".into());
                }
                if open_bhs {
                    return Err("FTS before the batch's BTS".into());
                }
                fts_seen = true;
                if let Some(c) = count_field(seg, "FTS")? {
                    if c != batch.groups.len() {
                        return Err(format!("FTS-1 says {c} batches, the file holds {}", batch.groups.len()));
                    }
                }
            }
            _ if msg_start.is_some() => {}
            _ => {
                let what = String::from_utf8_lossy(&seg[..seg.len().min(3)]).into_owned();
                return Err(format!("segment {what} outside a message"));
            }
        }
    }
    close_msg(frame, &mut batch, &mut msg_start, frame.len());
    if open_bhs {
        return Err("no BTS at the end of the batch".into());
    }
    if batch.fhs.is_some() && !fts_seen {
        return Err("no FTS at the end of the file batch".into());
    }
    Ok(batch)
}

/// Appends the acknowledgement header for a received FHS or BHS: sending and receiving
/// application/facility swapped, creation time `timestamp`, a fresh control id, and the
/// received control id (FHS-11/BHS-11) as the reference (FHS-12/BHS-12).
fn push_header_ack(out: &mut Vec<u8>, seg: &[u8], timestamp: &[u8]) {
    let sep = seg[3];
    let enc = seg_field(seg, 1);
    let fallback = default_encoding(sep);
    let enc = if enc.is_empty() { &fallback[..] } else { enc };
    out.extend_from_slice(&seg[..3]);
    out.push(sep);
    out.extend_from_slice(enc);
    for n in [4, 5, 2, 3] {
        out.push(sep);
        out.extend_from_slice(seg_field(seg, n));
    }
    out.push(sep);
    out.extend_from_slice(timestamp);
    out.extend_from_slice(&[sep, sep, sep, sep]); // 8 security, 9 name, 10 comment: empty
    push_control_id(out);
    out.push(sep);
    out.extend_from_slice(seg_field(seg, 10));
    out.push(b'\r');
}

/// Appends a batch acknowledgement for a batch of `shape`: FHS (when the batch had one), for
/// each batch a BHS (when it had one), the acknowledgement messages of its messages from `acks`
/// (in order, each ending in CR; a message that gets none has an empty entry), BTS with the
/// number of acknowledgements; then FTS with the number of batches.
pub fn build_batch_ack(shape: &BatchShape, acks: &[Vec<u8>], timestamp: &[u8], out: &mut Vec<u8>) {
    if let Some(fhs) = &shape.fhs {
        push_header_ack(out, fhs, timestamp);
    }
    let mut acks = acks.iter();
    for (bhs, n) in &shape.groups {
        if let Some(bhs) = bhs {
            push_header_ack(out, bhs, timestamp);
        }
        let mut count = 0u64;
        for a in acks.by_ref().take(*n) {
            if !a.is_empty() {
                out.extend_from_slice(a);
                count += 1;
            }
        }
        if let Some(bhs) = bhs {
            out.extend_from_slice(b"BTS");
            out.push(bhs[3]);
            push_num(out, count, 1);
            out.push(b'\r');
        }
    }
    if let Some(fhs) = &shape.fhs {
        out.extend_from_slice(b"FTS");
        out.push(fhs[3]);
        push_num(out, shape.groups.len() as u64, 1);
        out.push(b'\r');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT_A01: &[u8] = include_bytes!("../tests/data/adt_a01.hl7");
    const ORU_R01: &[u8] = include_bytes!("../tests/data/oru_r01.hl7");
    const ADT_A08_UTF8: &[u8] = include_bytes!("../tests/data/adt_a08_utf8.hl7");
    const BATCH_ADT: &[u8] = include_bytes!("../tests/data/batch_adt.hl7");
    const ACK_AA: &[u8] = include_bytes!("../tests/data/ack_aa.hl7");
    const NOT_HL7: &[u8] = include_bytes!("../tests/data/not_hl7.txt");

    const TS: &[u8] = b"20261125083100";

    fn ack(msg: &[u8], code: AckCode, text: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        build_ack(msg, code, TS, b"ACK42", text, &mut out);
        out
    }

    #[test]
    fn recognises_hl7() {
        for m in [ADT_A01, ORU_R01, ADT_A08_UTF8, BATCH_ADT, ACK_AA] {
            assert!(is_hl7_v2(m));
        }
        assert!(!is_hl7_v2(NOT_HL7));
        assert!(is_hl7_v2(b"MSH#*@!$#"));
        assert!(is_hl7_v2(b"BHS|"));
        assert!(!is_hl7_v2(b"MSH"));
        assert!(!is_hl7_v2(b"MSHA|"));
        assert!(!is_hl7_v2(b"MSH\r"));
        assert!(!is_hl7_v2(b"msh|"));
        assert!(!is_hl7_v2(b"PID|1"));
        assert!(!is_hl7_v2(b""));
    }

    #[test]
    fn parses_adt_a01() {
        let m = parse_msh(ADT_A01).unwrap();
        assert_eq!(
            m,
            Msh {
                field_sep: b'|',
                encoding: b"^~\\&",
                component_sep: b'^',
                sending_application: b"ADT1",
                sending_facility: b"GOOD HEALTH HOSPITAL",
                receiving_application: b"LABADT",
                receiving_facility: b"GOOD HEALTH HOSPITAL",
                message_type: b"ADT^A01^ADT_A01",
                trigger_event: b"A01",
                control_id: b"MSG00001",
                processing_id: b"P",
                version_id: b"2.5.1",
                accept_ack_type: b"",
                app_ack_type: b"",
                charset: b"",
            }
        );
    }

    #[test]
    fn parses_other_samples() {
        let m = parse_msh(ORU_R01).unwrap();
        assert_eq!(m.message_type, b"ORU^R01^ORU_R01");
        assert_eq!(m.trigger_event, b"R01");
        assert_eq!(m.control_id, b"LAB7731");

        let m = parse_msh(ADT_A08_UTF8).unwrap();
        assert_eq!(m.sending_application, b"REG");
        assert_eq!(m.trigger_event, b"A08");
        assert_eq!(m.control_id, b"UTF0001");
        assert_eq!(m.version_id, b"2.5");

        let m = parse_msh(ACK_AA).unwrap();
        assert_eq!(m.message_type, b"ACK^A01^ACK");
        assert_eq!(m.control_id, b"ACK00001");

        assert_eq!(parse_msh(NOT_HL7), None);
        assert_eq!(parse_msh(b""), None);
        assert_eq!(parse_msh(b"PID|1||x\rMSH|^~\\&|A\r"), None);
    }

    #[test]
    fn batch_uses_first_msh() {
        let m = parse_msh(BATCH_ADT).unwrap();
        assert_eq!(m.control_id, b"B00000");
        assert_eq!(m.message_type, b"ADT^A04^ADT_A01");
        assert_eq!(m.trigger_event, b"A04");
        // A batch header without any MSH has nothing to acknowledge by.
        assert_eq!(parse_msh(b"FHS|^~\\&|A\rBHS|^~\\&|A\rBTS|0\rFTS|1\r"), None);
    }

    #[test]
    fn custom_separators() {
        let msg = b"MSH#*@!$#APP#FAC#RAPP#RFAC#20260101##ORM*O01*ORM_O01#C1#T#2.3\rPID#1\r";
        let m = parse_msh(msg).unwrap();
        assert_eq!(m.field_sep, b'#');
        assert_eq!(m.encoding, b"*@!$");
        assert_eq!(m.component_sep, b'*');
        assert_eq!(m.message_type, b"ORM*O01*ORM_O01");
        assert_eq!(m.trigger_event, b"O01");
        assert_eq!(m.control_id, b"C1");
        assert_eq!(m.processing_id, b"T");
        assert_eq!(m.version_id, b"2.3");

        let out = ack(msg, AckCode::AE, Some(b"bad # * @ ! $ \\ |\r"));
        assert_eq!(
            out,
            &b"MSH#*@!$#RAPP#RFAC#APP#FAC#20261125083100##ACK*O01*ACK#ACK42#T#2.3\r\
               MSA#AE#C1#bad !F! !S! !R! !E! !T! \\ |!X0D!\r"[..]
        );
        assert!(!is_ack_message(msg));
    }

    #[test]
    fn lf_and_crlf_segment_endings() {
        let lf = b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|X1|P|2.4\nPID|1\n";
        let crlf = b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|X1|P|2.4\r\nPID|1\r\n";
        for msg in [&lf[..], &crlf[..]] {
            let m = parse_msh(msg).unwrap();
            assert_eq!(m.version_id, b"2.4");
            assert_eq!(m.trigger_event, b"A01");
            assert_eq!(
                ack(msg, AckCode::AA, None),
                &b"MSH|^~\\&|C|D|A|B|20261125083100||ACK^A01^ACK|ACK42|P|2.4\rMSA|AA|X1\r"[..]
            );
        }
        let batch = b"FHS|^~\\&\r\nBHS|^~\\&\r\nMSH|^~\\&|A||||||ORU^R01|Y|P|2.5\r\n";
        assert_eq!(parse_msh(batch).unwrap().control_id, b"Y");
    }

    #[test]
    fn missing_trailing_fields() {
        // Only up to MSH-9.
        let msg = b"MSH|^~\\&|A|B|C|D|2026||ADT^A01\r";
        let m = parse_msh(msg).unwrap();
        assert_eq!(m.message_type, b"ADT^A01");
        assert_eq!(m.trigger_event, b"A01");
        assert_eq!(m.control_id, b"");
        assert_eq!(m.processing_id, b"");
        assert_eq!(m.version_id, b"");
        assert_eq!(
            ack(msg, AckCode::AR, None),
            &b"MSH|^~\\&|C|D|A|B|20261125083100||ACK^A01^ACK|ACK42|P|\rMSA|AR|\r"[..]
        );

        // Almost nothing: MSH-2 absent, so '^' is the component separator and the ACK gets
        // the default encoding characters.
        let m = parse_msh(b"MSH|").unwrap();
        assert_eq!(m.encoding, b"");
        assert_eq!(m.component_sep, b'^');
        assert_eq!(m.message_type, b"");
        assert_eq!(m.trigger_event, b"");
        assert_eq!(ack(b"MSH|", AckCode::AA, None), &b"MSH|^~\\&|||||20261125083100||ACK|ACK42|P|\rMSA|AA|\r"[..]);

        // No trigger: MSH-9 is just ACK.
        let out = ack(b"MSH|^~\\&|A|B|C|D|2026||QRY|Q1|D|2.3", AckCode::AA, None);
        assert_eq!(out, &b"MSH|^~\\&|C|D|A|B|20261125083100||ACK|ACK42|D|2.3\rMSA|AA|Q1\r"[..]);
    }

    #[test]
    fn empty_msh2_default_encoding_never_holds_the_field_separator() {
        // Found by the hl7 fuzz target's oracle: with '^' as the field separator and MSH-2
        // empty, the ACK's MSH-2 was `^~\&`, so it began with a field separator and every
        // field after it moved one place.
        let msg = b"MSH^^A^B^C^D^2026^^ADT^X1^P^2.5\r";
        assert_eq!(ack(msg, AckCode::AA, None), &b"MSH^#~\\&^C^D^A^B^20261125083100^^ACK^ACK42^P^2.5\rMSA^AA^X1\r"[..]);
        assert_eq!(default_encoding(b'|'), *b"^~\\&");
        assert_eq!(default_encoding(b'&'), *b"^~\\#");
        // The batch acknowledgement's headers likewise.
        let shape = BatchShape { fhs: None, groups: vec![(Some(b"BHS~~S".to_vec()), 0)] };
        let mut out = Vec::new();
        build_batch_ack(&shape, &[], TS, &mut out);
        assert!(out.starts_with(b"BHS~^#\\&~~~S~"), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn without_escape_character_special_bytes_become_a_byte_that_is_not_special() {
        // Found by the hl7 fuzz target's oracle: MSH-2 without an escape character turned a
        // special byte into a space, which split the field when the space was the field separator.
        let msg = b"MSH ^~ A B C D 2026  ADT^A01 X1 P 2.5\r";
        assert_eq!(
            ack(msg, AckCode::AE, Some(b"a b^c~d")),
            &b"MSH ^~ C D A B 20261125083100  ACK^A01^ACK ACK42 P 2.5\rMSA AE X1 a_b_c_d\r"[..]
        );
        // A space as the component separator too, and '_' as the field separator.
        let msg = b"MSH_ ~_A\r";
        assert_eq!(
            ack(msg, AckCode::AA, Some(b"x y_z")),
            &b"MSH_ ~___A__20261125083100__ACK_ACK42_P_\rMSA_AA__x.y.z\r"[..]
        );
        // With an escape character the separators are escaped, a space as any other.
        let msg = b"MSH ^~\\& A\r";
        assert_eq!(
            ack(msg, AckCode::AA, Some(b"a b")),
            &b"MSH ^~\\&   A  20261125083100  ACK ACK42 P \rMSA AA  a\\F\\b\r"[..]
        );
    }

    #[test]
    fn ack_for_adt_a01_exact() {
        assert_eq!(
            ack(ADT_A01, AckCode::AA, None),
            &b"MSH|^~\\&|LABADT|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|\
               20261125083100||ACK^A01^ACK|ACK42|P|2.5.1\rMSA|AA|MSG00001\r"[..]
        );
        let mut out = b"keep".to_vec();
        build_ack(ADT_A01, AckCode::AR, TS, b"ACK42", Some(b"size^limit|exceeded"), &mut out);
        assert_eq!(
            out,
            &b"keepMSH|^~\\&|LABADT|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|\
               20261125083100||ACK^A01^ACK|ACK42|P|2.5.1\r\
               MSA|AR|MSG00001|size\\S\\limit\\F\\exceeded\r"[..]
        );
    }

    #[test]
    fn ack_round_trips() {
        for m in [ADT_A01, ORU_R01, ADT_A08_UTF8, BATCH_ADT] {
            let out = ack(m, AckCode::AA, None);
            assert!(is_hl7_v2(&out));
            assert!(is_ack_message(&out));
            assert_eq!(ack_accepted(&out), Some(true));
            let a = parse_msh(&out).unwrap();
            let orig = parse_msh(m).unwrap();
            assert_eq!(a.control_id, b"ACK42");
            assert_eq!(a.trigger_event, orig.trigger_event);
            assert_eq!(a.sending_application, orig.receiving_application);
            assert_eq!(a.receiving_facility, orig.sending_facility);
            assert_eq!(a.version_id, orig.version_id);
            assert_eq!(ack_accepted(&ack(m, AckCode::AE, None)), Some(false));
            assert_eq!(ack_accepted(&ack(m, AckCode::AR, Some(b"x"))), Some(false));
        }
    }

    #[test]
    fn ack_without_msh_uses_defaults() {
        assert_eq!(
            ack(NOT_HL7, AckCode::AR, Some(b"not HL7")),
            &b"MSH|^~\\&|||||20261125083100||ACK|ACK42|P|2.5\rMSA|AR||not HL7\r"[..]
        );
        assert_eq!(ack(b"", AckCode::AE, None), &b"MSH|^~\\&|||||20261125083100||ACK|ACK42|P|2.5\rMSA|AE|\r"[..]);
    }

    #[test]
    fn ack_code_bytes() {
        assert_eq!(AckCode::AA.as_bytes(), b"AA");
        assert_eq!(AckCode::AE.as_bytes(), b"AE");
        assert_eq!(AckCode::AR.as_bytes(), b"AR");
    }

    #[test]
    fn reads_msa() {
        assert_eq!(ack_accepted(ACK_AA), Some(true));
        assert!(is_ack_message(ACK_AA));
        assert_eq!(ack_accepted(ADT_A01), None);
        assert!(!is_ack_message(ADT_A01));
        assert_eq!(ack_accepted(NOT_HL7), None);
        assert!(!is_ack_message(NOT_HL7));
        for (code, want) in [
            ("AA", true),
            ("CA", true),
            ("aa", true),
            ("AE", false),
            ("AR", false),
            ("CE", false),
            ("CR", false),
            ("", false),
            ("ZZ", false),
        ] {
            let msg = format!("MSH|^~\\&|A|B|C|D|2026||ACK|Z|P|2.5\nMSA|{code}|X1\n");
            assert_eq!(ack_accepted(msg.as_bytes()), Some(want), "{code}");
        }
        assert_eq!(ack_accepted(b"MSA|AA"), Some(true));
        assert_eq!(ack_accepted(b"MSH#*@!$#A#B#C#D#1##ACK#Z\rMSA#CA#Z\r"), Some(true));
        assert!(is_ack_message(b"MSH#*@!$#A#B#C#D#1##ACK*R01*ACK#Z\r"));
        assert!(!is_ack_message(b"MSH|^~\\&|A|B|C|D|1||ACKX|Z\r"));
    }

    fn ts(secs: u64) -> String {
        let mut out = Vec::new();
        format_timestamp(secs, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0), "19700101000000");
        assert_eq!(ts(86_399), "19700101235959");
        assert_eq!(ts(951_782_400), "20000229000000"); // leap day, century divisible by 400
        assert_eq!(ts(951_868_800), "20000301000000");
        assert_eq!(ts(1_709_164_800), "20240229000000");
        assert_eq!(ts(1_735_689_599), "20241231235959");
        assert_eq!(ts(1_764_059_460), "20251125083100");
        assert_eq!(ts(4_107_542_400), "21000301000000"); // 2100 is not a leap year
        assert_eq!(ts(253_402_300_799), "99991231235959");
        assert_eq!(ts(253_402_300_800), "100000101000000");
        assert_eq!(ts(u64::MAX).len(), 22); // no panic, just a 12-digit year
                                            // Appends.
        let mut out = b"x".to_vec();
        format_timestamp(0, &mut out);
        assert_eq!(out, b"x19700101000000");
    }

    #[test]
    fn timestamps_agree_with_day_by_day_calendar() {
        let mut secs = 0u64;
        for year in 1970u64..2400 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let lens = [31, 28 + u64::from(leap), 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            for (m, len) in lens.iter().enumerate() {
                for d in 1..=*len {
                    let want = format!("{year:04}{:02}{d:02}000000", m + 1);
                    assert_eq!(ts(secs), want);
                    secs += 86_400;
                }
            }
        }
    }

    #[test]
    fn ack_declares_the_messages_charset_and_enhanced_fields_parse() {
        let m = parse_msh(ADT_A08_UTF8).unwrap();
        assert_eq!((m.accept_ack_type, m.app_ack_type, m.charset), (&b"AL"[..], &b"NE"[..], &b"UNICODE UTF-8"[..]));
        let out = ack(ADT_A08_UTF8, AckCode::CA, None);
        assert_eq!(
            out,
            &b"MSH|^~\\&|HIS|KLINIKUM|REG|KLINIKUM|20261125083100||ACK^A08^ACK|ACK42|P|2.5||||||UNICODE UTF-8\r\
               MSA|CA|UTF0001\r"[..]
        );
        assert_eq!(ack_accepted(&out), Some(true));
        for (t, pos, want) in
            [("AL", true, true), ("AL", false, true), ("NE", true, false), ("ER", true, false), ("ER", false, true)]
        {
            assert_eq!(ack_wanted(t.as_bytes(), pos), want, "{t} {pos}");
        }
        assert!(ack_wanted(b"SU", true) && !ack_wanted(b"SU", false) && ack_wanted(b"", false));
        assert_eq!(AckCode::from_c(3), Some(AckCode::CA));
        assert_eq!(AckCode::from_c(6), None);
    }

    #[test]
    fn control_ids_are_unique_and_short() {
        let mut seen = std::collections::HashSet::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..2000)
                        .map(|_| {
                            let mut v = Vec::new();
                            push_control_id(&mut v);
                            v
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(id.len() <= 20 && id.iter().all(u8::is_ascii_alphanumeric));
                assert!(seen.insert(id));
            }
        }
        let a = build_ack_now(ADT_A01, AckCode::AA, None);
        let b = build_ack_now(ADT_A01, AckCode::AA, None);
        assert_ne!(parse_msh(&a).unwrap().control_id, parse_msh(&b).unwrap().control_id);
        assert_eq!(ack_accepted(&a), Some(true));
    }

    #[test]
    fn msh_charset_agrees_with_parse_msh() {
        for m in [ADT_A01, ORU_R01, ADT_A08_UTF8, BATCH_ADT, ACK_AA, NOT_HL7, b"MSH|", b"MSH|^~"] {
            assert_eq!(msh_charset(m).0, parse_msh(m).map_or(&[][..], |p| p.charset));
            assert_eq!(
                msh_identity(m),
                parse_msh(m).map(|p| [p.sending_application, p.sending_facility, p.control_id])
            );
        }
        // MSH-18 is the 17th field after "MSH" and its separator.
        let m = format!("MSH|^~\\&{}8859/1|x\r", "|".repeat(16));
        assert_eq!(msh_charset(m.as_bytes()), (&b"8859/1"[..], b'~'));
        let m = format!("MSH#*@!${}A@B\r", "#".repeat(16));
        assert_eq!(msh_charset(m.as_bytes()), (&b"A@B"[..], b'@'));
        let m = format!("MSH|^~\\&{}UTF-8", "|".repeat(16));
        assert_eq!(msh_charset(m.as_bytes()), (&b"UTF-8"[..], b'~'));
        assert_eq!(parse_msh(m.as_bytes()).unwrap().charset, b"UTF-8");
    }

    #[test]
    fn splits_the_sample_batch() {
        let b = split_batch(BATCH_ADT).unwrap();
        assert_eq!(b.len(), 3);
        assert!(b.fhs.unwrap().ends_with(b"FILE001"));
        assert_eq!(b.groups.len(), 1);
        let ids: Vec<&[u8]> = b.messages().map(|m| parse_msh(m).unwrap().control_id).collect();
        assert_eq!(ids, [&b"B00000"[..], b"B00001", b"B00002"]);
        // Messages directly inside a file batch, and LF endings.
        let b = split_batch(b"FHS|^~\\&\nMSH|^~\\&|A||||||ADT^A01|1|P|2.5\nPID|1\nFTS|1\n").unwrap();
        assert_eq!(b.messages().collect::<Vec<_>>(), [&b"MSH|^~\\&|A||||||ADT^A01|1|P|2.5\nPID|1\n"[..]]);
        assert!(split_batch(b"BHS|^~\\&\rMSH|^~\\&\rBTS|x\r").unwrap_err().contains("not a count"));
        assert!(split_batch(b"BHS|^~\\&\rBTS|0\rMSH|^~\\&\r").is_err());
        assert!(split_batch(b"FHS|^~\\&\rFTS|0\rMSH|^~\\&\r").unwrap_err().contains("after FTS"));
        // Trailers without fields (found by the batch oracle's grammar: HL7 omits empty
        // trailing fields, and a bare BTS was read as a segment of the last message).
        let b = split_batch(b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rPID|1\rBTS\rFTS\r").unwrap();
        assert_eq!(b.messages().collect::<Vec<_>>(), [&b"MSH|^~\\&|A\rPID|1\r"[..]]);
        assert!(split_batch(b"BHS|^~\\&\rMSH|^~\\&|A\rBTS").is_ok());
    }

    use proptest::prelude::*;

    proptest! {
        /// Oracle: a batch built from known messages splits back into exactly them, in order,
        /// with counts checked; a wrong BTS count is always refused.
        #[test]
        fn split_batch_returns_the_messages_it_was_built_from(
            groups in proptest::collection::vec(
                proptest::collection::vec(
                    (0u32..1000, proptest::collection::vec("[A-Z]{3}\\|[a-z0-9 ^]{0,12}", 0..4)),
                    0..5),
                1..4),
            file in any::<bool>(),
            crlf in any::<bool>(),
            wrong in 0usize..3,
        ) {
            let eol = if crlf { "\r\n" } else { "\r" };
            let mut frame = String::new();
            let mut want = Vec::new();
            if file { frame += &format!("FHS|^~\\&|S{eol}"); }
            for g in &groups {
                frame += &format!("BHS|^~\\&|S{eol}");
                for (id, segs) in g {
                    let mut m = format!("MSH|^~\\&|A|B|C|D|2024||ADT^A01|{id}|P|2.5{eol}");
                    for s in segs {
                        // Segment names that are batch headers would end the message.
                        if ["FHS", "BHS", "BTS", "FTS", "MSH"].contains(&&s[..3]) { continue; }
                        m += &format!("{s}{eol}");
                    }
                    want.push(m.clone());
                    frame += &m;
                }
                frame += &format!("BTS|{}{eol}", g.len());
            }
            if file { frame += &format!("FTS|{}{eol}", groups.len()); }
            let b = split_batch(frame.as_bytes()).unwrap();
            let got: Vec<String> = b.messages().map(|m| String::from_utf8(m.to_vec()).unwrap()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(b.fhs.is_some(), file);
            // Changing one BTS count makes it malformed.
            let g = wrong % groups.len();
            let needle = format!("BTS|{}{eol}", groups[g].len());
            let pos = frame.match_indices(&needle).nth(
                groups[..g].iter().filter(|x| x.len() == groups[g].len()).count()).unwrap().0;
            let mut bad = frame.clone();
            bad.replace_range(pos..pos + needle.len(), &format!("BTS|{}{eol}", groups[g].len() + 1));
            prop_assert!(split_batch(bad.as_bytes()).is_err());
        }
    }

    #[test]
    fn parse_ack_reads_msa_and_err_text() {
        let m = b"MSH|^~\\&|A|B|C|D|20260101||ACK|X1|P|2.5\rMSA|AE|MSG42|Bad PID\rERR||PID^1^3|101^Required field missing^HL70357|E||||Patient id missing\r";
        let a = parse_ack(m).unwrap();
        assert_eq!(a.code, Some(AckCode::AE));
        assert_eq!(a.control_id, b"MSG42");
        assert_eq!(a.text, "Bad PID; Patient id missing");
        let v23 = b"MSH|^~\\&|A|B|C|D|20260101||ACK|X1|P|2.3\rMSA|ar| M1 \rERR|PID^1^3^101&Missing\r";
        let a = parse_ack(v23).unwrap();
        assert_eq!((a.code, a.control_id, a.text.as_str()), (Some(AckCode::AR), &b"M1"[..], "PID^1^3^101&Missing"));
        let odd = b"MSH|^~\\&|A|B|C|D|20260101||ACK|X1|P|2.5\rMSA|ZZ|M2\r";
        assert_eq!(parse_ack(odd).unwrap().code, None);
        assert_eq!(parse_ack(b"MSH|^~\\&|A\rPID|1\r"), None);
    }
}
