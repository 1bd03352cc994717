"""Circuit breakers, deadlines and retries of storage-node calls (s3compat.nodes.breaker),
as the gRPC client and the cluster use them.

The state machine and the retry loop run on a fake clock. The client's deadlines are
checked against small in-process gRPC servers that misbehave on purpose (never accept a
header, stop reading, never confirm, hang mid-stream); `asyncio.timeout` around them is a
safety net far below gRPC's keepalive (30 s), not a performance threshold.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
import pytest

from nodeserver import wire
from nodeserver.proto import storage_pb2 as pb
from s3compat.app import Runtime
from s3compat.core.models import NodeInfo
from s3compat.core.ports import (
    ChunkCorrupt,
    ChunkNotFound,
    ChunkRejected,
    NodeError,
    NodeUnauthenticated,
    NodeUnavailable,
)
from s3compat.core.ring import Ring
from s3compat.nodes.breaker import (
    CIRCUIT_OPEN,
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    call_with_retries,
    never_opens,
)
from s3compat.nodes.client import GrpcNodeClient
from s3compat.nodes.cluster import NodeCluster
from s3compat.settings import Settings

T = TypeVar("T")
SAFETY_NET = 5.0  # seconds; gRPC keepalive alone would take 30


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def down(node: str = "n1") -> NodeUnavailable:
    return NodeUnavailable(node, "UNAVAILABLE: connection refused")


# --- the state machine ---------------------------------------------------------------


def test_opens_after_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=3, cooldown=5, clock=clock)
    for _ in range(2):
        assert breaker.admit() is False
        breaker.outcome(down())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2
    breaker.admit()
    breaker.outcome(down())
    assert breaker.state is BreakerState.OPEN
    assert breaker.trips == 1


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker("n1", failures=3, clock=FakeClock())
    for outcome in (down(), down(), None, down(), down()):
        breaker.admit()
        breaker.outcome(outcome)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_open_fails_fast_until_the_cooldown_has_passed() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=1, cooldown=5, clock=clock)
    breaker.failed()
    for _ in range(3):
        with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
            breaker.admit()
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
        breaker.admit()
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.trial_possible


def test_half_open_lets_one_trial_through_and_its_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=1, cooldown=5, clock=clock)
    breaker.failed()
    clock.advance(5)
    assert breaker.admit() is True  # the trial
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.trial_possible
    with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
        breaker.admit()  # only one at a time
    breaker.succeeded(trial=True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.admit() is False


def test_a_failed_trial_opens_it_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=2, cooldown=5, clock=clock)
    breaker.failed()
    breaker.failed()
    clock.advance(6)
    trial = breaker.admit()
    clock.advance(1)  # the trial took a while
    breaker.outcome(NodeUnavailable("n1", "DEADLINE_EXCEEDED"), trial)
    assert breaker.state is BreakerState.OPEN
    assert breaker.trips == 2
    clock.advance(4.9)
    with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
        breaker.admit()
    clock.advance(0.1)
    assert breaker.admit() is True


def test_a_cancelled_trial_frees_the_slot_for_another() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=1, cooldown=1, clock=clock)
    breaker.failed()
    clock.advance(1)

    async def cancelled_trial() -> None:
        with breaker.guard():
            raise asyncio.CancelledError  # a hedged read that was outrun

    with pytest.raises(asyncio.CancelledError):
        run(cancelled_trial())
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit() is True


@pytest.mark.parametrize(
    "answer",
    [
        ChunkNotFound("n1", "NOT_FOUND"),
        ChunkCorrupt("n1", "DATA_LOSS"),
        ChunkRejected("n1", "RESOURCE_EXHAUSTED: disk full"),
        NodeUnauthenticated("n1", "UNAUTHENTICATED"),
        NodeError("n1", "INTERNAL"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_logical_answers_do_not_count(answer: NodeError) -> None:
    """The node answered: its breaker counts that as a success, and a trial that gets
    such an answer closes the breaker."""
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=2, cooldown=1, clock=clock)
    for _ in range(5):
        breaker.admit()
        breaker.outcome(down())
        breaker.admit()
        breaker.outcome(answer)
    assert breaker.state is BreakerState.CLOSED
    breaker.failed()
    breaker.failed()
    clock.advance(1)
    trial = breaker.admit()
    breaker.outcome(answer, trial)
    assert breaker.state is BreakerState.CLOSED


def test_late_outcomes_of_calls_admitted_before_it_opened_are_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=2, cooldown=5, clock=clock)
    early = [breaker.admit() for _ in range(4)]  # four calls in flight
    breaker.outcome(down(), early[0])
    breaker.outcome(down(), early[1])
    assert breaker.state is BreakerState.OPEN
    breaker.outcome(None, early[2])  # a straggler answering proves little: still open
    breaker.outcome(down(), early[3])
    assert breaker.state is BreakerState.OPEN
    assert breaker.trips == 1
    clock.advance(5)
    trial = breaker.admit()
    breaker.outcome(None, early[2])  # not the trial: does not decide
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.outcome(None, trial)
    assert breaker.state is BreakerState.CLOSED


def test_guard_records_how_the_call_ended() -> None:
    breaker = CircuitBreaker("n1", failures=2, clock=FakeClock())

    async def call(exc: BaseException | None) -> None:
        with breaker.guard():
            await asyncio.sleep(0)
            if exc is not None:
                raise exc

    with pytest.raises(NodeUnavailable):
        run(call(down()))
    assert breaker.consecutive_failures == 1
    with pytest.raises(ChunkNotFound):
        run(call(ChunkNotFound("n1", "NOT_FOUND")))
    assert breaker.consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(NodeUnavailable):
            run(call(down()))
    with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
        run(call(None))


def test_a_client_without_a_breaker_of_its_own_never_refuses_calls() -> None:
    breaker = never_opens("n1")
    for _ in range(1000):
        assert breaker.admit() is False
        breaker.outcome(down())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 1000


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_bad_parameters_are_refused(failures: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("n1", failures=failures, cooldown=cooldown)


def test_settings_read_the_breaker_variables() -> None:
    settings = Settings.from_env(
        {"S3COMPAT_BREAKER_FAILURES": "3", "S3COMPAT_BREAKER_COOLDOWN": "0.5"}
    )
    assert (settings.breaker_failures, settings.breaker_cooldown) == (3, 0.5)
    env = settings.to_env()
    assert (env["S3COMPAT_BREAKER_FAILURES"], env["S3COMPAT_BREAKER_COOLDOWN"]) == ("3", "0.5")
    assert (Settings().breaker_failures, Settings().breaker_cooldown) == (5, 5.0)


# --- retries -------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_a_cap() -> None:
    policy = RetryPolicy(attempts=10, base=0.1, cap=1.0)
    ceilings = [policy.backoff(r, lambda: 1.0) for r in range(1, 7)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.backoff(3, lambda: 0.0) == 0.0
    assert policy.backoff(3, lambda: 0.5) == pytest.approx(0.2)


class Script:
    """An attempt function that plays a script of outcomes, each after `takes` seconds of
    fake time, and records the budget each attempt was given."""

    def __init__(self, clock: FakeClock, outcomes: list[BaseException | str], takes: float = 0):
        self.clock = clock
        self.outcomes = list(outcomes)
        self.takes = takes
        self.budgets: list[float] = []

    async def __call__(self, left: float) -> str:
        self.budgets.append(left)
        self.clock.advance(min(self.takes, left))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def retried(
    breaker: CircuitBreaker,
    clock: FakeClock,
    attempt: Callable[[float], Awaitable[str]],
    *,
    budget: float = 10.0,
    policy: RetryPolicy | None = None,
) -> str:
    return run(
        call_with_retries(
            breaker,
            attempt,
            budget=budget,
            policy=policy or RetryPolicy(attempts=4, base=0.1, cap=1.0),
            clock=clock,
            sleep=clock.sleep,
            rand=lambda: 1.0,
        )
    )


def test_transport_failures_are_retried_with_backoff_until_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=5, clock=clock)
    script = Script(clock, [down(), down(), "ok"], takes=0.5)
    assert retried(breaker, clock, script) == "ok"
    assert clock.slept == pytest.approx([0.1, 0.2])
    # One budget for the whole call: each attempt is given what is left of it.
    assert script.budgets == pytest.approx([10.0, 9.4, 8.7])
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


def test_logical_failures_are_not_retried() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", clock=clock)
    script = Script(clock, [ChunkNotFound("n1", "NOT_FOUND"), "never"])
    with pytest.raises(ChunkNotFound):
        retried(breaker, clock, script)
    assert len(script.budgets) == 1
    assert clock.slept == []


def test_retries_stop_at_the_attempt_limit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=100, clock=clock)
    script = Script(clock, [down() for _ in range(10)])
    with pytest.raises(NodeUnavailable):
        retried(breaker, clock, script, policy=RetryPolicy(attempts=3, base=0.1))
    assert len(script.budgets) == 3
    assert breaker.consecutive_failures == 3


def test_retries_stay_within_the_budget() -> None:
    """An attempt that uses up the budget (a hung node) is not retried, and neither is one
    whose backoff would end past it."""
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=100, clock=clock)
    hung = Script(clock, [NodeUnavailable("n1", "DEADLINE_EXCEEDED"), "never"], takes=1e9)
    start = clock.now
    with pytest.raises(NodeUnavailable, match="DEADLINE_EXCEEDED"):
        retried(breaker, clock, hung, budget=2.0)
    assert hung.budgets == [2.0]
    assert clock.now - start == pytest.approx(2.0)

    slowish = Script(clock, [down() for _ in range(10)], takes=0.7)
    with pytest.raises(NodeUnavailable):
        retried(breaker, clock, slowish, budget=2.0, policy=RetryPolicy(10, base=0.5, cap=5))
    # 0.7 + 0.5 + 0.7 = 1.9 s spent; the next backoff (1.0 s) would end past 2 s.
    assert len(slowish.budgets) == 2


def test_no_retry_once_the_breaker_has_opened() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=2, clock=clock)
    script = Script(clock, [down() for _ in range(10)])
    with pytest.raises(NodeUnavailable, match="connection refused"):
        retried(breaker, clock, script, policy=RetryPolicy(attempts=10, base=0.1))
    assert len(script.budgets) == 2
    assert breaker.state is BreakerState.OPEN
    never = Script(clock, ["never"])
    with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
        retried(breaker, clock, never)
    assert never.budgets == []


def test_a_failed_trial_is_not_retried() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("n1", failures=1, cooldown=1, clock=clock)
    breaker.failed()
    clock.advance(1)
    script = Script(clock, [down(), "never"])
    with pytest.raises(NodeUnavailable):
        retried(breaker, clock, script)
    assert len(script.budgets) == 1
    assert breaker.state is BreakerState.OPEN


# --- the gRPC client against misbehaving nodes ----------------------------------------

Handler = Callable[..., Any]


@asynccontextmanager
async def fake_node(**methods: grpc.RpcMethodHandler) -> AsyncIterator[str]:
    """An in-process gRPC server implementing some Storage methods; yields its address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(wire.SERVICE, methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def store_handler(behaviour: Handler) -> grpc.RpcMethodHandler:
    return grpc.stream_unary_rpc_method_handler(
        behaviour, response_serializer=pb.StoreChunkResponse.SerializeToString
    )


def retrieve_handler(behaviour: Handler) -> grpc.RpcMethodHandler:
    return grpc.unary_stream_rpc_method_handler(
        behaviour,
        request_deserializer=pb.RetrieveChunkRequest.FromString,
        response_serializer=pb.RetrieveChunkResponse.SerializeToString,
    )


def health_handler(behaviour: Handler) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=pb.HealthRequest.FromString,
        response_serializer=pb.HealthResponse.SerializeToString,
    )


