"""PutObject, GetObject, HeadObject, DeleteObject."""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from s3compat.api import headers as h
from s3compat.api.context import RequestContext
from s3compat.core import errors
from s3compat.service.blobs import BodyChecks
from s3compat.service.objects import PutRequest


async def put_object(ctx: RequestContext) -> Response:
    hdrs = ctx.request.headers
    length = h.content_length(hdrs)
    if length is None and "transfer-encoding" not in hdrs:
        raise errors.MissingContentLength()
    req = PutRequest(
        bucket=ctx.bucket,
        key=ctx.key,
        checks=BodyChecks(
            content_length=length,
            content_md5=h.content_md5(hdrs),
            sha256_hex=ctx.signed_sha256(),
        ),
        content_type=hdrs.get("content-type"),
        headers=h.stored_headers(hdrs),
        user_meta=h.user_metadata(
            [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in hdrs.raw]
        ),
    )
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.put_object(req, ctx.body_stream())
    return Response(headers={"ETag": record.etag})


async def head_object(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.get_object(ctx.bucket, ctx.key)
    out = h.object_headers(record)
    status = 200
    span = h.parse_range(ctx.header("range"), record.size)
    if span is None:
        out["Content-Length"] = str(record.size)
    else:
        status = 206
        out["Content-Length"] = str(span[1] - span[0] + 1)
        out["Content-Range"] = f"bytes {span[0]}-{span[1]}/{record.size}"
    return Response(status_code=status, headers=out)


async def get_object(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.get_object(ctx.bucket, ctx.key)
    out = h.object_headers(record)
    span = h.parse_range(ctx.header("range"), record.size)
    if span is None:
        status, first, last = 200, 0, record.size - 1
    else:
        status, (first, last) = 206, span
        out["Content-Range"] = f"bytes {first}-{last}/{record.size}"
    out["Content-Length"] = str(last - first + 1)
    if record.size == 0:
        return Response(status_code=status, headers=out)
    stream = await ctx.services.objects.open_range(record, first, last)
    return StreamingResponse(stream, status_code=status, headers=out)


async def delete_object(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    await ctx.services.objects.delete_object(ctx.bucket, ctx.key)
    return Response(status_code=204)
