"""Commission: paid orders and bindings -> money owed to promoters, every fen from the event log."""
