//! The fuzz targets' oracles (tests/oracles/*.rs) run as stable property tests, so that
//! `cargo test` checks the same properties as `tests/fuzz/run.sh` without a fuzzer: the
//! decoder against a byte-at-a-time model with settings changed mid-stream, the MSH reader
//! and ACK builder against field access by splitting, the connection's reply order against a
//! model of its queue, the PROXY header parser against a reading of the specification, and
//! the batch splitter against a grammar. Each also runs the fuzz targets' byte decoders on
//! random bytes, and the sample corpus of tests/data.

#[path = "oracles/batch.rs"]
mod batch;
#[path = "oracles/connection.rs"]
mod connection;
#[path = "oracles/framing.rs"]
mod framing;
#[path = "oracles/hl7.rs"]
mod hl7;
#[path = "oracles/proxy.rs"]
mod proxy;

use mllp::hl7::AckCode;
use mllp::proxy::ProxyMode;
use mllp::AckMode;
use proptest::prelude::*;

const SAMPLES: [&[u8]; 6] = [
    include_bytes!("data/adt_a01.hl7"),
    include_bytes!("data/oru_r01.hl7"),
    include_bytes!("data/adt_a08_utf8.hl7"),
    include_bytes!("data/batch_adt.hl7"),
    include_bytes!("data/ack_aa.hl7"),
    include_bytes!("data/not_hl7.txt"),
];

/// Framing bytes: mostly from a small alphabet (so that they collide with each other and
/// with the data), sometimes any byte.
fn frame_char() -> impl Strategy<Value = u8> {
    prop_oneof![4 => prop::sample::select(vec![0x0B, 0x1C, 0x0D, b'<', b'>', b'\n', 0, 0xFF]), 1 => any::<u8>()]
}

fn framing_op() -> impl Strategy<Value = framing::Op> {
    use framing::Op;
    prop_oneof![
        6 => prop::collection::vec(frame_char(), 0..24).prop_map(Op::Feed),
        2 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Op::Feed),
        1 => (frame_char(), frame_char(), frame_char()).prop_map(|(s, e, l)| Op::SetChars(s, e, l)),
        1 => prop_oneof![0usize..40, Just(usize::MAX)].prop_map(Op::SetMax),
        1 => Just(Op::Reset),
    ]
}

fn ack_code() -> impl Strategy<Value = AckCode> {
    prop::sample::select(vec![AckCode::AA, AckCode::AE, AckCode::AR, AckCode::CA, AckCode::CE, AckCode::CR])
}

/// Bytes an MSH segment is made of: separators of every kind, letters, CR/LF, spaces.
fn msh_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(b"|^~\\&#* _MSHFBA1\r\n".to_vec()),
        1 => any::<u8>(),
    ]
}

/// Messages with an MSH (or a batch header first), with arbitrary separators and fields.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let head = prop::sample::select(vec![&b"MSH"[..], b"FHS", b"BHS", b"\r\nMSH", b"PID"]);
    let sep = prop_oneof![Just(b'|'), Just(b' '), Just(b'^'), Just(b'_'), Just(b'#'), any::<u8>()];
    let enc = prop_oneof![
        Just(b"^~\\&".to_vec()),
        Just(Vec::new()),
        Just(b"^~".to_vec()),
        Just(b" ~\\&".to_vec()),
        Just(b"^ \\&".to_vec()),
        prop::collection::vec(msh_byte(), 0..6),
    ];
    let fields = prop::collection::vec(prop::collection::vec(msh_byte(), 0..8), 0..20);
    (head, sep, enc, fields).prop_map(|(head, sep, enc, fields)| {
        let mut m = head.to_vec();
        m.push(sep);
        m.extend_from_slice(&enc);
        for f in fields {
            m.push(sep);
            m.extend_from_slice(&f);
        }
        if head != b"MSH" {
            m.extend_from_slice(b"\rMSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r");
        }
        m
    })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(msh_byte(), 0..12)
}

fn connection_op() -> impl Strategy<Value = connection::Op> {
    use connection::Op;
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Msg),
        1 => Just(Op::Empty),
        1 => Just(Op::Oversize),
        1 => Just(Op::BadTrailer),
        1 => Just(Op::Partial),
        2 => (0u8..4, any::<u8>()).prop_map(|(n, id)| Op::Batch(n, id)),
        1 => any::<u8>().prop_map(Op::BadBatch),
        6 => (0u64..40, 0u8..3).prop_map(|(s, v)| Op::Decide(s, v)),
    ]
}

