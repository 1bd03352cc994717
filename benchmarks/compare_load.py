"""The load side of bench_compare.py: clients, the request driver, the operations.

Every server is driven by boto3 clients built the same way (`client_config`): path-style
addressing, region us-east-1, the same retries and timeouts; one boto3 session per client
and one client per thread. Only the endpoint and the credentials differ.

`drive` runs one operation over a list of items on N threads, each with its own client,
and stops issuing requests at a deadline or when the items run out: every phase is bounded
in time and in count.
"""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import boto3
from bench_cluster import MIB, Result
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from lxml import etree

T = TypeVar("T")

CHECKSUM_MODES = ("when_supported", "when_required")
DEFAULT_MODE = "when_supported"  # botocore's default since 1.36


def client_config(mode: str = DEFAULT_MODE, pool: int = 10) -> Config:
    """The one client configuration every server gets."""
    return Config(
        region_name="us-east-1",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=pool,
        request_checksum_calculation=mode,
        response_checksum_validation="when_supported",
    )


@dataclass
class Target:
    """A server under test: where it is, how to sign for it, and its clients (per mode)."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = "bench"
    _pools: dict[str, list[Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_client(self, mode: str = DEFAULT_MODE, pool: int = 10) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=client_config(mode, pool),
        )

    def clients(self, count: int, mode: str = DEFAULT_MODE) -> list[Any]:
        """`count` clients for `mode`, made once and connected before any clock starts."""
        with self._lock:
            pool = self._pools.setdefault(mode, [])
            while len(pool) < count:
                client = self.new_client(mode)
                client.head_bucket(Bucket=self.bucket)  # connect (and sign) once, untimed
                pool.append(client)
            return pool[:count]

    def close(self) -> None:
        for pool in self._pools.values():
            for client in pool:
                client.close()
        self._pools.clear()


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Measured(Result):
    """bench_cluster's Result, plus boto3's retries and the time windows it ran in."""

    retries: int = 0
    windows: list[tuple[float, float]] = field(default_factory=list)

    def merge(self, other: Measured) -> Measured:
        """Two rounds of the same phase on the same target, as one."""
        return Measured(
            label=self.label,
            unit=self.unit,
            done=self.done + other.done,
            errors=self.errors + other.errors,
            bytes=self.bytes + other.bytes,
            seconds=self.seconds + other.seconds,
            latencies=self.latencies + other.latencies,
            retries=self.retries + other.retries,
            windows=self.windows + other.windows,
        )


def retries_of(response: dict[str, Any]) -> int:
    attempts: int = response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    return attempts


# An operation: (client, item) -> (bytes moved, boto3 retries).
Op = Callable[[Any, T], tuple[int, int]]


def drive(
    label: str,
    unit: str,
    clients: Sequence[Any],
    items: Iterable[T],
    op: Op[T],
    budget: float,
    stop: threading.Event,
    done_items: list[T] | None = None,
) -> Measured:
    """Run `op` over `items` on one thread per client until the items or `budget` run out.

    Items that succeeded are appended to `done_items`. The first few errors are printed to
    stderr; all are counted.
    """
    result = Measured(label, unit)
    todo = iter(items)
    lock = threading.Lock()
    gate = threading.Barrier(len(clients) + 1)
    deadline = math.inf

    def worker(client: Any) -> None:
        gate.wait()
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            t0 = time.perf_counter()
            try:
                moved, retried = op(client, item)
            except Exception as exc:
                with lock:
                    result.errors += 1
                    if result.errors <= 3:
                        print(f"  {label}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                result.done += 1
                result.bytes += moved
                result.retries += retried
                result.latencies.append(elapsed)
                if done_items is not None:
                    done_items.append(item)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    begin = time.monotonic()
    deadline = begin + budget
    gate.wait()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep Ctrl-C responsive
    end = time.monotonic()
    result.seconds = end - begin
    result.windows.append((begin, end))
    return result


# --- operations ------------------------------------------------------------------------------


def put_op(bucket: str, payload: bytes) -> Op[str]:
    def op(client: Any, key: str) -> tuple[int, int]:
        response = client.put_object(Bucket=bucket, Key=key, Body=payload)
        return len(payload), retries_of(response)

    return op


def get_op(bucket: str, size: int) -> Op[str]:
    def op(client: Any, key: str) -> tuple[int, int]:
        response = client.get_object(Bucket=bucket, Key=key)
        n = 0
        for chunk in response["Body"].iter_chunks(MIB):
            n += len(chunk)
        if n != size:
            raise ValueError(f"read {n} bytes of {key}, expected {size}")
        return n, retries_of(response)

    return op


def head_op(bucket: str, size: int) -> Op[str]:
    def op(client: Any, key: str) -> tuple[int, int]:
        response = client.head_object(Bucket=bucket, Key=key)
        if response["ContentLength"] != size:
            raise ValueError(f"{key} has {response['ContentLength']} bytes, expected {size}")
        return 0, retries_of(response)

    return op


def delete_objects_op(bucket: str) -> Op[list[str]]:
    def op(client: Any, keys: list[str]) -> tuple[int, int]:
        response = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RuntimeError(f"{len(response['Errors'])} keys not deleted, e.g. {first}")
        return 0, retries_of(response)

    return op


class ListWalker:
    """ListObjectsV2 pages of `page` keys, walking the bucket from the start again and again;
    each call is one page. For one thread (it keeps the continuation token)."""

    def __init__(self, bucket: str, expected: int, page: int = 1000) -> None:
        self.bucket = bucket
        self.expected = expected
        self.page = page
        self.token: str | None = None
        self.seen = 0

    def __call__(self, client: Any, _item: int) -> tuple[int, int]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": self.page}
        if self.token:
            kwargs["ContinuationToken"] = self.token
        response = client.list_objects_v2(**kwargs)
        truncated = bool(response.get("IsTruncated"))
        self.advance(response.get("KeyCount", 0), response.get("NextContinuationToken"), truncated)
        return 0, retries_of(response)

    def advance(self, count: int, token: str | None, truncated: bool) -> None:
        """Check a page of `count` keys and move on to the next (after the last, the first)."""
        self.seen += count
        if truncated:
            if count != self.page:
                raise ValueError(f"a truncated page of {count} keys, expected {self.page}")
            self.token = token
        else:
            if self.seen != self.expected:
                raise ValueError(f"listed {self.seen} keys, expected {self.expected}")
            self.token = None
            self.seen = 0


class RawS3:
    """Requests signed by botocore's SigV4 signer and sent over one kept-alive http.client
    connection, without the rest of boto3's pipeline: for workloads where boto3's own CPU
    would dwarf the server's (filling a bucket; reading 1000-key listing pages, whose
    parsing into dicts costs boto3 about 100 ms of CPU per page on the 2-core machine)."""

    def __init__(self, target: Target) -> None:
        parts = urlsplit(target.endpoint)
        self.endpoint = target.endpoint
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.signer = S3SigV4Auth(
            Credentials(target.access_key, target.secret_key), "s3", "us-east-1"
        )
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of one request with an empty body; reconnects after a failure."""
        request = AWSRequest(
            method=method, url=self.endpoint + path, headers=headers or {}, data=b""
        )
        self.signer.add_auth(request)
        try:
            self.conn.request(method, path, body=b"", headers=dict(request.headers.items()))
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = self._connect()
            raise

    def close(self) -> None:
        self.conn.close()


