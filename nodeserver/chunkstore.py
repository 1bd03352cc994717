"""The node's chunk directory: atomic, verified chunk files on local disk.

Layout under the data directory:

    LOCK                          held (flock) while a node serves this directory
    chunks/<id[0:2]>/<id[2:4]>/<id>  one file per chunk (format: nodeserver.chunkfile)
    tmp/                          chunks being written; emptied at startup

Every blocking filesystem call runs in a worker thread (`asyncio.to_thread`), so a slow
disk delays only the requests that touch it, never the event loop. File descriptors are
guarded by a lock per write or read, so a cancelled request can never close a descriptor
that a worker thread is still using (the number could be reused by another file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nodeserver import chunkfile
from nodeserver.chunkfile import ChunkHasher, ChunkMeta
from nodeserver.errors import (
    ChunkMismatch,
    ChunkMissing,
    ChunkStoreError,
    InvalidChunkId,
    RangeNotSatisfiable,
)

log = logging.getLogger(__name__)

CHUNK_ID = re.compile(r"[0-9a-f]{32}-[0-9]{1,3}")
"""Blob id (hex) + "-" + chunk index. The only input that ever becomes a file name."""

_T = TypeVar("_T")
Buffer = bytes | bytearray | memoryview


def validate_chunk_id(chunk_id: str) -> str:
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    if not isinstance(chunk_id, str) or CHUNK_ID.fullmatch(chunk_id) is None:
        raise InvalidChunkId(f"invalid chunk id {chunk_id!r:.80}")
    return chunk_id


@dataclass(frozen=True, slots=True)
class StoreUsage:
    used_bytes: int  # sum of chunk file sizes (content plus header and block checksums)
    free_bytes: int  # available to this process on the data filesystem
    chunk_count: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _byte_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


async def _shielded(fn: Callable[[], _T]) -> _T:
    """Run cleanup in a thread and let it finish even if the awaiting task is cancelled."""
    return await asyncio.shield(asyncio.to_thread(fn))


async def _acquire(fn: Callable[[], _T], release: Callable[[_T], None]) -> _T:
    """Run `fn` (which opens something) in a thread; if the caller is cancelled meanwhile,
    `release` what it opened once it finishes, instead of leaking a descriptor or file."""
    future = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def orphaned(done: asyncio.Future[_T]) -> None:
            if not done.cancelled() and done.exception() is None:
                loop = asyncio.get_running_loop()
                loop.run_in_executor(None, _quietly, release, done.result())

        future.add_done_callback(orphaned)
        raise


def _quietly(release: Callable[[_T], None], resource: _T) -> None:
    try:
        release(resource)
    except OSError:
        log.exception("releasing an abandoned resource failed")


class ChunkStore:
    """Chunk files under one data directory. Create with `await ChunkStore.open(root)`."""

    def __init__(self, root: Path, block_size: int = chunkfile.DEFAULT_BLOCK_SIZE) -> None:
        if not chunkfile.MIN_BLOCK_SIZE <= block_size <= chunkfile.MAX_BLOCK_SIZE:
            raise ValueError(f"block size {block_size} out of range")
        self.root = root
        self.block_size = block_size
        self.chunks_dir = root / "chunks"
        self.tmp_dir = root / "tmp"
        self._counter_lock = threading.Lock()
        self._dir_lock = threading.Lock()
        self._ready_dirs: set[Path] = set()
        self._used_bytes = 0
        self._chunk_count = 0
        self._lock_fd = -1

    @classmethod
    async def open(
        cls, root: Path | str, block_size: int = chunkfile.DEFAULT_BLOCK_SIZE
    ) -> ChunkStore:
        store = cls(Path(root), block_size)
        await asyncio.to_thread(store._prepare)
        return store

    async def close(self) -> None:
        """Release the directory lock (open writes and reads keep their descriptors)."""
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            await asyncio.to_thread(os.close, fd)

    # -- startup ---------------------------------------------------------------------

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        for directory in (self.chunks_dir, self.tmp_dir):
            self._mkdir_durable(directory)
        self._empty_tmp()
        self._scan()

    def _take_lock(self) -> None:
        # Two nodes on one directory would delete each other's temp files at startup.
        fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ChunkStoreError(f"data directory {self.root} is in use by another node") from None
        self._lock_fd = fd

    def _empty_tmp(self) -> None:
        # A crash mid-write leaves a temp file that was never renamed, so no chunk is
        # visible; only the litter needs removing. Nothing else writes here yet.
        removed = 0
        for entry in os.scandir(self.tmp_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        if removed:
            _fsync_dir(self.tmp_dir)
            log.info("removed %d leftover temp file(s) from %s", removed, self.tmp_dir)

    def _scan(self) -> None:
        count = used = 0
        for first in os.scandir(self.chunks_dir):
            if not first.is_dir(follow_symlinks=False):
                log.warning("ignoring unexpected entry %s", first.path)
                continue
            for second in os.scandir(first.path):
                if not second.is_dir(follow_symlinks=False):
                    log.warning("ignoring unexpected entry %s", second.path)
                    continue
                self._ready_dirs.add(Path(second.path))
                for entry in os.scandir(second.path):
                    name = entry.name
                    if (
                        CHUNK_ID.fullmatch(name)
                        and name[0:2] == first.name
                        and name[2:4] == second.name
                        and entry.is_file(follow_symlinks=False)
                    ):
                        count += 1
                        used += entry.stat(follow_symlinks=False).st_size
                    else:
                        log.warning("ignoring unexpected entry %s", entry.path)
        with self._counter_lock:
            self._chunk_count, self._used_bytes = count, used
        log.info("chunk store %s: %d chunks, %d bytes", self.root, count, used)

    # -- paths and directories -------------------------------------------------------

    def path_for(self, chunk_id: str) -> Path:
        validate_chunk_id(chunk_id)
        return self.chunks_dir / chunk_id[0:2] / chunk_id[2:4] / chunk_id

    def _mkdir_durable(self, directory: Path) -> None:
        try:
            directory.mkdir()
        except FileExistsError:
            return
        # A new directory entry is only durable once its parent directory is fsynced;
        # without this a crash could lose the directory and every chunk renamed into it.
        _fsync_dir(directory.parent)

    def _ensure_fanout(self, directory: Path) -> None:
        if directory in self._ready_dirs:
            return
        # Under a lock, so a second writer cannot see the directory before its creator
        # has fsynced the parent and then report its own chunk durable too early.
        with self._dir_lock:
            self._mkdir_durable(directory.parent)
            self._mkdir_durable(directory)
            self._ready_dirs.add(directory)

    # -- counters --------------------------------------------------------------------

    @property
    def chunk_count(self) -> int:
        return self._chunk_count

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    async def usage(self) -> StoreUsage:
        stats = await asyncio.to_thread(os.statvfs, self.root)
        with self._counter_lock:
            used, count = self._used_bytes, self._chunk_count
        return StoreUsage(used, stats.f_bavail * stats.f_frsize, count)

    # -- operations ------------------------------------------------------------------

    async def begin_write(self, chunk_id: str) -> ChunkWrite:
        """Start writing a chunk into a temp file; nothing is visible until `commit`."""
        validate_chunk_id(chunk_id)
        tmp_path = self.tmp_dir / f"{chunk_id}.{secrets.token_hex(8)}.tmp"

        def create() -> int:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                # Room for the header, which is written last, once size and checksum are known.
                os.lseek(fd, chunkfile.HEADER_SIZE, os.SEEK_SET)
            except BaseException:
                os.close(fd)
                os.unlink(tmp_path)
                raise
            return fd

        def release(fd: int) -> None:
            os.close(fd)
            os.unlink(tmp_path)

        fd = await _acquire(create, release)
        return ChunkWrite(self, chunk_id, tmp_path, fd)

    def _install(self, tmp_path: Path, chunk_id: str, file_size: int) -> None:
        final = self.path_for(chunk_id)
        self._ensure_fanout(final.parent)
        with self._counter_lock:
            try:
                previous: int | None = os.stat(final).st_size
            except FileNotFoundError:
                previous = None
            # rename() replaces atomically: a reader sees the old file or the new one, never
            # a mix, and a reader that already opened the old file keeps reading it.
            os.rename(tmp_path, final)
            self._used_bytes += file_size - (previous or 0)
            if previous is None:
                self._chunk_count += 1
        # The rename is durable only once the directory is fsynced. Only then may the node
        # answer "stored": the gateway commits metadata pointing here right after.
        _fsync_dir(final.parent)

    async def open_chunk(self, chunk_id: str) -> ChunkReader:
        """Open a chunk for reading; its header and length are checked here."""
        path = self.path_for(chunk_id)

        def open_and_check() -> tuple[int, ChunkMeta]:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise ChunkMissing(chunk_id) from None
            try:
                return fd, chunkfile.read_meta(fd)
            except BaseException:
                os.close(fd)
                raise

        fd, meta = await _acquire(open_and_check, lambda opened: os.close(opened[0]))
        return ChunkReader(chunk_id, fd, meta)

    async def stat(self, chunk_id: str) -> ChunkMeta:
        reader = await self.open_chunk(chunk_id)
        await reader.close()
        return reader.meta

    async def delete(self, chunk_id: str) -> bool:
        """Remove a chunk; False if it did not exist (deleting twice is not an error)."""
        path = self.path_for(chunk_id)

        def remove() -> bool:
            with self._counter_lock:
                try:
                    size = os.stat(path).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    return False
                self._used_bytes -= size
                self._chunk_count -= 1
            # Without this a crash could resurrect the chunk, which would then be counted
            # and occupy space until the gateway's janitor deletes it again.
            _fsync_dir(path.parent)
            return True

        return await asyncio.to_thread(remove)


class ChunkWrite:
    """One chunk being written: temp file, incremental checksums, then commit or abort."""

    def __init__(self, store: ChunkStore, chunk_id: str, tmp_path: Path, fd: int) -> None:
        self.store = store
        self.chunk_id = chunk_id
        self.tmp_path = tmp_path
        self._fd = fd
        self._hasher = ChunkHasher(store.block_size)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def written(self) -> int:
        return self._hasher.size

    async def write(self, data: Buffer) -> None:
        view = _byte_view(data)
        if view:
            await asyncio.to_thread(self._write_sync, view)

    def _write_sync(self, view: memoryview) -> None:
        with self._lock:
            self._check_open()
            self._hasher.update(view)
            _write_all(self._fd, view)

    async def commit(self, *, size: int | None = None, checksum: bytes | None = None) -> ChunkMeta:
        """Verify against what the client declared, then make the chunk durable and visible.

        On a mismatch or any failure the temp file is removed and nothing becomes visible.
        """
        return await _shielded(lambda: self._commit_sync(size, checksum))

    def _commit_sync(self, size: int | None, checksum: bytes | None) -> ChunkMeta:
        with self._lock:
            self._check_open()
            try:
                meta, trailer = self._hasher.finish()
                if size is not None and size != meta.size:
                    raise ChunkMismatch(f"declared size {size}, received {meta.size} bytes")
                if checksum is not None and checksum != meta.checksum:
                    raise ChunkMismatch("checksum mismatch")
                _write_all(self._fd, memoryview(trailer))
                header = chunkfile.pack_header(meta)
                if os.pwrite(self._fd, header, 0) != len(header):
                    raise OSError("short write of chunk header")
                # fsync before rename: otherwise the rename can reach the disk before the
                # data, and a crash would leave a visible chunk that is empty or garbage.
                os.fsync(self._fd)
                self._close_fd()
                self.store._install(self.tmp_path, self.chunk_id, meta.file_size)
            except BaseException:
                self._discard_locked()
                raise
            self._closed = True
            return meta

    async def abort(self) -> None:
        """Discard the temp file; safe to call more than once and after commit."""
        if self._closed:
            return  # committed or discarded already (or being discarded right now)
        await _shielded(self._abort_sync)

    def _abort_sync(self) -> None:
        with self._lock:
            self._discard_locked()

    def _discard_locked(self) -> None:
        self._closed = True
        self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise ChunkStoreError(f"write of {self.chunk_id} is already finished")


def check_range(meta: ChunkMeta, offset: int, length: int | None) -> int:
    """Validate a read range against the chunk size; return the length to read."""
    if offset < 0 or offset > meta.size:
        raise RangeNotSatisfiable(f"offset {offset} beyond chunk size {meta.size}")
    if length is None:
        return meta.size - offset
    if length < 0 or offset + length > meta.size:
        raise RangeNotSatisfiable(f"range {offset}+{length} beyond chunk size {meta.size}")
    return length


class ChunkReader:
    """An open chunk file. Reads verify every block they return; call `close` when done."""

    def __init__(self, chunk_id: str, fd: int, meta: ChunkMeta) -> None:
        self.chunk_id = chunk_id
        self.meta = meta
        self._fd = fd
        self._lock = threading.Lock()

    async def iter_range(
        self, offset: int, length: int, max_piece: int
    ) -> AsyncIterator[memoryview]:
        """Yield verified pieces of at most `max_piece` bytes covering [offset, offset+length).

        Whole blocks are read and verified, so no byte leaves here unchecked; a corrupt
        block raises CorruptChunk before any of its bytes are yielded.
        """
        length = check_range(self.meta, offset, length)
        if length == 0:
            return
        end = offset + length
        bs = self.meta.block_size
        per_read = max(1, max_piece // bs)
        first, stop = offset // bs, (end - 1) // bs + 1
        for group in range(first, stop, per_read):
            group_stop = min(group + per_read, stop)
            data = await asyncio.to_thread(self._read_sync, group, group_stop)
            base = group * bs
            view = memoryview(data)[max(offset, base) - base : min(end, base + len(data)) - base]
            for pos in range(0, len(view), max_piece):
                yield view[pos : pos + max_piece]

    def _read_sync(self, first: int, stop: int) -> bytes:
        with self._lock:
            if self._fd < 0:
                raise ChunkStoreError(f"reader of {self.chunk_id} is closed")
            return chunkfile.read_blocks(self._fd, self.meta, first, stop)

    async def read(self, offset: int, length: int) -> bytes:
        """Convenience: a whole verified range as one bytes object."""
        return b"".join([piece async for piece in self.iter_range(offset, length, 1 << 30)])

    async def close(self) -> None:
        await _shielded(self._close_sync)

    def _close_sync(self) -> None:
        with self._lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)
