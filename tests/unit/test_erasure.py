"""Reed–Solomon 4+2: the coder itself, and the writer and reader over in-memory nodes that
fail, hang or return damaged bytes. (The real cluster does the same in
tests/integration/test_erasure.py.)"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import xxhash

from s3compat.core import errors
from s3compat.core.layout import PLAIN_SPLIT, RS_4_2, Codec, chunk_id
from s3compat.core.models import Blob, ChunkPlacement, NodeInfo
from s3compat.core.ports import ChunkNotFound, NodeUnavailable, StoredChunk
from s3compat.service.blob_reader import BlobReader
from s3compat.service.blobs import BlobWriter, BodyChecks, default_quorum
from s3compat.service.erasure import ErasureCoder, NotEnoughFragments
from tests.unit.memory_metadata import MemoryMetadata

SMALL = Codec(k=4, m=2, fragment_size=64)


@pytest.mark.parametrize("size", [1, 3, 4, 5, 63, 255, 256, 257, 1000])
def test_any_four_fragments_decode(size: int) -> None:
    coder = ErasureCoder(SMALL)
    segment = os.urandom(size)
    fragments = coder.encode(segment)
    assert len(fragments) == 6
    # Systematic: data fragment i's payload is the i-th slice of the segment.
    payload = -(-size // 4)
    padded = segment + bytes(4 * payload - size)
    for i in range(4):
        assert bytes(fragments[i])[80:] == padded[i * payload : (i + 1) * payload]
    for keep in itertools.combinations(range(6), 4):
        assert coder.decode({i: fragments[i] for i in keep}, size) == segment
        lost = [i for i in range(6) if i not in keep]
        rebuilt = coder.reconstruct({i: fragments[i] for i in keep}, lost)
        for i in lost:
            assert rebuilt[i] == bytes(fragments[i])  # identical: recorded digests still hold
    with pytest.raises(NotEnoughFragments):
        coder.decode({i: fragments[i] for i in range(3)}, size)


def test_plain_split_needs_every_data_fragment() -> None:
    coder = ErasureCoder(Codec(k=6, m=0, fragment_size=8))
    segment = os.urandom(40)
    fragments = coder.encode(segment)
    assert coder.decode(dict(enumerate(fragments)), 40) == segment
    with pytest.raises(NotEnoughFragments):
        coder.decode({i: fragments[i] for i in range(5)}, 40)


def test_default_quorum() -> None:
    assert default_quorum(RS_4_2) == 5
    assert default_quorum(PLAIN_SPLIT) == 6


# --- in-memory nodes ------------------------------------------------------------------


@dataclass
class FakeNode:
    node_id: str
    chunks: dict[str, bytearray] = field(default_factory=dict)
    mode: str = "ok"  # ok | down | hang | corrupt
    reads: int = 0
    fail_after_bytes: int | None = None  # writes fail once this many bytes arrived
    # Streams: frames of this size (not aligned to fragments), every call recorded as
    # (chunk id, offset, length); `stream_fault` = (what, after how many bytes of a stream)
    # with what in down | hang | corrupt; `open_streams` counts streams not yet closed and
    # `delivered` the bytes all streams have yielded.
    frame: int = 50
    stream_calls: list[tuple[str, int, int | None]] = field(default_factory=list)
    stream_fault: tuple[str, int] | None = None
    open_streams: int = 0
    delivered: int = 0

    async def _gate(self) -> None:
        if self.mode == "down":
            raise NodeUnavailable(self.node_id, "down")
        if self.mode == "hang":
            await asyncio.Event().wait()

    async def read_chunk(self, cid: str, offset: int, length: int) -> bytes:
        self.reads += 1
        await self._gate()
        if cid not in self.chunks:
            raise ChunkNotFound(self.node_id, cid)
        data = bytes(self.chunks[cid][offset : offset + length])
        if self.mode == "corrupt":
            data = bytes([data[0] ^ 1]) + data[1:]
        return data

    async def stream_chunk(
        self, cid: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        self.stream_calls.append((cid, offset, length))
        self.open_streams += 1
        try:
            await self._gate()
            if cid not in self.chunks:
                raise ChunkNotFound(self.node_id, cid)
            chunk = self.chunks[cid]
            data = bytearray(chunk[offset : len(chunk) if length is None else offset + length])
            what, after = self.stream_fault or ("", len(data))
            if self.mode == "corrupt":
                what, after = "corrupt", 0
            if what == "corrupt" and after < len(data):
                data[after] ^= 1
            for at in range(0, len(data), self.frame):
                if what in ("down", "hang") and at + self.frame > after:
                    if after > at:
                        self.delivered += after - at
                        yield bytes(data[at:after])  # the bytes before the fault arrive
                    if what == "down":
                        raise NodeUnavailable(self.node_id, "connection lost")
                    await asyncio.Event().wait()
                await asyncio.sleep(0)  # let other streams and tasks run between frames
                frame = bytes(data[at : at + self.frame])
                self.delivered += len(frame)
                yield frame
        finally:
            self.open_streams -= 1

    async def open_chunk_writer(self, cid: str) -> FakeWriter:
        await self._gate()
        return FakeWriter(self, cid)


@dataclass
class FakeWriter:
    node: FakeNode
    cid: str
    data: bytearray = field(default_factory=bytearray)

    async def write(self, data: bytes | memoryview) -> None:
        await self.node._gate()
        self.data += data
        limit = self.node.fail_after_bytes
        if limit is not None and len(self.data) > limit:
            raise NodeUnavailable(self.node.node_id, "connection lost")

    async def finish(self) -> StoredChunk:
        await self.node._gate()
        self.node.chunks[self.cid] = self.data
        return StoredChunk(len(self.data), xxhash.xxh3_128_digest(bytes(self.data)))

    async def abort(self) -> None:
        return None


class FakeNodes:
    def __init__(self, n: int = 6) -> None:
        self.nodes = {f"n{i}": FakeNode(f"n{i}") for i in range(n)}

    def client(self, node_id: str) -> FakeNode:
        return self.nodes[node_id]

    def placement(self, key: str, n: int) -> list[str]:
        return sorted(self.nodes)[:n]

    def all_clients(self) -> list[FakeNode]:
        return list(self.nodes.values())


async def _body(data: bytes, piece: int = 100) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]


async def _write(nodes: FakeNodes, codec: Codec, data: bytes) -> tuple[MemoryMetadata, Blob]:
    meta = MemoryMetadata()
    for node_id in nodes.nodes:
        meta.nodes[node_id] = NodeInfo(node_id, "x", "active")
    writer = BlobWriter(meta, nodes, codec, BodyChecks(content_length=len(data)))  # type: ignore[arg-type]
    written = await writer.run(_body(data))
    placements = tuple(
        ChunkPlacement(i, node_id, c.frag_sums, present=c.size is not None)
        for (i, node_id), c in zip(enumerate(writer.placement), written.chunks, strict=True)
    )
    return meta, Blob(written.blob_id, codec, written.size, placements)


async def _read(nodes: FakeNodes, blob: Blob, first: int, last: int, hedge: float = 5) -> bytes:
    reader = BlobReader(nodes, blob, hedge=hedge)  # type: ignore[arg-type]
    return b"".join([piece async for piece in reader.stream(first, last)])


DATA = os.urandom(1000)  # 4 segments of 256 bytes (the last 232) with SMALL


def test_healthy_read_fetches_only_the_data_fragments_it_needs() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        assert await _read(nodes, blob, 0, 999) == DATA
        # Four segments: a stream per data chunk for every window of them; parity never read.
        window = BlobReader(nodes, blob).stream_segments  # type: ignore[arg-type]
        per_chunk = -(-4 // window)
        streams = [len(nodes.nodes[f"n{i}"].stream_calls) for i in range(6)]
        assert streams == [per_chunk] * 4 + [0, 0]
        assert sum(n.reads for n in nodes.nodes.values()) == 0
        # Within one segment: one call per data fragment it needs, no stream.
        assert await _read(nodes, blob, 70, 75) == DATA[70:76]
        assert sum(n.reads for n in nodes.nodes.values()) == 1
        assert sum(len(n.stream_calls) for n in nodes.nodes.values()) == 4 * per_chunk

    asyncio.run(run())


@pytest.mark.parametrize("lost", [(0,), (5,), (0, 1), (1, 3), (2, 4), (4, 5)])
@pytest.mark.parametrize("how", ["down", "corrupt", "hang", "deleted"])
def test_reads_survive_any_two_bad_nodes(lost: tuple[int, ...], how: str) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        for i in lost:
            node = nodes.nodes[f"n{i}"]
            if how == "deleted":
                node.chunks.clear()
            else:
                node.mode = how
        for first, last in [(0, 999), (70, 75), (250, 530), (999, 999)]:
            got = await asyncio.wait_for(_read(nodes, blob, first, last, hedge=0.01), 5)
            assert got == DATA[first : last + 1]

    asyncio.run(run())


def test_three_bad_nodes_is_service_unavailable() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        for i in (0, 2, 5):
            nodes.nodes[f"n{i}"].mode = "down"
        with pytest.raises(errors.ServiceUnavailable):
            await _read(nodes, blob, 0, 999)

    asyncio.run(run())


def test_plain_split_cannot_lose_a_node() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        codec = Codec(k=6, m=0, fragment_size=64)
        _, blob = await _write(nodes, codec, DATA)
        assert await _read(nodes, blob, 0, 999) == DATA
        nodes.nodes["n2"].mode = "corrupt"
        with pytest.raises(errors.ServiceUnavailable):
            await _read(nodes, blob, 0, 999)

    asyncio.run(run())


def test_write_commits_with_the_quorum_and_records_the_missing_chunk() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        nodes.nodes["n1"].fail_after_bytes = 300
        _, blob = await _write(nodes, SMALL, DATA)
        assert [c.present for c in blob.chunks] == [True, False, True, True, True, True]
        assert chunk_id(blob.blob_id.hex, 1) not in nodes.nodes["n1"].chunks
        # The missing chunk's digests are recorded all the same (for its repair).
        assert len(blob.chunks[1].frag_sums) == 8 * 4
        assert await _read(nodes, blob, 0, 999) == DATA

    asyncio.run(run())


@pytest.mark.parametrize("failing", [("n1", "n4"), ("n0", "n5")])
def test_write_below_the_quorum_is_slow_down(failing: tuple[str, str]) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        nodes.nodes[failing[0]].mode = "down"  # refuses the chunk at once
        nodes.nodes[failing[1]].fail_after_bytes = 500  # dies mid-write
        with pytest.raises(errors.SlowDown) as exc:
            await _write(nodes, SMALL, DATA)
        assert exc.value.headers["Retry-After"] == "1"
        assert exc.value.status == 503

    asyncio.run(run())


def test_a_chunk_that_failed_is_not_asked_again_in_the_same_read() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        for node in nodes.nodes.values():
            node.reads = 0
        nodes.nodes["n0"].mode = "down"
        reported: list[int] = []
        reader = BlobReader(
            nodes,  # type: ignore[arg-type]
            blob,
            report=lambda _blob, index, _exc: reported.append(index),
        )
        got = b"".join([piece async for piece in reader.stream(0, 999)])
        assert got == DATA
        # Four segments: n0's stream fails at once; the segment read ahead waits for its
        # turn at the streams, so n0 is never asked again; reported once.
        assert len(nodes.nodes["n0"].stream_calls) == 1
        assert nodes.nodes["n0"].reads == 0
        assert reported == [0]
        # Within one segment, a failed call is not repeated either.
        reported.clear()
        reader = BlobReader(
            nodes,  # type: ignore[arg-type]
            blob,
            report=lambda _blob, index, _exc: reported.append(index),
        )
        assert b"".join([piece async for piece in reader.stream(0, 200)]) == DATA[:201]
        assert nodes.nodes["n0"].reads == 1
        assert reported == [0]

    asyncio.run(run())
