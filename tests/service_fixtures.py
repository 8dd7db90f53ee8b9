"""Real services for the tests that need them: an S3 server process (moto), PostgreSQL and
Redis on this machine. Absent on a user's machine they skip with the reason; in CI
(``CI=true``), where ``.ci/run`` starts them, they fail instead."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server on a free loopback port."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto[server] and boto3 are not installed")
    from tests.conftest import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not _port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the S3 server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session", autouse=False)
def aws_test_credentials() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket for one test."""
    name = f"uploads-{secrets.token_hex(6)}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        unavailable("asyncpg is not installed")
    if not _port_open(PG_HOST, PG_PORT):
        unavailable(f"no PostgreSQL server on {PG_HOST}:{PG_PORT}")
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


def _admin(admin_url: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@contextmanager
def _new_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template`` if given), dropped afterwards; its URL."""
    name = f"uploads_test_{secrets.token_hex(6)}"
    _admin(admin_url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    with _new_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_schema_template(postgres_admin_url: str) -> Iterator[str]:
    """A database at the head revision, made once: the template of ``database_url``'s."""
    from uploads_api.db.engine import create_engines
    from uploads_api.db.schema import ensure_schema

    async def create_schema(url: str) -> None:
        engines = create_engines(url)
        try:
            await ensure_schema(engines)
        finally:
            await engines.dispose()  # a template must have no open connection

    with _new_database(postgres_admin_url) as url:
        asyncio.run(create_schema(url))
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def postgres_schema_url(postgres_admin_url: str, postgres_schema_template: str) -> Iterator[str]:
    """A fresh database at the head revision for one test, dropped afterwards."""
    with _new_database(postgres_admin_url, postgres_schema_template) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind for the repositories: a SQLite file, then a PostgreSQL
    database copied from a template at the head revision (creating the schema there costs
    half a second a test; ``empty_database_url`` is for the tests of creating it)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_schema_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind: a SQLite file, then a PostgreSQL database."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not _port_open(REDIS_HOST, REDIS_PORT):
        unavailable(f"no Redis server on {REDIS_HOST}:{REDIS_PORT}")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"
