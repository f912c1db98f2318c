"""Shared code."""
