#!/bin/sh
# Builds the native library if needed, compiles the binding, tests and example with mono's
# mcs, and runs the tests. Non-zero exit on any failure.
#   ./test.sh [filter]      e.g. ./test.sh receive
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LIBDIR="$REPO/target/release"
OUT="$HERE/build"

if [ ! -f "$LIBDIR/libmllp.so" ] || [ "${MLLP_REBUILD:-0}" = 1 ]; then
    echo "== building libmllp.so (cargo build --release --lib)"
    (cd "$REPO" && cargo build --release --lib)
fi

mkdir -p "$OUT"
echo "== compiling with mcs"
mcs -nologo -target:library -unsafe -optimize+ -warnaserror+ -nowarn:1591 \
    -doc:"$OUT/Mllp.xml" -out:"$OUT/Mllp.dll" "$HERE"/src/*.cs
mcs -nologo -target:exe -r:"$OUT/Mllp.dll" -out:"$OUT/Tests.exe" "$HERE/tests/Tests.cs"
mcs -nologo -target:exe -r:"$OUT/Mllp.dll" -out:"$OUT/Receiver.exe" "$HERE/examples/Receiver.cs"

echo "== running tests"
cd "$OUT"
# DllImport("mllp") resolves to libmllp.so through LD_LIBRARY_PATH; no <dllmap> needed.
LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    timeout 600 mono --debug "$OUT/Tests.exe" --sample "${MLLP_SAMPLE:-$REPO/tests/data/adt_a01.hl7}" "$@"
