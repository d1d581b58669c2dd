//! What a server holds for its connections' messages (`Server::retained_bytes`): buffers go
//! back once a connection is idle, whatever it received before, in MLLP and HL7 mode; OutputData
//! keeps the last message only with KeepOutputData; and message content survives the reuse of
//! buffers across messages of changing sizes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mllp::{AckOutEvent, EventHandler, Server};

/// Records the length and a checksum of every message at AckOut (no copy of the message).
#[derive(Default)]
struct Sums(Mutex<Vec<(usize, u64)>>);

impl EventHandler for Sums {
    fn ack_out(&self, e: &mut AckOutEvent<'_>) {
        self.0.lock().unwrap().push((e.message.len(), checksum(e.message)));
    }
}

/// Position-sensitive checksum, 8 bytes at a time (fast enough in a debug build).
fn checksum(b: &[u8]) -> u64 {
    let mut h = b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        h = h.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap());
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    for &x in words.remainder() {
        h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// An HL7 message of `size` bytes whose padding depends on `tag`.
fn message(size: usize, tag: usize) -> Vec<u8> {
    let mut m = hl7(&format!("M{tag}"));
    m.extend_from_slice(b"NTE|1||");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    while m.len() + 1 < size {
        m.push(alphabet[(m.len() * 7 + tag) % alphabet.len()]);
    }
    m.push(b'\r');
    m
}

fn server(configs: &[&str]) -> (Arc<Server>, Arc<Sums>, u16) {
    let s = new_server();
    for c in configs {
        s.config(c).unwrap();
    }
    let sums = Arc::new(Sums::default());
    s.set_handler(sums.clone());
    s.start_listening().unwrap();
    let port = s.local_port();
    (s, sums, port)
}

/// Sends `m` and waits for its acknowledgement.
fn round_trip(c: &mut Client, m: &[u8]) {
    c.send_msg(m);
    let reply = c.read_frame_within(Duration::from_secs(20)).expect("acknowledgement");
    assert!(reply == [ACK] || reply.windows(7).any(|w| w == b"MSA|AA|"), "{:?}", String::from_utf8_lossy(&reply));
}

#[test]
fn idle_connections_give_their_buffers_back() {
    for ack in ["AckMode=MLLP", "AckMode=HL7"] {
        let (s, sums, port) = server(&[ack, "KeepOutputData=False"]);
        let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(port)).collect();
        let mut sent = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            for size in [1024, 64 * 1024] {
                let m = message(size, i);
                round_trip(c, &m);
                sent.push((m.len(), checksum(&m)));
            }
        }
        let big = message(4 << 20, 99);
        round_trip(&mut clients[0], &big);
        sent.push((big.len(), checksum(&big)));
        assert_eq!(*sums.0.lock().unwrap(), sent, "{ack}: every message intact, in order");
        assert!(s.retained_bytes() > 0, "{ack}: buffers held right after traffic");
        // Idle: every connection's buffers go back, then the pool's entries expire.
        assert!(
            wait_until(Duration::from_secs(6), || s.retained_bytes() == 0),
            "{ack}: still {} bytes held for {} idle connections",
            s.retained_bytes(),
            clients.len()
        );
        assert_eq!(s.connection_count(), 20);
        // An idle connection that gave its buffers back still works.
        round_trip(&mut clients[3], &message(2048, 3));
    }
}

#[test]
fn keep_output_data_holds_the_last_message_only_when_asked() {
    let m = message(64 * 1024, 1);
    // Default (True): OutputData is the last message, and it counts as held.
    let (s, _, port) = server(&[]);
    assert_eq!(s.config("KeepOutputData").unwrap(), "True");
    let mut c = Client::connect(port);
    round_trip(&mut c, &m);
    let id = s.connections()[0];
    assert_eq!(&**s.output_data(id).unwrap(), &m);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(s.retained_bytes() >= m.len(), "OutputData is held: {}", s.retained_bytes());
    // False: nothing is kept.
    s.config("KeepOutputData=False").unwrap();
    round_trip(&mut c, &message(100, 2));
    assert!(s.output_data(id).unwrap().is_empty());
    assert!(wait_until(Duration::from_secs(6), || s.retained_bytes() == 0), "held {}", s.retained_bytes());
}

#[test]
fn large_messages_of_changing_sizes_arrive_intact() {
    let (s, sums, port) = server(&["KeepOutputData=False"]);
    let mut c = Client::connect(port);
    let mut sent = Vec::new();
    for (k, size) in [4 << 20, 100, 6 << 20, 1 << 20, 6 << 20, 300 << 10].into_iter().enumerate() {
        let m = message(size, k);
        round_trip(&mut c, &m);
        sent.push((m.len(), checksum(&m)));
    }
    // Two large messages back to back in one write (the second starts while the first is
    // being delivered).
    let (a, b) = (message(3 << 20, 7), message(5 << 20, 8));
    let mut both = frame(&a);
    both.extend_from_slice(&frame(&b));
    c.send_raw(&both);
    for _ in 0..2 {
        assert_eq!(c.read_frame_within(Duration::from_secs(20)).unwrap(), [ACK]);
    }
    sent.push((a.len(), checksum(&a)));
    sent.push((b.len(), checksum(&b)));
    assert_eq!(*sums.0.lock().unwrap(), sent);
    assert!(wait_until(Duration::from_secs(6), || s.retained_bytes() == 0), "held {}", s.retained_bytes());
}