/// Segments a batch is made of, valid and not.
fn batch_segment() -> impl Strategy<Value = Vec<u8>> {
    let fixed = [&b"FHS|^~\\&|S"[..], b"BHS|^~\\&|S", b"PID|1", b"BTS", b"BTS| +1 ", b"FTS|x", b"MSH"];
    prop_oneof![
        2 => prop::sample::select(fixed.to_vec()).prop_map(<[u8]>::to_vec),
        2 => (0u32..100).prop_map(|i| format!("MSH|^~\\&|A|B|C|D|1||ADT^A01|{i}|P|2.5").into_bytes()),
        1 => (0usize..4).prop_map(|n| format!("BTS|{n}").into_bytes()),
        1 => (0usize..3).prop_map(|n| format!("FTS|{n}").into_bytes()),
        1 => "[A-Z]{3}[|#]?[a-z0-9]{0,3}".prop_map(String::into_bytes),
    ]
}

fn batch_frame() -> impl Strategy<Value = Vec<u8>> {
    let eol = prop::sample::select(vec![&b"\r"[..], b"\n", b"\r\n", b"\r\r"]);
    prop::collection::vec((batch_segment(), eol), 0..12).prop_map(|segs| {
        let mut f = Vec::new();
        for (s, e) in segs {
            f.extend_from_slice(&s);
            f.extend_from_slice(e);
        }
        f
    })
}

