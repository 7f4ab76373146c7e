-- Per-person data keys (crypto-shredding, docs/audit.md "Retention and erasure"): personal fields of
-- referral's events (PromoterEnrolled.nickname_sealed, PromoterApplicationSubmitted.note_sealed) are
-- sealed with the person's key, stored here only wrapped under REFERRAL_PERSONAL_DATA_KEY. Erasing the
-- person deletes the row: the log's copies can no longer be opened.
CREATE TABLE person_keys (
    person_id   text PRIMARY KEY,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
