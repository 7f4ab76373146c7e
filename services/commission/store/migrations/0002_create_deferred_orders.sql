-- Cross-topic ordering guard: order events held back until the referral stream (and, while the
-- projection bootstraps, our own stream with the plans) has been read past the order's paid_at.
CREATE TABLE deferred_order_events (
    seq      bigserial PRIMARY KEY,
    order_id text NOT NULL,
    paid_at  timestamptz,            -- set on the order's OrderPaid; its later events wait behind it
    envelope bytea NOT NULL
);
CREATE INDEX deferred_order_events_order ON deferred_order_events (order_id);
CREATE INDEX deferred_order_events_paid ON deferred_order_events (paid_at) WHERE paid_at IS NOT NULL;

-- The latest event time read per partition of the streams orders wait for.
CREATE TABLE stream_watermarks (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (topic, partition)
);
