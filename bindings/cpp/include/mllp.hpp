// mllp.hpp - header-only C++17 wrapper of the mllp C API (include/mllp.h).
//
// Mirrors the reference MLLPServer component:
//   mllp::Server       properties (localHost(), setLocalPort(), listening(), ...), methods
//                      (startListening(), send(), config(), ...) and events (onTransfer(), ...)
//   mllp::Client       the sender: properties (setRemoteHost(), setRemotePort(), ...), methods
//                      (connect(), send(), sendAsync(), doEvents(), ...) and events (onSendDone(), ...)
//   mllp::Connection   a view of one entry of the Connections map (server.connection(id))
//   mllp::Certificate  a certificate (with its private key) for TLS: SSLCert, SSLConnectionRequest
//   mllp::Error        thrown by every failing call; code() is the library's result code
//
// Threads: by default event handlers run on the server's reactor thread, one at a time, with no
// library lock held; they may call back into the Server (queued operations). A synchronous send
// (connection Timeout > 0) or destroying the Server from inside a handler fails with
// Error(MLLP_ERR_REENTRANT). With config("EventMode=DoEvents") events are delivered inside
// doEvents() on the calling thread. Handlers may be (re)registered from any thread.
// A Client has no thread: its handlers run on the thread calling connect(), send(), doEvents()
// or disconnect() (see the Client section below).
//
// Exceptions thrown by a handler never reach the C library: they are caught, the event gets its
// fail-safe outcome (ConnectionRequest refused, AckOut negative; a stream function fails), and the
// exception is passed to the onException() handler (default: a line on stderr).
#ifndef MLLP_HPP
#define MLLP_HPP

#include <mllp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mllp {

/// Identifies a connection (the reference's ConnectionId). Never 0. Every call that takes an id
/// also takes it as the reference's string ("42", as std::to_string(id) writes it).
using ConnectionId = std::uint64_t;

// ---------------------------------------------------------------------------------------------
// Result codes (the same values as the MLLP_* macros of mllp.h).
namespace errc {
constexpr int Ok = MLLP_OK;
constexpr int NakReceived = MLLP_ERR_NAK_RECEIVED;                  // 670
constexpr int InvalidData = MLLP_ERR_INVALID_DATA;                  // 671
constexpr int Interrupted = MLLP_ERR_INTERRUPTED;                   // 672
constexpr int CannotChangeLocalPort = MLLP_ERR_CANNOT_CHANGE_LOCAL_PORT;  // 106
constexpr int CannotChangeLocalHost = MLLP_ERR_CANNOT_CHANGE_LOCAL_HOST;  // 107
constexpr int WouldBlock = MLLP_ERR_WOULD_BLOCK;                    // 135
constexpr int Timeout = MLLP_ERR_TIMEOUT;                           // 201
constexpr int BadState = MLLP_ERR_BAD_STATE;                        // 211
constexpr int NotConnected = MLLP_ERR_NOT_CONNECTED;                // 212
constexpr int Listening = MLLP_ERR_LISTENING;                       // 213
constexpr int CannotOpenFile = MLLP_ERR_CANNOT_OPEN_FILE;           // 303
constexpr int Dropped = MLLP_ERR_DROPPED;                           // 1120
constexpr int InvalidArgument = MLLP_ERR_INVALID_ARGUMENT;          // 2001
constexpr int NoSuchConnection = MLLP_ERR_NO_SUCH_CONNECTION;       // 2002
constexpr int NotSupported = MLLP_ERR_NOT_SUPPORTED;                // 2003
constexpr int UnknownSetting = MLLP_ERR_UNKNOWN_SETTING;            // 2004
constexpr int InvalidValue = MLLP_ERR_INVALID_VALUE;                // 2005
constexpr int Reentrant = MLLP_ERR_REENTRANT;                       // 2006
constexpr int Panic = MLLP_ERR_PANIC;                               // 2007
constexpr int BufferTooSmall = MLLP_ERR_BUFFER_TOO_SMALL;           // 2008
constexpr int Io = MLLP_ERR_IO;                                     // 2009
constexpr int ShutDown = MLLP_ERR_SHUT_DOWN;                        // 2010
constexpr int SendInterrupted = MLLP_ERR_SEND_INTERRUPTED;          // 2011
constexpr int TooManyConnections = MLLP_ERR_TOO_MANY_CONNECTIONS;   // 2012
constexpr int MemoryBudget = MLLP_ERR_MEMORY_BUDGET;                 // 2013
constexpr int Certificate = MLLP_ERR_CERTIFICATE;                   // 2020
constexpr int TlsHandshake = MLLP_ERR_TLS_HANDSHAKE;                // 2021
constexpr int TlsClientRejected = MLLP_ERR_TLS_CLIENT_REJECTED;     // 2022
constexpr int BadBatch = MLLP_ERR_BAD_BATCH;                        // 2030 (ProcessBatch)
constexpr int Charset = MLLP_ERR_CHARSET;                           // 2031 (DecodeToUTF8)
constexpr int DuplicateInProgress = MLLP_ERR_DUPLICATE_IN_PROGRESS; // 2032 (DuplicateWindow)
constexpr int TlsServerRejected = MLLP_ERR_TLS_SERVER_REJECTED;     // 2023 (Client)
constexpr int AckTimeout = MLLP_ERR_ACK_TIMEOUT;                    // 2040 (Client)
constexpr int AppError = MLLP_ERR_APP_ERROR;                        // 2041 (Client: AE / CE)
constexpr int AppReject = MLLP_ERR_APP_REJECT;                      // 2042 (Client: AR / CR)
constexpr int AckMismatch = MLLP_ERR_ACK_MISMATCH;                  // 2043 (Client: Error event)
constexpr int ConnectionRefused = 10061;                            // socket error (Client)
}  // namespace errc

/// The library's version string, e.g. "0.1.0".
inline std::string libraryVersion() { return mllp_version(); }

/// The library's description of a result code.
inline std::string errorDescription(int code) { return mllp_error_description(code); }

/// Thrown by every failing call. code() is the library's result code (the reference's numbers:
/// 670-672, 1xx-3xx, socket errors 10004-11003; the library's own conditions 2001-2099); what()
/// is the library's message for the failure (mllp_last_error_message()).
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message)
      : std::runtime_error(message.empty() ? errorDescription(code) : message), code_(code) {}
  /// The result code.
  int code() const noexcept { return code_; }
  /// The library's description of code() (not of this particular failure).
  std::string description() const { return errorDescription(code_); }

 private:
  int code_;
};

