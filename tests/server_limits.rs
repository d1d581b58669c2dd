//! Resource bounds over real sockets (issue 15): the server-wide budget for buffered input
//! (MaxBufferedBytes, error 2013, BufferedBytes), IdleTimeout, error storms coalesced while
//! other clients keep their round trips, and one-byte ACK/NAK messages nothing awaits.
//!
//! Round-trip times are asserted only in optimized builds (`cargo test --release --test
//! server_limits`): a debug build decodes 10–50 times slower. Event counts and bounds are
//! asserted in every build.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use mllp::code;

fn buffered(ctx: &Ctx) -> u64 {
    ctx.server.config("BufferedBytes").unwrap().parse().unwrap()
}

/// Resident memory of this process, bytes (Linux).
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn partial_frames_beyond_the_budget_are_closed_and_complete_senders_are_served() {
    const BUDGET: u64 = 4 << 20;
    const PART: usize = 1 << 20;
    let ctx = setup(&["MaxBufferedBytes=4194304", "ReceiveTimeout=0"]);
    assert_eq!(ctx.server.config("MaxBufferedBytes").unwrap(), BUDGET.to_string());
    let before = rss();
    let mut sender = ctx.connect();
    sender.expect_ack_for(&hl7("FIRST"));
    // 24 clients each start a frame of 1 MiB and 16 KiB and never finish it (without the
    // budget: 24 MiB of content held, in buffers of twice that).
    let chunk = vec![b'x'; 16 * 1024];
    let mut holders = Vec::new();
    let mut peak = 0;
    for i in 0..24 {
        let mut c = ctx.connect();
        let _ = c.stream.write_all(&[SB]);
        for _ in 0..(PART / chunk.len() + 1) {
            // A closed connection fails the write: that is the budget at work.
            if c.stream.write_all(&chunk).is_err() {
                break;
            }
        }
        holders.push(c);
        // The complete-message sender keeps getting its ACKs meanwhile.
        sender.expect_ack_for(&hl7(&format!("M{i}")));
        peak = peak.max(buffered(&ctx));
    }
    assert!(wait_until(WAIT, || ctx.rec.count(|e| e.is_error(code::MEMORY_BUDGET)) >= 20));
    let held = buffered(&ctx);
    assert!(held <= BUDGET, "BufferedBytes {held} over the budget");
    // Counted after every read: the total never passes the budget by more than one read.
    assert!(peak <= BUDGET + 256 * 1024, "peak {peak}");
    let closed = holders.iter_mut().map(|c| c.closed_within(Duration::from_millis(500))).filter(|&x| x).count();
    assert!((20..=24).contains(&closed), "{closed} of 24 partial senders closed");
    let gone = ctx.rec.count(|e| matches!(e, Ev::Disconnected { code, .. } if *code == code::MEMORY_BUDGET));
    assert_eq!(gone, closed);
    assert!(ctx.rec.events().iter().any(|e| matches!(e, Ev::Error { code, description, .. }
        if *code == code::MEMORY_BUDGET && description.contains("MaxBufferedBytes (4194304)"))));
    sender.expect_ack_for(&hl7("LAST"));
    if let (Some(a), Some(b)) = (before, rss()) {
        // 24 MiB held without the budget; with it at most the budget in buffers of up to
        // twice their content, and allocator slack.
        assert!(b.saturating_sub(a) < 20 << 20, "RSS grew by {} bytes", b.saturating_sub(a));
    }
    // Closing the holders gives the budget back.
    drop(holders);
    assert!(wait_until(WAIT, || buffered(&ctx) == 0), "BufferedBytes {}", buffered(&ctx));
}

#[test]
fn connection_limit_is_max_connections_or_derived_from_the_descriptor_limit() {
    let ctx = setup(&[]);
    let derived: u64 = ctx.server.config("ConnectionLimit").unwrap().parse().unwrap();
    // This process's soft RLIMIT_NOFILE, read from /proc (Linux).
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    // "unlimited" counts as 2^20 descriptors.
    let soft: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap_or(1 << 20);
    assert_eq!(derived, soft - (soft / 8).max(64), "soft limit {soft}");
    ctx.server.config("MaxConnections=10").unwrap();
    assert_eq!(ctx.server.config("ConnectionLimit").unwrap(), "10");
    assert_eq!(ctx.server.config("ConnectionLimit=5").unwrap_err().code, code::INVALID_VALUE);
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let ctx = setup(&["IdleTimeout=1"]);
    let mut idle = ctx.connect();
    let mut busy = ctx.connect();
    let t = Instant::now();
    for i in 0..8 {
        busy.expect_ack_for(&hl7(&format!("B{i}")));
        std::thread::sleep(Duration::from_millis(250));
    }
    // Two seconds of traffic: the busy one is open; the idle one was closed after about one.
    assert!(idle.closed_within(Duration::from_secs(3)));
    assert!(t.elapsed() >= Duration::from_millis(900));
    busy.expect_ack_for(&hl7("STILL"));
    assert!(ctx.rec.wait_for(WAIT, |ev| ev.iter().any(|e| matches!(e, Ev::Disconnected { code, description, .. }
        if *code == code::TIMEOUT && description.contains("IdleTimeout")))));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::Disconnected { .. })), 1);
}

