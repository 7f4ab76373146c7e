-- engagement: notices, subscribe messages, earnings facts (dashboard, boards), honours,
-- announcements, tier perks. Everything here is folded from other services' events, except
-- what operators and promoters set through this service's API.

-- Promoters as this service knows them (names for the boards, tier for perks) and the
-- per-promoter notice counter (a notice's id; taken under this row's lock, so ids commit in order).
CREATE TABLE promoters (
    promoter_id text PRIMARY KEY,
    nickname    text,
    tier        text,
    notice_seq  bigint NOT NULL DEFAULT 0
);

CREATE TABLE notices (
    promoter_id     text   NOT NULL,
    notice_id       bigint NOT NULL,
    source_event_id uuid   NOT NULL UNIQUE,      -- shown once, however often the event arrives
    kind            text   NOT NULL,
    title           text   NOT NULL,
    body            text   NOT NULL,
    amount_fen      bigint,
    status          text   NOT NULL,
    ref             text,
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz,
    PRIMARY KEY (promoter_id, notice_id)
);

-- Money facts, one row per event: accrued | settled | reversed_frozen | reversed_settled | withdrawn
CREATE TABLE earnings (
    event_id    uuid PRIMARY KEY,
    promoter_id text   NOT NULL,
    kind        text   NOT NULL CHECK (kind IN ('accrued', 'settled', 'reversed_frozen', 'reversed_settled', 'withdrawn')),
    amount_fen  bigint NOT NULL CHECK (amount_fen >= 0),
    at          timestamptz NOT NULL,
    order_id    text,
    line_id     text,
    buyer_id    text,
    level       text
);
CREATE INDEX earnings_promoter_at ON earnings (promoter_id, at);
CREATE INDEX earnings_kind_at ON earnings (kind, at);

-- Order lines (for "top products"): which product a line was.
CREATE TABLE order_lines (
    order_id   text NOT NULL,
    line_id    text NOT NULL,
    product_id text NOT NULL,
    PRIMARY KEY (order_id, line_id)
);

-- A customer's first paid order through a promoter (level 1): "new customers who bought".
CREATE TABLE first_purchases (
    promoter_id text NOT NULL,
    buyer_id    text NOT NULL,
    order_id    text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (promoter_id, buyer_id)
);
CREATE INDEX first_purchases_at ON first_purchases (at);

-- The share funnel: share | visit | bind, per promoter, source and product.
CREATE TABLE channel_steps (
    event_id    uuid PRIMARY KEY,
    promoter_id text NOT NULL,
    step        text NOT NULL CHECK (step IN ('share', 'visit', 'bind')),
    source      text NOT NULL,
    product_id  text,
    customer_id text,
    at          timestamptz NOT NULL
);
CREATE INDEX channel_steps_promoter ON channel_steps (promoter_id, step);

-- One-time subscriptions the mini-program reported as accepted, and how many were used.
CREATE TABLE subscriptions (
    promoter_id text NOT NULL,
    template_id text NOT NULL,
    openid      text NOT NULL,
    accepted    integer NOT NULL DEFAULT 0,
    used        integer NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= accepted),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (promoter_id, template_id)
);
CREATE TABLE subscription_reports (
    promoter_id     text NOT NULL,
    idempotency_key text NOT NULL,
    template_ids    text[] NOT NULL,
    reported_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (promoter_id, idempotency_key)
);

-- Operator-configured subscribe-message templates per notice kind.
CREATE TABLE notice_templates (
    kind        text PRIMARY KEY,
    template_id text NOT NULL,
    page        text NOT NULL DEFAULT '',
    fields      jsonb NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per notice that used a subscription: the message and what became of it. Never
-- sent twice: `sending` is committed before the call, and an unknown outcome is not retried.
CREATE TABLE subscribe_sends (
    source_event_id uuid PRIMARY KEY,
    promoter_id     text NOT NULL,
    notice_id       bigint NOT NULL,
    template_id     text NOT NULL,
    openid          text NOT NULL,
    page            text NOT NULL,
    data            jsonb NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'refused', 'failed', 'unknown')),
    errcode         integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscribe_sends_open ON subscribe_sends (created_at) WHERE state IN ('pending', 'sending');

-- Honours
CREATE TABLE honour_rules (
    rule_id    text PRIMARY KEY,
    title      text NOT NULL,
    metric     text NOT NULL,
    threshold  bigint NOT NULL CHECK (threshold > 0),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE honours (
    promoter_id     text NOT NULL,
    honour_key      text NOT NULL,
    title           text NOT NULL,
    source_event_id uuid,
    awarded_at      timestamptz NOT NULL,
    PRIMARY KEY (promoter_id, honour_key)
);
CREATE TABLE closed_months (
    month     text PRIMARY KEY,            -- 2026-11 (business time zone)
    closed_at timestamptz NOT NULL DEFAULT now()
);

-- Announcements and training material, with read tracking.
CREATE TABLE announcements (
    announcement_id uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('announcement', 'training')),
    title           text NOT NULL,
    body            text NOT NULL,
    url             text,
    published_by    text NOT NULL,
    published_at    timestamptz NOT NULL
);
CREATE TABLE announcement_reads (
    announcement_id uuid NOT NULL REFERENCES announcements,
    promoter_id     text NOT NULL,
    read_at         timestamptz NOT NULL,
    PRIMARY KEY (announcement_id, promoter_id)
);

-- Tier perks
CREATE TABLE perks (
    perk_id     text PRIMARY KEY,
    tier        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('trial', 'gift_pack', 'coupon', 'other')),
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    active      boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE perk_grants (
    grant_id      text PRIMARY KEY,
    promoter_id   text NOT NULL,
    perk_id       text NOT NULL REFERENCES perks,
    tier          text NOT NULL,
    granted_at    timestamptz NOT NULL,
    claimed_at    timestamptz,
    claim_key     text,
    UNIQUE (promoter_id, perk_id)
);
CREATE INDEX perk_grants_promoter ON perk_grants (promoter_id);
