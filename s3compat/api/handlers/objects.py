"""PutObject, GetObject, HeadObject, DeleteObject."""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from s3compat.api import headers as h
from s3compat.api.context import RequestContext
from s3compat.core import errors
from s3compat.core.models import ObjectRecord
from s3compat.service.multipart import parse_part_number
from s3compat.service.objects import PutRequest


async def put_object(ctx: RequestContext) -> Response:
    hdrs = ctx.request.headers
    body, checks = ctx.object_body()
    req = PutRequest(
        bucket=ctx.bucket,
        key=ctx.key,
        checks=checks,
        content_type=hdrs.get("content-type"),
        headers=h.stored_headers(hdrs),
        user_meta=h.user_metadata(ctx.raw_headers()),
    )
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.put_object(req, body)
    return Response(headers={"ETag": record.etag, **h.checksum_headers(record.checksums)})


def _span(ctx: RequestContext, record: ObjectRecord) -> tuple[int, tuple[int, int] | None]:
    """(status, (first, last) or None for the whole object) from Range or partNumber."""
    version = ctx.route.query.get("versionId")
    if version is not None and version != "null":
        # Buckets are unversioned: "null" is the only version there is (rclone asks for it).
        raise errors.InvalidArgument(
            "Invalid version id specified", ArgumentName="versionId", ArgumentValue=version
        )
    number = ctx.route.query.get("partNumber")
    if number is None:
        span = h.parse_range(ctx.header("range"), record.size)
        return (200, None) if span is None else (206, span)
    if ctx.header("range") is not None:
        raise errors.InvalidRequest(
            "Cannot specify both Range header and partNumber query parameter"
        )
    n = parse_part_number(number)
    if n > len(record.parts):
        raise errors.InvalidPartNumber(
            PartNumberRequested=number, ActualPartCount=str(len(record.parts))
        )
    part = record.parts[n - 1]
    if part.size == 0:
        return 206, None
    return 206, (part.offset, part.offset + part.size - 1)


def _range_headers(
    ctx: RequestContext, record: ObjectRecord, span: tuple[int, int] | None
) -> tuple[dict[str, str], int, int]:
    out = h.object_headers(record)
    if span is None and ctx.header("x-amz-checksum-mode") == "ENABLED":
        # Whole-object checksums only: a ranged GET must not carry one.
        out.update(h.checksum_headers(record.checksums))
    first, last = span if span is not None else (0, record.size - 1)
    out["Content-Length"] = str(last - first + 1)
    if span is not None:
        out["Content-Range"] = f"bytes {first}-{last}/{record.size}"
    return out, first, last


async def head_object(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.get_object(ctx.bucket, ctx.key)
    status, span = _span(ctx, record)
    out, _, _ = _range_headers(ctx, record, span)
    return Response(status_code=status, headers=out)


async def get_object(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.get_object(ctx.bucket, ctx.key)
    status, span = _span(ctx, record)
    out, first, last = _range_headers(ctx, record, span)
    if last < first:
        return Response(status_code=status, headers=out)
    stream = await ctx.services.objects.open_range(record, first, last)
    return StreamingResponse(stream, status_code=status, headers=out)


async def delete_object(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    await ctx.services.objects.delete_object(ctx.bucket, ctx.key)
    return Response(status_code=204)
