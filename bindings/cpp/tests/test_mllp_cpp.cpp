// Tests of the C++ wrapper: a real server driven through mllp.hpp, talked to by plain POSIX
// socket clients. Every wait is bounded; alarm() is a last-resort watchdog.
#include <mllp.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#ifndef MLLP_SAMPLE_ADT_A01
#error "MLLP_SAMPLE_ADT_A01 must name the sample message"
#endif
#ifndef MLLP_SAMPLE_BATCH
#error "MLLP_SAMPLE_BATCH must name the sample batch"
#endif

namespace {

// ---- a tiny test framework ----------------------------------------------------------------
int g_failures = 0;
std::string g_current;

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      ++g_failures;                                                                        \
      std::fprintf(stderr, "  FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, g_current.c_str(), #cond); \
    }                                                                                      \
  } while (0)

#define REQUIRE(cond)                                                                      \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      ++g_failures;                                                                        \
      std::fprintf(stderr, "  FAIL %s:%d [%s]: %s (aborting this test)\n", __FILE__, __LINE__, \
                   g_current.c_str(), #cond);                                              \
      return;                                                                              \
    }                                                                                      \
  } while (0)

// Expects stmt to throw mllp::Error with the given code.
#define CHECK_THROWS_CODE(stmt, expected)                                                  \
  do {                                                                                     \
    int got_ = -1;                                                                         \
    std::string msg_;                                                                      \
    try {                                                                                  \
      stmt;                                                                                \
    } catch (const mllp::Error& e_) {                                                      \
      got_ = e_.code();                                                                    \
      msg_ = e_.what();                                                                    \
    }                                                                                      \
    if (got_ != (expected)) {                                                              \
      ++g_failures;                                                                        \
      std::fprintf(stderr, "  FAIL %s:%d [%s]: %s -> code %d, expected %d\n", __FILE__,   \
                   __LINE__, g_current.c_str(), #stmt, got_, (expected));                  \
    } else if (msg_.empty()) {                                                             \
      ++g_failures;                                                                        \
      std::fprintf(stderr, "  FAIL %s:%d: empty error message\n", __FILE__, __LINE__);    \
    }                                                                                      \
  } while (0)

using Clock = std::chrono::steady_clock;
constexpr auto kWait = std::chrono::seconds(5);

// Polls cond until true or kWait elapses.
bool waitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit = kWait) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

std::string readFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

const std::string kSB = "\x0b";
const std::string kEB = "\x1c\x0d";
const std::string kAck = "\x0b\x06\x1c\x0d";
const std::string kNak = "\x0b\x15\x1c\x0d";
std::string frame(const std::string& payload) { return kSB + payload + kEB; }

// ---- a plain POSIX MLLP client --------------------------------------------------------------
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  std::uint16_t localPort() const {
    sockaddr_in a{};
    socklen_t n = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n);
    return ntohs(a.sin_port);
  }
  bool sendAll(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads until `want` bytes arrived, EOF, an error or the time limit.
  std::string recvN(std::size_t want, std::chrono::milliseconds limit = kWait) {
    std::string out;
    const auto deadline = Clock::now() + limit;
    while (out.size() < want) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, std::min(sizeof buf, want - out.size()), 0);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // Reads one MLLP block (0x0B ... 0x1C 0x0D) and returns its payload.
  bool recvFrame(std::string& payload, std::chrono::milliseconds limit = kWait) {
    std::string all;
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      const std::string c = recvN(1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (c.empty()) return false;
      all += c;
      if (all.size() >= 3 && all.compare(all.size() - 2, 2, kEB) == 0) {
        if (all[0] != kSB[0]) return false;
        payload = all.substr(1, all.size() - 3);
        return true;
      }
    }
    return false;
  }
  // True when the server closed the connection (EOF or reset) within the limit.
  bool waitClosed(std::chrono::milliseconds limit = kWait) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 1))) <= 0) continue;
      char buf[256];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool eof_ = false;
};

// A listening server on 127.0.0.1 with an ephemeral port.
void listenLocal(mllp::Server& s) {
  s.setLocalHost("127.0.0.1");
  s.setLocalPort(0);
  s.startListening();
}

// Collects the ids of Connected / Disconnected events.
struct ConnTracker {
  std::mutex m;
  std::vector<mllp::ConnectionId> connected, disconnected;
  void attach(mllp::Server& s) {
    s.onConnected([this](const mllp::ConnectedEvent& e) {
      std::lock_guard<std::mutex> l(m);
      connected.push_back(e.connectionId);
    });
    s.onDisconnected([this](const mllp::DisconnectedEvent& e) {
      std::lock_guard<std::mutex> l(m);
      disconnected.push_back(e.connectionId);
    });
  }
  std::size_t nConnected() {
    std::lock_guard<std::mutex> l(m);
    return connected.size();
  }
  std::size_t nDisconnected() {
    std::lock_guard<std::mutex> l(m);
    return disconnected.size();
  }
  mllp::ConnectionId last() {
    std::lock_guard<std::mutex> l(m);
    return connected.empty() ? 0 : connected.back();
  }
};

// ---- tests ------------------------------------------------------------------------------------

void testTypes() {
  static_assert(!std::is_copy_constructible_v<mllp::Server>, "Server must not be copyable");
  static_assert(!std::is_copy_assignable_v<mllp::Server>, "Server must not be copy-assignable");
  static_assert(std::is_nothrow_move_constructible_v<mllp::Server>, "Server must be movable");
  static_assert(std::is_nothrow_move_assignable_v<mllp::Server>, "Server must be move-assignable");
  static_assert(std::is_base_of_v<std::runtime_error, mllp::Error>, "Error is a runtime_error");
  CHECK(mllp::libraryVersion() == std::string(mllp_version()));
  CHECK(!mllp::errorDescription(670).empty());
  mllp::ByteView v("abc");
  CHECK(v.size() == 3 && v.str() == "abc" && v == mllp::ByteView(std::string("abc")));
}

void testDefaultsAndConfig() {
  mllp::Server s;
  CHECK(!s.listening());
  CHECK(s.localHost().empty());
  CHECK(s.localPort() == 0);
  CHECK(s.defaultTimeout() == 0);
  CHECK(!s.keepAlive());
  CHECK(s.version() == 2);
  CHECK(s.connections().empty());
  CHECK(s.connectionCount() == 0);

  s.setLocalHost("127.0.0.1");
  CHECK(s.localHost() == "127.0.0.1");
  s.setDefaultTimeout(7);
  CHECK(s.defaultTimeout() == 7);
  s.setKeepAlive(true);
  CHECK(s.keepAlive());
  s.setVersion(1);
  CHECK(s.version() == 1);

  // Config round trips (names are case-insensitive).
  CHECK(s.config("LogLevel=3").empty());
  CHECK(s.config("LogLevel") == "3");
  CHECK(s.config("loglevel") == "3");
  CHECK(s.config("ACKChar") == "0x06");
  s.config("ReceiveTimeout=12");
  CHECK(s.config("ReceiveTimeout") == "12");
  s.config("AckMode=hl7");
  CHECK(s.config("AckMode") == "HL7");
  // A long value goes through the query-then-copy path with a large buffer.
  const std::string longHost(200, 'a');
  s.setLocalHost(longHost);
  CHECK(s.localHost() == longHost);

  // Reset: properties and settings back to the defaults.
  s.reset();
  CHECK(s.localHost().empty());
  CHECK(s.defaultTimeout() == 0);
  CHECK(!s.keepAlive());
  CHECK(s.version() == 2);
  CHECK(s.config("LogLevel") == "1");
}

void testErrors() {
  mllp::Server s;
  CHECK_THROWS_CODE(s.config("NoSuchSetting"), mllp::errc::UnknownSetting);      // 2004
  CHECK_THROWS_CODE(s.config("NoSuchSetting=1"), mllp::errc::UnknownSetting);    // 2004
  CHECK_THROWS_CODE(s.config("LogLevel=9"), mllp::errc::InvalidValue);           // 2005
  CHECK_THROWS_CODE(s.setVersion(3), mllp::errc::InvalidValue);                  // 2005
  CHECK(s.version() == 2);
  CHECK_THROWS_CODE(s.config("SSLCipherStrength"), mllp::errc::NotSupported);    // 2003
  CHECK_THROWS_CODE(s.disconnect(999999), mllp::errc::NoSuchConnection);         // 2002
  CHECK_THROWS_CODE(s.connection(999999).remoteHost(), mllp::errc::NoSuchConnection);
  CHECK_THROWS_CODE(s.sendBytes(999999, "x"), mllp::errc::NoSuchConnection);

  // The reference's codes 106 / 107 while listening.
  listenLocal(s);
  const std::uint16_t port = s.localPort();
  CHECK(port != 0);
  CHECK_THROWS_CODE(s.setLocalPort(1), mllp::errc::CannotChangeLocalPort);       // 106
  CHECK_THROWS_CODE(s.setLocalHost("0.0.0.0"), mllp::errc::CannotChangeLocalHost);  // 107
  CHECK(s.localPort() == port);

  // Address in use (10048) on a second server.
  mllp::Server t;
  t.setLocalHost("127.0.0.1");
  t.setLocalPort(port);
  CHECK_THROWS_CODE(t.startListening(), 10048);

  // Error carries the library's message and the code's description.
  try {
    s.config("NoSuchSetting");
  } catch (const mllp::Error& e) {
    CHECK(std::string(e.what()).find("NoSuchSetting") != std::string::npos);
    CHECK(e.description() == mllp::errorDescription(mllp::errc::UnknownSetting));
  }
}

