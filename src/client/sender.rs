//! The sending side of MLLP, without sockets, threads or clocks: the client's counterpart of
//! [`crate::connection::Connection`], built on the same codec and HL7 reader.
//!
//! Messages go in ([`Sender::queue`]); the driver reports the connection's life
//! ([`Sender::on_connected`], [`Sender::on_disconnected`], [`Sender::on_connect_failed`]),
//! feeds what the server sends ([`Sender::handle_input`]) and the time
//! ([`Sender::handle_timeout`]); out come bytes to write ([`Sender::transmit`]), requests to
//! open or close the connection ([`Sender::wants_connect`], [`Sender::take_close`]), the next
//! deadline ([`Sender::poll_timeout`]) and [`Event`]s.
//!
//! The rules (MLLP release 2 reliable delivery):
//! - at most `max_outstanding` messages (1 by default) await their acknowledgement;
//! - an HL7 acknowledgement answers the outstanding message whose MSH-10 its MSA-2 names, and
//!   no other: one that names none is reported (ACK_MISMATCH) and never matched to the next;
//!   a commit ACK/NAK (which names nothing) answers the oldest outstanding message;
//! - a failed attempt (no acknowledgement within the timeout, a negative one when
//!   `retry_on_negative`, the connection lost, the connection not opened) is retried with the
//!   same bytes up to `max_retries` times, after min(retry_delay × 2^(n−1), retry_max_delay);
//! - after a timeout the connection is closed and reopened before the resend, so that a late
//!   commit acknowledgement (which carries no id) cannot be taken for the resend's or the next
//!   message's;
//! - messages keep their order: the one being retried holds back those queued after it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::{self, DecodeEvent, Decoder, FrameChars};
use crate::config::AckMode;
use crate::error::{code, Error, Result};
use crate::events::LogLevel;
use crate::hl7::{self, AckCode};

/// The kind of an acknowledgement the server sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// HL7 MSA-1 AA, AE, AR, CA, CE or CR.
    Hl7(AckCode),
    /// The MLLP commit ACK byte.
    Ack,
    /// The MLLP commit NAK byte.
    Nak,
}

impl AckKind {
    /// ACK, AA and CA.
    pub fn is_positive(self) -> bool {
        match self {
            AckKind::Hl7(c) => c.is_accept(),
            AckKind::Ack => true,
            AckKind::Nak => false,
        }
    }

    /// "ACK", "NAK", "AA" …
    pub fn name(self) -> &'static str {
        match self {
            AckKind::Ack => "ACK",
            AckKind::Nak => "NAK",
            AckKind::Hl7(c) => std::str::from_utf8(c.as_bytes()).unwrap_or("??"),
        }
    }

    /// The C ABI's number: `MLLP_ACK_AA` 0 … `MLLP_ACK_CR` 5, `MLLP_ACK_ACK` 6, `MLLP_ACK_NAK` 7.
    pub fn to_c(self) -> i32 {
        match self {
            AckKind::Hl7(AckCode::AA) => 0,
            AckKind::Hl7(AckCode::AE) => 1,
            AckKind::Hl7(AckCode::AR) => 2,
            AckKind::Hl7(AckCode::CA) => 3,
            AckKind::Hl7(AckCode::CE) => 4,
            AckKind::Hl7(AckCode::CR) => 5,
            AckKind::Ack => 6,
            AckKind::Nak => 7,
        }
    }

    /// The result code of a negative acknowledgement (0 for a positive one).
    fn result_code(self) -> i32 {
        match self {
            _ if self.is_positive() => code::OK,
            AckKind::Nak => code::NAK_RECEIVED,
            AckKind::Hl7(AckCode::AR | AckCode::CR) => code::APP_REJECT,
            _ => code::APP_ERROR,
        }
    }
}

/// An acknowledgement received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Its kind.
    pub kind: AckKind,
    /// MSA-2 ("" for a commit ACK/NAK).
    pub control_id: String,
    /// MSA-3 and the ERR segments' text ("" when none).
    pub text: String,
    /// The acknowledgement as received, unframed.
    pub data: Vec<u8>,
}

/// How one message ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The id [`Sender::queue`] gave it.
    pub id: u64,
    /// Its MSH-10 ("" when it has none).
    pub control_id: String,
    /// Ok when positively acknowledged (or written, with AckMode None); else why not.
    pub result: Result<()>,
    /// The kind of the last acknowledgement it got, if any.
    pub ack: Option<AckKind>,
    /// Attempts made: 1 + resends.
    pub attempts: u32,
}

