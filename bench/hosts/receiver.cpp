// Benchmark receiver host on the C++ binding (bindings/cpp/include/mllp.hpp): the same
// per-message work as `mllp-listen --quiet` — take the message bytes (AckOut's message) and
// accept.
//   receiver [--transfer]
// --transfer: take the bytes from the Transfer events instead (AckOut only accepts).
// Listens on 127.0.0.1, any free port; first stdout line "listening on 127.0.0.1:PORT";
// nothing per message; exits on SIGTERM/SIGINT or when stdin reaches EOF (totals on stderr).
#include <mllp.hpp>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <signal.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

int main(int argc, char** argv) {
  const bool viaTransfer = argc > 1 && std::strcmp(argv[1], "--transfer") == 0;
  // SIGTERM/SIGINT are taken with sigwait; blocked before the library starts its thread.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::uint64_t messages = 0, bytes = 0;  // only touched on the reactor thread
  std::vector<std::uint8_t> last;         // the message taken, reused
  try {
    mllp::Server server;
    if (viaTransfer) {
      server.onTransfer([&](const mllp::TransferEvent& e) { bytes += e.data.size(); });
      server.onAckOut([&](mllp::AckOutEvent& e) {
        ++messages;
        e.accept = true;
      });
    } else {
      server.onAckOut([&](mllp::AckOutEvent& e) {
        last.assign(e.message.data(), e.message.data() + e.message.size());  // take the bytes
        bytes += last.size();
        ++messages;
        e.accept = true;
      });
    }
    server.setLocalHost("127.0.0.1");
    server.setLocalPort(0);
    server.startListening();
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server.localPort()));
    std::fflush(stdout);

    std::thread([] {  // stdin EOF stops the receiver too
      char b[256];
      while (read(0, b, sizeof b) > 0) {
      }
      kill(getpid(), SIGTERM);
    }).detach();
    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {
    }
    server.shutdown();
  } catch (const mllp::Error& e) {
    std::fprintf(stderr, "error %d: %s\n", e.code(), e.what());
    return 1;
  }
  std::fprintf(stderr, "cpp receiver: %llu messages, %llu bytes\n",
               static_cast<unsigned long long>(messages), static_cast<unsigned long long>(bytes));
  return 0;
}
