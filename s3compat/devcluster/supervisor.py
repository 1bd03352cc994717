"""`s3compat dev`: PostgreSQL, six storage nodes and a gateway, supervised as one.

Everything lives under one data directory, so stopping and starting again finds the same
buckets and objects. The supervisor writes `cluster.json` there (endpoint, ports, pids) for
tools and tests, and stops every child on Ctrl-C or when any child dies.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from s3compat.devcluster.postgres import EmbeddedPostgres
from s3compat.devcluster.procs import die_with_parent
from s3compat.settings import Settings

NODE_COUNT = 6
DEV_USER = "admin"


@dataclass
class DevOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 9000
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    extra_env: dict[str, str] = field(default_factory=dict)


def dev_credentials(
    data_dir: Path, access_key: str | None, secret_key: str | None
) -> tuple[str, str]:
    """Given keys win; otherwise keys generated on first start and kept in the data dir."""
    if access_key and secret_key:
        return access_key, secret_key
    path = data_dir / "dev-credentials.toml"
    if path.exists():
        doc = tomllib.loads(path.read_text())
        return str(doc["access_key"]), str(doc["secret_key"])
    access = "S3C" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'access_key = "{access}"\nsecret_key = "{secret}"\n')
    return access, secret


class Supervisor:
    def __init__(self, opts: DevOptions) -> None:
        self.opts = opts
        self.data = opts.data_dir.resolve()
        self.logs = self.data / "logs"
        self.pg: EmbeddedPostgres | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.node_addresses: dict[str, str] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.stopping = False

    # --- start ----------------------------------------------------------------------

    def _spawn(
        self, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def _start_node(self, node_id: str) -> None:
        log_name = f"{node_id}.log"
        log_path = self.logs / log_name
        offset = log_path.stat().st_size if log_path.exists() else 0
        proc = self._spawn(
            [
                sys.executable,
                "-m",
                "nodeserver",
                "--id",
                node_id,
                "--listen",
                f"{self.opts.host}:0",
                "--data",
                str(self.data / "nodes" / node_id),
            ],
            log_name,
        )
        self.nodes[node_id] = proc
        marker = f"nodeserver {node_id} listening on "
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(log_path, "rb") as f:
                f.seek(offset)
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if line.startswith(marker):
                        self.node_addresses[node_id] = line[len(marker) :].strip()
                        return
            if proc.poll() is not None:
                raise RuntimeError(f"{node_id} exited with {proc.returncode}; see {log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"{node_id} did not start; see {log_path}")

    def _wait_gateway(self, endpoint: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.gateway is not None
            if self.gateway.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {self.gateway.returncode}; "
                    f"see {self.logs / 'gateway.log'}"
                )
            try:
                with urllib.request.urlopen(f"{endpoint}/-/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not become healthy; see {self.logs / 'gateway.log'}")

    def start(self) -> dict[str, object]:
        self.logs.mkdir(parents=True, exist_ok=True)
        access, secret = dev_credentials(self.data, self.opts.access_key, self.opts.secret_key)
        database_url = os.environ.get("DATABASE_URL", "")
        if not database_url:
            self.pg = EmbeddedPostgres(self.data / "postgres")
            database_url = self.pg.start()
        for i in range(1, NODE_COUNT + 1):
            self._start_node(f"node{i}")
        settings = Settings.from_env().with_(
            database_url=database_url,
            nodes=tuple(self.node_addresses.items()),
            host=self.opts.host,
            port=self.opts.port,
            access_key=access,
            secret_key=secret,
            user=DEV_USER,
        )
        env = {**os.environ, **settings.to_env(), **self.opts.extra_env}
        self.gateway = self._spawn([sys.executable, "-m", "s3compat", "serve"], "gateway.log", env)
        endpoint = f"http://{self.opts.host}:{self.opts.port}"
        self._wait_gateway(endpoint)
        info: dict[str, object] = {
            "endpoint": endpoint,
            "database_url": database_url,
            "nodes": self.node_addresses,
            "pids": {
                "gateway": self.gateway.pid,
                "postgres": self.pg.proc.pid if self.pg and self.pg.proc else None,
                **{n: p.pid for n, p in self.nodes.items()},
            },
        }
        (self.data / "cluster.json").write_text(json.dumps(info, indent=2))
        info["access_key"], info["secret_key"] = access, secret
        return info

    # --- run and stop ---------------------------------------------------------------

    def children(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        out = [(n, p) for n, p in self.nodes.items()]
        if self.gateway is not None:
            out.insert(0, ("gateway", self.gateway))
        if self.pg is not None and self.pg.proc is not None:
            out.append(("postgres", self.pg.proc))
        return out

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM (exit 0) or until a child dies (exit 1)."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not self.stopping:
            for name, proc in self.children():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """Gateway first (no new writes), then the nodes, then PostgreSQL."""
        if self.gateway is not None:
            _terminate([self.gateway])
        _terminate(list(self.nodes.values()))
        if self.pg is not None:
            self.pg.stop()
        (self.data / "cluster.json").unlink(missing_ok=True)


def _terminate(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_dev(opts: DevOptions) -> int:
    sup = Supervisor(opts)
    try:
        info = sup.start()
    except BaseException as exc:
        sup.stop()
        if isinstance(exc, KeyboardInterrupt):
            return 130
        print(f"s3compat dev: failed to start: {exc}", file=sys.stderr)
        return 1
    print("s3compat dev cluster is ready", flush=True)
    print(f"endpoint: {info['endpoint']}")
    print(f"access key: {info['access_key']}")
    print(f"secret key: {info['secret_key']}")
    print(f"region: {Settings.from_env().region}")
    print(f"data dir: {sup.data}")
    print(f"logs: {sup.logs}")
    print("Press Ctrl-C to stop.", flush=True)
    code = 1
    try:
        code = sup.wait()
    finally:
        sup.stop()
    print("s3compat dev stopped", flush=True)
    return code
