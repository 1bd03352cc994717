"""Streaming decoder for `Content-Encoding: aws-chunked` request bodies.

The wire format is HTTP/1.1 chunking with S3's additions:

    <hex size>[;chunk-signature=<64 hex>]\\r\\n <size bytes> \\r\\n   … repeated
    0[;chunk-signature=<64 hex>]\\r\\n                                final chunk
    <name>:<value>\\r\\n …                                            optional trailers
    [x-amz-trailer-signature:<64 hex>\\r\\n]                          signed trailers only
    \\r\\n

Three x-amz-content-sha256 modes use it (see `verifier_for`):

- STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signed, chained from the seed signature
  of the Authorization header; no trailers.
- STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: the same, plus signed trailers.
- STREAMING-UNSIGNED-PAYLOAD-TRAILER (boto3/aws-cli over HTTPS): no signatures at all;
  integrity comes from the checksum trailer, which the caller must verify.

`decode` yields only object bytes, never framing. A signed chunk is yielded only after its
signature has been verified, so memory holds at most one chunk (bounded by `max_chunk_size`);
unsigned data is passed on as it arrives. Input may come in pieces of any size. Trailers are
published into a `Trailers` the caller passes in, once the whole body has been checked.

Errors, chosen to match what S3 returns:

- any framing fault (bad size line, missing CRLF, truncation, bytes after the end):
  IncompleteBody: S3 answers every malformed aws-chunked body that way;
- a chunk larger than `max_chunk_size`: InvalidRequest;
- a wrong or missing chunk/trailer signature: SignatureDoesNotMatch;
- malformed trailers, trailers where none may be, or trailers that differ from the
  x-amz-trailer header: MalformedTrailerError;
- a decoded length different from x-amz-decoded-content-length: IncompleteBody.

A body is only valid if the iterator is exhausted without an exception: callers must not
commit anything before that (the last check happens after the last data is yielded).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Collection
from dataclasses import dataclass, field

from s3compat.api import sigv4
from s3compat.core import checksums
from s3compat.core.errors import (
    IncompleteBody,
    InvalidRequest,
    MalformedTrailerError,
    SignatureDoesNotMatch,
)

__all__ = [
    "MAX_CHUNK_SIZE",
    "TRAILER_SIGNATURE",
    "ChunkVerifier",
    "MalformedTrailerError",
    "Trailers",
    "decode",
    "parse_trailer_header",
    "verifier_for",
]

MAX_CHUNK_SIZE = 16 << 20
TRAILER_SIGNATURE = "x-amz-trailer-signature"

# Limits on the parts of the framing that are not object data, so that a client cannot
# make us buffer an endless line: a size line is ~90 bytes, a checksum trailer ~70.
_MAX_LINE = 4096
_MAX_TRAILERS = 32
_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_TRUNCATED = "The request body terminated unexpectedly"


class ChunkVerifier:
    """The signature chain of one signed aws-chunked body.

    Each chunk's signature covers the previous signature, so chunks cannot be dropped,
    reordered or replayed; the trailer signature continues the same chain.
    """

    __slots__ = ("_ctx", "_previous", "signed_trailer")

    def __init__(self, ctx: sigv4.AuthContext) -> None:
        if ctx.payload_hash not in (
            sigv4.STREAMING_SIGNED_PAYLOAD,
            sigv4.STREAMING_SIGNED_PAYLOAD_TRAILER,
        ):
            raise ValueError(f"{ctx.payload_hash} is not a signed streaming payload")
        self._ctx = ctx
        self._previous = ctx.seed_signature
        self.signed_trailer = ctx.payload_hash == sigv4.STREAMING_SIGNED_PAYLOAD_TRAILER

    def verify_chunk(self, data_sha256_hex: str, signature: str | None) -> None:
        if signature is None:
            raise SignatureDoesNotMatch("The chunk signature is missing.")
        self._previous = sigv4.verify_chunk_signature(
            self._ctx, self._previous, data_sha256_hex, signature
        )

    def verify_trailer(self, trailer_sha256_hex: str, signature: str | None) -> None:
        if signature is None:
            raise SignatureDoesNotMatch("The trailer signature is missing.")
        self._previous = sigv4.verify_trailer_signature(
            self._ctx, self._previous, trailer_sha256_hex, signature
        )


def verifier_for(ctx: sigv4.AuthContext) -> ChunkVerifier | None:
    """The `verifier` argument of `decode` for an authenticated aws-chunked request.

    None for STREAMING-UNSIGNED-PAYLOAD-TRAILER; ValueError for a payload hash that does not
    announce an aws-chunked body at all (the caller should not be decoding it).
    """
    if ctx.payload_hash == sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER:
        return None
    return ChunkVerifier(ctx)


def parse_trailer_header(value: str | None) -> frozenset[str]:
    """The trailer names an `x-amz-trailer` header announces (lower-case, may be empty)."""
    if value is None:
        return frozenset()
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


@dataclass(slots=True)
class Trailers:
    """Filled by `decode` once the whole body has been read and checked.

    `headers` maps lower-case trailer names to values (x-amz-trailer-signature excluded).
    Until `complete` is True nothing in here may be trusted, and it stays empty.
    """

    headers: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    decoded_length: int = 0

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def checksum(self) -> tuple[str, str] | None:
        """(algorithm, base64 value) of the x-amz-checksum-* trailer, if there is one."""
        for name, value in self.headers.items():
            algorithm = checksums.algorithm_from_header(name)
            if algorithm is not None:
                return algorithm, value
        return None


# --------------------------------------------------------------------------- the reader


class _Reader:
    """Pull-based view over the incoming pieces: lines, exact byte counts, nothing more."""

    __slots__ = ("_buf", "_eof", "_pos", "_source")

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._source = source.__aiter__()
        self._buf = b""
        self._pos = 0
        self._eof = False

    async def _fill(self) -> bool:
        """Make unread bytes available; False at the end of the body."""
        while self._pos >= len(self._buf):
            if self._eof:
                return False
            try:
                piece = await anext(self._source)
            except StopAsyncIteration:
                self._eof = True
                return False
            self._buf = piece if type(piece) is bytes else bytes(piece)
            self._pos = 0
        return True

    async def line(self) -> bytes:
        """One CRLF-terminated line, without the CRLF."""
        collected = bytearray()
        while True:
            if not await self._fill():
                raise IncompleteBody(_TRUNCATED)
            room = _MAX_LINE + 2 - len(collected)
            end = self._buf.find(b"\n", self._pos, self._pos + room)
            if end < 0:
                stop = min(len(self._buf), self._pos + room)
                collected += self._buf[self._pos : stop]
                self._pos = stop
                if len(collected) >= _MAX_LINE + 2:
                    raise IncompleteBody(f"{_TRUNCATED}: a framing line is too long.")
                continue
            collected += self._buf[self._pos : end + 1]
            self._pos = end + 1
            if not collected.endswith(b"\r\n"):
                raise IncompleteBody(f"{_TRUNCATED}: a line does not end with CRLF.")
            return bytes(collected[:-2])

    async def take(self, limit: int) -> memoryview:
        """Between 1 and `limit` bytes of what has arrived (no copy)."""
        if not await self._fill():
            raise IncompleteBody(_TRUNCATED)
        stop = min(len(self._buf), self._pos + limit)
        view = memoryview(self._buf)[self._pos : stop]
        self._pos = stop
        return view

    async def crlf(self) -> None:
        first = bytes(await self.take(2))
        rest = bytes(await self.take(1)) if len(first) == 1 else b""
        if first + rest != b"\r\n":
            raise IncompleteBody(f"{_TRUNCATED}: chunk data is not followed by CRLF.")

    async def at_end(self) -> bool:
        return not await self._fill()


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class _ChunkHeader:
    size: int
    signature: str | None


def _parse_chunk_header(line: bytes, max_chunk_size: int) -> _ChunkHeader:
    size_text, _, extensions = line.partition(b";")
    if not _SIZE.fullmatch(size_text):
        raise IncompleteBody(f"{_TRUNCATED}: invalid chunk size line.")
    size = int(size_text, 16)
    if size > max_chunk_size:
        raise InvalidRequest(f"Chunk size {size} exceeds the maximum of {max_chunk_size} bytes.")
    signature: str | None = None
    if extensions:
        try:
            text = extensions.decode("ascii")
        except UnicodeDecodeError:
            raise IncompleteBody(f"{_TRUNCATED}: invalid chunk extension.") from None
        for extension in text.split(";"):
            name, _, value = extension.partition("=")
            name = name.strip().lower()
            if not _TOKEN.fullmatch(name):
                raise IncompleteBody(f"{_TRUNCATED}: invalid chunk extension.")
            if name == "chunk-signature":
                if signature is not None:
                    raise IncompleteBody(f"{_TRUNCATED}: repeated chunk-signature.")
                signature = value.strip()
            # Other extensions carry nothing S3 uses; HTTP says to ignore them.
    return _ChunkHeader(size, signature)


def _parse_trailer_line(line: bytes) -> tuple[str, str]:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedTrailerError() from None
    name, colon, value = text.partition(":")
    name = name.strip().lower()
    if not colon or not _TOKEN.fullmatch(name):
        raise MalformedTrailerError()
    # S3 accepts blanks around the colon; they are not part of the value.
    return name, value.strip(" \t")


async def _read_trailers(reader: _Reader, verifier: ChunkVerifier | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    signature: str | None = None
    while True:
        line = await reader.line()
        if not line:
            break
        name, value = _parse_trailer_line(line)
        if signature is not None or name in headers or len(headers) >= _MAX_TRAILERS:
            # Nothing may follow the signature, which covers only what came before it.
            raise MalformedTrailerError()
        if name == TRAILER_SIGNATURE:
            signature = value
        else:
            headers[name] = value
    if verifier is not None:
        if not verifier.signed_trailer:
            if headers or signature is not None:
                raise MalformedTrailerError(
                    "Trailing headers are not allowed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD."
                )
        else:
            canonical = "".join(f"{name}:{value}\n" for name, value in headers.items())
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            verifier.verify_trailer(digest, signature)
    # In unsigned mode a trailer signature would prove nothing: it is dropped unchecked.
    return headers


def _check_expected(headers: dict[str, str], expected: Collection[str] | None) -> None:
    if expected is None:
        return
    wanted = {name.strip().lower() for name in expected}
    if set(headers) != wanted:
        raise MalformedTrailerError(
            "The trailing headers do not match the x-amz-trailer header: "
            f"announced {sorted(wanted)}, sent {sorted(headers)}."
        )


def _check_length(total: int, declared: int | None) -> None:
    if declared is not None and total != declared:
        raise IncompleteBody(
            f"The decoded body is {total} bytes, but x-amz-decoded-content-length says {declared}."
        )


async def decode(
    source: AsyncIterable[bytes],
    *,
    verifier: ChunkVerifier | None,
    max_chunk_size: int = MAX_CHUNK_SIZE,
    decoded_content_length: int | None = None,
    trailers: Trailers | None = None,
    expected_trailers: Collection[str] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the object bytes of an aws-chunked body, checking everything on the way.

    - `verifier`: from `verifier_for(ctx)`; None means STREAMING-UNSIGNED-PAYLOAD-TRAILER
      (chunk signatures, if any, are ignored; trailers are allowed).
    - `decoded_content_length`: x-amz-decoded-content-length, when the client sent one.
    - `trailers`: filled in (and marked complete) once the body has been fully checked.
    - `expected_trailers`: the names announced in x-amz-trailer (`parse_trailer_header`);
      None skips the comparison.
    """
    if max_chunk_size < 1:
        raise ValueError("max_chunk_size must be positive")
    reader = _Reader(source)
    total = 0
    while True:
        header = _parse_chunk_header(await reader.line(), max_chunk_size)
        if decoded_content_length is not None and total + header.size > decoded_content_length:
            _check_length(total + header.size, decoded_content_length)  # fail early
        if verifier is None:
            remaining = header.size
            while remaining:
                view = await reader.take(remaining)
                remaining -= len(view)
                yield bytes(view)
            if header.size:
                await reader.crlf()
        else:
            data = await _read_signed_chunk(reader, header, verifier)
            if data:
                yield data
        total += header.size
        if header.size == 0:
            break
    headers = await _read_trailers(reader, verifier)
    _check_expected(headers, expected_trailers)
    _check_length(total, decoded_content_length)
    if not await reader.at_end():
        raise IncompleteBody(f"{_TRUNCATED}: data follows the end of the aws-chunked body.")
    if trailers is not None:
        trailers.headers = headers
        trailers.decoded_length = total
        trailers.complete = True


async def _read_signed_chunk(
    reader: _Reader, header: _ChunkHeader, verifier: ChunkVerifier
) -> bytes:
    """Read a whole chunk, check its signature, and only then hand it over."""
    if header.signature is None:
        raise SignatureDoesNotMatch("The chunk signature is missing.")
    pieces: list[memoryview] = []
    digest = hashlib.sha256()
    remaining = header.size
    while remaining:
        view = await reader.take(remaining)
        digest.update(view)
        pieces.append(view)
        remaining -= len(view)
    if header.size:
        await reader.crlf()
    verifier.verify_chunk(digest.hexdigest(), header.signature)
    return b"".join(pieces)
