-- The console's own state: operator accounts, sessions, its projection for the overview,
-- and the audit runs. It reads no other service's tables.

CREATE TABLE operators (
    username      text PRIMARY KEY CHECK (length(username) BETWEEN 1 AND 64),
    role          text NOT NULL CHECK (role IN ('operator', 'finance', 'plan_admin', 'auditor', 'viewer')),
    display_name  text,
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of the cookie's token is stored.
CREATE TABLE sessions (
    token_hash  text PRIMARY KEY,
    username    text NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
    role        text NOT NULL,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- The overview: daily figures folded from OrderPaid, CommissionAccrued/Reversed, PromoterEnrolled, ReferralBound.
CREATE TABLE daily_figures (
    day                    date PRIMARY KEY,
    orders                 integer NOT NULL DEFAULT 0,
    sales_fen              bigint  NOT NULL DEFAULT 0,
    distribution_sales_fen bigint  NOT NULL DEFAULT 0,
    commission_fen         bigint  NOT NULL DEFAULT 0,
    reversed_fen           bigint  NOT NULL DEFAULT 0,
    new_promoters          integer NOT NULL DEFAULT 0,
    new_customers          integer NOT NULL DEFAULT 0
);

-- Each promoter's current tier (PromoterTierChanged); no row = the plan's first tier.
CREATE TABLE promoter_tiers (
    promoter_id  text PRIMARY KEY,
    tier         text NOT NULL,
    effective_at timestamptz NOT NULL
);

-- Audit replays run from the console, with what they printed.
CREATE TABLE audit_runs (
    run_id      uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('commission', 'payout')),
    started_by  text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    exit_code   integer,
    output      text
);
CREATE INDEX audit_runs_started ON audit_runs (started_at DESC);