void testConnectionRequest() {
  ConnTracker t;
  std::atomic<bool> refuse{false};
  std::atomic<int> requests{0};
  std::mutex m;
  std::string lastAddress;
  std::uint16_t lastPort = 0;
  mllp::Server s;  // declared after what its handlers use: destroyed (firing events) first
  t.attach(s);
  s.onConnectionRequest([&](mllp::ConnectionRequestEvent& e) {
    ++requests;
    {
      std::lock_guard<std::mutex> l(m);
      lastAddress = std::string(e.address);
      lastPort = e.port;
    }
    CHECK(e.accept);  // accepted by default
    if (refuse) e.accept = false;
  });
  listenLocal(s);
  CHECK(s.listening());

  // Accepted.
  Client a(s.localPort());
  REQUIRE(a.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 1; }));
  CHECK(requests == 1);
  {
    std::lock_guard<std::mutex> l(m);
    CHECK(lastAddress == "127.0.0.1");
    CHECK(lastPort == a.localPort());
  }
  const mllp::ConnectionId id = t.last();
  CHECK(id != 0);
  const auto ids = s.connections();
  CHECK(ids.size() == 1 && ids[0] == id);
  mllp::Connection c = s.connection(id);
  CHECK(c.connectionId() == id);
  CHECK(c.connected());
  CHECK(c.remoteHost() == "127.0.0.1");
  CHECK(c.remotePort() == a.localPort());
  CHECK(c.localAddress() == "127.0.0.1");
  CHECK(c.timeout() == 0);
  c.setTimeout(3);
  CHECK(c.timeout() == 3);

  // Refused: the server closes the socket, no Connected, still one connection.
  refuse = true;
  Client b(s.localPort());
  REQUIRE(b.ok());
  CHECK(b.waitClosed());
  CHECK(requests == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(t.nConnected() == 1);
  CHECK(s.connectionCount() == 1);

  // Removing the handler accepts again.
  s.onConnectionRequest(nullptr);
  Client d(s.localPort());
  REQUIRE(d.ok());
  CHECK(waitFor([&] { return t.nConnected() == 2; }));
  CHECK(requests == 2);
}

struct Recorder {
  std::mutex m;
  std::vector<std::string> order;
  std::string data;
  std::uint64_t lastBytesTransferred = 0;
  bool bytesCountOk = true;
  std::uint64_t startSeq = 0, endSeq = 0, ackSeq = 0;
  std::string ackMessage;
  void add(const std::string& what) {
    std::lock_guard<std::mutex> l(m);
    if (order.empty() || order.back() != what) order.push_back(what);  // collapse Transfer runs
  }
  std::vector<std::string> snapshot() {
    std::lock_guard<std::mutex> l(m);
    return order;
  }
};

void attachRecorder(mllp::Server& s, Recorder& r) {
  s.onStartTransfer([&r](const mllp::StartTransferEvent& e) {
    r.add("start");
    std::lock_guard<std::mutex> l(r.m);
    r.startSeq = e.messageSeq;
  });
  s.onTransfer([&r](const mllp::TransferEvent& e) {
    r.add("transfer");
    std::lock_guard<std::mutex> l(r.m);
    r.data.append(e.data.str());
    if (e.bytesTransferred != r.lastBytesTransferred + e.data.size()) r.bytesCountOk = false;
    r.lastBytesTransferred = e.bytesTransferred;
  });
  s.onEndTransfer([&r](const mllp::EndTransferEvent& e) {
    r.add("end");
    std::lock_guard<std::mutex> l(r.m);
    r.endSeq = e.messageSeq;
  });
}

void testReceiveMessage() {
  const std::string msg = readFile(MLLP_SAMPLE_ADT_A01);
  REQUIRE(!msg.empty());
  ConnTracker t;
  Recorder r;
  mllp::Server s;
  t.attach(s);
  attachRecorder(s, r);
  s.onAckOut([&r](mllp::AckOutEvent& e) {
    r.add("ackout");
    std::lock_guard<std::mutex> l(r.m);
    r.ackSeq = e.messageSeq;
    r.ackMessage = e.message.toString();
    CHECK(e.accept);
  });
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 1; }));
  // Send in two pieces to exercise reassembly.
  REQUIRE(c.sendAll(kSB + msg.substr(0, msg.size() / 2)));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(c.sendAll(msg.substr(msg.size() / 2) + kEB));
  CHECK(c.recvN(4) == kAck);

  REQUIRE(waitFor([&] { return r.snapshot().size() >= 4; }));
  const auto order = r.snapshot();
  CHECK((order == std::vector<std::string>{"start", "transfer", "end", "ackout"}));
  {
    std::lock_guard<std::mutex> l(r.m);
    CHECK(r.data == msg);  // exact bytes
    CHECK(r.bytesCountOk);
    CHECK(r.lastBytesTransferred == msg.size());
    CHECK(r.startSeq == 1 && r.endSeq == 1 && r.ackSeq == 1);
    CHECK(r.ackMessage == msg);
  }
  // With no stream or file, the message is kept in OutputData.
  CHECK(s.connection(t.last()).outputData() == msg);
  const auto bytes = s.connection(t.last()).outputDataB();
  CHECK(std::string(bytes.begin(), bytes.end()) == msg);

#ifdef MLLP_SAMPLE_BIG
  // A large message (3 x the 1 MiB sample) arrives in several Transfer pieces, byte for byte
  // (the library hands complete messages over in pieces of at most 1 MiB).
  const std::string one = readFile(MLLP_SAMPLE_BIG);
  const std::string big = one + one + one;
  if (!big.empty()) {
    {
      std::lock_guard<std::mutex> l(r.m);
      r.data.clear();
      r.lastBytesTransferred = 0;
    }
    std::atomic<int> pieces{0};
    s.onStartTransfer([&r](const mllp::StartTransferEvent&) {
      std::lock_guard<std::mutex> l(r.m);
      r.data.clear();
      r.lastBytesTransferred = 0;
    });
    s.onTransfer([&r, &pieces](const mllp::TransferEvent& e) {
      ++pieces;
      std::lock_guard<std::mutex> l(r.m);
      r.data.append(e.data.str());
      if (e.bytesTransferred != r.lastBytesTransferred + e.data.size()) r.bytesCountOk = false;
      r.lastBytesTransferred = e.bytesTransferred;
    });
    std::thread writer([&] { c.sendAll(frame(big)); });
    CHECK(c.recvN(4, std::chrono::seconds(20)) == kAck);
    writer.join();
    CHECK(waitFor([&] {
      std::lock_guard<std::mutex> l(r.m);
      return r.ackSeq == 2;
    }));
    std::lock_guard<std::mutex> l(r.m);
    CHECK(r.data == big);
    CHECK(r.bytesCountOk);
    CHECK(r.ackMessage == big);
    CHECK(pieces >= 3);
    s.onTransfer(nullptr);
    s.onStartTransfer(nullptr);
  }
  const std::uint64_t nextSeq = big.empty() ? 2 : 3;
#else
  const std::uint64_t nextSeq = 2;
#endif

  // Another message: the next sequence number.
  REQUIRE(c.sendAll(frame("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|2|P|2.5\r")));
  CHECK(c.recvN(4) == kAck);
  CHECK(waitFor([&] {
    std::lock_guard<std::mutex> l(r.m);
    return r.ackSeq == nextSeq;
  }));
}

void testAckOutReject() {
  ConnTracker t;
  std::atomic<int> n{0};
  mllp::Server s;
  t.attach(s);
  s.onAckOut([&](mllp::AckOutEvent& e) {
    e.accept = (n++ % 2) == 1;  // reject the first, accept the second
  });
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(c.sendAll(frame(readFile(MLLP_SAMPLE_ADT_A01))));
  CHECK(c.recvN(4) == kNak);  // 0x0B 0x15 0x1C 0x0D
  REQUIRE(c.sendAll(frame("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|2|P|2.5\r")));
  CHECK(c.recvN(4) == kAck);

  // AckMode=HL7: a rejected message gets an HL7 ACK whose MSA-1 is the reject code.
  mllp::Server h;
  h.config("AckMode=HL7");
  h.onAckOut([](mllp::AckOutEvent& e) {
    e.accept = false;
    e.rejectCode = mllp::RejectCode::AR;
  });
  listenLocal(h);
  Client d(h.localPort());
  REQUIRE(d.ok());
  REQUIRE(d.sendAll(frame(readFile(MLLP_SAMPLE_ADT_A01))));
  std::string ack;
  REQUIRE(d.recvFrame(ack));
  CHECK(ack.find("MSA|AR") != std::string::npos);
}

