"""aws-chunked body decoding (s3compat.api.chunked).

Signed bodies are checked against AWS's published examples (sigv4-streaming and
sigv4-streaming-trailers: 65 KiB of 'a' in 64 KiB + 1 KiB chunks), unsigned ones against
what botocore itself produces. Every body is also fed in awkward piece sizes, tampered with
in every way we could think of, and fuzzed: the decoder must only ever return the data or
raise an S3 error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import httpchecksum
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3compat.api import chunked, sigv4
from s3compat.api.chunked import ChunkVerifier, MalformedTrailerError, Trailers
from s3compat.core import checksums
from s3compat.core.errors import IncompleteBody, InvalidRequest, S3Error, SignatureDoesNotMatch

EX_AK = "AKIAIOSFODNN7EXAMPLE"
EX_SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EX_DATE = "20130524T000000Z"
EX_SCOPE = "20130524/us-east-1/s3/aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
OBJECT = b"a" * 66560  # the 65 KiB object of both AWS examples

# sigv4-streaming: STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
STREAM_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
STREAM_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
# sigv4-streaming-trailers: STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, CRC32C trailer.
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_SIGNATURES = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
TRAILER_CHECKSUM = "sOO8/Q=="
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


# ------------------------------------------------------------------------------ helpers


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _signing_key() -> bytes:
    # Derived here rather than through sigv4, so the encoder below is independent of it.
    key = _hmac(("AWS4" + EX_SK).encode(), EX_DATE[:8])
    for part in ("us-east-1", "s3", "aws4_request"):
        key = _hmac(key, part)
    return key


SIGNING_KEY = _signing_key()


def context(seed: str, payload_hash: str) -> sigv4.AuthContext:
    return sigv4.AuthContext(
        access_key=EX_AK,
        presigned=False,
        payload_hash=payload_hash,
        signing_key=SIGNING_KEY,
        seed_signature=seed,
        amz_date=EX_DATE,
        scope=EX_SCOPE,
    )


def stream_verifier(seed: str = STREAM_SEED) -> ChunkVerifier:
    return ChunkVerifier(context(seed, sigv4.STREAMING_SIGNED_PAYLOAD))


def trailer_verifier(seed: str = TRAILER_SEED) -> ChunkVerifier:
    return ChunkVerifier(context(seed, sigv4.STREAMING_SIGNED_PAYLOAD_TRAILER))


class Signer:
    """Client side of the signature chain, written from AWS's description of it."""

    def __init__(self, seed: str) -> None:
        self.previous = seed

    def _sign(self, text: str) -> str:
        self.previous = hmac.new(SIGNING_KEY, text.encode(), hashlib.sha256).hexdigest()
        return self.previous

    def chunk(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        return self._sign(
            "\n".join(
                ("AWS4-HMAC-SHA256-PAYLOAD", EX_DATE, EX_SCOPE, self.previous, EMPTY_SHA256, digest)
            )
        )

    def trailer(self, canonical: str) -> str:
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return self._sign(
            "\n".join(("AWS4-HMAC-SHA256-TRAILER", EX_DATE, EX_SCOPE, self.previous, digest))
        )


def encode(
    data: bytes,
    chunk_sizes: int | Sequence[int],
    *,
    signer: Signer | None = None,
    trailers: Sequence[tuple[str, str]] = (),
    sign_trailers: bool = False,
) -> bytes:
    """An aws-chunked body; chunk sizes cycle if given as a list."""
    sizes = [chunk_sizes] if isinstance(chunk_sizes, int) else list(chunk_sizes)
    out = bytearray()
    position, index = 0, 0
    while position < len(data):
        piece = data[position : position + sizes[index % len(sizes)]]
        extension = f";chunk-signature={signer.chunk(piece)}" if signer else ""
        out += f"{len(piece):x}{extension}\r\n".encode() + piece + b"\r\n"
        position += len(piece)
        index += 1
    extension = f";chunk-signature={signer.chunk(b'')}" if signer else ""
    out += f"0{extension}\r\n".encode()
    for name, value in trailers:
        out += f"{name}:{value}\r\n".encode()
    if sign_trailers:
        assert signer is not None
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers)
        out += f"x-amz-trailer-signature:{signer.trailer(canonical)}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def aws_streaming_body() -> bytes:
    s1, s2, s3 = STREAM_SIGNATURES
    return (
        f"10000;chunk-signature={s1}\r\n".encode()
        + b"a" * 65536
        + f"\r\n400;chunk-signature={s2}\r\n".encode()
        + b"a" * 1024
        + f"\r\n0;chunk-signature={s3}\r\n\r\n".encode()
    )


