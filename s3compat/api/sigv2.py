"""Server-side verification of AWS Signature Version 2 for S3 requests.

boto3 and aws-cli v1 still presign URLs with V2 by default (`AWSAccessKeyId`, `Signature`,
`Expires` in the query), and older tools sign headers with it (`Authorization: AWS
AKID:signature`). The signature is base64(HMAC-SHA1(secret, StringToSign)) over

    Method \\n Content-MD5 \\n Content-Type \\n Date \\n
    CanonicalizedAmzHeaders CanonicalizedResource

where, for presigned URLs, Expires takes the place of Date. Details that matter:

- The resource path is used exactly as sent (still percent-encoded), with the bucket
  prepended for virtual-host requests, then the signed sub-resources (`?acl`,
  `?uploadId=…`, `response-*` overrides …) sorted by name, with decoded values.
- With an x-amz-date header the Date line is empty and x-amz-date is signed among the
  x-amz-* headers (the documented rule). AWS's own published DELETE example instead puts the
  x-amz-date value on the Date line and leaves it out of the x-amz-* headers; both sign
  the same facts, so both are accepted.
- Presigned URLs may carry x-amz-* and Content-Type/Content-MD5 values as query parameters
  (botocore puts them there); they are signed as if they were headers.

The result is the same `AuthContext` SigV4 returns, with an unsigned payload and no
signing key (V2 has no streaming chunks). Secrets never appear in an error.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_to_bytes

from s3compat.api.sigv4 import UNSIGNED_PAYLOAD, AuthContext
from s3compat.core.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidArgument,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

__all__ = [
    "SUBRESOURCES",
    "authenticate",
    "authenticate_header",
    "authenticate_query",
    "canonical_amz_headers",
    "canonical_resource",
    "sign",
    "string_to_sign",
]

# Query parameters that are part of the signed resource: the S3 developer guide's list,
# plus the ones botocore's HmacV1Auth signs (it must agree with S3 to work at all).
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]*")
_DATE_MISSING = "AWS authentication requires a valid Date or x-amz-date header"
_QUERY_REQUIRED = (
    "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
)
_HEADER_MALFORMED = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"


# --------------------------------------------------------------------------- primitives


def sign(secret: str, string_to_sign_: str) -> str:
    """base64(HMAC-SHA1(secret, string to sign)), as the client computes it."""
    digest = hmac.new(secret.encode("utf-8"), string_to_sign_.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def canonical_amz_headers(headers: Sequence[tuple[str, str]]) -> str:
    """`name:value\\n` per x-amz-* header: lower-case names sorted, repeats joined by ','.

    Values are trimmed and any folded line breaks become one space.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith("x-amz-"):
            grouped.setdefault(lowered, []).append(_FOLD.sub(" ", value).strip())
    return "".join(f"{name}:{','.join(grouped[name])}\n" for name in sorted(grouped))


def canonical_resource(raw_path: str, raw_query: str, bucket: str | None = None) -> str:
    """The raw path (with `/bucket` in front for virtual-host style) plus sub-resources.

    Sub-resources keep their order-independent form: sorted by name (stably, so repeats
    stay in request order), values percent-decoded, `name` alone when sent without '='.
    """
    path = raw_path or "/"
    if bucket:
        path = f"/{bucket}{path}"
    picked: list[tuple[str, str]] = []
    for name, value, has_value in _split_query(raw_query):
        if name in SUBRESOURCES:
            picked.append((name, f"{name}={value}" if has_value else name))
    if not picked:
        return path
    picked.sort(key=lambda item: item[0])
    return path + "?" + "&".join(text for _, text in picked)


def string_to_sign(
    method: str,
    content_md5: str,
    content_type: str,
    date: str,
    amz_headers: Sequence[tuple[str, str]],
    resource: str,
) -> str:
    """The V2 string to sign; `date` is the Date header, "" or the Expires timestamp."""
    return (
        f"{method}\n{content_md5}\n{content_type}\n{date}\n"
        f"{canonical_amz_headers(amz_headers)}{resource}"
    )


