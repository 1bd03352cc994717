"""What the `s3compat` maintenance commands share: finding the cluster they work on."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from s3compat.settings import Settings


def add_target(parser: argparse.ArgumentParser) -> None:
    """--data-dir (a running `s3compat dev`) or --database-url (default $DATABASE_URL)."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--data-dir",
        type=Path,
        help="data directory of a running `s3compat dev` cluster (its cluster.json is read)",
    )
    target.add_argument("--database-url", help="PostgreSQL URL (default $DATABASE_URL)")


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most every `every` seconds (and at
    the end): `show(done, total, "what else to say")`."""

    def __init__(self, *, width: int = 30, every: float = 0.2) -> None:
        self.width = width
        self.every = every
        self._last = 0.0

    def show(self, done: int, total: int, detail: str) -> None:
        now = time.monotonic()
        if now - self._last < self.every and done < total:
            return
        self._last = now
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        print(f"\r[{bar}] {done}/{total} {detail}", end="", file=sys.stderr, flush=True)


def target_settings(args: argparse.Namespace, prog: str) -> Settings | None:
    """Settings for the cluster `add_target`'s options name; None (after saying why) if
    no database is given."""
    url = dev_database_url(args.data_dir, prog) if args.data_dir else args.database_url
    dev = dev_node_secrets(args.data_dir) if args.data_dir else {}
    settings = Settings.from_env(database_url=url).with_(**dev)
    if not settings.database_url:
        print(
            f"{prog}: DATABASE_URL is not set (or give --data-dir or --database-url)",
            file=sys.stderr,
        )
        return None
    return settings


def dev_database_url(data_dir: Path, prog: str) -> str:
    """The database of the dev cluster running in `data_dir`, from its cluster.json."""
    path = data_dir / "cluster.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(
            f"{prog}: {path} does not exist; is `s3compat dev --data-dir {data_dir}` running?"
        ) from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{prog}: cannot read {path}: {exc}") from None
    url = info.get("database_url") if isinstance(info, dict) else None
    if not isinstance(url, str) or not url:
        raise SystemExit(f"{prog}: {path} names no database_url")
    return url


def dev_node_secrets(data_dir: Path) -> dict[str, str]:
    """The dev cluster's node token and cluster id, kept in its data dir by `s3compat dev`."""
    found: dict[str, str] = {}
    for name, setting in (("node-token", "node_token"), ("cluster-id", "cluster_id")):
        path = data_dir / name
        if path.is_file():
            found[setting] = path.read_text().strip()
    return found
