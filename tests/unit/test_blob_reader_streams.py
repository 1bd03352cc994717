"""Multi-segment reads stream each data chunk, over the in-memory nodes of test_erasure.py:
exact bytes for any range and any framing, one stream per chunk (or per window of
segments, when bounded), and streams that fail, corrupt or stall mid-way are gone around
without a wrong byte."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable

import pytest

from s3compat import metrics
from s3compat.core import errors
from s3compat.core.layout import BlobLayout, Codec, chunk_id
from s3compat.core.models import Blob
from s3compat.core.ports import NodeError
from s3compat.service.blob_reader import STREAM_BYTES, BlobReader, _join, _run_ends
from tests.unit.test_erasure import SMALL, FakeNodes, _write

# With SMALL (k=4, F=64): segments of 256 bytes, stored fragments of 80 + 64 = 144 bytes.
SEGMENT = SMALL.segment_size
STORED = SMALL.header_size + SMALL.fragment_size
DATA = os.urandom(1000)  # 4 segments, the last of 232 bytes (fragments of 58)
SHORT = os.urandom(3 * SEGMENT + 5)  # the last segment's 5 bytes leave index 3 as padding

RANGES = [
    (0, 999),  # whole blob
    (1, 998),  # mid-fragment at both ends
    (100, 700),  # mid-segment to mid-segment
    (255, 256),  # one byte either side of a segment boundary
    (63, 64 + SEGMENT),  # fragment boundaries
    (300, 999),  # into the last, short segment
    (700, 800),  # the boundary before it
    (192, 511),  # the last fragment of one segment to the end of the next
]


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _degraded() -> float:
    return _sample("s3compat_degraded_reads_total")


def _hedged() -> float:
    return _sample("s3compat_hedged_reads_total")


UNBOUNDED = 1 << 30  # segments per stream: one stream per chunk for any range here


def _reader(
    nodes: FakeNodes,
    blob: Blob,
    reported: list[int] | None = None,
    hedge: float = 5,
    window: int = UNBOUNDED,
) -> BlobReader:
    def report(_blob: Blob, index: int, _exc: NodeError) -> None:
        if reported is not None:
            reported.append(index)

    return BlobReader(  # type: ignore[arg-type]
        nodes, blob, hedge=hedge, report=report, stream_segments=window
    )


async def _read(reader: BlobReader, first: int, last: int) -> bytes:
    return b"".join([piece async for piece in reader.stream(first, last)])


def _run(test: Callable[[], Awaitable[None]]) -> None:
    async def checked() -> None:
        await test()
        # Nothing the reader started may outlive the read.
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(checked())


def _assert_all_closed(nodes: FakeNodes) -> None:
    assert [n.open_streams for n in nodes.nodes.values()] == [0] * len(nodes.nodes)


def _wanted(layout: BlobLayout, first: int, last: int) -> dict[int, list[int]]:
    """Per data index, the segments of first..last that want it."""
    runs: dict[int, list[int]] = {}
    for reads in layout.reads_for_range(first, last):
        for r in reads:
            runs.setdefault(r.index, []).append(r.segment)
    return runs


@pytest.mark.parametrize("size", [len(DATA), len(SHORT), 4 * SEGMENT, 1])
def test_each_index_is_wanted_by_a_contiguous_run_of_segments(size: int) -> None:
    layout = BlobLayout(SMALL, size)
    rng = random.Random(size)
    for _ in range(3000):
        first = rng.randrange(size)
        last = rng.randrange(first, size)
        runs = _wanted(layout, first, last)
        for segments in runs.values():
            assert segments == list(range(segments[0], segments[-1] + 1))
        if first // SEGMENT != last // SEGMENT:
            ends = _run_ends(layout, first, last)
            assert {i: s[-1] for i, s in runs.items()} == {i: ends[i] for i in runs}


@pytest.mark.parametrize("frame", [1, 50, STORED, 1000])
@pytest.mark.parametrize(("data", "first", "last"), [(DATA, *r) for r in RANGES])
def test_multi_segment_reads_stream_each_data_chunk_once(
    frame: int, data: bytes, first: int, last: int
) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, data)
        for node in nodes.nodes.values():
            node.frame = frame
        reported: list[int] = []
        degraded = _degraded()
        assert await _read(_reader(nodes, blob, reported), first, last) == data[first : last + 1]
        assert reported == []
        assert _degraded() == degraded
        assert sum(n.reads for n in nodes.nodes.values()) == 0  # no call per fragment
        # Exactly one stream per data chunk the range touches, asking for exactly the
        # fragments it wants, from the first wanted one on.
        layout = blob.layout
        for index, segments in _wanted(layout, first, last).items():
            start, end = segments[0], segments[-1]
            offset = layout.chunk_offset(start)
            length = layout.chunk_offset(end) + layout.fragment_len(end) - offset
            calls = nodes.nodes[f"n{index}"].stream_calls
            assert calls == [(chunk_id(blob.blob_id.hex, index), offset, length)]
        assert nodes.nodes["n4"].stream_calls == nodes.nodes["n5"].stream_calls == []
        _assert_all_closed(nodes)

    _run(run)


@pytest.mark.parametrize(("first", "last"), [(0, len(SHORT) - 1), (10, 3 * SEGMENT + 1)])
def test_a_short_last_segment_needs_fewer_chunks(first: int, last: int) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, SHORT)
        assert await _read(_reader(nodes, blob), first, last) == SHORT[first : last + 1]
        # Index 3 holds only padding in the last segment: its stream stops one segment early.
        (_, offset, length) = nodes.nodes["n3"].stream_calls[0]
        assert offset + (length or 0) == blob.layout.chunk_offset(3)
        _assert_all_closed(nodes)

    _run(run)


@pytest.mark.parametrize("what", ["down", "corrupt"])
@pytest.mark.parametrize("after", [0, 100, STORED, 2 * STORED + 7, 3 * STORED + 1])
@pytest.mark.parametrize("index", [0, 2])
def test_a_stream_failing_midway_is_rebuilt_around_and_reported_once(
    what: str, after: int, index: int
) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        node = nodes.nodes[f"n{index}"]
        node.stream_fault = (what, after)
        reported: list[int] = []
        degraded = _degraded()
        failures = _sample("s3compat_fragment_failures_total", {"node": node.node_id})
        assert await _read(_reader(nodes, blob, reported), 0, 999) == DATA
        assert reported == [index]
        assert len(node.stream_calls) == 1  # never a second stream for it
        # Fragments before the fault came from the stream; from the faulty one on, every
        # segment is rebuilt with parity.
        assert _degraded() - degraded == 4 - after // STORED
        assert _sample("s3compat_fragment_failures_total", {"node": node.node_id}) > failures
        assert nodes.nodes["n4"].reads == 4 - after // STORED
        # What the other streams brought is used as is, never asked for again.
        assert sum(nodes.nodes[f"n{i}"].reads for i in range(4)) == 0
        _assert_all_closed(nodes)

    _run(run)


def test_two_failing_streams_still_give_exact_bytes_and_three_do_not() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        nodes.nodes["n1"].stream_fault = ("down", 200)
        nodes.nodes["n3"].stream_fault = ("corrupt", 400)
        reported: list[int] = []
        assert await _read(_reader(nodes, blob, reported), 5, 990) == DATA[5:991]
        assert sorted(reported) == [1, 3]
        _assert_all_closed(nodes)

        # A third bad chunk: the segment cannot be rebuilt, and the streams of the two
        # good data chunks are closed all the same.
        nodes.nodes["n1"].mode = "down"
        nodes.nodes["n3"].mode = "corrupt"
        nodes.nodes["n4"].mode = "down"
        with pytest.raises(errors.ServiceUnavailable):
            await _read(_reader(nodes, blob), 5, 990)
        assert len(nodes.nodes["n0"].stream_calls) == 2
        _assert_all_closed(nodes)

    _run(run)


@pytest.mark.parametrize("after", [0, STORED + 3])
def test_a_stalled_stream_is_hedged_with_parity_and_not_reported(after: int) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        node = nodes.nodes["n1"]
        node.stream_fault = ("hang", after)
        reported: list[int] = []
        degraded, hedged = _degraded(), _hedged()
        reader = _reader(nodes, blob, reported, hedge=0.05)
        got = await asyncio.wait_for(_read(reader, 0, 999), 5)
        assert got == DATA
        assert reported == []  # slow is not broken
        assert _hedged() - hedged == 1
        assert _degraded() - degraded == 4 - after // STORED
        assert len(node.stream_calls) == 1
        assert node.reads == 0  # the rest of its fragments are rebuilt, not asked for
        _assert_all_closed(nodes)

    _run(run)


def test_the_next_segment_is_read_ahead_and_no_further() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        data = os.urandom(8 * SEGMENT)
        _, blob = await _write(nodes, SMALL, data)
        stream = _reader(nodes, blob).stream(0, len(data) - 1)
        first = await anext(stream)
        await asyncio.sleep(0.05)  # a slow consumer: the reader gets ahead meanwhile
        for node in list(nodes.nodes.values())[:4]:
            # Segments 0 and 1 taken, and at most the rest of one frame beyond.
            assert 2 * STORED <= node.delivered < 2 * STORED + node.frame
        rest = b"".join([piece async for piece in stream])
        assert first + rest == data

    _run(run)


def test_a_consumer_closing_early_closes_every_stream() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        data = os.urandom(20 * SEGMENT)
        _, blob = await _write(nodes, SMALL, data)
        stream = _reader(nodes, blob).stream(10, len(data) - 10)
        assert await anext(stream) == data[10:64]
        await asyncio.sleep(0.01)
        assert sum(n.open_streams for n in nodes.nodes.values()) == 4
        await stream.aclose()
        _assert_all_closed(nodes)

    _run(run)


def test_a_cancelled_consumer_cancels_every_stream() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        data = os.urandom(20 * SEGMENT)
        _, blob = await _write(nodes, SMALL, data)
        nodes.nodes["n2"].stream_fault = ("hang", 5 * STORED)  # waits out the hedge
        stream = _reader(nodes, blob, hedge=30).stream(0, len(data) - 1)

        async def consume() -> None:
            async for _ in stream:
                pass

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        assert not consumer.done()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # as the gateway's GET does
        _assert_all_closed(nodes)

    _run(run)


def test_plain_split_streams_whole_frames_too() -> None:
    async def run() -> None:
        nodes = FakeNodes()
        codec = Codec(k=6, m=0, fragment_size=64)
        _, blob = await _write(nodes, codec, DATA)
        for node in nodes.nodes.values():
            node.frame = 64  # one frame per fragment: handed on without a copy
        assert await _read(_reader(nodes, blob), 0, 999) == DATA
        assert [len(n.stream_calls) for n in nodes.nodes.values()] == [1] * 6
        # Without parity, a broken stream's fragments can only be asked for one by one.
        node = nodes.nodes["n2"]
        node.stream_fault = ("down", 70)
        reported: list[int] = []
        assert await _read(_reader(nodes, blob, reported), 0, 999) == DATA
        assert (len(node.stream_calls), node.reads, reported) == (2, 2, [2])
        node.mode = "corrupt"
        with pytest.raises(errors.ServiceUnavailable):
            await _read(_reader(nodes, blob), 0, 999)
        _assert_all_closed(nodes)

    _run(run)


@pytest.mark.parametrize(("first", "last"), [(0, 255), (70, 75), (768, 999)])
def test_single_segment_reads_ask_for_each_fragment(first: int, last: int) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        assert await _read(_reader(nodes, blob), first, last) == DATA[first : last + 1]
        assert sum(len(n.stream_calls) for n in nodes.nodes.values()) == 0
        wanted = next(blob.layout.reads_for_range(first, last))
        assert sum(n.reads for n in nodes.nodes.values()) == len(wanted)

    _run(run)


def test_join_copies_once_and_whole_frames_not_at_all() -> None:
    frame = os.urandom(100)
    view = memoryview(frame)
    assert _join([view]) is frame
    assert _join([view[:40], view[40:]], 0, 100) == frame
    assert (
        _join([view[:40], memoryview(b"xyz"), view[40:]], 38, 45)
        == frame[38:40] + b"xyz" + frame[40:42]
    )
    assert _join([view[10:]], 5, 20) == frame[15:30]


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize(("first", "last"), RANGES)
def test_a_bounded_window_opens_one_stream_per_stretch_of_segments(
    window: int, first: int, last: int
) -> None:
    """Each stream asks for at most `window` fragments; together they cover each chunk's
    wanted run once, end to end, in order."""

    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        got = await _read(_reader(nodes, blob, window=window), first, last)
        assert got == DATA[first : last + 1]
        assert sum(n.reads for n in nodes.nodes.values()) == 0
        layout = blob.layout
        if first // SEGMENT == last // SEGMENT:
            return  # one segment: the per-fragment path
        for index, segments in _wanted(layout, first, last).items():
            expected = []
            for at in range(0, len(segments), window):
                start, end = segments[at], segments[min(at + window, len(segments)) - 1]
                offset = layout.chunk_offset(start)
                length = layout.chunk_offset(end) + layout.fragment_len(end) - offset
                expected.append((chunk_id(blob.blob_id.hex, index), offset, length))
            assert nodes.nodes[f"n{index}"].stream_calls == expected
        _assert_all_closed(nodes)

    _run(run)


@pytest.mark.parametrize("what", ["down", "corrupt"])
def test_a_chunk_that_failed_in_one_window_is_not_streamed_in_the_next(what: str) -> None:
    async def run() -> None:
        nodes = FakeNodes()
        _, blob = await _write(nodes, SMALL, DATA)
        node = nodes.nodes["n1"]
        node.stream_fault = (what, 0)
        reported: list[int] = []
        assert await _read(_reader(nodes, blob, reported, window=2), 0, 999) == DATA
        assert reported == [1]
        assert len(node.stream_calls) == 1  # the second window goes around it
        assert [len(nodes.nodes[f"n{i}"].stream_calls) for i in (0, 2, 3)] == [2, 2, 2]
        _assert_all_closed(nodes)

    _run(run)


@pytest.mark.parametrize(
    ("fragment_size", "window"),
    [(512 << 10, 3), (1 << 20, 1), (256 << 10, 6), (64 << 20, 1), (64, STREAM_BYTES // 64)],
)
def test_the_default_window_is_a_byte_budget_per_stream(fragment_size: int, window: int) -> None:
    """Each stream asks for at most STREAM_BYTES of its chunk (whole fragments, at least
    one), whatever the blob's fragment size: blobs written with another S3COMPAT_FRAGMENT_SIZE
    keep the same bound on what their streams can buffer."""
    codec = Codec(k=4, m=2, fragment_size=fragment_size)
    blob = Blob(uuid.uuid4(), codec, 10 * fragment_size, ())
    assert BlobReader(FakeNodes(), blob).stream_segments == window  # type: ignore[arg-type]