/// Round trips of `probe` while `storm` runs on another connection: (max, count).
fn probe_during(ctx: &Ctx, storm: impl FnOnce(Client) + Send + 'static) -> (Duration, usize) {
    let mut probe = ctx.connect();
    probe.expect_ack_for(&hl7("WARM"));
    let stormer = ctx.connect();
    let h = std::thread::spawn(move || storm(stormer));
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while !h.is_finished() {
        let t = Instant::now();
        probe.expect_ack_for(&hl7(&format!("P{n}")));
        worst = worst.max(t.elapsed());
        n += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    h.join().unwrap();
    (worst, n)
}

#[test]
fn a_storm_of_start_blocks_is_a_few_errors_and_does_not_stall_others() {
    let ctx = setup(&[]);
    let (worst, n) = probe_during(&ctx, |mut c| {
        let storm = vec![SB; 2 << 20];
        for piece in storm.chunks(64 * 1024) {
            c.send_raw(piece);
        }
        // Finish the last frame so the storm's end is known.
        c.send_msg(b"MSH|^~\\&|END");
        assert_eq!(c.read_frame(), vec![ACK]);
    });
    let errors = ctx.rec.count(|e| e.is_error(code::INVALID_DATA));
    assert!((1..=10).contains(&errors), "{errors} Error events for 2 MiB of start blocks");
    let counted = || ctx.server.metrics().errors_with(code::INVALID_DATA);
    assert!(wait_until(WAIT, || counted() >= 2 << 20), "every one counted: {}", counted());
    eprintln!("start-block storm: {n} probe round trips, worst {worst:?}");
    if !cfg!(debug_assertions) {
        assert!(worst < Duration::from_millis(50), "a round trip took {worst:?} during the storm");
    }
}

#[test]
fn a_storm_of_empty_frames_gets_every_nak_and_few_errors() {
    const N: usize = 20_000;
    let ctx = setup(&[]);
    let (worst, _) = probe_during(&ctx, |mut c| {
        let mut reader = c.stream.try_clone().unwrap();
        let r = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while got.len() < N * 4 {
                let n = reader.read(&mut buf).unwrap();
                assert_ne!(n, 0, "closed after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        c.send_raw(&[SB, EB, CR].repeat(N));
        let got = r.join().unwrap();
        assert_eq!(got, [SB, NAK, EB, CR].repeat(N), "one NAK per empty frame, nothing else");
    });
    let errors = ctx.rec.count(|e| e.is_error(code::INVALID_DATA));
    assert!((1..=10).contains(&errors), "{errors} Error events for {N} empty frames");
    eprintln!("empty-frame storm: worst probe round trip {worst:?}");
    if !cfg!(debug_assertions) {
        assert!(worst < Duration::from_millis(50), "a round trip took {worst:?} during the storm");
    }
}

#[test]
fn a_one_byte_ack_nothing_awaits_is_refused_with_an_error() {
    let ctx = setup(&[]);
    let mut c = ctx.connect();
    c.send_raw(&[SB, ACK, EB, CR]);
    c.send_raw(&[SB, NAK, EB, CR]);
    assert!(ctx.rec.wait_for(WAIT, |ev| ev.iter().any(|e| matches!(e, Ev::Error { code, description, .. }
        if *code == code::INVALID_DATA && description.contains("nothing on this connection awaits")))));
    // Not answered, not delivered; the connection goes on.
    c.expect_silence(Duration::from_millis(300));
    c.expect_ack_for(&hl7("AFTER"));
    assert_eq!(ctx.rec.count(|e| matches!(e, Ev::EndTransfer { .. })), 1);
}

trait ExpectAck {
    fn expect_ack_for(&mut self, m: &[u8]);
}

impl ExpectAck for Client {
    fn expect_ack_for(&mut self, m: &[u8]) {
        self.send_msg(m);
        self.expect_ack();
    }
}
