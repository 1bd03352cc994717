"""The read-only operations clients probe before real work: GetBucketVersioning (rclone
purge), GetObjectTagging (aws-cli before a multipart copy), GetBucketTagging and the ACLs.

Versioning and tagging do not exist yet, so the answers are the ones S3 gives for an
unversioned bucket without tags; the ACL is the owner with FULL_CONTROL.
"""

from __future__ import annotations

from starlette.responses import Response

from s3compat.api import xml
from s3compat.api.context import RequestContext

XML = "application/xml"


async def get_bucket_versioning(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    return Response(xml.versioning_configuration(), media_type=XML)


async def get_bucket_tagging(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    return Response(xml.empty_tagging(), media_type=XML)


async def get_bucket_acl(ctx: RequestContext) -> Response:
    bucket = await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    return Response(xml.owner_full_control_acl(bucket.owner), media_type=XML)


async def get_object_tagging(ctx: RequestContext) -> Response:
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    await ctx.services.objects.get_object(ctx.bucket, ctx.key)
    return Response(xml.empty_tagging(), media_type=XML)


async def get_object_acl(ctx: RequestContext) -> Response:
    bucket = await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    await ctx.services.objects.get_object(ctx.bucket, ctx.key)
    return Response(xml.owner_full_control_acl(bucket.owner), media_type=XML)
