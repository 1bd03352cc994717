"""Shared helpers of the chaos suite: real clusters (`s3compat dev`), processes stopped,
killed and resumed, streamed bodies that never sit whole in memory, and the checks every
scenario ends with (byte-identical reads, nothing half-visible, a settled cluster).

Every chaos test is marked slow: `pytest -m slow tests/chaos`. Timings are printed (run
with -s to see them), never asserted: the machine is shared.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.cluster import Cluster, sign, stopped, wait_for

MiB = 1 << 20

# Settings every chaos cluster runs with: a node call gives up after 2 s, a slow fragment
# read is hedged after 0.2 s, an open breaker tries again after 2 s, and a write whose
# gateway died is declared dead after 5 s without heartbeat.
CHAOS_ENV = {
    "S3COMPAT_NODE_DEADLINE": "2",
    "S3COMPAT_HEDGE_DELAY": "0.2",
    "S3COMPAT_BREAKER_COOLDOWN": "2",
    "S3COMPAT_STALE_WRITE_AFTER": "5",
}

# No client retries at all, so that every failure is seen. (botocore's `max_attempts`
# counts retries, so {"max_attempts": 1} would still send a failed request twice.)
NO_RETRIES = {"total_max_attempts": 1}


@contextmanager
def chaos_cluster(data_dir: Path, **env: str) -> Iterator[Cluster]:
    """A dev cluster of our own in `data_dir`, stopped (Ctrl-C) however the scenario ends."""
    name = data_dir.name
    cluster = Cluster(data_dir, env={**CHAOS_ENV, **env})
    cluster.start()
    try:
        yield cluster
    finally:
        # A scenario that failed half-way must not leave a process stopped.
        with _suppress_os_errors():
            assert cluster.proc is not None
            os.kill(cluster.proc.pid, signal.SIGCONT)
        for pid in _pids(cluster):
            with _suppress_os_errors():
                os.kill(pid, signal.SIGCONT)
        code = cluster.stop()
        print(f"cluster {name} stopped with exit status {code}")
        # The logs stay for a post-mortem; the chunks (gigabytes) go.
        for node in (cluster.data_dir / "nodes").glob("*"):
            shutil.rmtree(node / "chunks", ignore_errors=True)


def _suppress_os_errors() -> contextlib.suppress:
    return contextlib.suppress(OSError, AssertionError, KeyError, ValueError)


def _pids(cluster: Cluster) -> list[int]:
    try:
        return [int(p) for p in cluster.info["pids"].values() if p]
    except (OSError, KeyError, ValueError, json.JSONDecodeError):
        return []


def client(cluster: Cluster, **config: Any) -> Any:
    """boto3 without retries, with generous timeouts (a request may wait out deadlines)."""
    return cluster.client(retries=NO_RETRIES, read_timeout=120, connect_timeout=10, **config)


# --- processes --------------------------------------------------------------------------


@contextmanager
def supervisor_paused(cluster: Cluster) -> Iterator[None]:
    """The `s3compat dev` supervisor stopped, so what we kill stays dead until the end of
    the block; once it runs again it restarts every child that died meanwhile."""
    assert cluster.proc is not None
    with stopped(cluster.proc.pid):
        yield


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    # Not our child (the supervisor's): wait until it is gone or only a zombie.
    assert wait_for(lambda: not _running(pid), timeout=10, interval=0.05), pid


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def children(pid: int) -> dict[int, str]:
    """The direct children of `pid`, with their command lines."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return out


# --- the gateway's view -----------------------------------------------------------------


def health(cluster: Cluster, endpoint: str | None = None) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(
            (endpoint or cluster.endpoint) + "/-/health", timeout=30
        ) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def breaker(cluster: Cluster, node_id: str) -> str:
    state: str = health(cluster)[1]["nodes"][node_id]["breaker"]
    return state


def all_healthy(cluster: Cluster) -> bool:
    """Every node answers and every breaker is closed (False while the gateway is down)."""
    try:
        status, report = health(cluster)
    except OSError:
        return False
    return status == 200 and all(
        n["status"] == "ok" and n["breaker"] == "closed" for n in report["nodes"].values()
    )


def metrics(cluster: Cluster) -> dict[str, float]:
    with urllib.request.urlopen(cluster.endpoint + "/-/metrics", timeout=30) as resp:
        lines = resp.read().decode().splitlines()
    pairs = (line.rpartition(" ") for line in lines if line and not line.startswith("#"))
    return {name: float(value) for name, _, value in pairs}


def log_lines(cluster: Cluster, name: str, *needles: str) -> list[str]:
    """Lines of logs/<name>.log containing every needle."""
    path = cluster.data_dir / "logs" / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line for line in text.splitlines() if all(n in line for n in needles)]


# --- bodies and checks ------------------------------------------------------------------