namespace detail {
/// Throws Error for a failing result code, with the calling thread's last error message.
inline void check(int rc) {
  if (rc != MLLP_OK) {
    // Read the message right away: it belongs to this thread's last failing call.
    const char* msg = mllp_last_error_message();
    throw Error(rc, msg ? std::string(msg) : std::string());
  }
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
/// A non-owning view of bytes (pointer + size). Payloads are bytes, not text: HL7 may be in any
/// character set. Event views are valid only during the handler; copy what you keep.
class ByteView {
 public:
  constexpr ByteView() noexcept = default;
  constexpr ByteView(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
  ByteView(const void* data, std::size_t size) noexcept
      : data_(static_cast<const std::uint8_t*>(data)), size_(size) {}
  ByteView(std::string_view s) noexcept  // NOLINT(google-explicit-constructor)
      : data_(reinterpret_cast<const std::uint8_t*>(s.data())), size_(s.size()) {}
  ByteView(const std::string& s) noexcept  // NOLINT(google-explicit-constructor)
      : ByteView(std::string_view(s)) {}
  ByteView(const char* s) noexcept  // NOLINT(google-explicit-constructor)
      : ByteView(std::string_view(s ? s : "")) {}
  ByteView(std::basic_string_view<std::uint8_t> s) noexcept  // NOLINT(google-explicit-constructor)
      : data_(s.data()), size_(s.size()) {}
  ByteView(const std::vector<std::uint8_t>& v) noexcept  // NOLINT(google-explicit-constructor)
      : data_(v.data()), size_(v.size()) {}
  ByteView(const std::vector<char>& v) noexcept  // NOLINT(google-explicit-constructor)
      : ByteView(v.data(), v.size()) {}

  constexpr const std::uint8_t* data() const noexcept { return data_; }
  constexpr std::size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr const std::uint8_t* begin() const noexcept { return data_; }
  constexpr const std::uint8_t* end() const noexcept { return data_ + size_; }
  constexpr std::uint8_t operator[](std::size_t i) const noexcept { return data_[i]; }

  /// The bytes as a std::string_view (no copy; no character set conversion).
  std::string_view str() const noexcept {
    return size_ ? std::string_view(reinterpret_cast<const char*>(data_), size_) : std::string_view();
  }
  /// A copy of the bytes.
  std::vector<std::uint8_t> vec() const { return std::vector<std::uint8_t>(begin(), end()); }
  /// A copy of the bytes as a std::string.
  std::string toString() const { return std::string(str()); }

 private:
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

inline bool operator==(ByteView a, ByteView b) noexcept {
  return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
}
inline bool operator!=(ByteView a, ByteView b) noexcept { return !(a == b); }

// ---------------------------------------------------------------------------------------------
// Events (named after the reference's event parameters). String/byte views are valid only
// during the handler.

/// ConnectionRequest: a client asks to connect. Set accept = false to refuse it.
struct ConnectionRequestEvent {
  std::string_view address;
  std::uint16_t port = 0;
  bool accept = true;  // read-write
};

/// Connected / Disconnected: statusCode 0 and description "OK" when normal.
struct ConnectedEvent {
  ConnectionId connectionId = 0;
  int statusCode = 0;
  std::string_view description;
};
struct DisconnectedEvent {
  ConnectionId connectionId = 0;
  int statusCode = 0;
  std::string_view description;
};

/// StartTransfer / EndTransfer. messageSeq numbers the messages of a connection from 1.
/// charset is MSH-18 as sent ("" when absent); encoding the library's normalised name for it
/// ("8859/1", "UNICODE UTF-8", ...; "" when unknown, or not HL7 and no DefaultCharset).
struct StartTransferEvent {
  ConnectionId connectionId = 0;
  std::uint64_t messageSeq = 0;
  std::string_view charset;
  std::string_view encoding;
};
struct EndTransferEvent {
  ConnectionId connectionId = 0;
  std::uint64_t messageSeq = 0;
  std::string_view charset;
  std::string_view encoding;
};

/// Transfer: a piece of a received message (no copy), and the bytes of it received so far.
struct TransferEvent {
  ConnectionId connectionId = 0;
  std::uint64_t bytesTransferred = 0;
  ByteView data;
};

/// MSA-1 code used for a negative acknowledgement in AckMode=HL7.
enum class RejectCode : int { AE = MLLP_REJECT_AE, AR = MLLP_REJECT_AR };

/// HL7 acknowledgement codes (MSA-1) for Server::sendAppAck and buildAck.
enum class AckCode : int {
  AA = MLLP_ACK_AA,
  AE = MLLP_ACK_AE,
  AR = MLLP_ACK_AR,
  CA = MLLP_ACK_CA,
  CE = MLLP_ACK_CE,
  CR = MLLP_ACK_CR,
};

/// Message: the whole message in one event, after EndTransfer and before AckOut. data is UTF-8
/// when decoded is true (DecodeToUTF8 converted it from encoding), else the bytes as received.
struct MessageEvent {
  ConnectionId connectionId = 0;
  std::uint64_t messageSeq = 0;
  ByteView data;
  std::string_view charset;   // MSH-18 as sent
  std::string_view encoding;  // normalised name
  bool decoded = false;
};

/// Duplicate: a resent message (DuplicateWindow) was answered with the acknowledgement its
/// original got (reply, unframed, sent again byte for byte) and was not delivered.
struct DuplicateEvent {
  ConnectionId connectionId = 0;
  ByteView message;            // the resent message
  std::string_view controlId;  // its MSH-10
  ByteView reply;
};

/// AckOut: an acknowledgement is about to be sent. Set accept = false to send a NAK.
/// Set defer = true to decide later: nothing is sent for this message until
/// Server::acknowledge(connectionId, messageSeq, ...) or Server::acknowledgeWith(...) is called,
/// from any thread. Replies still leave in message order.
/// Set reply (setReply(bytes)) to send exactly those bytes as the acknowledgement instead of the
/// one the library builds from accept / rejectCode (AckMode=HL7: an unframed HL7 ACK message;
/// MLLP mode: the one ACK/NAK byte). std::nullopt (the default) lets the library build it.
struct AckOutEvent {
  ConnectionId connectionId = 0;
  std::uint64_t messageSeq = 0;
  bool accept = true;                    // read-write
  RejectCode rejectCode = RejectCode::AE;  // read-write (AckMode=HL7)
  ByteView message;                      // the complete message being acknowledged
  bool defer = false;                    // read-write
  std::string_view charset;              // MSH-18 as sent
  std::string_view encoding;             // normalised name
  std::optional<std::vector<std::uint8_t>> reply;  // read-write (a copy: outlives the handler)

  /// Sets reply to a copy of bytes.
  void setReply(ByteView bytes) { reply.emplace(bytes.begin(), bytes.end()); }
};

/// AckIn: the client acknowledged data the server sent (accepted: ACK true, NAK false).
struct AckInEvent {
  ConnectionId connectionId = 0;
  bool accepted = false;
};

/// Error: connectionId 0 when the error concerns the server.
struct ErrorEvent {
  ConnectionId connectionId = 0;
  int errorCode = 0;
  std::string_view description;
};

/// Server::metrics(): the server's counters at one moment (mllp_metrics). Counted since
/// the server was created; metricsText() adds errors per code, TLS failures per reason and
/// the latency histogram's buckets.
struct Metrics {
  std::uint64_t connectionsAccepted = 0;  ///< accepted and admitted (Connected fired)
  std::uint64_t connectionsRefused = 0;   ///< ConnectionRequest, MaxConnections, PROXY header, TLS
  std::uint64_t connectionsOpen = 0;      ///< open now
  std::uint64_t messagesReceived = 0;     ///< complete messages (frames) received
  std::uint64_t messagesAccepted = 0;     ///< answered positively (ACK/AA/CA)
  std::uint64_t messagesRefused = 0;      ///< answered negatively or refused by the library
  std::uint64_t messagesDuplicate = 0;    ///< answered from the duplicate window
  std::uint64_t bytesIn = 0;              ///< application bytes received
  std::uint64_t bytesOut = 0;             ///< application bytes sent
  std::uint64_t acksSent = 0;             ///< positive acknowledgements written
  std::uint64_t naksSent = 0;             ///< negative acknowledgements written
  std::uint64_t errors = 0;               ///< Error events, all codes
  std::uint64_t tlsHandshakesCompleted = 0;
  std::uint64_t tlsHandshakesFailed = 0;
  std::uint64_t ackLatencyCount = 0;      ///< acknowledgements measured
  double ackLatencySumSeconds = 0;        ///< end block received -> acknowledgement written
};

/// Log: logLevel 1 Info, 2 Verbose, 3 Debug; logType "INFO", "VERBOSE" or "DEBUG".
struct LogEvent {
  ConnectionId connectionId = 0;
  int logLevel = 0;
  std::string_view message;
  std::string_view logType;
};

class Certificate;

/// SSLClientAuthentication: a TLS client presented its certificate (certEncoded empty: none).
/// accept starts as the library's verification against the SSLClientCACerts setting (status is
/// "OK" or why it failed); it is a recommendation: set it either way (false closes the
/// connection). A throwing handler refuses the client.
struct SslClientAuthenticationEvent {
  ConnectionId connectionId = 0;
  ByteView certEncoded;  // DER
  std::string_view certSubject;
  std::string_view certIssuer;
  std::string_view status;
  bool accept = false;  // read-write
};

/// SSLConnectionRequest: a ClientHello arrived. Set certificate to present another certificate
/// than SSLCert on this connection; the binding keeps it alive until the connection closes.
/// The lists are comma-separated.
struct SslConnectionRequestEvent {
  ConnectionId connectionId = 0;
  std::string_view supportedCipherSuites;
  std::string_view supportedSignatureAlgs;
  std::shared_ptr<const Certificate> certificate;  // read-write
};

/// SSLStatus: progress of a secure connection (informational).
struct SslStatusEvent {
  ConnectionId connectionId = 0;
  std::string_view message;
};

/// Input stream: fill up to cap bytes at buf; return the count, 0 at the end, negative on error.
using ReadFunction = std::function<std::ptrdiff_t(std::uint8_t* buf, std::size_t cap)>;
/// Output stream: take one received message; return false to fail (the message is refused).
using WriteFunction = std::function<bool(ByteView message)>;
/// Receives exceptions thrown by handlers and stream functions; event names the source.
using ExceptionHandler = std::function<void(std::string_view event, std::exception_ptr error)>;

namespace detail {

// The buffer rule: query the size with a NULL buffer, then copy; retry if the value grew.
template <class T, class F>
std::vector<T> getBuffer(F&& call) {
  std::size_t len = 0;
  int rc = call(static_cast<T*>(nullptr), &len);
  if (rc == MLLP_OK) return {};  // nothing to copy
  std::vector<T> buf;
  for (int attempt = 0; attempt < 64; ++attempt) {
    if (rc != MLLP_ERR_BUFFER_TOO_SMALL) check(rc);
    buf.resize(len > 0 ? len : 1);  // never pass NULL: a NULL buffer is always "too small"
    len = buf.size();
    rc = call(buf.data(), &len);
    if (rc == MLLP_OK) {
      buf.resize(len);
      return buf;
    }
  }
  check(rc);
  return buf;
}

template <class F>
std::string getString(F&& call) {
  std::vector<char> buf = getBuffer<char>(std::forward<F>(call));
  std::size_t n = buf.size();
  while (n > 0 && buf[n - 1] == '\0') --n;  // the size includes the NUL
  return std::string(buf.data(), n);
}

template <class F>
std::vector<std::uint8_t> getBytes(F&& call) {
  return getBuffer<std::uint8_t>(std::forward<F>(call));
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
/// Certificate store types (the reference's CertStoreTypes that this library supports).
enum class CertStoreType : int {
  PfxFile = MLLP_CERT_PFX_FILE,              // 2: PFX (PKCS#12) file; the store is its path
  PfxBlob = MLLP_CERT_PFX_BLOB,              // 3: PFX data (binary or base64)
  PemKeyFile = MLLP_CERT_PEM_KEY_FILE,       // 6: PEM file with a private key (+ certificates)
  PemKeyBlob = MLLP_CERT_PEM_KEY_BLOB,       // 7: PEM data with a private key (+ certificates)
  PublicKeyFile = MLLP_CERT_PUBLIC_KEY_FILE, // 8: PEM or DER certificate file
  PublicKeyBlob = MLLP_CERT_PUBLIC_KEY_BLOB, // 9: PEM or DER certificate data
  Auto = MLLP_CERT_AUTO,                     // 99: detect (a path if such a file exists)
};

/// A certificate, possibly with its private key (the reference's Certificate type). Owns its
/// mllp_certificate handle (RAII, move-only). Immutable: share one between threads and servers
/// freely (e.g. as std::shared_ptr<const Certificate>). A server given it keeps its own reference.
class Certificate {
 public:
  /// Certificate(storeType, store, storePassword, subject) of the reference: store is a path
  /// for the *File types or the data for the *Blob types. subject selects the certificate:
  /// "*" the first, an exact or substring match of the subject DN, or
  /// "Thumbprint=<hex SHA-1 or SHA-256>". Throws Error 2020 (errc::Certificate) for a wrong
  /// password, bad data or no match, 303 when the file cannot be opened.
  Certificate(CertStoreType storeType, ByteView store, std::string_view storePassword = {},
              std::string_view subject = "*") {
    const std::string pw(storePassword);
    const std::string subj(subject);
    mllp_certificate* out = nullptr;
    detail::check(mllp_certificate_load(static_cast<int>(storeType), store.data(), store.size(), pw.c_str(),
                                        subj.c_str(), &out));
    h_ = out;
  }
  /// Takes ownership of a handle (freed by the destructor).
  static Certificate adopt(mllp_certificate* handle) noexcept { return Certificate(handle); }

  ~Certificate() { mllp_certificate_free(h_); }
  Certificate(const Certificate&) = delete;
  Certificate& operator=(const Certificate&) = delete;
  Certificate(Certificate&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  Certificate& operator=(Certificate&& other) noexcept {
    if (this != &other) {
      mllp_certificate_free(h_);
      h_ = std::exchange(other.h_, nullptr);
    }
    return *this;
  }

  /// False for a moved-from Certificate.
  explicit operator bool() const noexcept { return h_ != nullptr; }
  /// The C handle (still owned by this Certificate).
  const mllp_certificate* handle() const noexcept { return h_; }

  /// Subject: the subject DN, e.g. "CN=localhost, O=Example".
  std::string subject() const { return field(MLLP_CERT_FIELD_SUBJECT); }
  /// Issuer: the issuer DN.
  std::string issuer() const { return field(MLLP_CERT_FIELD_ISSUER); }
  /// SerialNumber, hexadecimal.
  std::string serialNumber() const { return field(MLLP_CERT_FIELD_SERIAL_NUMBER); }
  /// EffectiveDate (not valid before), e.g. "23-Jan-2000 15:00:00" (UTC).
  std::string effectiveDate() const { return field(MLLP_CERT_FIELD_EFFECTIVE_DATE); }
  /// ExpirationDate (not valid after), same format.
  std::string expirationDate() const { return field(MLLP_CERT_FIELD_EXPIRATION_DATE); }
  /// ThumbprintSHA1, lowercase hex.
  std::string thumbprintSHA1() const { return field(MLLP_CERT_FIELD_THUMBPRINT_SHA1); }
  /// ThumbprintSHA256, lowercase hex.
  std::string thumbprintSHA256() const { return field(MLLP_CERT_FIELD_THUMBPRINT_SHA256); }
  /// Encoded (EncodedB): the DER encoding.
  std::vector<std::uint8_t> encoded() const {
    const mllp_certificate* c = h();
    return detail::getBytes([&](std::uint8_t* b, std::size_t* n) { return mllp_certificate_get_encoded(c, b, n); });
  }
  /// PrivateKeyAvailable: the store held the certificate's private key.
  bool privateKeyAvailable() const {
    std::uint8_t v = 0;
    detail::check(mllp_certificate_get_private_key_available(h(), &v));
    return v != 0;
  }

 private:
  explicit Certificate(mllp_certificate* handle) noexcept : h_(handle) {}
  const mllp_certificate* h() const {
    if (!h_) throw Error(MLLP_ERR_BAD_STATE, "mllp::Certificate: the certificate was moved from");
    return h_;
  }
  std::string field(int f) const {
    const mllp_certificate* c = h();
    return detail::getString([&](char* b, std::size_t* n) { return mllp_certificate_get_field(c, f, b, n); });
  }

  mllp_certificate* h_ = nullptr;
};

namespace detail {

// Where handler exceptions go: shared by the server state and the stream holders, so it lives
// as long as any of them.
class ExceptionSink {
 public:
  void set(ExceptionHandler fn) {
    std::shared_ptr<const ExceptionHandler> next =
        fn ? std::make_shared<ExceptionHandler>(std::move(fn)) : nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    fn_.swap(next);  // the old handler is destroyed outside the lock (next's destructor)
  }
  void report(std::string_view event, std::exception_ptr error) const noexcept {
    std::shared_ptr<const ExceptionHandler> fn;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn = fn_;
    }
    if (fn && *fn) {
      try {
        (*fn)(event, error);
        return;
      } catch (...) {
        // fall through to stderr
      }
    }
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mllp: exception in %.*s handler: %s\n", static_cast<int>(event.size()),
                   event.data(), e.what());
    } catch (...) {
      std::fprintf(stderr, "mllp: unknown exception in %.*s handler\n",
                   static_cast<int>(event.size()), event.data());
    }
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const ExceptionHandler> fn_;
};

// The heap object the library holds as user pointer; released by the library (release
// callback) after the last callback that could use it has returned.
struct State {
  template <class Ev>
  using Fn = std::shared_ptr<const std::function<void(Ev&)>>;

  mutable std::mutex mutex;
  Fn<ConnectionRequestEvent> connectionRequest;
  Fn<const ConnectedEvent> connected;
  Fn<const DisconnectedEvent> disconnected;
  Fn<const StartTransferEvent> startTransfer;
  Fn<const TransferEvent> transfer;
  Fn<const EndTransferEvent> endTransfer;
  Fn<const MessageEvent> message;
  Fn<AckOutEvent> ackOut;
  Fn<const AckInEvent> ackIn;
  Fn<const DuplicateEvent> duplicate;
  Fn<const ErrorEvent> error;
  Fn<const LogEvent> log;
  Fn<SslClientAuthenticationEvent> sslClientAuthentication;
  Fn<SslConnectionRequestEvent> sslConnectionRequest;
  Fn<const SslStatusEvent> sslStatus;
  std::shared_ptr<const std::function<void()>> threadStart;
  std::shared_ptr<const std::function<void()>> threadStop;
  std::shared_ptr<ExceptionSink> sink = std::make_shared<ExceptionSink>();
  // Certificates chosen in SSLConnectionRequest, by connection: the library takes its own
  // reference only after the handler's trampoline returned, so they are kept until Disconnected.
  std::mutex presentedMutex;
  std::unordered_map<ConnectionId, std::shared_ptr<const Certificate>> presented;

  template <class P>
  P load(const P& slot) const {
    std::lock_guard<std::mutex> lock(mutex);
    return slot;
  }
  template <class P, class V>
  void store(P& slot, V&& value) {
    P old;  // destroyed outside the lock
    {
      std::lock_guard<std::mutex> lock(mutex);
      old = std::move(slot);
      slot = std::forward<V>(value);
    }
  }
  void report(std::string_view event, std::exception_ptr e) const noexcept { sink->report(event, e); }
  static std::string_view str(const char* s) noexcept { return s ? std::string_view(s) : std::string_view(); }
  static void release(void* user) noexcept { delete static_cast<State*>(user); }

  // Calls the handler in slot with ev; exceptions are reported and return false.
  template <class Ev>
  bool dispatch(const Fn<Ev>& slot, Ev& ev, const char* name) const noexcept {
    Fn<Ev> fn;
    try {
      fn = load(slot);
      if (fn && *fn) (*fn)(ev);
      return true;
    } catch (...) {
      report(name, std::current_exception());
      return false;
    }
  }

  // ---- one C trampoline per event ----
  static void onConnectionRequest(void* user, mllp_connection_request_event* e) noexcept {
    if (!user || !e) return;
    ConnectionRequestEvent ev;
    ev.address = e->address ? e->address : "";
    ev.port = e->port;
    ev.accept = e->accept != 0;
    const bool ok = static_cast<State*>(user)->dispatch(static_cast<State*>(user)->connectionRequest,
                                                         ev, "ConnectionRequest");
    e->accept = (ok && ev.accept) ? 1 : 0;  // a throwing handler refuses
  }
  static void onConnected(void* user, const mllp_status_event* e) noexcept {
    if (!user || !e) return;
    const ConnectedEvent ev{e->connection_id, e->status_code, e->description ? e->description : ""};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->connected, ev, "Connected");
  }
  static void onDisconnected(void* user, const mllp_status_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<State*>(user);
    const DisconnectedEvent ev{e->connection_id, e->status_code, e->description ? e->description : ""};
    st->dispatch(st->disconnected, ev, "Disconnected");
    std::shared_ptr<const Certificate> drop;  // released outside the lock
    try {
      std::lock_guard<std::mutex> lock(st->presentedMutex);
      auto it = st->presented.find(e->connection_id);
      if (it != st->presented.end()) {
        drop = std::move(it->second);
        st->presented.erase(it);
      }
    } catch (...) {
    }
  }
  static void onStartTransfer(void* user, const mllp_transfer_boundary_event* e) noexcept {
    if (!user || !e) return;
    const StartTransferEvent ev{e->connection_id, e->message_seq, str(e->charset), str(e->encoding)};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->startTransfer, ev, "StartTransfer");
  }
  static void onTransfer(void* user, const mllp_transfer_event* e) noexcept {
    if (!user || !e) return;
    const TransferEvent ev{e->connection_id, e->bytes_transferred, ByteView(e->data, e->len)};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->transfer, ev, "Transfer");
  }
  static void onEndTransfer(void* user, const mllp_transfer_boundary_event* e) noexcept {
    if (!user || !e) return;
    const EndTransferEvent ev{e->connection_id, e->message_seq, str(e->charset), str(e->encoding)};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->endTransfer, ev, "EndTransfer");
  }
  static void onMessage(void* user, const mllp_message_event* e) noexcept {
    if (!user || !e) return;
    const MessageEvent ev{e->connection_id, e->message_seq, ByteView(e->data, e->len), str(e->charset),
                          str(e->encoding), e->decoded != 0};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->message, ev, "Message");
  }
  static void onDuplicate(void* user, const mllp_duplicate_event* e) noexcept {
    if (!user || !e) return;
    const DuplicateEvent ev{e->connection_id, ByteView(e->message, e->message_len), str(e->control_id),
                            ByteView(e->reply, e->reply_len)};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->duplicate, ev, "Duplicate");
  }
  static void onAckOut(void* user, mllp_ack_out_event* e) noexcept {
    if (!user || !e) return;
    AckOutEvent ev;
    ev.connectionId = e->connection_id;
    ev.messageSeq = e->message_seq;
    ev.accept = e->accept != 0;
    ev.rejectCode = static_cast<RejectCode>(e->reject_code);
    ev.message = ByteView(e->message, e->message_len);
    ev.defer = e->defer != 0;
    ev.charset = str(e->charset);
    ev.encoding = str(e->encoding);
    const bool ok = static_cast<State*>(user)->dispatch(static_cast<State*>(user)->ackOut, ev, "AckOut");
    e->accept = (ok && ev.accept) ? 1 : 0;  // a throwing handler refuses the message
    e->reject_code = static_cast<int>(ev.rejectCode);
    e->defer = (ok && ev.defer) ? 1 : 0;
    if (ok && ev.reply) {
      // The library copies the reply when this callback returns, after ev is gone: the bytes
      // are kept per thread until the next AckOut on the same thread.
      static thread_local std::vector<std::uint8_t> held;
      held = std::move(*ev.reply);
      e->reply = held.data();
      e->reply_len = held.size();
    }
  }
  static void onAckIn(void* user, const mllp_ack_in_event* e) noexcept {
    if (!user || !e) return;
    const AckInEvent ev{e->connection_id, e->accepted != 0};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->ackIn, ev, "AckIn");
  }
  static void onError(void* user, const mllp_error_event* e) noexcept {
    if (!user || !e) return;
    const ErrorEvent ev{e->connection_id, e->error_code, e->description ? e->description : ""};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->error, ev, "Error");
  }
  static void onLog(void* user, const mllp_log_event* e) noexcept {
    if (!user || !e) return;
    const LogEvent ev{e->connection_id, e->log_level, e->message ? e->message : "",
                      e->log_type ? e->log_type : ""};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->log, ev, "Log");
  }
  static void onSslClientAuthentication(void* user, mllp_ssl_client_authentication_event* e) noexcept {
    if (!user || !e) return;
    SslClientAuthenticationEvent ev;
    ev.connectionId = e->connection_id;
    ev.certEncoded = ByteView(e->cert_encoded, e->cert_encoded_len);
    ev.certSubject = e->cert_subject ? e->cert_subject : "";
    ev.certIssuer = e->cert_issuer ? e->cert_issuer : "";
    ev.status = e->status ? e->status : "";
    ev.accept = e->accept != 0;
    const bool ok = static_cast<State*>(user)->dispatch(static_cast<State*>(user)->sslClientAuthentication, ev,
                                                         "SSLClientAuthentication");
    e->accept = (ok && ev.accept) ? 1 : 0;  // a throwing handler refuses the client
  }
  static void onSslConnectionRequest(void* user, mllp_ssl_connection_request_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<State*>(user);
    SslConnectionRequestEvent ev;
    ev.connectionId = e->connection_id;
    ev.supportedCipherSuites = e->supported_cipher_suites ? e->supported_cipher_suites : "";
    ev.supportedSignatureAlgs = e->supported_signature_algs ? e->supported_signature_algs : "";
    if (!st->dispatch(st->sslConnectionRequest, ev, "SSLConnectionRequest")) return;  // SSLCert
    if (!ev.certificate || !ev.certificate->handle()) return;
    try {
      std::lock_guard<std::mutex> lock(st->presentedMutex);
      std::shared_ptr<const Certificate>& slot = st->presented[e->connection_id];
      slot.swap(ev.certificate);  // the old one (if any) is released with ev, outside the lock
      e->certificate = slot->handle();
    } catch (...) {
      st->report("SSLConnectionRequest", std::current_exception());
    }
  }
  static void onSslStatus(void* user, const mllp_ssl_status_event* e) noexcept {
    if (!user || !e) return;
    const SslStatusEvent ev{e->connection_id, e->message ? e->message : ""};
    static_cast<State*>(user)->dispatch(static_cast<State*>(user)->sslStatus, ev, "SSLStatus");
  }
  static void runHook(void* user, bool start) noexcept {
    if (!user) return;
    auto* st = static_cast<State*>(user);
    try {
      auto fn = st->load(start ? st->threadStart : st->threadStop);
      if (fn && *fn) (*fn)();
    } catch (...) {
      st->report(start ? "ThreadStart" : "ThreadStop", std::current_exception());
    }
  }
  static void onThreadStart(void* user) noexcept { runHook(user, true); }
  static void onThreadStop(void* user) noexcept { runHook(user, false); }
};

