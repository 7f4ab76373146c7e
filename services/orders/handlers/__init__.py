"""Projections (events in) and the time-driven sweeper."""
