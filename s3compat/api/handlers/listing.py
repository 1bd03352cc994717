"""ListObjects (v1), ListObjectsV2 and ListObjectVersions."""

from __future__ import annotations

import base64
import binascii

from starlette.responses import Response

from s3compat.api import xml
from s3compat.api.context import RequestContext
from s3compat.core import errors

MAX_KEYS = 1000


def _max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    try:
        n = int(value)
    except ValueError:
        raise errors.InvalidArgument(
            "Provided max-keys not an integer or within integer range",
            ArgumentName="max-keys",
            ArgumentValue=value,
        ) from None
    if n < 0:
        raise errors.InvalidArgument(
            "Argument maxKeys must be an integer between 0 and 2147483647",
            ArgumentName="maxKeys",
            ArgumentValue=value,
        )
    return min(n, MAX_KEYS)


def _encoding(value: str | None) -> bool:
    if value is None:
        return False
    if value.lower() != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=value,
        )
    return True


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect",
            ArgumentName="continuation-token",
            ArgumentValue=token,
        ) from None


async def list_objects(ctx: RequestContext) -> Response:
    return await _list(ctx, v2=False)


async def list_objects_v2(ctx: RequestContext) -> Response:
    return await _list(ctx, v2=True)


async def _list(ctx: RequestContext, *, v2: bool) -> Response:
    q = ctx.route.query
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    max_keys = _max_keys(q.get("max-keys"))
    encode = _encoding(q.get("encoding-type"))
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    token = q.get("continuation-token") if v2 else None
    start_after = q.get("start-after") if v2 else None
    marker = None if v2 else q.get("marker")
    after = decode_token(token) if token is not None else (start_after if v2 else marker) or None
    page = await ctx.services.objects.list_objects(
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        after=after,
        max_keys=max_keys,
    )
    contents = [(e.key, e.last_modified, e.etag, e.size) for e in page.entries]
    next_marker = page.next_marker if page.is_truncated else None
    if v2:
        body = xml.list_objects(
            v2=True,
            bucket=ctx.bucket,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            encode=encode,
            contents=contents,
            common_prefixes=page.common_prefixes,
            is_truncated=page.is_truncated,
            owner=ctx.user if q.get("fetch-owner") == "true" else None,
            start_after=start_after,
            continuation_token=token,
            next_continuation_token=encode_token(next_marker) if next_marker else None,
            key_count=page.count,
        )
    else:
        body = xml.list_objects(
            v2=False,
            bucket=ctx.bucket,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            encode=encode,
            contents=contents,
            common_prefixes=page.common_prefixes,
            is_truncated=page.is_truncated,
            owner=ctx.user,
            marker=marker or "",
            # S3 returns NextMarker only when a delimiter was given; clients otherwise
            # continue from the last key.
            next_marker=next_marker if delimiter else None,
        )
    return Response(body, media_type="application/xml")


async def list_object_versions(ctx: RequestContext) -> Response:
    """Buckets are unversioned, so every object is listed as its one version, `null`; paging
    by (key-marker, version-id-marker) therefore resumes after the key-marker."""
    q = ctx.route.query
    bucket = await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    max_keys = _max_keys(q.get("max-keys"))
    encode = _encoding(q.get("encoding-type"))
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    key_marker = q.get("key-marker", "")
    version_marker = q.get("version-id-marker", "")
    if version_marker:
        if not key_marker:
            raise errors.InvalidArgument(
                "A version-id marker cannot be specified without a key marker.",
                ArgumentName="version-id-marker",
                ArgumentValue=version_marker,
            )
        if version_marker != "null":
            raise errors.InvalidArgument(
                "Invalid version id specified",
                ArgumentName="version-id-marker",
                ArgumentValue=version_marker,
            )
    page = await ctx.services.objects.list_objects(
        ctx.bucket, prefix=prefix, delimiter=delimiter, after=key_marker or None, max_keys=max_keys
    )
    next_key = page.next_marker if page.is_truncated else None
    ends_on_prefix = next_key is not None and next_key in page.common_prefixes
    body = xml.list_object_versions(
        bucket=ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=max_keys,
        encode=encode,
        key_marker=key_marker,
        version_id_marker=version_marker,
        contents=[(e.key, e.last_modified, e.etag, e.size) for e in page.entries],
        common_prefixes=page.common_prefixes,
        is_truncated=page.is_truncated,
        owner=bucket.owner,
        next_key_marker=next_key,
        next_version_id_marker="null" if next_key is not None and not ends_on_prefix else None,
    )
    return Response(body, media_type="application/xml")
