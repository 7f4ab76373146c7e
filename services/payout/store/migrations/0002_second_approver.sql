-- payout: withdrawals above PAYOUT_DUAL_APPROVAL_ABOVE_FEN need two different approvers; the
-- first approval is recorded here and the withdrawal stays pending_review until the second.
ALTER TABLE withdrawals ADD COLUMN first_approved_by text;
ALTER TABLE withdrawals ADD COLUMN first_approved_at timestamptz;
