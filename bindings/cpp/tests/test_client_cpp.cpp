// Tests of the C++ wrapper's mllp::Client: a real client driven through mllp.hpp, sending to an
// mllp::Server of the same binding (and to plain POSIX sockets that misbehave) on 127.0.0.1.
// Every wait is bounded (the client's Timeout, deadlines on doEvents loops); alarm() is a
// last-resort watchdog. No assertion is about how long something took.
#include <mllp.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#ifndef MLLP_SAMPLE_ADT_A01
#error "MLLP_SAMPLE_ADT_A01 must name the sample message"
#endif

namespace {

int g_failures = 0;
std::string g_current;

#define CHECK(cond)                                                                                    \
  do {                                                                                                 \
    if (!(cond)) {                                                                                     \
      ++g_failures;                                                                                    \
      std::fprintf(stderr, "  FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, g_current.c_str(), #cond); \
    }                                                                                                  \
  } while (0)

#define REQUIRE(cond)                                                                              \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      ++g_failures;                                                                                \
      std::fprintf(stderr, "  FAIL %s:%d [%s]: %s (aborting this test)\n", __FILE__, __LINE__,     \
                   g_current.c_str(), #cond);                                                      \
      return;                                                                                      \
    }                                                                                              \
  } while (0)

// Runs stmt, expecting mllp::Error with the given code; the code (or -1) lands in `got`.
#define CHECK_THROWS_CODE(stmt, expected)                                                          \
  do {                                                                                             \
    int got_ = -1;                                                                                 \
    try {                                                                                          \
      stmt;                                                                                        \
    } catch (const mllp::Error& e_) {                                                              \
      got_ = e_.code();                                                                            \
    }                                                                                              \
    if (got_ != (expected)) {                                                                      \
      ++g_failures;                                                                                \
      std::fprintf(stderr, "  FAIL %s:%d [%s]: %s -> code %d, expected %d\n", __FILE__, __LINE__, \
                   g_current.c_str(), #stmt, got_, (expected));                                    \
    }                                                                                              \
  } while (0)

using Clock = std::chrono::steady_clock;

std::string readFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string sample() {
  static const std::string s = readFile(MLLP_SAMPLE_ADT_A01);
  return s;
}

// An ADT^A01 with the given MSH-10.
std::string hl7Message(const std::string& controlId) {
  return "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20260101120000||ADT^A01|" + controlId +
         "|P|2.5.1\rPID|1||12345^^^HOSP^MR||DOE^JOHN||19800101|M\r";
}

void listenLocal(mllp::Server& s) {
  s.setLocalHost("127.0.0.1");
  s.setLocalPort(0);
  s.startListening();
}

// A client aimed at 127.0.0.1:port with short retry delays.
void aim(mllp::Client& c, std::uint16_t port) {
  c.setRemoteHost("127.0.0.1");
  c.setRemotePort(port);
  c.setTimeout(5);
  c.config("RetryDelay=10");
}

// A TCP port on 127.0.0.1 nobody listens on (bound, then closed).
std::uint16_t unusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A listener on 127.0.0.1 that accepts connections and reads, but never answers, until it is
// destroyed. Its thread polls with a short timeout so it always ends.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 8);
    socklen_t n = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~SilentListener() {
    stop_ = true;
    thread_.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  std::uint16_t port() const { return port_; }
  std::size_t bytesRead() const { return bytes_; }

 private:
  void run() {
    while (!stop_) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (int c : conns_) fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c >= 0) conns_.push_back(c);
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, 0);
        if (n > 0) bytes_ += static_cast<std::size_t>(n);
      }
    }
  }
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> conns_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> bytes_{0};
  std::thread thread_;
};

// ---- tests ------------------------------------------------------------------------------------

