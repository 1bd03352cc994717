"""`s3compat admin user add|list|remove`: users and access keys kept in PostgreSQL, their
secrets encrypted under the master key, picked up by a running gateway without a restart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.cluster import TEST_ENV, Cluster, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("admin-users") / "data").start()
    yield c
    c.stop()


def _admin(
    cluster: Cluster, *args: str, data_dir: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, **TEST_ENV}
    base.pop("DATABASE_URL", None)
    base.pop("S3COMPAT_MASTER_KEY", None)
    target = ["--data-dir", str(cluster.data_dir)] if data_dir else []
    return subprocess.run(
        [sys.executable, "-m", "s3compat", "admin", "user", *args, *target],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def _add(cluster: Cluster, name: str) -> tuple[str, str]:
    done = _admin(cluster, "add", name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].startswith("access key: ") and lines[1].startswith("secret key: ")
    access, secret = lines[0].removeprefix("access key: "), lines[1].removeprefix("secret key: ")
    assert re.fullmatch(r"S3C[0-9A-F]{16}", access)
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", secret)
    return access, secret


def _code(call: Any) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def _locked_out(me: Any, bucket: str, key: str) -> None:
    assert bucket not in {b["Name"] for b in me.list_buckets()["Buckets"]}
    denied = "AccessDenied"
    assert _code(lambda: me.get_object(Bucket=bucket, Key=key)) == denied
    assert _code(lambda: me.head_object(Bucket=bucket, Key=key)) in (denied, "403")
    assert _code(lambda: me.head_bucket(Bucket=bucket)) in (denied, "403")
    assert _code(lambda: me.list_objects_v2(Bucket=bucket)) == denied
    assert _code(lambda: me.put_object(Bucket=bucket, Key="x", Body=b"x")) == denied
    assert _code(lambda: me.delete_object(Bucket=bucket, Key=key)) == denied
    assert _code(lambda: me.delete_bucket(Bucket=bucket)) == denied


def test_user_lifecycle(cluster: Cluster) -> None:
    access, secret = _add(cluster, "alice")
    alice = cluster.client(access_key=access, secret_key=secret)
    admin = cluster.client()
    mine, hers = f"admin-{uuid.uuid4().hex[:12]}", f"alice-{uuid.uuid4().hex[:12]}"

    # A key added while the gateway runs works without a restart (a miss reloads early,
    # the periodic reload catches up within seconds anyway).
    assert wait_for(lambda: _code(lambda: alice.list_buckets()) == "ok", timeout=10)
    alice.create_bucket(Bucket=hers)
    alice.put_object(Bucket=hers, Key="diary.txt", Body=b"dear diary")
    admin.create_bucket(Bucket=mine)
    admin.put_object(Bucket=mine, Key="ledger.txt", Body=b"numbers")

    # Neither user sees, reads, lists, writes or deletes the other's.
    _locked_out(admin, hers, "diary.txt")
    _locked_out(alice, mine, "ledger.txt")
    assert {b["Name"] for b in alice.list_buckets()["Buckets"]} == {hers}
    assert alice.get_object(Bucket=hers, Key="diary.txt")["Body"].read() == b"dear diary"

    # list: the user and its access key, never the secret.
    listed = _admin(cluster, "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^alice: .*{access}", listed.stdout, re.MULTILINE), listed.stdout
    assert secret not in listed.stdout + listed.stderr

    # The same through DATABASE_URL and S3COMPAT_MASTER_KEY instead of --data-dir.
    by_env = _admin(
        cluster,
        "list",
        data_dir=False,
        env={
            "DATABASE_URL": cluster.database_url,
            "S3COMPAT_MASTER_KEY": (cluster.data_dir / "master-key").read_text().strip(),
        },
    )
    assert by_env.returncode == 0, by_env.stderr
    assert access in by_env.stdout

    # Adding the same user twice is refused.
    again = _admin(cluster, "add", "alice")
    assert again.returncode == 1 and "already exists" in again.stderr

    # Never in plain text in the database, and only decryptable with the master key.
    stored = [bytes(r["secret_enc"]) for r in cluster.sql("SELECT secret_enc FROM access_keys")]
    assert stored
    for blob in stored:
        assert secret.encode() not in blob
    assert (cluster.data_dir / "master-key").stat().st_mode & 0o777 == 0o600
    assert "master-key" not in (cluster.data_dir / "cluster.json").read_text()

    # remove is refused while alice owns a bucket.
    refused = _admin(cluster, "remove", "alice")
    assert refused.returncode == 1
    assert hers in refused.stderr and "bucket" in refused.stderr
    assert alice.list_buckets()["Buckets"]

    alice.delete_object(Bucket=hers, Key="diary.txt")
    alice.delete_bucket(Bucket=hers)
    removed = _admin(cluster, "remove", "alice")
    assert removed.returncode == 0, removed.stderr
    assert wait_for(lambda: _code(lambda: alice.list_buckets()) == "InvalidAccessKeyId", timeout=10)
    assert "alice" not in _admin(cluster, "list").stdout
    assert _admin(cluster, "remove", "alice").returncode == 1

    # The admin's keys still work; the secret never reached a log or the dev's output.
    assert mine in {b["Name"] for b in admin.list_buckets()["Buckets"]}
    admin.delete_object(Bucket=mine, Key="ledger.txt")
    admin.delete_bucket(Bucket=mine)
    for path in (cluster.data_dir / "logs").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in "".join(cluster.output)


def test_keys_survive_a_gateway_restart_of_the_cluster(cluster: Cluster) -> None:
    """The master key is kept in the data dir: after a full restart the gateway decrypts
    the stored secrets again."""
    access, secret = _add(cluster, "bob")
    cluster.stop()
    cluster.start()
    bob = cluster.client(access_key=access, secret_key=secret)
    assert _code(lambda: bob.list_buckets()) == "ok"
    assert _admin(cluster, "remove", "bob").returncode == 0


def test_add_needs_a_target(cluster: Cluster) -> None:
    done = _admin(cluster, "add", "carol", data_dir=False)
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr


def test_bad_user_names_are_refused(cluster: Cluster) -> None:
    done = _admin(cluster, "add", "no spaces please")
    assert done.returncode == 1
    assert "invalid user name" in done.stderr