// Heap holders for stream functions; the library owns them and calls close exactly once.
struct ReadHolder {
  ReadFunction fn;
  std::shared_ptr<ExceptionSink> sink;
  static std::ptrdiff_t read(void* user, std::uint8_t* buf, std::size_t cap) noexcept {
    auto* h = static_cast<ReadHolder*>(user);
    try {
      return h->fn(buf, cap);
    } catch (...) {
      h->sink->report("InputStream", std::current_exception());
      return -1;
    }
  }
  static void close(void* user) noexcept { delete static_cast<ReadHolder*>(user); }
};
struct WriteHolder {
  WriteFunction fn;
  std::shared_ptr<ExceptionSink> sink;
  static int write(void* user, const std::uint8_t* data, std::size_t len) noexcept {
    auto* h = static_cast<WriteHolder*>(user);
    try {
      return h->fn(ByteView(data, len)) ? 0 : 1;
    } catch (...) {
      h->sink->report("OutputStream", std::current_exception());
      return 1;
    }
  }
  static void close(void* user) noexcept { delete static_cast<WriteHolder*>(user); }
};

}  // namespace detail

/// The id a string names: the decimal digits std::to_string(id) writes ("42"). A string that is
/// no such id ("", "abc", "042", "-1", "0", too large) names no connection: Error 2002
/// (errc::NoSuchConnection), as an unknown number does.
inline ConnectionId connectionIdFromString(std::string_view id) {
  ConnectionId v = 0;
  bool ok = !id.empty() && id.size() <= 20 && id[0] != '0';
  for (std::size_t i = 0; ok && i < id.size(); ++i) {
    const char c = id[i];
    const auto d = static_cast<ConnectionId>(c - '0');
    if (c < '0' || c > '9' || v > (UINT64_MAX - d) / 10) ok = false;
    else v = v * 10 + d;
  }
  if (!ok) throw Error(MLLP_ERR_NO_SUCH_CONNECTION, "no such connection: \"" + std::string(id) + "\"");
  return v;
}

