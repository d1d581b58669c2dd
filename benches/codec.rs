//! Codec throughput: decoding and encoding MLLP frames of 1 KiB and 1 MiB messages.
//!
//! `cargo bench --bench codec` (criterion reports throughput in GiB/s of frame bytes).
//! Decode is measured two ways: the whole input in one `feed` call, and in 64 KiB chunks
//! (what a socket read loop hands the decoder).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mllp::codec::{encode_commit, encode_frame, DecodeEvent, Decoder, FrameChars};

/// An HL7-looking payload of `size` bytes: segments of printable text separated by CR, no
/// framing bytes (so the decoder scans it all).
fn payload(size: usize) -> Vec<u8> {
    let head = b"MSH|^~\\&|APP|FAC|RCV|RFAC|20260101120000||ADT^A01^ADT_A01|MSG0001|P|2.5.1\r";
    let mut v = head.to_vec();
    let text = b"OBX|1|TX|NOTE||The quick brown fox jumps over the lazy dog 0123456789.\r";
    while v.len() < size {
        let take = (size - v.len()).min(text.len());
        v.extend_from_slice(&text[..take]);
    }
    v.truncate(size);
    v
}

/// `count` frames of `size`-byte messages back to back, about 1 MiB in all for small ones.
fn stream(size: usize) -> (Vec<u8>, usize) {
    let count = (1 << 20) / size.max(1);
    let count = count.max(1);
    let p = payload(size);
    let mut out = Vec::with_capacity(count * (size + 3));
    for _ in 0..count {
        encode_frame(FrameChars::default(), &p, &mut out);
    }
    (out, count)
}

fn decode(input: &[u8], chunk: usize, max: usize) -> (usize, usize) {
    let mut d = Decoder::new(FrameChars::default(), max);
    let (mut bytes, mut frames) = (0usize, 0usize);
    for c in input.chunks(chunk) {
        d.feed(c, |e| match e {
            DecodeEvent::Data(b) => bytes += b.len(),
            DecodeEvent::End => frames += 1,
            _ => {}
        });
    }
    (bytes, frames)
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, size) in [("1KiB", 1024usize), ("1MiB", 1 << 20)] {
        let (input, count) = stream(size);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(BenchmarkId::new("one_feed", name), &input, |b, input| {
            b.iter(|| {
                let r = decode(black_box(input), usize::MAX, 64 << 20);
                assert_eq!(r.1, count);
                r
            })
        });
        g.bench_with_input(BenchmarkId::new("64KiB_chunks", name), &input, |b, input| {
            b.iter(|| decode(black_box(input), 64 * 1024, 64 << 20))
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, size) in [("1KiB", 1024usize), ("1MiB", 1 << 20)] {
        let p = payload(size);
        let mut out = Vec::with_capacity(size + 3);
        g.throughput(Throughput::Bytes((size + 3) as u64));
        g.bench_function(BenchmarkId::new("frame", name), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(FrameChars::default(), black_box(&p), &mut out);
                out.len()
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4);
    g.bench_function("commit_ack", |b| {
        b.iter(|| {
            out.clear();
            encode_commit(FrameChars::default(), black_box(0x06), &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
