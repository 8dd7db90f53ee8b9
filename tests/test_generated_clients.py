"""Clients generated from a live server's /openapi.json work against that server.

openapi-typescript's types must compile with tests/clients/client.ts under ``tsc --strict``,
and the compiled round_trip.ts then uploads, reads, lists and deletes; openapi-python-client's
package does the same through tests/clients/round_trip.py. A part of the description that a
generator warns about, or leaves out, fails the test.

``make test-tools`` (which ``make test`` runs) installs the generators into .cache/: the
npm packages pinned by tests/clients/package-lock.json, and openapi-python-client in a venv
of its own, since it pins httpx below the project's. The generated Python client runs in that
venv too: the code it generates wants ``httpx<0.29`` and ``attrs``, which that venv has.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Server, ServerFactory
from tests.helpers import create_key, sha256, wait_closed
from tests.service_fixtures import unavailable

pytestmark = pytest.mark.e2e

CLIENTS = ROOT / "tests" / "clients"
NODE_BIN = ROOT / ".cache" / "node" / "node_modules" / ".bin"
PY_GENERATOR_BIN = ROOT / ".cache" / "openapi-python-client" / "bin"
TSC_OPTIONS = (
    *("--strict", "--noEmitOnError", "--target", "es2022", "--module", "es2022"),
    *("--moduleResolution", "bundler", "--lib", "es2022,dom,dom.iterable"),
)


@dataclass(frozen=True)
class Keyed:
    server: Server
    key: str


@pytest.fixture(scope="module")
def keyed(module_server_factory: ServerFactory) -> Keyed:
    server = module_server_factory()
    key = create_key(server.data_dir, "generated")
    wait_closed(server)
    return Keyed(server, key)


@pytest.fixture(scope="module")
def spec(keyed: Keyed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    response = httpx.get(f"{keyed.server.url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    path = tmp_path_factory.mktemp("spec") / "openapi.json"
    path.write_bytes(response.content)
    return path


def require(*tools: Path) -> None:
    missing = [str(tool.relative_to(ROOT)) for tool in tools if not tool.exists()]
    if shutil.which("node") is None and any(tool.is_relative_to(NODE_BIN) for tool in tools):
        missing.append("node")
    if missing:
        unavailable(f"{', '.join(missing)} missing: `make test-tools` installs the generators")


def run(
    *command: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``command``, its output printed so that pytest shows it with a failure."""
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    print(f"$ {' '.join(map(str, command))}  -> exit {done.returncode}")
    print(done.stdout, done.stderr, sep="\n")
    return done


def described(generator: str, findings: dict[str, list[str]]) -> str:
    """The generator's findings, each with where in the description it occurs."""
    return "\n".join(
        f"{generator}: {finding} ({len(places)}x, in {', '.join(sorted(set(places)))})"
        for finding, places in findings.items()
    )


def assert_uploads(seen: dict[str, Any], data: bytes) -> None:
    """The two uploads' records as the client saw them: one multipart, one raw body."""
    for record, name in ((seen["uploaded"], "multipart.txt"), (seen["raw"], "raw body.txt")):
        expected = {"size": len(data), "sha256": sha256(data), "filename": name}
        assert record == {**expected, "id": record["id"]}


def typescript_generator_findings(stderr: str) -> dict[str, list[str]]:
    """openapi-typescript's warnings (its errors fail it), by message: `` ⚠  MESSAGE at #/ptr``."""
    findings: dict[str, list[str]] = defaultdict(list)
    for line in re.sub(r"\x1b\[[0-9;]*m", "", stderr).splitlines():
        if line.strip().startswith("\u26a0"):
            message, _, pointer = line.strip()[1:].strip().partition(" at #")
            findings[message].append(f"#{pointer}" if pointer else "the description")
    return findings


