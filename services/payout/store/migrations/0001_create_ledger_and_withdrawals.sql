-- payout: the available-balance ledger, withdrawals, transfer notices and calls.

-- Per promoter: what can be withdrawn, what is held by open withdrawals, what left.
-- Folded from commission events; changed directly by this service's withdrawals.
CREATE TABLE balances (
    promoter_id   text PRIMARY KEY,
    available_fen bigint NOT NULL DEFAULT 0,      -- may be negative after a reversal of settled money
    reserved_fen  bigint NOT NULL DEFAULT 0 CHECK (reserved_fen >= 0),
    withdrawn_fen bigint NOT NULL DEFAULT 0 CHECK (withdrawn_fen >= 0),
    settled_fen   bigint NOT NULL DEFAULT 0,
    reversed_fen  bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE withdrawals (
    withdrawal_id     uuid PRIMARY KEY,
    promoter_id       text   NOT NULL,
    idempotency_key   text   NOT NULL,
    amount_fen        bigint NOT NULL CHECK (amount_fen > 0),
    fee_fen           bigint NOT NULL CHECK (fee_fen >= 0),
    net_fen           bigint NOT NULL CHECK (net_fen > 0 AND net_fen + fee_fen = amount_fen),
    openid            text   NOT NULL,
    -- the real name only as WeChat will receive it: RSA-OAEP with the platform key (PIPL)
    user_name_cipher  text,
    user_name_serial  text,
    status            text   NOT NULL CHECK (status IN ('pending_review', 'approved', 'transferring', 'paid', 'rejected', 'released')),
    business_day      date   NOT NULL,
    requested_at      timestamptz NOT NULL,
    automatic         boolean NOT NULL DEFAULT false,
    decided_by        text,
    decided_at        timestamptz,
    reject_reason     text,
    attempt           integer NOT NULL DEFAULT 0,
    out_bill_no       text UNIQUE,
    transfer_bill_no  text,
    bill_state        text,
    package_info      text,
    fail_reason       text,
    release_reason    text,
    finished_at       timestamptz,
    checks            integer NOT NULL DEFAULT 0,
    next_check_at     timestamptz,
    lease_until       timestamptz,
    last_error        text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (promoter_id, idempotency_key)
);
CREATE INDEX withdrawals_promoter_day ON withdrawals (promoter_id, business_day);
CREATE INDEX withdrawals_promoter_requested ON withdrawals (promoter_id, requested_at DESC);
CREATE INDEX withdrawals_status_requested ON withdrawals (status, requested_at);
CREATE INDEX withdrawals_to_follow ON withdrawals (next_check_at) WHERE status IN ('approved', 'transferring');

-- Every transfer notice received (deduped on WeChat's notice id), kept for audit.
CREATE TABLE transfer_notices (
    notice_id   text PRIMARY KEY,
    event_type  text NOT NULL,
    out_bill_no text,
    state       text,
    outcome     text NOT NULL,
    body_sha256 text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Every call to WeChat's transfer API and what came back, for audit.
CREATE TABLE transfer_calls (
    seq           bigserial PRIMARY KEY,
    withdrawal_id uuid NOT NULL,
    out_bill_no   text NOT NULL,
    operation     text NOT NULL,   -- create | query
    result        text NOT NULL,   -- found | not_found | refused | unknown
    http_status   integer,
    code          text,
    state         text,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transfer_calls_bill ON transfer_calls (out_bill_no);
