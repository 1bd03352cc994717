"""Reading byte ranges of a committed blob, degraded when nodes fail.

Per segment, the healthy path fetches only the data fragments the range touches; the code
is systematic, so their payloads are the bytes. Every fragment is verified against the
xxh3 digest recorded at write time. A fragment that errors, misses its deadline, or fails
its checksum is skipped and reported, and the segment is rebuilt from any k good fragments
(parity included). A fetch still pending after the hedge delay makes the reader ask one
more node, so a slow node does not set the latency.

A segment that cannot be rebuilt raises ServiceUnavailable: before the response starts
that is a 503, afterwards the gateway aborts the connection. Wrong or missing bytes are
never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection

import xxhash

from s3compat import metrics
from s3compat.core import errors
from s3compat.core.layout import FRAGMENT_SUM_SIZE, FragmentRead, chunk_id
from s3compat.core.models import Blob
from s3compat.core.ports import ChunkCorrupt, NodeDirectory, NodeError
from s3compat.service.erasure import ErasureCoder, NotEnoughFragments

log = logging.getLogger(__name__)

HEDGE_SECONDS = 0.5

# Called with (blob, chunk index, the failure) whenever a fragment could not be used.
FailureReport = Callable[[Blob, int, NodeError], None]


def _log_failure(blob: Blob, index: int, exc: NodeError) -> None:
    log.warning("blob %s chunk %d unusable: %s", blob.blob_id.hex, index, exc)


class BlobReader:
    """Reads byte ranges of a committed blob, verifying every fragment it fetches."""

    def __init__(
        self,
        nodes: NodeDirectory,
        blob: Blob,
        *,
        hedge: float = HEDGE_SECONDS,
        report: FailureReport = _log_failure,
    ) -> None:
        self.nodes = nodes
        self.blob = blob
        self.hexid = blob.blob_id.hex
        self.hedge = hedge
        self.report = report
        self.coder = ErasureCoder(blob.codec)
        # Chunks that failed once in this read: later segments go around them at once
        # (no round trip each), and each is reported once.
        self.bad: set[int] = set()

    def _usable(self, index: int) -> bool:
        return self.blob.chunks[index].present and index not in self.bad

    async def fetch(self, segment: int, index: int) -> bytes:
        """Stored fragment `index` of `segment`, verified; NodeError if unusable."""
        placement = self.blob.chunks[index]
        layout = self.blob.layout
        length = layout.fragment_len(segment)
        client = self.nodes.client(placement.node_id)
        data = await client.read_chunk(
            chunk_id(self.hexid, index), layout.chunk_offset(segment), length
        )
        pos = segment * FRAGMENT_SUM_SIZE
        expected = placement.frag_sums[pos : pos + FRAGMENT_SUM_SIZE]
        if len(data) != length or xxhash.xxh3_64_digest(data) != expected:
            raise ChunkCorrupt(placement.node_id, f"segment {segment} failed its checksum")
        return data

    async def gather(
        self, segment: int, wanted: list[int], *, exclude: Collection[int] = ()
    ) -> dict[int, bytes]:
        """Good stored fragments of `segment`: all of `wanted`, or (with parity) any k.

        Starts with `wanted`; a failure, or a fetch slower than the hedge delay, brings in
        other fragments (data first, then parity), never those in `exclude`. Raises
        NotEnoughFragments when neither can be had.
        """
        codec = self.blob.codec
        # Chunks marked for repair come last: they are tried (and verified) only when the
        # others cannot do, since a chunk marked missing may be back on its node.
        spares = sorted(
            (i for i in range(codec.width) if i not in wanted and i not in exclude),
            key=lambda i: not self._usable(i),
        )
        good: dict[int, bytes] = {}
        failed: set[int] = set()
        running: dict[asyncio.Task[bytes], int] = {}

        def start(index: int) -> None:
            running[asyncio.create_task(self.fetch(segment, index))] = index

        def start_spare() -> bool:
            if not spares:
                return False
            start(spares.pop(0))
            return True

        for index in wanted:
            if self._usable(index) or not codec.m:
                start(index)
            else:  # known to be missing: rebuild at once, and try it only as a last resort
                failed.add(index)
                spares.append(index)
        try:
            while True:
                if all(i in good for i in wanted):
                    return good
                if codec.m and len(good) >= codec.k:
                    return good
                if failed and not codec.m:
                    raise NotEnoughFragments("the plain split has no parity to rebuild from")
                # Enough fetches to reach k good fragments even if a wanted one failed.
                while failed and len(good) + len(running) < codec.k and start_spare():
                    pass
                if not running:
                    raise NotEnoughFragments(f"{len(good)} good of {codec.k} needed")
                done, _ = await asyncio.wait(
                    running, timeout=self.hedge, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    # Hedge: whatever is running is slow. Ask enough other nodes to rebuild
                    # the segment without any of them (at least one more).
                    hedged = 0
                    while codec.m and (hedged == 0 or len(good) + hedged < codec.k):
                        if not start_spare():
                            break
                        hedged += 1
                    metrics.HEDGED_READS.inc(hedged)
                    continue
                for task in done:
                    index = running.pop(task)
                    try:
                        good[index] = task.result()
                    except NodeError as exc:
                        failed.add(index)
                        metrics.FRAGMENT_FAILURES.labels(self.blob.chunks[index].node_id).inc()
                        if index not in self.bad:
                            self.bad.add(index)
                            self.report(self.blob, index, exc)
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(BaseException):
                    await task

    async def _segment(self, reads: list[FragmentRead]) -> list[bytes]:
        wanted = [r.index for r in reads]
        try:
            good = await self.gather(reads[0].segment, wanted)
        except NotEnoughFragments as exc:
            log.error("blob %s segment %d unreadable: %s", self.hexid, reads[0].segment, exc)
            raise errors.ServiceUnavailable("A storage node is unavailable.") from exc
        if all(i in good for i in wanted):
            return [good[r.index][r.start : r.stop] for r in reads]
        metrics.DEGRADED_READS.inc()
        return self._rebuilt(reads, good)

    def _rebuilt(self, reads: list[FragmentRead], good: dict[int, bytes]) -> list[bytes]:
        """The wanted bytes from the decoded segment (at least k good fragments)."""
        segment = reads[0].segment
        layout = self.blob.layout
        data = self.coder.decode(good, layout.segment_len(segment))
        payload = layout.payload_len(segment)
        header = self.blob.codec.header_size
        return [
            data[r.index * payload + r.start - header : r.index * payload + r.stop - header]
            for r in reads
        ]

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
