"""CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
AbortMultipartUpload, ListParts, ListMultipartUploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

from s3compat.api import headers as h
from s3compat.api import xml
from s3compat.api.context import RequestContext
from s3compat.api.errors import as_s3_error
from s3compat.core import errors
from s3compat.core.models import ObjectRecord
from s3compat.service.blobs import BodyChecks
from s3compat.service.multipart import (
    MAX_PARTS_PER_PAGE,
    MAX_UPLOADS_PER_PAGE,
    parse_part_number,
)

XML = "application/xml"
# CompleteMultipartUpload answers within this time, or starts a 200 kept alive with spaces.
KEEPALIVE_AFTER = 2.0
KEEPALIVE_EVERY = 5.0


def _int_param(ctx: RequestContext, name: str, default: int, limit: int) -> int:
    value = ctx.route.query.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise errors.InvalidArgument(
            f"Argument {name} must be an integer between 0 and 2147483647",
            ArgumentName=name,
            ArgumentValue=value,
        )
    return min(n, limit)


async def create_multipart_upload(ctx: RequestContext) -> Response:
    hdrs = ctx.request.headers
    h.check_write_headers(hdrs)
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    upload = await ctx.services.multipart.create_multipart_upload(
        ctx.bucket,
        ctx.key,
        ctx.user,
        content_type=hdrs.get("content-type"),
        headers=h.stored_headers(hdrs),
        user_meta=h.user_metadata(ctx.raw_headers()),
        checksum_algorithm=hdrs.get("x-amz-checksum-algorithm"),
    )
    body = xml.initiate_multipart_upload(ctx.bucket, ctx.key, str(upload.upload_id))
    return Response(body, media_type=XML)


async def upload_part(ctx: RequestContext) -> Response:
    number = parse_part_number(ctx.route.query.get("partNumber"))
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    upload_id = ctx.route.query.get("uploadId", "")
    upload = await ctx.services.multipart.get_upload(ctx.bucket, ctx.key, upload_id)
    body, checks = ctx.object_body(default_checksum=upload.checksum_algorithm)
    etag, checksum = await ctx.services.multipart.upload_part(
        ctx.bucket, ctx.key, upload_id, number, body, checks
    )
    return Response(
        headers={"ETag": etag, **h.checksum_headers(dict([checksum]) if checksum else None)}
    )


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def upload_part_copy(ctx: RequestContext) -> Response:
    hdrs = ctx.request.headers
    number = parse_part_number(ctx.route.query.get("partNumber"))
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    src_bucket, src_key = h.parse_copy_source(hdrs.get("x-amz-copy-source", ""))
    await ctx.services.buckets.get_bucket(src_bucket, ctx.user)
    # Fail fast on an unknown upload, before reading the source.
    upload = await ctx.services.multipart.get_upload(
        ctx.bucket, ctx.key, ctx.route.query.get("uploadId", "")
    )
    source: ObjectRecord = await ctx.services.objects.get_object(src_bucket, src_key)
    h.check_copy_source_conditions(hdrs, source)
    span = h.parse_copy_source_range(hdrs.get("x-amz-copy-source-range"), source.size)
    first, last = span if span is not None else (0, source.size - 1)
    size = last - first + 1
    etag = await ctx.services.multipart.share_part(upload, number, source, first, last)
    if etag is None:
        body = await ctx.services.objects.open_range(source, first, last) if size else _empty()
        etag, _ = await ctx.services.multipart.upload_part(
            ctx.bucket,
            ctx.key,
            ctx.route.query.get("uploadId", ""),
            number,
            body,
            BodyChecks(content_length=size),
        )
    parts = await ctx.services.multipart.list_parts(
        ctx.bucket, ctx.key, ctx.route.query.get("uploadId", ""), marker=number - 1, max_parts=1
    )
    modified = parts.parts[0].last_modified if parts.parts else source.last_modified
    return Response(xml.copy_part_result(etag, modified), media_type=XML)


async def complete_multipart_upload(ctx: RequestContext) -> Response:
    condition = h.write_condition(ctx.request.headers)
    parts = xml.parse_complete_multipart_upload(await ctx.small_body())
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    upload_id = ctx.route.query.get("uploadId", "")
    full_object = (ctx.header("x-amz-checksum-type") or "").upper() == "FULL_OBJECT"

    async def finish() -> bytes:
        record = await ctx.services.multipart.complete_multipart_upload(
            ctx.bucket, ctx.key, upload_id, parts, full_object=full_object, condition=condition
        )
        location = f"{ctx.request.base_url}{quote(ctx.bucket)}/{quote(ctx.key)}"
        return xml.complete_multipart_upload(
            location, ctx.bucket, ctx.key, record.etag, record.checksums
        )

    return await keepalive_response(
        finish(), resource=ctx.request.url.path, request_id=ctx.request_id
    )


async def keepalive_response(
    work: Awaitable[bytes],
    *,
    resource: str,
    request_id: str,
    after: float = KEEPALIVE_AFTER,
    every: float = KEEPALIVE_EVERY,
) -> Response:
    """The result of `work`, answered the way S3 answers a long CompleteMultipartUpload.

    Quick work gets an ordinary response (errors with their own status). Slow work gets a
    200 at once, whitespace every few seconds so proxies and clients do not time out, and
    then the result document, or an error document that clients detect in the body.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=after)
    if done:
        return Response(task.result(), media_type=XML)

    async def stream() -> AsyncIterator[bytes]:
        yield b'<?xml version="1.0" encoding="UTF-8"?>\n'
        while True:
            finished, _ = await asyncio.wait({task}, timeout=every)
            if finished:
                break
            yield b" "
        try:
            doc = task.result()
        except Exception as exc:
            err = as_s3_error(exc, f"request {request_id}")
            doc = xml.error_document(err.code, err.message, resource, request_id, err.extra)
        yield doc.split(b"?>", 1)[1] if doc.startswith(b"<?xml") else doc

    return StreamingResponse(stream(), media_type=XML)


