//! Duplicate detection (the DuplicateWindow setting): the keys of the last N accepted messages
//! and the acknowledgement each got, shared by every connection of a server so that a sender
//! that reconnects and resends is recognised too.
//!
//! A key is MSH-3, MSH-4 and MSH-10 (as a 64-bit SipHash: a collision can only make two
//! different messages look like a reused control id, which delivers them, never drops one) and
//! a SHA-256 of the whole message (which decides whether a resend is the same message).
//!
//! Memory: per remembered message at most about 200 bytes plus its acknowledgement (1 byte in MLLP
//! mode, usually 100–200 bytes in HL7 mode; acknowledgements longer than [`MAX_REPLY`] are not
//! remembered), so a window of 100,000 HL7 messages holds at most about 40 MB.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::hl7;

/// Largest acknowledgement remembered; a message answered with a longer one is delivered again
/// if resent (at-least-once, as without the window).
pub const MAX_REPLY: usize = 4096;
/// Largest DuplicateWindow setting.
pub const MAX_WINDOW: u32 = 10_000_000;

/// What identifies a message for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    ident: u64,
    digest: [u8; 32],
}

impl Key {
    /// The key of `msg`: None when it has no MSH or an empty MSH-10 (such messages have no
    /// identity and are never duplicates).
    pub fn of(msg: &[u8]) -> Option<Key> {
        let m = hl7::parse_msh(msg)?;
        if m.control_id.is_empty() {
            return None;
        }
        // DefaultHasher::new() has fixed keys: the same message gives the same ident in
        // every process.
        let mut h = DefaultHasher::new();
        for f in [m.sending_application, m.sending_facility, m.control_id] {
            h.write_usize(f.len());
            h.write(f);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, msg).as_ref());
        Some(Key { ident: h.finish(), digest })
    }
}

/// What the window knows about a message ([`Duplicates::claim`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not seen: now marked as in progress for the claiming connection.
    New,
    /// Seen with other bytes under the same MSH-3/4/10: deliver it; `claimed` when the window
    /// now tracks this one.
    Reused {
        /// The window tracks this message (the earlier one was finished).
        claimed: bool,
    },
    /// Accepted before: answer with this acknowledgement (unframed; empty when none was sent).
    Duplicate(Vec<u8>),
    /// The same message is still awaiting its answer.
    InProgress {
        /// On the asking connection (its answer will come first, in reply order).
        same_owner: bool,
    },
}

enum State {
    InProgress { owner: u64 },
    Done(Box<[u8]>),
}

struct Entry {
    digest: [u8; 32],
    gen: u64,
    state: State,
}

struct Window {
    capacity: usize,
    map: HashMap<u64, Entry>,
    /// Insertion order for eviction: (ident, generation); stale pairs are skipped.
    order: VecDeque<(u64, u64)>,
    gen: u64,
}

impl Window {
    fn insert(&mut self, ident: u64, digest: [u8; 32], state: State) {
        self.gen += 1;
        let gen = self.gen;
        self.map.insert(ident, Entry { digest, gen, state });
        self.order.push_back((ident, gen));
        self.evict();
    }

    fn evict(&mut self) {
        while self.map.len() > self.capacity {
            let Some((ident, gen)) = self.order.pop_front() else { break };
            if self.map.get(&ident).is_some_and(|e| e.gen == gen) {
                self.map.remove(&ident);
            }
        }
        if self.order.len() > 2 * self.capacity + 64 {
            let map = &self.map;
            self.order.retain(|(i, g)| map.get(i).is_some_and(|e| e.gen == *g));
        }
    }
}

/// The window and its counter, shared by a server's connections.
pub struct Duplicates {
    window: Mutex<Window>,
    count: AtomicU64,
}

