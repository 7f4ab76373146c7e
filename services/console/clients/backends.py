"""The console as a backend-for-frontend: it calls the services' admin HTTP APIs with a signed
identity per operator and service (`console:<username>`, the operator's console role, audience =
the service called; docs/security.md), so each service checks the role itself and records who acted (e.g. `decided_by`). It never reads their tables."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from shared.identity import HEADER, sign_identity


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def reason(self) -> str:
        """The service's message alone (the code is shown beside it)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return self.body["message"]
        return self.message

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            detail = self.body.get("detail")
            if isinstance(detail, dict):
                return f"{detail.get('code')}: {detail.get('message')}"
            return f"{self.body.get('code', self.status)}: {self.body.get('message', detail or '')}"
        return f"HTTP {self.status}"


class Backends:
    def __init__(self, urls: dict[str, str], secret: str, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.secret = secret
        self.clients = {name: httpx.AsyncClient(base_url=url, timeout=timeout_s, transport=transport)
                        for name, url in urls.items()}

    def identity(self, username: str, role: str, service: str) -> dict[str, str]:
        return {HEADER: sign_identity(self.secret, f"console:{username}", (role,), audience=service, ttl_s=60)}

    async def call(self, service: str, method: str, path: str, *, username: str, role: str,
                   json: Any = None, params: dict[str, Any] | None = None) -> Reply:
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            r = await self.clients[service].request(method, path, json=json, params=params,
                                                    headers=self.identity(username, role, service))
        except httpx.HTTPError as exc:
            return Reply(503, {"code": "backend_unreachable", "message": f"{service}: {type(exc).__name__} {exc}"})
        try:
            body = r.json()
        except ValueError:
            body = {"code": f"http_{r.status_code}", "message": r.text[:300]}
        return Reply(r.status_code, body)

    async def fetch(self, service: str, path: str, *, username: str, role: str,
                    params: dict[str, Any] | None = None) -> httpx.Response | Reply:
        """A GET whose answer is a document (HTML, CSV), passed on as it came; a Reply when unreachable."""
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            return await self.clients[service].get(path, params=params, headers=self.identity(username, role, service))
        except httpx.HTTPError as exc:
            return Reply(503, {"code": "backend_unreachable", "message": f"{service}: {type(exc).__name__} {exc}"})

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()