/// What the sender reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// An acknowledgement arrived; `message` is the id of the message it answered, None when
    /// it answered none (late, mismatched, unsolicited).
    AckIn {
        /// The message answered.
        message: Option<u64>,
        /// What it said.
        ack: Ack,
    },
    /// A message is finished, one way or the other.
    Done(Outcome),
    /// Something went wrong that is not (yet) a message's outcome.
    Error(Error),
    /// A log line.
    Log {
        /// Its level.
        level: LogLevel,
        /// The text.
        message: String,
    },
}

/// The settings that govern sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Framing bytes.
    pub chars: FrameChars,
    /// The commit ACK byte.
    pub ack_char: u8,
    /// The commit NAK byte.
    pub nak_char: u8,
    /// What acknowledgement is expected: the commit block, an HL7 ACK, or nothing.
    pub ack_mode: AckMode,
    /// Wait for each attempt's acknowledgement (None: forever).
    pub timeout: Option<Duration>,
    /// Resends after the first attempt.
    pub max_retries: u32,
    /// Wait before the first resend; doubles per resend.
    pub retry_delay: Duration,
    /// The longest wait between attempts.
    pub retry_max_delay: Duration,
    /// Negative acknowledgements are retried (else they end the message at once).
    pub retry_on_negative: bool,
    /// Messages awaiting their acknowledgement at once.
    pub max_outstanding: usize,
    /// Largest acknowledgement accepted.
    pub max_message_size: usize,
    /// Log lines above this level are not produced.
    pub log_level: u8,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            chars: FrameChars::default(),
            ack_char: 0x06,
            nak_char: 0x15,
            ack_mode: AckMode::Mllp,
            timeout: Some(Duration::from_secs(10)),
            max_retries: 3,
            retry_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(8),
            retry_on_negative: true,
            max_outstanding: 1,
            max_message_size: 1 << 20,
            log_level: 1,
        }
    }
}

struct Msg {
    id: u64,
    data: Vec<u8>,
    control_id: String,
    attempts: u32,
    /// Not sent again before this (the backoff after a failed attempt).
    not_before: Option<Instant>,
    /// The current attempt fails at this instant.
    deadline: Option<Instant>,
    /// With AckMode None: done once the output offset passes this.
    written_at: u64,
    last_ack: Option<AckKind>,
}

/// The sending protocol of one client.
pub struct Sender {
    cfg: SenderConfig,
    decoder: Decoder,
    frame: Vec<u8>,
    next_id: u64,
    /// Waiting to be written, in order (a message being retried first).
    queue: VecDeque<Msg>,
    /// Written, awaiting the acknowledgement (oldest first).
    inflight: VecDeque<Msg>,
    connected: bool,
    /// Not before this is the connection opened again.
    reconnect_at: Option<Instant>,
    close: Option<Error>,
    out: Vec<u8>,
    out_pos: usize,
    /// Output bytes consumed so far (AckMode None completes on these).
    written: u64,
    queued_bytes: u64,
    events: VecDeque<Event>,
    /// Frames found in one chunk of input (kept to avoid an allocation per read).
    found: Vec<std::result::Result<Vec<u8>, &'static str>>,
}

