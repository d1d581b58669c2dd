#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for building and testing mllp:
# cmake, valgrind, strace, openssl, haproxy, mono, nuget, Maven, libpq-dev, libmicrohttpd-dev, postgresql and postgresql-client
# (apt; Maven fetches JNA and JUnit for the Java binding from Maven Central; PostgreSQL is for
# mllp-listen --pg, whose tests start their own server; HAProxy for the PROXY protocol and
# scale-out tests), python-hl7 (a real MLLP client used by the tests),
# hl7apy (an independent HL7 parser the tests check batch and enhanced acknowledgements with),
# prometheus_client (its parser reads mllp-listen's /metrics in tests/ops) and pytest (pip),
# and simple-hl7 (an MLLP server for node the mllp-send tests send to; npm, into tests/send/node_modules,
# never globally).
# Safe to run again: it installs only what is missing.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
pkgs=()
command -v cmake >/dev/null 2>&1 || pkgs+=(cmake)
command -v valgrind >/dev/null 2>&1 || pkgs+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
command -v g++ >/dev/null 2>&1 || pkgs+=(g++)
command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
# Bindings: C# builds and runs on mono; Java is a Maven project (bindings/java/pom.xml).
command -v mcs >/dev/null 2>&1 || pkgs+=(mono-complete)
# C# package: Debian's nuget (NuGet 2.8 on mono) packs and installs the .nupkg offline; unzip lists it.
command -v nuget >/dev/null 2>&1 || pkgs+=(nuget)
command -v unzip >/dev/null 2>&1 || pkgs+=(unzip)
command -v javac >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
# mllp-listen --pg: libpq (headers and pkg-config file) to build it; the PostgreSQL server
# (initdb, pg_ctl: the tests and bench/pg.sh start their own) and psql to test it.
pkg-config --exists libpq 2>/dev/null || pkgs+=(libpq-dev)
pg_bindir="$(pg_config --bindir 2>/dev/null || true)"
if ! command -v initdb >/dev/null 2>&1 && ! [ -x "$pg_bindir/initdb" ]; then pkgs+=(postgresql); fi
command -v psql >/dev/null 2>&1 || pkgs+=(postgresql-client)
# mllp-listen --metrics: GNU libmicrohttpd (headers and pkg-config file) for its HTTP endpoint.
pkg-config --exists libmicrohttpd 2>/dev/null || pkgs+=(libmicrohttpd-dev)
# tests/proxy runs mllp-listen behind HAProxy (PROXY protocol); Debian's haproxy is in /usr/sbin.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || pkgs+=(haproxy)
# tests/listen/test_durable.py reads the order of mllp-listen's syncs from strace -f.
command -v strace >/dev/null 2>&1 || pkgs+=(strace)
# The Python binding's README test creates a fresh venv (Debian's python3 needs python3-venv).
python3 -c "import ensurepip, venv" 2>/dev/null || pkgs+=(python3-venv)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
py=()
python3 -c "import hl7" 2>/dev/null || py+=(hl7)
python3 -c "import pytest" 2>/dev/null || py+=(pytest)
python3 -c "import hl7apy" 2>/dev/null || py+=(hl7apy)
python3 -c "import prometheus_client" 2>/dev/null || py+=(prometheus_client)
if [ ${#py[@]} -gt 0 ]; then
  echo "setup: pip install ${py[*]}"
  # A Debian-managed python refuses plain pip installs (PEP 668); pyenv's does not.
  python3 -m pip install -q "${py[@]}" 2>/dev/null || python3 -m pip install -q --break-system-packages "${py[@]}"
fi
# simple-hl7 for tests/send (tests/send/package.json pins it); skipped without node/npm, the
# tests that need it then skip.
send_dir="$(cd "$(dirname "$0")" && pwd)/send"
if [ ! -f "$send_dir/node_modules/simple-hl7/package.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup: npm install simple-hl7 (into tests/send/node_modules)"
    (cd "$send_dir" && npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null)
  else
    echo "setup: npm not found; the simple-hl7 tests of mllp-send will be skipped" >&2
  fi
fi
