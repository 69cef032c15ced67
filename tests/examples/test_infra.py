"""infra/ is consistent with the code it deploys (no Docker engine here: validated statically).

* every environment variable the settings read is documented in env.example, and nothing else is;
* compose files parse, their application services set only known settings, every ``${VAR}`` they
  interpolate is in compose.env.example;
* every command in compose, systemd units, the Procfile and the Dockerfile names a management
  command or Celery subcommand that exists, with options its parser accepts;
* the ClickHouse cluster configuration defines the cluster, macros and Keeper quorum that the
  schema's cluster layout (``Layout(cluster=…)``) relies on.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bench.harness import PY, ROOT
from tests.examples.conftest import Platform, free_port

INFRA = ROOT / "infra"
CLUSTER = INFRA / "clickhouse" / "cluster"
CLUSTER_NAME = "kriy"
APP_SERVICES = ("migrate", "web", "worker", "beat")

# Where the application reads its environment: the settings, the production profile, the
# `serve` command (HOST, PORT, KRIY_WEB_THREADS) and the entry points (DJANGO_SETTINGS_MODULE).
ENV_SOURCES = [
    "kriyplatform/settings.py",
    "kriyplatform/settings_production.py",
    "apps/web/management/commands/serve.py",
    "kriyplatform/celery.py",
    "kriyplatform/wsgi.py",
    "manage.py",
]
# Macros ClickHouse expands by itself in a Replicated table's path.
BUILTIN_MACROS = {"database", "table", "uuid"}


# --- helpers -------------------------------------------------------------------------------------


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def env_reads(path: Path) -> set[str]:
    """Names read through os.environ.get/[]/setdefault, os.getenv, env_int and env_bool."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        name = None
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            environ_call = (
                isinstance(f, ast.Attribute)
                and f.attr in {"get", "setdefault", "pop"}
                and _is_environ(f.value)
            )
            getenv = (
                isinstance(f, ast.Attribute)
                and f.attr == "getenv"
                and isinstance(f.value, ast.Name)
                and f.value.id == "os"
            )
            helper = isinstance(f, ast.Name) and f.id in {"env_int", "env_bool"}
            if environ_call or getenv or helper:
                name = _const_str(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = _const_str(node.slice)
        if name:
            names.add(name)
    return names


def settings_env() -> set[str]:
    return set().union(*(env_reads(ROOT / p) for p in ENV_SOURCES))


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}: bad line {line!r}"
        assert key not in values, f"{path.name}: {key} twice"
        values[key] = value
    return values


def xml(path: Path) -> ET.Element:
    """The root element of one of this repository's own XML files (trusted input)."""
    return ET.parse(path).getroot()  # noqa: S314


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict), path
    return doc


def compose() -> dict[str, Any]:
    return load_yaml(INFRA / "compose.yaml")


def cluster_compose() -> dict[str, Any]:
    return load_yaml(CLUSTER / "compose.yaml")


def argv(command: Any) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


def split_shell(args: list[str]) -> list[list[str]]:
    """``sh -c "a && b"`` → [[a…], [b…]]; anything else → [args]."""
    if args[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in args[2].split("&&")]
    return [args]


def check_command(args: list[str]) -> str:
    """Assert ``args`` runs something that exists here, with options its parser accepts.
    Returns what it runs (``manage.py migrate``, ``celery worker``…)."""
    from django.core.management import get_commands, load_command_class

    exe = Path(args[0]).name
    if exe.startswith("python") and len(args) > 1 and args[1].endswith("manage.py"):
        name, rest = args[2], args[3:]
        commands = get_commands()
        assert name in commands, f"manage.py {name}: no such management command"
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(rest)  # SystemExit (a test error) on an unknown option
        return f"manage.py {name}"
    if exe == "celery":
        import click
        from celery.bin.base import CLIContext
        from celery.bin.celery import celery as cli

        from kriyplatform.celery import app

        assert args[1:3] == ["-A", "kriyplatform"], args
        sub, rest = args[3], args[4:]
        command = cli.get_command(click.Context(cli), sub)
        assert command is not None, f"celery {sub}: no such command"
        obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
        parent = click.Context(cli, info_name="celery", obj=obj)
        # Parses (and type-checks) the options without running the command.
        command.make_context(sub, [a.replace("$HOSTNAME", "host") for a in rest], parent=parent)
        return f"celery {sub}"
    if exe.startswith("python") and args[1].endswith("healthcheck.py"):
        assert (INFRA / "healthcheck.py").is_file()
        return "healthcheck"
    raise AssertionError(f"unexpected command {args}")


