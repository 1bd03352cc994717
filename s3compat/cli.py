"""`s3compat` command line: dev, serve."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from s3compat.settings import Settings


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

    serve = sub.add_parser("serve", help="run a gateway (settings from the environment)")
    serve.add_argument("--host", help="bind address (default $S3COMPAT_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default $S3COMPAT_PORT or 9000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--database-url", help="PostgreSQL URL (default $DATABASE_URL)")
    serve.add_argument("--nodes", help="storage nodes id=host:port,… (default $S3COMPAT_NODES)")
    serve.add_argument("--access-key", help="access key (default $S3COMPAT_ACCESS_KEY)")
    serve.add_argument("--secret-key", help="secret key (default $S3COMPAT_SECRET_KEY)")
    serve.add_argument(
        "--credentials-file", help="TOML file of users (default $S3COMPAT_CREDENTIALS_FILE)"
    )
    return parser


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
    }
    # Workers are separate processes that build their app from the environment.
    os.environ.update({k: v for k, v in overrides.items() if v})
    settings = Settings.from_env()
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
            )
        )
    if args.command == "serve":
        return _serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
