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
cargo clippy --all-targets -- -D warnings

step "generated header matches the code"
saved=$(mktemp)
cp include/mllp.h "$saved"
cargo build --quiet
if ! cmp -s "$saved" include/mllp.h; then
  diff -u "$saved" include/mllp.h | head -40 || true
  cp "$saved" include/mllp.h
  echo "include/mllp.h differs from a fresh cbindgen generation: run 'cargo build' and commit it" >&2
  exit 1
fi
rm -f "$saved"

step "Rust unit, property and integration tests"
cargo test --all-targets

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
