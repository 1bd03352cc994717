"""gRPC client for one storage node: implements `s3compat.core.ports.NodeClient`.

The contract and the bulk-frame codec live in `nodeserver.wire` (the gateway may import
nodeserver, never the reverse), so both ends always agree on the bytes. gRPC failures are
translated into the port's exceptions here and nowhere else, so the service layer never
sees grpc types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc

from nodeserver import wire
from nodeserver.auth import call_metadata
from nodeserver.proto import storage_pb2 as pb
from s3compat.core.ports import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkRejected,
    ChunkStat,
    NodeClient,
    NodeError,
    NodeHealth,
    NodeUnauthenticated,
    NodeUnavailable,
    StoredChunk,
)
from s3compat.nodes.breaker import (
    DEFAULT_RETRY,
    CircuitBreaker,
    RetryPolicy,
    call_with_retries,
    is_transport_failure,
    never_opens,
)

_T = TypeVar("_T")

DEFAULT_DEADLINE = 10.0
"""Seconds a node call may take (S3COMPAT_NODE_DEADLINE): a unary call or a chunk range
read in all, retries included; each step of a chunk stream."""

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # (missing from grpc-stubs)

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES),
    # Calls have deadlines (streams per step), but a dead peer should also be detected by
    # the transport, for every call on the connection at once: ping every 20 s, give up
    # on the connection after 10 s without an answer, which fails its calls UNAVAILABLE.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # grpcio 1.85 times every ping (keepalive included) out after this, default 60 s.
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A restarted node should be usable within seconds, not after gRPC's 2-minute backoff.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]

_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    # The node cancelled (shutting down past its grace period); our own cancellations
    # surface as asyncio.CancelledError, never as this.
    grpc.StatusCode.CANCELLED,
}
_REJECTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def node_error(node_id: str, err: grpc.aio.AioRpcError) -> NodeError:
    """The port exception for a failed call."""
    code = err.code()
    message = f"{code.name}: {err.details() or ''}".rstrip(": ")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return NodeUnauthenticated(
            node_id,
            f"{message} (the node refused this gateway's S3COMPAT_NODE_TOKEN: "
            "wrong token, or a node of another cluster)",
        )
    if code in _UNAVAILABLE:
        return NodeUnavailable(node_id, message)
    if code == grpc.StatusCode.NOT_FOUND:
        return ChunkNotFound(node_id, message)
    if code == grpc.StatusCode.DATA_LOSS:
        return ChunkCorrupt(node_id, message)
    if code in _REJECTED:
        return ChunkRejected(node_id, message)
    return NodeError(node_id, message)


class GrpcChunkWriter:
    """Streams one chunk: header, ≤1 MiB data frames, trailer with size and checksum.

    Every step is bounded by the deadline: a frame the node does not take within it (flow
    control stalls when a node hangs, e.g. SIGSTOP) and a trailer it does not confirm within
    it fail with NodeUnavailable, so a hung node costs a write one deadline, never more.
    A whole chunk has no overall deadline: it may be gigabytes.
    """

    def __init__(
        self,
        node_id: str,
        call: grpc.aio.StreamUnaryCall[Any, Any],
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self._node_id = node_id
        self._call = call
        self._deadline = deadline
        self._hasher = wire.chunk_hasher()
        self._size = 0
        self._closed = False
        # Set once the node accepted the header: later failures and the final success are
        # reported to the node's breaker (the header's outcome is reported by the opener).
        self.breaker: CircuitBreaker | None = None

    def _report(self, exc: NodeError | None) -> None:
        if self.breaker is not None:
            self.breaker.outcome(exc)

    def _stalled(self, what: str) -> NodeUnavailable:
        self._closed = True
        self._call.cancel()
        return NodeUnavailable(self._node_id, f"{what} within {self._deadline:g}s")

    async def _send(self, frame: wire.StoreRequest) -> None:
        try:
            async with asyncio.timeout(self._deadline):
                await self._call.write(frame)
        except TimeoutError:
            raise self._stalled("the node took no data") from None
        except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
            # The call ended: the node refused, failed, or the connection broke. Its
            # final status says which (the write's own error can be a bare INTERNAL).
            self._closed = True
            await self._raise_outcome()

    async def _accepted(self) -> None:
        """Wait for the node to acknowledge the header (initial metadata) or refuse it.

        Nothing is streamed before that, so a refusal (bad id, no space for a temp file)
        arrives as a clean status: gRPC can garble a status that races a write. The caller
        bounds the wait.
        """
        metadata = await self._call.initial_metadata()
        key, value = wire.HEADER_ACCEPTED
        if metadata is None or metadata.get(key) != value:
            self._closed = True
            await self._raise_outcome()

    async def _raise_outcome(self) -> NoReturn:
        try:
            async with asyncio.timeout(self._deadline):
                await self._call
        except TimeoutError:
            raise self._stalled("the node reported no outcome") from None
        except grpc.aio.AioRpcError as err:
            raise node_error(self._node_id, err) from err
        raise NodeError(self._node_id, "node ended the chunk stream early")

    def _check_open(self) -> None:
        if self._closed:
            raise NodeError(self._node_id, "chunk writer is finished or aborted")

    async def write(self, data: bytes | memoryview) -> None:
        self._check_open()
        try:
            for frame in wire.store_data_frames(data):
                # Hash exactly the frames sent, so the trailer describes what the node got.
                self._hasher.update(frame)
                self._size += len(frame)
                await self._send(frame)
        except NodeError as exc:
            self._report(exc)
            raise

    async def finish(self) -> StoredChunk:
        self._check_open()
        try:
            stored = await self._finish()
        except NodeError as exc:
            self._report(exc)
            raise
        self._report(None)
        return stored

    async def _finish(self) -> StoredChunk:
        checksum = self._hasher.digest()
        trailer = pb.ChunkTrailer(size=self._size, checksum=checksum)
        await self._send(pb.StoreChunkRequest(trailer=trailer))
        self._closed = True
        try:
            await self._call.done_writing()
        except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
            await self._raise_outcome()
        # The node verifies, fsyncs and renames before it answers: one deadline for that.
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._call
        except TimeoutError:
            raise self._stalled("the node did not confirm the chunk") from None
        except grpc.aio.AioRpcError as err:
            raise node_error(self._node_id, err) from err
        if response.size != self._size or response.checksum != checksum:
            raise NodeError(self._node_id, "node confirmed a different size or checksum")
        return StoredChunk(size=self._size, checksum=checksum)

    async def abort(self) -> None:
        self._closed = True
        self._call.cancel()


class GrpcNodeClient:
    """One node, one channel, one circuit breaker.

    Every call has a deadline (`deadline` seconds): unary calls and read_chunk as a whole,
    retries included; streams per step (each frame must move within it). Idempotent calls
    retry transport failures (`retry`, see breaker.py); writes never do. Every call goes
    through `breaker`: while it is open, calls fail at once with NodeUnavailable (NodeCluster
    gives each node one; a client made without one never refuses a call).

    Every call carries `token` (the cluster's shared secret) as `authorization: Bearer`.
    """

    def __init__(
        self,
        node_id: str,
        address: str,
        *,
        token: str | None = None,
        deadline: float = DEFAULT_DEADLINE,
        options: list[tuple[str, int]] | None = None,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.node_id = node_id
        self.address = address
        self.deadline = deadline
        # Without a breaker of its own (a one-off client), failures are counted but calls
        # are never refused.
        self.breaker = breaker if breaker is not None else never_opens(node_id)
        self.retry = retry
        self._metadata = call_metadata(token)
        self._channel = grpc.aio.insecure_channel(address, options=options or CHANNEL_OPTIONS)
        channel = self._channel
        self._store = channel.stream_unary(
            wire.STORE_CHUNK,
            request_serializer=wire.encode_store_request,
            response_deserializer=pb.StoreChunkResponse.FromString,
        )
        self._retrieve = channel.unary_stream(
            wire.RETRIEVE_CHUNK,
            request_serializer=pb.RetrieveChunkRequest.SerializeToString,
            response_deserializer=wire.decode_retrieve_response,
        )
        self._delete = channel.unary_unary(
            wire.DELETE_CHUNK,
            request_serializer=pb.DeleteChunkRequest.SerializeToString,
            response_deserializer=pb.DeleteChunkResponse.FromString,
        )
        self._stat = channel.unary_unary(
            wire.STAT,
            request_serializer=pb.StatRequest.SerializeToString,
            response_deserializer=pb.StatResponse.FromString,
        )
        self._health = channel.unary_unary(
            wire.HEALTH,
            request_serializer=pb.HealthRequest.SerializeToString,
            response_deserializer=pb.HealthResponse.FromString,
        )

    def __repr__(self) -> str:
        return f"GrpcNodeClient({self.node_id!r}, {self.address!r})"

    async def _retried(self, attempt: Callable[[float], Awaitable[_T]]) -> _T:
        return await call_with_retries(
            self.breaker, attempt, budget=self.deadline, policy=self.retry
        )

    async def _unary(self, method: grpc.aio.UnaryUnaryMultiCallable[Any, _T], request: Any) -> _T:
        """One idempotent unary call: retried, each try given what is left of the deadline."""

        async def attempt(left: float) -> _T:
            try:
                return await method(request, timeout=left, metadata=self._metadata)
            except grpc.aio.AioRpcError as err:
                raise node_error(self.node_id, err) from err

        return await self._retried(attempt)

    async def open_chunk_writer(self, chunk_id: str) -> GrpcChunkWriter:
        """Start a chunk stream; returns once the node has accepted the header.

        Not retried (a write's lost chunk is the writer's business), but admitted by the
        breaker and bounded by the deadline.
        """
        trial = self.breaker.admit()
        writer: GrpcChunkWriter | None = None
        try:
            call = self._store(None, metadata=self._metadata)
            writer = GrpcChunkWriter(self.node_id, call, self.deadline)
            try:
                async with asyncio.timeout(self.deadline):
                    await writer._send(
                        pb.StoreChunkRequest(header=pb.ChunkHeader(chunk_id=chunk_id))
                    )
                    await writer._accepted()
            except TimeoutError:
                raise writer._stalled("no answer to the chunk header") from None
        except BaseException as exc:
            self.breaker.outcome(exc, trial)
            if writer is not None:
                await writer.abort()
            raise
        self.breaker.succeeded(trial)
        writer.breaker = self.breaker
        return writer

    def _request(self, chunk_id: str, offset: int, length: int | None) -> pb.RetrieveChunkRequest:
        request = pb.RetrieveChunkRequest(chunk_id=chunk_id, offset=offset)
        if length is not None:
            request.length = length
        return request

    async def _next_frame(
        self, call: grpc.aio.UnaryStreamCall[Any, Any], idle: float | None
    ) -> memoryview | None:
        """The next frame of a RetrieveChunk stream, None at its end; NodeError on failure."""
        try:
            if idle is None:
                frame = await call.read()
            else:
                async with asyncio.timeout(idle):
                    frame = await call.read()
        except TimeoutError:
            call.cancel()
            raise NodeUnavailable(
                self.node_id, "the chunk stream stalled past its deadline"
            ) from None
        except grpc.aio.AioRpcError as err:
            raise node_error(self.node_id, err) from err
        if frame is _EOF:
            return None
        return cast(memoryview, frame)

    async def read_chunk(self, chunk_id: str, offset: int, length: int) -> bytes:
        """One bounded range: the whole read, retries included, within the deadline."""

        async def attempt(left: float) -> bytes:
            call = self._retrieve(
                self._request(chunk_id, offset, length), timeout=left, metadata=self._metadata
            )
            try:
                frames = []
                while (frame := await self._next_frame(call, None)) is not None:
                    frames.append(frame)
            finally:
                call.cancel()  # no-op when complete
            data = b"".join(frames)
            if len(data) != length:
                raise NodeError(self.node_id, f"asked for {length} bytes, got {len(data)}")
            return data

        return await self._retried(attempt)

    async def stream_chunk(
        self, chunk_id: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """A range of any size, frame by frame.

        No overall deadline (a chunk may be gigabytes), but no progress for a deadline fails
        it: every frame must come within the deadline of the previous one, retries and
        backoff included. A transport failure resumes the stream after the last byte
        yielded (reads are idempotent), as the breaker and the retry policy allow.
        """
        clock = time.monotonic
        position, left = offset, length
        end = clock() + self.deadline  # moves on with every frame
        retry = 0
        while True:
            trial = self.breaker.admit()
            answered = False  # the breaker has been told the node answers
            failure: NodeError | None = None
            call = self._retrieve(self._request(chunk_id, position, left), metadata=self._metadata)
            try:
                while True:
                    try:
                        frame = await self._next_frame(call, max(0.0, end - clock()))
                    except BaseException as exc:
                        self.breaker.outcome(exc, trial and not answered)
                        answered = True
                        if not isinstance(exc, NodeError) or not is_transport_failure(exc):
                            raise
                        failure = exc
                        break
                    if not answered:
                        self.breaker.succeeded(trial)
                        answered = True
                    if frame is None:
                        return
                    end = clock() + self.deadline
                    retry = 0
                    position += len(frame)
                    if left is not None:
                        left -= len(frame)
                    # The port promises bytes, which costs one copy per frame here;
                    # read_chunk joins the uncopied views directly.
                    yield bytes(frame)
            finally:
                call.cancel()  # no-op when complete; frees the stream if the reader stopped
                if not answered:
                    self.breaker.released(trial)
            assert failure is not None
            if left == 0:
                return  # everything arrived; only the end of the stream was lost
            retry += 1
            if retry >= self.retry.attempts or not self.breaker.closed:
                raise failure
            delay = self.retry.backoff(retry)
            if clock() + delay >= end:
                raise failure
            await asyncio.sleep(delay)

    async def delete_chunk(self, chunk_id: str) -> bool:
        response = await self._unary(self._delete, pb.DeleteChunkRequest(chunk_id=chunk_id))
        return bool(response.existed)

    async def stat_chunk(self, chunk_id: str) -> ChunkStat | None:
        try:
            response = await self._unary(self._stat, pb.StatRequest(chunk_id=chunk_id))
        except ChunkNotFound:
            return None
        return ChunkStat(size=response.size, checksum=response.checksum)

    async def health(self) -> NodeHealth:
        response = await self._unary(self._health, pb.HealthRequest())
        return NodeHealth(
            node_id=response.node_id,
            used_bytes=response.used_bytes,
            free_bytes=response.free_bytes,
            chunk_count=response.chunk_count,
            cluster_id=response.cluster_id,
        )

    async def close(self) -> None:
        await self._channel.close(None)


async def wait_until_healthy(client: NodeClient, timeout: float) -> NodeHealth:  # noqa: ASYNC109
    """Poll `health()` until the node answers; NodeUnavailable if it does not in time.

    Used after starting a node (or a cluster of them) to wait for readiness. A node that
    refuses the token (NodeUnauthenticated) will not change its mind: that is raised at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.05
    last: Exception | None = None
    while (remaining := deadline - loop.time()) > 0:
        try:
            return await asyncio.wait_for(client.health(), remaining)
        except NodeUnauthenticated:
            raise
        except (NodeUnavailable, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
        delay = min(delay * 2, 1.0)
    raise NodeUnavailable(client.node_id, f"not healthy within {timeout:g}s ({last})")
