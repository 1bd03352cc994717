"""Conditional requests: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.

Pure decisions over an object's ETag and Last-Modified; the HTTP layer parses the headers
and the metadata store applies write conditions inside the transaction that replaces the
object, so racing conditional writers cannot both win.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from s3compat.core import errors
from s3compat.core.models import ObjectRecord


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names `etag` (quotes optional, `*` any)."""
    wanted = {t.strip() for t in header.split(",")}
    if "*" in wanted:
        return True
    bare = etag.strip('"')
    return any(w.removeprefix("W/").strip('"') == bare for w in wanted)


@dataclass(frozen=True, slots=True)
class ReadConditions:
    """The conditions of a GET or HEAD (dates already parsed; unparsable ones are None)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None


class ReadOutcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not modified"  # 304


def evaluate_read(conditions: ReadConditions, record: ObjectRecord) -> ReadOutcome:
    """S3's precedence: a true If-Match overrides a false If-Unmodified-Since (200), and a
    false If-None-Match answers 304 whatever If-Modified-Since says. Raises
    PreconditionFailed (412) when If-Match or If-Unmodified-Since fails."""
    modified = record.last_modified.replace(microsecond=0)
    if conditions.if_match is not None:
        if not etag_matches(conditions.if_match, record.etag):
            raise errors.PreconditionFailed(Condition="If-Match")
    elif conditions.if_unmodified_since is not None and modified > conditions.if_unmodified_since:
        raise errors.PreconditionFailed(Condition="If-Unmodified-Since")
    if conditions.if_none_match is not None:
        if etag_matches(conditions.if_none_match, record.etag):
            return ReadOutcome.NOT_MODIFIED
    elif conditions.if_modified_since is not None and modified <= conditions.if_modified_since:
        return ReadOutcome.NOT_MODIFIED
    return ReadOutcome.PROCEED


def check_copy_source(conditions: ReadConditions, record: ObjectRecord) -> None:
    """x-amz-copy-source-if-*: the read rules, except that every failure is a 412."""
    names = {
        "If-Match": "x-amz-copy-source-If-Match",
        "If-Unmodified-Since": "x-amz-copy-source-If-Unmodified-Since",
    }
    try:
        outcome = evaluate_read(conditions, record)
    except errors.PreconditionFailed as exc:
        condition = exc.extra.get("Condition", "")
        raise errors.PreconditionFailed(Condition=names.get(condition, condition)) from None
    if outcome is ReadOutcome.NOT_MODIFIED:
        condition = (
            "x-amz-copy-source-If-None-Match"
            if conditions.if_none_match is not None
            else "x-amz-copy-source-If-Modified-Since"
        )
        raise errors.PreconditionFailed(Condition=condition)


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """PutObject / CompleteMultipartUpload / CopyObject: `If-None-Match: *` (only if no object
    has the key) and `If-Match: <etag>` (only if the current object has that ETag)."""

    if_match: str | None = None
    if_none_match: bool = False

    def check(self, current: ObjectRecord | None) -> None:
        if self.if_none_match and current is not None:
            raise errors.PreconditionFailed(Condition="If-None-Match")
        if self.if_match is not None:
            if current is None:
                raise errors.NoSuchKey()
            if not etag_matches(self.if_match, current.etag):
                raise errors.PreconditionFailed(Condition="If-Match")

    @property
    def active(self) -> bool:
        return self.if_none_match or self.if_match is not None
