"""Rendering of S3 errors: the one place an exception becomes an HTTP response."""

from __future__ import annotations

import logging

from starlette.responses import Response

from s3compat.api import xml
from s3compat.core import errors
from s3compat.core.ports import MetadataUnavailable, NodeError

log = logging.getLogger(__name__)


def as_s3_error(exc: BaseException, context: str) -> errors.S3Error:
    """Map any failure to the S3 error the client should see.

    Lower-layer failures become InternalError unless deliberately mapped: an unreachable
    database or node is 503 ServiceUnavailable, which clients retry.
    """
    if isinstance(exc, errors.S3Error):
        return exc
    if isinstance(exc, MetadataUnavailable):
        log.error("%s: metadata database unavailable: %s", context, exc)
        return errors.ServiceUnavailable("The metadata database is unavailable.")
    if isinstance(exc, NodeError):
        log.error("%s: storage node failure: %s", context, exc)
        return errors.ServiceUnavailable("A storage node is unavailable.")
    log.exception("%s: unexpected failure", context, exc_info=exc)
    return errors.InternalError()


def render_error(err: errors.S3Error, *, resource: str, request_id: str, head: bool) -> Response:
    body = (
        b"" if head else xml.error_document(err.code, err.message, resource, request_id, err.extra)
    )
    headers = dict(err.headers)
    if head:
        # HEAD responses have no body; the status and this header carry the error.
        headers["x-amz-error-code"] = err.code
    return Response(body, status_code=err.status, headers=headers, media_type="application/xml")
