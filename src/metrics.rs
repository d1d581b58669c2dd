//! Per-server metrics, always on: counters of connections, messages, bytes, acknowledgements,
//! errors and TLS handshakes, and a histogram of acknowledgement latency.
//!
//! Cost: every counter is a relaxed atomic in one [`Metrics`] per server, shared (an `Arc`) by
//! the reactor, the connections it drives and the [`Server`](crate::Server) that reads it. An
//! event is one `fetch_add`; nothing on the per-message path takes a lock or allocates. All
//! writers but one (a storage error reported from `do_events` in DoEvents mode) are the
//! reactor thread, so the cache lines stay with that core. Readers ([`Metrics::snapshot`])
//! load each counter once; the snapshot is not one instant across counters (a message counted
//! as received may not be counted as accepted yet), which Prometheus accepts.
//!
//! What is counted where (see also the C header's `mllp_metrics`):
//! - connections: accepted when admitted (the Connected event); refused by ConnectionRequest,
//!   MaxConnections (2012), an invalid or missing PROXY header (2050), or a failed TLS
//!   handshake (such a connection was admitted first, so it counts in both); open now.
//! - messages: received per complete frame that is not an acknowledgement of the server's own
//!   sends (refused frames included: empty, oversize, no EOL; a batch is one frame); then, once
//!   its answer is decided, accepted (a positive answer), refused (negative, or refused by the
//!   library) or duplicate (answered from DuplicateWindow). Frames answered with nothing
//!   (AckMode None) are only received.
//! - bytes: application bytes (decrypted, for TLS) read from and handed to the transport.
//! - acknowledgements: ACK or NAK (HL7: MSA-1 AA/CA or otherwise) when the last byte of the
//!   reply frame is handed to the transport; the latency histogram is observed at the same
//!   point: from the start of the reactor turn that read the frame's end block to the write
//!   call that took the reply's last byte (a clock read after the write). Replies built but
//!   lost with their connection are not counted.
//! - errors: every Error event, by code.
//! - TLS: completed when application data may flow (the handshake done and, with
//!   SSLAuthenticateClients, the client accepted); failed when a TLS connection closes before
//!   that, by reason.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::TABLE_CODES;

