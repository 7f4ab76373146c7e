"""An operator's change, carried out through a service's admin API: the role is checked first,
then the call is made, and either way the attempt is recorded as `OperatorActionRecorded`
(outcome ok, or refused with the service's or the console's reason)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi.responses import RedirectResponse

from services.console.api.deps import Operator, backends, record_action
from services.console.clients.backends import Reply
from services.console.domain.roles import PermissionDenied, can
from shared.service import Runtime


async def act(rt: Runtime, op: Operator, action: str, *, service: str, method: str, path: str, target: str,
              json: Any = None, reason: str | None = None, detail: dict[str, Any] | None = None) -> Reply:
    if not can(op.role, action):
        await record_action(rt, operator=op.username, role=op.role, action=action, target=target, reason=reason,
                            outcome="refused", detail={"why": "role_not_allowed", **(detail or {})})
        raise PermissionDenied(op.role, action)
    reply = await backends(rt).call(service, method, path, username=op.username, role=op.role, json=json)
    info = {"service": service, "status": reply.status, **(detail or {})}
    if not reply.ok:
        info.update(code=reply.code, message=reply.message[:300])
    await record_action(rt, operator=op.username, role=op.role, action=action, target=target, reason=reason,
                        outcome="ok" if reply.ok else "refused", detail=info)
    return reply


def back(path: str, *, ok: str | None = None, error: str | None = None, **params: Any) -> RedirectResponse:
    q = {k: v for k, v in {**params, "ok": ok, "error": error}.items() if v not in (None, "")}
    return RedirectResponse(path + ("?" + urlencode(q) if q else ""), status_code=303)
