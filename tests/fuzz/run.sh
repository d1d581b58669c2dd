#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for a bounded time, each checking
# the code against its oracle in tests/oracles/ (not only "does not panic"). Exits non-zero
# when a target finds a failing input (libFuzzer leaves it in fuzz/artifacts/TARGET/).
#
#   FUZZ_SECONDS   seconds of fuzzing in all, shared by the targets (default 60)
#   FUZZ_TARGETS   the targets to run (default: all five)
#
# With a nightly toolchain the targets are built with AddressSanitizer (cargo-fuzz's
# default); on stable alone, with RUSTC_BOOTSTRAP=1 and --sanitizer none (libFuzzer's
# coverage guidance still works; Rust code needs no sanitizer to catch a panic).
# The corpora start from the samples in tests/data (fuzz/corpus/, not kept in git).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

seconds=${FUZZ_SECONDS:-60}
read -r -a targets <<<"${FUZZ_TARGETS:-decoder hl7 connection proxy batch}"
per=$(( seconds / ${#targets[@]} ))
(( per >= 1 )) || per=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

toolchain=()
sanitizer=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
  sanitizer=(--sanitizer none)
fi

# Seed corpora from the samples (the byte layouts are those of the targets' *_from_bytes).
python3 - "$root" <<'PY'
import os, sys
root = sys.argv[1]
data = os.path.join(root, "tests", "data")
samples = [open(os.path.join(data, f), "rb").read() for f in sorted(os.listdir(data)) if f.endswith((".hl7", ".txt")) and "1mib" not in f]
corpus = os.path.join(root, "fuzz", "corpus")

def put(target, name, blob):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(blob)

for i, s in enumerate(samples):
    frame = b"\x0b" + s + b"\x1c\x0d"
    # decoder: default framing bytes, no maximum, then feeds of 46 bytes.
    blob = bytes([0x00, 0x01, 0x02, 0xFF])
    for k in range(0, len(frame), 46):
        blob += b"\xF3" + frame[k:k + 46]
    put("decoder", str(i), blob)
    # hl7: code AA with a text; timestamp, control id and text from the end.
    put("hl7", str(i), bytes([0x80, 14, 5, 3]) + s + b"20260101000000" + b"ACK01" + b"a|b")
    # batch: the sample as the frame.
    put("batch", str(i), s)
v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes([1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 1, 187])
for i, h in enumerate([b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", b"PROXY TCP6 2001:db8::1 ::1 65535 1\r\n",
                       b"PROXY UNKNOWN\r\n", v2]):
    # proxy: mode Any, no cuts, no prefix, then the header and an MLLP frame after it.
    put("proxy", str(i), bytes([0x00, 0x07]) + bytes(8) + h + b"\x0bMSH|^~\\&|\x1c\r")
# connection: messages, a batch, refusals and decisions out of order, in both modes.
script = bytes([0, 1, 0, 2, 6, 3, 2, 0, 8, 2, 8, 1, 8, 3, 8, 4, 8, 5, 7, 9, 5, 0, 0, 6, 8, 6])
put("connection", "mllp", bytes([0]) + script)
put("connection", "hl7", bytes([1]) + script)
PY

echo "==== building the fuzz targets"
start=$(date +%s)
(cd fuzz && cargo "${toolchain[@]}" fuzz build "${sanitizer[@]}" --release)
echo "built in $(( $(date +%s) - start ))s"

status=0
for t in "${targets[@]}"; do
  echo "==== fuzz target $t (${per}s)"
  mkdir -p "fuzz/corpus/$t"
  # The corpus is cargo-fuzz's default, fuzz/corpus/TARGET (seeded above).
  if ! (cd fuzz && cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" --release "$t" -- \
        -max_total_time="$per" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1); then
    echo "fuzz target $t failed: see fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit $status