impl Default for Duplicates {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Duplicates {
    /// A window remembering up to `capacity` messages (0: off).
    pub fn new(capacity: usize) -> Self {
        Duplicates {
            window: Mutex::new(Window { capacity, map: HashMap::new(), order: VecDeque::new(), gen: 0 }),
            count: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the capacity, forgetting the oldest entries past it.
    pub fn set_capacity(&self, capacity: usize) {
        let mut w = self.lock();
        if w.capacity != capacity {
            w.capacity = capacity;
            w.evict();
            if capacity == 0 {
                w.map = HashMap::new();
                w.order = VecDeque::new();
            }
        }
    }

    /// Messages remembered (finished or in progress).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duplicates answered so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts one duplicate answered.
    pub fn counted(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Looks `key` up for connection `owner` and, when the message is new (or reuses a
    /// finished control id), marks it in progress for `owner`.
    pub fn claim(&self, key: &Key, owner: u64) -> Lookup {
        let mut w = self.lock();
        if w.capacity == 0 {
            return Lookup::Reused { claimed: false };
        }
        match w.map.get(&key.ident) {
            None => {
                w.insert(key.ident, key.digest, State::InProgress { owner });
                Lookup::New
            }
            Some(e) if e.digest == key.digest => match &e.state {
                State::Done(reply) => Lookup::Duplicate(reply.to_vec()),
                State::InProgress { owner: o } => Lookup::InProgress { same_owner: *o == owner },
            },
            Some(e) => match e.state {
                State::Done(_) => {
                    w.insert(key.ident, key.digest, State::InProgress { owner });
                    Lookup::Reused { claimed: true }
                }
                State::InProgress { .. } => Lookup::Reused { claimed: false },
            },
        }
    }

    /// The acknowledgement remembered for `key`, when it was accepted.
    pub fn reply(&self, key: &Key) -> Option<Vec<u8>> {
        match self.lock().map.get(&key.ident) {
            Some(Entry { digest, state: State::Done(r), .. }) if *digest == key.digest => Some(r.to_vec()),
            _ => None,
        }
    }

    /// The message of `key` was answered: accepted with `reply` (remembered), or refused or
    /// abandoned (`None`: forgotten, so a resend is delivered again). Only `owner`'s claim is
    /// released; an accepted message is remembered whoever claimed it.
    pub fn finish(&self, key: &Key, owner: u64, reply: Option<&[u8]>) {
        let mut w = self.lock();
        if w.capacity == 0 {
            return;
        }
        let ours = w
            .map
            .get(&key.ident)
            .is_some_and(|e| matches!(e.state, State::InProgress { owner: o } if o == owner) && e.digest == key.digest);
        match reply {
            Some(r) if r.len() <= MAX_REPLY => {
                let in_progress_elsewhere =
                    w.map.get(&key.ident).is_some_and(|e| matches!(e.state, State::InProgress { .. })) && !ours;
                if !in_progress_elsewhere {
                    w.insert(key.ident, key.digest, State::Done(r.into()));
                }
            }
            _ if ours => {
                w.map.remove(&key.ident);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ctl: &str, body: &str) -> Vec<u8> {
        format!("MSH|^~\\&|APP|FAC|R|RF|2026||ADT^A01|{ctl}|P|2.5\rPID|1||{body}\r").into_bytes()
    }

    #[test]
    fn keys() {
        assert_eq!(Key::of(&msg("C1", "x")), Key::of(&msg("C1", "x")));
        assert_ne!(Key::of(&msg("C1", "x")), Key::of(&msg("C1", "y")));
        assert_ne!(Key::of(&msg("C1", "x")).unwrap().ident, Key::of(&msg("C2", "x")).unwrap().ident);
        assert_eq!(Key::of(&msg("C1", "x")).unwrap().ident, Key::of(&msg("C1", "y")).unwrap().ident);
        assert_eq!(Key::of(b"not hl7"), None);
        assert_eq!(Key::of(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r"), None);
    }

    #[test]
    fn new_accepted_duplicate() {
        let d = Duplicates::new(10);
        let k = Key::of(&msg("C1", "x")).unwrap();
        assert_eq!(d.claim(&k, 1), Lookup::New);
        assert_eq!(d.claim(&k, 1), Lookup::InProgress { same_owner: true });
        assert_eq!(d.claim(&k, 2), Lookup::InProgress { same_owner: false });
        d.finish(&k, 1, Some(b"ACK"));
        assert_eq!(d.claim(&k, 2), Lookup::Duplicate(b"ACK".to_vec()));
        assert_eq!(d.reply(&k), Some(b"ACK".to_vec()));
        // Reused control id with other bytes: delivered, and tracked once the first is done.
        let k2 = Key::of(&msg("C1", "other")).unwrap();
        assert_eq!(d.claim(&k2, 2), Lookup::Reused { claimed: true });
        assert_eq!(d.claim(&k, 3), Lookup::Reused { claimed: false });
        d.finish(&k2, 2, None);
        assert_eq!(d.claim(&k, 3), Lookup::New);
    }

    #[test]
    fn refused_is_forgotten_and_others_claims_survive() {
        let d = Duplicates::new(10);
        let k = Key::of(&msg("C1", "x")).unwrap();
        assert_eq!(d.claim(&k, 1), Lookup::New);
        d.finish(&k, 2, None); // not 2's claim
        assert_eq!(d.claim(&k, 2), Lookup::InProgress { same_owner: false });
        d.finish(&k, 1, None);
        assert_eq!(d.claim(&k, 2), Lookup::New);
        // An accepted reply from a connection that did not claim it does not steal the claim.
        d.finish(&k, 3, Some(b"X"));
        assert_eq!(d.claim(&k, 1), Lookup::InProgress { same_owner: false });
        // Too long a reply is not remembered.
        d.finish(&k, 2, Some(&vec![b'x'; MAX_REPLY + 1]));
        assert_eq!(d.claim(&k, 2), Lookup::New);
    }

    #[test]
    fn bounded_by_capacity() {
        let d = Duplicates::new(3);
        let keys: Vec<Key> = (0..10).map(|i| Key::of(&msg(&format!("C{i}"), "x")).unwrap()).collect();
        for k in &keys {
            assert_eq!(d.claim(k, 1), Lookup::New);
            d.finish(k, 1, Some(b"A"));
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.claim(&keys[0], 1), Lookup::New); // evicted
        assert_eq!(d.claim(&keys[9], 1), Lookup::Duplicate(b"A".to_vec()));
        // Re-inserting the same key many times does not grow the order queue without bound.
        for _ in 0..1000 {
            d.finish(&keys[9], 1, Some(b"A"));
        }
        assert!(d.lock().order.len() <= 2 * 3 + 64 + 1);
        d.set_capacity(0);
        assert!(d.is_empty());
        assert_eq!(d.claim(&keys[9], 1), Lookup::Reused { claimed: false });
    }
}
