-- The scheduler takes due rows in (due_at, accrual_id) order: with both in the index it reads
-- exactly the rows it takes (and locks no accrual beyond them), with no sort.
CREATE INDEX settlement_due_at_id ON settlement_due (due_at, accrual_id);
DROP INDEX settlement_due_at;
