"""What every handler receives: the parsed request, the caller, and the services."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from s3compat.api import chunked
from s3compat.api import headers as h
from s3compat.api.routing import Route
from s3compat.api.sigv4 import AuthContext
from s3compat.core import checksums, errors
from s3compat.service.blobs import BodyChecks
from s3compat.service.buckets import BucketService
from s3compat.service.multipart import MultipartService
from s3compat.service.objects import ObjectService

UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SMALL_BODY = 1 << 20  # XML request documents


class ClientGone(Exception):
    """The client disconnected before its body was complete: nothing must be stored."""


@dataclass(frozen=True, slots=True)
class Services:
    buckets: BucketService
    objects: ObjectService
    multipart: MultipartService
    region: str
    # A request body that sends nothing for this long is cut off (slowloris defence).
    body_idle_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class RequestContext:
    request: Request
    route: Route
    auth: AuthContext
    user: str
    services: Services
    request_id: str

    @property
    def bucket(self) -> str:
        assert self.route.bucket is not None
        return self.route.bucket

    @property
    def key(self) -> str:
        assert self.route.key is not None
        return self.route.key

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def raw_headers(self) -> list[tuple[str, str]]:
        """(lower-case name, value) pairs, values kept byte for byte (latin-1)."""
        return [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in self.request.headers.raw
        ]

    @property
    def aws_chunked(self) -> bool:
        """The body is aws-chunked framing (x-amz-content-sha256: STREAMING-…)."""
        return self.auth.payload_hash.startswith("STREAMING-")

    def signed_sha256(self) -> str | None:
        """The hex body hash the client signed, or None when the payload is unsigned."""
        value = self.auth.payload_hash
        if value == UNSIGNED or self.aws_chunked:
            return None
        return value

    def object_body(
        self, *, default_checksum: str | None = None
    ) -> tuple[AsyncIterator[bytes], BodyChecks]:
        """The body of a PutObject or UploadPart, decoded, and what to verify it against.

        aws-chunked bodies are decoded as they stream (chunk signatures checked, framing
        never stored); their length is x-amz-decoded-content-length and their checksum may
        arrive in the trailer, so it is read only once the body has ended.
        """
        hdrs = self.request.headers
        length = h.content_length(hdrs)
        if length is None and "transfer-encoding" not in hdrs:
            raise errors.MissingContentLength()
        algorithm, value, trailer = h.requested_checksum(hdrs, self.raw_headers(), default_checksum)
        body: AsyncIterator[bytes] = self.body_stream()
        late: Callable[[], bytes | None] | None = None
        if self.aws_chunked:
            decoded = hdrs.get("x-amz-decoded-content-length")
            length = h.content_length({"content-length": decoded}) if decoded else None
            trailers = chunked.Trailers()
            body = chunked.decode(
                body,
                verifier=chunked.verifier_for(self.auth),
                decoded_content_length=length,
                trailers=trailers,
                expected_trailers=chunked.parse_trailer_header(hdrs.get("x-amz-trailer")),
            )
            if trailer is not None and algorithm is not None:
                alg = algorithm

                def late_value() -> bytes | None:
                    sent = trailers.get(trailer)
                    if sent is None:
                        raise errors.MalformedTrailerError()
                    try:
                        return checksums.parse_b64(alg, sent)
                    except ValueError:
                        raise errors.InvalidRequest(f"Value for {trailer} is invalid.") from None

                late = late_value
        elif trailer is not None:
            raise errors.InvalidRequest("x-amz-trailer needs an aws-chunked request body.")
        checks = BodyChecks(
            content_length=length,
            content_md5=h.content_md5(hdrs),
            sha256_hex=self.signed_sha256(),
            checksum_algorithm=algorithm,
            checksum_value=value,
            late_checksum=late,
        )
        return body, checks

    async def body_stream(self) -> AsyncIterator[bytes]:
        """The request body as it arrives, never buffered whole.

        A client that goes quiet mid-body for longer than the idle timeout gets
        RequestTimeout instead of holding a connection and a half-written blob forever.
        """
        pieces = aiter(self.request.stream())
        while True:
            try:
                piece = await asyncio.wait_for(anext(pieces), self.services.body_idle_timeout)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise errors.RequestTimeout() from None
            except ClientDisconnect as exc:
                raise ClientGone() from exc
            if piece:
                yield piece

    def verify_small_body_digests(self, body: bytes) -> None:
        """Content-MD5 and x-amz-checksum-* of an XML body, when sent (BadDigest if wrong).
        DeleteObjects needs one of them in S3; here neither is required."""
        hdrs = self.request.headers
        algorithm, value, _ = h.requested_checksum(hdrs, self.raw_headers())
        checks = BodyChecks(
            content_md5=h.content_md5(hdrs), checksum_algorithm=algorithm, checksum_value=value
        )
        checks.verify(len(body), hashlib.md5(body).digest(), None)
        if algorithm is not None and value is not None:
            computed = checksums.new(algorithm)
            computed.update(body)
            checks.verify_checksum(computed.digest())

    async def small_body(self) -> bytes:
        """A whole (small, XML) body, with its signed hash verified."""
        data = bytearray()
        async for piece in self.body_stream():
            data += piece
            if len(data) > MAX_SMALL_BODY:
                raise errors.MalformedXML()
        expected = self.signed_sha256()
        if expected is not None and hashlib.sha256(data).hexdigest() != expected.lower():
            raise errors.XAmzContentSHA256Mismatch()
        return bytes(data)
