"""Composition root: settings → pool, node clients, ring, janitor → Starlette app.

The only module that wires the layers together (api, service, metadata, nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import asyncpg
from starlette.applications import Starlette

from nodeserver.allocator import tune_malloc
from s3compat import metrics
from s3compat.api.context import Services
from s3compat.api.credentials import CredentialStore
from s3compat.api.gateway import Gateway, build_app
from s3compat.core.layout import CHUNKS_PER_BLOB, Codec
from s3compat.core.ports import NodeClient, NodeHealth, NodeUnauthenticated, NodeUnavailable
from s3compat.logs import setup_logging
from s3compat.metadata.keycrypt import KeyCryptError, MasterKey
from s3compat.metadata.repository import PgMetadata, open_pool
from s3compat.metadata.users import load_access_keys
from s3compat.nodes.client import GrpcNodeClient
from s3compat.nodes.cluster import NodeCluster
from s3compat.service.buckets import BucketService
from s3compat.service.erasure import check_backend
from s3compat.service.janitor import Janitor
from s3compat.service.multipart import MultipartService
from s3compat.service.objects import ObjectService
from s3compat.service.repair import Repairer
from s3compat.settings import Settings

log = logging.getLogger(__name__)

STARTUP_CHECK_DEADLINE = 5.0
"""Seconds each node gets to answer the startup Health check."""

USER_KEYS_REFRESH = 2.0
NODES_REFRESH = 2.0  # seconds between reloads of the node registry
"""Seconds between reloads of the access keys kept in the database: `s3compat admin user
add` needs no restart, and `remove` takes effect within this time."""


def credentials_from(settings: Settings) -> CredentialStore:
    return CredentialStore(
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        user=settings.user,
        path=settings.credentials_file,
    )


class Runtime:
    """The live resources of one gateway process, opened and closed by the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.meta: PgMetadata | None = None
        self.cluster = NodeCluster(
            deadline=settings.node_deadline,
            token=settings.node_token,
            breaker_failures=settings.breaker_failures,
            breaker_cooldown=settings.breaker_cooldown,
        )
        metrics.BREAKERS.source = lambda: {
            node: breaker.state.value for node, breaker in self.cluster.breakers().items()
        }
        self.janitor_task: asyncio.Task[None] | None = None
        self.nodes_task: asyncio.Task[None] | None = None
        self.user_keys_task: asyncio.Task[None] | None = None
        self.master_key: MasterKey | None = None
        if settings.master_key:
            try:
                self.master_key = MasterKey(settings.master_key)
            except KeyCryptError as exc:
                raise SystemExit(f"S3COMPAT_MASTER_KEY: {exc}") from None
        self._pool: asyncpg.Pool | None = None
        self._refreshing: asyncio.Task[None] | None = None

    def janitor(self) -> Janitor:
        assert self.meta is not None
        return Janitor(
            self.meta,
            self.cluster,
            stale_write_after=timedelta(seconds=self.settings.stale_write_after),
            retry_after=timedelta(seconds=self.settings.janitor_retry),
            upload_ttl=timedelta(seconds=self.settings.upload_ttl),
            repairer=self.repairer(),
        )

    def repairer(self) -> Repairer:
        assert self.meta is not None
        return Repairer(self.meta, self.cluster)

    async def open(self) -> None:
        s = self.settings
        if not s.database_url:
            raise SystemExit("DATABASE_URL is not set")
        pool = await open_pool(s.database_url, on_statement=metrics.count_statement)
        self._pool = pool
        self.meta = PgMetadata(pool, delete_grace=timedelta(seconds=s.delete_grace))
        if not s.node_token:
            log.warning("S3COMPAT_NODE_TOKEN is not set: nodes that require a token refuse us")
        # The configured nodes are checked before they are registered, so a gateway
        # pointed at another cluster's nodes never writes their addresses into this one.
        configured = [
            GrpcNodeClient(node_id, address, token=s.node_token, deadline=STARTUP_CHECK_DEADLINE)
            for node_id, address in s.nodes
        ]
        try:
            await self.check_nodes(configured)
        finally:
            await asyncio.gather(*(c.close() for c in configured))
        for node_id, address in s.nodes:
            await self.meta.upsert_node(node_id, address)
        self.cluster.update(await self.meta.list_nodes())
        known = {node_id for node_id, _ in s.nodes}
        await self.check_nodes([c for c in self.cluster.all_clients() if c.node_id not in known])

    async def refresh_nodes(self, interval: float) -> None:
        """Follow the node registry: `s3compat admin node add|drain|remove` reach every
        gateway within `interval` seconds, without a restart. A failed read keeps the
        nodes we have."""
        assert self.meta is not None
        while True:
            await asyncio.sleep(interval)
            try:
                self.cluster.update(await self.meta.list_nodes())
            except Exception as exc:
                log.warning("node registry not reloaded: %r", exc)

    async def check_nodes(self, clients: Sequence[NodeClient]) -> None:
        """Refuse to run (SystemExit) if a node belongs to another cluster: it reports
        another cluster id, or refuses our token. A node that does not answer may come
        back later, so that is only a warning."""
        expected = self.settings.cluster_id
        results = await asyncio.gather(
            *(asyncio.wait_for(c.health(), STARTUP_CHECK_DEADLINE + 1) for c in clients),
            return_exceptions=True,
        )
        problems: list[str] = []
        for client, result in zip(clients, results, strict=True):
            name = f"node {client.node_id} ({client.address})"
            if isinstance(result, NodeUnauthenticated):
                problems.append(f"{name} refused this gateway's S3COMPAT_NODE_TOKEN")
            elif isinstance(result, (NodeUnavailable, TimeoutError)):
                log.warning("%s is unreachable at startup: %s", name, result)
            elif isinstance(result, BaseException):
                log.warning("%s failed its startup health check: %r", name, result)
            else:
                problems.extend(_identity_problems(name, client.node_id, result, expected))
        if problems:
            message = "not starting: " + "; ".join(problems)
            log.error("%s", message)
            raise SystemExit(message)

    async def load_user_keys(self, credentials: CredentialStore) -> None:
        """Replace the store's database keys with the current rows, decrypted."""
        if self.master_key is None or self._pool is None:
            return
        credentials.replace_db_entries(await load_access_keys(self._pool, self.master_key))

    async def refresh_user_keys(self, credentials: CredentialStore, interval: float) -> None:
        """Reload the database keys every `interval` seconds. A failed reload keeps the
        previous keys (a database outage must not lock every user out)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.load_user_keys(credentials)
            except Exception as exc:
                log.warning("access keys not reloaded from the database: %r", exc)

    def request_user_keys_refresh(self, credentials: CredentialStore) -> None:
        """An unknown access key was presented: reload now, in the background (the store
        calls this at most once per second)."""
        if self.master_key is None or self._pool is None:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return

        async def refresh() -> None:
            try:
                await self.load_user_keys(credentials)
            except Exception as exc:
                log.warning("access keys not reloaded from the database: %r", exc)

        with contextlib.suppress(RuntimeError):  # no loop: a lookup outside the server
            self._refreshing = asyncio.get_running_loop().create_task(refresh())

    async def close(self) -> None:
        for task in (self.user_keys_task, self._refreshing, self.nodes_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.janitor_task is not None:
            self.janitor_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.janitor_task
        await self.cluster.close()
        if self.meta is not None:
            await self.meta.close()

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Database and per-node status, for /-/health. No addresses or secrets.

        Each node also shows its circuit breaker (`breaker`: closed, open or half-open),
        read after the check, which may have changed it: a node whose breaker is open
        answers "unavailable" at once, without waiting for a hung node's deadline.
        """
        report: dict[str, object] = {}
        ok = True
        try:
            assert self.meta is not None
            await asyncio.wait_for(self.meta.ping(), 5)
            report["database"] = {"status": "ok"}
        except Exception as exc:
            ok = False
            report["database"] = {"status": "unavailable", "error": type(exc).__name__}
        results: dict[str, object] = {}
        clients = self.cluster.all_clients()
        checks = await asyncio.gather(*(c.health() for c in clients), return_exceptions=True)
        breakers = self.cluster.breakers()
        for client, result in zip(clients, checks, strict=True):
            node: dict[str, object]
            if isinstance(result, BaseException):
                ok = False
                node = {"status": "unavailable", "error": type(result).__name__}
            else:
                node = {
                    "status": "ok",
                    "used_bytes": result.used_bytes,
                    "free_bytes": result.free_bytes,
                    "chunk_count": result.chunk_count,
                }
            breaker = breakers.get(client.node_id)
            if breaker is not None:
                node["breaker"] = breaker.state.value
                node["consecutive_failures"] = breaker.consecutive_failures
            results[client.node_id] = node
        report["nodes"] = results
        report["status"] = "ok" if ok else "degraded"
        return ok, report


