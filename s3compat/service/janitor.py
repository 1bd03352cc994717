"""The janitor: aborts expired multipart uploads, and collects the chunks of aborted
writes and of blobs nothing references.

It runs in every gateway. PostgreSQL's `FOR UPDATE SKIP LOCKED` hands each blob to one
janitor at a time, so many gateways share the work without doing any of it twice. A chunk
row is forgotten only after its node confirmed the delete; a node that is down keeps its
rows, and the blob is retried later. Committed, referenced blobs are never touched: only
blobs in state 'aborted' or 'deleting' are claimed, and a blob reaches 'deleting' only in
the transaction that drops its last reference.

Expired uploads (older than their bucket's lifecycle TTL, or the cluster default) are
aborted through `abort_upload`, which locks the upload's row: when several janitors pick
the same upload, one aborts it and the others find it gone, so each upload is counted once.
Aborting only releases the parts' blobs; their chunks are collected like any other's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from s3compat import metrics
from s3compat.core.layout import chunk_id
from s3compat.core.ports import MetadataStore, NodeDirectory, NodeError
from s3compat.service.repair import Repairer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class JanitorReport:
    stale_writes_aborted: int = 0
    uploads_aborted: int = 0
    blobs_collected: int = 0
    chunks_deleted: int = 0
    chunks_deferred: int = 0
    chunks_repaired: int = 0
    repairs_failed: int = 0


class Janitor:
    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        *,
        stale_write_after: timedelta,
        retry_after: timedelta,
        upload_ttl: timedelta,
        batch: int = 100,
        repairer: Repairer | None = None,
    ) -> None:
        self.repairer = repairer
        self.meta = meta
        self.nodes = nodes
        self.stale_write_after = stale_write_after
        self.retry_after = retry_after
        self.upload_ttl = upload_ttl
        self.batch = batch

    async def _delete(self, blob_id: uuid.UUID, index: int, node_id: str) -> bool:
        try:
            await self.nodes.client(node_id).delete_chunk(chunk_id(blob_id.hex, index))
        except NodeError as exc:
            log.info("janitor: chunk %s-%d on %s kept for later: %s", blob_id, index, node_id, exc)
            return False
        return True

    async def _abort_expired_uploads(self) -> int:
        aborted = 0
        while True:
            expired = await self.meta.expired_uploads(self.upload_ttl, self.batch)
            done = 0
            for upload_id, bucket, key in expired:
                if await self.meta.abort_upload(upload_id, bucket, key):
                    log.info("janitor: aborted expired upload %s of %s/%s", upload_id, bucket, key)
                    done += 1
            aborted += done
            # A short page means nothing else is expired; a page where another janitor
            # beat us to every upload means it is working through them: leave it the rest.
            if len(expired) < self.batch or done == 0:
                return aborted

    async def run_once(self) -> JanitorReport:
        report = JanitorReport()
        # Uploads first: their released parts can then be collected in this same pass
        # (once the delete grace period has run out).
        report.uploads_aborted = await self._abort_expired_uploads()
        report.stale_writes_aborted = await self.meta.abort_stale_writes(self.stale_write_after)

        async def collect(
            blob_id: uuid.UUID, chunks: list[tuple[int, str]]
        ) -> tuple[list[int], bool]:
            done = await asyncio.gather(*(self._delete(blob_id, i, n) for i, n in chunks))
            deleted = [i for (i, _), ok in zip(chunks, done, strict=True) if ok]
            report.chunks_deleted += len(deleted)
            report.chunks_deferred += len(chunks) - len(deleted)
            return deleted, len(deleted) == len(chunks)

        while True:
            before = report.chunks_deleted + report.chunks_deferred
            collected = await self.meta.collect_batch(self.batch, collect, self.retry_after)
            report.blobs_collected += collected
            if report.chunks_deleted + report.chunks_deferred == before and collected == 0:
                break
        if self.repairer is not None:
            repaired = await self.repairer.run_once()
            report.chunks_repaired, report.repairs_failed = repaired.repaired, repaired.failed
        return report

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                report = await self.run_once()
                for work, count in dataclasses.asdict(report).items():
                    if count:
                        metrics.JANITOR.labels(work).inc(count)
                metrics.JANITOR_PASSES.set_to_current_time()
                if (
                    report.blobs_collected
                    or report.stale_writes_aborted
                    or report.uploads_aborted
                    or report.chunks_repaired
                    or report.repairs_failed
                ):
                    log.info("janitor: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("janitor pass failed; retrying at the next interval")
            await asyncio.sleep(interval)
