"""Parsing and producing the HTTP headers of object requests."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import unquote

from s3compat.core import checksums, errors
from s3compat.core.conditions import ReadConditions, WriteCondition, check_copy_source
from s3compat.core.models import ObjectRecord

# Standard headers S3 stores with an object and returns on GET/HEAD (canonical case).
STORED_HEADERS = (
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Cache-Control",
    "Expires",
)
META_PREFIX = "x-amz-meta-"
MAX_USER_META_BYTES = 2048
DEFAULT_CONTENT_TYPE = "binary/octet-stream"

CANNED_ACLS = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "aws-exec-read",
        "authenticated-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
        "log-delivery-write",
    }
)
STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
    }
)
# GET and HEAD query parameters that override a response header (signed requests only,
# which every request here is).
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_HUGE = 10**40  # beyond any size or length: stands in for numbers too long for int()


def _digits(value: str) -> int:
    """int() of a string of digits, which refuses more than 4300 of them (a 500)."""
    value = value.lstrip("0") or "0"
    return int(value) if len(value) <= 40 else _HUGE


def content_md5(headers: Mapping[str, str]) -> bytes | None:
    value = headers.get("content-md5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidDigest() from exc
    if len(digest) != 16:
        raise errors.InvalidDigest()
    return digest


def content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise errors.InvalidArgument("Content-Length is not a number.")
    return _digits(value)


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The standard headers of a PUT that are kept with the object (aws-chunked removed)."""
    kept = {name: headers[name.lower()] for name in STORED_HEADERS if name.lower() in headers}
    return stored_content_encoding(kept)


def user_metadata(raw: list[tuple[str, str]]) -> dict[str, str]:
    """x-amz-meta-* headers (names lower-cased, prefix removed); 2 KB in total at most."""
    meta: dict[str, str] = {}
    total = 0
    for name, value in raw:
        if name.startswith(META_PREFIX):
            short = name[len(META_PREFIX) :]
            # Several headers of one name are joined with commas, as HTTP allows.
            meta[short] = f"{meta[short]},{value}" if short in meta else value
            total += len(short.encode()) + len(value.encode())
    if total > MAX_USER_META_BYTES:
        raise errors.MetadataTooLarge(MaxSizeAllowed=str(MAX_USER_META_BYTES))
    return meta


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes of a single Range header, or None for the whole object.

    A header S3 cannot parse (several ranges, another unit) is ignored as S3 does;
    a well-formed but unsatisfiable one is InvalidRange (416).
    """
    if value is None:
        return None
    match = _RANGE.match(value.strip())
    if match is None:
        return None
    start, end = match.group(1), match.group(2)
    if not start and not end:
        return None
    if not start:
        suffix = _digits(end)
        if suffix == 0 or size == 0:
            raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)
        return max(0, size - suffix), size - 1
    first = _digits(start)
    last = _digits(end) if end else size - 1
    if end and last < first:
        return None  # syntactically invalid: ignored, as S3 does
    if first >= size:
        raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)
    return first, min(last, size - 1)


def http_date(record: ObjectRecord) -> str:
    moment = record.last_modified.astimezone(UTC).replace(microsecond=0)
    return format_datetime(moment, usegmt=True)


def object_headers(record: ObjectRecord) -> dict[str, str]:
    """Headers common to GetObject and HeadObject."""
    out = {
        "ETag": record.etag,
        "Last-Modified": http_date(record),
        "Accept-Ranges": "bytes",
        "Content-Type": record.content_type or DEFAULT_CONTENT_TYPE,
    }
    out.update(record.headers)
    for name, value in record.user_meta.items():
        out[META_PREFIX + name] = value
    return out


def check_acl(headers: Mapping[str, str]) -> None:
    """Objects and buckets are private to their owner: `x-amz-acl: private` says just that
    and is accepted; any other ACL would promise access nobody enforces, so it is refused
    (501) rather than ignored."""
    acl = headers.get("x-amz-acl")
    if acl is not None:
        if acl not in CANNED_ACLS:
            raise errors.InvalidArgument(ArgumentName="x-amz-acl", ArgumentValue=acl)
        if acl != "private":
            raise errors.NotImplementedError_(
                f"The canned ACL {acl} is not implemented; objects are private.",
                Header="x-amz-acl",
            )
    for name in headers:
        if name.lower().startswith("x-amz-grant-"):
            raise errors.NotImplementedError_(
                "ACL grants are not implemented; objects are private.", Header=name
            )


def check_storage_class(headers: Mapping[str, str]) -> None:
    """STANDARD is the only storage class; others are refused rather than ignored."""
    value = headers.get("x-amz-storage-class")
    if value is None:
        return
    if value not in STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=value)
    if value != "STANDARD":
        raise errors.NotImplementedError_(
            f"The storage class {value} is not implemented; use STANDARD.",
            Header="x-amz-storage-class",
        )


# Write headers that ask for something this store does not do. Ignoring them would tell
# the client its object is tagged, encrypted or locked when it is not.
UNSUPPORTED_WRITE_HEADERS = (
    "x-amz-tagging",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-website-redirect-location",
)


def check_write_headers(headers: Mapping[str, str]) -> None:
    """PutObject, CopyObject, CreateMultipartUpload: ACL, storage class, and no feature the
    store lacks (501 rather than a silent no-op; an empty x-amz-tagging asks for nothing)."""
    check_acl(headers)
    check_storage_class(headers)
    for name in UNSUPPORTED_WRITE_HEADERS:
        if headers.get(name):
            raise errors.NotImplementedError_(
                "A header you provided implies functionality that is not implemented",
                Header=name,
            )


def response_overrides(query: Mapping[str, str]) -> dict[str, str]:
    """The headers a GET or HEAD's response-* query parameters replace."""
    return {header: query[param] for param, header in RESPONSE_OVERRIDES.items() if param in query}


