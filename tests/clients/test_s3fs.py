"""s3fs (FUSE) against the cluster, over HTTP and HTTPS: the bucket is mounted and driven
through the file system, and every result is checked twice, through the mount and with
boto3 (SHA-256 of the bytes, keys, and the x-amz-meta-* attributes s3fs keeps).

How s3fs 1.90 maps file operations to S3 (see /work/shared/S3-NOTES.md):
- create/write/append/truncate: the whole object is PUT again (multipart from 20 MiB on,
  10 MiB parts sent in parallel), carrying x-amz-meta-{mode,uid,gid,mtime,ctime,atime};
- reads: HEAD, then ranged GETs;
- lookup of a name: HEAD `k`, HEAD `k/`, HEAD `k_$folder$`, ListObjects v1 `prefix=k/`;
- mkdir: a 0-byte `dir/` with Content-Type application/x-directory; rmdir: DELETE `dir/`;
- rename: CopyObject (x-amz-metadata-directive: REPLACE) + DeleteObject;
- chmod and utime: CopyObject of the object onto itself with REPLACE.

HTTPS: s3fs uses libcurl (GnuTLS here) and reads the CA bundle from the CURL_CA_BUNDLE
environment variable, lazily: its first request goes out with the system bundle, fails with
CURLE_SSL_CACERT, and is retried with CURL_CA_BUNDLE as CAINFO. Certificate and host name
are verified properly (no `no_check_certificate`); the last test shows the mount fails
without the CA.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests import checks
from tests.cluster import Cluster

MiB = 1 << 20
MOUNT_TIMEOUT = 30.0
S3FS_LOG_TAIL = 120  # lines of the s3fs debug log shown when a test fails
GATEWAY_LOG_TAIL = 60  # access-log lines of the test's bucket shown when a test fails


# --------------------------------------------------------------------------------------
# Mounting


def _is_mounted(path: Path) -> bool:
    """From the kernel's mount table, so a dead FUSE daemon's mount still counts (stat on
    it fails with ENOTCONN and os.path.ismount would say False)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # The fifth field is the mount point, with blanks and backslashes as \ooo.
            point = re.sub(r"\\([0-7]{3})", lambda mo: chr(int(mo[1], 8)), line.split()[4])
            if point == target:
                return True
    return False


def _s3fs_env(ca: str | None) -> dict[str, str]:
    """No AWS credentials or CA settings leak in from the caller; CURL_CA_BUNDLE when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS", "CURL_", "SSL_CERT"))}
    if ca:
        env["CURL_CA_BUNDLE"] = ca
    return env


@dataclass
class S3fsMount:
    cluster: Cluster
    s3: Any  # boto3 client on the same cluster, to check what s3fs stored
    bucket: str
    root: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @contextlib.contextmanager
    def diagnosed(self) -> Iterator[None]:
        """Failures inside carry the s3fs debug log (every request and response header)
        and the gateway's access log for the bucket, to tell client from server."""
        try:
            yield
        except Exception as exc:
            exc.add_note(f"--- s3fs log (last {S3FS_LOG_TAIL} lines) ---\n{_tail(self.log)}")
            exc.add_note(
                f"--- gateway access log for {self.bucket} ---\n"
                + _gateway_lines(self.cluster, self.bucket)
            )
            raise

    def sha_through_mount(self, name: str) -> str:
        return checks.sha256_file(self.root / name)

    def sha_through_s3(self, key: str) -> str:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        while piece := body.read(MiB):
            digest.update(piece)
        return digest.hexdigest()

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.s3.head_object(Bucket=self.bucket, Key=key)
            return found
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey"):
                return None
            raise

    def keys(self) -> list[str]:
        out: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return out


