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


def test_installs_the_source_tree_with_pip() -> None:
    runs = " ".join(arguments_of("RUN"))
    assert "pip install --no-cache-dir ." in runs


@pytest.mark.parametrize("copy", arguments_of("COPY"))
def test_copy_sources_exist(copy: str) -> None:
    words = exec_form(copy)
    assert not any(word.startswith("--from") for word in words), "single-stage build"
    *sources, _destination = without_flags(words)
    assert sources, copy
    for source in sources:
        assert glob.glob(source, root_dir=ROOT), f"COPY source {source!r} is not in the repo"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", ".git"):
        assert required in patterns, required


def test_configuration_doc_lists_every_setting() -> None:
    doc = CONFIGURATION_DOC.read_text()
    expected = {f"UPLOADS_{name.upper()}" for name in Settings.model_fields}
    mentioned = set(re.findall(r"`(UPLOADS_[A-Z0-9_]+)`", doc))
    assert not expected - mentioned, f"undocumented: {sorted(expected - mentioned)}"
    assert not mentioned - expected, f"not in Settings: {sorted(mentioned - expected)}"
