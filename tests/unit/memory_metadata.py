"""An in-memory twin of `s3compat.metadata.repository.PgMetadata`, for fast unit tests.

It follows the SQL in `s3compat.metadata.queries` statement by statement, so the service
layer sees the same behaviour: blob states and reference counts, the grace period before
released blobs are collected, keys compared as UTF-8 bytes (`COLLATE "C"`), and janitor
claims that skip blobs another janitor holds (`FOR UPDATE SKIP LOCKED`). Every method runs
without awaiting anything except the janitor's collector, so each is atomic like the
transaction it stands for. The integration tests still run against PostgreSQL.
"""

from __future__ import annotations

import bisect
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from s3compat.core import errors
from s3compat.core.conditions import WriteCondition
from s3compat.core.layout import Codec
from s3compat.core.models import (
    Blob,
    Bucket,
    ChunkPlacement,
    CommittedChunk,
    ListEntry,
    NewObject,
    NodeInfo,
    ObjectPart,
    ObjectRecord,
)
from s3compat.core.ports import Collector

Clock = Callable[[], datetime]


class ConstraintViolation(Exception):
    """What PostgreSQL would refuse with a unique or foreign-key violation."""


def utf8_order(key: str) -> bytes:
    """Sort key giving S3's order (and that of PostgreSQL's COLLATE "C")."""
    return key.encode("utf-8")


@dataclass(slots=True)
class _Chunk:
    node_id: str
    size: int | None = None
    checksum: bytes | None = None
    frag_sums: bytes | None = None


@dataclass(slots=True)
class _Blob:
    codec: Codec
    state: str  # writing | committed | aborted | deleting
    heartbeat_at: datetime
    collect_after: datetime
    chunks: dict[int, _Chunk]
    size: int | None = None
    md5: bytes | None = None
    refs: int = 0
    inline: bytes | None = None


def _copy(record: ObjectRecord) -> ObjectRecord:
    """Callers get fresh dicts, as they do from rows PostgreSQL decodes."""
    return replace(record, headers=dict(record.headers), user_meta=dict(record.user_meta))