def stat_handler(behaviour: Handler) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=pb.StatRequest.FromString,
        response_serializer=pb.StatResponse.SerializeToString,
    )


async def forever() -> None:
    await asyncio.sleep(3600)


async def healthy(request: Any, context: Any) -> pb.HealthResponse:
    return pb.HealthResponse(node_id="fake", free_bytes=1, chunk_count=0)


def with_client(
    body: Callable[[GrpcNodeClient], Awaitable[T]],
    *,
    deadline: float = 0.3,
    breaker: CircuitBreaker | None = None,
    **methods: grpc.RpcMethodHandler,
) -> T:
    async def main() -> T:
        async with fake_node(**methods) as address:
            client = GrpcNodeClient(
                "n1",
                address,
                token="t",
                deadline=deadline,
                breaker=breaker,
                retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
            )
            try:
                async with asyncio.timeout(SAFETY_NET):
                    return await body(client)
            finally:
                await client.close()

    return run(main())


def test_a_header_the_node_never_accepts_fails_within_the_deadline() -> None:
    async def silent(requests: Any, context: Any) -> None:
        await forever()

    async def body(client: GrpcNodeClient) -> None:
        with pytest.raises(NodeUnavailable, match="chunk header"):
            await client.open_chunk_writer("c1")
        assert client.breaker.consecutive_failures == 1

    with_client(body, StoreChunk=store_handler(silent))


