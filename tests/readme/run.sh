#!/usr/bin/env bash
# Runs one README build scenario with the README's own lines, as written:
#   run.sh SOURCE_DIR BUILD_DIR SCENARIO
# The blocks come from the READMEs (each follows a `<!-- readme-test: NAME -->` line). They run
# in a scratch copy of the repository root (links to the checkout's files, `build` linked to
# BUILD_DIR, which is already built) with HOME in a scratch directory, so `$HOME/.local` is
# scratch too. The program built is then started on a free port (`PROGRAM 0`), sent
# tests/data/adt_a01.hl7 by a raw-socket client, and its acknowledgement is checked.
set -euo pipefail
src="$(cd "$1" && pwd)"
build="$(cd "$2" && pwd)"
scenario="$3"
here="$src/tests/readme"
tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# block README NAME: the fenced block after the marker line (fails when there is none).
block() {
  local text
  text="$(awk -v want="<!-- readme-test: $2 -->" '
    $0 == want { armed = 1; next }
    armed && !inside && /^```/ { inside = 1; next }
    inside && /^```/ { found = 1; exit }
    inside { print }
    END { exit found ? 0 : 1 }' "$1")" || { echo "no block '$2' in $1" >&2; exit 1; }
  printf '%s\n' "$text"
}

# The scratch repository root, the user's project directory and home.
repo="$tmp/repo" app="$tmp/app" home="$tmp/home"
mkdir -p "$repo" "$app" "$home"
for f in "$src"/*; do
  [ "$(basename "$f")" = build ] || ln -s "$f" "$repo/"
done
ln -s "$build" "$repo/build"

top="$src/README.md" cpp="$src/bindings/cpp/README.md"
script="$tmp/steps.sh"
say() { printf '%s\n' "$@" >>"$script"; }
: >"$script"
say 'set -euxo pipefail'
# run README NAME DIR: appends the block, run in DIR.
run() { say "cd \"$3\""; block "$1" "$2" >>"$script"; }

expect="$(printf '\006')"  # MLLP commit ACK byte; the C example uses AckMode=HL7 instead
stops_on_eof=0
case "$scenario" in
  c_tree)
    block "$top" c-example >"$repo/app.c"
    run "$top" c-tree "$repo"
    program="$repo/app" expect="MSA|AA" stops_on_eof=1 ;;
  c_installed)
    run "$top" c-install "$repo"
    block "$top" c-example >"$app/app.c"
    run "$top" c-pkg-config "$app"
    program="$app/app" expect="MSA|AA" stops_on_eof=1 ;;
  cpp_tree)
    block "$cpp" cpp-example >"$repo/app.cpp"
    run "$cpp" cpp-tree "$repo"
    program="$repo/app" ;;
  cpp_pkg_config)
    run "$cpp" cpp-install "$repo"
    block "$cpp" cpp-example >"$app/app.cpp"
    run "$cpp" cpp-pkg-config "$app"
    program="$app/app" ;;
  cpp_cmake)
    run "$cpp" cpp-install "$repo"
    block "$cpp" cpp-example >"$app/app.cpp"
    block "$cpp" cpp-cmakelists >"$app/CMakeLists.txt"
    run "$cpp" cpp-cmake "$app"
    program="$app/build/app" ;;
  cpp_subdir)
    # The README's alternative: add_subdirectory(path/to/mllp mllp) in place of find_package,
    # with path/to/mllp a link to this checkout; nothing installed.
    mkdir -p "$app/path/to"
    ln -s "$src" "$app/path/to/mllp"
    block "$cpp" cpp-example >"$app/app.cpp"
    block "$cpp" cpp-cmakelists | sed 's|^find_package(mllp 0.1 REQUIRED)$|add_subdirectory(path/to/mllp mllp)|' \
      >"$app/CMakeLists.txt"
    grep -q '^add_subdirectory(path/to/mllp mllp)$' "$app/CMakeLists.txt" || { echo "no find_package line to replace" >&2; exit 1; }
    run "$cpp" cpp-cmake "$app"
    program="$app/build/app" ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac

# HOME is scratch below; rustup and cargo keep finding the user's toolchain.
if [ -z "${RUSTUP_HOME:-}" ] && [ -d "$HOME/.rustup" ]; then export RUSTUP_HOME="$HOME/.rustup"; fi
if [ -z "${CARGO_HOME:-}" ] && [ -d "$HOME/.cargo" ]; then export CARGO_HOME="$HOME/.cargo"; fi

echo "== the README's lines ($scenario)"
sed -n '2,$p' "$script"
echo "== running them"
# A user's environment: none of the variables that would hide a missing rpath or install.
env -u LD_LIBRARY_PATH -u PKG_CONFIG_PATH -u CMAKE_PREFIX_PATH HOME="$home" bash "$script"

echo "== $program 0"
fifo="$tmp/stdin"
mkfifo "$fifo"
env -u LD_LIBRARY_PATH HOME="$home" "$program" 0 <"$fifo" >"$tmp/out" 2>&1 &
pid=$!
exec 4>"$fifo"  # the program's stdin stays open until closed below
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/^listening on port \([0-9][0-9]*\)$/\1/p' "$tmp/out" | head -1)"
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$port" ] && [ "$port" != 0 ] || { echo "program did not say its port:"; cat "$tmp/out"; exit 1; }
python3 "$here/client.py" "$port" "$src/tests/data/adt_a01.hl7" "$expect"

exec 4>&-
if [ "$stops_on_eof" = 1 ]; then
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  status=0
  wait "$pid" || status=$?
  pid=""
  [ "$status" = 0 ] || { echo "program exited with $status after stdin closed"; cat "$tmp/out"; exit 1; }
fi
echo "== program output"
cat "$tmp/out"
echo "readme $scenario: ok"
