"""HTTP API: orders for the gateway, refunds and receipt, the WeChat Pay notify endpoint,
promoters' attributed orders."""
