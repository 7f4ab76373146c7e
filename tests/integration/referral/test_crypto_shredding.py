"""Crypto-shredding of referral's events (real Kafka and PostgreSQL): the nickname and an application
note reach the Kafka log only sealed with the person's key (the record's bytes hold no clear text), the
masked nickname is what other services get, referral's key opens them; erasing the person shreds the
key, after which the log's copies cannot be opened by anything, while the ids and the chain stay."""
from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.referral.settings import ReferralSettings
from services.referral.store import person_keys
from shared import shredding
from shared.contracts.referral import PromoterApplicationSubmitted, PromoterEnrolled
from shared.events import Envelope, catalog
from shared.topics import PARTITIONS, REFERRAL_EVENTS
from tests.conftest import eventually

pytestmark = pytest.mark.integration


async def _ends(bootstrap: str) -> dict[TopicPartition, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        return await c.end_offsets([TopicPartition(REFERRAL_EVENTS, p) for p in range(PARTITIONS)])
    finally:
        await c.stop()


async def _records_since(bootstrap: str, since: dict[TopicPartition, int], key: str) -> list[bytes]:
    """The raw values of `key`'s records published after `since`."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(since))
        ends = await c.end_offsets(list(since))
        for tp, off in since.items():
            c.seek(tp, off)
        out: list[bytes] = []
        pending = {tp for tp in since if since[tp] < ends[tp]}
        while pending:
            for tp, recs in (await c.getmany(timeout_ms=500)).items():
                out += [r.value for r in recs if r.key == key.encode()]
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        await c.stop()


async def test_personal_fields_are_sealed_in_the_log_and_shredded_on_erasure(make_svc, ids, db_conn, fresh_schema, infra):
    u = ids("applicant")
    since = await _ends(infra["kafka"])
    async with make_svc(enrolment_mode="application") as svc:
        r = await svc.client.post("/v1/promoters/applications", json={"note": "我叫赵六，电话13800000000", "nickname": "赵六六"},
                                  headers=svc.who(u))
        assert r.status_code == 201, r.text
        r = await svc.client.post(f"/v1/admin/applications/{u}/decision", json={"approved": True}, headers=svc.admin())
        assert r.status_code == 200, r.text

        async def published():
            n = await db_conn.fetchval(f'SELECT count(*) FROM "{fresh_schema}".outbox_pending')
            return n == 0 or None
        await eventually(published)
        raw = await _records_since(infra["kafka"], since, u)
        by_type = {Envelope.from_bytes(v).event_type: v for v in raw}
        assert {"PromoterApplicationSubmitted", "PromoterEnrolled"} <= set(by_type)
        for v in raw:                                     # the log never holds the clear text
            assert "赵六".encode() not in v and b"13800000000" not in v
        enrolled = catalog.payload(Envelope.from_bytes(by_type["PromoterEnrolled"]))
        applied = catalog.payload(Envelope.from_bytes(by_type["PromoterApplicationSubmitted"]))
        assert isinstance(enrolled, PromoterEnrolled) and isinstance(applied, PromoterApplicationSubmitted)
        assert Envelope.from_bytes(by_type["PromoterEnrolled"]).version == 2
        assert (enrolled.nickname, enrolled.nickname_masked) == (None, "赵**") and applied.note is None

        # referral's key opens them; another field's or person's reading is refused by the cipher
        conn = db_conn
        master = ReferralSettings().personal_data_master_key()   # the service's (the session's environment)
        await conn.execute(f'SET search_path TO "{fresh_schema}"')
        assert await person_keys.open_sealed(conn, master, u, "nickname", enrolled.nickname_sealed) == "赵六六"
        assert await person_keys.open_sealed(conn, master, u, "note", applied.note_sealed) == "我叫赵六，电话13800000000"
        key = await person_keys.key_for(conn, master, u, create=False)
        with pytest.raises(shredding.InvalidTag):
            shredding.open_text(key, u, "note", enrolled.nickname_sealed)
        with pytest.raises(shredding.InvalidTag):
            shredding.open_text(key, "someone-else", "nickname", enrolled.nickname_sealed)
        wrapped = await conn.fetchval("SELECT wrapped_key FROM person_keys WHERE person_id = $1", u)
        assert key not in wrapped                          # stored only wrapped under the master key

        r = await svc.client.post(f"/v1/admin/persons/{u}/erase", json={"reason": "account deleted"},
                                  headers=svc.who("operator-9", "operator"))
        assert r.status_code == 200 and r.json()["keys_shredded"] == 1, r.text
        assert await conn.fetchval("SELECT count(*) FROM person_keys WHERE person_id = $1", u) == 0
        assert await person_keys.open_sealed(conn, master, u, "nickname", enrolled.nickname_sealed) is None
        assert await person_keys.open_sealed(conn, master, u, "note", applied.note_sealed) is None
        # the log's copy is still there, still parses, and nothing left can open it
        after = {Envelope.from_bytes(v).event_type: catalog.payload(Envelope.from_bytes(v))
                 for v in await _records_since(infra["kafka"], since, u)}
        assert after["PromoterEnrolled"].nickname_sealed == enrolled.nickname_sealed
        assert await conn.fetchval("SELECT status FROM promoters WHERE user_id = $1", u) == "active"
        assert (await svc.client.post(f"/v1/admin/persons/{u}/erase", json={"reason": "again"},
                                      headers=svc.who("operator-9", "operator"))).json()["keys_shredded"] == 0