def _start_s3fs(
    cluster: Cluster, bucket: str, root: Path, log: Path, *, ca: str | None
) -> subprocess.Popen[bytes]:
    passwd = root.parent / "passwd-s3fs"
    passwd.write_text(f"{cluster.access_key}:{cluster.secret_key}\n")
    passwd.chmod(0o600)  # s3fs refuses a passwd file others can read
    options = ",".join(
        [
            f"url={cluster.endpoint}",
            "use_path_request_style",
            f"passwd_file={passwd}",
            "dbglevel=info",
            "curldbg",  # every request and response header line goes to the log
            "stat_cache_expire=1",  # the tests also change the bucket behind s3fs's back
        ]
    )
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["s3fs", bucket, str(root), "-f", "-o", options],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_s3fs_env(ca),
        )


def _unmount(root: Path, proc: subprocess.Popen[bytes]) -> None:
    """Never leaves a mount behind: `fusermount -u`, then a lazy unmount if that failed
    (something still busy), then the daemon is waited for or killed."""
    try:
        if _is_mounted(root):
            done = subprocess.run(["fusermount", "-u", str(root)], capture_output=True)
            if done.returncode != 0 and _is_mounted(root):
                subprocess.run(["fusermount", "-uz", str(root)], capture_output=True)
    finally:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if _is_mounted(root):
            subprocess.run(["fusermount", "-uz", str(root)], capture_output=True)


def _wait_for_mount(root: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"s3fs exited with {proc.returncode} before mounting:\n{_tail(log)}")
        if os.path.ismount(root):
            return
        time.sleep(0.1)
    pytest.fail(f"s3fs did not mount within {MOUNT_TIMEOUT} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = S3FS_LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _gateway_lines(cluster: Cluster, bucket: str) -> str:
    """The gateway's access-log lines for this bucket (method, path, operation, status)."""
    log = cluster.data_dir / "logs" / "gateway.log"
    try:
        text = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no gateway log)"
    mine = [line for line in text if f"/{bucket}" in line]
    return "\n".join(mine[-GATEWAY_LOG_TAIL:])


@pytest.fixture
def mounted(
    client_tools: None, client_bucket: tuple[Cluster, Any, str], tmp_path: Path
) -> Iterator[S3fsMount]:
    """The test's fresh bucket mounted with s3fs (HTTP, then HTTPS), unmounted afterwards
    whatever happens."""
    cluster, s3, bucket = client_bucket
    root = tmp_path / "mnt"
    root.mkdir()
    log = tmp_path / "s3fs.log"
    proc = _start_s3fs(cluster, bucket, root, log, ca=cluster.ca if cluster.tls else None)
    try:
        _wait_for_mount(root, proc, log)
        yield S3fsMount(cluster, s3, bucket, root, log, proc)
    finally:
        _unmount(root, proc)
    assert not _is_mounted(root), f"{root} is still mounted"


# --------------------------------------------------------------------------------------
# Helpers


