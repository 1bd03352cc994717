"""The set of storage nodes a gateway talks to: one gRPC client per node, and the ring."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from s3compat.core.models import NodeInfo
from s3compat.core.ports import NodeClient, NodeUnavailable
from s3compat.core.ring import NotEnoughNodes, Ring
from s3compat.nodes.client import GrpcNodeClient


class NodeCluster:
    """Implements core.ports.NodeDirectory over gRPC.

    Placement uses only active nodes; reads and deletes may still address a node that is
    draining. Membership changes build a new Ring and swap the reference (the ring itself
    is immutable).
    """

    def __init__(self, *, deadline: float = 10.0, token: str | None = None) -> None:
        self._deadline = deadline
        self._token = token
        self._clients: dict[str, GrpcNodeClient] = {}
        self._ring = Ring([])
        self._inactive: frozenset[str] = frozenset()

    def update(self, nodes: Iterable[NodeInfo]) -> None:
        nodes = list(nodes)
        for info in nodes:
            current = self._clients.get(info.node_id)
            if current is None or current.address != info.address:
                self._clients[info.node_id] = GrpcNodeClient(
                    info.node_id, info.address, token=self._token, deadline=self._deadline
                )
        self._inactive = frozenset(n.node_id for n in nodes if n.state != "active")
        self._ring = Ring([n.node_id for n in nodes])

    def client(self, node_id: str) -> NodeClient:
        try:
            return self._clients[node_id]
        except KeyError:
            raise NodeUnavailable(node_id, "not a known storage node") from None

    def placement(self, key: str, n: int) -> list[str]:
        try:
            return self._ring.nodes_for(key, n, exclude=self._inactive)
        except NotEnoughNodes as exc:
            raise NodeUnavailable("*", str(exc)) from exc

    def all_clients(self) -> list[NodeClient]:
        return list(self._clients.values())

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._clients.values()))
