"""A projector's fetch wait is short and reaches its Kafka consumer: with aiokafka's default
(500 ms) one long batch left a fetch of idle partitions in flight that blocked the busy ones
(shared.projector.subscribe)."""
import pytest
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared.projector import subscribe
from shared.settings import CommonSettings


class _Projection:
    topics = ("t.orders", "t.withdrawals")


class _Projector:
    projection = _Projection()
    listener = None

    def bind_consumer(self, get):
        self.get = get


def _connection_args(**kw):
    sub = subscribe(KafkaBroker("127.0.0.1:1"), _Projector(), group_id="g", **kw)
    return sub._connection_args  # what FastStream hands to AIOKafkaConsumer(...)


def test_the_subscriber_asks_for_a_short_fetch_wait():
    assert _connection_args()["fetch_max_wait_ms"] == 50
    assert _connection_args(fetch_max_wait_ms=20)["fetch_max_wait_ms"] == 20


def test_the_setting_defaults_short_and_is_bounded(monkeypatch):
    assert CommonSettings().projector_fetch_max_wait_ms == 50
    monkeypatch.setenv("PROJECTOR_FETCH_MAX_WAIT_MS", "25")
    assert CommonSettings().projector_fetch_max_wait_ms == 25
    for bad in ("0", "501"):
        monkeypatch.setenv("PROJECTOR_FETCH_MAX_WAIT_MS", bad)
        with pytest.raises(ValidationError):
            CommonSettings()
