"""Test helpers that run the real system: `s3compat dev` (embedded PostgreSQL, six
nodeserver processes, the gateway under uvicorn) in a temporary data directory."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

# Settings the tests want from every cluster they start: a fast janitor and no grace period,
# so that collection can be observed within a test.
TEST_ENV = {
    "S3COMPAT_JANITOR_INTERVAL": "0.5",
    "S3COMPAT_DELETE_GRACE": "0",
    "S3COMPAT_JANITOR_RETRY": "1",
    "S3COMPAT_LOG_LEVEL": "INFO",
    # One gateway process, so that a test's requests and /-/metrics meet the same process
    # and a killed gateway pid is the whole gateway; test_workers.py covers several.
    "S3COMPAT_WORKERS": "1",
    # Every body goes to the nodes, so that tests of chunks, nodes and the janitor can use
    # small objects; test_inline.py and the real-client tests run with the default.
    "S3COMPAT_INLINE_MAX": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    output: list[str] = field(default_factory=list)
    tls: bool = False  # `s3compat dev --tls`: HTTPS, with the CA path printed as `ca:`
    ca: str = ""

    # --- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Cluster:
        env = {**os.environ, **TEST_ENV, **self.env}
        env.pop("DATABASE_URL", None)
        self.output = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "s3compat",
                "dev",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                *(["--tls"] if self.tls else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        ready = False
        for line in self.proc.stdout:
            self.output.append(line)
            key, _, value = line.strip().partition(": ")
            if key == "endpoint":
                self.endpoint = value
            elif key == "access key":
                self.access_key = value
            elif key == "secret key":
                self.secret_key = value
            elif key == "ca":
                self.ca = value
            elif line.startswith("Press Ctrl-C"):
                ready = True
                break
            if time.monotonic() > deadline:
                break
        if not ready:
            self.stop()
            raise RuntimeError("s3compat dev did not start:\n" + "".join(self.output))
        # Keep draining stdout so the supervisor never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the supervisor's exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    # --- introspection --------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "cluster.json").read_text())
        return data

    @property
    def node_env(self) -> dict[str, str]:
        """The settings a gateway needs to be let in by this cluster's nodes: the token and
        cluster id `s3compat dev` keeps in its data dir."""
        return {
            "S3COMPAT_NODE_TOKEN": (self.data_dir / "node-token").read_text().strip(),
            "S3COMPAT_CLUSTER_ID": (self.data_dir / "cluster-id").read_text().strip(),
        }

    @property
    def database_url(self) -> str:
        return str(self.info["database_url"])

    def pid(self, name: str) -> int:
        return int(self.info["pids"][name])

    def node_dir(self, node_id: str) -> Path:
        return self.data_dir / "nodes" / node_id

    def chunk_files(self) -> dict[str, set[str]]:
        """Chunk ids present on each node's disk."""
        out: dict[str, set[str]] = {}
        for node in sorted((self.data_dir / "nodes").iterdir()):
            root = node / "chunks"
            out[node.name] = (
                {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()
            )
        return out

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.database_url)
            try:
                rows: list[asyncpg.Record] = await conn.fetch(query, *args)
                return rows
            finally:
                await conn.close()

        return asyncio.run(run())

    def settled(self) -> bool:
        """Nothing in flight, nothing left over: the chunk files on disk are exactly those
        committed metadata references, no blob is uncommitted and no node has a temp file."""
        on_disk = {n: ids for n, ids in self.chunk_files().items() if ids}
        referenced = {n: ids for n, ids in self.referenced_chunks().items() if ids}
        pending = self.sql("SELECT 1 FROM blobs WHERE state <> 'committed'")
        temp = list((self.data_dir / "nodes").glob("*/tmp/*"))
        return on_disk == referenced and not pending and not temp

    def referenced_chunks(self) -> dict[str, set[str]]:
        """Chunk ids that committed metadata references, per node."""
        rows = self.sql(
            "SELECT c.blob_id, c.idx, c.node_id FROM chunks c JOIN blobs b USING (blob_id) "
            "WHERE b.state = 'committed'"
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["node_id"], set()).add(f"{r['blob_id'].hex}-{r['idx']}")
        return out

    # --- clients --------------------------------------------------------------------

    def client(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        endpoint: str | None = None,
        **config: Any,
    ) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(**config) if config else None,
            verify=self.ca if self.tls else None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the cluster's CA (and nothing else)."""
        return ssl.create_default_context(cafile=self.ca)

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        """A fresh HTTP or HTTPS connection to the gateway, whichever it serves."""
        parts = urlsplit(self.endpoint)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=self.ssl_context()
            )
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        sign: bool = True,
        secret_key: str | None = None,
        payload_hash: str | None = None,
        send_body: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request, optionally SigV4-signed by botocore, over a fresh connection."""
        url = self.endpoint + path
        hdrs = dict(headers or {})
        if sign:
            request = AWSRequest(method=method, url=url, data=body, headers=hdrs)
            creds = Credentials(self.access_key, secret_key or self.secret_key)
            auth = _UnsignedPayload if payload_hash == "UNSIGNED-PAYLOAD" else S3SigV4Auth
            auth(creds, "s3", "us-east-1").add_auth(request)
            hdrs = dict(request.headers.items())
            if payload_hash not in (None, "UNSIGNED-PAYLOAD"):
                # A deliberately wrong hash: sign it as the client's claim.
                request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
                request.headers["x-amz-content-sha256"] = payload_hash
                _SignGivenHash(creds, "s3", "us-east-1").add_auth(request)
                hdrs = dict(request.headers.items())
        parts = urlsplit(url)
        conn = self.connection()
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if send_body:
                conn.request(method, target, body=body, headers=hdrs)
            else:  # headers only, as a client waiting for `100 Continue` would
                conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in hdrs.items():
                    conn.putheader(name, value)
                conn.endheaders()
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


class _UnsignedPayload(S3SigV4Auth):
    """Signs `UNSIGNED-PAYLOAD`, as rclone does even over plain HTTP."""

    def _should_sha256_sign_payload(self, request: AWSRequest) -> bool:
        return False


def sign(
    cluster: Cluster,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    unsigned_payload: bool = False,
    secret_key: str | None = None,
) -> dict[str, str]:
    """SigV4 headers for a request with an empty (or unsigned) body, signed by botocore."""
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    creds = Credentials(cluster.access_key, secret_key or cluster.secret_key)
    auth = _UnsignedPayload if unsigned_payload else S3SigV4Auth
    auth(creds, "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


class _SignGivenHash(S3SigV4Auth):
    """Signs whatever x-amz-content-sha256 the test put in, instead of the body's hash."""

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        claimed = request.headers["x-amz-content-sha256"]
        super()._modify_request_before_signing(request)
        del request.headers["x-amz-content-sha256"]
        request.headers["x-amz-content-sha256"] = claimed

    def payload(self, request: AWSRequest) -> str:
        return str(request.headers["x-amz-content-sha256"])


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.25) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