class Server;

// ---------------------------------------------------------------------------------------------
/// One connection (an entry of the reference's Connections map): a cheap, non-owning view by id.
/// Valid as long as the Server that made it; calls on a closed connection throw
/// Error(MLLP_ERR_NO_SUCH_CONNECTION).
class Connection {
 public:
  ConnectionId connectionId() const noexcept { return id_; }

  /// Connected: true while the connection is open.
  bool connected() const {
    std::uint8_t v = 0;
    detail::check(mllp_connection_get_connected(h_, id_, &v));
    return v != 0;
  }
  /// True while a message is partly received (a start block came, its end block not yet).
  bool receiving() const {
    std::uint8_t v = 0;
    detail::check(mllp_connection_get_receiving(h_, id_, &v));
    return v != 0;
  }
  /// RemoteHost: the client's IP address.
  std::string remoteHost() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_connection_get_remote_host(h_, id_, b, n); });
  }
  /// RemotePort: the client's port.
  std::uint16_t remotePort() const {
    std::uint16_t v = 0;
    detail::check(mllp_connection_get_remote_port(h_, id_, &v));
    return v;
  }
  /// LocalAddress: the local interface the connection arrived on.
  std::string localAddress() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_connection_get_local_address(h_, id_, b, n); });
  }
  /// Timeout: seconds a synchronous send waits (0 = asynchronous).
  std::uint32_t timeout() const {
    std::uint32_t v = 0;
    detail::check(mllp_connection_get_timeout(h_, id_, &v));
    return v;
  }
  void setTimeout(std::uint32_t seconds) { detail::check(mllp_connection_set_timeout(h_, id_, seconds)); }

  /// InputData: the bytes send() sends when no input stream or file is set.
  std::string inputData() const { return toString(inputDataB()); }
  /// InputDataB: the same as bytes.
  std::vector<std::uint8_t> inputDataB() const {
    return detail::getBytes([&](std::uint8_t* b, std::size_t* n) { return mllp_connection_get_input_data(h_, id_, b, n); });
  }
  void setInputData(ByteView data) {
    detail::check(mllp_connection_set_input_data(h_, id_, data.data(), data.size()));
  }
  void setInputDataB(ByteView data) { setInputData(data); }

  /// InputFileName: send() reads this file ("" clears it).
  std::string inputFileName() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_connection_get_input_file_name(h_, id_, b, n); });
  }
  void setInputFileName(std::string_view path) {
    const std::string p(path);
    detail::check(mllp_connection_set_input_file_name(h_, id_, p.c_str()));
  }

  /// OutputData: the last message received when no output stream or OutputFileName took it.
  std::string outputData() const { return toString(outputDataB()); }
  /// OutputDataB: the same as bytes.
  std::vector<std::uint8_t> outputDataB() const {
    return detail::getBytes([&](std::uint8_t* b, std::size_t* n) { return mllp_connection_get_output_data(h_, id_, b, n); });
  }

  /// OutputFileName: each received message is written to this file ("" clears it).
  std::string outputFileName() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_connection_get_output_file_name(h_, id_, b, n); });
  }
  void setOutputFileName(std::string_view path) {
    const std::string p(path);
    detail::check(mllp_connection_set_output_file_name(h_, id_, p.c_str()));
  }

  /// A negotiated TLS value: name is SSLNegotiatedCipher, SSLNegotiatedCipherStrength,
  /// SSLNegotiatedCipherSuite, SSLNegotiatedKeyExchange, SSLNegotiatedKeyExchangeStrength or
  /// SSLNegotiatedVersion; "" before the handshake completes or on a plain connection.
  std::string sslNegotiated(std::string_view name) const {
    const std::string n(name);
    return detail::getString(
        [&](char* b, std::size_t* len) { return mllp_connection_get_ssl_negotiated(h_, id_, n.c_str(), b, len); });
  }
  /// SSLNegotiatedVersion: "TLS1.3" or "TLS1.2" ("" on a plain connection).
  std::string sslNegotiatedVersion() const { return sslNegotiated("SSLNegotiatedVersion"); }
  std::string sslNegotiatedCipher() const { return sslNegotiated("SSLNegotiatedCipher"); }
  std::string sslNegotiatedCipherStrength() const { return sslNegotiated("SSLNegotiatedCipherStrength"); }
  std::string sslNegotiatedCipherSuite() const { return sslNegotiated("SSLNegotiatedCipherSuite"); }
  std::string sslNegotiatedKeyExchange() const { return sslNegotiated("SSLNegotiatedKeyExchange"); }
  std::string sslNegotiatedKeyExchangeStrength() const { return sslNegotiated("SSLNegotiatedKeyExchangeStrength"); }

  /// InputStream: send() calls read until it returns 0 and sends what it read. The function is
  /// kept alive until the library closes the stream (after a send when CloseStreamAfterTransfer
  /// is True, when replaced, when the connection closes). An empty function clears the stream.
  void setInputStream(ReadFunction read);
  /// OutputStream: each received message is passed to write instead of OutputData /
  /// OutputFileName; returning false (or throwing) refuses the message. Same lifetime rules.
  void setOutputStream(WriteFunction write);

 private:
  friend class Server;
  Connection(mllp_server* h, ConnectionId id, std::shared_ptr<detail::ExceptionSink> sink)
      : h_(h), id_(id), sink_(std::move(sink)) {}
  static std::string toString(const std::vector<std::uint8_t>& v) { return std::string(v.begin(), v.end()); }

  mllp_server* h_;
  ConnectionId id_;
  std::shared_ptr<detail::ExceptionSink> sink_;
};