async def abort_multipart_upload(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    await ctx.services.multipart.abort_multipart_upload(
        ctx.bucket, ctx.key, ctx.route.query.get("uploadId", "")
    )
    return Response(status_code=204)


async def list_parts(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    max_parts = _int_param(ctx, "max-parts", MAX_PARTS_PER_PAGE, MAX_PARTS_PER_PAGE)
    marker = _int_param(ctx, "part-number-marker", 0, 10_000)
    page = await ctx.services.multipart.list_parts(
        ctx.bucket, ctx.key, ctx.route.query.get("uploadId", ""), marker=marker, max_parts=max_parts
    )
    body = xml.list_parts(
        bucket=ctx.bucket,
        key=ctx.key,
        upload_id=str(page.upload.upload_id),
        owner=page.upload.owner,
        marker=marker,
        next_marker=page.next_marker,
        max_parts=max_parts,
        is_truncated=page.is_truncated,
        parts=((p.part_number, p.last_modified, p.etag, p.size) for p in page.parts),
    )
    return Response(body, media_type=XML)


async def list_multipart_uploads(ctx: RequestContext) -> Response:
    q = ctx.route.query
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    max_uploads = _int_param(ctx, "max-uploads", MAX_UPLOADS_PER_PAGE, MAX_UPLOADS_PER_PAGE)
    encoding = q.get("encoding-type")
    if encoding is not None and encoding.lower() != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=encoding,
        )
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    key_marker = q.get("key-marker", "")
    upload_id_marker = q.get("upload-id-marker", "")
    page = await ctx.services.multipart.list_multipart_uploads(
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker or None,
        upload_id_marker=upload_id_marker or None,
        max_uploads=max_uploads,
    )
    body = xml.list_multipart_uploads(
        bucket=ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        next_key_marker=page.next_key_marker if page.is_truncated else None,
        next_upload_id_marker=page.next_upload_id_marker if page.is_truncated else None,
        max_uploads=max_uploads,
        is_truncated=page.is_truncated,
        encode=encoding is not None,
        uploads=((u.key, str(u.upload_id), u.initiated, u.owner) for u in page.uploads),
        common_prefixes=page.common_prefixes,
    )
    return Response(body, media_type=XML)
