"""Static checks of the Dockerfile, .dockerignore and docs/configuration.md.

Docker is not needed: the files are read as text. These tests catch the mistakes a build
would only reveal later (a COPY of a missing path, a root user, a stale health check) and
keep the settings table in step with ``Settings``.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from uploads_api.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with comments dropped and continuations joined."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return result


def arguments_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions(DOCKERFILE.read_text()) if kw == keyword]


def exec_form(arguments: str) -> list[str]:
    """The words of a JSON (exec form) or a shell form instruction."""
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert all(isinstance(word, str) for word in words)
        return list(words)
    return shlex.split(arguments)


def without_flags(words: list[str]) -> list[str]:
    return [word for word in words if not word.startswith("--")]


def env_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        for word in shlex.split(arguments):
            name, sep, value = word.partition("=")
            assert sep, f"use ENV NAME=value, not the legacy form: {arguments!r}"
            values[name] = value
    return values


def test_base_image_is_slim_python() -> None:
    (base,) = arguments_of("FROM")
    image = base.split()[0]
    assert re.fullmatch(r"python:3\.1[12]-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_runs_as_a_non_root_user() -> None:
    users = arguments_of("USER")
    assert users, "no USER instruction: the container would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0"), users[-1]
    assert group not in ("root", "0"), users[-1]


def test_data_dir_is_the_volume() -> None:
    volumes = [path for args in arguments_of("VOLUME") for path in exec_form(args)]
    assert "/data" in volumes
    assert env_values().get("UPLOADS_DATA_DIR") == "/data"


def test_env_names_real_settings() -> None:
    fields = {f"UPLOADS_{name.upper()}" for name in Settings.model_fields}
    uploads_vars = {name for name in env_values() if name.startswith("UPLOADS_")}
    assert uploads_vars, "the image should set UPLOADS_DATA_DIR and UPLOADS_HOST"
    assert uploads_vars <= fields, uploads_vars - fields


def test_healthcheck_probes_healthz_without_curl() -> None:
    (healthcheck,) = arguments_of("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "127.0.0.1" in healthcheck
    assert " CMD " in f" {healthcheck} "
    for tool in ("curl", "wget"):  # neither is in the slim image
        assert tool not in healthcheck


def test_cmd_serves_with_the_console_script() -> None:
    (cmd,) = arguments_of("CMD")
    assert exec_form(cmd)[:2] == ["uploads-api", "serve"]
    assert cmd.startswith("["), "exec form, so that uvicorn receives SIGTERM itself"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "uploads-api" in scripts


def test_exposes_the_default_port() -> None:
    assert str(Settings.model_fields["port"].default) in arguments_of("EXPOSE")


def pip_install_targets() -> list[str]:
    """What ``pip install`` is given in the RUN instructions (flags left out)."""
    targets: list[str] = []
    for run in arguments_of("RUN"):
        for command in re.split(r"&&|;", run):
            argv = shlex.split(command)
            if argv[:2] == ["pip", "install"]:
                targets += without_flags(argv[2:])
    return targets


def test_installs_the_source_tree_with_pip() -> None:
    runs = " ".join(arguments_of("RUN"))
    assert "pip install --no-cache-dir" in runs, "no pip cache left in the image"
    targets = pip_install_targets()
    assert len(targets) == 1, targets
    assert re.fullmatch(r"\.(\[[a-z,-]+\])?", targets[0]), targets


def test_the_image_can_run_every_role_of_the_cluster() -> None:
    """One image for API, worker and scheduler: PostgreSQL, S3 and Celery installed."""
    (target,) = pip_install_targets()
    extras = set(re.findall(r"[a-z-]+", target.partition("[")[2]))
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras <= set(optional), extras - set(optional)
    installed = " ".join(dep for extra in extras for dep in optional[extra])
    for needed in ("asyncpg", "boto3", "celery"):
        assert needed in installed, f"{needed} is not installed in the image"


def test_package_data_is_installed() -> None:
    """Files the server reads at run time (the page, the migrations) must be in the wheel:
    every directory with Python code is a package, every other file matches package-data."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["uploads_api"]
    package = ROOT / "uploads_api"
    for path in package.rglob("*"):
        if "__pycache__" in path.parts or path.is_dir():
            continue
        relative = path.relative_to(package)
        if path.suffix == ".py":
            for parent in path.relative_to(ROOT).parents[:-1]:
                assert (ROOT / parent / "__init__.py").is_file(), f"{parent} is not a package"
        else:
            assert any(relative.match(pattern) for pattern in patterns), (
                f"uploads_api/{relative} is not in [tool.setuptools.package-data]"
            )
    for needed in ("web/index.html", "web/app.js", "db/migrations/script.py.mako"):
        assert (package / needed).is_file(), needed


def test_copies_what_the_build_reads() -> None:
    copied = {
        source.rstrip("/")
        for copy in arguments_of("COPY")
        for source in without_flags(exec_form(copy))[:-1]
    }
    assert {"pyproject.toml", "uploads_api"} <= copied, copied
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copied, f"pyproject.toml names {readme} as the readme: copy it"


def test_documents_creating_a_key_for_the_public_bind() -> None:
    """The image binds 0.0.0.0, where ``serve`` refuses to start without an API key."""
    assert env_values().get("UPLOADS_HOST") == "0.0.0.0"
    text = DOCKERFILE.read_text()
    assert re.search(r"^#.*docker run .*-v \S+:/data .*uploads-api keys create", text, re.M)


@pytest.mark.parametrize("copy", arguments_of("COPY"))
def test_copy_sources_exist(copy: str) -> None:
    words = exec_form(copy)
    assert not any(word.startswith("--from") for word in words), "single-stage build"
    *sources, _destination = without_flags(words)
    assert sources, copy
    for source in sources:
        assert glob.glob(source, root_dir=ROOT), f"COPY source {source!r} is not in the repo"


def dockerignore_patterns() -> set[str]:
    return {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for required in (".venv", ".git"):
        assert required in patterns, required


@pytest.mark.parametrize("copy", arguments_of("COPY"))
def test_dockerignore_keeps_copied_sources(copy: str) -> None:
    *sources, _destination = without_flags(exec_form(copy))
    for source in sources:
        for pattern in dockerignore_patterns():
            assert not Path(source).match(pattern), f"{source} is excluded by {pattern!r}"


def test_configuration_doc_lists_every_setting() -> None:
    doc = CONFIGURATION_DOC.read_text()
    expected = {f"UPLOADS_{name.upper()}" for name in Settings.model_fields}
    mentioned = set(re.findall(r"`(UPLOADS_[A-Z0-9_]+)`", doc))
    assert not expected - mentioned, f"undocumented: {sorted(expected - mentioned)}"
    assert not mentioned - expected, f"not in Settings: {sorted(mentioned - expected)}"
