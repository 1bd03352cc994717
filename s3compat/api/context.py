"""What every handler receives: the parsed request, the caller, and the services."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from s3compat.api.routing import Route
from s3compat.api.sigv4 import AuthContext
from s3compat.core import errors
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

    def signed_sha256(self) -> str | None:
        """The hex body hash the client signed, or None when the payload is unsigned."""
        value = self.auth.payload_hash
        if value == UNSIGNED:
            return None
        if value.startswith("STREAMING-"):
            raise errors.NotImplementedError_(
                "aws-chunked (STREAMING-*) request bodies are not supported yet."
            )
        return value

    async def body_stream(self) -> AsyncIterator[bytes]:
        """The request body as it arrives, never buffered whole."""
        try:
            async for piece in self.request.stream():
                if piece:
                    yield piece
        except ClientDisconnect as exc:
            raise ClientGone() from exc

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