void testMetrics() {
  mllp::Server s;
  std::atomic<int> n{0};
  s.onAckOut([&](mllp::AckOutEvent& e) { e.accept = (n++ % 2) == 0; });  // ACK, NAK, ACK
  CHECK(s.metrics().messagesReceived == 0);
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  const std::string f = frame("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|M1|P|2.5\r");
  for (const auto* want : {&kAck, &kNak, &kAck}) {
    REQUIRE(c.sendAll(f));
    CHECK(c.recvN(4) == *want);
  }
  // Replies are counted once their write returned: wait for the third.
  mllp::Metrics m;
  for (int i = 0; i < 500 && (m = s.metrics()).acksSent + m.naksSent < 3; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(m.connectionsAccepted == 1);
  CHECK(m.connectionsOpen == 1);
  CHECK(m.connectionsRefused == 0);
  CHECK(m.messagesReceived == 3);
  CHECK(m.messagesAccepted == 2);
  CHECK(m.messagesRefused == 1);
  CHECK(m.messagesDuplicate == 0);
  CHECK(m.bytesIn == 3 * f.size());
  CHECK(m.bytesOut == 12);
  CHECK(m.acksSent == 2);
  CHECK(m.naksSent == 1);
  CHECK(m.errors == 0);
  CHECK(m.ackLatencyCount == 3);
  CHECK(m.ackLatencySumSeconds > 0);
  const std::string text = s.metricsText();
  CHECK(text.find("# TYPE mllp_messages_total counter\n") != std::string::npos);
  CHECK(text.find("\nmllp_messages_total{result=\"refused\"} 1\n") != std::string::npos);
  CHECK(text.find("\nmllp_acks_sent_total{kind=\"ack\"} 2\n") != std::string::npos);
  CHECK(text.find("\nmllp_ack_latency_seconds_count 3\n") != std::string::npos);
}

void testServerSends() {
  ConnTracker t;
  std::mutex m;
  std::vector<bool> acks;
  std::vector<int> errors;
  mllp::Server s;
  t.attach(s);
  s.onAckIn([&](const mllp::AckInEvent& e) {
    std::lock_guard<std::mutex> l(m);
    acks.push_back(e.accepted);
  });
  s.onError([&](const mllp::ErrorEvent& e) {
    std::lock_guard<std::mutex> l(m);
    errors.push_back(e.errorCode);
  });
  auto nAcks = [&] {
    std::lock_guard<std::mutex> l(m);
    return acks.size();
  };
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 1; }));
  const mllp::ConnectionId id = t.last();
  const std::string out1 = "MSH|^~\\&|SRV|X|CLI|Y|20240101||ORU^R01|100|P|2.5\r";

  // sendBytes (asynchronous: Timeout 0).
  s.sendBytes(id, out1);
  std::string got;
  REQUIRE(c.recvFrame(got));
  CHECK(got == out1);
  CHECK(s.connection(id).inputData().empty());  // sendBytes does not touch InputData
  REQUIRE(c.sendAll(kAck));
  REQUIRE(waitFor([&] { return nAcks() == 1; }));

  // send with InputData; the client answers with a NAK -> AckIn(false) and Error 670.
  mllp::Connection conn = s.connection(id);
  const std::string out2 = "MSH|^~\\&|SRV|X|CLI|Y|20240101||ORU^R01|101|P|2.5\r";
  conn.setInputData(out2);
  CHECK(conn.inputData() == out2);
  CHECK(conn.inputDataB() == std::vector<std::uint8_t>(out2.begin(), out2.end()));
  s.send(id);
  REQUIRE(c.recvFrame(got));
  CHECK(got == out2);
  REQUIRE(c.sendAll(kNak));
  REQUIRE(waitFor([&] { return nAcks() == 2; }));
  {
    std::lock_guard<std::mutex> l(m);
    CHECK(acks[0] == true);
    CHECK(acks[1] == false);
  }
  CHECK(waitFor([&] {
    std::lock_guard<std::mutex> l(m);
    return std::find(errors.begin(), errors.end(), mllp::errc::NakReceived) != errors.end();
  }));

  // Synchronous send (Timeout > 0) waits for the client's ACK.
  conn.setTimeout(5);
  std::thread client([&] {
    std::string p;
    if (c.recvFrame(p) && p == out2) c.sendAll(kAck);
  });
  const auto t0 = Clock::now();
  bool ok = true;
  try {
    s.send(id);
  } catch (const mllp::Error& e) {
    ok = false;
    std::fprintf(stderr, "  synchronous send failed: %d %s\n", e.code(), e.what());
  }
  client.join();
  CHECK(ok);
  CHECK(Clock::now() - t0 < std::chrono::seconds(5));
  CHECK(waitFor([&] { return nAcks() == 3; }));

  // Synchronous send answered by a NAK -> Error 670 thrown.
  std::thread client2([&] {
    std::string p;
    if (c.recvFrame(p)) c.sendAll(kNak);
  });
  CHECK_THROWS_CODE(s.sendBytes(id, out1), mllp::errc::NakReceived);
  client2.join();

  // Interrupt: a synchronous send with no answer returns SendInterrupted.
  std::thread interrupter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    s.interrupt(id);
  });
  CHECK_THROWS_CODE(s.sendBytes(id, out1), mllp::errc::SendInterrupted);
  interrupter.join();
  std::string drained;
  CHECK(c.recvFrame(drained) && drained == out1);

  // InputFileName.
  conn.setTimeout(0);
  conn.setInputData("");
  conn.setInputFileName(MLLP_SAMPLE_ADT_A01);
  CHECK(conn.inputFileName() == MLLP_SAMPLE_ADT_A01);
  s.send(id);
  REQUIRE(c.recvFrame(got));
  CHECK(got == readFile(MLLP_SAMPLE_ADT_A01));
  conn.setInputFileName("");
  CHECK(conn.inputFileName().empty());
}

void testStreams() {
  const std::string msg = readFile(MLLP_SAMPLE_ADT_A01);
  ConnTracker t;
  mllp::Server s;
  t.attach(s);
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 1; }));
  const mllp::ConnectionId id = t.last();
  mllp::Connection conn = s.connection(id);

  // OutputFileName: the message goes to the file.
  const std::string path = "/tmp/mllp_cpp_test_" + std::to_string(::getpid()) + ".hl7";
  conn.setOutputFileName(path);
  CHECK(conn.outputFileName() == path);
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kAck);
  CHECK(readFile(path.c_str()) == msg);
  conn.setOutputFileName("");
  CHECK(conn.outputFileName().empty());
  ::unlink(path.c_str());

  // The wrapper keeps the functions alive until the library closes the stream.
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;

  // Output stream.
  std::mutex m;
  std::string written;
  conn.setOutputStream([&, alive](mllp::ByteView bytes) {
    std::lock_guard<std::mutex> l(m);
    written.append(bytes.str());
    return true;
  });
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kAck);
  CHECK(waitFor([&] {
    std::lock_guard<std::mutex> l(m);
    return written == msg;
  }));
  // CloseStreamAfterTransfer defaults to True: the holder is released after the message.
  CHECK(waitFor([&] { return watch.use_count() == 1; }));  // only `alive` itself

  // An output stream that fails refuses the message (NAK).
  conn.setOutputStream([](mllp::ByteView) { return false; });
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kNak);

  // Input stream: read in small pieces.
  std::size_t pos = 0;
  const std::string out = "MSH|^~\\&|SRV|X|CLI|Y|20240101||ORU^R01|7|P|2.5\rOBX|1|TX|||streamed\r";
  conn.setInputStream([&, alive](std::uint8_t* buf, std::size_t cap) -> std::ptrdiff_t {
    const std::size_t n = std::min<std::size_t>({cap, 10, out.size() - pos});
    std::memcpy(buf, out.data() + pos, n);
    pos += n;
    return static_cast<std::ptrdiff_t>(n);
  });
  s.send(id);
  std::string got;
  REQUIRE(c.recvFrame(got));
  CHECK(got == out);
  CHECK(waitFor([&] { return watch.use_count() == 1; }));

  // A stream set on a closed connection is released at once (the library takes it).
  auto alive2 = std::make_shared<int>(0);
  std::weak_ptr<int> watch2 = alive2;
  CHECK_THROWS_CODE(s.connection(999999).setInputStream([alive2](std::uint8_t*, std::size_t) -> std::ptrdiff_t { return 0; }),
                    mllp::errc::NoSuchConnection);
  alive2.reset();
  CHECK(watch2.expired());

  // A stream left set is released when the connection closes.
  conn.setOutputStream([alive](mllp::ByteView) { return true; });
  CHECK(watch.use_count() == 2);
  alive.reset();
  s.disconnect(id);
  CHECK(waitFor([&] { return watch.expired(); }));
}

void testDisconnectAndShutdown() {
  ConnTracker t;
  std::mutex m;
  std::vector<int> statusCodes;
  mllp::Server s;
  t.attach(s);
  s.onDisconnected([&](const mllp::DisconnectedEvent& e) {
    std::lock_guard<std::mutex> l(m);
    statusCodes.push_back(e.statusCode);
    std::lock_guard<std::mutex> l2(t.m);
    t.disconnected.push_back(e.connectionId);
  });
  listenLocal(s);
  const std::uint16_t port = s.localPort();
  Client a(port), b(port), c(port);
  REQUIRE(a.ok() && b.ok() && c.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 3; }));
  CHECK(s.connections().size() == 3);

  // Disconnect one.
  const mllp::ConnectionId first = t.connected[0];
  s.disconnect(first);
  REQUIRE(waitFor([&] { return t.nDisconnected() == 1; }));
  CHECK(t.disconnected[0] == first);
  CHECK(waitFor([&] { return s.connectionCount() == 2; }));
  CHECK_THROWS_CODE(s.connection(first).connected(), mllp::errc::NoSuchConnection);
  int closedClients = (a.waitClosed(std::chrono::milliseconds(200)) ? 1 : 0) +
                      (b.waitClosed(std::chrono::milliseconds(200)) ? 1 : 0) +
                      (c.waitClosed(std::chrono::milliseconds(200)) ? 1 : 0);
  CHECK(closedClients == 1);

  // A client that goes away: Disconnected too.
  // (Whichever of a/b/c is still open.)

  // Shutdown: not listening, everyone disconnected, handle reusable.
  s.shutdown();
  CHECK(waitFor([&] { return t.nDisconnected() == 3; }));
  CHECK(waitFor([&] { return !s.listening(); }));
  CHECK(waitFor([&] { return s.connectionCount() == 0; }));
  {
    std::lock_guard<std::mutex> l(m);
    for (int code : statusCodes) CHECK(code == 0);
  }
  Client refused(port);
  CHECK(!refused.ok() || refused.waitClosed());

  s.setLocalPort(0);
  s.startListening();
  CHECK(s.listening());
  Client again(s.localPort());
  REQUIRE(again.ok());
  CHECK(waitFor([&] { return t.nConnected() == 4; }));

  // StopListening keeps existing connections.
  s.stopListening();
  CHECK(!s.listening());
  CHECK(s.connectionCount() == 1);
}

void testMoveSemantics() {
  std::atomic<int> connects{0};
  mllp::Server a;
  a.onConnected([&](const mllp::ConnectedEvent&) { ++connects; });
  listenLocal(a);
  const std::uint16_t port = a.localPort();

  mllp::Server b(std::move(a));  // handlers and listening socket move along
  CHECK(!a);
  CHECK(static_cast<bool>(b));
  CHECK(b.listening());
  CHECK(b.localPort() == port);
  CHECK_THROWS_CODE(a.listening(), mllp::errc::BadState);
  CHECK_THROWS_CODE(a.onLog(nullptr), mllp::errc::BadState);
  Client c1(port);
  REQUIRE(c1.ok());
  CHECK(waitFor([&] { return connects == 1; }));

  mllp::Server d;
  listenLocal(d);
  d = std::move(b);  // frees d's own server, takes b's
  CHECK(!b);
  CHECK(d.localPort() == port);
  Client c2(port);
  REQUIRE(c2.ok());
  CHECK(waitFor([&] { return connects == 2; }));
  CHECK(d.connectionCount() == 2);

  d = std::move(d);  // self-move leaves it intact  // NOLINT
  CHECK(d.listening());

  // A moved-from server can be assigned a fresh one.
  a = mllp::Server();
  CHECK(static_cast<bool>(a));
  CHECK(!a.listening());

  std::vector<mllp::Server> many;
  for (int i = 0; i < 4; ++i) many.emplace_back();  // reallocation moves them
  many[3].setLocalPort(0);
  CHECK(many[3].version() == 2);
}

