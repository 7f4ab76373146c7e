-- payout: the individual income tax withheld on a withdrawal (cumulative method, docs/tax.md) is
-- fixed when it is requested and taken out of the WeChat transfer: amount = fee + tax + net.
-- Rows from before this migration had no tax withheld (0).
ALTER TABLE withdrawals ADD COLUMN tax_withheld_fen bigint NOT NULL DEFAULT 0 CHECK (tax_withheld_fen >= 0);
ALTER TABLE withdrawals DROP CONSTRAINT withdrawals_check;
ALTER TABLE withdrawals ADD CONSTRAINT withdrawals_net_fen_check
    CHECK (net_fen > 0 AND net_fen + fee_fen + tax_withheld_fen = amount_fen);