# --- environment variables ---------------------------------------------------------------------------


def test_env_example_documents_exactly_the_variables_the_settings_read() -> None:
    documented = set(env_file(INFRA / "env.example"))
    read = settings_env()
    assert read - documented == set(), "read by the settings, missing from infra/env.example"
    assert documented - read == set(), "in infra/env.example, read by nothing"


def test_the_env_scan_sees_the_known_variables() -> None:
    read = settings_env()
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "CLICKHOUSE_CLUSTER", "EMAIL_URL", "PORT"):
        assert name in read
    assert "DJANGO_SETTINGS_MODULE" in read


def test_env_example_values_load_the_production_profile_cleanly(tmp_path: Path) -> None:
    env = {
        **env_file(INFRA / "env.example"),
        "KRIY_DATA_DIR": str(tmp_path),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    proc = subprocess.run(
        [PY, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert env["DJANGO_SETTINGS_MODULE"] == "kriyplatform.settings_production"
    assert env["KRIY_DEMO"] == "0"


def test_compose_app_services_set_only_known_settings() -> None:
    known = settings_env()
    for doc in (compose(), cluster_compose()):
        for name in APP_SERVICES:
            service = doc["services"][name]
            env = service.get("environment") or {}
            assert isinstance(env, dict), f"{name}: environment as a mapping"
            unknown = set(env) - known
            assert not unknown, f"{name} sets {unknown}, which no setting reads"
    base = compose()["services"]
    for name in APP_SERVICES:
        env = base[name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "kriyplatform.settings_production"
        assert env["KRIY_DEMO"] == "0"
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["DATABASE_URL"].startswith("postgres://")
        assert (
            env["CLICKHOUSE_URL"].startswith("http://")
            and "@clickhouse:8123/" in env["CLICKHOUSE_URL"]
        )
        assert base[name]["env_file"] == ["kriy.env"]
    for name in ("web", "worker", "beat"):
        assert base[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_interpolates_only_variables_of_compose_env_example() -> None:
    declared = set(env_file(INFRA / "compose.env.example"))
    for path in (INFRA / "compose.yaml", CLUSTER / "compose.yaml"):
        used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
        assert used, path
        assert used <= declared, f"{path.name}: {used - declared} not in compose.env.example"


# --- commands --------------------------------------------------------------------------------------


def test_compose_commands_exist() -> None:
    services = compose()["services"]
    ran = set()
    for name in APP_SERVICES:
        for args in split_shell(argv(services[name]["command"])):
            ran.add(check_command(args))
        health = services[name].get("healthcheck", {}).get("test")
        if health:
            args = argv(health[1]) if health[0] == "CMD-SHELL" else list(health[1:])
            ran.add(check_command(args))
    assert {
        "manage.py migrate",
        "manage.py migrate_clickhouse",
        "manage.py serve",
        "celery worker",
        "celery beat",
        "celery inspect",
        "healthcheck",
    } <= ran
    web = argv(services["web"]["command"])
    # reachable from the proxy container
    assert web[web.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    beat = argv(services["beat"]["command"])
    schedule = beat[beat.index("--schedule") + 1]
    assert any(v.endswith(":" + str(Path(schedule).parent)) for v in services["beat"]["volumes"])


def test_systemd_units_run_existing_commands() -> None:
    units = sorted((INFRA / "systemd").glob("*.service"))
    assert {u.stem for u in units} == {"kriy-web", "kriy-worker", "kriy-beat", "kriy-migrate"}
    ran = set()
    for unit in units:
        sections: dict[str, list[tuple[str, str]]] = {}
        current = ""
        for line in unit.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                current = line.strip("[]")
                sections[current] = []
            else:
                key, _, value = line.partition("=")
                sections[current].append((key, value))
        assert set(sections) == {"Unit", "Service", "Install"}, unit.name
        service = sections["Service"]
        keys = {k for k, _ in service}
        assert {"User", "EnvironmentFile", "WorkingDirectory", "ExecStart"} <= keys, unit.name
        for key, value in service:
            if key == "ExecStart":
                ran.add(check_command(shlex.split(value)))
    assert {
        "manage.py serve",
        "manage.py migrate",
        "manage.py migrate_clickhouse",
        "celery worker",
        "celery beat",
    } <= ran
    target = (INFRA / "systemd" / "kriy.target").read_text()
    for unit in units:
        assert unit.name in target


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_units_pass_systemd_analyze_verify() -> None:
    units = [str(p) for p in sorted((INFRA / "systemd").iterdir())]
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The virtualenv of the units' layout (/opt/kriy/venv) does not exist on this machine.
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip() and "/opt/kriy/venv/bin/" not in line
    ]
    assert problems == []


def test_procfile_runs_existing_commands() -> None:
    processes = {}
    for line in (INFRA / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name] = command.strip()
    assert set(processes) == {"web", "worker", "beat"}
    assert check_command(shlex.split(processes["web"])) == "manage.py serve"
    assert check_command(shlex.split(processes["worker"])) == "celery worker"
    assert check_command(shlex.split(processes["beat"])) == "celery beat"


def test_celery_app_module_named_by_the_commands_exists() -> None:
    from kriyplatform.celery import app

    app.loader.import_default_modules()  # what a worker does at start: autodiscover tasks
    app.finalize(auto=True)
    assert app.main == "kriyplatform"
    schedule = app.conf.beat_schedule
    assert {"judge-pending", "metrics-rollup", "alerts-evaluate"} <= set(schedule)
    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)


def test_dockerfile_copies_existing_paths_and_builds_assets_like_make() -> None:
    text = (INFRA / "Dockerfile").read_text()
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            for src in parts[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
                included = any(
                    pat == f"!{src}" or pat == f"!{src.rstrip('/')}/**" for pat in ignore
                )
                assert included, f"{src} is excluded from the build context"
    assert "RUN make assets" in text
    assert re.search(r"^assets:", (ROOT / "Makefile").read_text(), re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd and check_command(yaml.safe_load(cmd.group(1))) == "manage.py serve"
    # The image installs [project.dependencies]; the Python it uses satisfies requires-python.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = re.search(r"FROM python:(\d+\.\d+)", text)
    assert version and project["requires-python"] == ">=3.11" and version.group(1) >= "3.11"


def test_web_healthcheck_targets_the_healthz_route() -> None:
    from django.urls import resolve

    assert resolve("/healthz").url_name == "healthz"
    assert 'f"http://127.0.0.1:{port}/healthz"' in (INFRA / "healthcheck.py").read_text()


def test_web_healthcheck_script_tells_a_serving_platform_from_a_dead_port(
    platform: Platform,
) -> None:
    def run(port: int, hosts: str) -> int:
        env = {**os.environ, "PORT": str(port), "DJANGO_ALLOWED_HOSTS": hosts}
        return subprocess.run(
            [PY, str(INFRA / "healthcheck.py")], env=env, capture_output=True, timeout=30
        ).returncode

    assert run(platform.server.port, "127.0.0.1,localhost") == 0
    assert run(platform.server.port, "not-served.example.com") == 1  # Django refuses the host
    assert run(free_port(), "127.0.0.1") == 1


def test_caddy_proxies_to_the_web_service_port() -> None:
    caddy = (INFRA / "caddy" / "Caddyfile").read_text()
    assert re.search(r"name web\s+port 8000", caddy)
    assert compose()["services"]["web"]["expose"] == ["8000"]


# --- the ClickHouse cluster -----------------------------------------------------------------------


def cluster_sql() -> list[str]:
    from apps.detection.sql import judgements_table
    from apps.spans.sql import spans_table
    from kriyplatform.clickhouse.ddl import Layout

    layout = Layout(cluster=CLUSTER_NAME)
    return [*spans_table(layout), *judgements_table(layout)]


def node_macros() -> dict[str, dict[str, str]]:
    nodes = {}
    for path in sorted((CLUSTER / "nodes").glob("*.xml")):
        root = xml(path)
        macros = root.find("macros")
        assert macros is not None, path
        nodes[path.stem] = {child.tag: (child.text or "").strip() for child in macros}
        assert root.findtext("interserver_http_host") == path.stem
    return nodes


def remote_servers() -> ET.Element:
    root = xml(CLUSTER / "config.d" / "cluster.xml")
    servers = root.find("remote_servers")
    assert servers is not None
    return servers


def test_cluster_xml_files_parse() -> None:
    for path in CLUSTER.rglob("*.xml"):
        assert xml(path).tag == "clickhouse", path


def test_replicated_engine_paths_use_only_macros_every_node_defines() -> None:
    nodes = node_macros()
    assert len(nodes) == 4
    engines = [s for s in cluster_sql() if "Replicated" in s]
    assert len(engines) == 2
    for sql in engines:
        engine = re.search(r"ENGINE = (Replicated\w+)\('([^']+)', '([^']+)'", sql)
        assert engine, sql
        used = set(re.findall(r"\{(\w+)\}", engine.group(2) + engine.group(3)))
        assert {"shard", "replica"} <= used
        for node, macros in nodes.items():
            missing = used - BUILTIN_MACROS - set(macros)
            assert not missing, f"{node} lacks macros {missing} used by {engine.group(1)}"


def test_distributed_tables_name_the_cluster_of_remote_servers() -> None:
    clusters = {c.tag for c in remote_servers()}
    assert clusters == {CLUSTER_NAME}
    distributed = [s for s in cluster_sql() if "ENGINE = Distributed" in s]
    assert len(distributed) == 2
    for sql in distributed:
        assert f"Distributed('{CLUSTER_NAME}', currentDatabase()" in sql
        assert f"ON CLUSTER '{CLUSTER_NAME}'" in sql
    for sql in cluster_sql():
        assert f"ON CLUSTER '{CLUSTER_NAME}'" in sql


def test_every_replica_has_a_node_config_with_its_shard_and_replica() -> None:
    nodes = node_macros()
    cluster = remote_servers().find(CLUSTER_NAME)
    assert cluster is not None
    assert cluster.find("secret") is not None, "inter-node authentication"
    seen: set[tuple[str, str]] = set()
    shard_ids = set()
    hosts = []
    for shard in cluster.findall("shard"):
        assert shard.findtext("internal_replication") == "true"
        replicas = [r.findtext("host") for r in shard.findall("replica")]
        assert len(replicas) == 2
        shard_macro = {nodes[h]["shard"] for h in replicas}
        assert len(shard_macro) == 1, f"replicas {replicas} disagree on their shard"
        shard_ids |= shard_macro
        for host in replicas:
            assert nodes[host]["cluster"] == CLUSTER_NAME
            key = (nodes[host]["shard"], nodes[host]["replica"])
            assert key not in seen, f"{host}: shard/replica {key} not unique"
            seen.add(key)
            hosts.append(host)
    assert len(shard_ids) == 2
    assert sorted(hosts) == sorted(nodes)
    services = cluster_compose()["services"]
    for host in hosts:
        assert services[host]["hostname"] == host
        mounts = services[host]["volumes"]
        assert (
            f"./clickhouse/cluster/nodes/{host}.xml:/etc/clickhouse-server/config.d/macros.xml:ro"
            in mounts
        )
    upstreams = re.findall(r"server (\S+):8123", (CLUSTER / "nginx.conf").read_text())
    assert sorted(upstreams) == sorted(hosts)


def test_keeper_quorum_is_consistent() -> None:
    root = xml(CLUSTER / "config.d" / "cluster.xml")
    zookeeper = [(n.findtext("host"), n.findtext("port")) for n in root.iter("node")]
    assert len(zookeeper) == 3
    assert root.findtext("distributed_ddl/path")
    raft_configs = set()
    ids = set()
    services = cluster_compose()["services"]
    for path in sorted((CLUSTER / "keeper").glob("*.xml")):
        keeper = xml(path).find("keeper_server")
        assert keeper is not None
        raft = tuple(
            (s.findtext("id"), s.findtext("hostname"), s.findtext("port"))
            for s in keeper.iter("server")
        )
        raft_configs.add(raft)
        server_id = keeper.findtext("server_id")
        (me,) = [h for i, h, _p in raft if i == server_id]
        assert me == path.stem and services[me]["hostname"] == me
        ids.add(server_id)
        assert (me, keeper.findtext("tcp_port")) in zookeeper
    assert len(raft_configs) == 1, "every keeper must list the same raft members"
    assert len(ids) == 3 and len(next(iter(raft_configs))) == 3


def test_cluster_compose_switches_the_app_to_the_cluster() -> None:
    services = cluster_compose()["services"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["CLICKHOUSE_CLUSTER"] == CLUSTER_NAME
    # migrations are recorded on one shard: the migrate job always talks to the same node
    assert "@ch-s1r1:8123/" in services["migrate"]["environment"]["CLICKHOUSE_URL"]
    settings_profile = xml(CLUSTER / "users.d" / "kriy.xml")
    assert settings_profile.findtext("profiles/default/distributed_foreground_insert") == "1"
