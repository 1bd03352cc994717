"""s3cmd (Debian's 2.3.0, SigV4, path style) against the cluster, over HTTP and HTTPS:
mb, put, get, ls, del, del --recursive (DeleteObjects), a multipart put with 5 MiB
chunks, and rb.

Every s3cmd run is isolated from the user's setup: its own `-c` config file and HOME in the
test's temp dir, and no AWS_* variable (s3cmd reads AWS_ACCESS_KEY_ID, AWS_PROFILE,
AWS_CREDENTIAL_FILE …)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests import checks
from tests.cluster import Cluster

MiB = 1 << 20
TIMEOUT = 180  # seconds any one s3cmd run may take

FILES: dict[str, bytes] = {
    "dir/a.txt": b"hello from s3cmd\n",
    "dir/file with spaces.txt": b"a name with spaces\n",
    "dir/nested/deeper/r.bin": hashlib.sha256(b"s3cmd").digest() * 2048,  # 64 KiB
}


def _status(error: ClientError) -> int:
    code: int = error.response["ResponseMetadata"]["HTTPStatusCode"]
    return code


@dataclass
class S3cmd:
    """s3cmd with a private config file (path style, SigV4) and a private HOME."""

    cluster: Cluster
    root: Path

    def __post_init__(self) -> None:
        self.home = self.root / "s3cmd-home"
        self.home.mkdir(parents=True, exist_ok=True)
        host = urlsplit(self.cluster.endpoint).netloc
        tls = self.cluster.tls
        self.config = self.root / "s3cfg"
        self.config.write_text(
            "[default]\n"
            f"access_key = {self.cluster.access_key}\n"
            f"secret_key = {self.cluster.secret_key}\n"
            f"host_base = {host}\n"
            f"host_bucket = {host}\n"  # no %(bucket)s: path-style requests
            "bucket_location = us-east-1\n"
            "signature_v2 = False\n"
            f"use_https = {tls}\n"
            f"ca_certs_file = {self.cluster.ca if tls else ''}\n"
            "check_ssl_certificate = True\n"
            "check_ssl_hostname = True\n"
            "progress_meter = False\n"
        )
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") and k not in ("PYTHONPATH", "PYTHONHOME", "S3CMD_CONFIG")
        }
        self.env["HOME"] = str(self.home)

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """One s3cmd command; fails the test unless it exits with `expect`."""
        cmd = ["s3cmd", "-c", str(self.config), *args]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == expect, (
            f"{cmd} exited with {proc.returncode}, expected {expect}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
        return proc

    def out(self, *args: str) -> str:
        return self.run(*args).stdout


def _parse_ls(text: str) -> tuple[dict[str, int], list[str]]:
    """`s3cmd ls`: '<date> <time> <size> <uri>' per object, '  DIR  <uri>' per prefix."""
    objects: dict[str, int] = {}
    dirs: list[str] = []
    for line in text.splitlines():
        fields = line.split(None, 3)
        if not fields:
            continue
        if fields[0] == "DIR":
            dirs.append(line.split(None, 1)[1])
        else:
            objects[fields[3]] = int(fields[2])
    return objects, dirs


@pytest.fixture
def s3cmd(scheme_cluster: Cluster, tmp_path: Path) -> S3cmd:
    return S3cmd(scheme_cluster, tmp_path)


@pytest.fixture
def new_bucket(scheme_cluster: Cluster) -> Iterator[str]:
    """A bucket name nobody has created yet; removed afterwards if a test left it behind."""
    name = f"s3cmd-{uuid.uuid4().hex[:16]}"
    yield name
    s3 = scheme_cluster.client()
    try:
        for obj in checks.listed(s3, name).values():
            s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except ClientError as e:
        if _status(e) != 404:
            raise


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


# --- tests ----------------------------------------------------------------------------


def test_s3cmd_mb_put_ls_get_del_rb(
    client_tools: None, scheme_cluster: Cluster, s3cmd: S3cmd, new_bucket: str, tmp_path: Path
) -> None:
    s3 = scheme_cluster.client()
    bucket = new_bucket

    s3cmd.run("mb", f"s3://{bucket}")
    s3.head_bucket(Bucket=bucket)
    assert f"s3://{bucket}" in s3cmd.out("ls").split()

    src = tmp_path / "src"
    _write(src, FILES)
    for rel in FILES:
        s3cmd.run("put", str(src / rel), f"s3://{bucket}/{rel}")
    stored = checks.listed(s3, bucket)
    assert set(stored) == set(FILES)
    for rel, data in FILES.items():
        assert stored[rel]["Size"] == len(data), rel
        assert stored[rel]["ETag"] == f'"{hashlib.md5(data).hexdigest()}"', rel
        assert checks.body(s3, bucket, rel) == data, rel
    # s3cmd keeps the file's attributes (and MD5) in one metadata header.
    attrs = s3.head_object(Bucket=bucket, Key="dir/a.txt")["Metadata"]["s3cmd-attrs"]
    assert f"md5:{hashlib.md5(FILES['dir/a.txt']).hexdigest()}" in attrs.split("/")

    # ls: one level with prefixes as DIR, or everything with --recursive.
    objects, dirs = _parse_ls(s3cmd.out("ls", f"s3://{bucket}"))
    assert (objects, dirs) == ({}, [f"s3://{bucket}/dir/"])
    objects, dirs = _parse_ls(s3cmd.out("ls", f"s3://{bucket}/dir/"))
    assert objects == {
        f"s3://{bucket}/dir/a.txt": len(FILES["dir/a.txt"]),
        f"s3://{bucket}/dir/file with spaces.txt": len(FILES["dir/file with spaces.txt"]),
    }
    assert dirs == [f"s3://{bucket}/dir/nested/"]
    objects, dirs = _parse_ls(s3cmd.out("ls", "--recursive", f"s3://{bucket}"))
    assert objects == {f"s3://{bucket}/{rel}": len(data) for rel, data in FILES.items()}
    assert dirs == []

    # get: the same bytes back (s3cmd checks the MD5 against the ETag and warns if not).
    down = tmp_path / "down"
    down.mkdir()
    for i, (rel, data) in enumerate(FILES.items()):
        target = down / f"{i}.out"
        proc = s3cmd.run("get", f"s3://{bucket}/{rel}", str(target))
        assert "WARNING" not in proc.stderr, proc.stderr
        assert target.read_bytes() == data, rel

    # rb of a bucket with objects in it fails (BucketNotEmpty) and changes nothing.
    proc = s3cmd.run("rb", f"s3://{bucket}", expect=13)  # EX_CONFLICT
    assert "BucketNotEmpty" in proc.stderr, proc.stderr
    assert set(checks.listed(s3, bucket)) == set(FILES)

    # del, one object at a time (DeleteObject), then rb.
    for rel in FILES:
        s3cmd.run("del", f"s3://{bucket}/{rel}")
        with pytest.raises(ClientError) as excinfo:
            s3.head_object(Bucket=bucket, Key=rel)
        assert _status(excinfo.value) == 404
    assert checks.listed(s3, bucket) == {}
    s3cmd.run("rb", f"s3://{bucket}")
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket=bucket)
    assert _status(excinfo.value) == 404
    assert f"s3://{bucket}" not in s3cmd.out("ls").split()


def test_s3cmd_del_recursive(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], s3cmd: S3cmd, tmp_path: Path
) -> None:
    """`del --recursive` lists the prefix, then removes the keys with one DeleteObjects
    (POST ?delete, with Content-MD5)."""
    _, s3, bucket = client_bucket
    src = tmp_path / "src"
    files = {**FILES, "dirty.txt": b"not under dir/\n", "keep/x.txt": b"keep me\n"}
    _write(src, files)
    s3cmd.run("put", "--recursive", str(src) + "/", f"s3://{bucket}/")
    assert set(checks.listed(s3, bucket)) == set(files)

    proc = s3cmd.run("del", "--recursive", "--force", f"s3://{bucket}/dir/")
    for rel in FILES:
        assert f"delete: 's3://{bucket}/{rel}'" in proc.stdout, proc.stdout
    assert set(checks.listed(s3, bucket)) == {"dirty.txt", "keep/x.txt"}
    assert checks.body(s3, bucket, "dirty.txt") == files["dirty.txt"]

    # Everything that is left, then the bucket itself.
    s3cmd.run("del", "--recursive", "--force", f"s3://{bucket}")
    assert checks.listed(s3, bucket) == {}
    s3cmd.run("rb", f"s3://{bucket}")
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket=bucket)
    assert _status(excinfo.value) == 404


def test_s3cmd_multipart_put(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], s3cmd: S3cmd, tmp_path: Path
) -> None:
    """12 MiB in 5 MiB chunks: three parts (5, 5, 2 MiB), then a GET of the whole."""
    _, s3, bucket = client_bucket
    data = os.urandom(12 * MiB)
    src = tmp_path / "twelve.bin"
    src.write_bytes(data)
    s3cmd.run("put", "--multipart-chunk-size-mb=5", str(src), f"s3://{bucket}/mp/twelve.bin")

    head = s3.head_object(Bucket=bucket, Key="mp/twelve.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"'), head["ETag"]
    assert head["ETag"] == checks.multipart_etag(data, 5 * MiB)
    # The multipart ETag is no MD5: s3cmd keeps the file's MD5 in x-amz-meta-s3cmd-attrs.
    attrs = head["Metadata"]["s3cmd-attrs"].split("/")
    assert f"md5:{hashlib.md5(data).hexdigest()}" in attrs
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert checks.sha256(checks.body(s3, bucket, "mp/twelve.bin")) == checks.sha256(data)

    objects, _ = _parse_ls(s3cmd.out("ls", f"s3://{bucket}/mp/"))
    assert objects == {f"s3://{bucket}/mp/twelve.bin": len(data)}

    target = tmp_path / "twelve.down"
    proc = s3cmd.run("get", f"s3://{bucket}/mp/twelve.bin", str(target))
    assert "WARNING" not in proc.stderr, proc.stderr
    assert target.stat().st_size == len(data)
    assert checks.sha256(target.read_bytes()) == checks.sha256(data)
