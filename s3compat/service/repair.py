"""Repair: rebuild chunks that are missing or corrupt from the other chunks of their blob.

A chunk of a committed blob without a size is waiting for repair: a write that committed
with its quorum but lost a node records its missing chunk that way, and readers and
`s3compat scrub` mark chunks they find missing or corrupt the same way. The repairer reads
k good fragments of every segment, reconstructs the lost ones (byte-identical to the
originals, so the digests recorded at write time verify them), streams them to the
chunk's node, and records the chunk again. Repair is idempotent: two gateways repairing the
same chunk write the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

import xxhash

from s3compat import metrics
from s3compat.core.layout import FRAGMENT_SUM_SIZE, chunk_id
from s3compat.core.models import Blob
from s3compat.core.ports import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkWriter,
    MetadataStore,
    NodeDirectory,
    NodeError,
)
from s3compat.service.blob_reader import BlobReader
from s3compat.service.erasure import ErasureCoder, NotEnoughFragments

log = logging.getLogger(__name__)


@dataclass
class RepairStats:
    repaired: int = 0
    failed: int = 0


def needs_repair(exc: NodeError) -> bool:
    """A failure that means the stored chunk is bad (not merely an unreachable node)."""
    return isinstance(exc, ChunkNotFound | ChunkCorrupt)


class Repairer:
    def __init__(self, meta: MetadataStore, nodes: NodeDirectory) -> None:
        self.meta = meta
        self.nodes = nodes

    def report(self, blob: Blob, index: int, exc: NodeError) -> None:
        """A BlobReader failure report: mark a bad chunk for repair (in the background)."""
        log.warning("blob %s chunk %d unusable: %s", blob.blob_id.hex, index, exc)
        placement = blob.chunks[index]
        if placement.present and needs_repair(exc):
            task = asyncio.ensure_future(
                self.meta.mark_chunk_missing(blob.blob_id, index, placement.node_id)
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def run_once(self, limit: int = 32) -> RepairStats:
        stats = RepairStats()
        for blob_id, indices in await self.meta.chunks_to_repair(limit):
            try:
                done = await self.repair_blob(blob_id, indices)
                stats.repaired += done
                metrics.REPAIRS.inc(done)
            except (NodeError, NotEnoughFragments) as exc:
                stats.failed += len(indices)
                metrics.REPAIR_FAILURES.inc(len(indices))
                log.warning("repair of blob %s chunks %s failed: %s", blob_id.hex, indices, exc)
        return stats

    async def repair_blob(self, blob_id: uuid.UUID, indices: list[int]) -> int:
        """Rebuild chunks `indices` of a blob onto their nodes; returns how many."""
        blob = await self.meta.get_blob(blob_id)
        if blob is None or blob.inline is not None:
            return 0  # deleted meanwhile (an inline blob has no chunk to repair)
        reader = BlobReader(self.nodes, blob)
        done = 0
        lost = []
        for index in indices:
            if await self._still_good(reader, blob, index):
                done += 1
            else:
                lost.append(index)
        if lost and blob.codec.m:
            done += await self._rebuild(reader, blob, lost)
        return done

    async def _still_good(self, reader: BlobReader, blob: Blob, index: int) -> bool:
        """A chunk marked missing may be back (a node restarted, a disk restored): if every
        fragment verifies against the digests recorded at write time, record it again."""
        digest = xxhash.xxh3_128()
        try:
            for segment in range(blob.layout.segment_count):
                digest.update(await reader.fetch(segment, index))
        except NodeError:
            return False
        node_id = blob.chunks[index].node_id
        size = blob.layout.chunk_size
        if await self.meta.chunk_repaired(blob.blob_id, index, node_id, size, digest.digest()):
            log.info("blob %s chunk %d on %s verified intact", blob.blob_id.hex, index, node_id)
            return True
        return False

    async def _rebuild(self, reader: BlobReader, blob: Blob, indices: list[int]) -> int:
        blob_id = blob.blob_id
        coder = ErasureCoder(blob.codec)
        layout = blob.layout
        hexid = blob_id.hex
        writers: dict[int, ChunkWriter] = {}
        try:
            for index in indices:
                node = self.nodes.client(blob.chunks[index].node_id)
                writers[index] = await node.open_chunk_writer(chunk_id(hexid, index))
            sources = [i for i in range(blob.codec.width) if i not in indices]
            for segment in range(layout.segment_count):
                good = await reader.gather(segment, sources[: blob.codec.k], exclude=indices)
                rebuilt = coder.reconstruct(
                    {i: good[i] for i in list(good)[: blob.codec.k]}, indices
                )
                pos = segment * FRAGMENT_SUM_SIZE
                for index, fragment in rebuilt.items():
                    expected = blob.chunks[index].frag_sums[pos : pos + FRAGMENT_SUM_SIZE]
                    if xxhash.xxh3_64_digest(fragment) != expected:
                        raise NotEnoughFragments(f"rebuilt fragment {index} does not verify")
                await asyncio.gather(*(writers[i].write(f) for i, f in rebuilt.items()))
            stored = {i: await w.finish() for i, w in writers.items()}
        except BaseException:
            for w in writers.values():
                with contextlib.suppress(Exception):
                    await w.abort()
            raise
        done = 0
        for index, result in stored.items():
            node_id = blob.chunks[index].node_id
            if await self.meta.chunk_repaired(
                blob_id, index, node_id, result.size, result.checksum
            ):
                done += 1
                log.info("repaired blob %s chunk %d on %s", hexid, index, node_id)
            else:  # the blob was deleted meanwhile: do not leave the file behind
                with contextlib.suppress(NodeError):
                    await self.nodes.client(node_id).delete_chunk(chunk_id(hexid, index))
        return done
