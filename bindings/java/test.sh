#!/usr/bin/env bash
# Builds libmllp if missing, compiles the Java binding, its tests and example, and runs the
# JUnit 4 tests. Exit status: non-zero on any failure.
#   bindings/java/test.sh            all tests
#   bindings/java/test.sh -m NAME    only the test methods whose name contains NAME
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LIBDIR="$REPO/target/release"
OUT="${MLLP_JAVA_BUILD:-$HERE/build}"
JNA="${JNA_JAR:-/usr/share/java/jna.jar}"
JUNIT="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
FILTER=""
if [[ "${1:-}" == "-m" ]]; then FILTER="${2:-}"; fi

for j in "$JNA" "$JUNIT" "$HAMCREST"; do
  [[ -f "$j" ]] || { echo "test.sh: missing $j (apt-get install libjna-java junit4)" >&2; exit 2; }
done

if [[ ! -f "$LIBDIR/libmllp.so" ]]; then
  echo "== building libmllp (cargo build --release --lib)"
  (cd "$REPO" && cargo build --release --lib)
fi

rm -rf "$OUT"
mkdir -p "$OUT/classes" "$OUT/test-classes" "$OUT/examples"

echo "== compiling the binding"
javac -Xlint:all -Werror -d "$OUT/classes" -cp "$JNA" "$HERE"/src/mllp/*.java
jar --create --file "$OUT/mllp.jar" -C "$OUT/classes" .
javac -Xlint:all -d "$OUT/examples" -cp "$JNA:$OUT/mllp.jar" "$HERE"/examples/*.java
CP="$JNA:$JUNIT:$HAMCREST:$OUT/mllp.jar"
javac -Xlint:all -d "$OUT/test-classes" -cp "$CP:$OUT/classes" -sourcepath "$HERE/src" "$HERE"/test/mllp/*.java

LAYOUT_ARG=()
if command -v cc >/dev/null 2>&1; then
  cc -std=c99 -I"$REPO/include" -o "$OUT/layout" "$HERE/layout.c" && "$OUT/layout" > "$OUT/layout.txt" \
    && LAYOUT_ARG=("-Dmllp.layout=$OUT/layout.txt")
fi

echo "== running tests"
# Package-private test access: the tests live in package mllp, on the classpath next to the jar.
timeout 600 java -Djna.library.path="$LIBDIR" -Djava.awt.headless=true "${LAYOUT_ARG[@]}" \
  -Dmllp.filter="$FILTER" -Dmllp.samples="${MLLP_SAMPLES:-$REPO/tests/data}" \
  -cp "$OUT/test-classes:$CP" mllp.RunTests
