"""Server-side verification of AWS Signature Version 4 for S3 requests, and the entry point
for every authenticated request.

Two ways of carrying a V4 signature are accepted: the `Authorization` header and query
parameters (presigned URLs). The aws-chunked streaming format needs per-chunk checks after
the headers have been verified; `authenticate` hands back what those checks need in an
`AuthContext`, and `verify_chunk_signature` does one step of the chain.

`authenticate` also recognises Signature Version 2 (`Authorization: AWS …`, or the
`AWSAccessKeyId`/`Signature`/`Expires` query of boto3's default presigned URLs) and hands
such requests to `s3compat.api.sigv2`, which returns the same `AuthContext` (unsigned
payload, no signing key). V2 signs the bucket of a virtual-host request, so the caller
passes it as `virtual_host_bucket`.

S3 differs from the generic SigV4 rules in one important way: the path is signed exactly as
sent on the wire (no normalisation of `//` or `..`, no second round of percent-encoding), so
`raw_path` must be the undecoded request target (e.g. ASGI `scope["raw_path"]`).

Secrets and signing keys never appear in a message, a repr or an exception: errors only carry
the access key id, the string to sign and the canonical request, as AWS does.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from urllib.parse import quote, unquote_to_bytes

from s3compat.core.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_PRESIGNED_EXPIRES",
    "STREAMING_SIGNED_PAYLOAD",
    "STREAMING_SIGNED_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_PAYLOAD_TRAILER",
    "UNSIGNED_PAYLOAD",
    "AuthContext",
    "authenticate",
    "canonical_headers",
    "canonical_query_string",
    "canonical_request",
    "chunk_string_to_sign",
    "derive_signing_key",
    "sign",
    "string_to_sign",
    "trailer_string_to_sign",
    "verify_chunk_signature",
    "verify_trailer_signature",
]

ALGORITHM = "AWS4-HMAC-SHA256"
CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
TERMINATOR = "aws4_request"
SERVICE = "s3"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600

# Payload markers a V4 (HMAC) client may put in x-amz-content-sha256. The ECDSA ones belong
# to SigV4a, which we do not implement, so they are rejected like any other junk value.
_PAYLOAD_MARKERS = frozenset(
    {
        UNSIGNED_PAYLOAD,
        STREAMING_SIGNED_PAYLOAD,
        STREAMING_SIGNED_PAYLOAD_TRAILER,
        STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    }
)
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE = re.compile(r"\d{8}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

_QUERY_V4_REQUIRED = (
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
    "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
)


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a verified request proved, and what a streaming-chunk verifier needs next.

    `signing_key` is kept out of the repr so that logging a context never leaks it.
    """

    access_key: str
    presigned: bool
    payload_hash: str
    signing_key: bytes = field(repr=False)
    seed_signature: str
    amz_date: str
    scope: str


# --------------------------------------------------------------------------- primitives


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


