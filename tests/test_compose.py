"""Static checks of compose.yaml, the scale-out deployment.

Docker is not needed: the file is read as YAML, and every uploads-api command in it is
parsed with the real ``uploads-api`` parser. These tests catch what ``docker compose up``
would only reveal later: a setting name that does not exist, an API and a worker talking to
different databases, a broker URL naming no service, a sub-command that is not there. When
the Docker CLI has the compose plugin, ``docker compose config`` validates the file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from uploads_api.cli import build_parser
from uploads_api.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
SETTINGS = {f"UPLOADS_{name.upper()}" for name in Settings.model_fields}
# Settings every process of the cluster must agree on.
SHARED = (
    "UPLOADS_DATABASE_URL",
    "UPLOADS_STORAGE_URL",
    "UPLOADS_S3_ENDPOINT_URL",
    "UPLOADS_BROKER_URL",
    "UPLOADS_TASK_BACKEND",
    "UPLOADS_CELERY_QUEUE",
)
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")

Service = dict[str, Any]


def load() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), "compose.yaml is not a mapping"
    return document


COMPOSE = load()
SERVICES: dict[str, Service] = COMPOSE.get("services") or {}


def interpolate(value: str) -> str:
    """What compose makes of ``${NAME:-default}``, with the variable unset; ``$$`` is ``$``."""
    value = _VARIABLE.sub(lambda m: m.group("default") or "unset", value)
    return value.replace("$$", "$")


def environment(service: Service) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(name): interpolate(str(value)) for name, value in env.items()}


def words(command: Any) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return command.split()
    return [str(word) for word in command]


def built_here(service: Service) -> bool:
    build = service.get("build")
    if isinstance(build, dict):
        return build.get("context", ".") in (".", "./") and "dockerfile" not in build
    return build in (".", "./")


def uploads_command(service: Service) -> list[str]:
    """The ``uploads-api`` arguments a service runs (the image's default is ``serve``)."""
    argv = words(service.get("entrypoint")) + words(service.get("command"))
    if not argv and built_here(service):
        return ["serve"]
    assert argv and argv[0] == "uploads-api", f"not an uploads-api command: {argv}"
    return argv[1:]


def replicas(service: Service) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def role(service: Service) -> str | None:
    """``api``, ``worker``, ``beat`` or another sub-command, for uploads-api services."""
    if not built_here(service):
        return None
    command = uploads_command(service)
    if command[:1] == ["serve"]:
        return "api"
    if command[:1] == ["scheduler"]:
        return "beat"
    if command[:1] == ["worker"]:
        return "worker+beat" if "--beat" in command else "worker"
    return command[0] if command else None


def services_with(*roles: str) -> dict[str, Service]:
    return {name: s for name, s in SERVICES.items() if role(s) in roles}


def running(*roles: str) -> int:
    return sum(replicas(s) for s in services_with(*roles).values())


def image_service(prefix: str) -> str:
    names = [n for n, s in SERVICES.items() if str(s.get("image", "")).startswith(prefix)]
    assert len(names) == 1, f"expected one service from the {prefix!r} image, found {names}"
    return names[0]


def cluster_services() -> Iterator[tuple[str, Service]]:
    yield from services_with("api", "worker", "worker+beat", "beat").items()


def test_the_cluster_has_every_service() -> None:
    assert running("api") >= 2, "two API processes (api1/api2, or deploy.replicas: 2)"
    assert running("worker", "worker+beat") >= 2, "two Celery workers"
    assert running("beat", "worker+beat") == 1, "exactly one scheduler: the sweep and reconciler"
    for prefix in ("postgres", "redis", "minio/minio", "minio/mc"):
        image_service(prefix)


def test_uploads_api_services_build_from_the_project_dockerfile() -> None:
    for name, service in cluster_services():
        assert built_here(service), f"{name} must use `build: .`"
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if built_here(s)))
def test_commands_are_real_uploads_api_sub_commands(name: str) -> None:
    argv = uploads_command(SERVICES[name])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports and exits on an unknown command or flag
        pytest.fail(f"{name}: `uploads-api {' '.join(argv)}` does not parse ({exc})")
    assert callable(args.handler)


def test_every_uploads_variable_is_a_setting() -> None:
    used = {
        variable
        for service in SERVICES.values()
        for variable in environment(service)
        if variable.startswith("UPLOADS_")
    }
    assert used, "the cluster is configured through UPLOADS_* variables"
    assert used <= SETTINGS, f"not in Settings: {sorted(used - SETTINGS)}"


