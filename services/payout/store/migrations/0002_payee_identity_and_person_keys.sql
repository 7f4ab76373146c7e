-- Payee identity for tax withholding and the platform income report (docs/tax.md).
-- Per-person data keys, stored only wrapped under the service's master key: deleting a row shreds
-- every ciphertext of that person.
CREATE TABLE person_keys (
    person_id   text PRIMARY KEY,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Real name and resident ID number, each sealed (AES-256-GCM) with the person's key; the consent given.
CREATE TABLE payee_identities (
    promoter_id     text PRIMARY KEY,
    real_name_ct    bytea NOT NULL,
    id_number_ct    bytea NOT NULL,
    consent_purpose text NOT NULL,
    consent_version text NOT NULL,
    consent_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Who was erased, when, by whom and why (ids only: the proof that the erasure happened).
CREATE TABLE personal_data_erasures (
    person_id text PRIMARY KEY,
    erased_at timestamptz NOT NULL,
    erased_by text NOT NULL,
    reason    text NOT NULL
);
