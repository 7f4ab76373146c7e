"""The share funnel's first steps as events: a share reported (PromoterShareMade) and every
visit through a share, whatever the bind decided (PromoterLinkVisited; not the promoter's own)."""
from __future__ import annotations

import pytest

from tests.integration.referral.conftest import bind, enrol, outbox_events

pytestmark = pytest.mark.integration


async def test_visits_through_a_share_are_events_whatever_the_bind_decides(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        a, b, c = ids("a"), ids("b"), ids("c")
        code_a, code_b = await enrol(svc, a), await enrol(svc, b)
        assert (await bind(svc, c, code_a, "poster", product_id="sku-1")).json()["outcome"] == "bound"
        assert (await bind(svc, c, code_b, "link")).status_code == 409          # refused: still a visit of b's link
        assert (await bind(svc, a, code_a, "qr")).status_code == 422            # the promoter's own: not a visit
        r = await svc.client.post("/v1/shares", json={"source": "link", "product_id": "sku-1"}, headers=svc.who(a))
        assert r.status_code == 204
        r = await svc.client.post("/v1/shares", json={"source": "link"}, headers=svc.who(c))
        assert r.status_code == 403                                             # not a promoter

    visits = await outbox_events(db_conn, fresh_schema, "PromoterLinkVisited")
    assert [(v["key"], v["payload"]["visitor_id"], v["payload"]["source"], v["payload"]["product_id"],
             v["payload"]["first_visit"]) for v in visits] == [(a, c, "poster", "sku-1", True), (b, c, "link", None, False)]
    shares = await outbox_events(db_conn, fresh_schema, "PromoterShareMade")
    assert [(s["key"], s["payload"]["source"], s["payload"]["product_id"]) for s in shares] == [(a, "link", "sku-1")]
