//! The client's properties and Config settings: defaults, parsing and printing.

use std::time::Duration;

use super::sender::SenderConfig;
use super::tls::ClientTlsSettings;
use crate::codec::FrameChars;
use crate::config::{hex, parse_bool, parse_byte, parse_num, parse_version, tf, AckMode};
use crate::error::{code, Error, Result};

/// Every property and Config setting of a client.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSettings {
    /// RemoteHost property: the server's name or address.
    pub remote_host: String,
    /// RemotePort property.
    pub remote_port: u16,
    /// LocalHost property: the local address to connect from ("" = any).
    pub local_host: String,
    /// LocalPort setting: the local port to connect from (0 = any).
    pub local_port: u16,
    /// Version property: 1 or 2.
    pub version: u8,
    /// Timeout property, seconds: connecting, the TLS handshake and each wait for an
    /// acknowledgement (0 = no limit).
    pub timeout: u32,
    /// KeepAlive property (TCPKeepAlive setting).
    pub keep_alive: bool,
    /// KeepAliveTime setting, milliseconds (0 = system default).
    pub keep_alive_time: u32,
    /// KeepAliveInterval setting, milliseconds (0 = system default).
    pub keep_alive_interval: u32,
    /// TcpNoDelay setting (default true: one acknowledgement per message is latency-bound).
    pub tcp_no_delay: bool,
    /// InBufferSize setting: SO_RCVBUF (0 = system default).
    pub in_buffer_size: u32,
    /// OutBufferSize setting: SO_SNDBUF (0 = system default).
    pub out_buffer_size: u32,
    /// Linger setting.
    pub linger: bool,
    /// LingerTime setting, seconds.
    pub linger_time: u32,
    /// ACKChar setting.
    pub ack_char: u8,
    /// NAKChar setting.
    pub nak_char: u8,
    /// StartBlockChar, EndBlockChar and EOLChar settings.
    pub chars: FrameChars,
    /// LogLevel setting, 0–3.
    pub log_level: u8,
    /// AckMode setting; None = from Version (2 → MLLP, 1 → None).
    pub ack_mode: Option<AckMode>,
    /// MaxRetries setting: resends after the first attempt.
    pub max_retries: u32,
    /// RetryDelay setting, milliseconds before the first resend (doubles per resend).
    pub retry_delay: u32,
    /// RetryMaxDelay setting, milliseconds: the longest wait between attempts.
    pub retry_max_delay: u32,
    /// RetryOnNegative setting: NAK, AE, AR, CE and CR are resent like timeouts.
    pub retry_on_negative: bool,
    /// MaxOutstanding setting: messages awaiting their acknowledgement at once.
    pub max_outstanding: u32,
    /// MaxMessageSize setting: the largest acknowledgement accepted.
    pub max_message_size: usize,
    /// The SSL properties and settings.
    pub tls: ClientTlsSettings,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            remote_host: "127.0.0.1".into(),
            remote_port: 0,
            local_host: String::new(),
            local_port: 0,
            version: 2,
            timeout: 10,
            keep_alive: false,
            keep_alive_time: 0,
            keep_alive_interval: 0,
            tcp_no_delay: true,
            in_buffer_size: 0,
            out_buffer_size: 0,
            linger: true,
            linger_time: 0,
            ack_char: 0x06,
            nak_char: 0x15,
            chars: FrameChars::default(),
            log_level: 1,
            ack_mode: None,
            max_retries: 3,
            retry_delay: 500,
            retry_max_delay: 8000,
            retry_on_negative: true,
            max_outstanding: 1,
            max_message_size: 16 << 20,
            tls: ClientTlsSettings::default(),
        }
    }
}

/// Settings the reference's client has that mean nothing here, and why.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    ("FirewallType", "connecting through a SOCKS or HTTP proxy is not supported"),
    ("FirewallHost", "connecting through a SOCKS or HTTP proxy is not supported"),
    ("FirewallPort", "connecting through a SOCKS or HTTP proxy is not supported"),
    ("SSLCheckOCSP", "OCSP is not supported; use SSLCheckCRL with SSLCRLFile"),
    ("UseIPv6", "the address family follows RemoteHost's resolution"),
];

