//! The MLLP protocol of one connection, without sockets, threads or clocks (quinn-proto's
//! `Connection` is the model).
//!
//! Bytes from the peer and the current time go in ([`Connection::handle_input`]); out come
//! [`Event`]s ([`Connection::poll_event`]: a message for the host, an acknowledgement of
//! something the server sent, a finished synchronous send, an error, a log line), bytes to write
//! ([`Connection::transmit`], paced by MaxTransferRate) and the next deadline
//! ([`Connection::poll_timeout`], then [`Connection::handle_timeout`]: ReceiveTimeout and the
//! end of a rate-limit window).
//!
//! Every protocol rule lives here: framing and resynchronisation, refusals and their error
//! codes, which replies Version and AckMode call for, the order of replies (only the decided
//! prefix is written, so acknowledgements leave in message order however late the host
//! decides), the classification of acknowledgements the peer sends back, waiters for
//! synchronous sends, ReceiveTimeout, the rate limit and the bounds past which the connection
//! stops asking for input. The reactor only moves bytes and time in and out.
//!
//! Errors a peer can repeat at a high rate (one per frame, or per byte for start blocks) are
//! coalesced per kind: the first at once, then one "repeated N times" report per
//! [`STORM_INTERVAL`] (a deadline of [`Connection::poll_timeout`]); [`Connection::work`]
//! tells the driver how much decoding a chunk caused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bufpool::BufPool;
use crate::charset::Charset;
use crate::codec::{self, AbortReason, DecodeEvent, Decoder, FrameChars};
use crate::config::{AckMode, Settings};
use crate::dedupe::{Duplicates, Key, Lookup};
use crate::error::{code, Error, Result};
use crate::events::{LogLevel, RejectCode, Verdict};
use crate::hl7;
use crate::metrics::{Metrics, Outcome};

/// Owner tokens for the duplicate window: one per connection of the process.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Output queued past this stops reading from the peer until it drains.
pub const OUT_HIGH_WATER: usize = 1 << 20;
/// Undecided replies past this stop reading from the peer (pipelining senders).
pub const PENDING_HIGH_WATER: usize = 64;
/// An output buffer larger than this is shrunk once it drained.
const SPARE_KEEP_LIMIT: usize = 1 << 20;
/// Largest message buffer a connection keeps for itself between messages (larger ones go to
/// the server's shared [`BufPool`], and every one does once the connection is quiescent:
/// [`Connection::release_idle`]).
const SPARE_LIMIT: usize = 64 << 10;
/// The first buffer of a frame is sized for at least this many bytes.
const MIN_FRAME_BUF: usize = 1024;
/// Content a frame must have so far before reads go straight into its buffer
/// ([`Connection::direct_input`]); smaller messages arrive whole in one read anyway.
pub const DIRECT_MIN: usize = 64 << 10;
/// Slack a large frame's buffer gets beyond the previous message's size: a direct read that
/// ends the frame also brings its end block (and maybe the next frame's start) into it.
const DIRECT_SLACK: usize = 64 << 10;
/// A direct read needs at least this much room before the buffer grows.
const DIRECT_MIN_ROOM: usize = 4 << 10;
/// Repeated errors of one kind on one connection: the first few (STORM_BURST) are reported at
/// once, the rest at most once per interval as one "repeated N times" report (an error storm
/// costs a few events, not one per bad frame).
pub const STORM_INTERVAL: Duration = Duration::from_secs(1);
/// Errors of one kind reported one by one per interval before the rest are counted.
pub const STORM_BURST: u32 = 3;

/// The current time: monotonic for deadlines; the wall clock (for HL7 timestamps) as a
/// reference pair, so that it is computed only when an HL7 acknowledgement needs it.
#[derive(Clone, Copy, Debug)]
pub struct Time {
    /// For deadlines (ReceiveTimeout, rate windows).
    pub mono: Instant,
    /// A monotonic instant and the wall-clock time at that instant.
    wall_ref: (Instant, SystemTime),
}

impl Time {
    /// The machine's clocks now.
    pub fn now() -> Self {
        let mono = Instant::now();
        Time { mono, wall_ref: (mono, SystemTime::now()) }
    }

    /// `mono`, with the wall clock read at `wall_ref.0` as `wall_ref.1` (a driver reads the
    /// wall clock once in a while and derives it in between).
    pub fn with_wall_ref(mono: Instant, wall_ref: (Instant, SystemTime)) -> Self {
        Time { mono, wall_ref }
    }

    /// A given monotonic instant and wall-clock second (for tests).
    pub fn at(mono: Instant, unix_secs: u64) -> Self {
        Time { mono, wall_ref: (mono, UNIX_EPOCH + Duration::from_secs(unix_secs)) }
    }

    /// Seconds since the Unix epoch, for MSH-7 of HL7 acknowledgements.
    pub fn unix_secs(&self) -> u64 {
        let wall = self.wall_ref.1 + self.mono.saturating_duration_since(self.wall_ref.0);
        wall.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// The settings that govern the protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Framing bytes.
    pub chars: FrameChars,
    /// The commit acknowledgement bytes (ACKChar, NAKChar).
    pub ack_char: u8,
    /// See `ack_char`.
    pub nak_char: u8,
    /// Largest message content accepted.
    pub max_message_size: usize,
    /// MLLP version: 2 expects an acknowledgement for every frame the server sends.
    pub version: u8,
    /// How received messages are answered (already derived from Version when not set).
    pub ack_mode: AckMode,
    /// Time from a start block to its end block (None: no limit).
    pub receive_timeout: Option<Duration>,
    /// Outbound bytes per second (0: no limit).
    pub max_transfer_rate: u64,
    /// Log lines above this level are not produced (0: none).
    pub log_level: u8,
    /// DuplicateWindow: messages remembered for duplicate detection (0: off).
    pub duplicate_window: usize,
    /// ProcessBatch: FHS/BHS frames are split into their messages.
    pub process_batch: bool,
    /// DefaultCharset: the character set of messages whose MSH-18 is empty.
    pub default_charset: Option<Charset>,
    /// DecodeToUTF8: messages are handed over converted to UTF-8.
    pub decode_to_utf8: bool,
}

impl Config {
    /// The protocol part of a server's settings.
    pub fn from_settings(s: &Settings) -> Self {
        Config {
            chars: s.chars,
            ack_char: s.ack_char,
            nak_char: s.nak_char,
            max_message_size: s.max_message_size,
            version: s.version,
            ack_mode: s.effective_ack_mode(),
            receive_timeout: (s.receive_timeout > 0).then(|| Duration::from_secs(s.receive_timeout as u64)),
            max_transfer_rate: s.max_transfer_rate,
            log_level: s.log_level,
            duplicate_window: s.duplicate_window as usize,
            process_batch: s.process_batch,
            default_charset: Charset::lookup(&s.default_charset),
            decode_to_utf8: s.decode_to_utf8,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_settings(&Settings::default())
    }
}

/// What the connection asks its driver to act on. `W` is the driver's handle for a waiting
/// synchronous send (the reactor's thread waiter; a number in tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Event<W> {
    /// A complete message for the host. When `ack` is true a reply slot waits for its
    /// [`Verdict`] ([`Connection::decide`]).
    Message {
        /// Sequence number on this connection (1 for the first).
        seq: u64,
        /// The content between start and end block (one message of a batch; converted to
        /// UTF-8 when DecodeToUTF8 did).
        data: Vec<u8>,
        /// A reply is due (AckMode is not None).
        ack: bool,
        /// Its character set.
        charset: CharsetInfo,
    },
    /// A resent message was answered with its original's acknowledgement and not delivered.
    Duplicate {
        /// The message as received.
        data: Vec<u8>,
        /// Its MSH-10.
        control_id: String,
        /// The acknowledgement sent again (unframed; empty when the original got none).
        reply: Vec<u8>,
    },
    /// The peer acknowledged a frame the server sent (version 2): ACK or NAK.
    AckIn {
        /// ACK (true) or NAK (false).
        accepted: bool,
    },
    /// A synchronous send finished: acknowledged (version 2), written (version 1), refused by
    /// a NAK (670) or lost with the connection (672).
    SendDone {
        /// The driver's handle.
        waiter: W,
        /// Its result.
        result: Result<()>,
    },
    /// Something went wrong; the connection stays open (671 for refused or abandoned frames).
    Error(Error),
    /// A log line at `level`.
    Log {
        /// Info, Verbose or Debug.
        level: LogLevel,
        /// The text.
        message: String,
    },
}

/// The character set of a received message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CharsetInfo {
    /// MSH-18 as sent (every repetition; lossily UTF-8), "" when empty.
    pub raw: String,
    /// The normalised name ("8859/1", "UNICODE UTF-8" …): of MSH-18, else of DefaultCharset;
    /// "" when neither names a known set.
    pub encoding: &'static str,
    /// The bytes handed over were converted to UTF-8.
    pub decoded: bool,
}

/// How a message is answered once decided.
#[derive(Debug)]
enum Answer {
    Verdict(Verdict),
    /// Exactly these bytes, unframed (the host's).
    Bytes(Vec<u8>),
    /// A duplicate answered from the window with what its original got (unframed).
    Duplicate(Vec<u8>),
    /// A resend of a message queued before it on this connection: answered as that one was.
    SameAs {
        key: Key,
        message: Vec<u8>,
    },
}

/// One message's place in the reply queue.
#[derive(Debug)]
struct Part {
    /// Its sequence number (0 for frames answered without asking the host).
    seq: u64,
    /// Some once decided.
    answer: Option<Answer>,
    /// In HL7 mode, the message's MSH segment (what the ACK is built from).
    msh: Vec<u8>,
    /// Claimed in the duplicate window by this connection; settled when answered.
    key: Option<Key>,
    /// When its frame's end block was read (for the acknowledgement latency).
    received: Instant,
}

/// A reply slot in frame order: one message, or a batch answered as one.
#[derive(Debug)]
enum Pending {
    One(Part),
    Batch(Box<(hl7::BatchShape, Vec<Part>)>),
}

impl Pending {
    fn parts_mut(&mut self) -> &mut [Part] {
        match self {
            Pending::One(p) => std::slice::from_mut(p),
            Pending::Batch(b) => &mut b.1,
        }
    }

    fn decided(&self) -> bool {
        match self {
            Pending::One(p) => p.answer.is_some(),
            Pending::Batch(b) => b.1.iter().all(|p| p.answer.is_some()),
        }
    }
}

/// A received message made ready for admission: its character set read (and converted).
struct Prepared {
    raw_key: Option<Key>,
    data: Vec<u8>,
    raw: Option<Vec<u8>>,
    msh: Vec<u8>,
    charset: CharsetInfo,
}

/// Protocol state of one connection.
pub struct Connection<W> {
    cfg: Arc<Config>,
    decoder: Decoder,
    /// The frame being assembled (no capacity between frames: taken at its first byte from
    /// `spare` or the pool, sized from the previous message, and handed over whole at its end).
    msg: Vec<u8>,
    /// A small buffer of a delivered message, kept to avoid an allocation per message (until
    /// the connection is quiescent: [`Connection::release_idle`]).
    spare: Vec<u8>,
    /// Where message buffers come from and go back to (the server's, shared by its connections).
    pool: Arc<BufPool>,
    /// Content length of the last message received: the size its successor's buffer starts at.
    last_len: usize,
    /// Replies not yet written, in message order.
    pending: VecDeque<Pending>,
    /// Messages delivered so far (the last sequence number given out).
    seq: u64,
    /// Frames the server sent that await something (None until the first send: most
    /// connections only receive, and every connection pays for the field).
    sends: Option<Box<Sends<W>>>,
    /// Bytes handed to the transport so far.
    written: u64,
    /// Bytes to write to the peer, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Frames started so far, and the one whose ReceiveTimeout runs.
    frames_started: u64,
    timed_frame: u64,
    frame_deadline: Option<Instant>,
    /// MaxTransferRate's window (made at the first paced write: most connections never are).
    rate: Option<Box<RateWindow>>,
    /// This connection's owner token in the duplicate window.
    token: u64,
    dups: Option<Arc<Duplicates>>,
    /// Reused for acknowledgements: the reply body, and in HL7 mode (boxed: MLLP mode never
    /// needs them) the timestamp/control-id scratch and MSH copies.
    body: Vec<u8>,
    hl7: Option<Box<Hl7Scratch>>,
    events: VecDeque<Event<W>>,
    /// Frames found in one chunk of input (kept to avoid an allocation per read).
    found: Vec<Found>,
    /// The server's counters.
    metrics: Arc<Metrics>,
    /// Reply frames in the output not yet written: the offset (in `written` terms) of each
    /// one's last byte, when its frame arrived, and whether it is positive.
    marks: VecDeque<(u64, Instant, bool)>,
    /// Coalescing of repeated errors, one entry per [`Storm`] kind; made at the first such
    /// error and dropped when the connection goes idle after its windows ended (160 bytes that
    /// most connections never need: idle connections stay small).
    storms: Option<Box<[StormState; Storm::COUNT]>>,
    /// Frames refused or discarded on their own so far (the driver's measure of a storm).
    work: u64,
}

