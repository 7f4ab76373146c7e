"""Audit commands over the event log (`python -m services.commission.audit --help`): the
re-deriving audit, time travel, the plan simulator and the compliance report."""