class PatternReader(io.RawIOBase):
    """`size` pseudo-random bytes from `seed`, generated as they are read (never held
    whole), hashed on the way; `on_read(n)` is told how much went out."""

    def __init__(self, size: int, seed: int, on_read: Callable[[int], None] | None = None) -> None:
        self.size = size
        self.left = size
        self.sha256 = hashlib.sha256()
        self._rng = random.Random(seed)
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Never a short read before the end: boto3 takes one for the end of the stream.
        n = min(len(buffer), self.left)
        if n <= 0:
            return 0
        data = self._rng.randbytes(n)
        buffer[:n] = data
        self.sha256.update(data)
        self.left -= n
        if self._on_read is not None:
            self._on_read(n)
        return n

    def pieces(self, size: int = MiB) -> Iterator[bytes]:
        while piece := self.read(size):
            yield piece


@dataclass
class PutOutcome:
    status: int | None  # None: the connection broke before an answer
    body: bytes
    error: str = ""


def streaming_put(
    cluster: Cluster, path: str, source: PatternReader, endpoint: str | None = None
) -> PutOutcome:
    """One PUT of `path` (PutObject, or UploadPart with its query) whose body is streamed
    from `source` (UNSIGNED-PAYLOAD, Content-Length known), over a connection of its own.
    A broken connection is an outcome, not an error."""
    url = f"{endpoint or cluster.endpoint}{path}"
    headers = sign(cluster, "PUT", url, {"Content-Length": str(source.size)}, unsigned_payload=True)
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        conn.request("PUT", target, body=source.pieces(), headers=headers)
        response = conn.getresponse()
        return PutOutcome(response.status, response.read())
    except (OSError, http.client.HTTPException) as exc:
        # The gateway may answer (503) and close before the whole body went out: try to
        # read what it said; a reset connection is a clean failure too.
        try:
            response = conn.getresponse()
            return PutOutcome(response.status, response.read(), repr(exc))
        except (OSError, http.client.HTTPException):
            return PutOutcome(None, b"", repr(exc))
    finally:
        conn.close()


def object_sha256(s3: Any, bucket: str, key: str, **kwargs: Any) -> tuple[str, int]:
    """(sha256 hex, size) of an object, streamed."""
    digest = hashlib.sha256()
    size = 0
    body = s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"]
    for piece in body.iter_chunks(MiB):
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


def is_missing(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"]) in ("404", "NoSuchKey")
    return False


def open_uploads(s3: Any, bucket: str, key: str) -> list[str]:
    found = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    return [u["UploadId"] for u in found if u["Key"] == key]


def timed(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    start = time.monotonic()
    try:
        return fn(*args, **kwargs)
    finally:
        print(f"{what}: {time.monotonic() - start:.2f}s")


def settled(cluster: Cluster) -> bool:
    """`Cluster.settled`, plus no chunk waiting for repair."""
    return cluster.settled() and not cluster.sql("SELECT 1 FROM chunks WHERE size IS NULL")


def wait_settled(cluster: Cluster, timeout: float = 180) -> None:
    start = time.monotonic()
    ok = wait_for(lambda: settled(cluster), timeout=timeout, interval=1)
    print(f"settled after {time.monotonic() - start:.1f}s: {bool(ok)}")
    assert ok, (
        cluster.sql("SELECT state, count(*) FROM blobs GROUP BY state"),
        cluster.sql("SELECT node_id, count(*) FROM chunks WHERE size IS NULL GROUP BY node_id"),
        list((cluster.data_dir / "nodes").glob("*/tmp/*")),
        {n: len(ids) for n, ids in cluster.chunk_files().items()},
        {n: len(ids) for n, ids in cluster.referenced_chunks().items()},
    )


# --- chunks on disk ---------------------------------------------------------------------


def object_blobs(cluster: Cluster, bucket: str, key: str) -> list[Any]:
    [row] = cluster.sql(
        "SELECT part_blobs FROM objects WHERE bucket = $1 AND key = $2", bucket, key
    )
    return list(row["part_blobs"])


def chunk_nodes(cluster: Cluster, blob: Any) -> list[str]:
    rows = cluster.sql("SELECT node_id FROM chunks WHERE blob_id = $1 ORDER BY idx", blob)
    return [r["node_id"] for r in rows]


def chunk_file(cluster: Cluster, blob: uuid.UUID, index: int) -> Path:
    """Where a node keeps a chunk: chunks/<id[0:2]>/<id[2:4]>/<id>."""
    node = chunk_nodes(cluster, blob)[index]
    name = f"{blob.hex}-{index}"
    return cluster.node_dir(node) / "chunks" / name[0:2] / name[2:4] / name


def scrub(cluster: Cluster) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """`s3compat scrub --rate 0` against the cluster; the process and its summary."""
    argv = [sys.executable, "-m", "s3compat", "scrub", "--data-dir", str(cluster.data_dir)]
    out = subprocess.run(
        [*argv, "--rate", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    print(out.stdout)
    summary = {}
    for line in out.stdout.splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().isdigit():
            summary[name.strip()] = int(value)
    return out, summary


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Run each target in a thread; return the exceptions they raised."""
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
