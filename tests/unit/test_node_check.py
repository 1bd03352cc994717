"""The gateway's startup check of its nodes (Runtime.check_nodes), with fake nodes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from s3compat.app import Runtime
from s3compat.core.ports import NodeHealth, NodeUnauthenticated, NodeUnavailable
from s3compat.settings import Settings


class FakeNode:
    def __init__(self, node_id: str, answer: NodeHealth | Exception) -> None:
        self.node_id = node_id
        self.address = f"{node_id}:50051"
        self.answer = answer

    async def health(self) -> NodeHealth:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def healthy(node_id: str, cluster_id: str) -> FakeNode:
    return FakeNode(node_id, NodeHealth(node_id, 0, 1, 0, cluster_id=cluster_id))


def check(cluster_id: str, *nodes: FakeNode) -> None:
    runtime = Runtime(Settings(cluster_id=cluster_id))

    async def main() -> None:
        try:
            await runtime.check_nodes(list(nodes))  # type: ignore[arg-type]
        finally:
            await runtime.cluster.close()

    asyncio.run(main())


def test_nodes_of_this_cluster_pass() -> None:
    check("blue", healthy("n1", "blue"), healthy("n2", "blue"))


def test_a_node_of_another_cluster_stops_the_gateway() -> None:
    with pytest.raises(SystemExit) as info:
        check("blue", healthy("n1", "blue"), healthy("n2", "red"))
    message = str(info.value.code)
    assert "n2" in message and "'red'" in message and "'blue'" in message
    assert "n1" not in message


def test_a_node_refusing_the_token_stops_the_gateway() -> None:
    refused = FakeNode("n3", NodeUnauthenticated("n3", "UNAUTHENTICATED"))
    with pytest.raises(SystemExit, match=r"n3.*S3COMPAT_NODE_TOKEN"):
        check("blue", healthy("n1", "blue"), refused)


def test_an_unreachable_node_is_only_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    down = FakeNode("n4", NodeUnavailable("n4", "UNAVAILABLE: connection refused"))
    with caplog.at_level(logging.WARNING):
        check("blue", healthy("n1", "blue"), down)
    assert "n4" in caplog.text and "unreachable at startup" in caplog.text


def test_without_cluster_ids_there_is_nothing_to_compare(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check("", healthy("n1", "red"))  # the gateway names no cluster
    with caplog.at_level(logging.WARNING):
        check("blue", healthy("n1", ""))  # the node names none
    assert "reports no cluster id" in caplog.text
