"""Binding through a share: every mode, every refusal (recorded for audit), the races, and the
chain at an instant before and after a takeover. Real Kafka and PostgreSQL."""
from __future__ import annotations

import json

import asyncio
from datetime import timedelta

import pytest

from shared.contracts.orders import OrderLine, OrderPaid
from shared.topics import ORDER_EVENTS
from tests.conftest import eventually
from tests.integration.referral.conftest import bind, enrol, outbox_events, publish

pytestmark = pytest.mark.integration


async def test_first_touch_binds_once_and_keeps_the_first_promoter(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        a, b, c = ids("a"), ids("b"), ids("c")
        code_a, code_b = await enrol(svc, a), await enrol(svc, b)

        r = await bind(svc, c, code_a, "poster", product_id="sku-1")
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "bound"
        assert r.json()["binding"]["promoter_id"] == a
        bound_at = r.json()["binding"]["bound_at"]

        r = await bind(svc, c, code_b)
        assert r.status_code == 409
        assert r.json()["code"] == "already_bound"

        r = await bind(svc, c, code_a)  # the same promoter again: nothing changes, nothing refused
        assert r.status_code == 200 and r.json()["outcome"] == "unchanged"

        mine = await svc.client.get("/v1/bindings/me", headers=svc.who(c))
        assert mine.json()["promoter_id"] == a and mine.json()["bound_at"] == bound_at

    bound = await outbox_events(db_conn, fresh_schema, "ReferralBound")
    assert [(e["payload"]["customer_id"], e["payload"]["promoter_id"], e["payload"]["source"], e["payload"]["product_id"])
            for e in bound] == [(c, a, "poster", "sku-1")]
    assert bound[0]["key"] == c and bound[0]["payload"]["mode"] == "first_touch"
    refused = await outbox_events(db_conn, fresh_schema, "BindingRefused")
    assert [(e["payload"]["customer_id"], e["payload"]["promoter_id"], e["payload"]["reason"]) for e in refused] == [
        (c, b, "already_bound")]
    rows = await db_conn.fetch(f'SELECT customer_id, promoter_id, reason FROM "{fresh_schema}".binding_refusals')
    assert [tuple(r) for r in rows] == [(c, b, "already_bound")]


async def test_self_unknown_and_inactive_promoters_are_refused_with_reasons(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        a, c = ids("a"), ids("c")
        code_a = await enrol(svc, a)

        r = await bind(svc, a, code_a)
        assert (r.status_code, r.json()["code"]) == (422, "self_binding")

        r = await bind(svc, c, "NoSuchCode99")
        assert (r.status_code, r.json()["code"]) == (404, "unknown_promoter")
        r = await bind(svc, c, "bad code!")  # not even code-shaped: unknown, not an error
        assert r.status_code in (404, 422)

        until = (svc.clock.now + timedelta(days=3)).isoformat()
        r = await svc.client.post(f"/v1/admin/promoters/{a}/status", headers=svc.admin(),
                                  json={"status": "suspended", "reason": "spam complaints", "until": until})
        assert r.status_code == 200 and r.json()["status"] == "suspended"
        r = await bind(svc, c, code_a)
        assert (r.status_code, r.json()["code"]) == (409, "inactive_promoter")

        svc.clock.advance(days=3, seconds=1)  # the temporary suspension lapses by itself
        r = await bind(svc, c, code_a)
        assert r.status_code == 200 and r.json()["outcome"] == "bound"

        d, e = ids("d"), ids("e")
        code_d = await enrol(svc, d)
        r = await svc.client.post(f"/v1/admin/promoters/{d}/status", headers=svc.admin(),
                                  json={"status": "revoked", "reason": "fraud"})
        assert r.status_code == 200
        r = await bind(svc, e, code_d)
        assert (r.status_code, r.json()["code"]) == (409, "inactive_promoter")

    reasons = [ev["payload"]["reason"] for ev in await outbox_events(db_conn, fresh_schema, "BindingRefused")]
    assert reasons[:2] == ["self_binding", "unknown_promoter"]
    assert reasons.count("inactive_promoter") == 2
    statuses = [(ev["payload"]["promoter_id"], ev["payload"]["status"], ev["payload"]["until"] is not None)
                for ev in await outbox_events(db_conn, fresh_schema, "PromoterStatusChanged")]
    assert statuses == [(a, "suspended", True), (d, "revoked", False)]


@pytest.mark.parametrize("length", [3, 4])
async def test_a_cycle_anywhere_up_the_chain_is_refused(make_svc, ids, length):
    async with make_svc() as svc:
        users = [ids(f"u{i}") for i in range(length)]
        code = {u: await enrol(svc, u) for u in users}
        # u1 -> u0, u2 -> u1, ... : each one's referrer is the previous one
        for prev, nxt in zip(users, users[1:]):
            r = await bind(svc, nxt, code[prev])
            assert r.status_code == 200, r.text
        # closing the ring (u0 -> last) would make u0 its own ancestor `length` hops up
        r = await bind(svc, users[0], code[users[-1]])
        assert (r.status_code, r.json()["code"]) == (409, "cycle")
        assert (await svc.client.get("/v1/bindings/me", headers=svc.who(users[0]))).json() is None


async def test_protection_window_lets_another_promoter_take_over_after_it_lapses(make_svc, ids, db_conn, fresh_schema):
    async with make_svc(binding_mode="first_touch_window", protection_window_days=30) as svc:
        a, b, c, top = ids("a"), ids("b"), ids("c"), ids("top")
        code_a, code_b, code_top = await enrol(svc, a), await enrol(svc, b), await enrol(svc, top)
        assert (await bind(svc, b, code_top)).status_code == 200  # b's own referrer: level 2 after takeover
        t0 = svc.clock.now
        assert (await bind(svc, c, code_a)).json()["outcome"] == "bound"

        svc.clock.advance(days=29, hours=23)
        r = await bind(svc, c, code_b)
        assert (r.status_code, r.json()["code"]) == (409, "already_bound")

        t_takeover = svc.clock.advance(hours=1)  # exactly 30 days after the binding
        r = await bind(svc, c, code_b)
        assert r.status_code == 200 and r.json()["outcome"] == "taken_over"
        assert r.json()["binding"]["promoter_id"] == b

        r = await bind(svc, c, code_a)  # a new window protects b now
        assert (r.status_code, r.json()["code"]) == (409, "already_bound")

        async def chain(at):
            resp = await svc.client.get(f"/v1/chain/{c}", params={"at": at.isoformat()}, headers=svc.admin())
            assert resp.status_code == 200, resp.text
            return resp.json()

        async def projected():
            after = await chain(t_takeover)
            # b's own binding (keyed by b) and c's takeover (keyed by c) may sit on different
            # partitions: wait until the projection has both, then check them
            return after if after["level1"] and after["level2"] else None

        after = await eventually(projected)
        assert after["level1"]["promoter_id"] == b
        assert after["level2"]["promoter_id"] == top
        before = await chain(t0 + timedelta(days=1))
        assert before["level1"]["promoter_id"] == a and before["level2"] is None
        assert before["level1"]["until"] is not None
        assert (await chain(t0 - timedelta(seconds=1)))["level1"] is None
        # a user may read their own chain, not another's
        assert (await svc.client.get(f"/v1/chain/{c}", headers=svc.who(c))).status_code == 200
        assert (await svc.client.get(f"/v1/chain/{c}", headers=svc.who(a))).status_code == 403

    taken = await outbox_events(db_conn, fresh_schema, "ReferralTakenOver")
    assert len(taken) == 1
    p = taken[0]["payload"]
    assert (p["customer_id"], p["promoter_id"], p["previous_promoter_id"], p["mode"]) == (c, b, a, "first_touch_window")
    assert p["bound_at"].startswith(t_takeover.isoformat()[:19])


async def test_last_touch_moves_the_customer_to_the_latest_share_but_never_into_a_cycle(make_svc, ids):
    async with make_svc(binding_mode="last_touch") as svc:
        a, b, c = ids("a"), ids("b"), ids("c")
        code_a, code_b, code_c = await enrol(svc, a), await enrol(svc, b), await enrol(svc, c)
        assert (await bind(svc, c, code_a)).json()["outcome"] == "bound"
        svc.clock.advance(minutes=1)
        r = await bind(svc, c, code_b)
        assert r.status_code == 200 and r.json()["outcome"] == "taken_over"
        # b -> c would close b -> c -> b
        r = await bind(svc, b, code_c)
        assert (r.status_code, r.json()["code"]) == (409, "cycle")


async def test_new_users_only_binds_a_first_arrival_but_not_a_known_user(make_svc, ids, infra):
    async with make_svc(binding_mode="new_users_only") as svc:
        a, fresh, visited, buyer = ids("a"), ids("fresh"), ids("visited"), ids("buyer")
        code_a = await enrol(svc, a)

        r = await bind(svc, fresh, code_a)
        assert r.status_code == 200 and r.json()["outcome"] == "bound"

        assert (await svc.client.post("/v1/visits", json={}, headers=svc.who(visited))).status_code == 200
        r = await bind(svc, visited, code_a)
        assert (r.status_code, r.json()["code"]) == (409, "not_new_user")

        # a buyer we never saw, but whose paid order arrives on the order topic, is not new either
        await publish(infra["kafka"], ORDER_EVENTS, OrderPaid(
            order_id=ids("order"), buyer_id=buyer, postage_fen=0, total_fen=100, transaction_id=ids("tx"),
            lines=(OrderLine(line_id="1", product_id="p", quantity=1, unit_price_fen=100, paid_fen=100),),
            paid_at=svc.clock.now))

        async def buyer_seen():
            async with svc.app.state.runtime.pool.acquire() as conn:
                return await conn.fetchval("SELECT 1 FROM customer_orders WHERE buyer_id = $1", buyer)
        await eventually(buyer_seen)
        r = await bind(svc, buyer, code_a)
        assert (r.status_code, r.json()["code"]) == (409, "not_new_user")


async def test_concurrent_binds_of_one_customer_end_with_exactly_one_binding(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        promoters = [ids(f"p{i}") for i in range(8)]
        codes = [await enrol(svc, p) for p in promoters]
        c = ids("c")
        results = await asyncio.gather(*(bind(svc, c, code) for code in codes))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200] + [409] * 7
        assert all(r.json()["code"] == "already_bound" for r in results if r.status_code == 409)
    n = await db_conn.fetchval(f'SELECT count(*) FROM "{fresh_schema}".bindings WHERE customer_id = $1', c)
    assert n == 1
    assert len(await outbox_events(db_conn, fresh_schema, "ReferralBound")) == 1


async def test_concurrent_opposite_binds_cannot_both_succeed(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        for round_ in range(5):
            a, b = ids(f"a{round_}"), ids(f"b{round_}")
            code_a, code_b = await enrol(svc, a), await enrol(svc, b)
            r1, r2 = await asyncio.gather(bind(svc, a, code_b), bind(svc, b, code_a))
            assert sorted([r1.status_code, r2.status_code]) == [200, 409]
            assert {r1.json().get("code"), r2.json().get("code")} == {None, "cycle"}


async def test_concurrent_binds_closing_a_longer_ring_leave_exactly_one_refused(make_svc, ids):
    # a -> b, b -> c, c -> a sent at once: any two make a chain the third would close, so
    # locking only the two users of each bind would let all three through
    async with make_svc() as svc:
        for round_ in range(5):
            a, b, c = ids(f"a{round_}"), ids(f"b{round_}"), ids(f"c{round_}")
            code = {u: await enrol(svc, u) for u in (a, b, c)}
            rs = await asyncio.gather(bind(svc, a, code[b]), bind(svc, b, code[c]), bind(svc, c, code[a]))
            assert sorted(r.status_code for r in rs) == [200, 200, 409]
            assert sorted(str(r.json().get("code")) for r in rs) == ["None", "None", "cycle"]


async def test_enrolment_events_and_code_resolution(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        a = ids("a")
        code = await enrol(svc, a, nickname="张三")
        assert 8 <= len(code) <= 32 and code.isalnum()
        again = await svc.client.post("/v1/promoters", json={}, headers=svc.who(a))
        assert again.json()["code"] == code  # idempotent
        r = await svc.client.get(f"/v1/promoters/by-code/{code}", headers=svc.who(ids("x")))
        assert r.json() == {"promoter_id": a, "code": code, "nickname_masked": "张*", "active": True}
        assert (await svc.client.get("/v1/promoters/by-code/zzzzzzzzzz", headers=svc.who(a))).status_code == 404
    enrolled = await outbox_events(db_conn, fresh_schema, "PromoterEnrolled")
    assert [(e["key"], e["payload"]["promoter_code"], e["payload"]["enrolled_by"], e["payload"]["nickname_masked"],
             e["payload"]["nickname"], e["version"]) for e in enrolled] == [(a, code, "everyone", "张*", None, 2)]
    assert "张三" not in json.dumps(enrolled, ensure_ascii=False)           # sealed, not in clear


async def test_concurrent_last_touch_takeovers_leave_a_clean_history(make_svc, ids, db_conn, fresh_schema):
    from services.referral.main import utc_now

    async with make_svc(clock=utc_now, binding_mode="last_touch") as svc:  # the real clock, read under the lock
        promoters = [ids(f"p{i}") for i in range(6)]
        codes = [await enrol(svc, p) for p in promoters]
        c = ids("c")
        results = await asyncio.gather(*(bind(svc, c, code) for code in codes))
        assert all(r.status_code == 200 for r in results)
        assert sorted(r.json()["outcome"] for r in results) == ["bound"] + ["taken_over"] * 5

        rows = await db_conn.fetch(
            f'SELECT promoter_id, bound_at, superseded_at FROM "{fresh_schema}".bindings WHERE customer_id = $1 ORDER BY id', c)
        assert len(rows) == 6 and [r["superseded_at"] is None for r in rows] == [False] * 5 + [True]
        for prev, nxt in zip(rows, rows[1:]):
            assert prev["superseded_at"] == nxt["bound_at"] >= prev["bound_at"]
        last = rows[-1]["promoter_id"]

        async def projected():
            async with svc.app.state.runtime.pool.acquire() as conn:
                return await conn.fetch("SELECT promoter_id FROM chain_links WHERE customer_id = $1 AND valid_to IS NULL", c) \
                    if await conn.fetchval("SELECT count(*) FROM chain_links WHERE customer_id = $1", c) == 6 else None
        open_links = await eventually(projected)
        assert [r["promoter_id"] for r in open_links] == [last]
