"""The HTTP edge: one Starlette endpoint that routes, authenticates and dispatches.

Order per request: reserved paths (`/-/health`, `/-/metrics`: `-` can never be a bucket)
→ routing table → SigV4 or SigV2 → the operation's handler. Authentication happens before
the body is read, so `Expect: 100-continue` clients are refused before they send a byte.
Every response, error or not, carries x-amz-request-id and x-amz-id-2, and is counted in
the request metrics.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, request_response
from starlette.types import Lifespan

from s3compat import metrics
from s3compat.api import sigv4
from s3compat.api.context import ClientGone, RequestContext, Services
from s3compat.api.credentials import CredentialStore
from s3compat.api.errors import as_s3_error, render_error
from s3compat.api.handlers import buckets, lifecycle, listing, multipart, objects, probes
from s3compat.api.routing import Op, route
from s3compat.core import errors
from s3compat.logs import REQUEST_ID

log = logging.getLogger("s3compat.access")

Handler = Callable[[RequestContext], Awaitable[Response]]

HANDLERS: dict[Op, Handler] = {
    Op.LIST_BUCKETS: buckets.list_buckets,
    Op.CREATE_BUCKET: buckets.create_bucket,
    Op.HEAD_BUCKET: buckets.head_bucket,
    Op.DELETE_BUCKET: buckets.delete_bucket,
    Op.GET_BUCKET_LOCATION: buckets.get_bucket_location,
    Op.PUT_BUCKET_LIFECYCLE_CONFIGURATION: lifecycle.put_bucket_lifecycle_configuration,
    Op.GET_BUCKET_LIFECYCLE_CONFIGURATION: lifecycle.get_bucket_lifecycle_configuration,
    Op.DELETE_BUCKET_LIFECYCLE: lifecycle.delete_bucket_lifecycle,
    Op.LIST_OBJECTS: listing.list_objects,
    Op.LIST_OBJECTS_V2: listing.list_objects_v2,
    Op.LIST_OBJECT_VERSIONS: listing.list_object_versions,
    Op.PUT_OBJECT: objects.put_object,
    Op.GET_OBJECT: objects.get_object,
    Op.HEAD_OBJECT: objects.head_object,
    Op.DELETE_OBJECT: objects.delete_object,
    Op.COPY_OBJECT: objects.copy_object,
    Op.DELETE_OBJECTS: objects.delete_objects,
    Op.GET_BUCKET_VERSIONING: probes.get_bucket_versioning,
    Op.GET_BUCKET_TAGGING: probes.get_bucket_tagging,
    Op.GET_BUCKET_ACL: probes.get_bucket_acl,
    Op.GET_OBJECT_TAGGING: probes.get_object_tagging,
    Op.GET_OBJECT_ACL: probes.get_object_acl,
    Op.CREATE_MULTIPART_UPLOAD: multipart.create_multipart_upload,
    Op.UPLOAD_PART: multipart.upload_part,
    Op.UPLOAD_PART_COPY: multipart.upload_part_copy,
    Op.COMPLETE_MULTIPART_UPLOAD: multipart.complete_multipart_upload,
    Op.ABORT_MULTIPART_UPLOAD: multipart.abort_multipart_upload,
    Op.LIST_PARTS: multipart.list_parts,
    Op.LIST_MULTIPART_UPLOADS: multipart.list_multipart_uploads,
}

# S3 refuses request header sections over 8 KiB; user metadata has its own 2 KB limit.
MAX_HEADER_BYTES = 8 * 1024

HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def _request_id() -> str:
    return base64.b32encode(os.urandom(10)).decode("ascii")


class Gateway:
    def __init__(
        self,
        services: Services | None,
        credentials: CredentialStore,
        health: HealthCheck,
        *,
        virtual_host_domain: str | None = None,
    ) -> None:
        self.services = services
        self.credentials = credentials
        self.health = health
        self.virtual_host_domain = virtual_host_domain

    async def handle(self, request: Request) -> Response:
        request_id = _request_id()
        # Not reset on return: uvicorn runs each request in its own task (own context), and
        # a streamed body's log lines, after this returns, should still carry the id.
        REQUEST_ID.set(request_id)
        started = time.monotonic()
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        raw_path_s = raw_path.decode("latin-1")
        raw_query = request.scope.get("query_string", b"").decode("latin-1")
        head = request.method == "HEAD"
        reserved = False
        try:
            reserved = raw_path_s.startswith("/-/") and not self._is_virtual_host(request)
            if reserved:
                response = await self._reserved(raw_path_s)
            else:
                response = await self._s3(request, raw_path_s, raw_query, request_id)
        except BaseException as exc:  # every failure becomes an S3 error document
            if isinstance(exc, ClientGone):
                log.info("%s client disconnected mid-body", request_id)
                response = Response(status_code=400)
            else:
                err = as_s3_error(exc, f"request {request_id}")
                response = render_error(
                    err, resource=request.url.path, request_id=request_id, head=head
                )
            if _has_body(request):
                # The body may be unread (refused before `100 Continue`): close the
                # connection, or its bytes would be parsed as the next request.
                response.headers["Connection"] = "close"
            if not isinstance(exc, Exception):
                raise
        response.headers["x-amz-request-id"] = request_id
        response.headers["x-amz-id-2"] = request_id
        op_name = getattr(request.state, "op", "-")
        if not reserved:  # health checks and scrapes are not S3 traffic
            _count(request, response, op_name, time.monotonic() - started)
        log.info(
            "%s %s %s %s %d %.1fms",
            request_id,
            request.method,
            request.url.path,
            op_name,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _is_virtual_host(self, request: Request) -> bool:
        domain = self.virtual_host_domain
        if not domain:
            return False
        host = (request.headers.get("host") or "").split(":")[0].lower().rstrip(".")
        return host.endswith("." + domain.lower())

    async def _reserved(self, path: str) -> Response:
        if path == "/-/health":
            ok, report = await self.health()
            return JSONResponse(report, status_code=200 if ok else 503)
        if path == "/-/metrics":
            return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
        raise errors.NoSuchKey()

    async def _s3(
        self, request: Request, raw_path: str, raw_query: str, request_id: str
    ) -> Response:
        if sum(len(k) + len(v) + 4 for k, v in request.headers.raw) > MAX_HEADER_BYTES:
            raise errors.RequestHeaderSectionTooLarge(MaxSizeAllowed=str(MAX_HEADER_BYTES))
        headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers.raw
        ]
        found = route(
            request.method,
            raw_path,
            raw_query,
            request.headers.get("host"),
            virtual_host_domain=self.virtual_host_domain,
            headers=request.headers,
        )
        auth = sigv4.authenticate(
            request.method,
            raw_path,
            raw_query,
            headers,
            self.credentials.lookup_secret,
            datetime.now(UTC),
            virtual_host_bucket=found.bucket if self._is_virtual_host(request) else None,
        )
        user = self.credentials.user_for(auth.access_key)
        if user is None:  # the key was removed between the two lookups
            raise errors.InvalidAccessKeyId()
        request.state.op = found.op.value
        metrics.OPERATION.set(found.op.value)  # this request's task only
        handler = HANDLERS.get(found.op)
        if handler is None:
            raise errors.NotImplementedError_(f"{found.op.value} is not implemented.")
        if self.services is None:  # still starting up
            raise errors.ServiceUnavailable()
        ctx = RequestContext(request, found, auth, user, self.services, request_id)
        return await handler(ctx)


def _count(request: Request, response: Response, op_name: str, seconds: float) -> None:
    """Request metrics: by AWS action name (`-` for requests refused before routing)."""
    metrics.REQUESTS.labels(op_name, str(response.status_code)).inc()
    metrics.LATENCY.labels(op_name).observe(seconds)
    sent_in = request.headers.get("content-length", "")
    if sent_in.isdigit():
        metrics.BYTES_IN.labels(op_name).inc(int(sent_in))
    sent_out = response.headers.get("content-length", "")
    if sent_out.isdigit() and request.method != "HEAD":
        metrics.BYTES_OUT.labels(op_name).inc(int(sent_out))


def build_app(gateway: Gateway, lifespan: Lifespan[Starlette] | None = None) -> Starlette:
    return Starlette(
        # A Mount, not a Route: every method and path reaches the gateway, which answers
        # S3 errors itself (a Route would send plain-text 405s for unknown methods).
        routes=[Mount("", app=request_response(gateway.handle))],
        lifespan=lifespan,
    )
