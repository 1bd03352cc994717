"""ListObjects (v1) and ListObjectsV2 over the key index.

Keys come from PostgreSQL in byte order, a bounded batch at a time. A key that falls under
a common prefix is folded into it, and the rest of that prefix's keys are skipped in the
database (by seeking to the prefix's upper bound) rather than fetched and discarded, so a
page costs about what it returns, not what the bucket holds.
"""

from __future__ import annotations

from s3compat.core.models import ListPage
from s3compat.core.naming import prefix_upper_bound
from s3compat.core.ports import MetadataStore

# Rows per query: a full page of 1000 plus the one that tells whether it is truncated, so a
# page without delimiter roll-ups is one query.
MAX_BATCH = 1001


def _common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[: at + len(delimiter)]


async def list_objects(
    meta: MetadataStore,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str | None = None,
    after: str | None = None,
    max_keys: int = 1000,
) -> ListPage:
    """One page of keys after `after` (exclusive), the way S3 pages them.

    When `after` is itself a common prefix (or a key inside one) that page already reported,
    listing resumes past every key under that prefix.
    """
    page = ListPage()
    below = prefix_upper_bound(prefix) if prefix else None
    at_least: str | None = prefix or None
    skip: str | None = None
    if max_keys <= 0:
        return page
    if after is not None and after.startswith(prefix):
        skip = _common_prefix(after, prefix, delimiter)
        if skip is not None:
            at_least, after = prefix_upper_bound(skip), None
            if at_least is None:
                return page
    while True:
        batch = min(max_keys - page.count + 1, MAX_BATCH)
        rows = await meta.list_keys(
            bucket, after=after, at_least=at_least, below=below, limit=batch
        )
        for entry in rows:
            if skip is not None and entry.key.startswith(skip):
                continue
            if page.count >= max_keys:
                page.is_truncated = True
                return page
            cp = _common_prefix(entry.key, prefix, delimiter)
            if cp is None:
                page.entries.append(entry)
                page.next_marker = entry.key
            else:
                page.common_prefixes.append(cp)
                page.next_marker = cp
            skip = cp
        if len(rows) < batch:
            return page
        if skip is not None:
            at_least, after = prefix_upper_bound(skip), None
            if at_least is None:
                return page
        else:
            after = rows[-1].key
