"""Erasure in referral: a person's nickname and avatar address are cleared and their posters and
codes deleted, only by an operator; ids, bindings and promoter status (the chain commission was paid
through) stay, and the erasure itself is recorded."""
from __future__ import annotations

import pytest

from tests.integration.referral.conftest import bind, enrol

pytestmark = pytest.mark.integration


async def test_an_operator_erases_nickname_and_avatar_and_the_chain_stays(make_svc, ids, db_conn, fresh_schema):
    p, c = ids("promoter"), ids("customer")
    async with make_svc() as svc:
        code = await enrol(svc, p, nickname="小明")
        r = await bind(svc, c, code, nickname="阿花", avatar_url="https://example.com/a.png")
        assert r.status_code in (200, 201), r.text
        q = f'"{fresh_schema}"'
        assert await db_conn.fetchval(f"SELECT nickname FROM {q}.users WHERE user_id = $1", c) == "阿花"
        erase = lambda who, headers: svc.client.post(f"/v1/admin/persons/{who}/erase",  # noqa: E731
                                                     json={"reason": "account deleted"}, headers=headers)
        assert (await erase(c, svc.who("fin-1", "finance"))).status_code == 403
        assert (await erase(c, svc.who(c))).status_code == 403
        for who in (c, p):
            r = await erase(who, svc.who("operator-9", "operator"))
            assert r.status_code == 200 and r.json()["users_cleared"] == 1, r.text
        rows = await db_conn.fetch(f"SELECT user_id, nickname, avatar_url FROM {q}.users WHERE user_id = ANY($1::text[])", [p, c])
        assert sorted((r["nickname"], r["avatar_url"]) for r in rows) == [(None, None), (None, None)]
        # the chain and the promoter stay
        assert await db_conn.fetchval(f"SELECT promoter_id FROM {q}.bindings WHERE customer_id = $1", c) == p
        assert await db_conn.fetchval(f"SELECT status FROM {q}.promoters WHERE user_id = $1", p) == "active"
        erased = await db_conn.fetch(f"SELECT person_id, erased_by, reason FROM {q}.personal_data_erasures ORDER BY person_id")
        assert sorted(tuple(r) for r in erased) == sorted([(c, "operator-9", "account deleted"), (p, "operator-9", "account deleted")])
