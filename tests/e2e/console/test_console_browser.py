"""The operators' console end to end in headless Chromium: log in; publish a plan and see an
over-cap plan refused with its reason; approve a withdrawal; open the explanation of a
commission and see the numbers the commission API reports; a viewer cannot approve."""
from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.console.stack import PASSWORD, PLAN_V1

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def login(browser, stack, user: str, password: str = PASSWORD):
    await browser.clear_cookies()
    page = await browser.new_page()
    await page.goto(stack.url("console") + "/login")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-submit")
    return page


async def shot(page, screenshots, name: str) -> None:
    if screenshots is not None:
        await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


async def api(stack, service: str, path: str):
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=10) as h:
        r = await h.get(path, headers=stack.who("test-auditor", "auditor", audience=service))
        assert r.status_code == 200, r.text
        return r.json()


async def test_login_and_overview(console_stack, browser, screenshots):
    page = await login(browser, console_stack, "plan", "not-the-password")
    assert "用户名或密码错误" in await page.inner_text("#login-error")
    await shot(page, screenshots, "login")
    await page.close()
    page = await login(browser, console_stack, "plan")
    assert page.url.endswith("/overview")
    assert "方案管理员" in await page.inner_text("#who")
    # the overview is the console's own projection: reload until it has folded both orders
    for _ in range(100):
        if await page.inner_text("#kpi-distribution-sales") == "¥2,499.00":
            break
        await page.wait_for_timeout(300)
        await page.reload()
    assert await page.inner_text("#kpi-distribution-sales") == "¥2,499.00"
    assert await page.inner_text("#pending-withdrawals") == "2"
    assert await page.inner_text("#pending-applications") == "1"
    assert await page.locator("#chart-money canvas").count() >= 1  # the vendored chart library drew
    await shot(page, screenshots, "overview")
    await page.close()


async def test_publish_a_plan_and_see_an_over_cap_plan_refused(console_stack, browser, screenshots):
    page = await login(browser, console_stack, "plan")
    await page.goto(console_stack.url("console") + "/plan")
    v2 = {**PLAN_V1, "cap_bp": 2800}
    await page.fill("#plan-json", json.dumps(v2, ensure_ascii=False, indent=2))
    await page.click("#plan-check")
    assert "校验通过" in await page.inner_text("#plan-check-ok")
    await page.click("#plan-publish")
    published = await page.inner_text("#flash-ok")
    assert "已发布方案版本 v" in published
    version = int(published.split("v")[-1])
    assert await page.inner_text("#current-version") == f"v{version}"
    history = await page.inner_text("#plan-history")
    assert "cap_bp" in history and "3000 → 2800" in history  # the diff against the previous version

    over = {**v2, "tiers": [{"name": "sharer", "level1_bp": 2000, "level2_bp": 1000, "self_purchase_bp": 800}]}
    await page.fill("#plan-json", json.dumps(over, ensure_ascii=False, indent=2))
    await page.click("#plan-check")  # validation before saving
    assert await page.inner_text("#plan-refusal-code") == "plan_over_cap"
    await page.click("#plan-publish")
    assert await page.inner_text("#plan-refusal-code") == "plan_over_cap"
    assert "3000" in await page.inner_text("#plan-refusal")  # the reason names the worst case against the cap
    await shot(page, screenshots, "plan-refused")
    third = {**v2, "levels": 3}
    await page.fill("#plan-json", json.dumps(third, indent=2))
    await page.click("#plan-publish")
    assert await page.inner_text("#plan-refusal-code") == "third_level_forbidden"
    current = await api(console_stack, "commission", "/v1/admin/plan")
    assert current["plan_version"] == version and current["plan"]["cap_bp"] == 2800  # nothing refused was published
    await page.close()