impl ClientSettings {
    /// The acknowledgement mode in effect.
    pub fn effective_ack_mode(&self) -> AckMode {
        self.ack_mode.unwrap_or(if self.version == 1 { AckMode::None } else { AckMode::Mllp })
    }

    /// Timeout as a duration (None: no limit).
    pub fn timeout(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_secs(self.timeout as u64))
    }

    /// The sending protocol's part.
    pub fn sender_config(&self) -> SenderConfig {
        SenderConfig {
            chars: self.chars,
            ack_char: self.ack_char,
            nak_char: self.nak_char,
            ack_mode: self.effective_ack_mode(),
            timeout: self.timeout(),
            max_retries: self.max_retries,
            retry_delay: Duration::from_millis(self.retry_delay as u64),
            retry_max_delay: Duration::from_millis(self.retry_max_delay as u64),
            retry_on_negative: self.retry_on_negative,
            max_outstanding: self.max_outstanding as usize,
            max_message_size: self.max_message_size,
            log_level: self.log_level,
        }
    }

    /// Reads a Config setting by (case-insensitive) name.
    pub fn get(&self, key: &str) -> Result<String> {
        let k = key.trim().to_ascii_lowercase();
        Ok(match k.as_str() {
            "remotehost" => self.remote_host.clone(),
            "remoteport" => self.remote_port.to_string(),
            "localhost" => self.local_host.clone(),
            "localport" => self.local_port.to_string(),
            "version" => self.version.to_string(),
            "timeout" | "connectiontimeout" => self.timeout.to_string(),
            "tcpkeepalive" | "keepalive" => tf(self.keep_alive),
            "keepalivetime" => self.keep_alive_time.to_string(),
            "keepaliveinterval" => self.keep_alive_interval.to_string(),
            "tcpnodelay" => tf(self.tcp_no_delay),
            "inbuffersize" => self.in_buffer_size.to_string(),
            "outbuffersize" => self.out_buffer_size.to_string(),
            "linger" => tf(self.linger),
            "lingertime" => self.linger_time.to_string(),
            "ackchar" => hex(self.ack_char),
            "nakchar" => hex(self.nak_char),
            "startblockchar" => hex(self.chars.start),
            "endblockchar" => hex(self.chars.end),
            "eolchar" => hex(self.chars.eol),
            "loglevel" => self.log_level.to_string(),
            "ackmode" => match self.effective_ack_mode() {
                AckMode::Mllp => "MLLP".into(),
                AckMode::Hl7 => "HL7".into(),
                AckMode::None => "None".into(),
            },
            "maxretries" => self.max_retries.to_string(),
            "retrydelay" => self.retry_delay.to_string(),
            "retrymaxdelay" => self.retry_max_delay.to_string(),
            "retryonnegative" => tf(self.retry_on_negative),
            "maxoutstanding" => self.max_outstanding.to_string(),
            "maxmessagesize" => self.max_message_size.to_string(),
            "buildinfo" => crate::config::build_info(),
            _ => match self.tls.get(key) {
                Some(r) => return r,
                None => return Err(unknown(key)),
            },
        })
    }

    /// Sets a Config setting by (case-insensitive) name; the value is checked here.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key.trim().to_ascii_lowercase();
        let ms = "number of milliseconds";
        match k.as_str() {
            "remotehost" => self.remote_host = value.trim().to_string(),
            "remoteport" => self.remote_port = parse_num(value, "port (0-65535)")?,
            "localhost" => self.local_host = value.trim().to_string(),
            "localport" => self.local_port = parse_num(value, "port (0-65535)")?,
            "version" => self.version = parse_version(value)?,
            "timeout" | "connectiontimeout" => self.timeout = parse_num(value, "number of seconds")?,
            "tcpkeepalive" | "keepalive" => self.keep_alive = parse_bool(value)?,
            "keepalivetime" => {
                self.keep_alive_time = parse_num(value, ms)?;
                self.keep_alive |= self.keep_alive_time > 0;
            }
            "keepaliveinterval" => {
                self.keep_alive_interval = parse_num(value, ms)?;
                self.keep_alive |= self.keep_alive_interval > 0;
            }
            "tcpnodelay" => self.tcp_no_delay = parse_bool(value)?,
            "inbuffersize" => self.in_buffer_size = parse_num(value, "buffer size")?,
            "outbuffersize" => self.out_buffer_size = parse_num(value, "buffer size")?,
            "linger" => self.linger = parse_bool(value)?,
            "lingertime" => self.linger_time = parse_num(value, "number of seconds")?,
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
            "ackmode" => {
                self.ack_mode = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "mllp" => AckMode::Mllp,
                    "hl7" => AckMode::Hl7,
                    "none" => AckMode::None,
                    _ => return Err(Error::new(code::INVALID_VALUE, "AckMode must be MLLP, HL7 or None")),
                })
            }
            "maxretries" => {
                let v: u32 = parse_num(value, "number of resends")?;
                if v > 1000 {
                    return Err(Error::new(code::INVALID_VALUE, "MaxRetries must be at most 1000"));
                }
                self.max_retries = v;
            }
            "retrydelay" => self.retry_delay = parse_num(value, ms)?,
            "retrymaxdelay" => self.retry_max_delay = parse_num(value, ms)?,
            "retryonnegative" => self.retry_on_negative = parse_bool(value)?,
            "maxoutstanding" => {
                let v: u32 = parse_num(value, "message count")?;
                if !(1..=1024).contains(&v) {
                    return Err(Error::new(code::INVALID_VALUE, "MaxOutstanding must be 1 to 1024"));
                }
                self.max_outstanding = v;
            }
            "maxmessagesize" => {
                let v: usize = parse_num(value, "size in bytes")?;
                if v == 0 {
                    return Err(Error::new(code::INVALID_VALUE, "MaxMessageSize must be at least 1"));
                }
                self.max_message_size = v;
            }
            "buildinfo" => return Err(Error::new(code::INVALID_VALUE, "BuildInfo is read-only")),
            _ => match self.tls.set(key, value) {
                Some(r) => return r,
                None => return Err(unknown(key)),
            },
        }
        Ok(())
    }
}

