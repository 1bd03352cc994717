"""aws-cli against the cluster, as a user runs it: v1 (PyPI, in the venv) and v2 (Debian's
/usr/bin/aws), each over HTTP and over HTTPS (`--ca-bundle` with the cluster's CA).

Every invocation runs in a throwaway HOME with no config or credentials files, so nothing of
the user's setup leaks in, and with `AWS_MAX_ATTEMPTS=1`, so a 5xx answer fails the test
instead of being retried away. Contents are compared by SHA-256; what the cli reports is
checked against what boto3 sees on the server. A failing command's message carries the
gateway's access-log lines for the requests it made.

Scenarios: mb/rb (and rb --force), cp up and down at 1 MiB and 40 MiB (multipart, ranged
GETs), cp from stdin, presign + curl, s3→s3 cp (CopyObject and multipart UploadPartCopy),
sync up/again/down, rm --recursive, ls, s3api list-objects-v2 / head-object /
delete-objects; and one 200 MiB cp up and down (HTTP, v1)."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from botocore.exceptions import ClientError

from tests import checks
from tests.cluster import Cluster, wait_for

MiB = 1 << 20
PART = 8 * MiB  # aws-cli's default multipart_threshold and multipart_chunksize
BIG = 40 * MiB  # five 8 MiB parts
HUGE = 200 * MiB
V2_PATH = Path("/usr/bin/aws")  # Debian's aws-cli v2 (2.9.x)


# --- data ---------------------------------------------------------------------------


def _random_bytes(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _multipart_etag(data: bytes, part: int = PART) -> str:
    """S3's ETag of an object uploaded in `part`-sized parts: md5 of the part md5s, -N."""
    md5s = b"".join(hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part))
    return f'"{hashlib.md5(md5s).hexdigest()}-{-(-len(data) // part)}"'


