-- Smaller ANALYZE samples for the tables that grow with every order (as the plumbing's outbox,
-- shared/migrations/0005): 300 x 100 sampled rows, each text column's sample sorted under the
-- collation, cost 0.35 s of CPU per analyze of `accruals` after 100,000 orders, re-run on every
-- autovacuum visit while the table is young. Their queries go by key (accrual, order, beneficiary,
-- buyer): row counts and n_distinct suffice. 10 -> 3,000 rows.
ALTER TABLE accruals
    ALTER COLUMN accrual_id SET STATISTICS 10, ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN line_id SET STATISTICS 10, ALTER COLUMN level SET STATISTICS 10,
    ALTER COLUMN beneficiary_id SET STATISTICS 10, ALTER COLUMN buyer_id SET STATISTICS 10,
    ALTER COLUMN product_id SET STATISTICS 10, ALTER COLUMN base_fen SET STATISTICS 10,
    ALTER COLUMN quantity SET STATISTICS 10, ALTER COLUMN rate_bp SET STATISTICS 10,
    ALTER COLUMN fixed_fen_per_unit SET STATISTICS 10, ALTER COLUMN amount_fen SET STATISTICS 10,
    ALTER COLUMN reversed_fen SET STATISTICS 10, ALTER COLUMN line_refunded_fen SET STATISTICS 10,
    ALTER COLUMN settled_fen SET STATISTICS 10, ALTER COLUMN settled_at SET STATISTICS 10,
    ALTER COLUMN plan_version SET STATISTICS 10, ALTER COLUMN tier SET STATISTICS 10,
    ALTER COLUMN freeze_days SET STATISTICS 10, ALTER COLUMN unfreeze SET STATISTICS 10,
    ALTER COLUMN paid_at SET STATISTICS 10, ALTER COLUMN event_id SET STATISTICS 10;
ALTER TABLE paid_orders
    ALTER COLUMN order_id SET STATISTICS 10, ALTER COLUMN buyer_id SET STATISTICS 10,
    ALTER COLUMN paid_at SET STATISTICS 10;
