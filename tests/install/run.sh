#!/usr/bin/env bash
# Installs the build in $1 into a scratch prefix, then builds and runs a consumer three ways:
# pkg-config, CMake find_package (shared) and find_package (static).
set -euo pipefail
build="$1"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir="$(dirname "$(find "$prefix" -name 'libmllp.so.0' | head -1)")"
[ -L "$libdir/libmllp.so" ] && [ -L "$libdir/libmllp.so.0" ] || { echo "soname links missing in $libdir"; exit 1; }

echo "== pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -o "$tmp/consumer_pc" "$here/consumer.c" $(pkg-config --define-variable=prefix="$prefix" --cflags --libs mllp)
LD_LIBRARY_PATH="$libdir" "$tmp/consumer_pc"
readelf -d "$tmp/consumer_pc" | grep -q 'NEEDED.*libmllp.so.0' || { echo "consumer does not need libmllp.so.0"; exit 1; }

echo "== CMake find_package"
cmake -S "$here" -B "$tmp/cbuild" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/cbuild" >/dev/null
"$tmp/cbuild/consumer_shared"
"$tmp/cbuild/consumer_static"
echo "install and link: ok"
