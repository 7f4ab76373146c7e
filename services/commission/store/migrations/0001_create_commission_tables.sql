-- The commission service's own state. Every row here is derived from events (the plan table is
-- also written by the API in the transaction that records CommissionPlanPublished in the outbox).

-- Plan versions; the one in force at t is the latest published_at <= t.
CREATE TABLE plans (
    plan_version integer PRIMARY KEY,
    plan         jsonb   NOT NULL,
    published_by text    NOT NULL,
    published_at timestamptz NOT NULL,
    event_id     uuid    NOT NULL
);

-- Our own copy of who is a promoter and when (from PromoterEnrolled / PromoterStatusChanged).
CREATE TABLE promoter_statuses (
    seq         bigserial PRIMARY KEY,
    promoter_id text NOT NULL,
    status      text NOT NULL,
    until       timestamptz,
    changed_at  timestamptz NOT NULL,
    reason      text,
    event_id    uuid NOT NULL UNIQUE
);
CREATE INDEX promoter_statuses_promoter ON promoter_statuses (promoter_id);

-- Our own copy of the bindings (ReferralBound / ReferralTakenOver): valid from bound_at until the next row.
CREATE TABLE bindings (
    seq         bigserial PRIMARY KEY,
    customer_id text NOT NULL,
    promoter_id text NOT NULL,
    bound_at    timestamptz NOT NULL,
    event_id    uuid NOT NULL UNIQUE
);
CREATE INDEX bindings_customer ON bindings (customer_id);

-- Tier history (PromoterTierChanged, decided here): applies to orders paid after effective_at.
CREATE TABLE tier_changes (
    seq          bigserial PRIMARY KEY,
    promoter_id  text NOT NULL,
    from_tier    text NOT NULL,
    to_tier      text NOT NULL,
    rule         text NOT NULL,
    effective_at timestamptz NOT NULL
);
CREATE INDEX tier_changes_promoter ON tier_changes (promoter_id);

-- A promoter's own record, what tier rules read.
CREATE TABLE promoter_records (
    promoter_id       text PRIMARY KEY,
    orders            integer NOT NULL DEFAULT 0,
    direct_buyers     integer NOT NULL DEFAULT 0,
    settled_sales_fen bigint  NOT NULL DEFAULT 0
);
CREATE TABLE direct_buyers (
    promoter_id text NOT NULL,
    buyer_id    text NOT NULL,
    PRIMARY KEY (promoter_id, buyer_id)
);

-- Paid orders seen (dedupe, late-binding detection).
CREATE TABLE paid_orders (
    order_id text PRIMARY KEY,
    buyer_id text NOT NULL,
    paid_at  timestamptz NOT NULL
);
CREATE INDEX paid_orders_buyer ON paid_orders (buyer_id);

-- One row per CommissionAccrued, with its lifecycle.
CREATE TABLE accruals (
    accrual_id         text PRIMARY KEY,
    order_id           text NOT NULL,
    line_id            text NOT NULL,
    level              text NOT NULL,
    beneficiary_id     text NOT NULL,
    buyer_id           text NOT NULL,
    product_id         text NOT NULL,
    base_fen           bigint NOT NULL,
    quantity           integer NOT NULL,
    rate_bp            integer,
    fixed_fen_per_unit integer,
    amount_fen         bigint NOT NULL,
    reversed_fen       bigint NOT NULL DEFAULT 0,
    line_refunded_fen  bigint NOT NULL DEFAULT 0,
    settled_fen        bigint,
    settled_at         timestamptz,
    plan_version       integer NOT NULL,
    tier               text NOT NULL,
    freeze_days        integer NOT NULL,
    unfreeze           text NOT NULL,
    paid_at            timestamptz NOT NULL,
    event_id           uuid NOT NULL
);
CREATE INDEX accruals_order ON accruals (order_id);
CREATE INDEX accruals_beneficiary ON accruals (beneficiary_id, paid_at DESC, accrual_id DESC);

-- Would-be beneficiaries who got nothing, and why (CommissionAccrualSkipped).
CREATE TABLE accrual_skips (
    order_id       text NOT NULL,
    line_id        text,
    beneficiary_id text NOT NULL,
    level          text NOT NULL,
    reason         text NOT NULL,
    paid_at        timestamptz NOT NULL
);
CREATE INDEX accrual_skips_beneficiary ON accrual_skips (beneficiary_id);

CREATE TABLE refunds_applied (
    order_id      text NOT NULL,
    out_refund_no text NOT NULL,
    PRIMARY KEY (order_id, out_refund_no)
);

-- Settlements waiting for their time (filled from OrderCompleted; the scheduler takes due rows).
CREATE TABLE settlement_due (
    accrual_id     text PRIMARY KEY,
    due_at         timestamptz NOT NULL,
    cause_event_id uuid NOT NULL
);
CREATE INDEX settlement_due_at ON settlement_due (due_at);

-- Balances per promoter: the fold of money events (the balance algebra).
CREATE TABLE balances (
    promoter_id   text PRIMARY KEY,
    frozen_fen    bigint NOT NULL DEFAULT 0,
    available_fen bigint NOT NULL DEFAULT 0,
    reserved_fen  bigint NOT NULL DEFAULT 0,
    withdrawn_fen bigint NOT NULL DEFAULT 0,
    reversed_fen  bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The ordering hazard made visible: a binding that arrived after an order it should have applied to.
CREATE TABLE late_bindings (
    customer_id text NOT NULL,
    promoter_id text NOT NULL,
    bound_at    timestamptz NOT NULL,
    order_id    text NOT NULL,
    paid_at     timestamptz NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);

-- Where this schema's projection started reading (empty: offset 0). A schema started mid-log
-- (tests on shared topics) records its start so the audit replay starts there too.
CREATE TABLE replay_origin (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    from_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