fn unknown(key: &str) -> Error {
    let k = key.trim();
    if let Some((name, why)) = NOT_APPLICABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
        return Error::new(code::NOT_SUPPORTED, format!("{name} is not supported: {why}"));
    }
    Error::new(code::UNKNOWN_SETTING, format!("unknown setting '{k}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trips() {
        let mut s = ClientSettings::default();
        assert_eq!(s.get("AckMode").unwrap(), "MLLP");
        s.set("Version", "1").unwrap();
        assert_eq!(s.get("ackmode").unwrap(), "None", "version 1 expects nothing by default");
        for (k, v, want) in [
            ("AckMode", "hl7", "HL7"),
            ("MaxRetries", "5", "5"),
            ("RetryDelay", "50", "50"),
            ("RetryMaxDelay", "400", "400"),
            ("RetryOnNegative", "no", "False"),
            ("MaxOutstanding", "8", "8"),
            ("Timeout", "3", "3"),
            ("TcpNoDelay", "0", "False"),
            ("StartBlockChar", "0x02", "0x02"),
            ("RemotePort", "2575", "2575"),
        ] {
            s.set(k, v).unwrap();
            assert_eq!(s.get(k).unwrap(), want, "{k}");
        }
        let c = s.sender_config();
        assert_eq!((c.max_retries, c.retry_delay, c.max_outstanding), (5, Duration::from_millis(50), 8));
    }

    #[test]
    fn bad_values_and_unknown_names_are_refused() {
        let mut s = ClientSettings::default();
        assert_eq!(s.set("MaxOutstanding", "0").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("AckMode", "maybe").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("Version", "3").unwrap_err().code, code::INVALID_VALUE);
        assert_eq!(s.set("NoSuchThing", "1").unwrap_err().code, code::UNKNOWN_SETTING);
        assert_eq!(s.get("FirewallHost").unwrap_err().code, code::NOT_SUPPORTED);
    }
}
