"""Routing: the request line → which S3 operation, on which bucket and key.

A pure function of (method, raw path, raw query, Host, headers) so the whole table is
unit-tested from request lines alone, with no Starlette, network or database.

Rules that protect data:
- The key is taken from the *raw* path and percent-decoded exactly once, never
  normalised: `a//b`, `a/../b`, a trailing `/` and `%2F` are all distinct, legal keys,
  and `+` stays `+` (only the query language of HTML forms turns it into a space).
- Subresources pick the operation from an explicit table. A subresource we do not
  implement is answered 501 NotImplemented and never falls through to a plain object or
  bucket operation: `PUT /b/k?policy` silently becoming PutObject would overwrite data.
- On writes (PUT, POST, DELETE) any query parameter we do not know is refused the same
  way, for the same reason. Reads ignore unknown plain parameters, as AWS does, so SDK
  extras and presigned-URL parameters never break a GET.

Op values are AWS action names, for logs and metrics.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from s3compat.core.errors import (
    InvalidArgument,
    InvalidURI,
    KeyTooLongError,
    MethodNotAllowed,
    NotImplementedError_,
)

MAX_KEY_BYTES: Final = 1024
COPY_SOURCE_HEADER: Final = "x-amz-copy-source"


class Op(enum.Enum):
    """Every operation the gateway routes to; values are the AWS action names."""

    # Service
    LIST_BUCKETS = "ListBuckets"
    # Bucket
    CREATE_BUCKET = "CreateBucket"
    HEAD_BUCKET = "HeadBucket"
    DELETE_BUCKET = "DeleteBucket"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    GET_BUCKET_VERSIONING = "GetBucketVersioning"
    PUT_BUCKET_VERSIONING = "PutBucketVersioning"
    GET_BUCKET_ACL = "GetBucketAcl"
    PUT_BUCKET_ACL = "PutBucketAcl"
    GET_BUCKET_TAGGING = "GetBucketTagging"
    PUT_BUCKET_TAGGING = "PutBucketTagging"
    DELETE_BUCKET_TAGGING = "DeleteBucketTagging"
    GET_BUCKET_LIFECYCLE_CONFIGURATION = "GetBucketLifecycleConfiguration"
    PUT_BUCKET_LIFECYCLE_CONFIGURATION = "PutBucketLifecycleConfiguration"
    DELETE_BUCKET_LIFECYCLE = "DeleteBucketLifecycle"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    DELETE_OBJECTS = "DeleteObjects"
    # Object
    PUT_OBJECT = "PutObject"
    COPY_OBJECT = "CopyObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    DELETE_OBJECT = "DeleteObject"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    GET_OBJECT_TAGGING = "GetObjectTagging"
    PUT_OBJECT_TAGGING = "PutObjectTagging"
    DELETE_OBJECT_TAGGING = "DeleteObjectTagging"
    GET_OBJECT_ACL = "GetObjectAcl"
    PUT_OBJECT_ACL = "PutObjectAcl"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes.

    `bucket` is None for service operations, `key` is None for service and bucket
    operations. `query` holds every decoded query parameter (read-only), subresources
    included, for the handler to read its arguments from.
    """

    op: Op
    bucket: str | None
    key: str | None
    query: Mapping[str, str]


# --------------------------------------------------------------------------------------
# The table. `None` as the subresource means "no subresource".

_Table = Mapping[tuple[str, str | None], Op]

_SERVICE_OPS: Final[_Table] = {
    ("GET", None): Op.LIST_BUCKETS,
}

