//! Duplicate detection (the DuplicateWindow setting): the keys of the last N accepted messages
//! and the acknowledgement each got, shared by every connection of a server so that a sender
//! that reconnects and resends is recognised too.
//!
//! A key is MSH-3, MSH-4 and MSH-10 (as a 64-bit keyed SipHash: a collision can only make two
//! different messages look like a reused control id, which delivers them, never drops one) and
//! a 128-bit XXH3 of the whole message, seeded at random per process (which decides whether a
//! resend is the same message). XXH3 rather than SHA-256 because it is cheap enough to run on
//! every message at the reactor's rate (the whole key of a 1 KiB message costs 0.19 µs, its
//! SHA-256 alone 0.66 µs with the CPU's SHA extensions: `cargo bench --bench hl7_ack`): a different message would be taken for a resend only if it had the same
//! MSH-3/4/10 and the same 128-bit hash, about 2^-128 by chance, and a sender cannot aim for it
//! without the process's seed.
//!
//! Memory: about 100 bytes per remembered message plus its HL7 acknowledgement (the MLLP commit
//! byte is inline; acknowledgements longer than [`MAX_REPLY`] are not remembered): measured
//! 10 MB for 100,000 messages in MLLP mode, 24 MB in HL7 mode with 123-byte ACKs.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
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
    digest: u128,
}

impl Key {
    /// The key of `msg`: None when it has no MSH or an empty MSH-10 (such messages have no
    /// identity and are never duplicates).
    pub fn of(msg: &[u8]) -> Option<Key> {
        let fields = hl7::msh_identity(msg)?;
        if fields[2].is_empty() {
            return None;
        }
        // Keyed per process: a sender cannot choose control ids that collide in the table
        // (which then hashes the ident no further, see `IdentHasher`).
        static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
        for f in fields {
            h.write_usize(f.len());
            h.write(f);
        }
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            // Without the system's randomness the seed is still unknown outside (the keyed ident's).
            if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
                b = KEYS.get_or_init(RandomState::new).hash_one(0u64).to_le_bytes();
            }
            u64::from_le_bytes(b)
        });
        let digest = xxhash_rust::xxh3::xxh3_128_with_seed(msg, seed);
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
    Done(Reply),
}

/// A remembered acknowledgement: short ones (the MLLP commit byte) inline, without an
/// allocation per message.
enum Reply {
    Inline(u8, [u8; 15]),
    Heap(Box<[u8]>),
}

impl Reply {
    fn new(r: &[u8]) -> Self {
        if r.len() <= 15 {
            let mut b = [0u8; 15];
            b[..r.len()].copy_from_slice(r);
            Reply::Inline(r.len() as u8, b)
        } else {
            Reply::Heap(r.into())
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        match self {
            Reply::Inline(n, b) => b[..*n as usize].to_vec(),
            Reply::Heap(b) => b.to_vec(),
        }
    }
}

struct Entry {
    digest: u128,
    gen: u64,
    state: State,
}

/// The messages remembered under one MSH-3/4/10: almost always one; more when a control id
/// was reused by different messages.
enum Entries {
    One(Entry),
    Many(Vec<Entry>),
}

impl Entries {
    fn as_slice(&self) -> &[Entry] {
        match self {
            Entries::One(e) => std::slice::from_ref(e),
            Entries::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Entry] {
        match self {
            Entries::One(e) => std::slice::from_mut(e),
            Entries::Many(v) => v,
        }
    }
}

/// The ident is already a keyed SipHash: the table uses it as it is.
#[derive(Default)]
struct IdentHasher(u64);

impl Hasher for IdentHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; kept total for safety.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Window {
    capacity: usize,
    map: HashMap<u64, Entries, BuildHasherDefault<IdentHasher>>,
    /// Messages remembered (entries over all idents).
    len: usize,
    /// Insertion order for eviction: (ident, generation); stale pairs are skipped.
    order: VecDeque<(u64, u64)>,
    gen: u64,
}

impl Window {
    fn get(&self, key: &Key) -> Option<&Entry> {
        self.map.get(&key.ident)?.as_slice().iter().find(|e| e.digest == key.digest)
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        self.map.get_mut(&key.ident)?.as_mut_slice().iter_mut().find(|e| e.digest == key.digest)
    }

    /// Adds a message not yet remembered.
    fn insert(&mut self, key: &Key, state: State) {
        self.gen += 1;
        let e = Entry { digest: key.digest, gen: self.gen, state };
        match self.map.get_mut(&key.ident) {
            None => {
                self.map.insert(key.ident, Entries::One(e));
            }
            Some(slot) => {
                let old = std::mem::replace(slot, Entries::Many(Vec::new()));
                let mut v = match old {
                    Entries::One(o) => vec![o],
                    Entries::Many(v) => v,
                };
                v.push(e);
                *slot = Entries::Many(v);
            }
        }
        self.len += 1;
        self.order.push_back((key.ident, self.gen));
        self.evict();
    }

    /// Forgets the entry of `ident` with generation `gen` (or, with `digest`, that message).
    fn remove_where(&mut self, ident: u64, f: impl Fn(&Entry) -> bool) -> bool {
        let Some(slot) = self.map.get_mut(&ident) else { return false };
        let removed = match slot {
            Entries::One(e) if f(e) => {
                self.map.remove(&ident);
                true
            }
            Entries::One(_) => false,
            Entries::Many(v) => match v.iter().position(&f) {
                Some(i) => {
                    v.swap_remove(i);
                    if v.len() == 1 {
                        let last = v.pop().expect("one left");
                        *slot = Entries::One(last);
                    }
                    true
                }
                None => false,
            },
        };
        self.len -= usize::from(removed);
        removed
    }

    fn evict(&mut self) {
        while self.len > self.capacity {
            let Some((ident, gen)) = self.order.pop_front() else { break };
            self.remove_where(ident, |e| e.gen == gen);
        }
        if self.order.len() > 2 * self.capacity + 64 {
            let map = &self.map;
            self.order.retain(|(i, g)| map.get(i).is_some_and(|s| s.as_slice().iter().any(|e| e.gen == *g)));
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
            window: Mutex::new(Window { capacity, map: HashMap::default(), len: 0, order: VecDeque::new(), gen: 0 }),
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
                w.map = HashMap::default();
                w.len = 0;
                w.order = VecDeque::new();
            }
        }
    }

    /// Messages remembered (finished or in progress).
    pub fn len(&self) -> usize {
        self.lock().len
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
                let reused = w.map.contains_key(&key.ident);
                w.insert(key, State::InProgress { owner });
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
        let ours = match w.get_mut(key) {
            // Another connection's claim, or already remembered: left as it is.
            Some(Entry { state: State::InProgress { owner: o }, .. }) if *o != owner => return,
            Some(Entry { state: State::Done(_), .. }) => return,
            Some(e) => match reply {
                // Completed in place: the entry keeps its place in the eviction order.
                Some(r) if r.len() <= MAX_REPLY => {
                    e.state = State::Done(Reply::new(r));
                    return;
                }
                _ => true,
            },
            None => false,
        };
        match reply {
            _ if ours => {
                w.remove_where(key.ident, |e| e.digest == key.digest);
            }
            Some(r) if r.len() <= MAX_REPLY => w.insert(key, State::Done(Reply::new(r))),
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
        assert_eq!(d.lock().map.len(), 3);
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