void testTypes() {
  static_assert(!std::is_copy_constructible_v<mllp::Client>, "Client must not be copyable");
  static_assert(!std::is_copy_assignable_v<mllp::Client>, "Client must not be copyable");
  static_assert(std::is_nothrow_move_constructible_v<mllp::Client>, "Client must be movable");
  static_assert(std::is_nothrow_move_assignable_v<mllp::Client>, "Client must be movable");
  static_assert(std::is_base_of_v<mllp::Error, mllp::SendError>, "SendError is an Error");
  static_assert(static_cast<int>(mllp::AckKind::None) == -1 && static_cast<int>(mllp::AckKind::AA) == 0 &&
                    static_cast<int>(mllp::AckKind::Ack) == 6 && static_cast<int>(mllp::AckKind::Nak) == 7,
                "AckKind values are the library's");
  CHECK(std::string(mllp::toString(mllp::AckKind::AE)) == "AE");
  CHECK(std::string(mllp::toString(mllp::AckKind::Ack)) == "ACK");

  mllp::Client c;
  CHECK(c.remoteHost() == "127.0.0.1");
  CHECK(c.remotePort() == 0);
  CHECK(c.version() == 2);
  CHECK(c.timeout() == 10);
  CHECK(!c.connected());
  CHECK(!c.sslEnabled());
  CHECK(c.pending() == 0);
  c.setRemoteHost("localhost");
  c.setRemotePort(2575);
  c.setLocalHost("127.0.0.1");
  c.setVersion(1);
  c.setTimeout(3);
  c.setKeepAlive(true);
  CHECK(c.remoteHost() == "localhost");
  CHECK(c.remotePort() == 2575);
  CHECK(c.localHost() == "127.0.0.1");
  CHECK(c.version() == 1);
  CHECK(c.timeout() == 3);
  CHECK(c.keepAlive());
  CHECK(c.config("MaxRetries=5").empty());
  CHECK(c.config("MaxRetries") == "5");
  CHECK_THROWS_CODE(c.setVersion(3), mllp::errc::InvalidValue);
  CHECK_THROWS_CODE(c.config("NoSuchSetting=1"), mllp::errc::UnknownSetting);
  CHECK_THROWS_CODE(c.sendAsync(""), mllp::errc::InvalidArgument);  // an empty message
  CHECK_THROWS_CODE(c.sendAsync("MSH|\x1c\r"), mllp::errc::InvalidArgument);  // framing bytes inside

  mllp::Client moved(std::move(c));
  CHECK(moved && !c);  // NOLINT(bugprone-use-after-move)
  CHECK(moved.remotePort() == 2575);
  CHECK_THROWS_CODE(c.remotePort(), mllp::errc::BadState);  // NOLINT(bugprone-use-after-move)
  mllp::Client other;
  other = std::move(moved);
  CHECK(other.remotePort() == 2575);
}

void testSyncSend() {
  mllp::Server s;
  std::mutex m;
  std::vector<std::string> received;
  s.onMessage([&](const mllp::MessageEvent& e) {
    std::lock_guard<std::mutex> l(m);
    received.push_back(e.data.toString());
  });
  listenLocal(s);

  // Declared before the client: its destructor fires Disconnected for the last connection.
  std::vector<mllp::ConnectionId> disconnects;
  mllp::Client c;
  aim(c, s.localPort());
  CHECK(c.config("AckMode") == "MLLP");  // the default for version 2
  std::vector<mllp::ConnectionId> connected;
  std::vector<mllp::SendDoneEvent> done;
  std::vector<std::string> doneIds;
  std::vector<mllp::AckKind> acks;
  c.onConnected([&](const mllp::ConnectedEvent& e) { connected.push_back(e.connectionId); });
  c.onAckIn([&](const mllp::ClientAckInEvent& e) {
    acks.push_back(e.kind);
    CHECK(e.matched);
    CHECK(e.controlId.empty());  // a commit ACK byte has no MSA-2
  });
  c.onSendDone([&](const mllp::SendDoneEvent& e) {
    done.push_back(e);
    doneIds.emplace_back(e.controlId);
  });

  const mllp::SendResult r = c.send(sample());
  CHECK(r.attempts == 1);
  CHECK(r.ackKind == mllp::AckKind::Ack);
  CHECK(r.messageId != 0);
  CHECK(c.connected());
  CHECK(c.pending() == 0);
  CHECK((connected == std::vector<mllp::ConnectionId>{1}));
  CHECK((acks == std::vector<mllp::AckKind>{mllp::AckKind::Ack}));
  REQUIRE(done.size() == 1);
  CHECK(done[0].messageId == r.messageId);
  CHECK(done[0].resultCode == 0);
  CHECK(done[0].attempts == 1);
  CHECK(doneIds[0] == "MSG00001");
  {
    std::lock_guard<std::mutex> l(m);
    REQUIRE(received.size() == 1);
    CHECK(received[0] == sample());
  }

  // A second message on the same connection; then disconnect and send again (reconnects).
  const mllp::SendResult r2 = c.send(hl7Message("SECOND"));
  CHECK(r2.messageId > r.messageId);
  c.onDisconnected([&](const mllp::DisconnectedEvent& e) { disconnects.push_back(e.connectionId); });
  c.disconnect();
  CHECK((disconnects == std::vector<mllp::ConnectionId>{1}));
  CHECK(!c.connected());
  CHECK(c.send(hl7Message("THIRD")).attempts == 1);
  CHECK((connected == std::vector<mllp::ConnectionId>{1, 2}));
}