/// Upper bounds (seconds) of the acknowledgement latency histogram's buckets; a last bucket,
/// `+Inf`, takes the rest.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The bucket bounds in nanoseconds (exact: every bound is a whole number of them).
const BUCKET_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Why a TLS handshake failed (the `reason` label of `mllp_tls_handshake_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// A certificate was refused or unusable: the client's failed verification, the client
    /// rejected ours (a certificate alert), or the one chosen in SSLConnectionRequest is bad.
    Certificate = 0,
    /// Not completed within the handshake timeout (2021).
    Timeout = 1,
    /// Any other TLS protocol error (no shared version or cipher suite, bad records …).
    Protocol = 2,
    /// SSLClientAuthentication refused the client (2022).
    ClientRejected = 3,
    /// The connection closed before the handshake completed (the peer went away, a reset,
    /// the server shut down).
    Other = 4,
}

impl TlsFailure {
    /// Every reason, in label order.
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::Certificate,
        TlsFailure::Timeout,
        TlsFailure::Protocol,
        TlsFailure::ClientRejected,
        TlsFailure::Other,
    ];

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::Certificate => "certificate",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Protocol => "protocol",
            TlsFailure::ClientRejected => "client_rejected",
            TlsFailure::Other => "other",
        }
    }
}

/// Errors by code: one slot per code of the result-code table, and a last one for any other.
const ERROR_SLOTS: usize = TABLE_CODES.len() + 1;

/// A server's counters. Written by the library; read with [`Metrics::snapshot`].
pub struct Metrics {
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    messages_received: AtomicU64,
    messages_accepted: AtomicU64,
    messages_refused: AtomicU64,
    messages_duplicate: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    acks_sent: AtomicU64,
    naks_sent: AtomicU64,
    errors: [AtomicU64; ERROR_SLOTS],
    tls_completed: AtomicU64,
    tls_failed: [AtomicU64; 5],
    /// Per bucket (not cumulative; the last is +Inf).
    latency_buckets: [AtomicU64; 17],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

#[inline]
fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// How a decided message was answered (for [`Metrics::answered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Refused,
    Duplicate,
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Metrics {
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_accepted: AtomicU64::new(0),
            messages_refused: AtomicU64::new(0),
            messages_duplicate: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            acks_sent: AtomicU64::new(0),
            naks_sent: AtomicU64::new(0),
            errors: zeros(),
            tls_completed: AtomicU64::new(0),
            tls_failed: zeros(),
            latency_buckets: zeros(),
            latency_sum_ns: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
        }
    }

    // ----- counting (the library) -----

    pub(crate) fn connection_accepted(&self) {
        add(&self.connections_accepted, 1);
        add(&self.connections_open, 1);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        add(&self.connections_refused, 1);
    }

    #[inline]
    pub(crate) fn received(&self, frames: u64) {
        add(&self.messages_received, frames);
    }

    #[inline]
    pub(crate) fn answered(&self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => add(&self.messages_accepted, 1),
            Outcome::Refused => add(&self.messages_refused, 1),
            Outcome::Duplicate => add(&self.messages_duplicate, 1),
        }
    }

    #[inline]
    pub(crate) fn bytes_in(&self, n: usize) {
        add(&self.bytes_in, n as u64);
    }

    #[inline]
    pub(crate) fn bytes_out(&self, n: usize) {
        add(&self.bytes_out, n as u64);
    }

    /// A reply frame was written: ACK (`positive`) or NAK, `latency` after its frame arrived.
    #[inline]
    pub(crate) fn ack_written(&self, positive: bool, latency: Duration) {
        add(if positive { &self.acks_sent } else { &self.naks_sent }, 1);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NS.iter().position(|&b| ns <= b).unwrap_or(BUCKET_NS.len());
        add(&self.latency_buckets[i], 1);
        add(&self.latency_sum_ns, ns);
        add(&self.latency_count, 1);
    }

    /// An Error event with `code`.
    pub(crate) fn error(&self, code: i32) {
        self.errors_n(code, 1);
    }

    /// `n` errors of `code` (the ones a coalesced report stands for).
    pub(crate) fn errors_n(&self, code: i32, n: u64) {
        let i = TABLE_CODES.iter().position(|&c| c == code).unwrap_or(TABLE_CODES.len());
        add(&self.errors[i], n);
    }

    pub(crate) fn tls_completed(&self) {
        add(&self.tls_completed, 1);
    }

    /// A TLS handshake failed: its connection is also counted as refused.
    pub(crate) fn tls_failed(&self, why: TlsFailure) {
        add(&self.tls_failed[why as usize], 1);
        self.connection_refused();
    }

    // ----- reading -----

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let errors_by_code: Vec<(Option<i32>, u64)> = self
            .errors
            .iter()
            .enumerate()
            .map(|(i, c)| (TABLE_CODES.get(i).copied(), get(c)))
            .filter(|&(_, n)| n > 0)
            .collect();
        let tls_failures = TlsFailure::ALL.map(|r| (r, get(&self.tls_failed[r as usize])));
        MetricsSnapshot {
            connections_accepted: get(&self.connections_accepted),
            connections_refused: get(&self.connections_refused),
            connections_open: get(&self.connections_open),
            messages_received: get(&self.messages_received),
            messages_accepted: get(&self.messages_accepted),
            messages_refused: get(&self.messages_refused),
            messages_duplicate: get(&self.messages_duplicate),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            acks_sent: get(&self.acks_sent),
            naks_sent: get(&self.naks_sent),
            errors: errors_by_code.iter().map(|e| e.1).sum(),
            errors_by_code,
            tls_handshakes_completed: get(&self.tls_completed),
            tls_handshakes_failed: tls_failures.iter().map(|f| f.1).sum(),
            tls_failures,
            ack_latency: Histogram {
                buckets: std::array::from_fn(|i| get(&self.latency_buckets[i])),
                sum_seconds: get(&self.latency_sum_ns) as f64 / 1e9,
                count: get(&self.latency_count),
            },
        }
    }
}

/// A histogram's state: counts per bucket of [`LATENCY_BUCKETS`] (not cumulative; the last
/// one is `+Inf`), the sum of the observations and their number.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket: `buckets[i]` those above the previous bound and at most
    /// `LATENCY_BUCKETS[i]`; `buckets[16]` those above 10 s.
    pub buckets: [u64; 17],
    /// Sum of the observations, seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Observations at most `LATENCY_BUCKETS[i]` (`i` 16: all), as Prometheus's `le` buckets count.
    pub fn cumulative(&self, i: usize) -> u64 {
        self.buckets[..=i.min(16)].iter().sum()
    }
}

