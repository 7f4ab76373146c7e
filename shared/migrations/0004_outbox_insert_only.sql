-- The outbox becomes insert-only: publishing a row deletes its seq from `outbox_pending` and no
-- longer sets `published_at`. That update, though HOT, wrote a second ~0.8 KB version of every row
-- (and its WAL), left a dead tuple per event for autovacuum to prune, and needed half-empty pages
-- (fillfactor 50) to stay HOT: a vacuum of the commission outbox after 100,000 orders read ~0.8 GB
-- and showed as a 0.5-1 s stall on the two cores the bench shares (docs/benchmarks.md).
-- Published now means: not in `outbox_pending` and not parked. `published_at` is kept (set on rows
-- published before this migration, and by a replica still running the old relay during a rolling
-- deploy, which is harmless); nothing reads it any more.
ALTER TABLE outbox SET (fillfactor = 100);
COMMENT ON COLUMN outbox.published_at IS
    'set only by relays before migration 0004; published = seq not in outbox_pending and parked_at IS NULL';
