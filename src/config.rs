//! Properties and Config settings: their defaults, parsing and printing.
//!
//! `Settings` is a plain value. The server keeps the current one behind a lock and hands the
//! reactor a fresh snapshot when it changes, so a setting changed at run time applies to the
//! next read, accept or message without the reactor taking a lock per message.

use crate::codec::FrameChars;
use crate::error::{code, Error, Result};

/// How a received message is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// An MLLP commit block `<SB><ACK|NAK><EB><EOL>`.
    Mllp,
    /// An HL7 v2 application acknowledgement (MSH + MSA), framed in MLLP.
    Hl7,
    /// Nothing is sent back.
    None,
}

impl AckMode {
    fn name(self) -> &'static str {
        match self {
            AckMode::Mllp => "MLLP",
            AckMode::Hl7 => "HL7",
            AckMode::None => "None",
        }
    }
}

/// Where events are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventMode {
    /// Callbacks run on the reactor thread as events happen (the default).
    Thread,
    /// Events are queued and delivered inside `do_events` on the caller's thread.
    DoEvents,
}

/// Every property and Config setting of a server.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// DefaultTimeout property: initial Timeout of new connections, seconds (0 = asynchronous).
    pub default_timeout: u32,
    /// KeepAlive property (also the TCPKeepAlive setting): SO_KEEPALIVE on accepted sockets.
    pub keep_alive: bool,
    /// LocalHost property: the interface to listen on ("" = all interfaces).
    pub local_host: String,
    /// LocalPort property: the port to listen on (0 = chosen by the OS).
    pub local_port: u16,
    /// Version property: MLLP version 1 or 2.
    pub version: u8,
    /// ACKChar setting.
    pub ack_char: u8,
    /// NAKChar setting.
    pub nak_char: u8,
    /// StartBlockChar, EndBlockChar and EOLChar settings.
    pub chars: FrameChars,
    /// LogLevel setting, 0–3.
    pub log_level: u8,
    /// ReceiveTimeout setting, seconds from a start block to its end (0 = no limit).
    pub receive_timeout: u32,
    /// KeepAliveTime setting, milliseconds (0 = system default).
    pub keep_alive_time: u32,
    /// KeepAliveInterval setting, milliseconds (0 = system default).
    pub keep_alive_interval: u32,
    /// Linger setting.
    pub linger: bool,
    /// LingerTime setting, seconds.
    pub linger_time: u32,
    /// TcpNoDelay setting.
    pub tcp_no_delay: bool,
    /// InBufferSize setting: SO_RCVBUF (0 = system default), applied when listening starts.
    pub in_buffer_size: u32,
    /// OutBufferSize setting: SO_SNDBUF (0 = system default), applied when listening starts.
    pub out_buffer_size: u32,
    /// UseIPv6 setting: 0 IPv4 only, 1 IPv6 only, 2 IPv6 with IPv4 fallback.
    pub use_ipv6: u8,
    /// MaxTransferRate setting: outbound bytes per second per connection (0 = no limit).
    pub max_transfer_rate: u64,
    /// AbsoluteTimeout setting: Timeout counts from the start of an operation, not from the last progress.
    pub absolute_timeout: bool,
    /// CloseStreamAfterTransfer setting: close (release) a connection's streams after a transfer.
    pub close_stream_after_transfer: bool,
    /// KeepOutputData setting: OutputData keeps the last message received (when no output
    /// stream or file takes it). False frees a message's buffer for reuse once it is delivered.
    pub keep_output_data: bool,
    /// MaxMessageSize setting: largest message content accepted, bytes.
    pub max_message_size: usize,
    /// MaxConnections setting: most simultaneous connections (0 = derived from the
    /// descriptor limit: RLIMIT_NOFILE minus a reserve of max(64, limit/8) descriptors).
    pub max_connections: u32,
    /// MaxBufferedBytes setting: the server-wide bound on partial-message bytes buffered
    /// across all connections; past it the connections holding the most are closed (2013).
    pub max_buffered_bytes: u64,
    /// IdleTimeout setting: seconds without traffic after which a connection is closed
    /// (201; 0 = off). A connection whose replies await the host's decision is not idle.
    pub idle_timeout: u32,
    /// AckMode setting; `None` = derived from Version (2 → MLLP, 1 → None).
    pub ack_mode: Option<AckMode>,
    /// EventMode setting.
    pub event_mode: EventMode,
    /// DuplicateWindow setting: accepted messages remembered for duplicate detection (0 = off).
    pub duplicate_window: u32,
    /// ProcessBatch setting: FHS/BHS frames are split into their messages.
    pub process_batch: bool,
    /// DefaultCharset setting: the character set of messages whose MSH-18 is empty ("" =
    /// ASCII-compatible pass-through), normalised.
    pub default_charset: String,
    /// DecodeToUTF8 setting: messages are handed to the host converted to UTF-8.
    pub decode_to_utf8: bool,
    /// ProxyProtocol setting: the PROXY protocol header every new connection must start with
    /// (None, V1, V2 or Any), read before TLS and MLLP.
    pub proxy_protocol: crate::proxy::ProxyMode,
    /// ProxyHeaderTimeout setting: seconds a new connection has to deliver its whole PROXY
    /// header (at least 1).
    pub proxy_header_timeout: u32,
    /// The SSL properties and settings.
    pub tls: crate::tls::TlsSettings,
}

