"""payout: the promoter's available balance, withdrawals, review and WeChat merchant transfers."""
