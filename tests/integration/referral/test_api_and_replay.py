"""The published API (OpenAPI, validation as {code, message}) and the chain rebuilt from the
event log alone into a schema that never saw the HTTP calls."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from services.referral.main import create_app
from services.referral.settings import ReferralSettings
from shared.db import drop_schema
from tests.conftest import eventually, running_app
from tests.integration.referral.conftest import FakeClock, bind, enrol

pytestmark = pytest.mark.integration


async def test_openapi_is_published_and_bad_input_is_a_coded_4xx(make_svc, ids):
    async with make_svc() as svc:
        spec = (await svc.client.get("/openapi.json")).json()
        for path in ("/v1/promoters", "/v1/promoters/applications", "/v1/admin/promoters/{user_id}/designate",
                     "/v1/admin/applications/{user_id}/decision", "/v1/admin/promoters/{user_id}/status",
                     "/v1/promoters/me", "/v1/promoters/by-code/{code}", "/v1/bindings", "/v1/chain/{user_id}",
                     "/v1/promoters/me/team", "/v1/posters"):
            assert path in spec["paths"], path

        u = ids("u")
        r = await svc.client.post("/v1/bindings", json={"promoter_code": "x" * 33, "source": "link"}, headers=svc.who(u))
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
        r = await svc.client.post("/v1/bindings", json={"promoter_code": "abc", "source": "sms"}, headers=svc.who(u))
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
        r = await svc.client.post("/v1/bindings", json={"promoter_code": "abc", "source": "link"})
        assert r.status_code == 401
        r = await svc.client.get(f"/v1/chain/{u}", params={"at": "2026-01-01T00:00:00"}, headers=svc.who(u))
        assert r.status_code == 422  # an instant without its offset is ambiguous
        r = await svc.client.put("/v1/admin/settings", json={"binding_mode": "forever"}, headers=svc.admin())
        assert r.status_code == 422
        r = await svc.client.put("/v1/admin/settings", json={"binding_mode": "last_touch"}, headers=svc.who(u))
        assert r.status_code == 403
        a = ids("a")
        await enrol(svc, a)
        r = await svc.client.post(f"/v1/admin/promoters/{a}/status", json={"status": "suspended"}, headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (422, "reason_required")
        r = await svc.client.post(f"/v1/admin/promoters/{a}/status", headers=svc.admin(), json={
            "status": "suspended", "reason": "x", "until": (svc.clock.now - timedelta(days=1)).isoformat()})
        assert (r.status_code, r.json()["code"]) == (409, "invalid_status_change")
        r = await svc.client.post(f"/v1/admin/promoters/{ids('nobody')}/status", json={"status": "active"}, headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (404, "promoter_not_found")


async def test_the_chain_is_rebuilt_from_the_log_into_a_fresh_schema(make_svc, ids, infra):
    clock = FakeClock()
    async with make_svc(clock=clock, binding_mode="last_touch") as svc:
        a, b, top, c = ids("a"), ids("b"), ids("top"), ids("c")
        code_a, code_b, code_top = await enrol(svc, a), await enrol(svc, b), await enrol(svc, top)
        assert (await bind(svc, a, code_top)).status_code == 200
        t_first = clock.advance(minutes=1)
        assert (await bind(svc, c, code_a)).json()["outcome"] == "bound"
        t_second = clock.advance(days=2)
        assert (await bind(svc, c, code_b)).json()["outcome"] == "taken_over"

    replica = "t_" + uuid.uuid4().hex[:12]
    try:
        app = create_app(ReferralSettings(), schema=replica, clock=clock)
        async with running_app(app) as client:
            admin = svc.admin()

            async def chain(at):
                return (await client.get(f"/v1/chain/{c}", params={"at": at.isoformat()}, headers=admin)).json()

            async def rebuilt():
                after = await chain(t_second)
                return after if after["level1"] else None
            after = await eventually(rebuilt)
            assert after["level1"]["promoter_id"] == b and after["level2"] is None
            before = await chain(t_first + timedelta(hours=1))
            assert before["level1"]["promoter_id"] == a and before["level2"]["promoter_id"] == top
            assert before["level1"]["until"].startswith(t_second.isoformat()[:19])
    finally:
        await drop_schema(infra["db"], replica)
