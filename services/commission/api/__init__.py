"""HTTP API: promoters' balances and records, the operators' plan, estimates."""
