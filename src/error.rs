//! Result codes and the error type.
//!
//! Where the reference component defines a code (670–672, the 1xx–3xx component codes, the
//! Winsock-style socket numbers 10004–11003) that number is used, so hosts ported from it keep
//! their error handling. Conditions the reference does not name get codes 2000–2099.

use std::fmt;
use std::io;

/// Every result code the library returns or reports through the Error event.
#[allow(missing_docs)]
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// Received a negative acknowledgement.
    pub const NAK_RECEIVED: i32 = 670;
    /// Data was invalid: a timeout occurred or the message block was improperly formatted.
    pub const INVALID_DATA: i32 = 671;
    /// Connection interrupted: a party disconnected while transferring data.
    pub const INTERRUPTED: i32 = 672;
    /// You cannot change the LocalPort at this time.
    pub const CANNOT_CHANGE_LOCAL_PORT: i32 = 106;
    /// You cannot change the LocalHost at this time.
    pub const CANNOT_CHANGE_LOCAL_HOST: i32 = 107;
    /// Operation would block.
    pub const WOULD_BLOCK: i32 = 135;
    /// Timeout.
    pub const TIMEOUT: i32 = 201;
    /// Action impossible in the component's present state.
    pub const BAD_STATE: i32 = 211;
    /// Action impossible while not connected.
    pub const NOT_CONNECTED: i32 = 212;
    /// Action impossible while listening.
    pub const LISTENING: i32 = 213;
    /// Could not open file.
    pub const CANNOT_OPEN_FILE: i32 = 303;
    /// Connection dropped by remote host.
    pub const DROPPED: i32 = 1120;

    /// A required pointer or argument was NULL or out of range.
    pub const INVALID_ARGUMENT: i32 = 2001;
    /// No connection has that id (it never existed or has closed).
    pub const NO_SUCH_CONNECTION: i32 = 2002;
    /// The setting exists in the reference but has no meaning for this server.
    pub const NOT_SUPPORTED: i32 = 2003;
    /// The setting name is unknown.
    pub const UNKNOWN_SETTING: i32 = 2004;
    /// The value given for a setting or property is not valid.
    pub const INVALID_VALUE: i32 = 2005;
    /// The call would wait for the reactor thread but was made from that thread (inside a callback).
    pub const REENTRANT: i32 = 2006;
    /// A panic was caught at the C boundary.
    pub const PANIC: i32 = 2007;
    /// The caller's buffer is too small; the needed size was written to the length argument.
    pub const BUFFER_TOO_SMALL: i32 = 2008;
    /// A file or stream operation failed.
    pub const IO: i32 = 2009;
    /// The server has been shut down and freed its reactor.
    pub const SHUT_DOWN: i32 = 2010;
    /// A synchronous send was interrupted by Interrupt.
    pub const SEND_INTERRUPTED: i32 = 2011;
    /// The maximum number of connections is reached.
    pub const TOO_MANY_CONNECTIONS: i32 = 2012;
    /// A certificate or key could not be loaded or used (wrong password, key mismatch,
    /// expired, no private key, bad format).
    pub const CERTIFICATE: i32 = 2020;
    /// The TLS handshake failed or did not finish in time.
    pub const TLS_HANDSHAKE: i32 = 2021;
    /// The client's certificate was refused (SSLClientAuthentication).
    pub const TLS_CLIENT_REJECTED: i32 = 2022;
}

