#!/usr/bin/env bash
# The NuGet package as a new user consumes it: runs the commands of README.md ("Use it in your
# own program") as written, with HOME a temporary directory, then the receiver they build, and
# sends it a message with a plain MLLP client (a TCP socket on 127.0.0.1), checking the ACK.
# The receiver's Mllp.dll and libmllp.so come from the package only: no LD_LIBRARY_PATH,
# no MONO_PATH, and the test checks which libmllp.so the process mapped.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CS=$(cd "$HERE/.." && pwd)
REPO=$(cd "$CS/../.." && pwd)
README="$CS/README.md"
SAMPLE="$REPO/tests/data/adt_a01.hl7"

T=$(mktemp -d)
RPID=""
cleanup() {
  if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then kill "$RPID" 2>/dev/null || true; fi
  exec 3>&- 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "package test: FAIL: $*" >&2; [ -f "$T/out.txt" ] && sed 's/^/  receiver: /' "$T/out.txt" >&2; exit 1; }

# The fenced block after the marker "<!-- tests/package.sh: NAME -->" in README.md.
block() {
  awk -v m="<!-- tests/package.sh: $1 -->" '
    $0 == m { found = 1; next }
    found == 1 && /^```/ { found = 2; next }
    found == 2 && /^```/ { exit }
    found == 2 { print }' "$README"
}
BUILD_CMDS=$(block build)
PROGRAM=$(block program)
RUN_CMD=$(block run)
[ -n "$BUILD_CMDS" ] && [ -n "$PROGRAM" ] && [ -n "$RUN_CMD" ] || fail "README.md lacks the marked blocks"

export HOME="$T/home"
mkdir -p "$HOME/myreceiver"
printf '%s\n' "$PROGRAM" > "$HOME/myreceiver/MyReceiver.cs"
echo "-- README commands (HOME=$HOME, from the repository root):"
printf '%s\n' "$BUILD_CMDS" | sed 's/^/   $ /'
# As a user's shell would run them: no library path, no build directory override.
(cd "$REPO" && env -u LD_LIBRARY_PATH -u MONO_PATH -u MLLP_CSHARP_BUILD bash -euo pipefail -c "$BUILD_CMDS") \
  || fail "the README commands failed"

APP="$HOME/myreceiver"
for f in MyReceiver.exe Mllp.dll libmllp.so; do [ -f "$APP/$f" ] || fail "$APP/$f missing"; done
cmp -s "$APP/libmllp.so" "$APP/packages/Mllp/runtimes/linux-x64/native/libmllp.so" || fail "libmllp.so is not the package's"
LISTING=$(unzip -l "$REPO"/build/csharp/Mllp.*.nupkg)
for f in lib/net461/Mllp.dll runtimes/linux-x64/native/libmllp.so; do
  printf '%s\n' "$LISTING" | grep -q " $f\$" || fail "the package lacks $f"
done

# The README's run line, on an ephemeral port (2575 may be taken on a test machine).
RUN=${RUN_CMD%%#*}
RUN=$(printf '%s' "$RUN" | sed 's/ 2575 *$/ 0/')
case "$RUN" in *" 0") ;; *) fail "unexpected run line in README.md: $RUN_CMD" ;; esac
echo "-- running: $RUN"
mkfifo "$T/stdin"
(cd "$APP" && exec env -u LD_LIBRARY_PATH -u MONO_PATH timeout 60 $RUN < "$T/stdin" > "$T/out.txt" 2>&1) &
RPID=$!
exec 3> "$T/stdin"            # keeps the receiver's stdin open until we press Enter

PORT=""
for _ in $(seq 1 300); do
  PORT=$(sed -n 's/^listening on port \([0-9][0-9]*\).*/\1/p' "$T/out.txt" 2>/dev/null | head -n1)
  [ -n "$PORT" ] && break
  kill -0 "$RPID" 2>/dev/null || fail "receiver exited before listening"
  sleep 0.1
done
[ -n "$PORT" ] || fail "receiver did not print its port"

# Which libmllp.so the receiver loaded: the one beside it.
# ($RPID is timeout's pid, the subshell having exec'd env and env timeout; mono is its child.)
MONO_PID=$(cat /proc/"$RPID"/task/*/children 2>/dev/null | awk '{print $1}')
[ -n "$MONO_PID" ] && [ -r "/proc/$MONO_PID/maps" ] || fail "cannot find the receiver's process"
LOADED=$(grep -o '/[^ ]*libmllp\.so[^ ]*' "/proc/$MONO_PID/maps" | sort -u)
[ "$LOADED" = "$APP/libmllp.so" ] || fail "receiver mapped '$LOADED', not $APP/libmllp.so"
echo "-- receiver (pid $MONO_PID) uses $LOADED"

REPLY=$(python3 - "$PORT" "$SAMPLE" <<'EOF'
import socket, sys
port, sample = int(sys.argv[1]), sys.argv[2]
msg = open(sample, "rb").read()
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(b"\x0b" + msg + b"\x1c\x0d")
    reply = b""
    while not reply.endswith(b"\x1c\x0d"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
print(reply.hex())
EOF
) || fail "MLLP client failed"
[ "$REPLY" = "0b061c0d" ] || fail "expected the framed ACK 0b061c0d, got '$REPLY'"
echo "-- client got the ACK (0b 06 1c 0d)"

for _ in $(seq 1 100); do grep -q '^\[[0-9]*\] MSH|' "$T/out.txt" && break; sleep 0.1; done
grep -q '^\[[0-9]*\] MSH|' "$T/out.txt" || fail "receiver did not print the message's MSH"

echo >&3                      # Enter: the receiver stops
exec 3>&-
rc=0; wait "$RPID" || rc=$?
RPID=""
[ "$rc" -eq 0 ] || fail "receiver exited with $rc"
sed 's/^/  receiver: /' "$T/out.txt"
echo "package test: ok"
