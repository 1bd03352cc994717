"""PostgreSQL metadata repository (asyncpg): the only code that talks to the database."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from s3compat.core import errors
from s3compat.core.conditions import WriteCondition
from s3compat.core.layout import Codec
from s3compat.core.lifecycle import LifecycleConfiguration
from s3compat.core.models import (
    Blob,
    BlobPlacement,
    Bucket,
    ChunkPlacement,
    CommittedChunk,
    ListEntry,
    NewObject,
    NewUpload,
    NodeInfo,
    ObjectPart,
    ObjectRecord,
    PartInfo,
    PendingMove,
    ScrubItem,
    Upload,
    UploadEntry,
)
from s3compat.core.ports import Collector, MetadataUnavailable
from s3compat.metadata import queries
from s3compat.metadata.migrate import migrate


async def open_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    on_statement: Callable[[Any], None] | None = None,
) -> asyncpg.Pool:
    """Connect, apply the schema, and return a pool whose connections decode jsonb.

    `on_statement` is called after every statement the pool's connections run (asyncpg's
    query logger, in the context of the task that ran it), BEGIN and COMMIT included.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        if on_statement is not None:
            conn.add_query_logger(on_statement)

    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init, reset=_keep_session
    )
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own rollback of an unfinished
    transaction: nothing. asyncpg's default reset (unlock advisory locks, close cursors,
    UNLISTEN, RESET ALL) is one more round trip on every release, i.e. on every statement
    outside a transaction; this module takes only transaction-scoped locks and never
    changes session state, so there is nothing for it to undo."""


def _bucket(row: asyncpg.Record) -> Bucket:
    return Bucket(row["name"], row["owner"], row["region"], row["created_at"])


def _object(row: asyncpg.Record, inline: bytes | None = None) -> ObjectRecord:
    parts = []
    offset = 0
    for blob_id, size in zip(row["part_blobs"], row["part_sizes"], strict=True):
        parts.append(ObjectPart(blob_id=blob_id, size=size, offset=offset))
        offset += size
    return ObjectRecord(
        bucket=row["bucket"],
        key=row["key"],
        size=row["size"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        content_type=row["content_type"],
        headers=row["headers"],
        user_meta=row["user_meta"],
        parts=tuple(parts),
        parts_count=row["parts_count"],
        checksums=row["checksums"],
        inline=inline,
    )


# Failures that say nothing about the request, only that the database could not serve it
# just now: the client gets 503 and retries. A connection the server ended (a restart,
# pg_terminate_backend) can surface as asyncpg's InternalClientError on its next use or on
# its release to the pool; a transaction rolled back for a deadlock or a serialization
# conflict (class 40) is safe to retry too.
_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.TransactionRollbackError,
)


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, _UNAVAILABLE):
        return MetadataUnavailable(str(exc))
    return exc


class PgMetadata:
    """Named operations over the pool. Each method is one transaction at most."""

    def __init__(self, pool: asyncpg.Pool, *, delete_grace: timedelta) -> None:
        self._pool = pool
        self._delete_grace = delete_grace

    async def close(self) -> None:
        await self._pool.close()

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
        except Exception as exc:
            raise _translate(exc) from exc
        return rows

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            row: asyncpg.Record | None = await self._pool.fetchrow(sql, *args)
        except Exception as exc:
            raise _translate(exc) from exc
        return row

    async def _execute(self, sql: str, *args: Any) -> str:
        try:
            status: str = await self._pool.execute(sql, *args)
        except Exception as exc:
            raise _translate(exc) from exc
        return status

    async def ping(self) -> None:
        await self._fetchrow(queries.PING)

    # --- nodes ----------------------------------------------------------------------

    async def upsert_node(self, node_id: str, address: str) -> None:
        await self._execute(queries.UPSERT_NODE, node_id, address)

    async def add_node(self, node_id: str, address: str) -> bool:
        return await self._fetchrow(queries.INSERT_NODE, node_id, address) is not None

    async def set_node_state(self, node_id: str, state: str) -> bool:
        return await self._fetchrow(queries.SET_NODE_STATE, node_id, state) is not None

    async def remove_empty_node(self, node_id: str) -> bool:
        return await self._fetchrow(queries.DELETE_EMPTY_NODE, node_id) is not None

    async def chunks_per_node(self) -> dict[str, int]:
        return {r["node_id"]: r["chunks"] for r in await self._fetch(queries.CHUNKS_PER_NODE)}

    async def blob_placements(self, after: uuid.UUID, limit: int) -> list[BlobPlacement]:
        rows = await self._fetch(queries.BLOB_PLACEMENTS, after, limit)
        return [
            BlobPlacement(
                r["blob_id"],
                dict(zip(r["idx"], r["node_ids"], strict=True)),
                dict(zip(r["idx"], r["checksums"], strict=True)),
            )
            for r in rows
        ]

    async def count_committed_blobs(self) -> int:
        rows = await self._fetch(queries.COUNT_COMMITTED_BLOBS)
        return int(rows[0][0])

    async def begin_move(self, blob_id: uuid.UUID, index: int, source: str, target: str) -> None:
        await self._execute(queries.BEGIN_MOVE, blob_id, index, source, target)

    async def end_move(self, blob_id: uuid.UUID, index: int) -> None:
        await self._execute(queries.END_MOVE, blob_id, index)

    async def pending_moves(self) -> list[PendingMove]:
        rows = await self._fetch(queries.PENDING_MOVES)
        return [
            PendingMove(r["blob_id"], r["idx"], r["source"], r["target"], r["current"])
            for r in rows
        ]

    async def move_chunk(self, blob_id: uuid.UUID, index: int, source: str, target: str) -> bool:
        return await self._fetchrow(queries.MOVE_CHUNK, blob_id, index, source, target) is not None

    async def list_nodes(self) -> list[NodeInfo]:
        rows = await self._fetch(queries.LIST_NODES)
        return [NodeInfo(r["node_id"], r["address"], r["state"]) for r in rows]

    # --- buckets --------------------------------------------------------------------

    async def create_bucket(self, name: str, owner: str, region: str) -> Bucket | None:
        """Create; None if a bucket of that name already exists."""
        row = await self._fetchrow(queries.CREATE_BUCKET, name, owner, region)
        return _bucket(row) if row else None

    async def get_bucket(self, name: str) -> Bucket | None:
        row = await self._fetchrow(queries.GET_BUCKET, name)
        return _bucket(row) if row else None

    async def list_buckets(self, owner: str | None = None) -> list[Bucket]:
        if owner is None:
            rows = await self._fetch(queries.LIST_BUCKETS)
        else:
            rows = await self._fetch(queries.LIST_BUCKETS_OF_OWNER, owner)
        return [_bucket(r) for r in rows]

    async def delete_bucket(self, name: str) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(queries.LOCK_BUCKET_FOR_DELETE, name)
                if row is None:
                    raise errors.NoSuchBucket(BucketName=name)
                if row["has_objects"] or row["has_uploads"]:
                    raise errors.BucketNotEmpty(BucketName=name)
                await conn.execute(queries.DELETE_BUCKET, name)
        except asyncpg.exceptions.ForeignKeyViolationError as exc:
            # An object or upload arrived between the check and the delete.
            raise errors.BucketNotEmpty(BucketName=name) from exc
        except errors.S3Error:
            raise
        except Exception as exc:
            raise _translate(exc) from exc

    # --- blobs ----------------------------------------------------------------------

    async def begin_blob(self, blob_id: uuid.UUID, codec: Codec, nodes: Sequence[str]) -> None:
        """Write the intent record (blob + one chunk row per node) before any byte moves."""
        await self._execute(
            queries.INSERT_BLOB,
            blob_id,
            codec.k,
            codec.m,
            codec.fragment_size,
            list(range(len(nodes))),
            list(nodes),
        )

    async def heartbeat_blob(self, blob_id: uuid.UUID) -> None:
        await self._execute(queries.HEARTBEAT_BLOB, blob_id)

    async def abort_blob(self, blob_id: uuid.UUID) -> None:
        await self._execute(queries.ABORT_BLOB, blob_id)

    async def get_blob(self, blob_id: uuid.UUID) -> Blob | None:
        row = await self._fetchrow(queries.GET_BLOB, blob_id)
        if row is None:
            return None
        chunks = tuple(
            ChunkPlacement(index=i, node_id=n, frag_sums=f or b"", present=p)
            for i, n, f, p in zip(
                row["idx"] or (),
                row["node_ids"] or (),
                row["frag_sums"] or (),
                row["present"] or (),
                strict=True,
            )
        )
        return Blob(
            blob_id=row["blob_id"],
            codec=Codec(row["k"], row["m"], row["fragment_size"]),
            size=row["size"],
            chunks=chunks,
            inline=row["inline_data"],
        )

    # --- objects --------------------------------------------------------------------

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        row = await self._fetchrow(queries.GET_OBJECT, bucket, key)
        return _object(row) if row else None

    async def read_object(
        self, bucket: str, key: str, *, with_body: bool
    ) -> tuple[Bucket | None, ObjectRecord | None]:
        row = await self._fetchrow(queries.READ_OBJECT, bucket, key, with_body)
        if row is None:
            return None, None
        if row["key"] is None:
            return _bucket(row), None
        return _bucket(row), _object(row, row["inline_data"])

    async def commit_object(
        self,
        obj: NewObject,
        blob_id: uuid.UUID,
        md5: bytes,
        chunks: Sequence[CommittedChunk],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        """Make a fully stored blob visible as `obj`, atomically replacing any old version.

        One transaction: the blob becomes committed, the object row is replaced, and the
        previous version's blobs lose a reference (reaching zero queues them for the janitor,
        which therefore never deletes a chunk before this commit). `condition` is checked
        against the current version under the key's lock, so of racing conditional writers
        exactly one can win.
        """
        async with self._object_transaction(obj.bucket) as conn:
            if await self._commit_blob(conn, blob_id, obj.size, md5, chunks) is None:
                # The janitor aborted it (our heartbeat went stale): nothing is visible.
                raise errors.InternalError("the write was interrupted; please retry")
            row = await self._replace_object(conn, obj, condition)
        return _object(row)

    async def commit_inline_object(
        self,
        obj: NewObject,
        blob_id: uuid.UUID,
        codec: Codec,
        md5: bytes,
        data: bytes,
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        """Store a small body in its blob row and make it visible as `obj`, in one
        transaction (no intent record is needed: nothing exists outside this transaction
        that could be orphaned). Replacing the old version works as in commit_object."""
        async with self._object_transaction(obj.bucket) as conn:
            await conn.execute(
                queries.INSERT_INLINE_BLOB,
                blob_id,
                codec.k,
                codec.m,
                codec.fragment_size,
                len(data),
                md5,
                data,
                obj.bucket,
                obj.key,
            )
            row = await self._replace_object(conn, obj, condition, locked=True)
        return _object(row)

    @contextlib.asynccontextmanager
    async def _object_transaction(self, bucket: str) -> AsyncIterator[Any]:
        """A transaction that writes an object row into `bucket`: the bucket's foreign key
        failing is NoSuchBucket; S3 errors raised inside pass; anything else is translated."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn
        except asyncpg.exceptions.ForeignKeyViolationError as exc:
            raise errors.NoSuchBucket(BucketName=bucket) from exc
        except errors.S3Error:
            raise
        except Exception as exc:
            raise _translate(exc) from exc

    @staticmethod
    async def _commit_blob(
        conn: Any, blob_id: uuid.UUID, size: int, md5: bytes, chunks: Sequence[CommittedChunk]
    ) -> uuid.UUID | None:
        """COMMIT_BLOB with one reference: the blob id, or None if it was no longer being
        written (the janitor aborted it), in which case nothing changed."""
        done: uuid.UUID | None = await conn.fetchval(
            queries.COMMIT_BLOB,
            blob_id,
            size,
            md5,
            1,
            [c.index for c in chunks],
            [c.size for c in chunks],
            [c.checksum for c in chunks],
            [c.frag_sums for c in chunks],
        )
        return done

    async def _replace_object(
        self,
        conn: Any,
        obj: NewObject,
        condition: WriteCondition | None = None,
        *,
        locked: bool = False,
    ) -> asyncpg.Record:
        if not locked:
            await conn.execute(queries.LOCK_KEY, obj.bucket, obj.key)
        if condition is not None and condition.active:
            current = await conn.fetchrow(queries.GET_OBJECT, obj.bucket, obj.key)
            condition.check(_object(current) if current else None)
        old = await conn.fetchval(queries.DELETE_OBJECT, obj.bucket, obj.key)
        row: asyncpg.Record | None = await conn.fetchrow(
            queries.INSERT_OBJECT,
            obj.bucket,
            obj.key,
            obj.size,
            obj.etag,
            obj.content_type,
            obj.headers,
            obj.user_meta,
            obj.parts_count,
            obj.part_blobs,
            obj.part_sizes,
            obj.checksums,
        )
        assert row is not None  # INSERT … RETURNING always returns the row
        if old:
            await conn.execute(queries.RELEASE_BLOBS, old, self._delete_grace)
        return row

    async def copy_object(
        self,
        source: tuple[str, str],
        dest: tuple[str, str],
        build: Callable[[ObjectRecord], NewObject],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        """CopyObject without copying a byte: the new object points at the source's blobs,
        each of which gains a reference, so deleting either object later leaves the other
        intact. Both keys are locked for the transaction; `build` turns the source as it is
        now into the new object (or raises, e.g. a failed x-amz-copy-source-if-*).
        """
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(queries.LOCK_KEYS, [source[0], dest[0]], [source[1], dest[1]])
                row = await conn.fetchrow(queries.GET_OBJECT, *source)
                if row is None:
                    if await conn.fetchrow(queries.GET_BUCKET, source[0]) is None:
                        raise errors.NoSuchBucket(BucketName=source[0])
                    raise errors.NoSuchKey(Key=source[1])
                obj = build(_object(row))
                added = await conn.fetchval(queries.ADD_BLOB_REFS, obj.part_blobs)
                if added != len(set(obj.part_blobs)):
                    # Cannot happen while the source row exists under our lock.
                    raise errors.InternalError("the copy source is being deleted")
                record = await self._replace_object(conn, obj, condition, locked=True)
        except asyncpg.exceptions.ForeignKeyViolationError as exc:
            raise errors.NoSuchBucket(BucketName=dest[0]) from exc
        except errors.S3Error:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        return _object(record)

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> list[str]:
        """DeleteObjects: remove up to 1000 keys in one transaction; returns those that
        existed. Their blobs lose a reference each, as with DeleteObject.

        No key locks: a row can only be deleted once, so each removed version's blobs are
        released exactly once, and a writer replacing a key meanwhile simply comes after
        the delete. (A thousand advisory locks per request would also exhaust PostgreSQL's
        shared lock table under concurrent bulk deletes.)"""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(queries.DELETE_OBJECTS, bucket, list(keys))
                blobs = [b for r in rows for b in r["part_blobs"]]
                if blobs:
                    await conn.execute(queries.RELEASE_BLOBS, blobs, self._delete_grace)
        except Exception as exc:
            raise _translate(exc) from exc
        return [r["key"] for r in rows]

    async def delete_object(self, bucket: str, key: str) -> bool:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(queries.LOCK_KEY, bucket, key)
                old = await conn.fetchval(queries.DELETE_OBJECT, bucket, key)
                if old is None:
                    return False
                await conn.execute(queries.RELEASE_BLOBS, old, self._delete_grace)
                return True
        except Exception as exc:
            raise _translate(exc) from exc

    async def list_keys(
        self,
        bucket: str,
        *,
        after: str | None,
        at_least: str | None,
        below: str | None,
        limit: int,
    ) -> list[ListEntry]:
        rows = await self._fetch(queries.LIST_KEYS, bucket, after, at_least, below, limit)
        return [ListEntry(r["key"], r["size"], r["etag"], r["last_modified"]) for r in rows]

    # --- repair ---------------------------------------------------------------------

    async def mark_chunk_missing(self, blob_id: uuid.UUID, index: int, node_id: str) -> None:
        await self._execute(queries.MARK_CHUNK_MISSING, blob_id, index, node_id)

    async def chunks_to_repair(self, limit: int) -> list[tuple[uuid.UUID, list[int]]]:
        rows = await self._fetch(queries.CHUNKS_TO_REPAIR, limit)
        return [(r["blob_id"], list(r["idx"])) for r in rows]

    async def chunk_repaired(
        self, blob_id: uuid.UUID, index: int, node_id: str, size: int, checksum: bytes
    ) -> bool:
        row = await self._fetchrow(queries.CHUNK_REPAIRED, blob_id, index, node_id, size, checksum)
        return row is not None

    async def chunks_to_scrub(self, after: tuple[uuid.UUID, int], limit: int) -> list[ScrubItem]:
        rows = await self._fetch(queries.CHUNKS_TO_SCRUB, after[0], after[1], limit)
        return [
            ScrubItem(r["blob_id"], r["idx"], r["node_id"], r["size"], r["checksum"]) for r in rows
        ]

    async def count_chunks_to_scrub(self) -> int:
        rows = await self._fetch(queries.COUNT_CHUNKS_TO_SCRUB)
        return int(rows[0][0])

    # --- janitor --------------------------------------------------------------------

    async def abort_stale_writes(self, older_than: timedelta) -> int:
        status = await self._execute(queries.ABORT_STALE_WRITES, older_than)
        return int(status.split()[-1])

    async def collect_batch(self, limit: int, collector: Collector, retry_after: timedelta) -> int:
        """Claim up to `limit` blobs (SKIP LOCKED) and let `collector` delete their chunks.

        `collector(blob_id, [(idx, node_id)]) -> (deleted_idx, all_done)` runs while the
        claim is held, so no other janitor works on the same blob. Chunk rows are forgotten
        only after their node confirmed the delete; a blob row goes when no chunk is left;
        a blob with a node down is deferred and retried later.
        """
        collected = 0
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                claimed = await conn.fetch(queries.CLAIM_BLOBS_TO_COLLECT, limit)
                for rec in claimed:
                    blob_id = rec["blob_id"]
                    chunks = await conn.fetch(queries.CHUNKS_OF_BLOB, blob_id)
                    deleted, complete = await collector(
                        blob_id, [(c["idx"], c["node_id"]) for c in chunks]
                    )
                    if deleted:
                        await conn.execute(queries.FORGET_CHUNKS, blob_id, deleted)
                    if complete:
                        await conn.execute(queries.FORGET_BLOB, blob_id)
                        collected += 1
                    else:
                        await conn.execute(queries.DEFER_BLOB, blob_id, retry_after)
        except Exception as exc:
            raise _translate(exc) from exc
        return collected

    # --- multipart uploads ----------------------------------------------------------

    async def create_upload(self, new: NewUpload) -> Upload:
        try:
            row = await self._pool.fetchrow(
                queries.CREATE_UPLOAD,
                uuid.uuid4(),
                new.bucket,
                new.key,
                new.owner,
                new.content_type,
                new.headers,
                new.user_meta,
                new.checksum_algorithm,
            )
        except asyncpg.exceptions.ForeignKeyViolationError as exc:
            raise errors.NoSuchBucket(BucketName=new.bucket) from exc
        except Exception as exc:
            raise _translate(exc) from exc
        assert row is not None  # INSERT … RETURNING
        return _upload(row)

    async def get_upload(self, upload_id: uuid.UUID, bucket: str, key: str) -> Upload | None:
        row = await self._fetchrow(queries.GET_UPLOAD, upload_id, bucket, key)
        return _upload(row) if row else None

    async def commit_part(
        self,
        upload_id: uuid.UUID,
        bucket: str,
        key: str,
        part_number: int,
        blob_id: uuid.UUID,
        size: int,
        md5: bytes,
        chunks: Sequence[CommittedChunk],
        checksums: dict[str, str] | None = None,
    ) -> str:
        """Make a stored blob part `part_number` of the upload; returns the part's ETag.

        A part uploaded again replaces the old one, whose blob loses its reference here.
        """
        etag = f'"{md5.hex()}"'
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchrow(queries.LOCK_UPLOAD, upload_id, bucket, key) is None:
                    raise errors.NoSuchUpload(UploadId=str(upload_id))
                if await self._commit_blob(conn, blob_id, size, md5, chunks) is None:
                    raise errors.InternalError("the write was interrupted; please retry")
                old = await conn.fetchval(
                    queries.UPSERT_PART, upload_id, part_number, blob_id, size, etag, checksums
                )
                if old is not None:
                    await conn.execute(queries.RELEASE_BLOBS, [old], self._delete_grace)
        except errors.S3Error:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        return etag

    async def share_part(
        self,
        upload_id: uuid.UUID,
        bucket: str,
        key: str,
        part_number: int,
        blob_id: uuid.UUID,
        size: int,
    ) -> str | None:
        """Make an existing committed blob part `part_number` too (UploadPartCopy of a whole
        source part): one more reference, no byte copied. Returns the part's ETag, or None
        if the blob is no longer committed (the caller then copies the bytes)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchrow(queries.LOCK_UPLOAD, upload_id, bucket, key) is None:
                    raise errors.NoSuchUpload(UploadId=str(upload_id))
                md5 = await conn.fetchval(queries.ADD_PART_BLOB_REF, blob_id, size)
                if md5 is None:
                    return None
                etag = f'"{bytes(md5).hex()}"'
                old = await conn.fetchval(
                    queries.UPSERT_PART, upload_id, part_number, blob_id, size, etag, None
                )
                if old is not None:
                    await conn.execute(queries.RELEASE_BLOBS, [old], self._delete_grace)
        except errors.S3Error:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        return etag

    async def list_parts(self, upload_id: uuid.UUID, after: int, limit: int) -> list[PartInfo]:
        rows = await self._fetch(queries.LIST_PARTS, upload_id, after, limit)
        return [_part(r) for r in rows]

    async def complete_upload(
        self,
        upload_id: uuid.UUID,
        bucket: str,
        key: str,
        requested: Sequence[tuple[int, str, dict[str, str]]],
        min_part_size: int,
        whole_checksum: Callable[[str, list[tuple[str, int]]], str | None],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        """Assemble the object from the parts' blobs, in metadata only: no byte is copied.

        Under the upload's row lock, so a racing Abort or second Complete sees NoSuchUpload.
        Parts not named in the request lose their reference and are collected.
        """
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(queries.LOCK_UPLOAD, upload_id, bucket, key)
                if row is None:
                    raise errors.NoSuchUpload(UploadId=str(upload_id))
                upload = _upload(row)
                stored = {
                    r["part_number"]: r for r in await conn.fetch(queries.ALL_PARTS, upload_id)
                }
                chosen = []
                for i, (number, etag, sums) in enumerate(requested):
                    part = stored.get(number)
                    if part is None or part["etag"].strip('"') != etag.strip().strip('"'):
                        raise errors.InvalidPart(PartNumber=str(number), ETag=etag)
                    kept = part["checksums"] or {}
                    if any(kept.get(alg) != value for alg, value in sums.items()):
                        raise errors.InvalidPart(PartNumber=str(number), ETag=etag)
                    if i < len(requested) - 1 and part["size"] < min_part_size:
                        raise errors.EntityTooSmall(
                            ProposedSize=str(part["size"]),
                            MinSizeAllowed=str(min_part_size),
                            PartNumber=str(number),
                            ETag=etag,
                        )
                    chosen.append(part)
                digest = hashlib.md5(b"".join(p["md5"] for p in chosen))
                alg = upload.checksum_algorithm
                whole = None
                if alg and all((p["checksums"] or {}).get(alg) for p in chosen):
                    value = whole_checksum(alg, [(p["checksums"][alg], p["size"]) for p in chosen])
                    whole = {alg: value} if value else None
                obj = NewObject(
                    bucket=bucket,
                    key=key,
                    size=sum(p["size"] for p in chosen),
                    etag=f'"{digest.hexdigest()}-{len(chosen)}"',
                    content_type=upload.content_type,
                    headers=upload.headers,
                    user_meta=upload.user_meta,
                    part_blobs=[p["blob_id"] for p in chosen],
                    part_sizes=[p["size"] for p in chosen],
                    parts_count=len(chosen),
                    checksums=whole,
                )
                record = await self._replace_object(conn, obj, condition)
                # The chosen parts' references pass from the upload to the object; the
                # others are dropped with the upload.
                await conn.execute(queries.DELETE_UPLOAD, upload_id)
                await conn.execute(queries.DELETE_UPLOAD_ROW, upload_id)
                kept = {p["part_number"] for p in chosen}
                unused = [r["blob_id"] for n, r in stored.items() if n not in kept]
                if unused:
                    await conn.execute(queries.RELEASE_BLOBS, unused, self._delete_grace)
        except asyncpg.exceptions.ForeignKeyViolationError as exc:
            raise errors.NoSuchBucket(BucketName=bucket) from exc
        except errors.S3Error:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        return _object(record)

    async def abort_upload(self, upload_id: uuid.UUID, bucket: str, key: str) -> bool:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchrow(queries.LOCK_UPLOAD, upload_id, bucket, key) is None:
                    return False
                blobs = await conn.fetchval(queries.DELETE_UPLOAD, upload_id)
                await conn.execute(queries.DELETE_UPLOAD_ROW, upload_id)
                if blobs:
                    await conn.execute(queries.RELEASE_BLOBS, blobs, self._delete_grace)
        except Exception as exc:
            raise _translate(exc) from exc
        return True

    async def list_uploads(
        self,
        bucket: str,
        *,
        key_after: str | None,
        after_upload: tuple[str, str] | None,
        at_least: str | None,
        below: str | None,
        limit: int,
    ) -> list[UploadEntry]:
        rows = await self._fetch(
            queries.LIST_UPLOADS,
            bucket,
            key_after,
            after_upload[0] if after_upload else None,
            after_upload[1] if after_upload else None,
            at_least,
            below,
            limit,
        )
        return [UploadEntry(r["upload_id"], r["key"], r["initiated"], r["owner"]) for r in rows]

    async def expired_uploads(
        self, default_ttl: timedelta, limit: int
    ) -> list[tuple[uuid.UUID, str, str]]:
        rows = await self._fetch(queries.EXPIRED_UPLOADS, default_ttl, limit)
        return [(r["upload_id"], r["bucket"], r["key"]) for r in rows]

    # --- bucket lifecycle -----------------------------------------------------------

    async def put_bucket_lifecycle(self, name: str, config: LifecycleConfiguration) -> bool:
        """Replace the bucket's rules and the upload TTL they imply; False if no bucket."""
        row = await self._fetchrow(
            queries.SET_BUCKET_LIFECYCLE, name, config.to_json(), config.upload_ttl
        )
        return row is not None

    async def get_bucket_lifecycle(self, name: str) -> LifecycleConfiguration | None:
        row = await self._fetchrow(queries.GET_BUCKET_LIFECYCLE, name)
        if row is None or row["lifecycle"] is None:
            return None
        return LifecycleConfiguration.from_json(row["lifecycle"])

    async def delete_bucket_lifecycle(self, name: str) -> bool:
        """Back to the cluster's default upload TTL; False if no bucket."""
        row = await self._fetchrow(queries.SET_BUCKET_LIFECYCLE, name, None, None)
        return row is not None


def _upload(row: asyncpg.Record) -> Upload:
    return Upload(
        upload_id=row["upload_id"],
        bucket=row["bucket"],
        key=row["key"],
        initiated=row["initiated"],
        owner=row["owner"],
        content_type=row["content_type"],
        headers=row["headers"],
        user_meta=row["user_meta"],
        checksum_algorithm=row["checksum_algorithm"],
    )


def _part(row: asyncpg.Record) -> PartInfo:
    return PartInfo(
        part_number=row["part_number"],
        size=row["size"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        blob_id=row["blob_id"],
    )
