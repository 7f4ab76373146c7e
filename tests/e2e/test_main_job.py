"""The main job, small: the four services as separate processes on the real Kafka and
PostgreSQL, WeChat stood in for locally, traffic through HTTP and signed notices. It must end
with every balance explained: equal to an independent recomputation, and to the audit replay."""
import random
import string

import pytest

from simulation.run import run_demo
from simulation.cluster import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_main_job_balances_equal_recomputation_and_audit_replay(infra):
    wechat, *svc = free_ports(7)
    lines = []
    # letters only: ids built from it (run id + a counter) must never look like a phone number to
    # the log check below (a hex id of digits only, "159428", once made "15942800001")
    run_id = "e2e" + "".join(random.choices(string.ascii_lowercase, k=6))
    ok, rep = await run_demo(promoters=6, customers=14, seed=3, run_id=run_id, wechat_port=wechat,
                             ports=dict(zip(("referral", "orders", "commission", "payout", "engagement", "console"), svc)), log=lines.append)
    out = "\n".join(lines)
    assert ok, out
    assert "console_ok" in rep.notes  # the operators' console counted every order and fen of the traffic
    assert "replay equals live (0 differences)" in out and "0 promoter(s) differ" in out
    assert rep.refused_bindings == {"self_binding": 1, "cycle": 1}
    assert sorted(set(rep.withdrawals.values())) == ["paid", "released"]
    assert sum(b["withdrawn_fen"] for b in rep.balances.values()) == rep.withdrawn_fen > 0
    assert sum(b["reversed_fen"] for b in rep.balances.values()) > 0  # refunds reversed commission
    # the promoter experience: an open notice page heard accruals live; one subscribe message; an honour
    assert "engagement_ok" in rep.notes and "首单达成 (first_sale)" in out
    assert_logs_hold_nothing_sensitive(run_id, rep, out)


def assert_logs_hold_nothing_sensitive(run_id: str, rep, out: str) -> None:
    """Every line the services logged during the demo (their log files) and the demo's own
    output: no key, access token, Authorization, identity token, openid, phone or ID number."""
    import hashlib
    import os
    import re

    from simulation.cluster import ROOT

    logs = sorted((ROOT / ".local" / "demo" / run_id).glob("*.log"))
    assert logs, "the demo wrote no service logs"
    text = "\n".join(p.read_text(errors="replace") for p in logs) + "\n" + out
    assert len(text.splitlines()) > 20
    secrets = [os.environ[k] for k in ("FENXIAO_IDENTITY_SECRET", "REFERRAL_CODE_SECRET", "REFERRAL_PERSONAL_DATA_KEY",
                                       "PAYOUT_IDENTITY_MASTER_KEY")]
    users = rep.promoters + rep.customers
    openids = [f"o-{u}" for u in users] + ["o" + hashlib.sha256(u.encode()).hexdigest()[:27] for u in users]
    for value in secrets + openids:
        assert value not in text, f"{value!r} is in the logs"
    for pattern in (r"access_token=(?!\[redacted\])[^&\s\"']+", r"X-Fenxiao-Identity['\"]?\s*[:=]\s*['\"]?ey",
                    r"WECHATPAY2-SHA256-RSA2048 [^\s]*signature=", r"(?<!\d)1[3-9]\d{9}(?!\d)"):
        assert not re.search(pattern, text), f"{pattern} matches the logs"
