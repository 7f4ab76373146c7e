"""Every service's HTTP API as deployed (separate processes, real Kafka and PostgreSQL):

* fuzzing with schemathesis against each service's own OpenAPI: no 5xx, responses match their
  schemas and every status answered is declared. A bounded number of examples per operation in
  CI (`FENXIAO_FUZZ_EXAMPLES`, default 4); `make fuzz` runs many more.
* the authorisation matrix: every route x anonymous, promoter A, promoter B and each operator
  role -> the exact expected refusal (401 / 403 / 404), and nothing of B visible to A.
"""
from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

import httpx
import pytest

from shared.identity import STAFF_ROLES, Role
from simulation.cluster import ROOT, ServiceProcess
from tests.identity import who
from simulation.cluster import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SERVICES = ("referral", "orders", "commission", "payout", "engagement")
EXAMPLES = int(os.environ.get("FENXIAO_FUZZ_EXAMPLES", "4"))
#: routes without an identity: WeChat Pay's signed notices
NOTIFY = re.compile(r"^/v1/wechatpay/")


@pytest.fixture(scope="module")
def stack(infra):
    """The five JSON services as processes on fresh schemas and the session's topics."""
    run = uuid.uuid4().hex[:8]
    log_dir = ROOT / ".local" / "security-tests" / run
    schemas = {s: f"t_sec_{s[:4]}_{run}" for s in SERVICES}
    procs = {s: ServiceProcess(s, port, {f"{s.upper()}_SCHEMA": schemas[s], "LOG_LEVEL": "WARNING"},
                               log_dir / f"{s}.log") for s, port in zip(SERVICES, free_ports(len(SERVICES)))}
    try:
        for p in procs.values():
            p.start()

        async def ready():
            await asyncio.gather(*(p.wait_ready(timeout=180) for p in procs.values()))
        asyncio.run(ready())
        yield {s: p.url for s, p in procs.items()}
    finally:
        for p in procs.values():
            p.stop()
        from shared.db import drop_schema

        async def drop():
            for s in schemas.values():
                await drop_schema(infra["db"], s)
        asyncio.run(drop())


def openapi(url: str) -> dict:
    return httpx.get(url + "/openapi.json", timeout=30).json()


# -- fuzzing ---------------------------------------------------------------------------------
def _all_roles_headers(service: str, user: str) -> dict[str, str]:
    return who(user, *sorted(STAFF_ROLES), audience=service)


@pytest.mark.parametrize("service", SERVICES)
def test_fuzz_no_5xx_responses_match_schemas_statuses_declared(stack, service):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance, response_schema_conformance, status_code_conformance,
    )

    base = stack[service]
    schema = schemathesis.openapi.from_dict(openapi(base))
    # a 5xx is a failure unless the route declares it (503: payout's notify without WeChat keys here)
    checks = [status_code_conformance, response_schema_conformance, content_type_conformance]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.endswith("/stream"):   # an event stream never ends: covered by engagement's own tests
            continue
        operations += 1
        # promoters on their routes, an operator holding every role on the admin ones (deepest reach)
        user = f"fuzz-{uuid.uuid4().hex[:8]}"
        headers = _all_roles_headers(service, user) if "/admin/" in op.path else who(user, audience=service)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(op.as_strategy())
        def run(case):
            try:
                response = case.call(base_url=base, headers=headers, timeout=30)
                if response.status_code >= 500 and str(response.status_code) not in op.definition.raw.get("responses", {}):
                    raise AssertionError(f"{response.status_code} {response.text[:300]}")
                case.validate_response(response, checks=checks)
            except BaseException as exc:  # collect every failing operation, do not stop at the first
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                failures.append(f"{op.method.upper()} {op.path}: {type(exc).__name__}: {str(exc)[:600]}")
        run()
    assert operations > 0
    assert not failures, "\n\n".join(dict.fromkeys(failures))


# -- the authorisation matrix ----------------------------------------------------------------
#: (method, path) -> the roles that may change it; admin routes not listed change nothing
#: (any operator role may call them: reads, or a check that publishes nothing)
WRITERS: dict[tuple[str, str], frozenset[str]] = {
    ("PUT", "/v1/admin/settings"): frozenset({Role.PLAN_ADMIN}),
    ("PUT", "/v1/admin/products/{product_id}"): frozenset({Role.PLAN_ADMIN}),
    ("POST", "/v1/admin/applications/{user_id}/decision"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/promoters/{user_id}/designate"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/promoters/{user_id}/status"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/customers/{customer_id}/referrer"): frozenset({Role.OPERATOR}),
    ("PUT", "/v1/admin/plan"): frozenset({Role.PLAN_ADMIN}),
    ("POST", "/v1/admin/withdrawals/{withdrawal_id}/decision"): frozenset({Role.FINANCE}),
    ("PUT", "/v1/admin/notice-templates/{kind}"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/honour-rules"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/announcements"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/perks"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/perks/{perk_id}/active"): frozenset({Role.OPERATOR}),
    ("POST", "/v1/admin/persons/{person_id}/erase"): frozenset({Role.OPERATOR}),
}
#: (method, path) -> the only roles that may read it (the rest of the admin views: every role)
READERS: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/admin/plan/simulate"): frozenset({Role.PLAN_ADMIN, Role.AUDITOR}),
    ("GET", "/v1/admin/tax/income-report"): frozenset({Role.FINANCE, Role.AUDITOR}),
    ("GET", "/v1/admin/compliance-report"): frozenset({Role.AUDITOR}),
}
#: admin POSTs that change nothing (every operator role may call them)
READ_POSTS = {("POST", "/v1/admin/plan/check")}


