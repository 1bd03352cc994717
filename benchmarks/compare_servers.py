"""The servers bench_compare.py drives besides our cluster, their memory, and the machine.

- `Server`: a child process serving HTTP on a free local port (moto's server, the bare
  Starlette ceiling in ceiling_app.py), started and stopped by the benchmark.
- `GroupSampler`: VmRSS of named groups of process trees (the gateway, all our processes,
  moto), sampled in the background, with the peak over any set of time windows.
- `machine_description`: CPU, memory, kernel, Python and the library versions, for the
  top of the report.
"""

from __future__ import annotations

import http.client
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
from bench_cluster import proc_status_kib

from tests.cluster import free_port

HERE = Path(__file__).resolve().parent


@dataclass
class Server:
    """One HTTP server in a child process, on 127.0.0.1 and a free port."""

    name: str
    argv: list[str]  # `{port}` in an argument is replaced by the port
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, log_dir: Path, ready_path: str = "/", timeout: float = 60.0) -> Server:
        self.log = log_dir / f"{self.name}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [a.replace("{port}", str(self.port)) for a in self.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=HERE,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log}"
                )
            with suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", ready_path)
                    conn.getresponse().read()
                    return self
                finally:
                    conn.close()
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:g}s; see {self.log}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def moto_server() -> Server:
    """moto's standalone server (in memory, Flask/werkzeug, threaded)."""
    return Server("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"])


def ceiling_server(workers: int) -> Server:
    """The bare Starlette endpoint, under uvicorn with the gateway's options."""
    return Server(
        "ceiling",
        [
            sys.executable,
            str(HERE / "ceiling_app.py"),
            "--port",
            "{port}",
            "--workers",
            str(workers),
        ],
    )


# --- memory --------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn workers, PostgreSQL backends), if alive."""
    try:
        root = psutil.Process(pid)
        return [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return []


class GroupSampler(threading.Thread):
    """Summed VmRSS of named process groups, every `interval` seconds.

    `roots()` names each group's root pids (it is called again every `refresh` seconds, so
    a restarted process or a new uvicorn worker is picked up); each root counts with all its
    descendants. RSS counts shared pages once per process: PostgreSQL's backends all map
    its shared buffers, so a sum over them overstates what it really uses.
    """

    def __init__(
        self,
        roots: Callable[[], dict[str, list[int]]],
        interval: float = 0.1,
        refresh: float = 1.0,
    ) -> None:
        super().__init__(name="rss-groups", daemon=True)
        self.roots = roots
        self.interval = interval
        self.refresh = refresh
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def _members(self) -> dict[str, list[int]]:
        try:
            roots = self.roots()
        except Exception:  # e.g. cluster.json being replaced; try again next refresh
            return {}
        return {
            group: sorted({p for pid in pids for p in process_tree(pid)})
            for group, pids in roots.items()
        }

    def run(self) -> None:
        members = self._members()
        refreshed = time.monotonic()
        while not self.stopped.is_set():
            now = time.monotonic()
            if now - refreshed >= self.refresh:
                members = self._members() or members
                refreshed = now
            sample: dict[str, int] = {}
            for group, pids in members.items():
                sample[group] = sum(proc_status_kib(p, "VmRSS") or 0 for p in pids)
            with self.lock:
                self.samples.append((now, sample))
            self.stopped.wait(self.interval)

    def peak_kib(self, group: str, windows: list[tuple[float, float]]) -> int:
        """The highest sample of `group` taken inside any of `windows` (0 if none)."""
        with self.lock:
            return max(
                (
                    s.get(group, 0)
                    for t, s in self.samples
                    if any(start <= t <= end for start, end in windows)
                ),
                default=0,
            )

    def current_kib(self, group: str) -> int:
        with self.lock:
            return self.samples[-1][1].get(group, 0) if self.samples else 0

    def stop(self) -> None:
        self.stopped.set()
        self.join(2)


# --- the machine ---------------------------------------------------------------------------


def _cpu() -> str:
    models: list[str] = []
    with suppress(OSError), open("/proc/cpuinfo") as f:
        models = [
            line.split(":", 1)[1].strip() for line in f if line.lower().startswith("model name")
        ]
    model = models[0] if models else platform.processor() or "unknown CPU"
    return f"{model}; {len(models) or os.cpu_count()} logical CPUs"


def _memory() -> str:
    with suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    return "unknown RAM"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_description() -> list[str]:
    uname = platform.uname()
    libs = ", ".join(
        f"{d} {_version(d)}"
        for d in ("boto3", "botocore", "moto", "uvicorn", "starlette", "grpcio", "awscrt")
    )
    return [
        f"CPU: {_cpu()}",
        f"memory: {_memory()}",
        f"kernel: {uname.system} {uname.release} ({uname.machine})",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        f"libraries: {libs}",
    ]
