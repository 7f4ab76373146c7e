"""Review and payout: an operator's rejection, a WeChat failure or an unconfirmed bill release
the money exactly once; a success pays it once; an unknown outcome leads to a query and never
to a second bill; duplicate notices and decisions change nothing."""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.integration.payout.conftest import outbox_events

pytestmark = pytest.mark.integration


async def test_rejection_releases_the_reservation_exactly_once(make_svc, commission, ids, schema_conn):
    p = ids("promoter")
    await commission.settle(p, 20_000)
    async with make_svc(auto_approve_max_fen=1_000) as svc:
        await svc.wait_available(p, 20_000)
        r = await svc.request(p, 5_000, "k1")
        assert r.status_code == 201 and r.json()["status"] == "pending_review", r.text
        wid = r.json()["withdrawal_id"]

        queue = await svc.client.get("/v1/admin/withdrawals", params={"status": "pending_review", "promoter_id": p},
                                     headers=svc.admin())
        assert [w["withdrawal_id"] for w in queue.json()["items"]] == [wid]
        assert (await svc.client.get("/v1/admin/withdrawals", headers=svc.who(p))).status_code == 403
        no_reason = await svc.client.post(f"/v1/admin/withdrawals/{wid}/decision", json={"decision": "reject"},
                                          headers=svc.admin())
        assert (no_reason.status_code, no_reason.json()["code"]) == (422, "reason_required")

        rejects = await asyncio.gather(*[svc.client.post(
            f"/v1/admin/withdrawals/{wid}/decision", json={"decision": "reject", "reason": "账户异常"},
            headers=svc.admin()) for _ in range(5)])
        assert [x.status_code for x in rejects] == [200] * 5
        assert {x.json()["status"] for x in rejects} == {"rejected"}
        late = await svc.client.post(f"/v1/admin/withdrawals/{wid}/decision", json={"decision": "approve"},
                                     headers=svc.admin())
        assert (late.status_code, late.json()["code"]) == (409, "already_decided")

        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"]) == (20_000, 0)
        rejected = await outbox_events(schema_conn, "WithdrawalRejected", wid)
        assert len(rejected) == 1 and rejected[0]["amount_fen"] == 5_000 and rejected[0]["reason"] == "账户异常"
        assert (await svc.available(p))["today_count"] == 0       # returned money does not use the day's limits


async def test_confirmed_transfer_pays_once_and_duplicate_notices_change_nothing(make_svc, commission, ids, standin,
                                                                                 schema_conn):
    p = ids("promoter")
    await commission.settle(p, 10_000)
    async with make_svc(fee_bp=100, fee_max_fen=50) as svc:
        await svc.wait_available(p, 10_000)
        r = await svc.request(p, 8_000, "k1", openid="o-" + p)
        assert r.status_code == 201 and r.json()["status"] == "approved" and r.json()["automatic"], r.text
        wid = r.json()["withdrawal_id"]
        w = await svc.wait_status(p, wid, "transferring")
        bill = standin.bill(w["out_bill_no"])
        assert bill.request["transfer_amount"] == 7_950 and bill.request["openid"] == "o-" + p
        assert w["confirm"] == {"mchId": standin.mchid, "appId": standin.appid, "package": bill.package_info,
                                "openId": "o-" + p}

        # a forged notice is refused
        headers, body = {"Wechatpay-Serial": standin.platform_serial}, b'{"id":"x"}'
        forged = await svc.client.post("/v1/wechatpay/transfer-notify", content=body, headers=headers)
        assert forged.status_code in (400, 401)

        # the user confirms; WeChat's notice arrives three times (same id), then once more with a new id
        await standin.confirm(package=bill.package_info, times=3)
        await standin.notify(w["out_bill_no"], fresh_id=True)
        assert [d.status for d in standin.deliveries] == [204] * 4
        w = await svc.withdrawal(p, wid)
        assert (w["status"], w["bill_state"], w["confirm"]) == ("paid", "SUCCESS", None)
        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"], a["withdrawn_fen"]) == (2_000, 0, 8_000)
        paid = await outbox_events(schema_conn, "WithdrawalPaid", wid)
        assert len(paid) == 1 and (paid[0]["amount_fen"], paid[0]["fee_fen"]) == (8_000, 50)
        assert len(await outbox_events(schema_conn, "WithdrawalTransferCreated", wid)) == 1
        assert len(await outbox_events(schema_conn, "WithdrawalApproved", wid)) == 1
        assert await schema_conn.fetchval("SELECT count(*) FROM transfer_notices WHERE out_bill_no = $1",
                                          w["out_bill_no"]) == 2
        assert len(standin.bills_for("o-" + p)) == 1


