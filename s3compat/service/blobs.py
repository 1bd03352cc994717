"""Streaming a blob to its six nodes, and back.

The write path follows the intent-first order of ARCHITECTURE.md: the blob and chunk rows
exist before the first byte leaves, the body is cut into segments as it arrives, every
segment's fragments go to the six nodes concurrently (gRPC flow control is the
backpressure), and only a fully stored blob is handed back for the commit. Any failure or
disconnect marks the blob aborted so the janitor collects whatever reached the nodes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import xxhash

from s3compat import metrics
from s3compat.core import checksums, errors
from s3compat.core.layout import BlobLayout, Codec, chunk_id
from s3compat.core.models import CommittedChunk
from s3compat.core.ports import ChunkWriter, MetadataStore, NodeDirectory, NodeError, StoredChunk
from s3compat.service.erasure import ErasureCoder

log = logging.getLogger(__name__)

# The default interval between heartbeats on a blob being written. app.py passes one derived
# from S3COMPAT_STALE_WRITE_AFTER (Settings.heartbeat_interval), so that the janitor never
# mistakes a live write for one whose gateway died.
HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class BodyChecks:
    """What the client declared about the body, verified once every byte has arrived."""

    content_length: int | None = None
    content_md5: bytes | None = None  # decoded Content-MD5
    sha256_hex: str | None = None  # a hex x-amz-content-sha256
    max_size: int | None = None
    # A flexible checksum (x-amz-checksum-*) to compute, stored with the object. Its
    # expected value comes from a header (`checksum_value`) or, for aws-chunked bodies, from
    # the trailer, which is only known once the body ended (`late_checksum`).
    checksum_algorithm: str | None = None
    checksum_value: bytes | None = None
    late_checksum: Callable[[], bytes | None] | None = None

    def verify_checksum(self, computed: bytes | None) -> None:
        if self.checksum_algorithm is None or computed is None:
            return
        expected = self.checksum_value
        if expected is None and self.late_checksum is not None:
            expected = self.late_checksum()
        if expected is not None and expected != computed:
            raise errors.BadDigest(
                f"The {self.checksum_algorithm} you specified did not match the calculated "
                "checksum."
            )

    def verify(self, size: int, md5: bytes, sha256: bytes | None) -> None:
        if self.content_length is not None and size != self.content_length:
            raise errors.IncompleteBody()
        if self.content_md5 is not None and self.content_md5 != md5:
            raise errors.BadDigest(
                ExpectedDigest=base64.b64encode(self.content_md5).decode(),
                CalculatedDigest=base64.b64encode(md5).decode(),
            )
        if (
            self.sha256_hex is not None
            and sha256 is not None
            and sha256.hex() != self.sha256_hex.lower()
        ):
            raise errors.XAmzContentSHA256Mismatch(
                ClientComputedContentSHA256=self.sha256_hex,
                S3ComputedContentSHA256=sha256.hex(),
            )


@dataclass(frozen=True, slots=True)
class WrittenBlob:
    blob_id: uuid.UUID
    size: int
    md5: bytes
    sha256: bytes | None
    chunks: list[CommittedChunk]
    checksum: tuple[str, str] | None = None  # (algorithm, base64 value)


class _Digests:
    """MD5 (for the ETag) and, when the client signed a payload hash, SHA-256.

    Updated in a worker thread: hashlib releases the GIL on large buffers, so hashing one
    segment overlaps with receiving the next.
    """

    def __init__(self, want_sha256: bool, checksum_algorithm: str | None) -> None:
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256() if want_sha256 else None
        self.checksum = checksums.new(checksum_algorithm) if checksum_algorithm else None

    def update(self, data: bytes | bytearray) -> None:
        self.md5.update(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        if self.checksum is not None:
            self.checksum.update(data)


@dataclass(frozen=True, slots=True)
class InlineBody:
    """A small body read whole, verified, to be kept in its metadata row."""

    data: bytes
    md5: bytes
    checksum: tuple[str, str] | None = None  # (algorithm, base64 value)


async def read_inline(body: AsyncIterator[bytes], checks: BodyChecks) -> InlineBody:
    """Read a body whose declared length (`checks.content_length`, which the caller has
    checked is small) bounds the memory it may take, and verify it as a stored blob would be:
    length, Content-MD5, signed payload hash, flexible checksum."""
    declared = checks.content_length
    if declared is None:
        raise ValueError("an inline body needs a declared length")
    buf = bytearray()
    async for piece in body:
        buf += piece
        if len(buf) > declared:
            raise errors.IncompleteBody()
    digests = _Digests(checks.sha256_hex is not None, checks.checksum_algorithm)
    digests.update(buf)
    md5 = digests.md5.digest()
    checks.verify(len(buf), md5, digests.sha256.digest() if digests.sha256 is not None else None)
    extra = digests.checksum
    checks.verify_checksum(extra.digest() if extra is not None else None)
    return InlineBody(bytes(buf), md5, (extra.algorithm, extra.b64()) if extra else None)


def default_quorum(codec: Codec) -> int:
    """Chunks that must be stored for a write to commit: k + 1 with parity (one more than
    the minimum to read it back, so one further loss before repair loses nothing), every
    chunk without."""
    return min(codec.k + 1, codec.width) if codec.m else codec.width


class BlobWriter:
    """Writes one blob. Use `write_blob` rather than this class directly.

    A node that fails during the write loses only its chunk: the others carry on, and the
    blob commits if at least `quorum` chunks were stored. The missing ones are recorded
    without a size (queued for repair). Below the quorum the write fails with SlowDown.
    """

    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        codec: Codec,
        checks: BodyChecks,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        quorum: int | None = None,
    ) -> None:
        self.meta = meta
        self.heartbeat = heartbeat
        self.nodes = nodes
        self.codec = codec
        self.coder = ErasureCoder(codec)
        self.quorum = quorum if quorum is not None else default_quorum(codec)
        self.blob_id = uuid.uuid4()
        self.placement: list[str] = []
        self.writers: list[ChunkWriter | None] = []  # None: that chunk's node failed
        self.frag_sums: list[list[bytes]] = [[] for _ in range(codec.width)]
        self.checks = checks
        self.digests = _Digests(checks.sha256_hex is not None, checks.checksum_algorithm)
        self.size = 0

    def _encode(self, segment: bytes | bytearray) -> list[bytes | memoryview]:
        self.digests.update(segment)
        fragments = self.coder.encode(segment)
        for i, frag in enumerate(fragments):
            self.frag_sums[i].append(xxhash.xxh3_64_digest(frag))
        return fragments

    def _lost(self, index: int, exc: BaseException) -> None:
        """Chunk `index` failed: carry on without it if the quorum still holds."""
        writer = self.writers[index]
        self.writers[index] = None
        metrics.CHUNKS_LOST_ON_WRITE.inc()
        log.warning("blob %s: chunk %d lost during write: %s", self.blob_id.hex, index, exc)
        if writer is not None:
            task = asyncio.ensure_future(writer.abort())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        alive = sum(w is not None for w in self.writers)
        if alive < self.quorum:
            raise errors.SlowDown(
                f"Only {alive} storage nodes took the write; {self.quorum} are needed."
            ) from exc

    async def _each(self, calls: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """Await one call per live chunk; failures lose their chunk (see `_lost`)."""
        results = await asyncio.gather(*(c for _, c in calls), return_exceptions=True)
        out = []
        for (index, _), result in zip(calls, results, strict=True):
            if isinstance(result, NodeError):
                self._lost(index, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append((index, result))
        return out

    async def _store_segment(self, segment: bytes | bytearray) -> None:
        fragments = await asyncio.to_thread(self._encode, segment)
        await self._each(
            [(i, w.write(fragments[i])) for i, w in enumerate(self.writers) if w is not None]
        )

    async def run(self, body: AsyncIterator[bytes]) -> WrittenBlob:
        """Store the body, verify it against the client's claims, and return the blob.

        On any failure the blob is aborted before the exception propagates.
        """
        max_size = self.checks.max_size
        hexid = self.blob_id.hex
        self.placement = self.nodes.placement(hexid, self.codec.width)
        await self.meta.begin_blob(self.blob_id, self.codec, self.placement)
        heartbeat = asyncio.create_task(self._heartbeat())
        # One segment is sent while the next one is received: two in memory at most.
        in_flight: asyncio.Task[None] | None = None
        try:
            self.writers = [None] * len(self.placement)
            opened = await asyncio.gather(
                *(
                    self.nodes.client(node).open_chunk_writer(chunk_id(hexid, i))
                    for i, node in enumerate(self.placement)
                ),
                return_exceptions=True,
            )
            for i, result in enumerate(opened):
                if isinstance(result, BaseException):
                    if not isinstance(result, NodeError):
                        raise result
                else:
                    self.writers[i] = result
            for i, result in enumerate(opened):
                if isinstance(result, NodeError):
                    self._lost(i, result)
            seg_size = self.codec.segment_size
            buf = bytearray()
            async for piece in body:
                self.size += len(piece)
                if max_size is not None and self.size > max_size:
                    raise errors.EntityTooLarge(MaxSizeAllowed=str(max_size))
                buf += piece
                while len(buf) >= seg_size:
                    if len(buf) == seg_size:
                        segment, buf = buf, bytearray()
                    else:
                        segment = buf[:seg_size]
                        del buf[:seg_size]  # O(1) at the front of a CPython bytearray
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.create_task(self._store_segment(segment))
            if in_flight is not None:
                await in_flight
            if buf:
                await self._store_segment(buf)
            sha = self.digests.sha256.digest() if self.digests.sha256 is not None else None
            self.checks.verify(self.size, self.digests.md5.digest(), sha)
            extra = self.digests.checksum
            self.checks.verify_checksum(extra.digest() if extra is not None else None)
            stored: dict[int, StoredChunk] = dict(
                await self._each(
                    [(i, w.finish()) for i, w in enumerate(self.writers) if w is not None]
                )
            )
        except BaseException:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
                with contextlib.suppress(BaseException):
                    await in_flight
            await self._abort()
            raise
        finally:
            heartbeat.cancel()
        expected = BlobLayout(self.codec, self.size).chunk_size
        chunks = []
        for i in range(self.codec.width):
            done = stored.get(i)
            if done is not None and done.size != expected:
                await self._abort()
                raise errors.InternalError(f"chunk {i} stored {done.size} bytes, not {expected}")
            chunks.append(
                CommittedChunk(
                    i,
                    done.size if done is not None else None,
                    done.checksum if done is not None else None,
                    b"".join(self.frag_sums[i]),
                )
            )
        extra = self.digests.checksum
        return WrittenBlob(
            self.blob_id,
            self.size,
            self.digests.md5.digest(),
            sha,
            chunks,
            (extra.algorithm, extra.b64()) if extra is not None else None,
        )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.meta.heartbeat_blob(self.blob_id)
            except Exception:  # a missed heartbeat is retried at the next tick
                log.warning("heartbeat for blob %s failed", self.blob_id, exc_info=True)

    async def _abort(self) -> None:
        """Cancel the node streams and mark the blob aborted; shielded from cancellation."""

        async def cleanup() -> None:
            for w in self.writers:
                if w is None:
                    continue
                with contextlib.suppress(Exception):
                    await w.abort()
            try:
                await self.meta.abort_blob(self.blob_id)
            except Exception:
                # The heartbeat stops, so the janitor aborts it later anyway.
                log.warning("could not mark blob %s aborted", self.blob_id, exc_info=True)

        await asyncio.shield(cleanup())

    async def abort_committed_failure(self) -> None:
        """The blob was stored but its commit failed: let the janitor have it."""
        await self._abort()


async def write_blob(
    meta: MetadataStore,
    nodes: NodeDirectory,
    codec: Codec,
    body: AsyncIterator[bytes],
    checks: BodyChecks,
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
    quorum: int | None = None,
) -> tuple[BlobWriter, WrittenBlob]:
    writer = BlobWriter(meta, nodes, codec, checks, heartbeat=heartbeat, quorum=quorum)
    return writer, await writer.run(body)


async def store_blob(
    meta: MetadataStore,
    nodes: NodeDirectory,
    codec: Codec,
    body: AsyncIterator[bytes],
    checks: BodyChecks,
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
    quorum: int | None = None,
) -> tuple[BlobWriter, WrittenBlob]:
    """write_blob, with node failures reported to the client as 503 ServiceUnavailable."""
    try:
        return await write_blob(
            meta, nodes, codec, body, checks, heartbeat=heartbeat, quorum=quorum
        )
    except NodeError as exc:
        log.error("storage node failure while writing: %s", exc)
        raise errors.ServiceUnavailable("A storage node is unavailable.") from exc