void testHl7Ack() {
  mllp::Server s;
  s.config("AckMode=HL7");
  listenLocal(s);
  mllp::Client c;
  aim(c, s.localPort());
  c.config("AckMode=HL7");
  std::vector<std::string> controlIds;
  std::vector<std::string> acks;
  c.onAckIn([&](const mllp::ClientAckInEvent& e) {
    CHECK(e.kind == mllp::AckKind::AA);
    CHECK(e.matched);
    controlIds.emplace_back(e.controlId);
    acks.push_back(e.data.toString());
  });
  const mllp::SendResult r = c.send(hl7Message("CTRL-42"));
  CHECK(r.ackKind == mllp::AckKind::AA);
  CHECK(r.attempts == 1);
  CHECK((controlIds == std::vector<std::string>{"CTRL-42"}));
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].rfind("MSH|", 0) == 0);
  CHECK(acks[0].find("\rMSA|AA|CTRL-42") != std::string::npos);
}

void testRejected() {
  struct Case {
    mllp::RejectCode code;
    int expected;
    mllp::AckKind kind;
  };
  for (const Case& k : {Case{mllp::RejectCode::AR, mllp::errc::AppReject, mllp::AckKind::AR},
                        Case{mllp::RejectCode::AE, mllp::errc::AppError, mllp::AckKind::AE}}) {
    mllp::Server s;
    s.config("AckMode=HL7");
    std::atomic<int> seen{0};
    s.onAckOut([&](mllp::AckOutEvent& e) {
      ++seen;
      e.accept = false;
      e.rejectCode = k.code;
    });
    listenLocal(s);
    mllp::Client c;
    aim(c, s.localPort());
    c.config("AckMode=HL7");
    c.config("MaxRetries=1");
    std::vector<mllp::SendDoneEvent> done;
    c.onSendDone([&](const mllp::SendDoneEvent& e) { done.push_back(e); });
    int code = -1;
    mllp::SendResult result;
    try {
      c.send(hl7Message("REJ-1"));
    } catch (const mllp::SendError& e) {
      code = e.code();
      result = e.result();
      CHECK(std::string(e.what()).size() > 0);
    }
    CHECK(code == k.expected);
    CHECK(result.attempts == 2);
    CHECK(result.ackKind == k.kind);
    CHECK(result.messageId != 0);
    CHECK(seen.load() == 2);  // sent, refused, resent once, refused again
    REQUIRE(done.size() == 1);
    CHECK(done[0].resultCode == k.expected);
    CHECK(done[0].attempts == 2);
    CHECK(done[0].ackKind == k.kind);
    CHECK(c.pending() == 0);
  }
  // The exception is an mllp::Error too (what the brief's callers catch).
  mllp::Server s;
  s.onAckOut([](mllp::AckOutEvent& e) { e.accept = false; });  // a NAK byte
  listenLocal(s);
  mllp::Client c;
  aim(c, s.localPort());
  c.config("MaxRetries=0");
  CHECK_THROWS_CODE(c.send(sample()), mllp::errc::NakReceived);
}

