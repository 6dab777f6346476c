"""Fixtures for tests against a real PostgreSQL server on localhost (no mocks).

`postgres_server` (session scope) starts a private, throw-away PostgreSQL cluster for the
test session: `initdb` into a fresh temporary directory, then `pg_ctl start` on a free TCP
port of 127.0.0.1 with durability turned off (fsync, synchronous_commit, full_page_writes)
for speed. It yields a `PostgresServer` with `.host`, `.port`, `.user` and
`.url(dbname, driver="postgresql+psycopg2")`; at the end of the session the server is
stopped (`pg_ctl stop -m fast`) and its directory removed.

`postgres_url` (function scope) creates a fresh, uniquely named database on that server and
returns its SQLAlchemy URL (`postgresql+psycopg2://postgres@127.0.0.1:PORT/DBNAME`); the
database is dropped (WITH (FORCE)) after the test.

The server binaries (`initdb`, `pg_ctl`) are taken from PATH, else from the newest
/usr/lib/postgresql/*/bin. When they are missing the tests that use these fixtures are
skipped, or fail when the environment variable CI is set: run `bash tests/install_postgres.sh`.
As root (initdb refuses to run as root) the cluster is run as the `postgres` system user
that Debian's package creates, through `runuser -u postgres --`.

The fixtures are registered for all tests by importing them in tests/conftest.py.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = "run `bash tests/install_postgres.sh` (installs PostgreSQL with apt-get when it is missing)"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def _unavailable(reason: str):
    """Skip the test (fail it when CI is set: there PostgreSQL must be installed)."""
    message = f"PostgreSQL tests need a local PostgreSQL server: {reason}; {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _version_key(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[.\-]", path.parent.name))


def find_pg_bin() -> Path | None:
    """Directory holding both initdb and pg_ctl: PATH first, then the newest /usr/lib/postgresql/*/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        for candidate in (Path(initdb).parent, Path(initdb).resolve().parent):
            if (candidate / "pg_ctl").exists():
                return candidate
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for candidate in installed:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


@dataclass
class PostgresServer:
    """A running private PostgreSQL cluster (superuser `postgres`, trust authentication)."""

    host: str
    port: int
    bin_dir: Path
    base_dir: Path
    user: str = SUPERUSER
    startup_seconds: float = 0.0
    _run_as: list[str] = field(default_factory=list, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, dbname: str, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL of database `dbname` on this server."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        """A psycopg2 connection to `dbname` (close it yourself)."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname, connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    # -- process control -------------------------------------------------------------------
    def _cmd(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        # cwd: the server user may not be allowed into the caller's working directory
        proc = subprocess.run(
            [*self._run_as, *args], cwd=self.base_dir, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"\n--- server log tail ({self.log_file}) ---\n{_tail(self.log_file)}"
            )
        return proc

    def init(self) -> None:
        self._cmd(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", self.user,
                  "--no-locale", "-E", "UTF8", "--no-sync")
        # settings go into postgresql.conf (no quoting through pg_ctl -o); the port is passed at start
        settings = {**SERVER_SETTINGS, "unix_socket_directories": str(self.socket_dir)}
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# pytest fixture tests/postgres.py\n")
            conf.writelines(f"{key} = '{value}'\n" for key, value in settings.items())

    def start(self) -> None:
        self._cmd(str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data_dir),
                  "-l", str(self.log_file), "-o", f"-p {self.port}", timeout=90)

    def stop(self) -> None:
        proc = self._cmd(str(self.bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60",
                         "-D", str(self.data_dir), timeout=90, check=False)
        if proc.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
            self._cmd(str(self.bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(self.data_dir),
                      timeout=60, check=False)


def _run_as_prefix(base_dir: Path) -> list[str]:
    """As root: run the server as the `postgres` system user, who gets `base_dir`."""
    if os.geteuid() != 0:
        return []
    import pwd

    try:
        account = pwd.getpwnam(SUPERUSER)
    except KeyError:
        _unavailable("running as root and there is no `postgres` system user to run the server as "
                     "(Debian's postgresql package creates it)")
    runuser = shutil.which("runuser")
    if runuser is None:
        _unavailable("running as root and `runuser` (util-linux) is missing")
    os.chown(base_dir, account.pw_uid, account.pw_gid)
    os.chmod(base_dir, 0o700)
    return [runuser, "-u", SUPERUSER, "--"]


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for the test session (see the module docstring)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _unavailable("initdb/pg_ctl not found on PATH nor under /usr/lib/postgresql/*/bin")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("the Python driver psycopg2 is not installed (pip install -e '.[test]')")

    # not pytest's tmp_path: /tmp/pytest-of-root is 0700, closed to the `postgres` user; and the
    # unix socket path must stay under ~107 bytes
    base_dir = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp" if len(tempfile.gettempdir()) > 40 else None))
    server = None
    try:
        run_as = _run_as_prefix(base_dir)
        server = PostgresServer(host=HOST, port=0, bin_dir=bin_dir, base_dir=base_dir, _run_as=run_as)
        began = time.monotonic()
        server.init()
        for attempt in range(3):  # the free port may be taken between picking and binding it
            server.port = _free_port()
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2 or "already in use" not in _tail(server.log_file):
                    raise
        server.startup_seconds = time.monotonic() - began
        yield server
    finally:
        if server is not None and (server.data_dir / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server):
    """SQLAlchemy URL of a fresh, empty database on `server`, dropped afterwards."""
    dbname = f"test_{uuid.uuid4().hex[:16]}"
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        conn.close()
    yield server.url(dbname)
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on `postgres_server` (its SQLAlchemy URL), dropped after the test."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def postgres_url_2(postgres_server):
    """A second fresh database, for tests that need two (Optuna's and MLflow's stores)."""
    with fresh_database(postgres_server) as url:
        yield url
