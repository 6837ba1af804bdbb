"""Evaluation: scoring and metrics."""
