"""`s3compat rebalance`: move the chunks whose placement changed, and only those.

For each committed blob the ring names six active nodes. Chunks already on one of them
stay where they are, whatever their index: when a node joins, a blob whose six now include
it moves exactly one chunk (from the node that dropped out of its six), so about 1/N of all
chunks move. A draining node is not active, so every chunk on it moves.

Each move is copy, then metadata, then delete: the chunk is streamed from its node to the
new one and verified against the checksum recorded when it was written; one conditional
UPDATE points the chunk row at the new node (only if nothing moved it meanwhile and the
blob is still committed); only then is the old copy deleted. Readers holding the old
placement still find the old copy until that delete, and a read that misses it is rebuilt
from parity. Every move is recorded before its copy starts (chunk_moves), so an interrupted
rebalance orphans nothing: the next run first deletes whichever copy of each unfinished
move the chunk row does not name, then carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from s3compat.core.layout import CHUNKS_PER_BLOB, chunk_id
from s3compat.core.models import BlobPlacement
from s3compat.core.ports import ChunkWriter, MetadataStore, NodeDirectory, NodeError

log = logging.getLogger(__name__)

PAGE = 200


@dataclass
class RebalanceReport:
    blobs: int = 0  # committed blobs when the run started
    checked: int = 0
    chunks: int = 0
    moved: int = 0
    failed: int = 0
    skipped: int = 0  # chunks awaiting repair: the repairer places them
    bytes_moved: int = 0
    resumed: int = 0  # moves an interrupted run left, settled first


Progress = Callable[[RebalanceReport], None]


def planned_moves(placement: BlobPlacement, desired: list[str]) -> list[tuple[int, str, str]]:
    """(chunk index, from node, to node) for the chunks not on one of `desired`."""
    current = set(placement.nodes.values())
    leaving = [i for i, node in sorted(placement.nodes.items()) if node not in desired]
    arriving = [node for node in desired if node not in current]
    return [(i, placement.nodes[i], target) for i, target in zip(leaving, arriving, strict=False)]


class Rebalancer:
    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        *,
        progress: Progress | None = None,
        concurrency: int = 4,
    ) -> None:
        self.meta = meta
        self.nodes = nodes
        self.progress = progress
        self.concurrency = concurrency

    async def finish_interrupted(self) -> int:
        """Settle the moves an interrupted run left (see chunk_moves in schema.sql):
        delete whichever copy the chunk row does not name. Returns how many."""
        settled = 0
        for move in await self.meta.pending_moves():
            cid = chunk_id(move.blob_id.hex, move.index)
            stale = [n for n in (move.source, move.target) if n != move.current]
            try:
                for node in stale:
                    await self.nodes.client(node).delete_chunk(cid)
            except NodeError as exc:
                log.warning("interrupted move of %s not settled yet: %s", cid, exc)
                continue
            await self.meta.end_move(move.blob_id, move.index)
            settled += 1
        return settled

    async def run(self) -> RebalanceReport:
        report = RebalanceReport(blobs=await self.meta.count_committed_blobs())
        report.resumed = await self.finish_interrupted()
        after = uuid.UUID(int=0)
        limit = asyncio.Semaphore(self.concurrency)
        while True:
            page = await self.meta.blob_placements(after, PAGE)
            if not page:
                break
            await asyncio.gather(*(self._blob(p, report, limit) for p in page))
            after = page[-1].blob_id
        return report

    async def _blob(
        self, placement: BlobPlacement, report: RebalanceReport, limit: asyncio.Semaphore
    ) -> None:
        async with limit:
            report.chunks += len(placement.nodes)
            desired = self.nodes.ring_placement(placement.blob_id.hex, CHUNKS_PER_BLOB)
            for index, source, target in planned_moves(placement, desired):
                checksum = placement.checksums.get(index)
                if checksum is None:
                    report.skipped += 1
                    continue
                try:
                    moved = await self._move(placement.blob_id, index, source, target, checksum)
                except NodeError as exc:
                    report.failed += 1
                    log.warning(
                        "blob %s chunk %d not moved %s -> %s: %s",
                        placement.blob_id.hex,
                        index,
                        source,
                        target,
                        exc,
                    )
                    continue
                if moved:
                    report.moved += 1
                    report.bytes_moved += moved
            report.checked += 1
            if self.progress is not None:
                self.progress(report)

    async def _move(
        self, blob_id: uuid.UUID, index: int, source: str, target: str, checksum: bytes
    ) -> int:
        """Copy, verify, switch the row, delete the old copy; returns the bytes moved (0 if
        the chunk moved or went away meanwhile)."""
        cid = chunk_id(blob_id.hex, index)
        await self.meta.begin_move(blob_id, index, source, target)
        writer: ChunkWriter = await self.nodes.client(target).open_chunk_writer(cid)
        digest = xxhash.xxh3_128()
        size = 0
        try:
            async for piece in self.nodes.client(source).stream_chunk(cid):
                digest.update(piece)
                size += len(piece)
                await writer.write(piece)
            if digest.digest() != checksum:
                raise NodeError(source, f"chunk {cid} does not match its recorded checksum")
            stored = await writer.finish()
        except BaseException:
            with contextlib.suppress(Exception):
                await writer.abort()
            raise
        if stored.checksum != checksum:
            raise NodeError(target, f"chunk {cid} stored with another checksum")
        if not await self.meta.move_chunk(blob_id, index, source, target):
            # Moved by someone else, or the blob is gone: drop our copy, never theirs.
            await self.nodes.client(target).delete_chunk(cid)
            await self.meta.end_move(blob_id, index)
            return 0
        try:
            await self.nodes.client(source).delete_chunk(cid)
        except NodeError as exc:  # the move stays recorded: the next run deletes it
            log.warning("moved %s off %s; the old copy is deleted next run: %s", cid, source, exc)
            return size
        await self.meta.end_move(blob_id, index)
        return size
