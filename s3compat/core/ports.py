"""Ports: what the service layer needs from storage nodes, as protocols.

The gRPC adapter (`s3compat.nodes`) implements them; in-memory twins implement them for
unit tests. The service layer only ever sees these types, so it never imports grpc.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from s3compat.core.conditions import WriteCondition
from s3compat.core.layout import Codec
from s3compat.core.lifecycle import LifecycleConfiguration
from s3compat.core.models import (
    Blob,
    BlobPlacement,
    Bucket,
    CommittedChunk,
    ListEntry,
    NewObject,
    NewUpload,
    NodeInfo,
    ObjectRecord,
    PartInfo,
    PendingMove,
    ScrubItem,
    Upload,
    UploadEntry,
)


class NodeError(Exception):
    """A storage node could not do what was asked. Never shown to S3 clients as such."""

    def __init__(self, node_id: str, message: str) -> None:
        self.node_id = node_id
        super().__init__(f"node {node_id}: {message}")


class NodeUnavailable(NodeError):
    """The node did not answer (down, unreachable, deadline exceeded)."""


class NodeUnauthenticated(NodeUnavailable):
    """The node refused the gateway's cluster token (S3COMPAT_NODE_TOKEN): it belongs to
    another cluster, or this gateway's token is wrong. Unusable, as if it were down."""


class ChunkNotFound(NodeError):
    """The node has no chunk with that id."""


class ChunkCorrupt(NodeError):
    """The node found that the chunk's bytes do not match their checksum."""


class ChunkRejected(NodeError):
    """The node refused a write (size/checksum mismatch, bad id, disk full)."""


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """What a node confirmed after a chunk was durably stored."""

    size: int
    checksum: bytes  # xxh3_128 digest (16 bytes) of the whole chunk


@dataclass(frozen=True, slots=True)
class ChunkStat:
    size: int
    checksum: bytes


@dataclass(frozen=True, slots=True)
class NodeHealth:
    node_id: str
    used_bytes: int
    free_bytes: int
    chunk_count: int
    cluster_id: str = ""


class ChunkWriter(Protocol):
    """One chunk being streamed to one node.

    `write` awaits the transport's flow control, which is the backpressure of the write path.
    `finish` sends the size and checksum computed over everything written; the node verifies
    them, fsyncs and renames before it answers. `abort` cancels: the node keeps nothing.
    """

    async def write(self, data: bytes | memoryview) -> None: ...

    async def finish(self) -> StoredChunk: ...

    async def abort(self) -> None: ...


class NodeClient(Protocol):
    node_id: str
    address: str

    async def open_chunk_writer(self, chunk_id: str) -> ChunkWriter: ...

    async def read_chunk(self, chunk_id: str, offset: int, length: int) -> bytes:
        """Return exactly `length` bytes from `offset` (the node verifies its block checksums)."""
        ...

    def stream_chunk(
        self, chunk_id: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]: ...

    async def delete_chunk(self, chunk_id: str) -> bool:
        """Delete; True if it existed. Deleting a missing chunk is not an error."""
        ...

    async def stat_chunk(self, chunk_id: str) -> ChunkStat | None: ...

    async def health(self) -> NodeHealth: ...

    async def close(self) -> None: ...


class MetadataUnavailable(Exception):
    """PostgreSQL could not be reached; clients get 503 and may retry."""


class NodeDirectory(Protocol):
    """The current storage nodes: a client per node id, and the placement ring."""

    def client(self, node_id: str) -> NodeClient:
        """Raise NodeUnavailable for a node id that is not (or no longer) known."""
        ...

    def placement(self, key: str, n: int) -> list[str]:
        """n distinct active nodes for `key`: those whose breaker is closed first, in ring
        order, then any whose breaker is open (their chunks fail at once and are recorded
        missing, to be repaired)."""
        ...

    def ring_placement(self, key: str, n: int) -> list[str]:
        """The n distinct active nodes the ring names for `key`, whatever their breakers
        say: where the chunks belong (the rebalancer moves them there)."""
        ...

    def all_clients(self) -> list[NodeClient]: ...


# (blob_id, [(chunk index, node id)]) -> (indexes deleted, whether the blob is now empty)
Collector = Callable[[uuid.UUID, list[tuple[int, str]]], Awaitable[tuple[list[int], bool]]]


