//! Result codes and the error type.
//!
//! Where the reference component defines a code (670–672, the 1xx–3xx component codes, the
//! Winsock-style socket numbers 10004–11003) that number is used, so hosts ported from it keep
//! their error handling. Conditions the reference does not name get codes 2000–2099.

use std::ffi::CStr;
use std::fmt;
use std::io;

/// Defines the result codes once: each entry gives the Rust name (`code::NAME`, and the C
/// constant `MLLP_ERR_NAME`, `MLLP_OK` for `OK`), the number, and the description returned by
/// [`describe`] and `mllp_error_description`. `others` lists numbers that are described but
/// have no name of their own (socket errors, reference aliases).
///
/// From the one table the macro generates the `code` constants, the lookup behind
/// [`describe`] and [`describe_c`] (the same text as `&str` and NUL-terminated, both in static
/// storage), and `NAMED_CODES`, which an ffi test compares with `include/mllp.h`. A number
/// listed twice is an unreachable match arm, which `-D warnings` rejects.
macro_rules! codes {
    (
        $( $(#[doc = $doc:literal])+ $name:ident = $value:literal, $text:literal; )+
        others:
        $( $ovalue:literal, $otext:literal; )+
    ) => {
        /// Every result code the library returns or reports through the Error event.
        pub mod code {
            $( $(#[doc = $doc])+ pub const $name: i32 = $value; )+
        }

        /// The named codes: (name, number), in table order.
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) const NAMED_CODES: &[(&str, i32)] = &[ $( (stringify!($name), $value) ),+ ];

        /// Every number in the table, named or not (the metrics count errors per code of it).
        pub(crate) const TABLE_CODES: &[i32] = &[ $( $value, )+ $( $ovalue, )+ ];

        /// The description of a code, as Rust and as C text.
        fn description(code: i32) -> &'static Description {
            match code {
                $( $value => description!($text), )+
                $( $ovalue => description!($otext), )+
                _ => description!("Unknown error"),
            }
        }
    };
}

/// A description in static storage, as `&str` and as a NUL-terminated `&CStr`, both built at
/// compile time from one literal.
struct Description {
    text: &'static str,
    c_text: &'static CStr,
}

macro_rules! description {
    ($text:literal) => {{
        static D: Description = Description {
            text: $text,
            c_text: match CStr::from_bytes_with_nul(concat!($text, "\0").as_bytes()) {
                Ok(c) => c,
                Err(_) => panic!("a description contains a NUL byte"),
            },
        };
        &D
    }};
}

codes! {
    /// Success.
    OK = 0, "OK";
    /// Received a negative acknowledgement.
    NAK_RECEIVED = 670, "Received a negative acknowledgement";
    /// Data was invalid: a timeout occurred or the message block was improperly formatted.
    INVALID_DATA = 671, "Data was invalid: a timeout occurred or the message block was improperly formatted";
    /// Connection interrupted: a party disconnected while transferring data.
    INTERRUPTED = 672, "Connection interrupted: a party disconnected while transferring data";
    /// You cannot change the LocalPort at this time.
    CANNOT_CHANGE_LOCAL_PORT = 106, "You cannot change the LocalPort at this time";
    /// You cannot change the LocalHost at this time.
    CANNOT_CHANGE_LOCAL_HOST = 107, "You cannot change the LocalHost at this time";
    /// Operation would block.
    WOULD_BLOCK = 135, "Operation would block";
    /// Timeout.
    TIMEOUT = 201, "Timeout";
    /// Action impossible in the component's present state.
    BAD_STATE = 211, "Action impossible in the component's present state";
    /// Action impossible while not connected.
    NOT_CONNECTED = 212, "Action impossible while not connected";
    /// Action impossible while listening.
    LISTENING = 213, "Action impossible while listening";
    /// Could not open file.
    CANNOT_OPEN_FILE = 303, "Could not open file";
    /// Connection dropped by remote host.
    DROPPED = 1120, "Connection dropped by remote host";

    /// A required pointer or argument was NULL or out of range.
    INVALID_ARGUMENT = 2001, "Invalid argument (NULL pointer or value out of range)";
    /// No connection has that id (it never existed or has closed).
    NO_SUCH_CONNECTION = 2002, "No such connection";
    /// The setting exists in the reference but has no meaning for this server.
    NOT_SUPPORTED = 2003, "Setting not supported by this server";
    /// The setting name is unknown.
    UNKNOWN_SETTING = 2004, "Unknown setting";
    /// The value given for a setting or property is not valid.
    INVALID_VALUE = 2005, "Invalid value";
    /// The call would wait for the reactor thread but was made from that thread (inside a callback).
    REENTRANT = 2006, "Call not allowed from inside a callback on the reactor thread";
    /// A panic was caught at the C boundary.
    PANIC = 2007, "Internal error (panic caught at the C boundary)";
    /// The caller's buffer is too small; the needed size was written to the length argument.
    BUFFER_TOO_SMALL = 2008, "Buffer too small";
    /// A file or stream operation failed.
    IO = 2009, "I/O error";
    /// The server has been shut down and freed its reactor.
    SHUT_DOWN = 2010, "The server is shut down";
    /// A synchronous send was interrupted by Interrupt.
    SEND_INTERRUPTED = 2011, "Synchronous send interrupted";
    /// The maximum number of connections is reached.
    TOO_MANY_CONNECTIONS = 2012, "Too many connections";
    /// A connection was closed because the server-wide budget for buffered input
    /// (MaxBufferedBytes) was spent and it held the most partial-message data.
    MEMORY_BUDGET = 2013, "Buffered-input budget exceeded (MaxBufferedBytes)";
    /// A certificate or key could not be loaded or used (wrong password, key mismatch,
    /// expired, no private key, bad format).
    CERTIFICATE = 2020, "Certificate error";
    /// The TLS handshake failed or did not finish in time.
    TLS_HANDSHAKE = 2021, "TLS handshake failed";
    /// The client's certificate was refused (SSLClientAuthentication).
    TLS_CLIENT_REJECTED = 2022, "Client certificate refused";
    /// The server's certificate was refused: verification failed (unknown CA, wrong name,
    /// expired, revoked) and SSLServerAuthentication did not override it.
    TLS_SERVER_REJECTED = 2023, "Server certificate refused";
    /// A batch (FHS/BHS frame) could not be split: no BTS or FTS, counts wrong, stray segments.
    BAD_BATCH = 2030, "Malformed batch";
    /// A message could not be converted from its character set (DecodeToUTF8).
    CHARSET = 2031, "Character set conversion failed";
    /// A resent message arrived while its original was still awaiting its answer elsewhere.
    DUPLICATE_IN_PROGRESS = 2032, "A copy of this message is still being processed";
    /// The client got no acknowledgement within Timeout (after its retries).
    ACK_TIMEOUT = 2040, "Timeout waiting for the acknowledgement";
    /// The receiver answered with MSA-1 AE or CE (after the client's retries).
    APP_ERROR = 2041, "The receiver answered AE or CE (application error)";
    /// The receiver answered with MSA-1 AR or CR (after the client's retries).
    APP_REJECT = 2042, "The receiver answered AR or CR (application reject)";
    /// An HL7 acknowledgement whose MSA-2 names no message awaiting one (late, or for another message).
    ACK_MISMATCH = 2043, "Acknowledgement for another message";
    /// A connection did not start with a valid PROXY protocol header (ProxyProtocol): wrong
    /// signature, malformed, too long, closed early or not complete within ProxyHeaderTimeout.
    PROXY_HEADER = 2050, "Missing or invalid PROXY protocol header";

    others:
    // The reference's other timeout number.
    301, "Timeout";
    10004, "Interrupted system call";
    10009, "Bad file number";
    10013, "Access denied";
    10014, "Bad address";
    10022, "Invalid argument";
    10024, "Too many open files";
    10035, "Operation would block";
    10036, "Operation now in progress";
    10037, "Operation already in progress";
    10038, "Socket operation on nonsocket";
    10039, "Destination address required";
    10040, "Message is too long";
    10041, "Protocol wrong type for socket";
    10042, "Bad protocol option";
    10043, "Protocol is not supported";
    10044, "Socket type is not supported";
    10045, "Operation is not supported on socket";
    10046, "Protocol family is not supported";
    10047, "Address family is not supported by protocol family";
    10048, "Address already in use";
    10049, "Cannot assign requested address";
    10050, "Network is down";
    10051, "Network is unreachable";
    10052, "Net dropped connection or reset";
    10053, "Software caused connection abort";
    10054, "Connection reset by peer";
    10055, "No buffer space available";
    10056, "Socket is already connected";
    10057, "Socket is not connected";
    10058, "Cannot send after socket shutdown";
    10060, "Connection timed out";
    10061, "Connection refused";
    10062, "Too many levels of symbolic links";
    10063, "File name is too long";
    10064, "Host is down";
    10065, "No route to host";
    11001, "Host not found";
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

/// A description of a result code, as the reference words it where it has one ("Unknown
/// error" for a number not in the table). Static storage; no allocation.
pub fn describe(code: i32) -> &'static str {
    description(code).text
}

/// [`describe`] as a NUL-terminated C string in static storage (for `mllp_error_description`).
pub fn describe_c(code: i32) -> &'static CStr {
    description(code).c_text
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
    fn descriptions_as_c_text_match() {
        for &(_, c) in NAMED_CODES {
            assert_ne!(describe(c), "Unknown error", "code {c} has a description");
        }
        for c in [0, 301, 670, 2010, 10048, 11001, -1, 99_999] {
            assert_eq!(describe_c(c).to_str().unwrap(), describe(c));
            assert_eq!(describe_c(c).as_ptr(), describe_c(c).as_ptr(), "static storage");
        }
        assert_eq!(describe(301), "Timeout");
        assert_eq!(describe(-1), "Unknown error");
    }

    #[test]
    fn io_error_keeps_context() {
        let e = Error::from_io(&io::Error::from_raw_os_error(libc::EADDRINUSE), "bind 127.0.0.1:1");
        assert_eq!(e.code, 10048);
        assert!(e.message.starts_with("bind 127.0.0.1:1"));
    }
}
