"""`s3compat dev`: PostgreSQL, six storage nodes and a gateway, supervised as one.

Everything lives under one data directory, so stopping and starting again finds the same
buckets and objects. The supervisor writes `cluster.json` there (endpoint, ports, pids) for
tools and tests, and stops every child on Ctrl-C.

With `tls`, the gateway serves HTTPS on the same port, with a certificate signed by a
private CA the supervisor keeps under `DIR/tls/` (see `tls.py`); it prints the CA's path
(`ca: …`) for clients to trust, and checks the gateway's health against that CA.

The nodes accept only calls carrying the cluster's token, and report its cluster id: both
are made on first start and kept in the data dir (`node-token`, mode 0600, and
`cluster-id`). Nodes read the token from that file, the gateway from its environment.
The master key that encrypts database users' secrets is made the same way (`master-key`,
0600) and reaches the gateway as S3COMPAT_MASTER_KEY.

A node or the gateway that dies is restarted on the port it had, so the node addresses the
gateway registered (and its clients' endpoint) stay right; cluster.json gets the new pids.
A child that keeps dying (more than RESTART_LIMIT restarts in RESTART_WINDOW seconds) is a
fault a restart will not fix, and PostgreSQL holds every other child's state: either makes
the supervisor stop everything and exit 1.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from s3compat.devcluster.postgres import EmbeddedPostgres
from s3compat.devcluster.procs import die_with_parent
from s3compat.settings import Settings

if TYPE_CHECKING:
    from s3compat.devcluster.tls import DevTLS

NODE_COUNT = 6
DEV_USER = "admin"
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while a child was being restarted."""


@dataclass
class DevOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 9000
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    extra_env: dict[str, str] = field(default_factory=dict)
    tls: bool = False


def _reserve_port(host: str, port: int) -> socket.socket | None:
    """A socket bound (not listening) to the gateway's address, so that the kernel hands
    that port to no other socket until it is closed; RuntimeError if the port is taken.

    None when there is nothing to hold: port 0, or a host that does not resolve here (the
    gateway reports that itself)."""
    if port == 0:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError:
        return None
    sock = socket.socket(family, kind, proto)
    try:
        # As the gateway binds: its own connections left in TIME_WAIT by a restart on the
        # same port do not count; a socket listening there does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(f"port {port} on {host} is already in use") from None
        return None
    return sock


def dev_credentials(
    data_dir: Path, access_key: str | None, secret_key: str | None
) -> tuple[str, str]:
    """Given keys win; otherwise keys generated on first start and kept in the data dir."""
    if access_key and secret_key:
        return access_key, secret_key
    path = data_dir / "dev-credentials.toml"
    if path.exists():
        doc = tomllib.loads(path.read_text())
        return str(doc["access_key"]), str(doc["secret_key"])
    access = "S3C" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'access_key = "{access}"\nsecret_key = "{secret}"\n')
    return access, secret


NODE_TOKEN_FILE = "node-token"
CLUSTER_ID_FILE = "cluster-id"
MASTER_KEY_FILE = "master-key"


