"""The bench's order generator sends like an outbox relay does: one record batch per partition
per tick, instead of one `send()` per order.

On these machines every produce request costs the broker and the bench about as much CPU as
the records in it (a system call, a wake-up and a response each way, on two cores shared with
what is measured). One `send()` per order with a 2 ms linger made up to 500 produce requests a
second at 1,000 orders/s, and as many fetches by the commission consumer that reads them: the
generator alone used about a quarter of a core, and the broker as much again (docs/benchmarks.md,
"Eighth session"). A service's outbox relay publishes per cycle, so batches per tick are also the
closer stand-in for the orders service. Records keep the partition the producer's own default
partitioner gives their key, in their order within it."""
from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner


class TickSender:
    """Collects records with `add` and sends what was added with `flush` (one record batch per
    partition, more when one fills). `ends()` waits for every batch and returns, per partition,
    the offset after the last record sent."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: list[int]):
        self.producer, self.topic = producer, topic
        self._all = sorted(partitions)
        self._partitioner = DefaultPartitioner()
        self._open: dict[int, tuple[Any, int]] = {}  # partition -> (batch, records in it)
        self._sent: list[tuple["asyncio.Future[Any]", int]] = []
        self.batches = 0

    def partition(self, key: bytes) -> int:
        return self._partitioner(key, self._all, self._all)

    async def add(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        p = self.partition(key) if partition is None else partition
        cur = self._open.get(p)
        if cur is not None and cur[0].append(key=key, value=value, timestamp=None) is not None:
            self._open[p] = (cur[0], cur[1] + 1)
            return
        if cur is not None:  # full: it goes now, and a new one starts
            await self._send(p, *cur)
        b = self.producer.create_batch()
        b.append(key=key, value=value, timestamp=None)  # an empty batch takes one record of any size
        self._open[p] = (b, 1)

    async def flush(self) -> None:
        batches, self._open = self._open, {}
        for p, (b, n) in batches.items():
            await self._send(p, b, n)

    async def _send(self, partition: int, batch: Any, n: int) -> None:
        batch.close()
        self._sent.append((await self.producer.send_batch(batch, self.topic, partition=partition), n))
        self.batches += 1

    async def ends(self) -> dict[int, int]:
        await self.flush()
        out: dict[int, int] = {}
        for md, n in zip(await asyncio.gather(*(f for f, _ in self._sent)), (n for _, n in self._sent)):
            out[md.partition] = max(out.get(md.partition, 0), md.offset + n)
        return out