// ---------------------------------------------------------------------------------------------
/// The MLLP server (reference MLLPServer). Owns its handle: move-only; the destructor shuts
/// the server down (Disconnected fires for each client) and frees it.
class Server {
 public:
  Server() : h_(mllp_server_new()) {
    if (!h_) throw std::bad_alloc();
    state_ = new detail::State();
    // The library takes the state in every success case and releases it after the last callback.
    const int rc = mllp_server_set_user_data(h_, state_, &detail::State::release);
    if (rc != MLLP_OK) {
      delete state_;
      mllp_server_free(h_);
      detail::check(rc);
    }
    // Always registered: it also releases certificates chosen in SSLConnectionRequest.
    detail::check(mllp_server_on_disconnected(h_, &detail::State::onDisconnected));
  }
  ~Server() { destroy(); }

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  Server(Server&& other) noexcept : h_(std::exchange(other.h_, nullptr)), state_(std::exchange(other.state_, nullptr)) {}
  Server& operator=(Server&& other) noexcept {
    if (this != &other) {
      destroy();
      h_ = std::exchange(other.h_, nullptr);
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }

  /// False for a moved-from Server.
  explicit operator bool() const noexcept { return h_ != nullptr; }
  /// The C handle (still owned by this Server).
  mllp_server* handle() const noexcept { return h_; }

  // ---- properties ----
  /// DefaultTimeout: the Timeout (seconds) given to new connections; 0 = asynchronous sends.
  std::uint32_t defaultTimeout() const {
    std::uint32_t v = 0;
    detail::check(mllp_server_get_default_timeout(h(), &v));
    return v;
  }
  void setDefaultTimeout(std::uint32_t seconds) { detail::check(mllp_server_set_default_timeout(h(), seconds)); }

  /// KeepAlive: SO_KEEPALIVE on connections accepted from now on.
  bool keepAlive() const {
    std::uint8_t v = 0;
    detail::check(mllp_server_get_keep_alive(h(), &v));
    return v != 0;
  }
  void setKeepAlive(bool keepAlive) { detail::check(mllp_server_set_keep_alive(h(), keepAlive ? 1 : 0)); }

  /// Listening: true while the server accepts connections (use startListening/stopListening).
  bool listening() const {
    std::uint8_t v = 0;
    detail::check(mllp_server_get_listening(h(), &v));
    return v != 0;
  }
  /// Sets Listening: startListening() or stopListening().
  void setListening(bool listen) { listen ? startListening() : stopListening(); }

  /// LocalHost: the interface listened on ("" = every interface).
  std::string localHost() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_server_get_local_host(h(), b, n); });
  }
  void setLocalHost(std::string_view host) {
    const std::string s(host);
    detail::check(mllp_server_set_local_host(h(), s.c_str()));
  }

  /// LocalPort: while listening the real port (also after setting 0).
  std::uint16_t localPort() const {
    std::uint16_t v = 0;
    detail::check(mllp_server_get_local_port(h(), &v));
    return v;
  }
  void setLocalPort(std::uint16_t port) { detail::check(mllp_server_set_local_port(h(), port)); }

  /// Version: the MLLP version, 1 or 2 (default 2).
  int version() const {
    int v = 0;
    detail::check(mllp_server_get_version(h(), &v));
    return v;
  }
  void setVersion(int version) { detail::check(mllp_server_set_version(h(), version)); }

  /// SSLEnabled: accept TLS connections (takes effect at the next startListening()).
  bool sslEnabled() const {
    std::uint8_t v = 0;
    detail::check(mllp_server_get_ssl_enabled(h(), &v));
    return v != 0;
  }
  void setSslEnabled(bool enabled) { detail::check(mllp_server_set_ssl_enabled(h(), enabled ? 1 : 0)); }

  /// SSLAuthenticateClients: ask clients for a certificate (see onSslClientAuthentication and
  /// the SSLClientCACerts setting); takes effect at the next startListening().
  bool sslAuthenticateClients() const {
    std::uint8_t v = 0;
    detail::check(mllp_server_get_ssl_authenticate_clients(h(), &v));
    return v != 0;
  }
  void setSslAuthenticateClients(bool on) {
    detail::check(mllp_server_set_ssl_authenticate_clients(h(), on ? 1 : 0));
  }

  /// SSLCert: a new Certificate object for the server's certificate, or std::nullopt.
  std::optional<Certificate> sslCert() const {
    mllp_certificate* out = nullptr;
    detail::check(mllp_server_get_ssl_cert(h(), &out));
    if (!out) return std::nullopt;
    return Certificate::adopt(out);
  }
  /// Sets SSLCert. The server keeps its own reference: cert may be destroyed afterwards. Checked
  /// at the next startListening() (no key, key mismatch, expired: Error 2020 there).
  void setSslCert(const Certificate& cert) {
    if (!cert) throw Error(MLLP_ERR_INVALID_ARGUMENT, "mllp::Server::setSslCert: moved-from certificate");
    detail::check(mllp_server_set_ssl_cert(h(), cert.handle()));
  }
  /// Clears SSLCert.
  void setSslCert(std::nullptr_t) { detail::check(mllp_server_set_ssl_cert(h(), nullptr)); }

  /// Connections: the ids of the open connections.
  std::vector<ConnectionId> connections() const {
    return detail::getBuffer<std::uint64_t>(
        [&](std::uint64_t* b, std::size_t* n) { return mllp_server_get_connections(h(), b, n); });
  }
  /// The number of open connections.
  std::size_t connectionCount() const {
    std::size_t v = 0;
    detail::check(mllp_server_get_connection_count(h(), &v));
    return v;
  }
  /// Connections[id]: a view of one open connection. An id that names no open connection
  /// (closed, never seen, or a string that is no id) throws Error 2002 (errc::NoSuchConnection),
  /// here and on any later use of the view once the connection has closed.
  Connection connection(ConnectionId id) const {
    mllp_server* handle = h();  // before touching state_
    std::uint16_t port = 0;
    detail::check(mllp_connection_get_remote_port(handle, id, &port));  // the lookup
    return Connection(handle, id, state_->sink);
  }
  Connection connection(std::string_view id) const { return connection(connectionIdFromString(id)); }

  // ---- methods ----
  /// Config("Name=Value") sets a setting and returns ""; Config("Name") returns its value.
  std::string config(std::string_view setting) {
    const std::string s(setting);
    return detail::getString([&](char* b, std::size_t* n) { return mllp_server_config(h(), s.c_str(), b, n); });
  }
  void startListening() { detail::check(mllp_server_start_listening(h())); }
  void stopListening() { detail::check(mllp_server_stop_listening(h())); }
  void shutdown() { detail::check(mllp_server_shutdown(h())); }
  void reset() { detail::check(mllp_server_reset(h())); }
  // Every method taking a connection id takes the number or its string (see ConnectionId); an id
  // that names no open connection throws Error 2002 (errc::NoSuchConnection).
  void disconnect(ConnectionId id) { detail::check(mllp_server_disconnect(h(), id)); }
  void disconnect(std::string_view id) { disconnect(connectionIdFromString(id)); }
  void interrupt(ConnectionId id) { detail::check(mllp_server_interrupt(h(), id)); }
  void interrupt(std::string_view id) { interrupt(connectionIdFromString(id)); }
  /// Send: sends the connection's input stream, else InputFileName, else InputData.
  void send(ConnectionId id) { detail::check(mllp_server_send(h(), id)); }
  void send(std::string_view id) { send(connectionIdFromString(id)); }
  /// Sends bytes (copied) without touching InputData; same waiting rules as send().
  void sendBytes(ConnectionId id, ByteView data) {
    detail::check(mllp_server_send_bytes(h(), id, data.data(), data.size()));
  }
  void sendBytes(std::string_view id, ByteView data) { sendBytes(connectionIdFromString(id), data); }
  /// Acknowledges a message whose AckOut handler set defer: accept sends ACK (HL7 mode: MSA-1
  /// AA), !accept a NAK (HL7 mode: rejectCode). Any thread, also inside handlers. Replies leave
  /// in message order; a messageSeq not awaiting a decision is ignored. Throws
  /// Error(MLLP_ERR_NO_SUCH_CONNECTION) when the connection has closed.
  void acknowledge(ConnectionId id, std::uint64_t messageSeq, bool accept = true,
                   RejectCode rejectCode = RejectCode::AE) {
    detail::check(mllp_server_acknowledge(h(), id, messageSeq, accept ? 1 : 0, static_cast<int>(rejectCode)));
  }
  void acknowledge(std::string_view id, std::uint64_t messageSeq, bool accept = true,
                   RejectCode rejectCode = RejectCode::AE) {
    acknowledge(connectionIdFromString(id), messageSeq, accept, rejectCode);
  }
  /// Decides a deferred message (see acknowledge) by sending exactly reply as its acknowledgement,
  /// framed by the library (AckMode=HL7: an unframed HL7 ACK message; MLLP mode: the one ACK/NAK
  /// byte). Same ordering rules as acknowledge. A positive reply (the ACK byte, MSA-1 AA or CA)
  /// is remembered by the DuplicateWindow.
  void acknowledgeWith(ConnectionId id, std::uint64_t messageSeq, ByteView reply) {
    detail::check(mllp_server_acknowledge_with(h(), id, messageSeq, reply.data(), reply.size()));
  }
  void acknowledgeWith(std::string_view id, std::uint64_t messageSeq, ByteView reply) {
    acknowledgeWith(connectionIdFromString(id), messageSeq, reply);
  }
  /// Sends an HL7 application acknowledgement (code AA, AE or AR; text an optional MSA-3) for
  /// message, a message received on that connection, as a message of its own built from its MSH,
  /// when its MSH-16 asks for one: AL always, ER only when code != AA, SU only when code == AA,
  /// NE and empty never. Returns true when it was sent, false when MSH-16 said no.
  bool sendAppAck(ConnectionId id, ByteView message, AckCode code,
                  std::optional<std::string_view> text = std::nullopt) {
    const std::string t = text ? std::string(*text) : std::string();
    std::uint8_t sent = 0;
    detail::check(mllp_server_send_app_ack(h(), id, message.data(), message.size(), static_cast<int>(code),
                                           text ? t.c_str() : nullptr, &sent));
    return sent != 0;
  }
  bool sendAppAck(std::string_view id, ByteView message, AckCode code,
                  std::optional<std::string_view> text = std::nullopt) {
    return sendAppAck(connectionIdFromString(id), message, code, text);
  }
  /// The server's metrics now (always on; a relaxed load per counter, no lock).
  Metrics metrics() const {
    mllp_metrics m{};
    detail::check(mllp_server_get_metrics(h(), &m));
    Metrics r;
    r.connectionsAccepted = m.connections_accepted;
    r.connectionsRefused = m.connections_refused;
    r.connectionsOpen = m.connections_open;
    r.messagesReceived = m.messages_received;
    r.messagesAccepted = m.messages_accepted;
    r.messagesRefused = m.messages_refused;
    r.messagesDuplicate = m.messages_duplicate;
    r.bytesIn = m.bytes_in;
    r.bytesOut = m.bytes_out;
    r.acksSent = m.acks_sent;
    r.naksSent = m.naks_sent;
    r.errors = m.errors;
    r.tlsHandshakesCompleted = m.tls_handshakes_completed;
    r.tlsHandshakesFailed = m.tls_handshakes_failed;
    r.ackLatencyCount = m.ack_latency_count;
    r.ackLatencySumSeconds = m.ack_latency_sum_seconds;
    return r;
  }
  /// The metrics in the Prometheus text exposition format 0.0.4 (for a /metrics endpoint).
  std::string metricsText() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_server_get_metrics_text(h(), b, n); });
  }
  /// DuplicateCount: the number of resent messages answered from the DuplicateWindow so far.
  std::uint64_t duplicateCount() const {
    std::uint64_t v = 0;
    detail::check(mllp_server_get_duplicate_count(h(), &v));
    return v;
  }
  /// buildAck (see the free function mllp::buildAck).
  static std::vector<std::uint8_t> buildAck(ByteView message, AckCode code,
                                            std::optional<std::string_view> text = std::nullopt);
  /// DoEvents: with EventMode=DoEvents delivers queued events on this thread, waiting up to
  /// timeoutMs (default 100, the reference's) for the first; returns how many were delivered.
  /// In the default thread mode handlers run on the reactor thread and this call only sleeps
  /// timeoutMs (returns 0): a `while (...) doEvents();` loop does not spin.
  std::size_t doEvents(std::uint32_t timeoutMs = 100) {
    std::size_t n = 0;
    detail::check(mllp_server_do_events(h(), timeoutMs, &n));
    return n;
  }

  // ---- events (an empty function removes the handler) ----
  void onConnectionRequest(std::function<void(ConnectionRequestEvent&)> fn) {
    set(&detail::State::connectionRequest, std::move(fn), mllp_server_on_connection_request, &detail::State::onConnectionRequest);
  }
  void onConnected(std::function<void(const ConnectedEvent&)> fn) {
    set(&detail::State::connected, std::move(fn), mllp_server_on_connected, &detail::State::onConnected);
  }
  void onDisconnected(std::function<void(const DisconnectedEvent&)> fn) {
    // The trampoline stays registered (see the constructor); an empty function only clears the slot.
    set(&detail::State::disconnected, std::move(fn),
        [](mllp_server*, mllp_status_cb) noexcept { return MLLP_OK; }, &detail::State::onDisconnected);
  }
  void onStartTransfer(std::function<void(const StartTransferEvent&)> fn) {
    set(&detail::State::startTransfer, std::move(fn), mllp_server_on_start_transfer, &detail::State::onStartTransfer);
  }
  void onTransfer(std::function<void(const TransferEvent&)> fn) {
    set(&detail::State::transfer, std::move(fn), mllp_server_on_transfer, &detail::State::onTransfer);
  }
  void onEndTransfer(std::function<void(const EndTransferEvent&)> fn) {
    set(&detail::State::endTransfer, std::move(fn), mllp_server_on_end_transfer, &detail::State::onEndTransfer);
  }
  void onAckOut(std::function<void(AckOutEvent&)> fn) {
    set(&detail::State::ackOut, std::move(fn), mllp_server_on_ack_out, &detail::State::onAckOut);
  }
  /// Message: the whole message (after EndTransfer, before AckOut).
  void onMessage(std::function<void(const MessageEvent&)> fn) {
    set(&detail::State::message, std::move(fn), mllp_server_on_message, &detail::State::onMessage);
  }
  /// Duplicate: a resent message was answered with its original's acknowledgement (DuplicateWindow).
  void onDuplicate(std::function<void(const DuplicateEvent&)> fn) {
    set(&detail::State::duplicate, std::move(fn), mllp_server_on_duplicate, &detail::State::onDuplicate);
  }
  void onAckIn(std::function<void(const AckInEvent&)> fn) {
    set(&detail::State::ackIn, std::move(fn), mllp_server_on_ack_in, &detail::State::onAckIn);
  }
  void onError(std::function<void(const ErrorEvent&)> fn) {
    set(&detail::State::error, std::move(fn), mllp_server_on_error, &detail::State::onError);
  }
  void onLog(std::function<void(const LogEvent&)> fn) {
    set(&detail::State::log, std::move(fn), mllp_server_on_log, &detail::State::onLog);
  }
  /// SSLClientAuthentication (with sslAuthenticateClients): set e.accept to override the
  /// library's verification result either way.
  void onSslClientAuthentication(std::function<void(SslClientAuthenticationEvent&)> fn) {
    set(&detail::State::sslClientAuthentication, std::move(fn), mllp_server_on_ssl_client_authentication,
        &detail::State::onSslClientAuthentication);
  }
  /// SSLConnectionRequest: set e.certificate to present another certificate on this connection.
  void onSslConnectionRequest(std::function<void(SslConnectionRequestEvent&)> fn) {
    set(&detail::State::sslConnectionRequest, std::move(fn), mllp_server_on_ssl_connection_request,
        &detail::State::onSslConnectionRequest);
  }
  /// SSLStatus: progress of secure connections.
  void onSslStatus(std::function<void(const SslStatusEvent&)> fn) {
    set(&detail::State::sslStatus, std::move(fn), mllp_server_on_ssl_status, &detail::State::onSslStatus);
  }
  /// Runs once on the reactor thread when it starts (set before startListening()).
  void onThreadStart(std::function<void()> fn) {
    set(&detail::State::threadStart, std::move(fn), mllp_server_on_thread_start, &detail::State::onThreadStart);
  }
  /// Runs once on the reactor thread just before it ends.
  void onThreadStop(std::function<void()> fn) {
    set(&detail::State::threadStop, std::move(fn), mllp_server_on_thread_stop, &detail::State::onThreadStop);
  }
  /// Receives exceptions thrown by handlers and stream functions (default: printed to stderr).
  /// Called on the thread that ran the handler; must not throw (if it does, stderr again).
  void onException(ExceptionHandler fn) {
    h();
    state_->sink->set(std::move(fn));
  }

 private:
  mllp_server* h() const {
    if (!h_) throw Error(MLLP_ERR_BAD_STATE, "mllp::Server: the server was moved from");
    return h_;
  }

  template <class Slot, class Fn, class Reg, class Tramp>
  void set(Slot detail::State::*member, Fn&& fn, Reg reg, Tramp tramp) {
    mllp_server* handle = h();  // throws for a moved-from server before state_ is touched
    Slot& slot = state_->*member;
    using Value = std::remove_const_t<typename Slot::element_type>;
    const bool on = static_cast<bool>(fn);
    state_->store(slot, on ? Slot(std::make_shared<Value>(std::forward<Fn>(fn))) : Slot());
    detail::check(reg(handle, on ? tramp : nullptr));
  }

  void destroy() noexcept {
    if (!h_) return;
    const int rc = mllp_server_free(h_);
    if (rc != MLLP_OK) {
      // Only MLLP_ERR_REENTRANT: destroyed from inside one of its own handlers. Freeing is
      // impossible there; the server is leaked rather than the process aborted.
      std::fprintf(stderr, "mllp: ~Server: mllp_server_free failed (%d: %s); the server is leaked\n", rc,
                   mllp_last_error_message());
    }
    h_ = nullptr;
    state_ = nullptr;  // released by the library
  }

  mllp_server* h_ = nullptr;
  detail::State* state_ = nullptr;  // owned by the library (user data with release callback)
};