# ------------------------------------------------------------------------ authentication


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    *,
    bucket: str | None = None,
    max_skew: timedelta = timedelta(minutes=15),
) -> AuthContext:
    """Verify a V2-signed request: the Authorization header if there is one, else the query.

    `headers` are (lower-case name, value) in arrival order; `raw_path`/`raw_query` are the
    request target exactly as received. `bucket` is the bucket taken from the Host header
    for virtual-host-style requests (None for path style, where it is already in the path).
    """
    if any(name == "authorization" for name, _ in headers):
        return authenticate_header(
            method,
            raw_path,
            raw_query,
            headers,
            lookup_secret,
            now,
            bucket=bucket,
            max_skew=max_skew,
        )
    return authenticate_query(
        method, raw_path, raw_query, headers, lookup_secret, now, bucket=bucket
    )


def authenticate_header(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    *,
    bucket: str | None = None,
    max_skew: timedelta = timedelta(minutes=15),
) -> AuthContext:
    """`Authorization: AWS <AccessKeyId>:<Signature>` with a Date or x-amz-date header."""
    now = _aware(now)
    values = _values(headers, "authorization")
    if len(values) != 1:
        raise InvalidArgument(_HEADER_MALFORMED, ArgumentName="Authorization")
    access_key, signature = _parse_authorization(values[0])

    amz_dates = _values(headers, "x-amz-date")
    dates = _values(headers, "date")
    raw_date = (amz_dates or dates or [""])[0].strip()
    if len(amz_dates) > 1 or (not amz_dates and len(dates) > 1):
        raise AccessDenied(_DATE_MISSING)
    request_time = _parse_http_date(raw_date)
    if request_time is None:
        raise AccessDenied(_DATE_MISSING)
    if abs(now - request_time) > max_skew:
        raise RequestTimeTooSkewed(
            RequestTime=raw_date,
            ServerTime=_iso(now),
            MaxAllowedSkewMilliseconds=str(int(max_skew.total_seconds() * 1000)),
        )

    secret = lookup_secret(access_key)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key)

    md5 = _joined(headers, "content-md5")
    content_type = _joined(headers, "content-type")
    if amz_dates:
        # The documented rule first, then the arrangement of AWS's published example.
        without_amz_date = [(n, v) for n, v in headers if n.lower() != "x-amz-date"]
        arrangements = [("", headers), (raw_date, without_amz_date)]
    else:
        arrangements = [(raw_date, headers)]
    candidates = [
        string_to_sign(method, md5, content_type, date, amz_headers, resource)
        for resource in _resources(raw_path, raw_query, bucket)
        for date, amz_headers in arrangements
    ]
    _check_signature(secret, candidates, signature, access_key)
    return _context(access_key, presigned=False, amz_date=request_time.strftime(_AMZ_DATE_FORMAT))


