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