_BUCKET_OPS: Final[_Table] = {
    ("PUT", None): Op.CREATE_BUCKET,
    ("HEAD", None): Op.HEAD_BUCKET,
    ("DELETE", None): Op.DELETE_BUCKET,
    ("GET", None): Op.LIST_OBJECTS,  # `list-type=2` → ListObjectsV2, see _refine
    ("GET", "location"): Op.GET_BUCKET_LOCATION,
    ("GET", "versions"): Op.LIST_OBJECT_VERSIONS,
    ("GET", "versioning"): Op.GET_BUCKET_VERSIONING,
    ("PUT", "versioning"): Op.PUT_BUCKET_VERSIONING,
    ("GET", "acl"): Op.GET_BUCKET_ACL,
    ("PUT", "acl"): Op.PUT_BUCKET_ACL,
    ("GET", "tagging"): Op.GET_BUCKET_TAGGING,
    ("PUT", "tagging"): Op.PUT_BUCKET_TAGGING,
    ("DELETE", "tagging"): Op.DELETE_BUCKET_TAGGING,
    ("GET", "lifecycle"): Op.GET_BUCKET_LIFECYCLE_CONFIGURATION,
    ("PUT", "lifecycle"): Op.PUT_BUCKET_LIFECYCLE_CONFIGURATION,
    ("DELETE", "lifecycle"): Op.DELETE_BUCKET_LIFECYCLE,
    ("GET", "uploads"): Op.LIST_MULTIPART_UPLOADS,
    ("POST", "delete"): Op.DELETE_OBJECTS,
}

_OBJECT_OPS: Final[_Table] = {
    ("PUT", None): Op.PUT_OBJECT,  # with x-amz-copy-source → CopyObject
    ("GET", None): Op.GET_OBJECT,
    ("HEAD", None): Op.HEAD_OBJECT,
    ("DELETE", None): Op.DELETE_OBJECT,
    ("POST", "uploads"): Op.CREATE_MULTIPART_UPLOAD,
    ("PUT", "uploadId"): Op.UPLOAD_PART,  # needs partNumber; copy source → UploadPartCopy
    ("POST", "uploadId"): Op.COMPLETE_MULTIPART_UPLOAD,
    ("DELETE", "uploadId"): Op.ABORT_MULTIPART_UPLOAD,
    ("GET", "uploadId"): Op.LIST_PARTS,
    ("GET", "tagging"): Op.GET_OBJECT_TAGGING,
    ("PUT", "tagging"): Op.PUT_OBJECT_TAGGING,
    ("DELETE", "tagging"): Op.DELETE_OBJECT_TAGGING,
    ("GET", "acl"): Op.GET_OBJECT_ACL,
    ("PUT", "acl"): Op.PUT_OBJECT_ACL,
}

_WITH_COPY_SOURCE: Final[Mapping[Op, Op]] = {
    Op.PUT_OBJECT: Op.COPY_OBJECT,
    Op.UPLOAD_PART: Op.UPLOAD_PART_COPY,
}

# Subresources that select an operation, derived from the table so the two never drift.
BUCKET_SUBRESOURCES: Final = frozenset(s for _, s in _BUCKET_OPS if s is not None)
OBJECT_SUBRESOURCES: Final = frozenset(s for _, s in _OBJECT_OPS if s is not None)

# Subresources of AWS operations we do not implement (from the S3 API's request URIs).
# Any of them in a request → 501 NotImplemented, whatever the method and resource.
UNSUPPORTED_SUBRESOURCES: Final = frozenset(
    {
        # bucket configuration
        "abac",
        "accelerate",
        "analytics",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "logging",
        "metadataAnnotationTable",
        "metadataConfiguration",
        "metadataInventoryTable",
        "metadataJournalTable",
        "metadataTable",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "session",
        "website",
        # object
        "annotation",
        "attributes",
        "legal-hold",
        "renameObject",
        "restore",
        "retention",
        "select",
        "select-type",
        "torrent",
    }
)

_ALL_SUBRESOURCES: Final = BUCKET_SUBRESOURCES | OBJECT_SUBRESOURCES | UNSUPPORTED_SUBRESOURCES

