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

import xxhash

from s3compat.core import checksums, errors
from s3compat.core.layout import (
    CHUNKS_PER_BLOB,
    FRAGMENT_SUM_SIZE,
    BlobLayout,
    Codec,
    FragmentRead,
    chunk_id,
    split_segment,
)
from s3compat.core.models import Blob, CommittedChunk
from s3compat.core.ports import ChunkWriter, MetadataStore, NodeDirectory, NodeError

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


class BlobWriter:
    """Writes one blob. Use `write_blob` rather than this class directly."""

    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        codec: Codec,
        checks: BodyChecks,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.meta = meta
        self.heartbeat = heartbeat
        self.nodes = nodes
        self.codec = codec
        self.blob_id = uuid.uuid4()
        self.placement: list[str] = []
        self.writers: list[ChunkWriter] = []
        self.frag_sums: list[list[bytes]] = [[] for _ in range(codec.width)]
        self.checks = checks
        self.digests = _Digests(checks.sha256_hex is not None, checks.checksum_algorithm)
        self.size = 0

    async def _store_segment(self, segment: bytes | bytearray) -> None:
        await asyncio.to_thread(self.digests.update, segment)
        fragments = split_segment(self.codec, segment)
        for i, frag in enumerate(fragments):
            self.frag_sums[i].append(xxhash.xxh3_64_digest(frag))
        await asyncio.gather(*(w.write(f) for w, f in zip(self.writers, fragments, strict=True)))

    async def run(self, body: AsyncIterator[bytes]) -> WrittenBlob:
        """Store the body, verify it against the client's claims, and return the blob.

        On any failure the blob is aborted before the exception propagates.
        """
        max_size = self.checks.max_size
        hexid = self.blob_id.hex
        self.placement = self.nodes.placement(hexid, CHUNKS_PER_BLOB)
        await self.meta.begin_blob(self.blob_id, self.codec, self.placement)
        heartbeat = asyncio.create_task(self._heartbeat())
        # One segment is sent while the next one is received: two in memory at most.
        in_flight: asyncio.Task[None] | None = None
        try:
            self.writers = list(
                await asyncio.gather(
                    *(
                        self.nodes.client(node).open_chunk_writer(chunk_id(hexid, i))
                        for i, node in enumerate(self.placement)
                    )
                )
            )
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
            stored = await asyncio.gather(*(w.finish() for w in self.writers))
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
        for i, result in enumerate(stored):
            if result.size != expected:
                await self._abort()
                raise errors.InternalError(f"chunk {i} stored {result.size} bytes, not {expected}")
            chunks.append(
                CommittedChunk(i, result.size, result.checksum, b"".join(self.frag_sums[i]))
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
) -> tuple[BlobWriter, WrittenBlob]:
    writer = BlobWriter(meta, nodes, codec, checks, heartbeat=heartbeat)
    return writer, await writer.run(body)


class BlobReader:
    """Reads byte ranges of a committed blob, verifying every fragment it fetches."""

    def __init__(self, nodes: NodeDirectory, blob: Blob) -> None:
        self.nodes = nodes
        self.blob = blob
        self.hexid = blob.blob_id.hex

    async def _fragment(self, read: FragmentRead) -> bytes:
        placement = self.blob.chunks[read.index]
        client = self.nodes.client(placement.node_id)
        data = await client.read_chunk(
            chunk_id(self.hexid, read.index), read.chunk_offset, read.fragment_len
        )
        pos = read.segment * FRAGMENT_SUM_SIZE
        expected = placement.frag_sums[pos : pos + FRAGMENT_SUM_SIZE]
        if len(data) != read.fragment_len or xxhash.xxh3_64_digest(data) != expected:
            raise NodeError(placement.node_id, f"fragment {read} failed its checksum")
        return data[read.start : read.stop]

    async def _segment(self, reads: list[FragmentRead]) -> list[bytes]:
        try:
            pieces = await asyncio.gather(*(self._fragment(r) for r in reads))
        except NodeError as exc:
            # The plain split has no parity to rebuild from: the data cannot be served.
            log.error("blob %s unreadable: %s", self.hexid, exc)
            raise errors.ServiceUnavailable("A storage node is unavailable.") from exc
        return pieces

    async def stream(self, first: int, last: int) -> AsyncIterator[bytes]:
        """Yield bytes first..last, keeping the next segment's read in flight (read-ahead)."""
        plan = self.blob.layout.reads_for_range(first, last)
        reads = next(plan, None)
        if reads is None:
            return
        current = asyncio.create_task(self._segment(reads))
        try:
            for reads in plan:
                upcoming = asyncio.create_task(self._segment(reads))
                try:
                    for piece in await current:
                        yield piece
                finally:
                    current = upcoming
            for piece in await current:
                yield piece
        finally:
            if not current.done():
                current.cancel()


async def store_blob(
    meta: MetadataStore,
    nodes: NodeDirectory,
    codec: Codec,
    body: AsyncIterator[bytes],
    checks: BodyChecks,
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> tuple[BlobWriter, WrittenBlob]:
    """write_blob, with node failures reported to the client as 503 ServiceUnavailable."""
    try:
        return await write_blob(meta, nodes, codec, body, checks, heartbeat=heartbeat)
    except NodeError as exc:
        log.error("storage node failure while writing: %s", exc)
        raise errors.ServiceUnavailable("A storage node is unavailable.") from exc