class _SigningKeyCache:
    """Bounded LRU of derived signing keys.

    Deriving a key is a chain of four HMACs; a burst of requests from one client shares the
    same (secret, day, region, service), so caching makes the per-request cost one HMAC.
    Keyed by a digest of the secret rather than the secret itself, so a heap dump of the
    cache alone does not reveal secrets.
    """

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._data: OrderedDict[tuple[bytes, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, secret: str, date: str, region: str, service: str) -> bytes:
        cache_key = (hashlib.sha256(secret.encode("utf-8")).digest(), date, region, service)
        with self._lock:
            cached = self._data.get(cache_key)
            if cached is not None:
                self._data.move_to_end(cache_key)
                self.hits += 1
                return cached
        key = _hmac(("AWS4" + secret).encode("utf-8"), date)
        for part in (region, service, TERMINATOR):
            key = _hmac(key, part)
        with self._lock:
            self.misses += 1
            self._data[cache_key] = key
            self._data.move_to_end(cache_key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)
        return key

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


_signing_keys = _SigningKeyCache(maxsize=256)


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").

    Results are memoised in a small LRU (see `_SigningKeyCache`).
    """
    return _signing_keys.get(secret, date, region, service)


def sign(signing_key: bytes, string_to_sign_: str) -> str:
    """The final V4 signature: lower-case hex HMAC-SHA256 of the string to sign."""
    return hmac.new(signing_key, string_to_sign_.encode("utf-8"), hashlib.sha256).hexdigest()


def _uri_encode(raw: bytes) -> str:
    # quote() leaves exactly the RFC 3986 unreserved set alone and uses upper-case hex.
    return quote(raw, safe="")


def canonical_query_string(raw_query: str, *, drop: frozenset[str] = frozenset()) -> str:
    """Canonical form of a query string as S3 computes it.

    Each `name[=value]` is percent-decoded ('+' stays '+': S3 does not treat it as a space),
    re-encoded with upper-case hex, and the pairs sorted by encoded name then value. Names in
    `drop` (compared after decoding) are left out: X-Amz-Signature for presigned URLs.
    """
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name_bytes = unquote_to_bytes(name)
        if drop and name_bytes.decode("utf-8", "replace") in drop:
            continue
        pairs.append((_uri_encode(name_bytes), _uri_encode(unquote_to_bytes(value))))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _trim_all(value: str) -> str:
    # Leading/trailing whitespace goes, inner runs collapse to one space (as botocore does).
    return " ".join(value.split())


def canonical_headers(headers: Sequence[tuple[str, str]], signed_headers: Sequence[str]) -> str:
    """`name:value\\n` for each signed header, values of repeated headers joined by ','.

    A header the client says it signed but that is absent from the request cannot match
    anything it computed, so that is a SignatureDoesNotMatch.
    """
    values: dict[str, list[str]] = {name: [] for name in signed_headers}
    for name, value in headers:
        bucket = values.get(name)
        if bucket is not None:
            bucket.append(_trim_all(value))
    lines = []
    for name in signed_headers:
        if not values[name]:
            raise SignatureDoesNotMatch(
                f"The request signature we calculated does not match the signature you "
                f"provided: the signed header '{name}' is not present in the request."
            )
        lines.append(f"{name}:{','.join(values[name])}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    raw_path: str,
    canonical_query: str,
    canonical_headers_: str,
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The six-line canonical request; the path is used verbatim (S3 does not normalise)."""
    return "\n".join(
        (
            method,
            raw_path or "/",
            canonical_query,
            canonical_headers_,
            ";".join(signed_headers),
            payload_hash,
        )
    )


def string_to_sign(amz_date: str, scope: str, canonical_request_: str) -> str:
    """Algorithm, timestamp, scope and the hex SHA-256 of the canonical request."""
    digest = hashlib.sha256(canonical_request_.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


# --------------------------------------------------------------------- streaming chunks


def chunk_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, chunk_sha256_hex: str
) -> str:
    """String to sign for one aws-chunked chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).

    The empty-string hash stands in for chunk headers, which the format does not have.
    """
    return "\n".join(
        (CHUNK_ALGORITHM, amz_date, scope, previous_signature, EMPTY_SHA256, chunk_sha256_hex)
    )


def trailer_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, trailer_sha256_hex: str
) -> str:
    """String to sign for the trailing-header chunk of a ...-PAYLOAD-TRAILER upload.

    `trailer_sha256_hex` hashes the trailer lines as sent (`name:value\\n` each).
    """
    return "\n".join((TRAILER_ALGORITHM, amz_date, scope, previous_signature, trailer_sha256_hex))


def verify_chunk_signature(
    ctx: AuthContext,
    previous_signature: str,
    chunk_sha256_hex: str,
    provided_signature: str | None = None,
) -> str:
    """Compute the signature a chunk must carry; check it if `provided_signature` is given.

    Returns the expected signature, which becomes `previous_signature` for the next chunk
    (the first chunk chains from `ctx.seed_signature`).
    """
    to_sign = chunk_string_to_sign(ctx.amz_date, ctx.scope, previous_signature, chunk_sha256_hex)
    return _check_chained(ctx, to_sign, provided_signature, "chunk")


def verify_trailer_signature(
    ctx: AuthContext,
    previous_signature: str,
    trailer_sha256_hex: str,
    provided_signature: str | None = None,
) -> str:
    """Like `verify_chunk_signature`, for the trailer (chained from the final 0-byte chunk)."""
    to_sign = trailer_string_to_sign(
        ctx.amz_date, ctx.scope, previous_signature, trailer_sha256_hex
    )
    return _check_chained(ctx, to_sign, provided_signature, "trailer")


def _check_chained(
    ctx: AuthContext, to_sign: str, provided_signature: str | None, what: str
) -> str:
    expected = sign(ctx.signing_key, to_sign)
    if provided_signature is not None and not _same(expected, provided_signature):
        raise SignatureDoesNotMatch(
            f"The {what} signature we calculated does not match the signature you provided.",
            AWSAccessKeyId=ctx.access_key,
            StringToSign=to_sign,
            SignatureProvided=provided_signature,
            StringToSignBytes=_spaced_hex(to_sign),
        )
    return expected


# ------------------------------------------------------------------------ authentication