class MetadataStore(Protocol):
    """What the service layer needs from PostgreSQL (implemented by metadata.PgMetadata)."""

    async def ping(self) -> None: ...

    async def list_nodes(self) -> list[NodeInfo]: ...

    async def create_bucket(self, name: str, owner: str, region: str) -> Bucket | None: ...

    async def get_bucket(self, name: str) -> Bucket | None: ...

    async def list_buckets(self, owner: str | None = None) -> list[Bucket]: ...

    async def delete_bucket(self, name: str) -> None: ...

    async def put_bucket_lifecycle(self, name: str, config: LifecycleConfiguration) -> bool: ...

    async def get_bucket_lifecycle(self, name: str) -> LifecycleConfiguration | None: ...

    async def delete_bucket_lifecycle(self, name: str) -> bool: ...

    async def begin_blob(self, blob_id: uuid.UUID, codec: Codec, nodes: Sequence[str]) -> None: ...

    async def heartbeat_blob(self, blob_id: uuid.UUID) -> None: ...

    async def abort_blob(self, blob_id: uuid.UUID) -> None: ...

    async def get_blob(self, blob_id: uuid.UUID) -> Blob | None: ...

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None: ...

    async def read_object(
        self, bucket: str, key: str, *, with_body: bool
    ) -> tuple[Bucket | None, ObjectRecord | None]:
        """The bucket and the object in one step; with `with_body`, an object stored inline
        comes with its body (ObjectRecord.inline)."""
        ...

    async def commit_object(
        self,
        obj: NewObject,
        blob_id: uuid.UUID,
        md5: bytes,
        chunks: Sequence[CommittedChunk],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord: ...

    async def commit_inline_object(
        self,
        obj: NewObject,
        blob_id: uuid.UUID,
        codec: Codec,
        md5: bytes,
        data: bytes,
        condition: WriteCondition | None = None,
    ) -> ObjectRecord: ...

    async def copy_object(
        self,
        source: tuple[str, str],
        dest: tuple[str, str],
        build: Callable[[ObjectRecord], NewObject],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord: ...

    async def delete_object(self, bucket: str, key: str) -> bool: ...

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> list[str]: ...

    async def list_keys(
        self,
        bucket: str,
        *,
        after: str | None,
        at_least: str | None,
        below: str | None,
        limit: int,
    ) -> list[ListEntry]: ...

    async def create_upload(self, new: NewUpload) -> Upload: ...

    async def get_upload(self, upload_id: uuid.UUID, bucket: str, key: str) -> Upload | None: ...

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
    ) -> str: ...

    async def share_part(
        self,
        upload_id: uuid.UUID,
        bucket: str,
        key: str,
        part_number: int,
        blob_id: uuid.UUID,
        size: int,
    ) -> str | None: ...

    async def list_parts(self, upload_id: uuid.UUID, after: int, limit: int) -> list[PartInfo]: ...

    async def complete_upload(
        self,
        upload_id: uuid.UUID,
        bucket: str,
        key: str,
        requested: Sequence[tuple[int, str, dict[str, str]]],
        min_part_size: int,
        whole_checksum: Callable[[str, list[tuple[str, int]]], str | None],
        condition: WriteCondition | None = None,
    ) -> ObjectRecord: ...

    async def abort_upload(self, upload_id: uuid.UUID, bucket: str, key: str) -> bool: ...

    async def list_uploads(
        self,
        bucket: str,
        *,
        key_after: str | None,
        after_upload: tuple[str, str] | None,
        at_least: str | None,
        below: str | None,
        limit: int,
    ) -> list[UploadEntry]: ...

    async def expired_uploads(
        self, default_ttl: timedelta, limit: int
    ) -> list[tuple[uuid.UUID, str, str]]: ...

    async def mark_chunk_missing(self, blob_id: uuid.UUID, index: int, node_id: str) -> None: ...

    async def chunks_to_repair(self, limit: int) -> list[tuple[uuid.UUID, list[int]]]: ...

    async def chunk_repaired(
        self, blob_id: uuid.UUID, index: int, node_id: str, size: int, checksum: bytes
    ) -> bool: ...

    async def chunks_to_scrub(
        self, after: tuple[uuid.UUID, int], limit: int
    ) -> list[ScrubItem]: ...

    async def count_chunks_to_scrub(self) -> int: ...

    async def blob_placements(self, after: uuid.UUID, limit: int) -> list[BlobPlacement]: ...

    async def count_committed_blobs(self) -> int: ...

    async def move_chunk(
        self, blob_id: uuid.UUID, index: int, source: str, target: str
    ) -> bool: ...

    async def begin_move(
        self, blob_id: uuid.UUID, index: int, source: str, target: str
    ) -> None: ...

    async def end_move(self, blob_id: uuid.UUID, index: int) -> None: ...

    async def pending_moves(self) -> list[PendingMove]: ...

    async def abort_stale_writes(self, older_than: timedelta) -> int: ...

    async def collect_batch(
        self, limit: int, collector: Collector, retry_after: timedelta
    ) -> int: ...