def test_api_worker_and_beat_share_database_storage_and_broker() -> None:
    seen = {name: environment(service) for name, service in cluster_services()}
    for variable in SHARED:
        values = {name: env.get(variable) for name, env in seen.items()}
        assert len(set(values.values())) == 1, f"{variable} differs: {values}"
        assert None not in values.values(), f"{variable} is missing somewhere: {values}"
    (env, *_) = seen.values()
    assert env["UPLOADS_TASK_BACKEND"] == "celery"
    for name, service in SERVICES.items():
        if built_here(service) and "UPLOADS_DATABASE_URL" in environment(service):
            assert environment(service)["UPLOADS_DATABASE_URL"] == env["UPLOADS_DATABASE_URL"], (
                f"{name} would use another database"
            )


def test_urls_point_at_the_cluster_services() -> None:
    (_, service), *_ = cluster_services()
    env = environment(service)
    database = urlsplit(env["UPLOADS_DATABASE_URL"])
    assert database.scheme == "postgresql+asyncpg", database.scheme
    assert database.hostname == image_service("postgres")
    broker = urlsplit(env["UPLOADS_BROKER_URL"])
    assert broker.scheme == "redis"
    assert broker.hostname == image_service("redis")
    endpoint = urlsplit(env["UPLOADS_S3_ENDPOINT_URL"])
    assert endpoint.hostname == image_service("minio/minio")
    assert endpoint.port == 9000
    storage = urlsplit(env["UPLOADS_STORAGE_URL"])
    assert storage.scheme == "s3" and storage.netloc


def test_the_bucket_is_created_before_anything_uses_it() -> None:
    bucket = urlsplit(environment(next(cluster_services())[1])["UPLOADS_STORAGE_URL"]).netloc
    setup = SERVICES[image_service("minio/mc")]
    script = " ".join(words(setup.get("entrypoint")) + words(setup.get("command")))
    assert re.search(rf"mc mb\b.*\blocal/{re.escape(bucket)}\b", script), script
    for name, service in services_with("api", "worker").items():
        depends = service.get("depends_on") or {}
        assert depends.get(image_service("minio/mc"), {}).get("condition") == (
            "service_completed_successfully"
        ), name


def test_migrations_run_once_before_apis_and_workers() -> None:
    migrations = [
        name for name, s in SERVICES.items() if role(s) == "db" and "upgrade" in uploads_command(s)
    ]
    assert len(migrations) == 1, f"one `uploads-api db upgrade` service, found {migrations}"
    (migrate,) = migrations
    assert SERVICES[migrate].get("restart", "no") == "no"
    for name, service in services_with("api", "worker", "worker+beat").items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert depends.get(migrate, {}).get("condition") == "service_completed_successfully"
        for backing in (image_service("postgres"), image_service("redis")):
            assert depends.get(backing, {}).get("condition") == "service_healthy", (name, backing)


def test_services_waited_on_as_healthy_have_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = dict.fromkeys(depends)
        for dependency, rule in depends.items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if (rule or {}).get("condition") == "service_healthy":
                check = SERVICES[dependency].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), dependency


def test_long_running_services_state_their_healthcheck() -> None:
    for name, service in SERVICES.items():
        if service.get("restart", "no") == "no":
            continue  # one-shot
        check = service.get("healthcheck")
        assert check, f"{name}: give it a healthcheck, or `disable: true` with a reason"
        probe = " ".join(words(check.get("test")))
        if role(service) == "api":
            assert "/readyz" in probe or "/healthz" in probe, name
        if role(service) in ("worker", "worker+beat", "beat"):
            # The image's own check probes /healthz, which only the API serves.
            assert check.get("disable") or (probe and "/healthz" not in probe), name


def test_a_key_can_be_created_for_the_public_api() -> None:
    """The API binds 0.0.0.0 in the container, so ``serve`` refuses to start without a key."""
    creators = [
        name
        for name, s in SERVICES.items()
        if built_here(s) and uploads_command(s)[:2] == ["keys", "create"]
    ]
    documented = "uploads-api keys create" in COMPOSE_FILE.read_text()
    assert creators or documented


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin) or the standalone ``docker-compose``; no engine needed."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if plugin.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_accepts_the_file() -> None:
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    checked = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stderr
