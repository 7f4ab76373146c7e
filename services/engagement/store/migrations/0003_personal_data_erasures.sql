-- Who had their personal data erased here, when, by whom and why (ids only: the proof of the erasure).
CREATE TABLE personal_data_erasures (
    person_id text PRIMARY KEY,
    erased_at timestamptz NOT NULL,
    erased_by text NOT NULL,
    reason    text NOT NULL
);
