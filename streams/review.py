"""Agents of the review domain."""