void testThrowingHandlers() {
  const std::string msg = readFile(MLLP_SAMPLE_ADT_A01);
  ConnTracker t;
  std::mutex m;
  std::vector<std::string> reported;
  mllp::Server s;
  t.attach(s);
  s.onException([&](std::string_view event, std::exception_ptr e) {
    std::string what;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
      what = "?";
    }
    std::lock_guard<std::mutex> l(m);
    reported.push_back(std::string(event) + ":" + what);
  });
  auto has = [&](const std::string& s2) {
    std::lock_guard<std::mutex> l(m);
    return std::find(reported.begin(), reported.end(), s2) != reported.end();
  };
  s.onTransfer([](const mllp::TransferEvent&) { throw std::runtime_error("boom"); });
  s.onStartTransfer([](const mllp::StartTransferEvent&) { throw 42; });  // not a std::exception
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kAck);  // the message still went through
  CHECK(waitFor([&] { return has("Transfer:boom"); }));
  CHECK(waitFor([&] { return has("StartTransfer:?"); }));

  // A throwing AckOut handler refuses the message (fail-safe).
  s.onAckOut([](mllp::AckOutEvent&) { throw std::logic_error("no"); });
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kNak);
  CHECK(waitFor([&] { return has("AckOut:no"); }));

  // A throwing ConnectionRequest handler refuses the connection.
  s.onConnectionRequest([](mllp::ConnectionRequestEvent&) { throw std::runtime_error("deny"); });
  Client d(s.localPort());
  REQUIRE(d.ok());
  CHECK(d.waitClosed());
  CHECK(waitFor([&] { return has("ConnectionRequest:deny"); }));
  s.onConnectionRequest(nullptr);

  // A throwing exception handler falls back to stderr; a throwing stream function fails.
  s.onException([](std::string_view, std::exception_ptr) { throw std::runtime_error("handler"); });
  s.onAckOut(nullptr);
  s.connection(t.last()).setOutputStream([](mllp::ByteView) -> bool { throw std::runtime_error("disk full"); });
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kNak);
  // The server still works.
  s.onTransfer(nullptr);
  s.onStartTransfer(nullptr);
  REQUIRE(c.sendAll(frame(msg)));
  CHECK(c.recvN(4) == kAck);
}

void testReentrancy() {
  // Inside a handler: queued calls work, a synchronous send fails with Reentrant.
  std::atomic<int> code{-1}, freeCode{-1};
  std::atomic<bool> done{false};
  std::string hostInHandler;
  mllp::Server s;
  s.onConnected([&](const mllp::ConnectedEvent& e) {
    hostInHandler = s.connection(e.connectionId).remoteHost();  // property read in a callback
    s.config("LogLevel=2");
    s.connection(e.connectionId).setTimeout(5);
    try {
      s.sendBytes(e.connectionId, "MSH|sync\r");
    } catch (const mllp::Error& err) {
      code = err.code();
    }
    s.connection(e.connectionId).setTimeout(0);
    freeCode = mllp_server_free(s.handle());  // what ~Server would do here: refused
    s.sendBytes(e.connectionId, "MSH|async\r");  // queued: fine here
    done = true;
  });
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(waitFor([&] { return done.load(); }));
  CHECK(code == mllp::errc::Reentrant);
  CHECK(freeCode == mllp::errc::Reentrant);
  CHECK(hostInHandler == "127.0.0.1");
  CHECK(s.config("LogLevel") == "2");
  std::string got;
  REQUIRE(c.recvFrame(got));
  CHECK(got == "MSH|async\r");
}

void testDoEventsMode() {
  const auto me = std::this_thread::get_id();
  std::atomic<int> connects{0}, messages{0};
  std::atomic<bool> wrongThread{false};
  mllp::Server s;
  s.config("EventMode=DoEvents");
  s.onConnected([&](const mllp::ConnectedEvent&) {
    if (std::this_thread::get_id() != me) wrongThread = true;
    ++connects;
  });
  s.onAckOut([&](mllp::AckOutEvent& e) {
    if (std::this_thread::get_id() != me) wrongThread = true;
    ++messages;
    e.accept = true;
  });
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(connects == 0);  // nothing is delivered until doEvents
  const auto deadline = Clock::now() + kWait;
  while (connects == 0 && Clock::now() < deadline) s.doEvents(50);
  CHECK(connects == 1);
  REQUIRE(c.sendAll(frame("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r")));
  std::thread reader([&] { CHECK(c.recvN(4) == kAck); });
  while (messages == 0 && Clock::now() < deadline) s.doEvents(50);
  reader.join();
  CHECK(messages == 1);
  CHECK(!wrongThread);
}

void testConnectionIds() {
  // Ids as numbers and as the reference's strings; every unknown id is Error 2002.
  ConnTracker t;
  mllp::Server s;
  t.attach(s);
  listenLocal(s);
  CHECK(s.connectionCount() == 0);
  Client a(s.localPort());
  REQUIRE(a.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 1; }));
  Client b(s.localPort());
  REQUIRE(b.ok());
  REQUIRE(waitFor([&] { return t.nConnected() == 2; }));
  CHECK(s.connectionCount() == 2);
  CHECK(s.connections().size() == s.connectionCount());
  const mllp::ConnectionId id = t.last();
  const std::string sid = std::to_string(id);
  CHECK(mllp::connectionIdFromString(sid) == id);
  CHECK(s.connection(sid).connectionId() == id);
  CHECK(s.connection(std::string_view(sid)).remotePort() == b.localPort());
  CHECK(s.connection(sid.c_str()).remoteHost() == "127.0.0.1");
  s.sendBytes(sid, "MSH|by-string\r");
  std::string payload;
  CHECK(b.recvFrame(payload) && payload == "MSH|by-string\r");

  // Unknown: never seen, malformed, zero, leading zero, too large -> the same lookup error.
  const std::string unknownNumber = std::to_string(id + 1000);
  for (const std::string& bad : {unknownNumber, std::string("abc"), std::string(""), std::string("0"),
                                 "0" + sid, std::string("-1"), std::string(" 1"), std::string("1x"),
                                 std::string("18446744073709551616"), std::string("99999999999999999999999")}) {
    CHECK_THROWS_CODE(s.connection(bad), mllp::errc::NoSuchConnection);
    CHECK_THROWS_CODE(s.send(bad), mllp::errc::NoSuchConnection);
    CHECK_THROWS_CODE(s.sendBytes(bad, "x"), mllp::errc::NoSuchConnection);
    CHECK_THROWS_CODE(s.disconnect(bad), mllp::errc::NoSuchConnection);
    CHECK_THROWS_CODE(s.interrupt(bad), mllp::errc::NoSuchConnection);
    CHECK_THROWS_CODE(s.acknowledge(bad, 1), mllp::errc::NoSuchConnection);
  }
  CHECK_THROWS_CODE(s.connection(id + 1000), mllp::errc::NoSuchConnection);  // checked at lookup
  CHECK(mllp::connectionIdFromString("18446744073709551615") == UINT64_MAX);

  // Disconnect by string id; the view then fails the same way.
  mllp::Connection view = s.connection(sid);
  s.disconnect(sid);
  CHECK(b.waitClosed());
  CHECK(waitFor([&] { return s.connectionCount() == 1; }));
  CHECK_THROWS_CODE(view.remoteHost(), mllp::errc::NoSuchConnection);
  CHECK_THROWS_CODE(s.connection(sid), mllp::errc::NoSuchConnection);
}

void testDoEventsDefault() {
  // The default wait is the reference's 100 ms in both modes: a `while (...) doEvents();` loop
  // does not spin.
  for (const bool doEventsMode : {false, true}) {
    mllp::Server s;
    if (doEventsMode) s.config("EventMode=DoEvents");
    listenLocal(s);
    const auto t0 = Clock::now();
    const std::size_t n = s.doEvents();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    CHECK(n == 0);
    CHECK(ms >= 95);
    CHECK(ms < 2000);
  }
}

void testLogAndThreadHooks() {
  std::atomic<int> logs{0}, starts{0};
  std::atomic<bool> badLog{false};
  mllp::Server s;
  s.config("LogLevel=3");
  s.onLog([&](const mllp::LogEvent& e) {
    if (e.logLevel < 1 || e.logLevel > 3 || e.message.empty() || e.logType.empty()) badLog = true;
    ++logs;
  });
  s.onThreadStart([&] { ++starts; });
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  REQUIRE(c.sendAll(frame("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r")));
  CHECK(c.recvN(4) == kAck);
  CHECK(waitFor([&] { return logs > 0; }));
  CHECK(!badLog);
  CHECK(starts == 1);
}

void testCleanExit() {
  // Destroying a server with clients connected: Disconnected fires for each, the clients see
  // the close, and the handlers (with what they captured) are released.
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  std::atomic<int> disconnects{0};
  std::vector<std::unique_ptr<Client>> clients;
  {
    ConnTracker t;
    mllp::Server s;
    t.attach(s);
    s.onDisconnected([&disconnects, token](const mllp::DisconnectedEvent&) { ++disconnects; });
    listenLocal(s);
    for (int i = 0; i < 3; ++i) clients.push_back(std::make_unique<Client>(s.localPort()));
    REQUIRE(waitFor([&] { return t.nConnected() == 3; }));
    // One message in flight, partially sent.
    clients[0]->sendAll(kSB + "MSH|partial");
    token.reset();
    const auto t0 = Clock::now();
    // s is destroyed here.
    (void)t0;
  }
  CHECK(disconnects == 3);
  CHECK(watch.expired());  // the library released the state
  for (auto& c : clients) CHECK(c->waitClosed());

  // A never-started server and a shut-down one are destroyed fine too.
  { mllp::Server idle; }
  {
    mllp::Server stopped;
    listenLocal(stopped);
    stopped.shutdown();
  }
}

