"""Audit: a tamper-evident trail of every order's events, and the figures made from it."""
