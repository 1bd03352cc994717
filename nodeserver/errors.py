"""Why a chunk operation failed, independent of gRPC (the servicer maps them to status codes)."""

from __future__ import annotations


class ChunkStoreError(Exception):
    """Base class for refusals and failures of the chunk store."""


class InvalidChunkId(ChunkStoreError):
    """The id does not match the chunk id format; it never reaches the filesystem."""


class ChunkMissing(ChunkStoreError):
    """No chunk with that id is stored."""


class CorruptChunk(ChunkStoreError):
    """Stored bytes no longer match their checksums, or the file is damaged or truncated."""


class ChunkMismatch(ChunkStoreError):
    """What was written does not match the declared size or checksum; nothing was kept."""


class RangeNotSatisfiable(ChunkStoreError):
    """A read starts or ends past the end of the chunk."""
