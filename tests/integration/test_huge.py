"""Objects at S3's size limits.

A 5 GiB + 1 MiB object goes up with boto3's managed multipart upload from a generated
stream (never materialised, in memory or on disk) and comes back into a hashing sink, while
the gateway's memory is watched. A single PutObject above 5 GiB is refused from its
Content-Length alone, as is an UploadPart above 5 GiB.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from lxml import etree

from tests.cluster import Cluster, RssSampler

MiB = 1 << 20
GiB = 1 << 30
HUGE = 5 * GiB + MiB
PART = 64 * MiB


class GeneratedStream:
    """A read-only, non-seekable file of `size` deterministic pseudo-random bytes.

    Block i (1 MiB) is a slice of a 2 MiB random pool at an offset drawn from the seed,
    stamped with i, so no two blocks are alike and a shifted or misplaced fragment shows up
    in the hash. The SHA-256 of everything handed out is kept in `sha256`.
    """

    def __init__(self, size: int, seed: int, block: int = MiB) -> None:
        self.size = size
        self.block = block
        rng = random.Random(seed)
        self._pool = rng.randbytes(2 * block)
        self._offsets = random.Random(seed + 1)
        self._pos = 0
        self._current = b""
        self._current_at = 0  # position of the next unread byte within _current
        self.sha256 = hashlib.sha256()

    def _next_block(self, index: int) -> bytes:
        at = self._offsets.randrange(self.block)
        return index.to_bytes(8, "big") + self._pool[at + 8 : at + self.block]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self._pos
        n = min(n, self.size - self._pos)
        pieces = []
        while n > 0:
            if self._current_at >= len(self._current):
                self._current = self._next_block(self._pos // self.block)
                self._current_at = 0
            take = min(n, len(self._current) - self._current_at)
            pieces.append(self._current[self._current_at : self._current_at + take])
            self._current_at += take
            self._pos += take
            n -= take
        out = b"".join(pieces)
        self.sha256.update(out)
        return out


class HashingSink:
    """A write-only, non-seekable file that keeps only the SHA-256 and length."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def test_generated_stream_is_deterministic() -> None:
    a, b = GeneratedStream(5 * MiB + 3, seed=1), GeneratedStream(5 * MiB + 3, seed=1)
    whole = a.read()
    pieces = []
    for n in (1, 7, MiB, MiB - 8, 3 * MiB, 100):
        pieces.append(b.read(n))
    assert len(whole) == 5 * MiB + 3
    assert b"".join(pieces) == whole
    assert a.read(10) == b"" and b.read() == b""
    assert a.sha256.digest() == b.sha256.digest() == hashlib.sha256(whole).digest()
    blocks = {whole[i : i + MiB] for i in range(0, 5 * MiB, MiB)}
    assert len(blocks) == 5


@pytest.mark.slow
def test_object_over_5_gib_streams_through_in_flat_memory(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    # Three parts or ranges in flight at once. Measured on the 2-core machine: upload growth
    # 64-82 MiB; overall growth (the download's ranged GETs, ~20-35 MiB of gateway memory per
    # stream, on top of what the upload left allocated) 114-138 MiB with three or four threads.
    config = TransferConfig(
        multipart_threshold=PART,
        multipart_chunksize=PART,
        max_concurrency=3,
        use_threads=True,
    )
    source = GeneratedStream(HUGE, seed=5)
    sink = HashingSink()
    with RssSampler(cluster.pid("gateway"), interval=0.1) as rss:
        baseline = rss.samples[0]
        start = time.monotonic()
        s3.upload_fileobj(source, bucket, "huge.bin", Config=config)
        up = time.monotonic() - start
        up_peak = rss.peak

        head = s3.head_object(Bucket=bucket, Key="huge.bin")
        assert head["ContentLength"] == HUGE
        assert head["ETag"].endswith(f'-{-(-HUGE // PART)}"'), head["ETag"]

        start = time.monotonic()
        s3.download_fileobj(bucket, "huge.bin", sink, Config=config)
        down = time.monotonic() - start
    growth = rss.peak - baseline
    print(
        f"\n5 GiB + 1 MiB: upload {up:.1f} s ({HUGE / MiB / up:.0f} MiB/s), "
        f"download {down:.1f} s ({HUGE / MiB / down:.0f} MiB/s); gateway RSS baseline "
        f"{baseline / MiB:.1f} MiB, peak during upload {up_peak / MiB:.1f} MiB, overall peak "
        f"{rss.peak / MiB:.1f} MiB, growth {growth / MiB:.1f} MiB"
    )
    assert sink.size == HUGE
    assert sink.sha256.hexdigest() == source.sha256.hexdigest()
    assert growth < 150 * MiB
    s3.delete_object(Bucket=bucket, Key="huge.bin")


def _error_code(body: bytes) -> str:
    root = etree.fromstring(body)
    assert root.tag == "Error", body
    return str(root.findtext("Code"))


def test_put_over_5_gib_is_refused_from_its_content_length(cluster: Cluster, bucket: str) -> None:
    status, _, body = cluster.raw(
        "PUT",
        f"/{bucket}/too-big",
        headers={"Content-Length": str(5 * GiB + 1), "Expect": "100-continue"},
        payload_hash="UNSIGNED-PAYLOAD",
        send_body=False,
    )
    assert (status, _error_code(body)) == (400, "EntityTooLarge")
    status, _, _ = cluster.raw("HEAD", f"/{bucket}/too-big")
    assert status == 404


def test_part_over_5_gib_is_refused_from_its_content_length(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    try:
        status, _, body = cluster.raw(
            "PUT",
            f"/{bucket}/k?partNumber=1&uploadId={uid}",
            headers={"Content-Length": str(5 * GiB + 1), "Expect": "100-continue"},
            payload_hash="UNSIGNED-PAYLOAD",
            send_body=False,
        )
        assert (status, _error_code(body)) == (400, "EntityTooLarge")
        assert "Parts" not in s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