/// Builds an HL7 ACK (unframed) for message: MSA-1 code, MSA-2 its MSH-10, MSA-3 text if given;
/// MSH-10 of the ACK is a fresh control id (unique across connections, servers and restarts),
/// MSH-7 now. Usable as AckOutEvent::reply or with Server::acknowledgeWith.
inline std::vector<std::uint8_t> buildAck(ByteView message, AckCode code,
                                          std::optional<std::string_view> text = std::nullopt) {
  const std::string t = text ? std::string(*text) : std::string();
  // Each call makes a new control id, so a size query would waste one: start with a buffer
  // large enough for any ACK of this message and grow only if the library says so.
  std::vector<std::uint8_t> out(message.size() + 512 + t.size());
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::size_t len = out.size();
    const int rc = mllp_hl7_build_ack(message.data(), message.size(), static_cast<int>(code),
                                      text ? t.c_str() : nullptr, out.data(), &len);
    if (rc == MLLP_OK) {
      out.resize(len);
      return out;
    }
    if (rc != MLLP_ERR_BUFFER_TOO_SMALL) detail::check(rc);
    out.resize(std::max(len, out.size() * 2));
  }
  throw Error(MLLP_ERR_BUFFER_TOO_SMALL, "mllp::buildAck: the acknowledgement kept growing");
}