def authenticate_query(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    *,
    bucket: str | None = None,
) -> AuthContext:
    """Presigned URL: `AWSAccessKeyId`, `Signature` and `Expires` (epoch seconds)."""
    now = _aware(now)
    query = _split_query(raw_query)
    params: dict[str, str] = {}
    for wanted in ("AWSAccessKeyId", "Signature", "Expires"):
        found = [value for name, value, _ in query if name == wanted]
        if len(found) != 1 or not found[0]:
            raise AccessDenied(_QUERY_REQUIRED)
        params[wanted] = found[0]
    access_key, signature, expires_text = (
        params["AWSAccessKeyId"],
        params["Signature"],
        params["Expires"],
    )
    if not re.fullmatch(r"[0-9]{1,12}", expires_text):
        raise AccessDenied(f"Invalid date (should be seconds since epoch): {expires_text}")
    expires = int(expires_text)
    if now.timestamp() > expires:
        raise AccessDenied(
            "Request has expired",
            Expires=_iso(datetime.fromtimestamp(expires, UTC)),
            ServerTime=_iso(now),
        )

    secret = lookup_secret(access_key)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key)

    # botocore moves signed headers into the query; a real header wins if both are present.
    query_values = {name.lower(): value for name, value, _ in query}
    md5 = _joined(headers, "content-md5") or query_values.get("content-md5", "")
    content_type = _joined(headers, "content-type") or query_values.get("content-type", "")
    amz_query = [(n.lower(), v) for n, v, _ in query if n.lower().startswith("x-amz-")]
    query_names = {name for name, _ in amz_query}
    amz_headers = [(n, v) for n, v in headers if n.lower() not in query_names] + amz_query
    candidates = [
        string_to_sign(method, md5, content_type, expires_text, amz_headers, resource)
        for resource in _resources(raw_path, raw_query, bucket)
    ]
    _check_signature(secret, candidates, signature, access_key)
    return _context(access_key, presigned=True, amz_date="")


# ------------------------------------------------------------------------------ helpers


def _resources(raw_path: str, raw_query: str, bucket: str | None) -> list[str]:
    """The canonical resource, and the one other form a client may have signed.

    A path-style request for the bucket itself (`/bucket`, no trailing slash on the wire)
    is signed by botocore as `/bucket/`, which is what S3 expects; other clients sign the
    path as sent. Both name the same bucket, so both are accepted.
    """
    resource = canonical_resource(raw_path, raw_query, bucket)
    if bucket is None and raw_path.count("/") == 1 and len(raw_path) > 1:
        return [canonical_resource(raw_path + "/", raw_query), resource]
    return [resource]


def _split_query(raw_query: str) -> list[tuple[str, str, bool]]:
    """(decoded name, decoded value, whether '=' was present) for each query item.

    '+' stays '+': S3 does not read it as a space, and neither does botocore write it so.
    """
    items: list[tuple[str, str, bool]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        items.append((_unquote(name), _unquote(value), bool(sep)))
    return items


def _unquote(text: str) -> str:
    return unquote_to_bytes(text).decode("utf-8", "replace")


def _values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [value for header, value in headers if header.lower() == name]


def _joined(headers: Sequence[tuple[str, str]], name: str) -> str:
    return ",".join(value.strip() for value in _values(headers, name))


def _parse_authorization(value: str) -> tuple[str, str]:
    scheme, _, credentials = value.strip().partition(" ")
    access_key, colon, signature = credentials.strip().rpartition(":")
    if scheme != "AWS" or not colon or not access_key or not signature:
        raise InvalidArgument(_HEADER_MALFORMED, ArgumentName="Authorization", ArgumentValue=value)
    return access_key, signature


def _parse_http_date(value: str) -> datetime | None:
    """RFC 1123/850/asctime dates (what Date and V2's x-amz-date carry), or ISO 8601 basic."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            parsed = datetime.strptime(value, _AMZ_DATE_FORMAT)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_signature(
    secret: str, candidates: Sequence[str], provided: str, access_key: str
) -> None:
    provided_bytes = provided.encode("utf-8", "replace")
    matched = False
    for candidate in candidates:
        # Every candidate is computed and compared, so timing says nothing about which.
        expected = sign(secret, candidate).encode("ascii")
        matched |= hmac.compare_digest(expected, provided_bytes)
    if not matched:
        raise SignatureDoesNotMatch(
            AWSAccessKeyId=access_key,
            StringToSign=candidates[0],
            SignatureProvided=provided,
            StringToSignBytes=candidates[0].encode("utf-8").hex(" "),
        )


def _context(access_key: str, *, presigned: bool, amz_date: str) -> AuthContext:
    return AuthContext(
        access_key=access_key,
        presigned=presigned,
        payload_hash=UNSIGNED_PAYLOAD,
        signing_key=b"",
        seed_signature="",
        amz_date=amz_date,
        scope="",
    )