/// An error: a result code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// One of the codes in [`code`] or a socket error number (10004–11003).
    pub code: i32,
    /// What went wrong, for people.
    pub message: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }

    /// Maps an I/O error to the reference's socket error numbers where one exists.
    pub fn from_io(err: &io::Error, context: &str) -> Self {
        let code = err.raw_os_error().map(socket_code).unwrap_or(code::IO);
        Error::new(code, format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Maps a POSIX errno to the reference's Winsock-style number (10000 + n), keeping the
/// reference's numbering so hosts that switch on 10048 ("address in use") keep working.
pub fn socket_code(errno: i32) -> i32 {
    match errno {
        libc::EINTR => 10004,
        libc::EBADF => 10009,
        libc::EACCES | libc::EPERM => 10013,
        libc::EFAULT => 10014,
        libc::EINVAL => 10022,
        libc::EMFILE | libc::ENFILE => 10024,
        libc::EWOULDBLOCK => 10035,
        libc::EINPROGRESS => 10036,
        libc::EALREADY => 10037,
        libc::ENOTSOCK => 10038,
        libc::EDESTADDRREQ => 10039,
        libc::EMSGSIZE => 10040,
        libc::EPROTOTYPE => 10041,
        libc::ENOPROTOOPT => 10042,
        libc::EPROTONOSUPPORT => 10043,
        libc::ESOCKTNOSUPPORT => 10044,
        libc::EOPNOTSUPP => 10045,
        libc::EPFNOSUPPORT => 10046,
        libc::EAFNOSUPPORT => 10047,
        libc::EADDRINUSE => 10048,
        libc::EADDRNOTAVAIL => 10049,
        libc::ENETDOWN => 10050,
        libc::ENETUNREACH => 10051,
        libc::ENETRESET => 10052,
        libc::ECONNABORTED => 10053,
        libc::ECONNRESET | libc::EPIPE => 10054,
        libc::ENOBUFS | libc::ENOMEM => 10055,
        libc::EISCONN => 10056,
        libc::ENOTCONN => 10057,
        libc::ESHUTDOWN => 10058,
        libc::ETIMEDOUT => 10060,
        libc::ECONNREFUSED => 10061,
        libc::ELOOP => 10062,
        libc::ENAMETOOLONG => 10063,
        libc::EHOSTDOWN => 10064,
        libc::EHOSTUNREACH => 10065,
        _ => code::IO,
    }
}

/// A description of a result code, as the reference words it where it has one.
pub fn describe(code: i32) -> &'static str {
    match code {
        code::OK => "OK",
        code::NAK_RECEIVED => "Received a negative acknowledgement",
        code::INVALID_DATA => "Data was invalid: a timeout occurred or the message block was improperly formatted",
        code::INTERRUPTED => "Connection interrupted: a party disconnected while transferring data",
        code::CANNOT_CHANGE_LOCAL_PORT => "You cannot change the LocalPort at this time",
        code::CANNOT_CHANGE_LOCAL_HOST => "You cannot change the LocalHost at this time",
        code::WOULD_BLOCK => "Operation would block",
        code::TIMEOUT | 301 => "Timeout",
        code::BAD_STATE => "Action impossible in the component's present state",
        code::NOT_CONNECTED => "Action impossible while not connected",
        code::LISTENING => "Action impossible while listening",
        code::CANNOT_OPEN_FILE => "Could not open file",
        code::DROPPED => "Connection dropped by remote host",
        code::INVALID_ARGUMENT => "Invalid argument (NULL pointer or value out of range)",
        code::NO_SUCH_CONNECTION => "No such connection",
        code::NOT_SUPPORTED => "Setting not supported by this server",
        code::UNKNOWN_SETTING => "Unknown setting",
        code::INVALID_VALUE => "Invalid value",
        code::REENTRANT => "Call not allowed from inside a callback on the reactor thread",
        code::PANIC => "Internal error (panic caught at the C boundary)",
        code::BUFFER_TOO_SMALL => "Buffer too small",
        code::IO => "I/O error",
        code::SHUT_DOWN => "The server is shut down",
        code::SEND_INTERRUPTED => "Synchronous send interrupted",
        code::TOO_MANY_CONNECTIONS => "Too many connections",
        code::CERTIFICATE => "Certificate error",
        code::TLS_HANDSHAKE => "TLS handshake failed",
        code::TLS_CLIENT_REJECTED => "Client certificate refused",
        10004 => "Interrupted system call",
        10009 => "Bad file number",
        10013 => "Access denied",
        10014 => "Bad address",
        10022 => "Invalid argument",
        10024 => "Too many open files",
        10035 => "Operation would block",
        10036 => "Operation now in progress",
        10037 => "Operation already in progress",
        10038 => "Socket operation on nonsocket",
        10039 => "Destination address required",
        10040 => "Message is too long",
        10041 => "Protocol wrong type for socket",
        10042 => "Bad protocol option",
        10043 => "Protocol is not supported",
        10044 => "Socket type is not supported",
        10045 => "Operation is not supported on socket",
        10046 => "Protocol family is not supported",
        10047 => "Address family is not supported by protocol family",
        10048 => "Address already in use",
        10049 => "Cannot assign requested address",
        10050 => "Network is down",
        10051 => "Network is unreachable",
        10052 => "Net dropped connection or reset",
        10053 => "Software caused connection abort",
        10054 => "Connection reset by peer",
        10055 => "No buffer space available",
        10056 => "Socket is already connected",
        10057 => "Socket is not connected",
        10058 => "Cannot send after socket shutdown",
        10060 => "Connection timed out",
        10061 => "Connection refused",
        10062 => "Too many levels of symbolic links",
        10063 => "File name is too long",
        10064 => "Host is down",
        10065 => "No route to host",
        11001 => "Host not found",
        _ => "Unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_reference_numbers() {
        assert_eq!(socket_code(libc::EADDRINUSE), 10048);
        assert_eq!(socket_code(libc::ECONNRESET), 10054);
        assert_eq!(describe(10048), "Address already in use");
        assert!(describe(671).contains("invalid"));
    }

    #[test]
    fn io_error_keeps_context() {
        let e = Error::from_io(&io::Error::from_raw_os_error(libc::EADDRINUSE), "bind 127.0.0.1:1");
        assert_eq!(e.code, 10048);
        assert!(e.message.starts_with("bind 127.0.0.1:1"));
    }
}
