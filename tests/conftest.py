"""Test-session plumbing: where the real Kafka and PostgreSQL are.

1. KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL set: use them (CI and `make test` start the
   project's own local servers with `infra/local.sh up` and export these).
2. Otherwise, where a Docker engine answers: testcontainers (a developer laptop).
3. Otherwise: the project's local servers on their default ports, or a clear error."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

# Each test session gets its own topics (inherited by service subprocesses), so a run never
# replays what an earlier run or the demo left on the same broker. Set before shared.topics loads.
os.environ.setdefault("FENXIAO_TOPIC_NAMESPACE", "test" + uuid.uuid4().hex[:8])
# Services refuse to start without strong keys: the session's (see tests/identity.py, the one
# way tests mint identities). Set before any settings object is built; subprocesses inherit them.
from tests.identity import (  # noqa: E402
    TEST_CODE_SECRET, TEST_IDENTITY_MASTER_KEY, TEST_IDENTITY_SECRET, TEST_PERSONAL_DATA_KEY,
)

os.environ.setdefault("FENXIAO_IDENTITY_SECRET", TEST_IDENTITY_SECRET)
os.environ.setdefault("REFERRAL_CODE_SECRET", TEST_CODE_SECRET)
os.environ.setdefault("REFERRAL_PERSONAL_DATA_KEY", TEST_PERSONAL_DATA_KEY)
os.environ.setdefault("PAYOUT_IDENTITY_MASTER_KEY", TEST_IDENTITY_MASTER_KEY)
# Tests call far faster than a person; the rate-limit tests switch them on for their own app.
os.environ.setdefault("FENXIAO_RATE_LIMITS", "off")

DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_DB = "postgresql://fenxiao:fenxiao@127.0.0.1:55432/fenxiao"


def _docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _port_open(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def infra() -> dict[str, str]:
    """{'kafka': bootstrap, 'db': dsn} of real servers, exported to the environment so that
    services started in-process or as subprocesses use them."""
    kafka, db = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    containers = []
    if not (kafka and db) and not (_port_open(DEFAULT_KAFKA) and _port_open(DEFAULT_DB.split("@")[1].split("/")[0])) and _docker_engine():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        k = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
        p = PostgresContainer("postgres:15", driver=None)
        k.start(); p.start(); containers += [k, p]
        kafka, db = k.get_bootstrap_server(), p.get_connection_url()
    kafka, db = kafka or DEFAULT_KAFKA, db or DEFAULT_DB
    if not _port_open(kafka.split(",")[0]):
        pytest.exit(f"no Kafka at {kafka}: run `bash infra/local.sh up` (or `make test`)", returncode=2)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"] = kafka, db
    yield {"kafka": kafka, "db": db}
    for c in containers:
        c.stop()


@pytest.fixture
def ids():
    """Random ids per test (tests share the broker and database)."""
    suffix = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}-{suffix}"


@pytest_asyncio.fixture
async def fresh_schema(infra) -> AsyncIterator[str]:
    """A new, empty PostgreSQL schema name, dropped after the test."""
    from shared.db import drop_schema

    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    await drop_schema(infra["db"], name)


@asynccontextmanager
async def migrated(dsn: str, schema: str, migrations) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `schema` once `migrations` have run there (a store tested on its own)."""
    from shared.db import migrate

    await migrate(dsn, schema, migrations)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.close()


@contextmanager
def statements_of(conn: asyncpg.Connection) -> Iterator[list[str]]:
    """The statements `conn` sends inside the block, in order (asyncpg's query logger)."""
    sent: list[str] = []

    def logged(q) -> None:
        sent.append(q.query)

    conn.add_query_logger(logged)
    try:
        yield sent
    finally:
        conn.remove_query_logger(logged)


@pytest_asyncio.fixture
async def db_conn(infra) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(infra["db"])
    yield conn
    await conn.close()


async def create_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    """Create topics as the services do: unlimited retention (a service refuses to read a topic
    that would lose events)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from shared.topics import UNLIMITED_RETENTION

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=dict(UNLIMITED_RETENTION)) for n in names])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


@asynccontextmanager
async def running_app(app) -> AsyncIterator[httpx.AsyncClient]:
    """Run a service's FastAPI app in-process with its full lifespan (pool, producer,
    projectors on the real broker) and give an HTTP client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def eventually(check, timeout: float = 30.0, interval: float = 0.1):
    """Poll an async `check` until it returns a truthy value; fail with the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        last = await check()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last={last!r}")
        await asyncio.sleep(interval)