/// A kind of error that a peer can repeat at a high rate (one per frame or per byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storm {
    Restarted,
    Oversize,
    Empty,
    BadTrailer,
    StrayAck,
}

impl Storm {
    const COUNT: usize = 5;
    const ALL: [Storm; Storm::COUNT] =
        [Storm::Restarted, Storm::Oversize, Storm::Empty, Storm::BadTrailer, Storm::StrayAck];

    fn describe(self, cfg: &Config) -> String {
        match self {
            Storm::Restarted => "start block inside a frame: partial message discarded".to_string(),
            Storm::Oversize => Refusal::Oversize.describe(cfg.max_message_size),
            Storm::Empty => Refusal::Empty.describe(cfg.max_message_size),
            Storm::BadTrailer => Refusal::BadTrailer.describe(cfg.max_message_size),
            Storm::StrayAck => format!(
                "one-byte message equal to ACKChar ({}) or NAKChar ({}) while nothing on this connection awaits an acknowledgement: refused (not answered)",
                crate::config::hex(cfg.ack_char),
                crate::config::hex(cfg.nak_char)
            ),
        }
    }

    fn of(r: Refusal) -> Storm {
        match r {
            Refusal::Oversize => Storm::Oversize,
            Refusal::Empty => Storm::Empty,
            Refusal::BadTrailer => Storm::BadTrailer,
        }
    }
}

/// MaxTransferRate's current one-second window: when it began, what it has sent, and until
/// when writing pauses once it is spent.
#[derive(Debug, Default)]
struct RateWindow {
    window: Option<Instant>,
    bytes: u64,
    blocked_until: Option<Instant>,
}

/// Buffers reused for HL7 acknowledgements (timestamp and control id; MSH copies).
#[derive(Debug, Default)]
struct Hl7Scratch {
    scratch: Vec<u8>,
    msh_pool: Vec<Vec<u8>>,
}

/// The reporting window of one [`Storm`] kind.
#[derive(Clone, Copy, Debug, Default)]
struct StormState {
    /// When the current window began (None: nothing reported yet).
    since: Option<Instant>,
    /// Errors reported one by one in the window (at most STORM_BURST).
    reported: u32,
    /// Errors in the window not reported yet.
    suppressed: u64,
}

impl<W> Connection<W> {
    /// A connection governed by `cfg` (a server shares one `Arc<Config>` among its connections).
    pub fn new(cfg: impl Into<Arc<Config>>) -> Self {
        let cfg = cfg.into();
        Connection {
            decoder: Decoder::new(cfg.chars, cfg.max_message_size),
            cfg,
            msg: Vec::new(),
            spare: Vec::new(),
            pool: Arc::new(BufPool::new()),
            last_len: 0,
            pending: VecDeque::new(),
            seq: 0,
            sends: None,
            written: 0,
            out: Vec::new(),
            out_pos: 0,
            frames_started: 0,
            timed_frame: 0,
            frame_deadline: None,
            rate: None,
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            dups: None,
            body: Vec::new(),
            hl7: None,
            events: VecDeque::new(),
            found: Vec::new(),
            metrics: Arc::new(Metrics::new()),
            marks: VecDeque::new(),
            storms: None,
            work: 0,
        }
    }

    /// Frames the connection refused or discarded on its own so far (empty, oversized, badly
    /// terminated, stray one-byte ACK/NAK, partial frames cut by a start block): a driver
    /// compares it before and after [`handle_input`](Self::handle_input) to charge a chunk
    /// for the work it caused, not only for its bytes (messages are the host's work and
    /// are bounded by the replies awaiting decisions).
    pub fn work(&self) -> u64 {
        self.work
    }

    /// `n` errors of kind `kind` (code 671) at `now`: the first STORM_BURST of a window are
    /// reported one by one, the rest counted and reported together when the window ends.
    /// While errors keep coming, every window gets one report, no burst.
    fn storm(&mut self, kind: Storm, n: u64, now: Instant) {
        if n == 0 {
            return;
        }
        let st = &mut self.storms.get_or_insert_with(Box::default)[kind as usize];
        if st.since.map_or(true, |t| now >= t + STORM_INTERVAL) {
            if st.suppressed > 0 {
                // Still storming: one report for what the window held and these.
                let total = st.suppressed + n;
                *st = StormState { since: Some(now), reported: STORM_BURST, suppressed: 0 };
                return self.storm_report(kind, total);
            }
            *st = StormState { since: Some(now), reported: 0, suppressed: 0 };
        }
        let each = n.min(u64::from(STORM_BURST - st.reported));
        st.reported += each as u32;
        st.suppressed += n - each;
        for _ in 0..each {
            let message = kind.describe(&self.cfg);
            self.error(code::INVALID_DATA, message);
        }
    }

    /// One Error event standing for `count` errors of `kind`. The driver counts the event in
    /// the metrics; the others it stands for are counted here.
    fn storm_report(&mut self, kind: Storm, count: u64) {
        self.metrics.errors_n(code::INVALID_DATA, count - 1);
        let secs = STORM_INTERVAL.as_secs();
        let message = match count {
            1 => kind.describe(&self.cfg),
            _ => format!("{} (repeated {count} times in {secs} s)", kind.describe(&self.cfg)),
        };
        self.error(code::INVALID_DATA, message);
    }

    /// Reports what every window holds: at its end (`now`; a new window begins, without a
    /// burst), or when the connection closes (None).
    fn flush_storms(&mut self, now: Option<Instant>) {
        let Some(states) = self.storms.as_deref().copied() else { return };
        for (i, kind) in Storm::ALL.into_iter().enumerate() {
            let st = states[i];
            let due = now.map_or(true, |n| st.since.is_some_and(|t| n >= t + STORM_INTERVAL));
            if st.suppressed > 0 && due {
                if let Some(s) = self.storms.as_deref_mut() {
                    s[i] = StormState { since: now, reported: STORM_BURST, suppressed: 0 };
                }
                self.storm_report(kind, st.suppressed);
            }
        }
    }

    /// The end of the earliest reporting window that holds suppressed errors.
    fn storm_deadline(&self) -> Option<Instant> {
        let states = self.storms.as_deref()?;
        states.iter().filter(|s| s.suppressed > 0).filter_map(|s| s.since).min().map(|t| t + STORM_INTERVAL)
    }

