#!/usr/bin/env bash
# Runs the README's mllp-send examples (section "mllp-send") with the README's own lines:
#   send.sh SOURCE_DIR BUILD_DIR SCENARIO      SCENARIO: plain | tls | mtls
# The blocks follow `<!-- readme-test: NAME -->` lines: the listener's line (send-listen,
# send-tls-listen, send-mtls-listen) is started in the background, then the mllp-send line
# (send-plain, send-tls, send-mtls) runs and its stdout must be what the README shows
# (the send-plain-output block; `MSG00001 ACK 1` for the TLS ones, as the README says).
# TLS scenarios first run the TLS section's certificate blocks (tls-certs, tls-client-cert).
# Everything runs in a scratch copy of the repository root (links to the checkout's files,
# `build` linked to BUILD_DIR, already built), so the certificate files land there. The README's
# port 2575 is replaced by a free port, so a listener already on 2575 does not interfere.
set -euo pipefail
src="$(cd "$1" && pwd)"
build="$(cd "$2" && pwd)"
scenario="$3"
tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

readme="$src/README.md"
# block NAME: the fenced block after the marker line (fails when there is none).
block() {
  local text
  text="$(awk -v want="<!-- readme-test: $1 -->" '
    $0 == want { armed = 1; next }
    armed && !inside && /^```/ { inside = 1; next }
    inside && /^```/ { found = 1; exit }
    inside { print }
    END { exit found ? 0 : 1 }' "$readme")" || { echo "no block '$1' in $readme" >&2; exit 1; }
  printf '%s\n' "$text"
}

repo="$tmp/repo"
mkdir -p "$repo"
for f in "$src"/*; do
  [ "$(basename "$f")" = build ] || ln -s "$f" "$repo/"
done
ln -s "$build" "$repo/build"
cd "$repo"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
on_port() { sed "s/\b2575\b/$port/g"; }

case "$scenario" in
  plain) listen=send-listen send=send-plain expected="$(block send-plain-output)" ;;
  tls) listen=send-tls-listen send=send-tls expected="MSG00001 ACK 1" ;;
  mtls) listen=send-mtls-listen send=send-mtls expected="MSG00001 ACK 1" ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac

if [ "$scenario" != plain ]; then
  echo "== the README's certificate lines"
  block tls-certs | tee "$tmp/certs.sh"
  [ "$scenario" = mtls ] && block tls-client-cert | tee -a "$tmp/certs.sh"
  bash -euo pipefail "$tmp/certs.sh" >"$tmp/certs.log" 2>&1 || { cat "$tmp/certs.log"; exit 1; }
fi

echo "== the listener (README block $listen, port $port)"
block "$listen" | on_port | tee "$tmp/listen.line"
[ "$(wc -l <"$tmp/listen.line")" = 1 ] || { echo "block $listen: expected one command line" >&2; exit 1; }
# exec: the listener is the background process itself, so the cleanup's kill stops it
{ printf 'exec '; cat "$tmp/listen.line"; } >"$tmp/listen.sh"
bash "$tmp/listen.sh" >"$tmp/listen.out" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$tmp/listen.out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
grep -q '^listening on ' "$tmp/listen.out" || { echo "listener did not start:"; cat "$tmp/listen.out"; exit 1; }

echo "== the sender (README block $send)"
block "$send" | on_port | tee "$tmp/send.sh"
status=0
timeout 60 bash "$tmp/send.sh" >"$tmp/send.out" 2>"$tmp/send.err" || status=$?
echo "== its stdout (exit status $status)"
cat "$tmp/send.out"
if [ "$status" != 0 ] || [ "$(cat "$tmp/send.out")" != "$expected" ]; then
  echo "== expected (exit status 0)"
  printf '%s\n' "$expected"
  echo "== its stderr"
  cat "$tmp/send.err"
  echo "== listener output"
  cat "$tmp/listen.out"
  exit 1
fi
echo "readme send $scenario: ok"
