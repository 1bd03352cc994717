"""PutObject, CopyObject, GetObject, HeadObject, DeleteObject, DeleteObjects."""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from s3compat.api import headers as h
from s3compat.api import xml
from s3compat.api.context import RequestContext
from s3compat.core import errors
from s3compat.core.conditions import ReadOutcome, evaluate_read
from s3compat.core.models import ObjectRecord
from s3compat.core.naming import check_key
from s3compat.service.multipart import parse_part_number
from s3compat.service.objects import CopyRequest, PutRequest

XML = "application/xml"


async def put_object(ctx: RequestContext) -> Response:
    hdrs = ctx.request.headers
    h.check_write_headers(hdrs)
    condition = h.write_condition(hdrs)
    body, checks = ctx.object_body()
    req = PutRequest(
        bucket=ctx.bucket,
        key=ctx.key,
        checks=checks,
        content_type=hdrs.get("content-type"),
        headers=h.stored_headers(hdrs),
        user_meta=h.user_metadata(ctx.raw_headers()),
        condition=condition,
    )
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    record = await ctx.services.objects.put_object(req, body)
    return Response(headers={"ETag": record.etag, **h.checksum_headers(record.checksums)})


async def copy_object(ctx: RequestContext) -> Response:
    hdrs = ctx.request.headers
    h.check_write_headers(hdrs)
    src_bucket, src_key = h.parse_copy_source(hdrs.get("x-amz-copy-source", ""))
    replace = h.metadata_directive(hdrs)
    algorithm = hdrs.get("x-amz-checksum-algorithm")
    req = CopyRequest(
        source_bucket=src_bucket,
        source_key=src_key,
        bucket=ctx.bucket,
        key=ctx.key,
        replace_metadata=replace,
        content_type=hdrs.get("content-type") if replace else None,
        headers=h.stored_headers(hdrs) if replace else {},
        user_meta=h.user_metadata(ctx.raw_headers()) if replace else {},
        source_conditions=h.copy_source_conditions(hdrs),
        condition=h.write_condition(hdrs),
        checksum_algorithm=algorithm.upper() if algorithm else None,
    )
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    await ctx.services.buckets.get_bucket(src_bucket, ctx.user)
    record = await ctx.services.objects.copy_object(req)
    body = xml.copy_object_result(record.etag, record.last_modified, record.checksums)
    return Response(body, media_type=XML)


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
    if record.parts_count is not None and "partNumber" in ctx.route.query:
        # Only with partNumber, as S3 does.
        out["x-amz-mp-parts-count"] = str(record.parts_count)
    if span is None and ctx.header("x-amz-checksum-mode") == "ENABLED":
        # Whole-object checksums only: a ranged GET must not carry one.
        out.update(h.checksum_headers(record.checksums))
    out.update(h.response_overrides(ctx.route.query))
    first, last = span if span is not None else (0, record.size - 1)
    out["Content-Length"] = str(last - first + 1)
    if span is not None:
        out["Content-Range"] = f"bytes {first}-{last}/{record.size}"
    return out, first, last


def _not_modified(ctx: RequestContext, record: ObjectRecord) -> Response | None:
    """304 when If-None-Match / If-Modified-Since say the client's copy is current; raises
    PreconditionFailed for a failed If-Match / If-Unmodified-Since. Before any Range."""
    if evaluate_read(h.read_conditions(ctx.request.headers), record) is ReadOutcome.PROCEED:
        return None
    return Response(
        status_code=304, headers={"ETag": record.etag, "Last-Modified": h.http_date(record)}
    )


async def _read(ctx: RequestContext, *, with_body: bool) -> tuple[ObjectRecord, Response | None]:
    record = await ctx.services.objects.read_object(
        ctx.bucket, ctx.key, ctx.user, with_body=with_body
    )
    return record, _not_modified(ctx, record)


async def head_object(ctx: RequestContext) -> Response:
    record, early = await _read(ctx, with_body=False)
    if early is not None:
        return early
    status, span = _span(ctx, record)
    out, _, _ = _range_headers(ctx, record, span)
    return Response(status_code=status, headers=out)


async def get_object(ctx: RequestContext) -> Response:
    record, early = await _read(ctx, with_body=True)
    if early is not None:
        return early
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


async def delete_objects(ctx: RequestContext) -> Response:
    """POST ?delete: up to 1000 keys. Missing keys count as deleted, as in S3; a version
    other than the `null` one is reported per key (NoSuchVersion), the rest still go."""
    body = await ctx.small_body()
    ctx.verify_small_body_digests(body)
    quiet, objects = xml.parse_delete(body)
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    deleted: list[tuple[str, str | None]] = []
    failed: list[tuple[str, str | None, str, str]] = []
    for key, version in objects:
        try:
            if version is not None and version != "null":
                raise errors.NoSuchVersion()
            check_key(key)
        except errors.S3Error as exc:
            failed.append((key, version, exc.code, exc.message))
        else:
            deleted.append((key, version))
    keys = list(dict.fromkeys(k for k, _ in deleted))
    await ctx.services.objects.delete_objects(ctx.bucket, keys)
    return Response(xml.delete_result([] if quiet else deleted, failed), media_type=XML)