/// A batch built to be valid, so that the accepting paths are reached often.
fn valid_batch() -> impl Strategy<Value = Vec<u8>> {
    let group = (any::<bool>(), prop::collection::vec(0u8..3, 0..4));
    (any::<bool>(), prop::collection::vec(group, 1..4), any::<bool>()).prop_map(|(file, groups, counts)| {
        let mut f = String::new();
        if file {
            f += "FHS|^~\\&|S\r";
        }
        for (k, (bhs, msgs)) in groups.iter().enumerate() {
            let bhs = *bhs || !file;
            if bhs {
                f += "BHS|^~\\&|S\r";
            } else if k > 0 && !groups[k - 1].0 {
                // Two header-less groups in a row are one group: keep the reading unambiguous.
                f += "BHS|^~\\&|S\rBTS|\r";
            }
            for (i, extra) in msgs.iter().enumerate() {
                f += &format!("MSH|^~\\&|A|B|C|D|1||ADT^A01|{k}-{i}|P|2.5\r");
                f += &"PID|1\r".repeat(usize::from(*extra));
            }
            if bhs {
                f += &if counts { format!("BTS|{}\r", msgs.len()) } else { "BTS|\r".to_string() };
            }
        }
        if file {
            f += "FTS|\r";
        }
        f.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoder_agrees_with_the_byte_at_a_time_model(
        init in (frame_char(), frame_char(), frame_char(), prop_oneof![0usize..40, Just(usize::MAX)]),
        ops in prop::collection::vec(framing_op(), 0..24),
    ) {
        framing::check(init, &ops);
    }

    #[test]
    fn decoder_script_from_random_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let (init, ops) = framing::script_from_bytes(&data);
        framing::check(init, &ops);
    }

    #[test]
    fn msh_and_ack_agree_with_field_splitting(
        msg in message(),
        code in ack_code(),
        ts in value(),
        ctl in value(),
        text in prop::option::of(value()),
    ) {
        hl7::check(&msg, code, &ts, &ctl, text.as_deref());
    }

    #[test]
    fn hl7_case_from_random_bytes(data in prop::collection::vec(msh_byte(), 0..200)) {
        let (msg, code, ts, ctl, text) = hl7::case_from_bytes(&data);
        hl7::check(&msg, code, &ts, &ctl, text.as_deref());
    }

    #[test]
    fn replies_leave_in_frame_order(
        hl7_mode in any::<bool>(),
        ops in prop::collection::vec(connection_op(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        let mode = if hl7_mode { AckMode::Hl7 } else { AckMode::Mllp };
        connection::check(mode, &ops, &cuts);
    }

    #[test]
    fn connection_script_from_random_bytes(data in prop::collection::vec(any::<u8>(), 0..120)) {
        let (mode, ops, cuts) = connection::script_from_bytes(&data);
        connection::check(mode, &ops, &cuts);
    }

    #[test]
    fn proxy_parser_agrees_with_the_specification(
        data in prop::collection::vec(any::<u8>(), 0..160),
        prefix in 0u8..8,
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        mode in prop::sample::select(vec![ProxyMode::Any, ProxyMode::V1, ProxyMode::V2, ProxyMode::None]),
    ) {
        // The input as the fuzz target builds it: prefix choice in byte 1, data from byte 10.
        let mut head = vec![0, prefix];
        head.resize(10, 0);
        head.extend_from_slice(&data);
        let (_, input, _) = proxy::case_from_bytes(&head);
        proxy::check(mode, &input, &cuts);
    }

    #[test]
    fn proxy_v1_lines(
        line in prop_oneof![
            "PROXY (TCP4|TCP6|UNKNOWN|TCP5)( [0-9a-f.:]{0,16}){0,5}( )?\r\n",
            "PROXY TCP4 (0|1|01|255|256)\\.[0-9]\\.[0-9]\\.(0|00|99) [0-9]\\.[0-9]\\.[0-9]\\.[0-9] (0|1|01|65535|65536|\\+5) [0-9]{1,5}\r\n",
            "PROXY TCP6 [0-9a-f:]{2,12} ::(ffff:1\\.2\\.3\\.4|1) [0-9]{1,5} [0-9]{1,5}\r\n",
            "PROXY UNKNOWN[ -~]{0,12}[\\t\\x00\\x7f]?[ -~]{0,6}\r\n",
        ],
        tail in prop::collection::vec(any::<u8>(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut data = line.into_bytes();
        data.extend_from_slice(&tail);
        proxy::check(ProxyMode::Any, &data, &cuts);
        proxy::check(ProxyMode::V1, &data, &cuts);
    }

    #[test]
    fn proxy_v2_headers(
        cmd in 0u8..3,
        fam in prop::sample::select(vec![0x00u8, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x10, 0x13, 0x41, 0x01]),
        payload in prop::collection::vec(any::<u8>(), 0..240),
        tail in prop::collection::vec(any::<u8>(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut data = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        data.push(0x20 | cmd);
        data.push(fam);
        data.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        data.extend_from_slice(&payload);
        data.extend_from_slice(&tail);
        proxy::check(ProxyMode::Any, &data, &cuts);
        proxy::check(ProxyMode::V2, &data, &cuts);
    }

    #[test]
    fn batch_splitter_agrees_with_the_grammar(frame in prop_oneof![batch_frame(), valid_batch()]) {
        batch::check(&frame);
    }

    #[test]
    fn batch_frame_from_random_bytes(data in prop::collection::vec(any::<u8>(), 0..80)) {
        batch::check(&batch::frame_from_bytes(&data));
    }
}

#[test]
fn valid_batches_are_accepted_by_the_oracle() {
    // The generator of valid batches and the oracle agree that they are valid.
    use proptest::strategy::ValueTree;
    let runner = &mut proptest::test_runner::TestRunner::deterministic();
    for _ in 0..200 {
        let f = valid_batch().new_tree(runner).unwrap().current();
        assert!(batch::split(&f).is_some(), "{}", String::from_utf8_lossy(&f));
    }
}

#[test]
fn samples_pass_every_oracle() {
    for s in SAMPLES {
        hl7::check(s, AckCode::AA, b"20260101000000", b"ACK1", Some(&b"a|b^c\rd"[..]));
        batch::check(s);
        let mut framed = vec![0x0B];
        framed.extend_from_slice(s);
        framed.extend_from_slice(&[0x1C, 0x0D]);
        framing::check((0x0B, 0x1C, 0x0D, 1 << 20), &[framing::Op::Feed(framed)]);
    }
    assert!(batch::split(SAMPLES[3]).is_some());
}

#[test]
fn proxy_edge_cases_agree_with_the_specification() {
    for line in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 +5 6\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 5 +6\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 00 6\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN a b c d e f g h\r\n",
        b"PROXY \r\n",
        b"PROXY\r\n",
    ] {
        proxy::check(ProxyMode::Any, line, &[]);
        proxy::check(ProxyMode::V1, line, &[7, 20]);
    }
}