/// A server's metrics at one moment ([`Server::metrics`](crate::Server::metrics)). The
/// default is a new server's: every count 0.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// Connections accepted and admitted (Connected fired).
    pub connections_accepted: u64,
    /// Connections refused: ConnectionRequest, MaxConnections, PROXY header, TLS handshake.
    pub connections_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Complete messages (frames) received.
    pub messages_received: u64,
    /// Answered positively (ACK, AA, CA).
    pub messages_accepted: u64,
    /// Answered negatively (NAK, AE, AR, CE, CR) or refused by the library.
    pub messages_refused: u64,
    /// Answered from the duplicate window (DuplicateWindow).
    pub messages_duplicate: u64,
    /// Application bytes received (decrypted, for TLS).
    pub bytes_in: u64,
    /// Application bytes sent (acknowledgements and the server's own sends).
    pub bytes_out: u64,
    /// Positive acknowledgements written.
    pub acks_sent: u64,
    /// Negative acknowledgements written.
    pub naks_sent: u64,
    /// Error events, all codes.
    pub errors: u64,
    /// Error events per code (codes seen only, in table order; None: a code not in the table).
    pub errors_by_code: Vec<(Option<i32>, u64)>,
    /// TLS handshakes completed (data may flow).
    pub tls_handshakes_completed: u64,
    /// TLS handshakes failed, all reasons.
    pub tls_handshakes_failed: u64,
    /// TLS handshakes failed, per reason.
    pub tls_failures: [(TlsFailure, u64); 5],
    /// Time from a message's end block received to its acknowledgement written.
    pub ack_latency: Histogram,
}

impl Default for MetricsSnapshot {
    fn default() -> Self {
        Metrics::new().snapshot()
    }
}

impl MetricsSnapshot {
    /// Error events with `code` (0 when none).
    pub fn errors_with(&self, code: i32) -> u64 {
        self.errors_by_code.iter().find(|e| e.0 == Some(code)).map_or(0, |e| e.1)
    }

    /// TLS handshakes failed for `why`.
    pub fn tls_failures_for(&self, why: TlsFailure) -> u64 {
        self.tls_failures[why as usize].1
    }

    /// The Prometheus text exposition (format 0.0.4): every family with `# HELP` and `# TYPE`.
    pub fn to_prometheus(&self) -> String {
        fn family(s: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        fn one(s: &mut String, name: &str, kind: &str, help: &str, v: u64) {
            family(s, name, kind, help);
            let _ = writeln!(s, "{name} {v}");
        }
        let mut s = String::with_capacity(4096);
        one(
            &mut s,
            "mllp_connections_accepted_total",
            "counter",
            "Connections accepted and admitted.",
            self.connections_accepted,
        );
        one(
            &mut s,
            "mllp_connections_refused_total",
            "counter",
            "Connections refused: ConnectionRequest, MaxConnections, PROXY header, TLS handshake.",
            self.connections_refused,
        );
        one(&mut s, "mllp_connections_open", "gauge", "Connections open now.", self.connections_open);
        family(&mut s, "mllp_messages_total", "counter", "Messages answered, by result.");
        for (result, v) in [
            ("accepted", self.messages_accepted),
            ("refused", self.messages_refused),
            ("duplicate", self.messages_duplicate),
        ] {
            let _ = writeln!(s, "mllp_messages_total{{result=\"{result}\"}} {v}");
        }
        one(
            &mut s,
            "mllp_messages_received_total",
            "counter",
            "Complete messages (frames) received.",
            self.messages_received,
        );
        one(&mut s, "mllp_bytes_received_total", "counter", "Application bytes received.", self.bytes_in);
        one(&mut s, "mllp_bytes_sent_total", "counter", "Application bytes sent.", self.bytes_out);
        family(&mut s, "mllp_acks_sent_total", "counter", "Acknowledgements written, by kind.");
        let _ = writeln!(s, "mllp_acks_sent_total{{kind=\"ack\"}} {}", self.acks_sent);
        let _ = writeln!(s, "mllp_acks_sent_total{{kind=\"nak\"}} {}", self.naks_sent);
        family(&mut s, "mllp_errors_total", "counter", "Error events, by result code.");
        for (code, v) in &self.errors_by_code {
            match code {
                Some(c) => writeln!(s, "mllp_errors_total{{code=\"{c}\"}} {v}"),
                None => writeln!(s, "mllp_errors_total{{code=\"other\"}} {v}"),
            }
            .ok();
        }
        family(&mut s, "mllp_tls_handshakes_total", "counter", "TLS handshakes, by result.");
        let _ = writeln!(s, "mllp_tls_handshakes_total{{result=\"completed\"}} {}", self.tls_handshakes_completed);
        let _ = writeln!(s, "mllp_tls_handshakes_total{{result=\"failed\"}} {}", self.tls_handshakes_failed);
        family(&mut s, "mllp_tls_handshake_failures_total", "counter", "TLS handshakes failed, by reason.");
        for (why, v) in &self.tls_failures {
            let _ = writeln!(s, "mllp_tls_handshake_failures_total{{reason=\"{}\"}} {v}", why.label());
        }
        family(
            &mut s,
            "mllp_ack_latency_seconds",
            "histogram",
            "Time from a message's end block received to its acknowledgement written.",
        );
        let h = &self.ack_latency;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(s, "mllp_ack_latency_seconds_bucket{{le=\"{le}\"}} {}", h.cumulative(i));
        }
        let _ = writeln!(s, "mllp_ack_latency_seconds_bucket{{le=\"+Inf\"}} {}", h.cumulative(16));
        let _ = writeln!(s, "mllp_ack_latency_seconds_sum {}", fmt_f64(h.sum_seconds));
        let _ = writeln!(s, "mllp_ack_latency_seconds_count {}", h.count);
        s
    }
}