def metadata_directive(headers: Mapping[str, str]) -> bool:
    """x-amz-metadata-directive: True for REPLACE, False for COPY (the default)."""
    value = headers.get("x-amz-metadata-directive", "COPY")
    if value not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(
            "Unknown metadata directive.",
            ArgumentName="x-amz-metadata-directive",
            ArgumentValue=value,
        )
    return value == "REPLACE"


def parse_copy_source(value: str) -> tuple[str, str]:
    """`x-amz-copy-source` → (bucket, key): URL-encoded, with or without a leading slash.

    Only the null version exists on unversioned buckets, so `?versionId=null` is accepted
    and any other version id is refused.
    """
    raw, _, query = value.partition("?")
    if query:
        name, _, version = query.partition("=")
        if name != "versionId" or version != "null":
            raise errors.InvalidArgument(
                "Invalid version id specified",
                ArgumentName="x-amz-copy-source",
                ArgumentValue=value,
            )
    try:
        path = unquote(raw.lstrip("/"), errors="strict")
    except UnicodeDecodeError:
        raise errors.InvalidArgument("Invalid copy source encoding") from None
    bucket, sep, key = path.partition("/")
    if not sep or not bucket or not key:
        raise errors.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=value,
        )
    return bucket, key


def parse_copy_source_range(value: str | None, size: int) -> tuple[int, int] | None:
    if value is None:
        return None
    match = _RANGE.match(value.strip())
    if match is None or not match.group(1) or not match.group(2):
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    first, last = _digits(match.group(1)), _digits(match.group(2))
    if first > last or last >= size:
        raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=value)
    return first, last