def aws_trailer_body(trailer_line: str = f"x-amz-checksum-crc32c:{TRAILER_CHECKSUM}") -> bytes:
    s1, s2, s3 = TRAILER_SIGNATURES
    return (
        f"10000;chunk-signature={s1}\r\n".encode()
        + b"a" * 65536
        + f"\r\n400;chunk-signature={s2}\r\n".encode()
        + b"a" * 1024
        + f"\r\n0;chunk-signature={s3}\r\n".encode()
        + f"{trailer_line}\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n".encode()
    )


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


def random_split(body: bytes, rng: random.Random, *, empties: bool = True) -> list[bytes]:
    pieces, position = [], 0
    while position < len(body):
        if empties and rng.random() < 0.05:
            pieces.append(b"")
        step = rng.choice([1, 2, 3, 5, 8, 13, rng.randint(1, 70000)])
        pieces.append(body[position : position + step])
        position += step
    return pieces


async def _source(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def decode(
    pieces: Iterable[bytes], verifier: ChunkVerifier | None = None, **options: Any
) -> tuple[bytes, Trailers, list[int]]:
    """Run the decoder to the end: (data, trailers, the size of each yielded piece)."""
    trailers = Trailers()

    async def run() -> tuple[bytes, list[int]]:
        out = bytearray()
        sizes = []
        async for data in chunked.decode(
            _source(pieces), verifier=verifier, trailers=trailers, **options
        ):
            assert type(data) is bytes and data
            out += data
            sizes.append(len(data))
        return bytes(out), sizes

    data, sizes = asyncio.run(run())
    return data, trailers, sizes


def decode_fails(
    error: type[S3Error], pieces: Iterable[bytes], verifier: ChunkVerifier | None = None, **kw: Any
) -> S3Error:
    trailers = Trailers()
    kw["trailers"] = trailers

    async def run() -> None:
        async for _ in chunked.decode(_source(pieces), verifier=verifier, **kw):
            pass

    with pytest.raises(error) as info:
        asyncio.run(run())
    # Nothing half-checked is ever published.
    assert not trailers.complete
    assert trailers.headers == {}
    assert EX_SK not in str(info.value)
    return info.value


# ------------------------------------------------------------- AWS published examples


PIECE_SIZES = [1, 2, 3, 7, 4096, 65536, 65537, 1 << 20]


def test_aws_streaming_example_layout() -> None:
    body = aws_streaming_body()
    assert len(body) == 66824  # the Content-Length of the published request
    assert body == encode(OBJECT, 65536, signer=Signer(STREAM_SEED))


@pytest.mark.parametrize("size", PIECE_SIZES)
def test_aws_streaming_example_decodes(size: int) -> None:
    data, trailers, sizes = decode(
        split(aws_streaming_body(), size), stream_verifier(), decoded_content_length=66560
    )
    assert data == OBJECT
    # Signed data is handed over a whole, verified chunk at a time.
    assert sizes == [65536, 1024]
    assert trailers.complete
    assert trailers.headers == {}
    assert trailers.decoded_length == 66560


def test_aws_streaming_example_random_pieces() -> None:
    rng = random.Random(1)
    for _ in range(20):
        data, trailers, _ = decode(random_split(aws_streaming_body(), rng), stream_verifier())
        assert data == OBJECT and trailers.complete


def test_aws_trailer_example_layout() -> None:
    body = aws_trailer_body()
    signer = Signer(TRAILER_SEED)
    trailer = [("x-amz-checksum-crc32c", TRAILER_CHECKSUM)]
    assert body == encode(OBJECT, 65536, signer=signer, trailers=trailer, sign_trailers=True)
    # The trailer is the CRC32C of the object, as our checksum module computes it.
    checksum = checksums.new("CRC32C")
    checksum.update(OBJECT)
    assert checksum.b64() == TRAILER_CHECKSUM


@pytest.mark.parametrize("size", PIECE_SIZES)
def test_aws_trailer_example_decodes(size: int) -> None:
    data, trailers, sizes = decode(
        split(aws_trailer_body(), size),
        trailer_verifier(),
        decoded_content_length=66560,
        expected_trailers=chunked.parse_trailer_header("x-amz-checksum-crc32c"),
    )
    assert data == OBJECT
    assert sizes == [65536, 1024]
    assert trailers.complete
    assert trailers.headers == {"x-amz-checksum-crc32c": TRAILER_CHECKSUM}
    assert trailers.checksum() == ("CRC32C", TRAILER_CHECKSUM)
    assert trailers.get("X-Amz-Checksum-CRC32C") == TRAILER_CHECKSUM


def test_aws_examples_through_authenticate() -> None:
    # The seed comes from a real authenticate() of the published request headers.
    headers = [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", EX_DATE),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        (
            "authorization",
            f"AWS4-HMAC-SHA256 Credential={EX_AK}/{EX_SCOPE},SignedHeaders=content-encoding;"
            "content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
            f"x-amz-storage-class,Signature={STREAM_SEED}",
        ),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
    ]
    ctx = sigv4.authenticate(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        headers,
        lambda key: EX_SK if key == EX_AK else None,
        datetime(2013, 5, 24, tzinfo=UTC),
    )
    verifier = chunked.verifier_for(ctx)
    assert verifier is not None and not verifier.signed_trailer
    assert decode([aws_streaming_body()], verifier)[0] == OBJECT


