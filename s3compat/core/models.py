"""Domain records passed between the service layer and its adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from s3compat.core.layout import BlobLayout, Codec


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    owner: str
    region: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    address: str
    state: str  # active | draining | down


@dataclass(frozen=True, slots=True)
class ChunkPlacement:
    index: int
    node_id: str
    frag_sums: bytes  # concatenated xxh3_64 digests, one per stored fragment
    present: bool = True  # False: the write committed without it (queued for repair)


@dataclass(frozen=True, slots=True)
class Blob:
    """An immutable run of bytes stored as six chunks (or, when small, inline in its row);
    what an object (or part) points at."""

    blob_id: uuid.UUID
    codec: Codec
    size: int
    chunks: tuple[ChunkPlacement, ...]
    # A small body kept in the metadata row instead (then `chunks` is empty).
    inline: bytes | None = None

    @property
    def layout(self) -> BlobLayout:
        return BlobLayout(self.codec, self.size)


@dataclass(frozen=True, slots=True)
class ObjectPart:
    """One blob of an object; a plain PUT has exactly one, a multipart object one per part."""

    blob_id: uuid.UUID
    size: int
    offset: int  # where this part starts inside the object


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    bucket: str
    key: str
    size: int
    etag: str  # quoted, as sent in the ETag header
    last_modified: datetime
    content_type: str | None
    headers: dict[str, str]  # stored standard headers (Content-Disposition …), canonical case
    user_meta: dict[str, str]  # x-amz-meta-* without the prefix, lower-case names
    parts: tuple[ObjectPart, ...]
    parts_count: int | None = None  # set for multipart objects
    checksums: dict[str, str] | None = None  # flexible checksum: algorithm -> base64
    # The whole body, when it is stored inline (one small blob) and was read with the row.
    inline: bytes | None = None


@dataclass(frozen=True, slots=True)
class ListEntry:
    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(slots=True)
class ListPage:
    """One page of a listing: keys and common prefixes in UTF-8 byte order."""

    entries: list[ListEntry] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    # The last key or common prefix returned: where the next page resumes.
    next_marker: str | None = None

    @property
    def count(self) -> int:
        return len(self.entries) + len(self.common_prefixes)


@dataclass(frozen=True, slots=True)
class CommittedChunk:
    """A chunk as the commit records it. A chunk whose node failed during a write that
    still reached its quorum has no size or checksum (it is missing until repaired), but
    its fragment digests are known, so the repaired chunk can be verified."""

    index: int
    size: int | None
    checksum: bytes | None
    frag_sums: bytes


@dataclass(frozen=True, slots=True)
class NewObject:
    """Everything a PutObject (or CompleteMultipartUpload) makes visible at commit."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str | None
    headers: dict[str, str]
    user_meta: dict[str, str]
    part_blobs: list[uuid.UUID]
    part_sizes: list[int]
    parts_count: int | None = None
    checksums: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress; its state lives only in PostgreSQL."""

    upload_id: uuid.UUID
    bucket: str
    key: str
    initiated: datetime
    owner: str
    content_type: str | None
    headers: dict[str, str]
    user_meta: dict[str, str]
    checksum_algorithm: str | None


@dataclass(frozen=True, slots=True)
class NewUpload:
    """What CreateMultipartUpload records; the database assigns the id and the time."""

    bucket: str
    key: str
    owner: str
    content_type: str | None
    headers: dict[str, str]
    user_meta: dict[str, str]
    checksum_algorithm: str | None


@dataclass(frozen=True, slots=True)
class PartInfo:
    part_number: int
    size: int
    etag: str
    last_modified: datetime
    blob_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class UploadEntry:
    """One row of ListMultipartUploads."""

    upload_id: uuid.UUID
    key: str
    initiated: datetime
    owner: str


@dataclass(frozen=True, slots=True)
class ScrubItem:
    """A stored chunk of a committed blob, as `s3compat scrub` checks it."""

    blob_id: uuid.UUID
    index: int
    node_id: str
    size: int
    checksum: bytes


@dataclass(frozen=True, slots=True)
class BlobPlacement:
    """Where each chunk of a committed blob is, and its recorded checksum (None: missing,
    awaiting repair), as the rebalancer sees it."""

    blob_id: uuid.UUID
    nodes: dict[int, str]  # chunk index -> node id
    checksums: dict[int, bytes | None]


@dataclass(frozen=True, slots=True)
class PendingMove:
    """A chunk move an interrupted rebalance left unfinished, and where the chunk's row
    points now (None: the blob is gone)."""

    blob_id: uuid.UUID
    index: int
    source: str
    target: str
    current: str | None
