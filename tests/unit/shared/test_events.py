import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import ValidationError

import shared.contracts  # noqa: F401
from shared.contracts.orders import OrderLine, OrderPaid
from shared.events import Envelope, EventPayload, catalog, derive_event_id, new_event
from shared.events.catalog import Catalog, NewerVersionError, UnknownEventError
from shared.events.schemas import OUT as SCHEMA_DIR, contract_types, render
from shared.topics import ORDER_EVENTS, dead_letter, without_namespace

SAMPLES = Path(__file__).resolve().parents[2] / "contracts_samples"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def paid(order_id="o-1") -> OrderPaid:
    line = OrderLine(line_id="l1", product_id="p1", quantity=2, unit_price_fen=1000, paid_fen=1800)
    return OrderPaid(order_id=order_id, buyer_id="u1", lines=(line,), postage_fen=0, total_fen=1800,
                     transaction_id="t1", paid_at=NOW)


def test_envelope_round_trips_through_json_bytes():
    env = new_event(paid())
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert catalog.payload(back) == paid()
    assert back.key == "o-1" and back.event_type == "OrderPaid" and back.version == 1


def test_caused_event_carries_causation_and_correlation():
    cause = new_event(paid())
    effect = new_event(paid("o-2"), cause=cause)
    assert effect.causation_id == cause.event_id
    assert effect.correlation_id == cause.correlation_id == cause.event_id


def test_derived_ids_are_deterministic_and_distinct_per_part():
    cause = uuid.uuid4()
    assert derive_event_id(cause, "l1", "level1") == derive_event_id(cause, "l1", "level1")
    assert derive_event_id(cause, "l1", "level1") != derive_event_id(cause, "l1", "level2")
    assert derive_event_id(cause, "x") != derive_event_id(uuid.uuid4(), "x")


def test_events_are_immutable():
    p = paid()
    with pytest.raises(ValidationError):
        p.order_id = "other"  # type: ignore[misc]


def test_unknown_fields_are_ignored_by_the_tolerant_reader():
    """A producer upgraded first may add fields (to the envelope, the payload or a nested value):
    this code reads what it knows and ignores the rest, it never refuses the event."""
    env = new_event(paid()).model_dump(mode="json")
    env["schema_hint"] = "v1+"
    env["payload"]["surprise"] = 1
    env["payload"]["lines"][0]["gift_wrap"] = True
    back = Envelope.from_bytes(json.dumps(env).encode())
    assert catalog.payload(back) == paid()


def test_negative_money_is_refused():
    data = paid().model_dump(mode="json")
    data["lines"][0]["paid_fen"] = -1
    with pytest.raises(ValidationError):
        OrderPaid.model_validate(data)


def test_every_frozen_sample_of_every_version_still_parses():
    files = sorted(SAMPLES.glob("*.json"))
    assert files, "no contract samples"
    seen_types = set()
    for f in files:
        env = Envelope.model_validate(json.loads(f.read_text()))
        payload = catalog.payload(env)
        assert payload.event_type == env.event_type
        seen_types.add(env.event_type)
    missing = set(contract_types()) - seen_types
    assert not missing, f"events without a frozen sample (run `python -m shared.events.samples`): {sorted(missing)}"


def test_upcaster_brings_an_old_version_to_the_current_shape():
    cat = Catalog()

    class Renamed(EventPayload):
        event_type: ClassVar[str] = "Renamed"
        version: ClassVar[int] = 2
        key_field: ClassVar[str] = "promoter_id"
        promoter_id: str

    cat.register(Renamed)

    @cat.upcaster("Renamed", 1)
    def v1_to_v2(d):
        d["promoter_id"] = d.pop("user_id")
        return d

    old = Envelope(event_id=uuid.uuid4(), event_type="Renamed", version=1, occurred_at=NOW, key="u", payload={"user_id": "u"})
    assert cat.payload(old) == Renamed(promoter_id="u")
    newer = old.model_copy(update={"version": 3})
    with pytest.raises(NewerVersionError):
        cat.payload(newer)


def test_unknown_event_type_is_refused():
    env = Envelope(event_id=uuid.uuid4(), event_type="Nope", version=1, occurred_at=NOW, key="k", payload={})
    with pytest.raises(UnknownEventError):
        catalog.payload(env)


def test_committed_json_schemas_match_the_code():
    rendered = render()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == rendered, "docs/events is stale: run `make schemas`"


def test_topic_naming():
    assert without_namespace(ORDER_EVENTS) == "orders.order-events.v1"
    assert dead_letter(ORDER_EVENTS) == ORDER_EVENTS + ".dlq"
    assert shared.contracts.topic_of("OrderPaid") == ORDER_EVENTS