void testAsync() {
  mllp::Server s;
  std::atomic<int> received{0};
  s.onMessage([&](const mllp::MessageEvent&) { ++received; });
  listenLocal(s);
  mllp::Client c;
  aim(c, s.localPort());
  c.config("MaxOutstanding=4");
  std::vector<std::uint64_t> ids;
  std::vector<std::uint64_t> done;
  std::vector<std::string> doneControlIds;
  c.onSendDone([&](const mllp::SendDoneEvent& e) {
    CHECK(e.resultCode == 0);
    done.push_back(e.messageId);
    doneControlIds.emplace_back(e.controlId);
  });
  for (int i = 0; i < 20; ++i) ids.push_back(c.sendAsync(hl7Message("ASYNC-" + std::to_string(i))));
  CHECK(c.pending() == 20);
  CHECK(done.empty());  // nothing happens outside doEvents
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  std::size_t pending = 20;
  while (pending > 0 && Clock::now() < deadline) pending = c.doEvents(100);
  CHECK(pending == 0);
  CHECK(done == ids);
  REQUIRE(doneControlIds.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(doneControlIds[static_cast<std::size_t>(i)] == "ASYNC-" + std::to_string(i));
  CHECK(received.load() == 20);
  CHECK(c.doEvents(0) == 0);
}

void testAckTimeout() {
  // A server that defers every acknowledgement and never gives it.
  mllp::Server s;
  s.onAckOut([](mllp::AckOutEvent& e) { e.defer = true; });
  listenLocal(s);
  mllp::Client c;
  aim(c, s.localPort());
  c.setTimeout(1);
  c.config("MaxRetries=0");
  std::vector<int> codes;
  c.onSendDone([&](const mllp::SendDoneEvent& e) { codes.push_back(e.resultCode); });
  int code = -1;
  mllp::SendResult result;
  try {
    c.send(sample());
  } catch (const mllp::SendError& e) {
    code = e.code();
    result = e.result();
  }
  CHECK(code == mllp::errc::AckTimeout);
  CHECK(result.attempts == 1);
  CHECK(result.ackKind == mllp::AckKind::None);
  CHECK((codes == std::vector<int>{mllp::errc::AckTimeout}));

  // A raw listener that accepts and never answers.
  SilentListener quiet;
  mllp::Client q;
  aim(q, quiet.port());
  q.setTimeout(1);
  q.config("MaxRetries=0");
  CHECK_THROWS_CODE(q.send(sample()), mllp::errc::AckTimeout);
}

void testConnectRefused() {
  const std::uint16_t port = unusedPort();
  mllp::Client c;
  aim(c, port);
  c.setTimeout(2);
  c.config("MaxRetries=0");
  CHECK_THROWS_CODE(c.connect(), mllp::errc::ConnectionRefused);
  CHECK(!c.connected());
  int code = -1;
  try {
    c.send(sample());
  } catch (const mllp::Error& e) {
    code = e.code();
  }
  CHECK(code == mllp::errc::ConnectionRefused);
  // An asynchronous send reports it in SendDone.
  std::vector<int> codes;
  c.onSendDone([&](const mllp::SendDoneEvent& e) { codes.push_back(e.resultCode); });
  c.sendAsync(sample());
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (c.doEvents(100) > 0 && Clock::now() < deadline) {
  }
  CHECK((codes == std::vector<int>{mllp::errc::ConnectionRefused}));
}

void testHandlersAndReentrancy() {
  mllp::Server s;
  listenLocal(s);
  mllp::Client c;
  aim(c, s.localPort());
  int reentrant = -1;
  std::uint64_t queuedInside = 0;
  std::vector<std::string> reported;
  c.onException([&](std::string_view event, std::exception_ptr) { reported.emplace_back(event); });
  c.onConnected([&](const mllp::ConnectedEvent&) { throw std::runtime_error("boom"); });  // reported, harmless
  c.onSendDone([&](const mllp::SendDoneEvent& e) {
    if (queuedInside != 0) return;
    try {
      c.send(sample());
    } catch (const mllp::Error& err) {
      reentrant = err.code();
    }
    (void)c.remotePort();  // property reads are allowed
    queuedInside = c.sendAsync(hl7Message("FROM-HANDLER"));  // and so is sendAsync
    CHECK(e.resultCode == 0);
  });
  CHECK(c.send(sample()).attempts == 1);
  CHECK(reentrant == mllp::errc::Reentrant);
  CHECK(queuedInside != 0);
  CHECK((reported == std::vector<std::string>{"Connected"}));
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (c.doEvents(100) > 0 && Clock::now() < deadline) {
  }
  CHECK(c.pending() == 0);
  // Removing a handler: an empty function.
  c.onSendDone({});
  CHECK(c.send(sample()).attempts == 1);
}

// ---- TLS: a throw-away PKI made with the openssl command line tool -----------------------------

bool g_skipped = false;  // the case could not run here (exit code 77: ctest's SKIP code)

struct Pki {
  std::string dir;
  std::string path(const char* name) const { return dir + "/" + name; }
};

// CA + server certificate (localhost, 127.0.0.1) + an unrelated CA, once per process.
const Pki* pki() {
  static std::unique_ptr<Pki> made;
  static bool tried = false;
  if (tried) return made.get();
  tried = true;
  if (std::system("openssl version >/dev/null 2>&1") != 0) return nullptr;
  char tmpl[] = "/tmp/mllp-cpp-client-tls-XXXXXX";
  if (!::mkdtemp(tmpl)) return nullptr;
  auto p = std::make_unique<Pki>();
  p->dir = tmpl;
  const char* script = R"SH(set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=MLLP Test CA"
openssl req -x509 $ec -keyout other.key -out other.pem -days 2 -subj "/CN=Some Other CA"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
openssl req $ec -keyout server.key -out server.csr -subj "/CN=localhost/O=MLLP Test"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 0x2001 -days 2 -extfile server.ext -out server.pem
cat server.key server.pem > server-key.pem
)SH";
  {
    std::ofstream f(p->path("make-pki.sh"));
    f << script;
  }
  const std::string cmd = "cd '" + p->dir + "' && sh make-pki.sh >make-pki.log 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "  making the test PKI failed (see %s/make-pki.log)\n", p->dir.c_str());
    return nullptr;
  }
  made = std::move(p);
  std::atexit([] { std::system(("rm -rf '" + made->dir + "'").c_str()); });
  return made.get();
}