class MemoryMetadata:
    """`MetadataStore` over dicts. `clock` stands in for PostgreSQL's now()."""

    def __init__(self, *, delete_grace: timedelta = timedelta(0), clock: Clock | None = None):
        self._delete_grace = delete_grace
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self.nodes: dict[str, NodeInfo] = {}
        self.buckets: dict[str, Bucket] = {}
        self.blobs: dict[uuid.UUID, _Blob] = {}
        self.objects: dict[tuple[str, str], ObjectRecord] = {}
        self._keys: dict[str, list[bytes]] = {}  # per bucket, UTF-8 keys kept sorted
        self._claimed: set[uuid.UUID] = set()  # blobs a running collect_batch holds
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    async def ping(self) -> None:
        pass

    # --- nodes ----------------------------------------------------------------------

    async def upsert_node(self, node_id: str, address: str) -> None:
        state = self.nodes[node_id].state if node_id in self.nodes else "active"
        self.nodes[node_id] = NodeInfo(node_id, address, state)

    async def list_nodes(self) -> list[NodeInfo]:
        return [self.nodes[n] for n in sorted(self.nodes)]

    # --- buckets --------------------------------------------------------------------

    async def create_bucket(self, name: str, owner: str, region: str) -> Bucket | None:
        if name in self.buckets:
            return None
        bucket = Bucket(name, owner, region, self._clock())
        self.buckets[name] = bucket
        return bucket

    async def get_bucket(self, name: str) -> Bucket | None:
        return self.buckets.get(name)

    async def list_buckets(self, owner: str | None = None) -> list[Bucket]:
        found = [b for b in self.buckets.values() if owner is None or b.owner == owner]
        return sorted(found, key=lambda b: utf8_order(b.name))

    async def delete_bucket(self, name: str) -> None:
        if name not in self.buckets:
            raise errors.NoSuchBucket(BucketName=name)
        if self._keys.get(name):
            raise errors.BucketNotEmpty(BucketName=name)
        del self.buckets[name]

    # --- blobs ----------------------------------------------------------------------

    async def begin_blob(self, blob_id: uuid.UUID, codec: Codec, nodes: Sequence[str]) -> None:
        if blob_id in self.blobs:
            raise ConstraintViolation(f"blob {blob_id} exists")
        unknown = [n for n in nodes if n not in self.nodes]
        if unknown:
            raise ConstraintViolation(f"chunks on unknown nodes {unknown}")
        now = self._clock()
        chunks = {i: _Chunk(node_id) for i, node_id in enumerate(nodes)}
        self.blobs[blob_id] = _Blob(codec, "writing", now, now, chunks)

    async def heartbeat_blob(self, blob_id: uuid.UUID) -> None:
        blob = self.blobs.get(blob_id)
        if blob is not None and blob.state == "writing":
            blob.heartbeat_at = self._clock()

    async def abort_blob(self, blob_id: uuid.UUID) -> None:
        blob = self.blobs.get(blob_id)
        if blob is not None and blob.state == "writing":
            blob.state = "aborted"

    async def get_blob(self, blob_id: uuid.UUID) -> Blob | None:
        blob = self.blobs.get(blob_id)
        if blob is None or blob.state not in ("committed", "deleting"):
            return None
        if not blob.chunks and blob.inline is None:
            return None
        assert blob.size is not None  # set when committed
        placements = tuple(
            ChunkPlacement(
                index=i, node_id=c.node_id, frag_sums=c.frag_sums or b"", present=c.size is not None
            )
            for i, c in sorted(blob.chunks.items())
        )
        return Blob(
            blob_id=blob_id, codec=blob.codec, size=blob.size, chunks=placements, inline=blob.inline
        )

    def _release(self, blob_ids: Sequence[uuid.UUID]) -> None:
        """RELEASE_BLOBS: drop one reference per entry; at zero the blob awaits collection."""
        now = self._clock()
        for blob_id, n in Counter(blob_ids).items():
            blob = self.blobs.get(blob_id)
            if blob is None or blob.state != "committed":
                continue
            blob.refs -= n
            if blob.refs <= 0:
                blob.state = "deleting"
            blob.collect_after = now + self._delete_grace

    # --- objects --------------------------------------------------------------------

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        record = self.objects.get((bucket, key))
        return _copy(record) if record else None

    async def read_object(
        self, bucket: str, key: str, *, with_body: bool
    ) -> tuple[Bucket | None, ObjectRecord | None]:
        found = self.buckets.get(bucket)
        record = await self.get_object(bucket, key) if found else None
        if record is None or not with_body or len(record.parts) != 1:
            return found, record
        blob = await self.get_blob(record.parts[0].blob_id)
        return found, replace(record, inline=blob.inline if blob else None)

    async def commit_object(
        self,
        obj: NewObject,
        blob_id: uuid.UUID,
        md5: bytes,
        chunks: Sequence[CommittedChunk],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        blob = self.blobs.get(blob_id)
        if blob is None or blob.state != "writing":
            raise errors.InternalError("the write was interrupted; please retry")
        if obj.bucket not in self.buckets:  # the foreign key; nothing changes
            raise errors.NoSuchBucket(BucketName=obj.bucket)
        if condition is not None:
            condition.check(self.objects.get((obj.bucket, obj.key)))
        blob.state, blob.size, blob.md5, blob.refs = "committed", obj.size, md5, 1
        for c in chunks:
            if c.index in blob.chunks:
                stored = blob.chunks[c.index]
                stored.size, stored.checksum, stored.frag_sums = c.size, c.checksum, c.frag_sums
        return self._replace(obj)

    async def commit_inline_object(
        self,
        obj: NewObject,
        blob_id: uuid.UUID,
        codec: Codec,
        md5: bytes,
        data: bytes,
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        if blob_id in self.blobs:
            raise ConstraintViolation(f"blob {blob_id} exists")
        if obj.bucket not in self.buckets:
            raise errors.NoSuchBucket(BucketName=obj.bucket)
        if condition is not None:
            condition.check(self.objects.get((obj.bucket, obj.key)))
        now = self._clock()
        self.blobs[blob_id] = _Blob(codec, "committed", now, now, {}, len(data), md5, 1, data)
        return self._replace(obj)

    def _replace(self, obj: NewObject) -> ObjectRecord:
        parts, offset = [], 0
        for part_blob, size in zip(obj.part_blobs, obj.part_sizes, strict=True):
            parts.append(ObjectPart(blob_id=part_blob, size=size, offset=offset))
            offset += size
        record = ObjectRecord(
            bucket=obj.bucket,
            key=obj.key,
            size=obj.size,
            etag=obj.etag,
            last_modified=self._clock(),
            content_type=obj.content_type,
            headers=dict(obj.headers),
            user_meta=dict(obj.user_meta),
            parts=tuple(parts),
            parts_count=obj.parts_count,
        )
        old = self.objects.pop((obj.bucket, obj.key), None)
        self.objects[(obj.bucket, obj.key)] = record
        if old is None:
            bisect.insort(self._keys.setdefault(obj.bucket, []), utf8_order(obj.key))
        else:
            self._release([p.blob_id for p in old.parts])
        return _copy(record)

    async def copy_object(
        self,
        source: tuple[str, str],
        dest: tuple[str, str],
        build: Callable[[ObjectRecord], NewObject],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        found = self.objects.get(source)
        if found is None:
            if source[0] not in self.buckets:
                raise errors.NoSuchBucket(BucketName=source[0])
            raise errors.NoSuchKey(Key=source[1])
        obj = build(_copy(found))
        if dest[0] not in self.buckets:
            raise errors.NoSuchBucket(BucketName=dest[0])
        if condition is not None:
            condition.check(self.objects.get(dest))
        for blob_id, n in Counter(obj.part_blobs).items():  # ADD_BLOB_REFS
            blob = self.blobs.get(blob_id)
            if blob is None or blob.state != "committed":
                raise errors.InternalError("the copy source is being deleted")
            blob.refs += n
        return self._replace(obj)

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if await self.delete_object(bucket, k)]

    async def delete_object(self, bucket: str, key: str) -> bool:
        old = self.objects.pop((bucket, key), None)
        if old is None:
            return False
        self._keys[bucket].remove(utf8_order(key))
        self._release([p.blob_id for p in old.parts])
        return True

    async def list_keys(
        self,
        bucket: str,
        *,
        after: str | None,
        at_least: str | None,
        below: str | None,
        limit: int,
    ) -> list[ListEntry]:
        if limit < 0:
            raise ValueError("LIMIT must not be negative")
        index = self._keys.get(bucket, [])
        lo, hi = 0, len(index)
        if after is not None:  # key > after
            lo = max(lo, bisect.bisect_right(index, utf8_order(after)))
        if at_least is not None:  # key >= at_least
            lo = max(lo, bisect.bisect_left(index, utf8_order(at_least)))
        if below is not None:  # key < below
            hi = bisect.bisect_left(index, utf8_order(below))
        out = []
        for k in index[lo : min(hi, lo + limit)]:
            r = self.objects[(bucket, k.decode("utf-8"))]
            out.append(ListEntry(r.key, r.size, r.etag, r.last_modified))
        return out

    # --- janitor --------------------------------------------------------------------

    async def abort_stale_writes(self, older_than: timedelta) -> int:
        cutoff = self._clock() - older_than
        stale = [b for b in self.blobs.values() if b.state == "writing" and b.heartbeat_at < cutoff]
        for blob in stale:
            blob.state = "aborted"
        return len(stale)

    async def collect_batch(self, limit: int, collector: Collector, retry_after: timedelta) -> int:
        """Claim, call `collector` per blob, then apply everything at once (one transaction).

        If the collector raises, nothing is applied, as PostgreSQL would roll back.
        """
        now = self._clock()
        ready = [
            (blob.collect_after, blob_id)
            for blob_id, blob in self.blobs.items()
            if blob.state in ("aborted", "deleting")
            and blob.collect_after <= now
            and blob_id not in self._claimed
        ]
        ready.sort(key=lambda pair: pair[0])  # stable: ties keep insertion order
        claimed = [blob_id for _, blob_id in ready[:limit]]
        self._claimed.update(claimed)
        try:
            outcomes = []
            for blob_id in claimed:
                chunks = sorted(self.blobs[blob_id].chunks.items())
                deleted, complete = await collector(blob_id, [(i, c.node_id) for i, c in chunks])
                outcomes.append((blob_id, deleted, complete))
        finally:
            self._claimed.difference_update(claimed)
        collected = 0
        for blob_id, deleted, complete in outcomes:
            blob = self.blobs[blob_id]
            for index in deleted:
                blob.chunks.pop(index, None)
            if complete:
                if not blob.chunks:
                    del self.blobs[blob_id]
                collected += 1
            else:
                blob.collect_after = now + retry_after
        return collected
