"""`s3compat` command line: dev, serve, cleanup, scrub, rebalance, admin."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from s3compat import cli_nodes
from s3compat.cli_common import ProgressBar, add_target, dev_database_url, target_settings
from s3compat.settings import Settings

if TYPE_CHECKING:
    from s3compat.metadata.keycrypt import MasterKey
    from s3compat.service.janitor import JanitorReport
    from s3compat.service.scrub import ScrubReport


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3compat", description="S3-compatible object store")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev", help="start PostgreSQL, six storage nodes and a gateway on this machine"
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="where everything is kept (default ./data)",
    )
    dev.add_argument("--host", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=9000, help="gateway port (default 9000)")
    dev.add_argument(
        "--access-key",
        default=os.environ.get("S3COMPAT_ACCESS_KEY"),
        help="access key (default: $S3COMPAT_ACCESS_KEY, else generated once)",
    )
    dev.add_argument(
        "--secret-key",
        default=os.environ.get("S3COMPAT_SECRET_KEY"),
        help="secret key (default: $S3COMPAT_SECRET_KEY, else generated once)",
    )
    dev.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS on --port, with a certificate from a private CA made once under "
        "DATA_DIR/tls (its ca.pem path is printed as `ca:`)",
    )

    serve = sub.add_parser("serve", help="run a gateway (settings from the environment)")
    serve.add_argument("--host", help="bind address (default $S3COMPAT_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default $S3COMPAT_PORT or 9000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    serve.add_argument("--database-url", help="PostgreSQL URL (default $DATABASE_URL)")
    serve.add_argument("--nodes", help="storage nodes id=host:port,… (default $S3COMPAT_NODES)")
    serve.add_argument("--access-key", help="access key (default $S3COMPAT_ACCESS_KEY)")
    serve.add_argument("--secret-key", help="secret key (default $S3COMPAT_SECRET_KEY)")
    serve.add_argument(
        "--credentials-file", help="TOML file of users (default $S3COMPAT_CREDENTIALS_FILE)"
    )
    serve.add_argument(
        "--certfile",
        help="PEM certificate (chain): serve HTTPS (default $S3COMPAT_TLS_CERT; needs a key)",
    )
    serve.add_argument(
        "--keyfile", help="PEM private key of --certfile (default $S3COMPAT_TLS_KEY)"
    )

    cleanup = sub.add_parser(
        "cleanup",
        help="run the janitor: abort dead writes and expired uploads, delete unused chunks",
    )
    cleanup.add_argument(
        "--once", action="store_true", help="one pass: print what it removed and exit"
    )
    add_target(cleanup)
    cleanup.add_argument(
        "--interval",
        type=float,
        help="seconds between passes without --once (default $S3COMPAT_JANITOR_INTERVAL or 30)",
    )

    scrub = sub.add_parser(
        "scrub",
        help="read every chunk back from its node, verify it, and repair missing or corrupt ones",
    )
    add_target(scrub)
    scrub.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="MB/s to read at most, so live traffic keeps its bandwidth (default 50; 0: no limit)",
    )

    admin = sub.add_parser("admin", help="manage users and their access keys")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    user = admin_sub.add_parser("user", help="users kept in the database")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    user_add = user_sub.add_parser(
        "add", help="create a user and a key pair; prints the secret key once"
    )
    user_add.add_argument("name")
    user_list = user_sub.add_parser("list", help="users and their access keys (no secrets)")
    user_remove = user_sub.add_parser(
        "remove", help="delete a user and its access keys (refused while it owns buckets)"
    )
    user_remove.add_argument("name")
    for p in (user_add, user_list, user_remove):
        p.add_argument(
            "--data-dir",
            type=Path,
            help="data directory of a running `s3compat dev` cluster (its cluster.json and "
            "master-key are read); default $DATABASE_URL and $S3COMPAT_MASTER_KEY",
        )
    cli_nodes.add_parsers(sub, admin_sub)
    return parser


def _report_lines(report: JanitorReport) -> list[str]:
    return [f"{f.name.replace('_', ' ')}: {getattr(report, f.name)}" for f in fields(report)]


async def _run_cleanup(settings: Settings, *, once: bool, interval: float) -> None:
    from s3compat.app import standalone_runtime

    async with standalone_runtime(settings) as runtime:
        janitor = runtime.janitor()
        while True:
            report = await janitor.run_once()
            if once:
                print("\n".join(_report_lines(report)), flush=True)
                return
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            print(f"{stamp} " + ", ".join(_report_lines(report)), flush=True)
            await asyncio.sleep(interval)


def _cleanup(args: argparse.Namespace) -> int:
    settings = target_settings(args, "s3compat cleanup")
    if settings is None:
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    interval = args.interval if args.interval is not None else settings.janitor_interval
    try:
        asyncio.run(_run_cleanup(settings, once=args.once, interval=interval))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"s3compat cleanup: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _scrub(args: argparse.Namespace) -> int:
    from s3compat.app import standalone_runtime
    from s3compat.service.scrub import Scrubber

    prog = "s3compat scrub"
    settings = target_settings(args, prog)
    if settings is None:
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    bar = ProgressBar()

    def progress(report: ScrubReport) -> None:
        bar.show(
            report.checked,
            report.total,
            f"chunks, {report.bytes_read / 1e6:.0f} MB, {report.missing} missing, "
            f"{report.corrupt} corrupt",
        )

    async def run() -> ScrubReport:
        rate = args.rate * 1e6 if args.rate > 0 else None
        async with standalone_runtime(settings) as runtime:
            assert runtime.meta is not None
            scrubber = Scrubber(runtime.meta, runtime.cluster, rate=rate, progress=progress)
            return await scrubber.run()

    try:
        report = asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"\n{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(
        f"checked: {report.checked}\nmissing: {report.missing}\ncorrupt: {report.corrupt}\n"
        f"unreachable: {report.unreachable}\nrepaired: {report.repaired}\n"
        f"repair failed: {report.repair_failed}\nstill broken: {report.still_broken}\n"
        f"bytes read: {report.bytes_read}",
        flush=True,
    )
    return 0 if report.still_broken == 0 else 1


def _admin_user(args: argparse.Namespace) -> int:
    """`admin user add|list|remove`: straight to the database (the schema is applied
    first); gateways pick the change up within seconds, without a restart."""
    prog = f"s3compat admin user {args.user_command}"
    settings = Settings.from_env()
    url, master_text = settings.database_url, settings.master_key
    if args.data_dir is not None:
        url = dev_database_url(args.data_dir, prog)
        key_path = args.data_dir / "master-key"
        try:
            master_text = key_path.read_text().strip()
        except OSError as exc:
            print(f"{prog}: cannot read {key_path}: {exc}", file=sys.stderr)
            return 2
    if not url:
        print(f"{prog}: DATABASE_URL is not set (or give --data-dir)", file=sys.stderr)
        return 2
    master = None
    if args.user_command == "add":
        from s3compat.metadata.keycrypt import KeyCryptError, MasterKey

        if not master_text:
            print(f"{prog}: S3COMPAT_MASTER_KEY is not set (or give --data-dir)", file=sys.stderr)
            return 2
        try:
            master = MasterKey(master_text)
        except KeyCryptError as exc:
            print(f"{prog}: S3COMPAT_MASTER_KEY: {exc}", file=sys.stderr)
            return 2
    from s3compat.metadata.users import UserError

    try:
        lines = asyncio.run(_run_admin_user(url, master, args))
    except UserError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if lines:
        print("\n".join(lines), flush=True)
    return 0


async def _run_admin_user(
    url: str, master: MasterKey | None, args: argparse.Namespace
) -> list[str]:
    import asyncpg

    from s3compat.metadata import users
    from s3compat.metadata.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        if args.user_command == "add":
            assert master is not None
            pair = await users.add_user(conn, master, args.name)
            return [
                f"access key: {pair.access_key}",
                f"secret key: {pair.secret_key}",
            ]
        if args.user_command == "list":
            return [
                f"{u.name}: {', '.join(u.access_keys) if u.access_keys else '(no access keys)'}"
                for u in await users.list_users(conn)
            ]
        await users.remove_user(conn, args.name)
        return [f"removed user {args.name}"]
    finally:
        await conn.close()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    overrides = {
        "DATABASE_URL": args.database_url,
        "S3COMPAT_NODES": args.nodes,
        "S3COMPAT_ACCESS_KEY": args.access_key,
        "S3COMPAT_SECRET_KEY": args.secret_key,
        "S3COMPAT_CREDENTIALS_FILE": args.credentials_file,
        "S3COMPAT_HOST": args.host,
        "S3COMPAT_PORT": str(args.port) if args.port else None,
        "S3COMPAT_WORKERS": str(args.workers) if args.workers else None,
        "S3COMPAT_TLS_CERT": args.certfile,
        "S3COMPAT_TLS_KEY": args.keyfile,
    }
    # Workers are separate processes that build their app from the environment.
    os.environ.update({k: v for k, v in overrides.items() if v})
    settings = Settings.from_env()
    if bool(settings.tls_cert) != bool(settings.tls_key):
        print(
            "s3compat serve: HTTPS needs both a certificate and its key "
            "(--certfile/--keyfile or S3COMPAT_TLS_CERT/S3COMPAT_TLS_KEY)",
            file=sys.stderr,
        )
        return 2
    for path in (settings.tls_cert, settings.tls_key):
        if path and not os.access(path, os.R_OK):
            print(f"s3compat serve: cannot read {path}", file=sys.stderr)
            return 2
    if not settings.database_url:
        print("s3compat serve: DATABASE_URL is not set", file=sys.stderr)
        return 2
    if not settings.nodes:
        print("s3compat serve: S3COMPAT_NODES is not set", file=sys.stderr)
        return 2
    uvicorn.run(
        "s3compat.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "dev":
        from s3compat.devcluster.supervisor import DevOptions, run_dev

        return run_dev(
            DevOptions(
                data_dir=args.data_dir,
                host=args.host,
                port=args.port,
                access_key=args.access_key,
                secret_key=args.secret_key,
                tls=args.tls,
            )
        )
    if args.command == "serve":
        return _serve(args)
    if args.command == "cleanup":
        return _cleanup(args)
    if args.command == "scrub":
        return _scrub(args)
    if args.command == "rebalance":
        return cli_nodes.rebalance(args)
    if args.command == "admin" and args.admin_command == "node":
        return cli_nodes.admin_node(args)
    if args.command == "admin":
        return _admin_user(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
