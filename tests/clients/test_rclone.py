"""rclone (Debian's 1.60, S3 backend with `provider = Other`) against the cluster, over
HTTP and HTTPS: bucket creation, tree uploads and downloads, listings, `check` by MD5,
server-side copies and moves, deletes, purge, `rcat`, a 40 MiB single-PUT object, a
forced multipart upload, and modification times kept in `x-amz-meta-mtime`.

Every rclone run is isolated from the user's setup: its own config file and HOME in the
test's temp dir, no AWS_* or RCLONE_* variable (rclone's AWS SDK reads AWS_CA_BUNDLE even
with `env_auth = false`), and TZ=UTC so that `lsl` prints times as stored."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests import checks
from tests.cluster import Cluster

MiB = 1 << 20
REMOTE = "s3c"
TIMEOUT = 180  # seconds any one rclone run may take

# A small local tree: relative path -> content. Nested dirs, a name with spaces, a name
# with `+` and non-ASCII letters, and an empty file.
TREE: dict[str, bytes] = {
    "a.txt": b"hello from rclone\n",
    "sub/file with spaces.txt": b"a name with spaces\n",
    "sub/deeper/r.bin": hashlib.sha256(b"r.bin").digest() * 4096,  # 128 KiB
    "sub/deeper/empty.txt": b"",
    "sub/ünï+code.txt": "ünïcode content\n".encode(),
}


def _ns(text: str) -> int:
    """'2001-02-03 04:05:06.123456789' (UTC) -> nanoseconds since the epoch."""
    whole, _, frac = text.partition(".")
    seconds = int(datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 10**9 + int(frac.ljust(9, "0"))


def _lsl_time(ns: int) -> str:
    """How `rclone lsl` prints a modification time (in UTC here)."""
    seconds, frac = divmod(ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{frac:09d}"


def _status(error: ClientError) -> int:
    code: int = error.response["ResponseMetadata"]["HTTPStatusCode"]
    return code


@dataclass
class Rclone:
    """rclone with a private config (one `s3` remote for the cluster) and a private HOME."""

    cluster: Cluster
    root: Path

    def __post_init__(self) -> None:
        self.home = self.root / "rclone-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "rclone.conf"
        self.config.write_text(
            f"[{REMOTE}]\n"
            "type = s3\n"
            "provider = Other\n"
            "env_auth = false\n"
            f"access_key_id = {self.cluster.access_key}\n"
            f"secret_access_key = {self.cluster.secret_key}\n"
            f"endpoint = {self.cluster.endpoint}\n"
            "region = us-east-1\n"
            "force_path_style = true\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        self.env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            TZ="UTC",
        )

    def run(
        self, *args: str, stdin: bytes | None = None, expect: int = 0
    ) -> subprocess.CompletedProcess[bytes]:
        """One rclone command; fails the test unless it exits with `expect`."""
        cmd = [
            "rclone",
            "--config",
            str(self.config),
            "--retries",
            "1",
            "--low-level-retries",
            "2",
            "-v",
            *(["--ca-cert", self.cluster.ca] if self.cluster.tls else []),
            *args,
        ]
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            env=self.env,
            cwd=self.root,
            timeout=TIMEOUT,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        assert proc.returncode == expect, (
            f"{cmd} exited with {proc.returncode}, expected {expect}\n"
            f"stdout: {proc.stdout.decode(errors='replace')}\n"
            f"stderr: {proc.stderr.decode(errors='replace')}"
        )
        return proc

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.decode()

    def err(self, *args: str) -> str:
        return self.run(*args).stderr.decode()


def remote(bucket: str, path: str = "") -> str:
    return f"{REMOTE}:{bucket}/{path}" if path else f"{REMOTE}:{bucket}"


def _write_tree(root: Path, tree: dict[str, bytes], base_ns: int) -> dict[str, int]:
    """Writes `tree` under `root` with distinct, known modification times (to the
    nanosecond); returns them by relative path."""
    mtimes: dict[str, int] = {}
    for i, (rel, data) in enumerate(sorted(tree.items())):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        ns = base_ns + i * 86_400 * 10**9 + 123_456_789
        os.utime(path, ns=(ns, ns))
        mtimes[rel] = os.stat(path).st_mtime_ns
    return mtimes


def _parse_ls(text: str) -> dict[str, int]:
    """`rclone ls`: '<size> <path>' per line (paths may contain spaces)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        size, path = line.strip().split(" ", 1)
        out[path] = int(size)
    return out


