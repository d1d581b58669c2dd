// receiver: prints each HL7 message it receives and acknowledges it.
// Usage: receiver [port (default 2575; 0 = any free port)] [messages to receive before exiting]
#include <mllp.hpp>

#include <atomic>
#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  const long limit = argc > 2 ? std::atol(argv[2]) : 0;  // 0 = run forever
  std::atomic<long> received{0};
  try {
    mllp::Server server;
    server.onAckOut([&](mllp::AckOutEvent& e) {  // fires once per complete message
      std::cout << "--- message " << e.messageSeq << " from connection " << e.connectionId << " ---\n"
                << e.message.str() << std::endl;
      e.accept = true;  // positive acknowledgement (set false to send a NAK)
      ++received;
    });
    server.setLocalPort(static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 2575));
    server.startListening();
    std::cout << "listening on port " << server.localPort() << std::endl;
    while (limit == 0 || received < limit) server.doEvents(100);
  } catch (const mllp::Error& e) {
    std::cerr << "error " << e.code() << ": " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
