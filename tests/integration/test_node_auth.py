"""Nodes serve only their cluster: the shared token, the cluster id, and what a dev
cluster does with them."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest

from nodeserver.proto import storage_pb2 as pb
from nodeserver.proto import storage_pb2_grpc
from s3compat.core.ports import NodeHealth, NodeUnauthenticated, NodeUnavailable
from s3compat.nodes.client import GrpcNodeClient, wait_until_healthy
from tests.cluster import Cluster, ExtraGateway
from tests.integration.test_nodeserver import (
    STARTUP_LIMIT,
    TOKEN,
    Node,
    new_id,
    node_command,
    put,
    start_node,
)

T = TypeVar("T")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("auth-node")
    started = start_node(
        root / "data", root / "node.log", "auth-node", extra=("--cluster-id", "blue")
    )
    yield started
    assert started.stop() == 0


def with_client(node: Node, token: str | None, body: Callable[[GrpcNodeClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = GrpcNodeClient(node.node_id, node.address, token=token)
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


async def every_call_is_refused(client: GrpcNodeClient) -> None:
    with pytest.raises(NodeUnauthenticated) as info:
        await client.health()
    assert "UNAUTHENTICATED" in str(info.value)
    assert "S3COMPAT_NODE_TOKEN" in str(info.value)
    with pytest.raises(NodeUnauthenticated):
        await client.stat_chunk(new_id())
    with pytest.raises(NodeUnauthenticated):
        await client.delete_chunk(new_id())
    with pytest.raises(NodeUnauthenticated):
        await client.read_chunk(new_id(), 0, 1)
    with pytest.raises(NodeUnauthenticated):
        await put(client, new_id(), b"abc", 3)
    # A refusal will not turn into an answer by waiting: raised at once, not at timeout.
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NodeUnauthenticated):
        await wait_until_healthy(client, STARTUP_LIMIT)
    assert loop.time() - started < STARTUP_LIMIT / 2


@pytest.mark.parametrize("token", [None, "wrong-" + TOKEN, TOKEN[:-1], TOKEN + "x"])
def test_node_refuses_missing_or_wrong_token(node: Node, token: str | None) -> None:
    with_client(node, token, every_call_is_refused)
    assert node.tmp_entries() == []  # the refused StoreChunk never began a write


def test_refused_is_unavailable_to_the_service_layer() -> None:
    # Placement and reads treat a node that refuses us like a node that is down.
    assert issubclass(NodeUnauthenticated, NodeUnavailable)


def test_node_accepts_the_right_token_and_reports_its_cluster(node: Node) -> None:
    chunk_id = new_id()

    async def body(client: GrpcNodeClient) -> NodeHealth:
        await put(client, chunk_id, b"hello", 5)
        assert await client.read_chunk(chunk_id, 0, 5) == b"hello"
        assert await client.delete_chunk(chunk_id)
        return await client.health()

    health = with_client(node, TOKEN, body)
    assert (health.node_id, health.cluster_id) == ("auth-node", "blue")


def test_plain_client_gets_unauthenticated(node: Node) -> None:
    async def main() -> None:
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub = storage_pb2_grpc.StorageStub(channel)
            for metadata in (None, (("authorization", "Basic " + TOKEN),)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Health(pb.HealthRequest(), metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # The scheme is case-insensitive; the alternative key works as well.
            for metadata in (
                (("authorization", "bearer " + TOKEN),),
                (("x-s3compat-token", TOKEN),),
            ):
                reply = await stub.Health(pb.HealthRequest(), metadata=metadata, timeout=10)
                assert reply.cluster_id == "blue"

    asyncio.run(main())


def test_token_never_appears_in_log_or_command_line(node: Node) -> None:
    with_client(node, "wrong-" + TOKEN, every_call_is_refused)
    log = node.log.read_text()
    assert "missing or wrong cluster token" in log
    assert TOKEN not in log
    cmdline = Path(f"/proc/{node.proc.pid}/cmdline").read_bytes().decode()
    assert TOKEN not in cmdline


# -- starting without a token ------------------------------------------------------------


def run_node_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a node that should refuse to start; its stderr."""
    command = [*node_command(True), "--id", "n", "--listen", "127.0.0.1:0"]
    command += ["--data", str(tmp_path / "data"), *args]
    base = {k: v for k, v in os.environ.items() if k != "S3COMPAT_NODE_TOKEN"}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=STARTUP_LIMIT,
        env={**base, **(env or {})},
    )
    assert result.returncode != 0
    assert result.stdout == ""
    return result.stderr