# ---------------------------------------------------------------- signed: tampering


def _replace_once(body: bytes, old: bytes, new: bytes) -> bytes:
    assert body.count(old) >= 1
    return body.replace(old, new, 1)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b: b[:100] + b"b" + b[101:], id="first-chunk-data"),
        pytest.param(lambda b: b[:-200] + b"b" + b[-199:], id="second-chunk-data"),
        pytest.param(
            lambda b: _replace_once(b, STREAM_SIGNATURES[0].encode(), b"0" * 64), id="sig-1"
        ),
        pytest.param(
            lambda b: _replace_once(
                b, STREAM_SIGNATURES[1].encode(), STREAM_SIGNATURES[0].encode()
            ),
            id="sig-2-replayed",
        ),
        pytest.param(
            lambda b: _replace_once(
                b, STREAM_SIGNATURES[2].encode(), b"B6" + STREAM_SIGNATURES[2][2:].encode()
            ),
            id="final-sig-upper-case",
        ),
        pytest.param(
            lambda b: _replace_once(
                b, STREAM_SIGNATURES[2].encode(), STREAM_SIGNATURES[2][:-1].encode()
            ),
            id="final-sig-short",
        ),
        pytest.param(
            lambda b: _replace_once(b, b";chunk-signature=" + STREAM_SIGNATURES[1].encode(), b""),
            id="sig-missing",
        ),
        pytest.param(
            lambda b: _replace_once(b, b";chunk-signature=" + STREAM_SIGNATURES[2].encode(), b""),
            id="final-sig-missing",
        ),
        pytest.param(
            lambda b: _replace_once(
                b, f"chunk-signature={STREAM_SIGNATURES[1]}".encode(), b"chunk-signaturex=1"
            ),
            id="sig-renamed",
        ),
        pytest.param(
            lambda b: _replace_once(b, b"400;", b"3ff;").replace(b"a\r\n0;", b"\r\n0;"),
            id="chunk-shortened",
        ),
    ],
)
def test_aws_streaming_example_tampered(tamper: Any) -> None:
    body = tamper(aws_streaming_body())
    assert body != aws_streaming_body()
    decode_fails(SignatureDoesNotMatch, split(body, 4096), stream_verifier())


def test_signed_chunks_are_never_yielded_unverified() -> None:
    body = aws_streaming_body()
    body = body[:-200] + b"b" + body[-199:]  # the second chunk is corrupt

    async def run() -> list[int]:
        yielded: list[int] = []
        with pytest.raises(SignatureDoesNotMatch):
            async for data in chunked.decode(_source([body]), verifier=stream_verifier()):
                yielded.append(len(data))
        return yielded

    assert asyncio.run(run()) == [65536]


def test_wrong_seed_fails_on_first_chunk() -> None:
    decode_fails(SignatureDoesNotMatch, [aws_streaming_body()], stream_verifier("0" * 64))


def test_junk_signature_is_a_mismatch() -> None:
    body = _replace_once(aws_streaming_body(), STREAM_SIGNATURES[0].encode(), b"~" * 64)
    decode_fails(SignatureDoesNotMatch, [body], stream_verifier())