// Closing a server with clients connected (its destructor): Disconnected fires exactly once
// for every connection, status 0, before the destructor returns; in DoEvents mode on the
// destroying thread.
void closeFiresDisconnected(bool doEventsMode) {
  const auto me = std::this_thread::get_id();
  struct Seen {
    mllp::ConnectionId id;
    int status;
    std::thread::id thread;
  };
  std::mutex m;
  std::vector<mllp::ConnectionId> connected;
  std::vector<Seen> disconnected;
  std::vector<std::unique_ptr<Client>> clients;
  {
    mllp::Server s;
    if (doEventsMode) s.config("EventMode=DoEvents");
    s.onConnected([&](const mllp::ConnectedEvent& e) {
      std::lock_guard<std::mutex> l(m);
      if (e.statusCode == 0) connected.push_back(e.connectionId);
    });
    s.onDisconnected([&](const mllp::DisconnectedEvent& e) {
      std::lock_guard<std::mutex> l(m);
      disconnected.push_back({e.connectionId, e.statusCode, std::this_thread::get_id()});
    });
    listenLocal(s);
    for (int i = 0; i < 3; ++i) {
      clients.push_back(std::make_unique<Client>(s.localPort()));
      REQUIRE(clients.back()->ok());
    }
    auto nConnected = [&] {
      std::lock_guard<std::mutex> l(m);
      return connected.size();
    };
    const auto deadline = Clock::now() + kWait;
    while (nConnected() < 3 && Clock::now() < deadline) {
      if (doEventsMode) s.doEvents(50);
      else std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(nConnected() == 3);
    std::lock_guard<std::mutex> l(m);
    CHECK(disconnected.empty());
  }  // ~Server: closes the connections
  std::lock_guard<std::mutex> l(m);  // the reactor thread has ended: nothing records any more
  CHECK(disconnected.size() == connected.size());
  for (mllp::ConnectionId id : connected) {
    const auto n = std::count_if(disconnected.begin(), disconnected.end(), [&](const Seen& d) { return d.id == id; });
    CHECK(n == 1);
  }
  for (const Seen& d : disconnected) {
    CHECK(d.status == 0);
    if (doEventsMode) CHECK(d.thread == me);
    else CHECK(d.thread != me);
  }
  for (auto& c : clients) CHECK(c->waitClosed());
}

void testCloseDisconnected() {
  closeFiresDisconnected(false);
  closeFiresDisconnected(true);
}

// ---- TLS: a throw-away PKI made with the openssl CLI, and `openssl s_client` as the client ----

bool g_skipped = false;  // a case that could not run (the process exits 77: ctest's SKIP code)

bool haveOpenssl() { return std::system("openssl version >/dev/null 2>&1") == 0; }

// Certificates generated once per process in a temporary directory (removed at exit).
struct Pki {
  std::string dir;
  std::string path(const char* name) const { return dir + "/" + name; }
};

const Pki* pki() {
  static std::unique_ptr<Pki> made;
  static bool tried = false;
  if (tried) return made.get();
  tried = true;
  char tmpl[] = "/tmp/mllp-cpp-tls-XXXXXX";
  if (!::mkdtemp(tmpl)) return nullptr;
  auto p = std::make_unique<Pki>();
  p->dir = tmpl;
  // The script is written to a file (no shell quoting in C++ strings) and run with sh.
  const char* script = R"SH(set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=MLLP Test CA"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'subjectAltName=DNS:alt.localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > alt.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
make() {  # name, CN, serial
  openssl req $ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$2/O=MLLP Test"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "$3" -days 2 -extfile "$1.ext" -out "$1.pem"
  cat "$1.key" "$1.pem" > "$1-key.pem"
}
make server localhost 0x1001
make alt alt.localhost 0x1002
make client "test client" 0x1003
openssl pkcs12 -export -inkey server.key -in server.pem -certfile ca.pem -out server.pfx -passout pass:s3cret
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

// The PKI, or nullptr after printing why the case is skipped.
const Pki* needPki() {
  if (!haveOpenssl()) {
    std::printf("  (skipped: the openssl command line tool is not installed)\n");
    g_skipped = true;
    return nullptr;
  }
  const Pki* p = pki();
  if (!p) ++g_failures;
  return p;
}

// `openssl s_client` as a child process: its stdin and stdout are our pipes.
class SClient {
 public:
  SClient(std::uint16_t port, const Pki& p, std::vector<std::string> extra) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) return;
    std::vector<std::string> args = {"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
                                     "-servername", "localhost", "-verify_hostname", "localhost",
                                     "-CAfile", p.path("ca.pem"), "-verify_return_error", "-quiet"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) ::dup2(devnull, 2);
      ::close(in[0]); ::close(in[1]); ::close(out[0]); ::close(out[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::alarm(30);
      ::execvp("openssl", argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    in_ = in[1];
    out_ = out[0];
  }
  ~SClient() {
    if (in_ >= 0) ::close(in_);
    if (out_ >= 0) ::close(out_);
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }
  SClient(const SClient&) = delete;
  SClient& operator=(const SClient&) = delete;

  bool ok() const { return pid_ > 0 && in_ >= 0 && out_ >= 0; }
  bool write(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(in_, data.data() + off, data.size() - off);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads up to want bytes (until then, EOF or the limit); eof() tells which.
  std::string read(std::size_t want, std::chrono::milliseconds limit = kWait) {
    std::string got;
    const auto deadline = Clock::now() + limit;
    while (got.size() < want && !eof_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[256];
      const ssize_t n = ::read(out_, buf, std::min(sizeof buf, want - got.size()));
      if (n <= 0) {
        eof_ = true;
        break;
      }
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
  bool eof() const { return eof_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  bool eof_ = false;
};

const std::string kTlsMsg = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||42\r";

void testCertificate() {
  const Pki* p = needPki();
  if (!p) return;
  static_assert(!std::is_copy_constructible_v<mllp::Certificate>, "Certificate is move-only");
  static_assert(std::is_nothrow_move_constructible_v<mllp::Certificate>, "Certificate is movable");

  mllp::Certificate pem(mllp::CertStoreType::PemKeyFile, p->path("server-key.pem"));
  CHECK(pem.subject() == "CN=localhost, O=MLLP Test");
  CHECK(pem.issuer() == "CN=MLLP Test CA");
  CHECK(pem.serialNumber().find("1001") != std::string::npos);
  CHECK(pem.thumbprintSHA1().size() == 40);
  CHECK(pem.thumbprintSHA256().size() == 64);
  CHECK(!pem.effectiveDate().empty() && !pem.expirationDate().empty());
  CHECK(pem.privateKeyAvailable());
  const std::vector<std::uint8_t> der = pem.encoded();
  CHECK(!der.empty() && der[0] == 0x30);

  const std::string pfxBytes = readFile(p->path("server.pfx").c_str());
  mllp::Certificate pfxFile(mllp::CertStoreType::PfxFile, p->path("server.pfx"), "s3cret", "localhost");
  mllp::Certificate pfxBlob(mllp::CertStoreType::PfxBlob, pfxBytes, "s3cret");
  mllp::Certificate pub(mllp::CertStoreType::PublicKeyFile, p->path("server.pem"));
  mllp::Certificate byThumb(mllp::CertStoreType::PemKeyBlob, readFile(p->path("server-key.pem").c_str()), "",
                            "Thumbprint=" + pem.thumbprintSHA256());
  for (const mllp::Certificate* c : {&pfxFile, &pfxBlob, &pub, &byThumb}) {
    CHECK(c->thumbprintSHA256() == pem.thumbprintSHA256());
    CHECK(c->encoded() == der);
  }
  CHECK(pfxBlob.privateKeyAvailable());
  CHECK(!pub.privateKeyAvailable());

  // Errors: wrong password (2020), no match (2020), missing file (303).
  CHECK_THROWS_CODE(mllp::Certificate(mllp::CertStoreType::PfxFile, p->path("server.pfx"), "wrong"),
                    mllp::errc::Certificate);
  CHECK_THROWS_CODE(mllp::Certificate(mllp::CertStoreType::PfxBlob, pfxBytes, "wrong"), 2020);
  CHECK_THROWS_CODE(mllp::Certificate(mllp::CertStoreType::PemKeyFile, p->path("server-key.pem"), "", "CN=nobody"),
                    2020);
  CHECK_THROWS_CODE(mllp::Certificate(mllp::CertStoreType::PfxFile, p->path("missing.pfx"), "s3cret"),
                    mllp::errc::CannotOpenFile);

  // Move: the moved-from object is empty and throws; the handle moved.
  const mllp_certificate* handle = pem.handle();
  mllp::Certificate moved(std::move(pem));
  CHECK(moved.handle() == handle && !pem && static_cast<bool>(moved));
  CHECK_THROWS_CODE((void)pem.subject(), mllp::errc::BadState);
  pfxBlob = std::move(moved);
  CHECK(pfxBlob.handle() == handle);

  // Server properties: SSLEnabled, SSLAuthenticateClients, SSLCert (the server keeps its own copy).
  mllp::Server s;
  CHECK(!s.sslEnabled() && !s.sslAuthenticateClients() && !s.sslCert());
  s.setSslEnabled(true);
  s.setSslAuthenticateClients(true);
  CHECK(s.sslEnabled() && s.sslAuthenticateClients());
  {
    mllp::Certificate temp(mllp::CertStoreType::PfxFile, p->path("server.pfx"), "s3cret");
    s.setSslCert(temp);
  }
  std::optional<mllp::Certificate> got = s.sslCert();
  CHECK(got && got->subject() == "CN=localhost, O=MLLP Test" && got->encoded() == der);
  s.setSslCert(nullptr);
  CHECK(!s.sslCert());
  CHECK_THROWS_CODE(s.setSslCert(pem), mllp::errc::InvalidArgument);  // moved-from
  // TLS without a certificate fails at startListening.
  s.setLocalHost("127.0.0.1");
  CHECK_THROWS_CODE(s.startListening(), mllp::errc::Certificate);
}

// A TLS server on 127.0.0.1 with the PKI's server certificate.
void listenTls(mllp::Server& s, const Pki& p) {
  s.setSslCert(mllp::Certificate(mllp::CertStoreType::PemKeyFile, p.path("server-key.pem")));
  s.setSslEnabled(true);
  listenLocal(s);
}

void testTlsRoundTrip() {
  const Pki* p = needPki();
  if (!p) return;
  for (const char* version : {"-tls1_3", "-tls1_2"}) {
    std::mutex m;
    std::vector<std::string> statuses;
    std::vector<std::string> suites;
    std::string data;
    ConnTracker t;
    mllp::Server s;
    t.attach(s);
    s.onSslStatus([&](const mllp::SslStatusEvent& e) {
      std::lock_guard<std::mutex> l(m);
      statuses.push_back(std::string(e.message));
    });
    s.onSslConnectionRequest([&](mllp::SslConnectionRequestEvent& e) {
      std::lock_guard<std::mutex> l(m);
      suites.push_back(std::string(e.supportedCipherSuites));
    });
    s.onTransfer([&](const mllp::TransferEvent& e) {
      std::lock_guard<std::mutex> l(m);
      data.append(e.data.str());
    });
    listenTls(s, *p);
    SClient c(s.localPort(), *p, {version});
    REQUIRE(c.ok());
    REQUIRE(c.write(frame(kTlsMsg)));
    CHECK(c.read(4) == kAck);
    REQUIRE(t.nConnected() == 1);
    const std::string expected = std::string(version) == "-tls1_3" ? "TLS1.3" : "TLS1.2";
    mllp::Connection conn = s.connection(t.last());
    CHECK(conn.sslNegotiatedVersion() == expected);
    CHECK(conn.sslNegotiated("SSLNegotiatedVersion") == expected);
    CHECK(!conn.sslNegotiatedCipherSuite().empty());
    std::lock_guard<std::mutex> l(m);
    CHECK(data == kTlsMsg);
    CHECK(!statuses.empty());
    CHECK(suites.size() == 1 && !suites[0].empty());
  }
}

void testTlsConnectionRequestCertificate() {
  const Pki* p = needPki();
  if (!p) return;
  ConnTracker t;
  mllp::Server s;
  t.attach(s);
  const std::string altPath = p->path("alt-key.pem");
  s.onSslConnectionRequest([altPath](mllp::SslConnectionRequestEvent& e) {
    // Only the event holds it: the binding keeps it alive past the handler.
    e.certificate = std::make_shared<mllp::Certificate>(mllp::CertStoreType::PemKeyFile, altPath);
  });
  listenTls(s, *p);
  // s_client checks the presented certificate's name: only alt.localhost matches.
  {
    SClient c(s.localPort(), *p, {"-verify_hostname", "alt.localhost"});
    REQUIRE(c.ok());
    REQUIRE(c.write(frame(kTlsMsg)));
    CHECK(c.read(4) == kAck);
  }
  s.onSslConnectionRequest(nullptr);
  {
    SClient c(s.localPort(), *p, {"-verify_hostname", "alt.localhost"});
    REQUIRE(c.ok());
    c.write(frame(kTlsMsg));
    CHECK(c.read(4).empty());  // SSLCert (CN=localhost) fails the client's name check
  }
  CHECK(waitFor([&] { return t.nDisconnected() == 2; }));
}

void testTlsClientAuthentication() {
  const Pki* p = needPki();
  if (!p) return;
  std::mutex m;
  struct Seen {
    bool accept;
    std::string status, subject, issuer;
    std::size_t derSize;
  };
  std::vector<Seen> seen;
  std::vector<int> errors;
  std::atomic<bool> refuse{false};
  mllp::Server s;
  s.onSslClientAuthentication([&](mllp::SslClientAuthenticationEvent& e) {
    {
      std::lock_guard<std::mutex> l(m);
      seen.push_back({e.accept, std::string(e.status), std::string(e.certSubject), std::string(e.certIssuer),
                      e.certEncoded.size()});
    }
    if (refuse) e.accept = false;                 // refuse a client the library would accept
    else if (e.certEncoded.empty()) e.accept = true;  // accept one it would refuse
  });
  s.onError([&](const mllp::ErrorEvent& e) {
    std::lock_guard<std::mutex> l(m);
    errors.push_back(e.errorCode);
  });
  s.setSslAuthenticateClients(true);
  s.config("SSLClientCACerts=" + readFile(p->path("ca.pem").c_str()));
  listenTls(s, *p);
  const std::vector<std::string> withCert = {"-cert", p->path("client.pem"), "-key", p->path("client.key")};
  const std::size_t clientDer = mllp::Certificate(mllp::CertStoreType::PublicKeyFile, p->path("client.pem")).encoded().size();

  {  // A good certificate: recommended and kept.
    SClient c(s.localPort(), *p, withCert);
    REQUIRE(c.ok());
    REQUIRE(c.write(frame(kTlsMsg)));
    CHECK(c.read(4) == kAck);
    std::lock_guard<std::mutex> l(m);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].accept && seen[0].status == "OK");
    CHECK(seen[0].subject == "CN=test client, O=MLLP Test" && seen[0].issuer == "CN=MLLP Test CA");
    CHECK(seen[0].derSize == clientDer);
  }
  refuse = true;
  {  // The same certificate refused by the handler: closed, no ACK, Error 2022.
    SClient c(s.localPort(), *p, withCert);
    REQUIRE(c.ok());
    c.write(frame(kTlsMsg));
    CHECK(c.read(4).empty());
    CHECK(waitFor([&] {
      std::lock_guard<std::mutex> l(m);
      return std::find(errors.begin(), errors.end(), mllp::errc::TlsClientRejected) != errors.end();
    }));
    std::lock_guard<std::mutex> l(m);
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].accept && seen[1].status == "OK");  // the library recommended it
  }
  refuse = false;
  {  // No certificate: the library recommends refusing, the handler accepts.
    SClient c(s.localPort(), *p, {});
    REQUIRE(c.ok());
    REQUIRE(c.write(frame(kTlsMsg)));
    CHECK(c.read(4) == kAck);
    std::lock_guard<std::mutex> l(m);
    REQUIRE(seen.size() == 3);
    CHECK(!seen[2].accept && seen[2].status != "OK" && seen[2].derSize == 0);
  }
}

void testDeferredAck() {
  for (const bool accept : {true, false}) {
    std::mutex m;
    std::vector<std::pair<mllp::ConnectionId, std::uint64_t>> pending;
    mllp::Server s;
    s.onAckOut([&](mllp::AckOutEvent& e) {
      CHECK(!e.defer);
      e.defer = true;
      std::lock_guard<std::mutex> l(m);
      pending.emplace_back(e.connectionId, e.messageSeq);
    });
    listenLocal(s);
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(kTlsMsg)));
    REQUIRE(waitFor([&] {
      std::lock_guard<std::mutex> l(m);
      return !pending.empty();
    }));
    CHECK(c.recvN(1, std::chrono::milliseconds(300)).empty());  // nothing while undecided
    std::pair<mllp::ConnectionId, std::uint64_t> which;
    {
      std::lock_guard<std::mutex> l(m);
      which = pending[0];
    }
    CHECK(which.second == 1);
    std::thread decider([&] { s.acknowledge(which.first, which.second, accept); });
    decider.join();
    CHECK(c.recvN(4) == (accept ? kAck : kNak));
    s.acknowledge(which.first, 99);  // not awaiting a decision: ignored
    c.close();
    REQUIRE(waitFor([&] { return s.connectionCount() == 0; }));
    CHECK_THROWS_CODE(s.acknowledge(which.first, which.second), mllp::errc::NoSuchConnection);
  }
}

// ---- HL7 features: Message / Duplicate events, DuplicateWindow, ProcessBatch, character sets,
// replies chosen by the host, application acknowledgements, buildAck ----------------------------

// An ADT^A01 with the given MSH-10, MSH-15, MSH-16, MSH-18 (segments end in CR).
std::string hl7Message(const std::string& controlId, const std::string& msh16 = "", const std::string& msh18 = "",
                       const std::string& pidName = "DOE^JOHN", const std::string& msh15 = "") {
  return "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20260101120000||ADT^A01|" + controlId + "|P|2.5.1|||" + msh15 +
         "|" + msh16 + "||" + msh18 + "\rPID|1||12345^^^HOSP^MR||" + pidName + "||19800101|M\r";
}

std::vector<std::vector<std::string>> segmentsOf(const std::string& msg) {
  std::vector<std::vector<std::string>> out;
  std::size_t start = 0;
  while (start < msg.size()) {
    std::size_t end = msg.find('\r', start);
    if (end == std::string::npos) end = msg.size();
    if (end > start) {
      std::vector<std::string> fields;
      const std::string seg = msg.substr(start, end - start);
      std::size_t f = 0;
      for (;;) {
        const std::size_t bar = seg.find('|', f);
        fields.push_back(seg.substr(f, bar == std::string::npos ? std::string::npos : bar - f));
        if (bar == std::string::npos) break;
        f = bar + 1;
      }
      out.push_back(std::move(fields));
    }
    start = end + 1;
  }
  return out;
}

// Field n of the first `seg` segment, HL7 numbering (MSH-10 is hl7Field(m, "MSH", 10)).
std::string hl7Field(const std::string& msg, const std::string& seg, std::size_t n) {
  for (const auto& s : segmentsOf(msg)) {
    if (s.empty() || s[0] != seg) continue;
    const std::size_t i = seg == "MSH" ? n - 1 : n;
    return i < s.size() ? s[i] : std::string();
  }
  return std::string();
}

std::string str(const std::vector<std::uint8_t>& v) { return std::string(v.begin(), v.end()); }

// Copies of the events of a server, in order.
struct Hl7Recorder {
  struct Msg {
    mllp::ConnectionId id = 0;
    std::uint64_t seq = 0;
    std::string data, charset, encoding;
    bool decoded = false;
  };
  struct Dup {
    mllp::ConnectionId id = 0;
    std::string message, controlId, reply;
  };
  struct Boundary {
    std::string what, charset, encoding;
  };
  std::mutex m;
  std::vector<std::string> order;
  std::vector<Msg> messages;
  std::vector<Dup> duplicates;
  std::vector<Boundary> boundaries;  // start, end, ackout
  std::vector<std::string> ackOutMessages;
  std::string transferred;
  std::vector<int> errors;

  void add(const std::string& what) {
    if (order.empty() || order.back() != what || what != "transfer") order.push_back(what);
  }
  void attach(mllp::Server& s) {
    s.onStartTransfer([this](const mllp::StartTransferEvent& e) {
      std::lock_guard<std::mutex> l(m);
      add("start");
      boundaries.push_back({"start", std::string(e.charset), std::string(e.encoding)});
    });
    s.onTransfer([this](const mllp::TransferEvent& e) {
      std::lock_guard<std::mutex> l(m);
      add("transfer");
      transferred.append(e.data.str());
    });
    s.onEndTransfer([this](const mllp::EndTransferEvent& e) {
      std::lock_guard<std::mutex> l(m);
      add("end");
      boundaries.push_back({"end", std::string(e.charset), std::string(e.encoding)});
    });
    s.onMessage([this](const mllp::MessageEvent& e) {
      std::lock_guard<std::mutex> l(m);
      add("message");
      messages.push_back({e.connectionId, e.messageSeq, e.data.toString(), std::string(e.charset),
                          std::string(e.encoding), e.decoded});
    });
    s.onAckOut([this](mllp::AckOutEvent& e) {
      std::lock_guard<std::mutex> l(m);
      add("ackout");
      boundaries.push_back({"ackout", std::string(e.charset), std::string(e.encoding)});
      ackOutMessages.push_back(e.message.toString());
    });
    s.onDuplicate([this](const mllp::DuplicateEvent& e) {
      std::lock_guard<std::mutex> l(m);
      add("duplicate");
      duplicates.push_back({e.connectionId, e.message.toString(), std::string(e.controlId), e.reply.toString()});
    });
    s.onError([this](const mllp::ErrorEvent& e) {
      std::lock_guard<std::mutex> l(m);
      errors.push_back(e.errorCode);
    });
  }
  std::size_t nMessages() {
    std::lock_guard<std::mutex> l(m);
    return messages.size();
  }
  std::size_t nDuplicates() {
    std::lock_guard<std::mutex> l(m);
    return duplicates.size();
  }
  std::size_t nErrors() {
    std::lock_guard<std::mutex> l(m);
    return errors.size();
  }
};

void testHl7Settings() {
  static_assert(mllp::errc::BadBatch == 2030 && mllp::errc::Charset == 2031 &&
                    mllp::errc::DuplicateInProgress == 2032,
                "new error codes");
  static_assert(mllp::errc::NotConnected == 212 && mllp::errc::Listening == 213 && mllp::errc::Dropped == 1120 &&
                    mllp::errc::ShutDown == 2010,
                "error codes");
  static_assert(static_cast<int>(mllp::AckCode::AA) == 0 && static_cast<int>(mllp::AckCode::CR) == 5, "AckCode");
  static_assert(static_cast<int>(mllp::AckCode::AE) == static_cast<int>(mllp::RejectCode::AE), "AE");
  static_assert(static_cast<int>(mllp::AckCode::AR) == static_cast<int>(mllp::RejectCode::AR), "AR");
  for (int code : {2030, 2031, 2032}) CHECK(!mllp::errorDescription(code).empty());
  mllp::Server s;
  CHECK(s.duplicateCount() == 0);
  CHECK(s.config("DuplicateWindow") == "0");
  CHECK(s.config("ProcessBatch") == "False");
  CHECK(s.config("DefaultCharset").empty());
  CHECK(s.config("DecodeToUTF8") == "False");
  s.config("DuplicateWindow=10");
  s.config("ProcessBatch=True");
  s.config("DecodeToUTF8=True");
  s.config("DefaultCharset=8859/1");
  CHECK(s.config("DuplicateWindow") == "10");
  CHECK(s.config("ProcessBatch") == "True");
  CHECK(s.config("DecodeToUTF8") == "True");
  CHECK(s.config("DefaultCharset") == "8859/1");
  CHECK(s.config("DuplicateCount") == "0");
  CHECK_THROWS_CODE(s.config("DefaultCharset=NO-SUCH-CHARSET"), mllp::errc::InvalidValue);
  CHECK_THROWS_CODE(s.config("DuplicateWindow=10000001"), mllp::errc::InvalidValue);
}

void testDuplicateWindow() {
  Hl7Recorder r;
  mllp::Server s;
  r.attach(s);
  s.config("AckMode=HL7");
  s.config("DuplicateWindow=10");
  listenLocal(s);
  const std::string msg = hl7Message("DUP0001");
  std::string first, second;
  {
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(msg)));
    REQUIRE(c.recvFrame(first));
    CHECK(hl7Field(first, "MSA", 1) == "AA");
    CHECK(hl7Field(first, "MSA", 2) == "DUP0001");
    REQUIRE(c.sendAll(frame(msg)));
    REQUIRE(c.recvFrame(second));
    CHECK(second == first);  // byte for byte
    CHECK(waitFor([&] { return r.nDuplicates() == 1; }));
  }
  {
    std::lock_guard<std::mutex> l(r.m);
    CHECK(r.messages.size() == 1);
    CHECK(r.ackOutMessages.size() == 1);
    REQUIRE(r.duplicates.size() == 1);
    CHECK(r.duplicates[0].message == msg);
    CHECK(r.duplicates[0].controlId == "DUP0001");
    CHECK(r.duplicates[0].reply == first);
    CHECK(r.duplicates[0].id == r.messages[0].id);
  }
  CHECK(s.duplicateCount() == 1);
  CHECK(s.config("DuplicateCount") == "1");
  // The same MSH-3/4/10 with other bytes: delivered normally.
  {
    Client c(s.localPort());
    REQUIRE(c.ok());
    const std::string other = hl7Message("DUP0001", "", "", "DOE^JANE");
    REQUIRE(c.sendAll(frame(other)));
    std::string third;
    REQUIRE(c.recvFrame(third));
    CHECK(third != first && hl7Field(third, "MSA", 1) == "AA");
    CHECK(waitFor([&] { return r.nMessages() == 2; }));
  }
  CHECK(s.duplicateCount() == 1);
}

