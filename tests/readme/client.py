"""Raw-socket MLLP client for tests/readme/run.sh: sends one framed message to 127.0.0.1:PORT
and checks that the reply frame contains EXPECTED. Usage: client.py PORT FILE EXPECTED"""
import socket
import sys

port, path, expected = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
with open(path, "rb") as f:
    message = f.read()
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(b"\x0b" + message + b"\x1c\x0d")
    reply = b""
    while not reply.endswith(b"\x1c\x0d"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
if not (reply.startswith(b"\x0b") and reply.endswith(b"\x1c\x0d") and expected in reply):
    sys.exit(f"unexpected reply {reply!r} (wanted a frame containing {expected!r})")
print(f"reply {reply!r}: ok")