def _http_time(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _conditions(headers: Mapping[str, str], prefix: str) -> ReadConditions:
    def when(name: str) -> datetime | None:
        value = headers.get(prefix + name)
        return _http_time(value) if value is not None else None

    return ReadConditions(
        if_match=headers.get(prefix + "if-match"),
        if_none_match=headers.get(prefix + "if-none-match"),
        if_modified_since=when("if-modified-since"),
        if_unmodified_since=when("if-unmodified-since"),
    )


def read_conditions(headers: Mapping[str, str]) -> ReadConditions:
    """If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since of a GET or HEAD.
    A date that does not parse is ignored, as HTTP says."""
    return _conditions(headers, "")


def copy_source_conditions(headers: Mapping[str, str]) -> ReadConditions:
    """The x-amz-copy-source-if-* headers of CopyObject and UploadPartCopy."""
    return _conditions(headers, "x-amz-copy-source-")


def check_copy_source_conditions(headers: Mapping[str, str], record: ObjectRecord) -> None:
    check_copy_source(copy_source_conditions(headers), record)


def write_condition(headers: Mapping[str, str]) -> WriteCondition | None:
    """`If-None-Match: *` and `If-Match: <etag>` on PutObject and CompleteMultipartUpload.
    If-None-Match takes nothing but `*` (S3 answers 501 to anything else)."""
    if_none = headers.get("if-none-match")
    if_match = headers.get("if-match")
    if if_none is None and if_match is None:
        return None
    if if_none is not None and if_none.strip() != "*":
        raise errors.NotImplementedError_(
            "A header you provided implies functionality that is not implemented",
            Header="If-None-Match",
        )
    return WriteCondition(if_match=if_match, if_none_match=if_none is not None)


def _checksum_value(algorithm: str, value: str, where: str) -> bytes:
    try:
        return checksums.parse_b64(algorithm, value)
    except ValueError:
        raise errors.InvalidRequest(f"Value for {where} is invalid.") from None


def requested_checksum(
    headers: Mapping[str, str], raw: list[tuple[str, str]], default_algorithm: str | None = None
) -> tuple[str | None, bytes | None, str | None]:
    """(algorithm, value from a header, trailer name) of the flexible checksum a write asks for.

    The value comes from an `x-amz-checksum-<alg>` header, or is announced in `x-amz-trailer`
    and arrives after an aws-chunked body. `x-amz-sdk-checksum-algorithm` (or the upload's
    algorithm) alone means: compute it and store it.
    """
    found = [(n, v) for n, v in raw if checksums.algorithm_from_header(n) is not None]
    if len(found) > 1:
        raise errors.InvalidRequest("Expecting a single x-amz-checksum- header.")
    trailer_names = [
        t.strip().lower() for t in headers.get("x-amz-trailer", "").split(",") if t.strip()
    ]
    trailer = next((t for t in trailer_names if checksums.algorithm_from_header(t)), None)
    if found:
        name, value = found[0]
        algorithm = checksums.algorithm_from_header(name)
        assert algorithm is not None
        return algorithm, _checksum_value(algorithm, value, name), None
    if trailer is not None:
        return checksums.algorithm_from_header(trailer), None, trailer
    sdk = headers.get("x-amz-sdk-checksum-algorithm") or default_algorithm
    if sdk:
        try:
            return checksums.normalize(sdk), None, None
        except ValueError:
            raise errors.InvalidRequest(
                "Value for x-amz-sdk-checksum-algorithm header is invalid."
            ) from None
    return None, None, None


def stored_content_encoding(stored: dict[str, str]) -> dict[str, str]:
    """aws-chunked is transfer framing, never part of the object's Content-Encoding."""
    value = stored.get("Content-Encoding")
    if value is None:
        return stored
    kept = [e.strip() for e in value.split(",") if e.strip() and e.strip() != "aws-chunked"]
    out = {k: v for k, v in stored.items() if k != "Content-Encoding"}
    if kept:
        out["Content-Encoding"] = ", ".join(kept)
    return out


def checksum_headers(checksum_values: dict[str, str] | None) -> dict[str, str]:
    return {checksums.header_name(a): v for a, v in (checksum_values or {}).items()}