impl Sender {
    /// A sender governed by `cfg`, not connected.
    pub fn new(cfg: SenderConfig) -> Self {
        Sender {
            decoder: Decoder::new(cfg.chars, cfg.max_message_size),
            cfg,
            frame: Vec::new(),
            next_id: 1,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            connected: false,
            reconnect_at: None,
            close: None,
            out: Vec::new(),
            out_pos: 0,
            written: 0,
            queued_bytes: 0,
            events: VecDeque::new(),
            found: Vec::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// Applies changed settings (framing changes take effect at the next connection).
    pub fn reconfigure(&mut self, cfg: SenderConfig) {
        if !self.connected && !self.decoder.in_frame() {
            self.decoder.set_chars(cfg.chars);
        }
        self.decoder.set_max_message_size(cfg.max_message_size);
        self.cfg = cfg;
    }

    fn log(&mut self, level: LogLevel, message: impl FnOnce() -> String) {
        if self.cfg.log_level >= level.as_u8() {
            self.events.push_back(Event::Log { level, message: message() });
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Messages queued or awaiting an acknowledgement.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    /// True while message `id` is not finished.
    pub fn is_pending(&self, id: u64) -> bool {
        self.queue.iter().chain(&self.inflight).any(|m| m.id == id)
    }

    /// True between [`on_connected`](Self::on_connected) and the connection's end.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Queues a message (unframed, segments ending in CR) and returns its id. Refused
    /// (INVALID_ARGUMENT) when empty or holding a framing byte; with AckMode HL7 it must carry
    /// an MSH-10 to match the acknowledgement by.
    pub fn queue(&mut self, data: Vec<u8>, now: Instant) -> Result<u64> {
        if data.is_empty() {
            return Err(Error::new(code::INVALID_ARGUMENT, "the message is empty"));
        }
        if !codec::can_frame(self.cfg.chars, &data) {
            return Err(Error::new(
                code::INVALID_ARGUMENT,
                "the message contains a start or end block byte and cannot be framed",
            ));
        }
        let control_id =
            hl7::parse_msh(&data).map(|m| String::from_utf8_lossy(m.control_id).trim().to_string()).unwrap_or_default();
        if self.cfg.ack_mode == AckMode::Hl7 && control_id.is_empty() {
            return Err(Error::new(
                code::INVALID_ARGUMENT,
                "AckMode=HL7 matches acknowledgements by MSH-10, and this message has none",
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Msg {
            id,
            data,
            control_id,
            attempts: 0,
            not_before: None,
            deadline: None,
            written_at: 0,
            last_ack: None,
        });
        self.pump(now);
        Ok(id)
    }

    /// The connection is open (and secure, for TLS): messages awaiting an acknowledgement from
    /// an earlier connection are sent again first.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected = true;
        self.reconnect_at = None;
        self.decoder.reset();
        self.decoder.set_chars(self.cfg.chars);
        self.frame.clear();
        self.pump(now);
    }

    /// The connection ended (`why`: what ended it). Each message awaiting its acknowledgement
    /// failed an attempt.
    pub fn on_disconnected(&mut self, why: Error, now: Instant) {
        if !self.connected {
            return;
        }
        self.connected = false;
        self.close = None;
        self.out.clear();
        self.out_pos = 0;
        self.decoder.reset();
        self.frame.clear();
        let lost: Vec<Msg> = self.inflight.drain(..).collect();
        for m in lost.into_iter().rev() {
            let e = Error::new(code::DROPPED, format!("connection lost before the acknowledgement ({})", why.message));
            self.attempt_failed(m, e, now, true);
        }
        if self.pending() > 0 {
            self.reconnect_at = Some(now + self.head_delay());
        }
    }

    /// Opening the connection failed: the next message's attempt failed. A failure that no
    /// retry can mend (`permanent`: a bad setting, a certificate or key that cannot be used)
    /// ends every queued message at once.
    pub fn on_connect_failed(&mut self, why: Error, now: Instant, permanent: bool) {
        if permanent {
            let all: Vec<Msg> = self.queue.drain(..).collect();
            for mut m in all {
                m.attempts += 1;
                self.finish(m, Err(why.clone()));
            }
        } else if let Some(mut m) = self.queue.pop_front() {
            m.attempts += 1;
            self.attempt_failed(m, why, now, true);
        }
        self.reconnect_at = (self.pending() > 0).then(|| now + self.head_delay());
    }

    /// True when the driver should open the connection now: not connected, a message waits
    /// and no backoff holds it.
    pub fn wants_connect(&self, now: Instant) -> bool {
        !self.connected
            && !self.queue.is_empty()
            && due(self.reconnect_at, now)
            && due(self.queue.front().and_then(|m| m.not_before), now)
    }

    /// A request to close the connection (after an acknowledgement timeout), with the reason.
    pub fn take_close(&mut self) -> Option<Error> {
        self.close.take()
    }

    /// Bytes to write.
    pub fn transmit(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`transmit`](Self::transmit) were written.
    pub fn consume_output(&mut self, n: usize, now: Instant) {
        self.out_pos += n;
        self.written += n as u64;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        if self.cfg.ack_mode == AckMode::None {
            while self.inflight.front().is_some_and(|m| m.written_at <= self.written) {
                let m = self.inflight.pop_front().expect("checked");
                self.finish(m, Ok(()));
            }
            self.pump(now);
        }
    }

    /// Moves queued messages into the output while the window allows.
    fn pump(&mut self, now: Instant) {
        if !self.connected || self.close.is_some() {
            return;
        }
        while self.inflight.len() < self.cfg.max_outstanding.max(1) {
            let ready = self.queue.front().is_some_and(|m| due(m.not_before, now));
            if !ready {
                break;
            }
            let mut m = self.queue.pop_front().expect("checked");
            m.attempts += 1;
            m.not_before = None;
            let before = self.out.len();
            codec::encode_frame(self.cfg.chars, &m.data, &mut self.out);
            self.queued_bytes += (self.out.len() - before) as u64;
            m.written_at = self.queued_bytes;
            m.deadline = match self.cfg.ack_mode {
                AckMode::None => None,
                _ => self.cfg.timeout.map(|t| now + t),
            };
            if self.cfg.log_level >= LogLevel::Verbose.as_u8() {
                let (id, attempt, len) = (&m.control_id, m.attempts, m.data.len());
                let message = format!("message '{id}' sent ({len} bytes, attempt {attempt})");
                self.events.push_back(Event::Log { level: LogLevel::Verbose, message });
            }
            self.inflight.push_back(m);
        }
    }

    /// Bytes from the server.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        let mut frames = std::mem::take(&mut self.found);
        let Sender { decoder, frame, .. } = self;
        decoder.feed(data, |ev| match ev {
            DecodeEvent::Start => frame.clear(),
            DecodeEvent::Data(d) => frame.extend_from_slice(d),
            DecodeEvent::End => frames.push(Ok(std::mem::take(frame))),
            DecodeEvent::Oversize => frames.push(Err("an acknowledgement larger than MaxMessageSize")),
            DecodeEvent::Aborted(_) => frames.push(Err("a malformed acknowledgement frame")),
        });
        for f in frames.drain(..) {
            match f {
                Ok(frame) => self.on_frame(frame, now),
                Err(what) => self.events.push_back(Event::Error(Error::new(
                    code::INVALID_DATA,
                    format!("the server sent {what}: ignored"),
                ))),
            }
        }
        self.found = frames;
        self.pump(now);
    }

    fn on_frame(&mut self, frame: Vec<u8>, now: Instant) {
        let cfg = self.cfg;
        let ack = if frame.len() == 1 && (frame[0] == cfg.ack_char || frame[0] == cfg.nak_char) {
            let kind = if frame[0] == cfg.ack_char { AckKind::Ack } else { AckKind::Nak };
            Ack { kind, control_id: String::new(), text: String::new(), data: frame }
        } else {
            match hl7::parse_ack(&frame) {
                Some(hl7::AckFields { code: Some(c), control_id, text }) => Ack {
                    kind: AckKind::Hl7(c),
                    control_id: String::from_utf8_lossy(control_id).into_owned(),
                    text,
                    data: frame,
                },
                _ => {
                    let n = frame.len();
                    self.events.push_back(Event::Error(Error::new(
                        code::INVALID_DATA,
                        format!("the server sent a {n}-byte frame that is not an acknowledgement (no MSA segment with a valid MSA-1): ignored"),
                    )));
                    return;
                }
            }
        };
        // A commit block names no message: it answers the oldest. An HL7 ACK answers the one
        // its MSA-2 names.
        // With AckMode=HL7 a commit block (which names no message) is never taken for one.
        let at = match (ack.kind, cfg.ack_mode) {
            (_, AckMode::None) | (AckKind::Ack | AckKind::Nak, AckMode::Hl7) => None,
            (AckKind::Ack | AckKind::Nak, _) => (!self.inflight.is_empty()).then_some(0),
            (AckKind::Hl7(_), _) => self.inflight.iter().position(|m| m.control_id == ack.control_id),
        };
        let Some(at) = at else {
            let (kind, id) = (ack.kind.name(), ack.control_id.clone());
            let e = if matches!(ack.kind, AckKind::Ack | AckKind::Nak) && cfg.ack_mode == AckMode::Hl7 {
                format!("commit {kind} received while AckMode=HL7 expects an HL7 acknowledgement naming the message: ignored")
            } else if self.inflight.is_empty() {
                format!("{kind} acknowledgement for '{id}' arrived while no message awaits one (late or unsolicited): ignored")
            } else {
                let want: Vec<&str> = self.inflight.iter().map(|m| m.control_id.as_str()).collect();
                format!(
                    "{kind} acknowledgement for '{id}' matches no outstanding message (awaiting '{}'): ignored",
                    want.join("', '")
                )
            };
            self.events.push_back(Event::AckIn { message: None, ack });
            self.events.push_back(Event::Error(Error::new(code::ACK_MISMATCH, e)));
            return;
        };
        let mut m = self.inflight.remove(at).expect("index found");
        m.last_ack = Some(ack.kind);
        let kind = ack.kind;
        let text = ack.text.clone();
        self.events.push_back(Event::AckIn { message: Some(m.id), ack });
        if kind.is_positive() {
            return self.finish(m, Ok(()));
        }
        let what = match kind {
            AckKind::Nak => "negative commit acknowledgement (NAK)".to_string(),
            k if text.is_empty() => k.name().to_string(),
            k => format!("{}: {text}", k.name()),
        };
        let e = Error::new(kind.result_code(), format!("message '{}' answered with {what}", m.control_id));
        let retry = cfg.retry_on_negative;
        self.attempt_failed(m, e, now, retry);
    }

    /// One attempt of `m` failed with `e` (attempts already counted): resend after the backoff
    /// when `retry` and retries are left, else finish it.
    fn attempt_failed(&mut self, mut m: Msg, e: Error, now: Instant, retry: bool) {
        if retry && m.attempts <= self.cfg.max_retries {
            let delay = self.delay(m.attempts);
            let (id, n, ms) = (m.control_id.clone(), m.attempts, delay.as_millis());
            let why = e.message.clone();
            self.log(LogLevel::Info, || format!("message '{id}' attempt {n} failed ({why}); resent in {ms} ms"));
            m.not_before = Some(now + delay);
            m.deadline = None;
            self.queue.push_front(m);
        } else {
            self.finish(m, Err(e));
        }
    }

    fn finish(&mut self, m: Msg, result: Result<()>) {
        let level = if result.is_ok() { LogLevel::Verbose } else { LogLevel::Info };
        if self.cfg.log_level >= level.as_u8() {
            let (id, n) = (&m.control_id, m.attempts);
            let message = match &result {
                Ok(()) => format!("message '{id}' delivered (attempts: {n})"),
                Err(e) => format!("message '{id}' failed after {n} attempts: {}", e.message),
            };
            self.events.push_back(Event::Log { level, message });
        }
        self.events.push_back(Event::Done(Outcome {
            id: m.id,
            control_id: m.control_id,
            result,
            ack: m.last_ack,
            attempts: m.attempts,
        }));
    }

    /// The wait before attempt `attempts + 1`.
    fn delay(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
        self.cfg.retry_delay.saturating_mul(factor).min(self.cfg.retry_max_delay)
    }

    fn head_delay(&self) -> Duration {
        self.queue.front().map_or(self.cfg.retry_delay, |m| self.delay(m.attempts.max(1)))
    }

    /// The earliest instant the driver must call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let acks = self.inflight.iter().filter_map(|m| m.deadline).min();
        let next = self.queue.front().and_then(|m| m.not_before);
        let reconnect = if self.connected { None } else { self.reconnect_at.filter(|_| !self.queue.is_empty()) };
        [acks, next, reconnect].into_iter().flatten().min()
    }

    /// Acts on deadlines passed at `now`: an acknowledgement not received in time fails the
    /// attempt and closes the connection; a backoff ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.inflight.iter().any(|m| m.deadline.is_some_and(|d| d <= now)) {
            let secs = self.cfg.timeout.map_or(0.0, |t| t.as_secs_f64());
            let ids: Vec<String> = self.inflight.iter().map(|m| m.control_id.clone()).collect();
            // Every outstanding message is resent on a fresh connection; the ones that did not
            // time out lose nothing but their place.
            let expired: Vec<Msg> = self.inflight.drain(..).collect();
            for m in expired.into_iter().rev() {
                let e = Error::new(
                    code::ACK_TIMEOUT,
                    format!("no acknowledgement for message '{}' within {secs} s", m.control_id),
                );
                self.attempt_failed(m, e, now, true);
            }
            self.close = Some(Error::new(
                code::ACK_TIMEOUT,
                format!("no acknowledgement within {secs} s for '{}': connection closed", ids.join("', '")),
            ));
            self.out.clear();
            self.out_pos = 0;
        }
        self.pump(now);
    }

    /// Ends every message not yet finished with `e` (the client is closed).
    pub fn abandon(&mut self, e: Error) {
        let all: Vec<Msg> = self.inflight.drain(..).chain(self.queue.drain(..)).collect();
        for m in all {
            self.finish(m, Err(e.clone()));
        }
    }
}

/// True when `t` is unset or has passed.
fn due(t: Option<Instant>, now: Instant) -> bool {
    t.map_or(true, |t| t <= now)
}

#[cfg(test)]
mod tests;
