"""The referral rules as plain values and functions: no I/O, no await, no framework import."""
