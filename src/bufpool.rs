//! A bounded pool of message buffers shared by the connections of one server.
//!
//! A connection takes a buffer when a frame starts and gives it back once it is quiescent
//! (nothing buffered, nothing pending), so an idle connection holds no message buffer whatever
//! it received before, and a connection that keeps sending large messages gets the same,
//! already faulted-in memory back each time instead of a fresh allocation (mmap, page faults,
//! munmap per message). The pool is bounded ([`MAX_BUFFERS`], [`MAX_BYTES`]) and its entries
//! expire [`EXPIRY`] after they were given back ([`BufPool::expire`], called by the reactor),
//! so memory left there after a burst goes back to the allocator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most buffers kept.
pub const MAX_BUFFERS: usize = 8;
/// Most bytes (capacities) kept.
pub const MAX_BYTES: usize = 160 << 20;
/// How long a buffer given back stays in the pool unused before it is freed.
pub const EXPIRY: Duration = Duration::from_secs(1);

/// Buffers smaller than this are not worth pooling (the allocator's own caches are as good).
const MIN_POOLED: usize = 512;
/// A buffer is handed out for a request at most this many times smaller than it (or when it is
/// small anyway): a short message must not take the buffer a large one is about to need.
const MAX_OVERSIZE: usize = 16;
const SMALL: usize = 64 << 10;

/// The pool (see the module documentation). Thread-safe; in practice used by one reactor.
#[derive(Debug, Default)]
pub struct BufPool {
    /// (buffer, when it was given back), in the order given back.
    bufs: Mutex<Vec<(Vec<u8>, Instant)>>,
    /// Sum of the capacities held, readable without the lock.
    bytes: AtomicUsize,
}

impl BufPool {
    /// An empty pool.
    pub fn new() -> Self {
        BufPool::default()
    }

    /// An empty buffer with room for at least `want` bytes: a pooled one when one fits (the
    /// smallest large enough, and not far larger: see `MAX_OVERSIZE`; else the largest there
    /// is when it is smaller than `want`, which then grows), else a new one with that capacity.
    pub fn take(&self, want: usize) -> Vec<u8> {
        if self.bytes.load(Ordering::Relaxed) == 0 {
            return Vec::with_capacity(want);
        }
        let mut g = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        // A large request (a large message is arriving) takes any buffer large enough.
        let suits = |cap: usize| cap >= want && (cap <= SMALL || want >= SMALL || cap / MAX_OVERSIZE <= want);
        let fits =
            g.iter().enumerate().filter(|(_, (b, _))| suits(b.capacity())).min_by_key(|(_, (b, _))| b.capacity());
        let pick = fits.map(|(i, _)| i).or_else(|| {
            // None suits: the largest if it is too small, which grows once (fewer page faults
            // than a new one).
            g.iter()
                .enumerate()
                .filter(|(_, (b, _))| b.capacity() < want)
                .max_by_key(|(_, (b, _))| b.capacity())
                .map(|(i, _)| i)
        });
        match pick {
            Some(i) => {
                let (mut b, _) = g.swap_remove(i);
                self.bytes.fetch_sub(b.capacity(), Ordering::Relaxed);
                drop(g);
                b.reserve(want);
                b
            }
            None => Vec::with_capacity(want),
        }
    }

    /// Gives a buffer back at `now`. Small buffers are freed; when the pool is full the
    /// smallest buffers go first (large ones are the expensive ones to make again).
    pub fn give(&self, mut buf: Vec<u8>, now: Instant) {
        let cap = buf.capacity();
        if !(MIN_POOLED..=MAX_BYTES).contains(&cap) {
            return;
        }
        buf.clear();
        let mut g = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        g.push((buf, now));
        let mut total = self.bytes.load(Ordering::Relaxed) + cap;
        while g.len() > MAX_BUFFERS || total > MAX_BYTES {
            let i = g.iter().enumerate().min_by_key(|(_, (b, _))| b.capacity()).map(|(i, _)| i).expect("not empty");
            total -= g.swap_remove(i).0.capacity();
        }
        self.bytes.store(total, Ordering::Relaxed);
    }

    /// Frees the buffers given back more than [`EXPIRY`] before `now`. Returns when the next
    /// one expires (None: the pool is empty).
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        if self.bytes.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut g = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        let before = g.len();
        g.retain(|(_, at)| now.saturating_duration_since(*at) < EXPIRY);
        if g.len() != before {
            self.bytes.store(g.iter().map(|(b, _)| b.capacity()).sum(), Ordering::Relaxed);
        }
        g.iter().map(|(_, at)| *at + EXPIRY).min()
    }

    /// Bytes (capacities) the pool holds.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Buffers the pool holds.
    pub fn len(&self) -> usize {
        self.bufs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when the pool holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_best_fit_and_stays_bounded() {
        let p = BufPool::new();
        let t = Instant::now();
        let a = p.take(1 << 20);
        let ptr = a.as_ptr();
        p.give(a, t);
        assert_eq!(p.bytes(), 1 << 20);
        // The same memory comes back for a message that fits.
        let b = p.take(200_000);
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.is_empty());
        assert_eq!(p.bytes(), 0);
        p.give(b, t);
        // Small buffers are not pooled.
        p.give(Vec::with_capacity(100), t);
        assert_eq!(p.len(), 1);
        // A short message does not take a large buffer.
        let small = p.take(1000);
        assert_ne!(small.as_ptr(), ptr);
        assert_eq!(p.len(), 1);
        // At most MAX_BUFFERS; the smallest are dropped first.
        for k in 0..MAX_BUFFERS + 3 {
            p.give(Vec::with_capacity(8192 + k), t);
        }
        assert_eq!(p.len(), MAX_BUFFERS);
        assert!(p.take(1 << 20).capacity() >= 1 << 20, "the big one was kept");
        // At most MAX_BYTES.
        for _ in 0..3 {
            p.give(Vec::with_capacity(64 << 20), t);
        }
        assert!(p.bytes() <= MAX_BYTES);
    }

    #[test]
    fn entries_expire() {
        let p = BufPool::new();
        let t = Instant::now();
        p.give(Vec::with_capacity(1 << 16), t);
        p.give(Vec::with_capacity(1 << 17), t + Duration::from_millis(500));
        assert_eq!(p.expire(t + Duration::from_millis(900)), Some(t + EXPIRY));
        assert_eq!(p.expire(t + EXPIRY), Some(t + Duration::from_millis(500) + EXPIRY));
        assert_eq!((p.len(), p.bytes()), (1, 1 << 17));
        assert_eq!(p.expire(t + Duration::from_secs(2)), None);
        assert_eq!(p.bytes(), 0);
    }
}
