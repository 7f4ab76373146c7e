-- An outbox row that can never be sent (larger than a producer batch) is parked: kept, with
-- the reason, and skipped, so it blocks nothing written after it. An operator re-drives or
-- discards it (docs/reliability.md).
ALTER TABLE outbox ADD COLUMN parked_at timestamptz, ADD COLUMN parked_reason text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL AND parked_at IS NULL;
-- Published rows are pruned by age in the background; rows are inserted in time order, so a
-- BRIN index finds the old ones for almost nothing on the write path.
CREATE INDEX outbox_created_brin ON outbox USING brin (created_at);

-- Applied event ids are kept for a window (FENXIAO_APPLIED_KEEP_S, default 30 days) and then
-- pruned: duplicates (relay resends, re-driven records) arrive within minutes to days.
ALTER TABLE projector_applied ADD COLUMN applied_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX projector_applied_at_brin ON projector_applied USING brin (applied_at);

-- How far the relay has published each partition (next offset), and how far it had when
-- published rows were last pruned: every pruned row lies below `pruned_through` in the log, so
-- an audit that matches log events to outbox rows still knows the pruned ones were ours.
CREATE TABLE outbox_published_marks (
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL,
    pruned_through bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);
