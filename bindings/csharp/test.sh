#!/usr/bin/env bash
# Tests the C# binding. Non-zero exit on any failure.
#   1. pack.sh: libmllp (built when missing), Mllp.dll (mcs) and the NuGet package
#   2. the tests (tests/Tests.cs, mono), against that Mllp.dll and libmllp.so, including the
#      check of the declarations against include/mllp.h (tests/layout.c and cc -dM)
#   3. tests/package.sh: a consumer program built from the package alone, as README.md says
# Everything is built under build/csharp (MLLP_CSHARP_BUILD overrides); nothing is written
# into bindings/.
#   bash bindings/csharp/test.sh [filter]      e.g. receive (the package test runs with no
#                                              filter or with the filter "package")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export MLLP_CSHARP_BUILD=${MLLP_CSHARP_BUILD:-$REPO/build/csharp}
BUILD=$MLLP_CSHARP_BUILD
OUT="$BUILD/tests"

bash "$HERE/pack.sh"

rm -rf "$OUT"
mkdir -p "$OUT"
# The assembly and native library the package carries, side by side: Mono's DllImport("mllp")
# finds libmllp.so next to Mllp.dll (no LD_LIBRARY_PATH, no <dllmap>).
cp "$BUILD/nuget/lib/net461/Mllp.dll" "$BUILD/nuget/runtimes/linux-x64/native/libmllp.so" "$OUT/"

echo "== compiling the tests and the example (mcs)"
mcs -nologo -target:exe -r:"$OUT/Mllp.dll" -out:"$OUT/Tests.exe" "$HERE/tests/Tests.cs"
mcs -nologo -target:exe -r:"$OUT/Mllp.dll" -out:"$OUT/Receiver.exe" "$HERE/examples/Receiver.cs"

echo "== the header as the C compiler sees it (tests/layout.c, cc -dM)"
cc -std=c99 -Wall -Werror -I"$REPO/include" -o "$OUT/layout" "$HERE/tests/layout.c"
"$OUT/layout" > "$OUT/layout.txt"
cc -dM -E -x c -I"$REPO/include" "$REPO/include/mllp.h" | grep '^#define MLLP_' > "$OUT/defines.txt"

if [ "${1:-}" != package ]; then
  echo "== running tests"
  (cd "$OUT" && env -u LD_LIBRARY_PATH timeout 900 mono --debug "$OUT/Tests.exe" \
      --sample "${MLLP_SAMPLE:-$REPO/tests/data/adt_a01.hl7}" \
      --layout "$OUT/layout.txt" --defines "$OUT/defines.txt" --header "$REPO/include/mllp.h" "$@")
fi

if [ $# -eq 0 ] || [ "$1" = package ]; then
  echo "== the NuGet package, consumed as README.md says (tests/package.sh)"
  bash "$HERE/tests/package.sh"
fi
