//! HL7 ACK builder: cost of acknowledging one message (parse MSH, build the ACK), and of the
//! pieces a server calls per message (and the duplicate window's key).
//!
//! `cargo bench --bench hl7_ack` (criterion reports time per ACK and ACKs per second).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mllp::hl7::{ack_accepted, build_ack, format_timestamp, parse_msh, AckCode};

const ADT_A01: &[u8] = include_bytes!("../tests/data/adt_a01.hl7");

/// A 1 KiB ADT^A01 like the one mllp-bench sends.
fn adt_1k() -> Vec<u8> {
    let mut m = b"MSH|^~\\&|MLLPBENCH|BENCHFAC|RECEIVER|RECVFAC|20260101120000||ADT^A01^ADT_A01|\
B000000000000001|P|2.5.1\rEVN|A01|20260101120000\r\
PID|1||4711^^^HOSP^MR||DOE^JANE^Q||19700101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701\r\
PV1|1|I|W^389^1^HOSP||||0042^SMITH^JOHN^A\rNTE|1||"
        .to_vec();
    while m.len() < 1023 {
        m.push(b'x');
    }
    m.push(b'\r');
    m
}

fn bench_ack(c: &mut Criterion) {
    let mut g = c.benchmark_group("hl7");
    g.throughput(Throughput::Elements(1));
    let adt1k = adt_1k();
    let mut out = Vec::with_capacity(512);
    for (name, msg) in [("adt_a01_sample", ADT_A01), ("adt_1KiB", &adt1k[..])] {
        g.bench_function(format!("build_ack/{name}"), |b| {
            b.iter(|| {
                out.clear();
                build_ack(black_box(msg), AckCode::AA, b"20261125083100", b"ACK0000001", None, &mut out);
                out.len()
            })
        });
    }
    g.bench_function("build_ack_with_text/adt_a01_sample", |b| {
        b.iter(|| {
            out.clear();
            build_ack(
                black_box(ADT_A01),
                AckCode::AR,
                b"20261125083100",
                b"ACK0000001",
                Some(b"size^limit|exceeded"),
                &mut out,
            );
            out.len()
        })
    });
    g.bench_function("parse_msh/adt_1KiB", |b| b.iter(|| parse_msh(black_box(&adt1k)).map(|m| m.control_id.len())));
    g.bench_function("format_timestamp", |b| {
        let mut ts = Vec::with_capacity(16);
        b.iter(|| {
            ts.clear();
            format_timestamp(black_box(1_764_059_460), &mut ts);
            ts.len()
        })
    });
    // The duplicate window's key of a message (XXH3-128 of the message + a keyed hash of
    // MSH-3/4/10), against the SHA-256 it replaced (ring, with the CPU's SHA extensions).
    g.bench_function("dedupe_key/adt_1KiB", |b| b.iter(|| mllp::dedupe::Key::of(black_box(&adt1k))));
    g.bench_function("sha256/adt_1KiB", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&adt1k)).as_ref()[0])
    });
    let mut ack = Vec::new();
    build_ack(ADT_A01, AckCode::AA, b"20261125083100", b"ACK0000001", None, &mut ack);
    g.bench_function("ack_accepted", |b| b.iter(|| ack_accepted(black_box(&ack))));
    g.finish();
}

criterion_group!(benches, bench_ack);
criterion_main!(benches);
