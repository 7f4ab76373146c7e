"""Write a sample envelope of every current event version into tests/contracts_samples/
(`python -m shared.events.samples`). Samples are frozen once written: the contract test
parses every one of them with the current code, so an incompatible change to an event
(without a new version and an upcaster) fails the build."""
from __future__ import annotations

import json
import types
import typing
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

import shared.contracts  # noqa: F401
from shared.events import catalog, new_event
from shared.events.schemas import contract_types

OUT = Path(__file__).resolve().parents[2] / "tests" / "contracts_samples"
WHEN = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)


def _value(tp, name: str):
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _value(args[0], name)
    if origin in (tuple, list):
        return [_value(typing.get_args(tp)[0], name)]
    if origin is dict:
        return {"example": 1}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {f: _value(info.annotation, f) for f, info in tp.model_fields.items()}
    if tp is bool:
        return True
    if tp is int:
        return 1
    if tp is datetime:
        return WHEN.isoformat()
    return f"{name}-1"


def sample(event_type: str) -> dict:
    cls = catalog.types()[event_type]
    data = {f: _value(info.annotation, f) for f, info in cls.model_fields.items()}
    payload = cls.model_validate(data)
    env = new_event(payload, event_id=uuid.uuid5(uuid.NAMESPACE_URL, event_type), occurred_at=WHEN)
    return env.model_dump(mode="json")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, cls in sorted(contract_types().items()):
        path = OUT / f"{name}.v{cls.version}.json"
        if not path.exists():  # never overwrite: a sample is a frozen witness of its version
            path.write_text(json.dumps(sample(name), indent=2, ensure_ascii=False, sort_keys=True) + "\n")
            written += 1
    print(f"wrote {written} new samples to {OUT}")


if __name__ == "__main__":
    main()