# Plain parameters: arguments of the operations above, never operation selectors.
KNOWN_PARAMS: Final = frozenset(
    {
        # GetObject / HeadObject (partNumber is also UploadPart's)
        "partNumber",
        "versionId",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        # listings
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "encoding-type",
        "list-type",
        "continuation-token",
        "start-after",
        "fetch-owner",
        "key-marker",
        "version-id-marker",
        "upload-id-marker",
        "max-uploads",
        "max-buckets",
        "bucket-region",
        # ListParts
        "max-parts",
        "part-number-marker",
        # presigned URLs: SigV2 query auth (SigV4's X-Amz-* are matched by prefix), and the
        # signed headers botocore hoists into a V2 URL's query besides x-amz-*
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        "content-type",
        "content-md5",
        # botocore appends the operation name to some requests
        "x-id",
    }
)

# SigV4 presigned parameters (`X-Amz-Signature` …) and headers hoisted into a presigned
# URL's query (`x-amz-acl`, `x-amz-meta-*` …). Compared lower-cased.
_KNOWN_PARAM_PREFIX: Final = "x-amz-"

_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
_WRITE_METHODS: Final = frozenset({"PUT", "POST", "DELETE"})

_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


# --------------------------------------------------------------------------------------


def route(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    host: str | None,
    *,
    virtual_host_domain: str | None,
    headers: Mapping[str, str] | None = None,
) -> Route:
    """Route one request.

    - `raw_path`: the still-encoded path, without the query. Pass ASGI's
      `scope["raw_path"]` bytes as they are; a str is UTF-8 encoded first.
    - `raw_query`: the still-encoded query string, without the `?` (ASGI's
      `scope["query_string"]`).
    - `host`: the Host header, port included or not.
    - `virtual_host_domain`: e.g. `s3.localhost` enables `<bucket>.s3.localhost`.
    - `headers`: lower-case header names; only `x-amz-copy-source` is consulted (its
      presence turns PutObject into CopyObject and UploadPart into UploadPartCopy). A
      mapping rather than a flag keeps the call site trivial with Starlette's `Headers`.

    Raises MethodNotAllowed, NotImplementedError_, InvalidArgument, InvalidURI or
    KeyTooLongError. Bucket names are not validated here; the handlers do that.
    """
    if method not in _METHODS:
        raise MethodNotAllowed(f"The method {method!r} is not allowed against this resource.")

    path = _to_bytes(raw_path)
    if not path.startswith(b"/"):
        raise InvalidURI()

    bucket: str | None
    raw_key: bytes
    host_bucket = _bucket_from_host(host, virtual_host_domain)
    if host_bucket is not None:
        bucket, raw_key = host_bucket, path[1:]
    elif path == b"/":
        bucket, raw_key = None, b""
    else:
        # Split on the first *raw* '/': an encoded %2F belongs to the segment it is in.
        raw_bucket, _, raw_key = path[1:].partition(b"/")
        bucket = _utf8(_percent_decode(raw_bucket))
    key = _decode_key(raw_key) if raw_key else None

    query = _parse_query(_to_bytes(raw_query))
    copy_source = headers is not None and COPY_SOURCE_HEADER in headers
    op = _select_op(method, bucket, key, query, copy_source)
    return Route(op=op, bucket=bucket, key=key, query=MappingProxyType(query))