inline std::vector<std::uint8_t> Server::buildAck(ByteView message, AckCode code,
                                                  std::optional<std::string_view> text) {
  return mllp::buildAck(message, code, text);
}

inline void Connection::setInputStream(ReadFunction read) {
  if (!read) {
    detail::check(mllp_connection_set_input_stream(h_, id_, nullptr, nullptr, nullptr));
    return;
  }
  auto* holder = new detail::ReadHolder{std::move(read), sink_};
  // The library takes holder in every case (failures included) and closes it exactly once.
  detail::check(mllp_connection_set_input_stream(h_, id_, &detail::ReadHolder::read, &detail::ReadHolder::close, holder));
}

inline void Connection::setOutputStream(WriteFunction write) {
  if (!write) {
    detail::check(mllp_connection_set_output_stream(h_, id_, nullptr, nullptr, nullptr));
    return;
  }
  auto* holder = new detail::WriteHolder{std::move(write), sink_};
  detail::check(mllp_connection_set_output_stream(h_, id_, &detail::WriteHolder::write, &detail::WriteHolder::close, holder));
}

// ---------------------------------------------------------------------------------------------
// The client (sender).
//
// Threads: a Client has no thread of its own. All its I/O happens, and all its handlers run, on
// the thread calling connect(), send(), doEvents() or disconnect(), inside those calls, with no
// library lock held. An asynchronous send (sendAsync()) makes progress only inside doEvents()
// (or a later blocking call). From inside a handler sendAsync(), property reads/writes and
// config() are allowed; send(), connect(), doEvents() and destroying the Client throw
// Error(MLLP_ERR_REENTRANT). Handler exceptions are caught as for the Server (onException()).

/// The kind of an acknowledgement the client received: an HL7 MSA-1 code, the MLLP commit
/// byte (Ack / Nak), or None (nothing expected or nothing received).
enum class AckKind : int {
  None = MLLP_ACK_NONE,  // -1
  AA = MLLP_ACK_AA,      // 0
  AE = MLLP_ACK_AE,      // 1
  AR = MLLP_ACK_AR,      // 2
  CA = MLLP_ACK_CA,      // 3
  CE = MLLP_ACK_CE,      // 4
  CR = MLLP_ACK_CR,      // 5
  Ack = MLLP_ACK_ACK,    // 6: the commit ACK byte (AckMode=MLLP)
  Nak = MLLP_ACK_NAK,    // 7: the commit NAK byte (AckMode=MLLP)
};

/// "AA", "ACK", "None", ... ("?" for a value the library does not define).
inline const char* toString(AckKind kind) noexcept {
  switch (kind) {
    case AckKind::None: return "None";
    case AckKind::AA: return "AA";
    case AckKind::AE: return "AE";
    case AckKind::AR: return "AR";
    case AckKind::CA: return "CA";
    case AckKind::CE: return "CE";
    case AckKind::CR: return "CR";
    case AckKind::Ack: return "ACK";
    case AckKind::Nak: return "NAK";
  }
  return "?";
}

/// What Client::send() reports: the message's id, the kind of its last acknowledgement
/// (AckKind::None if none came) and how many times it was sent (1 + resends).
struct SendResult {
  std::uint64_t messageId = 0;
  AckKind ackKind = AckKind::None;
  std::uint32_t attempts = 0;
};

/// Thrown by Client::send() when a message it accepted for sending failed (refused after its
/// retries, ACK timeout, connection lost, ...): an Error with the code, plus the SendResult.
class SendError : public Error {
 public:
  SendError(int code, const std::string& message, SendResult result) : Error(code, message), result_(result) {}
  const SendResult& result() const noexcept { return result_; }

 private:
  SendResult result_;
};

/// AckIn (client): an acknowledgement arrived. messageId is the message it answered (0 and
/// matched false when it matched none: late, mismatched or unsolicited). controlId is MSA-2 (""
/// for a commit ACK/NAK byte), text MSA-3 and ERR text joined by "; ", data the acknowledgement
/// as received (unframed).
struct ClientAckInEvent {
  ConnectionId connectionId = 0;
  std::uint64_t messageId = 0;
  AckKind kind = AckKind::None;
  std::string_view controlId;
  std::string_view text;
  ByteView data;
  bool matched = false;
};

/// SendDone: a message's outcome. resultCode 0 (description "OK") when positively acknowledged
/// (or written, AckMode=None), else the error code (2040 timeout, 2041 AE/CE, 2042 AR/CR, 670
/// NAK, 1120 dropped, socket errors, ...). controlId is the message's MSH-10.
struct SendDoneEvent {
  ConnectionId connectionId = 0;
  std::uint64_t messageId = 0;
  std::string_view controlId;
  int resultCode = 0;
  std::string_view description;
  AckKind ackKind = AckKind::None;
  std::uint32_t attempts = 0;
};

/// SSLServerAuthentication: the server presented its certificate. accept starts as the
/// library's verification (status "OK" or why it failed); set it either way. A throwing handler
/// refuses the server (the connection fails with 2023, errc::TlsServerRejected).
struct SslServerAuthenticationEvent {
  ConnectionId connectionId = 0;
  ByteView certEncoded;  // DER (the whole chain concatenated with SSLIncludeCertChain=True)
  std::string_view certSubject;
  std::string_view certIssuer;
  std::string_view status;
  bool accept = false;  // read-write
};

namespace detail {

// The client's heap state, held by the library as user pointer and released by it.
struct ClientState {
  template <class Ev>
  using Fn = std::shared_ptr<const std::function<void(Ev&)>>;

  mutable std::mutex mutex;
  Fn<const ConnectedEvent> connected;
  Fn<const DisconnectedEvent> disconnected;
  Fn<const ClientAckInEvent> ackIn;
  Fn<const SendDoneEvent> sendDone;
  Fn<const ErrorEvent> error;
  Fn<const LogEvent> log;
  Fn<SslServerAuthenticationEvent> sslServerAuthentication;
  Fn<const SslStatusEvent> sslStatus;
  std::shared_ptr<ExceptionSink> sink = std::make_shared<ExceptionSink>();

  template <class P>
  P load(const P& slot) const {
    std::lock_guard<std::mutex> lock(mutex);
    return slot;
  }
  template <class P, class V>
  void store(P& slot, V&& value) {
    P old;  // destroyed outside the lock
    {
      std::lock_guard<std::mutex> lock(mutex);
      old = std::move(slot);
      slot = std::forward<V>(value);
    }
  }
  static std::string_view str(const char* s) noexcept { return s ? std::string_view(s) : std::string_view(); }
  static void release(void* user) noexcept { delete static_cast<ClientState*>(user); }

  template <class Ev>
  bool dispatch(const Fn<Ev>& slot, Ev& ev, const char* name) const noexcept {
    try {
      Fn<Ev> fn = load(slot);
      if (fn && *fn) (*fn)(ev);
      return true;
    } catch (...) {
      sink->report(name, std::current_exception());
      return false;
    }
  }

  static void onConnected(void* user, const mllp_status_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const ConnectedEvent ev{e->connection_id, e->status_code, str(e->description)};
    st->dispatch(st->connected, ev, "Connected");
  }
  static void onDisconnected(void* user, const mllp_status_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const DisconnectedEvent ev{e->connection_id, e->status_code, str(e->description)};
    st->dispatch(st->disconnected, ev, "Disconnected");
  }
  static void onAckIn(void* user, const mllp_client_ack_in_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const ClientAckInEvent ev{e->connection_id, e->message_id,   static_cast<AckKind>(e->kind),
                              str(e->control_id), str(e->text),   ByteView(e->data, e->len),
                              e->matched != 0};
    st->dispatch(st->ackIn, ev, "AckIn");
  }
  static void onSendDone(void* user, const mllp_send_done_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const SendDoneEvent ev{e->connection_id, e->message_id, str(e->control_id), e->result_code,
                           str(e->description), static_cast<AckKind>(e->ack_kind), e->attempts};
    st->dispatch(st->sendDone, ev, "SendDone");
  }
  static void onError(void* user, const mllp_error_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const ErrorEvent ev{e->connection_id, e->error_code, str(e->description)};
    st->dispatch(st->error, ev, "Error");
  }
  static void onLog(void* user, const mllp_log_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const LogEvent ev{e->connection_id, e->log_level, str(e->message), str(e->log_type)};
    st->dispatch(st->log, ev, "Log");
  }
  static void onSslServerAuthentication(void* user, mllp_ssl_server_authentication_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    SslServerAuthenticationEvent ev;
    ev.connectionId = e->connection_id;
    ev.certEncoded = ByteView(e->cert_encoded, e->cert_encoded_len);
    ev.certSubject = str(e->cert_subject);
    ev.certIssuer = str(e->cert_issuer);
    ev.status = str(e->status);
    ev.accept = e->accept != 0;
    const bool ok = st->dispatch(st->sslServerAuthentication, ev, "SSLServerAuthentication");
    e->accept = (ok && ev.accept) ? 1 : 0;  // a throwing handler refuses the server
  }
  static void onSslStatus(void* user, const mllp_ssl_status_event* e) noexcept {
    if (!user || !e) return;
    auto* st = static_cast<ClientState*>(user);
    const SslStatusEvent ev{e->connection_id, str(e->message)};
    st->dispatch(st->sslStatus, ev, "SSLStatus");
  }
};

}  // namespace detail

