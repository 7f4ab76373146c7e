-- Per-order cost independent of history: the rows rewritten on every batch leave dead versions
-- behind (the outbox's partial index of unpublished rows keeps an entry per published row until a
-- vacuum; balances and positions are updated in place). Default autovacuum waits for 20 % of a
-- table to be dead, i.e. ever longer as history grows; these tables are vacuumed after a fixed
-- number of dead rows instead, without cost throttling, and keep free space for HOT updates.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
                        autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0,
                        autovacuum_vacuum_insert_threshold = 50000);
ALTER TABLE balances SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                          autovacuum_vacuum_cost_delay = 0);
ALTER TABLE projector_offsets SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