async def test_viewer_cannot_approve_a_withdrawal(console_stack, browser):
    wid = console_stack.ids["wd_a"]
    page = await login(browser, console_stack, "view")
    await page.goto(console_stack.url("console") + "/withdrawals")
    row = page.locator(f'tr[data-withdrawal="{wid}"]')
    await row.locator("button.approve").click()
    assert await page.inner_text("#error-title") == "无权操作"
    w = await api(console_stack, "payout", f"/v1/admin/withdrawals/{wid}")
    assert w["status"] == "pending_review"
    # and a forged form without the session's CSRF token is refused too
    r = await page.request.post(console_stack.url("console") + f"/withdrawals/{wid}/decision",
                                form={"decision": "approve"}, max_redirects=0)
    assert r.status == 403
    await page.close()
    page = await login(browser, console_stack, "aud")
    await page.goto(console_stack.url("console") + "/audit")
    actions = await page.inner_text("#actions")
    assert "withdrawal.decide" in actions and "refused" in actions  # the attempt is in the audit log
    await page.close()


async def test_finance_approves_a_withdrawal(console_stack, browser, screenshots):
    wid = console_stack.ids["wd_b"]
    page = await login(browser, console_stack, "fin")
    await page.goto(console_stack.url("console") + "/withdrawals")
    await shot(page, screenshots, "withdrawals")
    await page.locator(f'tr[data-withdrawal="{wid}"] button.approve').click()
    assert f"提现 {wid} 已批准" in await page.inner_text("#flash-ok")
    w = await api(console_stack, "payout", f"/v1/admin/withdrawals/{wid}")
    assert w["status"] != "pending_review" and w["decided_by"] == "console:fin"
    await page.goto(console_stack.url("console") + "/withdrawals?status=all")
    assert await page.locator(f'tr[data-withdrawal="{wid}"] .badge').inner_text() != "待审核"
    await page.goto(console_stack.url("console") + "/withdrawals")
    other = page.locator(f'tr[data-withdrawal="{console_stack.ids["wd_a"]}"]')
    await other.locator('input[name="reason"]').fill("收款信息不符")
    await other.locator("button.reject").click()
    assert "已拒绝" in await page.inner_text("#flash-ok")
    rejected = await api(console_stack, "payout", f"/v1/admin/withdrawals/{console_stack.ids['wd_a']}")
    assert (rejected["status"], rejected["reject_reason"]) == ("rejected", "收款信息不符")
    await page.goto(console_stack.url("console") + "/withdrawals?status=all")
    async with page.expect_download() as dl:
        await page.click("#export-csv")
    csv_text = (await (await dl.value).path()).read_text(encoding="utf-8-sig")
    assert csv_text.startswith("withdrawal_id,promoter_id") and wid in csv_text
    await page.close()


async def test_explanation_of_a_commission_shows_the_api_numbers(console_stack, browser, screenshots):
    o2 = console_stack.ids["o2"]
    api_ex = await api(console_stack, "commission", f"/v1/admin/explain/orders/{o2}")
    page = await login(browser, console_stack, "aud")
    await page.goto(console_stack.url("console") + "/explain")
    await page.fill("#explain-order", o2)
    await page.click('#explain-order + button')
    assert await page.inner_text("#ex-order") == o2
    for key in ("accrued", "reversed", "settled", "net"):
        assert int(await page.get_attribute(f"#ex-{key}", "data-fen")) == api_ex["totals"][f"{key}_fen"]
    assert api_ex["totals"]["reversed_fen"] > 0
    for a in api_ex["accruals"]:
        row = page.locator(f'tr[data-accrual="{a["accrual_id"]}"]')
        assert int(await row.locator("td.amount").get_attribute("data-fen")) == a["amount_fen"]
        assert int(await row.locator("td.net").get_attribute("data-fen")) == a["net_fen"]
        assert a["arithmetic"]["formula"] in await row.inner_text()
    # one commission record, opened from its own link
    first = api_ex["accruals"][0]["accrual_id"]
    await page.click(f'a[href="/explain?accrual_id={first.replace(":", "%3A")}"]')
    assert await page.locator("tr.focus").get_attribute("data-accrual") == first
    events = await page.inner_text("#ex-events")
    assert "OrderPaid" in events and "CommissionAccrued" in events and "CommissionReversed" in events
    await shot(page, screenshots, "explain")
    await page.close()


