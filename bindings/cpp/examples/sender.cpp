// sender: sends one HL7 message with mllp::Client and waits for its acknowledgement.
// Usage: sender [port (default 2575)] [file with the message (default: a built-in ADT^A01)]
// [host (default 127.0.0.1)]. Exit code 0 when the message was acknowledged, else 1.
#include <mllp.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

int main(int argc, char** argv) {
  std::string message =
      "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20260101120000||ADT^A01|MSG00001|P|2.5.1\r"
      "PID|1||12345^^^HOSP^MR||DOE^JOHN||19800101|M\r";
  if (argc > 2) {
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) {
      std::cerr << "cannot read " << argv[2] << std::endl;
      return 1;
    }
    message.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  try {
    mllp::Client client;
    client.setRemoteHost(argc > 3 ? argv[3] : "127.0.0.1");
    client.setRemotePort(static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 2575));
    client.setTimeout(5);                                // seconds per attempt
    client.config("MaxRetries=2");                       // resends after a timeout, NAK, drop
    client.onConnected([](const mllp::ConnectedEvent& e) {
      std::cout << "connected (connection " << e.connectionId << ")" << std::endl;
    });
    const mllp::SendResult r = client.send(message);   // connects, sends, waits for the ACK
    std::cout << "acknowledged " << mllp::toString(r.ackKind) << " after " << r.attempts << " attempt(s)"
              << std::endl;
  } catch (const mllp::SendError& e) {
    std::cerr << "not acknowledged: error " << e.code() << ": " << e.what() << " after " << e.result().attempts
              << " attempt(s)" << std::endl;
    return 1;
  } catch (const mllp::Error& e) {
    std::cerr << "error " << e.code() << ": " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
