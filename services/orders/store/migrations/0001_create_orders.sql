-- Orders, their lines, refunds, WeChat Pay notices and the promoter-code projection.

CREATE TABLE orders (
    order_id          text PRIMARY KEY,
    out_trade_no      text NOT NULL UNIQUE,           -- the merchant order number WeChat knows
    buyer_id          text NOT NULL,
    promoter_code     text,
    postage_fen       bigint NOT NULL CHECK (postage_fen >= 0),
    total_fen         bigint NOT NULL CHECK (total_fen > 0),
    fingerprint       text NOT NULL,                  -- content hash: same number + other content = 409
    status            text NOT NULL CHECK (status IN ('placed', 'paid', 'cancelled', 'completed')),
    placed_at         timestamptz NOT NULL,
    placed_event_id   uuid NOT NULL,
    transaction_id    text,
    paid_at           timestamptz,
    completed_at      timestamptz,
    completion_reason text,
    cancelled_at      timestamptz,
    cancel_reason     text,
    -- set when money arrived after the order was cancelled: an operator must refund it
    late_transaction_id text,
    -- when the next timed transition is due: cancel if placed, complete if paid
    due_at            timestamptz
);
-- The sweeper reads only due rows through this index (no full scans).
CREATE INDEX orders_due ON orders (due_at) WHERE status IN ('placed', 'paid');
CREATE INDEX orders_buyer ON orders (buyer_id, placed_at DESC);
CREATE INDEX orders_promoter_code ON orders (promoter_code, placed_at DESC) WHERE promoter_code IS NOT NULL;

CREATE TABLE order_lines (
    order_id       text NOT NULL REFERENCES orders (order_id),
    line_id        text NOT NULL,
    position       integer NOT NULL,
    product_id     text NOT NULL,
    category_id    text,
    sku            text,
    quantity       integer NOT NULL CHECK (quantity > 0),
    unit_price_fen bigint NOT NULL CHECK (unit_price_fen >= 0),
    paid_fen       bigint NOT NULL CHECK (paid_fen >= 0 AND paid_fen <= unit_price_fen * quantity),
    PRIMARY KEY (order_id, line_id)
);

CREATE TABLE refunds (
    out_refund_no  text PRIMARY KEY,
    order_id       text NOT NULL REFERENCES orders (order_id),
    status         text NOT NULL CHECK (status IN ('pending', 'abnormal', 'succeeded', 'closed')),
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    fingerprint    text NOT NULL,
    reason         text,
    requested_by   text NOT NULL,
    requested_at   timestamptz NOT NULL,
    refund_id      text,                              -- WeChat's id, from the notice
    finished_at    timestamptz,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id);

CREATE TABLE refund_lines (
    out_refund_no text NOT NULL REFERENCES refunds (out_refund_no),
    line_id       text NOT NULL,
    quantity      integer NOT NULL CHECK (quantity >= 0),
    amount_fen    bigint NOT NULL CHECK (amount_fen > 0),
    PRIMARY KEY (out_refund_no, line_id)
);

-- Notification ids already acted on: the unique key is the dedupe (no read-then-write).
CREATE TABLE processed_notices (
    notice_id    text PRIMARY KEY,
    outcome      text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Every delivery, accepted or not, for audit (wechat.md §5.7): what came, and what we did.
CREATE TABLE notice_archive (
    seq           bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    notice_id     text,
    event_type    text,
    headers       jsonb NOT NULL,
    body_sha256   text NOT NULL,
    body_size     integer NOT NULL,
    out_trade_no  text,
    out_refund_no text,
    outcome       text NOT NULL,                      -- paid, duplicate, refund_succeeded, rejected, ...
    http_status   integer NOT NULL,
    reason_code   text,
    reason        text
);
CREATE INDEX notice_archive_notice ON notice_archive (notice_id);
CREATE INDEX notice_archive_trade ON notice_archive (out_trade_no);

-- Projection of referral's PromoterEnrolled: which promoter a code belongs to.
CREATE TABLE promoter_codes (
    promoter_code text PRIMARY KEY,
    promoter_id   text NOT NULL,
    enrolled_at   timestamptz NOT NULL
);
CREATE INDEX promoter_codes_promoter ON promoter_codes (promoter_id);