/// The MLLP client (sender). Owns its handle: move-only; the destructor closes the connection
/// (Disconnected fires) and frees it. Messages not finished end with it: SendDone with 672 each.
///
///   mllp::Client c;
///   c.setRemotePort(2575);
///   mllp::SendResult r = c.send(message);  // connects, sends, waits for the ACK (or throws)
class Client {
 public:
  Client() : h_(mllp_client_new()) {
    if (!h_) throw std::bad_alloc();
    state_ = new detail::ClientState();
    const int rc = mllp_client_set_user_data(h_, state_, &detail::ClientState::release);
    if (rc != MLLP_OK) {
      delete state_;
      mllp_client_free(h_);
      detail::check(rc);
    }
  }
  ~Client() { destroy(); }

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&& other) noexcept : h_(std::exchange(other.h_, nullptr)), state_(std::exchange(other.state_, nullptr)) {}
  Client& operator=(Client&& other) noexcept {
    if (this != &other) {
      destroy();
      h_ = std::exchange(other.h_, nullptr);
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }

  /// False for a moved-from Client.
  explicit operator bool() const noexcept { return h_ != nullptr; }
  /// The C handle (still owned by this Client).
  mllp_client* handle() const noexcept { return h_; }

  // ---- properties ----
  /// RemoteHost: the server's name or IP address (default "127.0.0.1").
  std::string remoteHost() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_client_get_remote_host(h(), b, n); });
  }
  void setRemoteHost(std::string_view host) {
    const std::string s(host);
    detail::check(mllp_client_set_remote_host(h(), s.c_str()));
  }
  /// RemotePort: the server's port (default 0: must be set).
  std::uint16_t remotePort() const {
    std::uint16_t v = 0;
    detail::check(mllp_client_get_remote_port(h(), &v));
    return v;
  }
  void setRemotePort(std::uint16_t port) { detail::check(mllp_client_set_remote_port(h(), port)); }
  /// LocalHost: the local interface to connect from ("" = any).
  std::string localHost() const {
    return detail::getString([&](char* b, std::size_t* n) { return mllp_client_get_local_host(h(), b, n); });
  }
  void setLocalHost(std::string_view host) {
    const std::string s(host);
    detail::check(mllp_client_set_local_host(h(), s.c_str()));
  }
  /// Version: the MLLP version, 1 or 2 (default 2; AckMode defaults to MLLP for 2, None for 1).
  int version() const {
    int v = 0;
    detail::check(mllp_client_get_version(h(), &v));
    return v;
  }
  void setVersion(int version) { detail::check(mllp_client_set_version(h(), version)); }
  /// Timeout: seconds for the connect, the TLS handshake and each acknowledgement (default 10;
  /// 0 = no limit).
  std::uint32_t timeout() const {
    std::uint32_t v = 0;
    detail::check(mllp_client_get_timeout(h(), &v));
    return v;
  }
  void setTimeout(std::uint32_t seconds) { detail::check(mllp_client_set_timeout(h(), seconds)); }
  /// KeepAlive: SO_KEEPALIVE on the connection.
  bool keepAlive() const {
    std::uint8_t v = 0;
    detail::check(mllp_client_get_keep_alive(h(), &v));
    return v != 0;
  }
  void setKeepAlive(bool on) { detail::check(mllp_client_set_keep_alive(h(), on ? 1 : 0)); }
  /// Connected: true while connected (use connect() / disconnect()).
  bool connected() const {
    std::uint8_t v = 0;
    detail::check(mllp_client_get_connected(h(), &v));
    return v != 0;
  }
  /// SSLEnabled: connect with TLS (see the SSLServerCACerts / SSLAcceptServerCertStore settings
  /// and onSslServerAuthentication()).
  bool sslEnabled() const {
    std::uint8_t v = 0;
    detail::check(mllp_client_get_ssl_enabled(h(), &v));
    return v != 0;
  }
  void setSslEnabled(bool on) { detail::check(mllp_client_set_ssl_enabled(h(), on ? 1 : 0)); }
  /// SSLCert: the client certificate (with its private key) for mutual TLS. The client keeps its
  /// own reference: cert may be destroyed afterwards.
  void setSslCert(const Certificate& cert) {
    if (!cert) throw Error(MLLP_ERR_INVALID_ARGUMENT, "mllp::Client::setSslCert: moved-from certificate");
    detail::check(mllp_client_set_ssl_cert(h(), cert.handle()));
  }
  /// Clears SSLCert.
  void setSslCert(std::nullptr_t) { detail::check(mllp_client_set_ssl_cert(h(), nullptr)); }
  /// The number of messages queued or awaiting an acknowledgement.
  std::size_t pending() const {
    std::size_t v = 0;
    detail::check(mllp_client_get_pending(h(), &v));
    return v;
  }

  // ---- methods ----
  /// Config("Name=Value") sets a setting and returns ""; Config("Name") returns its value
  /// (AckMode, MaxRetries, RetryDelay, MaxOutstanding, SSLServerCACerts, ...).
  std::string config(std::string_view setting) {
    const std::string s(setting);
    if (s.find('=') != std::string::npos) {
      detail::check(mllp_client_config(h(), s.c_str(), nullptr, nullptr));
      return std::string();
    }
    return detail::getString([&](char* b, std::size_t* n) { return mllp_client_config(h(), s.c_str(), b, n); });
  }
  /// Connects (TLS handshake included), waiting up to Timeout; Connected fires.
  void connect() { detail::check(mllp_client_connect(h())); }
  /// Closes the connection; queued messages stay queued. Disconnected fires.
  void disconnect() { detail::check(mllp_client_disconnect(h())); }
  /// Sends one message (connecting if needed) and waits until it is acknowledged (AckMode
  /// MLLP: the ACK byte; HL7: MSA-1 AA or CA; None: once written). Throws SendError (an Error:
  /// code() 2040 timeout, 2041 AE/CE, 2042 AR/CR, 670 NAK, 1120 dropped, socket errors) when it
  /// failed after its retries, and Error for arguments refused before sending (2001: empty,
  /// containing a framing byte, or no MSH-10 with AckMode=HL7) or a call from a handler (2006).
  SendResult send(ByteView message) {
    mllp_send_result r{};
    r.ack_kind = MLLP_ACK_NONE;
    const int rc = mllp_client_send(h(), message.data(), message.size(), &r);
    if (rc == MLLP_OK) return toResult(r);
    const char* msg = mllp_last_error_message();  // before anything else can overwrite it
    std::string text = msg ? std::string(msg) : std::string();
    if (r.message_id != 0 || r.attempts != 0) throw SendError(rc, text, toResult(r));
    throw Error(rc, text);
  }
  /// Queues a message and returns its id at once; SendDone reports its outcome later (inside
  /// doEvents() or a blocking call).
  std::uint64_t sendAsync(ByteView message) {
    std::uint64_t id = 0;
    detail::check(mllp_client_send_async(h(), message.data(), message.size(), &id));
    return id;
  }
  /// Drives the connection and delivers events on this thread until nothing is queued or in
  /// flight, or timeoutMs (default 100) passed; returns the number of messages still pending.
  std::size_t doEvents(std::uint32_t timeoutMs = 100) {
    std::size_t n = 0;
    detail::check(mllp_client_do_events(h(), timeoutMs, &n));
    return n;
  }

  // ---- events (an empty function removes the handler) ----
  void onConnected(std::function<void(const ConnectedEvent&)> fn) {
    set(&detail::ClientState::connected, std::move(fn), mllp_client_on_connected, &detail::ClientState::onConnected);
  }
  void onDisconnected(std::function<void(const DisconnectedEvent&)> fn) {
    set(&detail::ClientState::disconnected, std::move(fn), mllp_client_on_disconnected,
        &detail::ClientState::onDisconnected);
  }
  /// AckIn: every acknowledgement received (also unmatched ones: matched false).
  void onAckIn(std::function<void(const ClientAckInEvent&)> fn) {
    set(&detail::ClientState::ackIn, std::move(fn), mllp_client_on_ack_in, &detail::ClientState::onAckIn);
  }
  /// SendDone: the outcome of every message, sync or async, in message order.
  void onSendDone(std::function<void(const SendDoneEvent&)> fn) {
    set(&detail::ClientState::sendDone, std::move(fn), mllp_client_on_send_done, &detail::ClientState::onSendDone);
  }
  /// Error: e.g. 2043 (an HL7 ACK whose MSA-2 matches no outstanding message).
  void onError(std::function<void(const ErrorEvent&)> fn) {
    set(&detail::ClientState::error, std::move(fn), mllp_client_on_error, &detail::ClientState::onError);
  }
  void onLog(std::function<void(const LogEvent&)> fn) {
    set(&detail::ClientState::log, std::move(fn), mllp_client_on_log, &detail::ClientState::onLog);
  }
  /// SSLServerAuthentication: set e.accept to override the library's verification either way.
  void onSslServerAuthentication(std::function<void(SslServerAuthenticationEvent&)> fn) {
    set(&detail::ClientState::sslServerAuthentication, std::move(fn), mllp_client_on_ssl_server_authentication,
        &detail::ClientState::onSslServerAuthentication);
  }
  void onSslStatus(std::function<void(const SslStatusEvent&)> fn) {
    set(&detail::ClientState::sslStatus, std::move(fn), mllp_client_on_ssl_status, &detail::ClientState::onSslStatus);
  }
  /// Receives exceptions thrown by handlers (default: printed to stderr); must not throw.
  void onException(ExceptionHandler fn) {
    h();
    state_->sink->set(std::move(fn));
  }

 private:
  static SendResult toResult(const mllp_send_result& r) noexcept {
    return SendResult{r.message_id, static_cast<AckKind>(r.ack_kind), r.attempts};
  }
  mllp_client* h() const {
    if (!h_) throw Error(MLLP_ERR_BAD_STATE, "mllp::Client: the client was moved from");
    return h_;
  }
  template <class Slot, class Fn, class Reg, class Tramp>
  void set(Slot detail::ClientState::*member, Fn&& fn, Reg reg, Tramp tramp) {
    mllp_client* handle = h();
    Slot& slot = state_->*member;
    using Value = std::remove_const_t<typename Slot::element_type>;
    const bool on = static_cast<bool>(fn);
    state_->store(slot, on ? Slot(std::make_shared<Value>(std::forward<Fn>(fn))) : Slot());
    detail::check(reg(handle, on ? tramp : nullptr));
  }
  void destroy() noexcept {
    if (!h_) return;
    const int rc = mllp_client_free(h_);
    if (rc != MLLP_OK) {
      // Only MLLP_ERR_REENTRANT: destroyed from inside one of its own handlers.
      std::fprintf(stderr, "mllp: ~Client: mllp_client_free failed (%d: %s); the client is leaked\n", rc,
                   mllp_last_error_message());
    }
    h_ = nullptr;
    state_ = nullptr;  // released by the library
  }

  mllp_client* h_ = nullptr;
  detail::ClientState* state_ = nullptr;  // owned by the library (user data with release callback)
};

}  // namespace mllp

#endif  // MLLP_HPP
