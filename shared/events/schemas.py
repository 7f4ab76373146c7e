"""Write one JSON Schema per event (current version) into docs/events/: `make schemas`.
A test checks that the committed files match the code."""
from __future__ import annotations

import json
from pathlib import Path

import shared.contracts  # noqa: F401  (registers every event)
from shared.events import Envelope, catalog
from shared.topics import without_namespace

OUT = Path(__file__).resolve().parents[2] / "docs" / "events"


def contract_types() -> dict:
    """The published events: those of shared/contracts (tests may register private ones)."""
    return {n: c for n, c in catalog.types().items() if c.__module__.startswith("shared.contracts.")}


def render() -> dict[str, str]:
    files = {"Envelope.json": json.dumps(Envelope.model_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"}
    for name, cls in sorted(contract_types().items()):
        schema = cls.model_json_schema()
        schema["x-event-type"], schema["x-event-version"], schema["x-key-field"] = name, cls.version, cls.key_field
        schema["x-topic"] = without_namespace(shared.contracts.topic_of(name))
        files[f"{name}.v{cls.version}.json"] = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    return files


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name, text in render().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(render())} schemas to {OUT}")


if __name__ == "__main__":
    main()
