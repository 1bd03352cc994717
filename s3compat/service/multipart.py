"""Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads.

The upload's whole state lives in PostgreSQL, so any gateway can take the next part or
complete an upload another one started, and a gateway restart loses nothing. Each part is
its own blob; completion assembles the object from the parts' blobs in metadata only.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from s3compat.core import checksums, errors
from s3compat.core.conditions import WriteCondition
from s3compat.core.layout import Codec
from s3compat.core.models import NewUpload, ObjectRecord, PartInfo, Upload, UploadEntry
from s3compat.core.naming import check_key, prefix_upper_bound
from s3compat.core.ports import MetadataStore, NodeDirectory
from s3compat.service.blob_reader import HEDGE_SECONDS
from s3compat.service.blobs import HEARTBEAT_SECONDS, BodyChecks, store_blob

MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_PART_NUMBER = 10_000
MAX_PARTS_PER_PAGE = 1000
MAX_UPLOADS_PER_PAGE = 1000


def object_checksum(algorithm: str, parts: list[tuple[str, int]], full_object: bool) -> str | None:
    """The whole-object checksum from the parts' (base64 checksum, size); None if not valid."""
    try:
        digests = [(checksums.parse_b64(algorithm, v), size) for v, size in parts]
        if full_object and algorithm in checksums.CRC_ALGORITHMS:
            return checksums.combine_full_object(algorithm, digests)
        return checksums.composite(algorithm, [d for d, _ in digests])
    except ValueError:
        return None


def parse_upload_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.NoSuchUpload(UploadId=value) from None


def parse_part_number(value: str | None) -> int:
    # int() would also take " 1", "+1", "1_0" and non-ASCII digits; S3 takes none of them.
    text = value or ""
    ok = text.isascii() and text.isdigit() and len(text) <= 5
    number = int(text) if ok else 0
    if not 1 <= number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=value or "",
        )
    return number


@dataclass(slots=True)
class PartsPage:
    upload: Upload
    parts: list[PartInfo]
    is_truncated: bool
    next_marker: int


@dataclass(slots=True)
class UploadsPage:
    uploads: list[UploadEntry] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None