def test_non_ascii_signature_is_malformed() -> None:
    body = _replace_once(aws_streaming_body(), STREAM_SIGNATURES[0].encode(), "é".encode() * 32)
    decode_fails(IncompleteBody, [body], stream_verifier())


def test_repeated_chunk_signature_is_malformed() -> None:
    s1 = STREAM_SIGNATURES[0]
    body = _replace_once(
        aws_streaming_body(),
        f";chunk-signature={s1}".encode(),
        f";chunk-signature={s1};chunk-signature={s1}".encode(),
    )
    decode_fails(IncompleteBody, [body], stream_verifier())


def test_signed_extra_extensions_are_ignored() -> None:
    s1 = STREAM_SIGNATURES[0]
    body = _replace_once(
        aws_streaming_body(),
        f";chunk-signature={s1}".encode(),
        f";foo=bar;chunk-signature={s1};x".encode(),
    )
    assert decode([body], stream_verifier())[0] == OBJECT


@pytest.mark.parametrize(
    "trailer_line",
    [
        f"x-amz-checksum-crc32c:{TRAILER_CHECKSUM[:-3]}A==",
        "x-amz-checksum-crc32:sOO8/Q==",
        f"x-amz-checksum-crc32c:{TRAILER_CHECKSUM}\r\nx-amz-meta-extra:1",
    ],
)
def test_aws_trailer_example_tampered_trailer(trailer_line: str) -> None:
    decode_fails(SignatureDoesNotMatch, [aws_trailer_body(trailer_line)], trailer_verifier())


def test_aws_trailer_example_signature_tampered_or_missing() -> None:
    body = aws_trailer_body()
    wrong = body.replace(TRAILER_SIGNATURE.encode(), TRAILER_SIGNATURE[::-1].encode())
    decode_fails(SignatureDoesNotMatch, [wrong], trailer_verifier())
    missing = body.replace(f"x-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n".encode(), b"")
    decode_fails(SignatureDoesNotMatch, [missing], trailer_verifier())


def test_trailer_signature_must_be_last() -> None:
    body = aws_trailer_body().replace(b"\r\n\r\n", b"\r\nx-amz-meta-late:1\r\n\r\n")
    decode_fails(MalformedTrailerError, [body], trailer_verifier())


def test_trailer_whitespace_around_colon_is_not_signed() -> None:
    body = aws_trailer_body(f"x-amz-checksum-crc32c : {TRAILER_CHECKSUM}")
    data, trailers, _ = decode([body], trailer_verifier())
    assert data == OBJECT
    assert trailers.headers == {"x-amz-checksum-crc32c": TRAILER_CHECKSUM}


def test_trailers_forbidden_without_trailer_mode() -> None:
    body = aws_streaming_body()[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    decode_fails(MalformedTrailerError, [body], stream_verifier())


def test_signed_trailer_mode_without_any_trailer() -> None:
    signer = Signer(TRAILER_SEED)
    body = encode(b"xyz" * 5000, 8192, signer=signer, sign_trailers=True)
    data, trailers, _ = decode([body], trailer_verifier(), expected_trailers=frozenset())
    assert data == b"xyz" * 5000
    assert trailers.headers == {}


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 100000])
def test_signed_round_trip(size: int) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    body = encode(data, [8192, 3000, 9000], signer=Signer(STREAM_SEED))
    assert (
        decode(random_split(body, rng), stream_verifier(), decoded_content_length=size)[0] == data
    )
    trailer = [("x-amz-checksum-sha256", "x" * 44), ("x-amz-meta-a", "b")]
    body = encode(data, 8192, signer=Signer(TRAILER_SEED), trailers=trailer, sign_trailers=True)
    got, trailers, _ = decode(random_split(body, rng), trailer_verifier())
    assert got == data
    assert trailers.headers == dict(trailer)


# ---------------------------------------------------------------- unsigned: botocore


CHECKSUM_CLASSES = {
    "CRC32": httpchecksum.Crc32Checksum,
    "CRC32C": httpchecksum.CrtCrc32cChecksum,
    "CRC64NVME": httpchecksum.CrtCrc64NvmeChecksum,
    "SHA1": httpchecksum.Sha1Checksum,
    "SHA256": httpchecksum.Sha256Checksum,
}


