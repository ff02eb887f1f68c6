"""A private PostgreSQL server for black-box tests (Debian's postgresql
package), the counterpart of tests/support/postgres.hpp for Catch2:

    with PostgresServer() as pg:          # initdb + start, on a unix socket only
        db = pg.create_database()         # a fresh database
        uri = pg.uri(db)                  # postgresql:///t1?host=...&port=5432&user=sdps_test
        pg.sql("SELECT 1", db)            # psql, as the server's superuser
        pg.stop(); pg.start()             # an outage under live sessions
        pg.restart()

initdb and postgres run as an unprivileged user (`nobody` when the tests
run as root, as in CI), with the data folder and the socket in a fresh
temporary folder and no TCP listener (listen_addresses=''). The server is
stopped and the folder removed on leaving the `with` block, whatever
happened in it; if the test process dies, the server gets SIGQUIT
(PR_SET_PDEATHSIG).

SDPS_PG_BINDIR overrides where initdb, postgres and psql are found
(default: the newest /usr/lib/postgresql/*/bin).

Python 3 standard library only.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

USER = "sdps_test"
PORT = 5432  # on a socket folder of its own: no clash between servers
_PR_SET_PDEATHSIG = 1


def bindir() -> Path:
    forced = os.environ.get("SDPS_PG_BINDIR")
    if forced:
        return Path(forced)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("no PostgreSQL server in /usr/lib/postgresql/*/bin: install Debian's postgresql "
                           "package (scripts/install-deps --test) or set SDPS_PG_BINDIR")
    return found[-1].parent


class PostgresServer:
    def __init__(self):
        self.bin = bindir()
        # Under /tmp whatever TMPDIR says: the server's user must be able
        # to reach the folder, and a unix socket's path must stay short.
        self.dir = Path(tempfile.mkdtemp(prefix="sdps-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen | None = None
        self._databases = 0
        self._uid = self._gid = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._uid, self._gid = nobody.pw_uid, nobody.pw_gid
            os.chown(self.dir, self._uid, self._gid)
        try:
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                       "--no-locale", "--no-sync"])
            self.start()
        except BaseException:
            self.close()
            raise

    # -- the server's life ----------------------------------------------------

    def _as_server_user(self):
        # In the child, before exec: drop to the unprivileged user, then ask
        # for SIGQUIT when the test process goes (after the change of user,
        # which clears the setting).
        if self._uid is not None:
            os.setgroups([])
            os.setgid(self._gid)
            os.setuid(self._uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)

    def _run(self, argv: list[str]) -> None:
        with open(self.log, "ab") as log:
            done = subprocess.run(argv, stdout=log, stderr=log, preexec_fn=self._as_server_user, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{self.log_text()}")

    def start(self, timeout: float = 60.0) -> None:
        """Starts the server (after stop()); returns once it accepts connections."""
        if self.proc is not None:
            return
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.dir), "-p", str(PORT),
                 "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off"],
                stdout=log, stderr=log, preexec_fn=self._as_server_user)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"postgres exited at start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {timeout} s:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): sessions are ended, the server exits."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- using it ---------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        return self.dir

    def uri(self, db: str = "postgres", user: str = USER) -> str:
        """A libpq URI for database `db` on this server."""
        return f"postgresql:///{db}?host={self.dir}&port={PORT}&user={user}"

    def ready(self) -> bool:
        done = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", str(self.dir), "-p", str(PORT),
                               "-U", USER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return done.returncode == 0

    def sql(self, statement: str, db: str = "postgres") -> str:
        """Runs `statement` with psql (stops at the first error, which
        raises); returns psql's unaligned, tuples-only output."""
        done = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", self.uri(db), "-c", statement],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        self._databases += 1
        name = f"t{self._databases}"
        self.sql(f"CREATE DATABASE {name}")
        return name

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
