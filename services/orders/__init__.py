"""The orders service: turns what happens to an order (intake, WeChat Pay payment and refund
notices, receipt, timeouts) into events that commission can trust."""