def test_a_write_to_a_node_that_stops_reading_fails_within_the_deadline() -> None:
    """A hung node stops taking data: flow control blocks the write, then the deadline
    ends it. The writer's chunk is lost (the blob writer carries on with its quorum)."""

    async def stuck(requests: Any, context: Any) -> None:
        await context.send_initial_metadata((wire.HEADER_ACCEPTED,))
        await forever()

    async def body(client: GrpcNodeClient) -> None:
        writer = await client.open_chunk_writer("c1")
        piece = b"x" * (1 << 20)
        with pytest.raises(NodeUnavailable, match="took no data"):
            for _ in range(64):
                await writer.write(piece)
        assert client.breaker.consecutive_failures == 1
        await writer.abort()

    with_client(body, StoreChunk=store_handler(stuck))


def test_a_chunk_the_node_never_confirms_fails_within_the_deadline() -> None:
    async def no_answer(requests: Any, context: Any) -> None:
        await context.send_initial_metadata((wire.HEADER_ACCEPTED,))
        async for _ in requests:
            pass
        await forever()  # as if fsync never returned

    async def body(client: GrpcNodeClient) -> None:
        writer = await client.open_chunk_writer("c1")
        await writer.write(b"abc")
        with pytest.raises(NodeUnavailable, match="did not confirm"):
            await writer.finish()
        assert client.breaker.consecutive_failures == 1

    with_client(body, StoreChunk=store_handler(no_answer))


