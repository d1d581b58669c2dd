#!/usr/bin/env bash
# Runs every test of the project; the README's test command. On a fresh machine it first
# installs what is missing (tests/setup.sh). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==== %s\n' "$*"; }

step "setup"
bash tests/setup.sh

step "the repository stands alone"
# Nothing may read from a folder beside the checkout or from an absolute path outside it.
if git rev-parse --git-dir >/dev/null 2>&1; then
  outside='\.\./'"shared|/"'work/'
  if git grep -nE "$outside" -- .; then
    echo "files above refer to paths outside the repository; copy what they need into it (tests/data)" >&2
    exit 1
  fi
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "generated header matches the code"
# Ordinary builds never write the header; this test regenerates it in memory and compares.
cargo test --quiet --test header

step "Rust unit, property and integration tests"
cargo test --workspace --all-targets

# The same oracles ran above as property tests (tests/fuzz_oracles.rs); FUZZ_SECONDS=0 skips
# the fuzzer (its first build compiles the library and its dependencies once more).
if [ "${FUZZ_SECONDS:-60}" != 0 ]; then
  step "fuzz targets, each against its oracle, for a bounded time"
  FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash tests/fuzz/run.sh
fi

step "C build, C harness (plain, AddressSanitizer, valgrind) and mllp-listen end to end (ctest)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2
ctest --test-dir build --output-on-failure --timeout 600

for lang in python csharp java; do
  if [ -f "bindings/$lang/test.sh" ]; then
    step "$lang binding"
    bash "bindings/$lang/test.sh"
  fi
done

step "all tests passed"
