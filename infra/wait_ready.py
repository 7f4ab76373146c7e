#!/usr/bin/env python3
"""Readiness probe for the local (or any) Kafka + PostgreSQL used by fenxiao.

Used by ``infra/local.sh up``; also usable on its own against an external
cluster::

    .venv/bin/python infra/wait_ready.py              # both, from the env
    .venv/bin/python infra/wait_ready.py --kafka 127.0.0.1:19092 --no-postgres

Kafka is "ready" when, within the timeout,
  1. a producer can fetch metadata and write one record to ``_fenxiao_ready``
     (auto-created on first use),
  2. a consumer in a throw-away group subscribed to ``_fenxiao_ready`` gets a
     partition assignment (i.e. the group coordinator is up - it comes up a few
     seconds after the port opens), and
  3. unless ``--no-txn``, a transactional producer can initialise (i.e. the
     transaction coordinator and ``__transaction_state`` are usable).

PostgreSQL is "ready" when ``asyncpg.connect(DSN)`` + ``select 1`` succeed.

Exit status 0 when everything is ready, 1 otherwise (after printing a clear
error and, if ``--kafka-log`` / ``--postgres-log`` were given, their tail).
Each ready line carries the elapsed seconds, e.g. ``[infra] kafka ready (3.2s)``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from collections import deque
from pathlib import Path

READY_TOPIC = "_fenxiao_ready"
DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_DSN = "postgresql://fenxiao:fenxiao@127.0.0.1:55432/fenxiao"


def say(msg: str) -> None:
    print(f"[infra] {msg}", flush=True)


def tail(path: str | None, n: int = 40) -> None:
    if not path:
        return
    p = Path(path)
    if not p.exists():
        say(f"(log {path} does not exist)")
        return
    with p.open(errors="replace") as fh:
        lines = deque(fh, maxlen=n)
    say(f"---- last {len(lines)} lines of {path} ----")
    for line in lines:
        sys.stderr.write(line)
    if lines and not lines[-1].endswith("\n"):
        sys.stderr.write("\n")
    say("---- end of log ----")


async def _kafka_once(bootstrap: str, attempt_timeout: float, txn: bool) -> None:
    """One full readiness attempt; raises on any failure."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    common = dict(bootstrap_servers=bootstrap, request_timeout_ms=int(attempt_timeout * 1000))

    # 1. metadata + produce (auto-creates the topic).
    # (stop() also after a failed start(), or aiokafka leaks the client.)
    producer = AIOKafkaProducer(**common, acks="all")
    try:
        await producer.start()
        await producer.send_and_wait(READY_TOPIC, b"ready", key=b"ready")
    finally:
        await producer.stop()

    # 2. group coordinator: join a throw-away group and wait for an assignment.
    consumer = AIOKafkaConsumer(
        **common,
        group_id=f"_fenxiao_ready_{uuid.uuid4().hex[:12]}",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    try:
        await consumer.start()
        consumer.subscribe([READY_TOPIC])
        deadline = time.monotonic() + attempt_timeout
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("consumer group join got no partition assignment")
            # getmany drives nothing by itself (coordination runs in a background
            # task) but gives the loop a chance to run it.
            await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()

    # 3. transaction coordinator.
    if txn:
        tp = AIOKafkaProducer(**common, transactional_id="_fenxiao_ready_txn")
        try:
            await tp.start()  # InitProducerId goes to the transaction coordinator
        finally:
            await tp.stop()


async def wait_kafka(
    bootstrap: str, timeout: float, txn: bool, log_path: str | None, verbose: bool = False
) -> bool:
    t0 = time.monotonic()
    deadline = t0 + timeout
    last_exc: BaseException | None = None
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(
                _kafka_once(bootstrap, min(20.0, max(remaining, 1.0)), txn),
                timeout=max(remaining, 1.0),
            )
            say(f"kafka ready at {bootstrap} ({time.monotonic() - t0:.1f}s, {attempt} attempt(s))")
            return True
        except Exception as exc:  # noqa: BLE001 - anything means "not yet"
            last_exc = exc
            if verbose:
                say(f"kafka attempt {attempt} ({time.monotonic() - t0:.1f}s): {type(exc).__name__}: {exc}")
            await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    say(
        f"ERROR: kafka at {bootstrap} not ready after {timeout:.0f}s "
        f"({attempt} attempt(s)); last error: {type(last_exc).__name__}: {last_exc}"
    )
    tail(log_path)
    return False


async def wait_postgres(dsn: str, timeout: float, log_path: str | None) -> bool:
    import asyncpg

    t0 = time.monotonic()
    deadline = t0 + timeout
    last_exc: BaseException | None = None
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            conn = await asyncpg.connect(dsn, timeout=min(5.0, max(deadline - time.monotonic(), 0.5)))
            try:
                if await conn.fetchval("select 1") != 1:
                    raise RuntimeError("select 1 returned something else")
            finally:
                await conn.close()
            say(f"postgres ready at {_redact(dsn)} ({time.monotonic() - t0:.1f}s, {attempt} attempt(s))")
            return True
        except Exception as exc:  # noqa: BLE001
            last_exc = exc
            await asyncio.sleep(0.5)
    say(
        f"ERROR: postgres at {_redact(dsn)} not ready after {timeout:.0f}s "
        f"({attempt} attempt(s)); last error: {type(last_exc).__name__}: {last_exc}"
    )
    tail(log_path)
    return False


def _redact(dsn: str) -> str:
    # postgresql://user:secret@host/db -> postgresql://user:***@host/db
    if "://" in dsn and "@" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return dsn


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA),
                    help="bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or %(default)s)")
    ap.add_argument("--postgres", default=os.environ.get("DATABASE_URL", DEFAULT_DSN),
                    help="PostgreSQL DSN (default: $DATABASE_URL or the local one)")
    ap.add_argument("--no-kafka", action="store_true")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-txn", action="store_true", help="skip the transactional-producer check")
    ap.add_argument("--timeout", type=float, default=90.0, help="overall seconds per service (default 90)")
    ap.add_argument("--kafka-log", help="log file to tail if Kafka is not ready")
    ap.add_argument("--postgres-log", help="log file to tail if PostgreSQL is not ready")
    ap.add_argument("-v", "--verbose", action="store_true", help="show aiokafka's own logging")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    jobs = []
    if not args.no_postgres:
        jobs.append(wait_postgres(args.postgres, args.timeout, args.postgres_log))
    if not args.no_kafka:
        jobs.append(wait_kafka(args.kafka, args.timeout, not args.no_txn, args.kafka_log, args.verbose))
    results = await asyncio.gather(*jobs)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
