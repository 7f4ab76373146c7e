-- What is still to publish lives in its own narrow table, so that publishing a row no longer
-- rewrites it with new entries in every index of the outbox: the partial index of unpublished
-- rows made every `published_at` update a non-HOT update (a second ~0.8 KB heap tuple, three
-- index inserts and their WAL per event, 1.7x the WAL of the insert alone, and dead index
-- entries for vacuum). Now the writer inserts the seq here in the same statement as the row;
-- the relay reads seqs from here, deletes them, and sets `published_at` with a HOT update
-- (no indexed column changes; fillfactor leaves room on the page for the new version).
-- No foreign key: both rows are written by one statement, and the outbox row is only pruned
-- once published (its seq gone from here).
CREATE TABLE outbox_pending (seq bigint PRIMARY KEY);
INSERT INTO outbox_pending (seq) SELECT seq FROM outbox WHERE published_at IS NULL AND parked_at IS NULL;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox SET (fillfactor = 50);
-- Inserted and deleted at the event rate: vacuumed after a fixed number of dead rows, unthrottled.
ALTER TABLE outbox_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
                                autovacuum_vacuum_cost_delay = 0);
