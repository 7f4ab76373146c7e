-- The merchant's choices; one row, written from the settings at first start.
CREATE TABLE merchant_settings (
    id                     boolean PRIMARY KEY DEFAULT true CHECK (id),
    enrolment_mode         text    NOT NULL CHECK (enrolment_mode IN ('everyone', 'first_order', 'spend_threshold', 'application', 'operator')),
    spend_threshold_fen    bigint  NOT NULL CHECK (spend_threshold_fen >= 0),
    binding_mode           text    NOT NULL CHECK (binding_mode IN ('first_touch', 'first_touch_window', 'new_users_only', 'last_touch')),
    protection_window_days integer NOT NULL CHECK (protection_window_days >= 1),
    -- orders paid before the enrolment mode took effect do not enrol anyone automatically
    enrolment_mode_since   timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    updated_by             text
);

-- Users referral has seen (a visit, a bind attempt, an enrolment): "new user" means no row here.
CREATE TABLE users (
    user_id       text PRIMARY KEY,
    nickname      text,
    avatar_url    text,
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL
);

CREATE TABLE promoters (
    user_id           text PRIMARY KEY,
    code              text NOT NULL UNIQUE CHECK (length(code) <= 32),
    status            text NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    status_reason     text,
    suspended_until   timestamptz,
    enrolled_by       text NOT NULL,
    enrolled_at       timestamptz NOT NULL,
    status_changed_at timestamptz NOT NULL
);

CREATE TABLE promoter_applications (
    user_id      text PRIMARY KEY,
    state        text NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    note         text,
    submitted_at timestamptz NOT NULL,
    decided_at   timestamptz,
    decided_by   text,
    reason       text
);
CREATE INDEX promoter_applications_pending ON promoter_applications (submitted_at) WHERE state = 'pending';

-- Bindings, current and past. At most one current binding per customer, whatever races.
CREATE TABLE bindings (
    id            bigserial PRIMARY KEY,
    customer_id   text NOT NULL,
    promoter_id   text NOT NULL,
    promoter_code text NOT NULL,
    source        text NOT NULL CHECK (source IN ('poster', 'link', 'qr')),
    product_id    text,
    mode          text NOT NULL,
    bound_at      timestamptz NOT NULL,
    superseded_at timestamptz,
    event_id      uuid NOT NULL UNIQUE,
    CHECK (customer_id <> promoter_id)
);
CREATE UNIQUE INDEX bindings_one_current ON bindings (customer_id) WHERE superseded_at IS NULL;
CREATE INDEX bindings_current_by_promoter ON bindings (promoter_id, bound_at) WHERE superseded_at IS NULL;

-- Every refused bind, for audit (the BindingRefused event says the same on the log).
CREATE TABLE binding_refusals (
    id            bigserial PRIMARY KEY,
    customer_id   text NOT NULL,
    promoter_code text NOT NULL,
    promoter_id   text,
    source        text NOT NULL,
    product_id    text,
    reason        text NOT NULL,
    refused_at    timestamptz NOT NULL,
    event_id      uuid NOT NULL UNIQUE
);
CREATE INDEX binding_refusals_customer ON binding_refusals (customer_id, refused_at);

-- From order events: what each customer paid (goods, net of refunds), for enrolment and team views.
CREATE TABLE customer_orders (
    order_id     text PRIMARY KEY,
    buyer_id     text NOT NULL,
    paid_fen     bigint NOT NULL CHECK (paid_fen >= 0),
    refunded_fen bigint NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0),
    paid_at      timestamptz NOT NULL
);
CREATE INDEX customer_orders_buyer ON customer_orders (buyer_id, paid_at);

CREATE TABLE customer_refunds (
    order_id      text NOT NULL,
    out_refund_no text NOT NULL,
    amount_fen    bigint NOT NULL,
    refunded_at   timestamptz NOT NULL,
    PRIMARY KEY (order_id, out_refund_no)
);

-- The chain read model, projected from the referral topic (the log is the truth).
CREATE TABLE chain_links (
    event_id    uuid PRIMARY KEY,
    customer_id text NOT NULL,
    promoter_id text NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz
);
CREATE INDEX chain_links_customer ON chain_links (customer_id, valid_from);

-- Products registered for posters.
CREATE TABLE products (
    product_id text PRIMARY KEY,
    title      text NOT NULL,
    price_fen  bigint NOT NULL CHECK (price_fen >= 0),
    image      bytea,
    image_url  text,
    updated_at timestamptz NOT NULL
);

-- Mini-program codes from WeChat, per promoter and page (generation is rate-limited).
CREATE TABLE wxa_codes (
    promoter_id text NOT NULL,
    page        text NOT NULL,
    width       integer NOT NULL,
    scene       text NOT NULL,
    png         bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (promoter_id, page, width)
);

-- Rendered posters, keyed by a hash of everything drawn on them.
CREATE TABLE posters (
    input_hash  text PRIMARY KEY,
    promoter_id text NOT NULL,
    product_ref text NOT NULL,
    png         bytea NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX posters_by_product ON posters (promoter_id, product_ref);
