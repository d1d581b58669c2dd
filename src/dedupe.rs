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
    /// The window is off (DuplicateWindow 0): nothing is tracked.
    Off,
    /// Not seen: now marked as in progress for the claiming connection. `reused` when another
    /// message with the same MSH-3/4/10 (other bytes) is remembered: a reused control id.
    New {
        /// The control id was used before by a different message.
        reused: bool,
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

/// Entries are keyed by the MSH-3/4/10 hash and the first 8 bytes of the digest, so that
/// messages reusing a control id are remembered side by side; `idents` counts the entries per
/// MSH-3/4/10 hash to recognise reuse.
type Slot = (u64, u64);

fn slot(key: &Key) -> Slot {
    let mut d = [0u8; 8];
    d.copy_from_slice(&key.digest[..8]);
    (key.ident, u64::from_le_bytes(d))
}

struct Window {
    capacity: usize,
    map: HashMap<Slot, Entry>,
    idents: HashMap<u64, u32>,
    /// Insertion order for eviction: (slot, generation); stale pairs are skipped.
    order: VecDeque<(Slot, u64)>,
    gen: u64,
}

impl Window {
    fn insert(&mut self, s: Slot, digest: [u8; 32], state: State) {
        self.gen += 1;
        let gen = self.gen;
        if self.map.insert(s, Entry { digest, gen, state }).is_none() {
            *self.idents.entry(s.0).or_default() += 1;
        }
        self.order.push_back((s, gen));
        self.evict();
    }

    fn remove(&mut self, s: Slot) {
        if self.map.remove(&s).is_some() {
            if let Some(n) = self.idents.get_mut(&s.0) {
                *n -= 1;
                if *n == 0 {
                    self.idents.remove(&s.0);
                }
            }
        }
    }

    fn evict(&mut self) {
        while self.map.len() > self.capacity {
            let Some((s, gen)) = self.order.pop_front() else { break };
            if self.map.get(&s).is_some_and(|e| e.gen == gen) {
                self.remove(s);
            }
        }
        if self.order.len() > 2 * self.capacity + 64 {
            let map = &self.map;
            self.order.retain(|(s, g)| map.get(s).is_some_and(|e| e.gen == *g));
        }
    }

    /// The entry of `key` (None for a different message sharing the slot by chance).
    fn get(&self, key: &Key) -> Option<&Entry> {
        self.map.get(&slot(key)).filter(|e| e.digest == key.digest)
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
            window: Mutex::new(Window {
                capacity,
                map: HashMap::new(),
                idents: HashMap::new(),
                order: VecDeque::new(),
                gen: 0,
            }),
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
                w.idents = HashMap::new();
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

    /// Looks `key` up for connection `owner` and, when the message is new, marks it in
    /// progress for `owner`.
    pub fn claim(&self, key: &Key, owner: u64) -> Lookup {
        let mut w = self.lock();
        if w.capacity == 0 {
            return Lookup::Off;
        }
        match w.get(key).map(|e| &e.state) {
            Some(State::Done(reply)) => Lookup::Duplicate(reply.to_vec()),
            Some(State::InProgress { owner: o }) => Lookup::InProgress { same_owner: *o == owner },
            None => {
                let reused = w.idents.contains_key(&key.ident);
                w.insert(slot(key), key.digest, State::InProgress { owner });
                Lookup::New { reused }
            }
        }
    }

    /// The acknowledgement remembered for `key`, when it was accepted.
    pub fn reply(&self, key: &Key) -> Option<Vec<u8>> {
        match self.lock().get(key) {
            Some(Entry { state: State::Done(r), .. }) => Some(r.to_vec()),
            _ => None,
        }
    }

    /// The message of `key` was answered: accepted with `reply` (remembered), or refused or
    /// abandoned (`None`: forgotten, so a resend is delivered again). Only `owner`'s claim is
    /// released or completed; an accepted message nobody tracks is remembered too.
    pub fn finish(&self, key: &Key, owner: u64, reply: Option<&[u8]>) {
        let mut w = self.lock();
        if w.capacity == 0 {
            return;
        }
        let state = w.get(key).map(|e| match e.state {
            State::InProgress { owner: o } => Some(o == owner),
            State::Done(_) => None,
        });
        match (state, reply) {
            // Another connection's claim, or already remembered: left as it is.
            (Some(Some(false)), _) | (Some(None), _) => {}
            (Some(Some(true)) | None, Some(r)) if r.len() <= MAX_REPLY => {
                w.insert(slot(key), key.digest, State::Done(r.into()))
            }
            (Some(Some(true)), _) => w.remove(slot(key)),
            (None, _) => {}
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
        assert_eq!(d.claim(&k, 1), Lookup::New { reused: false });
        assert_eq!(d.claim(&k, 1), Lookup::InProgress { same_owner: true });
        assert_eq!(d.claim(&k, 2), Lookup::InProgress { same_owner: false });
        d.finish(&k, 1, Some(b"ACK"));
        assert_eq!(d.claim(&k, 2), Lookup::Duplicate(b"ACK".to_vec()));
        assert_eq!(d.reply(&k), Some(b"ACK".to_vec()));
        // Reused control id with other bytes: delivered and tracked beside the first, which
        // stays a duplicate.
        let k2 = Key::of(&msg("C1", "other")).unwrap();
        assert_eq!(d.claim(&k2, 2), Lookup::New { reused: true });
        d.finish(&k2, 2, Some(b"ACK2"));
        assert_eq!(d.claim(&k, 3), Lookup::Duplicate(b"ACK".to_vec()));
        assert_eq!(d.claim(&k2, 3), Lookup::Duplicate(b"ACK2".to_vec()));
        let k3 = Key::of(&msg("C1", "third")).unwrap();
        assert_eq!(d.claim(&k3, 3), Lookup::New { reused: true });
        d.finish(&k3, 3, None);
        assert_eq!(d.claim(&k3, 3), Lookup::New { reused: true });
    }

    #[test]
    fn refused_is_forgotten_and_others_claims_survive() {
        let d = Duplicates::new(10);
        let k = Key::of(&msg("C1", "x")).unwrap();
        assert_eq!(d.claim(&k, 1), Lookup::New { reused: false });
        d.finish(&k, 2, None); // not 2's claim
        assert_eq!(d.claim(&k, 2), Lookup::InProgress { same_owner: false });
        d.finish(&k, 1, None);
        assert_eq!(d.claim(&k, 2), Lookup::New { reused: false });
        // An accepted reply from a connection that did not claim it does not steal the claim.
        d.finish(&k, 3, Some(b"X"));
        assert_eq!(d.claim(&k, 1), Lookup::InProgress { same_owner: false });
        // Too long a reply is not remembered.
        d.finish(&k, 2, Some(&vec![b'x'; MAX_REPLY + 1]));
        assert_eq!(d.claim(&k, 2), Lookup::New { reused: false });
    }

    #[test]
    fn bounded_by_capacity() {
        let d = Duplicates::new(3);
        let keys: Vec<Key> = (0..10).map(|i| Key::of(&msg(&format!("C{i}"), "x")).unwrap()).collect();
        for k in &keys {
            assert_eq!(d.claim(k, 1), Lookup::New { reused: false });
            d.finish(k, 1, Some(b"A"));
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.lock().idents.len(), 3);
        assert_eq!(d.claim(&keys[0], 1), Lookup::New { reused: false }); // evicted
        assert_eq!(d.claim(&keys[9], 1), Lookup::Duplicate(b"A".to_vec()));
        // Re-inserting the same key many times does not grow the order queue without bound.
        for _ in 0..1000 {
            d.finish(&keys[9], 1, Some(b"A"));
        }
        assert!(d.lock().order.len() <= 2 * 3 + 64 + 1);
        d.set_capacity(0);
        assert!(d.is_empty());
        assert_eq!(d.claim(&keys[9], 1), Lookup::Off);
    }
}
