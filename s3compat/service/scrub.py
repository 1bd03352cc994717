"""`s3compat scrub`: check every stored chunk against its node, then repair what is bad.

Each chunk of a committed blob is read back whole from its node (which verifies its own
per-block checksums on the way) and its xxh3-128 compared with the digest recorded when it
was written. A chunk that is missing or whose bytes differ is marked for repair and then
rebuilt from the other chunks of its blob (see repair.py). Reading is rate-limited, so a
scrub can run beside live traffic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from s3compat.core.layout import chunk_id
from s3compat.core.models import ScrubItem
from s3compat.core.ports import (
    ChunkCorrupt,
    ChunkNotFound,
    MetadataStore,
    NodeDirectory,
    NodeError,
)
from s3compat.service.repair import Repairer

PAGE = 200


@dataclass
class ScrubReport:
    total: int = 0
    checked: int = 0
    missing: int = 0
    corrupt: int = 0
    unreachable: int = 0
    repaired: int = 0  # by this scrub (a gateway's janitor may repair some first)
    repair_failed: int = 0
    still_broken: int = 0  # chunks awaiting repair when the scrub ended
    bytes_read: int = 0


Progress = Callable[[ScrubReport], None]


class Scrubber:
    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        *,
        rate: float | None = None,  # bytes per second, None for no limit
        progress: Progress | None = None,
    ) -> None:
        self.meta = meta
        self.nodes = nodes
        self.rate = rate
        self.progress = progress
        self._started = 0.0

    async def _throttle(self, report: ScrubReport) -> None:
        if not self.rate:
            return
        ahead = report.bytes_read / self.rate - (time.monotonic() - self._started)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def _check(self, item: ScrubItem, report: ScrubReport) -> str:
        """'ok', 'missing', 'corrupt' or 'unreachable'."""
        client = self.nodes.client(item.node_id)
        digest = xxhash.xxh3_128()
        size = 0
        try:
            async for piece in client.stream_chunk(chunk_id(item.blob_id.hex, item.index)):
                digest.update(piece)
                size += len(piece)
                report.bytes_read += len(piece)
                await self._throttle(report)
        except ChunkNotFound:
            return "missing"
        except ChunkCorrupt:
            return "corrupt"
        except NodeError:
            return "unreachable"
        if size != item.size or digest.digest() != item.checksum:
            return "corrupt"
        return "ok"

    async def run(self) -> ScrubReport:
        report = ScrubReport(total=await self.meta.count_chunks_to_scrub())
        self._started = time.monotonic()
        after: tuple[uuid.UUID, int] = (uuid.UUID(int=0), -1)
        while True:
            page = await self.meta.chunks_to_scrub(after, PAGE)
            if not page:
                break
            for item in page:
                outcome = await self._check(item, report)
                report.checked += 1
                if outcome in ("missing", "corrupt"):
                    setattr(report, outcome, getattr(report, outcome) + 1)
                    await self.meta.mark_chunk_missing(item.blob_id, item.index, item.node_id)
                elif outcome == "unreachable":
                    report.unreachable += 1
                if self.progress is not None:
                    self.progress(report)
            after = (page[-1].blob_id, page[-1].index)
        repairer = Repairer(self.meta, self.nodes)
        while True:
            stats = await repairer.run_once()
            report.repaired += stats.repaired
            report.repair_failed += stats.failed
            if stats.repaired == 0:
                break
        pending = await self.meta.chunks_to_repair(10_000)
        report.still_broken = sum(len(indices) for _, indices in pending)
        return report