def _select_op(
    method: str,
    bucket: str | None,
    key: str | None,
    query: Mapping[str, str],
    copy_source: bool,
) -> Op:
    table: _Table
    selectors: frozenset[str]
    if bucket is None:
        table, selectors = _SERVICE_OPS, frozenset()
    elif key is None:
        table, selectors = _BUCKET_OPS, BUCKET_SUBRESOURCES
    else:
        table, selectors = _OBJECT_OPS, OBJECT_SUBRESOURCES

    present: list[str] = []
    for name in query:
        if name in selectors:
            present.append(name)
        elif name in _ALL_SUBRESOURCES:
            # Unsupported anywhere, or a subresource of the other resource level
            # (`PUT /b/k?versioning`): never let it reach a plain operation.
            raise NotImplementedError_(f"The {name!r} subresource is not implemented.")
        elif method in _WRITE_METHODS and not _is_known_param(name):
            raise NotImplementedError_(f"The query parameter {name!r} is not implemented.")
    if len(present) > 1:
        names = ", ".join(sorted(present))
        raise InvalidArgument(f"Conflicting subresources in one request: {names}.")
    subresource = present[0] if present else None

    op = table.get((method, subresource))
    if op is None:
        if table is _BUCKET_OPS and method == "POST" and subresource is None:
            raise NotImplementedError_("Browser-based POST uploads are not implemented.")
        raise MethodNotAllowed()
    return _refine(op, method, query, copy_source)


def _refine(op: Op, method: str, query: Mapping[str, str], copy_source: bool) -> Op:
    """Cases a (method, subresource) pair alone cannot decide."""
    if op is Op.LIST_OBJECTS and "list-type" in query:
        if query["list-type"] != "2":
            raise InvalidArgument("list-type must be 2 when present.", ArgumentName="list-type")
        return Op.LIST_OBJECTS_V2
    if op is Op.UPLOAD_PART and "partNumber" not in query:
        # Without it the request is neither UploadPart nor (safely) PutObject.
        raise InvalidArgument("UploadPart needs partNumber.", ArgumentName="partNumber")
    if method in _WRITE_METHODS and "partNumber" in query and op is not Op.UPLOAD_PART:
        raise InvalidArgument(
            "partNumber is only valid for UploadPart, GetObject and HeadObject.",
            ArgumentName="partNumber",
        )
    if copy_source:
        return _WITH_COPY_SOURCE.get(op, op)
    return op


def _is_known_param(name: str) -> bool:
    return name in KNOWN_PARAMS or name.lower().startswith(_KNOWN_PARAM_PREFIX)


# --------------------------------------------------------------------------------------
# Decoding


def _to_bytes(raw: str | bytes) -> bytes:
    if isinstance(raw, bytes):
        return raw
    try:
        # surrogateescape: a str made from bytes with errors="surrogateescape" round-trips.
        return raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidURI() from None


def _percent_decode(raw: bytes) -> bytes:
    """RFC 3986 percent-decoding; `+` is left alone. A malformed escape is an error."""
    if b"%" not in raw:
        return raw
    first, *rest = raw.split(b"%")
    out = bytearray(first)
    for part in rest:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise InvalidURI()
        out.append(int(part[:2], 16))
        out += part[2:]
    return bytes(out)


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI() from None


def _decode_key(raw: bytes) -> str:
    decoded = _percent_decode(raw)
    if len(decoded) > MAX_KEY_BYTES:
        raise KeyTooLongError()
    return _utf8(decoded)


def _parse_query(raw: bytes) -> dict[str, str]:
    """`a=1&b&c=` → {"a": "1", "b": "", "c": ""}. Duplicate names are refused."""
    query: dict[str, str] = {}
    if not raw:
        return query
    for part in raw.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = _utf8(_percent_decode(raw_name))
        if name in query:
            raise InvalidArgument(
                f"The query parameter {name!r} appears more than once.", ArgumentName=name
            )
        query[name] = _utf8(_percent_decode(raw_value))
    return query


def _bucket_from_host(host: str | None, domain: str | None) -> str | None:
    """`<bucket>.<domain>[:port]` → bucket; anything else (the domain itself, an IP,
    another name) → None, meaning path-style."""
    if not host or not domain:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # IPv6 literal
        return None
    head, sep, port = name.rpartition(":")
    if sep and (port.isdigit() or not port):
        name = head
    name = name.rstrip(".")
    suffix = "." + domain.strip().strip(".").lower()
    if len(name) > len(suffix) and name.endswith(suffix):
        return name[: -len(suffix)]
    return None
