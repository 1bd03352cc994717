"""deploy/: the compose file and Dockerfile, checked without Docker.

Docker is not available where the tests run, so this reads deploy/docker-compose.yml and
deploy/Dockerfile as data and checks them against the code they start: every command
parses with the real argument parser of its console script, every gateway environment
variable is one `s3compat.settings` reads, the node list matches the node services, the
database URL points at the postgres service, secrets have no defaults and only loopback
is published.

Each check is a function that raises AssertionError. The `test_*` functions run them on
the real files; `test_check_catches` runs them on deliberately broken copies, so every
check is shown to be able to fail.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from s3compat.settings import ENV_VARS, Settings, parse_nodes

REPO = Path(__file__).resolve().parents[2]
COMPOSE_PATH = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE_PATH = REPO / "deploy" / "Dockerfile"
PYPROJECT_PATH = REPO / "pyproject.toml"

NODE_SERVICES = tuple(f"node{i}" for i in range(1, 7))
GATEWAY = "gateway"
POSTGRES = "postgres"
SECRETS = (
    "POSTGRES_PASSWORD",
    "S3COMPAT_ACCESS_KEY",
    "S3COMPAT_SECRET_KEY",
    "S3COMPAT_NODE_TOKEN",
    "S3COMPAT_MASTER_KEY",
    # Not a secret, but with a default two deployments would share one cluster id.
    "S3COMPAT_CLUSTER_ID",
)
# What an operator exports before `docker compose up`; values are arbitrary.
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-password-for-tests",
    "S3COMPAT_ACCESS_KEY": "AKIDDEPLOYTEST",
    "S3COMPAT_SECRET_KEY": "deploy-test-secret",
    "S3COMPAT_NODE_TOKEN": "deploy-test-node-token",
    "S3COMPAT_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "S3COMPAT_CLUSTER_ID": "deploy-test-cluster",
}
# Files the installed package loads at run time (importlib.resources), relative to the
# package root: the image is useless if `pip install .` leaves one out.
PACKAGE_RESOURCES = ("s3compat/metadata/schema.sql",)

Doc = dict[str, Any]


# --- loading ---------------------------------------------------------------------------


class MissingVariable(Exception):
    """`${VAR:?message}` with VAR unset: `docker compose` refuses to start."""


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate_str(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, …"""

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is None:
            return value or ""
        if op.endswith("-"):
            return arg if unset else str(value)
        if op.endswith("?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        return "" if unset else arg  # "+"

    return _VAR.sub(sub, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_str(node, env)
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


def load_raw_compose() -> Doc:
    doc = yaml.safe_load(COMPOSE_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "compose file is not a mapping"
    return doc


def resolve(raw: Doc, env: Mapping[str, str] = OPERATOR_ENV) -> Doc:
    resolved = interpolate(copy.deepcopy(raw), env)
    assert isinstance(resolved, dict)
    return resolved


def console_scripts() -> dict[str, str]:
    project = tomllib.loads(PYPROJECT_PATH.read_text(encoding="utf-8"))
    return dict(project["project"]["scripts"])


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def exec_form(instruction: str, args: str) -> list[str]:
    try:
        argv = json.loads(args)
    except json.JSONDecodeError:
        raise AssertionError(f"{instruction} {args!r} is not in exec (JSON) form") from None
    assert isinstance(argv, list), f"{instruction} is not a JSON array"
    assert all(isinstance(a, str) for a in argv), f"{instruction} has non-string items"
    return argv


def image_argv(dockerfile: str) -> tuple[list[str], list[str]]:
    """(ENTRYPOINT, CMD) of the final stage, [] where unset."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "FROM":  # a new stage starts from its base's settings
            entrypoint, cmd = [], []
        elif instruction == "ENTRYPOINT":
            entrypoint = exec_form(instruction, args)
        elif instruction == "CMD":
            cmd = exec_form(instruction, args)
    return entrypoint, cmd


def as_argv(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list), f"{value!r} is neither a string nor a list"
    return [str(v) for v in value]


def our_services(doc: Doc) -> dict[str, Doc]:
    """Services running the s3compat image (built from deploy/Dockerfile)."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc}


def service_argv(svc: Doc, dockerfile: str) -> list[str]:
    """What the container runs: compose's entrypoint/command override the image's."""
    image_entrypoint, image_cmd = image_argv(dockerfile)
    if "entrypoint" in svc:
        # Overriding the entrypoint also drops the image's CMD.
        return as_argv(svc["entrypoint"]) + as_argv(svc.get("command", []))
    return image_entrypoint + (as_argv(svc["command"]) if "command" in svc else image_cmd)


def parse_command(argv: list[str], scripts: Mapping[str, str]) -> Any:
    """Parse argv[1:] with the argument parser of the console script argv[0]."""
    assert argv, "empty command"
    program = argv[0]
    assert program in scripts, f"{program!r} is not a console script in pyproject.toml"
    module_name = scripts[program].partition(":")[0]
    module = importlib.import_module(module_name)
    build_parser = getattr(module, "build_parser", None)
    assert callable(build_parser), f"{module_name} has no build_parser()"
    parser = build_parser()
    try:
        return parser.parse_args(argv[1:])
    except SystemExit:
        raise AssertionError(f"{shlex.join(argv)!r} is rejected by {program}'s parser") from None


def environment(svc: Doc) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {k: v for k, _, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def published_ports(svc: Doc) -> list[tuple[str | None, str, str]]:
    """(host ip or None, host port, container port) for each `ports` entry."""
    out: list[tuple[str | None, str, str]] = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            out.append(
                (entry.get("host_ip"), str(entry.get("published", "")), str(entry["target"]))
            )
            continue
        spec = str(entry).split("/")[0]
        rest, _, container = spec.rpartition(":")
        host_ip, _, host_port = rest.rpartition(":")
        out.append((host_ip.strip("[]") or None, host_port or "", container))
    return out


def node_commands(doc: Doc, dockerfile: str) -> dict[str, Any]:
    scripts = console_scripts()
    return {
        name: parse_command(service_argv(doc["services"][name], dockerfile), scripts)
        for name in NODE_SERVICES
    }


def gateway_command(doc: Doc, dockerfile: str) -> Any:
    return parse_command(service_argv(doc["services"][GATEWAY], dockerfile), console_scripts())


# --- checks ----------------------------------------------------------------------------


def check_services_present(doc: Doc, dockerfile: str) -> None:
    names = set(doc.get("services", {}))
    missing = {POSTGRES, GATEWAY, *NODE_SERVICES} - names
    assert not missing, f"missing services: {sorted(missing)}"
    ours = set(our_services(doc))
    assert ours == {GATEWAY, *NODE_SERVICES}, f"services built from the Dockerfile: {ours}"
    for name, svc in our_services(doc).items():
        build = svc["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile_rel = "Dockerfile" if isinstance(build, str) else build["dockerfile"]
        base = (COMPOSE_PATH.parent / context).resolve()
        assert base == REPO, f"{name}: build context {base} is not the repository root"
        assert (base / dockerfile_rel).resolve() == DOCKERFILE_PATH, f"{name}: wrong Dockerfile"


def check_commands_parse(doc: Doc, dockerfile: str) -> None:
    scripts = console_scripts()
    for svc in our_services(doc).values():
        parse_command(service_argv(svc, dockerfile), scripts)
    gateway = gateway_command(doc, dockerfile)
    assert gateway.command == "serve", f"the gateway runs `s3compat {gateway.command}`"
    for name, args in node_commands(doc, dockerfile).items():
        assert args.id == name, f"{name} runs with --id {args.id}"
        host, _ = args.listen
        assert host == "0.0.0.0", f"{name} listens on {host}: unreachable from the gateway"


def check_gateway_environment(doc: Doc, dockerfile: str) -> None:
    env = environment(doc["services"][GATEWAY])
    unknown = set(env) - set(ENV_VARS)
    assert not unknown, f"the gateway gets variables settings.py never reads: {sorted(unknown)}"
    required = {
        "DATABASE_URL",
        "S3COMPAT_NODES",
        "S3COMPAT_ACCESS_KEY",
        "S3COMPAT_SECRET_KEY",
        "S3COMPAT_NODE_TOKEN",
        "S3COMPAT_CLUSTER_ID",
        "S3COMPAT_MASTER_KEY",
    }
    assert required <= set(env), f"the gateway lacks {sorted(required - set(env))}"
    try:
        settings = Settings.from_env(env)
    except ValueError as exc:
        raise AssertionError(f"the gateway's environment does not load: {exc}") from None
    assert settings.access_key == OPERATOR_ENV["S3COMPAT_ACCESS_KEY"]
    assert settings.secret_key == OPERATOR_ENV["S3COMPAT_SECRET_KEY"]


def check_node_auth(doc: Doc, dockerfile: str) -> None:
    """Every node requires the token the gateway presents, and reports its cluster id."""
    gateway = environment(doc["services"][GATEWAY])
    token, cluster_id = gateway.get("S3COMPAT_NODE_TOKEN"), gateway.get("S3COMPAT_CLUSTER_ID")
    assert token == OPERATOR_ENV["S3COMPAT_NODE_TOKEN"], "the gateway has no node token"
    assert cluster_id == OPERATOR_ENV["S3COMPAT_CLUSTER_ID"], "the gateway has no cluster id"
    for name, args in node_commands(doc, dockerfile).items():
        env = environment(doc["services"][name])
        assert not args.insecure_no_token, f"{name} runs with --insecure-no-token"
        if args.token_file is None:
            assert env.get("S3COMPAT_NODE_TOKEN") == token, f"{name} has another node token"
        if args.cluster_id is None:
            assert env.get("S3COMPAT_CLUSTER_ID") == cluster_id, f"{name} has another cluster id"
        else:
            assert args.cluster_id == cluster_id, f"{name} runs with --cluster-id {args.cluster_id}"


def check_node_list(doc: Doc, dockerfile: str) -> None:
    value = environment(doc["services"][GATEWAY]).get("S3COMPAT_NODES", "")
    try:
        nodes = parse_nodes(value)
    except ValueError as exc:
        raise AssertionError(f"S3COMPAT_NODES does not parse: {exc}") from None
    ids = [node_id for node_id, _ in nodes]
    assert sorted(ids) == sorted(NODE_SERVICES), f"S3COMPAT_NODES names {ids}"
    commands = node_commands(doc, dockerfile)
    for node_id, address in nodes:
        host, _, port = address.rpartition(":")
        assert host == node_id, f"{node_id} is addressed as {host!r}, not its service name"
        _, listen_port = commands[node_id].listen
        assert port == str(listen_port), f"{node_id}: port {port} but it listens on {listen_port}"


def check_node_volumes(doc: Doc, dockerfile: str) -> None:
    declared = set(doc.get("volumes") or {})
    seen: dict[str, str] = {}
    for name, args in node_commands(doc, dockerfile).items():
        mounts: dict[str, str] = {}
        for entry in doc["services"][name].get("volumes") or []:
            volume, _, rest = str(entry).partition(":")
            mounts[rest.split(":")[0]] = volume
        source = mounts.get(str(args.data))
        assert source is not None, f"{name}: nothing is mounted at --data {args.data}"
        assert source in declared, f"{name}: {source!r} is not a named volume"
        assert source not in seen, f"{name} and {seen.get(source)} share volume {source!r}"
        seen[source] = name


def check_database_url(doc: Doc, dockerfile: str) -> None:
    url = urlsplit(environment(doc["services"][GATEWAY]).get("DATABASE_URL", ""))
    pg = environment(doc["services"].get(POSTGRES, {}))
    assert url.scheme in ("postgresql", "postgres"), f"DATABASE_URL scheme {url.scheme!r}"
    assert url.hostname == POSTGRES, f"DATABASE_URL host {url.hostname!r} is not {POSTGRES!r}"
    assert url.port in (None, 5432), f"DATABASE_URL port {url.port}"
    assert url.username == pg.get("POSTGRES_USER", "postgres"), "DATABASE_URL user"
    assert url.password == pg.get("POSTGRES_PASSWORD"), "DATABASE_URL password"
    db = pg.get("POSTGRES_DB") or pg.get("POSTGRES_USER", "postgres")
    assert url.path == f"/{db}", f"DATABASE_URL database {url.path!r}, postgres creates {db!r}"


def check_startup_order(doc: Doc, dockerfile: str) -> None:
    depends = doc["services"][GATEWAY].get("depends_on") or {}
    if isinstance(depends, list):
        depends = {name: {"condition": "service_started"} for name in depends}
    missing = {POSTGRES, *NODE_SERVICES} - set(depends)
    assert not missing, f"the gateway does not depend on {sorted(missing)}"
    condition = depends[POSTGRES].get("condition")
    assert condition == "service_healthy", f"postgres: {condition}"
    assert "healthcheck" in doc["services"][POSTGRES], "postgres has no healthcheck"


def check_published_ports(doc: Doc, dockerfile: str) -> None:
    for name, svc in doc["services"].items():
        if name != GATEWAY:
            assert not svc.get("ports"), f"{name} publishes ports"
    ports = published_ports(doc["services"][GATEWAY])
    assert ports, "the gateway publishes no port"
    listen = str(gateway_command(doc, dockerfile).port)
    for host_ip, _, container in ports:
        assert host_ip == "127.0.0.1", f"the gateway is published on {host_ip or 'all addresses'}"
        assert container == listen, f"published container port {container}, serving {listen}"


def check_no_default_secrets(raw: Doc) -> None:
    """Compose must refuse to start while any secret is unset or empty."""
    for secret in SECRETS:
        for env in (
            {k: v for k, v in OPERATOR_ENV.items() if k != secret},
            {**OPERATOR_ENV, secret: ""},
        ):
            try:
                resolve(raw, env)
            except MissingVariable:
                continue
            raise AssertionError(f"the compose file starts with {secret} unset or empty")


def check_dockerfile(dockerfile: str, doc: Doc) -> None:
    instructions = dockerfile_instructions(dockerfile)
    stages = [args for ins, args in instructions if ins == "FROM"]
    assert stages, "no FROM"
    base = stages[-1].split()[0]
    assert base.startswith("python:3.11-slim"), f"final stage is based on {base}"
    runs = " ".join(args for ins, args in instructions if ins == "RUN")
    assert re.search(r"pip install (?:[^&;|]*\s)?\.(?:\s|$)", runs), "no `pip install .`"
    users = [args for ins, args in instructions if ins == "USER"]
    assert users, "no USER: the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]}"
    for ins, args in instructions:
        if ins in ("COPY", "ADD") and "--from" not in args:
            sources = [a for a in exec_or_words(args) if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"{ins} source {source} is not in the repo"
    scripts = console_scripts()
    entrypoint, cmd = image_argv(dockerfile)
    argv = entrypoint + cmd
    assert argv and argv[0] in scripts, f"the image runs {argv[:1]}, not a console script"
    parse_command(argv, scripts)
    for name, svc in our_services(doc).items():
        program = service_argv(svc, dockerfile)[0]
        assert program in scripts, f"{name} runs {program!r}, not a console script"


def exec_or_words(args: str) -> list[str]:
    return exec_form("COPY", args) if args.startswith("[") else args.split()


def _glob_match(parts: list[str], pattern: str) -> bool:
    """setuptools' package-data glob: `*` stays within one directory, `**` crosses them."""
    if "**" in pattern:
        return fnmatch.fnmatch("/".join(parts), pattern)
    segments = pattern.split("/")
    return len(segments) == len(parts) and all(
        fnmatch.fnmatch(p, s) for p, s in zip(parts, segments, strict=True)
    )


def check_package_resources(pyproject: str) -> None:
    """`pip install .` (the Dockerfile) must ship the data files the code loads."""
    tool = tomllib.loads(pyproject).get("tool", {}).get("setuptools", {})
    package_data: dict[str, list[str]] = tool.get("package-data", {})
    for resource in PACKAGE_RESOURCES:
        parts = resource.split("/")
        covered = any(
            _glob_match(parts[i:], pattern)
            for i in range(1, len(parts))
            for pattern in package_data.get(".".join(parts[:i]), [])
        )
        assert covered, (
            f"{resource} is not in [tool.setuptools.package-data]: the installed package "
            f"(and so the Docker image) will lack it"
        )


# --- the real files --------------------------------------------------------------------

COMPOSE_CHECKS: list[Callable[[Doc, str], None]] = [
    check_services_present,
    check_commands_parse,
    check_gateway_environment,
    check_node_auth,
    check_node_list,
    check_node_volumes,
    check_database_url,
    check_startup_order,
    check_published_ports,
]


@pytest.fixture(scope="module")
def raw() -> Doc:
    return load_raw_compose()


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE_PATH.read_text(encoding="utf-8")


@pytest.mark.parametrize("check", COMPOSE_CHECKS, ids=lambda c: c.__name__)
def test_compose(check: Callable[[Doc, str], None], raw: Doc, dockerfile: str) -> None:
    check(resolve(raw), dockerfile)


def test_no_default_secrets(raw: Doc) -> None:
    check_no_default_secrets(raw)


def test_dockerfile(raw: Doc, dockerfile: str) -> None:
    check_dockerfile(dockerfile, resolve(raw))


def test_package_ships_its_resources() -> None:
    for resource in PACKAGE_RESOURCES:
        assert (REPO / resource).is_file(), f"{resource} is missing from the source tree"
    check_package_resources(PYPROJECT_PATH.read_text(encoding="utf-8"))


def test_interpolation() -> None:
    env = {"A": "x", "E": ""}
    assert interpolate_str("$$A ${A} $A ${B:-d} ${E:-d} ${E-d} ${A:+y} ${B:+y}", env) == (
        "$A x x d d  y "
    )
    with pytest.raises(MissingVariable):
        interpolate_str("${E:?need E}", env)
    assert interpolate_str("${E?need E}", env) == ""


# --- every check can fail --------------------------------------------------------------


def _svc(doc: Doc, name: str) -> Doc:
    svc: Doc = doc["services"][name]
    return svc


def _set_env(name: str, var: str, value: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _svc(doc, name).setdefault("environment", {})[var] = value

    return mutate


def _replace_command(name: str, old: str, new: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        svc = _svc(doc, name)
        svc["command"] = [new if a == old else a for a in svc["command"]]

    return mutate


def _drop_command_args(name: str, flag: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        argv = _svc(doc, name)["command"]
        i = argv.index(flag)
        del argv[i : i + 2]

    return mutate


def _set(name: str, key: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        _svc(doc, name)[key] = value

    return mutate


def _drop_dependency(doc: Doc) -> None:
    del _svc(doc, GATEWAY)["depends_on"]["node4"]


NODES_ALL = ",".join(f"{n}={n}:50051" for n in NODE_SERVICES)
BREAKAGES: list[tuple[str, Callable[[Doc], None], Callable[[Doc, str], None]]] = [
    ("no node6 service", lambda d: d["services"].pop("node6"), check_services_present),
    ("unknown flag", _replace_command(GATEWAY, "--port", "--prot"), check_commands_parse),
    ("bad port", _replace_command(GATEWAY, "9000", "ninety"), check_commands_parse),
    ("node lacks --data", _drop_command_args("node2", "--data"), check_commands_parse),
    ("node's other token", _set_env("node3", "S3COMPAT_NODE_TOKEN", "other"), check_node_auth),
    ("node's other cluster", _set_env("node1", "S3COMPAT_CLUSTER_ID", "x"), check_node_auth),
    (
        "node serves anyone",
        lambda d: _svc(d, "node5")["command"].append("--insecure-no-token"),
        check_node_auth,
    ),
    ("gateway lacks token", _set_env(GATEWAY, "S3COMPAT_NODE_TOKEN", ""), check_node_auth),
    ("not a script", _replace_command("node1", "nodeserver", "node-server"), check_commands_parse),
    ("gateway runs dev", _replace_command(GATEWAY, "serve", "dev"), check_commands_parse),
    ("node id != name", _replace_command("node3", "node3", "node33"), check_commands_parse),
    (
        "node on loopback",
        _replace_command("node5", "0.0.0.0:50051", "127.0.0.1:50051"),
        check_commands_parse,
    ),
    ("unknown variable", _set_env(GATEWAY, "S3COMPAT_BOGUS", "1"), check_gateway_environment),
    ("misspelt variable", _set_env(GATEWAY, "S3COMPAT_NODE", "x"), check_gateway_environment),
    ("bad int setting", _set_env(GATEWAY, "S3COMPAT_WORKERS", "two"), check_gateway_environment),
    (
        "node missing",
        _set_env(GATEWAY, "S3COMPAT_NODES", NODES_ALL.rsplit(",", 1)[0]),
        check_node_list,
    ),
    (
        "extra node",
        _set_env(GATEWAY, "S3COMPAT_NODES", NODES_ALL + ",node7=node7:50051"),
        check_node_list,
    ),
    (
        "wrong port",
        _set_env(GATEWAY, "S3COMPAT_NODES", NODES_ALL.replace("50051", "50052", 1)),
        check_node_list,
    ),
    (
        "wrong host",
        _set_env(GATEWAY, "S3COMPAT_NODES", NODES_ALL.replace("=node2:", "=n2:")),
        check_node_list,
    ),
    ("unparsable", _set_env(GATEWAY, "S3COMPAT_NODES", "node1:50051"), check_node_list),
    ("shared volume", _set("node2", "volumes", ["node1-data:/data"]), check_node_volumes),
    ("bind mount", _set("node2", "volumes", ["./n2:/data"]), check_node_volumes),
    ("no volume", _set("node6", "volumes", []), check_node_volumes),
    (
        "db on localhost",
        _set_env(
            GATEWAY, "DATABASE_URL", "postgresql://s3compat:${POSTGRES_PASSWORD}@localhost/s3compat"
        ),
        check_database_url,
    ),
    (
        "db wrong name",
        _set_env(GATEWAY, "DATABASE_URL", "postgresql://s3compat:${POSTGRES_PASSWORD}@postgres/x"),
        check_database_url,
    ),
    (
        "db wrong password",
        _set_env(GATEWAY, "DATABASE_URL", "postgresql://s3compat:hunter2@postgres/s3compat"),
        check_database_url,
    ),
    ("no node dependency", _drop_dependency, check_startup_order),
    (
        "postgres not awaited",
        _set(GATEWAY, "depends_on", [POSTGRES, *NODE_SERVICES]),
        check_startup_order,
    ),
    ("all interfaces", _set(GATEWAY, "ports", ["9000:9000"]), check_published_ports),
    ("0.0.0.0", _set(GATEWAY, "ports", ["0.0.0.0:9000:9000"]), check_published_ports),
    (
        "long syntax, no ip",
        _set(GATEWAY, "ports", [{"target": 9000, "published": 9000}]),
        check_published_ports,
    ),
    ("wrong target", _set(GATEWAY, "ports", ["127.0.0.1:9000:9001"]), check_published_ports),
    ("postgres published", _set(POSTGRES, "ports", ["127.0.0.1:5432:5432"]), check_published_ports),
]


@pytest.mark.parametrize(
    ("mutate", "check"), [(m, c) for _, m, c in BREAKAGES], ids=[b[0] for b in BREAKAGES]
)
def test_check_catches(
    mutate: Callable[[Doc], None],
    check: Callable[[Doc, str], None],
    raw: Doc,
    dockerfile: str,
) -> None:
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(AssertionError):
        check(resolve(broken), dockerfile)


@pytest.mark.parametrize(
    "secret_value",
    ["${S3COMPAT_SECRET_KEY:-changeme}", "changeme", "${S3COMPAT_SECRET_KEY}"],
)
def test_secret_check_catches(secret_value: str, raw: Doc) -> None:
    broken = copy.deepcopy(raw)
    _set_env(GATEWAY, "S3COMPAT_SECRET_KEY", secret_value)(broken)
    with pytest.raises(AssertionError):
        check_no_default_secrets(broken)


DOCKERFILE_BREAKAGES = [
    ("root user", "USER 10001:10001", "USER root"),
    ("no user", "USER 10001:10001", ""),
    ("other python", "FROM python:3.11-slim", "FROM python:3.12-slim"),
    ("no pip install .", "pip install .", "pip install s3compat"),
    ("cmd not a script", '["s3compat", "serve"', '["s3compat-gateway", "serve"'),
    ("cmd bad flag", '"--port", "9000"]', '"--listen", "9000"]'),
    (
        "shell-form cmd",
        'CMD ["s3compat", "serve", "--host", "0.0.0.0", "--port", "9000"]',
        "CMD s3compat serve",
    ),
    ("missing source", "COPY pyproject.toml", "COPY pyproject.toml README.rst"),
]


@pytest.mark.parametrize(
    ("old", "new"),
    [(o, n) for _, o, n in DOCKERFILE_BREAKAGES],
    ids=[b[0] for b in DOCKERFILE_BREAKAGES],
)
def test_dockerfile_check_catches(old: str, new: str, raw: Doc, dockerfile: str) -> None:
    assert old in dockerfile, f"stale breakage: {old!r} is not in the Dockerfile"
    with pytest.raises(AssertionError):
        check_dockerfile(dockerfile.replace(old, new), resolve(raw))


def test_dockerfile_check_catches_service_entrypoint(raw: Doc, dockerfile: str) -> None:
    broken = copy.deepcopy(raw)
    _set("node1", "entrypoint", ["/bin/sh", "-c"])(broken)
    with pytest.raises(AssertionError):
        check_dockerfile(dockerfile, resolve(broken))


def test_package_check_catches() -> None:
    with pytest.raises(AssertionError):
        check_package_resources('[tool.setuptools.package-data]\ns3compat = ["py.typed"]\n')
    with pytest.raises(AssertionError):  # `*` does not descend into metadata/
        check_package_resources('[tool.setuptools.package-data]\ns3compat = ["*.sql"]\n')
    check_package_resources(
        '[tool.setuptools.package-data]\ns3compat = ["py.typed", "metadata/*.sql"]\n'
    )
    check_package_resources('[tool.setuptools.package-data]\n"s3compat.metadata" = ["*.sql"]\n')
