-- Smaller ANALYZE samples for the two plumbing tables that grow with every event. ANALYZE reads
-- 300 x the largest statistics target of a table's columns (30,000 rows at the default 100) and
-- sorts each column's sample (text under the database's collation): 0.35-0.37 s of CPU per analyze
-- of the commission outbox after 100,000 orders. While a table is young, autovacuum re-analyzes it
-- every visit (10 % changed), and on the bench's two cores each visit showed as a 1-2 s run of
-- probes at 300-600 ms (docs/benchmarks.md, "Ninth session"). Every query on these tables goes by
-- key, seq or age (BRIN): they need row counts and n_distinct, not fine histograms. 10 -> 3,000 rows.
-- tests/integration/foundation/test_analyze_samples.py keeps every column of them (new ones too) at 10.
ALTER TABLE outbox
    ALTER COLUMN seq SET STATISTICS 10, ALTER COLUMN event_id SET STATISTICS 10,
    ALTER COLUMN topic SET STATISTICS 10, ALTER COLUMN key SET STATISTICS 10,
    ALTER COLUMN value SET STATISTICS 10, ALTER COLUMN headers SET STATISTICS 10,
    ALTER COLUMN created_at SET STATISTICS 10, ALTER COLUMN published_at SET STATISTICS 10,
    ALTER COLUMN parked_at SET STATISTICS 10, ALTER COLUMN parked_reason SET STATISTICS 10;
ALTER TABLE projector_applied
    ALTER COLUMN projection SET STATISTICS 10, ALTER COLUMN event_id SET STATISTICS 10,
    ALTER COLUMN applied_at SET STATISTICS 10;
