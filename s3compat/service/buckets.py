"""Bucket operations: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation,
and the bucket's lifecycle (Put/GetBucketLifecycleConfiguration, DeleteBucketLifecycle)."""

from __future__ import annotations

from s3compat.core import errors
from s3compat.core.lifecycle import LifecycleConfiguration
from s3compat.core.models import Bucket
from s3compat.core.naming import check_bucket_name
from s3compat.core.ports import MetadataStore


def check_access(name: str, bucket: Bucket | None, owner: str | None) -> Bucket:
    """`bucket` as found under `name`: NoSuchBucket if none, AccessDenied if `owner` is
    given and is not its owner."""
    if bucket is None:
        raise errors.NoSuchBucket(BucketName=name)
    if owner is not None and bucket.owner != owner:
        raise errors.AccessDenied()
    return bucket


class BucketService:
    def __init__(self, meta: MetadataStore, region: str) -> None:
        self.meta = meta
        self.region = region

    async def create_bucket(self, name: str, owner: str, location: str | None) -> Bucket:
        """Create, or answer as us-east-1 does when the caller already owns the bucket.

        rclone re-sends CreateBucket before uploads, so re-creating your own bucket is a
        success; another owner's bucket is BucketAlreadyExists.
        """
        check_bucket_name(name)
        region = location or self.region
        created = await self.meta.create_bucket(name, owner, region)
        if created is not None:
            return created
        existing = await self.meta.get_bucket(name)
        if existing is None:  # deleted in between; the client may retry
            raise errors.ServiceUnavailable("The bucket is being deleted; please retry.")
        if existing.owner != owner:
            raise errors.BucketAlreadyExists(BucketName=name)
        if self.region != "us-east-1":
            raise errors.BucketAlreadyOwnedByYou(BucketName=name)
        return existing

    async def get_bucket(self, name: str, owner: str | None = None) -> Bucket:
        """The bucket, or NoSuchBucket; AccessDenied if `owner` is given and differs."""
        return check_access(name, await self.meta.get_bucket(name), owner)

    async def list_buckets(self, owner: str) -> list[Bucket]:
        return await self.meta.list_buckets(owner)

    async def delete_bucket(self, name: str, owner: str) -> None:
        await self.get_bucket(name, owner)
        await self.meta.delete_bucket(name)

    # --- lifecycle: the owner only ---------------------------------------------------

    async def put_bucket_lifecycle(
        self, name: str, owner: str, config: LifecycleConfiguration
    ) -> None:
        await self.get_bucket(name, owner)
        if not await self.meta.put_bucket_lifecycle(name, config.with_rule_ids()):
            raise errors.NoSuchBucket(BucketName=name)

    async def get_bucket_lifecycle(self, name: str, owner: str) -> LifecycleConfiguration:
        await self.get_bucket(name, owner)
        config = await self.meta.get_bucket_lifecycle(name)
        if config is None:
            raise errors.NoSuchLifecycleConfiguration(BucketName=name)
        return config

    async def delete_bucket_lifecycle(self, name: str, owner: str) -> None:
        """Idempotent, as on S3: deleting a configuration that does not exist succeeds."""
        await self.get_bucket(name, owner)
        if not await self.meta.delete_bucket_lifecycle(name):
            raise errors.NoSuchBucket(BucketName=name)
