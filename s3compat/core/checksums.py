"""S3 "flexible checksums": CRC32, CRC32C, CRC64NVME, SHA1 and SHA256.

Every object byte goes through at least one of these, so each uses native code:
`zlib.crc32` for CRC32 (faster than awscrt's on the machines we measured), awscrt for
CRC32C and CRC64NVME (hardware-accelerated, and the library botocore itself uses for them),
hashlib for the SHAs. `benchmarks/bench_checksums.py` prints the throughput of each.

Multipart uploads get one of two whole-object forms:

- COMPOSITE (any algorithm): the checksum of the concatenated part digests, `<b64>-<N>`;
- FULL_OBJECT (CRCs only): the CRC of the whole object, computed from the part CRCs and
  lengths without re-reading any data (`combine_full_object`).

Nothing here does I/O or raises S3 errors: a bad name or value is a `ValueError`, which the
HTTP layer turns into the S3 error that fits where the value came from.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALGORITHMS",
    "CRC_ALGORITHMS",
    "HEADER_PREFIX",
    "Checksum",
    "UnknownAlgorithm",
    "algorithm_from_header",
    "b64",
    "combine",
    "combine_full_object",
    "composite",
    "digest_size",
    "header_name",
    "new",
    "normalize",
    "parse_b64",
]

BytesLike = bytes | bytearray | memoryview

ALGORITHMS: tuple[str, ...] = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
CRC_ALGORITHMS: frozenset[str] = frozenset({"CRC32", "CRC32C", "CRC64NVME"})
HEADER_PREFIX = "x-amz-checksum-"


@functools.cache
def _crt() -> Any:
    """awscrt's checksums, imported at first use: they cost each gateway worker about 6 MiB
    of resident memory, and most clients send CRC32 (zlib) or no checksum at all.

    awscrt ships no type information; importing it by name keeps mypy strict without a
    project-wide override, and the typed wrappers below are the only place it is touched.
    """
    return importlib.import_module("awscrt.checksums")


class UnknownAlgorithm(ValueError):
    """Not one of the S3 checksum algorithm names."""


def _zlib_crc32(data: BytesLike, crc: int) -> int:
    return zlib.crc32(data, crc)


def _crt_crc32c(data: BytesLike, crc: int) -> int:
    return int(_crt().crc32c(data, crc))


def _crt_crc64nvme(data: BytesLike, crc: int) -> int:
    return int(_crt().crc64nvme(data, crc))


@dataclass(frozen=True, slots=True)
class _Crc:
    """One CRC: its width, its polynomial (bit-reflected form) and a native update."""

    width: int
    reflected_poly: int
    update: Callable[[BytesLike, int], int]

    @property
    def size(self) -> int:
        return self.width // 8


# All three are reflected CRCs whose initial value and final XOR are both all-ones, which
# is what lets `combine_full_object` use the simple "shift then XOR" rule.
_CRCS: dict[str, _Crc] = {
    "CRC32": _Crc(32, 0xEDB88320, _zlib_crc32),
    "CRC32C": _Crc(32, 0x82F63B78, _crt_crc32c),
    "CRC64NVME": _Crc(64, 0x9A6C9329AC4BC9B5, _crt_crc64nvme),
}
_HASHES: dict[str, str] = {"SHA1": "sha1", "SHA256": "sha256"}
_SIZES: dict[str, int] = {
    **{name: crc.size for name, crc in _CRCS.items()},
    "SHA1": 20,
    "SHA256": 32,
}


# ------------------------------------------------------------------------------- names


def normalize(algorithm: str) -> str:
    """The canonical upper-case name; raises UnknownAlgorithm for anything else.

    Case-insensitive because the same name arrives upper-case in x-amz-sdk-checksum-algorithm
    and lower-case inside header names.
    """
    name = algorithm.strip().upper()
    if name not in _SIZES:
        raise UnknownAlgorithm(f"unknown checksum algorithm {algorithm!r}")
    return name


def digest_size(algorithm: str) -> int:
    """Length in bytes of a raw digest (4, 8, 20 or 32)."""
    return _SIZES[normalize(algorithm)]


def header_name(algorithm: str) -> str:
    """`CRC32` → `x-amz-checksum-crc32` (also the trailer name in aws-chunked bodies)."""
    return HEADER_PREFIX + normalize(algorithm).lower()


def algorithm_from_header(name: str) -> str | None:
    """`x-amz-checksum-crc32` → `CRC32`; None for any other header.

    x-amz-checksum-mode, -type and -algorithm share the prefix but are not checksums.
    """
    lowered = name.strip().lower()
    if not lowered.startswith(HEADER_PREFIX):
        return None
    candidate = lowered[len(HEADER_PREFIX) :].upper()
    return candidate if candidate in _SIZES else None


# ------------------------------------------------------------------------------ values


def b64(digest: bytes) -> str:
    """The base64 text S3 uses for every checksum value."""
    return base64.b64encode(digest).decode("ascii")


def parse_b64(algorithm: str, value: str) -> bytes:
    """Decode a client-supplied checksum value, insisting on the exact digest length.

    Strict base64 (no stray characters, correct padding) so that two different strings can
    never be accepted as the same checksum.
    """
    size = digest_size(algorithm)
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError(f"invalid base64 {algorithm} checksum") from None
    if len(raw) != size or b64(raw) != value.strip():
        raise ValueError(f"a {algorithm} checksum is {size} bytes, base64-encoded")
    return raw


class Checksum:
    """An incremental checksum: `update` any number of times, then `digest` or `b64`.

    `digest` does not finalise anything, so it may be read at any point and updating may
    continue afterwards (the aws-chunked decoder and multipart code rely on this).
    """

    __slots__ = ("algorithm",)

    algorithm: str

    def update(self, data: BytesLike) -> None:
        raise NotImplementedError

    def digest(self) -> bytes:
        raise NotImplementedError

    def b64(self) -> str:
        return b64(self.digest())

    def copy(self) -> Checksum:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Checksum {self.algorithm} {self.b64()}>"


class _CrcChecksum(Checksum):
    __slots__ = ("_crc", "_spec")

    def __init__(self, algorithm: str, spec: _Crc, crc: int = 0) -> None:
        self.algorithm = algorithm
        self._spec = spec
        self._crc = crc

    def update(self, data: BytesLike) -> None:
        self._crc = self._spec.update(_contiguous(data), self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._spec.size, "big")

    def copy(self) -> Checksum:
        return _CrcChecksum(self.algorithm, self._spec, self._crc)


class _HashChecksum(Checksum):
    __slots__ = ("_hash",)

    def __init__(self, algorithm: str, hasher: Any) -> None:
        self.algorithm = algorithm
        self._hash = hasher

    def update(self, data: BytesLike) -> None:
        self._hash.update(_contiguous(data))

    def digest(self) -> bytes:
        return bytes(self._hash.digest())

    def copy(self) -> Checksum:
        return _HashChecksum(self.algorithm, self._hash.copy())


def _contiguous(data: BytesLike) -> BytesLike:
    # Native code needs one flat buffer; a strided memoryview is copied (rare, never hot).
    if isinstance(data, memoryview) and not data.c_contiguous:
        return data.tobytes()
    return data


def new(algorithm: str) -> Checksum:
    """A fresh incremental checksum; `algorithm` as S3 names it (`CRC32`, `SHA256` …)."""
    name = normalize(algorithm)
    crc = _CRCS.get(name)
    if crc is not None:
        return _CrcChecksum(name, crc)
    return _HashChecksum(name, hashlib.new(_HASHES[name]))


# --------------------------------------------------------------------------- multipart


def composite(algorithm: str, part_digests: Iterable[bytes]) -> str:
    """S3's COMPOSITE multipart checksum: `base64(hash(d1 || d2 || … || dN))-N`.

    Each part digest is the raw digest of that part (not its base64 text).
    """
    name = normalize(algorithm)
    size = _SIZES[name]
    checksum = new(name)
    count = 0
    for digest in part_digests:
        if len(digest) != size:
            raise ValueError(f"a {name} part digest is {size} bytes, got {len(digest)}")
        checksum.update(digest)
        count += 1
    if count == 0:
        raise ValueError("a composite checksum needs at least one part")
    return f"{checksum.b64()}-{count}"


def combine_full_object(algorithm: str, parts: Iterable[tuple[bytes, int]]) -> str:
    """S3's FULL_OBJECT multipart checksum: the CRC of the whole object, base64-encoded.

    `parts` are (raw part CRC, part length in bytes) in part order. Cost is O(log length)
    per part, independent of the data size.
    """
    name = normalize(algorithm)
    spec = _CRCS.get(name)
    if spec is None:
        raise ValueError(f"full-object checksums exist only for CRCs, not {name}")
    total = 0
    for digest, length in parts:
        if len(digest) != spec.size:
            raise ValueError(f"a {name} part digest is {spec.size} bytes, got {len(digest)}")
        if length < 0:
            raise ValueError("a part length cannot be negative")
        total = _combine(spec, total, int.from_bytes(digest, "big"), length)
    return b64(total.to_bytes(spec.size, "big"))


# --------------------------------------------------------------- CRC combination (GF(2))
#
# A reflected CRC register of width w holds a polynomial over GF(2) with the coefficient of
# x^k in bit (w-1-k). Feeding n zero bytes multiplies the register by x^(8n) modulo the
# CRC polynomial P. For CRCs whose initial value equals their final XOR (true of all three
# here), that gives
#
#     crc(A || B) = crc(A) * x^(8*len(B)) mod P  XOR  crc(B)
#
# because the all-ones constants that both CRCs carry cancel out. x^(8n) is found by
# square-and-multiply over a table of x^(2^i), so each combination costs O(log n)
# polynomial products of w steps each.


def _mulmod(a: int, b: int, spec: _Crc) -> int:
    """(a * b) mod P, both operands in reflected form."""
    top = spec.width - 1
    product = 0
    for k in range(spec.width):
        if (a >> (top - k)) & 1:  # coefficient of x^k in a
            product ^= b
        # b *= x: in reflected form a right shift, reducing when x^(w-1) overflows.
        b = (b >> 1) ^ spec.reflected_poly if b & 1 else b >> 1
    return product


_POWER_TABLES: dict[int, list[int]] = {}


def _powers_of_two(spec: _Crc) -> list[int]:
    """x^(2^i) mod P for i = 0..66 (enough for any byte count below 2^64)."""
    table = _POWER_TABLES.get(spec.reflected_poly)
    if table is None:
        table = [1 << (spec.width - 2)]  # x^1
        for _ in range(66):
            table.append(_mulmod(table[-1], table[-1], spec))
        _POWER_TABLES[spec.reflected_poly] = table
    return table


def _x_pow_8n(n: int, spec: _Crc) -> int:
    if n >= 1 << 61:
        raise ValueError("part length out of range")
    table = _powers_of_two(spec)
    result = 1 << (spec.width - 1)  # x^0
    exponent, i = n * 8, 0
    while exponent:
        if exponent & 1:
            result = _mulmod(result, table[i], spec)
        exponent >>= 1
        i += 1
    return result


def _combine(spec: _Crc, crc_a: int, crc_b: int, length_b: int) -> int:
    if length_b == 0:
        return crc_a
    return _mulmod(_x_pow_8n(length_b, spec), crc_a, spec) ^ crc_b


def combine(algorithm: str, digest_a: bytes, digest_b: bytes, length_b: int) -> bytes:
    """The raw CRC of A || B from crc(A), crc(B) and len(B), without the data."""
    name = normalize(algorithm)
    spec = _CRCS.get(name)
    if spec is None:
        raise ValueError(f"{name} is not a CRC")
    if len(digest_a) != spec.size or len(digest_b) != spec.size:
        raise ValueError(f"a {name} digest is {spec.size} bytes")
    if length_b < 0:
        raise ValueError("a length cannot be negative")
    crc = _combine(spec, int.from_bytes(digest_a, "big"), int.from_bytes(digest_b, "big"), length_b)
    return crc.to_bytes(spec.size, "big")