/// Default MaxBufferedBytes: 1 GiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 1 << 30;

/// Default MaxMessageSize: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_timeout: 0,
            keep_alive: false,
            local_host: String::new(),
            local_port: 0,
            version: 2,
            ack_char: 0x06,
            nak_char: 0x15,
            chars: FrameChars::default(),
            log_level: 1,
            receive_timeout: 60,
            keep_alive_time: 0,
            keep_alive_interval: 0,
            linger: true,
            linger_time: 0,
            // Acknowledgements are small writes; Nagle's algorithm would hold them back.
            tcp_no_delay: true,
            in_buffer_size: 0,
            out_buffer_size: 0,
            use_ipv6: 0,
            max_transfer_rate: 0,
            absolute_timeout: false,
            close_stream_after_transfer: true,
            keep_output_data: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 0,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            idle_timeout: 0,
            ack_mode: None,
            event_mode: EventMode::Thread,
            duplicate_window: 0,
            process_batch: false,
            default_charset: String::new(),
            decode_to_utf8: false,
            proxy_protocol: crate::proxy::ProxyMode::None,
            proxy_header_timeout: 5,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

/// Settings of the reference that have no meaning for an MLLP server, with the reason.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    ("ConnectionTimeout", "a server does not open outgoing connections"),
    ("FirewallAutoDetect", "a listening server does not connect through a firewall or proxy"),
    ("FirewallHost", "a listening server does not connect through a firewall or proxy"),
    ("FirewallListener", "SOCKS binding is for the reference's TCPClient only"),
    ("FirewallPassword", "a listening server does not connect through a firewall or proxy"),
    ("FirewallPort", "a listening server does not connect through a firewall or proxy"),
    ("FirewallType", "a listening server does not connect through a firewall or proxy"),
    ("FirewallUser", "a listening server does not connect through a firewall or proxy"),
    ("FirewallData", "a listening server does not connect through a firewall or proxy"),
    ("ProxyExceptionsList", "a listening server does not use a proxy"),
    ("UseNTLMv2", "MLLP has no NTLM authentication"),
    ("MaxLineLength", "the server has no line-oriented DataIn event; MaxMessageSize bounds input"),
    ("GUIAvailable", "there is no Windows message loop; use EventMode=DoEvents"),
    ("LicenseInfo", "the library needs no license"),
    ("MaskSensitiveData", "the library never logs passwords or payloads"),
    ("UseDaemonThreads", "Java-only; bindings decide how the reactor thread is attached"),
    ("UseFIPSCompliantAPI", "no FIPS-certified provider is available"),
    ("UseInternalSecurityAPI", "there is one TLS implementation (rustls)"),
    ("SSLContextProtocol", "Java-only JSSE setting"),
    ("SSLTrustManagerFactoryAlgorithm", "Java-only JSSE setting"),
    ("SSLServerCACerts", "a server does not validate a server certificate"),
    ("TLS12SignatureAlgorithms", "client-side check of a server certificate"),
    ("SSLIncludeCertChain", "SSLServerAuthentication is a client-side event"),
    ("SSLCheckCRL", "it checks the server's own certificate, which a server does not verify"),
    ("SSLCheckOCSP", "it checks the server's own certificate, which a server does not verify"),
    (
        "SSLCipherStrength",
        "choose suites with SSLEnabledCipherSuites; every suite rustls offers is 128-bit or stronger",
    ),
    ("SSLEnableRenegotiation", "rustls never renegotiates (TLS 1.3 has no renegotiation)"),
    ("TLS12SupportedGroups", "rustls offers X25519, P-256 and P-384 and picks the group itself"),
    ("TLS13KeyShareGroups", "key shares are chosen by the client; rustls picks the group"),
    ("TLS13SupportedGroups", "rustls offers X25519, P-256 and P-384 and picks the group itself"),
    ("TLS13SignatureAlgorithms", "a client-side restriction on the server certificate's signature"),
];

