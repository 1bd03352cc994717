"""The Storage gRPC service: protocol checks and status codes over a ChunkStore.

Methods are registered by hand (not through the generated servicer base) so that the two
bulk methods use the zero-copy codec in `nodeserver.wire`; the unary ones use the
generated message classes. Any protobuf client still interoperates: the codec is
wire-compatible.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn, TypeAlias

import grpc

from nodeserver import wire
from nodeserver.chunkstore import ChunkStore, ChunkWrite, check_range
from nodeserver.errors import (
    ChunkMismatch,
    ChunkMissing,
    ChunkStoreError,
    CorruptChunk,
    InvalidChunkId,
    RangeNotSatisfiable,
)
from nodeserver.proto import storage_pb2 as pb

log = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class BadRequest(ChunkStoreError):
    """The client broke the StoreChunk framing rules."""


_STATUS: tuple[tuple[type[ChunkStoreError], grpc.StatusCode], ...] = (
    (InvalidChunkId, grpc.StatusCode.INVALID_ARGUMENT),
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ChunkMismatch, grpc.StatusCode.INVALID_ARGUMENT),
    (ChunkMissing, grpc.StatusCode.NOT_FOUND),
    (CorruptChunk, grpc.StatusCode.DATA_LOSS),
    (RangeNotSatisfiable, grpc.StatusCode.OUT_OF_RANGE),
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def status_for(exc: Exception) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL


async def _abort(context: Context, method: str, chunk_id: str, exc: Exception) -> NoReturn:
    code = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("%s %.80r failed", method, chunk_id, exc_info=exc)
    elif code is grpc.StatusCode.DATA_LOSS:
        log.warning("%s %.80r: corrupt chunk: %s", method, chunk_id, exc)
    else:
        log.info("%s %.80r: %s: %s", method, chunk_id, code.name, exc)
    await context.abort(code, str(exc))


def _declared(header: pb.ChunkHeader, trailer: pb.ChunkTrailer | None) -> tuple[int, bytes]:
    """Size and checksum the client declared, from the header, the trailer, or both."""
    sizes: set[int] = set()
    checksums: set[bytes] = set()
    if header.HasField("size"):
        sizes.add(header.size)
    if header.HasField("checksum"):
        checksums.add(header.checksum)
    if trailer is not None:
        sizes.add(trailer.size)
        checksums.add(trailer.checksum)
    if not sizes or not checksums:
        raise BadRequest("size and checksum must be sent in the header or the trailer")
    if len(sizes) > 1 or len(checksums) > 1:
        raise BadRequest("header and trailer disagree on size or checksum")
    (checksum,) = checksums
    if len(checksum) != wire.CHECKSUM_SIZE:
        raise BadRequest(f"checksum must be {wire.CHECKSUM_SIZE} bytes (xxh3_128)")
    (size,) = sizes
    return size, checksum


async def _receive(
    write: ChunkWrite, header: pb.ChunkHeader, frames: AsyncIterator[wire.StoreFrame]
) -> pb.ChunkTrailer | None:
    """Write the data frames to `write`; return the trailer, if one came."""
    limit = header.size if header.HasField("size") else None
    trailer: pb.ChunkTrailer | None = None
    async for frame in frames:
        if trailer is not None:
            raise BadRequest("no frame may follow the trailer")
        if isinstance(frame, memoryview):
            if len(frame) > wire.MAX_FRAME:
                raise BadRequest(f"data frame larger than {wire.MAX_FRAME} bytes")
            if limit is not None and write.written + len(frame) > limit:
                raise ChunkMismatch(f"more data than the declared {limit} bytes")
            await write.write(frame)
        elif isinstance(frame, pb.ChunkTrailer):
            trailer = frame
        elif isinstance(frame, pb.ChunkHeader):
            raise BadRequest("only the first frame may be a header")
        else:
            raise BadRequest("empty or malformed frame")
    return trailer


class StorageService:
    """Handlers for the five Storage methods over one ChunkStore."""

    def __init__(self, store: ChunkStore, node_id: str, cluster_id: str = "") -> None:
        self.store = store
        self.node_id = node_id
        self.cluster_id = cluster_id

    async def store_chunk(
        self, frames: AsyncIterator[wire.StoreFrame], context: Context
    ) -> pb.StoreChunkResponse:
        """Receive one chunk (framing rules: proto/storage.proto).

        Statuses are sent so that gRPC delivers them reliably. A status sent while the
        client still has a write in flight can reach it as INTERNAL instead
        (grpc/grpc#36066), so: a refused header is answered at once (our client sends
        nothing more until the header is acknowledged); a framing violation later in the
        stream is answered after the client half-closes (the rest is read and dropped);
        only disk failures end the call at once, since streaming on would be wasted.
        """
        chunk_id = "?"
        try:
            header = await anext(frames, None)
            if not isinstance(header, pb.ChunkHeader):
                raise BadRequest("the first frame must be a header")
            chunk_id = header.chunk_id
            if header.HasField("checksum") and len(header.checksum) != wire.CHECKSUM_SIZE:
                raise BadRequest(f"checksum must be {wire.CHECKSUM_SIZE} bytes (xxh3_128)")
            write = await self.store.begin_write(chunk_id)
        except (ChunkStoreError, OSError) as exc:
            await _abort(context, "StoreChunk", chunk_id, exc)
        try:
            # The acknowledgement the client waits for before streaming data.
            await context.send_initial_metadata((wire.HEADER_ACCEPTED,))
            try:
                trailer = await _receive(write, header, frames)
            except (BadRequest, ChunkMismatch):
                await write.abort()
                async for _ in frames:
                    pass  # drop the rest; answer once the client has half-closed
                raise
            size, checksum = _declared(header, trailer)
            meta = await write.commit(size=size, checksum=checksum)
        except (ChunkStoreError, OSError) as exc:
            await write.abort()
            await _abort(context, "StoreChunk", chunk_id, exc)
        finally:
            # Client cancellation or disconnect lands here too: the temp file goes away.
            await write.abort()  # no-op after a successful commit
        log.debug("StoreChunk %s: %d bytes", chunk_id, meta.size)
        return pb.StoreChunkResponse(size=meta.size, checksum=meta.checksum)

    async def retrieve_chunk(
        self, request: pb.RetrieveChunkRequest, context: Context
    ) -> AsyncIterator[memoryview]:
        chunk_id = request.chunk_id
        try:
            reader = await self.store.open_chunk(chunk_id)
        except (ChunkStoreError, OSError) as exc:
            await _abort(context, "RetrieveChunk", chunk_id, exc)
        try:
            length = check_range(
                reader.meta,
                request.offset,
                request.length if request.HasField("length") else None,
            )
            async for piece in reader.iter_range(request.offset, length, wire.MAX_FRAME):
                yield piece
        except (ChunkStoreError, OSError) as exc:
            # Bytes already sent were verified; the failing block is never sent.
            await _abort(context, "RetrieveChunk", chunk_id, exc)
        finally:
            await reader.close()

    async def delete_chunk(
        self, request: pb.DeleteChunkRequest, context: Context
    ) -> pb.DeleteChunkResponse:
        try:
            existed = await self.store.delete(request.chunk_id)
        except (ChunkStoreError, OSError) as exc:
            await _abort(context, "DeleteChunk", request.chunk_id, exc)
        return pb.DeleteChunkResponse(existed=existed)

    async def stat(self, request: pb.StatRequest, context: Context) -> pb.StatResponse:
        try:
            meta = await self.store.stat(request.chunk_id)
        except (ChunkStoreError, OSError) as exc:
            await _abort(context, "Stat", request.chunk_id, exc)
        return pb.StatResponse(size=meta.size, checksum=meta.checksum)

    async def health(self, request: pb.HealthRequest, context: Context) -> pb.HealthResponse:
        try:
            usage = await self.store.usage()
        except OSError as exc:
            await _abort(context, "Health", "-", exc)
        return pb.HealthResponse(
            node_id=self.node_id,
            used_bytes=usage.used_bytes,
            free_bytes=usage.free_bytes,
            chunk_count=usage.chunk_count,
            cluster_id=self.cluster_id,
        )

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """All methods, with the bulk ones on the hand codec."""
        return grpc.method_handlers_generic_handler(
            wire.SERVICE,
            {
                "StoreChunk": grpc.stream_unary_rpc_method_handler(
                    self.store_chunk,
                    request_deserializer=wire.decode_store_request,
                    response_serializer=pb.StoreChunkResponse.SerializeToString,
                ),
                "RetrieveChunk": grpc.unary_stream_rpc_method_handler(
                    self.retrieve_chunk,
                    request_deserializer=pb.RetrieveChunkRequest.FromString,
                    response_serializer=wire.encode_retrieve_response,
                ),
                "DeleteChunk": grpc.unary_unary_rpc_method_handler(
                    self.delete_chunk,
                    request_deserializer=pb.DeleteChunkRequest.FromString,
                    response_serializer=pb.DeleteChunkResponse.SerializeToString,
                ),
                "Stat": grpc.unary_unary_rpc_method_handler(
                    self.stat,
                    request_deserializer=pb.StatRequest.FromString,
                    response_serializer=pb.StatResponse.SerializeToString,
                ),
                "Health": grpc.unary_unary_rpc_method_handler(
                    self.health,
                    request_deserializer=pb.HealthRequest.FromString,
                    response_serializer=pb.HealthResponse.SerializeToString,
                ),
            },
        )