def _write_pattern(path: Path, size: int, seed: bytes) -> str:
    """Deterministic pseudo-random content written 1 MiB at a time; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MiB):
            block = hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (MiB // 32)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _assert_same(m: S3fsMount, name: str, expected: bytes) -> None:
    """The object has exactly `expected`, through the mount and straight from S3."""
    path = m.root / name
    assert path.stat().st_size == len(expected)
    assert m.sha_through_mount(name) == checks.sha256(expected)
    assert m.sha_through_s3(name) == checks.sha256(expected)
    head = m.head(name)
    assert head is not None and head["ContentLength"] == len(expected)


def _meta_mode(head: dict[str, Any] | None) -> int:
    assert head is not None
    return int(head["Metadata"]["mode"])


# --------------------------------------------------------------------------------------
# Tests


def test_s3fs_write_append_overwrite_remove(mounted: S3fsMount) -> None:
    m = mounted
    with m.diagnosed():
        path = m.root / "notes.bin"
        first = os.urandom(100 * 1024 + 7)

        path.write_bytes(first)
        _assert_same(m, "notes.bin", first)
        head = m.head("notes.bin")
        # s3fs's attributes came back as user metadata.
        assert _meta_mode(head) == os.stat(path).st_mode
        assert head is not None and {"uid", "gid", "mtime"} <= set(head["Metadata"])

        # Append: a ranged GET of what is there, then a PUT of the whole object.
        extra = os.urandom(3000)
        with open(path, "ab") as f:
            f.write(extra)
        _assert_same(m, "notes.bin", first + extra)

        # Overwrite with something shorter: the object is replaced, not patched.
        short = b"short and sweet\n"
        with open(path, "wb") as f:
            f.write(short)
        _assert_same(m, "notes.bin", short)
        assert path.read_bytes() == short

        os.remove(path)
        assert not path.exists()
        assert m.head("notes.bin") is None
        assert "notes.bin" not in os.listdir(m.root)
        assert m.keys() == []


def test_s3fs_directories_and_listing(mounted: S3fsMount) -> None:
    m = mounted
    with m.diagnosed():
        # Written behind s3fs's back, without directory markers, and a key `both` that is at
        # the same time a file and the prefix of `both/inner.txt`.
        for key in ("nested/deep/file.txt", "nested/other.txt", "both", "both/inner.txt"):
            m.s3.put_object(Bucket=m.bucket, Key=key, Body=key.encode())

        # mkdir is a 0-byte `made/` directory object.
        os.mkdir(m.root / "made")
        marker = m.head("made/")
        assert marker is not None
        assert marker["ContentLength"] == 0
        assert marker["ContentType"] == "application/x-directory"
        # s3fs 1.90 stores a directory's permission bits only (no S_IFDIR): the
        # Content-Type and the trailing slash say it is a directory.
        assert _meta_mode(marker) & 0o777 == os.stat(m.root / "made").st_mode & 0o777
        assert (m.root / "made").is_dir()
        (m.root / "made" / "inside.txt").write_bytes(b"inside")

        listing = os.listdir(m.root)
        assert sorted(listing) == ["both", "made", "nested"]
        assert listing.count("both") == 1  # a file and a common prefix: listed once
        assert os.listdir(m.root / "made") == ["inside.txt"]
        assert (m.root / "made" / "inside.txt").read_bytes() == b"inside"

        # Directories implied by keys alone (CommonPrefixes of ListObjects v1).
        assert sorted(os.listdir(m.root / "nested")) == ["deep", "other.txt"]
        assert (m.root / "nested").is_dir() and (m.root / "nested" / "deep").is_dir()
        assert os.listdir(m.root / "nested" / "deep") == ["file.txt"]
        assert (m.root / "nested" / "deep" / "file.txt").read_bytes() == b"nested/deep/file.txt"
        assert (m.root / "nested" / "other.txt").read_bytes() == b"nested/other.txt"

        # `both` is the file (HEAD `both` answers first); s3fs cannot show `both/inner.txt`,
        # but the server keeps both keys and listing them breaks nothing.
        assert (m.root / "both").is_file()
        assert (m.root / "both").read_bytes() == b"both"
        assert {"both", "both/inner.txt"} <= set(m.keys())

        # rmdir refuses a non-empty directory, then removes the marker.
        with pytest.raises(OSError) as refused:
            os.rmdir(m.root / "made")
        assert refused.value.errno == errno.ENOTEMPTY
        os.remove(m.root / "made" / "inside.txt")
        os.rmdir(m.root / "made")
        assert not (m.root / "made").exists()
        assert m.head("made/") is None
        assert "made" not in os.listdir(m.root)
        assert sorted(m.keys()) == [
            "both",
            "both/inner.txt",
            "nested/deep/file.txt",
            "nested/other.txt",
        ]


def test_s3fs_rename_file_and_directory(mounted: S3fsMount) -> None:
    """rename = CopyObject (REPLACE, all of s3fs's metadata) + DeleteObject of the source."""
    m = mounted
    with m.diagnosed():
        data = os.urandom(64 * 1024)
        (m.root / "old.bin").write_bytes(data)
        mode = _meta_mode(m.head("old.bin"))

        os.rename(m.root / "old.bin", m.root / "new.bin")
        assert not (m.root / "old.bin").exists()
        assert m.head("old.bin") is None
        _assert_same(m, "new.bin", data)
        assert _meta_mode(m.head("new.bin")) == mode

        # A directory: s3fs makes the new marker and moves every object under it.
        os.mkdir(m.root / "dir1")
        (m.root / "dir1" / "a.txt").write_bytes(b"alpha")
        os.rename(m.root / "dir1", m.root / "dir2")
        assert sorted(os.listdir(m.root)) == ["dir2", "new.bin"]
        assert os.listdir(m.root / "dir2") == ["a.txt"]
        assert (m.root / "dir2" / "a.txt").read_bytes() == b"alpha"
        assert sorted(m.keys()) == ["dir2/", "dir2/a.txt", "new.bin"]


def test_s3fs_chmod_and_utime(mounted: S3fsMount) -> None:
    """chmod and utime: a CopyObject of the object onto itself, x-amz-metadata-directive
    REPLACE carrying the new x-amz-meta-mode / x-amz-meta-mtime; the bytes stay."""
    m = mounted
    with m.diagnosed():
        data = os.urandom(10_000)
        path = m.root / "perm.bin"
        path.write_bytes(data)
        etag = m.s3.head_object(Bucket=m.bucket, Key="perm.bin")["ETag"]

        os.chmod(path, 0o640)
        assert os.stat(path).st_mode & 0o7777 == 0o640
        assert _meta_mode(m.head("perm.bin")) == 0o100640

        stamp = 1_600_000_000
        os.utime(path, (stamp, stamp))
        assert int(os.stat(path).st_mtime) == stamp
        head = m.head("perm.bin")
        assert head is not None and int(head["Metadata"]["mtime"]) == stamp
        assert _meta_mode(head) == 0o100640  # REPLACE carried every attribute, not only mtime

        _assert_same(m, "perm.bin", data)
        assert head["ETag"] == etag  # same bytes, same single-part ETag
        assert m.keys() == ["perm.bin"]


def test_s3fs_dd_40_mib(mounted: S3fsMount, tmp_path: Path) -> None:
    """A 40 MiB file written by dd: s3fs uploads it as a multipart upload (parts sent in
    parallel) and reads it back with ranged GETs."""
    m = mounted
    with m.diagnosed():
        src = tmp_path / "src.bin"
        expected = _write_pattern(src, 40 * MiB, b"s3fs-dd")
        done = subprocess.run(
            ["dd", f"if={src}", f"of={m.root / 'big'}", "bs=1M", "count=40"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr

        head = m.head("big")
        assert head is not None and head["ContentLength"] == 40 * MiB
        etag = head["ETag"].strip('"')
        assert "-" in etag and int(etag.rsplit("-", 1)[1]) >= 2, head["ETag"]  # multipart
        assert "Uploads" not in m.s3.list_multipart_uploads(Bucket=m.bucket)

        assert os.stat(m.root / "big").st_size == 40 * MiB
        assert m.sha_through_mount("big") == expected
        assert m.sha_through_s3("big") == expected


def test_s3fs_https_needs_the_ca(client_tools: None, tls_cluster: Cluster, tmp_path: Path) -> None:
    """Without CURL_CA_BUNDLE s3fs does not trust the cluster's private CA, so the mount
    fails: the HTTPS tests above really verify the certificate."""
    s3 = tls_cluster.client()
    bucket = f"s3fs-noca-{os.urandom(6).hex()}"
    s3.create_bucket(Bucket=bucket)
    root = tmp_path / "mnt"
    root.mkdir()
    log = tmp_path / "s3fs.log"
    proc = _start_s3fs(tls_cluster, bucket, root, log, ca=None)
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(MOUNT_TIMEOUT)
        gave_up = proc.poll() is not None
    finally:
        _unmount(root, proc)
        s3.delete_bucket(Bucket=bucket)
    text = log.read_text(errors="replace")
    assert gave_up, f"s3fs kept running without the CA:\n{text[-4000:]}"
    assert "CURLE_SSL_CACERT" in text, text[-4000:]
    assert "unable to connect" in text, text[-4000:]
