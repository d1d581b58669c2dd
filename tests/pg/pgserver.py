"""A throw-away PostgreSQL server for the --pg tests and bench/pg.sh.

PgServer(): initdb into a new temporary directory, then start() runs pg_ctl start on a free
127.0.0.1 port, with the unix socket in that directory too (nothing outside it is touched).
initdb refuses to run as root: as root (CI) the server runs as the unprivileged system user
`mllptest` (created once with useradd when missing) and the directory is chowned to it; as a
normal user it runs as that user. fsync and synchronous_commit keep their defaults (on): a
commit that is not durable would make mllp-listen's ACK a lie. Trust authentication, local
and 127.0.0.1 only. The programs come from PATH, else from `pg_config --bindir`.
psql() runs SQL through psql over TCP and returns the rows (unaligned, tab-separated).
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

RUN_AS = "mllptest"
START_TIMEOUT = 60


def _bindir_tool(name):
    exe = shutil.which(name)
    if exe:
        return exe
    try:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    cand = os.path.join(bindir, name)
    return cand if bindir and os.access(cand, os.X_OK) else None


def tools():
    """{name: path} of initdb, pg_ctl and psql, or None when one is missing."""
    found = {n: _bindir_tool(n) for n in ("initdb", "pg_ctl", "psql")}
    return found if all(found.values()) else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user():
    """(uid, gid, name) the server runs as."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return pw.pw_uid, pw.pw_gid, pw.pw_name
    try:
        pw = pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        RUN_AS], check=True, capture_output=True, timeout=30)
        pw = pwd.getpwnam(RUN_AS)
    return pw.pw_uid, pw.pw_gid, pw.pw_name


class PgServer:
    def __init__(self, port=None):
        t = tools()
        if not t:
            raise RuntimeError("PostgreSQL server programs (initdb, pg_ctl, psql) not found")
        self.initdb, self.pg_ctl, self.psql_exe = t["initdb"], t["pg_ctl"], t["psql"]
        self.uid, self.gid, self.user = _server_user()
        self.root = tempfile.mkdtemp(prefix="mllp-pg.")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = port or free_port()
        if os.geteuid() == 0:
            os.chown(self.root, self.uid, self.gid)
        self._run([self.initdb, "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                   "--no-instructions", "--locale=C"], timeout=120)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# mllp tests: 127.0.0.1 only, socket in the temporary directory; fsync and\n"
                    "# synchronous_commit stay on (the defaults)\n"
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nmax_connections = 100\n")
        self.running = False

    def _run(self, args, timeout=60, check=True):
        kw = {}
        if os.geteuid() == 0:
            kw = dict(user=self.uid, group=self.gid, extra_groups=[])
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=self.root,
                           stdin=subprocess.DEVNULL, **kw)
        if check and p.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({p.returncode}): {p.stdout}{p.stderr}")
        return p

    @property
    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    @property
    def uri(self):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self):
        self._run([self.pg_ctl, "-D", self.data, "-l", self.log, "-w", "-t", str(START_TIMEOUT),
                   "start"], timeout=START_TIMEOUT + 10)
        self.running = True

    def stop(self, mode="fast"):
        if not self.running:
            return
        self._run([self.pg_ctl, "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"],
                  timeout=70, check=False)
        self.running = False

    def psql(self, sql, timeout=30):
        """Rows of `sql` (lists of column strings); raises on an error."""
        p = subprocess.run([self.psql_exe, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            self.conninfo, "-c", sql], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"psql: {p.stderr}")
        return [line.split("\t") for line in p.stdout.splitlines() if line != ""]

    def destroy(self):
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