def test_writes_are_refused_while_the_breaker_is_open() -> None:
    opened = CircuitBreaker("n1", failures=1, cooldown=60)
    opened.failed()

    async def never(requests: Any, context: Any) -> None:
        raise AssertionError("the call should not have been made")

    async def body(client: GrpcNodeClient) -> None:
        with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
            await client.open_chunk_writer("c1")

    with_client(body, breaker=opened, StoreChunk=store_handler(never))


def test_a_read_from_a_hung_node_fails_within_the_deadline() -> None:
    calls = itertools.count()

    async def hang(request: Any, context: Any) -> AsyncIterator[pb.RetrieveChunkResponse]:
        next(calls)
        await forever()
        yield pb.RetrieveChunkResponse()

    async def body(client: GrpcNodeClient) -> None:
        with pytest.raises(NodeUnavailable, match="DEADLINE_EXCEEDED"):
            await client.read_chunk("c1", 0, 10)
        # The attempt used the whole budget: no retry.
        assert client.breaker.consecutive_failures == 1

    with_client(body, RetrieveChunk=retrieve_handler(hang))
    assert next(calls) == 1


def test_a_stream_resumes_after_the_last_byte_when_the_connection_fails() -> None:
    data = bytes(range(256)) * 10
    requests: list[tuple[int, int]] = []

    async def flaky(
        request: pb.RetrieveChunkRequest, context: Any
    ) -> AsyncIterator[pb.RetrieveChunkResponse]:
        requests.append((request.offset, request.length))
        end = request.offset + request.length
        if len(requests) == 1:
            yield pb.RetrieveChunkResponse(data=data[request.offset : request.offset + 100])
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        for at in range(request.offset, end, 1000):
            yield pb.RetrieveChunkResponse(data=data[at : min(at + 1000, end)])

    async def body(client: GrpcNodeClient) -> bytes:
        return b"".join([piece async for piece in client.stream_chunk("c1", 5, 2000)])

    assert with_client(body, RetrieveChunk=retrieve_handler(flaky)) == data[5:2005]
    assert requests == [(5, 2000), (105, 1900)]


