-- Row types of the batch write (store.state.write_batch): each kind of row a batch adds goes as
-- ONE array of its row type (`unnest($1::accrual_row[])`) instead of one array per column. The
-- client then encodes one array per kind (asyncpg checks each array element's type in Python, so
-- 22 parallel arrays cost 22 times the checks of one) and can pass the domain's tuples as they are.
-- The column order is the Python tuples', not the tables': these types are only wire formats.
CREATE TYPE paid_order_row AS (order_id text, buyer_id text, paid_at timestamptz);
-- the fields of domain.accrual.Accrual in its order (kind included), then the end-of-batch
-- lifecycle of that accrual and the event id of its CommissionAccrued
CREATE TYPE accrual_row AS (
    accrual_id text, order_id text, line_id text, level text, beneficiary_id text, buyer_id text, product_id text,
    base_fen bigint, quantity integer, rate_bp integer, fixed_fen_per_unit integer, amount_fen bigint,
    plan_version integer, tier text, freeze_days integer, unfreeze text, paid_at timestamptz, kind text,
    reversed_fen bigint, line_refunded_fen bigint, settled_fen bigint, settled_at timestamptz, event_id uuid
);
CREATE TYPE accrual_skip_row AS (order_id text, line_id text, beneficiary_id text, level text, reason text,
                                 paid_at timestamptz);
CREATE TYPE record_bucket_row AS (promoter_id text, bucket bigint, orders integer, settled_sales_fen bigint);
CREATE TYPE first_purchase_row AS (promoter_id text, buyer_id text, first_paid_at timestamptz);
CREATE TYPE balance_delta_row AS (promoter_id text, frozen_fen bigint, available_fen bigint, reserved_fen bigint,
                                  withdrawn_fen bigint, reversed_fen bigint);
