"""Bucket and key naming rules, and the prefix upper bound listing seeks with."""

from __future__ import annotations

import random

import pytest

from s3compat.core import errors
from s3compat.core.naming import (
    MAX_KEY_BYTES,
    check_bucket_name,
    check_key,
    is_valid_bucket_name,
    prefix_upper_bound,
)

# The general purpose bucket naming rules of the S3 user guide, one or more cases each.
VALID_BUCKETS = [
    "abc",  # 3 characters is the minimum
    "a" * 63,  # 63 is the maximum
    "my-bucket",
    "my.bucket.name",
    "bucket-1.example.com",
    "123",
    "1bucket",
    "bucket9",
    "a-b",
    "a.b",
    "a--b",
    "xn-abc",  # only "xn--" is reserved
    "sthree",  # only "sthree-" is reserved
    "amzn-s3-demo",  # only "amzn-s3-demo-" is reserved
    "my-s3alias-bucket",  # reserved suffixes only at the end
    "bucket.mrap.x",
    "192.168.5",  # three octets are not an IP address
    "192.168.5.4.5",
    "192.168.5.4a",
]
INVALID_BUCKETS = [
    "",
    "a",
    "ab",  # too short
    "a" * 64,  # too long
    "MyBucket",  # upper case
    "my_bucket",  # underscore
    "my bucket",
    "my/bucket",
    "my:bucket",
    "bücket",
    "-bucket",  # must begin with a letter or number
    ".bucket",
    "bucket-",  # must end with a letter or number
    "bucket.",
    "my..bucket",  # two adjacent periods
    "192.168.5.4",  # formatted as an IP address
    "10.0.0.1",
    "xn--bucket",
    "sthree-bucket",
    "sthree-configurator",
    "amzn-s3-demo-bucket",
    "bucket-s3alias",
    "bucket--ol-s3",
    "bucket.mrap",
    "bucket--x-s3",
    "bucket--table-s3",
]


@pytest.mark.parametrize("name", VALID_BUCKETS)
def test_valid_bucket_names(name: str) -> None:
    assert is_valid_bucket_name(name)
    check_bucket_name(name)


@pytest.mark.parametrize("name", INVALID_BUCKETS)
def test_invalid_bucket_names(name: str) -> None:
    assert not is_valid_bucket_name(name)
    with pytest.raises(errors.InvalidBucketName) as info:
        check_bucket_name(name)
    assert info.value.extra == {"BucketName": name}
    assert info.value.status == 400


@pytest.mark.parametrize(
    "name",
    [
        "abc\n",  # `$` matches before a final newline: fullmatch is needed
        "my-bucket\n",
        "abc\r",
        "\nabc",
        "abc\t",
        "ab\nc",
    ],
)
def test_bucket_names_with_control_characters_are_invalid(name: str) -> None:
    """A `$` regex anchor also matches before a final newline; the name must still fail."""
    assert not is_valid_bucket_name(name)


