"""Plumbing every process shares: signals, logs, metrics."""
