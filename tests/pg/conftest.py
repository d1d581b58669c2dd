"""Fixtures of the mllp-listen --pg tests: a PostgreSQL server of their own (pgserver.py),
mllp-listen processes (test_listen.Listener), table names unique per test."""

import itertools
import os
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "listen"))

import pgserver  # noqa: E402
from test_listen import Listener  # noqa: E402


@pytest.fixture(scope="session")
def pg_shared():
    """One PostgreSQL for the tests that do not stop it; each test has its own table."""
    srv = pgserver.PgServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.destroy()


@pytest.fixture
def pg_own():
    """A PostgreSQL of the test's own (it may stop and restart it); started."""
    srv = pgserver.PgServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.destroy()


_tables = itertools.count(1)


@pytest.fixture
def table(request):
    """A table name of the test's own (valid for --pg-table)."""
    base = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return f"t{next(_tables)}_{base}"


@pytest.fixture
def listen(tmp_path):
    started = []

    def start(*args, expect_start=True):
        lst = Listener(tmp_path, *args, expect_start=expect_start)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.kill()


@pytest.fixture
def pg_factory():
    """PgServer(port=...) created on demand (not started); destroyed at the end."""
    made = []

    def make(port=None):
        srv = pgserver.PgServer(port=port)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.destroy()