# --- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "a" * MAX_KEY_BYTES,
        "é" * (MAX_KEY_BYTES // 2),  # 2 bytes each
        "€" * (MAX_KEY_BYTES // 3) + "a",  # 3 bytes each, 1023 + 1
        "😀" * (MAX_KEY_BYTES // 4),  # 4 bytes each
        "a",
        "dir/sub dir/file+name%20.txt",
        "\U0010ffff",
    ],
)
def test_keys_up_to_1024_utf8_bytes_are_accepted(key: str) -> None:
    assert len(key.encode()) <= 1024
    check_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "a" * (MAX_KEY_BYTES + 1),
        "é" * (MAX_KEY_BYTES // 2) + "a",
        "€" * (MAX_KEY_BYTES // 3 + 1),
        "😀" * (MAX_KEY_BYTES // 4) + "a",
        "é" * 600,  # 600 characters, 1200 bytes: the limit is in bytes
    ],
)
def test_keys_over_1024_utf8_bytes_are_too_long(key: str) -> None:
    with pytest.raises(errors.KeyTooLongError) as info:
        check_key(key)
    assert info.value.extra["Size"] == str(len(key.encode()))
    assert info.value.status == 400


@pytest.mark.parametrize("key", ["\x00", "a\x00", "\x00b", "dir/\x00/file"])
def test_keys_with_nul_are_invalid_arguments(key: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        check_key(key)


# --- prefix_upper_bound -----------------------------------------------------------------

# Characters at the edges of the UTF-8 encoding lengths and of the surrogate gap.
EDGE_CHARS = [
    "\x00",
    "\x01",
    "/",
    "a",
    "z",
    "\x7f",
    "\x80",
    "\xff",
    "\u07ff",
    "\u0800",
    "\ud7fe",
    "\ud7ff",
    "\ue000",
    "\ue001",
    "\uffff",
    "\U00010000",
    "\U0010fffe",
    "\U0010ffff",
]


def _random_char(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(EDGE_CHARS)
    while True:
        cp = rng.choice([rng.randrange(0x80), rng.randrange(0x800), rng.randrange(0x110000)])
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def _random_str(rng: random.Random, max_len: int) -> str:
    return "".join(_random_char(rng) for _ in range(rng.randrange(max_len + 1)))


def _neighbours(c: str) -> list[str]:
    """The code points just below and above c, skipping the surrogate gap."""
    out = []
    for delta in (-2, -1, 1, 2):
        cp = ord(c) + delta
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xD7FF if delta < 0 else 0xE000
        if 0 <= cp <= 0x10FFFF:
            out.append(chr(cp))
    return out


def _candidates(rng: random.Random, prefix: str, bound: str | None) -> list[str]:
    """Strings inside and just outside the prefix's range."""
    out = [prefix, prefix + "\x00", prefix + "\U0010ffff" * 3]
    out += [prefix + _random_str(rng, 4) for _ in range(20)]
    out += [_random_str(rng, 6) for _ in range(20)]
    for i in range(len(prefix)):
        out.append(prefix[:i])
        for c in _neighbours(prefix[i]):
            out.append(prefix[:i] + c)
            out.append(prefix[:i] + c + _random_str(rng, 3))
            out.append(prefix[:i] + c + prefix[i + 1 :])
    if bound is not None:
        out += [bound, bound + "\x00", bound + _random_str(rng, 3), bound[:-1]]
    return out


def _check_bound(prefix: str, rng: random.Random) -> None:
    bound = prefix_upper_bound(prefix)
    p = prefix.encode()
    if bound is not None:
        b = bound.encode()  # raises on a surrogate: the bound must be valid UTF-8
        assert b > p
        assert not bound.startswith(prefix)
    else:
        assert prefix.strip("\U0010ffff") == ""
    for s in _candidates(rng, prefix, bound):
        e = s.encode()
        if s.startswith(prefix):
            assert e >= p, (prefix, s)
            assert bound is None or e < bound.encode(), (prefix, s, bound)
        elif e > p:
            assert bound is not None and e >= bound.encode(), (prefix, s, bound)


EDGE_PREFIXES = [
    "a",
    "abc",
    "a/",
    "a\U0010ffff",
    "\U0010ffff",
    "\U0010ffff\U0010ffff",
    "a\U0010ffff\U0010ffff",
    "\ud7ff",
    "x\ud7ff",
    "\uffff",
    "é",
    "日本/",
    "\x7f",
    "\u07ff",
]


@pytest.mark.parametrize("prefix", EDGE_PREFIXES)
def test_prefix_upper_bound_edges(prefix: str) -> None:
    _check_bound(prefix, random.Random(prefix))


def test_prefix_upper_bound_known_values() -> None:
    assert prefix_upper_bound("abc") == "abd"
    assert prefix_upper_bound("a/") == "a0"
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("\ud7ff") == "\ue000"  # over the surrogate gap
    assert prefix_upper_bound("\uffff") == "\U00010000"
    assert prefix_upper_bound("\x7f") == "\x80"
    assert prefix_upper_bound("\U0010ffff") is None
    assert prefix_upper_bound("\U0010ffff" * 3) is None


def test_prefix_upper_bound_random_unicode() -> None:
    rng = random.Random(20240601)
    for _ in range(1500):
        _check_bound(_random_str(rng, 5) or "a", rng)


@pytest.mark.parametrize("key", ["a\x01b", "tab\x0bvt", "esc\x1b", "\ufffe", "x\uffff"])
def test_keys_xml_cannot_carry_are_invalid_arguments(key: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        check_key(key)


@pytest.mark.parametrize("key", ["tab\tkey", "new\nline", "cr\rkey", "\x7f", "\x85"])
def test_keys_with_xml_safe_control_characters_are_accepted(key: str) -> None:
    check_key(key)
