"""Withdrawal requests against the real PostgreSQL and Kafka: reservations never overdraw,
however many requests arrive at once on however many instances; every refusal names its rule."""
from __future__ import annotations

import asyncio

import pytest

from tests.integration.payout.conftest import outbox_events

pytestmark = pytest.mark.integration


async def test_concurrent_requests_never_reserve_more_than_the_balance_nor_pass_the_daily_count(
        make_svc, commission, ids, schema_conn):
    poor, busy = ids("promoter-a"), ids("promoter-b")
    await commission.settle(poor, *[1_000] * 10)        # 10,000 fen
    await commission.settle(busy, 50_000, 50_000)      # 100,000 fen, limited by the day's count
    async with make_svc(instances=2, daily_count_max=40, auto_approve_max_fen=0) as (one, two):
        await one.wait_available(poor, 10_000)
        await one.wait_available(busy, 100_000)
        calls = [(one if i % 2 else two).request(poor, 300, f"k{i}") for i in range(200)]
        calls += [(two if i % 2 else one).request(busy, 300, f"k{i}") for i in range(100)]
        answers = await asyncio.gather(*calls)
        poor_answers, busy_answers = answers[:200], answers[200:]

        assert sorted({r.status_code for r in answers}) == [201, 422]
        assert sum(r.status_code == 201 for r in poor_answers) == 33          # 33 x 300 <= 10,000 < 34 x 300
        assert {r.json()["code"] for r in poor_answers if r.status_code == 422} == {"insufficient_balance"}
        assert sum(r.status_code == 201 for r in busy_answers) == 40          # the day's count, not the balance
        assert {r.json()["code"] for r in busy_answers if r.status_code == 422} == {"daily_count_exceeded"}

        a = await one.available(poor)
        assert (a["available_fen"], a["reserved_fen"]) == (100, 9_900)
        b = await two.available(busy)
        assert (b["available_fen"], b["reserved_fen"], b["today_count"]) == (88_000, 12_000, 40)
        assert len(await outbox_events(schema_conn, "WithdrawalRequested")) == 73
        assert await schema_conn.fetchval("SELECT count(*) FROM withdrawals") == 73


async def test_amounts_that_break_a_rule_are_refused_with_its_code(make_svc, commission, ids):
    p = ids("promoter")
    await commission.settle(p, 300_000)
    async with make_svc(max_withdrawal_fen=250_000, fee_bp=100, fee_max_fen=500) as svc:
        await svc.wait_available(p, 300_000)
        for amount, code in [(-100, "amount_not_positive"), (0, "amount_not_positive"), (99, "below_minimum"),
                             (250_001, "above_maximum"), (200_000, "real_name_required")]:
            r = await svc.request(p, amount, f"bad-{amount}")
            assert (r.status_code, r.json()["code"]) == (422, code), r.text
        r = await svc.client.post("/v1/withdrawals", json={"amount_fen": "lots", "idempotency_key": "x", "openid": "o"},
                                  headers=svc.who(p))
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")
        r = await svc.client.post("/v1/withdrawals", json={"amount_fen": 500, "idempotency_key": "x", "openid": "o"})
        assert r.status_code == 401
        assert (await svc.available(p))["reserved_fen"] == 0          # nothing refused reserved anything

        # the fee: 1% rounded down, capped at 500 fen
        ok = await svc.request(p, 1_999, "k1")
        assert ok.status_code == 201, ok.text
        assert (ok.json()["fee_fen"], ok.json()["net_fen"]) == (19, 1_980)
        # the same key again: the same withdrawal, nothing reserved twice
        again = await svc.request(p, 1_999, "k1")
        assert again.status_code == 200 and again.json()["withdrawal_id"] == ok.json()["withdrawal_id"]
        reused = await svc.request(p, 2_000, "k1")
        assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")

        big = await svc.request(p, 200_000, "k2", real_name="张三")
        assert big.status_code == 201, big.text
        assert (big.json()["status"], big.json()["fee_fen"], big.json()["has_real_name"]) == ("pending_review", 500, True)
        over = await svc.request(p, 100_000, "k3")
        assert (over.status_code, over.json()["code"]) == (422, "insufficient_balance")
        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"]) == (300_000 - 1_999 - 200_000, 201_999)
        # the name is kept only as WeChat will receive it, encrypted
        stored = await svc.app.state.runtime.pool.fetchval(
            "SELECT user_name_cipher FROM withdrawals WHERE withdrawal_id = $1", __import__("uuid").UUID(big.json()["withdrawal_id"]))
        assert stored and "张三" not in stored
