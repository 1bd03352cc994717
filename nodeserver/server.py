"""Build and start the grpc.aio server for one node."""

from __future__ import annotations

import grpc

from nodeserver.auth import TokenInterceptor
from nodeserver.chunkstore import ChunkStore
from nodeserver.service import StorageService
from nodeserver.wire import MAX_MESSAGE_BYTES

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Ping idle clients so a vanished gateway's half-written stream is cancelled (and its
    # temp file removed) instead of waiting forever for the next frame.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # grpcio 1.85 times every ping (keepalive included) out after this, default 60 s.
    ("grpc.http2.ping_timeout_ms", 10_000),
    # Accept the gateway's keepalive pings (every 20 s, also between calls).
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    # gRPC enables SO_REUSEPORT by default: two nodes could then share a port silently.
    ("grpc.so_reuseport", 0),
]


async def start_server(
    store: ChunkStore,
    node_id: str,
    bind: str,
    *,
    token: str | None,
    cluster_id: str = "",
) -> tuple[grpc.aio.Server, StorageService, int]:
    """Start serving on `bind` ("host:port", port 0 picks one); return the bound port.

    With a `token`, every call must carry it (see nodeserver.auth); None serves anyone.
    """
    service = StorageService(store, node_id, cluster_id)
    interceptors = [TokenInterceptor(token)] if token is not None else []
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    server.add_generic_rpc_handlers([service.handler()])
    try:
        port = server.add_insecure_port(bind)
    except RuntimeError as exc:  # grpcio raises instead of returning 0 on bind failure
        raise OSError(f"cannot listen on {bind}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {bind}")
    await server.start()
    return server, service, port