void testProcessBatch() {
  const std::string batch = readFile(MLLP_SAMPLE_BATCH);
  REQUIRE(batch.compare(0, 4, "FHS|") == 0);
  {  // MLLP mode: one Message per message, one ACK for the frame.
    Hl7Recorder r;
    mllp::Server s;
    r.attach(s);
    s.config("ProcessBatch=True");
    listenLocal(s);
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(batch)));
    CHECK(c.recvN(4) == kAck);
    CHECK(c.recvN(1, std::chrono::milliseconds(300)).empty());
    std::lock_guard<std::mutex> l(r.m);
    REQUIRE(r.messages.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(r.messages[i].data.compare(0, 4, "MSH|") == 0);
      CHECK(hl7Field(r.messages[i].data, "MSH", 10) == "B0000" + std::to_string(i));
      if (i > 0) CHECK(r.messages[i].seq > r.messages[i - 1].seq);
    }
    std::vector<std::string> expected;
    for (int i = 0; i < 3; ++i)
      for (const char* w : {"start", "transfer", "end", "message", "ackout"}) expected.push_back(w);
    CHECK(r.order == expected);
  }
  {  // HL7 mode: a batch acknowledgement.
    Hl7Recorder r;
    mllp::Server s;
    r.attach(s);
    s.config("ProcessBatch=True");
    s.config("AckMode=HL7");
    listenLocal(s);
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(batch)));
    std::string reply;
    REQUIRE(c.recvFrame(reply));
    CHECK(c.recvN(1, std::chrono::milliseconds(300)).empty());
    const auto segs = segmentsOf(reply);
    std::vector<std::string> msaIds;
    bool bhs = false;
    std::string btsCount;
    for (const auto& seg : segs) {
      if (seg[0] == "MSA" && seg.size() > 2) {
        CHECK(seg[1] == "AA");
        msaIds.push_back(seg[2]);
      }
      if (seg[0] == "BHS") bhs = true;
      if (seg[0] == "BTS" && seg.size() > 1) btsCount = seg[1];
    }
    CHECK(bhs);
    CHECK(btsCount == "3");
    CHECK((msaIds == std::vector<std::string>{"B00000", "B00001", "B00002"}));
    if (!segs.empty() && segs.front()[0] == "FHS") CHECK(segs.back()[0] == "FTS");
    CHECK(r.nMessages() == 3);
  }
  {  // A malformed batch is refused whole: NAK, Error 2030, nothing delivered.
    Hl7Recorder r;
    mllp::Server s;
    r.attach(s);
    s.config("ProcessBatch=True");
    listenLocal(s);
    std::string bad = batch;
    const std::size_t at = bad.find("BTS|3");
    REQUIRE(at != std::string::npos);
    bad.replace(at, 5, "BTS|5");
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(bad)));
    CHECK(c.recvN(4) == kNak);
    CHECK(waitFor([&] { return r.nErrors() > 0; }));
    std::lock_guard<std::mutex> l(r.m);
    CHECK((r.errors == std::vector<int>{mllp::errc::BadBatch}));
    CHECK(r.messages.empty() && r.ackOutMessages.empty());
  }
}