def python_generator_findings(stderr: str) -> dict[str, list[str]]:
    """openapi-python-client's report, by finding, with the operations each is about. A block
    reads ``WARNING parsing GET /x within tag.``, the detail, then the part of the description
    concerned as JSON."""
    findings: dict[str, list[str]] = defaultdict(list)
    blocks = re.split(r"^(?=(?:WARNING|ERROR) parsing )", stderr, flags=re.MULTILINE)
    for block in blocks[1:]:
        header, detail, *rest = [part.strip() for part in block.split("\n\n") if part.strip()]
        place = re.sub(r"^\w+ parsing (.*?)(?: within \S+)?\.?$", r"\1", header)
        # 0.29 prints the status code as an object's repr; the response's description tells.
        detail = re.sub(r" for status code <[^<>]* object at 0x[0-9a-f]+>", "", detail)
        with contextlib.suppress(ValueError, IndexError):
            data = json.loads(rest[0])
            if isinstance(data, dict) and isinstance(data.get("description"), str):
                place += f" ({data['description']!r})"
        findings[detail].append(place)
    return findings


def test_typescript_client_compiles_and_round_trips(
    keyed: Keyed, spec: Path, tmp_path: Path
) -> None:
    openapi_typescript, tsc = NODE_BIN / "openapi-typescript", NODE_BIN / "tsc"
    require(openapi_typescript, tsc)
    for source in ("client.ts", "round_trip.ts"):
        shutil.copy(CLIENTS / source, tmp_path / source)
    (tmp_path / "package.json").write_text('{"type": "module"}\n')  # node runs the output as ESM

    generated = run(openapi_typescript, spec, "-o", tmp_path / "api.d.ts")
    assert generated.returncode == 0, "openapi-typescript could not use the description"
    findings = typescript_generator_findings(generated.stderr)
    # A part of the description a generator had to leave out is a bug in the description.
    assert not findings, described("openapi-typescript", findings)

    compiled = run(
        tsc, *TSC_OPTIONS, "--outDir", tmp_path / "out",
        tmp_path / "client.ts", tmp_path / "round_trip.ts",
    )  # fmt: skip
    assert compiled.returncode == 0, "client.ts does not type-check against the generated types"

    ran = run("node", tmp_path / "out" / "round_trip.js", keyed.server.url, keyed.key)
    assert ran.returncode == 0
    seen: dict[str, Any] = json.loads(ran.stdout)
    assert_uploads(seen, b"hello from a generated TypeScript client\n")
    assert seen["fetched"]["id"] == seen["uploaded"]["id"]
    assert seen["fetched"]["status"] in {"ready", "failed"}
    assert seen["firstPage"]["count"] == 1 and seen["firstPage"]["nextCursor"]
    assert {seen["uploaded"]["id"], seen["raw"]["id"]} <= set(seen["listed"])
    assert seen["afterDelete"] == "404 not-found"


def test_python_client_round_trips(keyed: Keyed, spec: Path, tmp_path: Path) -> None:
    generator, python = PY_GENERATOR_BIN / "openapi-python-client", PY_GENERATOR_BIN / "python"
    require(generator, python)
    # Its post-generation hooks run the ruff installed beside it.
    env = {**os.environ, "PATH": f"{PY_GENERATOR_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    package = tmp_path / "uploads_api_client"
    generated = run(
        generator, "generate", "--path", spec, "--output-path", package, "--meta", "none", env=env
    )
    assert generated.returncode == 0, "openapi-python-client could not use the description"
    findings = python_generator_findings(generated.stderr)
    assert not findings, described("openapi-python-client", findings)

    env["PYTHONPATH"] = str(tmp_path)
    ran = run(python, CLIENTS / "round_trip.py", keyed.server.url, keyed.key, env=env)
    assert ran.returncode == 0
    seen: dict[str, Any] = json.loads(ran.stdout)
    assert_uploads(seen, b"hello from a generated Python client\n")
    assert seen["fetched"] == {**seen["uploaded"], "status": seen["fetched"]["status"]}
    assert seen["fetched"]["status"] in {"ready", "failed"}
    assert {seen["uploaded"]["id"], seen["raw"]["id"]} <= set(seen["listed"])
    assert seen["after_delete"] == 404
