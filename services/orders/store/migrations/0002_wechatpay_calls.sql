-- Outgoing WeChat Pay calls: JSAPI prepay, close, query (recovery of lost notices), refund
-- submission, and the daily reconciliation against WeChat's bills.

ALTER TABLE orders
    ADD COLUMN payer_openid        text,            -- from the gateway identity, sent as payer.openid
    ADD COLUMN prepay_id           text,            -- reused while valid (2 h, and never past time_expire)
    ADD COLUMN prepay_expires_at   timestamptz,
    ADD COLUMN prepay_requested_at timestamptz,     -- set BEFORE the first call: WeChat may know the order from then on
    ADD COLUMN next_query_at       timestamptz,     -- placed, no notice yet: query WeChat at this time
    ADD COLUMN query_checks        integer NOT NULL DEFAULT 0,
    ADD COLUMN wechat_last_error   text;
-- The recovery sweeper reads only placed orders waiting for a query (no full scans).
CREATE INDEX orders_query_due ON orders (next_query_at) WHERE status = 'placed' AND next_query_at IS NOT NULL;
CREATE INDEX orders_paid_at ON orders (paid_at) WHERE paid_at IS NOT NULL;

ALTER TABLE refunds
    -- NULL: never sent; sending: a submission went out (outcome maybe unknown: query first);
    -- submitted: WeChat has it (PROCESSING or later); refused: WeChat refused it outright
    ADD COLUMN submit_state   text CHECK (submit_state IN ('sending', 'submitted', 'refused')),
    ADD COLUMN wechat_status  text,                 -- last status WeChat reported (PROCESSING, SUCCESS, ...)
    ADD COLUMN next_check_at  timestamptz,          -- the submitter's next look (also its lease)
    ADD COLUMN checks         integer NOT NULL DEFAULT 0,
    ADD COLUMN submissions    integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error     text;
-- Pending refunds that exist before this migration are submitted too (the same out_refund_no
-- is idempotent at WeChat, so one already made elsewhere is found, not repeated).
UPDATE refunds SET next_check_at = updated_at WHERE status IN ('pending', 'abnormal');
CREATE INDEX refunds_due ON refunds (next_check_at) WHERE status IN ('pending', 'abnormal');
CREATE INDEX refunds_finished_at ON refunds (finished_at) WHERE status = 'succeeded';

-- One row per bill date: the scheduled task claims a date here (several replicas, one run).
CREATE TABLE reconciliations (
    bill_date   date PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    status      text NOT NULL CHECK (status IN ('running', 'matched', 'differences', 'failed')),
    summary     jsonb,
    findings    jsonb
);
