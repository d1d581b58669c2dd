"""Benchmark receiver host on the Python binding (bindings/python): the same per-message work
as ``mllp-listen --quiet`` — take the message bytes (AckOut's ``message``) and accept.

    PYTHONPATH=bindings/python python3 bench/hosts/receiver.py [--transfer]

--transfer: take the bytes from the Transfer events instead (AckOut only accepts).
Listens on 127.0.0.1, any free port; first stdout line "listening on 127.0.0.1:PORT"; nothing per
message; exits on SIGTERM/SIGINT or when stdin reaches EOF (totals on stderr).
"""

import signal
import sys

import mllp


def main() -> int:
    via_transfer = "--transfer" in sys.argv[1:]
    totals = {"messages": 0, "bytes": 0}  # only touched on the reactor thread

    server = mllp.Server(local_host="127.0.0.1", local_port=0)
    if via_transfer:

        def transfer(e: mllp.TransferEvent) -> None:
            totals["bytes"] += len(e.data)

        def ack_out(e: mllp.AckOutEvent) -> None:
            totals["messages"] += 1
            e.accept = True

        server.on_transfer = transfer
        server.on_ack_out = ack_out
    else:

        def ack_out(e: mllp.AckOutEvent) -> None:
            m = e.message  # the complete message (bytes)
            totals["bytes"] += len(m)
            totals["messages"] += 1
            e.accept = True

        server.on_ack_out = ack_out

    def stop(signum, frame):  # runs on the main thread, interrupting the stdin read
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start_listening()
    print(f"listening on 127.0.0.1:{server.local_port}", flush=True)
    try:
        while sys.stdin.buffer.read1(256):  # until EOF
            pass
    except SystemExit:
        pass
    finally:
        server.close()
        print(f"python receiver: {totals['messages']} messages, {totals['bytes']} bytes",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
