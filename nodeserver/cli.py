"""`nodeserver --id ID --listen HOST:PORT --data DIR`: run one storage node.

When ready it prints exactly one line to stdout, `nodeserver <ID> listening on
<host>:<port>`, which supervisors (and the tests) parse to learn the port when
`--listen host:0` asked for a free one. Logs go to stderr. SIGTERM or SIGINT stops
gracefully: no new calls, in-flight calls get `--grace` seconds, exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

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
    return parser


async def serve(node_id: str, host: str, port: int, data: Path, grace: float) -> int:
    store = await ChunkStore.open(data)
    try:
        server, _service, bound = await start_server(store, node_id, f"{host}:{port}")
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
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, port = args.listen
    try:
        return asyncio.run(serve(args.id, host, port, args.data, args.grace))
    except (ChunkStoreError, OSError) as exc:
        log.error("node %s cannot run: %s", args.id, exc)
        return 1