class MultipartService:
    def __init__(
        self,
        meta: MetadataStore,
        nodes: NodeDirectory,
        codec: Codec,
        *,
        min_part_size: int = MIN_PART_SIZE,
        max_part_size: int = MAX_PART_SIZE,
        heartbeat: float = HEARTBEAT_SECONDS,
        quorum: int | None = None,
        hedge: float = HEDGE_SECONDS,
    ) -> None:
        self.meta = meta
        self.nodes = nodes
        self.codec = codec
        self.min_part_size = min_part_size
        self.max_part_size = max_part_size
        self.heartbeat = heartbeat
        self.quorum = quorum
        self.hedge = hedge

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        owner: str,
        *,
        content_type: str | None,
        headers: dict[str, str],
        user_meta: dict[str, str],
        checksum_algorithm: str | None,
    ) -> Upload:
        check_key(key)
        return await self.meta.create_upload(
            NewUpload(
                bucket=bucket,
                key=key,
                owner=owner,
                content_type=content_type,
                headers=headers,
                user_meta=user_meta,
                checksum_algorithm=checksum_algorithm,
            )
        )

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        upload = await self.meta.get_upload(parse_upload_id(upload_id), bucket, key)
        if upload is None:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return upload

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes],
        checks: BodyChecks,
    ) -> tuple[str, tuple[str, str] | None]:
        """Store one part as its own blob; returns its ETag and flexible checksum.

        Uploading a part number again replaces the part.
        """
        if checks.content_length is not None and checks.content_length > self.max_part_size:
            raise errors.EntityTooLarge(
                ProposedSize=str(checks.content_length), MaxSizeAllowed=str(self.max_part_size)
            )
        upload = await self.get_upload(bucket, key, upload_id)
        checks = replace(checks, max_size=self.max_part_size)
        writer, blob = await store_blob(
            self.meta,
            self.nodes,
            self.codec,
            body,
            checks,
            heartbeat=self.heartbeat,
            quorum=self.quorum,
        )
        try:
            etag = await self.meta.commit_part(
                upload.upload_id,
                bucket,
                key,
                part_number,
                blob.blob_id,
                blob.size,
                blob.md5,
                blob.chunks,
                dict([blob.checksum]) if blob.checksum else None,
            )
            return etag, blob.checksum
        except BaseException:
            await writer.abort_committed_failure()
            raise

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str, dict[str, str]]],
        *,
        full_object: bool = False,
        condition: WriteCondition | None = None,
    ) -> ObjectRecord:
        """`full_object`: the client asked for x-amz-checksum-type FULL_OBJECT (CRCs only);
        otherwise the whole-object checksum is S3's COMPOSITE `<b64>-N` form."""
        if not parts:
            raise errors.MalformedXML()
        numbers = [n for n, _, _ in parts]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise errors.InvalidPartOrder()
        return await self.meta.complete_upload(
            parse_upload_id(upload_id),
            bucket,
            key,
            parts,
            self.min_part_size,
            lambda alg, sums: object_checksum(alg, sums, full_object),
            condition,
        )

    async def share_part(
        self,
        upload: Upload,
        part_number: int,
        source: ObjectRecord,
        first: int,
        last: int,
    ) -> str | None:
        """UploadPartCopy without copying: when the range is exactly one of the source's
        blobs (a whole single-part object, or one part of a multipart object copied with the
        same part size, as aws-cli and rclone do), the new part shares that blob. Returns the
        part's ETag, or None when the bytes must be copied (a range across blobs, or an
        upload that needs per-part checksums, which are not kept per blob)."""
        if upload.checksum_algorithm is not None:
            return None
        for part in source.parts:
            if part.offset == first and part.size == last - first + 1 and part.size > 0:
                return await self.meta.share_part(
                    upload.upload_id,
                    upload.bucket,
                    upload.key,
                    part_number,
                    part.blob_id,
                    part.size,
                )
        return None

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        if not await self.meta.abort_upload(parse_upload_id(upload_id), bucket, key):
            raise errors.NoSuchUpload(UploadId=upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, marker: int, max_parts: int
    ) -> PartsPage:
        upload = await self.get_upload(bucket, key, upload_id)
        rows = await self.meta.list_parts(upload.upload_id, marker, max_parts + 1)
        truncated = len(rows) > max_parts
        rows = rows[:max_parts]
        return PartsPage(upload, rows, truncated, rows[-1].part_number if rows else 0)

    async def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str | None,
        key_marker: str | None,
        upload_id_marker: str | None,
        max_uploads: int,
    ) -> UploadsPage:
        """Uploads in (key, upload id) order, keys folded into common prefixes like listing."""
        page = UploadsPage()
        if max_uploads <= 0:
            return page
        below = prefix_upper_bound(prefix) if prefix else None
        at_least: str | None = prefix or None
        key_after: str | None = None
        after_upload: tuple[str, str] | None = None
        skip: str | None = None
        if key_marker:
            marker_cp = None
            if delimiter and key_marker.startswith(prefix):
                at = key_marker.find(delimiter, len(prefix))
                marker_cp = key_marker[: at + len(delimiter)] if at >= 0 else None
            if marker_cp is not None:
                # The marker is a common prefix a previous page reported (or lies under
                # one): resume past every key under it, as ListObjects does.
                at_least, skip = prefix_upper_bound(marker_cp), marker_cp
                if at_least is None:
                    return page
            elif upload_id_marker:
                after_upload = (key_marker, upload_id_marker)
            else:
                key_after = key_marker
        while True:
            batch = min(max_uploads - self._count(page) + 1, MAX_UPLOADS_PER_PAGE + 1)
            rows = await self.meta.list_uploads(
                bucket,
                key_after=key_after,
                after_upload=after_upload,
                at_least=at_least,
                below=below,
                limit=batch,
            )
            for entry in rows:
                if skip is not None and entry.key.startswith(skip):
                    continue
                at = entry.key.find(delimiter, len(prefix)) if delimiter else -1
                if self._count(page) >= max_uploads:
                    page.is_truncated = True
                    return page
                if at >= 0 and delimiter:
                    cp = entry.key[: at + len(delimiter)]
                    page.common_prefixes.append(cp)
                    page.next_key_marker, page.next_upload_id_marker = cp, None
                    skip = cp
                else:
                    page.uploads.append(entry)
                    page.next_key_marker = entry.key
                    page.next_upload_id_marker = str(entry.upload_id)
                    skip = None
            if len(rows) < batch:
                return page
            last = rows[-1]
            if skip is not None:
                at_least, key_after, after_upload = prefix_upper_bound(skip), None, None
                if at_least is None:
                    return page
            else:
                key_after, after_upload = None, (last.key, str(last.upload_id))

    @staticmethod
    def _count(page: UploadsPage) -> int:
        return len(page.uploads) + len(page.common_prefixes)