class RawListWalker(ListWalker):
    """ListWalker's pages over RawS3, read with lxml (about 3 ms a page): the server's cost
    of a page, not boto3's. For one thread."""

    def __call__(self, client: RawS3, _item: int) -> tuple[int, int]:
        query = f"list-type=2&max-keys={self.page}"
        if self.token:
            query += f"&continuation-token={quote(self.token, safe='')}"
        status, body = client.request("GET", f"/{self.bucket}?{query}")
        if status != 200:
            raise ValueError(f"ListObjectsV2 answered {status}: {body[:200]!r}")
        root = etree.fromstring(body)
        ns = {"s3": root.nsmap.get(None, "")}
        truncated = root.findtext("s3:IsTruncated", namespaces=ns) == "true"
        token = root.findtext("s3:NextContinuationToken", namespaces=ns)
        self.advance(len(root.findall("s3:Contents", ns)), token, truncated)
        return 0, 0


# --- big transfers ---------------------------------------------------------------------------


class GeneratedStream:
    """`size` bytes made as they are read: a random 1 MiB block over and over (not seekable,
    so boto3 reads it part by part and never holds the whole object)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.block = os.urandom(MIB)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        pieces = []
        want = n
        while want:
            offset = self.pos % len(self.block)
            piece = self.block[offset : offset + want]
            pieces.append(piece)
            self.pos += len(piece)
            want -= len(piece)
        return b"".join(pieces)


class DiscardSink:
    """A seekable write target that keeps nothing: it counts the bytes written."""

    def __init__(self) -> None:
        self.pos = 0
        self.written = 0
        self.lock = threading.Lock()

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: bytes) -> int:
        with self.lock:
            self.written += len(data)
            self.pos += len(data)
        return len(data)


def transfer_config(part_size: int, concurrency: int) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=True,
        preferred_transfer_client="classic",  # never the CRT client: the same path for all
    )


def upload_op(bucket: str, size: int, config: TransferConfig) -> Op[str]:
    def op(client: Any, key: str) -> tuple[int, int]:
        client.upload_fileobj(GeneratedStream(size), bucket, key, Config=config)
        return size, 0

    return op


def download_op(bucket: str, size: int, config: TransferConfig) -> Op[str]:
    def op(client: Any, key: str) -> tuple[int, int]:
        sink = DiscardSink()
        client.download_fileobj(bucket, key, sink, Config=config)
        if sink.written != size:
            raise ValueError(f"downloaded {sink.written} bytes, expected {size}")
        return size, 0

    return op


# --- filling a bucket fast -------------------------------------------------------------------


@dataclass
class Filled:
    keys: list[str]  # every key in the bucket, sorted
    seconds: float  # this filling only
    added: int  # keys this filling made
    errors: int
    method: str


def populate(
    target: Target,
    bucket: str,
    have: list[str],
    count: int,
    threads: int,
    budget: float,
    stop: threading.Event,
    copy: bool,
) -> Filled:
    """Bring `bucket` to `count` empty objects, keys `k/0000000`…, as fast as it takes them.

    `have` are the keys already there (none: the bucket is created). With `copy`, one empty
    source object is copied to each key by CopyObject (our gateway copies metadata only,
    no chunk is written); without, each key is a 0-byte PUT (moto takes those faster than
    copies). Requests go out on `threads` threads, each over its own RawS3. Stops at
    `budget` seconds; the caller reports how many keys there are.
    """
    client = target.new_client()
    if not have:
        client.create_bucket(Bucket=bucket)
    if copy:
        client.put_object(Bucket=bucket, Key="source", Body=b"")
    source = f"/{bucket}/source"
    todo = iter([f"k/{i:07d}" for i in range(len(have), count)])
    made: list[str] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + budget

    def worker() -> None:
        nonlocal errors
        raw = RawS3(target)
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                key = next(todo, None)
            if key is None:
                break
            try:
                status, body = raw.request(
                    "PUT", f"/{bucket}/{quote(key)}", {"x-amz-copy-source": source} if copy else {}
                )
                ok = status == 200 and (not copy or b"CopyObjectResult" in body)
            except (OSError, http.client.HTTPException):
                ok = False
            with lock:
                if ok:
                    made.append(key)
                else:
                    errors += 1
                    if errors <= 3:
                        print(f"  filling {bucket}: {key} failed", file=sys.stderr)
        raw.close()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    begin = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        while t.is_alive():
            t.join(0.2)
    seconds = time.monotonic() - begin
    if copy:  # listing must see exactly the keys made: drop the source
        client.delete_object(Bucket=bucket, Key="source")
    client.close()
    method = "CopyObject of an empty object" if copy else "PUT of 0 bytes"
    return Filled(sorted(have + made), seconds, len(made), errors, method)


# --- the nodes' own write speed --------------------------------------------------------------


def node_writes(
    address: str,
    token: str,
    payload: bytes,
    count: int,
    concurrency: int,
    stop: threading.Event,
) -> Measured:
    """Stream `count` chunks of `payload` straight to one storage node (GrpcNodeClient's
    open_chunk_writer, 1 MiB frames), `concurrency` at a time; deletes them afterwards."""
    from s3compat.nodes.client import GrpcNodeClient

    result = Measured(f"node write {len(payload) // MIB} MiB", "MB/s")
    written: list[str] = []

    async def run() -> None:
        client = GrpcNodeClient("bench", address, token=token, deadline=60.0)
        view = memoryview(payload)
        queue = list(range(count))

        async def one() -> None:
            while queue and not stop.is_set():
                queue.pop()
                chunk_id = f"{uuid.uuid4().hex}-0"
                t0 = time.perf_counter()
                try:
                    writer = await client.open_chunk_writer(chunk_id)
                    for offset in range(0, len(view), MIB):
                        await writer.write(view[offset : offset + MIB])
                    await writer.finish()
                except Exception as exc:
                    result.errors += 1
                    print(f"  node write: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                result.latencies.append(time.perf_counter() - t0)
                result.done += 1
                result.bytes += len(payload)
                written.append(chunk_id)

        try:
            begin = time.monotonic()
            await asyncio.gather(*(one() for _ in range(concurrency)))
            end = time.monotonic()
            result.seconds = end - begin
            result.windows.append((begin, end))
            for chunk_id in written:
                await client.delete_chunk(chunk_id)
        finally:
            await client.close()

    asyncio.run(run())
    return result
