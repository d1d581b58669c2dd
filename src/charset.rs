//! Character sets of HL7 v2 messages (MSH-18, HL7 table 0211): the names senders write,
//! normalised, and conversion to UTF-8.
//!
//! Conversion always works on a whole message (the connection has the complete frame before it
//! decodes), so a multi-byte character split across TCP reads comes out whole. Bytes that do
//! not map are an error for the message, never dropped or replaced.

use encoding_rs::Encoding;

/// A character set the library recognises, by its HL7 table 0211 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charset {
    /// The normalised HL7 name, e.g. `"8859/1"` or `"UNICODE UTF-8"`.
    pub name: &'static str,
    decoder: Decoder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoder {
    /// Bytes 0x00–0x7F only.
    Ascii,
    /// Already UTF-8: validated, not converted.
    Utf8,
    /// ISO 8859-1: each byte is the code point of the same number.
    Latin1,
    /// ISO 8859-9: Latin-1 with six Turkish letters in place of Icelandic ones.
    Latin5,
    /// A converter from encoding_rs.
    Whatwg(&'static Encoding),
    /// Recognised, but no converter here (multi-byte sets whose MSH a byte parser cannot read,
    /// or JIS X 0201/0212 on their own).
    Unsupported,
}

/// HL7 names and the aliases senders use, upper-cased with `_` and `-` folded to spaces by
/// [`fold`]. The first entry for a name gives its normalised spelling.
const TABLE: &[(&str, &str, Decoder)] = &[
    ("ASCII", "ASCII", Decoder::Ascii),
    ("US ASCII", "ASCII", Decoder::Ascii),
    ("ISO IR 6", "ASCII", Decoder::Ascii),
    ("ANSI X3.4 1968", "ASCII", Decoder::Ascii),
    ("UNICODE UTF 8", "UNICODE UTF-8", Decoder::Utf8),
    ("UTF 8", "UNICODE UTF-8", Decoder::Utf8),
    ("UTF8", "UNICODE UTF-8", Decoder::Utf8),
    ("ISO IR 192", "UNICODE UTF-8", Decoder::Utf8),
    ("UNICODE", "UNICODE", Decoder::Unsupported),
    ("UNICODE UTF 16", "UNICODE UTF-16", Decoder::Unsupported),
    ("UTF 16", "UNICODE UTF-16", Decoder::Unsupported),
    ("UNICODE UTF 32", "UNICODE UTF-32", Decoder::Unsupported),
    ("UTF 32", "UNICODE UTF-32", Decoder::Unsupported),
    ("8859/1", "8859/1", Decoder::Latin1),
    ("ISO 8859 1", "8859/1", Decoder::Latin1),
    ("ISO8859 1", "8859/1", Decoder::Latin1),
    ("LATIN1", "8859/1", Decoder::Latin1),
    ("LATIN 1", "8859/1", Decoder::Latin1),
    ("ISO IR 100", "8859/1", Decoder::Latin1),
    ("8859/2", "8859/2", Decoder::Whatwg(encoding_rs::ISO_8859_2)),
    ("ISO 8859 2", "8859/2", Decoder::Whatwg(encoding_rs::ISO_8859_2)),
    ("ISO8859 2", "8859/2", Decoder::Whatwg(encoding_rs::ISO_8859_2)),
    ("LATIN2", "8859/2", Decoder::Whatwg(encoding_rs::ISO_8859_2)),
    ("ISO IR 101", "8859/2", Decoder::Whatwg(encoding_rs::ISO_8859_2)),
    ("8859/3", "8859/3", Decoder::Whatwg(encoding_rs::ISO_8859_3)),
    ("ISO 8859 3", "8859/3", Decoder::Whatwg(encoding_rs::ISO_8859_3)),
    ("ISO8859 3", "8859/3", Decoder::Whatwg(encoding_rs::ISO_8859_3)),
    ("ISO IR 109", "8859/3", Decoder::Whatwg(encoding_rs::ISO_8859_3)),
    ("8859/4", "8859/4", Decoder::Whatwg(encoding_rs::ISO_8859_4)),
    ("ISO 8859 4", "8859/4", Decoder::Whatwg(encoding_rs::ISO_8859_4)),
    ("ISO8859 4", "8859/4", Decoder::Whatwg(encoding_rs::ISO_8859_4)),
    ("ISO IR 110", "8859/4", Decoder::Whatwg(encoding_rs::ISO_8859_4)),
    ("8859/5", "8859/5", Decoder::Whatwg(encoding_rs::ISO_8859_5)),
    ("ISO 8859 5", "8859/5", Decoder::Whatwg(encoding_rs::ISO_8859_5)),
    ("ISO8859 5", "8859/5", Decoder::Whatwg(encoding_rs::ISO_8859_5)),
    ("ISO IR 144", "8859/5", Decoder::Whatwg(encoding_rs::ISO_8859_5)),
    ("8859/6", "8859/6", Decoder::Whatwg(encoding_rs::ISO_8859_6)),
    ("ISO 8859 6", "8859/6", Decoder::Whatwg(encoding_rs::ISO_8859_6)),
    ("ISO8859 6", "8859/6", Decoder::Whatwg(encoding_rs::ISO_8859_6)),
    ("ISO IR 127", "8859/6", Decoder::Whatwg(encoding_rs::ISO_8859_6)),
    ("8859/7", "8859/7", Decoder::Whatwg(encoding_rs::ISO_8859_7)),
    ("ISO 8859 7", "8859/7", Decoder::Whatwg(encoding_rs::ISO_8859_7)),
    ("ISO8859 7", "8859/7", Decoder::Whatwg(encoding_rs::ISO_8859_7)),
    ("ISO IR 126", "8859/7", Decoder::Whatwg(encoding_rs::ISO_8859_7)),
    ("8859/8", "8859/8", Decoder::Whatwg(encoding_rs::ISO_8859_8)),
    ("ISO 8859 8", "8859/8", Decoder::Whatwg(encoding_rs::ISO_8859_8)),
    ("ISO8859 8", "8859/8", Decoder::Whatwg(encoding_rs::ISO_8859_8)),
    ("ISO IR 138", "8859/8", Decoder::Whatwg(encoding_rs::ISO_8859_8)),
    ("8859/9", "8859/9", Decoder::Latin5),
    ("ISO 8859 9", "8859/9", Decoder::Latin5),
    ("ISO8859 9", "8859/9", Decoder::Latin5),
    ("LATIN5", "8859/9", Decoder::Latin5),
    ("ISO IR 148", "8859/9", Decoder::Latin5),
    ("8859/15", "8859/15", Decoder::Whatwg(encoding_rs::ISO_8859_15)),
    ("ISO 8859 15", "8859/15", Decoder::Whatwg(encoding_rs::ISO_8859_15)),
    ("ISO8859 15", "8859/15", Decoder::Whatwg(encoding_rs::ISO_8859_15)),
    ("LATIN9", "8859/15", Decoder::Whatwg(encoding_rs::ISO_8859_15)),
    ("ISO IR 203", "8859/15", Decoder::Whatwg(encoding_rs::ISO_8859_15)),
    ("ISO IR87", "ISO IR87", Decoder::Whatwg(encoding_rs::ISO_2022_JP)),
    ("ISO IR 87", "ISO IR87", Decoder::Whatwg(encoding_rs::ISO_2022_JP)),
    ("ISO 2022 JP", "ISO IR87", Decoder::Whatwg(encoding_rs::ISO_2022_JP)),
    ("ISO IR14", "ISO IR14", Decoder::Unsupported),
    ("ISO IR 14", "ISO IR14", Decoder::Unsupported),
    ("ISO IR159", "ISO IR159", Decoder::Unsupported),
    ("ISO IR 159", "ISO IR159", Decoder::Unsupported),
    ("SHIFT JIS", "SHIFT JIS", Decoder::Whatwg(encoding_rs::SHIFT_JIS)),
    ("SJIS", "SHIFT JIS", Decoder::Whatwg(encoding_rs::SHIFT_JIS)),
    ("GB 18030 2000", "GB 18030-2000", Decoder::Whatwg(encoding_rs::GB18030)),
    ("GB18030", "GB 18030-2000", Decoder::Whatwg(encoding_rs::GB18030)),
    ("GB 18030", "GB 18030-2000", Decoder::Whatwg(encoding_rs::GB18030)),
    ("KS X 1001", "KS X 1001", Decoder::Whatwg(encoding_rs::EUC_KR)),
    ("EUC KR", "KS X 1001", Decoder::Whatwg(encoding_rs::EUC_KR)),
    ("CNS 11643 1992", "CNS 11643-1992", Decoder::Unsupported),
    ("BIG 5", "BIG-5", Decoder::Whatwg(encoding_rs::BIG5)),
    ("BIG5", "BIG-5", Decoder::Whatwg(encoding_rs::BIG5)),
];

/// Upper case, `_`/`-` as spaces, runs of spaces as one, trimmed ("iso_8859-1" → "ISO 8859 1").
fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        let c = if c == '_' || c == '-' { ' ' } else { c.to_ascii_uppercase() };
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

impl Charset {
    /// The character set named `name` (MSH-18 or the DefaultCharset setting): HL7 names and
    /// common aliases, case-insensitive. None when the name is not recognised.
    ///
    /// MSH-18 may repeat (a second value names an alternate set for ISO 2022 escapes); the
    /// first repetition is the message's set, so the caller passes that.
    pub fn lookup(name: &str) -> Option<Charset> {
        let key = fold(name);
        TABLE.iter().find(|(alias, _, _)| *alias == key).map(|&(_, name, decoder)| Charset { name, decoder })
    }

    /// True when the message's bytes are already UTF-8 (or ASCII) once valid.
    pub fn is_utf8_compatible(&self) -> bool {
        matches!(self.decoder, Decoder::Ascii | Decoder::Utf8)
    }

    /// Converts a whole message to UTF-8. `Ok(None)` when `data` is already valid UTF-8 in
    /// this set (ASCII, UTF-8: nothing to convert); `Err` with the reason when a byte does not
    /// map or the set has no converter here.
    pub fn to_utf8(&self, data: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.decoder {
            Decoder::Ascii => match data.iter().position(|b| !b.is_ascii()) {
                None => Ok(None),
                Some(i) => Err(format!("byte 0x{:02X} at offset {i} is not ASCII", data[i])),
            },
            Decoder::Utf8 => match std::str::from_utf8(data) {
                Ok(_) => Ok(None),
                Err(e) => Err(format!("invalid UTF-8 at offset {}", e.valid_up_to())),
            },
            Decoder::Latin1 => Ok(Some(data.iter().map(|&b| char::from(b)).collect::<String>().into_bytes())),
            Decoder::Latin5 => Ok(Some(data.iter().map(|&b| latin5(b)).collect::<String>().into_bytes())),
            Decoder::Whatwg(enc) => {
                match enc.decode_without_bom_handling_and_without_replacement(data) {
                    // Borrowed: the input was ASCII-only, so already UTF-8.
                    Some(std::borrow::Cow::Borrowed(_)) => Ok(None),
                    Some(std::borrow::Cow::Owned(s)) => Ok(Some(s.into_bytes())),
                    None => Err(format!("bytes that are not valid {}", self.name)),
                }
            }
            Decoder::Unsupported => Err(format!("no converter for {} in this library", self.name)),
        }
    }
}

/// ISO 8859-9: Latin-1 except six positions.
fn latin5(b: u8) -> char {
    match b {
        0xD0 => '\u{011E}',
        0xDD => '\u{0130}',
        0xDE => '\u{015E}',
        0xF0 => '\u{011F}',
        0xFD => '\u{0131}',
        0xFE => '\u{015F}',
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_names_and_aliases() {
        for (given, want) in [
            ("ASCII", "ASCII"),
            ("us-ascii", "ASCII"),
            ("UNICODE UTF-8", "UNICODE UTF-8"),
            ("utf-8", "UNICODE UTF-8"),
            ("UTF8", "UNICODE UTF-8"),
            ("ISO_IR 192", "UNICODE UTF-8"),
            ("8859/1", "8859/1"),
            ("ISO-8859-1", "8859/1"),
            ("iso_8859-1", "8859/1"),
            ("ISO_IR 100", "8859/1"),
            ("latin1", "8859/1"),
            ("8859/15", "8859/15"),
            ("ISO-8859-15", "8859/15"),
            ("  8859/2 ", "8859/2"),
            ("ISO IR87", "ISO IR87"),
            ("UNICODE", "UNICODE"),
            ("GB 18030-2000", "GB 18030-2000"),
            ("BIG-5", "BIG-5"),
        ] {
            assert_eq!(Charset::lookup(given).map(|c| c.name), Some(want), "{given}");
        }
        for n in ["", "KLINGON", "8859/99", "UTF-7"] {
            assert_eq!(Charset::lookup(n), None, "{n}");
        }
        // Every normalised name maps to itself.
        for &(_, name, _) in TABLE {
            assert_eq!(Charset::lookup(name).unwrap().name, name);
        }
    }

    #[test]
    fn converts_whole_messages() {
        let latin1 = Charset::lookup("8859/1").unwrap();
        assert_eq!(latin1.to_utf8(b"Jos\xE9").unwrap().unwrap(), "José".as_bytes());
        // C1 bytes are code points in ISO 8859-1 (not windows-1252's letters).
        assert_eq!(latin1.to_utf8(b"\x80").unwrap().unwrap(), "\u{80}".as_bytes());
        let latin5 = Charset::lookup("8859/9").unwrap();
        assert_eq!(latin5.to_utf8(b"\xDE\xE9").unwrap().unwrap(), "Şé".as_bytes());
        let l2 = Charset::lookup("8859/2").unwrap();
        assert_eq!(l2.to_utf8(b"\xB1").unwrap().unwrap(), "ą".as_bytes());
        let l15 = Charset::lookup("8859/15").unwrap();
        assert_eq!(l15.to_utf8(b"\xA4").unwrap().unwrap(), "€".as_bytes());
        let utf8 = Charset::lookup("UNICODE UTF-8").unwrap();
        assert_eq!(utf8.to_utf8("Müller".as_bytes()).unwrap(), None);
        assert!(utf8.to_utf8(b"M\xFCller").unwrap_err().contains("offset 1"));
        let ascii = Charset::lookup("ASCII").unwrap();
        assert_eq!(ascii.to_utf8(b"plain").unwrap(), None);
        assert!(ascii.to_utf8(b"caf\xE9").is_err());
        // 8859/6 has unassigned positions: an error, never a replacement character.
        let arabic = Charset::lookup("8859/6").unwrap();
        assert!(arabic.to_utf8(b"\xA1").is_err());
        assert!(Charset::lookup("UNICODE").unwrap().to_utf8(b"x").is_err());
        let sjis = Charset::lookup("SHIFT JIS").unwrap();
        assert_eq!(sjis.to_utf8(b"\x82\xa0").unwrap().unwrap(), "あ".as_bytes());
    }
}
