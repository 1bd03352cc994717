"""S3 flexible checksums (s3compat.core.checksums).

Known answers are the standard check values (the CRC of b"123456789"); everything else is
checked against an independent implementation: botocore's own checksum classes (what the
clients send), zlib/hashlib directly, and awscrt's CRC-combine functions.
"""

from __future__ import annotations

import base64
import hashlib
import random
import zlib
from collections.abc import Callable

import pytest
from awscrt import checksums as crt
from botocore import httpchecksum

from s3compat.core import checksums
from s3compat.core.checksums import ALGORITHMS, CRC_ALGORITHMS, UnknownAlgorithm

CHECK_INPUT = b"123456789"
CHECK_VALUES = {
    "CRC32": "cbf43926",
    "CRC32C": "e3069283",
    "CRC64NVME": "ae8b14860a799888",
    "SHA1": "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
    "SHA256": "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
}
SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}

# Independent one-shot implementations (not the module's own dispatch).
REFERENCE: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "CRC32C": lambda d: crt.crc32c(d).to_bytes(4, "big"),
    "CRC64NVME": lambda d: crt.crc64nvme(d).to_bytes(8, "big"),
    "SHA1": lambda d: hashlib.sha1(d).digest(),
    "SHA256": lambda d: hashlib.sha256(d).digest(),
}
CRT_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}


def digest_of(algorithm: str, data: bytes) -> bytes:
    checksum = checksums.new(algorithm)
    checksum.update(data)
    return checksum.digest()


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


# ------------------------------------------------------------------------ known answers