def _read_or_create(path: Path, make: str) -> str:
    """The stripped content of `path`, or `make` written there (mode 0600) if it is new."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        value = path.read_text().strip()
        if not value:
            raise RuntimeError(f"{path} is empty; delete it to get a new one") from None
        return value
    with os.fdopen(fd, "w") as f:
        f.write(make + "\n")
    return make


def dev_node_secrets(data_dir: Path) -> tuple[str, str]:
    """The nodes' shared token and the cluster id: generated on first start, then kept in
    the data dir (`node-token`, `cluster-id`, both 0600) so restarts find the same ones."""
    token = _read_or_create(data_dir / NODE_TOKEN_FILE, secrets.token_urlsafe(32))
    cluster_id = _read_or_create(data_dir / CLUSTER_ID_FILE, f"dev-{secrets.token_hex(8)}")
    return token, cluster_id


def dev_master_key(data_dir: Path) -> str:
    """The key that encrypts the secrets of users kept in the database (`s3compat admin
    user`): generated on first start, kept in `DIR/master-key` (0600), handed to the
    gateway in its environment (S3COMPAT_MASTER_KEY), never written into cluster.json."""
    from s3compat.metadata.keycrypt import generate_master_key

    return _read_or_create(data_dir / MASTER_KEY_FILE, generate_master_key())


class Supervisor:
    def __init__(self, opts: DevOptions) -> None:
        self.opts = opts
        self.data = opts.data_dir.resolve()
        self.logs = self.data / "logs"
        self.pg: EmbeddedPostgres | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.node_addresses: dict[str, str] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_env: dict[str, str] = {}
        self.cluster_id = ""
        self.endpoint = f"{'https' if opts.tls else 'http'}://{opts.host}:{opts.port}"
        # Where the supervisor itself checks health: a wildcard bind address is no name a
        # certificate can carry, so ask the loopback address instead.
        probe_host = "127.0.0.1" if opts.host in ("", "0.0.0.0", "::", "[::]") else opts.host
        self.health_url = f"{'https' if opts.tls else 'http'}://{probe_host}:{opts.port}/-/health"
        self.tls: DevTLS | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self.database_url = ""
        self.restarts: dict[str, deque[float]] = {}
        self.stopping = False

    # --- start ----------------------------------------------------------------------

    def _spawn(
        self, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def _start_node(self, node_id: str, port: int = 0) -> None:
        """Start a node on `port` (0: any free one) and wait for its address."""
        log_name = f"{node_id}.log"
        log_path = self.logs / log_name
        offset = log_path.stat().st_size if log_path.exists() else 0
        proc = self._spawn(
            [
                sys.executable,
                "-m",
                "nodeserver",
                "--id",
                node_id,
                "--listen",
                f"{self.opts.host}:{port}",
                "--data",
                str(self.data / "nodes" / node_id),
                # The token by file: a command line is visible to every user (ps).
                "--token-file",
                str(self.data / NODE_TOKEN_FILE),
                "--cluster-id",
                self.cluster_id,
            ],
            log_name,
        )
        self.nodes[node_id] = proc
        marker = f"nodeserver {node_id} listening on "
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.stopping:
                raise _Interrupted()
            with open(log_path, "rb") as f:
                f.seek(offset)
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if line.startswith(marker):
                        self.node_addresses[node_id] = line[len(marker) :].strip()
                        return
            if proc.poll() is not None:
                raise RuntimeError(f"{node_id} exited with {proc.returncode}; see {log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"{node_id} did not start; see {log_path}")

    def _start_gateway(self) -> None:
        self.gateway = self._spawn(
            [sys.executable, "-m", "s3compat", "serve"], "gateway.log", self.gateway_env
        )

    def _wait_gateway(self, timeout: float = 60.0, *, healthy: bool = True) -> None:
        """Wait until the gateway answers its health check (with 200 unless not `healthy`:
        a restarted gateway is up even while a node it reports on is still restarting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stopping:
                raise _Interrupted()
            assert self.gateway is not None
            if self.gateway.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {self.gateway.returncode}; "
                    f"see {self.logs / 'gateway.log'}"
                )
            try:
                with urllib.request.urlopen(
                    self.health_url, timeout=2, context=self.ssl_context
                ) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if not healthy:
                    return
                exc.close()
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                pass  # not listening yet, or not yet ours (its exit is caught above)
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not become healthy; see {self.logs / 'gateway.log'}")

    def start(self) -> dict[str, object]:
        self.logs.mkdir(parents=True, exist_ok=True)
        access, secret = dev_credentials(self.data, self.opts.access_key, self.opts.secret_key)
        node_token, self.cluster_id = dev_node_secrets(self.data)
        master_key = dev_master_key(self.data)
        if self.opts.tls:
            self._prepare_tls()
        # Hold the gateway's port while PostgreSQL and the nodes pick theirs (the nodes bind
        # port 0), so that none of them can be handed it meanwhile.
        reserved = _reserve_port(self.opts.host, self.opts.port)
        try:
            database_url = os.environ.get("DATABASE_URL", "")
            if not database_url:
                self.pg = EmbeddedPostgres(self.data / "postgres")
                database_url = self.pg.start()
            self.database_url = database_url
            for i in range(1, NODE_COUNT + 1):
                self._start_node(f"node{i}")
            settings = Settings.from_env().with_(
                database_url=database_url,
                nodes=tuple(self.node_addresses.items()),
                host=self.opts.host,
                port=self.opts.port,
                access_key=access,
                secret_key=secret,
                user=DEV_USER,
                node_token=node_token,
                cluster_id=self.cluster_id,
                master_key=master_key,
            )
            if self.tls is not None:
                settings = settings.with_(tls_cert=str(self.tls.cert), tls_key=str(self.tls.key))
            self.gateway_env = {**os.environ, **settings.to_env(), **self.opts.extra_env}
            if self.tls is None:  # HTTPS only with --tls: the endpoint printed says http://
                self.gateway_env.pop("S3COMPAT_TLS_CERT", None)
                self.gateway_env.pop("S3COMPAT_TLS_KEY", None)
        finally:
            if reserved is not None:
                reserved.close()
        self._start_gateway()
        self._wait_gateway()
        info = self._write_info()
        info["access_key"], info["secret_key"] = access, secret
        return info

    def _prepare_tls(self) -> None:
        """Make (or reuse) the CA and server certificate; trust that CA for health checks."""
        try:
            from s3compat.devcluster.tls import ensure_dev_tls
        except ImportError as exc:  # the `cryptography` package
            raise RuntimeError(f"--tls needs the cryptography package: {exc}") from None
        domain = Settings.from_env({**os.environ, **self.opts.extra_env}).virtual_host_domain
        self.tls = ensure_dev_tls(self.data, host=self.opts.host, domain=domain)
        self.ssl_context = ssl.create_default_context(cafile=str(self.tls.ca_cert))

    def _write_info(self) -> dict[str, object]:
        """cluster.json, for tools and tests; no secrets. Replaced atomically, so a reader
        never sees half a file while a restarted child's pid is being recorded."""
        assert self.gateway is not None
        info: dict[str, object] = {
            "endpoint": self.endpoint,
            "ca": str(self.tls.ca_cert) if self.tls is not None else None,
            "database_url": self.database_url,
            "nodes": dict(self.node_addresses),
            "pids": {
                "gateway": self.gateway.pid,
                "postgres": self.pg.proc.pid if self.pg and self.pg.proc else None,
                **{n: p.pid for n, p in self.nodes.items()},
            },
        }
        path = self.data / "cluster.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(path)
        return info

    # --- run and stop ---------------------------------------------------------------

    def _may_restart(self, name: str) -> bool:
        """Record a restart of `name`; False if it already had RESTART_LIMIT of them within
        the last RESTART_WINDOW seconds."""
        now = time.monotonic()
        recent = self.restarts.setdefault(name, deque())
        while recent and now - recent[0] > RESTART_WINDOW:
            recent.popleft()
        if len(recent) >= RESTART_LIMIT:
            return False
        recent.append(now)
        return True

    def _restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start `name` again where it was: a node on its previous port, the gateway on
        its own. Raises RuntimeError if it does not come up."""
        if name == "gateway":
            self._start_gateway()
            self._wait_gateway(healthy=False)
            assert self.gateway is not None
            return self.gateway
        port = int(self.node_addresses[name].rpartition(":")[2])
        self._start_node(name, port)
        return self.nodes[name]

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM (exit 0), restarting nodes and the gateway when they
        die; exit 1 when PostgreSQL dies or a child dies too often to keep restarting."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not self.stopping:
            if self.pg is not None and self.pg.proc is not None:
                code = self.pg.proc.poll()
                if code is not None:
                    print(f"postgres exited with {code}; stopping", file=sys.stderr, flush=True)
                    return 1
            # Nodes before the gateway: a restarted gateway then finds them serving.
            restartable = [*self.nodes.items()]
            if self.gateway is not None:
                restartable.append(("gateway", self.gateway))
            for name, proc in restartable:
                code = proc.poll()
                if code is None or self.stopping:
                    continue
                if not self._may_restart(name):
                    print(
                        f"{name} exited with {code} after {RESTART_LIMIT} restarts within "
                        f"{RESTART_WINDOW:.0f} s; stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
                print(f"{name} exited with {code}; restarting it", file=sys.stderr, flush=True)
                try:
                    new = self._restart(name)
                except _Interrupted:
                    break
                except RuntimeError as exc:
                    # Tried again on the next round, which counts against the limit.
                    print(f"{name} did not restart: {exc}", file=sys.stderr, flush=True)
                    self._kill(name)
                    continue
                self._write_info()
                print(f"{name} restarted, pid {new.pid}", file=sys.stderr, flush=True)
            time.sleep(0.2)
        return 0

    def _kill(self, name: str) -> None:
        proc = self.gateway if name == "gateway" else self.nodes.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Gateway first (no new writes), then the nodes, then PostgreSQL."""
        if self.gateway is not None:
            _terminate([self.gateway])
        _terminate(list(self.nodes.values()))
        if self.pg is not None:
            self.pg.stop()
        (self.data / "cluster.json").unlink(missing_ok=True)


def _terminate(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_dev(opts: DevOptions) -> int:
    sup = Supervisor(opts)
    try:
        info = sup.start()
    except BaseException as exc:
        sup.stop()
        if isinstance(exc, KeyboardInterrupt):
            return 130
        print(f"s3compat dev: failed to start: {exc}", file=sys.stderr)
        return 1
    print("s3compat dev cluster is ready", flush=True)
    print(f"endpoint: {info['endpoint']}")
    if sup.tls is not None:
        print(f"ca: {sup.tls.ca_cert}")
    print(f"access key: {info['access_key']}")
    print(f"secret key: {info['secret_key']}")
    print(f"region: {Settings.from_env().region}")
    print(f"data dir: {sup.data}")
    print(f"logs: {sup.logs}")
    print("Press Ctrl-C to stop.", flush=True)
    code = 1
    try:
        code = sup.wait()
    finally:
        sup.stop()
    print("s3compat dev stopped", flush=True)
    return code
