"""Receive HL7 messages over MLLP, print each one and acknowledge it. Usage: receiver.py [PORT]"""

import sys
import time

import mllp

with mllp.Server(
    local_host="127.0.0.1", local_port=int(sys.argv[1]) if len(sys.argv) > 1 else 2575
) as server:

    @server.on_ack_out  # once per complete message, on the reactor thread, just before its ACK
    def received(e: mllp.AckOutEvent) -> None:
        print(f"--- connection {e.connection_id}, message {e.message_seq}:")
        print(e.message.decode("utf-8", "replace").replace("\r", "\n"), flush=True)
        e.accept = e.message.startswith(b"MSH")  # ACK HL7, NAK anything else

    server.start_listening()
    print(f"listening on {server.local_host}:{server.local_port} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