def _parse_lsl(text: str) -> dict[str, tuple[int, str]]:
    """`rclone lsl`: '<size> <date> <time> <path>' per line -> path: (size, 'date time')."""
    out: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        size, date, time, path = line.strip().split(" ", 3)
        out[path] = (int(size), f"{date} {time}")
    return out


def _parse_lsd(text: str) -> list[str]:
    """`rclone lsd`: '<-1|count> <date> <time> <count> <name>' per line -> names."""
    return [line.split(None, 4)[4] for line in text.splitlines() if line.strip()]


@pytest.fixture
def rclone(scheme_cluster: Cluster, tmp_path: Path) -> Rclone:
    return Rclone(scheme_cluster, tmp_path)


@pytest.fixture
def new_bucket(scheme_cluster: Cluster) -> Iterator[str]:
    """A bucket name nobody has created yet; removed afterwards if a test left it behind."""
    name = f"rclone-{uuid.uuid4().hex[:16]}"
    yield name
    s3 = scheme_cluster.client()
    try:
        for obj in checks.listed(s3, name).values():
            s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except ClientError as e:
        if _status(e) != 404:
            raise


# --- tests ----------------------------------------------------------------------------


def test_rclone_mkdir_copy_list_check_cat_purge(
    client_tools: None,
    scheme_cluster: Cluster,
    rclone: Rclone,
    new_bucket: str,
    tmp_path: Path,
) -> None:
    s3 = scheme_cluster.client()
    bucket = new_bucket

    # mkdir of a bucket that does not exist: CreateBucket.
    rclone.run("mkdir", remote(bucket))
    s3.head_bucket(Bucket=bucket)
    assert bucket in _parse_lsd(rclone.out("lsd", f"{REMOTE}:"))

    # copy a local tree (rclone re-sends CreateBucket first, which must succeed).
    src = tmp_path / "src"
    mtimes = _write_tree(src, TREE, _ns("2001-02-03 04:05:06"))
    rclone.run("copy", str(src), remote(bucket, "tree"))
    stored = checks.listed(s3, bucket)
    assert set(stored) == {f"tree/{rel}" for rel in TREE}
    for rel, data in TREE.items():
        obj = stored[f"tree/{rel}"]
        assert obj["Size"] == len(data), rel
        assert obj["ETag"] == f'"{hashlib.md5(data).hexdigest()}"', rel
        assert checks.body(s3, bucket, f"tree/{rel}") == data, rel

    # Listings: sizes and paths; lsl shows the local modification times (x-amz-meta-mtime).
    assert _parse_ls(rclone.out("ls", remote(bucket))) == {
        f"tree/{rel}": len(data) for rel, data in TREE.items()
    }
    assert _parse_lsl(rclone.out("lsl", remote(bucket, "tree"))) == {
        rel: (len(data), _lsl_time(mtimes[rel])) for rel, data in TREE.items()
    }
    assert _parse_lsd(rclone.out("lsd", remote(bucket))) == ["tree"]
    assert _parse_lsd(rclone.out("lsd", remote(bucket, "tree"))) == ["sub"]
    assert sorted(_parse_lsd(rclone.out("lsd", remote(bucket, "tree/sub")))) == ["deeper"]

    # check compares sizes and MD5s (the ETags): no difference.
    err = rclone.err("check", str(src), remote(bucket, "tree"))
    assert "0 differences found" in err, err
    assert f"{len(TREE)} matching files" in err, err

    # cat returns the bytes, for names with spaces and non-ASCII letters too.
    for rel in ("sub/file with spaces.txt", "sub/ünï+code.txt", "sub/deeper/r.bin"):
        assert rclone.run("cat", remote(bucket, f"tree/{rel}")).stdout == TREE[rel], rel

    # Download the tree again: same bytes, and the modification times come back.
    down = tmp_path / "down"
    rclone.run("copy", remote(bucket, "tree"), str(down))
    for rel, data in TREE.items():
        assert (down / rel).read_bytes() == data, rel
        assert os.stat(down / rel).st_mtime_ns == mtimes[rel], rel

    # check must notice a changed object of the same size (so it really compares MD5s).
    s3.put_object(Bucket=bucket, Key="tree/a.txt", Body=TREE["a.txt"].upper())
    err = rclone.run("check", str(src), remote(bucket, "tree"), expect=1).stderr.decode()
    assert "1 differences found" in err, err

    # purge: every object, then the bucket.
    rclone.run("purge", remote(bucket))
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket=bucket)
    assert _status(excinfo.value) == 404
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_rclone_server_side_copy_move_delete_rcat(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], rclone: Rclone, tmp_path: Path
) -> None:
    _, s3, bucket = client_bucket
    src = tmp_path / "src"
    files = {
        "a.txt": b"to be moved\n",
        "file with spaces.txt": b"to be copied server-side\n",
        "keep.txt": b"stays\n",
    }
    _write_tree(src, files, _ns("2010-05-06 07:08:09"))
    rclone.run("copy", str(src), remote(bucket, "src"))
    before = {k: s3.head_object(Bucket=bucket, Key=k) for k in checks.listed(s3, bucket, "src/")}
    assert len(before) == 3

    # copyto within the remote: CopyObject (x-amz-copy-source), never a download+upload.
    err = rclone.err(
        "copyto",
        remote(bucket, "src/file with spaces.txt"),
        remote(bucket, "copied/file with spaces.txt"),
    )
    assert "Copied (server-side copy)" in err, err
    assert checks.body(s3, bucket, "copied/file with spaces.txt") == files["file with spaces.txt"]
    copied = s3.head_object(Bucket=bucket, Key="copied/file with spaces.txt")
    original = before["src/file with spaces.txt"]
    assert copied["ETag"] == original["ETag"]
    assert copied["ContentLength"] == original["ContentLength"]
    # x-amz-metadata-directive COPY: the metadata (rclone's mtime) comes along.
    assert copied["Metadata"] == original["Metadata"]
    assert "mtime" in copied["Metadata"]
    assert checks.body(s3, bucket, "src/file with spaces.txt") == files["file with spaces.txt"]

    # moveto: a server-side copy, then DeleteObject of the source.
    err = rclone.err("moveto", remote(bucket, "src/a.txt"), remote(bucket, "moved/a.txt"))
    assert "server-side" in err, err
    assert checks.body(s3, bucket, "moved/a.txt") == files["a.txt"]
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key="src/a.txt")
    assert _status(excinfo.value) == 404

    # delete removes the objects under a path and nothing else.
    rclone.run("delete", remote(bucket, "copied"))
    assert set(checks.listed(s3, bucket)) == {
        "src/file with spaces.txt",
        "src/keep.txt",
        "moved/a.txt",
    }

    # rcat from stdin: a small body (buffered, one PUT) and a larger one (streamed, as a
    # multipart upload of unknown size).
    small = b"piped through rcat\n"
    rclone.run("rcat", remote(bucket, "stdin/small.txt"), stdin=small)
    assert checks.body(s3, bucket, "stdin/small.txt") == small
    streamed = os.urandom(MiB + 12345)
    rclone.run("rcat", remote(bucket, "stdin/streamed.bin"), stdin=streamed)
    head = s3.head_object(Bucket=bucket, Key="stdin/streamed.bin")
    assert head["ContentLength"] == len(streamed)
    assert head["ETag"] == checks.multipart_etag(streamed, 5 * MiB)  # one part: '"…-1"'
    assert checks.sha256(checks.body(s3, bucket, "stdin/streamed.bin")) == checks.sha256(streamed)
    assert checks.sha256(
        rclone.run("cat", remote(bucket, "stdin/streamed.bin")).stdout
    ) == checks.sha256(streamed)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_rclone_40_mib_file(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], rclone: Rclone, tmp_path: Path
) -> None:
    """Below rclone's 200 MiB cutoff: one streamed PUT (UNSIGNED-PAYLOAD, Content-MD5)."""
    _, s3, bucket = client_bucket
    data = os.urandom(40 * MiB)
    src = tmp_path / "forty.bin"
    src.write_bytes(data)
    rclone.run("copyto", str(src), remote(bucket, "big/forty.bin"))

    head = s3.head_object(Bucket=bucket, Key="big/forty.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'

    dst = tmp_path / "forty.down"
    rclone.run("copyto", remote(bucket, "big/forty.bin"), str(dst))
    assert dst.stat().st_size == len(data)
    assert checks.sha256_file(dst) == checks.sha256(data)
    assert _parse_lsl(rclone.out("lsl", remote(bucket, "big")))["forty.bin"] == (
        len(data),
        _lsl_time(src.stat().st_mtime_ns),
    )


def test_rclone_forced_multipart_upload(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], rclone: Rclone, tmp_path: Path
) -> None:
    """A 12 MiB file with a 5 MiB cutoff and chunk size: three parts (5, 5, 2 MiB)."""
    _, s3, bucket = client_bucket
    data = os.urandom(12 * MiB)
    src = tmp_path / "mp"
    src.mkdir()
    (src / "twelve.bin").write_bytes(data)
    rclone.run(
        "copy",
        str(src),
        remote(bucket, "mp"),
        "--s3-upload-cutoff",
        "5M",
        "--s3-chunk-size",
        "5M",
    )

    head = s3.head_object(Bucket=bucket, Key="mp/twelve.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"'), head["ETag"]
    assert head["ETag"] == checks.multipart_etag(data, 5 * MiB)
    # A multipart ETag is no MD5, so rclone keeps the whole file's MD5 in its metadata.
    assert head["Metadata"]["md5chksum"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)

    assert checks.sha256(checks.body(s3, bucket, "mp/twelve.bin")) == checks.sha256(data)
    assert checks.sha256(
        rclone.run("cat", remote(bucket, "mp/twelve.bin")).stdout
    ) == checks.sha256(data)
    err = rclone.err("check", str(src), remote(bucket, "mp"))
    assert "0 differences found" in err, err


def test_rclone_modtime_kept_and_updated(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], rclone: Rclone, tmp_path: Path
) -> None:
    _, s3, bucket = client_bucket
    src = tmp_path / "mt"
    src.mkdir()
    path = src / "dated.txt"
    data = b"only the modification time of this file changes\n"
    path.write_bytes(data)
    first = _ns("2001-02-03 04:05:06.5")
    os.utime(path, ns=(first, first))

    rclone.run("copy", str(src), remote(bucket, "mt"))
    assert _parse_lsl(rclone.out("lsl", remote(bucket, "mt"))) == {
        "dated.txt": (len(data), "2001-02-03 04:05:06.500000000")
    }
    head = s3.head_object(Bucket=bucket, Key="mt/dated.txt")
    assert head["Metadata"]["mtime"] == "981173106.5"
    etag, content_type = head["ETag"], head["ContentType"]

    # Only the local modification time changes: same size, same MD5, so rclone updates the
    # stored mtime with a CopyObject onto the same key, x-amz-metadata-directive REPLACE.
    second = _ns("2011-12-13 14:15:16.25")
    os.utime(path, ns=(second, second))
    err = rclone.err("copy", str(src), remote(bucket, "mt"))
    assert "Updated modification time in destination" in err, err
    assert _parse_lsl(rclone.out("lsl", remote(bucket, "mt"))) == {
        "dated.txt": (len(data), "2011-12-13 14:15:16.250000000")
    }
    head = s3.head_object(Bucket=bucket, Key="mt/dated.txt")
    assert head["Metadata"]["mtime"] == "1323785716.25"
    assert head["ETag"] == etag
    assert head["ContentType"] == content_type
    assert head["ContentLength"] == len(data)
    assert checks.body(s3, bucket, "mt/dated.txt") == data
    assert set(checks.listed(s3, bucket)) == {"mt/dated.txt"}

    # A second copy finds nothing to do.
    err = rclone.err("copy", str(src), remote(bucket, "mt"))
    assert "Updated modification time" not in err, err
