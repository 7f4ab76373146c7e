"""One-step envelope parsing (`catalog.parse_current`, used by `Projector._parse`): the current
version of a known type is read in one validation, with exactly the result of the two-step path
(`Envelope.from_bytes`, then `catalog.payload`). Everything else takes the two-step path:
older versions are upcast, newer ones halt, unknown types are passed over, malformed records are
dead-lettered with the same reason, and a record whose hint (headers, peek) disagrees with its
body is read as its body says."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

import shared.contracts  # noqa: F401
from shared.events import Envelope, catalog
from shared.events.envelope import peek_type
from shared.projector import Projector

SAMPLES = Path(__file__).resolve().parents[2] / "contracts_samples"
TOPIC = "one-step"


def _samples() -> list[tuple[str, dict]]:
    return [(f.name, json.loads(f.read_text())) for f in sorted(SAMPLES.glob("*.json"))]


def _current(sample: dict) -> bool:
    return catalog.types()[sample["event_type"]].version == sample["version"]


CURRENT = [(n, s) for n, s in _samples() if _current(s)]
OLDER = [(n, s) for n, s in _samples() if not _current(s)]


def _two_step(raw: bytes):
    env = Envelope.from_bytes(raw)
    return env, catalog.payload(env)


def _same(one, two) -> None:
    """Equal envelope (fields, which were set, bytes written back) and equal payload."""
    (env1, p1), (env2, p2) = one, two
    assert type(env1) is Envelope and env1 == env2
    assert env1.payload == env2.payload  # the original dict, unknown fields included
    assert env1.to_bytes() == env2.to_bytes()
    assert env1.model_fields_set == env2.model_fields_set
    assert type(p1) is type(p2) and p1 == p2


class _Wants:
    name = "one-step-test"
    topics = (TOPIC,)

    def __init__(self, *event_types: str) -> None:
        self.event_types = frozenset(event_types or catalog.types())

    async def apply(self, conn, batch) -> None:  # pragma: no cover - _parse never applies
        raise AssertionError


def _record(value: bytes | None, offset: int = 0, headers: dict[str, str] | None = None) -> ConsumerRecord:
    hdrs = [(k, v.encode()) for k, v in (headers or {}).items()]
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value or b""), hdrs)


def _relay_headers(event_type: str, version: int | str) -> dict[str, str]:
    return {"event_type": event_type, "event_version": str(version), "traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}


def _parse(records: list[ConsumerRecord], *wanted: str):
    projector = Projector(_Wants(*wanted), None, service="test")  # type: ignore[arg-type]
    return projector._parse({TopicPartition(TOPIC, 0): list(records)})


def _compact(sample: dict, **changes) -> bytes:
    """The sample, with changes, laid out as `to_bytes` writes it (what every producer here
    sends): compact, the envelope's fields in their order, unknown ones after."""
    data = {**sample, **changes}
    order = [k for k in Envelope.model_fields if k in data] + [k for k in data if k not in Envelope.model_fields]
    return json.dumps({k: data[k] for k in order}, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("name,sample", CURRENT, ids=[n for n, _ in CURRENT])
def test_every_current_sample_parses_in_one_step_to_what_two_steps_give(name, sample):
    for raw in (json.dumps(sample).encode(), _compact(sample)):  # the frozen sample, and as to_bytes writes it
        one = catalog.parse_current(raw, sample["event_type"], sample["version"])
        assert one is not None, name
        _same(one, _two_step(raw))
        assert catalog.parse_current(raw, sample["event_type"]) is not None  # no version hint: the body's is checked


@pytest.mark.parametrize("name,sample", CURRENT, ids=[n for n, _ in CURRENT])
def test_the_projector_reads_every_current_sample_by_headers_or_peek_like_before(name, sample):
    raw = _compact(sample)
    assert peek_type(raw) == (sample["event_type"], sample["version"])
    for headers in (_relay_headers(sample["event_type"], sample["version"]), None):
        events, dead, halts = _parse([_record(raw, headers=headers)])
        assert not dead and not halts and len(events) == 1
        _same((events[0].envelope, events[0].payload), _two_step(raw))
        assert events[0].headers == (headers or {})


@pytest.mark.parametrize("name,sample", OLDER, ids=[n for n, _ in OLDER])
def test_an_older_version_is_still_upcast(name, sample):
    raw = _compact(sample)
    assert catalog.parse_current(raw, sample["event_type"], sample["version"]) is None  # not this path's
    assert catalog.parse_current(raw, sample["event_type"]) is None  # the body's version is not the current one
    # by its true headers, by a peek, and with headers claiming the current version
    current = catalog.types()[sample["event_type"]].version
    for headers in (_relay_headers(sample["event_type"], sample["version"]), None,
                    _relay_headers(sample["event_type"], current)):
        events, dead, halts = _parse([_record(raw, headers=headers)])
        assert not dead and not halts and len(events) == 1
        assert events[0].envelope.version == sample["version"]
        assert events[0].payload == _two_step(raw)[1] and events[0].payload.version == current


def test_older_samples_exist_to_test_upcasting():
    assert OLDER, "no sample of an older version left: the upcast test above checks nothing"


def _paid_sample() -> dict:
    return json.loads((SAMPLES / "OrderPaid.v1.json").read_text())


@pytest.mark.parametrize("header_version", ["2", "1", None])
def test_a_newer_version_still_halts(header_version):
    raw = _compact(_paid_sample(), version=2)
    headers = _relay_headers("OrderPaid", header_version) if header_version else None
    before = _record(_compact(_paid_sample(), event_id=str(uuid.uuid4())), offset=0)
    events, dead, halts = _parse([before, _record(raw, offset=1, headers=headers)])
    assert [e.offset for e in events] == [0] and not dead
    halt = halts[TopicPartition(TOPIC, 0)]
    assert (halt.offset, halt.event_type, halt.event_version) == (1, "OrderPaid", 2)
    assert "newer than this code" in halt.reason


def test_a_record_is_read_as_its_body_says_whatever_its_headers_claim():
    completed = json.loads((SAMPLES / "OrderCompleted.v1.json").read_text())
    paid = _paid_sample()
    # headers claim OrderPaid, the body is an OrderCompleted: an OrderCompleted, not a failed OrderPaid
    events, dead, halts = _parse([_record(_compact(completed), headers=_relay_headers("OrderPaid", 1))])
    assert not dead and not halts and type(events[0].payload).__name__ == "OrderCompleted"
    # headers claim a type this projection does not want, the body is one it wants: applied
    events, dead, _ = _parse([_record(_compact(paid), headers=_relay_headers("OrderCompleted", 1))], "OrderPaid")
    assert not dead and type(events[0].payload).__name__ == "OrderPaid"
    # headers claim a wanted type, the body is a type nobody knows that carries a valid OrderPaid payload:
    # passed over (tolerant reader), never taken for an OrderPaid
    unknown = _compact(paid, event_type="OrderPaidSomeday")
    assert catalog.parse_current(unknown, "OrderPaid", 1) is None
    events, dead, halts = _parse([_record(unknown, headers=_relay_headers("OrderPaid", 1))])
    assert (events, dead, halts) == ([], [], {})
    # a peek fooled by a payload field of the same name is corrected by the body too
    tricky = dict(completed, payload={"event_type": "OrderPaid", "version": 1, **completed["payload"]})
    raw = json.dumps({"payload": tricky["payload"], **{k: v for k, v in tricky.items() if k != "payload"}},
                     separators=(",", ":")).encode()
    assert peek_type(raw) == ("OrderPaid", 1)
    events, dead, _ = _parse([_record(raw)])
    assert not dead and type(events[0].payload).__name__ == "OrderCompleted"
    # headers that are not the relay's are only ignored
    events, dead, _ = _parse([_record(_compact(paid), headers={"event_type": "OrderPaid", "event_version": "v1"})])
    assert not dead and type(events[0].payload).__name__ == "OrderPaid"


def _old_reason(raw: bytes | None) -> str:
    try:
        if raw is None:
            raise ValueError("empty record value")
        _two_step(raw)
    except (ValidationError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"[:2000]
    raise AssertionError("the two-step path read it")


def test_malformed_records_are_dead_lettered_with_the_two_step_reason():
    paid = _paid_sample()
    no_order_id = dict(paid, payload={k: v for k, v in paid["payload"].items() if k != "order_id"})
    negative = dict(paid, payload={**paid["payload"], "total_fen": -1})
    no_event_id = {k: v for k, v in paid.items() if k != "event_id"}
    bad = {
        "not json": b"\x00not json at all",
        "truncated": _compact(paid)[:-5],
        "missing payload field": _compact(no_order_id),
        "invalid payload field": _compact(negative),
        "missing envelope field": _compact(no_event_id),
        "empty key": _compact(paid, key=""),
        "empty value": None,
    }
    records = [_record(raw, offset=i, headers=_relay_headers("OrderPaid", 1)) for i, raw in enumerate(bad.values())]
    events, dead, halts = _parse(records)
    assert not events and not halts
    assert [d.offset for d in dead] == list(range(len(bad)))
    for d, (what, raw) in zip(dead, bad.items()):
        assert d.value == raw
        assert d.reason == _old_reason(raw), what
    assert "order_id" in dead[2].reason and "total_fen" in dead[3].reason and "event_id" in dead[4].reason


def test_unknown_fields_are_ignored_and_kept_in_the_envelope_payload():
    paid = _paid_sample()
    payload = {**paid["payload"], "surprise": 1,
               "lines": [{**paid["payload"]["lines"][0], "gift_wrap": True}]}
    raw = _compact(paid, schema_hint="v1+", payload=payload)
    one = catalog.parse_current(raw, "OrderPaid", 1)
    assert one is not None
    _same(one, _two_step(raw))
    env, parsed = one
    assert "schema_hint" not in env.model_dump()
    assert env.payload["surprise"] == 1 and env.payload["lines"][0]["gift_wrap"] is True  # re-published as it came
    assert parsed == _two_step(_compact(paid))[1]


def test_an_envelope_without_its_optional_fields_gets_their_defaults():
    paid = _paid_sample()
    raw = json.dumps({k: v for k, v in paid.items() if k not in ("causation_id", "correlation_id")}).encode()
    one = catalog.parse_current(raw, "OrderPaid", 1)
    assert one is not None and one[0].causation_id is None and one[0].correlation_id is None
    _same(one, _two_step(raw))
    assert "correlation_id" not in one[0].model_fields_set


def test_an_envelope_read_in_one_step_behaves_as_any_other():
    raw = _compact(_paid_sample())
    env, _ = catalog.parse_current(raw, "OrderPaid", 1)  # type: ignore[misc]
    other = env.model_copy(update={"version": 2})
    assert other.version == 2 and env.version == 1 and "version" in other.model_fields_set
    with pytest.raises(ValidationError):
        env.key = "other"  # type: ignore[misc]
    assert Envelope.from_bytes(env.to_bytes()) == env
    assert repr(env).startswith("Envelope(")


def test_peek_finds_type_and_version_only_where_to_bytes_writes_them():
    raw = _compact(_paid_sample())
    assert peek_type(raw) == ("OrderPaid", 1)
    assert peek_type(raw) == ("OrderPaid", 1)  # again, from what it remembers
    assert peek_type(json.dumps(_paid_sample(), indent=2).encode()) is None  # another layout: no hint
    assert peek_type(_compact(_paid_sample(), version=12)) == ("OrderPaid", 12)
    assert peek_type(b"\x00not json") is None
    assert peek_type(b'{"event_type":"A\\"B","version":1}') is None


def test_the_envelope_has_nothing_the_one_step_copy_of_its_fields_would_miss():
    """The one-step validator copies the Envelope's field types and constraints; a validator,
    alias or default factory added to the Envelope must be carried over there too."""
    decorators = Envelope.__pydantic_decorators__
    assert not (decorators.field_validators or decorators.model_validators or decorators.validators
                or decorators.root_validators or decorators.field_serializers or decorators.model_serializers)
    for name, info in Envelope.model_fields.items():
        assert info.alias is None and info.validation_alias is None and info.default_factory is None, name