class RssSampler:
    """Samples a process's resident memory in the background (VmRSS from /proc)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.samples.append(self.rss())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples)


def iter_file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(size):
            yield piece


@dataclass
class ExtraGateway:
    """A second `s3compat serve` on the same database and nodes as a dev cluster."""

    cluster: Cluster
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)  # more `s3compat serve` arguments
    tls: bool = False  # serves HTTPS (say how in args or env), trusted via the cluster's CA

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ExtraGateway:
        info = self.cluster.info
        env = {
            **os.environ,
            **TEST_ENV,
            **self.cluster.env,
            "DATABASE_URL": info["database_url"],
            "S3COMPAT_NODES": ",".join(f"{n}={a}" for n, a in info["nodes"].items()),
            "S3COMPAT_ACCESS_KEY": self.cluster.access_key,
            "S3COMPAT_SECRET_KEY": self.cluster.secret_key,
            "S3COMPAT_USER": "admin",
            "S3COMPAT_PORT": str(self.port),
            **self.cluster.node_env,
            **self.env,
        }
        log = open(self.cluster.data_dir / "logs" / f"gateway-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3compat", "serve", *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"extra gateway exited with {self.proc.returncode}")
            try:
                conn = (
                    http.client.HTTPSConnection(
                        "127.0.0.1", self.port, timeout=2, context=self.cluster.ssl_context()
                    )
                    if self.tls
                    else http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                )
                conn.request("GET", "/-/health")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("extra gateway did not become healthy")

    def client(self, **config: Any) -> Any:
        """boto3 for this gateway, with the cluster's credentials (and CA, over HTTPS)."""
        return self.cluster.client(endpoint=self.endpoint, **config)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class NonSeekable(io.RawIOBase):
    """A stream boto3 cannot rewind or measure, so the body's size is known only at its end."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """SIGSTOP the processes (they hang, as on a stuck disk or a frozen VM); SIGCONT after,
    whatever happens (a process that exited meanwhile is fine)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