/// A float as Prometheus reads it (Rust's shortest round-trip form; `1` for 1.0 is valid).
fn fmt_f64(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_match_the_seconds() {
        for (s, ns) in LATENCY_BUCKETS.iter().zip(BUCKET_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let m = Metrics::new();
        let us = Duration::from_micros;
        for d in [us(0), us(100), us(101), us(250), us(999), Duration::from_secs(10), Duration::from_secs(11)] {
            m.ack_written(true, d);
        }
        m.ack_written(false, Duration::from_millis(3));
        let s = m.snapshot();
        let h = &s.ack_latency;
        assert_eq!(h.count, 8);
        assert_eq!(h.buckets[0], 2, "0 and exactly 100 µs");
        assert_eq!(h.buckets[1], 2, "101 µs and exactly 250 µs");
        assert_eq!(h.buckets[3], 1, "999 µs");
        assert_eq!(h.buckets[5], 1, "3 ms");
        assert_eq!(h.buckets[15], 1, "exactly 10 s");
        assert_eq!(h.buckets[16], 1, "over 10 s: +Inf only");
        assert_eq!(h.cumulative(16), 8);
        assert_eq!(h.cumulative(4), 5);
        let sum = 0.0001 + 0.000101 + 0.00025 + 0.000999 + 10.0 + 11.0 + 0.003;
        assert!((h.sum_seconds - sum).abs() < 1e-9, "{}", h.sum_seconds);
        assert_eq!((s.acks_sent, s.naks_sent), (7, 1));
    }

    #[test]
    fn errors_by_code_and_tls_reasons() {
        let m = Metrics::new();
        m.error(671);
        m.error(671);
        m.error(10054);
        m.error(-5);
        m.tls_failed(TlsFailure::Timeout);
        m.tls_completed();
        let s = m.snapshot();
        assert_eq!(s.errors, 4);
        assert_eq!(s.errors_with(671), 2);
        assert_eq!(s.errors_with(10054), 1);
        assert_eq!(s.errors_with(672), 0);
        assert!(s.errors_by_code.contains(&(None, 1)));
        assert_eq!((s.tls_handshakes_failed, s.tls_handshakes_completed), (1, 1));
        assert_eq!(s.tls_failures_for(TlsFailure::Timeout), 1);
        assert_eq!(s.connections_refused, 1, "a failed handshake refuses its connection");
    }

    /// Every line is a comment (`# HELP name text`, `# TYPE name kind`) or `name{labels} value`
    /// of a family declared before it; values parse as numbers.
    fn check_exposition(text: &str) -> Vec<(String, f64)> {
        let mut declared: Vec<(String, String)> = Vec::new();
        let mut helped: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.is_empty());
                helped.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(helped.last().map(String::as_str), Some(name), "HELP before TYPE: {line}");
                assert!(!declared.iter().any(|d| d.0 == name), "declared once: {name}");
                declared.push((name.to_string(), kind.to_string()));
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                let (family, kind) = declared.last().expect("a sample after its TYPE");
                match kind.as_str() {
                    "histogram" => assert!(
                        [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                            .contains(&name.to_string()),
                        "{line}"
                    ),
                    "counter" => assert!(name == family && name.ends_with("_total"), "{line}"),
                    _ => assert_eq!(name, family, "{line}"),
                }
                if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                    let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).expect("braced labels");
                    let (k, v) = inner.split_once('=').unwrap();
                    assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{line}");
                    assert!(v.starts_with('"') && v.ends_with('"') && v.len() > 2, "{line}");
                }
                samples.push((series.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"))));
            }
        }
        samples
    }

    #[test]
    fn text_exposition_format() {
        let m = Metrics::new();
        m.connection_accepted();
        m.received(3);
        m.answered(Outcome::Accepted);
        m.answered(Outcome::Refused);
        m.answered(Outcome::Duplicate);
        m.bytes_in(120);
        m.bytes_out(8);
        m.ack_written(true, Duration::from_micros(50));
        m.ack_written(false, Duration::from_millis(2));
        m.error(671);
        m.tls_failed(TlsFailure::ClientRejected);
        let text = m.snapshot().to_prometheus();
        let samples = check_exposition(&text);
        let get = |series: &str| samples.iter().find(|s| s.0 == series).unwrap_or_else(|| panic!("{series}\n{text}")).1;
        assert_eq!(get("mllp_connections_accepted_total"), 1.0);
        assert_eq!(get("mllp_connections_refused_total"), 1.0);
        assert_eq!(get("mllp_connections_open"), 1.0);
        assert_eq!(get("mllp_messages_received_total"), 3.0);
        for r in ["accepted", "refused", "duplicate"] {
            assert_eq!(get(&format!("mllp_messages_total{{result=\"{r}\"}}")), 1.0);
        }
        assert_eq!(get("mllp_bytes_received_total"), 120.0);
        assert_eq!(get("mllp_bytes_sent_total"), 8.0);
        assert_eq!(get("mllp_acks_sent_total{kind=\"ack\"}"), 1.0);
        assert_eq!(get("mllp_acks_sent_total{kind=\"nak\"}"), 1.0);
        assert_eq!(get("mllp_errors_total{code=\"671\"}"), 1.0);
        assert!(!text.contains("code=\"672\""), "only codes seen");
        assert_eq!(get("mllp_tls_handshakes_total{result=\"failed\"}"), 1.0);
        assert_eq!(get("mllp_tls_handshakes_total{result=\"completed\"}"), 0.0);
        for r in ["certificate", "timeout", "protocol", "other"] {
            assert_eq!(get(&format!("mllp_tls_handshake_failures_total{{reason=\"{r}\"}}")), 0.0);
        }
        assert_eq!(get("mllp_tls_handshake_failures_total{reason=\"client_rejected\"}"), 1.0);
        // Histogram: cumulative, the contract's bounds in order, +Inf last and equal to _count.
        let les: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("mllp_ack_latency_seconds_bucket{le=\""))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        assert_eq!(
            les,
            [
                "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                "0.5", "1", "2.5", "5", "10", "+Inf"
            ]
        );
        assert_eq!(get("mllp_ack_latency_seconds_bucket{le=\"0.0001\"}"), 1.0);
        assert_eq!(get("mllp_ack_latency_seconds_bucket{le=\"0.001\"}"), 1.0);
        assert_eq!(get("mllp_ack_latency_seconds_bucket{le=\"0.0025\"}"), 2.0);
        assert_eq!(get("mllp_ack_latency_seconds_bucket{le=\"+Inf\"}"), 2.0);
        assert_eq!(get("mllp_ack_latency_seconds_count"), 2.0);
        assert!((get("mllp_ack_latency_seconds_sum") - 0.00205).abs() < 1e-12);
        // Every family of the contract is there with HELP and TYPE.
        for f in [
            "mllp_connections_accepted_total counter",
            "mllp_connections_refused_total counter",
            "mllp_connections_open gauge",
            "mllp_messages_total counter",
            "mllp_messages_received_total counter",
            "mllp_bytes_received_total counter",
            "mllp_bytes_sent_total counter",
            "mllp_acks_sent_total counter",
            "mllp_errors_total counter",
            "mllp_tls_handshakes_total counter",
            "mllp_tls_handshake_failures_total counter",
            "mllp_ack_latency_seconds histogram",
        ] {
            assert!(text.contains(&format!("# TYPE {f}\n")), "{f}");
        }
    }

    #[test]
    fn empty_exposition_is_valid() {
        let samples = check_exposition(&Metrics::new().snapshot().to_prometheus());
        assert!(samples.iter().all(|s| s.1 == 0.0));
    }
}