async def test_failed_cancelled_and_lapsed_transfers_release_exactly_once(make_svc, commission, ids, standin,
                                                                          schema_conn):
    p = ids("promoter")
    await commission.settle(p, 50_000)
    fail_openid, lapse_openid, quiet_openid, cancel_openid = ("o-fail-" + p, "o-lapse-" + p, "o-quiet-" + p,
                                                              "o-cancel-" + p)
    standin.behave(fail_openid, outcome="fail", fail_reason="PAYEE_ACCOUNT_ABNORMAL")
    standin.behave(lapse_openid, outcome="overdue")
    standin.behave(quiet_openid, outcome="overdue")
    async with make_svc(auto_approve_max_fen=5_000) as svc:
        await svc.wait_available(p, 50_000)
        failing = (await svc.request(p, 1_000, "k1", openid=fail_openid)).json()["withdrawal_id"]
        lapsing = (await svc.request(p, 20_000, "k2", openid=lapse_openid)).json()["withdrawal_id"]   # reviewed
        quiet = (await svc.request(p, 3_000, "k3", openid=quiet_openid)).json()["withdrawal_id"]
        cancelled = (await svc.request(p, 4_000, "k4", openid=cancel_openid)).json()["withdrawal_id"]
        approve = await svc.client.post(f"/v1/admin/withdrawals/{lapsing}/decision", json={"decision": "approve"},
                                        headers=svc.admin())
        assert approve.status_code == 200 and approve.json()["status"] == "approved"
        assert (await svc.client.post(f"/v1/admin/withdrawals/{lapsing}/decision", json={"decision": "approve"},
                                      headers=svc.admin())).status_code == 200   # the same decision again: harmless

        # WeChat fails the first bill on its own and notifies; the notice is repeated, also with a new id
        w = await svc.wait_status(p, failing, "released")
        assert (w["release_reason"], w["fail_reason"]) == ("transfer_failed", "PAYEE_ACCOUNT_ABNORMAL")
        await standin.notify(w["out_bill_no"], times=2)
        await standin.notify(w["out_bill_no"], fresh_id=True)

        # nobody confirms the second: it closes as OVERDUE_CLOSE, notice sent twice
        w = await svc.wait_status(p, lapsing, "transferring")
        await standin.confirm(w["out_bill_no"])                  # an overdue bill: the user never gets there
        await standin.lapse(w["out_bill_no"], times=2)
        w = await svc.withdrawal(p, lapsing)
        assert (w["status"], w["release_reason"], w["fail_reason"]) == ("released", "overdue_close", "OVERDUE_CLOSE")

        # the third lapses but its notice is lost: the follower's query finds out
        w = await svc.wait_status(p, quiet, "transferring")
        await standin.lapse(w["out_bill_no"], notify=False)
        w = await svc.wait_status(p, quiet, "released")
        assert w["release_reason"] == "overdue_close"

        # the fourth is cancelled by the merchant before the user confirms
        w = await svc.wait_status(p, cancelled, "transferring")
        await standin.cancel_bill(w["out_bill_no"], times=2)
        w = await svc.withdrawal(p, cancelled)
        assert (w["status"], w["release_reason"]) == ("released", "transfer_cancelled")

        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"], a["withdrawn_fen"]) == (50_000, 0, 0)
        for wid, amount in ((failing, 1_000), (lapsing, 20_000), (quiet, 3_000), (cancelled, 4_000)):
            released = await outbox_events(schema_conn, "WithdrawalReleased", wid)
            assert [e["amount_fen"] for e in released] == [amount]
            assert await outbox_events(schema_conn, "WithdrawalPaid", wid) == []


class DropFirstCreate(httpx.AsyncBaseTransport):
    """The network loses the first create call for one openid before it reaches WeChat."""

    def __init__(self, inner: httpx.AsyncBaseTransport, openid: str) -> None:
        self.inner, self.openid, self.dropped = inner, openid, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/transfer-bills") and not self.dropped \
                and self.openid.encode() in request.content:
            self.dropped += 1
            raise httpx.ConnectError("connection reset", request=request)
        return await self.inner.handle_async_request(request)


async def test_an_unknown_outcome_leads_to_a_query_never_to_a_second_bill(make_svc, commission, ids, standin,
                                                                          schema_conn):
    from standins.wechat.transfer import app_for

    p = ids("promoter")
    await commission.settle(p, 30_000)
    slow, broken, lost = "o-slow-" + p, "o-500-" + p, "o-lost-" + p
    standin.behave(slow, fault="slow", slow_s=1.5)          # longer than the client's 0.4 s
    standin.behave(broken, fault="error500", fault_times=2)
    transport = DropFirstCreate(httpx.ASGITransport(app=app_for(standin)), lost)
    async with make_svc(wechat_timeout_s=0.4, wechat_transport=transport) as svc:
        await svc.wait_available(p, 30_000)
        ids_ = {}
        for openid in (slow, broken, lost):
            r = await svc.request(p, 2_000, openid, openid=openid)
            assert r.status_code == 201, r.text
            ids_[openid] = r.json()["withdrawal_id"]
        for openid, wid in ids_.items():
            w = await svc.wait_status(p, wid, "transferring")
            calls = standin.creates_for(openid)
            assert {c.out_bill_no for c in calls} == {w["out_bill_no"]}, calls     # never a second number
            assert len(standin.bills_for(openid)) == 1
            assert w["out_bill_no"] in standin.query_calls                       # asked before anything else
            ops = [tuple(r) for r in await schema_conn.fetch(
                "SELECT operation, result FROM transfer_calls WHERE out_bill_no = $1 ORDER BY seq", w["out_bill_no"])]
            assert ops[0] == ("create", "unknown") and ops[1][0] == "query", ops
        # the lost create never reached WeChat: the query said so, and the SAME bill was sent again
        lost_calls = [tuple(r) for r in await schema_conn.fetch(
            "SELECT operation, result FROM transfer_calls WHERE withdrawal_id = $1 ORDER BY seq", uuid.UUID(ids_[lost]))]
        assert lost_calls[:3] == [("create", "unknown"), ("query", "not_found"), ("create", "found")]

        for openid, wid in ids_.items():
            w = await svc.withdrawal(p, wid)
            await standin.confirm(w["out_bill_no"], times=2)
            await svc.wait_status(p, wid, "paid")
            assert len(await outbox_events(schema_conn, "WithdrawalPaid", wid)) == 1
        a = await svc.available(p)
        assert (a["available_fen"], a["reserved_fen"], a["withdrawn_fen"]) == (24_000, 0, 6_000)
