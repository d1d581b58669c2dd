#!/usr/bin/env bash
# Runs the Python binding's tests against the built library.
# Builds target/release/libmllp.so with `cargo build --release --lib` if it is missing.
# Extra arguments go to pytest (e.g. `bash test.sh -k gc -v`).
# tests/test_readme.py runs the README's install/receiver/build steps: a fresh venv,
# `pip install ./bindings/python` (cargo, reusing target/), `python -m build`; a minute or so.
# MLLP_SKIP_README_TEST=1 leaves it out; tests/test_header.py needs a C compiler (cc).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
lib="$repo/target/release/libmllp.so"
if [[ -z "${MLLP_LIBRARY:-}" && ! -e "$lib" ]]; then
    echo "test.sh: $lib missing; building it" >&2
    (cd "$repo" && cargo build --release --lib)
fi
export MLLP_LIBRARY="${MLLP_LIBRARY:-$lib}"
export MLLP_SAMPLES="${MLLP_SAMPLES:-$repo/tests/data}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import pytest' 2>/dev/null; then
    echo "test.sh: pytest is not installed for $PY (pip install pytest)" >&2
    exit 2
fi
cd "$here"
# The package is imported from this directory (no install needed); -X dev turns on
# Python's extra runtime checks, and every test bounds its own waits.
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec timeout 600 "$PY" -X dev -m pytest -q -p no:cacheprovider tests "$@"