    /// Counts into the server's metrics (a connection made alone counts into its own).
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = metrics;
    }

    /// The counters this connection counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Shares the server's duplicate window (used while DuplicateWindow is not 0).
    pub fn set_duplicates(&mut self, dups: Arc<Duplicates>) {
        self.dups = Some(dups);
    }

    /// Takes message buffers from `pool` and gives them back there (the server's, shared by
    /// its connections; a connection made alone has its own).
    pub fn set_pool(&mut self, pool: Arc<BufPool>) {
        self.pool = pool;
    }

    /// Applies changed settings; a frame in progress keeps its framing and its deadline.
    pub fn reconfigure(&mut self, cfg: impl Into<Arc<Config>>) {
        let cfg = cfg.into();
        if self.decoder.chars() != cfg.chars && !self.decoder.in_frame() {
            self.decoder.set_chars(cfg.chars);
        }
        self.decoder.set_max_message_size(cfg.max_message_size);
        self.cfg = cfg;
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn log(&mut self, level: LogLevel, message: impl FnOnce() -> String) {
        if self.cfg.log_level >= level.as_u8() {
            self.events.push_back(Event::Log { level, message: message() });
        }
    }

    fn error(&mut self, code: i32, message: impl Into<String>) {
        self.events.push_back(Event::Error(Error::new(code, message)));
    }

    /// The next thing for the driver to act on.
    pub fn poll_event(&mut self) -> Option<Event<W>> {
        self.events.pop_front()
    }

    /// Feeds bytes read from the peer (decrypted, for TLS) at time `now`.
    pub fn handle_input(&mut self, data: &[u8], now: Time) {
        let n = data.len();
        self.log(LogLevel::Debug, || format!("read {n} bytes"));
        self.decode(data, now);
    }

    /// True between frames when the previous message was large (at least [`DIRECT_MIN`]
    /// bytes): a driver then reads only the start of the next frame through
    /// [`handle_input`](Self::handle_input), and the rest through
    /// [`direct_input`](Self::direct_input).
    pub fn expects_large(&self) -> bool {
        self.last_len >= DIRECT_MIN && !self.decoder.in_frame()
    }

    /// While a large frame's content is arriving (at least [`DIRECT_MIN`] bytes of it so far,
    /// or its buffer was sized for a large message), the buffer it is assembled in, with room
    /// for at least a few KiB more (up to `want` bytes): the driver appends what it reads from the peer straight to it, sparing a copy
    /// of every byte, then calls [`direct_input_done`](Self::direct_input_done). None
    /// otherwise: use [`handle_input`](Self::handle_input).
    pub fn direct_input(&mut self, want: usize) -> Option<&mut Vec<u8>> {
        if !self.decoder.in_content() || self.msg.len().max(self.msg.capacity()) < DIRECT_MIN {
            return None;
        }
        if self.msg.capacity() - self.msg.len() < DIRECT_MIN_ROOM {
            grow(&self.pool, &mut self.msg, want);
        }
        Some(&mut self.msg)
    }

    /// The driver appended bytes read from the peer, from offset `from` on, to the buffer
    /// [`direct_input`](Self::direct_input) gave: they are decoded as
    /// [`handle_input`](Self::handle_input) would (content stays where it is; whatever follows
    /// the content's end is fed as usual).
    pub fn direct_input_done(&mut self, from: usize, now: Time) {
        let from = from.min(self.msg.len());
        let n = self.msg.len() - from;
        self.log(LogLevel::Debug, || format!("read {n} bytes"));
        let run = self.decoder.consume_content(&self.msg[from..]);
        if run < n {
            let rest = self.msg[from + run..].to_vec();
            self.msg.truncate(from + run);
            self.decode(&rest, now);
        } else {
            self.update_frame_deadline(now.mono);
        }
    }

    fn decode(&mut self, data: &[u8], now: Time) {
        let mut found = std::mem::take(&mut self.found);
        let Connection { decoder, msg, spare, pool, last_len, frames_started, cfg, sends, .. } = &mut *self;
        let (ack, nak) = (cfg.ack_char, cfg.nak_char);
        // Sends still awaiting an answer, counted down as answers are found in this chunk.
        let mut awaiting = sends.as_ref().map_or(0, |s| s.acks.len());
        let skipped = decoder.feed(data, |ev| match ev {
            DecodeEvent::Start => {
                msg.clear();
                *frames_started += 1;
            }
            DecodeEvent::Data(d) => {
                if msg.capacity() == 0 {
                    // Sized once from what is known: this piece, and the previous message
                    // (senders tend to send alike); a reused buffer is already faulted in.
                    let last = if *last_len >= DIRECT_MIN { *last_len + DIRECT_SLACK } else { *last_len };
                    let want = d.len().max(last).max(MIN_FRAME_BUF);
                    *msg = if spare.capacity() >= want { std::mem::take(spare) } else { pool.take(want) };
                } else if msg.capacity() - msg.len() < d.len() {
                    grow(pool, msg, d.len());
                }
                msg.extend_from_slice(d)
            }
            DecodeEvent::End => {
                if msg.is_empty() {
                    push_repeated(&mut found, Found::Refused(Refusal::Empty, 1));
                } else if msg.len() == 1 && (msg[0] == ack || msg[0] == nak) && awaiting > 0 {
                    // A commit acknowledgement of something we sent, not a message.
                    awaiting -= 1;
                    found.push(Found::AckIn(msg[0] == ack));
                    msg.clear();
                } else if msg.len() == 1 && (msg[0] == ack || msg[0] == nak) {
                    // Nothing awaits an acknowledgement: refused and reported, not answered
                    // (a commit byte answered with a commit byte could bounce between peers).
                    push_repeated(&mut found, Found::StrayAck(1));
                    msg.clear();
                } else if awaiting > 0 && hl7::is_ack_message(msg) {
                    awaiting -= 1;
                    // An HL7 application ACK answering our Send.
                    found.push(Found::AckIn(hl7::ack_accepted(msg).unwrap_or(false)));
                    msg.clear();
                } else {
                    *last_len = msg.len();
                    found.push(Found::Message(std::mem::take(msg)));
                }
            }
            DecodeEvent::Oversize => {
                msg.clear();
                push_repeated(&mut found, Found::Refused(Refusal::Oversize, 1));
            }
            DecodeEvent::Aborted(AbortReason::Restarted) => {
                msg.clear();
                // The hot path of a start-block storm: one increment per byte.
                match found.last_mut() {
                    Some(Found::Restarted(n)) => *n += 1,
                    _ => found.push(Found::Restarted(1)),
                }
            }
            DecodeEvent::Aborted(AbortReason::BadTrailer) => {
                msg.clear();
                push_repeated(&mut found, Found::Refused(Refusal::BadTrailer, 1));
            }
        });
        let mut frames = 0;
        for f in &found {
            match f {
                Found::Message(_) => frames += 1,
                Found::AckIn(_) => {}
                Found::Refused(_, n) | Found::StrayAck(n) => {
                    frames += n;
                    self.work += n;
                }
                Found::Restarted(n) => self.work += n,
            }
        }
        if frames > 0 {
            self.metrics.received(frames);
        }
        // Events follow the order of frames in the stream.
        for f in found.drain(..) {
            match f {
                Found::Message(data) => self.on_frame(data, now),
                Found::Refused(r, n) => {
                    self.storm(Storm::of(r), n, now.mono);
                    for _ in 0..n {
                        self.refuse(Vec::new(), RejectCode::AR, now);
                    }
                }
                Found::AckIn(accepted) => self.on_ack_in(accepted),
                Found::StrayAck(n) => self.storm(Storm::StrayAck, n, now.mono),
                Found::Restarted(n) => self.storm(Storm::Restarted, n, now.mono),
            }
        }
        self.found = found;
        if skipped > 0 {
            self.log(LogLevel::Verbose, || format!("{skipped} bytes outside a frame skipped"));
        }
        self.update_frame_deadline(now.mono);
    }

    /// A complete frame: one message, or with ProcessBatch a batch to split.
    fn on_frame(&mut self, data: Vec<u8>, now: Time) {
        if self.cfg.process_batch && hl7::is_batch(&data) {
            return self.on_batch(data, now);
        }
        match self.prepare(data) {
            Ok(p) => {
                let part = self.admit(p, now.mono);
                if let Some(part) = part {
                    self.pending.push_back(Pending::One(part));
                    self.flush(now);
                }
            }
            Err((reason, msh)) => {
                self.error(code::CHARSET, reason);
                self.refuse(msh, RejectCode::AE, now);
            }
        }
    }

    /// A batch frame: every message checked first (a batch that cannot be split or whose
    /// messages cannot be converted is refused whole, nothing delivered), then each delivered
    /// on its own; the frame gets one reply once all are decided.
    fn on_batch(&mut self, frame: Vec<u8>, now: Time) {
        let split = hl7::split_batch(&frame);
        let batch = match split {
            Ok(b) => b,
            Err(reason) => {
                let msh = self.msh_copy(&frame);
                let n = frame.len();
                self.error(code::BAD_BATCH, format!("malformed batch refused ({n} bytes): {reason}"));
                return self.refuse(msh, RejectCode::AR, now);
            }
        };
        let shape = batch.shape();
        let mut prepared = Vec::with_capacity(batch.len());
        for m in batch.messages() {
            match self.prepare(m.to_vec()) {
                Ok(p) => prepared.push(p),
                Err((reason, _)) => {
                    let msh = self.msh_copy(&frame);
                    self.error(code::CHARSET, format!("batch refused: {reason}"));
                    return self.refuse(msh, RejectCode::AE, now);
                }
            }
        }
        let n = prepared.len();
        self.log(LogLevel::Verbose, || format!("batch of {n} messages received"));
        let parts: Vec<Part> = prepared.into_iter().filter_map(|p| self.admit(p, now.mono)).collect();
        if self.cfg.ack_mode != AckMode::None {
            self.pending.push_back(Pending::Batch(Box::new((shape, parts))));
            self.flush(now);
        }
    }

    /// In HL7 mode a copy of the MSH segment of `data` (what its ACK is built from).
    fn msh_copy(&mut self, data: &[u8]) -> Vec<u8> {
        let mut msh = Vec::new();
        if self.cfg.ack_mode == AckMode::Hl7 {
            msh = self.hl7.as_mut().and_then(|h| h.msh_pool.pop()).unwrap_or_default();
            msh.extend_from_slice(hl7::msh_segment(data).unwrap_or_default());
        }
        msh
    }

    /// Reads the message's character set and converts it when DecodeToUTF8 asks; Err with the
    /// reason (and the MSH copy for the refusal) when it cannot be converted.
    fn prepare(&mut self, data: Vec<u8>) -> std::result::Result<Prepared, (String, Vec<u8>)> {
        let dedupe = self.cfg.duplicate_window > 0 && self.cfg.ack_mode != AckMode::None && self.dups.is_some();
        let raw_key = if dedupe { Key::of(&data) } else { None };
        let msh = self.msh_copy(&data);
        let mut charset = CharsetInfo::default();
        let mut set = self.cfg.default_charset;
        let (field, rep) = hl7::msh_charset(&data);
        if !field.is_empty() {
            // The first repetition names the message's set (a second one is an ISO 2022 alternate).
            let first = field.split(|&b| b == rep).next().unwrap_or_default();
            charset.raw = String::from_utf8_lossy(field).into_owned();
            set = Charset::lookup(&String::from_utf8_lossy(first));
            if set.is_none() {
                let raw = charset.raw.clone();
                self.log(LogLevel::Info, || format!("unknown MSH-18 '{raw}': message passed through unchanged"));
            }
        }
        charset.encoding = set.map_or("", |c| c.name);
        let mut raw = None;
        let mut data = data;
        if let (true, Some(set)) = (self.cfg.decode_to_utf8, set) {
            match set.to_utf8(&data) {
                Ok(None) => {}
                Ok(Some(utf8)) => {
                    charset.decoded = true;
                    raw = Some(std::mem::replace(&mut data, utf8));
                }
                Err(reason) => {
                    let n = data.len();
                    return Err((
                        format!("message of {n} bytes refused: cannot convert from {}: {reason}", set.name),
                        msh,
                    ));
                }
            }
        }
        Ok(Prepared { raw_key, data, raw, msh, charset })
    }

    /// Delivers a prepared message, or answers it from the duplicate window. Returns its reply
    /// slot (None when no reply is due).
    fn admit(&mut self, p: Prepared, received: Instant) -> Option<Part> {
        let Prepared { raw_key, data, raw, msh, charset } = p;
        let ack = self.cfg.ack_mode != AckMode::None;
        let lookup = match (&raw_key, &self.dups) {
            (Some(k), Some(d)) => d.claim(k, self.token),
            _ => Lookup::Off,
        };
        let raw_bytes = |data: Vec<u8>, raw: Option<Vec<u8>>| raw.unwrap_or(data);
        let control_id = |m: &[u8]| hl7::parse_msh(m).map(|m| String::from_utf8_lossy(m.control_id).into_owned());
        let answered = |answer: Answer, msh: Vec<u8>| Part { seq: 0, answer: Some(answer), msh, key: None, received };
        match lookup {
            Lookup::Off | Lookup::New { .. } => {
                if lookup == (Lookup::New { reused: true }) {
                    let id = control_id(&data).unwrap_or_default();
                    self.log(LogLevel::Info, || {
                        format!("reused control id '{id}': a different message, delivered as a new message")
                    });
                }
                let claimed = matches!(lookup, Lookup::New { .. });
                self.seq += 1;
                let seq = self.seq;
                let len = data.len();
                self.log(LogLevel::Verbose, || format!("message {seq} received ({len} bytes)"));
                if let Some(r) = raw {
                    self.recycle(r, received);
                }
                self.events.push_back(Event::Message { seq, data, ack, charset });
                ack.then(|| Part { seq, answer: None, msh, key: raw_key.filter(|_| claimed), received })
            }
            Lookup::Duplicate(reply) => {
                let data = raw_bytes(data, raw);
                let id = control_id(&data).unwrap_or_default();
                self.report_duplicate(data, id, reply.clone());
                Some(answered(Answer::Duplicate(reply), msh))
            }
            Lookup::InProgress { same_owner: true } => {
                let key = raw_key.expect("looked up by key");
                Some(answered(Answer::SameAs { key, message: raw_bytes(data, raw) }, msh))
            }
            Lookup::InProgress { same_owner: false } => {
                let id = control_id(&data).unwrap_or_default();
                self.error(
                    code::DUPLICATE_IN_PROGRESS,
                    format!("message '{id}' resent while its original is still being processed on another connection: refused, resend later"),
                );
                Some(answered(Answer::Verdict(Verdict::Reject(RejectCode::AR)), msh))
            }
        }
    }

    fn report_duplicate(&mut self, data: Vec<u8>, control_id: String, reply: Vec<u8>) {
        if let Some(d) = &self.dups {
            d.counted();
        }
        let id = control_id.clone();
        self.log(LogLevel::Info, || {
            format!("duplicate of message '{id}' answered with its original acknowledgement, not delivered")
        });
        self.events.push_back(Event::Duplicate { data, control_id, reply });
    }

    fn on_ack_in(&mut self, accepted: bool) {
        let result = if accepted {
            Ok(())
        } else {
            Err(Error::new(code::NAK_RECEIVED, "the client answered with a negative acknowledgement"))
        };
        if let Some(Some(w)) = self.sends.as_mut().and_then(|s| s.acks.pop_front()) {
            self.events.push_back(Event::SendDone { waiter: w, result: result.clone() });
        }
        // Version 1 has no acknowledgements: a stray ACK byte there is not reported.
        if self.cfg.version != 1 {
            self.events.push_back(Event::AckIn { accepted });
            if let Err(e) = result {
                self.events.push_back(Event::Error(e));
            }
        }
    }

    fn update_frame_deadline(&mut self, now: Instant) {
        if !self.decoder.in_frame() {
            self.frame_deadline = None;
            return;
        }
        if self.frames_started != self.timed_frame {
            self.timed_frame = self.frames_started;
            self.frame_deadline = self.cfg.receive_timeout.map(|t| now + t);
        }
    }

    /// Gives a delivered message's buffer back for reuse at `now`: a small one is kept as
    /// this connection's spare, a large one goes to the pool (where the next large message,
    /// on this connection or another, finds it already faulted in).
    pub fn recycle(&mut self, mut buf: Vec<u8>, now: Instant) {
        if buf.capacity() <= SPARE_LIMIT && self.spare.capacity() < buf.capacity() {
            buf.clear();
            self.spare = buf;
        } else {
            self.pool.give(buf, now);
        }
    }

    /// True when the connection is quiescent: no partial frame, no output, no reply pending,
    /// no event undelivered.
    pub fn is_quiescent(&self) -> bool {
        !self.decoder.in_frame() && self.is_idle() && self.events.is_empty()
    }

    /// Heap bytes the connection holds (capacities of its buffers and queues).
    pub fn retained_bytes(&self) -> usize {
        fn q<T>(v: &VecDeque<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        self.msg.capacity()
            + self.spare.capacity()
            + self.out.capacity()
            + self.body.capacity()
            + self.hl7.as_ref().map_or(0, |h| {
                std::mem::size_of::<Hl7Scratch>()
                    + h.scratch.capacity()
                    + h.msh_pool.iter().map(Vec::capacity).sum::<usize>()
                    + h.msh_pool.capacity() * std::mem::size_of::<Vec<u8>>()
            })
            + self.rate.as_ref().map_or(0, |_| std::mem::size_of::<RateWindow>())
            + self.found.capacity() * std::mem::size_of::<Found>()
            + q(&self.pending)
            + self.sends.as_ref().map_or(0, |s| std::mem::size_of::<Sends<W>>() + q(&s.acks) + q(&s.writes))
            + q(&self.events)
            + q(&self.marks)
    }

    /// When quiescent, returns every buffer (message buffers to the pool at `now`, the rest to
    /// the allocator) so that an idle connection holds only its fixed state whatever it
    /// received before; a busy connection keeps them. Returns true when it was quiescent.
    pub fn release_idle(&mut self, now: Instant) -> bool {
        if !self.is_quiescent() {
            return false;
        }
        for b in [std::mem::take(&mut self.msg), std::mem::take(&mut self.spare)] {
            if b.capacity() > 0 {
                self.pool.give(b, now);
            }
        }
        let scratch = self.hl7.take().map(|h| h.scratch).unwrap_or_default();
        for b in [std::mem::take(&mut self.out), scratch, std::mem::take(&mut self.body)] {
            if b.capacity() > 0 {
                self.pool.give(b, now);
            }
        }
        self.out_pos = 0;
        self.found = Vec::new();
        self.pending = VecDeque::new();
        self.events = VecDeque::new();
        self.marks = VecDeque::new();
        // Windows still open keep counting (a slow storm must not get a new burst per pause).
        let ended = |s: &StormState| s.suppressed == 0 && s.since.map_or(true, |t| now >= t + STORM_INTERVAL);
        if self.storms.as_deref().is_some_and(|states| states.iter().all(ended)) {
            self.storms = None;
        }
        match &mut self.sends {
            Some(s) if s.acks.is_empty() && s.writes.is_empty() => self.sends = None,
            Some(s) => {
                s.acks.shrink_to_fit();
                s.writes.shrink_to_fit();
            }
            None => {}
        }
        true
    }

    /// True while a frame is partly received.
    pub fn in_frame(&self) -> bool {
        self.decoder.in_frame()
    }

    /// Content bytes of the partial frame.
    pub fn partial_len(&self) -> usize {
        self.decoder.frame_len()
    }

    /// The earliest deadline the driver must wake up for: the end of the frame in progress
    /// (ReceiveTimeout) or of a rate-limit pause.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let paused = self.rate.as_ref().and_then(|r| r.blocked_until);
        [self.frame_deadline, paused, self.storm_deadline()].into_iter().flatten().min()
    }

    /// Acts on deadlines that have passed at `now`: a frame past its ReceiveTimeout is
    /// dropped (error 671; data is skipped until the next start block), a rate-limit pause ends.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(r) = self.rate.as_mut().filter(|r| r.blocked_until.is_some_and(|t| t <= now.mono)) {
            r.blocked_until = None;
        }
        self.flush_storms(Some(now.mono));
        if self.frame_deadline.is_some_and(|t| t <= now.mono) && self.decoder.in_frame() {
            let n = self.decoder.frame_len();
            self.decoder.reset();
            self.msg.clear();
            self.frame_deadline = None;
            let secs = self.cfg.receive_timeout.map_or(0, |d| d.as_secs());
            self.error(
                code::INVALID_DATA,
                format!("ReceiveTimeout: no end block within {secs} s; {n} bytes discarded"),
            );
        }
    }

    /// Records the verdict for message `seq` and writes every decided reply at the head of
    /// the queue. Returns false when no reply for `seq` awaits a decision.
    pub fn decide(&mut self, seq: u64, verdict: Verdict, now: Time) -> bool {
        let word = if verdict.is_accept() { "ACK" } else { "NAK" };
        self.log(LogLevel::Verbose, || format!("message {seq} answered with {word}"));
        self.answer(seq, Answer::Verdict(verdict), now)
    }

    /// Answers message `seq` with exactly `reply` (unframed: an HL7 ACK, or in MLLP mode the
    /// ACK or NAK byte); as [`decide`](Self::decide) otherwise. A positive reply (the ACK byte,
    /// MSA-1 AA or CA) is remembered by the duplicate window.
    pub fn decide_with(&mut self, seq: u64, reply: Vec<u8>, now: Time) -> bool {
        self.log(LogLevel::Verbose, || format!("message {seq} answered with the host's reply"));
        self.answer(seq, Answer::Bytes(reply), now)
    }

    fn answer(&mut self, seq: u64, answer: Answer, now: Time) -> bool {
        // The usual case first: the oldest reply slot, one message.
        if let Some(Pending::One(p)) = self.pending.front_mut() {
            if p.seq == seq && seq != 0 && p.answer.is_none() {
                p.answer = Some(answer);
                self.flush(now);
                return true;
            }
        }
        let slot = self
            .pending
            .iter_mut()
            .flat_map(|p| p.parts_mut().iter_mut())
            .find(|p| p.seq == seq && seq != 0 && p.answer.is_none());
        let Some(part) = slot else { return false };
        part.answer = Some(answer);
        self.flush(now);
        true
    }

    /// Writes every decided reply at the head of the queue.
    fn flush(&mut self, now: Time) {
        while self.pending.front().is_some_and(Pending::decided) {
            match self.pending.pop_front().expect("front exists") {
                Pending::One(part) => {
                    let received = part.received;
                    let outcome = self.resolve(part, now);
                    self.metrics.answered(outcome);
                    if !self.body.is_empty() {
                        codec::encode_frame(self.decoder.chars(), &self.body, &mut self.out);
                        self.mark_reply(received, outcome != Outcome::Refused);
                    }
                }
                Pending::Batch(b) => self.write_batch(b.0, b.1, now),
            }
        }
    }

    /// A batch's one reply: in MLLP mode ACK when every message was accepted, else NAK; in
    /// HL7 mode a batch acknowledgement holding each message's acknowledgement.
    fn write_batch(&mut self, shape: hl7::BatchShape, parts: Vec<Part>, now: Time) {
        let mut acks = Vec::with_capacity(parts.len());
        let mut all = true;
        let mut all_dup = !parts.is_empty();
        let received = parts.first().map(|p| p.received);
        for part in parts {
            let outcome = self.resolve(part, now);
            all &= outcome != Outcome::Refused;
            all_dup &= outcome == Outcome::Duplicate;
            acks.push(std::mem::take(&mut self.body));
        }
        self.metrics.answered(match (all, all_dup) {
            (false, _) => Outcome::Refused,
            (true, true) => Outcome::Duplicate,
            (true, false) => Outcome::Accepted,
        });
        // A batch without messages resolved nothing: what an earlier reply left in the body
        // must not become part of this one.
        self.body.clear();
        match self.cfg.ack_mode {
            AckMode::Hl7 => {
                let mut ts = Vec::with_capacity(14);
                hl7::format_timestamp(now.unix_secs(), &mut ts);
                hl7::build_batch_ack(&shape, &acks, &ts, &mut self.body);
            }
            _ => self.body.push(if all { self.cfg.ack_char } else { self.cfg.nak_char }),
        }
        codec::encode_frame(self.decoder.chars(), &self.body, &mut self.out);
        if let Some(t) = received {
            self.mark_reply(t, all);
        }
        self.body.clear();
    }

    /// Notes the reply frame just put at the end of the output, for when it is written.
    fn mark_reply(&mut self, received: Instant, positive: bool) {
        let end = self.written + (self.out.len() - self.out_pos) as u64;
        self.marks.push_back((end, received, positive));
    }

    /// Puts the reply content of a decided message in `self.body` (empty: nothing is sent)
    /// and settles it in the duplicate window. Returns how it was answered.
    fn resolve(&mut self, mut part: Part, now: Time) -> Outcome {
        self.body.clear();
        let mut duplicate = false;
        let positive = match part.answer.take().expect("decided") {
            Answer::Bytes(b) => {
                self.body.extend_from_slice(&b);
                self.is_positive(&b)
            }
            Answer::Duplicate(b) => {
                self.body.extend_from_slice(&b);
                duplicate = true;
                true
            }
            Answer::SameAs { key, message } => match self.dups.as_ref().and_then(|d| d.reply(&key)) {
                Some(reply) => {
                    self.body.extend_from_slice(&reply);
                    let id = hl7::parse_msh(&message)
                        .map(|m| String::from_utf8_lossy(m.control_id).into_owned())
                        .unwrap_or_default();
                    self.report_duplicate(message, id, reply);
                    duplicate = true;
                    true
                }
                None => {
                    self.error(
                        code::DUPLICATE_IN_PROGRESS,
                        "a resent message's original was not accepted: the resend is refused too; resend it",
                    );
                    self.build_reply(Verdict::Reject(RejectCode::AR), &part.msh, now)
                }
            },
            Answer::Verdict(v) => self.build_reply(v, &part.msh, now),
        };
        if let (Some(key), Some(d)) = (part.key, &self.dups) {
            d.finish(&key, self.token, positive.then_some(&self.body[..]));
        }
        if part.msh.capacity() > 0 && part.msh.capacity() <= 4096 {
            let pool = &mut self.hl7.get_or_insert_with(Box::default).msh_pool;
            if pool.len() < 4 {
                part.msh.clear();
                pool.push(part.msh);
            }
        }
        match (duplicate, positive) {
            (true, _) => Outcome::Duplicate,
            (false, true) => Outcome::Accepted,
            (false, false) => Outcome::Refused,
        }
    }

    /// True when a reply the host supplied is positive.
    fn is_positive(&self, reply: &[u8]) -> bool {
        match self.cfg.ack_mode {
            AckMode::Hl7 => hl7::ack_accepted(reply) == Some(true),
            _ => reply == [self.cfg.ack_char],
        }
    }

    /// Answers a frame the server refused on its own (`msh`: the MSH its HL7 ACK is built
    /// from, empty for frames without one); queued behind undecided replies so the order of
    /// answers follows the order of frames.
    fn refuse(&mut self, msh: Vec<u8>, code: RejectCode, now: Time) {
        if self.cfg.ack_mode == AckMode::None {
            return;
        }
        let answer = Some(Answer::Verdict(Verdict::Reject(code)));
        self.pending.push_back(Pending::One(Part { seq: 0, answer, msh, key: None, received: now.mono }));
        self.flush(now);
    }

    /// Builds the reply content for `verdict` into `self.body`; returns whether it is positive.
    /// In HL7 mode a message with MSH-15 or MSH-16 valued (enhanced mode) gets an accept
    /// acknowledgement (CA, CE, CR), sent or not as MSH-15 asks.
    fn build_reply(&mut self, verdict: Verdict, msh: &[u8], now: Time) -> bool {
        let positive = verdict.is_accept();
        match self.cfg.ack_mode {
            AckMode::None => {}
            AckMode::Mllp => self.body.push(if positive { self.cfg.ack_char } else { self.cfg.nak_char }),
            AckMode::Hl7 => {
                let m = hl7::parse_msh(msh);
                let enhanced = m.is_some_and(|m| !m.accept_ack_type.is_empty() || !m.app_ack_type.is_empty());
                let code = match (verdict, enhanced) {
                    (Verdict::Accept, false) => hl7::AckCode::AA,
                    (Verdict::Reject(r), false) => r.ack_code(),
                    (Verdict::Accept, true) => hl7::AckCode::CA,
                    (Verdict::Reject(RejectCode::AE), true) => hl7::AckCode::CE,
                    (Verdict::Reject(RejectCode::AR), true) => hl7::AckCode::CR,
                };
                if enhanced && !hl7::ack_wanted(m.map_or(&[][..], |m| m.accept_ack_type), positive) {
                    return positive;
                }
                // Scratch buffers are reused: no allocation per acknowledgement.
                let scratch = &mut self.hl7.get_or_insert_with(Box::default).scratch;
                hl7::build_ack_at(msh, code, now.unix_secs(), None, scratch, &mut self.body);
            }
        }
        positive
    }

    /// Queues a data frame from the server to the peer. `waiter` (a synchronous send) is done
    /// when the peer acknowledges the frame (version 2) or once it is written (version 1).
    /// Fails when the payload cannot be framed.
    pub fn send(&mut self, payload: &[u8], waiter: Option<W>) -> std::result::Result<(), (Error, Option<W>)> {
        let chars = self.decoder.chars();
        if !codec::can_frame(chars, payload) {
            let e =
                Error::new(code::INVALID_DATA, "data contains the StartBlockChar or EndBlockChar and cannot be framed");
            return Err((e, waiter));
        }
        codec::encode_frame(chars, payload, &mut self.out);
        let end = self.written + (self.out.len() - self.out_pos) as u64;
        let sends =
            self.sends.get_or_insert_with(|| Box::new(Sends { acks: VecDeque::new(), writes: VecDeque::new() }));
        if self.cfg.version == 2 {
            sends.acks.push_back(waiter);
        } else if let Some(w) = waiter {
            sends.writes.push_back((end, w));
        }
        let len = payload.len();
        self.log(LogLevel::Verbose, || format!("sending {len} bytes"));
        Ok(())
    }

    /// Data frames sent and not yet acknowledged by the peer.
    pub fn awaiting_acks(&self) -> usize {
        self.sends.as_ref().map_or(0, |s| s.acks.len())
    }

    /// All bytes waiting to be written, whatever the rate limit says.
    pub fn queued_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// The bytes that may be written now (MaxTransferRate may allow only part, or nothing
    /// until [`poll_timeout`](Self::poll_timeout)). Mark what was written with
    /// [`consume_output`](Self::consume_output).
    pub fn transmit(&mut self, now: Instant) -> &[u8] {
        let queued = self.out.len() - self.out_pos;
        let rate = self.cfg.max_transfer_rate;
        let mut allow = queued;
        if rate > 0 && queued > 0 {
            let r = self.rate.get_or_insert_with(Box::default);
            if r.blocked_until.is_some_and(|t| now < t) {
                return &[];
            }
            r.blocked_until = None;
            let window = match r.window {
                Some(w) if now < w + Duration::from_secs(1) => w,
                _ => {
                    r.window = Some(now);
                    r.bytes = 0;
                    now
                }
            };
            let left = rate.saturating_sub(r.bytes) as usize;
            if left == 0 {
                r.blocked_until = Some(window + Duration::from_secs(1));
                return &[];
            }
            allow = queued.min(left);
        }
        &self.out[self.out_pos..self.out_pos + allow]
    }

    /// True when there is output and the rate limit lets some of it go.
    pub fn wants_write(&self) -> bool {
        self.out.len() > self.out_pos && self.rate.as_ref().map_or(true, |r| r.blocked_until.is_none())
    }

    /// Marks `n` bytes of [`transmit`](Self::transmit) as written at `now`; finishes version 1
    /// synchronous sends whose last byte went, and counts the reply frames whose last byte
    /// went (acknowledgements written, and their latency since their frame arrived).
    pub fn consume_output(&mut self, n: usize, now: Instant) {
        self.out_pos += n;
        if let Some(r) = self.rate.as_mut() {
            r.bytes += n as u64;
        }
        self.written += n as u64;
        while let Some(&(end, received, positive)) = self.marks.front() {
            if end > self.written {
                break;
            }
            self.marks.pop_front();
            self.metrics.ack_written(positive, now.saturating_duration_since(received));
        }
        if let Some(s) = self.sends.as_mut() {
            while s.writes.front().is_some_and(|(end, _)| *end <= self.written) {
                let (_, w) = s.writes.pop_front().expect("front exists");
                self.events.push_back(Event::SendDone { waiter: w, result: Ok(()) });
            }
        }
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > SPARE_KEEP_LIMIT {
                self.out.shrink_to(64 * 1024);
            }
        } else if self.out_pos > 64 * 1024 && self.out_pos * 2 > self.out.len() {
            // Keep the buffer from growing when the peer reads slowly but steadily.
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// True when the connection can take more input: its output is not backed up and not too
    /// many replies await the host's decision.
    pub fn wants_read(&self) -> bool {
        self.queued_output() <= OUT_HIGH_WATER && self.pending.len() < PENDING_HIGH_WATER
    }

    /// Number of replies not yet written (decided or not).
    pub fn pending_replies(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing remains to be said: no output, no reply awaiting a decision.
    pub fn is_idle(&self) -> bool {
        self.queued_output() == 0 && self.pending.is_empty()
    }

    /// The connection closed: a partial message is reported (672) and discarded, and every
    /// waiting synchronous send fails (672).
    pub fn close(&mut self) {
        self.flush_storms(None);
        if self.decoder.in_frame() && self.decoder.frame_len() > 0 {
            let n = self.decoder.frame_len();
            self.error(
                code::INTERRUPTED,
                format!("connection closed while receiving a message: {n} bytes discarded, nothing delivered"),
            );
        }
        self.decoder.reset();
        self.msg.clear();
        self.frame_deadline = None;
        // Messages never answered are forgotten by the window, so that a resend is delivered.
        if let Some(d) = self.dups.clone() {
            for p in self.pending.iter_mut().flat_map(|p| p.parts_mut().iter_mut()) {
                if let Some(k) = p.key.take() {
                    d.finish(&k, self.token, None);
                }
            }
        }
        let lost = Error::new(code::INTERRUPTED, "connection closed before the send completed");
        let waiters: Vec<W> = match self.sends.take() {
            Some(s) => {
                let Sends { acks, writes } = *s;
                acks.into_iter().flatten().chain(writes.into_iter().map(|(_, w)| w)).collect()
            }
            None => Vec::new(),
        };
        for w in waiters {
            self.events.push_back(Event::SendDone { waiter: w, result: Err(lost.clone()) });
        }
    }
}

/// Makes room for `extra` more bytes in a frame's buffer: a larger pooled buffer when there is
/// one (the content so far is copied into it, as a reallocation would copy it, and the old
/// buffer goes to the pool), else a new one of twice the size. One large buffer then serves
/// the large messages of every connection in turn instead of each growing its own.
fn grow(pool: &BufPool, msg: &mut Vec<u8>, extra: usize) {
    let need = msg.len() + extra;
    let mut bigger = pool.take(need.max(msg.capacity() * 2));
    bigger.extend_from_slice(msg);
    let old = std::mem::replace(msg, bigger);
    pool.give(old, Instant::now());
}

/// What frames sent by the server await.
struct Sends<W> {
    /// One entry per data frame sent and awaiting the peer's acknowledgement, oldest first.
    acks: VecDeque<Option<W>>,
    /// Version 1 synchronous sends: done once `written` reaches the offset.
    writes: VecDeque<(u64, W)>,
}

/// A frame found while decoding, acted on once decoding of the chunk is done. Runs of the
/// same refusal are one entry with a count (a storm of bad frames costs no memory per frame).
enum Found {
    Message(Vec<u8>),
    /// Refused frames in a row, each answered with a NAK.
    Refused(Refusal, u64),
    AckIn(bool),
    /// One-byte ACKChar/NAKChar messages in a row while nothing awaited one (not answered).
    StrayAck(u64),
    /// Partial frames abandoned because a new start block arrived (no reply).
    Restarted(u64),
}

/// Appends `f`, or adds its count to the last entry when that is the same kind.
#[inline]
fn push_repeated(found: &mut Vec<Found>, f: Found) {
    match (found.last_mut(), &f) {
        (Some(Found::Refused(a, n)), Found::Refused(b, 1)) if a == b => *n += 1,
        (Some(Found::StrayAck(n)), Found::StrayAck(1)) | (Some(Found::Restarted(n)), Found::Restarted(1)) => *n += 1,
        _ => found.push(f),
    }
}

/// Why the server refused a frame on its own (no host decision is asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Content exceeded MaxMessageSize.
    Oversize,
    /// The frame had no content.
    Empty,
    /// An end block was not followed by the EOL byte.
    BadTrailer,
}

