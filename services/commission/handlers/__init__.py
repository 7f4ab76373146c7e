"""Projections and background jobs: parse -> domain -> store."""
