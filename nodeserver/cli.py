"""`nodeserver --id ID --listen HOST:PORT --data DIR --token-file FILE`: run one storage node.

Only calls carrying the cluster's shared token are served. The token comes from
`--token-file` or the environment variable S3COMPAT_NODE_TOKEN, never from the command
line (which `ps` shows to every user); a node without one refuses to start unless
`--insecure-no-token` says to serve anyone. `--cluster-id` (or S3COMPAT_CLUSTER_ID) is
reported by Health, so that a gateway can refuse nodes of another cluster.

When ready it prints exactly one line to stdout, `nodeserver <ID> listening on
<host>:<port>`, which supervisors (and the tests) parse to learn the port when
`--listen host:0` asked for a free one. Logs go to stderr. SIGTERM or SIGINT stops
gracefully: no new calls, in-flight calls get `--grace` seconds, exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from nodeserver.allocator import tune_malloc
from nodeserver.auth import CLUSTER_ID_ENV, TOKEN_ENV, TokenError, read_token_file
from nodeserver.chunkstore import ChunkStore
from nodeserver.errors import ChunkStoreError
from nodeserver.server import start_server

log = logging.getLogger("nodeserver")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051


def parse_listen(value: str) -> tuple[str, int]:
    """Parse `host:port`, `:port` or `port` (host defaults to 127.0.0.1); IPv6 as `[::1]:port`."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "", value
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port in {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {value!r}")
    return host or DEFAULT_HOST, port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodeserver", description="s3compat storage node")
    parser.add_argument("--id", required=True, help="node id reported by Health")
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=(DEFAULT_HOST, DEFAULT_PORT),
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_HOST}:{DEFAULT_PORT}; port 0 = any free)",
    )
    parser.add_argument("--data", type=Path, required=True, help="data directory")
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds in-flight calls get at shutdown"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the cluster's shared token (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--insecure-no-token",
        action="store_true",
        help="serve without a token: anyone who can connect may read and delete chunks",
    )
    parser.add_argument(
        "--cluster-id",
        default=None,
        metavar="ID",
        help=f"cluster id reported by Health (default: ${CLUSTER_ID_ENV})",
    )
    return parser


def resolve_token(args: argparse.Namespace, env: dict[str, str] | None = None) -> str | None:
    """The token to require: from --token-file, else the environment; None only with
    --insecure-no-token. Raises TokenError when there is none and that flag is absent."""
    env = dict(os.environ) if env is None else env
    if args.token_file is not None:
        return read_token_file(args.token_file)
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    if args.insecure_no_token:
        return None
    raise TokenError(
        f"no cluster token: give --token-file PATH or set {TOKEN_ENV} "
        "(or --insecure-no-token to serve anyone)"
    )


async def serve(
    node_id: str,
    host: str,
    port: int,
    data: Path,
    grace: float,
    *,
    token: str | None,
    cluster_id: str = "",
) -> int:
    store = await ChunkStore.open(data)
    try:
        server, _service, bound = await start_server(
            store, node_id, f"{host}:{port}", token=token, cluster_id=cluster_id
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"nodeserver {node_id} listening on {host}:{bound}", flush=True)
        log.info("node %s serving %s on %s:%d", node_id, data, host, bound)
        await stop.wait()
        log.info("node %s stopping (grace %.1fs)", node_id, grace)
        await server.stop(grace)
    finally:
        await store.close()
    log.info("node %s stopped", node_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, port = args.listen
    try:
        token = resolve_token(args)
    except TokenError as exc:
        log.error("node %s cannot run: %s", args.id, exc)
        return 2
    if token is None:
        log.warning(
            "node %s serves WITHOUT a token (--insecure-no-token): anyone who can reach "
            "%s:%d may read, write and delete its chunks",
            args.id,
            host,
            port,
        )
    cluster_id = args.cluster_id
    if cluster_id is None:
        cluster_id = os.environ.get(CLUSTER_ID_ENV, "")
    try:
        return asyncio.run(
            serve(args.id, host, port, args.data, args.grace, token=token, cluster_id=cluster_id)
        )
    except (ChunkStoreError, OSError) as exc:
        log.error("node %s cannot run: %s", args.id, exc)
        return 1