def _object_sha256(s3: Any, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for piece in iter(lambda: body.read(MiB), b""):
        digest.update(piece)
    return digest.hexdigest()


def _keys(s3: Any, bucket: str, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update(o["Key"] for o in page.get("Contents", []))
    return out


def _drop_bucket(s3: Any, bucket: str) -> None:
    """Empties (objects and uploads) and removes a bucket a test made; gone already is fine."""
    try:
        for key in _keys(s3, bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        s3.delete_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchBucket":
            raise


@dataclass(frozen=True)
class Payload:
    path: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return checks.sha256(self.data)


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Payload]:
    """Incompressible files made once for the module: 1 MiB (one PUT) and 40 MiB (five
    8 MiB parts)."""
    root = tmp_path_factory.mktemp("awscli-payloads")
    out: dict[str, Payload] = {}
    for name, size in (("1mib", MiB), ("40mib", BIG)):
        data = _random_bytes(name, size)
        path = root / f"{name}.bin"
        path.write_bytes(data)
        out[name] = Payload(path, data)
    return out


# --- running the cli ----------------------------------------------------------------


@dataclass
class Aws:
    """One aws-cli (v1 or v2) bound to one cluster, run in an isolated HOME."""

    cluster: Cluster
    version: str  # "v1" | "v2"
    home: Path

    def command(self) -> list[str]:
        if self.version == "v1":
            return [sys.executable, "-m", "awscli"]
        return [str(V2_PATH)]

    def env(self) -> dict[str, str]:
        """Only the cluster's credentials: no user config, profile, endpoint or CA leaks in
        (every AWS_* of the caller is dropped, so the clients' own defaults apply)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        if self.version == "v2":
            # /usr/bin/aws runs the system python3: keep the venv's python settings out.
            for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
                env.pop(name, None)
        env.update(
            {
                "AWS_ACCESS_KEY_ID": self.cluster.access_key,
                "AWS_SECRET_ACCESS_KEY": self.cluster.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_PAGER": "",
                "AWS_MAX_ATTEMPTS": "1",
                "HOME": str(self.home),
            }
        )
        return env

    def _log(self) -> Path:
        return self.cluster.data_dir / "logs" / "gateway.log"

    def argv(self, *args: str) -> list[str]:
        cmd = [*self.command(), "--endpoint-url", self.cluster.endpoint]
        if self.cluster.tls:
            cmd += ["--ca-bundle", self.cluster.ca]
        return cmd + list(args)

    def run_bytes(
        self, *args: str, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """`aws --endpoint-url … [--ca-bundle …] args`; with check, a non-zero exit fails the
        test with the output and the gateway's access log of the requests made meanwhile."""
        offset = self.log_offset()
        proc = subprocess.run(
            self.argv(*args),
            input=stdin if stdin is not None else b"",
            env=self.env(),
            capture_output=True,
            timeout=600,
            cwd=self.home,
        )
        if check and proc.returncode != 0:
            time.sleep(0.3)  # the gateway logs a request just after answering it
            pytest.fail(
                f"aws-cli {self.version} failed ({proc.returncode}): {' '.join(args)}\n"
                f"stdout: {proc.stdout[-3000:].decode('utf-8', 'replace')}\n"
                f"stderr: {proc.stderr[-3000:].decode('utf-8', 'replace')}\n"
                f"gateway log meanwhile:\n{self.log_since(offset)}",
                pytrace=False,
            )
        return proc

    def run(
        self, *args: str, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = self.run_bytes(*args, stdin=stdin, check=check)
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def __call__(self, *args: str, stdin: bytes | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def json(self, *args: str) -> Any:
        out = self(*args, "--output", "json")
        return json.loads(out) if out.strip() else {}

    def log_offset(self) -> int:
        log = self._log()
        return log.stat().st_size if log.exists() else 0

    def log_since(self, offset: int, last: int | None = 60) -> str:
        """The gateway log written since `offset` (its last `last` lines)."""
        log = self._log()
        if not log.exists():
            return "(no gateway log)"
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-last:] if last else lines)

    def access_since(self, offset: int) -> list[str]:
        """Access-log lines (`<id> <METHOD> <path> <Operation> <status> <ms>`) since offset."""
        return [ln for ln in self.log_since(offset, None).splitlines() if "s3compat.access" in ln]


@pytest.fixture(params=["v1", "v2"])
def aws(request: pytest.FixtureRequest, scheme_cluster: Cluster, tmp_path: Path) -> Aws:
    """aws-cli v1, then v2 (installed by `client_tools`; its absence fails the test)."""
    if request.param == "v2":
        request.getfixturevalue("client_tools")
        if not V2_PATH.exists():
            pytest.fail(f"aws-cli v2 is not installed at {V2_PATH}")
    home = tmp_path / f"home-{request.param}"
    home.mkdir()
    return Aws(scheme_cluster, request.param, home)


@pytest.fixture
def other_bucket(client_bucket: tuple[Cluster, Any, str]) -> Iterator[str]:
    """A second fresh bucket on the same cluster, for copies across buckets."""
    _, s3, _ = client_bucket
    name = f"cli2-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    _drop_bucket(s3, name)


def _lines(out: str, verb: str) -> list[str]:
    """The `verb: …` lines the s3 commands print per file (upload, download, copy, delete)."""
    return [ln for ln in out.splitlines() if ln.startswith(f"{verb}: ")]


# --- buckets ------------------------------------------------------------------------


def test_mb_ls_rb(aws: Aws) -> None:
    """mb makes a bucket boto3 sees and `s3 ls` lists; rb refuses a non-empty bucket
    (BucketNotEmpty), `rb --force` empties and removes it, plain rb removes an empty one."""
    s3 = aws.cluster.client()
    name = f"cli-mb-{uuid.uuid4().hex[:12]}"
    try:
        assert _lines(aws("s3", "mb", f"s3://{name}"), "make_bucket") == [f"make_bucket: {name}"]
        s3.head_bucket(Bucket=name)
        listed = [ln.split()[-1] for ln in aws("s3", "ls").splitlines()]
        assert name in listed

        for key in ("a.txt", "dir/b.txt", "dir/sub/c.txt"):
            s3.put_object(Bucket=name, Key=key, Body=key.encode())
        refused = aws.run("s3", "rb", f"s3://{name}", check=False)
        assert refused.returncode != 0 and "BucketNotEmpty" in refused.stderr, refused
        s3.head_bucket(Bucket=name)
        assert _keys(s3, name) == {"a.txt", "dir/b.txt", "dir/sub/c.txt"}

        out = aws("s3", "rb", f"s3://{name}", "--force")
        assert sorted(_lines(out, "delete")) == sorted(
            f"delete: s3://{name}/{k}" for k in ("a.txt", "dir/b.txt", "dir/sub/c.txt")
        )
        assert f"remove_bucket: {name}" in out
        with pytest.raises(ClientError) as gone:
            s3.head_bucket(Bucket=name)
        assert gone.value.response["Error"]["Code"] == "404"

        aws("s3", "mb", f"s3://{name}")
        assert _lines(aws("s3", "rb", f"s3://{name}"), "remove_bucket") == [
            f"remove_bucket: {name}"
        ]
        assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        _drop_bucket(s3, name)


# --- cp -----------------------------------------------------------------------------


def test_cp_up_down_stdin_presign(
    aws: Aws,
    client_bucket: tuple[Cluster, Any, str],
    payloads: dict[str, Payload],
    tmp_path: Path,
    client_tools: None,
) -> None:
    """cp up and down at 1 MiB (one PUT) and 40 MiB (multipart, 8 MiB parts → ETag -5; the
    download is five ranged GETs answered 206); cp from stdin (one PUT, and multipart past
    8 MiB); a presigned URL fetched by curl, and refused once pointed at another key."""
    cluster, s3, bucket = client_bucket

    # 1 MiB: a single PutObject; the ETag is the content MD5.
    small = payloads["1mib"]
    out = aws("s3", "cp", str(small.path), f"s3://{bucket}/one/small file.bin", "--no-progress")
    assert len(_lines(out, "upload")) == 1, out
    head = s3.head_object(Bucket=bucket, Key="one/small file.bin")
    assert head["ContentLength"] == MiB
    assert head["ETag"] == _md5_etag(small.data)
    assert _object_sha256(s3, bucket, "one/small file.bin") == small.sha256
    down = tmp_path / "small.down"
    aws("s3", "cp", f"s3://{bucket}/one/small file.bin", str(down), "--no-progress")
    assert checks.sha256_file(down) == small.sha256

    # 40 MiB: CreateMultipartUpload, five UploadParts, Complete.
    big = payloads["40mib"]
    aws("s3", "cp", str(big.path), f"s3://{bucket}/forty/big.bin", "--no-progress")
    head = s3.head_object(Bucket=bucket, Key="forty/big.bin")
    assert head["ContentLength"] == BIG
    assert head["ETag"] == _multipart_etag(big.data)
    assert head["ETag"].endswith('-5"')
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert _object_sha256(s3, bucket, "forty/big.bin") == big.sha256
    down = tmp_path / "big.down"
    offset = aws.log_offset()
    aws("s3", "cp", f"s3://{bucket}/forty/big.bin", str(down), "--no-progress")
    assert checks.sha256_file(down) == big.sha256

    def ranged_gets() -> list[str]:
        return [ln for ln in aws.access_since(offset) if re.search(r" GetObject 206 ", ln)]

    # The gateway logs a request just after answering it: give the last line a moment.
    wait_for(lambda: len(ranged_gets()) >= BIG // PART, timeout=5)
    assert len(ranged_gets()) == BIG // PART, "\n".join(aws.access_since(offset))

    # From stdin: 3 MB fits one PUT; 12 MB is read 8 MiB at a time into two parts.
    for key, size in (("stdin/small", 3_000_000), ("stdin/large", 12_000_000)):
        data = _random_bytes(key, size)
        aws("s3", "cp", "-", f"s3://{bucket}/{key}", "--no-progress", stdin=data)
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == size
        assert head["ETag"] == (_multipart_etag(data) if size > PART else _md5_etag(data))
        assert _object_sha256(s3, bucket, key) == checks.sha256(data)
        # and back out through stdout
        got = aws.run_bytes("s3", "cp", f"s3://{bucket}/{key}", "-")
        assert checks.sha256(got.stdout) == checks.sha256(data)

    # presign: SigV2 query auth from v1, SigV4 from v2; curl fetches the bytes.
    url = aws("s3", "presign", f"s3://{bucket}/one/small file.bin", "--expires-in", "300").strip()
    query = parse_qs(urlsplit(url).query)
    if aws.version == "v1":
        assert {"AWSAccessKeyId", "Signature", "Expires"} <= set(query), url
        assert 0 < int(query["Expires"][0]) - time.time() <= 305
    else:
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], url
        assert query["X-Amz-Expires"] == ["300"]
    curl = ["curl", "-sS", *(["--cacert", cluster.ca] if cluster.tls else [])]
    fetched = tmp_path / "presigned.bin"
    proc = subprocess.run(
        [*curl, "-f", "-o", str(fetched), url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert checks.sha256_file(fetched) == small.sha256
    # The signature covers the path: the same query on another key is refused.
    parts = urlsplit(url)
    other = urlunsplit(parts._replace(path=f"/{bucket}/stdin/small"))
    proc = subprocess.run(
        [*curl, "-o", os.devnull, "-w", "%{http_code}", other],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout == "403", (proc.stdout, proc.stderr)


# --- s3 → s3 copies -----------------------------------------------------------------


def test_cp_s3_to_s3_copy_object(
    aws: Aws, client_bucket: tuple[Cluster, Any, str], other_bucket: str
) -> None:
    """1 MiB s3→s3 cp is one CopyObject (x-amz-copy-source, default COPY directive): the
    copy, in the bucket and in another, has the source's bytes, ETag, Content-Type and
    metadata. `--metadata-directive REPLACE` sets new ones; a self-copy is refused with
    InvalidRequest unless it REPLACEs, and then keeps the bytes with the new metadata."""
    _, s3, bucket = client_bucket
    data = _random_bytes("copy-small", MiB)
    s3.put_object(
        Bucket=bucket,
        Key="src/small.bin",
        Body=data,
        ContentType="text/x-source",
        Metadata={"origin": "source"},
    )

    for dest_bucket, dest_key in ((bucket, "copies/small.bin"), (other_bucket, "small.bin")):
        out = aws("s3", "cp", f"s3://{bucket}/src/small.bin", f"s3://{dest_bucket}/{dest_key}")
        assert _lines(out, "copy") == [
            f"copy: s3://{bucket}/src/small.bin to s3://{dest_bucket}/{dest_key}"
        ], out
        head = s3.head_object(Bucket=dest_bucket, Key=dest_key)
        assert head["ContentLength"] == MiB
        assert head["ETag"] == _md5_etag(data)
        assert head["ContentType"] == "text/x-source"
        assert head["Metadata"] == {"origin": "source"}
        assert _object_sha256(s3, dest_bucket, dest_key) == checks.sha256(data)

    aws(
        "s3",
        "cp",
        f"s3://{bucket}/src/small.bin",
        f"s3://{other_bucket}/replaced.bin",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/x-new",
        "--metadata",
        "fresh=yes",
    )
    head = s3.head_object(Bucket=other_bucket, Key="replaced.bin")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-new", {"fresh": "yes"})
    assert _object_sha256(s3, other_bucket, "replaced.bin") == checks.sha256(data)

    # Onto itself: S3 refuses a copy that changes nothing...
    same = aws.run(
        "s3", "cp", f"s3://{bucket}/src/small.bin", f"s3://{bucket}/src/small.bin", check=False
    )
    assert same.returncode != 0 and "InvalidRequest" in same.stderr, same
    # ...and allows one that replaces the metadata (rclone's and s3fs's way to retouch).
    aws(
        "s3",
        "cp",
        f"s3://{bucket}/src/small.bin",
        f"s3://{bucket}/src/small.bin",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/x-retouched",
        "--metadata",
        "origin=retouched",
    )
    head = s3.head_object(Bucket=bucket, Key="src/small.bin")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-retouched", {"origin": "retouched"})
    assert head["ETag"] == _md5_etag(data)
    assert _object_sha256(s3, bucket, "src/small.bin") == checks.sha256(data)


def test_cp_s3_to_s3_multipart_copy(
    aws: Aws,
    client_bucket: tuple[Cluster, Any, str],
    other_bucket: str,
    payloads: dict[str, Payload],
) -> None:
    """40 MiB s3→s3 cp is CreateMultipartUpload + five UploadPartCopy (8 MiB
    x-amz-copy-source-range) + Complete, in the bucket and into another: same bytes, the
    8 MiB-part ETag, no upload left over. v2 carries the source's Content-Type and metadata
    over itself (HeadObject + GetObjectTagging); v1 documents that a copy in parts does not,
    so v1 is given them on the command line."""
    _, s3, bucket = client_bucket
    big = payloads["40mib"]
    s3.put_object(
        Bucket=bucket,
        Key="src/big.bin",
        Body=big.data,
        ContentType="text/x-source",
        Metadata={"origin": "source"},
    )

    same = aws("s3", "cp", f"s3://{bucket}/src/big.bin", f"s3://{bucket}/copies/big.bin")
    assert len(_lines(same, "copy")) == 1, same
    head = s3.head_object(Bucket=bucket, Key="copies/big.bin")
    assert head["ContentLength"] == BIG
    assert head["ETag"] == _multipart_etag(big.data)
    if aws.version == "v2":  # --copy-props default
        assert head["ContentType"] == "text/x-source"
        assert head["Metadata"] == {"origin": "source"}
    assert _object_sha256(s3, bucket, "copies/big.bin") == big.sha256

    aws(
        "s3",
        "cp",
        f"s3://{bucket}/src/big.bin",
        f"s3://{other_bucket}/big.bin",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/x-new",
        "--metadata",
        "fresh=yes",
    )
    head = s3.head_object(Bucket=other_bucket, Key="big.bin")
    assert head["ContentLength"] == BIG
    assert head["ETag"] == _multipart_etag(big.data)
    assert (head["ContentType"], head["Metadata"]) == ("text/x-new", {"fresh": "yes"})
    assert _object_sha256(s3, other_bucket, "big.bin") == big.sha256

    for name in (bucket, other_bucket):
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=name)


# --- sync and rm --------------------------------------------------------------------


def _make_tree(root: Path, count: int = 50) -> dict[str, bytes]:
    """`count` small files over three levels, some names with spaces; returns rel → bytes."""
    files: dict[str, bytes] = {}
    for i in range(count):
        folder = ("", "sub/", "sub/deeper/")[i % 3]
        name = f"{folder}file {i}.txt" if i % 7 == 0 else f"{folder}f{i:02d}.dat"
        files[name] = _random_bytes(f"tree-{i}", 700 + 53 * i)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): checks.sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_same_tree(left: Path, right: Path) -> None:
    def walk(cmp: filecmp.dircmp[str]) -> None:
        odd = (cmp.left_only, cmp.right_only, cmp.diff_files, cmp.funny_files)
        assert not any(odd), (cmp.left, cmp.right, odd)
        for sub in cmp.subdirs.values():
            walk(sub)

    walk(filecmp.dircmp(left, right))
    assert _tree_digests(left) == _tree_digests(right)


def test_sync_up_again_down_and_rm(
    aws: Aws, client_bucket: tuple[Cluster, Any, str], tmp_path: Path
) -> None:
    """sync of 50 files up (50 uploads), again after changing 3 (exactly those 3), again
    unchanged (nothing), down into an empty dir (the same tree); then rm --recursive
    deletes all 50 and the bucket is empty."""
    _, s3, bucket = client_bucket
    local = tmp_path / "tree"
    local.mkdir()
    files = _make_tree(local)
    target = f"s3://{bucket}/tree"

    out = aws("s3", "sync", str(local), target, "--no-progress")
    uploaded = _lines(out, "upload")
    assert len(uploaded) == 50, out
    assert _keys(s3, bucket) == {f"tree/{rel}" for rel in files}
    for rel, data in files.items():
        assert s3.head_object(Bucket=bucket, Key=f"tree/{rel}")["ETag"] == _md5_etag(data)

    changed = ["f03.dat", "sub/deeper/f05.dat", "sub/file 7.txt"]
    for i, rel in enumerate(changed):
        assert rel in files
        files[rel] = _random_bytes(f"changed-{i}", len(files[rel]) + 100 + i)
        (local / rel).write_bytes(files[rel])

    out = aws("s3", "sync", str(local), target, "--no-progress")
    again = _lines(out, "upload")
    assert sorted(ln.rsplit(" to ", 1)[1] for ln in again) == sorted(
        f"{target}/{rel}" for rel in changed
    ), out
    for rel in changed:
        head = s3.head_object(Bucket=bucket, Key=f"tree/{rel}")
        assert head["ETag"] == _md5_etag(files[rel])
        assert head["ContentLength"] == len(files[rel])

    out = aws("s3", "sync", str(local), target, "--no-progress")
    assert _lines(out, "upload") == [], out

    back = tmp_path / "back"
    back.mkdir()
    out = aws("s3", "sync", target, str(back), "--no-progress")
    assert len(_lines(out, "download")) == 50, out
    _assert_same_tree(local, back)
    assert _tree_digests(back) == {rel: checks.sha256(data) for rel, data in files.items()}

    out = aws("s3", "rm", "--recursive", f"{target}/")
    assert len(_lines(out, "delete")) == 50, out
    assert _keys(s3, bucket) == set()


# --- listing and s3api --------------------------------------------------------------


LISTING = {
    "docs/a.txt": b"alpha",
    "docs/b.txt": b"bravo!",
    "docs/sub/c.txt": b"charlie",
    "img/x.bin": b"\x00\x01\x02" * 100,
    "top.txt": b"top level",
    "with space/\u00e9t\u00e9 +%.txt": b"encoded key",
}


def _ls_entries(out: str) -> tuple[list[str], dict[str, int]]:
    """`s3 ls` output: the PRE lines' prefixes, and key → size of the object lines."""
    prefixes: list[str] = []
    objects: dict[str, int] = {}
    for line in out.splitlines():
        if line.strip().startswith("PRE "):
            prefixes.append(line.strip()[4:])
        elif line.strip():
            _date, _time, size, key = line.split(maxsplit=3)
            objects[key] = int(size)
    return prefixes, objects


def test_ls_and_s3api(aws: Aws, client_bucket: tuple[Cluster, Any, str]) -> None:
    """`s3 ls` with and without --recursive (also 2 keys a page), `s3api list-objects-v2`
    with delimiter (CommonPrefixes and Contents, keys decoded from encoding-type=url) and
    with page size 2 (continuation tokens), head-object (ContentLength, ETag, metadata; 404
    for a missing key) and delete-objects (DeleteObjects)."""
    _, s3, bucket = client_bucket
    for key, data in LISTING.items():
        s3.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType="text/x-ls", Metadata={"n": "1"}
        )

    prefixes, objects = _ls_entries(aws("s3", "ls", f"s3://{bucket}"))
    assert sorted(prefixes) == ["docs/", "img/", "with space/"]
    assert objects == {"top.txt": len(LISTING["top.txt"])}

    prefixes, objects = _ls_entries(aws("s3", "ls", f"s3://{bucket}/docs/"))
    assert prefixes == ["sub/"]
    assert objects == {"a.txt": 5, "b.txt": 6}

    everything = {k: len(v) for k, v in LISTING.items()}
    for extra in ((), ("--page-size", "2")):
        prefixes, objects = _ls_entries(aws("s3", "ls", f"s3://{bucket}", "--recursive", *extra))
        assert prefixes == [] and objects == everything

    listing = aws.json("s3api", "list-objects-v2", "--bucket", bucket, "--delimiter", "/")
    assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["docs/", "img/", "with space/"]
    assert [(o["Key"], o["Size"]) for o in listing["Contents"]] == [("top.txt", 9)]
    assert listing["Contents"][0]["ETag"] == _md5_etag(LISTING["top.txt"])

    listing = aws.json(
        "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "docs/", "--delimiter", "/"
    )
    assert [p["Prefix"] for p in listing["CommonPrefixes"]] == ["docs/sub/"]
    assert [o["Key"] for o in listing["Contents"]] == ["docs/a.txt", "docs/b.txt"]

    listing = aws.json("s3api", "list-objects-v2", "--bucket", bucket, "--page-size", "2")
    # UTF-8 byte order, every key once across the three pages.
    assert [o["Key"] for o in listing["Contents"]] == sorted(LISTING, key=lambda k: k.encode())

    key = "with space/\u00e9t\u00e9 +%.txt"
    head = aws.json("s3api", "head-object", "--bucket", bucket, "--key", key)
    assert head["ContentLength"] == len(LISTING[key])
    assert head["ETag"] == _md5_etag(LISTING[key])
    assert head["ContentType"] == "text/x-ls"
    assert head["Metadata"] == {"n": "1"}
    missing = aws.run("s3api", "head-object", "--bucket", bucket, "--key", "nope", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr, missing

    request = {
        "Objects": [{"Key": "docs/a.txt"}, {"Key": key}, {"Key": "never/existed"}],
        "Quiet": False,
    }
    result = aws.json(
        "s3api", "delete-objects", "--bucket", bucket, "--delete", json.dumps(request)
    )
    assert sorted(d["Key"] for d in result.get("Deleted", [])) == sorted(
        ["docs/a.txt", key, "never/existed"]
    ), result
    assert not result.get("Errors"), result
    assert _keys(s3, bucket) == set(LISTING) - {"docs/a.txt", key}


# --- one big file -------------------------------------------------------------------


def test_aws_s3_cp_200_mib_up_and_down(
    cluster: Cluster, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """200 MiB up (25 parts of 8 MiB) and down (parallel ranged GETs) with v1 over HTTP:
    the multipart ETag computed here independently, the bytes compared by SHA-256."""
    home = tmp_path / "home"
    home.mkdir()
    aws = Aws(cluster, "v1", home)
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    digest, md5s = hashlib.sha256(), b""
    with open(src, "wb") as f:
        rng = random.Random("awscli-200")
        for _ in range(HUGE // PART):
            piece = rng.randbytes(PART)
            digest.update(piece)
            md5s += hashlib.md5(piece).digest()
            f.write(piece)
    expected = digest.hexdigest()

    start = time.monotonic()
    aws("s3", "cp", str(src), f"s3://{bucket}/dir/big file.bin", "--no-progress")
    up = time.monotonic() - start

    head = s3.head_object(Bucket=bucket, Key="dir/big file.bin")
    assert head["ContentLength"] == HUGE
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-{HUGE // PART}"'
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)

    _, objects = _ls_entries(aws("s3", "ls", f"s3://{bucket}/dir/"))
    assert objects == {"big file.bin": HUGE}

    start = time.monotonic()
    aws("s3", "cp", f"s3://{bucket}/dir/big file.bin", str(dst), "--no-progress")
    down = time.monotonic() - start

    assert dst.stat().st_size == HUGE
    assert checks.sha256_file(dst) == expected
    print(
        f"aws s3 cp 200 MiB: up {up:.1f} s ({HUGE / MiB / up:.0f} MiB/s), "
        f"down {down:.1f} s ({HUGE / MiB / down:.0f} MiB/s)"
    )