impl Refusal {
    fn describe(self, max: usize) -> String {
        match self {
            Refusal::Oversize => format!("message larger than MaxMessageSize ({max} bytes) refused"),
            Refusal::Empty => "empty message refused".to_string(),
            Refusal::BadTrailer => "end block not followed by the EOL byte; frame refused".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config { max_message_size: 100, log_level: 0, ..Config::default() }
    }

    fn frame(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        codec::encode_frame(FrameChars::default(), p, &mut v);
        v
    }

    fn t0() -> Time {
        Time::at(Instant::now(), 0)
    }

    fn after(t: Time, secs: u64) -> Time {
        Time::at(t.mono + Duration::from_secs(secs), t.unix_secs() + secs)
    }

    fn events(c: &mut Connection<u32>) -> Vec<Event<u32>> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn drain(c: &mut Connection<u32>) -> Vec<u8> {
        let out = c.transmit(Instant::now()).to_vec();
        c.consume_output(out.len(), Instant::now());
        out
    }

    const NAK: Verdict = Verdict::Reject(RejectCode::AE);

    /// A large frame read partly through `direct_input` (as the reactor does for plain
    /// sockets), the end block and the next frame arriving in the same read.
    #[test]
    fn direct_input_decodes_like_handle_input() {
        let mut c = Connection::<u32>::new(Config { log_level: 0, ..Config::default() });
        assert!(c.direct_input(1024).is_none(), "not in a frame");
        let big: Vec<u8> = (0..300_000u32).map(|i| b'A' + (i % 26) as u8).collect();
        let mut wire = frame(&big);
        wire.extend_from_slice(&frame(b"MSH|^~\\&|second"));
        let (head, mut rest) = wire.split_at(100_000);
        c.handle_input(head, t0());
        assert!(events(&mut c).is_empty());
        while !rest.is_empty() {
            let buf = c.direct_input(1 << 16).expect("in a large frame");
            let from = buf.len();
            let n = rest.len().min(buf.capacity() - from).min(70_000);
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            c.direct_input_done(from, t0());
            if !c.in_frame() {
                break;
            }
        }
        if !rest.is_empty() {
            c.handle_input(rest, t0());
        }
        let got: Vec<Vec<u8>> = events(&mut c)
            .into_iter()
            .filter_map(|e| if let Event::Message { data, .. } = e { Some(data) } else { None })
            .collect();
        assert_eq!(got.len(), 2);
        assert!(got[0] == big, "first message intact");
        assert_eq!(got[1], b"MSH|^~\\&|second");
    }

    #[test]
    fn quiescent_connection_releases_its_buffers() {
        let pool = Arc::new(BufPool::new());
        let mut c = Connection::<u32>::new(Config { ack_mode: AckMode::Hl7, log_level: 0, ..Config::default() });
        c.set_pool(pool.clone());
        let msg = format!("MSH|^~\\&|A|B|C|D|2024||ADT^A01|X1|P|2.5\rNTE|1||{}\r", "x".repeat(200_000));
        c.handle_input(&frame(msg.as_bytes()), t0());
        let data = match events(&mut c).pop() {
            Some(Event::Message { data, .. }) => data,
            other => panic!("{other:?}"),
        };
        assert!(!c.release_idle(Instant::now()), "a reply is pending");
        c.decide(1, Verdict::Accept, t0());
        c.recycle(data, Instant::now());
        assert!(pool.bytes() >= 200_000, "a large buffer goes to the pool");
        assert!(c.retained_bytes() > 0);
        assert!(!c.release_idle(Instant::now()), "the ACK is not written yet");
        drain(&mut c);
        assert!(c.release_idle(Instant::now()));
        assert_eq!(c.retained_bytes(), 0);
        // The next message takes the pooled buffer back.
        c.handle_input(&frame(msg.as_bytes()), t0());
        assert!(pool.bytes() < 200_000, "{}", pool.bytes());
    }

    #[test]
    fn replies_leave_in_message_order() {
        let mut c = Connection::<u32>::new(cfg());
        let mut bytes = frame(b"MSH|^~\\&|A");
        bytes.extend(frame(b"MSH|^~\\&|B"));
        c.handle_input(&bytes, t0());
        let ev = events(&mut c);
        assert_eq!(
            ev,
            vec![
                Event::Message { seq: 1, data: b"MSH|^~\\&|A".to_vec(), ack: true, charset: CharsetInfo::default() },
                Event::Message { seq: 2, data: b"MSH|^~\\&|B".to_vec(), ack: true, charset: CharsetInfo::default() },
            ]
        );
        // The second decision alone writes nothing.
        assert!(c.decide(2, NAK, t0()));
        assert!(c.transmit(Instant::now()).is_empty());
        assert!(!c.is_idle());
        assert!(c.decide(1, Verdict::Accept, t0()));
        assert_eq!(drain(&mut c), b"\x0b\x06\x1c\r\x0b\x15\x1c\r");
        assert!(!c.decide(1, Verdict::Accept, t0()), "a seq is decided once");
        assert!(c.is_idle());
    }

    #[test]
    fn metrics_count_frames_answers_and_latency_at_the_write() {
        let mut c = Connection::<u32>::new(cfg());
        let t = t0();
        let mut bytes = frame(b"MSH|^~\\&|A");
        bytes.extend(frame(b"MSH|^~\\&|B"));
        bytes.extend(frame(&[b'x'; 101]));
        c.handle_input(&bytes, t);
        let _ = events(&mut c);
        c.decide(1, Verdict::Accept, t);
        c.decide(2, NAK, t);
        let m = c.metrics().snapshot();
        assert_eq!((m.messages_received, m.messages_accepted, m.messages_refused), (3, 1, 2));
        assert_eq!(m.acks_sent + m.naks_sent, 0, "counted when written, not when decided");
        // Three 4-byte reply frames: the first and half the second written 3 ms later, the
        // rest 30 ms later.
        assert_eq!(c.transmit(t.mono).len(), 12);
        c.consume_output(6, t.mono + Duration::from_millis(3));
        let m = c.metrics().snapshot();
        assert_eq!((m.acks_sent, m.naks_sent, m.ack_latency.count), (1, 0, 1));
        assert_eq!(m.ack_latency.buckets[5], 1, "3 ms is in the 5 ms bucket");
        c.consume_output(6, t.mono + Duration::from_millis(30));
        let m = c.metrics().snapshot();
        assert_eq!((m.acks_sent, m.naks_sent, m.ack_latency.count), (1, 2, 3));
        assert_eq!(m.ack_latency.buckets[8], 2, "30 ms is in the 50 ms bucket");
        assert!((m.ack_latency.sum_seconds - 0.063).abs() < 1e-9);
    }

    #[test]
    fn refusals_have_code_671_and_a_nak() {
        let mut c = Connection::<u32>::new(cfg());
        c.handle_input(b"\x0b\x1c\r", t0());
        c.handle_input(&frame(&[b'x'; 101]), t0());
        c.handle_input(b"\x0babc\x1cX", t0());
        c.handle_input(b"\x0bpartial\x0bnew", t0());
        let codes: Vec<(i32, String)> = events(&mut c)
            .into_iter()
            .map(|e| match e {
                Event::Error(e) => (e.code, e.message),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(codes.len(), 4);
        assert!(codes.iter().all(|(c, _)| *c == code::INVALID_DATA));
        assert!(codes[0].1.contains("empty"));
        assert!(codes[1].1.contains("MaxMessageSize (100 bytes)"));
        assert!(codes[2].1.contains("EOL"));
        assert!(codes[3].1.contains("start block inside a frame"));
        // Three refused frames, three NAKs; a restarted frame gets no reply.
        assert_eq!(drain(&mut c), b"\x0b\x15\x1c\r\x0b\x15\x1c\r\x0b\x15\x1c\r");
        assert!(c.in_frame());
    }

    #[test]
    fn server_refusal_queues_behind_pending() {
        let mut c = Connection::<u32>::new(cfg());
        c.handle_input(&frame(b"MSH|a"), t0());
        c.handle_input(b"\x0b\x1c\r", t0());
        assert!(c.transmit(Instant::now()).is_empty());
        c.decide(1, Verdict::Accept, t0());
        assert_eq!(drain(&mut c), b"\x0b\x06\x1c\r\x0b\x15\x1c\r");
    }

    #[test]
    fn ack_mode_none_sends_nothing_and_asks_no_verdict() {
        let mut c = Connection::<u32>::new(Config { ack_mode: AckMode::None, ..cfg() });
        c.handle_input(&frame(b"MSH|a"), t0());
        c.handle_input(b"\x0b\x1c\r", t0());
        let ev = events(&mut c);
        assert!(matches!(ev[0], Event::Message { ack: false, .. }));
        assert!(!c.decide(1, Verdict::Accept, t0()));
        assert!(c.is_idle());
    }

    #[test]
    fn hl7_ack_answers_with_msa_and_the_reject_code() {
        let mut c = Connection::<u32>::new(Config { ack_mode: AckMode::Hl7, ..Config::default() });
        let msg = b"FHS|^~\\&\rMSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|MSG1|P|2.5\rPID|1";
        c.handle_input(&frame(msg), t0());
        c.handle_input(&frame(msg), t0());
        c.decide(1, Verdict::Accept, t0());
        c.decide(2, Verdict::Reject(RejectCode::AR), t0());
        let out = String::from_utf8_lossy(&drain(&mut c)).to_string();
        assert!(out.starts_with("\x0bMSH|^~\\&|RCV|RF|SND|SF|19700101000000||ACK^A01^ACK|"), "{out}");
        assert!(out.contains("\rMSA|AA|MSG1\r\x1c\r"), "{out:?}");
        assert!(out.contains("\rMSA|AR|MSG1\r\x1c\r"), "{out:?}");
    }

    #[test]
    fn receive_timeout_drops_the_partial_frame_without_sleeping() {
        let mut c = Connection::<u32>::new(Config { receive_timeout: Some(Duration::from_secs(5)), ..cfg() });
        let t = t0();
        assert_eq!(c.poll_timeout(), None);
        c.handle_input(b"\x0bMSH|par", t);
        assert_eq!(c.poll_timeout(), Some(t.mono + Duration::from_secs(5)));
        // More bytes of the same frame do not move its deadline.
        c.handle_input(b"tial", after(t, 3));
        assert_eq!(c.poll_timeout(), Some(t.mono + Duration::from_secs(5)));
        c.handle_timeout(after(t, 4));
        assert!(c.in_frame());
        c.handle_timeout(after(t, 5));
        assert!(!c.in_frame());
        assert_eq!(c.poll_timeout(), None);
        let ev = events(&mut c);
        assert!(matches!(&ev[..], [Event::Error(e)] if e.code == code::INVALID_DATA && e.message.contains("11 bytes")));
        // The rest of the old frame is skipped; the next frame is delivered.
        c.handle_input(b"more\x1c\r", after(t, 6));
        c.handle_input(&frame(b"MSH|next"), after(t, 6));
        let ev = events(&mut c);
        assert!(matches!(&ev[..], [Event::Message { seq: 1, .. }]), "{ev:?}");
    }

    #[test]
    fn a_new_frame_gets_its_own_deadline() {
        let mut c = Connection::<u32>::new(Config { receive_timeout: Some(Duration::from_secs(5)), ..cfg() });
        let t = t0();
        c.handle_input(b"\x0bMSH|a\x1c\r\x0bMSH|b", t);
        c.handle_input(b"\x1c\r", after(t, 2));
        assert_eq!(c.poll_timeout(), None);
        c.handle_input(b"\x0bMSH|c", after(t, 4));
        assert_eq!(c.poll_timeout(), Some(t.mono + Duration::from_secs(9)));
        c.handle_timeout(after(t, 5));
        assert!(c.in_frame());
    }

    #[test]
    fn version_2_send_waits_for_the_peers_ack() {
        let mut c = Connection::<u32>::new(cfg());
        c.send(b"MSH|out1", Some(7)).unwrap();
        c.send(b"MSH|out2", Some(8)).unwrap();
        assert_eq!(drain(&mut c), [frame(b"MSH|out1"), frame(b"MSH|out2")].concat());
        assert_eq!(c.awaiting_acks(), 2);
        assert!(events(&mut c).is_empty(), "written is not acknowledged");
        c.handle_input(b"\x0b\x06\x1c\r", t0());
        // An HL7 ACK counts as the answer while a send awaits one.
        c.handle_input(&frame(b"MSH|^~\\&|R|F|S|F|1||ACK|9|P|2.5\rMSA|AE|2"), t0());
        let ev = events(&mut c);
        assert_eq!(ev.len(), 5, "{ev:?}");
        assert_eq!(ev[0], Event::SendDone { waiter: 7, result: Ok(()) });
        assert_eq!(ev[1], Event::AckIn { accepted: true });
        assert!(matches!(&ev[2], Event::SendDone { waiter: 8, result: Err(e) } if e.code == code::NAK_RECEIVED));
        assert_eq!(ev[3], Event::AckIn { accepted: false });
        assert!(matches!(&ev[4], Event::Error(e) if e.code == code::NAK_RECEIVED));
        // With nothing awaited, an HL7 ACK is a message like any other.
        c.handle_input(&frame(b"MSH|^~\\&|R|F|S|F|1||ACK|9|P|2.5\rMSA|AA|3"), t0());
        assert!(matches!(&events(&mut c)[..], [Event::Message { .. }]));
    }

    #[test]
    fn hl7_acks_beyond_the_sends_awaiting_are_messages() {
        let mut c = Connection::<u32>::new(cfg());
        c.send(b"MSH|out", Some(1)).unwrap();
        drain(&mut c);
        let ack = frame(b"MSH|^~\\&|R|F|S|F|1||ACK|9|P|2.5\rMSA|AA|1");
        c.handle_input(&[ack.clone(), ack].concat(), t0());
        let ev = events(&mut c);
        assert_eq!(ev[0], Event::SendDone { waiter: 1, result: Ok(()) });
        assert_eq!(ev[1], Event::AckIn { accepted: true });
        assert!(matches!(ev[2], Event::Message { seq: 1, .. }), "{ev:?}");
    }

    #[test]
    fn version_1_send_is_done_when_written_and_acks_are_not_reported() {
        let mut c = Connection::<u32>::new(Config { version: 1, ..cfg() });
        c.send(b"MSH|out", Some(3)).unwrap();
        assert!(events(&mut c).is_empty());
        let out = c.transmit(Instant::now()).to_vec();
        c.consume_output(out.len() - 1, Instant::now());
        assert!(events(&mut c).is_empty(), "not all written yet");
        c.consume_output(1, Instant::now());
        assert_eq!(events(&mut c), vec![Event::SendDone { waiter: 3, result: Ok(()) }]);
        // Version 1 awaits no acknowledgement: a one-byte ACK is refused (reported, not answered).
        c.handle_input(b"\x0b\x06\x1c\r", t0());
        assert!(matches!(&events(&mut c)[..], [Event::Error(e)] if e.code == code::INVALID_DATA));
        assert!(drain(&mut c).is_empty());
    }

    // ----- issue 15: one-byte ACK/NAK, error storms -----

    #[test]
    fn a_one_byte_ack_or_nak_with_nothing_awaited_is_refused_not_dropped() {
        let mut c = Connection::<u32>::new(cfg());
        for byte in [0x06u8, 0x15] {
            c.handle_input(&[0x0b, byte, 0x1c, 0x0d], t0());
            let ev = events(&mut c);
            match &ev[..] {
                [Event::Error(e)] => {
                    assert_eq!(e.code, code::INVALID_DATA);
                    assert!(e.message.contains("ACKChar (0x06)") && e.message.contains("nothing"), "{}", e.message);
                }
                other => panic!("{other:?}"),
            }
            // Not answered: a commit byte answered with one could bounce between two peers.
            assert!(drain(&mut c).is_empty());
            c.handle_timeout(after(t0(), 2));
            events(&mut c);
        }
        // While a send awaits its acknowledgement the same bytes are that acknowledgement.
        c.send(b"MSH|out", Some(1)).unwrap();
        drain(&mut c);
        c.handle_input(b"\x0b\x06\x1c\r", t0());
        assert_eq!(
            events(&mut c)[..2],
            [Event::SendDone { waiter: 1, result: Ok(()) }, Event::AckIn { accepted: true }]
        );
        // And the next one, with nothing awaited any more, is refused again.
        c.handle_input(b"\x0b\x06\x1c\r", after(t0(), 5));
        assert!(matches!(&events(&mut c)[..], [Event::Error(e)] if e.code == code::INVALID_DATA));
    }

    #[test]
    fn a_storm_of_start_blocks_is_a_burst_then_one_report_per_interval() {
        let mut c = Connection::<u32>::new(Config { max_message_size: 1 << 20, ..cfg() });
        let t = t0();
        let storm = vec![0x0bu8; 100_000];
        c.handle_input(&storm, t);
        // The first start block opens a frame; each of the others restarts it.
        assert_eq!(c.work(), 99_999);
        let ev = events(&mut c);
        assert_eq!(ev.len(), STORM_BURST as usize, "{ev:?}");
        assert!(ev.iter().all(|e| matches!(e, Event::Error(e) if e.message.starts_with("start block inside a frame"))));
        c.handle_input(&storm, t);
        assert!(events(&mut c).is_empty(), "the rest of the window is counted, not reported");
        // The report comes when the window ends (the driver wakes up for it).
        let end = c.poll_timeout().expect("a deadline for the report");
        assert!(end <= t.mono + STORM_INTERVAL);
        c.handle_timeout(after(t, 1));
        match &events(&mut c)[..] {
            [Event::Error(e)] => {
                assert_eq!(e.code, code::INVALID_DATA);
                assert!(e.message.contains("repeated 199996 times"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        // The driver counts each Error event; the connection counts the rest they stand for.
        assert_eq!(c.metrics().snapshot().errors_with(code::INVALID_DATA), 199_995);
        assert!(c.storm_deadline().is_none());
        // Still storming: the next window has no burst, only its report.
        c.handle_input(&storm[..10], after(t, 1));
        assert!(events(&mut c).is_empty());
        c.handle_timeout(after(t, 2));
        assert!(matches!(&events(&mut c)[..], [Event::Error(e)] if e.message.contains("repeated 10 times")));
        // After a quiet interval the next error is reported at once again.
        c.handle_input(&storm[..1], after(t, 4));
        assert_eq!(events(&mut c).len(), 1);
    }

    #[test]
    fn a_storm_of_empty_frames_gets_every_nak_and_few_errors() {
        let mut c = Connection::<u32>::new(cfg());
        let t = t0();
        c.handle_input(&b"\x0b\x1c\x0d".repeat(20_000), t);
        assert_eq!(c.work(), 20_000);
        let ev = events(&mut c);
        assert_eq!(ev.len(), STORM_BURST as usize, "{:?}", &ev[..ev.len().min(5)]);
        assert_eq!(drain(&mut c), b"\x0b\x15\x1c\r".repeat(20_000), "every frame is answered, in order");
        // A message between two runs keeps its place; the runs are still coalesced.
        c.handle_input(&[b"\x0b\x1c\x0d".repeat(10), frame(b"MSH|x"), b"\x0b\x1c\x0d".repeat(10)].concat(), t);
        assert!(matches!(&events(&mut c)[..], [Event::Message { seq: 1, .. }]));
        c.decide(1, Verdict::Accept, t);
        let nak = b"\x0b\x15\x1c\r".repeat(10);
        assert_eq!(drain(&mut c), [&nak[..], b"\x0b\x06\x1c\r", &nak[..]].concat());
        // Closing reports what the window still holds.
        c.close();
        assert!(matches!(&events(&mut c)[..], [Event::Error(e)] if e.message.contains("repeated 20017 times")));
    }

    #[test]
    fn unframeable_payload_is_refused_and_the_waiter_returned() {
        let mut c = Connection::<u32>::new(cfg());
        let (e, w) = c.send(b"a\x1cb", Some(1)).unwrap_err();
        assert_eq!((e.code, w), (code::INVALID_DATA, Some(1)));
        assert_eq!(c.queued_output(), 0);
    }

    #[test]
    fn close_reports_the_partial_message_and_fails_waiters() {
        let mut c = Connection::<u32>::new(cfg());
        c.send(b"MSH|x", Some(1)).unwrap();
        c.handle_input(b"\x0bMSH|part", t0());
        c.close();
        let ev = events(&mut c);
        assert!(matches!(&ev[0], Event::Error(e) if e.code == code::INTERRUPTED && e.message.contains("8 bytes")));
        assert!(matches!(&ev[1], Event::SendDone { waiter: 1, result: Err(e) } if e.code == code::INTERRUPTED));
    }

    #[test]
    fn rate_limit_paces_output_by_the_second() {
        let mut c = Connection::<u32>::new(Config { max_transfer_rate: 10, ..cfg() });
        c.send(b"0123456789abcdefghij", None).unwrap(); // 23 bytes framed
        let t = Instant::now();
        assert_eq!(c.transmit(t).len(), 10);
        c.consume_output(10, Instant::now());
        assert!(c.transmit(t + Duration::from_millis(500)).is_empty());
        assert!(!c.wants_write());
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(1)));
        c.handle_timeout(Time::at(t + Duration::from_secs(1), 1));
        assert!(c.wants_write());
        assert_eq!(c.transmit(t + Duration::from_secs(1)).len(), 10);
        c.consume_output(10, Instant::now());
        assert!(c.transmit(t + Duration::from_millis(1500)).is_empty());
        assert_eq!(c.transmit(t + Duration::from_secs(2)).len(), 3);
    }

    #[test]
    fn reading_pauses_while_replies_await_decisions() {
        let mut c = Connection::<u32>::new(cfg());
        for _ in 0..PENDING_HIGH_WATER {
            assert!(c.wants_read());
            c.handle_input(&frame(b"MSH|m"), t0());
        }
        assert!(!c.wants_read());
        c.decide(1, Verdict::Accept, t0());
        assert!(c.wants_read());
    }

    #[test]
    fn log_lines_follow_the_level() {
        let mut c = Connection::<u32>::new(Config { log_level: 2, ..cfg() });
        c.handle_input(&frame(b"MSH|m"), t0());
        c.handle_input(b"junk", t0());
        let ev = events(&mut c);
        let logs: Vec<&str> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Log { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(logs, vec!["message 1 received (5 bytes)", "4 bytes outside a frame skipped"]);
    }

    #[test]
    fn settings_change_between_frames_only() {
        let mut c = Connection::<u32>::new(cfg());
        c.handle_input(b"\x0bMSH|a", t0());
        let chars = FrameChars { start: b'<', end: b'>', eol: b'\n' };
        c.reconfigure(Config { chars, ..cfg() });
        c.handle_input(b"\x1c\r", t0());
        assert!(matches!(&events(&mut c)[..], [Event::Message { .. }]));
        c.reconfigure(Config { chars, ..cfg() });
        c.handle_input(b"<MSH|b>\n", t0());
        assert!(matches!(&events(&mut c)[..], [Event::Message { seq: 2, .. }]));
        assert!(drain(&mut c).is_empty(), "nothing decided yet");
        c.decide(1, Verdict::Accept, t0());
        assert_eq!(drain(&mut c), b"<\x06>\n");
    }

    // ----- issue 11: delivery semantics -----

    fn hl7cfg() -> Config {
        Config { ack_mode: AckMode::Hl7, log_level: 1, ..Config::default() }
    }

    fn with_window(cfg: Config, d: &Arc<Duplicates>) -> Connection<u32> {
        let mut c = Connection::new(Config { duplicate_window: 100, ..cfg });
        c.set_duplicates(d.clone());
        c
    }

    fn adt(ctl: &str, extra: &str) -> Vec<u8> {
        format!("MSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|{ctl}|P|2.5{extra}\rPID|1||X\r").into_bytes()
    }

    /// Frames in `out`, without their framing bytes.
    fn frames(out: &[u8]) -> Vec<Vec<u8>> {
        let mut d = Decoder::new(FrameChars::default(), 1 << 20);
        let mut v = Vec::new();
        let mut cur = Vec::new();
        d.feed(out, |ev| match ev {
            DecodeEvent::Start => cur.clear(),
            DecodeEvent::Data(b) => cur.extend_from_slice(b),
            DecodeEvent::End => v.push(std::mem::take(&mut cur)),
            _ => panic!("bad frame"),
        });
        v
    }

    fn seqs(ev: &[Event<u32>]) -> Vec<u64> {
        ev.iter().filter_map(|e| if let Event::Message { seq, .. } = e { Some(*seq) } else { None }).collect()
    }

    #[test]
    fn duplicate_gets_the_original_ack_byte_for_byte_and_is_not_delivered() {
        let d = Arc::new(Duplicates::new(100));
        let mut a = with_window(hl7cfg(), &d);
        let m = adt("C1", "");
        a.handle_input(&frame(&m), t0());
        assert_eq!(seqs(&events(&mut a)), vec![1]);
        a.decide(1, Verdict::Accept, t0());
        let first = frames(&drain(&mut a)).remove(0);
        // A later resend, on another connection, a second later.
        let mut b = with_window(hl7cfg(), &d);
        b.handle_input(&frame(&m), after(t0(), 1));
        let ev = events(&mut b);
        assert!(seqs(&ev).is_empty(), "not delivered: {ev:?}");
        assert!(ev.iter().any(|e| matches!(e, Event::Duplicate { control_id, reply, .. }
            if control_id == "C1" && *reply == first)));
        assert!(ev.iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("duplicate"))));
        assert_eq!(frames(&drain(&mut b)), vec![first]);
        assert_eq!(d.count(), 1);
        // Same MSH-3/4/10, other bytes: delivered and logged as a reused control id.
        b.handle_input(&frame(&adt("C1", "\rNTE|1")), t0());
        let ev = events(&mut b);
        assert_eq!(seqs(&ev), vec![1]);
        assert!(ev.iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("reused"))));
    }

    #[test]
    fn a_refused_message_is_not_remembered() {
        let d = Arc::new(Duplicates::new(100));
        let mut a = with_window(cfg(), &d);
        let m = adt("C2", "");
        a.handle_input(&frame(&m), t0());
        a.decide(1, NAK, t0());
        a.handle_input(&frame(&m), t0());
        assert_eq!(seqs(&events(&mut a)), vec![1, 2], "the resend of a refused message is delivered");
        a.decide(2, Verdict::Accept, t0());
        assert_eq!(drain(&mut a), b"\x0b\x15\x1c\r\x0b\x06\x1c\r");
    }

    #[test]
    fn resend_while_the_original_is_undecided() {
        let d = Arc::new(Duplicates::new(100));
        let mut a = with_window(cfg(), &d);
        let mut b = with_window(cfg(), &d);
        let m = adt("C3", "");
        a.handle_input(&frame(&m), t0());
        a.handle_input(&frame(&m), t0()); // same connection: waits for the original's answer
        assert_eq!(seqs(&events(&mut a)), vec![1]);
        b.handle_input(&frame(&m), t0()); // another connection: refused now
        let ev = events(&mut b);
        assert!(ev.iter().any(|e| matches!(e, Event::Error(e) if e.code == code::DUPLICATE_IN_PROGRESS)));
        assert_eq!(drain(&mut b), b"\x0b\x15\x1c\r");
        a.decide(1, Verdict::Accept, t0());
        assert_eq!(drain(&mut a), b"\x0b\x06\x1c\r\x0b\x06\x1c\r");
        assert!(events(&mut a).iter().any(|e| matches!(e, Event::Duplicate { .. })));
        // A connection that closes with an undecided message releases it.
        let m2 = adt("C4", "");
        b.handle_input(&frame(&m2), t0());
        b.close();
        a.handle_input(&frame(&m2), t0());
        assert_eq!(seqs(&events(&mut a)), vec![2]);
    }

    #[test]
    fn host_reply_bytes_are_sent_and_remembered_when_positive() {
        let d = Arc::new(Duplicates::new(100));
        let mut a = with_window(hl7cfg(), &d);
        let m = adt("C5", "");
        a.handle_input(&frame(&m), t0());
        let mine = b"MSH|^~\\&|RCV|RF|SND|SF|20240101||ACK^A01^ACK|MINE|P|2.5\rMSA|AA|C5\r".to_vec();
        assert!(a.decide_with(1, mine.clone(), t0()));
        assert_eq!(frames(&drain(&mut a)), vec![mine.clone()]);
        a.handle_input(&frame(&m), t0());
        assert_eq!(frames(&drain(&mut a)), vec![mine]);
    }

    #[test]
    fn duplicate_detection_off_delivers_everything() {
        let d = Arc::new(Duplicates::new(0));
        let mut a = Connection::<u32>::new(cfg());
        a.set_duplicates(d);
        let m = adt("C6", "");
        a.handle_input(&frame(&m), t0());
        a.handle_input(&frame(&m), t0());
        assert_eq!(seqs(&events(&mut a)), vec![1, 2]);
    }

    const BATCH: &[u8] = include_bytes!("../tests/data/batch_adt.hl7");

    #[test]
    fn batch_is_split_and_answered_once_mllp() {
        let mut c = Connection::<u32>::new(Config { process_batch: true, log_level: 0, ..Config::default() });
        c.handle_input(&frame(BATCH), t0());
        let ev = events(&mut c);
        assert_eq!(seqs(&ev), vec![1, 2, 3]);
        let datas: Vec<&Vec<u8>> =
            ev.iter().filter_map(|e| if let Event::Message { data, .. } = e { Some(data) } else { None }).collect();
        assert!(datas.iter().all(|d| d.starts_with(b"MSH|") && d.ends_with(b"\r")));
        assert!(String::from_utf8_lossy(datas[1]).contains("B00001"));
        c.decide(1, Verdict::Accept, t0());
        c.decide(3, Verdict::Accept, t0());
        assert!(drain(&mut c).is_empty());
        c.decide(2, Verdict::Accept, t0());
        assert_eq!(drain(&mut c), b"\x0b\x06\x1c\r");
        c.handle_input(&frame(BATCH), t0());
        events(&mut c);
        c.decide(4, Verdict::Accept, t0());
        c.decide(5, NAK, t0());
        c.decide(6, Verdict::Accept, t0());
        assert_eq!(drain(&mut c), b"\x0b\x15\x1c\r", "one refused message: the batch gets a NAK");
    }

    #[test]
    fn batch_acknowledgement_in_hl7_mode() {
        let mut c = Connection::<u32>::new(Config { process_batch: true, ..hl7cfg() });
        c.handle_input(&frame(BATCH), t0());
        events(&mut c);
        c.decide(1, Verdict::Accept, t0());
        c.decide(2, Verdict::Reject(RejectCode::AR), t0());
        c.decide(3, Verdict::Accept, t0());
        let out = frames(&drain(&mut c));
        assert_eq!(out.len(), 1);
        let text = String::from_utf8(out[0].clone()).unwrap();
        let segs: Vec<&str> = text.split('\r').filter(|s| !s.is_empty()).collect();
        let names: Vec<&str> = segs.iter().map(|s| &s[..3]).collect();
        assert_eq!(names, ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "MSH", "MSA", "BTS", "FTS"], "{text}");
        assert!(segs[0].starts_with("FHS|^~\\&|LABADT|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|19700101000000|"));
        assert!(segs[0].ends_with("|FILE001"), "FHS-12 refers to the file's control id: {}", segs[0]);
        assert!(segs[1].ends_with("|BATCH001"));
        assert_eq!(segs[3], "MSA|AA|B00000");
        assert_eq!(segs[5], "MSA|AR|B00001");
        assert_eq!(segs[7], "MSA|AA|B00002");
        assert_eq!(segs[8], "BTS|3");
        assert_eq!(segs[9], "FTS|1");
    }

    #[test]
    fn an_empty_batch_reply_holds_nothing_of_the_previous_reply() {
        // Found by the connection fuzz target's oracle: a batch without messages was answered
        // with the previous reply's bytes in front of its own (`\x15\x06` in MLLP mode).
        for mode in [AckMode::Mllp, AckMode::Hl7] {
            let mut c = Connection::<u32>::new(Config { ack_mode: mode, process_batch: true, ..cfg() });
            c.handle_input(b"\x0b\x1c\r", t0());
            c.handle_input(&frame(b"BHS|^~\\&|S\rBTS|0\r"), t0());
            let out = frames(&drain(&mut c));
            assert_eq!(out.len(), 2);
            match mode {
                AckMode::Mllp => assert_eq!(out, [vec![0x15], vec![0x06]]),
                _ => {
                    assert!(out[1].starts_with(b"BHS|"), "{}", String::from_utf8_lossy(&out[1]));
                    assert!(out[1].ends_with(b"\rBTS|0\r"));
                    assert!(!out[1].windows(3).any(|w| w == b"MSA"), "no acknowledgement of a message");
                }
            }
        }
    }

    #[test]
    fn malformed_batches_are_refused_whole() {
        for bad in [
            &b"BHS|^~\\&|A\rMSH|^~\\&|A||||||ADT^A01|X|P|2.5\r"[..], // no BTS
            b"BHS|^~\\&|A\rMSH|^~\\&|A||||||ADT^A01|X|P|2.5\rBTS|2\r", // count wrong
            b"FHS|^~\\&|A\rBHS|^~\\&|A\rMSH|^~\\&|A||||||ADT^A01|X|P|2.5\rBTS|1\r", // no FTS
            b"BHS|^~\\&|A\rPID|1\rMSH|^~\\&|A||||||ADT^A01|X|P|2.5\rBTS|1\r", // stray segment
            b"FHS|^~\\&|A\rBHS|^~\\&|A\rBTS|0\rFTS|2\r",             // FTS count wrong
        ] {
            let mut c = Connection::<u32>::new(Config { process_batch: true, log_level: 0, ..Config::default() });
            c.handle_input(&frame(bad), t0());
            let ev = events(&mut c);
            assert!(seqs(&ev).is_empty(), "nothing delivered");
            assert!(ev.iter().any(|e| matches!(e, Event::Error(e) if e.code == code::BAD_BATCH)), "{ev:?}");
            assert_eq!(drain(&mut c), b"\x0b\x15\x1c\r");
        }
        // Without ProcessBatch a batch is one message, as before.
        let mut c = Connection::<u32>::new(Config::default());
        c.handle_input(&frame(BATCH), t0());
        assert_eq!(seqs(&events(&mut c)), vec![1]);
        // An empty batch is answered at once.
        let mut c = Connection::<u32>::new(Config { process_batch: true, log_level: 0, ..Config::default() });
        c.handle_input(&frame(b"BHS|^~\\&|A\rBTS|0\r"), t0());
        assert_eq!(drain(&mut c), b"\x0b\x06\x1c\r");
    }

    #[test]
    fn character_sets_are_reported_and_converted_whole() {
        let latin1 = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|L1|P|2.5||||||8859/1\rPID|1||Jos\xE9\r".to_vec();
        let mut c = Connection::<u32>::new(Config { decode_to_utf8: true, ..cfg() });
        // Split in the middle of the message: decoding waits for the whole frame.
        let f = frame(&latin1);
        c.handle_input(&f[..f.len() - 5], t0());
        c.handle_input(&f[f.len() - 5..], t0());
        match &events(&mut c)[..] {
            [Event::Message { data, charset, .. }] => {
                assert!(data.ends_with("José\r".as_bytes()));
                assert_eq!(charset, &CharsetInfo { raw: "8859/1".into(), encoding: "8859/1", decoded: true });
            }
            other => panic!("{other:?}"),
        }
        // A UTF-8 message split inside a two-byte character across reads comes out whole.
        let utf8 = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|U1|P|2.5||||||UNICODE UTF-8\rPID|1||Müller\r".as_bytes();
        let f = frame(utf8);
        let cut = f.iter().position(|&b| b == 0xC3).unwrap() + 1;
        c.handle_input(&f[..cut], t0());
        c.handle_input(&f[cut..], t0());
        match &events(&mut c)[..] {
            [Event::Message { data, charset, .. }] => {
                assert_eq!(data, utf8);
                assert_eq!(charset.encoding, "UNICODE UTF-8");
                assert!(!charset.decoded);
            }
            other => panic!("{other:?}"),
        }
        // Bytes that do not map: refused with 2031, never delivered.
        let bad = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|U2|P|2.5||||||UNICODE UTF-8\rPID|1||M\xFCller\r";
        c.handle_input(&frame(bad), t0());
        let ev = events(&mut c);
        assert!(seqs(&ev).is_empty());
        assert!(ev.iter().any(|e| matches!(e, Event::Error(e) if e.code == code::CHARSET)), "{ev:?}");
        // An unknown MSH-18 is passed through unchanged, with a log line.
        let mut c = Connection::<u32>::new(Config { decode_to_utf8: true, log_level: 1, ..cfg() });
        let odd = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|K1|P|2.5||||||KLINGON\rPID|1||\xFF\r";
        c.handle_input(&frame(odd), t0());
        let ev = events(&mut c);
        assert!(ev.iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("KLINGON"))));
        assert!(ev.iter().any(|e| matches!(e, Event::Message { data, charset, .. }
            if data == odd && charset.raw == "KLINGON" && charset.encoding.is_empty())));
        // DefaultCharset applies when MSH-18 is empty.
        let mut c = Connection::<u32>::new(Config {
            decode_to_utf8: true,
            default_charset: crate::charset::Charset::lookup("8859/15"),
            ..cfg()
        });
        c.handle_input(&frame(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|E1|P|2.5\rNTE|1||\xA4\r"), t0());
        assert!(events(&mut c).iter().any(|e| matches!(e, Event::Message { data, charset, .. }
            if data.ends_with("€\r".as_bytes()) && charset.encoding == "8859/15" && charset.raw.is_empty())));
    }

    #[test]
    fn enhanced_mode_follows_msh_15() {
        // (MSH-15, verdict, expected MSA-1 or None for no reply)
        for (t15, verdict, want) in [
            ("AL", Verdict::Accept, Some("CA")),
            ("AL", Verdict::Reject(RejectCode::AE), Some("CE")),
            ("AL", Verdict::Reject(RejectCode::AR), Some("CR")),
            ("NE", Verdict::Accept, None),
            ("NE", NAK, None),
            ("ER", Verdict::Accept, None),
            ("ER", NAK, Some("CE")),
            ("SU", Verdict::Accept, Some("CA")),
            ("SU", NAK, None),
            // MSH-16 alone makes it enhanced; MSH-15 empty means "always".
            ("", Verdict::Accept, Some("CA")),
        ] {
            let mut c = Connection::<u32>::new(hl7cfg());
            c.handle_input(&frame(&adt("E1", &format!("|||{t15}|AL"))), t0());
            let msg = adt("E1", &format!("|||{t15}|AL"));
            let msh15 = hl7::parse_msh(&msg).unwrap().accept_ack_type.to_vec();
            assert_eq!(msh15, t15.as_bytes());
            c.decide(1, verdict, t0());
            let out = frames(&drain(&mut c));
            match want {
                None => assert!(out.is_empty(), "{t15} {verdict:?}: {out:?}"),
                Some(code) => {
                    let text = String::from_utf8_lossy(&out[0]).to_string();
                    assert!(text.contains(&format!("\rMSA|{code}|E1\r")), "{t15} {verdict:?}: {text}");
                }
            }
            assert!(c.is_idle());
        }
    }

    #[test]
    fn ack_control_ids_are_unique_across_connections() {
        let mut ids = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut c = Connection::<u32>::new(hl7cfg());
            c.handle_input(&frame(&adt("U", "")), t0());
            c.decide(1, Verdict::Accept, t0());
            let out = frames(&drain(&mut c)).remove(0);
            let id = hl7::parse_msh(&out).unwrap().control_id.to_vec();
            assert!(id.len() <= 20, "{}", String::from_utf8_lossy(&id));
            assert!(ids.insert(id), "control ids repeat");
        }
    }
}