void testCharsetDecode() {
  {  // 8859/1 decoded to UTF-8.
    Hl7Recorder r;
    mllp::Server s;
    r.attach(s);
    s.config("DecodeToUTF8=True");
    listenLocal(s);
    const std::string msg = hl7Message("CS0001", "", "8859/1", "REN\xe9^MARIE");
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(msg)));
    CHECK(c.recvN(4) == kAck);
    std::lock_guard<std::mutex> l(r.m);
    REQUIRE(r.messages.size() == 1);
    const auto& m = r.messages[0];
    std::string utf8 = msg;
    utf8.replace(utf8.find('\xe9'), 1, "\xc3\xa9");
    CHECK(m.data == utf8);
    CHECK(m.data.find("REN\xc3\xa9^MARIE") != std::string::npos);
    CHECK(m.charset == "8859/1");
    CHECK(m.encoding == "8859/1");
    CHECK(m.decoded);
    REQUIRE(r.boundaries.size() == 3);
    for (const auto& b : r.boundaries) {
      CHECK(b.charset == "8859/1");
      CHECK(b.encoding == "8859/1");
    }
    CHECK(r.ackOutMessages.size() == 1 && r.ackOutMessages[0] == utf8);
    CHECK(r.transferred == utf8);
  }
  {  // Not decoded by default; the encoding is still reported.
    Hl7Recorder r;
    mllp::Server s;
    r.attach(s);
    listenLocal(s);
    const std::string msg = hl7Message("CS0002", "", "8859/1", "REN\xe9");
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(msg)));
    CHECK(c.recvN(4) == kAck);
    std::lock_guard<std::mutex> l(r.m);
    REQUIRE(r.messages.size() == 1);
    CHECK(r.messages[0].data == msg && !r.messages[0].decoded && r.messages[0].encoding == "8859/1");
  }
  {  // Not convertible (a lone 0xE9 is not UTF-8): refused with AE, Error 2031.
    Hl7Recorder r;
    mllp::Server s;
    r.attach(s);
    s.config("DecodeToUTF8=True");
    s.config("AckMode=HL7");
    listenLocal(s);
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(hl7Message("CS0003", "", "UNICODE UTF-8", "REN\xe9"))));
    std::string reply;
    REQUIRE(c.recvFrame(reply));
    CHECK(hl7Field(reply, "MSA", 1) == "AE");
    CHECK(hl7Field(reply, "MSA", 2) == "CS0003");
    CHECK(waitFor([&] { return r.nErrors() > 0; }));
    std::lock_guard<std::mutex> l(r.m);
    CHECK((r.errors == std::vector<int>{mllp::errc::Charset}));
    CHECK(r.messages.empty());
  }
}

