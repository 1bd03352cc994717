"""The set of storage nodes a gateway talks to: one gRPC client (and breaker) per node, and
the ring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from s3compat.core.models import NodeInfo
from s3compat.core.ports import NodeClient, NodeError, NodeUnavailable
from s3compat.core.ring import NotEnoughNodes, Ring
from s3compat.nodes.breaker import (
    DEFAULT_COOLDOWN,
    DEFAULT_FAILURES,
    DEFAULT_RETRY,
    CircuitBreaker,
    Clock,
    RetryPolicy,
)
from s3compat.nodes.client import DEFAULT_DEADLINE, GrpcNodeClient

log = logging.getLogger(__name__)


class NodeCluster:
    """Implements core.ports.NodeDirectory over gRPC.

    Placement uses only active nodes, and prefers those whose breaker is closed; reads and
    deletes may still address a node that is draining. Membership changes build a new Ring
    and swap the reference (the ring itself is immutable).
    """

    def __init__(
        self,
        *,
        deadline: float = DEFAULT_DEADLINE,
        token: str | None = None,
        breaker_failures: int = DEFAULT_FAILURES,
        breaker_cooldown: float = DEFAULT_COOLDOWN,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = time.monotonic,
    ) -> None:
        self._deadline = deadline
        self._token = token
        self._breaker_failures = breaker_failures
        self._breaker_cooldown = breaker_cooldown
        self._retry = retry
        self._clock = clock
        self._clients: dict[str, GrpcNodeClient] = {}
        self._ring = Ring([])
        self._inactive: frozenset[str] = frozenset()
        self._probes: dict[str, asyncio.Task[None]] = {}

    def update(self, nodes: Iterable[NodeInfo]) -> None:
        nodes = list(nodes)
        for info in nodes:
            current = self._clients.get(info.node_id)
            if current is None or current.address != info.address:
                # A new address is a new process, maybe a new machine: a fresh breaker.
                breaker = CircuitBreaker(
                    info.node_id,
                    failures=self._breaker_failures,
                    cooldown=self._breaker_cooldown,
                    clock=self._clock,
                )
                self._clients[info.node_id] = GrpcNodeClient(
                    info.node_id,
                    info.address,
                    token=self._token,
                    deadline=self._deadline,
                    breaker=breaker,
                    retry=self._retry,
                )
        self._inactive = frozenset(n.node_id for n in nodes if n.state != "active")
        self._ring = Ring([n.node_id for n in nodes])

    def client(self, node_id: str) -> NodeClient:
        try:
            return self._clients[node_id]
        except KeyError:
            raise NodeUnavailable(node_id, "not a known storage node") from None

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each known node's breaker, by node id."""
        return {node_id: c.breaker for node_id, c in self._clients.items()}

    def _tripped(self) -> set[str]:
        """Nodes whose breaker is not closed. A half-open one is probed in the background,
        so that it returns to placement without waiting for some other call to try it."""
        tripped = set()
        for node_id, client in self._clients.items():
            breaker = client.breaker
            if not breaker.closed:
                tripped.add(node_id)
                if breaker.trial_possible:
                    self._probe(client)
        return tripped

    def _probe(self, client: GrpcNodeClient) -> None:
        if client.node_id in self._probes:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): some later call will be the trial

        async def probe() -> None:
            # The health call is the breaker's trial: it closes or re-opens the breaker.
            try:
                await client.health()
            except NodeError as exc:
                log.debug("breaker probe of node %s failed: %s", client.node_id, exc)
            except Exception:
                log.warning("breaker probe of node %s failed", client.node_id, exc_info=True)

        task = loop.create_task(probe(), name=f"breaker-probe-{client.node_id}")
        self._probes[client.node_id] = task
        task.add_done_callback(lambda _: self._probes.pop(client.node_id, None))

    def ring_placement(self, key: str, n: int) -> list[str]:
        try:
            return self._ring.nodes_for(key, n, exclude=self._inactive)
        except NotEnoughNodes as exc:
            raise NodeUnavailable("*", str(exc)) from exc

    def placement(self, key: str, n: int) -> list[str]:
        """n distinct active nodes for `key`: those with a closed breaker first, in ring
        order, then (only when too few are closed) those whose breaker is open.

        A chunk whose ring node's breaker is open therefore goes to the next healthy node
        on the ring. Open-breaker nodes are still returned rather than a shorter list: the
        writer expects one node per chunk, and a chunk given to an open breaker fails at
        once ("circuit open") and is recorded missing, which the write quorum allows for.
        They come last, so with 4+2 the chunks they get are parity: reads of the new blob
        need no rebuild. NodeUnavailable when fewer than n nodes are active at all.
        """
        tripped = self._tripped()
        try:
            if not tripped & set(self._ring.nodes):
                return self._ring.nodes_for(key, n, exclude=self._inactive)
            active = len(self._ring) - len(self._inactive)
            order = self._ring.nodes_for(key, max(n, active), exclude=self._inactive)
        except NotEnoughNodes as exc:
            raise NodeUnavailable("*", str(exc)) from exc
        healthy = [node for node in order if node not in tripped]
        if len(healthy) < n:
            log.debug(
                "placement of %s: only %d nodes with a closed breaker, %d chunks go to "
                "nodes whose breaker is open",
                key,
                len(healthy),
                n - len(healthy),
            )
        return (healthy + [node for node in order if node in tripped])[:n]

    def all_clients(self) -> list[NodeClient]:
        return list(self._clients.values())

    async def close(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(c.close() for c in self._clients.values()))
