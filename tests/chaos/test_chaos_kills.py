"""Storage nodes killed with -9 in the middle of concurrent 200 MiB uploads.

The supervisor is paused so the killed nodes stay dead. With one node dead every write
still commits (five chunks of six, the quorum); once a second node dies the writes in
flight fail with 503 SlowDown (or a broken connection) and leave nothing visible. Every
object stored before the kills reads back byte-identical with two nodes dead. Once the
supervisor runs again it restarts the nodes, the janitor rebuilds the missing chunks and
collects those of the failed writes, and the cluster settles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from tests.chaos.conftest import (
    MiB,
    PatternReader,
    all_healthy,
    chaos_cluster,
    client,
    is_missing,
    kill9,
    object_sha256,
    open_uploads,
    streaming_put,
    supervisor_paused,
    timed,
    wait_settled,
)
from tests.cluster import Cluster, wait_for

pytestmark = pytest.mark.slow

BIG = 200 * MiB
BUCKET = "chaos-kills"
TRANSFER = TransferConfig(
    multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB, max_concurrency=2
)
# boto3 keeps parts of a non-seekable stream in memory: at most this many at a time.
TRANSFER.max_in_memory_upload_chunks = 3
CLEAN_CODES = ("SlowDown", "ServiceUnavailable")


@pytest.fixture(scope="module")
def kc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with chaos_cluster(tmp_path_factory.mktemp("chaos-kills")) as c:
        yield c


@dataclass
class Upload:
    """One 200 MiB upload run in a thread: multipart (boto3 upload_fileobj) or one
    streamed PutObject."""

    cluster: Cluster
    s3: Any
    key: str
    multipart: bool
    seed: int
    sent: list[int]
    source: PatternReader = field(init=False)
    ok: bool = False
    error: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.source = PatternReader(BIG, self.seed, self.sent.append)

    def run(self) -> None:
        start = time.monotonic()
        try:
            if self.multipart:
                try:
                    self.s3.upload_fileobj(self.source, BUCKET, self.key, Config=TRANSFER)
                    self.ok = True
                except (S3UploadFailedError, ClientError, BotoCoreError) as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
            else:
                outcome = streaming_put(self.cluster, f"/{BUCKET}/{self.key}", self.source)
                self.ok = outcome.status == 200
                if not self.ok:
                    self.error = f"HTTP {outcome.status} {outcome.body[:300]!r} {outcome.error}"
        finally:
            self.seconds = time.monotonic() - start

    @property
    def clean_failure(self) -> bool:
        """An S3 error saying the cluster cannot take the write, or a broken connection."""
        if self.multipart:
            return any(code in self.error for code in CLEAN_CODES) or any(
                kind in self.error
                for kind in ("ConnectionClosedError", "EndpointConnectionError", "ReadTimeout")
            )
        return self.error.startswith("HTTP None") or (
            self.error.startswith("HTTP 503") and any(c in self.error for c in CLEAN_CODES)
        )


def _uploads_with_a_kill(
    kc: Cluster,
    s3: Any,
    prefix: str,
    seed: int,
    victim: str,
    at: float,
    readable: dict[str, tuple[str, int]],
) -> list[Upload]:
    """Three concurrent 200 MiB uploads (two multipart, one streamed PUT); `victim` is
    killed with -9 once `at` of their bytes have been read from the sources. Meanwhile a
    reader GETs the `readable` objects over and over: every read must be byte-identical,
    including those the kill interrupts."""
    sent: list[int] = []
    done = threading.Event()
    reads: list[str] = []

    def reader() -> None:
        while not done.is_set():
            for key, expected in readable.items():
                try:
                    got = object_sha256(s3, BUCKET, key)
                except (ClientError, BotoCoreError) as exc:
                    reads.append(f"{key}: {type(exc).__name__}: {exc}")
                    continue
                reads.append("ok" if got == expected else f"{key}: wrong bytes")

    reading = threading.Thread(target=reader, daemon=True)
    reading.start()
    uploads = [
        Upload(kc, s3, f"{prefix}-mpu-a", True, seed, sent),
        Upload(kc, s3, f"{prefix}-mpu-b", True, seed + 1, sent),
        Upload(kc, s3, f"{prefix}-put", False, seed + 2, sent),
    ]
    threads = [threading.Thread(target=u.run, daemon=True) for u in uploads]
    start = time.monotonic()
    for t in threads:
        t.start()
    threshold = at * BIG * len(uploads)
    assert wait_for(lambda: sum(sent) >= threshold, timeout=300, interval=0.05)
    pid = kc.pid(victim)
    kill9(pid)
    print(
        f"{prefix}: killed {victim} (pid {pid}) after {time.monotonic() - start:.2f}s, "
        f"{sum(sent) / MiB:.0f} MiB read from the sources"
    )
    for t in threads:
        t.join(600)
        assert not t.is_alive()
    done.set()
    reading.join(120)
    for u in uploads:
        print(f"  {u.key}: {'ok' if u.ok else 'FAILED'} in {u.seconds:.2f}s {u.error[:200]}")
    print(f"  GETs meanwhile: {len(reads)}, of which good: {reads.count('ok')}")
    assert reads and all(r == "ok" for r in reads), [r for r in reads if r != "ok"][:5]
    return uploads


def _check_outcome(kc: Cluster, s3: Any, upload: Upload) -> None:
    """Succeeded and byte-identical, or failed cleanly with nothing visible."""
    if upload.ok:
        digest, size = timed(f"GET {upload.key}", object_sha256, s3, BUCKET, upload.key)
        assert (digest, size) == (upload.source.sha256.hexdigest(), BIG), upload.key
        return
    assert upload.clean_failure, upload.error
    assert is_missing(s3, BUCKET, upload.key), upload.key
    # boto3 aborts a failed multipart upload itself; if it could not, abort it as a
    # client would. Either way none is left open.
    leftover = open_uploads(s3, BUCKET, upload.key)
    for upload_id in leftover:
        print(f"  {upload.key}: upload {upload_id} left open by the client; aborting it")
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload.key, UploadId=upload_id)
    assert open_uploads(s3, BUCKET, upload.key) == []
    assert kc.sql("SELECT 1 FROM objects WHERE bucket = $1 AND key = $2", BUCKET, upload.key) == []


def _check_degraded_placement(kc: Cluster, key: str, dead: str) -> None:
    """Every blob of the object has at least five chunks stored; the one the dead node
    did not take is recorded missing (no size), waiting for repair."""
    rows = kc.sql(
        "SELECT c.blob_id, c.node_id, c.size FROM objects o "
        "JOIN chunks c ON c.blob_id = ANY(o.part_blobs) WHERE o.bucket = $1 AND o.key = $2",
        BUCKET,
        key,
    )
    blobs: dict[Any, list[tuple[str, int | None]]] = {}
    for r in rows:
        blobs.setdefault(r["blob_id"], []).append((r["node_id"], r["size"]))
    assert blobs, key
    for chunks in blobs.values():
        assert len(chunks) == 6
        missing = [node for node, size in chunks if size is None]
        assert missing in ([], [dead]), (key, chunks)
    lost = sum(size is None for chunks in blobs.values() for _, size in chunks)
    print(f"  {key}: {len(blobs)} blob(s), {lost} chunk(s) recorded missing on {dead}")


def test_nodes_killed_during_200_mib_uploads(kc: Cluster) -> None:
    s3 = client(kc)
    s3.create_bucket(Bucket=BUCKET)
    # Objects stored before any node dies: small, multi-segment and multipart.
    before: dict[str, tuple[str, int]] = {}
    for n, size in enumerate([0, 1, 1000, 5 * MiB + 3, 40 * MiB + 1]):
        source = PatternReader(size, 1000 + n)
        key = f"before-{size}"
        if size > 16 * MiB:
            s3.upload_fileobj(source, BUCKET, key, Config=TRANSFER)
        else:
            s3.put_object(Bucket=BUCKET, Key=key, Body=source.read())
        before[key] = (source.sha256.hexdigest(), size)

    victims = ["node2", "node5"]
    old_pids = {node: kc.pid(node) for node in victims}
    stored = dict(before)
    with supervisor_paused(kc):
        # One node dies mid-upload: the quorum (five chunks) still holds, so every
        # upload commits and reads back identical.
        first = _uploads_with_a_kill(kc, s3, "one-dead", 1, victims[0], 0.3, before)
        for upload in first:
            _check_outcome(kc, s3, upload)
            assert upload.ok, f"{upload.key} failed with one node dead: {upload.error}"
            stored[upload.key] = (upload.source.sha256.hexdigest(), BIG)
            _check_degraded_placement(kc, upload.key, victims[0])
        # A second node dies mid-upload: the writes in flight fall below the quorum.
        second = _uploads_with_a_kill(kc, s3, "two-dead", 11, victims[1], 0.3, before)
        for upload in second:
            _check_outcome(kc, s3, upload)
            if upload.ok:
                stored[upload.key] = (upload.source.sha256.hexdigest(), BIG)
        print(f"with two nodes dead: {sum(u.ok for u in second)} of 3 uploads succeeded")
        # New writes are refused at once, and nothing becomes visible.
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=BUCKET, Key="refused", Body=b"x" * MiB)
        assert refused.value.response["Error"]["Code"] == "SlowDown"
        assert is_missing(s3, BUCKET, "refused")
        # Everything stored before (and during) the kills reads back identical.
        for key, expected in stored.items():
            assert timed(f"GET {key} (two dead)", object_sha256, s3, BUCKET, key) == (expected), key
    # The supervisor runs again: it restarts the dead nodes on their ports.
    start = time.monotonic()
    assert wait_for(lambda: all_healthy(kc), timeout=120, interval=0.5)
    print(f"nodes back and breakers closed after {time.monotonic() - start:.1f}s")
    assert all(kc.pid(node) != pid for node, pid in old_pids.items())
    # The janitor rebuilds the chunks the dead nodes missed and collects the failed writes.
    wait_settled(kc, timeout=300)
    for key, expected in stored.items():
        assert timed(f"GET {key} (healed)", object_sha256, s3, BUCKET, key) == expected, key
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert listed == set(stored)