def test_a_stream_that_stalls_fails_within_the_deadline() -> None:
    """No progress for a deadline ends a stream (a retry would only wait once more)."""

    async def stall(
        request: pb.RetrieveChunkRequest, context: Any
    ) -> AsyncIterator[pb.RetrieveChunkResponse]:
        yield pb.RetrieveChunkResponse(data=b"abc")
        await forever()

    async def body(client: GrpcNodeClient) -> list[bytes]:
        got: list[bytes] = []
        with pytest.raises(NodeUnavailable, match="stalled"):
            async for piece in client.stream_chunk("c1"):
                got.append(piece)
        assert client.breaker.consecutive_failures == 1
        return got

    assert with_client(body, RetrieveChunk=retrieve_handler(stall)) == [b"abc"]


def test_a_transient_failure_is_retried() -> None:
    calls = itertools.count()

    async def once_unavailable(request: Any, context: Any) -> pb.HealthResponse:
        if next(calls) == 0:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return await healthy(request, context)

    async def body(client: GrpcNodeClient) -> None:
        assert (await client.health()).node_id == "fake"
        assert client.breaker.consecutive_failures == 0

    with_client(body, Health=health_handler(once_unavailable))
    assert next(calls) == 2


def test_not_found_is_an_answer_not_a_failure() -> None:
    calls = itertools.count()

    async def missing(request: Any, context: Any) -> pb.StatResponse:
        next(calls)
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such chunk")
        raise AssertionError

    async def body(client: GrpcNodeClient) -> None:
        for _ in range(10):
            assert await client.stat_chunk("c1") is None
        assert client.breaker.state is BreakerState.CLOSED

    with_client(body, Stat=stat_handler(missing))
    assert next(calls) == 10


def test_an_unreachable_node_opens_its_breaker() -> None:
    """Refused connections are retried (4 attempts a call here), and each counts: the
    second call opens the breaker, after which calls fail at once."""

    async def main() -> None:
        async with fake_node() as address:
            pass  # the port is free again: connections to it are refused
        breaker = CircuitBreaker("n1", failures=5, cooldown=60)
        client = GrpcNodeClient(
            "n1", address, deadline=2, breaker=breaker, retry=RetryPolicy(4, 0.01, 0.02)
        )
        try:
            async with asyncio.timeout(SAFETY_NET):
                with pytest.raises(NodeUnavailable):
                    await client.health()
                assert breaker.consecutive_failures == 4
                with pytest.raises(NodeUnavailable):
                    await client.delete_chunk("c1")
                assert breaker.state is BreakerState.OPEN
                for call in (client.health(), client.read_chunk("c1", 0, 1)):
                    with pytest.raises(NodeUnavailable, match=CIRCUIT_OPEN):
                        await call
        finally:
            await client.close()

    run(main())


# --- placement and the health report --------------------------------------------------


def nodes(
    count: int, address: str = "127.0.0.1:1", draining: tuple[str, ...] = ()
) -> list[NodeInfo]:
    return [
        NodeInfo(f"n{i}", address, "draining" if f"n{i}" in draining else "active")
        for i in range(1, count + 1)
    ]


def trip(cluster: NodeCluster, node_id: str) -> None:
    breaker = cluster.breakers()[node_id]
    for _ in range(breaker.threshold):
        breaker.failed()
    assert breaker.state is BreakerState.OPEN


def with_cluster(
    body: Callable[[NodeCluster, FakeClock], Awaitable[T]], infos: list[NodeInfo]
) -> T:
    async def main() -> T:
        clock = FakeClock()
        cluster = NodeCluster(deadline=0.5, breaker_failures=2, breaker_cooldown=5, clock=clock)
        cluster.update(infos)
        try:
            return await body(cluster, clock)
        finally:
            await cluster.close()

    return run(main())


KEYS = [f"{i:032x}" for i in range(40)]


