"""Real servers for the cluster tests: a fresh PostgreSQL database and a unique Redis key prefix
per test.

PostgreSQL is found at ``EXECD_TEST_POSTGRES_URL`` (a server URL; each test creates its own
database there), else on the standard local port as ``postgres``. Redis at ``EXECD_TEST_REDIS_URL``,
else ``redis://127.0.0.1:6379``. Where a server cannot be reached the tests that need it are
skipped, with the reason; they never pass without it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import coredis
import psycopg
import pytest

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379"


def postgres_server() -> str:
    return os.environ.get("EXECD_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = postgres_server()
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server at {url} (set EXECD_TEST_POSTGRES_URL): {str(exc).strip()}")
    return url


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test (dropped after it)."""
    name = f"execd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("EXECD_TEST_REDIS_URL", DEFAULT_REDIS)
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                raise OSError("no PONG")
    except OSError as exc:
        pytest.skip(f"no Redis server at {url} (set EXECD_TEST_REDIS_URL): {exc}")
    return url


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted after it."""
    prefix = f"execd-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url)
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)


def broker_yaml(redis_url: str, prefix: str) -> str:
    return (f"broker: {{redis_url: \"{redis_url}\", decisions_stream: \"{prefix}:decisions\", "
            f"results_stream: \"{prefix}:results\", events_stream: \"{prefix}:events\"}}\n")
