"""Losses as plain modules and functions."""
