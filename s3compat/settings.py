"""Settings: the only module that reads the environment.

Every setting has an environment variable; the CLI's flags override them by passing
values in. `ENV_VARS` lists every variable read here (deploy tests check the compose file
against it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from s3compat.core.layout import DEFAULT_FRAGMENT_SIZE

ENV_VARS = {
    "DATABASE_URL": "PostgreSQL URL (postgresql://user:pass@host:port/db)",
    "S3COMPAT_NODES": "storage nodes: id=host:port,id=host:port,…",
    "S3COMPAT_NODE_TOKEN": "shared secret the gateway presents to every storage node "
    "(the nodes' own S3COMPAT_NODE_TOKEN or --token-file)",
    "S3COMPAT_CLUSTER_ID": "cluster id; the gateway refuses nodes that report another one",
    "S3COMPAT_ACCESS_KEY": "access key id of the default user",
    "S3COMPAT_SECRET_KEY": "secret key of the default user",
    "S3COMPAT_USER": "name of the default user (bucket owner), default 'admin'",
    "S3COMPAT_CREDENTIALS_FILE": "TOML file of [[users]] name/access_key/secret_key",
    "S3COMPAT_MASTER_KEY": "base64 of 32 random bytes: the AES-256-GCM key that encrypts the "
    "secret keys of users kept in the database (`s3compat admin user`)",
    "S3COMPAT_REGION": "region reported to clients, default us-east-1",
    "S3COMPAT_DOMAIN": "domain for virtual-host-style requests (bucket.<domain>)",
    "S3COMPAT_HOST": "address the gateway binds, default 127.0.0.1",
    "S3COMPAT_PORT": "port the gateway listens on, default 9000",
    "S3COMPAT_WORKERS": "gateway worker processes, default one per core",
    "S3COMPAT_TLS_CERT": "PEM certificate (chain) file: the gateway serves HTTPS; needs "
    "S3COMPAT_TLS_KEY",
    "S3COMPAT_TLS_KEY": "PEM private key file of S3COMPAT_TLS_CERT",
    "S3COMPAT_FRAGMENT_SIZE": "fragment size F in bytes for new blobs, default 524288",
    "S3COMPAT_EC_K": "data fragments per segment (k) for new blobs, default 4",
    "S3COMPAT_EC_M": "parity fragments per segment (m) for new blobs, default 2; k + m must "
    "be 6 (one chunk per node); m = 0 is the plain split",
    "S3COMPAT_WRITE_QUORUM": "chunks that must be stored for a write to commit, default k + 1 "
    "(all six when m = 0)",
    "S3COMPAT_HEDGE_DELAY": "seconds a fragment read may take before the reader also asks "
    "another node, default 0.5",
    "S3COMPAT_NODE_DEADLINE": "seconds a storage-node call may take, default 10",
    "S3COMPAT_BREAKER_FAILURES": "consecutive failed calls (no answer) that open a node's "
    "circuit breaker, default 5",
    "S3COMPAT_BREAKER_COOLDOWN": "seconds an open circuit breaker fails calls at once before "
    "it lets one trial call through, default 5",
    "S3COMPAT_JANITOR_INTERVAL": "seconds between janitor passes, default 30",
    "S3COMPAT_STALE_WRITE_AFTER": "seconds without heartbeat before a write counts as dead, "
    "default 600",
    "S3COMPAT_DELETE_GRACE": "seconds a replaced or deleted blob stays readable, default 300",
    "S3COMPAT_JANITOR_RETRY": "seconds before retrying a deletion on an unreachable node, "
    "default 60",
    "S3COMPAT_UPLOAD_TTL": "seconds before an incomplete multipart upload is aborted, unless "
    "its bucket's lifecycle says otherwise; default 604800 (7 days)",
    "S3COMPAT_MAX_PUT_SIZE": "largest single PutObject in bytes, default 5 GiB",
    "S3COMPAT_INLINE_MAX": "PutObject bodies up to this many bytes are kept in the metadata "
    "row instead of six chunks, default 32768; 0 turns it off",
    "S3COMPAT_MIN_PART_SIZE": "smallest multipart part but the last, in bytes, default 5 MiB",
    "S3COMPAT_LOG_LEVEL": "logging level, default INFO",
    "S3COMPAT_LOG_FORMAT": "text (default) or json: one JSON object per log line, each with "
    "the request id",
    "S3COMPAT_BODY_IDLE_TIMEOUT": "seconds a request body may send nothing before "
    "RequestTimeout, default 60",
}


def parse_nodes(value: str) -> tuple[tuple[str, str], ...]:
    """`n1=127.0.0.1:50051,n2=…` → ((node id, address), …)."""
    nodes = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        node_id, sep, address = item.partition("=")
        if not sep or not node_id or not address:
            raise ValueError(f"S3COMPAT_NODES entry {item!r} is not id=host:port")
        nodes.append((node_id.strip(), address.strip()))
    return tuple(nodes)


def available_cores() -> int:
    """The cores this process may run on: the default number of gateway workers (one
    process per core; a single process is bound by the GIL to about one core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    nodes: tuple[tuple[str, str], ...] = ()
    node_token: str | None = field(default=None, repr=False)
    cluster_id: str = ""
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    user: str = "admin"
    credentials_file: str | None = None
    master_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    virtual_host_domain: str | None = None
    host: str = "127.0.0.1"
    port: int = 9000
    workers: int = field(default_factory=available_cores)
    tls_cert: str | None = None
    tls_key: str | None = None
    fragment_size: int = DEFAULT_FRAGMENT_SIZE
    ec_k: int = 4
    ec_m: int = 2
    write_quorum: int | None = None
    hedge_delay: float = 0.5
    node_deadline: float = 10.0
    breaker_failures: int = 5
    breaker_cooldown: float = 5.0
    janitor_interval: float = 30.0
    stale_write_after: float = 600.0
    delete_grace: float = 300.0
    janitor_retry: float = 60.0
    upload_ttl: float = 7 * 24 * 3600.0
    max_put_size: int = 5 * 1024**3
    inline_max: int = 32 * 1024
    min_part_size: int = 5 * 1024**2
    log_level: str = "INFO"
    log_format: str = "text"
    body_idle_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}

        def take(var: str, name: str, kind: type = str) -> None:
            raw = env.get(var)
            if raw is not None and raw != "":
                try:
                    values[name] = kind(raw)
                except ValueError as exc:
                    raise ValueError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc

        take("DATABASE_URL", "database_url")
        take("S3COMPAT_NODE_TOKEN", "node_token")
        take("S3COMPAT_CLUSTER_ID", "cluster_id")
        take("S3COMPAT_ACCESS_KEY", "access_key")
        take("S3COMPAT_SECRET_KEY", "secret_key")
        take("S3COMPAT_USER", "user")
        take("S3COMPAT_CREDENTIALS_FILE", "credentials_file")
        take("S3COMPAT_MASTER_KEY", "master_key")
        take("S3COMPAT_REGION", "region")
        take("S3COMPAT_DOMAIN", "virtual_host_domain")
        take("S3COMPAT_HOST", "host")
        take("S3COMPAT_PORT", "port", int)
        take("S3COMPAT_WORKERS", "workers", int)
        take("S3COMPAT_TLS_CERT", "tls_cert")
        take("S3COMPAT_TLS_KEY", "tls_key")
        take("S3COMPAT_FRAGMENT_SIZE", "fragment_size", int)
        take("S3COMPAT_EC_K", "ec_k", int)
        take("S3COMPAT_EC_M", "ec_m", int)
        take("S3COMPAT_WRITE_QUORUM", "write_quorum", int)
        take("S3COMPAT_HEDGE_DELAY", "hedge_delay", float)
        take("S3COMPAT_NODE_DEADLINE", "node_deadline", float)
        take("S3COMPAT_BREAKER_FAILURES", "breaker_failures", int)
        take("S3COMPAT_BREAKER_COOLDOWN", "breaker_cooldown", float)
        take("S3COMPAT_JANITOR_INTERVAL", "janitor_interval", float)
        take("S3COMPAT_STALE_WRITE_AFTER", "stale_write_after", float)
        take("S3COMPAT_DELETE_GRACE", "delete_grace", float)
        take("S3COMPAT_JANITOR_RETRY", "janitor_retry", float)
        take("S3COMPAT_UPLOAD_TTL", "upload_ttl", float)
        take("S3COMPAT_MAX_PUT_SIZE", "max_put_size", int)
        take("S3COMPAT_INLINE_MAX", "inline_max", int)
        take("S3COMPAT_MIN_PART_SIZE", "min_part_size", int)
        take("S3COMPAT_LOG_LEVEL", "log_level")
        take("S3COMPAT_LOG_FORMAT", "log_format")
        take("S3COMPAT_BODY_IDLE_TIMEOUT", "body_idle_timeout", float)
        if env.get("S3COMPAT_NODES"):
            values["nodes"] = parse_nodes(env["S3COMPAT_NODES"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a writing gateway's heartbeats on its blob.

        Derived, not configured: several heartbeats must fit in `stale_write_after`, or a
        slow but live write would be aborted by the janitor as if its gateway had died.
        """
        return min(10.0, self.stale_write_after / 3)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        env = {
            "DATABASE_URL": self.database_url,
            "S3COMPAT_NODES": ",".join(f"{n}={a}" for n, a in self.nodes),
            "S3COMPAT_USER": self.user,
            "S3COMPAT_REGION": self.region,
            "S3COMPAT_HOST": self.host,
            "S3COMPAT_PORT": str(self.port),
            "S3COMPAT_WORKERS": str(self.workers),
            "S3COMPAT_FRAGMENT_SIZE": str(self.fragment_size),
            "S3COMPAT_EC_K": str(self.ec_k),
            "S3COMPAT_EC_M": str(self.ec_m),
            "S3COMPAT_HEDGE_DELAY": str(self.hedge_delay),
            "S3COMPAT_NODE_DEADLINE": str(self.node_deadline),
            "S3COMPAT_BREAKER_FAILURES": str(self.breaker_failures),
            "S3COMPAT_BREAKER_COOLDOWN": str(self.breaker_cooldown),
            "S3COMPAT_JANITOR_INTERVAL": str(self.janitor_interval),
            "S3COMPAT_STALE_WRITE_AFTER": str(self.stale_write_after),
            "S3COMPAT_DELETE_GRACE": str(self.delete_grace),
            "S3COMPAT_JANITOR_RETRY": str(self.janitor_retry),
            "S3COMPAT_UPLOAD_TTL": str(self.upload_ttl),
            "S3COMPAT_MAX_PUT_SIZE": str(self.max_put_size),
            "S3COMPAT_INLINE_MAX": str(self.inline_max),
            "S3COMPAT_MIN_PART_SIZE": str(self.min_part_size),
            "S3COMPAT_LOG_LEVEL": self.log_level,
            "S3COMPAT_LOG_FORMAT": self.log_format,
            "S3COMPAT_BODY_IDLE_TIMEOUT": str(self.body_idle_timeout),
        }
        optional = {
            "S3COMPAT_WRITE_QUORUM": str(self.write_quorum) if self.write_quorum else None,
            "S3COMPAT_NODE_TOKEN": self.node_token,
            "S3COMPAT_CLUSTER_ID": self.cluster_id,
            "S3COMPAT_ACCESS_KEY": self.access_key,
            "S3COMPAT_SECRET_KEY": self.secret_key,
            "S3COMPAT_CREDENTIALS_FILE": self.credentials_file,
            "S3COMPAT_MASTER_KEY": self.master_key,
            "S3COMPAT_DOMAIN": self.virtual_host_domain,
            "S3COMPAT_TLS_CERT": self.tls_cert,
            "S3COMPAT_TLS_KEY": self.tls_key,
        }
        env.update({k: v for k, v in optional.items() if v})
        return env