def test_algorithm_list() -> None:
    assert checksums.ALGORITHMS == ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
    assert frozenset({"CRC32", "CRC32C", "CRC64NVME"}) == CRC_ALGORITHMS


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_check_value(algorithm: str) -> None:
    digest = digest_of(algorithm, CHECK_INPUT)
    assert digest.hex() == CHECK_VALUES[algorithm]
    assert len(digest) == SIZES[algorithm] == checksums.digest_size(algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_empty_input(algorithm: str) -> None:
    checksum = checksums.new(algorithm)
    assert checksum.digest() == REFERENCE[algorithm](b"")
    if algorithm in CRC_ALGORITHMS:
        assert checksum.digest() == bytes(SIZES[algorithm])
    assert checksum.b64() == base64.b64encode(checksum.digest()).decode()


def test_known_base64_values() -> None:
    # What S3 and botocore send for b"123456789" in x-amz-checksum-crc32 / -crc32c.
    assert checksums.b64(bytes.fromhex("cbf43926")) == "y/Q5Jg=="
    checksum = checksums.new("CRC32C")
    checksum.update(CHECK_INPUT)
    assert checksum.b64() == "4waSgw=="


# --------------------------------------------------------------- botocore compatibility


def botocore_classes() -> dict[str, type[object]]:
    """botocore's class for each algorithm, as the SDK picks it (CRT where available)."""
    table: dict[str, type[object]] = httpchecksum._CHECKSUM_CLS
    return {name: table[name.lower()] for name in ALGORITHMS}


def test_botocore_uses_native_classes_here() -> None:
    # If this fails, botocore fell back to its pure-Python/none CRCs and the comparison
    # below would be against a different implementation than the clients use.
    classes = botocore_classes()
    assert classes["CRC32C"] is httpchecksum.CrtCrc32cChecksum
    assert classes["CRC64NVME"] is httpchecksum.CrtCrc64NvmeChecksum


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, 3, 8, 63, 4096, 65537, 1 << 20])
def test_matches_botocore(algorithm: str, size: int) -> None:
    rng = random.Random(f"{algorithm}-{size}")
    data = random_bytes(rng, size)
    theirs: object = botocore_classes()[algorithm]()
    ours = checksums.new(algorithm)
    view = memoryview(data)
    position = 0
    while position < size:
        step = rng.randint(1, max(1, size // 3))
        theirs.update(data[position : position + step])  # type: ignore[attr-defined]
        ours.update(view[position : position + step])
        position += step
    assert ours.b64() == theirs.b64digest()  # type: ignore[attr-defined]
    assert ours.digest() == theirs.digest()  # type: ignore[attr-defined]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_matches_botocore_every_split_of_small_data(algorithm: str) -> None:
    data = bytes(range(256)) * 3
    expected = REFERENCE[algorithm](data)
    for cut in range(len(data) + 1):
        checksum = checksums.new(algorithm)
        checksum.update(data[:cut])
        checksum.update(data[cut:])
        assert checksum.digest() == expected, cut


# ------------------------------------------------------------------- incremental use


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_incremental_equals_one_shot(algorithm: str) -> None:
    rng = random.Random(algorithm)
    for _ in range(20):
        data = random_bytes(rng, rng.randint(0, 20000))
        checksum = checksums.new(algorithm)
        position = 0
        while position < len(data):
            step = rng.choice([1, 2, 3, 7, rng.randint(1, 5000)])
            piece = data[position : position + step]
            kind = rng.randrange(3)
            checksum.update(
                piece if kind == 0 else bytearray(piece) if kind == 1 else memoryview(piece)
            )
            position += step
        assert checksum.digest() == REFERENCE[algorithm](data)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_non_contiguous_memoryview(algorithm: str) -> None:
    data = bytes(range(200))
    strided = memoryview(data)[::2]
    assert not strided.c_contiguous
    checksum = checksums.new(algorithm)
    checksum.update(strided)
    assert checksum.digest() == REFERENCE[algorithm](data[::2])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_digest_does_not_finalise_and_copy_is_independent(algorithm: str) -> None:
    checksum = checksums.new(algorithm)
    checksum.update(b"hello ")
    assert checksum.digest() == REFERENCE[algorithm](b"hello ")
    snapshot = checksum.copy()
    checksum.update(b"world")
    assert checksum.digest() == REFERENCE[algorithm](b"hello world")
    assert snapshot.digest() == REFERENCE[algorithm](b"hello ")
    snapshot.update(b"there")
    assert snapshot.digest() == REFERENCE[algorithm](b"hello there")
    assert checksum.digest() == REFERENCE[algorithm](b"hello world")
    assert algorithm in repr(checksum)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_header_names_round_trip(algorithm: str) -> None:
    name = checksums.header_name(algorithm)
    assert name == "x-amz-checksum-" + algorithm.lower()
    assert checksums.algorithm_from_header(name) == algorithm
    assert checksums.algorithm_from_header(name.upper()) == algorithm
    assert checksums.header_name(algorithm.lower()) == name


@pytest.mark.parametrize(
    "name",
    [
        "x-amz-checksum-mode",
        "x-amz-checksum-type",
        "x-amz-checksum-algorithm",
        "x-amz-checksum-",
        "x-amz-checksum-md5",
        "x-amz-checksum-crc32x",
        "x-amz-sdk-checksum-algorithm",
        "content-md5",
        "crc32",
        "",
    ],
)
def test_algorithm_from_header_rejects_other_headers(name: str) -> None:
    assert checksums.algorithm_from_header(name) is None


@pytest.mark.parametrize("name", ["MD5", "CRC16", "", "SHA512x", "crc 32", "CRC32 C"])
def test_unknown_algorithm(name: str) -> None:
    with pytest.raises(UnknownAlgorithm):
        checksums.new(name)
    with pytest.raises(ValueError):
        checksums.header_name(name)
    with pytest.raises(ValueError):
        checksums.digest_size(name)


def test_names_are_case_insensitive() -> None:
    assert checksums.normalize("crc64nvme") == "CRC64NVME"
    assert checksums.new("sha256").algorithm == "SHA256"


# --------------------------------------------------------------------- parsing values


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_parse_b64_accepts_exact_digests(algorithm: str) -> None:
    digest = REFERENCE[algorithm](CHECK_INPUT)
    text = checksums.b64(digest)
    assert checksums.parse_b64(algorithm, text) == digest
    assert checksums.parse_b64(algorithm, f" {text} ") == digest


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [
        ("CRC32", ""),
        ("CRC32", "y/Q5Jg="),  # bad padding
        ("CRC32", "y/Q5Jg"),  # no padding
        ("CRC32", "y/Q5Jg==="),
        ("CRC32", "y/Q5J*=="),
        ("CRC32", "y/Q5 Jg=="),
        ("CRC32", "AAAAAAAAAAA="),  # 8 bytes
        ("CRC64NVME", "y/Q5Jg=="),  # 4 bytes
        ("SHA256", "y/Q5Jg=="),
        ("CRC32", "y/Q5Jh=="),  # non-canonical trailing bits
        ("CRC32", "é/Q5Jg=="),
    ],
)
def test_parse_b64_rejects(algorithm: str, value: str) -> None:
    with pytest.raises(ValueError):
        checksums.parse_b64(algorithm, value)


# ------------------------------------------------------------------------- composite


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_composite_is_checksum_of_part_checksums(algorithm: str) -> None:
    rng = random.Random(algorithm)
    parts = [random_bytes(rng, rng.randint(0, 3000)) for _ in range(5)]
    digests = [REFERENCE[algorithm](part) for part in parts]
    expected = base64.b64encode(REFERENCE[algorithm](b"".join(digests))).decode() + "-5"
    assert checksums.composite(algorithm, digests) == expected
    assert checksums.composite(algorithm, iter(digests)) == expected


def test_composite_single_part_is_not_the_part_checksum() -> None:
    digest = REFERENCE["CRC32"](CHECK_INPUT)
    value = checksums.composite("CRC32", [digest])
    assert value.endswith("-1")
    assert value != checksums.b64(digest) + "-1"
    assert value == checksums.b64(zlib.crc32(digest).to_bytes(4, "big")) + "-1"


def test_composite_errors() -> None:
    with pytest.raises(ValueError):
        checksums.composite("CRC32", [])
    with pytest.raises(ValueError):
        checksums.composite("CRC32", [b"\0" * 8])
    with pytest.raises(ValueError):
        checksums.composite("SHA256", [b"\0" * 20])
    with pytest.raises(UnknownAlgorithm):
        checksums.composite("MD5", [b"\0" * 16])


# ----------------------------------------------------------------------- full object


@pytest.mark.parametrize("algorithm", sorted(CRC_ALGORITHMS))
def test_full_object_equals_crc_of_concatenation(algorithm: str) -> None:
    rng = random.Random(algorithm)
    for _ in range(30):
        sizes = [
            rng.choice([0, 1, 2, 7, 100, rng.randint(0, 70000)]) for _ in range(rng.randint(1, 8))
        ]
        parts = [random_bytes(rng, n) for n in sizes]
        got = checksums.combine_full_object(
            algorithm, [(REFERENCE[algorithm](p), len(p)) for p in parts]
        )
        assert got == checksums.b64(REFERENCE[algorithm](b"".join(parts)))


@pytest.mark.parametrize("algorithm", sorted(CRC_ALGORITHMS))
def test_full_object_with_multi_mib_parts(algorithm: str) -> None:
    rng = random.Random(7)
    parts = [random_bytes(rng, 5 << 20), random_bytes(rng, (5 << 20) + 3), random_bytes(rng, 11)]
    got = checksums.combine_full_object(
        algorithm, [(REFERENCE[algorithm](p), len(p)) for p in parts]
    )
    assert got == checksums.b64(REFERENCE[algorithm](b"".join(parts)))


@pytest.mark.parametrize("algorithm", sorted(CRC_ALGORITHMS))
def test_combine_matches_awscrt_for_huge_lengths(algorithm: str) -> None:
    # Lengths no test could hash: 5 GiB parts, the 5 TiB object limit, odd sizes.
    rng = random.Random(algorithm)
    size = SIZES[algorithm]
    for length in [1, 8, 255, 4096, (5 << 30) + 17, 5 << 40, (1 << 50) - 1]:
        a, b = rng.getrandbits(size * 8), rng.getrandbits(size * 8)
        ours = checksums.combine(
            algorithm, a.to_bytes(size, "big"), b.to_bytes(size, "big"), length
        )
        assert int.from_bytes(ours, "big") == CRT_COMBINE[algorithm](a, b, length)


@pytest.mark.parametrize("algorithm", sorted(CRC_ALGORITHMS))
def test_combine_with_zero_length_and_single_part(algorithm: str) -> None:
    digest = REFERENCE[algorithm](CHECK_INPUT)
    empty = REFERENCE[algorithm](b"")
    assert checksums.combine(algorithm, digest, empty, 0) == digest
    assert checksums.combine(algorithm, empty, digest, len(CHECK_INPUT)) == digest
    assert checksums.combine_full_object(algorithm, [(digest, 9)]) == checksums.b64(digest)
    assert checksums.combine_full_object(algorithm, []) == checksums.b64(empty)


def test_full_object_errors() -> None:
    with pytest.raises(ValueError):
        checksums.combine_full_object("SHA256", [(b"\0" * 32, 1)])
    with pytest.raises(ValueError):
        checksums.combine_full_object("CRC32", [(b"\0" * 8, 1)])
    with pytest.raises(ValueError):
        checksums.combine_full_object("CRC32", [(b"\0" * 4, -1)])
    with pytest.raises(ValueError):
        checksums.combine("SHA1", b"\0" * 20, b"\0" * 20, 1)
    with pytest.raises(ValueError):
        checksums.combine("CRC32", b"\0" * 4, b"\0" * 4, 1 << 62)
