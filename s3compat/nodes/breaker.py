"""Per-node circuit breakers, and retries of idempotent node calls.

Why a breaker: a node that hangs (SIGSTOP, a stuck disk, a half-open connection) costs
every call the full deadline before it fails. Once a node has failed `failures` calls in a
row its breaker *opens*: calls fail at once with NodeUnavailable("circuit open"), readers
rebuild from parity without waiting, and placement puts new chunks on other nodes. After
`cooldown` seconds the breaker is *half-open*: exactly one trial call goes through (the
others still fail at once); its success closes the breaker, its failure opens it again for
another cool-down.

Only transport failures count (NodeUnavailable: UNAVAILABLE, DEADLINE_EXCEEDED, refused
connections, our own deadlines). A logical answer (ChunkNotFound, ChunkCorrupt,
ChunkRejected, a refused token) proves the node is up, so it counts as a success for the
breaker even though the call failed. A call cancelled by its caller (a hedged read that was
outrun) proves nothing either way and is only released.

Why retries here: a transient transport failure (a reset connection, a node restarting)
should not cost a GET a rebuild or a janitor pass a deferral. Only idempotent calls retry
(reads, stat, delete, health), with exponential backoff and full jitter (so gateways that
lost a node together do not retry in step), within one total budget (the node deadline),
and never once the breaker has opened. Writes are not retried: a lost chunk is the
writer's business (it commits with its quorum and records the chunk missing).

Everything runs on one event loop, so no locks. Each gateway process (uvicorn worker) has
its own breakers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from s3compat.core.ports import NodeError, NodeUnauthenticated, NodeUnavailable

log = logging.getLogger(__name__)

_T = TypeVar("_T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_FAILURES = 5
"""Consecutive transport failures that open a breaker (S3COMPAT_BREAKER_FAILURES)."""

DEFAULT_COOLDOWN = 5.0
"""Seconds an open breaker rejects calls before it lets a trial through
(S3COMPAT_BREAKER_COOLDOWN)."""

CIRCUIT_OPEN = "circuit open"


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


def is_transport_failure(exc: BaseException) -> bool:
    """Did the node fail to answer (as opposed to answering no)?

    NodeUnauthenticated subclasses NodeUnavailable for the service layer's sake (the node
    is unusable), but a refused token is an answer: retrying it or tripping on it is wrong.
    """
    return isinstance(exc, NodeUnavailable) and not isinstance(exc, NodeUnauthenticated)


class CircuitBreaker:
    """closed → (failures in a row) → open → (cool-down) → half-open → one trial →
    closed on success, open again on failure.

    Calls go through `guard()` (or `admit` and one of `succeeded`/`failed`/`released`).
    Outcomes of calls admitted before the breaker opened are ignored once it has: only the
    trial decides how it leaves half-open.
    """

    def __init__(
        self,
        node_id: str,
        *,
        failures: int = DEFAULT_FAILURES,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Clock = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("a breaker needs at least one failure to open")
        if cooldown < 0:
            raise ValueError("a breaker's cool-down cannot be negative")
        self.node_id = node_id
        self.threshold = failures
        self.cooldown = cooldown
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive transport failures while closed
        self._opened_at = 0.0
        self._trial = False  # half-open: the trial call is in flight
        self.trips = 0  # times it opened (from closed or after a failed trial)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.node_id!r}, {self.state.value})"

    @property
    def state(self) -> BreakerState:
        """The state as a caller would meet it now: an open breaker whose cool-down has
        passed is half-open (its next call is the trial)."""
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is BreakerState.CLOSED

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def trial_possible(self) -> bool:
        """Would `admit()` let a trial call through now?"""
        return self.state is BreakerState.HALF_OPEN and not self._trial

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.cooldown

    def _open(self, why: object) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial = False
        self.trips += 1
        log.warning(
            "node %s: circuit breaker open for %gs after %d consecutive failures (%s)",
            self.node_id,
            self.cooldown,
            self._failures,
            why,
        )

    def admit(self) -> bool:
        """Let a call through, or raise NodeUnavailable("circuit open").

        Returns True when the call is the half-open trial: report its outcome with the same
        flag, or the breaker waits for a trial forever.
        """
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.OPEN:
            if not self._cooled_down():
                raise NodeUnavailable(self.node_id, CIRCUIT_OPEN)
            self._state = BreakerState.HALF_OPEN
            self._trial = False
        if self._trial:
            raise NodeUnavailable(self.node_id, CIRCUIT_OPEN)
        self._trial = True
        return True

    def succeeded(self, trial: bool = False) -> None:
        """The node answered (even if the answer was an error of its own)."""
        if trial or self._state is BreakerState.CLOSED:
            if self._state is not BreakerState.CLOSED:
                log.info("node %s: circuit breaker closed (the node answers again)", self.node_id)
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._trial = False

    def failed(self, trial: bool = False, why: object = "") -> None:
        """The node did not answer: a transport failure."""
        if trial:
            self._failures += 1
            self._open(why)
        elif self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.threshold:
                self._open(why)

    def released(self, trial: bool = False) -> None:
        """The call ended without telling anything (cancelled): free the trial slot."""
        if trial and self._state is BreakerState.HALF_OPEN:
            self._trial = False

    def outcome(self, exc: BaseException | None, trial: bool = False) -> None:
        """Record how a call ended: None for success, else the exception it raised."""
        if exc is None:
            self.succeeded(trial)
        elif is_transport_failure(exc):
            self.failed(trial, exc)
        elif isinstance(exc, NodeError):
            self.succeeded(trial)  # the node answered, with an error
        else:
            self.released(trial)  # cancelled, or our own bug: nothing learnt of the node

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Admit one call (raising "circuit open" if the breaker refuses) and record how
        the body ends. Wrap exactly one attempt: `with breaker.guard(): await call()`."""
        trial = self.admit()
        try:
            yield
        except BaseException as exc:
            self.outcome(exc, trial)
            raise
        self.succeeded(trial)


def never_opens(node_id: str) -> CircuitBreaker:
    """A breaker that counts failures but never refuses a call: for clients outside a
    cluster (startup checks, tools, tests), where refusing would only delay the answer."""
    return CircuitBreaker(node_id, failures=sys.maxsize)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: before retry r (1, 2, …) sleep a uniform
    random time in [0, min(cap, base · 2^(r-1))). `attempts` counts the first try."""

    attempts: int = 4
    base: float = 0.05
    cap: float = 1.0

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        return rand() * min(self.cap, self.base * 2.0 ** (retry - 1))


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


async def call_with_retries(
    breaker: CircuitBreaker,
    attempt: Callable[[float], Awaitable[_T]],
    *,
    budget: float,
    policy: RetryPolicy = DEFAULT_RETRY,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> _T:
    """Run `attempt(seconds left)` through the breaker; retry transport failures.

    The whole thing, retries and sleeps included, stays within `budget` seconds: each
    attempt is handed what is left (it must give up by then), and a retry whose backoff
    would end past the budget is not made. Logical failures are raised at once. Once the
    breaker has opened the last failure is raised, without another try.
    """
    end = clock() + budget
    retry = 0
    while True:
        trial = breaker.admit()
        try:
            result = await attempt(max(0.0, end - clock()))
        except BaseException as exc:
            breaker.outcome(exc, trial)
            if not is_transport_failure(exc):
                raise
            failure = exc
        else:
            breaker.succeeded(trial)
            return result
        retry += 1
        if retry >= policy.attempts or not breaker.closed:
            raise failure
        delay = policy.backoff(retry, rand)
        if clock() + delay >= end:
            raise failure
        await sleep(delay)
