"""Object operations: PutObject, CopyObject, GetObject, HeadObject, DeleteObject,
DeleteObjects.

The only code (with blobs.py) that combines metadata with chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace

from s3compat.core import errors
from s3compat.core.conditions import ReadConditions, WriteCondition, check_copy_source
from s3compat.core.layout import Codec
from s3compat.core.models import Blob, ListPage, NewObject, ObjectRecord
from s3compat.core.naming import check_key
from s3compat.core.ports import MetadataStore, NodeDirectory
from s3compat.service import listing
from s3compat.service.blob_reader import HEDGE_SECONDS, BlobReader, FailureReport
from s3compat.service.blobs import HEARTBEAT_SECONDS, BodyChecks, read_inline, store_blob
from s3compat.service.buckets import check_access

log = logging.getLogger(__name__)

MAX_PUT_SIZE = 5 * 1024**3
# PutObject bodies up to this size are kept in their metadata row, not cut into six chunks.
INLINE_MAX = 32 * 1024
# S3 copies at most 5 GiB in one CopyObject; larger objects are copied part by part with
# UploadPartCopy, and clients know to do so.
MAX_COPY_SIZE = 5 * 1024**3
SELF_COPY_REFUSED = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes."
)


@dataclass(frozen=True, slots=True)
class PutRequest:
    """What a PutObject carries besides its body, already parsed from the headers."""

    bucket: str
    key: str
    checks: BodyChecks
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    condition: WriteCondition | None = None


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """A CopyObject. With `replace_metadata` (x-amz-metadata-directive: REPLACE) the new
    object takes content type, headers and user metadata from the request, else from the
    source."""

    source_bucket: str
    source_key: str
    bucket: str
    key: str
    replace_metadata: bool = False
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    source_conditions: ReadConditions = field(default_factory=ReadConditions)
    condition: WriteCondition | None = None
    # A flexible checksum algorithm the copy must carry (x-amz-checksum-algorithm).
    checksum_algorithm: str | None = None


class ObjectService:
    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        codec: Codec,
        *,
        max_put_size: int = MAX_PUT_SIZE,
        heartbeat: float = HEARTBEAT_SECONDS,
        quorum: int | None = None,
        hedge: float = HEDGE_SECONDS,
        report: FailureReport | None = None,
        inline_max: int = INLINE_MAX,
    ) -> None:
        self.report = report
        self.inline_max = inline_max
        self.meta = meta
        self.nodes = nodes
        self.codec = codec
        self.max_put_size = max_put_size
        self.heartbeat = heartbeat
        self.quorum = quorum
        self.hedge = hedge

    async def put_object(self, req: PutRequest, body: AsyncIterator[bytes]) -> ObjectRecord:
        check_key(req.key)
        if req.checks.content_length is not None and req.checks.content_length > self.max_put_size:
            raise errors.EntityTooLarge(
                ProposedSize=str(req.checks.content_length),
                MaxSizeAllowed=str(self.max_put_size),
            )
        if req.condition is not None and req.condition.active:
            # Fail before the body is sent; the commit checks again, atomically.
            req.condition.check(await self.meta.get_object(req.bucket, req.key))
        checks = replace(req.checks, max_size=self.max_put_size)
        declared = checks.content_length
        if declared is not None and declared <= self.inline_max and self.inline_max > 0:
            return await self._put_inline(req, body, checks)
        writer, blob = await store_blob(
            self.meta,
            self.nodes,
            self.codec,
            body,
            checks,
            heartbeat=self.heartbeat,
            quorum=self.quorum,
        )
        new = _single_blob_object(req, blob.blob_id, blob.size, blob.md5, blob.checksum)
        try:
            return await self.meta.commit_object(
                new, blob.blob_id, blob.md5, blob.chunks, req.condition
            )
        except BaseException:
            await writer.abort_committed_failure()
            raise

    async def _put_inline(
        self, req: PutRequest, body: AsyncIterator[bytes], checks: BodyChecks
    ) -> ObjectRecord:
        """A small body: one metadata transaction stores and commits it, no node is asked.

        Six chunks of a few KiB each would cost six node round trips and six fsyncs for
        less data than the object's metadata; see schema.sql, version 5.
        """
        small = await read_inline(body, checks)
        blob_id = uuid.uuid4()
        new = _single_blob_object(req, blob_id, len(small.data), small.md5, small.checksum)
        return await self.meta.commit_inline_object(
            new, blob_id, self.codec, small.md5, small.data, req.condition
        )

    async def copy_object(self, req: CopyRequest) -> ObjectRecord:
        """Zero-copy: the new object shares the source's immutable blobs (see
        MetadataStore.copy_object); no chunk is read or written."""
        check_key(req.key)

        def build(source: ObjectRecord) -> NewObject:
            check_copy_source(req.source_conditions, source)
            same_key = (source.bucket, source.key) == (req.bucket, req.key)
            if same_key and not req.replace_metadata:
                raise errors.InvalidRequest(SELF_COPY_REFUSED)
            if source.size > MAX_COPY_SIZE:
                raise errors.InvalidRequest(
                    "The specified copy source is larger than the maximum allowable size "
                    f"for a copy source: {MAX_COPY_SIZE}"
                )
            meta = req if req.replace_metadata else source
            sums = source.checksums
            if req.checksum_algorithm and req.checksum_algorithm not in (sums or {}):
                sums = None  # never claim a checksum that was not computed
            return NewObject(
                bucket=req.bucket,
                key=req.key,
                size=source.size,
                etag=source.etag,
                content_type=meta.content_type,
                headers=dict(meta.headers),
                user_meta=dict(meta.user_meta),
                part_blobs=[p.blob_id for p in source.parts],
                part_sizes=[p.size for p in source.parts],
                parts_count=source.parts_count,
                checksums=sums,
            )

        return await self.meta.copy_object(
            (req.source_bucket, req.source_key), (req.bucket, req.key), build, req.condition
        )

    async def delete_objects(self, bucket: str, keys: list[str]) -> None:
        """DeleteObjects' keys, all in one transaction (missing keys are not an error)."""
        if keys:
            await self.meta.delete_objects(bucket, keys)

    async def get_object(self, bucket: str, key: str) -> ObjectRecord:
        record = await self.meta.get_object(bucket, key)
        if record is None:
            if await self.meta.get_bucket(bucket) is None:
                raise errors.NoSuchBucket(BucketName=bucket)
            raise errors.NoSuchKey(Key=key)
        return record

    async def read_object(
        self, bucket: str, key: str, owner: str | None, *, with_body: bool
    ) -> ObjectRecord:
        """GetObject's and HeadObject's look-up, one metadata round trip: NoSuchBucket,
        AccessDenied (unless `owner` owns the bucket), NoSuchKey. With `with_body`, a body
        kept inline comes with the record, so reading it needs no further round trip."""
        found, record = await self.meta.read_object(bucket, key, with_body=with_body)
        check_access(bucket, found, owner)
        if record is None:
            raise errors.NoSuchKey(Key=key)
        return record

    async def delete_object(self, bucket: str, key: str) -> None:
        """Idempotent: deleting a missing key succeeds, as in S3."""
        if not await self.meta.delete_object(bucket, key) and (
            await self.meta.get_bucket(bucket) is None
        ):
            raise errors.NoSuchBucket(BucketName=bucket)

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str | None,
        after: str | None,
        max_keys: int,
    ) -> ListPage:
        return await listing.list_objects(
            self.meta,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=max_keys,
        )

    def _reader(self, blob: Blob) -> BlobReader:
        if self.report is None:
            return BlobReader(self.nodes, blob, hedge=self.hedge)
        return BlobReader(self.nodes, blob, hedge=self.hedge, report=self.report)

    async def open_range(self, record: ObjectRecord, first: int, last: int) -> AsyncIterator[bytes]:
        """Start reading bytes first..last and return the stream.

        The first piece is fetched before this returns, so a failure to read surfaces as an
        S3 error before any response header is sent; later failures abort the stream.
        """
        stream = self._stream(record, first, last)
        try:
            head = await anext(stream)
        except StopAsyncIteration:
            head = b""
        except BaseException:
            await stream.aclose()
            raise
        return _prepend(head, stream)

    async def _stream(
        self, record: ObjectRecord, first: int, last: int
    ) -> AsyncGenerator[bytes, None]:
        if record.inline is not None:  # read with the row (read_object)
            yield record.inline[first : last + 1]
            return
        for part in record.parts:
            lo = max(first, part.offset)
            hi = min(last, part.offset + part.size - 1)
            if lo > hi:
                continue
            blob = await self.meta.get_blob(part.blob_id)
            if blob is None:
                raise errors.ServiceUnavailable("The object is being replaced; please retry.")
            if blob.inline is not None:
                yield blob.inline[lo - part.offset : hi - part.offset + 1]
                continue
            # aclosing: a client that goes away closes the reader's node streams at once.
            reader = self._reader(blob).stream(lo - part.offset, hi - part.offset)
            async with contextlib.aclosing(reader):
                async for piece in reader:
                    yield piece


def _single_blob_object(
    req: PutRequest,
    blob_id: uuid.UUID,
    size: int,
    md5: bytes,
    checksum: tuple[str, str] | None,
) -> NewObject:
    """PutObject's row: one blob, the MD5 for ETag, the flexible checksum if one was sent."""
    return NewObject(
        bucket=req.bucket,
        key=req.key,
        size=size,
        etag=f'"{md5.hex()}"',
        content_type=req.content_type,
        headers=req.headers,
        user_meta=req.user_meta,
        part_blobs=[blob_id],
        part_sizes=[size],
        checksums=dict([checksum]) if checksum else None,
    )


async def _prepend(head: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    try:
        if head:
            yield head
        async for piece in rest:
            yield piece
    finally:
        await asyncio.shield(rest.aclose())