/// The build description returned by the BuildInfo setting.
pub fn build_info() -> String {
    format!(
        "mllp {} (Rust core, {} {}; mio reactor)",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Parses a boolean as the reference does: True/False, 1/0, Yes/No, any case.
pub fn parse_bool(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::new(code::INVALID_VALUE, format!("'{v}' is not a boolean (True/False, 1/0, Yes/No)"))),
    }
}

/// Parses a single byte given as `0x0B`, `0B` hex with prefix, or decimal `11`.
pub fn parse_byte(v: &str) -> Result<u8> {
    let t = v.trim();
    let parsed = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u8::from_str_radix(hex, 16).ok()
    } else {
        t.parse::<u8>().ok()
    };
    parsed.ok_or_else(|| Error::new(code::INVALID_VALUE, format!("'{v}' is not a byte (0x00-0xFF or 0-255)")))
}

pub(crate) fn parse_num<T: std::str::FromStr>(v: &str, what: &str) -> Result<T> {
    v.trim().parse::<T>().map_err(|_| Error::new(code::INVALID_VALUE, format!("'{v}' is not a valid {what}")))
}

pub(crate) fn hex(b: u8) -> String {
    format!("0x{b:02X}")
}

pub(crate) fn tf(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

impl Settings {
    /// The acknowledgement mode in effect: the AckMode setting, or MLLP for version 2 and
    /// None for version 1 when AckMode was never set.
    pub fn effective_ack_mode(&self) -> AckMode {
        self.ack_mode.unwrap_or(if self.version == 1 { AckMode::None } else { AckMode::Mllp })
    }

    /// Reads a Config setting by (case-insensitive) name.
    pub fn get(&self, key: &str) -> Result<String> {
        let k = key.trim().to_ascii_lowercase();
        Ok(match k.as_str() {
            "ackchar" => hex(self.ack_char),
            "nakchar" => hex(self.nak_char),
            "startblockchar" => hex(self.chars.start),
            "endblockchar" => hex(self.chars.end),
            "eolchar" => hex(self.chars.eol),
            "loglevel" => self.log_level.to_string(),
            "receivetimeout" => self.receive_timeout.to_string(),
            "keepalivetime" => self.keep_alive_time.to_string(),
            "keepaliveinterval" => self.keep_alive_interval.to_string(),
            "tcpkeepalive" | "keepalive" => tf(self.keep_alive),
            "linger" => tf(self.linger),
            "lingertime" => self.linger_time.to_string(),
            "tcpnodelay" => tf(self.tcp_no_delay),
            "inbuffersize" => self.in_buffer_size.to_string(),
            "outbuffersize" => self.out_buffer_size.to_string(),
            "useipv6" => self.use_ipv6.to_string(),
            "maxtransferrate" => self.max_transfer_rate.to_string(),
            "absolutetimeout" => tf(self.absolute_timeout),
            "closestreamaftertransfer" => tf(self.close_stream_after_transfer),
            "keepoutputdata" => tf(self.keep_output_data),
            "buildinfo" => build_info(),
            "localhost" => self.local_host.clone(),
            "localport" => self.local_port.to_string(),
            "defaulttimeout" => self.default_timeout.to_string(),
            "version" => self.version.to_string(),
            "maxmessagesize" => self.max_message_size.to_string(),
            "maxconnections" => self.max_connections.to_string(),
            "maxbufferedbytes" => self.max_buffered_bytes.to_string(),
            "idletimeout" => self.idle_timeout.to_string(),
            "ackmode" => self.effective_ack_mode().name().to_string(),
            "duplicatewindow" => self.duplicate_window.to_string(),
            "processbatch" => tf(self.process_batch),
            "defaultcharset" => self.default_charset.clone(),
            "decodetoutf8" => tf(self.decode_to_utf8),
            "proxyprotocol" => self.proxy_protocol.name().to_string(),
            "proxyheadertimeout" => self.proxy_header_timeout.to_string(),
            "eventmode" => match self.event_mode {
                EventMode::Thread => "Thread".into(),
                EventMode::DoEvents => "DoEvents".into(),
            },
            _ => match self.tls.get(key) {
                Some(r) => return r,
                None => return Err(unknown_or_unsupported(key)),
            },
        })
    }

    /// Sets a Config setting by (case-insensitive) name. Settings that only make sense
    /// before listening (LocalHost, LocalPort, UseIPv6, EventMode) are checked by the server.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key.trim().to_ascii_lowercase();
        match k.as_str() {
            "ackchar" => self.ack_char = parse_byte(value)?,
            "nakchar" => self.nak_char = parse_byte(value)?,
            "startblockchar" => self.chars.start = parse_byte(value)?,
            "endblockchar" => self.chars.end = parse_byte(value)?,
            "eolchar" => self.chars.eol = parse_byte(value)?,
            "loglevel" => {
                let l: u8 = parse_num(value, "log level (0-3)")?;
                if l > 3 {
                    return Err(Error::new(code::INVALID_VALUE, "LogLevel must be 0, 1, 2 or 3"));
                }
                self.log_level = l;
            }
            "receivetimeout" => self.receive_timeout = parse_num(value, "number of seconds")?,
            "keepalivetime" => {
                self.keep_alive_time = parse_num(value, "number of milliseconds")?;
                // The reference: setting it turns TCPKeepAlive on.
                self.keep_alive |= self.keep_alive_time > 0;
            }
            "keepaliveinterval" => {
                self.keep_alive_interval = parse_num(value, "number of milliseconds")?;
                self.keep_alive |= self.keep_alive_interval > 0;
            }
            "tcpkeepalive" | "keepalive" => self.keep_alive = parse_bool(value)?,
            "linger" => self.linger = parse_bool(value)?,
            "lingertime" => self.linger_time = parse_num(value, "number of seconds")?,
            "tcpnodelay" => self.tcp_no_delay = parse_bool(value)?,
            "inbuffersize" => self.in_buffer_size = parse_num(value, "buffer size")?,
            "outbuffersize" => self.out_buffer_size = parse_num(value, "buffer size")?,
            "useipv6" => {
                let v: u8 = parse_num(value, "UseIPv6 value (0, 1 or 2)")?;
                if v > 2 {
                    return Err(Error::new(code::INVALID_VALUE, "UseIPv6 must be 0, 1 or 2"));
                }
                self.use_ipv6 = v;
            }
            "maxtransferrate" => self.max_transfer_rate = parse_num(value, "rate in bytes per second")?,
            "absolutetimeout" => self.absolute_timeout = parse_bool(value)?,
            "closestreamaftertransfer" => self.close_stream_after_transfer = parse_bool(value)?,
            "keepoutputdata" => self.keep_output_data = parse_bool(value)?,
            "buildinfo" => return Err(Error::new(code::INVALID_VALUE, "BuildInfo is read-only")),
            "localhost" => self.local_host = value.trim().to_string(),
            "localport" => self.local_port = parse_num(value, "port (0-65535)")?,
            "defaulttimeout" => self.default_timeout = parse_num(value, "number of seconds")?,
            "version" => self.version = parse_version(value)?,
            "maxmessagesize" => {
                let v: usize = parse_num(value, "size in bytes")?;
                if v == 0 {
                    return Err(Error::new(code::INVALID_VALUE, "MaxMessageSize must be at least 1"));
                }
                self.max_message_size = v;
            }
            "maxconnections" => self.max_connections = parse_num(value, "connection count")?,
            "maxbufferedbytes" => {
                let v: u64 = parse_num(value, "size in bytes")?;
                if v == 0 {
                    return Err(Error::new(code::INVALID_VALUE, "MaxBufferedBytes must be at least 1"));
                }
                self.max_buffered_bytes = v;
            }
            "idletimeout" => self.idle_timeout = parse_num(value, "number of seconds")?,
            "bufferedbytes" => return Err(Error::new(code::INVALID_VALUE, "BufferedBytes is read-only")),
            "connectionlimit" => return Err(Error::new(code::INVALID_VALUE, "ConnectionLimit is read-only")),
            "duplicatewindow" => {
                let v: u32 = parse_num(value, "number of messages")?;
                if v > crate::dedupe::MAX_WINDOW {
                    return Err(Error::new(
                        code::INVALID_VALUE,
                        format!("DuplicateWindow must be at most {}", crate::dedupe::MAX_WINDOW),
                    ));
                }
                self.duplicate_window = v;
            }
            "processbatch" => self.process_batch = parse_bool(value)?,
            "defaultcharset" => {
                let v = value.trim();
                self.default_charset = if v.is_empty() {
                    String::new()
                } else {
                    match crate::charset::Charset::lookup(v) {
                        Some(c) => c.name.to_string(),
                        None => {
                            return Err(Error::new(
                                code::INVALID_VALUE,
                                format!("DefaultCharset '{v}' is not a character set this library knows (HL7 table 0211 names such as ASCII, 8859/1, UNICODE UTF-8)"),
                            ))
                        }
                    }
                };
            }
            "decodetoutf8" => self.decode_to_utf8 = parse_bool(value)?,
            "proxyprotocol" => {
                self.proxy_protocol = crate::proxy::ProxyMode::parse(value)
                    .ok_or_else(|| Error::new(code::INVALID_VALUE, "ProxyProtocol must be None, V1, V2 or Any"))?
            }
            "proxyheadertimeout" => {
                let v: u32 = parse_num(value, "number of seconds")?;
                if v == 0 {
                    // A connection must never wait for its header without a deadline.
                    return Err(Error::new(code::INVALID_VALUE, "ProxyHeaderTimeout must be at least 1 second"));
                }
                self.proxy_header_timeout = v;
            }
            "duplicatecount" => return Err(Error::new(code::INVALID_VALUE, "DuplicateCount is read-only")),
            "ackmode" => {
                self.ack_mode = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "mllp" => AckMode::Mllp,
                    "hl7" => AckMode::Hl7,
                    "none" => AckMode::None,
                    _ => return Err(Error::new(code::INVALID_VALUE, "AckMode must be MLLP, HL7 or None")),
                })
            }
            "eventmode" => {
                self.event_mode = match value.trim().to_ascii_lowercase().as_str() {
                    "thread" => EventMode::Thread,
                    "doevents" => EventMode::DoEvents,
                    _ => return Err(Error::new(code::INVALID_VALUE, "EventMode must be Thread or DoEvents")),
                }
            }
            _ => match self.tls.set(key, value) {
                Some(r) => return r,
                None => return Err(unknown_or_unsupported(key)),
            },
        }
        Ok(())
    }
}

