"""S3 naming rules for buckets and keys, and the key-order arithmetic listing needs."""

from __future__ import annotations

import re

from s3compat.core import errors

MAX_KEY_BYTES = 1024

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def is_valid_bucket_name(name: str) -> bool:
    """The general-purpose bucket naming rules of the S3 user guide."""
    return (
        # fullmatch: `$` would also match before a trailing newline ("abc\n").
        _BUCKET.fullmatch(name) is not None
        and ".." not in name
        and _IPV4.fullmatch(name) is None
        and not name.startswith(_RESERVED_PREFIXES)
        and not name.endswith(_RESERVED_SUFFIXES)
    )


def check_bucket_name(name: str) -> None:
    if not is_valid_bucket_name(name):
        raise errors.InvalidBucketName(BucketName=name)


# Characters XML 1.0 cannot carry: a key holding one could never be listed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def check_key(key: str) -> None:
    """Keys are UTF-8 up to 1024 bytes, and must be representable in a listing.

    S3 itself stores control characters and lists them only with encoding-type=url; we
    refuse the few that XML 1.0 cannot hold (NUL, which PostgreSQL text cannot hold either,
    among them) rather than store a key that would break every plain listing.
    """
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(Size=str(size))
    if _NOT_XML.search(key):
        raise errors.InvalidArgument("Object keys may not contain control characters.")


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix`.

    Code-point order is UTF-8 byte order, so incrementing the last code point bounds the
    prefix's range; None means no bound (a prefix of only U+10FFFF characters).
    """
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None