void testAcknowledgeWith() {
  {  // Deferred, then acknowledgeWith from another thread: exactly those bytes.
    std::mutex m;
    std::vector<std::pair<mllp::ConnectionId, std::uint64_t>> pending;
    std::atomic<int> duplicates{0};
    std::string dupReply;
    mllp::Server s;
    s.config("AckMode=HL7");
    s.config("DuplicateWindow=10");
    s.onAckOut([&](mllp::AckOutEvent& e) {
      CHECK(!e.reply);
      e.defer = true;
      std::lock_guard<std::mutex> l(m);
      pending.emplace_back(e.connectionId, e.messageSeq);
    });
    s.onDuplicate([&](const mllp::DuplicateEvent& e) {
      std::lock_guard<std::mutex> l(m);
      dupReply = e.reply.toString();
      ++duplicates;
    });
    listenLocal(s);
    const std::string msg = hl7Message("DEF001");
    const std::string custom = str(mllp::buildAck(msg, mllp::AckCode::AA, "stored in the archive"));
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(msg)));
    REQUIRE(waitFor([&] {
      std::lock_guard<std::mutex> l(m);
      return !pending.empty();
    }));
    CHECK(c.recvN(1, std::chrono::milliseconds(200)).empty());  // undecided
    std::pair<mllp::ConnectionId, std::uint64_t> which;
    {
      std::lock_guard<std::mutex> l(m);
      which = pending[0];
    }
    std::thread decider([&] { s.acknowledgeWith(which.first, which.second, custom); });
    decider.join();
    std::string reply;
    REQUIRE(c.recvFrame(reply));
    CHECK(reply == custom);
    // A positive reply given this way is remembered by the DuplicateWindow.
    REQUIRE(c.sendAll(frame(msg)));
    std::string again;
    REQUIRE(c.recvFrame(again));
    CHECK(again == custom);
    CHECK(waitFor([&] { return duplicates == 1; }));
    std::lock_guard<std::mutex> l(m);
    CHECK(dupReply == custom);
    CHECK(pending.size() == 1);
  }
  {  // AckOutEvent::reply set in the handler: sent instead (HL7 mode).
    const std::string mine =
        "MSH|^~\\&|RECVAPP|RECVFAC|SENDAPP|SENDFAC|20260101120001||ACK|X1|P|2.5.1\rMSA|AE|RPL001|mine\r";
    mllp::Server s;
    s.config("AckMode=HL7");
    s.onAckOut([&](mllp::AckOutEvent& e) {
      std::string local = mine;  // gone when the handler returns: the event keeps a copy
      e.setReply(local);
    });
    listenLocal(s);
    Client c(s.localPort());
    REQUIRE(c.ok());
    for (int i = 0; i < 2; ++i) {
      REQUIRE(c.sendAll(frame(hl7Message("RPL00" + std::to_string(i)))));
      std::string reply;
      REQUIRE(c.recvFrame(reply));
      CHECK(reply == mine);
    }
  }
  {  // MLLP mode: the one NAK byte.
    mllp::Server s;
    s.onAckOut([](mllp::AckOutEvent& e) { e.reply = std::vector<std::uint8_t>{0x15}; });
    listenLocal(s);
    Client c(s.localPort());
    REQUIRE(c.ok());
    REQUIRE(c.sendAll(frame(hl7Message("RPL003"))));
    CHECK(c.recvN(4) == kNak);
  }
}

void testAppAck() {
  std::mutex m;
  std::vector<std::pair<mllp::ConnectionId, std::string>> got;
  mllp::Server s;
  s.config("AckMode=HL7");
  s.onMessage([&](const mllp::MessageEvent& e) {
    std::lock_guard<std::mutex> l(m);
    got.emplace_back(e.connectionId, e.data.toString());
  });
  listenLocal(s);
  Client c(s.localPort());
  REQUIRE(c.ok());
  const std::string al = hl7Message("APP001", "AL");
  REQUIRE(c.sendAll(frame(al)));
  std::string accept;
  REQUIRE(c.recvFrame(accept));
  // Enhanced mode (MSH-16 valued): an accept ACK.
  CHECK(hl7Field(accept, "MSA", 1) == "CA");
  CHECK(hl7Field(accept, "MSA", 2) == "APP001");
  std::pair<mllp::ConnectionId, std::string> first;
  {
    std::lock_guard<std::mutex> l(m);
    REQUIRE(got.size() == 1);
    first = got[0];
  }
  CHECK(first.second == al);
  CHECK(s.sendAppAck(first.first, first.second, mllp::AckCode::AA));
  std::string app;
  REQUIRE(c.recvFrame(app));
  CHECK(hl7Field(app, "MSH", 9).compare(0, 3, "ACK") == 0);
  CHECK(hl7Field(app, "MSA", 1) == "AA");
  CHECK(hl7Field(app, "MSA", 2) == "APP001");
  CHECK(app.find("\rMSA|AA|APP001") != std::string::npos);
  CHECK(hl7Field(app, "MSH", 10) != hl7Field(accept, "MSH", 10));
  CHECK(s.sendAppAck(first.first, first.second, mllp::AckCode::AE, std::string_view("could not file it")));
  REQUIRE(c.recvFrame(app));
  CHECK(hl7Field(app, "MSA", 1) == "AE");
  CHECK(hl7Field(app, "MSA", 3) == "could not file it");
  // MSH-16 NE: never.
  const std::string ne = hl7Message("APP002", "NE");
  REQUIRE(c.sendAll(frame(ne)));
  std::string reply;
  REQUIRE(c.recvFrame(reply));
  CHECK(!s.sendAppAck(first.first, ne, mllp::AckCode::AA));
  CHECK(c.recvN(1, std::chrono::milliseconds(200)).empty());
  CHECK_THROWS_CODE(s.sendAppAck(999999, al, mllp::AckCode::AA), mllp::errc::NoSuchConnection);
}

void testBuildAck() {
  const std::string msg = hl7Message("BLD001");
  const std::string a1 = str(mllp::buildAck(msg, mllp::AckCode::AA));
  const std::string a2 = str(mllp::Server::buildAck(msg, mllp::AckCode::AA));
  for (const std::string* a : {&a1, &a2}) {
    CHECK(a->compare(0, 9, "MSH|^~\\&|") == 0);
    CHECK(a->find('\x0b') == std::string::npos && a->find('\x1c') == std::string::npos);
    CHECK(hl7Field(*a, "MSA", 1) == "AA");
    CHECK(hl7Field(*a, "MSA", 2) == "BLD001");
    CHECK(hl7Field(*a, "MSH", 9).compare(0, 3, "ACK") == 0);
    CHECK(!hl7Field(*a, "MSH", 7).empty());
    CHECK(!hl7Field(*a, "MSH", 10).empty());
  }
  CHECK(hl7Field(a1, "MSH", 10) != hl7Field(a2, "MSH", 10));
  const std::string ce = str(mllp::buildAck(msg, mllp::AckCode::CE, std::string_view("bad PID")));
  CHECK(hl7Field(ce, "MSA", 1) == "CE");
  CHECK(hl7Field(ce, "MSA", 3) == "bad PID");
  const char* names[] = {"AA", "AE", "AR", "CA", "CE", "CR"};
  for (int code = 0; code < 6; ++code)
    CHECK(hl7Field(str(mllp::buildAck(msg, static_cast<mllp::AckCode>(code))), "MSA", 1) == names[code]);
  const std::string big = hl7Message("BLD002") + "NTE|1||" + std::string(100000, 'x') + "\r";
  CHECK(hl7Field(str(mllp::buildAck(big, mllp::AckCode::AR)), "MSA", 2) == "BLD002");
  CHECK_THROWS_CODE(mllp::buildAck(msg, static_cast<mllp::AckCode>(42)), mllp::errc::InvalidValue);
}

// Runs the receiver example against a client: checks its output and the ACK.
void testExample(const char* receiverPath) {
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
  bool eof = false;
  auto readMore = [&](std::chrono::milliseconds limit) {  // false at EOF
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return true;  // nothing yet
    char buf[4096];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) return !(eof = true);
    text.append(buf, static_cast<std::size_t>(n));
    return true;
  };
  const auto deadline = Clock::now() + kWait;
  while (text.find('\n') == std::string::npos && Clock::now() < deadline && readMore(std::chrono::milliseconds(50))) {
  }
  unsigned port = 0;
  std::sscanf(text.c_str(), "listening on port %u", &port);
  CHECK(port != 0);
  if (port != 0) {
    const std::string msg = readFile(MLLP_SAMPLE_ADT_A01);
    Client c(static_cast<std::uint16_t>(port));
    CHECK(c.ok());
    CHECK(c.sendAll(frame(msg)));
    CHECK(c.recvN(4) == kAck);
    // Read until the receiver exits (EOF) after its one message.
    const auto outputDeadline = Clock::now() + kWait;
    while (!eof && Clock::now() < outputDeadline && readMore(std::chrono::milliseconds(50))) {
    }
    // The message is printed (its segments end in \r; compare the MSH line).
    CHECK(text.find(msg.substr(0, msg.find('\r'))) != std::string::npos);
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
  const char* receiver = argc > 2 ? argv[2] : nullptr;
  struct Case {
    const char* name;
    std::function<void()> fn;
  };
  const std::vector<Case> cases = {
      {"types", testTypes},
      {"defaults_config", testDefaultsAndConfig},
      {"errors", testErrors},
      {"connection_request", testConnectionRequest},
      {"receive_message", testReceiveMessage},
      {"ack_out_reject", testAckOutReject},
      {"metrics", testMetrics},
      {"server_sends", testServerSends},
      {"streams", testStreams},
      {"disconnect_shutdown", testDisconnectAndShutdown},
      {"move", testMoveSemantics},
      {"throwing_handlers", testThrowingHandlers},
      {"reentrancy", testReentrancy},
      {"do_events", testDoEventsMode},
      {"do_events_default", testDoEventsDefault},
      {"connection_ids", testConnectionIds},
      {"log_thread_hooks", testLogAndThreadHooks},
      {"clean_exit", testCleanExit},
      {"close_disconnected", testCloseDisconnected},
      {"certificate", testCertificate},
      {"tls_round_trip", testTlsRoundTrip},
      {"tls_connection_request", testTlsConnectionRequestCertificate},
      {"tls_client_authentication", testTlsClientAuthentication},
      {"deferred_ack", testDeferredAck},
      {"hl7_settings", testHl7Settings},
      {"duplicate_window", testDuplicateWindow},
      {"process_batch", testProcessBatch},
      {"charset_decode", testCharsetDecode},
      {"acknowledge_with", testAcknowledgeWith},
      {"app_ack", testAppAck},
      {"build_ack", testBuildAck},
      {"example", [receiver] {
         if (receiver) testExample(receiver);
         else std::printf("  (skipped: no receiver path)\n");
       }},
  };
  int ran = 0;
  for (const auto& c : cases) {
    if (!only.empty() && only != "all" && only != c.name) continue;
    g_current = c.name;
    const int before = g_failures;
    const auto t0 = Clock::now();
    try {
      c.fn();
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "  FAIL [%s]: uncaught exception: %s\n", c.name, e.what());
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    std::printf("%s %s (%lld ms)\n", g_failures == before ? "ok  " : "FAIL", c.name, static_cast<long long>(ms));
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
