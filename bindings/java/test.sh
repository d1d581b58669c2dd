#!/usr/bin/env bash
# Builds and tests the Java binding the way its README says, then builds a consumer project
# against the installed jar. Exit status: non-zero on any failure.
#   bindings/java/test.sh            all tests
#   bindings/java/test.sh -m NAME    only the test methods whose name contains NAME
# 1. `mvn -B install` in bindings/java (Maven's verify, then install): cargo builds libmllp at the
#    repository root when it is missing or stale, the jar gets it as linux-x86-64/libmllp.so,
#    src/test/c/layout.c checks the JNA struct layouts against include/mllp.h, Surefire runs the
#    JUnit 5 tests, and org.mllp:mllp:0.1.0 goes into the local Maven repository.
# 2. `mvn -B verify` in consumer-test/: a project depending on that jar and JNA only runs a
#    receiver that a raw-socket MLLP client sends a message to, and checks the ACK (no
#    jna.library.path, no LD_LIBRARY_PATH).
# 3. examples/Receiver.java built and run with plain javac/java and the two jars (README).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v mvn >/dev/null 2>&1 || { echo "test.sh: mvn not found (apt-get install maven)" >&2; exit 2; }

ARGS=(-B --no-transfer-progress)
if [[ "${1:-}" == "-m" ]]; then
  ARGS+=("-Dtest=*#*${2:-}*" -Dsurefire.failIfNoSpecifiedTests=false)
fi

echo "== bindings/java: mvn -B install"
(cd "$HERE" && timeout 1200 mvn "${ARGS[@]}" install)

echo "== bindings/java/consumer-test: mvn -B verify (the jar and JNA only)"
(cd "$HERE/consumer-test" && env -u LD_LIBRARY_PATH timeout 600 mvn -B --no-transfer-progress verify)

# 3. The README's lines without Maven: javac and java with the two jars, and no library path.
echo "== examples/Receiver.java with plain javac/java, the jar and JNA"
REPO_M2="${MAVEN_LOCAL_REPO:-$HOME/.m2/repository}"
CP="$REPO_M2/org/mllp/mllp/0.1.0/mllp-0.1.0.jar:$REPO_M2/net/java/dev/jna/jna/5.19.1/jna-5.19.1.jar"
PLAIN="$HERE/target/plain-java"
rm -rf "$PLAIN" && mkdir -p "$PLAIN"
(cd "$PLAIN" && cp "$HERE/examples/Receiver.java" . && javac -cp "$CP" Receiver.java)
(cd "$PLAIN" && exec env -u LD_LIBRARY_PATH timeout 60 java -cp "$CP:." Receiver 0 >receiver.log 2>&1) &
RPID=$!
trap 'kill "$RPID" 2>/dev/null || true' EXIT
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/^listening on port \([0-9]*\).*/\1/p' "$PLAIN/receiver.log")
  [[ -n "$PORT" ]] && break
  kill -0 "$RPID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$PORT" ]] || { echo "Receiver did not start:"; cat "$PLAIN/receiver.log"; exit 1; }
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf '\x0bMSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ADT^A01|PLAIN01|P|2.5\rPID|1||42\r\x1c\r' >&3
ACK=$(timeout 10 head -c 4 <&3 | od -An -tx1 | tr -d ' \n')
exec 3<&-
sleep 0.3
kill "$RPID" 2>/dev/null || true
wait "$RPID" 2>/dev/null || true
trap - EXIT
cat "$PLAIN/receiver.log"
if [[ "$ACK" == "0b061c0d" ]] && grep -q "acknowledged" "$PLAIN/receiver.log"; then
  echo "plain-java: 1 passed, 0 failed"
else
  echo "plain-java: ACK frame was '$ACK', expected 0b061c0d"
  echo "plain-java: 0 passed, 1 failed"
  exit 1
fi