def _routes(spec: dict) -> list[tuple[str, str]]:
    return [(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in ("get", "post", "put", "delete", "patch")]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "00000000-0000-4000-8000-000000000000" if "id" in m.group(0) and
                  "withdrawal" in m.group(0) else "x1", path)


def _call(client: httpx.Client, method: str, path: str, headers: dict) -> httpx.Response:
    # streamed: the status is all we need (an event stream would never end)
    with client.stream(method, path, headers=headers, json={} if method in ("POST", "PUT", "PATCH") else None,
                       params={"amount_fen": 100} if path.endswith("/quote") else None) as r:
        return r


@pytest.mark.parametrize("service", SERVICES)
def test_authorisation_matrix_every_route_every_caller(stack, service):
    spec = openapi(stack[service])
    wrong: list[str] = []
    with httpx.Client(base_url=stack[service], timeout=30) as client:
        for method, template in _routes(spec):
            path = _fill(template)
            status = lambda headers: _call(client, method, path, headers).status_code  # noqa: E731
            if NOTIFY.match(template):
                got = status({})
                if got not in (400, 401, 422, 503):   # 503: payout without WeChat keys in this stack
                    wrong.append(f"{method} {template} without WeChat's signature: {got}")
                continue
            expect = {"anonymous": 401}
            got = {"anonymous": status({})}
            # a token for another service is refused as if there were none
            got["other audience"] = status(who("promoter-a", *sorted(STAFF_ROLES), audience="not-" + service))
            expect["other audience"] = 401
            if template.startswith("/v1/admin/"):
                writers = WRITERS.get((method, template)) or READERS.get((method, template))
                if writers is None and method != "GET" and (method, template) not in READ_POSTS:
                    wrong.append(f"{method} {template}: an admin change without a declared role (add it to WRITERS "
                                 f"and to docs/security.md)")
                    continue
                got["promoter"] = status(who("promoter-a", audience=service))
                expect["promoter"] = 403
                for role in sorted(STAFF_ROLES):
                    got[role] = status(who(f"op-{role}", role, audience=service))
                    if writers is not None and role not in writers:
                        expect[role] = 403
                    elif got[role] in (401, 403):
                        expect[role] = "allowed (not 401/403)"
            else:
                got["promoter"] = status(who("promoter-a", audience=service))
                if got["promoter"] == 401:
                    expect["promoter"] = "allowed (not 401)"
            for caller, want in expect.items():
                if got.get(caller) != want:
                    wrong.append(f"{method} {template} as {caller}: {got.get(caller)} (expected {want})")
    assert not wrong, "\n".join(wrong)


# -- nothing of B is visible to A ------------------------------------------------------------
def test_nothing_of_promoter_b_is_visible_to_promoter_a(stack):
    ref, orders, payout, eng = (httpx.Client(base_url=stack[s], timeout=30) for s in ("referral", "orders", "payout",
                                                                                       "engagement"))
    run = uuid.uuid4().hex[:6]
    a, b = f"pa-{run}", f"pb-{run}"
    try:
        order = orders.post("/v1/orders", headers=who(b, audience="orders"), json={
            "out_trade_no": f"ob{run}", "postage_fen": 0, "total_fen": 100,
            "lines": [{"product_id": "p", "quantity": 1, "unit_price_fen": 100, "paid_fen": 100}]})
        assert order.status_code == 201, order.text
        oid = order.json()["order_id"]
        # A asks for B's things by id: absent (404), or refused (403), never B's data
        assert orders.get(f"/v1/orders/{oid}", headers=who(a, audience="orders")).status_code == 404
        assert orders.get(f"/v1/orders/{oid}/refunds", headers=who(a, audience="orders")).status_code == 404
        assert orders.post(f"/v1/orders/{oid}/cancel", headers=who(a, audience="orders")).status_code == 404
        listed = orders.get("/v1/orders", params={"buyer_id": b}, headers=who(a, audience="orders")).json()
        assert all(o["buyer_id"] == a for o in listed["orders"])          # buyer_id is ignored for a promoter
        assert ref.get(f"/v1/chain/{b}", headers=who(a, audience="referral")).status_code == 403
        r = eng.get(f"/v1/promoters/{b}/dashboard", headers=who(a, audience="engagement"))
        assert r.status_code in (403, 404), r.text
        # a viewer sees B's order, and cannot cancel it
        assert orders.get(f"/v1/orders/{oid}", headers=who("op", "viewer", audience="orders")).status_code == 200
        assert orders.post(f"/v1/orders/{oid}/cancel", headers=who("op", "viewer", audience="orders")).status_code == 403
        assert payout.get("/v1/withdrawals", headers=who(a, audience="payout")).json()["items"] == []
    finally:
        for c in (ref, orders, payout, eng):
            c.close()
