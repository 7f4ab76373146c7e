-- Scale-out by partitions (several commission processes in one consumer group).

-- Reference data (bindings, statuses) is projected by its own projection, `commission_reference`,
-- whose positions every order worker reads. A schema that existed before keeps its place.
INSERT INTO projector_offsets (projection, topic, partition, next_offset)
SELECT 'commission_reference', topic, partition, next_offset FROM projector_offsets
WHERE projection = 'commission' AND topic LIKE '%referral.referral-events.v1'
ON CONFLICT DO NOTHING;
DELETE FROM projector_offsets WHERE projection = 'commission' AND topic LIKE '%referral.referral-events.v1';

-- Held order events belong to the worker that owns their order partition (-1: held before).
ALTER TABLE deferred_order_events ADD COLUMN partition integer NOT NULL DEFAULT -1;
CREATE INDEX deferred_order_events_partition ON deferred_order_events (partition);

-- Tier records by epoch, added to (never overwritten) by every worker: a tier in force in an
-- epoch is decided by the contributions of the epochs before it, whoever counted them.
CREATE TABLE promoter_record_buckets (
    promoter_id       text   NOT NULL,
    bucket            bigint NOT NULL,
    orders            integer NOT NULL DEFAULT 0,
    settled_sales_fen bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (promoter_id, bucket)
);
-- A direct buyer counts from their first purchase through the promoter (the earliest paid_at).
ALTER TABLE direct_buyers ADD COLUMN first_paid_at timestamptz;
CREATE UNIQUE INDEX tier_changes_once ON tier_changes (promoter_id, to_tier);

-- Small, hot tables updated or emptied on every batch: vacuum them early.
ALTER TABLE deferred_order_events SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE stream_watermarks SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE settlement_due SET (autovacuum_vacuum_scale_factor = 0.05);