void testTls() {
  if (std::system("openssl version >/dev/null 2>&1") != 0) {
    std::printf("  (skipped: the openssl command line tool is not installed)\n");
    g_skipped = true;
    return;
  }
  const Pki* p = pki();
  REQUIRE(p != nullptr);
  mllp::Server s;
  s.setSslCert(mllp::Certificate(mllp::CertStoreType::PemKeyFile, p->path("server-key.pem")));
  s.setSslEnabled(true);
  listenLocal(s);

  {  // trusted: the CA as PEM text
    mllp::Client c;
    aim(c, s.localPort());
    c.setSslEnabled(true);
    c.config("SSLServerCACerts=" + readFile(p->path("ca.pem").c_str()));
    std::vector<std::string> subjects;
    std::vector<std::string> status;
    c.onSslServerAuthentication([&](mllp::SslServerAuthenticationEvent& e) {
      subjects.emplace_back(e.certSubject);
      status.emplace_back(e.status);
      CHECK(e.accept);
      CHECK(!e.certEncoded.empty());
    });
    const mllp::SendResult r = c.send(sample());
    CHECK(r.ackKind == mllp::AckKind::Ack);
    CHECK(subjects.size() == 1 && subjects[0].find("CN=localhost") != std::string::npos);
    CHECK((status == std::vector<std::string>{"OK"}));
  }
  {  // trusted: the CA as a file
    mllp::Client c;
    aim(c, s.localPort());
    c.setSslEnabled(true);
    c.config("SSLAcceptServerCertStore=" + p->path("ca.pem"));
    CHECK(c.send(sample()).attempts == 1);
  }
  for (const bool overrideIt : {false, true}) {  // another CA: refused unless the handler accepts
    mllp::Client c;
    aim(c, s.localPort());
    c.setSslEnabled(true);
    c.config("MaxRetries=0");
    c.config("SSLServerCACerts=" + readFile(p->path("other.pem").c_str()));
    int seen = 0;
    c.onSslServerAuthentication([&](mllp::SslServerAuthenticationEvent& e) {
      ++seen;
      CHECK(!e.accept);
      CHECK(e.status != "OK");
      if (overrideIt) e.accept = true;
    });
    if (overrideIt) {
      CHECK(c.send(sample()).ackKind == mllp::AckKind::Ack);
    } else {
      CHECK_THROWS_CODE(c.send(sample()), mllp::errc::TlsServerRejected);
    }
    CHECK(seen == 1);
  }
  {  // a throwing handler refuses the server
    mllp::Client c;
    aim(c, s.localPort());
    c.setSslEnabled(true);
    c.config("MaxRetries=0");
    c.config("SSLServerCACerts=" + readFile(p->path("ca.pem").c_str()));
    int reported = 0;
    c.onException([&](std::string_view, std::exception_ptr) { ++reported; });
    c.onSslServerAuthentication([](mllp::SslServerAuthenticationEvent&) { throw std::runtime_error("no"); });
    CHECK_THROWS_CODE(c.connect(), mllp::errc::TlsServerRejected);
    CHECK(reported == 1);
  }
}

