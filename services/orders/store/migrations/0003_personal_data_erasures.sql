-- orders: who was erased, when, by whom and why (ids only: the proof that the erasure happened;
-- docs/audit.md, "Retention and erasure"). The orders' money (amounts, lines, refunds, WeChat ids)
-- stays; the payer's openid is cleared.
CREATE TABLE personal_data_erasures (
    person_id text PRIMARY KEY,
    erased_at timestamptz NOT NULL,
    erased_by text NOT NULL,
    reason    text NOT NULL
);
