"""The on-disk chunk store, without gRPC."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import xxhash

from nodeserver import chunkfile
from nodeserver.chunkfile import DEFAULT_BLOCK_SIZE as BS
from nodeserver.chunkfile import DIGEST_SIZE, HEADER_SIZE
from nodeserver.chunkstore import ChunkStore, check_range, validate_chunk_id
from nodeserver.errors import (
    ChunkMismatch,
    ChunkMissing,
    ChunkStoreError,
    CorruptChunk,
    InvalidChunkId,
    RangeNotSatisfiable,
)

T = TypeVar("T")
MiB = 1 << 20


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return asyncio.run(main())


def new_id(index: int = 0) -> str:
    return f"{uuid.uuid4().hex}-{index}"


def file_size(size: int) -> int:
    return HEADER_SIZE + size + DIGEST_SIZE * -(-size // BS)


async def put(store: ChunkStore, chunk_id: str, data: bytes, piece: int = 300_000) -> None:
    write = await store.begin_write(chunk_id)
    for start in range(0, len(data), piece):
        await write.write(data[start : start + piece])
    meta = await write.commit(size=len(data), checksum=xxhash.xxh3_128(data).digest())
    assert meta.size == len(data)


async def read_all(store: ChunkStore, chunk_id: str, offset: int, length: int) -> bytes:
    reader = await store.open_chunk(chunk_id)
    try:
        return await reader.read(offset, length)
    finally:
        await reader.close()


def tmp_entries(store: ChunkStore) -> list[str]:
    return sorted(os.listdir(store.tmp_dir))


@pytest.mark.parametrize("size", [0, 1, 4096, BS - 1, BS, BS + 1, 3 * MiB + 7])
def test_round_trip(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    chunk_id = new_id(3)

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        path = tmp_path / "chunks" / chunk_id[0:2] / chunk_id[2:4] / chunk_id
        assert path.is_file()
        assert path.stat().st_size == file_size(size)
        meta = await store.stat(chunk_id)
        assert (meta.size, meta.checksum) == (size, xxhash.xxh3_128(data).digest())
        assert await read_all(store, chunk_id, 0, size) == data
        assert tmp_entries(store) == []
        assert (store.chunk_count, store.used_bytes) == (1, file_size(size))
        await store.close()

    run(body)


def test_ranged_reads_cross_block_boundaries(tmp_path: Path) -> None:
    size = 3 * MiB + 7
    data = os.urandom(size)
    chunk_id = new_id()
    ranges = [
        (0, 0),
        (0, 1),
        (BS - 1, 2),
        (BS - 100, 200),
        (BS, BS),
        (BS + 1, 4 * BS),
        (3 * BS + 5, MiB + 3),
        (size - 1, 1),
        (size, 0),
        (size - 5000, 5000),
        (12345, size - 12345),
    ]

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        reader = await store.open_chunk(chunk_id)
        for offset, length in ranges:
            pieces = [bytes(p) async for p in reader.iter_range(offset, length, MiB)]
            assert all(0 < len(p) <= MiB for p in pieces)
            assert b"".join(pieces) == data[offset : offset + length], (offset, length)
        for offset, length in [(size + 1, 0), (0, size + 1), (size - 3, 4), (size + 10, None)]:
            with pytest.raises(RangeNotSatisfiable):
                check_range(reader.meta, offset, length)
            with pytest.raises(RangeNotSatisfiable):
                async for _ in reader.iter_range(offset, length or 0, MiB):
                    pass
        assert check_range(reader.meta, 10, None) == size - 10
        await reader.close()
        await store.close()

    run(body)


def test_small_read_hashes_only_the_touched_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * MiB)
    chunk_id = new_id()
    hashed: list[int] = []
    real = xxhash.xxh3_64_digest

    def counting(block: memoryview) -> bytes:
        hashed.append(len(block))
        return real(block)

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        monkeypatch.setattr(chunkfile.xxhash, "xxh3_64_digest", counting)
        offset = 2 * MiB + 100
        assert await read_all(store, chunk_id, offset, 4096) == data[offset : offset + 4096]
        await store.close()

    run(body)
    assert hashed == [BS]


@pytest.mark.parametrize(
    ("declared_size", "declared_checksum"),
    [(999, None), (1001, None), (None, b"\x00" * 16), (1000, b"\x00" * 16)],
)
def test_mismatch_keeps_nothing(
    tmp_path: Path, declared_size: int | None, declared_checksum: bytes | None
) -> None:
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        write = await store.begin_write(chunk_id)
        await write.write(os.urandom(1000))
        assert len(tmp_entries(store)) == 1
        with pytest.raises(ChunkMismatch):
            await write.commit(size=declared_size, checksum=declared_checksum)
        assert tmp_entries(store) == []
        with pytest.raises(ChunkMissing):
            await store.stat(chunk_id)
        assert (store.chunk_count, store.used_bytes) == (0, 0)
        await write.abort()  # harmless afterwards
        await store.close()

    run(body)


def test_abort_removes_temp_file(tmp_path: Path) -> None:
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        write = await store.begin_write(chunk_id)
        await write.write(os.urandom(2 * MiB))
        assert len(tmp_entries(store)) == 1
        await write.abort()
        await write.abort()
        assert tmp_entries(store) == []
        with pytest.raises(ChunkStoreError):
            await write.write(b"more")
        with pytest.raises(ChunkMissing):
            await store.stat(chunk_id)
        await store.close()

    run(body)


def test_failed_fsync_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunk_id = new_id()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "simulated I/O error")

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        write = await store.begin_write(chunk_id)
        await write.write(b"data")
        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="simulated"):
            await write.commit()
        monkeypatch.undo()
        assert tmp_entries(store) == []
        with pytest.raises(ChunkMissing):
            await store.stat(chunk_id)
        await store.close()

    run(body)


def test_store_replaces_existing_chunk(tmp_path: Path) -> None:
    chunk_id = new_id()
    first, second = os.urandom(5000), os.urandom(BS + 10)

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, first)
        old_reader = await store.open_chunk(chunk_id)
        await put(store, chunk_id, second)
        assert await read_all(store, chunk_id, 0, len(second)) == second
        # A read that started before the replacement keeps seeing the old, whole chunk.
        assert await old_reader.read(0, len(first)) == first
        await old_reader.close()
        assert (store.chunk_count, store.used_bytes) == (1, file_size(len(second)))
        await store.close()

    run(body)


def test_delete_is_idempotent_and_counted(tmp_path: Path) -> None:
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, b"x" * 10)
        assert await store.delete(chunk_id) is True
        assert await store.delete(chunk_id) is False
        assert (store.chunk_count, store.used_bytes) == (0, 0)
        with pytest.raises(ChunkMissing):
            await store.stat(chunk_id)
        usage = await store.usage()
        assert (usage.chunk_count, usage.used_bytes) == (0, 0)
        assert usage.free_bytes > 0
        await store.close()

    run(body)


def chunk_path(root: Path, chunk_id: str) -> Path:
    return root / "chunks" / chunk_id[0:2] / chunk_id[2:4] / chunk_id


def flip(path: Path, position: int) -> None:
    with path.open("r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x01]))


def test_corrupt_block_fails_only_reads_that_touch_it(tmp_path: Path) -> None:
    data = os.urandom(4 * BS)
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        flip(chunk_path(tmp_path, chunk_id), HEADER_SIZE + 2 * BS + 17)
        with pytest.raises(CorruptChunk):
            await read_all(store, chunk_id, 2 * BS, 10)
        with pytest.raises(CorruptChunk):
            await read_all(store, chunk_id, 0, len(data))
        assert await read_all(store, chunk_id, 0, BS) == data[:BS]
        assert await read_all(store, chunk_id, 3 * BS, BS) == data[3 * BS :]
        await store.close()

    run(body)


def test_corrupt_block_digest_is_detected(tmp_path: Path) -> None:
    data = os.urandom(2 * BS)
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        flip(chunk_path(tmp_path, chunk_id), HEADER_SIZE + len(data) + DIGEST_SIZE + 3)
        assert await read_all(store, chunk_id, 0, BS) == data[:BS]
        with pytest.raises(CorruptChunk):
            await read_all(store, chunk_id, BS, 1)
        await store.close()

    run(body)


@pytest.mark.parametrize("position", [0, 9, 20, 30, 45])
def test_corrupt_header_is_detected(tmp_path: Path, position: int) -> None:
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, os.urandom(1000))
        flip(chunk_path(tmp_path, chunk_id), position)
        with pytest.raises(CorruptChunk):
            await store.stat(chunk_id)
        await store.close()

    run(body)


@pytest.mark.parametrize("change", [-1, -DIGEST_SIZE, -(DIGEST_SIZE + 1000), 1])
def test_wrong_file_length_is_detected(tmp_path: Path, change: int) -> None:
    data = os.urandom(BS + 5000)
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        path = chunk_path(tmp_path, chunk_id)
        os.truncate(path, path.stat().st_size + change)
        with pytest.raises(CorruptChunk):
            await read_all(store, chunk_id, 0, 10)
        with pytest.raises(CorruptChunk):
            await store.stat(chunk_id)
        await store.close()

    run(body)


def test_file_shrinking_during_read_is_detected(tmp_path: Path) -> None:
    data = os.urandom(3 * BS)
    chunk_id = new_id()

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        await put(store, chunk_id, data)
        reader = await store.open_chunk(chunk_id)
        assert await reader.read(0, 100) == data[:100]
        # The block digests live at the end, so any read now sees the damage.
        os.truncate(chunk_path(tmp_path, chunk_id), HEADER_SIZE + 2 * BS)
        for offset in (0, 2 * BS):
            with pytest.raises(CorruptChunk):
                await reader.read(offset, 100)
        await reader.close()
        await store.close()

    run(body)


BAD_IDS = [
    "",
    "../x",
    "../" + "0" * 32 + "-1",
    "0" * 32 + "-1/../../x",
    "A" * 32 + "-1",
    "0" * 31 + "-1",
    "0" * 33 + "-1",
    "0" * 32 + "-1234",
    "0" * 32 + "-",
    "0" * 32,
    "0" * 32 + "-1\n",
    "0" * 32 + "-١",  # a non-ASCII digit
    "g" * 32 + "-1",
]


@pytest.mark.parametrize("chunk_id", BAD_IDS)
def test_malformed_ids_are_refused(tmp_path: Path, chunk_id: str) -> None:
    with pytest.raises(InvalidChunkId):
        validate_chunk_id(chunk_id)

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        with pytest.raises(InvalidChunkId):
            await store.begin_write(chunk_id)
        with pytest.raises(InvalidChunkId):
            await store.open_chunk(chunk_id)
        with pytest.raises(InvalidChunkId):
            await store.delete(chunk_id)
        await store.close()

    run(body)
    assert tmp_entries_of(tmp_path) == []
    assert os.listdir(tmp_path / "chunks") == []


def tmp_entries_of(root: Path) -> list[str]:
    return os.listdir(root / "tmp")


def test_valid_ids() -> None:
    for chunk_id in ["0" * 32 + "-0", "f" * 32 + "-999", "0123456789abcdef" * 2 + "-42"]:
        assert validate_chunk_id(chunk_id) == chunk_id


def test_startup_empties_tmp_and_counts_chunks(tmp_path: Path) -> None:
    ids = [new_id(i) for i in range(3)]
    sizes = [0, 10, BS + 1]

    async def first_run() -> None:
        store = await ChunkStore.open(tmp_path)
        for chunk_id, size in zip(ids, sizes, strict=True):
            await put(store, chunk_id, os.urandom(size))
        # A write in progress when the process "crashes".
        write = await store.begin_write(new_id())
        await write.write(b"partial")
        await store.close()

    run(first_run)
    (tmp_path / "tmp" / "stray-dir").mkdir()
    (tmp_path / "tmp" / "stray-dir" / "f").write_bytes(b"x")
    assert len(tmp_entries_of(tmp_path)) == 2
    (tmp_path / "chunks" / "zz").mkdir()
    (tmp_path / "chunks" / ids[0][0:2] / ids[0][2:4] / "not-a-chunk").write_bytes(b"junk")

    async def second_run() -> None:
        store = await ChunkStore.open(tmp_path)
        assert tmp_entries_of(tmp_path) == []
        assert store.chunk_count == 3
        assert store.used_bytes == sum(file_size(s) for s in sizes)
        await store.close()

    run(second_run)


def test_one_store_per_directory(tmp_path: Path) -> None:
    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        with pytest.raises(ChunkStoreError, match="in use"):
            await ChunkStore.open(tmp_path)
        await store.close()
        again = await ChunkStore.open(tmp_path)
        await again.close()

    run(body)


def test_header_round_trip() -> None:
    meta = chunkfile.ChunkMeta(size=2**40 + 1, checksum=bytes(range(16)), block_size=BS)
    raw = chunkfile.pack_header(meta)
    assert len(raw) == HEADER_SIZE
    assert chunkfile.unpack_header(raw) == meta
    with pytest.raises(CorruptChunk):
        chunkfile.unpack_header(raw[:-1])


def test_durability_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync the data, then rename, then fsync the directory; new fan-out dirs are made
    durable (parent fsynced) before the chunk is renamed into them."""
    chunk_id = new_id()
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    async def body() -> None:
        store = await ChunkStore.open(tmp_path)
        root = store.root.resolve()
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        write = await store.begin_write(chunk_id)
        await write.write(b"payload")
        await write.commit()
        monkeypatch.undo()
        final = chunk_path(root, chunk_id)
        assert events[0][0] == "fsync"
        assert events[0][1].startswith(str(root / "tmp"))
        assert events[1:] == [
            ("fsync", str(root / "chunks")),  # after creating chunks/<id[0:2]>
            ("fsync", str(final.parent.parent)),  # after creating .../<id[2:4]>
            ("rename", str(final)),
            ("fsync", str(final.parent)),
        ]
        await store.close()

    run(body)