def _identity_problems(name: str, node_id: str, health: NodeHealth, expected: str) -> list[str]:
    """Fatal mismatches in a node's Health answer (warnings are logged here)."""
    if health.node_id != node_id:
        log.warning("%s calls itself %r", name, health.node_id)
    if not expected:
        return []
    if not health.cluster_id:
        log.warning("%s reports no cluster id (start it with --cluster-id)", name)
        return []
    if health.cluster_id != expected:
        return [
            f"{name} belongs to cluster {health.cluster_id!r}, "
            f"not to S3COMPAT_CLUSTER_ID {expected!r}"
        ]
    return []


@contextlib.asynccontextmanager
async def standalone_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The database and the registered nodes, wired as a gateway's, without the HTTP side
    (`s3compat cleanup`, `scrub`, `rebalance`, `admin node`).

    The nodes come from the database's `nodes` table (plus any in S3COMPAT_NODES), where
    every gateway registers the ones it was configured with.
    """
    runtime = Runtime(settings)
    try:
        await runtime.open()
        yield runtime
    finally:
        await runtime.close()


def codec_from(settings: Settings) -> Codec:
    """The codec of new blobs, checked: one chunk per node, and a workable quorum."""
    codec = Codec(settings.ec_k, settings.ec_m, settings.fragment_size)
    if codec.width != CHUNKS_PER_BLOB:
        raise ValueError(
            f"S3COMPAT_EC_K + S3COMPAT_EC_M must be {CHUNKS_PER_BLOB}, not {codec.width}"
        )
    quorum = settings.write_quorum
    if quorum is not None and not codec.k <= quorum <= codec.width:
        raise ValueError(f"S3COMPAT_WRITE_QUORUM must be between {codec.k} and {codec.width}")
    if codec.m:
        check_backend()
    return codec


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app for one gateway process (uvicorn calls this as a factory)."""
    settings = settings or Settings.from_env()
    setup_logging(settings.log_level, settings.log_format)
    tune_malloc()  # before the first bulk buffer: see nodeserver/allocator.py
    runtime = Runtime(settings)
    credentials = credentials_from(settings)
    codec = codec_from(settings)

    gateway = Gateway(
        services=None,  # set by the lifespan, once the pool exists
        credentials=credentials,
        health=runtime.health,
        virtual_host_domain=settings.virtual_host_domain,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.open()
        assert runtime.meta is not None
        gateway.services = Services(
            buckets=BucketService(runtime.meta, settings.region),
            objects=ObjectService(
                runtime.meta,
                runtime.cluster,
                codec,
                max_put_size=settings.max_put_size,
                inline_max=settings.inline_max,
                heartbeat=settings.heartbeat_interval,
                quorum=settings.write_quorum,
                hedge=settings.hedge_delay,
                report=runtime.repairer().report,
            ),
            multipart=MultipartService(
                runtime.meta,
                runtime.cluster,
                codec,
                min_part_size=settings.min_part_size,
                heartbeat=settings.heartbeat_interval,
                quorum=settings.write_quorum,
                hedge=settings.hedge_delay,
            ),
            region=settings.region,
            body_idle_timeout=settings.body_idle_timeout,
        )
        runtime.janitor_task = asyncio.create_task(
            runtime.janitor().run_forever(settings.janitor_interval)
        )
        runtime.nodes_task = asyncio.create_task(runtime.refresh_nodes(NODES_REFRESH))
        if runtime.master_key is not None:
            await runtime.load_user_keys(credentials)
            runtime.user_keys_task = asyncio.create_task(
                runtime.refresh_user_keys(credentials, USER_KEYS_REFRESH)
            )
            credentials.set_miss_hook(lambda: runtime.request_user_keys_refresh(credentials))
        else:
            log.info("S3COMPAT_MASTER_KEY is not set: users kept in the database are not loaded")
        try:
            yield
        finally:
            await runtime.close()

    return build_app(gateway, lifespan)