def test_node_without_token_refuses_to_start(tmp_path: Path) -> None:
    assert "--token-file" in run_node_cli(tmp_path)
    assert "--token-file" in run_node_cli(tmp_path, env={"S3COMPAT_NODE_TOKEN": ""})


def test_unreadable_or_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert "cannot read token file" in run_node_cli(tmp_path, "--token-file", str(missing))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    # Even with the insecure flag: a token file that was given must be usable.
    stderr = run_node_cli(tmp_path, "--token-file", str(empty), "--insecure-no-token")
    assert "is empty" in stderr


def test_insecure_no_token_serves_anyone_with_a_warning(tmp_path: Path) -> None:
    node = start_node(
        tmp_path / "data",
        tmp_path / "node.log",
        token=None,
        extra=("--insecure-no-token",),
        env={k: v for k, v in os.environ.items() if k != "S3COMPAT_NODE_TOKEN"},
    )
    try:
        health = with_client(node, None, lambda c: c.health())
        assert isinstance(health, NodeHealth)
        assert health.cluster_id == ""
    finally:
        assert node.stop() == 0
    assert "WITHOUT a token" in node.log.read_text()


def test_token_and_cluster_id_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "S3COMPAT_NODE_TOKEN": "env-token", "S3COMPAT_CLUSTER_ID": "green"}
    node = start_node(tmp_path / "data", tmp_path / "node.log", token=None, env=env)
    try:
        with_client(node, TOKEN, every_call_is_refused)
        health = with_client(node, "env-token", lambda c: c.health())
        assert isinstance(health, NodeHealth)
        assert health.cluster_id == "green"
    finally:
        assert node.stop() == 0
    assert "env-token" not in node.log.read_text()


# -- the dev cluster and its gateways ----------------------------------------------------


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("auth-dev") / "data").start()
    yield cluster
    cluster.stop()


def test_dev_cluster_keeps_a_private_token_out_of_its_logs(dev: Cluster) -> None:
    token_file = dev.data_dir / "node-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32
    cluster_id = (dev.data_dir / "cluster-id").read_text().strip()
    assert cluster_id
    # The cluster works (so the gateway and nodes share that token)...
    s3 = dev.client()
    s3.create_bucket(Bucket="auth")
    s3.put_object(Bucket="auth", Key="k", Body=b"v")
    assert s3.get_object(Bucket="auth", Key="k")["Body"].read() == b"v"
    # ...every node asks for it and reports the cluster id...
    for node_id, address in dev.info["nodes"].items():

        async def check(address: str = address) -> NodeHealth:
            refused = GrpcNodeClient("?", address)
            client = GrpcNodeClient("?", address, token=token)
            try:
                with pytest.raises(NodeUnauthenticated):
                    await refused.health()
                return await client.health()
            finally:
                await refused.close()
                await client.close()

        health = asyncio.run(check())
        assert (health.node_id, health.cluster_id) == (node_id, cluster_id)
        cmdline = Path(f"/proc/{dev.pid(node_id)}/cmdline").read_bytes().decode()
        assert token not in cmdline
    # ...and it is written to no log.
    logs = list((dev.data_dir / "logs").iterdir())
    assert logs
    for log in logs:
        assert token not in log.read_text(errors="replace"), log.name
    assert token not in "".join(dev.output)
    assert token not in (dev.data_dir / "cluster.json").read_text()


def test_gateway_of_another_cluster_refuses_to_start(dev: Cluster) -> None:
    gateway = ExtraGateway(dev, env={"S3COMPAT_CLUSTER_ID": "someone-elses"})
    with pytest.raises(RuntimeError, match="exited"):
        gateway.start()
    assert gateway.proc is not None and gateway.proc.returncode != 0
    log = (dev.data_dir / "logs" / f"gateway-{gateway.port}.log").read_text()
    assert "not starting" in log
    assert "belongs to cluster" in log and "someone-elses" in log


def test_gateway_with_a_wrong_token_refuses_to_start(dev: Cluster) -> None:
    gateway = ExtraGateway(dev, env={"S3COMPAT_NODE_TOKEN": "not-the-token"})
    with pytest.raises(RuntimeError, match="exited"):
        gateway.start()
    assert gateway.proc is not None and gateway.proc.returncode != 0
    log = (dev.data_dir / "logs" / f"gateway-{gateway.port}.log").read_text()
    assert "refused this gateway's S3COMPAT_NODE_TOKEN" in log
    assert "not-the-token" not in log


def test_gateway_of_this_cluster_starts(dev: Cluster) -> None:
    gateway = ExtraGateway(dev).start()
    try:
        status, _, _ = dev.raw("GET", "/-/health")
        assert status == 200
    finally:
        gateway.stop()