class _Scheme(Enum):
    """How a request says it is authenticated; `_HANDLERS` maps each to its verifier."""

    ANONYMOUS = "anonymous"
    V4_HEADER = "v4-header"
    V4_QUERY = "v4-query"
    V2_HEADER = "v2-header"
    V2_QUERY = "v2-query"


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    raw_path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    query: dict[str, list[str]]
    lookup_secret: Callable[[str], str | None]
    now: datetime
    max_skew: timedelta
    virtual_host_bucket: str | None = None


@dataclass(frozen=True, slots=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    *,
    max_skew: timedelta = timedelta(minutes=15),
    virtual_host_bucket: str | None = None,
) -> AuthContext:
    """Verify a request's V4 (or V2) signature and say who made it; raise the S3 error
    otherwise.

    `headers` are (lower-case name, value) in arrival order; `raw_path`/`raw_query` are the
    request target exactly as received, still percent-encoded. `virtual_host_bucket` is the
    bucket named by the Host header of a virtual-host-style request (None for path style):
    V4 does not need it (the Host header is signed), V2 signs `/bucket` + path.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    request = _Request(
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        query=_decode_query(raw_query),
        lookup_secret=lookup_secret,
        now=now,
        max_skew=max_skew,
        virtual_host_bucket=virtual_host_bucket,
    )
    return _HANDLERS[_detect_scheme(request)](request)


def _decode_query(raw_query: str) -> dict[str, list[str]]:
    decoded: dict[str, list[str]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        decoded.setdefault(unquote_to_bytes(name).decode("utf-8", "replace"), []).append(
            unquote_to_bytes(value).decode("utf-8", "replace")
        )
    return decoded


def _header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [value for header, value in headers if header == name]


def _detect_scheme(request: _Request) -> _Scheme:
    authorization = _header_values(request.headers, "authorization")
    query = request.query
    v4_query = any(p in query for p in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"))
    v2_query = "AWSAccessKeyId" in query or ("Signature" in query and "Expires" in query)
    if authorization and (v4_query or v2_query):
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            ArgumentName="Authorization",
            ArgumentValue=_algorithm_of(authorization[0]),
        )
    if authorization:
        if len(authorization) > 1:
            raise AuthorizationHeaderMalformed(
                "The authorization header is malformed; more than one Authorization header."
            )
        if _algorithm_of(authorization[0]) == "AWS":
            return _Scheme.V2_HEADER
        return _Scheme.V4_HEADER
    if v4_query:
        return _Scheme.V4_QUERY
    if v2_query:
        return _Scheme.V2_QUERY
    return _Scheme.ANONYMOUS


def _algorithm_of(authorization: str) -> str:
    parts = authorization.split(None, 1)
    return parts[0] if parts else ""


def _reject_anonymous(request: _Request) -> AuthContext:
    raise AccessDenied("Access Denied: anonymous requests are not allowed.")


def _authenticate_v2(request: _Request) -> AuthContext:
    # Imported here: sigv2 imports AuthContext from this module.
    from s3compat.api import sigv2

    return sigv2.authenticate(
        request.method,
        request.raw_path,
        request.raw_query,
        request.headers,
        request.lookup_secret,
        request.now,
        bucket=request.virtual_host_bucket,
        max_skew=request.max_skew,
    )


# ---------------------------------------------------------------- header authentication


def _authenticate_header(request: _Request) -> AuthContext:
    authorization = _header_values(request.headers, "authorization")[0]
    credential, signed_headers, signature = _parse_authorization(authorization)

    payload_values = _header_values(request.headers, "x-amz-content-sha256")
    if not payload_values:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    if len(payload_values) > 1 or not _valid_payload_hash(payload_values[0]):
        raise InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
            "or a valid sha256 value.",
            ArgumentName="x-amz-content-sha256",
            ArgumentValue=",".join(payload_values),
        )
    payload_hash = payload_values[0]

    request_time, amz_date = _header_date(request.headers)
    if credential.date != amz_date[:8]:
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; Invalid credential date "
            f'"{credential.date}". This date is not the same as X-Amz-Date: "{amz_date[:8]}".'
        )
    _check_skew(request_time, request.now, request.max_skew)
    _check_amz_headers_signed(request.headers, signed_headers)

    return _verify(
        request,
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        payload_hash=payload_hash,
        canonical_query=canonical_query_string(request.raw_query),
        presigned=False,
    )


def _parse_authorization(value: str) -> tuple[_Credential, list[str], str]:
    """Split `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.

    Clients differ in spacing around the commas, so whitespace there is ignored; anything
    else unexpected is AuthorizationHeaderMalformed.
    """
    parts = value.split(None, 1)
    algorithm = parts[0] if parts else ""
    rest = parts[1] if len(parts) > 1 else ""
    if algorithm != ALGORITHM:
        raise InvalidArgument(
            "Unsupported Authorization Type",
            ArgumentName="Authorization",
            ArgumentValue=algorithm,
        )
    fields: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, field_value = item.partition("=")
        key = key.strip()
        if not sep or key not in ("Credential", "SignedHeaders", "Signature") or key in fields:
            raise AuthorizationHeaderMalformed(
                f"The authorization header is malformed; the component '{key}' is not valid."
            )
        fields[key] = field_value.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; missing {', '.join(missing)}."
        )
    credential = _parse_credential(fields["Credential"], AuthorizationHeaderMalformed)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], AuthorizationHeaderMalformed)
    signature = fields["Signature"]
    if not _HEX_SIGNATURE.fullmatch(signature):
        raise AuthorizationHeaderMalformed(
            "The authorization header is malformed; the Signature must be 64 lower-case "
            "hexadecimal characters."
        )
    return credential, signed_headers, signature


def _parse_credential(
    value: str, error: type[AuthorizationHeaderMalformed | AuthorizationQueryParametersError]
) -> _Credential:
    parts = value.split("/")
    if len(parts) != 5 or not parts[0]:
        raise error(
            f"Error parsing the Credential parameter; the Credential is mal-formed; "
            f'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request", got "{value}".'
        )
    access_key, date, region, service, terminator = parts
    if not _SCOPE_DATE.fullmatch(date):
        raise error(f'Error parsing the Credential parameter; invalid date "{date}".')
    if not region:
        raise error("Error parsing the Credential parameter; the region is empty.")
    if service != SERVICE:
        raise error(
            f'Error parsing the Credential parameter; incorrect service "{service}". '
            f'This endpoint belongs to "{SERVICE}".'
        )
    if terminator != TERMINATOR:
        raise error(
            f'Error parsing the Credential parameter; incorrect terminal "{terminator}". '
            f'This endpoint uses "{TERMINATOR}".'
        )
    return _Credential(access_key=access_key, date=date, region=region, service=service)


def _parse_signed_headers(
    value: str, error: type[AuthorizationHeaderMalformed | AuthorizationQueryParametersError]
) -> list[str]:
    names = value.split(";")
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        raise error(
            "The SignedHeaders component must be a ';'-separated list of lower-case header "
            f'names, got "{value}".'
        )
    if "host" not in names:
        raise error("The SignedHeaders component must include the 'host' header.")
    return names


def _valid_payload_hash(value: str) -> bool:
    return value in _PAYLOAD_MARKERS or bool(_HEX_SHA256.fullmatch(value))


def _header_date(headers: Sequence[tuple[str, str]]) -> tuple[datetime, str]:
    """Request time from x-amz-date (preferred) or Date, and its ISO 8601 basic form."""
    missing = "AWS authentication requires a valid Date or x-amz-date header"
    amz_dates = _header_values(headers, "x-amz-date")
    if amz_dates:
        if len(amz_dates) > 1:
            raise AccessDenied(missing)
        parsed = _parse_amz_date(amz_dates[0].strip())
        if parsed is None:
            raise AccessDenied(missing)
        return parsed, amz_dates[0].strip()
    dates = _header_values(headers, "date")
    if len(dates) != 1:
        raise AccessDenied(missing)
    try:
        parsed = email.utils.parsedate_to_datetime(dates[0])
    except (TypeError, ValueError):
        raise AccessDenied(missing) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    return parsed, parsed.strftime(_AMZ_DATE_FORMAT)


def _parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)


def _check_skew(request_time: datetime, now: datetime, max_skew: timedelta) -> None:
    if abs(now - request_time) > max_skew:
        raise RequestTimeTooSkewed(
            RequestTime=_format_time(request_time),
            ServerTime=_format_time(now),
            MaxAllowedSkewMilliseconds=str(int(max_skew.total_seconds() * 1000)),
        )


def _check_amz_headers_signed(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> None:
    """Every x-amz-* header must be signed, or a relay could add e.g. x-amz-copy-source.

    x-amz-content-sha256 is exempt: its value is already the payload line of the canonical
    request (AWS documents it as optional in SignedHeaders).
    """
    signed_set = set(signed)
    unsigned = sorted(
        {
            name
            for name, _ in headers
            if name.startswith("x-amz-")
            and name != "x-amz-content-sha256"
            and name not in signed_set
        }
    )
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )


# ----------------------------------------------------------------- query authentication


def _authenticate_query(request: _Request) -> AuthContext:
    params: dict[str, str] = {}
    for name in (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ):
        values = request.query.get(name, [])
        if len(values) > 1:
            raise AuthorizationQueryParametersError(f"{name} must appear only once.")
        if not values or not values[0]:
            raise AuthorizationQueryParametersError(_QUERY_V4_REQUIRED)
        params[name] = values[0]

    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthorizationQueryParametersError(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    credential = _parse_credential(params["X-Amz-Credential"], AuthorizationQueryParametersError)
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    expires = _parse_expires(params["X-Amz-Expires"])
    signed_headers = _parse_signed_headers(
        params["X-Amz-SignedHeaders"], AuthorizationQueryParametersError
    )
    signature = params["X-Amz-Signature"]
    if not _HEX_SIGNATURE.fullmatch(signature):
        raise AuthorizationQueryParametersError(
            "X-Amz-Signature must be 64 lower-case hexadecimal characters."
        )
    if credential.date != amz_date[:8]:
        raise AuthorizationQueryParametersError(
            f'Invalid credential date "{credential.date}". This date is not the same as '
            f'X-Amz-Date: "{amz_date[:8]}".'
        )

    payload_values = request.query.get("X-Amz-Content-Sha256", [])
    if len(payload_values) > 1 or (payload_values and not _valid_payload_hash(payload_values[0])):
        raise AuthorizationQueryParametersError(
            "X-Amz-Content-Sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value."
        )
    payload_hash = payload_values[0] if payload_values else UNSIGNED_PAYLOAD

    now = request.now
    if request_time - now > request.max_skew:
        raise AccessDenied(
            "Request is not valid yet",
            **{"X-Amz-Date": amz_date, "ServerTime": _format_time(now)},
        )
    expiry = request_time + timedelta(seconds=expires)
    if now > expiry:
        raise AccessDenied(
            "Request has expired",
            **{
                "X-Amz-Expires": str(expires),
                "Expires": _format_time(expiry),
                "ServerTime": _format_time(now),
            },
        )

    return _verify(
        request,
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        payload_hash=payload_hash,
        canonical_query=canonical_query_string(
            request.raw_query, drop=frozenset({"X-Amz-Signature"})
        ),
        presigned=True,
    )


def _parse_expires(value: str) -> int:
    try:
        expires = int(value, 10)
    except ValueError:
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number") from None
    if expires < 1:
        raise AuthorizationQueryParametersError("X-Amz-Expires must be a positive number")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise AuthorizationQueryParametersError(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
        )
    return expires


# ------------------------------------------------------------------------ verification


def _verify(
    request: _Request,
    *,
    credential: _Credential,
    signed_headers: list[str],
    signature: str,
    amz_date: str,
    payload_hash: str,
    canonical_query: str,
    presigned: bool,
) -> AuthContext:
    secret = request.lookup_secret(credential.access_key)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=credential.access_key)
    creq = canonical_request(
        request.method,
        request.raw_path,
        canonical_query,
        canonical_headers(request.headers, signed_headers),
        signed_headers,
        payload_hash,
    )
    to_sign = string_to_sign(amz_date, credential.scope, creq)
    signing_key = derive_signing_key(secret, credential.date, credential.region, credential.service)
    if not _same(sign(signing_key, to_sign), signature):
        raise SignatureDoesNotMatch(
            AWSAccessKeyId=credential.access_key,
            StringToSign=to_sign,
            SignatureProvided=signature,
            StringToSignBytes=_spaced_hex(to_sign),
            CanonicalRequest=creq,
            CanonicalRequestBytes=_spaced_hex(creq),
        )
    return AuthContext(
        access_key=credential.access_key,
        presigned=presigned,
        payload_hash=payload_hash,
        signing_key=signing_key,
        seed_signature=signature,
        amz_date=amz_date,
        scope=credential.scope,
    )


def _same(expected: str, provided: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str and `provided` is attacker input.
    return hmac.compare_digest(expected.encode("utf-8"), provided.encode("utf-8", "replace"))


def _spaced_hex(text: str) -> str:
    return text.encode("utf-8").hex(" ")


_HANDLERS: dict[_Scheme, Callable[[_Request], AuthContext]] = {
    _Scheme.ANONYMOUS: _reject_anonymous,
    _Scheme.V4_HEADER: _authenticate_header,
    _Scheme.V4_QUERY: _authenticate_query,
    _Scheme.V2_HEADER: _authenticate_v2,
    _Scheme.V2_QUERY: _authenticate_v2,
}
