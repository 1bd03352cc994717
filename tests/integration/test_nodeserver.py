"""The real `nodeserver` process, driven through the gateway's GrpcNodeClient.

Each node is started as the CLI would be in production (`--listen 127.0.0.1:0`), and its
port is parsed from the one line it prints when ready.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import xxhash

from nodeserver import wire
from nodeserver.chunkfile import DEFAULT_BLOCK_SIZE as BS
from nodeserver.chunkfile import DIGEST_SIZE, HEADER_SIZE
from nodeserver.proto import storage_pb2 as pb
from nodeserver.proto import storage_pb2_grpc
from s3compat.core.ports import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkRejected,
    NodeError,
    NodeUnavailable,
    StoredChunk,
)
from s3compat.nodes.client import CHANNEL_OPTIONS, GrpcNodeClient, wait_until_healthy

T = TypeVar("T")
MiB = 1 << 20
# Safety nets so a broken node fails the test instead of hanging it; not performance limits.
STARTUP_LIMIT = 60.0
EVENTUALLY_LIMIT = 30.0
# The cluster token every node in these tests requires, and the metadata that carries it.
TOKEN = secrets.token_urlsafe(24)
BEARER = (("authorization", f"Bearer {TOKEN}"),)
PLAIN_TOKEN = (("x-s3compat-token", TOKEN),)


@dataclass
class Node:
    node_id: str
    proc: subprocess.Popen[str]
    address: str
    data: Path
    log: Path

    def chunk_path(self, chunk_id: str) -> Path:
        return self.data / "chunks" / chunk_id[0:2] / chunk_id[2:4] / chunk_id

    def tmp_entries(self) -> list[str]:
        return sorted(os.listdir(self.data / "tmp"))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STARTUP_LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def node_command(use_module: bool) -> list[str]:
    script = Path(sys.executable).with_name("nodeserver")
    if use_module or not script.exists():
        return [sys.executable, "-m", "nodeserver"]
    return [str(script)]


def start_node(
    data: Path,
    log: Path,
    node_id: str = "node-t",
    use_module: bool = False,
    extra: tuple[str, ...] = (),
    token: str | None = TOKEN,
    env: dict[str, str] | None = None,
) -> Node:
    """Start a node; with a `token`, it is given in a file (mode 0600) next to `data`."""
    command = [*node_command(use_module), "--id", node_id, "--listen", "127.0.0.1:0"]
    command += ["--data", str(data), *extra]
    if token is not None:
        token_file = data.parent / f"{node_id}.token"
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        command += ["--token-file", str(token_file)]
    with log.open("a") as log_file:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env
        )
    assert proc.stdout is not None
    watchdog = threading.Timer(STARTUP_LIMIT, proc.kill)
    watchdog.start()
    try:
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    match = re.fullmatch(
        rf"nodeserver {re.escape(node_id)} listening on 127\.0\.0\.1:(\d+)\n", line
    )
    if match is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"unexpected ready line {line!r}; log:\n{log.read_text()}")
    return Node(node_id, proc, f"127.0.0.1:{match.group(1)}", data, log)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("node")
    started = start_node(root / "data", root / "node.log")
    yield started
    assert started.stop() == 0


def run(node: Node, fn: Callable[[GrpcNodeClient], Awaitable[T]]) -> T:
    """Run `fn` with a fresh client on a fresh event loop (channels belong to a loop)."""

    async def main() -> T:
        client = GrpcNodeClient(node.node_id, node.address, token=TOKEN)
        try:
            return await fn(client)
        finally:
            await client.close()

    return asyncio.run(main())


def run_stub(node: Node, fn: Callable[[storage_pb2_grpc.StorageStub], Awaitable[T]]) -> T:
    """Run `fn` with the generated stub: plain protobuf encoding, no hand codec."""

    async def main() -> T:
        async with grpc.aio.insecure_channel(node.address) as channel:
            return await fn(storage_pb2_grpc.StorageStub(channel))

    return asyncio.run(main())


def new_id() -> str:
    return f"{uuid.uuid4().hex}-{uuid.uuid4().int % 6}"


def checksum(data: bytes) -> bytes:
    return xxhash.xxh3_128(data).digest()


async def put(client: GrpcNodeClient, chunk_id: str, data: bytes, piece: int) -> StoredChunk:
    writer = await client.open_chunk_writer(chunk_id)
    for start in range(0, len(data), piece):
        await writer.write(data[start : start + piece])
    return await writer.finish()


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + EVENTUALLY_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.02)


# -- round trips and reads -----------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "piece"),
    [(0, 1), (1, 1), (5000, 1234), (3 * MiB + 7, 700_000), (3 * MiB + 7, 3 * MiB + 7)],
)
def test_round_trip(node: Node, size: int, piece: int) -> None:
    data = os.urandom(size)
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> None:
        stored = await put(client, chunk_id, data, piece)
        assert stored == StoredChunk(size=size, checksum=checksum(data))
        stat = await client.stat_chunk(chunk_id)
        assert stat is not None
        assert (stat.size, stat.checksum) == (size, checksum(data))
        assert await client.read_chunk(chunk_id, 0, size) == data
        frames = [frame async for frame in client.stream_chunk(chunk_id)]
        assert all(isinstance(f, bytes) and 0 < len(f) <= MiB for f in frames)
        assert b"".join(frames) == data

    run(node, body)
    assert node.chunk_path(chunk_id).is_file()
    assert node.tmp_entries() == []


def test_ranged_reads(node: Node) -> None:
    size = 3 * MiB + 7
    data = os.urandom(size)
    chunk_id = new_id()
    ranges = [
        (0, 1),
        (BS - 1, 2),
        (BS - 10, BS + 20),
        (2 * BS, BS),
        (100, 2 * MiB),
        (size - 1, 1),
        (size, 0),
        (0, 0),
    ]

    async def body(client: GrpcNodeClient) -> None:
        await put(client, chunk_id, data, MiB)
        for offset, length in ranges:
            got = await client.read_chunk(chunk_id, offset, length)
            assert got == data[offset : offset + length], (offset, length)
        for offset in (0, BS + 1, size - 3, size):
            tail = b"".join([f async for f in client.stream_chunk(chunk_id, offset)])
            assert tail == data[offset:]
        streamed = [f async for f in client.stream_chunk(chunk_id, 5, 2 * MiB)]
        assert b"".join(streamed) == data[5 : 5 + 2 * MiB]
        for offset, length in [(0, size + 1), (size - 2, 3), (size + 1, 0), (size + 5, 1)]:
            with pytest.raises(ChunkRejected, match="OUT_OF_RANGE"):
                await client.read_chunk(chunk_id, offset, length)
        with pytest.raises(ChunkRejected, match="OUT_OF_RANGE"):
            _ = [f async for f in client.stream_chunk(chunk_id, size + 1)]

    run(node, body)


def test_missing_chunk(node: Node) -> None:
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> None:
        assert await client.stat_chunk(chunk_id) is None
        with pytest.raises(ChunkNotFound):
            await client.read_chunk(chunk_id, 0, 1)
        with pytest.raises(ChunkNotFound):
            _ = [f async for f in client.stream_chunk(chunk_id)]

    run(node, body)


# -- rejected and aborted writes -----------------------------------------------------


def store_raw(node: Node, frames: list[pb.StoreChunkRequest]) -> pb.StoreChunkResponse:
    """Send frames with the generated stub, behaving like a careful client: after the
    first frame, wait for the node to accept or refuse before sending more."""

    async def body(stub: storage_pb2_grpc.StorageStub) -> Any:
        call = stub.StoreChunk(metadata=BEARER)
        if frames:
            await call.write(frames[0])
            metadata = await call.initial_metadata()
            if metadata is None or metadata.get(wire.HEADER_ACCEPTED[0]) is None:
                return await call  # refused: raises with the node's status
            for frame in frames[1:]:
                await call.write(frame)
        await call.done_writing()
        return await call

    return run_stub(node, body)


def header(chunk_id: str, **fields: Any) -> pb.StoreChunkRequest:
    return pb.StoreChunkRequest(header=pb.ChunkHeader(chunk_id=chunk_id, **fields))


def data_frame(data: bytes) -> pb.StoreChunkRequest:
    return pb.StoreChunkRequest(data=data)


def trailer(size: int, digest: bytes) -> pb.StoreChunkRequest:
    return pb.StoreChunkRequest(trailer=pb.ChunkTrailer(size=size, checksum=digest))


def assert_nothing_stored(node: Node, chunk_id: str) -> None:
    async def stat(client: GrpcNodeClient) -> Any:
        return await client.stat_chunk(chunk_id)

    assert run(node, stat) is None
    assert not node.chunk_path(chunk_id).exists()
    assert node.tmp_entries() == []


BLOB = os.urandom(BS + 123)


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        (
            "size too large",
            lambda i: [header(i), data_frame(BLOB), trailer(len(BLOB) + 1, checksum(BLOB))],
        ),
        (
            "size too small",
            lambda i: [header(i), data_frame(BLOB), trailer(len(BLOB) - 1, checksum(BLOB))],
        ),
        ("checksum", lambda i: [header(i), data_frame(BLOB), trailer(len(BLOB), bytes(16))]),
        ("short checksum", lambda i: [header(i), data_frame(BLOB), trailer(len(BLOB), b"\x01")]),
        ("no size or checksum", lambda i: [header(i), data_frame(BLOB)]),
        ("size only", lambda i: [header(i, size=len(BLOB)), data_frame(BLOB)]),
        (
            "header and trailer disagree",
            lambda i: [
                header(i, size=len(BLOB), checksum=bytes(16)),
                data_frame(BLOB),
                trailer(len(BLOB), checksum(BLOB)),
            ],
        ),
        (
            "more data than declared",
            lambda i: [header(i, size=10), data_frame(BLOB), trailer(10, checksum(BLOB))],
        ),
        (
            "frame after trailer",
            lambda i: [header(i), trailer(len(BLOB), checksum(BLOB)), data_frame(BLOB)],
        ),
        ("second header", lambda i: [header(i), header(i), data_frame(BLOB)]),
        ("no header", lambda i: [data_frame(BLOB), trailer(len(BLOB), checksum(BLOB))]),
        ("empty frame", lambda i: [header(i), pb.StoreChunkRequest()]),
        ("empty stream", lambda i: []),
        ("oversized frame", lambda i: [header(i), data_frame(bytes(MiB + 1))]),
    ],
)
def test_bad_store_streams_are_rejected_and_leave_nothing(
    node: Node, name: str, frames: Callable[[str], list[pb.StoreChunkRequest]]
) -> None:
    chunk_id = new_id()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        store_raw(node, frames(chunk_id))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
    assert_nothing_stored(node, chunk_id)


def test_plain_protobuf_client_interoperates(node: Node) -> None:
    """The generated stub (no hand codec) can store with a header-only declaration and read."""
    chunk_id = new_id()
    data = os.urandom(2 * MiB + 3)
    frames = [header(chunk_id, size=len(data), checksum=checksum(data))]
    frames += [data_frame(data[i : i + MiB]) for i in range(0, len(data), MiB)]
    response = store_raw(node, frames)
    assert (response.size, response.checksum) == (len(data), checksum(data))

    async def read(stub: storage_pb2_grpc.StorageStub) -> bytes:
        request = pb.RetrieveChunkRequest(chunk_id=chunk_id, offset=7)
        call = stub.RetrieveChunk(request, metadata=PLAIN_TOKEN)  # the alternative key
        return b"".join([message.data async for message in call])

    assert run_stub(node, read) == data[7:]

    async def read_empty(stub: storage_pb2_grpc.StorageStub) -> list[bytes]:
        request = pb.RetrieveChunkRequest(chunk_id=chunk_id, offset=7, length=0)
        call = stub.RetrieveChunk(request, metadata=BEARER)
        return [message.data async for message in call]

    assert run_stub(node, read_empty) == []


def test_client_trailer_matches_header_declaration(node: Node) -> None:
    """Header and trailer may both declare, if they agree."""
    chunk_id = new_id()
    frames = [
        header(chunk_id, size=len(BLOB), checksum=checksum(BLOB)),
        data_frame(BLOB),
        trailer(len(BLOB), checksum(BLOB)),
    ]
    assert store_raw(node, frames).size == len(BLOB)


def test_aborted_writer_leaves_nothing(node: Node) -> None:
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> None:
        writer = await client.open_chunk_writer(chunk_id)
        await writer.write(os.urandom(2 * MiB))
        # The node has a temp file for it...
        await asyncio.to_thread(eventually, lambda: node.tmp_entries() != [], "temp file")
        await writer.abort()
        # ...which the cancellation removes.
        await asyncio.to_thread(eventually, lambda: node.tmp_entries() == [], "cleanup")
        with pytest.raises(NodeError):
            await writer.write(b"more")

    run(node, body)
    assert_nothing_stored(node, chunk_id)


def test_writer_rejected_by_node_raises_chunk_rejected(node: Node) -> None:
    async def body(client: GrpcNodeClient) -> None:
        with pytest.raises(ChunkRejected, match="INVALID_ARGUMENT"):
            await client.open_chunk_writer("not-an-id")

    run(node, body)
    assert node.tmp_entries() == []


def test_refusal_mid_stream_keeps_its_status(node: Node) -> None:
    """A framing violation after the header is answered once the client half-closes, so
    the status survives even while 1 MiB writes are in flight (grpc/grpc#36066)."""
    chunk_id = new_id()
    frames = [header(chunk_id, size=10)] + [data_frame(bytes(MiB))] * 8
    frames.append(trailer(10, bytes(16)))
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            store_raw(node, frames)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "more data than the declared" in (info.value.details() or "")
    assert_nothing_stored(node, chunk_id)


# -- corruption ----------------------------------------------------------------------


def flip(path: Path, position: int) -> None:
    with path.open("r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x80]))


def test_corrupt_block_is_detected_and_never_sent(node: Node) -> None:
    data = os.urandom(6 * BS)  # frames carry 4 blocks: the corrupt block is in frame 2
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> None:
        await put(client, chunk_id, data, MiB)
        flip(node.chunk_path(chunk_id), HEADER_SIZE + 5 * BS + 1000)
        with pytest.raises(ChunkCorrupt):
            await client.read_chunk(chunk_id, 5 * BS + 10, 100)
        with pytest.raises(ChunkCorrupt):
            await client.read_chunk(chunk_id, 0, len(data))
        # Other blocks still read fine.
        assert await client.read_chunk(chunk_id, 0, BS) == data[:BS]
        assert await client.read_chunk(chunk_id, 4 * BS, BS) == data[4 * BS : 5 * BS]
        # A stream delivers the good frame, then fails before any byte of the bad one.
        received = bytearray()
        with pytest.raises(ChunkCorrupt):
            async for frame in client.stream_chunk(chunk_id):
                received += frame
        assert bytes(received) == data[: 4 * BS]

    run(node, body)


def test_truncated_chunk_is_an_error_never_bad_bytes(node: Node) -> None:
    data = os.urandom(2 * BS + 99)
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> None:
        await put(client, chunk_id, data, MiB)
        path = node.chunk_path(chunk_id)
        os.truncate(path, HEADER_SIZE + BS)
        for offset, length in [(0, 10), (0, len(data)), (2 * BS, 99)]:
            with pytest.raises(ChunkCorrupt):
                await client.read_chunk(chunk_id, offset, length)
        with pytest.raises(ChunkCorrupt):
            await client.stat_chunk(chunk_id)
        os.truncate(path, 10)
        with pytest.raises(ChunkCorrupt):
            await client.read_chunk(chunk_id, 0, 10)

    run(node, body)


# -- ids, delete, health -------------------------------------------------------------

BAD_IDS = ["", "../x", "../../etc/passwd", "A" * 32 + "-1", "0" * 32 + "-1000", "0" * 33 + "-1"]
BAD_IDS += ["0" * 32 + "-1\n", "0" * 32, "x" * 5000]


@pytest.mark.parametrize("chunk_id", BAD_IDS)
def test_malformed_ids_are_refused(node: Node, chunk_id: str) -> None:
    before = sorted(p.name for p in node.data.rglob("*"))

    async def body(client: GrpcNodeClient) -> None:
        with pytest.raises(ChunkRejected, match="INVALID_ARGUMENT"):
            await client.stat_chunk(chunk_id)
        with pytest.raises(ChunkRejected, match="INVALID_ARGUMENT"):
            await client.delete_chunk(chunk_id)
        with pytest.raises(ChunkRejected, match="INVALID_ARGUMENT"):
            await client.read_chunk(chunk_id, 0, 0)
        with pytest.raises(ChunkRejected, match="INVALID_ARGUMENT"):
            await put(client, chunk_id, b"data", 4)

    run(node, body)
    assert sorted(p.name for p in node.data.rglob("*")) == before


def test_delete_is_idempotent(node: Node) -> None:
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> None:
        await put(client, chunk_id, b"abc", 3)
        assert await client.delete_chunk(chunk_id) is True
        assert await client.delete_chunk(chunk_id) is False
        assert await client.stat_chunk(chunk_id) is None

    run(node, body)
    assert not node.chunk_path(chunk_id).exists()


def on_disk(size: int) -> int:
    return HEADER_SIZE + size + DIGEST_SIZE * -(-size // BS)


def test_health_counters(node: Node) -> None:
    first, second = new_id(), new_id()

    async def body(client: GrpcNodeClient) -> None:
        start = await client.health()
        assert start.node_id == node.node_id
        assert start.free_bytes > 0
        await put(client, first, os.urandom(1000), 1000)
        await put(client, second, os.urandom(BS + 1), MiB)
        after = await client.health()
        assert after.chunk_count == start.chunk_count + 2
        assert after.used_bytes == start.used_bytes + on_disk(1000) + on_disk(BS + 1)
        await put(client, first, os.urandom(50), 50)  # replace: same count, new size
        replaced = await client.health()
        assert replaced.chunk_count == after.chunk_count
        assert replaced.used_bytes == after.used_bytes - on_disk(1000) + on_disk(50)
        await client.delete_chunk(first)
        await client.delete_chunk(second)
        end = await client.health()
        assert (end.chunk_count, end.used_bytes) == (start.chunk_count, start.used_bytes)

    run(node, body)


def test_replacing_a_chunk_serves_the_new_content(node: Node) -> None:
    chunk_id = new_id()
    old, new = os.urandom(3000), os.urandom(BS * 2)

    async def body(client: GrpcNodeClient) -> None:
        await put(client, chunk_id, old, 3000)
        await put(client, chunk_id, new, MiB)
        assert await client.read_chunk(chunk_id, 0, len(new)) == new

    run(node, body)


# -- lifecycle -----------------------------------------------------------------------


def test_restart_cleans_tmp_keeps_chunks_and_sigterm_exits_zero(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "node.log"
    chunk_id = new_id()
    data = os.urandom(BS + 17)

    first = start_node(data_dir, log, "restart-me", use_module=True)
    try:

        async def store(client: GrpcNodeClient) -> None:
            await put(client, chunk_id, data, MiB)

        run(first, store)
    finally:
        assert first.stop(signal.SIGTERM) == 0
    assert first.proc.stdout is not None
    assert first.proc.stdout.read() == ""  # exactly one line on stdout, ever

    leftover = data_dir / "tmp" / f"{new_id()}.deadbeef.tmp"
    leftover.write_bytes(b"half a chunk")
    second = start_node(data_dir, log, "restart-me")
    try:
        assert second.tmp_entries() == []

        async def check(client: GrpcNodeClient) -> None:
            health = await wait_until_healthy(client, STARTUP_LIMIT)
            assert (health.node_id, health.chunk_count) == ("restart-me", 1)
            assert health.used_bytes == on_disk(len(data))
            assert await client.read_chunk(chunk_id, 0, len(data)) == data

        run(second, check)
    finally:
        assert second.stop(signal.SIGINT) == 0


def test_second_node_on_same_data_dir_refuses(node: Node, tmp_path: Path) -> None:
    command = [*node_command(False), "--id", "twin", "--listen", "127.0.0.1:0"]
    command += ["--data", str(node.data), "--insecure-no-token"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_LIMIT)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "in use" in result.stderr


def test_unreachable_node_is_unavailable(tmp_path: Path) -> None:
    # Start and stop a node to get a port nothing listens on any more.
    gone = start_node(tmp_path / "data", tmp_path / "node.log")
    assert gone.stop() == 0

    async def body(client: GrpcNodeClient) -> None:
        with pytest.raises(NodeUnavailable):
            await client.health()
        with pytest.raises(NodeUnavailable):
            await client.stat_chunk(new_id())
        with pytest.raises(NodeUnavailable):
            await client.read_chunk(new_id(), 0, 1)
        with pytest.raises(NodeUnavailable):
            await put(client, new_id(), b"abc", 3)
        with pytest.raises(NodeUnavailable):
            await wait_until_healthy(client, 0.5)

    run(gone, body)


def test_stop_waits_for_in_flight_write(tmp_path: Path) -> None:
    """SIGTERM during a write: the write in flight still finishes (within the grace)."""
    # A grace far longer than the test can take, so the outcome does not depend on speed.
    node = start_node(tmp_path / "data", tmp_path / "node.log", extra=("--grace", "600"))
    chunk_id = new_id()
    data = os.urandom(MiB)

    async def body(client: GrpcNodeClient) -> StoredChunk:
        writer = await client.open_chunk_writer(chunk_id)
        await writer.write(data)
        node.proc.send_signal(signal.SIGTERM)
        await writer.write(data)
        return await writer.finish()

    try:
        stored = run(node, body)
        assert stored.size == 2 * MiB
    finally:
        assert node.stop() == 0
    assert node.tmp_entries() == []


def test_stream_from_a_frozen_node_fails_instead_of_hanging(tmp_path: Path) -> None:
    """Streams have no deadline; keepalive must notice a node that stopped answering.

    The keepalive interval and timeout are shortened for the test (default 20 s + 10 s).
    """
    node = start_node(tmp_path / "data", tmp_path / "node.log")
    shortened = {
        "grpc.keepalive_time_ms": 500,
        "grpc.keepalive_timeout_ms": 500,
        "grpc.http2.ping_timeout_ms": 500,
        # Ping only while a call is active, so the idle client is not told off by the
        # node for pinging too often before the node is frozen.
        "grpc.keepalive_permit_without_calls": 0,
    }
    options = [(k, v) for k, v in CHANNEL_OPTIONS if k not in shortened]
    options += list(shortened.items())
    chunk_id = new_id()

    async def body() -> None:
        client = GrpcNodeClient(node.node_id, node.address, token=TOKEN, options=options)
        try:
            await put(client, chunk_id, b"abc", 3)
            node.proc.send_signal(signal.SIGSTOP)
            try:
                async with asyncio.timeout(STARTUP_LIMIT):  # a safety net, not a threshold
                    with pytest.raises(NodeUnavailable):
                        _ = [f async for f in client.stream_chunk(chunk_id)]
            finally:
                node.proc.send_signal(signal.SIGCONT)
        finally:
            await client.close()

    try:
        asyncio.run(body())
    finally:
        assert node.stop() == 0


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:notaport", "127.0.0.1:70000"):
        result = subprocess.run(
            [*node_command(True), "--id", "x", "--listen", listen, "--data", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=STARTUP_LIMIT,
        )
        assert result.returncode == 2
        assert result.stdout == ""
