"""Flexible checksums (x-amz-checksum-*) and aws-chunked bodies on PutObject and UploadPart."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3compat.core import checksums
from tests.cluster import Cluster, NonSeekable

ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_put_with_each_algorithm(s3: Any, bucket: str, algorithm: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    expected = checksums.new(algorithm)
    expected.update(data)
    field = f"Checksum{algorithm}"
    assert put[field] == expected.b64()
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[field] == expected.b64()
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got[field] == expected.b64()
    assert got["Body"].read() == data
    # Never on a ranged GET: a whole-object checksum there breaks clients.
    ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-9", ChecksumMode="ENABLED")
    assert field not in ranged
    assert ranged["Body"].read() == data[:10]


def test_boto3_default_crc32_is_verified_and_stored(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    crc = zlib.crc32(b"hello").to_bytes(4, "big")
    assert head["ChecksumCRC32"] == base64.b64encode(crc).decode()


def test_wrong_checksum_is_bad_digest_and_stores_nothing(cluster: Cluster, bucket: str) -> None:
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"hello", headers={"x-amz-checksum-crc32": wrong}
    )
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    status, _, _ = cluster.raw("HEAD", f"/{bucket}/k")
    assert status == 404


def test_malformed_checksum_value(cluster: Cluster, bucket: str) -> None:
    status, _, body = cluster.raw(
        "PUT", f"/{bucket}/k", body=b"hello", headers={"x-amz-checksum-sha256": "not base64"}
    )
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body


def _aws_chunked(data: bytes, pieces: int, trailer: tuple[str, str] | None) -> bytes:
    out = b""
    size = -(-len(data) // pieces) if data else 0
    for i in range(0, len(data), size or 1):
        chunk = data[i : i + size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n"
    if trailer is not None:
        out += f"{trailer[0]}:{trailer[1]}\r\n".encode()
    return out + b"\r\n"


def _chunked_put(
    cluster: Cluster,
    path: str,
    data: bytes,
    *,
    trailer_value: str | None,
    extra: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    value = trailer_value
    body = _aws_chunked(data, 3, ("x-amz-checksum-crc32", value) if value else None)
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        **({"x-amz-trailer": "x-amz-checksum-crc32"} if value else {}),
        **(extra or {}),
    }
    return cluster.raw(
        "PUT",
        path,
        body=body,
        headers=headers,
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )


def test_aws_chunked_body_with_trailer_checksum(cluster: Cluster, s3: Any, bucket: str) -> None:
    data = os.urandom(200_000)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, headers, _ = _chunked_put(
        cluster,
        f"/{bucket}/chunked",
        data,
        trailer_value=crc,
        extra={"Content-Encoding": "aws-chunked,gzip"},
    )
    assert status == 200
    assert headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert headers["x-amz-checksum-crc32"] == crc
    got = s3.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    # Only the decoded bytes are stored, and aws-chunked is gone from Content-Encoding.
    assert got["Body"].read() == data
    assert got["ContentEncoding"] == "gzip"
    assert got["ChecksumCRC32"] == crc


def test_aws_chunked_wrong_trailer_checksum(cluster: Cluster, bucket: str) -> None:
    wrong = base64.b64encode(zlib.crc32(b"nope").to_bytes(4, "big")).decode()
    status, _, body = _chunked_put(cluster, f"/{bucket}/bad", b"x" * 5000, trailer_value=wrong)
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    assert cluster.raw("HEAD", f"/{bucket}/bad")[0] == 404


def test_aws_chunked_short_body_stores_nothing(cluster: Cluster, bucket: str) -> None:
    data = b"y" * 5000
    status, _, body = cluster.raw(
        "PUT",
        f"/{bucket}/short",
        body=f"{len(data) + 10:x}\r\n".encode() + data,  # promises more than it sends
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data) + 10),
        },
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    assert status == 400 and b"<Code>IncompleteBody</Code>" in body
    assert cluster.raw("HEAD", f"/{bucket}/short")[0] == 404


def test_upload_part_checksums(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")
    data = os.urandom(1024)
    part = s3.upload_part(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=data,
        ChecksumAlgorithm="SHA256",
    )
    assert part["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=upload["UploadId"],
            PartNumber=2,
            Body=data,
            ChecksumSHA256=base64.b64encode(hashlib.sha256(b"x").digest()).decode(),
        )
    assert exc.value.response["Error"]["Code"] == "BadDigest"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])


def test_multipart_composite_checksum(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")
    uid = upload["UploadId"]
    datas = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    parts = []
    for n, data in enumerate(datas, 1):
        r = s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=uid,
            PartNumber=n,
            Body=data,
            ChecksumAlgorithm="SHA256",
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    # A per-part checksum that does not match what was stored is InvalidPart.
    tampered = [dict(parts[0], ChecksumSHA256=parts[1]["ChecksumSHA256"]), parts[1]]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": tampered}
        )
    assert exc.value.response["Error"]["Code"] == "InvalidPart"
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    joined = b"".join(hashlib.sha256(d).digest() for d in datas)
    expected = base64.b64encode(hashlib.sha256(joined).digest()).decode() + "-2"
    assert done["ChecksumSHA256"] == expected
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == expected


def test_boto3_upload_file_default_checksums(s3: Any, bucket: str, tmp_path: Any) -> None:
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(12 * 1024 * 1024 + 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    s3.upload_file(
        str(path),
        bucket,
        "f",
        Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20),
    )
    head = s3.head_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert s3.get_object(Bucket=bucket, Key="f")["Body"].read() == data
    crc = head.get("ChecksumCRC32")
    if crc is not None and "-" not in crc:
        # A FULL_OBJECT CRC32 is the CRC of the whole object.
        assert crc == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("mode", ["when_supported", "when_required"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_matrix_over_http(
    cluster: Cluster, bucket: str, tmp_path: Any, algorithm: str, mode: str
) -> None:
    """PutObject, upload_file (multipart) and a non-seekable upload_fileobj, plain HTTP."""
    from boto3.s3.transfer import TransferConfig

    s3 = cluster.client(request_checksum_calculation=mode)
    data = os.urandom(11 * 1024 * 1024 + 9)
    config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    s3.put_object(Bucket=bucket, Key="put", Body=data, ChecksumAlgorithm=algorithm)
    path = tmp_path / "file"
    path.write_bytes(data)
    s3.upload_file(
        str(path), bucket, "file", ExtraArgs={"ChecksumAlgorithm": algorithm}, Config=config
    )
    s3.upload_fileobj(
        NonSeekable(data),
        bucket,
        "stream",
        ExtraArgs={"ChecksumAlgorithm": algorithm},
        Config=config,
    )
    want = hashlib.sha256(data).digest()
    for key in ("put", "file", "stream"):
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == want, key


def test_aws_chunked_malformed_trailer(cluster: Cluster, bucket: str) -> None:
    data = b"z" * 3000
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\nnot a trailer line\r\n\r\n"
    status, _, reply = cluster.raw(
        "PUT",
        f"/{bucket}/trailer",
        body=body,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    assert status == 400 and b"<Code>MalformedTrailerError</Code>" in reply
    assert cluster.raw("HEAD", f"/{bucket}/trailer")[0] == 404