// examples/receiver (on a free port, one message) and examples/sender against it.
void testExample(const char* receiverPath, const char* senderPath) {
  int out[2];
  REQUIRE(::pipe(out) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    ::alarm(20);
    ::execl(receiverPath, receiverPath, "0", "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (text.find('\n') == std::string::npos && Clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  unsigned port = 0;
  std::sscanf(text.c_str(), "listening on port %u", &port);
  CHECK(port != 0);
  if (port != 0) {
    const std::string cmd = "'" + std::string(senderPath) + "' " + std::to_string(port) + " '" +
                            std::string(MLLP_SAMPLE_ADT_A01) + "' 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    REQUIRE(f != nullptr);
    std::string said;
    char buf[512];
    while (std::fgets(buf, sizeof buf, f)) said += buf;
    const int status = ::pclose(f);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(said.find("connected (connection 1)") != std::string::npos);
    CHECK(said.find("acknowledged ACK after 1 attempt(s)") != std::string::npos);
    if (said.find("acknowledged") == std::string::npos) std::fprintf(stderr, "  sender said: %s\n", said.c_str());
  }
  int status = 0;
  for (int i = 0; i < 500 && ::waitpid(pid, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (::waitpid(pid, &status, WNOHANG) == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    CHECK(!"receiver did not exit after one message");
  } else {
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  ::close(out[0]);
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  ::alarm(120);  // watchdog: ctest's TIMEOUT is the first line of defence
  const std::string only = argc > 1 ? argv[1] : "";
  struct Case {
    const char* name;
    std::function<void()> fn;
  };
  const std::vector<Case> cases = {
      {"client_types", testTypes},
      {"client_sync_send", testSyncSend},
      {"client_hl7_ack", testHl7Ack},
      {"client_rejected", testRejected},
      {"client_async", testAsync},
      {"client_ack_timeout", testAckTimeout},
      {"client_connect_refused", testConnectRefused},
      {"client_handlers", testHandlersAndReentrancy},
      {"client_tls", testTls},
      {"client_example", [&] {
         if (argc > 3) testExample(argv[2], argv[3]);
         else std::printf("  (skipped: no receiver and sender paths)\n");
       }},
  };
  int ran = 0;
  for (const auto& c : cases) {
    if (!only.empty() && only != "all" && only != c.name) continue;
    g_current = c.name;
    const int before = g_failures;
    try {
      c.fn();
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "  FAIL [%s]: uncaught exception: %s\n", c.name, e.what());
    }
    std::printf("%s %s\n", g_failures == before ? "ok  " : "FAIL", c.name);
    std::fflush(stdout);
    ++ran;
  }
  if (ran == 0) {
    std::fprintf(stderr, "no test named %s\n", only.c_str());
    return 2;
  }
  std::printf("%d failure(s)\n", g_failures);
  if (g_failures == 0 && g_skipped && ran == 1) return 77;  // ctest: SKIP_RETURN_CODE
  return g_failures == 0 ? 0 : 1;
}
