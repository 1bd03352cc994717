"""`s3compat admin node …` and `s3compat rebalance`: the node registry in PostgreSQL, shared
by every gateway (each reloads it every two seconds), and moving chunks to where the ring
now puts them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from s3compat.cli_common import ProgressBar, add_target, target_settings
from s3compat.settings import Settings


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    admin_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    node = admin_sub.add_parser("node", help="storage nodes in the registry all gateways share")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    add = node_sub.add_parser(
        "add", help="register a running nodeserver (its cluster id and token are checked)"
    )
    add.add_argument("node_id")
    add.add_argument("address", help="HOST:PORT the node listens on")
    drain = node_sub.add_parser(
        "drain", help="take no new chunks; `s3compat rebalance` then moves its chunks away"
    )
    drain.add_argument("node_id")
    activate = node_sub.add_parser("activate", help="undo drain: take new chunks again")
    activate.add_argument("node_id")
    remove = node_sub.add_parser(
        "remove", help="forget a node (refused while it still holds chunks: drain it first)"
    )
    remove.add_argument("node_id")
    listing = node_sub.add_parser("list", help="nodes, their state and how many chunks each holds")
    rebalance = sub.add_parser(
        "rebalance",
        help="move the chunks whose placement changed (after adding or draining nodes)",
    )
    for p in (add, drain, activate, remove, listing, rebalance):
        add_target(p)


def _settings(args: argparse.Namespace, prog: str) -> Settings | None:
    settings = target_settings(args, prog)
    if settings is not None:
        logging.basicConfig(
            stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s"
        )
    return settings


class NodeCommandError(Exception):
    pass


async def _node_command(settings: Settings, args: argparse.Namespace) -> list[str]:
    from s3compat.app import standalone_runtime
    from s3compat.nodes.client import GrpcNodeClient

    async with standalone_runtime(settings) as runtime:
        meta = runtime.meta
        assert meta is not None
        command = args.node_command
        if command == "add":
            client = GrpcNodeClient(
                args.node_id, args.address, token=settings.node_token, deadline=5.0
            )
            try:
                health = await client.health()
                await runtime.check_nodes([client])
            except Exception as exc:
                raise NodeCommandError(f"node {args.node_id} at {args.address}: {exc}") from None
            finally:
                await client.close()
            if health.node_id != args.node_id:
                raise NodeCommandError(
                    f"the node at {args.address} says it is {health.node_id!r}, "
                    f"not {args.node_id!r}"
                )
            if not await meta.add_node(args.node_id, args.address):
                raise NodeCommandError(f"node {args.node_id} is already registered")
            return [f"added node {args.node_id} at {args.address}; run `s3compat rebalance`"]
        if command in ("drain", "activate"):
            state = "draining" if command == "drain" else "active"
            if not await meta.set_node_state(args.node_id, state):
                raise NodeCommandError(f"no node {args.node_id}")
            hint = "; run `s3compat rebalance` to move its chunks" if command == "drain" else ""
            return [f"node {args.node_id} is {state}{hint}"]
        if command == "remove":
            if not await meta.remove_empty_node(args.node_id):
                held = (await meta.chunks_per_node()).get(args.node_id)
                if held:
                    raise NodeCommandError(
                        f"node {args.node_id} still holds {held} chunks: drain it and rebalance"
                    )
                raise NodeCommandError(f"no node {args.node_id}")
            return [f"removed node {args.node_id}"]
        counts = await meta.chunks_per_node()
        return [
            f"{n.node_id}\t{n.address}\t{n.state}\t{counts.get(n.node_id, 0)} chunks"
            for n in await meta.list_nodes()
        ]


def admin_node(args: argparse.Namespace) -> int:
    prog = f"s3compat admin node {args.node_command}"
    settings = _settings(args, prog)
    if settings is None:
        return 2
    try:
        lines = asyncio.run(_node_command(settings, args))
    except NodeCommandError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines), flush=True)
    return 0


def rebalance(args: argparse.Namespace) -> int:
    from s3compat.app import standalone_runtime
    from s3compat.service.rebalance import Rebalancer, RebalanceReport

    prog = "s3compat rebalance"
    settings = _settings(args, prog)
    if settings is None:
        return 2
    bar = ProgressBar()

    def progress(report: RebalanceReport) -> None:
        bar.show(
            report.checked,
            report.blobs,
            f"blobs, {report.moved} chunks moved, {report.failed} failed",
        )

    async def run() -> RebalanceReport:
        async with standalone_runtime(settings) as runtime:
            assert runtime.meta is not None
            return await Rebalancer(runtime.meta, runtime.cluster, progress=progress).run()

    try:
        report = asyncio.run(run())
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; run it again to finish", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\n{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    share = report.moved / report.chunks if report.chunks else 0.0
    print(
        f"interrupted moves settled: {report.resumed}\n"
        f"blobs: {report.checked}\nchunks: {report.chunks}\nmoved: {report.moved}\n"
        f"moved share: {share:.4f}\nfailed: {report.failed}\n"
        f"awaiting repair: {report.skipped}\nbytes moved: {report.bytes_moved}",
        flush=True,
    )
    return 0 if report.failed == 0 else 1
