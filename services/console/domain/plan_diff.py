"""The difference between two plan versions, field by field (tiers by name, overrides by the
product or category they name), for the plan history."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


def _flatten(plan: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                key = x.get("name") or x.get("product_id") or x.get("category_id") if isinstance(x, dict) else None
                walk(f"{prefix}[{key if key is not None else i}]", x)
        else:
            out[prefix] = v

    walk("", plan)
    return {k: v for k, v in out.items() if v is not None}


def diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[Change]:
    a, b = _flatten(before or {}), _flatten(after)
    return [Change(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