async def test_promoter_pages_and_referrer_change_with_reason(console_stack, browser, screenshots):
    ids = console_stack.ids
    page = await login(browser, console_stack, "ops")
    await page.goto(console_stack.url("console") + "/promoters")
    assert ids["applicant"] in await page.inner_text("#applications")
    await shot(page, screenshots, "promoters")
    await page.locator("#applications tr", has_text=ids["applicant"]).locator("button", has_text="通过").click()
    assert f"已通过 {ids['applicant']} 的申请" in await page.inner_text("#flash-ok")
    assert ids["applicant"] not in await page.inner_text("#applications")
    await page.fill("#promoter-q", "李小红")  # search by nickname
    await page.click("text=搜索")
    assert ids["b"] in await page.inner_text("#promoters")

    await page.goto(console_stack.url("console") + f"/promoters/{ids['b']}")
    await shot(page, screenshots, "promoter")
    await page.click("text=暂停")  # the reason is required: the browser keeps the form
    assert await page.inner_text("#promoter-status") == "正常"
    await page.fill('input[name="reason"]', "刷单嫌疑，调查中")
    await page.fill('input[name="days"]', "7")
    await page.click("text=暂停")
    assert await page.inner_text("#flash-ok") == "已暂停"
    assert await page.inner_text("#promoter-status") == "暂停"
    p = await api(console_stack, "referral", f"/v1/admin/promoters/{ids['b']}")
    assert (p["status"], p["status_reason"]) == ("suspended", "刷单嫌疑，调查中") and p["suspended_until"]
    await page.click('form[action$="/status"] button')
    assert await page.inner_text("#promoter-status") == "正常"
    await page.goto(console_stack.url("console") + f"/customers/{ids['c']}")
    await page.fill('input[name="promoter_id"]', ids["a"])
    await page.fill('input[name="reason"]', "客服工单 42：分享被误记")
    await page.click('form[action$="/referrer"] button[type=submit]')
    assert "推荐人已改为" in await page.inner_text("main .flash")
    last = page.locator("#bindings tbody tr").last
    assert ids["a"] in await last.inner_text() and "运营更换" in await last.inner_text()
    for _ in range(100):  # the chain view is referral's projection of its own topic: it follows shortly
        if await page.inner_text("#chain-level1") == ids["a"]:
            break
        await page.wait_for_timeout(200)
        await page.reload()
    assert await page.inner_text("#chain-level1") == ids["a"]
    history = await api(console_stack, "referral", f"/v1/admin/customers/{ids['c']}/bindings")
    assert [(h["promoter_id"], h["source"]) for h in history][-1] == (ids["a"], "operator")
    await page.close()


async def test_auditor_runs_the_replays_and_downloads_the_report(console_stack, browser, screenshots):
    page = await login(browser, console_stack, "aud")
    await page.goto(console_stack.url("console") + "/audit")
    for kind in ("commission", "payout"):
        await page.click(f"#run-{kind}")
        assert f"{kind} 审计重放完成：一致" in await page.inner_text("#flash-ok")
    assert "一致" in await page.inner_text("#audit-runs")
    await shot(page, screenshots, "audit")
    async with page.expect_download() as dl:
        await page.locator("#audit-runs a", has_text="下载").first.click()
    report = (await (await dl.value).path()).read_text()
    assert report.startswith("fenxiao payout audit replay") and "exit code 0" in report
    # the compliance report of the whole log, from commission through the console (auditors only)
    await page.click("#compliance-report")
    assert await page.inner_text("h1") == "Compliance report"
    body = await page.inner_text("body")
    assert "levels paid (never above 2)" in body and "Overall: PASS" in body
    await page.close()
    viewer = await login(browser, console_stack, "view")
    await viewer.goto(console_stack.url("console") + "/audit")
    assert await viewer.locator("#run-commission").is_disabled()
    assert await viewer.locator("#compliance-report").is_disabled()
    await viewer.close()
