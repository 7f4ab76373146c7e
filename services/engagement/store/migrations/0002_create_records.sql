-- A promoter's running all-time record, as the honours read it (kept with each batch instead
-- of counted from `earnings` every time).
CREATE TABLE records (
    promoter_id   text PRIMARY KEY,
    sales         bigint NOT NULL DEFAULT 0,
    accrued_fen   bigint NOT NULL DEFAULT 0,
    settled_fen   bigint NOT NULL DEFAULT 0,
    new_customers bigint NOT NULL DEFAULT 0
);
INSERT INTO records (promoter_id, sales, accrued_fen, settled_fen)
SELECT promoter_id,
       count(*) FILTER (WHERE kind = 'accrued' AND level IN ('level1', 'self_purchase')),
       coalesce(sum(amount_fen) FILTER (WHERE kind = 'accrued'), 0),
       coalesce(sum(CASE kind WHEN 'settled' THEN amount_fen WHEN 'reversed_settled' THEN -amount_fen ELSE 0 END), 0)
FROM earnings GROUP BY promoter_id;
UPDATE records r SET new_customers = f.n FROM (SELECT promoter_id, count(*) AS n FROM first_purchases GROUP BY 1) f
WHERE f.promoter_id = r.promoter_id;