def test_placement_skips_a_node_whose_breaker_is_open() -> None:
    """With seven nodes, the chunk of a node whose breaker is open goes to the next
    healthy node on the ring; the other chunks stay where they were."""

    async def body(cluster: NodeCluster, clock: FakeClock) -> None:
        ring = Ring([n.node_id for n in nodes(7)])
        before = {key: cluster.placement(key, 6) for key in KEYS}
        trip(cluster, "n3")
        for key in KEYS:
            placed = cluster.placement(key, 6)
            assert "n3" not in placed
            assert placed == [n for n in ring.nodes_for(key, 7) if n != "n3"][:6]
            if "n3" in before[key]:
                assert placed[:5] == [n for n in before[key] if n != "n3"]
            else:
                assert placed == before[key]

    with_cluster(body, nodes(7))


def test_placement_with_too_few_healthy_nodes_puts_open_ones_last() -> None:
    """Six nodes, two breakers open: the writer still gets six nodes (it needs one per
    chunk), the healthy ones first in ring order, so the chunks that fail at once are the
    last ones (parity, with 4+2)."""

    async def body(cluster: NodeCluster, clock: FakeClock) -> None:
        ring = Ring([n.node_id for n in nodes(6)])
        trip(cluster, "n2")
        trip(cluster, "n5")
        for key in KEYS:
            order = ring.nodes_for(key, 6)
            placed = cluster.placement(key, 6)
            healthy = [n for n in order if n not in ("n2", "n5")]
            assert placed == healthy + [n for n in order if n in ("n2", "n5")]

    with_cluster(body, nodes(6))


def test_placement_never_uses_inactive_nodes() -> None:
    async def body(cluster: NodeCluster, clock: FakeClock) -> None:
        trip(cluster, "n1")
        for key in KEYS:
            placed = cluster.placement(key, 6)
            assert sorted(placed) == ["n1", "n2", "n3", "n4", "n5", "n6"]
            assert placed[-1] == "n1"
        trip(cluster, "n2")
        with pytest.raises(NodeUnavailable):
            cluster.placement(KEYS[0], 7)

    with_cluster(body, nodes(7, draining=("n7",)))


def test_a_half_open_breaker_is_probed_and_the_node_rejoins_placement() -> None:
    async def main() -> None:
        async with fake_node(Health=health_handler(healthy)) as address:
            clock = FakeClock()
            cluster = NodeCluster(deadline=1, breaker_failures=1, breaker_cooldown=5, clock=clock)
            cluster.update(nodes(7, address))
            try:
                baseline = cluster.placement(KEYS[0], 6)
                victim = baseline[0]
                trip(cluster, victim)
                assert victim not in cluster.placement(KEYS[0], 6)
                await asyncio.sleep(0.05)
                assert cluster.breakers()[victim].state is BreakerState.OPEN  # no probe yet
                clock.advance(5)
                # Still left out while half-open; the placement starts a probe (a Health
                # call, the breaker's trial) that closes it.
                assert victim not in cluster.placement(KEYS[0], 6)
                for _ in range(int(SAFETY_NET / 0.01)):
                    if cluster.breakers()[victim].closed:
                        break
                    await asyncio.sleep(0.01)
                assert cluster.breakers()[victim].closed
                assert cluster.placement(KEYS[0], 6) == baseline
            finally:
                await cluster.close()

    run(main())


def test_the_health_report_shows_each_breaker() -> None:
    async def main() -> None:
        async with fake_node(Health=health_handler(healthy)) as address:
            runtime = Runtime(Settings(node_deadline=1, breaker_failures=1, breaker_cooldown=60))
            runtime.cluster.update(nodes(3, address))
            trip(runtime.cluster, "n2")
            try:
                ok, report = await runtime.health()
            finally:
                await runtime.cluster.close()
        assert not ok
        report_nodes: Any = report["nodes"]
        assert report_nodes["n1"]["status"] == "ok"
        assert report_nodes["n1"]["breaker"] == "closed"
        assert {"used_bytes", "free_bytes", "chunk_count"} <= set(report_nodes["n1"])
        assert report_nodes["n2"] == {
            "status": "unavailable",
            "error": "NodeUnavailable",
            "breaker": "open",
            "consecutive_failures": 1,
        }

    run(main())