@pytest.mark.parametrize("algorithm", sorted(CHECKSUM_CLASSES))
@pytest.mark.parametrize("size", [0, 1, 5000, 65536, 300001])
def test_botocore_aws_chunked_wrapper(algorithm: str, size: int) -> None:
    rng = random.Random(f"{algorithm}{size}")
    data = rng.randbytes(size)
    name = checksums.header_name(algorithm)
    wrapper = httpchecksum.AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=CHECKSUM_CLASSES[algorithm],
        checksum_name=name,
        chunk_size=65536,
    )
    body = wrapper.read()
    for pieces in (split(body, 1), split(body, 7), random_split(body, rng), [body]):
        got, trailers, _ = decode(
            pieces, None, decoded_content_length=size, expected_trailers=frozenset({name})
        )
        assert got == data
        assert trailers.complete
        found = trailers.checksum()
        assert found is not None
        checksum = checksums.new(algorithm)
        checksum.update(got)
        assert found == (algorithm, checksum.b64())


class _Raw:
    def stream(self, **_: Any) -> Iterable[bytes]:
        return iter([b""])


@pytest.mark.parametrize("algorithm", [None, "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_boto3_put_object_over_https(algorithm: str | None) -> None:
    """What boto3 really sends by default over HTTPS, through authenticate() and decode()."""
    captured: list[Any] = []

    def before_send(request: Any, **_: Any) -> AWSResponse:
        body = request.body.read() if hasattr(request.body, "read") else request.body
        captured.append((request, body))
        return AWSResponse(request.url, 200, {"ETag": '"0"'}, _Raw())

    client = boto3.client(
        "s3",
        endpoint_url="https://s3.example.test",
        aws_access_key_id=EX_AK,
        aws_secret_access_key=EX_SK,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.meta.events.register("before-send.s3", before_send)
    data = random.Random(3).randbytes(2_500_000)
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    client.put_object(Bucket="b", Key="dir/a key é", Body=io.BytesIO(data), **extra)

    request, body = captured[0]
    headers = [
        (k.lower(), v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()
    ]
    header = dict(headers)
    assert header["x-amz-content-sha256"] == sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER
    assert header["content-encoding"] == "aws-chunked"
    url = urlsplit(request.url)
    now = datetime.strptime(header["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ctx = sigv4.authenticate(
        "PUT", url.path, url.query, headers, lambda k: EX_SK if k == EX_AK else None, now
    )
    assert chunked.verifier_for(ctx) is None
    got, trailers, _ = decode(
        random_split(body, random.Random(4)),
        None,
        decoded_content_length=int(header["x-amz-decoded-content-length"]),
        expected_trailers=chunked.parse_trailer_header(header["x-amz-trailer"]),
    )
    assert got == data
    found = trailers.checksum()
    assert found is not None and found[0] == (algorithm or "CRC32")
    checksum = checksums.new(found[0])
    checksum.update(data)
    assert found[1] == checksum.b64()


# ------------------------------------------------------------ unsigned: hand-built


def test_unsigned_minimal_bodies() -> None:
    assert decode([b"0\r\n\r\n"])[0] == b""
    data, trailers, _ = decode(
        [b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"]
    )
    assert data == b"abcdefg"
    assert trailers.headers == {"x-amz-checksum-crc32": "AAAAAA=="}
    assert trailers.decoded_length == 7


def test_unsigned_data_may_contain_framing_bytes() -> None:
    data = b"0\r\n\r\n4\r\nx\r\n"
    body = encode(data, 3)
    assert decode(split(body, 1))[0] == data


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),  # upper-case hex
        (b"000a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),  # leading zeros
        (b"3;name=value\r\nabc\r\n0;x\r\n\r\n", b"abc"),  # extensions ignored
        (b"3;chunk-signature=zz\r\nabc\r\n0\r\n\r\n", b"abc"),  # no signing context
        (b"3\r\nabc\r\n0\r\nx-amz-trailer-signature:ab\r\n\r\n", b"abc"),  # dropped
    ],
)
def test_unsigned_variants(body: bytes, data: bytes) -> None:
    got, trailers, _ = decode(split(body, 2))
    assert got == data
    assert trailers.headers == {}


def test_unsigned_data_is_streamed_not_buffered() -> None:
    """Unsigned data goes out as it arrives: no chunk is ever held whole."""
    pulled = 0
    first_yield_at: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        body = b"100000\r\n" + b"z" * 0x100000 + b"\r\n0\r\n\r\n"
        for piece in split(body, 65536):
            pulled += 1
            yield piece

    async def run() -> int:
        total = 0
        async for data in chunked.decode(source(), verifier=None):
            if not first_yield_at:
                first_yield_at.append(pulled)
            assert len(data) <= 65536
            total += len(data)
        return total

    assert asyncio.run(run()) == 0x100000
    assert first_yield_at == [1]


def test_signed_chunk_is_yielded_before_the_next_is_read() -> None:
    pulled = 0
    body = encode(b"q" * 300000, 100000, signer=Signer(STREAM_SEED))

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for piece in split(body, 1000):
            pulled += 1
            yield piece

    async def run() -> list[int]:
        seen = []
        async for _ in chunked.decode(source(), verifier=stream_verifier()):
            seen.append(pulled)
        return seen

    seen = asyncio.run(run())
    # Each chunk is released as soon as its last byte (and CRLF) arrived, not at the end.
    chunk_length = len(f"186a0;chunk-signature={'0' * 64}\r\n") + 100000 + 2
    assert seen == [-(-k * chunk_length // 1000) for k in (1, 2, 3)]
    assert seen[0] < len(split(body, 1000)) // 2


def test_oversized_chunk_is_refused_before_its_data_is_read() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"1000001;chunk-signature=" + b"0" * 64 + b"\r\n"
        raise AssertionError("the decoder must not read the data of an oversized chunk")

    async def run(verifier: ChunkVerifier | None) -> None:
        async for _ in chunked.decode(source(), verifier=verifier):
            pass

    for verifier in (None, stream_verifier()):
        with pytest.raises(InvalidRequest):
            asyncio.run(run(verifier))


def test_max_chunk_size_boundary() -> None:
    body = encode(b"x" * 100, 100)
    assert decode([body], max_chunk_size=100)[0] == b"x" * 100
    decode_fails(InvalidRequest, [body], max_chunk_size=99)
    signed = encode(b"x" * 100, 100, signer=Signer(STREAM_SEED))
    decode_fails(InvalidRequest, [signed], stream_verifier(), max_chunk_size=99)
    with pytest.raises(ValueError):
        decode([body], max_chunk_size=0)


# ----------------------------------------------------------------- framing faults


VALID = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"


def test_valid_reference_body() -> None:
    data, trailers, _ = decode([VALID])
    assert data == b"hello world"
    assert trailers.checksum() == ("CRC32", "DUoRhQ==")


@pytest.mark.parametrize("cut", range(len(VALID)))
def test_every_truncation_is_incomplete(cut: int) -> None:
    decode_fails(IncompleteBody, split(VALID[:cut], 3))


@pytest.mark.parametrize("cut", [1, 50, 65536, 66000, len(aws_trailer_body()) - 1])
def test_signed_truncation_is_incomplete(cut: int) -> None:
    decode_fails(IncompleteBody, split(aws_trailer_body()[:cut], 999), trailer_verifier())


@pytest.mark.parametrize(
    "extra", [[b"x"], [b"\r\n"], [b"", b"0\r\n\r\n"], [b"", b"", b"\0"]], ids=repr
)
def test_bytes_after_the_end(extra: list[bytes]) -> None:
    decode_fails(IncompleteBody, [VALID, *extra])
    decode_fails(IncompleteBody, [aws_streaming_body(), *extra], stream_verifier())


def test_empty_trailing_pieces_are_fine() -> None:
    assert decode([VALID, b"", b""])[0] == b"hello world"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",  # bare LF
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXY0\r\n\r\n",  # data longer than declared
        b"5\r\nhell\r\n0\r\n\r\n",  # data shorter than declared
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\n\r\n",
        b"5\r\nhello\r\n0\r\n\r",
        b"5\r\nhello\r\n0\r\n",
        b"5\r\nhello\r\n",
        b"11111111111111111\r\n",  # 17 hex digits
        b"5;\xff\r\nhello\r\n0\r\n\r\n",
        b"5;=x\r\nhello\r\n0\r\n\r\n",
        b"5;a b\r\nhello\r\n0\r\n\r\n",
        b"5" + b"0" * 5000 + b"\r\n",  # endless size line
        b"5;" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n" + b"x-amz-meta-a:" + b"b" * 5000 + b"\r\n\r\n",
    ],
    ids=lambda b: repr(b[:30]),
)
def test_malformed_framing(body: bytes) -> None:
    decode_fails(IncompleteBody, [body])
    decode_fails(IncompleteBody, split(body, 1))


@pytest.mark.parametrize(
    "trailer_section",
    [
        b"no-colon\r\n",
        b":value\r\n",
        b"bad name:x\r\n",
        b"x-amz-checksum-crc32:AAAAAA==\r\nX-Amz-Checksum-CRC32:AAAAAA==\r\n",  # repeated
        "x-amz-meta-é:1\r\n".encode(),
        "x-amz-meta-a:é\r\n".encode(),
        b"".join(f"x-amz-meta-{i}:1\r\n".encode() for i in range(33)),
        b"x-amz-trailer-signature:ab\r\nx-amz-checksum-crc32:AAAAAA==\r\n",
    ],
    ids=lambda b: repr(b[:30]),
)
def test_malformed_trailers(trailer_section: bytes) -> None:
    decode_fails(MalformedTrailerError, [b"1\r\nx\r\n0\r\n" + trailer_section + b"\r\n"])


def test_many_trailers_up_to_the_limit() -> None:
    section = b"".join(f"x-amz-meta-{i}:{i}\r\n".encode() for i in range(32))
    _, trailers, _ = decode([b"0\r\n" + section + b"\r\n"])
    assert len(trailers.headers) == 32


@pytest.mark.parametrize(
    ("announced", "sent"),
    [
        ("x-amz-checksum-crc32", ""),
        ("x-amz-checksum-crc32", "x-amz-checksum-crc32c:AAAAAA==\r\n"),
        ("", "x-amz-checksum-crc32:AAAAAA==\r\n"),
        ("x-amz-checksum-crc32", "x-amz-checksum-crc32:AAAAAA==\r\nx-amz-meta-a:1\r\n"),
        ("x-amz-checksum-crc32,x-amz-meta-a", "x-amz-checksum-crc32:AAAAAA==\r\n"),
    ],
)
def test_trailers_must_match_x_amz_trailer(announced: str, sent: str) -> None:
    body = b"1\r\nx\r\n0\r\n" + sent.encode() + b"\r\n"
    expected = chunked.parse_trailer_header(announced)
    decode_fails(MalformedTrailerError, [body], expected_trailers=expected)
    # Without the comparison the same body is fine.
    assert decode([body])[0] == b"x"


def test_trailer_header_parsing() -> None:
    assert chunked.parse_trailer_header(None) == frozenset()
    assert chunked.parse_trailer_header("") == frozenset()
    assert chunked.parse_trailer_header(" X-Amz-Checksum-CRC32 , x-amz-meta-a,") == {
        "x-amz-checksum-crc32",
        "x-amz-meta-a",
    }


def test_decoded_length_mismatch() -> None:
    assert decode([VALID], decoded_content_length=11)[0] == b"hello world"
    decode_fails(IncompleteBody, [VALID], decoded_content_length=12)
    decode_fails(IncompleteBody, [VALID], decoded_content_length=10)
    decode_fails(
        IncompleteBody, [aws_streaming_body()], stream_verifier(), decoded_content_length=66561
    )


def test_overlong_body_fails_before_the_excess_is_yielded() -> None:
    async def run() -> list[bytes]:
        got: list[bytes] = []
        with pytest.raises(IncompleteBody):
            async for data in chunked.decode(
                _source([VALID]), verifier=None, decoded_content_length=5
            ):
                got.append(data)
        return got

    assert asyncio.run(run()) == [b"hello"]


# -------------------------------------------------------------- verifiers and trailers


def test_verifier_for_each_payload_mode() -> None:
    assert (
        chunked.verifier_for(context(TRAILER_SEED, sigv4.STREAMING_UNSIGNED_PAYLOAD_TRAILER))
        is None
    )
    signed = chunked.verifier_for(context(STREAM_SEED, sigv4.STREAMING_SIGNED_PAYLOAD))
    assert signed is not None and not signed.signed_trailer
    trailer = chunked.verifier_for(context(TRAILER_SEED, sigv4.STREAMING_SIGNED_PAYLOAD_TRAILER))
    assert trailer is not None and trailer.signed_trailer
    for payload_hash in (sigv4.UNSIGNED_PAYLOAD, EMPTY_SHA256):
        with pytest.raises(ValueError):
            chunked.verifier_for(context(STREAM_SEED, payload_hash))


def test_trailers_checksum_lookup() -> None:
    trailers = Trailers(headers={"x-amz-meta-a": "1"})
    assert trailers.checksum() is None
    assert trailers.get("X-AMZ-META-A") == "1"
    assert trailers.get("missing") is None
    trailers.headers["x-amz-checksum-sha256"] = "abc"
    assert trailers.checksum() == ("SHA256", "abc")


# ------------------------------------------------------------------------ fuzzing


def _outcome(pieces: list[bytes], verifier: ChunkVerifier | None, **kw: Any) -> bytes | S3Error:
    """Decoded bytes or the S3 error; anything else escapes and fails the test."""
    try:
        return decode(pieces, verifier, **kw)[0]
    except S3Error as exc:
        return exc


def _verifiers() -> st.SearchStrategy[ChunkVerifier | None]:
    return st.sampled_from(["unsigned", "signed", "trailer"]).map(
        lambda mode: (
            None
            if mode == "unsigned"
            else stream_verifier()
            if mode == "signed"
            else trailer_verifier()
        )
    )


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20),
    verifier=_verifiers(),
)
def test_fuzz_random_bytes(body: bytes, cuts: list[int], verifier: ChunkVerifier | None) -> None:
    pieces, position = [], 0
    for cut in cuts:
        pieces.append(body[position : position + cut])
        position += cut
    pieces.append(body[position:])
    _outcome(pieces, verifier, max_chunk_size=1000)


@FUZZ
@given(body=st.from_regex(rb"\A([0-9a-fA-F;=\r\n:x -]{0,12}\r\n){0,8}\Z"), verifier=_verifiers())
def test_fuzz_framing_like_bytes(body: bytes, verifier: ChunkVerifier | None) -> None:
    result = _outcome([body], verifier, max_chunk_size=64)
    if isinstance(result, bytes) and verifier is not None:
        assert result == b""  # nothing but empty chunks can carry a valid signature by chance


def _valid_bodies() -> st.SearchStrategy[tuple[bytes, bytes, str]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[bytes, bytes, str]:
        data = draw(st.binary(max_size=400))
        sizes = draw(st.lists(st.integers(min_value=1, max_value=150), min_size=1, max_size=4))
        mode = draw(st.sampled_from(["unsigned", "signed", "trailer"]))
        trailers = [("x-amz-checksum-crc32", "AAAAAA==")] if mode != "signed" else []
        if mode == "unsigned":
            body = encode(data, sizes, trailers=trailers)
        elif mode == "signed":
            body = encode(data, sizes, signer=Signer(STREAM_SEED))
        else:
            body = encode(
                data, sizes, signer=Signer(TRAILER_SEED), trailers=trailers, sign_trailers=True
            )
        return body, data, mode

    return build()


def _verifier(mode: str) -> ChunkVerifier | None:
    return (
        None
        if mode == "unsigned"
        else stream_verifier()
        if mode == "signed"
        else trailer_verifier()
    )


@FUZZ
@given(case=_valid_bodies(), seed=st.integers(min_value=0, max_value=2**32))
def test_fuzz_round_trip(case: tuple[bytes, bytes, str], seed: int) -> None:
    body, data, mode = case
    pieces = random_split(body, random.Random(seed))
    assert decode(pieces, _verifier(mode), decoded_content_length=len(data))[0] == data


@FUZZ
@given(
    case=_valid_bodies(),
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]),
            st.integers(min_value=0, max_value=10**6),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=3,
    ),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_fuzz_mutated_bodies(
    case: tuple[bytes, bytes, str], mutations: list[tuple[str, int, int]], seed: int
) -> None:
    body, data, mode = case
    mutated = bytearray(body)
    for kind, where, value in mutations:
        at = where % (len(mutated) + 1)
        if kind == "flip" and at < len(mutated):
            mutated[at] ^= value or 1
        elif kind == "insert":
            mutated[at:at] = bytes([value])
        elif kind == "delete" and at < len(mutated):
            del mutated[at]
        elif kind == "truncate":
            del mutated[at:]
        elif kind == "duplicate":
            mutated[at:at] = mutated[at : at + value % 16]
    result = _outcome(random_split(bytes(mutated), random.Random(seed)), _verifier(mode))
    if isinstance(result, bytes) and mode != "unsigned":
        # A signed body that still decodes must have decoded to the signed data.
        assert result == data
