"""PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration, DeleteBucketLifecycle.

Only AbortIncompleteMultipartUpload rules covering the whole bucket are accepted (see
s3compat/core/lifecycle.py); they set the age at which the janitor aborts the bucket's
incomplete multipart uploads. Only the bucket's owner may read or change them.
"""

from __future__ import annotations

import hashlib

from starlette.responses import Response

from s3compat.api import headers as h
from s3compat.api import xml
from s3compat.api.context import RequestContext
from s3compat.service.blobs import BodyChecks

XML = "application/xml"


async def put_bucket_lifecycle_configuration(ctx: RequestContext) -> Response:
    # The bucket and its owner first: a stranger learns nothing from how we parse.
    await ctx.services.buckets.get_bucket(ctx.bucket, ctx.user)
    content_md5 = h.content_md5(ctx.request.headers)
    body = await ctx.small_body()
    BodyChecks(content_md5=content_md5).verify(len(body), hashlib.md5(body).digest(), None)
    config = xml.parse_lifecycle_configuration(body)
    await ctx.services.buckets.put_bucket_lifecycle(ctx.bucket, ctx.user, config)
    return Response()


async def get_bucket_lifecycle_configuration(ctx: RequestContext) -> Response:
    config = await ctx.services.buckets.get_bucket_lifecycle(ctx.bucket, ctx.user)
    return Response(xml.lifecycle_configuration(config), media_type=XML)


async def delete_bucket_lifecycle(ctx: RequestContext) -> Response:
    await ctx.services.buckets.delete_bucket_lifecycle(ctx.bucket, ctx.user)
    return Response(status_code=204)