/// Parses the Version property: 1 or 2.
pub fn parse_version(value: &str) -> Result<u8> {
    match value.trim() {
        "1" => Ok(1),
        "2" => Ok(2),
        _ => Err(Error::new(code::INVALID_VALUE, "Version must be 1 or 2")),
    }
}

pub(crate) fn unknown_or_unsupported(key: &str) -> Error {
    let k = key.trim();
    if let Some((name, why)) = NOT_APPLICABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
        return Error::new(code::NOT_SUPPORTED, format!("{name} is not supported: {why}"));
    }
    Error::new(code::UNKNOWN_SETTING, format!("unknown setting '{k}'"))
}

/// Splits a Config string into a key and, for a write, a value: `"KEY=VALUE"` or `"KEY"`.
pub fn split_config(s: &str) -> (&str, Option<&str>) {
    match s.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v)),
        None => (s.trim(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference() {
        let s = Settings::default();
        assert_eq!(s.get("ACKChar").unwrap(), "0x06");
        assert_eq!(s.get("nakchar").unwrap(), "0x15");
        assert_eq!(s.get("StartBlockChar").unwrap(), "0x0B");
        assert_eq!(s.get("EndBlockChar").unwrap(), "0x1C");
        assert_eq!(s.get("EOLChar").unwrap(), "0x0D");
        assert_eq!(s.get("LogLevel").unwrap(), "1");
        assert_eq!(s.get("Linger").unwrap(), "True");
        assert_eq!(s.get("CloseStreamAfterTransfer").unwrap(), "True");
        assert_eq!(s.get("UseIPv6").unwrap(), "0");
        assert_eq!(s.get("MaxMessageSize").unwrap(), (64 * 1024 * 1024).to_string());
        assert_eq!(s.get("AckMode").unwrap(), "MLLP");
        assert_eq!(s.get("ProxyProtocol").unwrap(), "None");
        assert_eq!(s.get("ProxyHeaderTimeout").unwrap(), "5");
        assert!(s.get("BuildInfo").unwrap().starts_with("mllp "));
    }

    #[test]
    fn set_then_get_round_trips() {
        let mut s = Settings::default();
        for (k, v, want) in [
            ("StartBlockChar", "0x02", "0x02"),
            ("endblockchar", "3", "0x03"),
            ("LogLevel", "3", "3"),
            ("ReceiveTimeout", "2", "2"),
            ("TcpNoDelay", "no", "False"),
            ("Linger", "0", "False"),
            ("LingerTime", "5", "5"),
            ("InBufferSize", "65536", "65536"),
            ("OutBufferSize", "65536", "65536"),
            ("MaxTransferRate", "1000", "1000"),
            ("AbsoluteTimeout", "yes", "True"),
            ("MaxMessageSize", "1024", "1024"),
            ("MaxConnections", "10", "10"),
            ("MaxBufferedBytes", "1048576", "1048576"),
            ("IdleTimeout", "30", "30"),
            ("AckMode", "hl7", "HL7"),
            ("EventMode", "doevents", "DoEvents"),
            ("ProxyProtocol", "v2", "V2"),
            ("proxyprotocol", "ANY", "Any"),
            ("ProxyProtocol", "none", "None"),
            ("ProxyHeaderTimeout", "2", "2"),
        ] {
            s.set(k, v).unwrap();
            assert_eq!(s.get(k).unwrap(), want, "{k}");
        }
    }

    #[test]
    fn keepalive_time_turns_keepalive_on() {
        let mut s = Settings::default();
        assert_eq!(s.get("TCPKeepAlive").unwrap(), "False");
        s.set("KeepAliveTime", "5000").unwrap();
        assert_eq!(s.get("TCPKeepAlive").unwrap(), "True");
    }

    #[test]
    fn version_one_defaults_to_no_ack() {
        let mut s = Settings::default();
        s.set("Version", "1").unwrap();
        assert_eq!(s.effective_ack_mode(), AckMode::None);
        s.set("AckMode", "HL7").unwrap();
        assert_eq!(s.effective_ack_mode(), AckMode::Hl7);
    }

    #[test]
    fn bad_values_and_names_are_errors() {
        let mut s = Settings::default();
        assert_eq!(s.set("ACKChar", "0x100").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("MaxBufferedBytes", "0").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("BufferedBytes", "5").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.get("MaxBufferedBytes").unwrap(), (1u64 << 30).to_string());
        assert_eq!(s.get("IdleTimeout").unwrap(), "0");
        assert_eq!(s.set("LogLevel", "4").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("Linger", "maybe").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("Version", "3").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("NoSuchThing", "1").unwrap_err().code, code::UNKNOWN_SETTING);
        assert_eq!(s.set("ProxyProtocol", "v3").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("ProxyHeaderTimeout", "0").unwrap_err().code, code::INVALID_VALUE);
        let e = s.set("FirewallHost", "proxy").unwrap_err();
        assert_eq!(e.code, code::NOT_SUPPORTED);
        assert!(e.message.contains("FirewallHost"));
        assert_eq!(s.get("UseNTLMv2").unwrap_err().code, code::NOT_SUPPORTED);
        assert_eq!(s.get("sslenabledprotocols").unwrap(), "15360");
        assert_eq!(s.get("SSLCheckOCSP").unwrap_err().code, code::NOT_SUPPORTED);
        assert_eq!(s.set("SSLEnabledProtocols", "192").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn split_config_reads_and_writes() {
        assert_eq!(split_config("LogLevel=2"), ("LogLevel", Some("2")));
        assert_eq!(split_config(" LogLevel "), ("LogLevel", None));
        assert_eq!(split_config("SSLClientCACerts=a=b"), ("SSLClientCACerts", Some("a=b")));
    }
}
