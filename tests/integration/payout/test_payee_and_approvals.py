"""The payee is the earner and review power is split: a withdrawal pays only the openid the
gateway signed into the identity, nobody decides their own withdrawal, amounts above the
dual-approval threshold need two different finance approvers, and money is a strict integer."""
from __future__ import annotations

import pytest

from tests.integration.payout.conftest import outbox_events

pytestmark = pytest.mark.integration


async def test_the_payee_is_the_identitys_openid_and_no_other(make_svc, commission, ids, standin):
    p = ids("promoter")
    await commission.settle(p, 10_000)
    async with make_svc() as svc:
        await svc.wait_available(p, 10_000)
        own = svc.who(p, openid="o-own-" + p)
        # another user's openid in the body: refused, nothing reserved
        r = await svc.client.post("/v1/withdrawals", json={"amount_fen": 1_000, "idempotency_key": "k1",
                                                            "openid": "o-thief"}, headers=own)
        assert (r.status_code, r.json()["code"]) == (403, "payee_not_identity"), r.text
        # an identity without an openid, or with one for another mini-program: refused
        for headers in (svc.who(p, openid=None), svc.who(p, appid="wx-some-other-app")):
            r = await svc.client.post("/v1/withdrawals", json={"amount_fen": 1_000, "idempotency_key": "k1"},
                                      headers=headers)
            assert (r.status_code, r.json()["code"]) == (403, "identity_without_openid"), r.text
        assert (await svc.available(p))["reserved_fen"] == 0
        # no openid in the body: the identity's is paid
        r = await svc.client.post("/v1/withdrawals", json={"amount_fen": 1_000, "idempotency_key": "k1"}, headers=own)
        assert r.status_code == 201, r.text
        w = await svc.wait_status(p, r.json()["withdrawal_id"], "transferring")
        assert standin.bill(w["out_bill_no"]).request["openid"] == "o-own-" + p
        assert standin.bills_for("o-thief") == []


@pytest.mark.parametrize("amount", ["150", 150.0, 2**63, True])
async def test_money_is_a_strict_bounded_integer(make_svc, ids, amount):
    p = ids("promoter")
    async with make_svc() as svc:
        r = await svc.client.post("/v1/withdrawals", json={"amount_fen": amount, "idempotency_key": "k"},
                                  headers=svc.who(p))
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request"), r.text


async def test_nobody_decides_their_own_withdrawal_and_big_ones_need_two_approvers(make_svc, commission, ids,
                                                                                   schema_conn):
    finance_promoter, p = ids("fin"), ids("promoter")
    await commission.settle(finance_promoter, 30_000)
    await commission.settle(p, 30_000)
    async with make_svc(auto_approve_max_fen=1_000, dual_approval_above_fen=15_000) as svc:
        await svc.wait_available(finance_promoter, 30_000)
        await svc.wait_available(p, 30_000)
        mine = (await svc.request(finance_promoter, 5_000, "k1")).json()["withdrawal_id"]
        r = await svc.client.post(f"/v1/admin/withdrawals/{mine}/decision", json={"decision": "approve"},
                                  headers=svc.admin(finance_promoter))
        assert (r.status_code, r.json()["code"]) == (403, "own_withdrawal"), r.text
        r = await svc.client.post(f"/v1/admin/withdrawals/{mine}/decision", json={"decision": "reject", "reason": "x"},
                                  headers=svc.admin(finance_promoter))
        assert r.status_code == 403

        # small: one approver
        small = (await svc.request(p, 5_000, "k1")).json()["withdrawal_id"]
        r = await svc.client.post(f"/v1/admin/withdrawals/{small}/decision", json={"decision": "approve"},
                                  headers=svc.admin("fin-1"))
        assert r.json()["status"] == "approved", r.text

        # big: the first approval is recorded, the same approver again changes nothing, a second approves
        big = (await svc.request(p, 20_000, "k2")).json()["withdrawal_id"]
        decide = lambda who, role="finance": svc.client.post(  # noqa: E731
            f"/v1/admin/withdrawals/{big}/decision", json={"decision": "approve"}, headers=svc.who(who, role))
        for role in ("viewer", "auditor", "operator", "plan_admin"):
            assert (await decide("op-x", role)).status_code == 403
        first = await decide("fin-1")
        assert (first.status_code, first.json()["status"], first.json()["first_approved_by"]) == \
            (200, "pending_review", "fin-1"), first.text
        again = await decide("fin-1")
        assert (again.json()["status"], again.json()["first_approved_by"]) == ("pending_review", "fin-1")
        assert await outbox_events(schema_conn, "WithdrawalApproved", big) == []
        second = await decide("fin-2")
        assert (second.json()["status"], second.json()["decided_by"]) == ("approved", "fin-2"), second.text
        approved = await outbox_events(schema_conn, "WithdrawalApproved", big)
        assert len(approved) == 1 and approved[0]["approved_by"] == "fin-2"
