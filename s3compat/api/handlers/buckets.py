"""ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation."""

from __future__ import annotations

from starlette.responses import Response

from s3compat.api import headers as h
from s3compat.api import xml
from s3compat.api.context import RequestContext

XML = "application/xml"


async def list_buckets(ctx: RequestContext) -> Response:
    buckets = await ctx.services.buckets.list_buckets(ctx.user)
    body = xml.list_all_my_buckets(ctx.user, ((b.name, b.created_at, b.region) for b in buckets))
    return Response(body, media_type=XML)


async def create_bucket(ctx: RequestContext) -> Response:
    h.check_acl(ctx.request.headers)
    location = xml.parse_create_bucket_configuration(await ctx.small_body())
    await ctx.services.buckets.create_bucket(ctx.bucket, ctx.user, location)
    return Response(headers={"Location": f"/{ctx.bucket}"})


async def head_bucket(ctx: RequestContext) -> Response:
    bucket = await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    return Response(headers={"x-amz-bucket-region": bucket.region})


async def delete_bucket(ctx: RequestContext) -> Response:
    await ctx.services.buckets.delete_bucket(ctx.bucket, ctx.user)
    return Response(status_code=204)


async def get_bucket_location(ctx: RequestContext) -> Response:
    bucket = await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    return Response(xml.location_constraint(bucket.region), media_type=XML)
